// The rest of the Task API through containerd, against real guests (QEMU TCG).
import { createHash } from 'crypto';
import * as fs from 'fs';
import { waitForNoLeaks, snapshotHost, HostSnapshot } from '../harness/leaks';
import { updateTaskResources } from '../harness/containerd-api';
import { EventLog } from './events';
import { expectCtrExit, expectCtrOk, KataEnv, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);
const VM_MS = 240_000;

describe('Task API through containerd', () => {
  let env: KataEnv;
  let events: EventLog;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv();
    events = new EventLog(env.containerd);
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });

  afterAll(async () => {
    events?.close();
    await env?.stop();
  });

  const ctr = (args: string[], opts: { timeoutMs?: number; input?: string } = {}) => env.containerd.ctr(args, { timeoutMs: VM_MS, ...opts });

  async function taskStatus(id: string): Promise<string | undefined> {
    const { stdout } = await ctr(['task', 'ls']);
    return stdout.split('\n').map((l) => l.trim().split(/\s+/)).find((cols) => cols[0] === id)?.[2];
  }

  describe('a running container', () => {
    const id = 'api-run';

    beforeAll(async () => {
      const started = await ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600']);
      expectCtrOk(started, () => env.containerd.logs(), id);
      expect(started.stderr).toBe('');
      expect(await taskStatus(id)).toBe('RUNNING');
    });

    it('execs a process that prints and returns its own exit code, with exec events', async () => {
      const result = await ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo from-exec; echo err-exec >&2; exit 5']);
      expect(result).toMatchObject({ code: 5, stdout: 'from-exec\n', stderr: 'err-exec\n' });
      expect(await events.waitForExit(id, 'e1')).toContain('"exit_status":5');
      const execTopics = events.events.filter((e) => e.line.includes('e1')).map((e) => e.topic);
      expect(execTopics).toEqual(expect.arrayContaining(['/tasks/exec-added', '/tasks/exec-started', '/tasks/exit']));
    });

    it('feeds stdin to an exec and sees it closed', async () => {
      const result = await ctr(['task', 'exec', '--exec-id', 'e2', id, 'sh', '-c', 'wc -c'], { input: 'twelve bytes' });
      expect(result).toMatchObject({ code: 0, stdout: '12\n' });
    });

    it('fails an exec of a program the image lacks, clearly', async () => {
      const result = await ctr(['task', 'exec', '--exec-id', 'e3', id, '/bin/nope']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("executable '/bin/nope' not found in the image");
    });

    it('lists the container processes (Pids)', async () => {
      const { stdout, code } = await ctr(['task', 'ps', id]);
      expect(code).toBe(0);
      const pids = stdout.split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0])).filter((n) => n > 0);
      expect(pids.length).toBeGreaterThanOrEqual(1);
    });

    it('reports real cgroup metrics from the guest (ctr task metrics)', async () => {
      const { stdout, code, stderr } = await ctr(['task', 'metrics', id]);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const usage = /memory\.usage(?:_in_bytes)?\s+(\d+)/.exec(stdout);
      expect(usage).not.toBeNull();
      expect(Number(usage![1])).toBeGreaterThan(0);
      expect(stdout).toMatch(/pids\.current\s+[1-9]/);
    });

    it('pauses and resumes, with status transitions and events', async () => {
      expect((await ctr(['task', 'pause', id])).code).toBe(0);
      expect(await taskStatus(id)).toBe('PAUSED');
      await events.waitFor('/tasks/paused', id);
      expect((await ctr(['task', 'pause', id])).stderr).toMatch(/is paused; only a running container can be paused/);
      expect((await ctr(['task', 'resume', id])).code).toBe(0);
      expect(await taskStatus(id)).toBe('RUNNING');
      await events.waitFor('/tasks/resumed', id);
      const after = await ctr(['task', 'exec', '--exec-id', 'e4', id, 'echo', 'alive']);
      expect(after.stdout).toBe('alive\n');
    });

    it('updates the memory limit of the running container (Tasks.Update over gRPC)', async () => {
      // The guest's cgroup (memory.max) as ctr task metrics reports it.
      const before = await ctr(['task', 'metrics', id]);
      expect(before.stdout).not.toMatch(/memory\.usage_limit\s+67108864\b/);
      await updateTaskResources(env.containerd.address, env.containerd.namespace, id, { memory: { limit: 67108864 } });
      const after = await ctr(['task', 'metrics', id]);
      expect(after.stdout).toMatch(/memory\.usage_limit\s+67108864\b/);
    });

    it('refuses Checkpoint with the reason', async () => {
      const result = await ctr(['task', 'checkpoint', id]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('checkpointing a VM-isolated container is not supported');
    });

    it('reports an exec killed by a signal as 128+N, like runc', async () => {
      const exec = env.containerd.ctr(['task', 'exec', '--exec-id', 'e6', id, 'sleep', '600'], { timeoutMs: VM_MS });
      await events.waitFor('/tasks/exec-started', '"e6"');
      expect((await ctr(['task', 'kill', '--exec-id', 'e6', '-s', 'SIGTERM', id])).code).toBe(0);
      expect((await exec).code).toBe(143);
      expect(await events.waitForExit(id, 'e6')).toContain('"exit_status":143');
    });

    it('kill -9 stops it with exit status 137', async () => {
      expect((await ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
      const exit = await events.waitForExit(id);
      expect(exit).toContain('"exit_status":137');
      expect(await taskStatus(id)).toBe('STOPPED');
      expect((await ctr(['task', 'delete', id])).code).toBe(0);
      expect((await ctr(['containers', 'rm', id])).code).toBe(0);
      expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
    });
  });

  it('an OOM-killed container produces /tasks/oom and exits 137', async () => {
    const result = await ctr(['run', '--rm', '--runtime', RUNTIME, '--memory-limit', String(32 * 1024 * 1024), env.image, 'api-oom', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=96M', 'count=1']);
    expectCtrExit(result, 137, () => env.containerd.logs(), 'api-oom');
    await events.waitFor('/tasks/oom', 'api-oom');
  });

  it('streams 10 MiB of stdout intact before Wait returns', async () => {
    const size = 10 * 1024 * 1024;
    const result = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'api-big', 'sh', '-c', `yes 0123456789abcdef | head -c ${size} | tee /tmp/out; sha256sum /tmp/out >&2`]);
    expectCtrOk(result, () => env.containerd.logs(), 'api-big');
    expect(result.stdout.length).toBe(size);
    const hostSum = createHash('sha256').update(result.stdout).digest('hex');
    expect(result.stderr.split(/\s+/)[0]).toBe(hostSum);
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });

  it('reports every task exited when the VM dies, and containerd sees it stopped', async () => {
    const id = 'api-vmdeath';
    expectCtrOk(await ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600']), () => env.containerd.logs(), id);
    const qemuPid = Number(fs.readFileSync(`${env.stateDir}/${env.containerd.namespace}/${id}/qemu.pid`, 'utf8'));
    process.kill(qemuPid, 'SIGKILL');
    const exit = await events.waitForExit(id);
    expect(exit).toMatch(/"exit_status":[1-9]/); // zero would be omitted from the JSON
    expect(await taskStatus(id)).toBe('STOPPED');
    const pids = await ctr(['task', 'ps', id]);
    expect(pids.code === 0 ? pids.stdout.split('\n').filter((l) => /^\s*\d+/.test(l)) : []).toEqual([]);
    expect((await ctr(['task', 'delete', id])).code).toBe(0);
    expect((await ctr(['containers', 'rm', id])).code).toBe(0);
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });

  it('a VM death with two containers and an exec in the pod ends each with its own non-zero exit, and leaves nothing', async () => {
    // Grouped as CRI groups a pod: the sandbox container, then one that joins it.
    const pod = 'api-death-pod';
    const app = 'api-death-app';
    const inPod = (type: string) => ['--annotation', `io.kubernetes.cri.sandbox-id=${pod}`, '--annotation', `io.kubernetes.cri.container-type=${type}`];
    expectCtrOk(await ctr(['run', '-d', '--runtime', RUNTIME, ...inPod('sandbox'), env.image, pod, 'sleep', '600']), () => env.containerd.logs(), pod);
    expectCtrOk(await ctr(['run', '-d', '--runtime', RUNTIME, ...inPod('container'), env.image, app, 'sleep', '600']), () => env.containerd.logs(), app);
    const exec = env.containerd.ctr(['task', 'exec', '--exec-id', 'death-exec', app, 'sleep', '600'], { timeoutMs: VM_MS });
    await events.waitFor('/tasks/exec-started', '"death-exec"');

    // One VM holds all three: both tasks report its QEMU's pid, and only the pod has a state dir.
    const qemuPid = Number(fs.readFileSync(`${env.stateDir}/${env.containerd.namespace}/${pod}/qemu.pid`, 'utf8'));
    const { stdout: listed } = await ctr(['task', 'ls']);
    for (const id of [pod, app]) expect(listed).toMatch(new RegExp(`^${id}\\s+${qemuPid}\\s+RUNNING`, 'm'));
    expect(fs.existsSync(`${env.stateDir}/${env.containerd.namespace}/${app}`)).toBe(false);

    process.kill(qemuPid, 'SIGKILL');
    const exits = await Promise.all([events.waitForExit(pod), events.waitForExit(app), events.waitForExit(app, 'death-exec')]);
    for (const exit of exits) expect(exit).toMatch(/"exit_status":[1-9]/); // zero would be omitted from the JSON
    // As runc's shim does it: an exec's exit goes out before its container's.
    const order = events.events.map((e) => e.line);
    expect(order.indexOf(exits[2])).toBeLessThan(order.indexOf(exits[1]));
    expect((await exec).code).not.toBe(0);
    for (const id of [pod, app]) expect(await taskStatus(id)).toBe('STOPPED');

    for (const id of [app, pod]) {
      expect((await ctr(['task', 'delete', id])).code).toBe(0);
      expect((await ctr(['containers', 'rm', id])).code).toBe(0);
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });
});
