// Spare shim daemons ([factory] spare_shims) under a real containerd and real QEMU
// guests: a pod's first Create launches a spare, the next pod's `start` claims it (the
// pod is served by that process), a new spare takes its place, none outlives the
// containerd it was made for, and CRI pods (whose containerd changes its environment
// after the first pod) use them too.
import * as fs from 'fs';
import * as path from 'path';
import { isZombie } from '../../lib/recorded-process';
import { snapshotHost, waitForNoLeaks, HostSnapshot } from '../harness/leaks';
import { KATA_HANDLER } from '../harness/containerd';
import { oneReadySpare, readySpares, shimPidAt } from '../harness/spares';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { run as runCommand } from '../harness/exec';
import { CriKataEnv, expectCtrOk, KataEnv, removeContainer, RUNTIME, RUNTIME_CLI, startCriKataEnv, startKataEnv, writeConfig } from './kata-env';

jest.setTimeout(600_000);

/** An unclaimed spare checks every 5 s that containerd still answers, and retires when it does not. */
const SPARE_RETIRE_MS = 20_000;

/** The one ready spare, once there is exactly one. */
const readySpare = (containerdState: string): Promise<number> => oneReadySpare(containerdState, 30_000);

describe('spare shim daemons', () => {
  let env: KataEnv;
  let before: HostSnapshot;
  let templatePath: string;

  beforeAll(async () => {
    before = await snapshotHost();
    // Its own template path: the suite runs `factory destroy`, which removes every template there.
    templatePath = fs.mkdtempSync('/var/tmp/kt-spares-templates-');
    env = await startKataEnv({ factory: { spareShims: 1, templatePath } });
  });

  afterAll(async () => {
    await env?.stop();
    fs.rmSync(templatePath, { recursive: true, force: true });
  });

  const spares = () => readySpares(env.containerd.state);
  const oneSpare = () => readySpare(env.containerd.state);
  const shimPidOf = (id: string) => shimPidAt(env.containerd.state, env.containerd.namespace, id);

  it('launches a spare at a pod start, and the next pod runs on it', async () => {
    expect(spares()).toEqual([]);
    const first = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spare-1', 'echo', 'first'], { timeoutMs: 400_000 });
    expectCtrOk(first, () => env.containerd.logs(), 'spare-1');
    expect(first.stdout.trim()).toBe('first');
    const spare = await oneSpare();
    // The spare is its own process, waiting: not the first pod's daemon, which has gone.
    expect(fs.readFileSync(`/proc/${spare}/cmdline`, 'utf8').split('\0')).toContain('spare');

    const started = await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, 'spare-2', 'sleep', '600'], { timeoutMs: 400_000 });
    expectCtrOk(started, () => env.containerd.logs(), 'spare-2');
    try {
      expect(await shimPidOf('spare-2')).toBe(spare);
      // It runs the pod as a daemon launched for it would: in the bundle, and exec works.
      expect(fs.readlinkSync(`/proc/${spare}/cwd`)).toBe(path.join(env.containerd.state, 'io.containerd.runtime.v2.task', env.containerd.namespace, 'spare-2'));
      const exec = await env.containerd.ctr(['task', 'exec', '--exec-id', 'e1', 'spare-2', 'echo', 'from exec'], { timeoutMs: 120_000 });
      expectCtrOk(exec, () => env.containerd.logs(), 'spare-2 exec');
      expect(exec.stdout.trim()).toBe('from exec');
      // A new spare took its place.
      const next = await oneSpare();
      expect(next).not.toBe(spare);
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), 'spare-2');
    }
    // The claimed spare exited with its pod, as any daemon does.
    const deadline = Date.now() + 30_000;
    while (fs.existsSync(`/proc/${spare}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(fs.existsSync(`/proc/${spare}`)).toBe(false);
  });

  it('starts the pod on a daemon of its own when the spare does not answer, and says why in the log', async () => {
    const stuck = await oneSpare();
    process.kill(stuck, 'SIGSTOP'); // as a spare starved of CPU would be
    const run = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spare-3', 'echo', 'third'], { timeoutMs: 400_000 });
    // start's output is containerd's address for the shim: nothing else may be in it.
    expectCtrOk(run, () => env.containerd.logs(), 'spare-3');
    expect(run.stdout.trim()).toBe('third');
    expect(fs.existsSync(`/proc/${stuck}`) && !isZombie(stuck)).toBe(false); // killed
    expect(env.containerd.logs()).toMatch(new RegExp(`no spare shim daemon took the pod: spare ${stuck}: no answer within \\d+ ms`));
    // The daemon the pod got instead launched a new spare.
    expect(await oneSpare()).not.toBe(stuck);
  });

  it('lists the waiting spare (factory status) and stops it (factory destroy), but not the pod that runs on a spare', async () => {
    const factory = (action: string) =>
      runCommand(process.execPath, [RUNTIME_CLI, 'factory', action, '--containerd-state', env.containerd.state], { timeoutMs: 60_000, env: { ...process.env, KATATS_CONFIG: env.configPath } });
    const claimed = await oneSpare();
    const started = await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, 'spare-4', 'sleep', '600'], { timeoutMs: 400_000 });
    expectCtrOk(started, () => env.containerd.logs(), 'spare-4');
    try {
      expect(await shimPidOf('spare-4')).toBe(claimed);
      const waiting = await oneSpare();
      const status = await factory('status');
      expect(status.code).toBe(0);
      expect(status.stdout).toContain('spare_shims: 1');
      expect(status.stdout).toMatch(new RegExp(`kata-ts-spares/[0-9a-f]{32}  ready 1 \\(${waiting}\\)  starting 0  being claimed 0`));
      const destroy = await factory('destroy');
      expect(destroy.code).toBe(0);
      expect(destroy.stdout).toMatch(/^removed 0 templates from \S+; stopped 1 spare shim, removed 0 spare VMs\n$/);
      expect(fs.existsSync(`/proc/${waiting}`) && !isZombie(waiting)).toBe(false);
      expect(spares()).toEqual([]);
      // The pod that runs on a former spare is a pod's daemon: untouched.
      expect(await shimPidOf('spare-4')).toBe(claimed);
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), 'spare-4');
    }
    // The next pod's Create launches a spare again, as its configuration asks.
    const next = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spare-5', 'echo', 'fifth'], { timeoutMs: 400_000 });
    expectCtrOk(next, () => env.containerd.logs(), 'spare-5');
    expect(await oneSpare()).toBeGreaterThan(0);
  });

  it('leaves no spare behind once containerd stops', async () => {
    const [spare] = spares();
    expect(spare).toBeGreaterThan(0);
    // containerd alone: the harness's stop() would also kill every process that names its directory, spares included.
    process.kill(env.containerd.pid, 'SIGTERM');
    const deadline = Date.now() + SPARE_RETIRE_MS;
    while (fs.existsSync(`/proc/${spare}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(fs.existsSync(`/proc/${spare}`)).toBe(false);
    expect(spares()).toEqual([]);
    await env.stop();
    env = undefined as unknown as KataEnv;
    expect(await waitForNoLeaks(before, SPARE_RETIRE_MS)).toEqual([]);
  });
});

