// A spare VM's work dir, with real mounts (root): made as a sandbox's, moved to the
// sandbox's place at the claim (the share's propagation intact), and removed after its
// sandbox, or after a spare that died, but never while a sandbox's work dir is mounted from it.
import { spawn, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { VmConfig } from '../hypervisors/hypervisor';
import { silentLogger } from '../lib/logger';
import { mountsBelow } from './rootfs';
import { ensureDirChain } from './safe-paths';
import { bindIntoShare, shareLayout } from './shared-fs';
import { podVmConfig } from './sandbox';
import { Code } from '../ttrpc';
import { AGENT_FEATURES } from '../lib/agent-features';
import { fakeAgent } from './testing/fake-agent';
import { fakeDriver } from './testing/fake-driver';
import { VmTemplates } from './vm-templates';
import { isMountedFrom, sweepWarmDirs, WarmVm, warmRoot } from './warm-vm';

const asRoot = process.getuid?.() === 0 ? describe : describe.skip;

asRoot('spare VM work dirs', () => {
  let dir: string;
  let config: RuntimeConfig;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warm-vm-'));
    config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
  });
  afterEach(() => {
    for (const target of mountsBelow(dir)) {
      try {
        execFileSync('umount', ['-l', target], { stdio: 'ignore' });
      } catch {
        /* gone with a parent (propagation, or a lazy unmount above it) */
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Templates whose clone is a fake driver (stopped on discard); `vms` holds the VMs asked for. */
  function templatesOffering(clone: boolean) {
    const driver = fakeDriver('virtio-serial', fakeAgent({}));
    const vms: VmConfig[] = [];
    const agent = {
      closed: false,
      close() {
        this.closed = true;
      },
      warmUps: [] as number[],
      warmUpShares: [] as unknown[],
      /** What the warm-up's answer waits for (by default none). */
      warmUpAnswer: Promise.resolve() as Promise<void>,
      async warmUp(timeoutMs: number, share?: unknown) {
        this.warmUps.push(timeoutMs);
        this.warmUpShares.push(share);
        await this.warmUpAnswer;
      },
    };
    const templates = {
      async startClone(vm: VmConfig, _observe: unknown, opts: { make: boolean; dieWithSpawner?: boolean }) {
        vms.push(vm);
        expect(opts).toMatchObject({ make: false, dieWithSpawner: true });
        // QEMU would make its sockets in the work dir.
        fs.writeFileSync(path.join(vm.workDir, 'qmp.sock'), '');
        return clone ? { hypervisor: driver, agent, details: { features: AGENT_FEATURES }, templateKey: 'k1' } : undefined;
      },
    } as unknown as VmTemplates;
    return { templates, driver, agent, vms };
  }

  const start = (templates: VmTemplates) => WarmVm.start({ config, templates, newHypervisor: () => fakeDriver('virtio-serial', fakeAgent({})), podVmConfig, logger: silentLogger() });

  it("restores in a work dir of its own, set up as a sandbox's, and moves it to the sandbox's place with its share working", async () => {
    const { templates, driver, vms } = templatesOffering(true);
    const warm = (await start(templates))!;
    expect(warm).toBeDefined();
    const root = warmRoot(config.runtime.stateDir);
    expect(warm.dir.startsWith(`${root}/${process.pid}-`)).toBe(true);
    expect(vms[0].workDir).toBe(path.join(warm.dir, 'vm'));
    expect(vms[0].sharedDirectories).toEqual([{ tag: 'kataShared', hostPath: path.join(warm.dir, 'vm', 'shared') }]);
    expect((fs.statSync(root).mode & 0o777).toString(8)).toBe('700');

    const workDir = path.join(config.runtime.stateDir, 'default', 'pod1');
    fs.mkdirSync(workDir, { recursive: true });
    await warm.moveTo(workDir);
    expect(fs.existsSync(path.join(workDir, 'qmp.sock'))).toBe(true);
    expect(isMountedFrom(path.join(warm.dir, 'vm'))).toBe(true);
    // A bind into the private side after the move shows in the guest's (read-only) view, as in a sandbox's own.
    const source = path.join(dir, 'volume');
    fs.mkdirSync(source);
    fs.writeFileSync(path.join(source, 'file'), 'data');
    fs.mkdirSync(path.join(workDir, 'mounts', 'c1'));
    execFileSync('mount', ['--bind', source, path.join(workDir, 'mounts', 'c1')]);
    expect(fs.readFileSync(path.join(workDir, 'shared', 'c1', 'file'), 'utf8')).toBe('data');
    await expect(warm.moveTo(workDir)).rejects.toThrow('taken or ended already');
    // Discarding a VM the sandbox took does nothing: it is the sandbox's to end.
    await warm.discard();
    expect(driver.stopped).toBeUndefined();

    // While the sandbox's work dir is mounted from it, neither the sandbox nor a sweep removes it.
    await warm.removeOrigin();
    expect(fs.existsSync(warm.dir)).toBe(true);
    execFileSync('umount', ['-R', workDir]);
    expect(isMountedFrom(path.join(warm.dir, 'vm'))).toBe(false);
    await warm.removeOrigin();
    expect(fs.existsSync(warm.dir)).toBe(false);
    expect(mountsBelow(root)).toEqual([]);
  });

  it("moves into a state dir on a shared mount (systemd's /run) without the sandbox's mounts reaching the state dir's peers", async () => {
    // A shared tmpfs as the state dir, and a peer of it elsewhere (as another mount namespace's copy of /run would be).
    const state = config.runtime.stateDir;
    const peer = path.join(dir, 'peer');
    for (const d of [state, peer]) fs.mkdirSync(d);
    execFileSync('mount', ['-t', 'tmpfs', 'state', state]);
    execFileSync('mount', ['--make-shared', state]);
    execFileSync('mount', ['--bind', state, peer]);
    const { templates } = templatesOffering(true);
    const warm = (await start(templates))!;
    const workDir = path.join(state, 'default', 'pod1');
    fs.mkdirSync(workDir, { recursive: true });
    await warm.moveTo(workDir);
    // A container's rootfs goes into the share as Sandbox.createContainer binds it (a move under the private side).
    const source = path.join(dir, 'rootfs');
    fs.mkdirSync(source);
    fs.writeFileSync(path.join(source, 'file'), 'data');
    const layout = shareLayout(workDir);
    await bindIntoShare(layout, source, ensureDirChain(layout.privateDir, ['c1', 'rootfs']));
    expect(fs.readFileSync(path.join(workDir, 'shared', 'c1', 'rootfs', 'file'), 'utf8')).toBe('data');
    // By path component: the spare's dir name (<pid>-<random hex>) may hold "c1" too.
    expect(mountsBelow(peer).filter((m) => m.split('/').includes('c1'))).toEqual([]);
    execFileSync('umount', ['-R', workDir]);
    await warm.removeOrigin();
    expect(fs.existsSync(warm.dir)).toBe(false);
  });

  it("offers the VM only once it is warmed up (the agent's WarmUp, with a deadline)", async () => {
    const { templates, agent } = templatesOffering(true);
    let answer!: () => void;
    agent.warmUpAnswer = new Promise((resolve) => (answer = resolve));
    let offered = false;
    const starting = start(templates).then((warm) => ((offered = true), warm));
    while (agent.warmUps.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(agent.warmUps[0]).toBeGreaterThan(0);
    // The guest mounts what CreateSandbox would, for whichever pod comes: the share the VM was started with.
    expect(agent.warmUpShares[0]).toEqual({ tag: 'kataShared', guestPath: '/run/kata-containers/shared', kind: 'virtio-9p' });
    await new Promise((r) => setTimeout(r, 50));
    expect(offered).toBe(false);
    answer();
    const warm = (await starting)!;
    expect(warm).toBeDefined();
    await warm.discard();
  });

  it("plugs a NIC ahead before the warm-up (so the guest probes it then), and ends a VM whose plug failed", async () => {
    const { templates, driver, agent } = templatesOffering(true);
    const order: string[] = [];
    driver.prePlugNic = async () => (order.push(`prePlugNic (warm-ups so far: ${agent.warmUps.length})`), '02:00:00:00:00:01');
    const warmUp = agent.warmUp.bind(agent);
    agent.warmUp = async (ms: number, share?: unknown) => (order.push('warmUp'), warmUp(ms, share));
    const warm = (await start(templates))!;
    expect(warm).toBeDefined();
    expect(order).toEqual(['prePlugNic (warm-ups so far: 0)', 'warmUp']);
    expect(warm.nicMacsPluggedAhead).toEqual(['02:00:00:00:00:01']);
    await warm.discard();

    // A guest whose agent does not say it can take one (an older guest image) gets none.
    const older = templatesOffering(true);
    older.driver.prePlugNic = jest.fn(async () => '02:00:00:00:00:02');
    const startOlder = WarmVm.start({ config, templates: { startClone: async (...args: unknown[]) => ({ ...(await (older.templates.startClone as (...a: unknown[]) => Promise<object>)(...args)), details: { agent_version: 'older' } }) } as unknown as VmTemplates, newHypervisor: () => fakeDriver('virtio-serial', fakeAgent({})), podVmConfig, logger: silentLogger() });
    const olderWarm = (await startOlder)!;
    expect(older.driver.prePlugNic).not.toHaveBeenCalled();
    expect(olderWarm.nicMacsPluggedAhead).toEqual([]);
    await olderWarm.discard();

    const failing = templatesOffering(true);
    failing.driver.prePlugNic = async () => {
      throw new Error("'ip tuntap add dev tap0_kata mode tap' in the VMM's network namespace failed: Operation not permitted");
    };
    expect(await start(failing.templates)).toBeUndefined();
    expect(failing.agent.warmUps).toEqual([]);
    expect(failing.driver.stopped).toBe(true);
    expect(failing.agent.closed).toBe(true);
    expect(fs.readdirSync(warmRoot(config.runtime.stateDir))).toEqual([]);
    expect(mountsBelow(dir)).toEqual([]);
  });

  it('ends a VM whose warm-up failed or did not answer in time (the spare waits without one), and uses one whose guest has no WarmUp', async () => {
    const failing = templatesOffering(true);
    failing.agent.warmUpAnswer = Promise.reject(Object.assign(new Error('guest agent WarmUp: no answer within 60000 ms'), { code: Code.DEADLINE_EXCEEDED }));
    failing.agent.warmUpAnswer.catch(() => undefined);
    expect(await start(failing.templates)).toBeUndefined();
    expect(failing.driver.stopped).toBe(true);
    expect(failing.agent.closed).toBe(true);
    expect(fs.readdirSync(warmRoot(config.runtime.stateDir))).toEqual([]);
    expect(mountsBelow(dir)).toEqual([]);

    const older = templatesOffering(true);
    older.agent.warmUpAnswer = Promise.reject(Object.assign(new Error('method WarmUp not implemented'), { code: Code.UNIMPLEMENTED }));
    older.agent.warmUpAnswer.catch(() => undefined);
    const warm = (await start(older.templates))!;
    expect(warm).toBeDefined();
    expect(older.driver.stopped).toBeUndefined();
    await warm.discard();
  });

  it('ends the VM and removes its work dir when the move fails (its target is gone)', async () => {
    const { templates, driver } = templatesOffering(true);
    const warm = (await start(templates))!;
    await expect(warm.moveTo(path.join(config.runtime.stateDir, 'default', 'not-made'))).rejects.toThrow();
    await warm.discard();
    expect(driver.stopped).toBe(true);
    expect(fs.existsSync(warm.dir)).toBe(false);
    expect(mountsBelow(dir)).toEqual([]);
  });

  it('ends the VM and removes its work dir when discarded', async () => {
    const { templates, driver, agent } = templatesOffering(true);
    const warm = (await start(templates))!;
    await warm.discard();
    expect(driver.stopped).toBe(true);
    expect(agent.closed).toBe(true);
    expect(fs.existsSync(warm.dir)).toBe(false);
    expect(mountsBelow(dir)).toEqual([]);
  });

  it('leaves nothing when no VM can be restored', async () => {
    const { templates } = templatesOffering(false);
    expect(await start(templates)).toBeUndefined();
    expect(fs.readdirSync(warmRoot(config.runtime.stateDir))).toEqual([]);
    expect(mountsBelow(dir)).toEqual([]);
  });

  it("sweeps a dead spare's dir (its VM killed, its mounts gone) but not a live one's, nor one a sandbox's work dir is still mounted from", async () => {
    const { templates } = templatesOffering(true);
    const root = warmRoot(config.runtime.stateDir);
    const live = (await start(templates))!;
    const dead = (await start(templates))!;
    const moved = (await start(templates))!;
    const workDir = path.join(config.runtime.stateDir, 'default', 'pod1');
    fs.mkdirSync(workDir, { recursive: true });
    await moved.moveTo(workDir);
    // A spare that died: its owner record names a process that has exited. Its "VMM"
    // names its pid file in its argv, as QEMU does; QEMU writes that file.
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    for (const d of [dead.dir, moved.dir]) fs.writeFileSync(path.join(d, 'owner'), `${gone.pid} 1\n`);
    const pidFile = path.join(dead.dir, 'vm', 'qemu.pid');
    const vmm = spawn(process.execPath, ['-e', 'setTimeout(() => undefined, 600_000)', '--', '-pidfile', pidFile], { stdio: 'ignore' });
    fs.writeFileSync(pidFile, `${vmm.pid}\n`);
    const vmmExited = new Promise((r) => vmm.once('exit', (_code, signal) => r(signal)));
    // An unrelated process whose pid a stale pid file names is never killed.
    const bystander = spawn('sleep', ['600']);
    fs.writeFileSync(path.join(moved.dir, 'vm', 'qemu.pid'), `${bystander.pid}\n`);
    try {
      expect(await sweepWarmDirs(root, silentLogger())).toEqual([dead.dir]);
      expect(await vmmExited).toBe('SIGKILL');
      expect(fs.existsSync(dead.dir)).toBe(false);
      expect(fs.existsSync(live.dir)).toBe(true);
      expect(fs.existsSync(moved.dir)).toBe(true);
      expect(bystander.exitCode).toBeNull();
      // Once the sandbox's work dir is unmounted (its `delete` ran), the next sweep removes it.
      execFileSync('umount', ['-R', workDir]);
      expect(await sweepWarmDirs(root, silentLogger())).toEqual([moved.dir]);
    } finally {
      bystander.kill('SIGKILL');
      vmm.kill('SIGKILL');
      await live.discard();
    }
    expect(fs.readdirSync(root)).toEqual([]);
    expect(mountsBelow(dir)).toEqual([]);
  });
});
