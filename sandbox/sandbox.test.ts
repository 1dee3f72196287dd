// The sandbox gives the driver the agent channel the driver says it takes, and then
// reaches the agent over it: a fake driver serves our ttrpc agent behind a fake
// virtio-serial socket or a fake hybrid vsock, as QEMU and Cloud Hypervisor would.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig } from '../config/runtime-config';
import { FailedPreconditionError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { CallContext } from '../ttrpc';
import { HostKsm } from './ksm';
import { HostCgroups } from './host-cgroup';
import { VmConfig } from '../hypervisors/hypervisor';
import { Sandbox } from './sandbox';
import { VmTemplates } from './vm-templates';
import { fakeAgent, FakeAgent } from './testing/fake-agent';
import { fakeDriver } from './testing/fake-driver';
import { withPodNetns } from './testing/pod-netns';
import { AGENT_FEATURES } from '../lib/agent-features';

function agentForSandbox(calls: string[] = []): FakeAgent {
  return fakeAgent({
    CreateSandbox: () => (calls.push('CreateSandbox'), {}),
    DestroySandbox: () => ({}),
    // Blocks like the real one until the call is abandoned.
    GetOOMEvent: (_req: unknown, ctx: CallContext) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned')))),
  });
}

const events = { onProcessExit: () => undefined, onOom: () => undefined };

describe('Sandbox and the agent channel', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['hybrid-vsock', { kind: 'hybrid-vsock', socketPath: 'vsock/vsock.sock', port: 1024 }],
    ['virtio-serial', { kind: 'virtio-serial', socketPath: 'agent.sock', portName: 'agent.channel.0' }],
  ] as const)('boots a driver that takes %s and reaches the agent over it', async (kind, expected) => {
    const config = defaultConfig('clh');
    config.runtime.stateDir = dir;
    const agent = agentForSandbox();
    const driver = fakeDriver(kind, agent);
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'pod1-host', config, hypervisor: driver, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')) });
    try {
      expect(driver.booted?.agentChannel).toEqual({ ...expected, socketPath: path.join(dir, 'default', 'pod1', expected.socketPath) });
      expect(sandbox.details?.agent_version).toBe('fake-1');
      expect(agent.requests.get('CreateSandbox')).toMatchObject({ sandbox_id: 'pod1', hostname: 'pod1-host', shared_fs_tag: 'kataShared' });
    } finally {
      await sandbox.destroy();
      await agent.server.close();
    }
    expect(agent.calls).toContain('DestroySandbox');
    expect(fs.existsSync(path.join(dir, 'default', 'pod1'))).toBe(false);
  });

  describe('with KSM configured', () => {
    let ksmDir: string;
    beforeEach(() => {
      ksmDir = path.join(dir, 'ksm');
      fs.mkdirSync(ksmDir);
      fs.writeFileSync(path.join(ksmDir, 'run'), '0\n');
    });
    const start = async (ksm: 'on' | 'off' | 'unchanged', hostKsmDir: string) => {
      const config = defaultConfig();
      config.runtime.stateDir = path.join(dir, 'state');
      config.runtime.ksm = ksm;
      const agent = agentForSandbox();
      const driver = fakeDriver('virtio-serial', agent);
      const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: driver, events, logger: silentLogger(), hostKsm: new HostKsm(hostKsmDir) }).finally(() => agent.server.close());
      await sandbox.destroy();
      return driver.booted;
    };

    it('switches the host on and gives the VM mergeable memory under "on"', async () => {
      expect((await start('on', ksmDir))?.memoryMerge).toBe(true);
      expect(fs.readFileSync(path.join(ksmDir, 'run'), 'utf8').trim()).toBe('1');
    });

    it('leaves both the host switch and the VMM default alone under "unchanged"', async () => {
      const booted = await start('unchanged', ksmDir);
      expect(booted).toBeDefined();
      expect(booted?.memoryMerge).toBeUndefined();
      expect(fs.readFileSync(path.join(ksmDir, 'run'), 'utf8').trim()).toBe('0');
    });

    it('fails before the VM starts when the host has no KSM to switch on', async () => {
      const config = defaultConfig();
      config.runtime.stateDir = path.join(dir, 'state');
      config.runtime.ksm = 'on';
      const driver = fakeDriver('virtio-serial', agentForSandbox());
      await expect(Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: driver, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'absent')) })).rejects.toThrow(FailedPreconditionError);
      expect(driver.booted).toBeUndefined();
      expect(fs.existsSync(path.join(dir, 'state', 'pod1'))).toBe(false);
    });
  });
});

