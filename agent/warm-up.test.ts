// The warm-up's container spec against a real OCI runtime on this host: runc, as the
// host's crun refuses its hybrid cgroup layout (root, busybox-static installed as for
// the guest build); warmUp()'s sequence and clean-up against a stand-in crun. The real
// warm-up with crun in a guest: tests/e2e/spare-vms.test.ts.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { OciRuntime } from './oci-runtime';
import { warmUp, WarmUpGate, warmUpSpec, WARM_UP_CONTAINER_ID } from './warm-up';

jest.setTimeout(30_000);

const BUSYBOX = '/usr/bin/busybox';

describe('warmUpSpec', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-warm-up-spec-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is a container real runc runs: own namespaces and cgroup, read-only root, `busybox true` exits 0', () => {
    const bundle = path.join(dir, 'bundle');
    const rootfs = path.join(bundle, 'rootfs');
    for (const d of ['bin', 'proc', 'dev', 'sys']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    const cgroup = `/katats-warm-up-test-${process.pid}`;
    const spec = warmUpSpec(rootfs, cgroup);
    // What it runs, shown: the probe prints its pid (1 in its own PID namespace) and hostname.
    spec.process!.args = ['/bin/busybox', 'sh', '-c', 'echo pid=$$ host=$(hostname); touch /x 2>/dev/null && echo writable || echo read-only'];
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
    const state = path.join(dir, 'runc');
    const id = `kt-warm-up-test-${process.pid}`;
    try {
      const out = execFileSync('runc', ['--root', state, 'run', '--bundle', bundle, id], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(out).toBe('pid=1 host=katats-warm-up\nread-only\n');
    } finally {
      execFileSync('runc', ['--root', state, 'delete', '--force', id], { stdio: 'ignore' });
    }
    expect(warmUpSpec(rootfs, cgroup).process!.args).toEqual(['/bin/busybox', 'true']);
  });
});

/**
 * crun's command line: `run` keeps a copy of the bundle's config.json, writes the pid
 * file and exits with the status in `<root>/status` (0 without it), or with
 * `<root>/no-pid` fails without starting anything; `delete` fails with
 * `<root>/delete-error`; every call is logged.
 */
const STAND_IN_CRUN = `
const fs = require('fs'), path = require('path');
const argv = process.argv.slice(2);
const root = argv[argv.indexOf('--root') + 1];
fs.mkdirSync(root, { recursive: true });
fs.appendFileSync(path.join(root, 'calls'), argv.filter((a) => !a.startsWith('--log=')).slice(2).join(' ') + '\\n');
if (argv.includes('run')) {
  const bundle = argv[argv.indexOf('--bundle') + 1];
  fs.copyFileSync(path.join(bundle, 'config.json'), path.join(root, 'config.json'));
  if (fs.existsSync(path.join(root, 'no-pid'))) { process.stderr.write('cannot start\\n'); process.exit(1); }
  fs.writeFileSync(argv[argv.indexOf('--pid-file') + 1], String(process.pid));
  const status = fs.existsSync(path.join(root, 'status')) ? Number(fs.readFileSync(path.join(root, 'status'), 'utf8')) : 0;
  setTimeout(() => process.exit(status), 50);
}
if (argv.includes('delete') && fs.existsSync(path.join(root, 'delete-error'))) { process.stderr.write('cannot delete: device or resource busy\\n'); process.exit(1); }
`;

