export { QemuHypervisor } from './qemu';
export { buildQemuArgs, qemuPaths } from './command-line';