describe("OOM events are the guest's word", () => {
  const asRoot = process.getuid?.() === 0 ? it : it.skip;
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-oom-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  asRoot('passes on only containers of this sandbox, and no flood', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    // A broken agent: OOMs for containers it does not have, then one container's OOM 13 times at once (over the budget, it waits a second before asking again).
    const reports = ['other-pods-container', '../../etc', ...Array.from({ length: 13 }, () => 'c1')];
    let created!: () => void;
    const containerCreated = new Promise<void>((r) => (created = r));
    let drained!: () => void;
    const allReported = new Promise<void>((r) => (drained = r));
    const agent = fakeAgent({
      CreateSandbox: () => ({}),
      DestroySandbox: () => ({}),
      CreateContainer: () => (created(), {}),
      RemoveContainer: () => ({}),
      GetOOMEvent: async (_req: unknown, ctx: CallContext) => {
        await containerCreated;
        const next = reports.shift();
        if (next !== undefined) return { container_id: next };
        drained();
        return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned'))));
      },
    });
    const published: string[] = [];
    const sandbox = await Sandbox.start({
      id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agent),
      events: { onProcessExit: () => undefined, onOom: (id) => published.push(id) }, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')),
    });
    try {
      const rootfs = path.join(dir, 'bundle', 'rootfs');
      fs.mkdirSync(rootfs, { recursive: true });
      await sandbox.createContainer({ id: 'c1', bundle: path.join(dir, 'bundle'), terminal: false, stdio: { stdin: '', stdout: '', stderr: '' } }, { ociVersion: '1.0.2', process: { args: ['sh'] } }, [], rootfs);
      await allReported;
      expect(published).toEqual(Array.from({ length: 10 }, () => 'c1'));
    } finally {
      await sandbox.destroy();
      await agent.server.close();
    }
  }, 20_000);
});

