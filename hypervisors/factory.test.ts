import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { CloudHypervisor } from './cloud-hypervisor';
import { createHypervisor } from './factory';
import { Firecracker } from './firecracker';
import { VmConfig } from './hypervisor';
import { QemuHypervisor } from './qemu';

describe('createHypervisor', () => {
  it.each([
    ['qemu', 'virtio-serial', QemuHypervisor],
    ['clh', 'hybrid-vsock', CloudHypervisor],
    ['firecracker', 'hybrid-vsock', Firecracker],
  ] as const)('builds the %s driver, which takes the agent over %s', (kind, channel, driver) => {
    const hypervisor = createHypervisor({ kind, virtioFsDaemon: '', ksm: 'unchanged' }, silentLogger());
    expect(hypervisor).toBeInstanceOf(driver);
    expect(hypervisor.agentChannelKind).toBe(channel);
  });

  it('resolves agent_channel = "auto" for QEMU from what the host has', () => {
    const choice = { kind: 'qemu', virtioFsDaemon: '', agentChannel: 'auto', vsockBackend: '/opt/vhost-device-vsock', ksm: 'unchanged' } as const;
    const withBackend = { backendInstalled: () => true };
    const without = { backendInstalled: () => false };
    expect(createHypervisor(choice, silentLogger(), withBackend).agentChannelKind).toBe('hybrid-vsock');
    expect(createHypervisor(choice, silentLogger(), without).agentChannelKind).toBe('virtio-serial');
    expect(createHypervisor({ ...choice, ksm: 'on' }, silentLogger(), withBackend).agentChannelKind).toBe('virtio-serial');
    expect(createHypervisor({ ...choice, agentChannel: 'hybrid-vsock' }, silentLogger(), without).agentChannelKind).toBe('hybrid-vsock');
  });

  it('gives Cloud Hypervisor the configured virtiofsd for the shared directory', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'factory-'));
    try {
      for (const file of ['vmlinux', 'initrd.img']) fs.writeFileSync(path.join(dir, file), '');
      const vm: VmConfig = {
        id: 'f1',
        workDir: path.join(dir, 'vm'),
        binaryPath: 'cloud-hypervisor',
        accelerator: 'kvm',
        kernelPath: path.join(dir, 'vmlinux'),
        rootfs: { kind: 'initrd', path: path.join(dir, 'initrd.img') },
        kernelParams: [],
        memoryMiB: 512,
        vcpus: 1,
        agentChannel: { kind: 'hybrid-vsock', socketPath: path.join(dir, 'vm', 'vsock.sock'), port: 1024 },
        sharedDirectories: [{ tag: 'kataShared', hostPath: dir }],
      };
      // The daemon is started before the VMM, so its path shows in the first error.
      await expect(createHypervisor({ kind: 'clh', virtioFsDaemon: '/nonexistent/virtiofsd', ksm: 'unchanged' }, silentLogger()).start(vm)).rejects.toThrow("binary '/nonexistent/virtiofsd' is not an executable file");
      await expect(createHypervisor({ kind: 'clh', virtioFsDaemon: '', ksm: 'unchanged' }, silentLogger()).start(vm)).rejects.toThrow('shares directories over virtio-fs only, which needs virtiofsd');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
