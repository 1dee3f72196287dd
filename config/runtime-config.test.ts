import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { defaultConfig, loadConfigFile, parseConfig } from './runtime-config';

describe('runtime configuration', () => {
  it('overlays given keys on the defaults', () => {
    const config = parseConfig({ hypervisor: { accelerator: 'tcg', memoryMiB: 512 } }, 'test.json');
    expect(config.hypervisor.accelerator).toBe('tcg');
    expect(config.hypervisor.memoryMiB).toBe(512);
    expect(config.hypervisor.vcpus).toBe(defaultConfig().hypervisor.vcpus);
  });

  it('selects the driver by hypervisor.kind, each with its own defaults', () => {
    expect(parseConfig({}, 'x.json').hypervisor).toMatchObject({ kind: 'qemu', path: 'qemu-system-x86_64', sharedFs: 'virtio-9p', virtioFsDaemon: '/usr/lib/qemu/virtiofsd' });
    expect(parseConfig({ hypervisor: { kind: 'clh' } }, 'x.json').hypervisor).toMatchObject({ kind: 'clh', path: 'cloud-hypervisor', virtioFsDaemon: '/usr/libexec/virtiofsd' });
    expect(parseConfig({ hypervisor: { kind: 'firecracker', initrd: '/i' } }, 'x.json').hypervisor).toMatchObject({ kind: 'firecracker', path: 'firecracker', image: '', initrd: '/i' });
  });

  it("lets VMs grow to the host's CPUs and memory unless limits are set (Kata's 0)", () => {
    expect(defaultConfig().hypervisor).toMatchObject({ maxVcpus: 0, maxMemoryMiB: 0 });
    expect(parseConfig({ hypervisor: { vcpus: 2, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 4096 } }, 'x.json').hypervisor).toMatchObject({ maxVcpus: 2, maxMemoryMiB: 4096 });
  });

  it('leaves the debug console off unless asked for', () => {
    expect(defaultConfig().agent.debugConsole).toBe(false);
    expect(parseConfig({ agent: { debugConsole: true } }, 'test.json').agent.debugConsole).toBe(true);
  });

  it.each([
    [{ hypervisor: { maxVcpus: 2.5 } }, "hypervisor.maxVcpus: must be a non-negative integer (0: the host's CPU count)"],
    [{ hypervisor: { maxVcpus: -4 } }, "hypervisor.maxVcpus: must be a non-negative integer (0: the host's CPU count)"],
    [{ hypervisor: { maxVcpus: '8' } }, 'hypervisor.maxVcpus: must be a number, got "8"'],
    [{ hypervisor: { vcpus: 2, maxVcpus: 1 } }, "hypervisor.maxVcpus: must be 0 (the host's CPU count) or at least the boot vCPUs (2)"],
    [{ hypervisor: { maxMemoryMiB: 1536.5 } }, "hypervisor.maxMemoryMiB: must be a non-negative integer of MiB (0: half the host's memory)"],
    [{ hypervisor: { maxMemoryMiB: -1 } }, "hypervisor.maxMemoryMiB: must be a non-negative integer of MiB (0: half the host's memory)"],
    [{ hypervisor: { memoryMiB: 2048, maxMemoryMiB: 1024 } }, "hypervisor.maxMemoryMiB: must be 0 (half the host's memory) or at least the boot memory (2048 MiB)"],
    [{ hypervisor: { kind: 'xen' } }, 'hypervisor.kind: must be one of "qemu", "clh", "firecracker", got "xen"'],
    [{ hypervisor: { kind: 'clh', accelerator: 'kvm' } }, 'hypervisor.accelerator: not a Cloud Hypervisor setting'],
    [{ hypervisor: { kind: 'firecracker', image: '/r.img' } }, 'hypervisor.image: not a Firecracker setting'],
    [{ hypervisor: { kind: 'firecracker', initrd: '/i', virtioFsDaemon: '/v' } }, 'hypervisor.virtioFsDaemon: not a Firecracker setting'],
    [{ hypervisor: { sharedFs: 'virtio-fs', virtioFsDaemon: 'virtiofsd' } }, 'hypervisor.virtioFsDaemon: must be an absolute path, got "virtiofsd"'],
    [{ hypervisor: { sharedFs: 'virtio-fs', virtioFsDaemon: '' } }, 'hypervisor.virtioFsDaemon: must name the virtiofsd binary: the shared filesystem is virtio-fs'],
    [{ hypervisor: { virtioFsExtraArgs: ['--thread-pool-size=4', '--sandbox=none'] } }, 'hypervisor.virtioFsExtraArgs: "--sandbox=none" is not passed to virtiofsd: kata-ts allows only --thread-pool-size=N'],
    [{ hypervisor: { virtioFsExtraArgs: '--xattr' } }, 'hypervisor.virtioFsExtraArgs: must be a list of strings'],
    [{ hypervisor: { kind: 'firecracker', initrd: '/i', virtioFsExtraArgs: [] } }, 'hypervisor.virtioFsExtraArgs: not a Firecracker setting'],
    [{ hypervisor: { accelerator: 'hvf' } }, 'hypervisor.accelerator: must be "kvm" or "tcg"'],
    [{ hypervisor: { memoryMiB: '1G' } }, 'hypervisor.memoryMiB: must be a number'],
    [{ hypervisor: { memoryMiB: 64 } }, 'hypervisor.memoryMiB: must be an integer of at least 128'],
    [{ hypervisor: { kernelParams: [1] } }, 'hypervisor.kernelParams: must be a list of strings'],
    [{ hypervisor: { colour: 'red' } }, 'hypervisor.colour: unknown key'],
    [{ network: {} }, 'network: unknown section'],
    [{ agent: { bootTimeoutMs: -1 } }, 'agent.bootTimeoutMs: must be a positive number'],
    [{ agent: { debugConsole: 'true' } }, 'agent.debugConsole: must be a boolean, got "true"'],
    [[], '(top level): must be a JSON object'],
  ])('rejects %j naming the key and reason', (raw, message) => {
    expect(() => parseConfig(raw, '/etc/x.json')).toThrow(InvalidArgumentError);
    expect(() => parseConfig(raw, '/etc/x.json')).toThrow(`/etc/x.json: ${message}`);
  });

  it('names the file when it is not JSON', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
    try {
      const file = path.join(dir, 'config.json');
      fs.writeFileSync(file, '{ nope');
      expect(() => loadConfigFile(file)).toThrow(new RegExp(`^${file}: not valid JSON`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails clearly for an explicitly named file that is missing', () => {
    expect(() => loadConfigFile('/nonexistent/kata.json')).toThrow('cannot read configuration /nonexistent/kata.json');
  });
});
