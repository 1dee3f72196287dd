// What a template is keyed by, and the VM it is booted as (the QEMU driver's real
// command line, no QEMU run). Making and cloning templates: tests/e2e/vm-templates.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { VmConfig } from '../hypervisors/hypervisor';
import { QemuHypervisor } from '../hypervisors/qemu/qemu';
import { CloudHypervisor } from '../hypervisors/cloud-hypervisor/cloud-hypervisor';
import { cloneRefusal, listTemplates, templateKey, templateVm } from './vm-templates';

describe('VM template keys', () => {
  let dir: string;
  let pod: (id: string) => VmConfig;
  const qemu = new QemuHypervisor(silentLogger());

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-key-'));
    fs.writeFileSync(path.join(dir, 'vmlinux'), 'kernel');
    fs.writeFileSync(path.join(dir, 'rootfs.img'), Buffer.alloc(4096));
    pod = (id) => ({
      id,
      workDir: `/run/kata-ts/default/${id}`,
      binaryPath: '/usr/bin/qemu-system-x86_64',
      accelerator: 'tcg',
      kernelPath: path.join(dir, 'vmlinux'),
      rootfs: { kind: 'image', path: path.join(dir, 'rootfs.img') },
      kernelParams: ['console=ttyS0', 'quiet'],
      memoryMiB: 1024,
      vcpus: 1,
      maxMemoryMiB: 4096,
      maxVcpus: 2,
      agentChannel: { kind: 'virtio-serial', socketPath: `/run/kata-ts/default/${id}/agent.sock`, portName: 'agent.channel.0' },
      sharedDirectories: [{ tag: 'kataShared', hostPath: `/run/kata-ts/default/${id}/shared` }],
      network: { netnsPath: `/var/run/netns/${id}`, nics: [{ tapName: 'tap0_kata', mac: '0a:58:0a:58:00:05' }] },
    });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is the same for two pods that differ only in id, paths and network', () => {
    expect(templateKey(qemu, pod('a'))).toBe(templateKey(qemu, pod('b')));
    expect(templateKey(qemu, pod('a'))).toMatch(/^[0-9a-f]{32}$/);
  });

  it('changes with what the guest sees: memory, vCPUs, limits, kernel parameters, the debug console, the guest files', () => {
    const key = templateKey(qemu, pod('a'));
    const changed: Array<Partial<VmConfig>> = [
      { memoryMiB: 2048 },
      { vcpus: 2 },
      { maxMemoryMiB: 8192 },
      { kernelParams: ['console=ttyS0'] },
      { debugConsole: { socketPath: '/run/kata-ts/default/a/debug-console.sock', portName: 'console.0' } },
      { accelerator: 'kvm' },
    ];
    for (const change of changed) expect(templateKey(qemu, { ...pod('a'), ...change })).not.toBe(key);
    // A rebuilt kernel is another file (size, mtime): another template.
    fs.writeFileSync(path.join(dir, 'vmlinux'), 'kernel, rebuilt');
    expect(templateKey(qemu, pod('a'))).not.toBe(key);
  });

  it('boots the template without the pod: no NIC, its own sockets and an empty share of its own', () => {
    const vm = templateVm(pod('a'), '/var/lib/kata-ts/vm-templates/.building-x', qemu);
    expect(vm.network).toBeUndefined();
    expect(vm.workDir).toBe('/var/lib/kata-ts/vm-templates/.building-x');
    expect(vm.agentChannel).toEqual({ kind: 'virtio-serial', socketPath: '/var/lib/kata-ts/vm-templates/.building-x/agent.sock', portName: 'agent.channel.0' });
    expect(vm.sharedDirectories).toEqual([{ tag: 'kataShared', hostPath: '/var/lib/kata-ts/vm-templates/.building-x/share0' }]);
  });

  it('says why a VM cannot be a clone', () => {
    expect(cloneRefusal(qemu, pod('a'))).toBeUndefined();
    const virtioFs = new QemuHypervisor(silentLogger(), { virtioFs: { binary: '/usr/lib/qemu/virtiofsd' } as never });
    expect(cloneRefusal(virtioFs, pod('a'))).toMatch(/virtio-fs maps the guest RAM/);
    const clh = new CloudHypervisor(silentLogger(), {} as never);
    expect(cloneRefusal(clh, pod('a'))).toBe('the cloud-hypervisor driver cannot save and restore VMs');
  });

  it('lists templates with their size on disk, and skips the lock and unfinished builds', () => {
    fs.mkdirSync(path.join(dir, 'store', 'abc'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'store', '.lock'));
    fs.mkdirSync(path.join(dir, 'store', '.building-abc-1'));
    fs.writeFileSync(path.join(dir, 'store', 'abc', 'state'), Buffer.alloc(8192, 1));
    fs.writeFileSync(path.join(dir, 'store', 'abc', 'template.json'), JSON.stringify({ format: 1, key: 'abc', stateSha256: 'x', memoryBytes: 0, createdAt: 'now' }));
    const listed = listTemplates(path.join(dir, 'store'));
    expect(listed.map((t) => [path.basename(t.dir), t.meta?.key])).toEqual([['abc', 'abc']]);
    expect(listed[0].bytes).toBeGreaterThanOrEqual(8192);
    expect(listTemplates(path.join(dir, 'none'))).toEqual([]);
  });
});
