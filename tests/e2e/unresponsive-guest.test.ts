// A guest that stops answering must not make its pod unkillable: with QEMU SIGSTOPped
// (nothing in the VM runs, QMP and the agent are silent), or only the agent stopped
// by root in the guest, `ctr task kill -s KILL` then `ctr task delete` finish within
// the kill grace (10 s) + 20 s, the task ends with 137, and nothing is left. An agent
// killed outright powers the VM off (guest/init): its processes end at once as lost.
// A CRI StopPodSandbox on a frozen pod returns. Real containerd, real QEMU.
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTreeOnceEmpty } from '../harness/cgroups';
import { KATA_HANDLER } from '../harness/containerd';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { EventLog } from './events';
import { CriKataEnv, guestShell, KataEnv, RUNTIME, startCriKataEnv, startKataEnv, expectCtrOk } from './kata-env';

jest.setTimeout(300_000);
const KILL_GRACE_MS = 10_000;

function resume(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    /* gone, as it should be */
  }
}

describe('a guest that stops answering', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;
  beforeAll(async () => {
    env = await startKataEnv({ agent: { debugConsole: true } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  const qemuPidOf = (id: string): number => Number(fs.readFileSync(path.join(env.stateDir, env.containerd.namespace, id, 'qemu.pid'), 'utf8'));

  /** A pod running `sleep` as its init and as exec 'bg'. */
  async function podWithExec(id: string): Promise<void> {
    expectCtrOk(await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 }), () => env.containerd.logs(), id);
    expect(await env.containerd.ctr(['task', 'exec', '-d', '--exec-id', 'bg', id, 'sleep', '600'])).toMatchObject({ code: 0 });
  }

  /** kill -s KILL then delete, within the grace + 20 s; both processes end with 137. */
  async function killAndDeleteWithinGrace(id: string, events: EventLog): Promise<void> {
    const started = Date.now();
    expect(await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
    expect(await events.waitForExit(id, '', KILL_GRACE_MS + 20_000)).toContain('"exit_status":137');
    expect(await events.waitForExit(id, 'bg', 5_000)).toContain('"exit_status":137');
    expect(await env.containerd.ctr(['task', 'delete', id], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
    expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS + 20_000);
    expect(await env.containerd.ctr(['containers', 'rm', id])).toMatchObject({ code: 0 });
  }

  it('QEMU SIGSTOPped: kill -s KILL and delete finish within the grace + 20 s, with 137 for the init and its exec', async () => {
    const id = 'frozen';
    const events = new EventLog(env.containerd);
    let qemuPid = 0;
    try {
      await podWithExec(id);
      qemuPid = qemuPidOf(id);
      process.kill(qemuPid, 'SIGSTOP');
      await killAndDeleteWithinGrace(id, events);
    } finally {
      events.close();
      if (qemuPid) resume(qemuPid);
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });

  it('the agent SIGSTOPped by root in the guest: kill -s KILL and delete finish within the grace + 20 s, with 137', async () => {
    const id = 'agent-stopped';
    const events = new EventLog(env.containerd);
    try {
      await podWithExec(id);
      // The VM keeps running; only the agent (node, the child of the guest's init) is silent.
      const shell = await guestShell(env.configPath, id, 'kill -STOP $(pidof node) && echo agent-stopped\nexit\n', { namespace: env.containerd.namespace });
      expect(shell.stdout).toContain('agent-stopped');
      await killAndDeleteWithinGrace(id, events);
    } finally {
      events.close();
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });

  it('the agent killed by root in the guest: the VM powers off, both processes end as lost (255), and delete finishes', async () => {
    const id = 'agent-killed';
    const events = new EventLog(env.containerd);
    try {
      await podWithExec(id);
      await guestShell(env.configPath, id, 'kill -KILL $(pidof node)\n', { namespace: env.containerd.namespace }).catch(() => undefined);
      // Nobody signalled them: the init and the exec were lost with the VM, and say so.
      expect(await events.waitForExit(id, '', 60_000)).toContain('"exit_status":255');
      expect(await events.waitForExit(id, 'bg', 5_000)).toContain('"exit_status":255');
      const started = Date.now();
      await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 60_000 }); // may answer "already finished"
      expect(await env.containerd.ctr(['task', 'delete', id], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
      expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS + 20_000);
      expect(await env.containerd.ctr(['containers', 'rm', id])).toMatchObject({ code: 0 });
    } finally {
      events.close();
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });
});

describe('a frozen CRI pod', () => {
  let env: CriKataEnv;
  beforeAll(async () => {
    env = await startCriKataEnv('/tmp/kt-frozen-cri-');
  });
  afterAll(async () => {
    expect(await env?.stop()).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  it('StopPodSandbox returns within the grace + 20 s with QEMU SIGSTOPped, and RemovePodSandbox leaves nothing', async () => {
    const { cd, cri, images } = env;
    const config = podSandboxConfig(cd.cri, 'frozen-pod');
    const { pod_sandbox_id: podId } = await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER });
    const { container_id: containerId } = await cri.createContainer({ pod_sandbox_id: podId, config: containerConfig('app', images.busybox, ['sleep', '600']), sandbox_config: config });
    await cri.startContainer({ container_id: containerId });
    const qemuPids = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(podId) && fs.readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('qemu');
        } catch {
          return false;
        }
      })
      .map(Number);
    expect(qemuPids).toHaveLength(1);
    process.kill(qemuPids[0], 'SIGSTOP');
    try {
      const started = Date.now();
      await cri.stopPodSandbox({ pod_sandbox_id: podId }, { timeoutMs: KILL_GRACE_MS + 60_000 });
      expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS + 20_000);
      await cri.removePodSandbox({ pod_sandbox_id: podId }, { timeoutMs: 60_000 });
    } finally {
      resume(qemuPids[0]);
    }
    // kubelet removes the pod cgroup once the shim and QEMU have left it; the runtime only removes what it made.
    expect((await removeCgroupTreeOnceEmpty(config.linux?.cgroup_parent ?? '')).failed).toEqual([]);
    expect(await waitForNoLeaks(env.baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
  });
});
