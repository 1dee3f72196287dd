// What a template is keyed by, and the VM it is booted as (the QEMU driver's real
// command line, no QEMU run). Making and cloning templates: tests/e2e/vm-templates.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { VmConfig } from '../hypervisors/hypervisor';
import { QemuHypervisor } from '../hypervisors/qemu/qemu';
import { CloudHypervisor } from '../hypervisors/cloud-hypervisor/cloud-hypervisor';
import { spawn } from 'child_process';
import { writeProcessRecord } from '../lib/recorded-process';
import { defaultConfig } from '../config/runtime-config';
import { vmSizing } from './resources';
import { podVmConfig } from './sandbox';
import { cloneRefusal, listTemplates, removeAbandoned, removeTemplateLocked, TEMPLATE_KERNEL_PARAM, templateKey, templateVm, VmTemplates, withTemplateKernelParam, withTemplateLock } from './vm-templates';

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

  it("is the same for pods of any cgroup limits: a pod's cap is kept by what is plugged, not by the VM's hardware", () => {
    const config = defaultConfig();
    config.hypervisor = { ...config.hypervisor, kernel: path.join(dir, 'vmlinux'), image: path.join(dir, 'rootfs.img'), initrd: '', maxVcpus: 4, maxMemoryMiB: 8192 };
    const host = { vcpus: 8, memoryMiB: 16_000 };
    const keyFor = (id: string, limits: { memoryBytes?: number; cpus?: number }) =>
      templateKey(qemu, podVmConfig(config, qemu, { id, workDir: `/run/kata-ts/default/${id}`, sharedDir: `/run/kata-ts/default/${id}/shared`, sizing: vmSizing(config.hypervisor, host, limits) }));
    const unlimited = keyFor('a', {});
    expect(keyFor('b', { memoryBytes: 1024 * 1024 * 1024, cpus: 0.5 })).toBe(unlimited);
    expect(keyFor('c', { memoryBytes: 3 * 1024 * 1024 * 1024, cpus: 2 })).toBe(unlimited);
    // Another configured room is other hardware, and another template.
    config.hypervisor.maxMemoryMiB = 4096;
    expect(keyFor('d', {})).not.toBe(unlimited);
  });

  it('tells whether two VMs would be clones of one template', () => {
    const templates = new VmTemplates(path.join(dir, 'templates'), () => qemu, { bootTimeoutMs: 1000, callTimeoutMs: 1000 }, silentLogger());
    expect(templates.sameTemplate(pod('a'), pod('b'))).toBe(true);
    expect(templates.sameTemplate(pod('a'), { ...pod('a'), memoryMiB: 2048 })).toBe(false);
    // No key without the guest's files: not the same.
    expect(templates.sameTemplate(pod('a'), { ...pod('a'), kernelPath: path.join(dir, 'gone') })).toBe(false);
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
    // The guest's init starts a template's agent with its code compiled ahead; a pod's VM is booted without it.
    expect(vm.kernelParams).toEqual([...pod('a').kernelParams, TEMPLATE_KERNEL_PARAM]);
    expect(pod('a').kernelParams).not.toContain(TEMPLATE_KERNEL_PARAM);
    // A clone's command line is its template's.
    expect(withTemplateKernelParam(pod('a')).kernelParams).toEqual(vm.kernelParams);
  });

  it('says why a VM cannot be a clone', () => {
    expect(cloneRefusal(qemu, pod('a'))).toBeUndefined();
    const virtioFs = new QemuHypervisor(silentLogger(), { virtioFs: { binary: '/usr/lib/qemu/virtiofsd' } as never });
    expect(cloneRefusal(virtioFs, pod('a'))).toMatch(/virtio-fs maps the guest RAM/);
    const clh = new CloudHypervisor(silentLogger(), {} as never);
    expect(cloneRefusal(clh, pod('a'))).toBe('the cloud-hypervisor driver cannot save and restore VMs');
  });

  it('lists templates with their size on disk, and skips the lock, unfinished builds and whatever else is there', () => {
    const store = path.join(dir, 'store');
    const key = 'abcdef0123456789abcdef0123456789';
    fs.mkdirSync(path.join(store, key), { recursive: true });
    fs.mkdirSync(path.join(store, `.lock-${key}`));
    fs.mkdirSync(path.join(store, '.building-abcdef01-Ab12Cd'));
    // Not kata-ts's: an administrator's template_path may hold other things.
    fs.mkdirSync(path.join(store, 'notes'));
    fs.mkdirSync(path.join(store, 'ABCDEF0123456789ABCDEF0123456789'));
    fs.symlinkSync(path.join(store, key), path.join(store, '0123456789abcdef0123456789abcdef'));
    fs.writeFileSync(path.join(store, key, 'state'), Buffer.alloc(8192, 1));
    fs.writeFileSync(path.join(store, key, 'template.json'), JSON.stringify({ format: 1, key, stateSha256: 'x', memory: { bytes: 0, ino: '1', ctimeNs: '1' }, createdAt: 'now' }));
    const listed = listTemplates(store);
    expect(listed.map((t) => [path.basename(t.dir), t.meta?.key])).toEqual([[key, key]]);
    expect(listed[0].bytes).toBeGreaterThanOrEqual(8192);
    expect(listTemplates(path.join(dir, 'none'))).toEqual([]);
  });
});

