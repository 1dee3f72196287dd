// Spare VMs ([factory] spare_vms) under a real containerd and real QEMU guests: a spare
// shim restores a VM from the template while it waits, the pod that claims the spare
// runs in that VM (its work dir moved to the sandbox's place, its QEMU in the pod's
// cgroup at the pod's priority), and no VM, mount or directory outlives its spare or
// its pod, also when either is SIGKILLed.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { isZombie } from '../../lib/recorded-process';
import { runningQemuPid } from '../../hypervisors/qemu';
import { warmRoot } from '../../sandbox/warm-vm';
import { snapshotHost, waitForNoLeaks, HostSnapshot } from '../harness/leaks';
import { oneReadySpare, shimPidAt, vmmsUnder } from '../harness/spares';
import { threadPriorities } from '../../lib/thread-priority';
import { DAEMON_MMAP_THRESHOLD, MMAP_THRESHOLD_VAR } from '../../shim/daemon-allocator';
import { startEnvValue } from '../harness/process-env';
import { run as runCommand } from '../harness/exec';
import { expectCtrOk, guestShell, KataEnv, removeContainer, RUNTIME, RUNTIME_CLI, sandboxWorkDir, startKataEnv } from './kata-env';

jest.setTimeout(900_000);

/** The one ready spare, once there is exactly one (its VM restored: a spare listens only after). */
const readySpare = (containerdState: string): Promise<number> => oneReadySpare(containerdState, 120_000);

/** The process's cgroup in each v1 hierarchy (and v2's), as /proc/<pid>/cgroup lists them. */
function cgroupsOf(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter((l) => /:(memory|cpu,cpuacct|pids):|^0::/.test(l)).sort().join('\n');
}