describe('spare shim daemons for CRI pods', () => {
  let env: CriKataEnv;

  beforeAll(async () => {
    env = await startCriKataEnv('/tmp/kt-spares-cri-', (dir) => {
      const config = path.join(dir, 'config.json');
      writeConfig(config, path.join(dir, 'vm'), { hypervisor: { memoryMiB: 512 }, factory: { spareShims: 1 } });
      return { env: { KATATS_CONFIG: config } };
    });
  });

  afterAll(async () => {
    expect(await env?.stop()).toEqual([]);
  });

  it("runs the next pod's sandbox on the spare its first pod launched", async () => {
    const { cd, cri, images } = env;
    const podIds: string[] = [];
    try {
      const first = await cri.runPodSandbox({ config: podSandboxConfig(cd.cri, 'spare-a'), runtime_handler: KATA_HANDLER });
      podIds.push(first.pod_sandbox_id);
      // containerd's environment changes after its first pod (its NRI appends to PATH): the pool must not.
      const spare = await readySpare(cd.state);
      const config = podSandboxConfig(cd.cri, 'spare-b');
      const second = await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER });
      podIds.push(second.pod_sandbox_id);
      expect(await shimPidAt(cd.state, 'k8s.io', second.pod_sandbox_id)).toBe(spare);
      const { container_id } = await cri.createContainer({ pod_sandbox_id: second.pod_sandbox_id, config: containerConfig('app', images.busybox, ['sleep', '600']), sandbox_config: config });
      await cri.startContainer({ container_id });
      expect((await cri.containerStatus({ container_id })).status?.state).toBe('CONTAINER_RUNNING');
    } finally {
      for (const id of podIds) {
        await cri.stopPodSandbox({ pod_sandbox_id: id });
        await cri.removePodSandbox({ pod_sandbox_id: id });
      }
    }
  });
});
