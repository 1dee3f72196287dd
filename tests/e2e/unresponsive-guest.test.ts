// A guest that stops answering must not make its pod unkillable: with QEMU SIGSTOPped
// (nothing in the VM runs, QMP and the agent are silent), `ctr task kill -s KILL` then
// `ctr task delete` finish within the kill grace (10 s) + 20 s, the task ends with
// 137, and nothing is left. Real containerd, real QEMU.
import * as fs from 'fs';
import * as path from 'path';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { EventLog } from './events';
import { KataEnv, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);
const KILL_GRACE_MS = 10_000;

describe('a guest that stops answering', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;
  beforeAll(async () => {
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('QEMU SIGSTOPped: kill -s KILL and delete finish within the grace + 20 s, with 137 for the init and its exec', async () => {
    const id = 'frozen';
    const events = new EventLog(env.containerd);
    let qemuPid = 0;
    try {
      expect(await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 })).toMatchObject({ code: 0 });
      expect(await env.containerd.ctr(['task', 'exec', '-d', '--exec-id', 'bg', id, 'sleep', '600'])).toMatchObject({ code: 0 });
      qemuPid = Number(fs.readFileSync(path.join(env.stateDir, env.containerd.namespace, id, 'qemu.pid'), 'utf8'));
      process.kill(qemuPid, 'SIGSTOP');
      const started = Date.now();
      expect(await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
      expect(await events.waitForExit(id, '', KILL_GRACE_MS + 20_000)).toContain('"exit_status":137');
      expect(await events.waitForExit(id, 'bg', 5_000)).toContain('"exit_status":137');
      expect(await env.containerd.ctr(['task', 'delete', id], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
      expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS + 20_000);
      expect(await env.containerd.ctr(['containers', 'rm', id])).toMatchObject({ code: 0 });
    } finally {
      events.close();
      if (qemuPid) {
        try {
          process.kill(qemuPid, 'SIGCONT');
        } catch {
          /* gone, as it should be */
        }
      }
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });
});
