// Files the shim keeps in a container's bundle directory, shared by `start` (which
// writes them) and `delete` (which reads them after a crash).
/** The daemon's pid and start time (lib/recorded-process), so that a reused pid is never mistaken for it. */
export const SHIM_PID_FILE = 'shim.pid';
