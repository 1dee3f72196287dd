// VmConfigs for driver tests, with the agent on hybrid vsock port 1024 as Kata has it.
import * as fs from 'fs';
import * as path from 'path';
import { VmConfig } from '../hypervisor';

export const AGENT_VSOCK_PORT = 1024;

/** A VmConfig whose paths all lie in `workDir`; nothing is created. */
export function vmConfigIn(workDir: string, binaryPath: string, overrides: Partial<VmConfig> = {}): VmConfig {
  return {
    id: 'sb1',
    workDir,
    binaryPath,
    accelerator: 'kvm',
    kernelPath: path.join(workDir, 'vmlinux'),
    rootfs: { kind: 'initrd', path: path.join(workDir, 'initrd.img') },
    kernelParams: ['console=ttyS0', 'quiet'],
    memoryMiB: 512,
    vcpus: 2,
    agentChannel: { kind: 'hybrid-vsock', socketPath: path.join(workDir, 'vsock.sock'), port: AGENT_VSOCK_PORT },
    sharedDirectories: [],
    ...overrides,
  };
}

/** The same in a fresh workDir below `dir`, with stand-in guest image files (fakes never read them). */
export function testVmConfig(dir: string, binaryPath: string, overrides: Partial<VmConfig> = {}): VmConfig {
  const config = vmConfigIn(fs.mkdtempSync(path.join(dir, 'vm-')), binaryPath, overrides);
  fs.writeFileSync(config.kernelPath, '');
  fs.writeFileSync(config.rootfs.path, '');
  return config;
}
