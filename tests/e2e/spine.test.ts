// The spine: containerd → our shim → QEMU (TCG) → guest agent → crun, and back.
import * as fs from 'fs';
import * as path from 'path';
import * as os from 'os';
import { createTask, deleteTask, killTask } from '../harness/containerd-api';
import { diffSnapshots, HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { EventLog } from './events';
import { expectCtrExit, expectCtrOk, KataEnv, RUNTIME, startKataEnv, stateDirsLeft } from './kata-env';

jest.setTimeout(300_000);

describe('ctr run --runtime io.containerd.kata.v2', () => {
  let env: KataEnv;
  let before: HostSnapshot;
  /** With containerd up but no container run: what "nothing left" compares against. */
  let baseline: HostSnapshot;

  beforeAll(async () => {
    before = await snapshotHost();
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });

  afterAll(async () => {
    await env?.stop();
  });

  async function expectNothingLeft(): Promise<void> {
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks).toEqual([]);
    expect(stateDirsLeft(env.stateDir)).toEqual([]);
  }

  it('runs the command in a VM, prints its output and returns its exit code', async () => {
    const events = new EventLog(env.containerd);
    try {
      const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spine-1', 'sh', '-c', 'echo hi; exit 3'], { timeoutMs: 240_000 });
      expectCtrExit(result, 3, () => env.containerd.logs(), 'spine-1');
      expect({ stdout: result.stdout, code: result.code }).toEqual({ stdout: 'hi\n', code: 3 });
      // Events published by the shim reached containerd, in lifecycle order.
      await events.waitFor('/tasks/delete', 'spine-1');
      expect(events.topicsFor('spine-1')).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    } finally {
      events.close();
    }
    await expectNothingLeft();
  });

  it("reports the guest's kernel, not the host's", async () => {
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spine-2', 'uname', '-r'], { timeoutMs: 240_000 });
    expectCtrOk(result, () => env.containerd.logs(), 'spine-2');
    expect(result.stdout.trim()).toMatch(/^\d+\.\d+/);
    expect(result.stdout.trim()).not.toBe(os.release());
    await expectNothingLeft();
  });

  it('passes stdin through and delivers a large output intact', async () => {
    const input = 'line one\nline two\n';
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spine-3', 'sh', '-c', 'cat; seq 1 20000'], { timeoutMs: 240_000, input });
    expectCtrOk(result, () => env.containerd.logs(), 'spine-3');
    const expected = input + Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join('');
    expect(result.stdout.length).toBe(expected.length);
    expect(result.stdout).toBe(expected);
    await expectNothingLeft();
  });

  it('fails clearly when the entrypoint does not exist in the image, leaving nothing behind', async () => {
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'spine-4', '/bin/no-such-program'], { timeoutMs: 240_000 });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("executable '/bin/no-such-program' not found in the image");
    const tasks = await env.containerd.ctr(['containers', 'ls', '-q']);
    if (tasks.stdout.includes('spine-4')) await env.containerd.ctr(['containers', 'rm', 'spine-4']);
    await expectNothingLeft();
  });

  it('a task created and never started is killed and deleted, as with runc', async () => {
    // kubelet giving up between CreateContainer and StartContainer, or an interrupted
    // `ctr run`, leaves a CREATED task: it must not be stuck there.
    const id = 'spine-created';
    const api = { address: env.containerd.address, namespace: env.containerd.namespace };
    const events = new EventLog(env.containerd);
    try {
      expect((await env.containerd.ctr(['containers', 'create', '--runtime', RUNTIME, env.image, id, 'sleep', '600'])).code).toBe(0);
      expect((await createTask(api, id)).pid).toBeGreaterThan(0);
      expect((await env.containerd.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`^${id}\\s+\\d+\\s+CREATED`, 'm'));
      await killTask(api, id, 9);
      expect(await events.waitForExit(id, '', 60_000)).toContain('"exit_status":137');
      expect((await deleteTask(api, id)).exit_status).toBe(137);
      expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    } finally {
      events.close();
    }
    await expectNothingLeft();
  });

  it("after the shim is killed, containerd's `delete` call cleans up the VM and reports 137", async () => {
    const id = 'spine-5';
    const events = new EventLog(env.containerd);
    try {
      expectCtrOk(await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 }), () => env.containerd.logs(), id);
      const bundle = path.join(env.containerd.state, 'io.containerd.runtime.v2.task', env.containerd.namespace, id);
      const shimPid = Number(fs.readFileSync(path.join(bundle, 'shim.pid'), 'utf8').split(' ')[0]);
      expect(fs.readFileSync(`/proc/${shimPid}/cmdline`, 'utf8')).toContain('dist/shim/main.js');
      process.kill(shimPid, 'SIGKILL');
      // containerd notices the lost connection and runs `containerd-shim-kata-v2 delete`.
      expect(await events.waitForExit(id, '', 60_000)).toContain('"exit_status":137');
      await env.containerd.ctr(['task', 'delete', id]);
      expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    } finally {
      events.close();
    }
    await expectNothingLeft();
  });

  it('leaves no VM, shim, socket or mount once containerd is gone', async () => {
    await env.stop();
    const leaks = diffSnapshots(before, await snapshotHost());
    expect(leaks).toEqual([]);
    env = undefined as unknown as KataEnv;
  });
});