describe('the template lock', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-lock-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('lets one holder of a key in at a time, and leaves nothing behind', async () => {
    const order: string[] = [];
    const hold = (name: string) =>
      withTemplateLock(dir, 'k', 5000, silentLogger(), async () => {
        order.push(`${name} in`);
        await new Promise((r) => setTimeout(r, 150));
        order.push(`${name} out`);
      });
    await Promise.all([hold('a'), hold('b'), withTemplateLock(dir, 'other-key', 5000, silentLogger(), async () => void order.push('other'))]);
    expect(order.filter((o) => o !== 'other')).toEqual(['a in', 'a out', 'b in', 'b out']);
    // Another key did not wait for them.
    expect(order.indexOf('other')).toBeLessThan(order.indexOf('a out'));
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("takes over a dead shim's lock: kills the template VM it recorded and removes its unfinished build", async () => {
    const key = 'abcdef0123456789abcdef0123456789';
    const lock = path.join(dir, `.lock-${key}`);
    fs.mkdirSync(lock);
    fs.writeFileSync(path.join(lock, 'owner'), '999999999 1\n'); // no such process
    const vmm = spawn('sleep', ['60']);
    await new Promise((r) => vmm.once('spawn', r));
    writeProcessRecord(path.join(lock, 'vmm'), vmm.pid!);
    fs.mkdirSync(path.join(dir, '.building-abcdef01-x1Y2z3'));
    fs.mkdirSync(path.join(dir, '.building-99999999-x1Y2z3')); // another key's: stays
    const ran = await withTemplateLock(dir, key, 5000, silentLogger(), async () => 'ran');
    expect(ran).toBe('ran');
    await new Promise((r) => (vmm.exitCode !== null || vmm.signalCode ? r(undefined) : vmm.once('exit', r)));
    expect(vmm.signalCode).toBe('SIGKILL');
    expect(fs.readdirSync(dir)).toEqual(['.building-99999999-x1Y2z3']);
  });

  it('is released whole: a waiter that renames its lock in as the holder removes its own keeps it', async () => {
    const lock = path.join(dir, '.lock-k');
    const realFs = jest.requireActual<typeof fs>('fs');
    const rmSync = realFs.rmSync;
    let raced = false;
    const spy = jest.spyOn(realFs, 'rmSync').mockImplementation((target, options) => {
      if (raced || (String(target) !== lock && !path.basename(String(target)).startsWith('.trash-'))) return rmSync(target, options);
      raced = true;
      // The holder's removal has emptied the directory it removes when a waiter's rename lands.
      rmSync(path.join(String(target), 'owner'));
      const candidate = realFs.mkdtempSync(path.join(dir, '.lock-new-'));
      writeProcessRecord(path.join(candidate, 'owner'), process.pid);
      realFs.renameSync(candidate, lock);
      return rmSync(target, options);
    });
    try {
      await withTemplateLock(dir, 'k', 5000, silentLogger(), async () => undefined).catch(() => undefined);
    } finally {
      spy.mockRestore();
    }
    expect(raced).toBe(true);
    // The waiter's lock, whole.
    expect(fs.readdirSync(lock)).toEqual(['owner']);
  });

  it("waits for a live holder, and fails naming it when it keeps the lock too long", async () => {
    const lock = path.join(dir, '.lock-k');
    fs.mkdirSync(lock);
    writeProcessRecord(path.join(lock, 'owner'), process.pid);
    await expect(withTemplateLock(dir, 'k', 300, silentLogger(), async () => 'never')).rejects.toThrow(`the VM template lock ${lock} is still held by {"pid":${process.pid}`);
    expect(fs.existsSync(lock)).toBe(true); // not ours: left alone
  });
});

describe('what dead shims left in the template directory', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-abandoned-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("is removed: a dead shim's lock (its template VM killed), candidates and builds; not a live shim's, nor what kata-ts did not name", async () => {
    const liveKey = 'bbbbbbbbcccccccccccccccccccccccc';
    const deadKey = 'aaaaaaaacccccccccccccccccccccccc';
    for (const d of ['.building-aaaaaaaa-Ab12Cd', '.building-bbbbbbbb-Ab12Cd', '.trash-0123abcd', '.stale-0123abcd', `.lock-${liveKey}`, `.lock-${deadKey}`, '.lock-new-Zz09aB', '.lock-new-Qq09aB', deadKey.replace('a', 'd'), '.trash-mine', '.stale', 'notes', '.building-notes']) {
      fs.mkdirSync(path.join(dir, d));
    }
    writeProcessRecord(path.join(dir, `.lock-${liveKey}`, 'owner'), process.pid); // alive: its build stays
    fs.writeFileSync(path.join(dir, `.lock-${deadKey}`, 'owner'), '999999999 1\n'); // dead: its build goes
    const vmm = spawn('sleep', ['60']);
    await new Promise((r) => vmm.once('spawn', r));
    writeProcessRecord(path.join(dir, `.lock-${deadKey}`, 'vmm'), vmm.pid!);
    fs.writeFileSync(path.join(dir, '.lock-new-Zz09aB', 'owner'), '999999999 1\n'); // a dead candidate goes; one without its record yet stays
    // The dead lock is taken over as a starting shim would (its build goes with it), then released.
    expect(await removeAbandoned(dir, silentLogger())).toBe(4);
    await new Promise((r) => (vmm.exitCode !== null || vmm.signalCode ? r(undefined) : vmm.once('exit', r)));
    expect(vmm.signalCode).toBe('SIGKILL');
    expect(fs.readdirSync(dir).sort()).toEqual(['.building-bbbbbbbb-Ab12Cd', '.building-notes', `.lock-${liveKey}`, '.lock-new-Qq09aB', '.stale', '.trash-mine', 'daaaaaaacccccccccccccccccccccccc', 'notes']);
  });
});