describe('Sandbox.workDirFor', () => {
  const config = (stateDir: string) => ({ ...defaultConfig(), runtime: { ...defaultConfig().runtime, stateDir } });

  it('is <state_dir>/<namespace>/<sandbox> while its sockets fit a Unix socket path', () => {
    expect(Sandbox.workDirFor(config('/run/kata-ts'), 'k8s.io', 'a'.repeat(64))).toBe(`/run/kata-ts/k8s.io/${'a'.repeat(64)}`);
  });

  it('hashes a namespace and id too long for the 107-byte socket limit, distinctly per pod', () => {
    const ns = 'n'.repeat(76);
    const first = Sandbox.workDirFor(config('/run/kata-ts'), ns, 'b'.repeat(76));
    const second = Sandbox.workDirFor(config('/run/kata-ts'), ns, 'c'.repeat(76));
    expect(first).toMatch(/^\/run\/kata-ts\/\.hashed\/[0-9a-f]{32}$/);
    expect(second).not.toBe(first);
    expect(Buffer.byteLength(`${first}/firecracker-api.sock`)).toBeLessThanOrEqual(107);
    expect(Sandbox.workDirFor(config('/run/kata-ts'), ns, 'b'.repeat(76))).toBe(first); // delete and the CLI find it again
  });

  it('refuses a state_dir too long for any socket path, saying so', () => {
    expect(() => Sandbox.workDirFor(config(`/run/${'d'.repeat(80)}`), 'default', 'x')).toThrow(/state_dir \/run\/d+ is too long: the VM's Unix sockets under it would exceed 107 bytes/);
  });
});

describe('a clone and the pod network', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-clone-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Templates whose every clone is one fake driver and agent; `asked` holds the VMs they were asked for. */
  function offeringAClone() {
    const agent = {
      closed: false,
      close() {
        this.closed = true;
      },
      createSandbox: jest.fn(async () => undefined),
      destroySandbox: async () => undefined,
      // Blocks like the real one until the sandbox goes.
      getOomEvent: () => new Promise(() => undefined),
    };
    const driver = fakeDriver('virtio-serial', agentForSandbox());
    const asked: VmConfig[] = [];
    const templates = {
      prepare: async () => true,
      async startClone(vm: VmConfig) {
        asked.push(vm);
        return { hypervisor: driver, agent, details: {} };
      },
    } as unknown as VmTemplates;
    return { agent, driver, asked, templates };
  }

  it('starts the clone while the pod network is read, with none of it, and ends it when the network fails', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent: cloneAgent, driver: cloneDriver, asked, templates } = offeringAClone();
    const coldDriver = fakeDriver('virtio-serial', agentForSandbox());
    // There, but no netns: reading it fails only once nsenter runs, as the clone starts.
    const netnsPath = path.join(dir, 'not-a-netns');
    fs.writeFileSync(netnsPath, '');
    const started = Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', netnsPath, config, hypervisor: coldDriver, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    await expect(started).rejects.toThrow(/nsenter/);
    // The clone's VMM never joins the pod's netns (it gets one of its own): its NICs come by plugNics.
    expect(asked.map((vm) => vm.network)).toEqual([undefined]);
    expect(cloneAgent.closed).toBe(true);
    expect(cloneDriver.stopped).toBe(true);
    expect(coldDriver.booted).toBeUndefined();
  });

  it('boots cold, the clone ended, when the NICs cannot be plugged into it', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent: cloneAgent, driver: cloneDriver, templates } = offeringAClone();
    const plugged: unknown[] = [];
    cloneDriver.plugNics = async (network) => {
      plugged.push(network);
      throw new Error('the clone died');
    };
    const coldCalls: string[] = [];
    const coldDriver = fakeDriver('virtio-serial', agentForSandbox(coldCalls));
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: coldDriver, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    try {
      expect(plugged).toEqual([undefined]); // no pod network: plugNics only checks the clone still runs
      expect(cloneAgent.closed).toBe(true);
      expect(cloneDriver.stopped).toBe(true);
      expect(coldDriver.booted?.network).toBeUndefined();
      // The clone's guest was creating the sandbox meanwhile; the cold VM's guest creates it anew.
      expect(cloneAgent.createSandbox).toHaveBeenCalledTimes(1);
      expect(coldCalls).toEqual(['CreateSandbox']);
    } finally {
      await sandbox.destroy();
    }
  });

  it("creates the sandbox in the clone's guest while its NICs are plugged, and fails the start, the clone ended, when that fails", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent: cloneAgent, driver: cloneDriver, templates } = offeringAClone();
    // Each waits for the other to have begun: made one after the other, in either order, the start would never end.
    let plugging!: () => void;
    const plugBegan = new Promise<void>((resolve) => (plugging = resolve));
    cloneAgent.createSandbox.mockImplementation(async () => void (await plugBegan));
    cloneDriver.plugNics = async () => {
      plugging();
      while (cloneAgent.createSandbox.mock.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    };
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    try {
      expect(cloneAgent.createSandbox).toHaveBeenCalledTimes(1);
      expect(cloneAgent.createSandbox).toHaveBeenCalledWith(expect.objectContaining({ sandbox_id: 'pod1', hostname: 'h' }));
    } finally {
      await sandbox.destroy();
    }

    const failing = offeringAClone();
    failing.driver.plugNics = async () => undefined;
    failing.agent.createSandbox.mockImplementation(async () => {
      throw new Error('guest agent CreateSandbox: cannot mount 9p tag kataShared');
    });
    await expect(Sandbox.start({ id: 'pod2', namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates: failing.templates })).rejects.toThrow('cannot mount 9p tag kataShared');
    expect(failing.driver.stopped).toBe(true);
    expect(failing.agent.closed).toBe(true);
  });

  it("makes the template before the shim joins the pod's cgroup, and starts the clone in it, not making the template again", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const root = path.join(dir, 'cgroup');
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio']) {
      fs.mkdirSync(path.join(root, c), { recursive: true });
      fs.writeFileSync(path.join(root, c, 'cgroup.procs'), '');
    }
    const inPodCgroup = () => {
      try {
        return fs.readFileSync(path.join(root, 'memory', 'kubepods', 'pod1', 'cgroup.procs'), 'utf8').trim() === String(process.pid);
      } catch {
        return false;
      }
    };
    const steps: string[] = [];
    const templates = {
      async prepare() {
        steps.push(`prepare, shim in the pod's cgroup: ${inPodCgroup()}`);
        return true;
      },
      async startClone(_vm: VmConfig, _observe: unknown, opts: { make: boolean }) {
        steps.push(`clone, shim in the pod's cgroup: ${inPodCgroup()}, make: ${opts.make}`);
        return undefined; // boots cold
      },
    } as unknown as VmTemplates;
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', cgroupsPath: '/kubepods/pod1', hostCgroups: new HostCgroups(root), config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    await sandbox.destroy();
    expect(steps).toEqual(["prepare, shim in the pod's cgroup: false", "clone, shim in the pod's cgroup: true, make: false"]);
  });

  it("leaves a template of a VM the pod's annotations made another to the clone, in the pod's cgroup; not one they left the configuration's", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const asConfigured = structuredClone(config.hypervisor);
    config.hypervisor.memoryMiB = asConfigured.memoryMiB + 512;
    config.podOverrides = { annotations: ['io.katacontainers.config.hypervisor.default_memory'], asConfigured };
    const compared: Array<[number, number]> = [];
    const templates = {
      sameTemplate: (a: VmConfig, b: VmConfig) => compared.push([a.memoryMiB, b.memoryMiB]) > 0 && a.memoryMiB === b.memoryMiB,
      prepare: jest.fn(async () => true),
      startClone: jest.fn(async () => undefined),
    } as unknown as VmTemplates;
    const start = (id: string) => Sandbox.start({ id, namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    await (await start('pod1')).destroy();
    expect(compared).toEqual([[asConfigured.memoryMiB + 512, asConfigured.memoryMiB]]);
    expect(templates.prepare).not.toHaveBeenCalled();
    expect(templates.startClone).toHaveBeenLastCalledWith(expect.anything(), expect.anything(), { make: true });
    // The same annotation with the configured value: the configuration's VM, made outside the pod's cgroup.
    config.hypervisor.memoryMiB = asConfigured.memoryMiB;
    await (await start('pod2')).destroy();
    expect(templates.prepare).toHaveBeenCalledTimes(1);
    expect(templates.startClone).toHaveBeenLastCalledWith(expect.anything(), expect.anything(), { make: false });
  });

  it('boots cold, trying no clone, when no template could be made', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const templates = { prepare: async () => false, startClone: jest.fn() } as unknown as VmTemplates;
    const cold = fakeDriver('virtio-serial', agentForSandbox());
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    await sandbox.destroy();
    expect(templates.startClone).not.toHaveBeenCalled();
    expect(cold.booted).toBeDefined();
  });

  it('starts no clone in a netns that is gone', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const templates = { prepare: async () => true, startClone: jest.fn() } as unknown as VmTemplates;
    const netnsPath = path.join(dir, 'no-such-netns');
    const started = Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', netnsPath, config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates });
    await expect(started).rejects.toThrow(`pod network namespace ${netnsPath} does not exist`);
    expect(templates.startClone).not.toHaveBeenCalled();
  });
});

