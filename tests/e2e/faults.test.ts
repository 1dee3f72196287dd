// Faults and load: a hung guest, many runs in a row and at once. After each, the
// host must hold nothing of ours (processes, mounts, sockets, cgroups, netns).
import * as fs from 'fs';
import * as path from 'path';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { EventLog } from './events';
import { KataEnv, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(1_200_000);
const CALL_TIMEOUT_MS = 5000;

// A short agent call timeout, so the hung-guest case is quick. Only that case gets
// it: under load (five TCG guests booting beside a CPU hog) a healthy guest's
// CreateContainer can take longer than 5 s, and ctr then fails with exit 1 and the
// timeout on stderr, which a run that expects `exit 1` mistakes for its own.
describe('a hung guest', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv({ agent: { callTimeoutMs: CALL_TIMEOUT_MS } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('a hung guest makes calls fail with a clear timeout, and the task can still be killed', async () => {
    const id = 'fault-hang';
    const events = new EventLog(env.containerd);
    try {
      expect((await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 })).code).toBe(0);
      const qemu = Number(fs.readFileSync(`${env.stateDir}/${env.containerd.namespace}/${id}/qemu.pid`, 'utf8'));
      process.kill(qemu, 'SIGSTOP'); // the whole VM freezes: the agent cannot answer
      try {
        const started = Date.now();
        const ps = await env.containerd.ctr(['task', 'ps', id], { timeoutMs: 60_000 });
        expect(ps.code).not.toBe(0);
        expect(ps.stderr).toContain(`guest agent ListProcesses: no answer within ${CALL_TIMEOUT_MS} ms`);
        expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS + 10_000); // bounded, not hung
      } finally {
        process.kill(qemu, 'SIGCONT');
      }
      expect((await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
      expect(await events.waitForExit(id)).toContain('"exit_status":137');
      expect((await env.containerd.ctr(['task', 'delete', id])).code).toBe(0);
      expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    } finally {
      events.close();
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });

});

describe('faults and load', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('the shim keeps running across a containerd restart, and containerd reconnects to it', async () => {
    const id = 'fault-restart';
    expect((await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 })).code).toBe(0);
    const bundle = path.join(env.containerd.state, 'io.containerd.runtime.v2.task', env.containerd.namespace, id);
    const shimPid = Number(fs.readFileSync(path.join(bundle, 'shim.pid'), 'utf8').split(' ')[0]);

    await env.containerd.restart();

    expect(fs.existsSync(`/proc/${shimPid}`)).toBe(true);
    const tasks = await env.containerd.ctr(['task', 'ls']);
    expect(tasks.stdout).toMatch(new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, 'm'));
    const exec = await env.containerd.ctr(['task', 'exec', '--exec-id', 'after-restart', id, 'echo', 'still here'], { timeoutMs: 60_000 });
    expect(exec).toMatchObject({ code: 0, stdout: 'still here\n' });
    // Events reach the new containerd too: the shim's publisher reconnected.
    const events = new EventLog(env.containerd);
    try {
      expect((await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
      expect(await events.waitForExit(id)).toContain('"exit_status":137');
    } finally {
      events.close();
    }
    expect((await env.containerd.ctr(['task', 'delete', id])).code).toBe(0);
    expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    // The restarted containerd is new to the snapshot; everything else must be gone.
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks.filter((line) => !(line.startsWith(`process ${env.containerd.pid} `) && line.includes('containerd')))).toEqual([]);
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });

  it('50 runs in a row each print their output and exit code, and leave nothing', async () => {
    for (let i = 0; i < 50; i++) {
      const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, `seq-${i}`, 'sh', '-c', `echo run-${i}; exit ${i % 7}`], { timeoutMs: 240_000 });
      // stderr is part of the comparison: ctr's own failures also exit 1, with the reason there.
      expect({ i, stdout: result.stdout, code: result.code, stderr: result.stderr }).toEqual({ i, stdout: `run-${i}\n`, code: i % 7, stderr: expect.not.stringContaining('ctr:') });
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });

  it('5 runs at once, each in its own VM, and nothing left', async () => {
    const runs = await Promise.all(
      Array.from({ length: 5 }, (_, i) => env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, `par-${i}`, 'sh', '-c', `echo par-${i}; exit ${i + 1}`], { timeoutMs: 400_000 })),
    );
    const wrong = runs.map((r, i) => (r.stdout === `par-${i}\n` && r.code === i + 1 && !r.stderr.includes('ctr:') ? '' : `par-${i}`)).filter(Boolean);
    // When a run comes back wrong, keep what the shims logged for it beside ctr's own words.
    if (wrong.length > 0) console.log(`wrong runs ${wrong.join(', ')}; their log lines:\n${env.containerd.logs().split('\n').filter((l) => wrong.some((id) => l.includes(`"${id}"`)) && /"level":(40|50)|discard|FIFO/.test(l)).join('\n')}`);
    expect(runs.map((r) => ({ stdout: r.stdout, code: r.code, stderr: r.stderr }))).toEqual(
      Array.from({ length: 5 }, (_, i) => ({ stdout: `par-${i}\n`, code: i + 1, stderr: expect.not.stringContaining('ctr:') })),
    );
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });
});

