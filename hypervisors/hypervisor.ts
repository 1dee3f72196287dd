// The seam between a sandbox and the VMM that runs it. A sandbox only ever talks to
// this interface; every driver (hypervisors/<name>/) implements it.

export type Accelerator = 'kvm' | 'tcg';

/** How the host reaches the guest agent. */
export type AgentChannel =
  /** virtio-serial port; the VMM listens on a Unix socket on the host side. */
  | { kind: 'virtio-serial'; socketPath: string; portName: string }
  /** AF_VSOCK (vhost-vsock on the host). */
  | { kind: 'vsock'; guestCid: number; port: number }
  /** Firecracker/Cloud Hypervisor: a Unix socket speaking `CONNECT <port>\n`. */
  | { kind: 'hybrid-vsock'; socketPath: string; port: number };

/**
 * The guest's root filesystem. An initrd is copied into guest RAM; an image (ext4 with
 * a DAX header, built by guest/build.sh) stays in the host page cache: QEMU maps it as
 * an NVDIMM that the guest mounts with -o dax, so every VM shares one copy.
 */
export type GuestRootfs = { kind: 'initrd'; path: string } | { kind: 'image'; path: string };

export interface SharedDirectory {
  /** 9p mount tag the guest mounts. */
  tag: string;
  hostPath: string;
}

export interface VmConfig {
  /** Sandbox id; names the VM. */
  id: string;
  /** Private directory for the VMM's sockets, pid file and console log. */
  workDir: string;
  binaryPath: string;
  accelerator: Accelerator;
  kernelPath: string;
  rootfs: GuestRootfs;
  kernelParams: string[];
  memoryMiB: number;
  vcpus: number;
  /** Hot-plug limits: resize() may grow the VM up to these (default: no growth). */
  maxMemoryMiB?: number;
  maxVcpus?: number;
  agentChannel: AgentChannel;
  /**
   * A second guest port for a root shell (`kata-ts-runtime exec`): the VMM listens on
   * `socketPath`, created mode 0600, and the guest sees a virtio-serial port `portName`.
   */
  debugConsole?: { socketPath: string; portName: string };
  sharedDirectories: SharedDirectory[];
  /** The pod network: the VMM runs inside `netnsPath` and gets one virtio NIC per tap there. */
  network?: { netnsPath: string; nics: Array<{ tapName: string; mac: string }> };
}

/**
 * A device for the VM. Added before start() it is part of the boot configuration;
 * added after, it is hot-plugged, where the VMM can do that.
 */
export type VmDevice =
  | { kind: 'block'; id: string; hostPath: string; readOnly: boolean }
  | { kind: 'network'; id: string; tapName: string; macAddress?: string };

/** New vCPU count and/or memory size for a running VM. */
export interface VmResize {
  vcpus?: number;
  memoryMiB?: number;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Hypervisor {
  readonly name: string;
  /** Launches the VM and returns once the VMM is controllable (the guest may still boot). */
  start(config: VmConfig): Promise<void>;
  /**
   * Stops the VM: waits up to `graceMs` for the guest to power off by itself (the agent
   * ends it after DestroySandbox), then asks the VMM to quit, then kills it.
   */
  stop(graceMs: number): Promise<void>;
  /** The VMM process id while it runs. */
  pid(): number | undefined;
  /** Settles when the VMM process has exited, for whatever reason. */
  readonly exited: Promise<VmExit>;
  /** Recent console output of the guest, for error messages when boot fails. */
  consoleTail(maxBytes?: number): string;

  // Optional capabilities: a driver whose VMM cannot do one leaves it out.
  /** Freezes the guest's vCPUs. */
  pause?(): Promise<void>;
  resume?(): Promise<void>;
  addDevice?(device: VmDevice): Promise<void>;
  /** Hot-unplugs a device added after start(); settles once the guest let go of it. */
  removeDevice?(id: string): Promise<void>;
  /** Hot-plugs vCPUs/memory up to the limits the driver was configured with. */
  resize?(target: VmResize): Promise<void>;
}