describe("a spare shim's VM ([factory] spare_vms)", () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-warm-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A restored VM as a spare hands it over: its driver (pid 4242), an agent that answers, and the moves recorded. */
  function spareVm(agentFails = false, moveFails = false, sandboxFails = false) {
    const calls: string[] = [];
    const agent = {
      closed: false,
      close() {
        this.closed = true;
      },
      setGuestDateTime: jest.fn(async () => {
        if (agentFails) throw new Error('the VM no longer answers');
      }),
      createSandbox: jest.fn(async () => {
        if (sandboxFails) throw new Error('hostname refused');
      }),
      destroySandbox: jest.fn(async () => undefined),
      // Blocks like the real one until the sandbox goes.
      getOomEvent: () => new Promise(() => undefined),
    };
    const driver = fakeDriver('virtio-serial', agentForSandbox());
    driver.plugNics = async () => void calls.push(agent.createSandbox.mock.calls.length ? 'plugNics (sandbox being created)' : 'plugNics');
    fs.mkdirSync(path.join(dir, 'spare-vm'), { recursive: true });
    const warm = {
      vm: { memoryMiB: 1, workDir: path.join(dir, 'spare-vm') } as VmConfig,
      clone: { hypervisor: driver, agent, details: { agent_version: 'spare' }, templateKey: 'k1' },
      restoreSeconds: 0.5,
      nicMacsPluggedAhead: [] as string[],
      moveTo: jest.fn(async (workDir: string) => {
        // The sandbox's owner record goes with the moved work dir.
        // The guest's clock and its sandbox are asked for first, so they are made while the work dir moves.
        calls.push(`moveTo ${workDir}${fs.existsSync(path.join(dir, 'spare-vm', 'owner')) ? ' (owner recorded)' : ''}${agent.setGuestDateTime.mock.calls.length ? ' (clock being set)' : ''}${agent.createSandbox.mock.calls.length ? ' (sandbox being created)' : ''}`);
        if (moveFails) throw new Error('mount --move failed');
      }),
      discard: jest.fn(async () => void calls.push('discard')),
      removeOrigin: jest.fn(async () => void calls.push('removeOrigin')),
    };
    return { agent, driver, warm, calls };
  }

  function fakeCgroups(): { root: string; podProcs: () => string } {
    const root = path.join(dir, 'cgroup');
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio']) {
      fs.mkdirSync(path.join(root, c), { recursive: true });
      fs.writeFileSync(path.join(root, c, 'cgroup.procs'), '');
    }
    return { root, podProcs: () => fs.readFileSync(path.join(root, 'memory', 'kubepods', 'pod1', 'cgroup.procs'), 'utf8').trim() };
  }

  it("takes it when it is the pod's VM: its work dir moves in, its VMM joins the pod's cgroup, its clock is set, nothing is restored", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent, driver, warm, calls } = spareVm();
    const templates = { keyFor: jest.fn(() => 'k1'), prepare: jest.fn(), startClone: jest.fn() } as unknown as VmTemplates;
    const cgroups = fakeCgroups();
    const cold = fakeDriver('virtio-serial', agentForSandbox());
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', cgroupsPath: '/kubepods/pod1', hostCgroups: new HostCgroups(cgroups.root), config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
    const workDir = path.join(dir, 'state', 'default', 'pod1');
    try {
      expect(calls).toEqual([`moveTo ${workDir} (owner recorded) (clock being set) (sandbox being created)`, 'plugNics (sandbox being created)']);
      // The shim joined first; the spare's VMM (pid 4242) after it.
      expect(cgroups.podProcs()).toBe('4242');
      expect(agent.setGuestDateTime).toHaveBeenCalledTimes(1);
      expect(agent.createSandbox).toHaveBeenCalledTimes(1);
      expect(agent.createSandbox).toHaveBeenCalledWith(expect.objectContaining({ sandbox_id: 'pod1', hostname: 'h' }));
      expect(templates.prepare).not.toHaveBeenCalled();
      expect(templates.startClone).not.toHaveBeenCalled();
      expect(cold.booted).toBeUndefined();
      expect(sandbox.details?.agent_version).toBe('spare');
      expect(sandbox.bootSeconds).toBe(0.5);
      // Its owner record is in the moved work dir (the sandbox's now), where `delete` reads it.
      expect(fs.readFileSync(path.join(workDir, 'owner'), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
    } finally {
      await sandbox.destroy();
    }
    expect(driver.stopped).toBe(true);
    expect(calls).toEqual([`moveTo ${workDir} (owner recorded) (clock being set) (sandbox being created)`, 'plugNics (sandbox being created)', 'removeOrigin']);
    expect(fs.existsSync(workDir)).toBe(false);
  });

  /** A netns, a veth and its routes need root. */
  const asRoot = process.getuid?.() === 0 ? it : it.skip;

  asRoot("gives the pod the NIC plugged ahead (no tap made for it, the agent told the MAC it has), and sends the guest's network calls without waiting for each answer", async () => {
    await withPodNetns(async (netnsPath, inNetns) => {
      const podMac = (JSON.parse(inNetns('ip -j link show eth0')) as Array<{ address: string }>)[0].address;
      const links = () => (JSON.parse(inNetns('ip -j link show')) as Array<{ ifname: string }>).map((l) => l.ifname).sort();
      const config = defaultConfig();
      config.runtime.stateDir = path.join(dir, 'state');
      const { agent, driver, warm, calls } = spareVm();
      warm.clone.details = { agent_version: 'spare', features: AGENT_FEATURES } as never;
      warm.nicMacsPluggedAhead = ['02:00:00:00:00:01'];
      // Each network call is answered only once both were sent: one that waited for the other's answer would hang the start.
      const sent: string[] = [];
      let allSent!: () => void;
      const bothSent = new Promise<void>((resolve) => (allSent = resolve));
      const networkCall = (name: string) =>
        jest.fn(async () => {
          sent.push(`${name}${agent.createSandbox.mock.calls.length ? ' (sandbox asked for)' : ''}`);
          if (sent.length === 2) allSent();
          await bothSent;
        });
      Object.assign(agent, { updateInterface: networkCall('UpdateInterface'), updateRoutes: networkCall('UpdateRoutes') });
      driver.plugNics = async (network) => {
        calls.push(`plugNics ${network?.nics.map((n) => n.tapName).join(',')}; pod taps: ${links().filter((l) => l.endsWith('_kata')).join(',') || 'none'}`);
        inNetns('ip tuntap add dev tap0_kata mode tap'); // as the driver moves the VMM's tap in
      };
      const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', netnsPath, config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates: { keyFor: () => 'k1' } as unknown as VmTemplates, warm: warm as never });
      try {
        expect(calls.filter((c) => c.startsWith('plugNics'))).toEqual(['plugNics tap0_kata; pod taps: none']);
        expect(sent).toEqual(['UpdateInterface (sandbox asked for)', 'UpdateRoutes (sandbox asked for)']);
        expect((agent as unknown as { updateInterface: jest.Mock }).updateInterface).toHaveBeenCalledWith({
          name: 'eth0',
          hw_addr: podMac,
          mtu: 1500,
          addresses: [{ address: '10.77.0.5', prefix_length: 24 }, expect.objectContaining({ prefix_length: 30 })],
          plugged_hw_addr: '02:00:00:00:00:01',
        });
        // Wired as any pod's: the tap mirrors the pod interface.
        expect(inNetns('tc filter show dev eth0 ingress')).toContain('tap0_kata');
      } finally {
        await sandbox.destroy();
      }
      expect(links()).toEqual(['eth0', 'lo']);
    });
  });

  asRoot('sends an older agent (no network-calls-in-order feature) its network calls one after another', async () => {
    await withPodNetns(async (netnsPath) => {
      const config = defaultConfig();
      config.runtime.stateDir = path.join(dir, 'state');
      const { agent, warm } = spareVm();
      const order: string[] = [];
      const networkCall = (name: string) =>
        jest.fn(async () => {
          order.push(`${name} sent`);
          await new Promise((r) => setTimeout(r, 50));
          order.push(`${name} answered`);
        });
      Object.assign(agent, { updateInterface: networkCall('UpdateInterface'), updateRoutes: networkCall('UpdateRoutes') });
      const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', netnsPath, config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates: { keyFor: () => 'k1' } as unknown as VmTemplates, warm: warm as never });
      await sandbox.destroy();
      expect(order).toEqual(['UpdateInterface sent', 'UpdateInterface answered', 'UpdateRoutes sent', 'UpdateRoutes answered']);
    });
  });

  it("ends it and starts the pod's own VM when the pod's VM is another (another template's key) or templates are off for the pod", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    for (const templates of [{ keyFor: jest.fn(() => 'k2'), prepare: jest.fn(async () => true), startClone: jest.fn(async () => undefined) } as unknown as VmTemplates, undefined]) {
      const { agent, warm, calls } = spareVm();
      const cold = fakeDriver('virtio-serial', agentForSandbox());
      const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
      await sandbox.destroy();
      expect(calls).toEqual(['discard']);
      // Refused, its guest is asked for nothing.
      expect(agent.setGuestDateTime).not.toHaveBeenCalled();
      expect(agent.createSandbox).not.toHaveBeenCalled();
      if (templates) expect(templates.startClone).toHaveBeenCalledTimes(1);
      expect(cold.booted).toBeDefined();
    }
  });

  it("asks its guest for the sandbox once, at the take, and fails the start, the VM ended, when the guest refuses it", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent, driver, warm } = spareVm(false, false, true);
    const templates = { keyFor: () => 'k1', prepare: jest.fn(), startClone: jest.fn() } as unknown as VmTemplates;
    const started = Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
    await expect(started).rejects.toThrow('hostname refused');
    expect(agent.createSandbox).toHaveBeenCalledTimes(1);
    expect(driver.stopped).toBe(true);
    expect(fs.existsSync(path.join(dir, 'state', 'default', 'pod1'))).toBe(false);
  });

  it('ends it and starts the pod as without it when its work dir cannot be moved, and ends it when the start fails before', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const templates = { keyFor: () => 'k1', prepare: jest.fn(async () => true), startClone: jest.fn(async () => undefined) } as unknown as VmTemplates;
    const { warm, calls } = spareVm(false, true);
    const cold = fakeDriver('virtio-serial', agentForSandbox());
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
    await sandbox.destroy();
    expect(calls).toEqual([`moveTo ${path.join(dir, 'state', 'default', 'pod1')} (owner recorded) (clock being set) (sandbox being created)`, 'discard']);
    expect(templates.startClone).toHaveBeenCalledTimes(1);
    // A work dir left by an earlier run: the start fails at once, and the spare's VM is not left running.
    fs.mkdirSync(path.join(dir, 'state', 'default', 'pod2'), { recursive: true });
    const second = spareVm();
    await expect(Sandbox.start({ id: 'pod2', namespace: 'default', hostname: 'h', config, hypervisor: fakeDriver('virtio-serial', agentForSandbox()), events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: second.warm as never })).rejects.toThrow('already exists');
    expect(second.calls).toEqual(['discard']);
  });

  it("restores a clone for the pod when the spare's VM no longer answers, and reports that clone's start as the boot", async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { warm } = spareVm(true);
    const restored = spareVm();
    const templates = { keyFor: () => 'k1', prepare: jest.fn(), startClone: jest.fn(async () => restored.warm.clone) } as unknown as VmTemplates;
    const cold = fakeDriver('virtio-serial', agentForSandbox());
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
    try {
      expect(templates.startClone).toHaveBeenCalledWith(expect.anything(), expect.anything(), { make: false });
      expect(cold.booted).toBeUndefined();
      expect(restored.agent.createSandbox).toHaveBeenCalledTimes(1);
      // Not the spare's restore (0.5 s, its VM unused): this clone's, measured now.
      expect(sandbox.bootSeconds).not.toBe(0.5);
      expect(sandbox.bootSeconds).toBeLessThan(0.5);
    } finally {
      await sandbox.destroy();
    }
  });

  it('starts the pod\'s VM as without it (a clone, else cold), the spare VM ended, when it no longer answers', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const { agent, driver, warm, calls } = spareVm(true);
    const templates = { keyFor: () => 'k1', prepare: jest.fn(), startClone: jest.fn(async () => undefined) } as unknown as VmTemplates;
    const cold = fakeDriver('virtio-serial', agentForSandbox());
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'default', hostname: 'h', config, hypervisor: cold, events, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), templates, warm: warm as never });
    try {
      expect(agent.closed).toBe(true);
      expect(driver.stopped).toBe(true);
      expect(templates.startClone).toHaveBeenCalledWith(expect.anything(), expect.anything(), { make: false });
      expect(cold.booted).toBeDefined(); // the fake template offers no clone
    } finally {
      await sandbox.destroy();
    }
    // Its work dir was moved in: what its files lived in goes with the sandbox.
    expect(calls).toEqual([`moveTo ${path.join(dir, 'state', 'default', 'pod1')} (owner recorded) (clock being set) (sandbox being created)`, 'removeOrigin']);
  });
});
