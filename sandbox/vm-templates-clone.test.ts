// VmTemplates' clone path against a fake VMM that saves and restores templates (no
// QEMU): which failures condemn the shared template and which only cost this pod its
// clone. A tenant controls its pod's cgroup, where the clone's QEMU runs: an OOM kill
// or a timeout there must not remove a template every other pod uses.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { HypervisorError, TemplateRestoreError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { Hypervisor, TemplateFiles, VmConfig, VmExit } from '../hypervisors/hypervisor';
import { fakeAgent, FakeAgent } from './testing/fake-agent';
import { listTemplates, VmTemplates } from './vm-templates';

const MiB = 1024 * 1024;

/** How the fake's next clone ends. */
type CloneOutcome = 'runs' | 'refused' | 'killed' | 'refused, and replaced meanwhile' | 'runs, its template removed meanwhile';

/** What the fake saw while a template VM booted. */
interface TemplateBootSeen {
  /** The lock's record of the template VM, as it stood before the VM answered. */
  vmmRecord?: string;
  /** While a clone restored: whether the key's lock was held, and what its RAM file (the fd it was given) held. */
  restore?: { locked: boolean; memory: Buffer };
}

/** A VMM whose templates are files and whose "guest" is the fake agent on the virtio-serial socket. */
function templatingDriver(agent: FakeAgent, outcome: () => CloneOutcome, seen: TemplateBootSeen = {}): Hypervisor {
  let endpoint: net.Server | undefined;
  let resolveExited!: (exit: VmExit) => void;
  let template: TemplateFiles | undefined;
  const serve = async (config: VmConfig): Promise<void> => {
    endpoint = net.createServer((stream) => agent.server.serveConnection(stream));
    await new Promise<void>((r) => endpoint!.listen((config.agentChannel as { socketPath: string }).socketPath, r));
  };
  return {
    name: 'fake-templating',
    agentChannelKind: 'virtio-serial',
    exited: new Promise((r) => (resolveExited = r)),
    async start() {
      throw new Error('not used: pods here are clones');
    },
    async stop() {
      await new Promise((r) => (endpoint ? endpoint.close(r) : r(undefined)));
      resolveExited({ code: 0, signal: null });
    },
    pid: () => undefined,
    consoleTail: () => '',
    templateRefusal: () => undefined,
    templateIdentity: (config) => JSON.stringify({ memoryMiB: config.memoryMiB, kernelParams: config.kernelParams }),
    async startTemplate(config, files, onSpawned) {
      template = files;
      // This process stands in for the VMM: it runs, and nobody kills it here.
      onSpawned(process.pid);
      const templatesDir = path.dirname(path.dirname(files.memoryPath));
      const lock = fs.readdirSync(templatesDir).find((e) => /^\.lock-[0-9a-f]{32}$/.test(e));
      if (lock && fs.existsSync(path.join(templatesDir, lock, 'vmm'))) seen.vmmRecord = fs.readFileSync(path.join(templatesDir, lock, 'vmm'), 'utf8');
      fs.writeFileSync(files.memoryPath, Buffer.alloc(MiB), { mode: 0o600 });
      await serve(config);
    },
    async saveTemplate() {
      fs.writeFileSync(template!.statePath, 'saved state', { mode: 0o600 });
      await new Promise((r) => endpoint!.close(r));
    },
    async startClone(config, files, _state, opts) {
      const what = outcome();
      const templatesDir = path.dirname(path.dirname(files.memoryPath));
      if (what === 'runs, its template removed meanwhile') {
        // factory destroy, or a shim that replaced it as stale: the fd still reaches the RAM file that was checked.
        fs.rmSync(path.dirname(files.memoryPath), { recursive: true });
        seen.restore = { locked: fs.readdirSync(templatesDir).some((e) => e.startsWith('.lock-')), memory: fs.readFileSync(`/proc/self/fd/${opts!.memoryFd}`) };
      }
      if (what === 'refused') throw new TemplateRestoreError('restoring the template failed: load of migration failed');
      if (what === 'killed') throw new HypervisorError('restoring the template: QEMU exited (code null, signal SIGKILL)');
      if (what === 'refused, and replaced meanwhile') {
        // Another shim made a new template of the key between this check and the removal.
        const meta = path.join(path.dirname(files.memoryPath), 'template.json');
        fs.writeFileSync(meta, JSON.stringify({ ...JSON.parse(fs.readFileSync(meta, 'utf8')), stateSha256: 'another template' }));
        throw new TemplateRestoreError('restoring the template failed: load of migration failed');
      }
      await serve(config);
    },
    async plugNics() {},
  };
}

