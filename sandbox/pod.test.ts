// The pod's lifecycle around its sandbox, with a fake driver and agent (no VM).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { Hypervisor } from '../hypervisors/hypervisor';
import { UnavailableError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { Pod, PodEvents } from './pod';
import { fakeAgent } from './testing/fake-agent';
import { fakeDriver } from './testing/fake-driver';
import { CallContext, Code, TtrpcError } from '../ttrpc';

describe('Pod', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-pod-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const testConfig = () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    return config;
  };
  /** A bundle whose spec runs `sh` on an empty rootfs (the fake agent runs nothing). */
  const writeBundle = (): string => {
    const bundle = path.join(dir, 'bundle');
    fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'], cwd: '/' } }));
    return bundle;
  };
  const newPod = (config: RuntimeConfig, driver: Hypervisor, events: PodEvents) => new Pod({ namespace: 'default', resolveConfig: () => ({ config, files: [], via: 'test' }), newHypervisor: () => driver }, events, silentLogger());
  /** Output the fake agent reports for every process: none, at its end. */
  const noOutput = async () => ({ data: Buffer.alloc(0), eof: true });
  /** Creates and starts container c1 and registers (does not start) its exec e1. */
  const runInitAndAddExec = async (pod: Pod, bundle: string): Promise<void> => {
    await pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
    await pod.start('c1', '');
    pod.exec({ containerId: 'c1', execId: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', processJson: Buffer.from('{"args":["sh"]}') });
  };
  /** An agent call that blocks, as the real one does, until the shim abandons it. */
  const untilAbandoned = (_req: unknown, ctx: CallContext) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned'))));

  it('stops a VM that is still booting when it is destroyed, and the abandoned Create fails', async () => {
    const config = testConfig();
    const agent = fakeAgent({ CreateSandbox: () => ({}), DestroySandbox: () => ({}), GetOOMEvent: () => new Promise(() => undefined) });
    let boot!: () => void;
    const driver = fakeDriver('virtio-serial', agent, new Promise((r) => (boot = r)));
    const pod = newPod(config, driver, { onExit: () => undefined, onOom: () => undefined });
    const bundle = writeBundle();
    try {
      const create = pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
      create.catch(() => undefined);
      while (!driver.booted) await new Promise((r) => setTimeout(r, 10)); // the VMM is starting
      const destroyed = pod.destroy();
      boot();
      await destroyed;
      expect(driver.stopped).toBe(true);
      expect(agent.calls).toContain('DestroySandbox');
      expect(fs.existsSync(path.join(config.runtime.stateDir, 'default', 'c1'))).toBe(false);
      await expect(create).rejects.toThrow(UnavailableError);
    } finally {
      await agent.server.close();
    }
  });

  it('a SIGKILL the guest never answers stops the VM within the grace period: every process ends with 137, then Delete and destroy work', async () => {
    const config = testConfig();
    config.runtime.killGraceMs = 300;
    const never = untilAbandoned;
    // A guest that hangs once the container runs: signals, waits and reads never answer.
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => ({ pid: 7 }), ExecProcess: () => ({ pid: 8 }),
      SignalProcess: never, WaitProcess: never, ReadStdout: never, ReadStderr: never, GetOOMEvent: never,
    });
    const driver = fakeDriver('virtio-serial', agent);
    const exits: Array<[string, number]> = [];
    const pod = newPod(config, driver, { onExit: (_c, p, exit) => exits.push([p.name, exit.status]), onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await runInitAndAddExec(pod, bundle);
      await pod.start('c1', 'e1');
      const killedAt = Date.now();
      await pod.kill('c1', '', 9, false);
      const exit = await pod.process('c1', '').wait();
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(250);
      expect(exit.status).toBe(137);
      expect(exits.sort()).toEqual([['container c1', 137], ['exec e1 of container c1', 137]]);
      expect(driver.stopped).toBe(true);
      // With the VM gone, killing what already ended is NotFound (containerd's "already
      // stopped"), or fine with `all`; never Unavailable, which CRI's StopPodSandbox retries forever.
      await expect(pod.kill('c1', '', 9, false)).rejects.toMatchObject({ grpcCode: Code.NOT_FOUND });
      await expect(pod.kill('c1', 'e1', 15, false)).rejects.toMatchObject({ grpcCode: Code.NOT_FOUND });
      await expect(pod.kill('c1', '', 9, true)).resolves.toBeUndefined();
      await pod.delete('c1', 'e1');
      await pod.delete('c1', '');
      expect(pod.isEmpty).toBe(true);
      await pod.destroy();
      expect(fs.existsSync(path.join(config.runtime.stateDir, 'default', 'c1'))).toBe(false);
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });

  it('a Kill that races a Start acts on what the Start made: the started process is signalled, never marked exited behind its back', async () => {
    const config = testConfig();
    let launched!: () => void;
    const launchGate = new Promise<void>((r) => (launched = r));
    const signals: number[] = [];
    let exitNow!: (status: number) => void;
    const exited = new Promise<number>((r) => (exitNow = r));
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: async () => (await launchGate, { pid: 7 }),
      SignalProcess: (req: { signal: number }) => (signals.push(req.signal), exitNow(128 + req.signal), {}),
      WaitProcess: async () => ({ status: await exited }),
      ReadStdout: noOutput, ReadStderr: noOutput,
      GetOOMEvent: untilAbandoned,
    });
    const driver = fakeDriver('virtio-serial', agent);
    const exits: number[] = [];
    const pod = newPod(config, driver, { onExit: (_c, _p, exit) => exits.push(exit.status), onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
      const start = pod.start('c1', '');
      await new Promise((r) => setTimeout(r, 50)); // the Start is in the guest
      const kill = pod.kill('c1', '', 15, false);
      launched();
      await start;
      expect(await kill).toBeUndefined(); // signalled, not marked exited by the shim
      expect(signals).toEqual([15]);
      expect((await pod.process('c1', '').wait()).status).toBe(143);
      await new Promise((r) => setTimeout(r, 50));
      expect(exits).toEqual([143]);
      await pod.delete('c1', '');
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });

  it('a Start that arrives while a Kill of the created process is being told to the guest is refused: the exit stays the Kill\'s', async () => {
    const config = testConfig();
    let signalled!: () => void;
    const signalGate = new Promise<void>((r) => (signalled = r));
    let startCalls = 0;
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => (startCalls++, { pid: 7 }),
      SignalProcess: async () => (await signalGate, {}),
      WaitProcess: () => new Promise(() => undefined),
      ReadStdout: noOutput, ReadStderr: noOutput,
      GetOOMEvent: untilAbandoned,
    });
    const driver = fakeDriver('virtio-serial', agent);
    const pod = newPod(config, driver, { onExit: () => undefined, onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
      const kill = pod.kill('c1', '', 9, false);
      await new Promise((r) => setTimeout(r, 50)); // the guest is being told
      await expect(pod.start('c1', '')).rejects.toMatchObject({ grpcCode: Code.FAILED_PRECONDITION });
      signalled();
      expect((await kill)?.status).toBe(137);
      expect(startCalls).toBe(0);
      expect(pod.process('c1', '').status).toBe('stopped');
      await pod.delete('c1', '');
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });

  it('a Kill sent just before a Start (same tick) waits for that Start and signals what it launched', async () => {
    const config = testConfig();
    const signals: string[] = [];
    let exitNow!: (status: number) => void;
    const execExited = new Promise<number>((r) => (exitNow = r));
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => ({ pid: 7 }),
      ExecProcess: async () => (await new Promise((r) => setTimeout(r, 50)), { pid: 8 }),
      SignalProcess: (req: { exec_id: string; signal: number }) => (signals.push(`${req.exec_id}:${req.signal}`), req.exec_id && exitNow(128 + req.signal), {}),
      WaitProcess: async (req: { exec_id: string }) => ({ status: req.exec_id ? await execExited : await new Promise(() => undefined) }),
      ReadStdout: noOutput, ReadStderr: noOutput,
      GetOOMEvent: untilAbandoned,
    });
    const driver = fakeDriver('virtio-serial', agent);
    const pod = newPod(config, driver, { onExit: () => undefined, onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await runInitAndAddExec(pod, bundle);
      const kill = pod.kill('c1', 'e1', 9, false);
      const start = pod.start('c1', 'e1');
      await start;
      await kill;
      // The launched exec was signalled in the guest, not marked exited while it runs on unseen.
      expect(signals).toEqual(['e1:9']);
      expect((await pod.process('c1', 'e1').wait()).status).toBe(137);
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });

  it('a Delete sent with a Start (same tick) waits for it: the launched exec is running, so the Delete is refused', async () => {
    const config = testConfig();
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => ({ pid: 7 }),
      ExecProcess: async () => (await new Promise((r) => setTimeout(r, 50)), { pid: 8 }),
      WaitProcess: () => new Promise(() => undefined),
      ReadStdout: noOutput, ReadStderr: noOutput,
      GetOOMEvent: untilAbandoned,
    });
    const driver = fakeDriver('virtio-serial', agent);
    const pod = newPod(config, driver, { onExit: () => undefined, onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await runInitAndAddExec(pod, bundle);
      const start = pod.start('c1', 'e1');
      const deleted = pod.delete('c1', 'e1');
      await start;
      await expect(deleted).rejects.toMatchObject({ grpcCode: Code.FAILED_PRECONDITION });
      expect(pod.process('c1', 'e1').status).toBe('running');
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });

  it("a SIGKILL the guest answers with NotFound (the init had just exited) is NotFound for containerd too", async () => {
    const config = testConfig();
    const never = untilAbandoned;
    const agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => ({ pid: 7 }),
      SignalProcess: () => { throw new TtrpcError(Code.NOT_FOUND, 'container c1: process already exited'); },
      WaitProcess: never, ReadStdout: never, ReadStderr: never, GetOOMEvent: never,
    });
    const pod = newPod(config, fakeDriver('virtio-serial', agent), { onExit: () => undefined, onOom: () => undefined });
    const bundle = writeBundle();
    try {
      await pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
      await pod.start('c1', '');
      await expect(pod.kill('c1', '', 9, false)).rejects.toMatchObject({ code: Code.NOT_FOUND });
    } finally {
      await pod.destroy();
      await agent.server.close();
    }
  });
});
