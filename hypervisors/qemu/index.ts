export { QemuHypervisor } from './qemu';
export { buildQemuArgs, qemuPaths } from './command-line';
export { runningQemuPid } from './running-qemu';