describe('spare VMs', () => {
  let env: KataEnv;
  let before: HostSnapshot;
  let templatePath: string;
  let warm: string;

  beforeAll(async () => {
    before = await snapshotHost();
    templatePath = fs.mkdtempSync('/var/tmp/kt-spare-vms-templates-');
    // The debug console: to look into the pod's VM for what the spare's warm-up left.
    env = await startKataEnv({ factory: { enableTemplate: true, templatePath, spareShims: 1, spareVms: true }, agent: { debugConsole: true } });
    warm = warmRoot(env.stateDir);
  });

  afterAll(async () => {
    await env?.stop();
    fs.rmSync(templatePath, { recursive: true, force: true });
  });

  const ctr = (args: string[]) => env.containerd.ctr(args, { timeoutMs: 400_000 });
  const factory = (action: string) =>
    runCommand(process.execPath, [RUNTIME_CLI, 'factory', action, '--containerd-state', env.containerd.state], { timeoutMs: 60_000, env: { ...process.env, KATATS_CONFIG: env.configPath } });

  it('runs the next pod in the VM its spare restored, moved to the sandbox, at the pod\'s cgroup and priority', async () => {
    const first = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'svm-1', 'echo', 'first']);
    expectCtrOk(first, () => env.containerd.logs(), 'svm-1');
    const spare = await readySpare(env.containerd.state);
    // The spare's VM runs, low priority, in its own work dir under <state_dir>/.warm.
    const [spareVm] = vmmsUnder(warm);
    expect(spareVm).toBeGreaterThan(0);
    expect(threadPriorities(spareVm).every((n) => n === 19)).toBe(true);
    // The spare started with the daemon's allocator setting; the QEMU it started did not get it (shim/daemon-allocator.ts).
    expect(startEnvValue(spare, MMAP_THRESHOLD_VAR)).toBe(DAEMON_MMAP_THRESHOLD);
    expect(startEnvValue(spareVm, MMAP_THRESHOLD_VAR)).toBeUndefined();

    const started = await ctr(['run', '-d', '--runtime', RUNTIME, env.image, 'svm-2', 'sh', '-c', 'head -c 16 /dev/urandom | od -An -tx1; date +%s; sleep 600']);
    expectCtrOk(started, () => env.containerd.logs(), 'svm-2');
    try {
      expect(await shimPidAt(env.containerd.state, env.containerd.namespace, 'svm-2')).toBe(spare);
      const workDir = sandboxWorkDir(env.stateDir, env.containerd.namespace, 'svm-2');
      // The sandbox's VM is the spare's, found from the sandbox's work dir as `delete` finds it.
      expect(runningQemuPid(workDir)).toBe(spareVm);
      expect(fs.existsSync(path.join(workDir, 'qmp.sock'))).toBe(true);
      expect(env.containerd.logs()).toContain('VM taken from a spare shim');
      // The spare had its VM warmed up (a container run and removed in the guest), and nothing of that is left in the pod's guest.
      expect(env.containerd.logs()).toMatch(new RegExp(`"pid":${spare},[^\\n]*"msg":"spare VM warmed up: a container run and removed in it, and the pod's shared filesystem mounted"`));
      const left = await guestShell(
        env.configPath,
        'svm-2',
        'for p in /run/katats-agent/warm-up /run/katats-agent/bundles/katats-warm-up /run/katats-agent/crun/katats-warm-up /sys/fs/cgroup/katats-warm-up; do [ -e $p ] && echo "LE""FT: $p"; done; echo CHE""CKED\necho "MOUNTS: $(grep -c \' /run/kata-containers/shared \' /proc/mounts) $(grep -c \' /run/kata-containers/sandbox/shm \' /proc/mounts)"\nexit\n',
        { namespace: env.containerd.namespace },
      );
      // (Split words: the terminal echoes the script, and only the output joins them.)
      expect(left.stdout).toContain('CHECKED');
      expect(left.stdout).not.toContain('LEFT:');
      // The share and /dev/shm the warm-up mounted ahead are the pod's: each mounted once.
      expect(left.stdout).toMatch(/MOUNTS: 1 1\r?\n/);
      // In the pod's cgroup with its shim, at the shim's priority.
      expect(cgroupsOf(spareVm)).toBe(cgroupsOf(spare));
      expect(cgroupsOf(spareVm)).toContain('svm-2');
      expect(threadPriorities(spareVm).every((n) => n === 0)).toBe(true);
      const exec = await env.containerd.ctr(['task', 'exec', '--exec-id', 'e1', 'svm-2', 'cat', '/proc/uptime'], { timeoutMs: 120_000 });
      expectCtrOk(exec, () => env.containerd.logs(), 'svm-2 exec');
      // A new spare, with a VM of its own, took its place.
      const next = await readySpare(env.containerd.state);
      expect(next).not.toBe(spare);
      expect(vmmsUnder(warm).filter((pid) => pid !== spareVm)).toHaveLength(1);
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), 'svm-2');
    }
    // The pod's VM and the directory it was restored in are gone with the pod.
    const deadline = Date.now() + 30_000;
    while ((fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm)).toBe(false);
    expect(fs.readdirSync(warm).filter((name) => name.startsWith(`${spare}-`))).toEqual([]);
  });

  it('gives each pod in a spare VM its own entropy and the host clock', async () => {
    const outputs: string[] = [];
    for (const id of ['svm-3', 'svm-4']) {
      await readySpare(env.containerd.state);
      const run = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, id, 'sh', '-c', 'head -c 16 /dev/urandom | od -An -tx1; date +%s']);
      expectCtrOk(run, () => env.containerd.logs(), id);
      const [bytes, seconds] = run.stdout.trim().split('\n').map((l) => l.trim());
      expect(Math.abs(Number(seconds) - Date.now() / 1000)).toBeLessThan(5);
      outputs.push(bytes);
    }
    expect(outputs[0]).not.toBe(outputs[1]);
    expect(env.containerd.logs().split('VM taken from a spare shim').length - 1).toBeGreaterThanOrEqual(3);
  });

  it("gives a pod without a network the VM with its NIC plugged ahead unused (down, leading nowhere), and unplugs that NIC when a device needs its port", async () => {
    // One more block device than the VM has free hot-plug ports while the NIC holds one (4 ports).
    const images = [0, 1, 2, 3].map((i) => path.join(env.stateDir, `..`, `svm-disk-${i}.img`));
    const loops: string[] = [];
    try {
      for (const image of images) {
        fs.writeFileSync(image, '');
        fs.truncateSync(image, 1 << 20);
        loops.push(execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim());
      }
      const spare = await readySpare(env.containerd.state);
      const started = await ctr(['run', '-d', '--runtime', RUNTIME, ...loops.flatMap((l) => ['--device', l]), env.image, 'svm-dev', 'sleep', '600']);
      expectCtrOk(started, () => env.containerd.logs(), 'svm-dev');
      try {
        expect(await shimPidAt(env.containerd.state, env.containerd.namespace, 'svm-dev')).toBe(spare);
        // (A spare's lines reach containerd's log once it serves a pod.)
        expect(env.containerd.logs()).toMatch(new RegExp(`"pid":${spare},[^\\n]*"msg":"NIC plugged ahead`));
        expect(env.containerd.logs()).toMatch(new RegExp(`"pid":${spare},[^\\n]*"msg":"the NIC plugged ahead, unused by this pod, unplugged: a device needs its port"`));
        const seen = await env.containerd.ctr(['task', 'exec', '--exec-id', 'disks', 'svm-dev', 'sh', '-c', `for d in ${loops.join(' ')}; do [ -b $d ] && echo "disk $d"; done`], { timeoutMs: 120_000 });
        expectCtrOk(seen, () => env.containerd.logs(), 'svm-dev exec');
        expect(seen.stdout.trim().split('\n')).toEqual(loops.map((l) => `disk ${l}`));
        // The guest has no NIC left: only its loopback.
        const guest = await guestShell(env.configPath, 'svm-dev', 'echo LINKS: $(ls /sys/class/net)\nexit\n', { namespace: env.containerd.namespace });
        expect(guest.stdout).toMatch(/LINKS: lo\r?\n/);
      } finally {
        await removeContainer((args) => env.containerd.ctr(args), 'svm-dev');
      }
    } finally {
      for (const loop of loops) execFileSync('losetup', ['-d', loop]);
      for (const image of images) fs.rmSync(image, { force: true });
    }
  });

  it("leaves a pod without a network in a spare's VM with the NIC plugged ahead down, in a namespace of nothing but it", async () => {
    const spare = await readySpare(env.containerd.state);
    const [spareVm] = vmmsUnder(warm);
    const started = await ctr(['run', '-d', '--runtime', RUNTIME, env.image, 'svm-nonet', 'sleep', '600']);
    expectCtrOk(started, () => env.containerd.logs(), 'svm-nonet');
    try {
      expect(await shimPidAt(env.containerd.state, env.containerd.namespace, 'svm-nonet')).toBe(spare);
      const guest = await guestShell(env.configPath, 'svm-nonet', 'ip -o link show\nip -o addr show\necho DO""NE\nexit\n', { namespace: env.containerd.namespace });
      expect(guest.stdout).toContain('DONE');
      const eth = guest.stdout.split('\n').filter((l) => /^\d+: eth0/.test(l));
      expect(eth).toHaveLength(1);
      // Down: busybox prints the link's flags, and UP is not among them.
      expect(eth[0]).toMatch(/^\d+: eth0: <[^>]*>/);
      expect(eth[0]).not.toMatch(/^\d+: eth0: <[^>]*\bUP\b/);
      expect(guest.stdout.split('\n').filter((l) => /^\d+: eth0\s+inet/.test(l))).toEqual([]);
      // Its tap is all the VMM's namespace has besides its loopback.
      const links = (JSON.parse(execFileSync('nsenter', [`--net=/proc/${spareVm}/ns/net`, '--', 'ip', '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname);
      expect(links).toEqual(['lo', 'tap0_kata']);
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), 'svm-nonet');
    }
  });

  it('ends a spare\'s VM and removes its directory when the spare is stopped (SIGTERM)', async () => {
    const spare = await readySpare(env.containerd.state);
    const [spareVm] = vmmsUnder(warm);
    process.kill(spare, 'SIGTERM');
    const deadline = Date.now() + 20_000;
    while (fs.existsSync(`/proc/${spare}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(`/proc/${spare}`)).toBe(false);
    expect(fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm)).toBe(false);
    expect(fs.readdirSync(warm)).toEqual([]);
    // The next pod starts as without a spare, and launches one again.
    const run = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'svm-term', 'true']);
    expectCtrOk(run, () => env.containerd.logs(), 'svm-term');
  });

  it('ends a SIGKILLed spare\'s VM with it; factory destroy removes its directory', async () => {
    const spare = await readySpare(env.containerd.state);
    const [spareVm] = vmmsUnder(warm);
    process.kill(spare, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm)).toBe(false);
    expect(fs.readdirSync(warm).filter((name) => name.startsWith(`${spare}-`))).toHaveLength(1);
    const destroy = await factory('destroy');
    expect(destroy.code).toBe(0);
    expect(destroy.stdout).toMatch(/removed 1 spare VM\n/);
    expect(fs.readdirSync(warm)).toEqual([]);
  });

  it('cleans up after a pod whose daemon (a former spare) is SIGKILLed', async () => {
    const first = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'svm-5', 'true']);
    expectCtrOk(first, () => env.containerd.logs(), 'svm-5');
    const spare = await readySpare(env.containerd.state);
    const [spareVm] = vmmsUnder(warm);
    const started = await ctr(['run', '-d', '--runtime', RUNTIME, env.image, 'svm-6', 'sleep', '600']);
    expectCtrOk(started, () => env.containerd.logs(), 'svm-6');
    expect(await shimPidAt(env.containerd.state, env.containerd.namespace, 'svm-6')).toBe(spare);
    process.kill(spare, 'SIGKILL');
    await removeContainer((args) => env.containerd.ctr(args), 'svm-6');
    expect(fs.existsSync(`/proc/${spareVm}`) && !isZombie(spareVm)).toBe(false);
    // containerd runs our `delete` when it sees the shim gone, on its own time.
    const workDir = sandboxWorkDir(env.stateDir, env.containerd.namespace, 'svm-6');
    // Its work dir goes first, then (the same `delete`, a moment later) the spare's dir under .warm.
    const spareDirs = () => fs.readdirSync(warm).filter((name) => name.startsWith(`${spare}-`));
    const deadline = Date.now() + 30_000;
    while ((fs.existsSync(workDir) || spareDirs().length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    if (fs.existsSync(workDir)) console.log(fs.readdirSync(workDir), fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes('svm-6') || l.includes('.warm')).join('\n'));
    expect(fs.existsSync(workDir)).toBe(false);
    // What the VM's files lived in went with the pod's `delete`.
    expect(spareDirs()).toEqual([]);
  });

  it('leaves nothing behind once containerd stops: the waiting spare ends its VM as it retires', async () => {
    const run = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'svm-7', 'true']);
    expectCtrOk(run, () => env.containerd.logs(), 'svm-7');
    const spare = await readySpare(env.containerd.state);
    const [spareVm] = vmmsUnder(warm);
    // containerd alone: the harness's stop() would also kill every process that names its directory, spares included.
    process.kill(env.containerd.pid, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while ((fs.existsSync(`/proc/${spare}`) || fs.existsSync(`/proc/${spareVm}`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(fs.existsSync(`/proc/${spare}`)).toBe(false);
    expect(fs.existsSync(`/proc/${spareVm}`)).toBe(false);
    expect(fs.readdirSync(warm)).toEqual([]);
    await env.stop();
    env = undefined as unknown as KataEnv;
    expect(await waitForNoLeaks(before, 30_000)).toEqual([]);
  });
});
