// Pods started as clones of a template VM (Kata's [factory] enable_template). The
// template boots once, with no pod in it, and is saved once its agent answers: its RAM
// file plus its device and vCPU state. A clone maps that RAM copy-on-write and loads
// the state, so it skips the kernel boot and the agent's start-up, and shares the
// template's pages with every other clone.
//
// Templates are keyed by what the guest sees (the driver's templateIdentity(): for
// QEMU, its command line with host paths aside, the binary, the kernel and image
// files) and by the host's boot: a changed configuration, guest or host makes another
// template, never a wrong clone. Each key has a lock; a template is made under it and
// appears by an atomic rename; a clone's shim checks it, reads its state and opens its
// RAM file under the lock too, so no clone pairs one template's RAM with another's
// state, and restores after giving the lock back (QEMU gets the open file). Whatever fails, the pod boots cold,
// with a log line saying why.
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { fileIdentity } from '../lib/file-identity';
import { Logger } from '../lib/logger';
import { killRecordedIfAlive, ProcessRecord, readProcessRecord, readTrimmed, recordAlive, writeProcessRecord } from '../lib/recorded-process';
import { Hypervisor, TemplateFiles, VmConfig } from '../hypervisors/hypervisor';
import { AgentCallObserver, AgentClient, GuestDetails, TtrpcAgentClient } from './agent-client';
import { agentChannelFor, fitsUnixSocketPaths } from './sandbox';
import { FailedPreconditionError, TemplateRestoreError } from '../lib/errors';

/** What the directory of one template holds. */
const MEMORY_FILE = 'memory';
const STATE_FILE = 'state';
const META_FILE = 'template.json';
/** `.lock-<key>`: held while its template is made, or checked and opened for a clone. */
const LOCK_PREFIX = '.lock-';
const BUILDING_PREFIX = '.building-';
const OWNER_FILE = 'owner';
/** The template VM's own record in the lock: a shim that takes a stale lock over kills it. */
const VMM_FILE = 'vmm';
/**
 * What kata-ts names in template_path; nothing else there is ever listed or removed (an
 * administrator may point template_path at a directory that holds other things). A
 * template is named by its key; what shims leave for a while carries a random suffix.
 */
const TEMPLATE_NAME = /^[0-9a-f]{32}$/;
const LOCK_NAME = /^\.lock-[0-9a-f]{32}$/;
const LOCK_CANDIDATE_NAME = /^\.lock-new-[A-Za-z0-9]{6}$/;
const BUILDING_NAME = /^\.building-([0-9a-f]{8})-[A-Za-z0-9]{6}$/;
const RENAMED_AWAY_NAME = /^\.(?:stale|trash)-[0-9a-f]{8}$/;
/** Bump when what a template directory holds changes. */
const FORMAT = 2;
/** Templates kept; the least recently cloned go first (each configuration, and each boot size, maximum memory or kernel parameter set a pod annotation chooses, makes one). */
export const MAX_TEMPLATES = 8;
/** A restored agent answers within a second or two: a clone gets this long, not a whole boot. */
const CLONE_AGENT_TIMEOUT_MS = 30_000;
const LOCK_POLL_MS = 100;
/** A template's agent session uses a few ids (one per boot poll); far more means a broken description. */
const MAX_AGENT_STREAM_ID = 2 ** 20;

export interface TemplateMeta {
  format: number;
  key: string;
  /** sha256 of the state file: a clone of a truncated or altered state is never started. */
  stateSha256: string;
  /** The memory file as saved: any write to it (a compromised VMM with the file open) changes its ctime. */
  memory: { bytes: number; ino: string; ctimeNs: string };
  /**
   * The ttrpc stream id the template's agent session would have used next. On
   * virtio-serial the restored agent cannot tell that the host reconnected: it refuses
   * ids that do not increase, and its answers to the template's timed-out boot polls may
   * still be queued in the clone's port. A clone's calls start here.
   */
  nextAgentStreamId: number;
  createdAt: string;
}

export interface AgentOptions {
  bootTimeoutMs: number;
  callTimeoutMs: number;
}