describe('removing a template', () => {
  let dir: string;
  const key = 'abcdef0123456789abcdef0123456789';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-remove-'));
    fs.mkdirSync(path.join(dir, key));
    fs.writeFileSync(path.join(dir, key, 'state'), 'x');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('waits for its lock, and removes it whole', async () => {
    let held = true;
    const holder = withTemplateLock(dir, key, 5000, silentLogger(), async () => {
      await new Promise((r) => setTimeout(r, 300));
      expect(fs.existsSync(path.join(dir, key, 'state'))).toBe(true); // not while held
      held = false;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(await removeTemplateLocked(dir, path.join(dir, key), 5000, silentLogger())).toBeUndefined();
    expect(held).toBe(false);
    await holder;
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('leaves one that stays in use past the wait, and anything not named as a template', async () => {
    fs.mkdirSync(path.join(dir, `.lock-${key}`));
    writeProcessRecord(path.join(dir, `.lock-${key}`, 'owner'), process.pid); // a live shim holds it
    expect(await removeTemplateLocked(dir, path.join(dir, key), 0, silentLogger())).toMatch(/is still held by/);
    expect(fs.existsSync(path.join(dir, key, 'state'))).toBe(true);
    fs.mkdirSync(path.join(dir, 'notes'));
    expect(await removeTemplateLocked(dir, path.join(dir, 'notes'), 0, silentLogger())).toBe('not a template kata-ts named');
    expect(fs.existsSync(path.join(dir, 'notes'))).toBe(true);
  });
});