// containerd 1.6 logs every event a shim forwards at debug level ("event forwarded"
// with its topic); `ctr events` after the restart may subscribe a moment after the
// shim's retry has landed, so the log of the restarted containerd is the witness.
describe('containerd restarted while a container exits', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;
  beforeAll(async () => {
    env = await startKataEnv({ containerdLogLevel: 'debug' });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('the exit event, kept by the shim while containerd is down, reaches containerd once it is back', async () => {
    const id = 'exit-while-down';
    const trigger = fs.mkdtempSync('/tmp/kt-trigger-');
    // Ends with 3 once the host creates `go` in a directory the container sees.
    const script = 'while [ ! -e /trigger/go ]; do sleep 0.2; done; exit 3';
    const mount = `type=bind,src=${trigger},dst=/trigger,options=rbind:ro`;
    expect((await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, '--mount', mount, env.image, id, 'sh', '-c', script], { timeoutMs: 240_000 })).code).toBe(0);
    const events = new EventLog(env.containerd, { resubscribe: true });
    let logBeforeRestart = 0;
    try {
      await env.containerd.restart(async () => {
        logBeforeRestart = env.containerd.logs().length;
        fs.writeFileSync(path.join(trigger, 'go'), '');
        // The container exits now, with nobody to tell: the shim keeps the event and retries.
        await new Promise((r) => setTimeout(r, 8000));
      });
      const forwarded = /msg="event forwarded" ns=katats-test topic=\/tasks\/exit/;
      for (let i = 0; i < 300 && !forwarded.test(env.containerd.logs().slice(logBeforeRestart)); i++) await new Promise((r) => setTimeout(r, 100));
      expect(env.containerd.logs().slice(logBeforeRestart)).toMatch(forwarded);
      // Seen by a subscriber too when it was quick enough; then it carries the shim's status.
      const seen = events.events.find((e) => e.topic === '/tasks/exit' && e.line.includes(`"id":"${id}"`));
      if (seen) expect(seen.line).toContain('"exit_status":3');
      expect(await env.containerd.ctr(['task', 'ls'])).toMatchObject({ stdout: expect.stringMatching(new RegExp(`^${id}\\s+\\d+\\s+STOPPED`, 'm')) });
    } finally {
      events.close();
    }
    const deleted = await env.containerd.ctr(['task', 'delete', id]);
    expect(deleted.code).toBe(0);
    expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    fs.rmSync(trigger, { recursive: true, force: true });
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks.filter((line) => !(line.startsWith(`process ${env.containerd.pid} `) && line.includes('containerd')))).toEqual([]);
  });
});
