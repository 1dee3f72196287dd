// What the host and the guest accept as a network interface name and a MAC address:
// names `ip` takes safely (IFNAMSIZ less the NUL), MACs in lower-case colon form.
export const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
export const MAC_ADDRESS = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