describe('VM templates: a clone that fails', () => {
  let dir: string;
  let agent: FakeAgent;
  let outcome: CloneOutcome;
  let templates: VmTemplates;
  let seen: TemplateBootSeen;
  const vm = (id: string): VmConfig => ({
    id,
    workDir: path.join(dir, 'pods', id),
    binaryPath: '/usr/bin/qemu-system-x86_64',
    accelerator: 'tcg',
    kernelPath: path.join(dir, 'vmlinux'),
    rootfs: { kind: 'image', path: path.join(dir, 'rootfs.img') },
    kernelParams: ['quiet'],
    memoryMiB: 1024,
    vcpus: 1,
    agentChannel: { kind: 'virtio-serial', socketPath: path.join(dir, 'pods', id, 'agent.sock'), portName: 'agent.channel.0' },
    sharedDirectories: [],
  });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-clone-'));
    fs.writeFileSync(path.join(dir, 'vmlinux'), 'kernel');
    fs.writeFileSync(path.join(dir, 'rootfs.img'), Buffer.alloc(4096));
    agent = fakeAgent({ SetGuestDateTime: () => ({}) });
    outcome = 'runs';
    seen = {};
    templates = new VmTemplates(path.join(dir, 'templates'), () => templatingDriver(agent, () => outcome, seen), { bootTimeoutMs: 5000, callTimeoutMs: 5000 }, silentLogger());
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function startPod(id: string): Promise<boolean> {
    fs.mkdirSync(path.join(dir, 'pods', id), { recursive: true });
    const clone = await templates.startClone(vm(id));
    if (!clone) return false;
    clone.agent.close();
    await clone.hypervisor.stop(0);
    return true;
  }
  const kept = () => listTemplates(path.join(dir, 'templates')).map((t) => path.basename(t.dir));

  it("records the template VM in the key's lock as soon as it is spawned, before it answers (a takeover ends it by that record)", async () => {
    expect(await startPod('a')).toBe(true);
    expect(seen.vmmRecord).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
    // Released with the lock once the template is saved.
    expect(fs.readdirSync(path.join(dir, 'templates')).filter((e) => e.startsWith('.'))).toEqual([]);
  });

  it('keeps the template when the clone was killed: the pod boots cold, the next pod is a clone', async () => {
    expect(await startPod('a')).toBe(true);
    const made = kept();
    expect(made).toHaveLength(1);
    outcome = 'killed';
    expect(await startPod('b')).toBe(false);
    expect(kept()).toEqual(made);
    outcome = 'runs';
    expect(await startPod('c')).toBe(true);
  });

  it('removes the template when QEMU refuses its state, so that the next pod makes it anew', async () => {
    expect(await startPod('a')).toBe(true);
    outcome = 'refused';
    expect(await startPod('b')).toBe(false);
    expect(kept()).toEqual([]);
    outcome = 'runs';
    expect(await startPod('c')).toBe(true);
    expect(kept()).toHaveLength(1);
  });

  it('makes the template in prepare(), and does not make it again for a clone asked not to (in the pod cgroup)', async () => {
    fs.mkdirSync(path.join(dir, 'pods', 'a'), { recursive: true });
    expect(await templates.prepare(vm('a'))).toBe(true);
    const made = kept();
    expect(made).toHaveLength(1);
    // Gone between the two (factory destroy, an eviction): the pod boots cold, nothing is made.
    fs.rmSync(path.join(dir, 'templates', made[0]), { recursive: true });
    expect(await templates.startClone(vm('a'), undefined, { make: false })).toBeUndefined();
    expect(kept()).toEqual([]);
  });

  it('makes no template where another user could swap its directory, nor where its sockets would not fit', async () => {
    fs.mkdirSync(path.join(dir, 'pods', 'a'), { recursive: true });
    const open = path.join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777); // anyone may rename what is in it
    const templatesIn = (templatePath: string) => new VmTemplates(templatePath, () => templatingDriver(agent, () => outcome), { bootTimeoutMs: 5000, callTimeoutMs: 5000 }, silentLogger());
    expect(await templatesIn(path.join(open, 'templates')).prepare(vm('a'))).toBe(false);
    expect(fs.readdirSync(path.join(open, 'templates'))).toEqual([]);
    // The sticky bit (as /tmp's): others cannot move what is ours.
    fs.chmodSync(open, 0o1777);
    expect(await templatesIn(path.join(open, 'templates')).prepare(vm('a'))).toBe(true);
    const long = path.join(dir, 'x'.repeat(80));
    expect(await templatesIn(long).prepare(vm('a'))).toBe(false);
    expect(fs.existsSync(long)).toBe(false);
  });

  it("restores after giving the key's lock back, from the RAM file it opened under the lock", async () => {
    expect(await startPod('a')).toBe(true);
    outcome = 'runs, its template removed meanwhile';
    expect(await startPod('b')).toBe(true);
    expect(seen.restore).toEqual({ locked: false, memory: Buffer.alloc(MiB) });
    expect(kept()).toEqual([]);
    // Its fd was closed once the VM had opened the file.
    expect(fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { return ''; } }).filter((l) => l.includes('memory'))).toEqual([]);
  });

  it('keeps a template that replaced the refused one meanwhile', async () => {
    expect(await startPod('a')).toBe(true);
    const made = kept();
    outcome = 'refused, and replaced meanwhile';
    expect(await startPod('b')).toBe(false);
    expect(kept()).toEqual(made);
  });
});