describe('warmUp, crun stood in', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-warm-up-'));
  const root = path.join(dir, 'crun');
  const bundles = path.join(dir, 'bundles');
  const workDir = path.join(dir, 'warm-up');
  const crun = path.join(dir, 'crun.js');
  let commands: string[];
  /** What the warm-up logged as a warning (a clean-up that failed after an earlier failure). */
  const warned: string[] = [];
  const logger = { ...silentLogger(), warn: (obj: { err?: string }) => void warned.push(obj.err ?? ''), child: () => logger } as unknown as ReturnType<typeof silentLogger>;

  beforeAll(() => {
    fs.writeFileSync(crun, `#!${process.execPath}\n${STAND_IN_CRUN}`, { mode: 0o755 });
  });
  beforeEach(() => {
    commands = [];
    warned.length = 0;
    for (const d of [root, bundles, workDir]) fs.rmSync(d, { recursive: true, force: true });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The warm-up, with the command `failing` (if any) failing. */
  const run = (opts: { busybox?: string; failing?: string } = {}) =>
    warmUp({
      runtime: new OciRuntime(crun, root),
      bundlesRoot: bundles,
      workDir,
      busybox: opts.busybox ?? BUSYBOX,
      cgroupsPath: '/katats-warm-up',
      runCommand: async (file, args) => {
        const line = [file, ...args].join(' ');
        commands.push(line);
        if (line === opts.failing) throw new Error(`Command failed: ${line}`);
      },
      logger,
    });
  const calls = () => fs.readFileSync(path.join(root, 'calls'), 'utf8').trim().split('\n');

  it("runs the container on a copy of busybox, removes it, runs the sandbox's commands on its own things, and leaves nothing", async () => {
    await run();
    expect(calls()).toEqual([`run --bundle ${path.join(bundles, WARM_UP_CONTAINER_ID)} --pid-file ${path.join(bundles, WARM_UP_CONTAINER_ID, 'init.pid')} ${WARM_UP_CONTAINER_ID}`, `delete --force ${WARM_UP_CONTAINER_ID}`]);
    const spec = JSON.parse(fs.readFileSync(path.join(root, 'config.json'), 'utf8'));
    expect(spec.root.path).toBe(path.join(workDir, 'rootfs'));
    expect(spec.linux.cgroupsPath).toBe('/katats-warm-up');
    expect(commands).toEqual([
      `mount -t tmpfs -o nosuid,nodev,noexec,mode=0700,size=1m katats-warm-up ${path.join(workDir, 'mnt')}`,
      `umount ${path.join(workDir, 'mnt')}`,
      'ip link set dev lo up',
      'ip addr show dev lo',
      'ip route show',
    ]);
    expect(fs.existsSync(workDir)).toBe(false);
    expect(fs.readdirSync(bundles)).toEqual([]);
  });

  it('fails when the container does, after removing it and its files', async () => {
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, 'status'), '3');
    await expect(run()).rejects.toThrow('the warm-up container exited with status 3');
    expect(calls()[1]).toBe(`delete --force ${WARM_UP_CONTAINER_ID}`);
    expect(commands).toEqual([]);
    expect(fs.existsSync(workDir)).toBe(false);
    expect(fs.readdirSync(bundles)).toEqual([]);
  });

  it('fails when the container cannot start, or the busybox to copy is missing, leaving nothing', async () => {
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, 'no-pid'), '');
    await expect(run()).rejects.toThrow(`container ${WARM_UP_CONTAINER_ID} failed to start`);
    expect(calls()[1]).toBe(`delete --force ${WARM_UP_CONTAINER_ID}`);
    expect(fs.existsSync(workDir)).toBe(false);
    expect(fs.readdirSync(bundles)).toEqual([]);

    fs.rmSync(root, { recursive: true, force: true });
    await expect(run({ busybox: path.join(dir, 'no-busybox') })).rejects.toThrow('ENOENT');
    expect(fs.existsSync(root)).toBe(false); // crun never ran
    expect(fs.existsSync(workDir)).toBe(false);
    expect(commands).toEqual([]);
  });

  it('unmounts its scratch tmpfs (lazily) when a step after the mount fails, and reports that step', async () => {
    const scratch = path.join(workDir, 'mnt');
    await expect(run({ failing: `umount ${scratch}` })).rejects.toThrow(`Command failed: umount ${scratch}`);
    expect(commands.slice(-2)).toEqual([`umount ${scratch}`, `umount -l ${scratch}`]);
    expect(fs.existsSync(workDir)).toBe(false);
  });

  it('removes the bundle directory when the container cannot be made', async () => {
    // config.json a directory: GuestContainer.create fails after it made the bundle directory.
    fs.mkdirSync(path.join(bundles, WARM_UP_CONTAINER_ID, 'config.json'), { recursive: true });
    await expect(run()).rejects.toThrow('EISDIR');
    expect(fs.readdirSync(bundles)).toEqual([]);
    expect(fs.existsSync(workDir)).toBe(false);
  });

  it('fails a warm-up that went well when its container cannot be removed (a pod would meet it), and only logs that after an earlier failure', async () => {
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, 'delete-error'), '');
    await expect(run()).rejects.toThrow(/cannot remove its container: .*device or resource busy/);
    expect(warned).toEqual([]);

    fs.writeFileSync(path.join(root, 'status'), '3');
    await expect(run()).rejects.toThrow('the warm-up container exited with status 3');
    expect(warned).toEqual([expect.stringMatching(/cannot remove its container: .*device or resource busy/)]);
  });
});

describe('WarmUpGate', () => {
  it('runs one warm-up at a time, none once the sandbox is being created, and makes the sandbox wait for one under way', async () => {
    const gate = new WarmUpGate();
    const steps: string[] = [];
    let finish!: () => void;
    const first = gate.warmUp(() => new Promise<void>((resolve) => (finish = resolve)).then(() => void steps.push('warm-up done')));
    await expect(gate.warmUp(async () => undefined)).rejects.toThrow('a warm-up is running already');
    const creating = gate.podArriving().then(() => void steps.push('sandbox'));
    await new Promise((r) => setTimeout(r, 20));
    expect(steps).toEqual([]);
    finish();
    await Promise.all([first, creating]);
    expect(steps).toEqual(['warm-up done', 'sandbox']);
    await expect(gate.warmUp(async () => undefined)).rejects.toThrow('serves a sandbox already');
  });

  it("lets the sandbox be created after a failed warm-up, whose failure is the warm-up's to report", async () => {
    const gate = new WarmUpGate();
    const failed = gate.warmUp(async () => {
      throw new Error('the warm-up container exited with status 1');
    });
    await gate.podArriving();
    await expect(failed).rejects.toThrow('status 1');
  });
});
