export { QemuHypervisor } from './qemu';
export { buildQemuArgs, DEBUG_CONSOLE_VSOCK_PARAM, qemuPaths } from './command-line';