/** A started clone, its agent answering and its clock set. */
export interface Clone {
  hypervisor: Hypervisor;
  agent: AgentClient;
  details: GuestDetails;
  /** The key of the template it was restored from. */
  templateKey: string;
}

/** The key of `vm`'s template, or why it has none: it cannot be a clone (refusal), or its files cannot be read (error). */
function keyOrReason(hypervisor: Hypervisor, vm: VmConfig): { key?: string; refusal?: string; error?: string } {
  const refusal = cloneRefusal(hypervisor, vm);
  if (refusal) return { refusal };
  try {
    return { key: templateKey(hypervisor, vm) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Ends a clone its sandbox will not use (its pod network failed, or its NICs could not be plugged). */
export async function discardClone(clone: Clone): Promise<void> {
  clone.agent.close();
  await clone.hypervisor.stop(0).catch(() => undefined);
}

/** Why `hypervisor` cannot clone VMs like `vm`; undefined when it can. */
export function cloneRefusal(hypervisor: Hypervisor, vm: VmConfig): string | undefined {
  if (!hypervisor.templateRefusal || !hypervisor.templateIdentity || !hypervisor.startTemplate || !hypervisor.saveTemplate || !hypervisor.startClone || !hypervisor.plugNics) {
    return `the ${hypervisor.name} driver cannot save and restore VMs`;
  }
  return hypervisor.templateRefusal(vm);
}

/**
 * The template's key: a hash of what the guest sees, the guest files' identities, and
 * the host's boot (a template's CPU state is the host's of that boot: a new host
 * kernel, microcode or QEMU package comes with a reboot, and then a new template).
 */
export function templateKey(hypervisor: Hypervisor, vm: VmConfig): string {
  const files = [vm.kernelPath, vm.rootfs.path].map(fileIdentity);
  // As a template of it would be made, in one fixed place: the pod's own paths and id are no part of it.
  const identity = hypervisor.templateIdentity!(templateVm(vm, '/template', hypervisor));
  const hostBoot = readTrimmed('/proc/sys/kernel/random/boot_id');
  return createHash('sha256').update(JSON.stringify({ format: FORMAT, identity, files, hostBoot })).digest('hex').slice(0, 32);
}

export function templateFiles(dir: string): TemplateFiles {
  return { memoryPath: path.join(dir, MEMORY_FILE), statePath: path.join(dir, STATE_FILE) };
}

/**
 * On the kernel command line of a template VM, and so of its clones (a clone's must be
 * its template's): the guest's init then starts the agent with all its JavaScript
 * compiled at load and kept (guest/init). A clone inherits that compiled code, where it
 * would otherwise compile each handler on its first call, running V8's compiler while
 * QEMU translates it anew for that clone. A cold boot would only pay for it.
 */
export const TEMPLATE_KERNEL_PARAM = 'katats.template=1';

/** `vm` with the kernel command line of a template and its clones (startClone starts a clone as this). */
export function withTemplateKernelParam(vm: VmConfig): VmConfig {
  return { ...vm, kernelParams: [...vm.kernelParams, TEMPLATE_KERNEL_PARAM] };
}

/**
 * The VM a template is booted as: the pod's, without the pod. No NIC (a clone gets its
 * pod's by hot-plug), the shared directory an empty one of its own (never mounted in
 * the template: a mounted 9p share cannot migrate), sockets in its own directory.
 */
export function templateVm(vm: VmConfig, dir: string, hypervisor: Hypervisor): VmConfig {
  return {
    ...withTemplateKernelParam(vm),
    id: `template-${path.basename(dir)}`,
    workDir: dir,
    agentChannel: agentChannelFor(hypervisor.agentChannelKind, dir),
    debugConsole: vm.debugConsole && { ...vm.debugConsole, socketPath: path.join(dir, 'debug-console.sock') },
    sharedDirectories: vm.sharedDirectories.map((d, i) => ({ ...d, hostPath: path.join(dir, `share${i}`) })),
    network: undefined,
  };
}

/** A template that passed its check: its description, and the state bytes that were checked (the ones a clone loads). */
interface CheckedTemplate {
  state: Buffer;
  meta: TemplateMeta;
}

export interface CloneOptions {
  /** Whether a missing template is made first (false: prepare() made it, see startClone). */
  make: boolean;
  /** The clone's VMM dies with the caller (a spare shim's VM: warm-vm.ts). */
  dieWithSpawner?: boolean;
}

export class VmTemplates {
  constructor(
    private readonly templatePath: string,
    private readonly newHypervisor: () => Hypervisor,
    private readonly agentOptions: AgentOptions,
    private readonly logger: Logger,
  ) {}

  /** Whether `a` and `b` would be clones of one template (false when either cannot be a clone, or has no key: its files are missing). */
  sameTemplate(a: VmConfig, b: VmConfig): boolean {
    const hypervisor = this.newHypervisor();
    const [ka, kb] = [keyOrReason(hypervisor, a), keyOrReason(hypervisor, b)];
    return ka.key !== undefined && ka.key === kb.key;
  }

  /** The key of `vm`'s template as its files are now; undefined (logged) when it cannot be a clone, or its files cannot be read. */
  keyFor(vm: VmConfig): string | undefined {
    const { key, refusal, error } = keyOrReason(this.newHypervisor(), vm);
    if (refusal) this.logger.info({ reason: refusal }, 'this VM cannot be a clone');
    if (error) this.logger.warn({ err: error }, "this VM's template key cannot be computed");
    return key;
  }

  /**
   * Makes the template for `vm` if there is none. A pod's shim calls this before it
   * joins the pod's cgroup, where the clone will run: a template serves every pod, and
   * its boot must be neither charged to one tenant's pod nor run under its CPU quota
   * (which would hold up every pod waiting for the key's lock). True when there is a
   * template to clone; false, logged, when the pod must boot cold.
   */
  async prepare(vm: VmConfig): Promise<boolean> {
    const hypervisor = this.newHypervisor();
    const refusal = cloneRefusal(hypervisor, vm);
    if (refusal) {
      this.logger.info({ reason: refusal }, 'VM templates are on, but this VM cannot be a clone; booting it cold');
      return false;
    }
    try {
      // Most recently used: no eviction picks it before this pod's clone is restored from it.
      await this.withTemplate(vm, templateKey(hypervisor, vm), hypervisor, { make: true }, async (dir) => touch(path.join(dir, META_FILE)));
      return true;
    } catch (err) {
      this.logger.warn({ template: this.templatePath, err: (err as Error).message }, 'no VM template could be made; booting cold');
      return false;
    }
  }

  /**
   * Starts `vm` as a clone, making its template first if there is none (unless `make`
   * is false: prepare() made it, and a template gone since is not made again in the
   * pod's cgroup). Undefined (and nothing left running) when it cannot: the caller
   * boots the VM cold.
   */
  async startClone(vm: VmConfig, observeCall?: AgentCallObserver, opts: CloneOptions = { make: true }): Promise<Clone | undefined> {
    const hypervisor = this.newHypervisor();
    const refusal = cloneRefusal(hypervisor, vm);
    if (refusal) {
      this.logger.info({ reason: refusal }, 'VM templates are on, but this VM cannot be a clone; booting it cold');
      return undefined;
    }
    let dir: string | undefined;
    let restored = false;
    let cloned: TemplateMeta | undefined;
    try {
      const key = templateKey(hypervisor, vm);
      dir = path.join(this.templatePath, key);
      // Its state read and its RAM file opened under the key's lock, so both are one
      // template's: one replaced meanwhile would give QEMU one template's RAM and another's
      // state. The restore itself runs after the lock is given back: clones of one template
      // start side by side, and a caller at a low priority (a spare) holds up no pod.
      let nextAgentStreamId = 1;
      let checked: { state: Buffer; memoryFd: number; files: TemplateFiles } | undefined;
      await this.withTemplate(vm, key, hypervisor, opts, async (templateDir, { state, meta }) => {
        cloned = meta;
        nextAgentStreamId = meta.nextAgentStreamId;
        touch(path.join(templateDir, META_FILE)); // most recently used: kept longest
        const files = templateFiles(templateDir);
        // Last: nothing that may throw follows it inside the lock.
        checked = { state, files, memoryFd: fs.openSync(files.memoryPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW) };
      }).catch((err: unknown) => {
        if (checked) fs.closeSync(checked.memoryFd); // the lock's release failed after the open
        throw err;
      });
      const { state, files, memoryFd } = checked!;
      try {
        await hypervisor.startClone!(withTemplateKernelParam(vm), files, state, { memoryFd, dieWithSpawner: opts.dieWithSpawner });
      } finally {
        fs.closeSync(memoryFd);
      }
      restored = true;
      const connectOptions = { ...this.agentOptions, bootTimeoutMs: Math.min(this.agentOptions.bootTimeoutMs, CLONE_AGENT_TIMEOUT_MS), vmExited: hypervisor.exited, logger: this.logger, observeCall, firstStreamId: nextAgentStreamId };
      // boot_id is made on its first read: not before the RNG was reseeded for this clone (below).
      const { agent } = await TtrpcAgentClient.connect(vm.agentChannel, { ...connectOptions, withoutBootId: true });
      try {
        // The clone woke with the template's clock.
        await agent.setGuestDateTime(Date.now());
        const details = await agent.guestDetails();
        return { hypervisor, agent, details, templateKey: key };
      } catch (err) {
        agent.close();
        throw err;
      }
    } catch (err) {
      await hypervisor.stop(0).catch(() => undefined);
      const why = { template: dir, err: (err as Error).message, console: hypervisor.consoleTail(1024) };
      if (err instanceof TemplateRestoreError && dir && cloned) {
        // Only a template whose state QEMU refuses is bad; the next pod that needs it makes it anew.
        this.logger.warn(why, 'the clone did not start: its template cannot be restored; removing it and booting cold');
        await this.removeBadTemplate(dir, cloned);
      } else {
        this.logger.warn(why, restored ? 'the clone did not start; booting cold' : 'no clone could be made; booting cold');
      }
      return undefined;
    }
  }

  /** The directory of a valid template for `vm`, made now if there is none (`kata-ts-runtime factory init`). */
  async ensureTemplate(vm: VmConfig, hypervisor: Hypervisor = this.newHypervisor()): Promise<string> {
    const refusal = cloneRefusal(hypervisor, vm);
    if (refusal) throw new FailedPreconditionError(`no template can be made: ${refusal}`);
    let made = '';
    await this.withTemplate(vm, templateKey(hypervisor, vm), hypervisor, { make: true }, async (dir) => void (made = dir));
    return made;
  }

  /**
   * Runs `use` on a valid template for `vm` (made first if need be and `make`) and its
   * saved state, the bytes that were checked, holding the key's lock.
   */
  private async withTemplate(vm: VmConfig, key: string, hypervisor: Hypervisor, { make }: { make: boolean }, use: (dir: string, checked: CheckedTemplate) => Promise<void>): Promise<void> {
    this.checkTemplatePath();
    const dir = path.join(this.templatePath, key);
    await this.underLock(key, async (lock) => {
      let checked = this.checkedTemplate(dir, key);
      if (!checked && !make) throw new FailedPreconditionError(`the VM template ${dir} is gone or no longer valid since this pod's shim checked it; not making it again in the pod's cgroup`);
      if (!checked) {
        if (fs.existsSync(dir)) removeTemplate(dir);
        await this.makeTemplate(vm, key, dir, lock);
        await this.evictBeyond(MAX_TEMPLATES, key);
        checked = this.checkedTemplate(dir, key);
        if (!checked) throw new FailedPreconditionError(`the VM template ${dir} just made does not pass its own check`);
      }
      await use(dir, checked);
    });
  }

  /**
   * The template directory must be root's and closed to others: every clone's RAM starts
   * there. So must the directories above it be, or whoever could write one could put
   * another directory, with a template of their making, in its place.
   */
  private checkTemplatePath(): void {
    // A template VM's sockets live in its build directory there.
    if (!fitsUnixSocketPaths(path.join(this.templatePath, `${BUILDING_PREFIX}${'0'.repeat(8)}-${'0'.repeat(6)}`))) {
      throw new FailedPreconditionError(`[factory] template_path ${this.templatePath} is too long: a template VM's Unix sockets under it would exceed 107 bytes; choose a shorter template_path`);
    }
    fs.mkdirSync(this.templatePath, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(this.templatePath);
    const uid = process.getuid?.() ?? 0;
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
      throw new FailedPreconditionError(`[factory] template_path ${this.templatePath} must be a directory (not a symlink) owned by uid ${uid} with no access for group or others (mode 0700); it is ${st.isSymbolicLink() ? 'a symlink' : `mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}`}`);
    }
    // As written (a symlink there is checked as the entry it is) and as resolved.
    const chains = [path.dirname(path.resolve(this.templatePath)), fs.realpathSync(path.dirname(this.templatePath))];
    for (const start of chains) {
      for (let dir = start; ; dir = path.dirname(dir)) {
        const above = fs.lstatSync(dir);
        const trusted = above.uid === 0 || above.uid === uid;
        // Writable by others only with the sticky bit (/tmp, /var/tmp): then they cannot move what is ours.
        const closed = above.isSymbolicLink() || (above.mode & 0o022) === 0 || (above.mode & 0o1000) !== 0;
        if (!trusted || !closed) {
          throw new FailedPreconditionError(`[factory] template_path ${this.templatePath}: ${dir} above it must be root's (or uid ${uid}'s) and not writable by group or others (or sticky, as /tmp); it is mode ${(above.mode & 0o7777).toString(8)}, owner ${above.uid}`);
        }
        if (dir === path.dirname(dir)) break;
      }
    }
  }

  /** The description and saved state when `dir` holds a whole, unaltered template for `key`; undefined (a broken one logged) otherwise. */
  private checkedTemplate(dir: string, key: string): CheckedTemplate | undefined {
    let meta: TemplateMeta;
    try {
      meta = JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')) as TemplateMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !fs.existsSync(dir)) return undefined;
      this.logger.warn({ template: dir, err: (err as Error).message }, 'VM template has no readable description; replacing it');
      return undefined;
    }
    const files = templateFiles(dir);
    const memory = memoryIdentity(files.memoryPath);
    const state = readNoFollow(files.statePath);
    const problem =
      meta.format !== FORMAT || meta.key !== key
        ? 'it was made for another VM'
        : !(Number.isInteger(meta.nextAgentStreamId) && meta.nextAgentStreamId % 2 === 1 && meta.nextAgentStreamId > 0 && meta.nextAgentStreamId <= MAX_AGENT_STREAM_ID)
          ? 'its description is malformed'
        : !memory || memory.bytes !== meta.memory?.bytes || memory.ino !== meta.memory.ino || memory.ctimeNs !== meta.memory.ctimeNs
          ? 'its memory file was changed or replaced after it was saved'
          : !state || sha256(state) !== meta.stateSha256
            ? 'its state file is not the one saved'
            : undefined;
    if (problem) this.logger.warn({ template: dir, problem }, 'VM template is stale or corrupt; replacing it');
    return problem === undefined ? { state: state!, meta } : undefined;
  }

  private async makeTemplate(vm: VmConfig, key: string, dir: string, lock: string): Promise<void> {
    const building = fs.mkdtempSync(path.join(this.templatePath, `${BUILDING_PREFIX}${key.slice(0, 8)}-`));
    const started = performance.now();
    const hypervisor = this.newHypervisor();
    try {
      fs.chmodSync(building, 0o700);
      const config = templateVm(vm, building, hypervisor);
      for (const shared of config.sharedDirectories) fs.mkdirSync(shared.hostPath, { mode: 0o700 });
      const files = templateFiles(building);
      this.logger.info({ template: dir }, 'making a VM template (a full boot, once)');
      // Recorded at once (pid and start time): a maker killed while its VMM still boots
      // leaves a record the takeover ends it by, wherever the death signal did not reach
      // (killed before setpriv armed it; a configured QEMU wrapper that forks).
      await hypervisor.startTemplate!(config, files, (pid) => {
        try {
          writeProcessRecord(path.join(lock, VMM_FILE), pid);
        } catch {
          /* gone already: nothing to end */
        }
      });
      // The template must not read boot_id: the kernel would fix it for every clone.
      const { agent } = await TtrpcAgentClient.connect(config.agentChannel, { ...this.agentOptions, vmExited: hypervisor.exited, logger: this.logger, withoutBootId: true });
      // No call may be in flight when the state is saved: a clone would answer it to nobody.
      // (The boot polls that timed out may still be answered into the port: see nextAgentStreamId.)
      const nextAgentStreamId = agent.unusedStreamId;
      agent.close();
      await hypervisor.saveTemplate!();
      for (const file of [files.memoryPath, files.statePath]) fsyncFile(file);
      const memory = memoryIdentity(files.memoryPath)!;
      const meta: TemplateMeta = { format: FORMAT, key, stateSha256: sha256(fs.readFileSync(files.statePath)), memory, nextAgentStreamId, createdAt: new Date().toISOString() };
      fs.writeFileSync(path.join(building, META_FILE), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600, flush: true });
      // Only the template's files stay: the sockets and share were the template VM's.
      for (const entry of fs.readdirSync(building)) if (![MEMORY_FILE, STATE_FILE, META_FILE].includes(entry)) fs.rmSync(path.join(building, entry), { recursive: true, force: true });
      fsyncFile(building);
      fs.renameSync(building, dir);
      fsyncFile(this.templatePath);
      this.logger.info({ template: dir, seconds: ((performance.now() - started) / 1000).toFixed(1), stateBytes: fileSize(path.join(dir, STATE_FILE)) }, 'VM template made');
    } catch (err) {
      await hypervisor.stop(0).catch(() => undefined);
      fs.rmSync(building, { recursive: true, force: true });
      throw err;
    } finally {
      fs.rmSync(path.join(lock, VMM_FILE), { force: true });
    }
  }

  /**
   * Removes the template `bad` describes, under the key's lock, and only if it is still
   * the one there: another shim may have replaced it with a good one meanwhile.
   */
  private async removeBadTemplate(dir: string, bad: TemplateMeta): Promise<void> {
    const key = path.basename(dir);
    await this.underLock(key, async () => {
      const there = readMeta(dir);
      if (!there || there.stateSha256 !== bad.stateSha256 || there.memory?.ino !== bad.memory.ino) return; // gone, or another template now
      moveToTrashAndRemove(this.templatePath, dir);
    }).catch((err) => this.logger.warn({ template: dir, err: (err as Error).message }, 'could not remove the VM template'));
  }

  /**
   * Keeps the `max` most recently used templates (by their description's mtime), `keep`
   * among them, and none of an older format. Each goes under its own lock, taken only if
   * free: a template another shim is checking or opening stays until a later eviction
   * (a clone that opened it restores from its open file, which outlives the removal).
   */
  private async evictBeyond(max: number, keep: string): Promise<void> {
    const all = listTemplates(this.templatePath).filter((t) => path.basename(t.dir) !== keep);
    // An older kata-ts's format is keyed apart from every current template: no pod of this one
    // would use it. (A newer one's is left to the newer kata-ts sharing the directory.)
    const older = all.filter((t) => t.meta && t.meta.format < FORMAT);
    const templates = all.filter((t) => !t.meta || t.meta.format >= FORMAT).sort((a, b) => b.usedMs - a.usedMs);
    const victims = [...older.map((t) => ({ t, why: `a VM template of an older format (${t.meta!.format})` })), ...templates.slice(Math.max(0, max - 1)).map((t) => ({ t, why: `more than ${max} VM templates: the least recently used` }))];
    for (const { t, why } of victims) {
      const notRemoved = await removeTemplateLocked(this.templatePath, t.dir, 0, this.logger);
      if (notRemoved) this.logger.info({ template: t.dir, notRemoved }, `not removed for now: ${why}`);
      else this.logger.info({ template: t.dir }, `removed ${why}`);
    }
  }

  private underLock<T>(key: string, fn: (lock: string) => Promise<T>): Promise<T> {
    return withTemplateLock(this.templatePath, key, this.agentOptions.bootTimeoutMs, this.logger, fn);
  }
}

/**
 * Runs `fn` holding `<templatePath>/.lock-<key>`. The lock appears whole (made aside
 * with its owner record, then renamed into place), so every lock names a live or dead
 * owner. A lock whose owner is gone (a shim killed mid-build) is taken over: it is
 * renamed away, then checked to be the dead owner's (two shims that found it dead at
 * once: the second must not take the first's new lock; it puts that back), its template
 * VM killed and its unfinished build removed. An owner removes only its own lock.
 */
export async function withTemplateLock<T>(templatePath: string, key: string, waitMs: number, logger: Logger, fn: (lock: string) => Promise<T>): Promise<T> {
  const lock = path.join(templatePath, `${LOCK_PREFIX}${key}`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const candidate = fs.mkdtempSync(path.join(templatePath, '.lock-new-'));
    writeProcessRecord(path.join(candidate, OWNER_FILE), process.pid);
    try {
      fs.renameSync(candidate, lock); // fails while a (non-empty) lock is there
      break;
    } catch (err) {
      fs.rmSync(candidate, { recursive: true, force: true });
      if (!['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    const owner: ProcessRecord | undefined = readProcessRecord(path.join(lock, OWNER_FILE));
    if (owner && !recordAlive(owner)) {
      const stale = path.join(templatePath, `.stale-${randomBytes(4).toString('hex')}`);
      try {
        fs.renameSync(lock, stale);
      } catch {
        continue; // another shim took it over first
      }
      if (!sameRecord(readProcessRecord(path.join(stale, OWNER_FILE)), owner)) {
        // A live shim's new lock, not the dead one: its own again (if that fails, it finds
        // its lock gone and leaves what is there alone).
        try {
          fs.renameSync(stale, lock);
        } catch {
          fs.rmSync(stale, { recursive: true, force: true });
        }
        continue;
      }
      logger.warn({ lock, owner }, 'the VM template lock was held by a shim that is gone; taking it over');
      await killRecordedIfAlive(path.join(stale, VMM_FILE));
      fs.rmSync(stale, { recursive: true, force: true });
      removeUnfinishedBuilds(templatePath, key);
      continue;
    }
    if (Date.now() > deadline) throw new FailedPreconditionError(`the VM template lock ${lock} is still held by ${JSON.stringify(owner)} after ${waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
  const mine = readProcessRecord(path.join(lock, OWNER_FILE));
  try {
    return await fn(lock);
  } finally {
    // Renamed away whole, then removed: emptied in place, the lock would for a moment be
    // an empty directory that a waiter's rename replaces, and removing it would then fail.
    if (sameRecord(readProcessRecord(path.join(lock, OWNER_FILE)), mine)) moveToTrashAndRemove(templatePath, lock);
  }
}

/**
 * Removes the template at `dir` under its key's lock, waiting at most `waitMs` for the
 * lock. Says why not when it was not removed (its lock stayed taken: in use), or
 * undefined when it was.
 */
export async function removeTemplateLocked(templatePath: string, dir: string, waitMs: number, logger: Logger): Promise<string | undefined> {
  const key = path.basename(dir);
  if (!TEMPLATE_NAME.test(key)) return 'not a template kata-ts named';
  try {
    const removed = await withTemplateLock(templatePath, key, waitMs, logger, async () => moveToTrashAndRemove(templatePath, dir));
    return removed ? undefined : 'gone already';
  } catch (err) {
    logger.debug({ template: dir, err: (err as Error).message }, 'VM template not removed');
    return (err as Error).message;
  }
}

/** Renames `entry` aside (atomic: from then on it is not there) and removes it; false when it was not there. */
function moveToTrashAndRemove(templatePath: string, entry: string): boolean {
  const trash = path.join(templatePath, `.trash-${randomBytes(4).toString('hex')}`);
  try {
    fs.renameSync(entry, trash);
  } catch {
    return false;
  }
  fs.rmSync(trash, { recursive: true, force: true });
  return true;
}

/** A template's description, never through a symlink; undefined when it has none that parses. */
function readMeta(dir: string): TemplateMeta | undefined {
  const bytes = readNoFollow(path.join(dir, META_FILE));
  try {
    return bytes && (JSON.parse(bytes.toString('utf8')) as TemplateMeta);
  } catch {
    return undefined;
  }
}

function sameRecord(a: ProcessRecord | undefined, b: ProcessRecord | undefined): boolean {
  return a !== undefined && b !== undefined && a.pid === b.pid && a.startTime === b.startTime;
}

/** Builds of `key` that a dead shim left (their VM is killed by then). */
function removeUnfinishedBuilds(templatePath: string, key: string): void {
  for (const e of fs.readdirSync(templatePath)) {
    if (BUILDING_NAME.exec(e)?.[1] === key.slice(0, 8)) fs.rmSync(path.join(templatePath, e), { recursive: true, force: true });
  }
}

/**
 * What shims that died left in `templatePath` (`factory destroy`): their locks (taken
 * over as a starting shim would: the template VM one recorded killed, its unfinished
 * build removed), lock candidates, unfinished builds whose key no live shim holds the
 * lock of, and the renamed-away locks and templates that were being removed. A live
 * shim's lock, and a build under it, are left alone. Answers how many.
 */
export async function removeAbandoned(templatePath: string, logger: Logger): Promise<number> {
  const list = (): string[] => {
    try {
      return fs.readdirSync(templatePath);
    } catch {
      return [];
    }
  };
  const ownerOf = (e: string) => readProcessRecord(path.join(templatePath, e, OWNER_FILE));
  let removed = 0;
  // Through the lock itself: a shim may take a dead lock over between a listing and a
  // removal, and its lock and template VM must then stay.
  for (const e of list().filter((e) => LOCK_NAME.test(e) && ownerOf(e) !== undefined && !recordAlive(ownerOf(e)))) {
    const key = e.slice(LOCK_PREFIX.length);
    if (await withTemplateLock(templatePath, key, 0, logger, async () => true).catch(() => false)) removed++;
  }
  const entries = list();
  const liveLocks = entries.filter((e) => LOCK_NAME.test(e) && recordAlive(ownerOf(e)));
  // A candidate is one shim's own, never taken over; one without its owner record yet is being made now.
  const deadCandidates = entries.filter((e) => LOCK_CANDIDATE_NAME.test(e) && ownerOf(e) !== undefined && !recordAlive(ownerOf(e)));
  const abandoned = entries.filter((e) => {
    const building = BUILDING_NAME.exec(e);
    if (building) return !liveLocks.some((lock) => lock.slice(LOCK_PREFIX.length).startsWith(building[1]));
    return RENAMED_AWAY_NAME.test(e);
  });
  for (const e of deadCandidates) if (moveToTrashAndRemove(templatePath, path.join(templatePath, e))) removed++;
  for (const e of abandoned) {
    fs.rmSync(path.join(templatePath, e), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/** Every template under `templatePath`, for `kata-ts-runtime factory status`. */
export function listTemplates(templatePath: string): Array<{ dir: string; meta?: TemplateMeta; bytes: number; usedMs: number }> {
  let entries: string[];
  try {
    entries = fs.readdirSync(templatePath);
  } catch {
    return [];
  }
  return entries
    .filter((e) => TEMPLATE_NAME.test(e) && isDirectory(path.join(templatePath, e)))
    .map((e) => {
      const dir = path.join(templatePath, e);
      let meta: TemplateMeta | undefined;
      let usedMs = 0;
      try {
        meta = JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')) as TemplateMeta;
        usedMs = fs.statSync(path.join(dir, META_FILE)).mtimeMs;
      } catch {
        meta = undefined;
      }
      const bytes = [MEMORY_FILE, STATE_FILE].reduce((sum, f) => sum + allocatedBytes(path.join(dir, f)), 0);
      return { dir, meta, bytes, usedMs };
    });
}

/** Removes one template; clones running from it keep their mapping of the (now unlinked) file. */
export function removeTemplate(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A directory itself, not a symlink to one. */
function isDirectory(entry: string): boolean {
  try {
    return fs.lstatSync(entry).isDirectory();
  } catch {
    return false;
  }
}

function memoryIdentity(file: string): TemplateMeta['memory'] | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    return { bytes: Number(st.size), ino: String(st.ino), ctimeNs: String(st.ctimeNs) };
  } catch {
    return undefined;
  }
}

function touch(file: string): void {
  const now = new Date();
  fs.utimesSync(file, now, now);
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return -1;
  }
}

/** Disk blocks the file takes (the memory file is sparse: only pages the template touched). */
function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The file's bytes, never through a symlink; undefined when it cannot be read. */
function readNoFollow(file: string): Buffer | undefined {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      return fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}
