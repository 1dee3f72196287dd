// Pods started as clones of a template VM (Kata's [factory] enable_template). The
// template boots once, with no pod in it, and is saved once its agent answers: its RAM
// file plus its device and vCPU state. A clone maps that RAM copy-on-write and loads
// the state, so it skips the kernel boot and the agent's start-up, and shares the
// template's pages with every other clone.
//
// Templates are keyed by what the guest sees (the driver's templateIdentity(): for
// QEMU, its command line with host paths aside, the binary, the kernel and image
// files): a changed configuration or guest makes another template, never a wrong clone.
// Each is made under a lock and appears by an atomic rename; it is checked before use;
// whatever fails, the pod boots cold, with a log line saying why.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../lib/logger';
import { ProcessRecord, readProcessRecord, recordAlive, writeProcessRecord } from '../lib/recorded-process';
import { Hypervisor, TemplateFiles, VmConfig } from '../hypervisors/hypervisor';
import { AgentClient, GuestDetails, TtrpcAgentClient } from './agent-client';
import { agentChannelFor } from './sandbox';
import { FailedPreconditionError } from '../lib/errors';

/** What the template directory of one template holds. */
const MEMORY_FILE = 'memory';
const STATE_FILE = 'state';
const META_FILE = 'template.json';
const LOCK_DIR = '.lock';
const OWNER_FILE = 'owner';
/** Bump when what a template directory holds changes. */
const FORMAT = 1;

export interface TemplateMeta {
  format: number;
  key: string;
  /** sha256 of the state file: a clone of a truncated or altered state is never started. */
  stateSha256: string;
  memoryBytes: number;
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
}

/** Why `hypervisor` cannot clone VMs like `vm`; undefined when it can. */
export function cloneRefusal(hypervisor: Hypervisor, vm: VmConfig): string | undefined {
  if (!hypervisor.templateRefusal || !hypervisor.templateIdentity || !hypervisor.startTemplate || !hypervisor.saveTemplate || !hypervisor.startClone) {
    return `the ${hypervisor.name} driver cannot save and restore VMs`;
  }
  return hypervisor.templateRefusal(vm);
}

/** The template's key: a hash of what the guest sees, the guest files' identities included. */
export function templateKey(hypervisor: Hypervisor, vm: VmConfig): string {
  const files = [vm.kernelPath, vm.rootfs.path].map(fileIdentity);
  // As a template of it would be made, in one fixed place: the pod's own paths and id are no part of it.
  const identity = hypervisor.templateIdentity!(templateVm(vm, '/template', hypervisor));
  return createHash('sha256').update(JSON.stringify({ format: FORMAT, identity, files })).digest('hex').slice(0, 32);
}

function fileIdentity(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${file}:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}

export function templateFiles(dir: string): TemplateFiles {
  return { memoryPath: path.join(dir, MEMORY_FILE), statePath: path.join(dir, STATE_FILE) };
}

/**
 * The VM a template is booted as: the pod's, without the pod. No NIC (a clone gets its
 * pod's by hot-plug), the shared directory an empty one of its own (never mounted in
 * the template: a mounted 9p share cannot migrate), sockets in its own directory.
 */
export function templateVm(vm: VmConfig, dir: string, hypervisor: Hypervisor): VmConfig {
  return {
    ...vm,
    id: `template-${path.basename(dir)}`,
    workDir: dir,
    agentChannel: agentChannelFor(hypervisor.agentChannelKind, dir),
    debugConsole: vm.debugConsole && { ...vm.debugConsole, socketPath: path.join(dir, 'debug-console.sock') },
    sharedDirectories: vm.sharedDirectories.map((d, i) => ({ ...d, hostPath: path.join(dir, `share${i}`) })),
    network: undefined,
  };
}

export class VmTemplates {
  constructor(
    private readonly templatePath: string,
    private readonly newHypervisor: () => Hypervisor,
    private readonly agentOptions: AgentOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts `vm` as a clone, making its template first if there is none. Undefined (and
   * nothing left running) when it cannot: the caller boots the VM cold.
   */
  async startClone(vm: VmConfig, vmExitedLogger: Logger = this.logger): Promise<Clone | undefined> {
    const probe = this.newHypervisor();
    const refusal = cloneRefusal(probe, vm);
    if (refusal) {
      this.logger.info({ reason: refusal }, 'VM templates are on, but this VM cannot be a clone; booting it cold');
      return undefined;
    }
    let dir: string;
    try {
      dir = await this.ensureTemplate(vm, probe);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'no VM template could be made; booting cold');
      return undefined;
    }
    const hypervisor = this.newHypervisor();
    try {
      await hypervisor.startClone!(vm, templateFiles(dir));
      const { agent, details } = await TtrpcAgentClient.connect(vm.agentChannel, { ...this.agentOptions, vmExited: hypervisor.exited, logger: vmExitedLogger });
      try {
        // The clone woke with the template's clock.
        await agent.setGuestDateTime(Date.now());
      } catch (err) {
        agent.close();
        throw err;
      }
      return { hypervisor, agent, details };
    } catch (err) {
      await hypervisor.stop(0).catch(() => undefined);
      // A template that cannot be restored is replaced by the next pod that needs it.
      this.logger.warn({ template: dir, err: (err as Error).message, console: hypervisor.consoleTail(1024) }, 'the clone did not start; removing its template and booting cold');
      removeTemplate(dir);
      return undefined;
    }
  }

  /** The directory of a valid template for `vm`, made now if there is none. */
  async ensureTemplate(vm: VmConfig, hypervisor: Hypervisor = this.newHypervisor()): Promise<string> {
    const refusal = cloneRefusal(hypervisor, vm);
    if (refusal) throw new FailedPreconditionError(`no template can be made: ${refusal}`);
    const key = templateKey(hypervisor, vm);
    const dir = path.join(this.templatePath, key);
    if (this.validTemplate(dir, key)) return dir;
    fs.mkdirSync(this.templatePath, { recursive: true, mode: 0o700 });
    return this.underLock(async () => {
      // Another shim may have made it while this one waited.
      if (this.validTemplate(dir, key)) return dir;
      if (fs.existsSync(dir)) removeTemplate(dir);
      await this.makeTemplate(vm, key, dir);
      return dir;
    });
  }

  /** True when `dir` holds a whole template for `key`; a broken one is logged and removed. */
  private validTemplate(dir: string, key: string): boolean {
    let meta: TemplateMeta;
    try {
      meta = JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')) as TemplateMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !fs.existsSync(dir)) return false;
      this.logger.warn({ template: dir, err: (err as Error).message }, 'VM template has no readable description; replacing it');
      return false;
    }
    const files = templateFiles(dir);
    const problem =
      meta.format !== FORMAT || meta.key !== key
        ? 'it was made for another VM'
        : fileSize(files.memoryPath) !== meta.memoryBytes
          ? 'its memory file has the wrong size'
          : sha256File(files.statePath) !== meta.stateSha256
            ? 'its state file is not the one saved'
            : undefined;
    if (problem) this.logger.warn({ template: dir, problem }, 'VM template is stale or corrupt; replacing it');
    return problem === undefined;
  }

  private async makeTemplate(vm: VmConfig, key: string, dir: string): Promise<void> {
    const building = fs.mkdtempSync(path.join(this.templatePath, `.building-${key.slice(0, 8)}-`));
    const started = performance.now();
    const hypervisor = this.newHypervisor();
    try {
      fs.chmodSync(building, 0o700);
      const config = templateVm(vm, building, hypervisor);
      for (const shared of config.sharedDirectories) fs.mkdirSync(shared.hostPath, { mode: 0o700 });
      const files = templateFiles(building);
      this.logger.info({ template: dir }, 'making a VM template (a full boot, once)');
      await hypervisor.startTemplate!(config, files);
      const { agent } = await TtrpcAgentClient.connect(config.agentChannel, { ...this.agentOptions, vmExited: hypervisor.exited, logger: this.logger, withoutBootId: true });
      // No call may be in flight when the state is saved: a clone would answer it to nobody.
      agent.close();
      await hypervisor.saveTemplate!();
      const meta: TemplateMeta = { format: FORMAT, key, stateSha256: sha256File(files.statePath), memoryBytes: fileSize(files.memoryPath), createdAt: new Date().toISOString() };
      fs.writeFileSync(path.join(building, META_FILE), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
      // Only the template's files stay: the sockets and share were the template VM's.
      for (const entry of fs.readdirSync(building)) if (![MEMORY_FILE, STATE_FILE, META_FILE].includes(entry)) fs.rmSync(path.join(building, entry), { recursive: true, force: true });
      fs.renameSync(building, dir);
      this.logger.info({ template: dir, seconds: ((performance.now() - started) / 1000).toFixed(1), stateBytes: fileSize(path.join(dir, STATE_FILE)) }, 'VM template made');
    } catch (err) {
      await hypervisor.stop(0).catch(() => undefined);
      fs.rmSync(building, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Runs `fn` holding the template directory's lock (a directory: mkdir is atomic). A
   * lock whose owner is gone (a shim killed mid-build) is taken over.
   */
  private async underLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = path.join(this.templatePath, LOCK_DIR);
    const deadline = Date.now() + this.agentOptions.bootTimeoutMs * 2;
    for (;;) {
      try {
        fs.mkdirSync(lock, { mode: 0o700 });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner: ProcessRecord | undefined = readProcessRecord(path.join(lock, OWNER_FILE));
      // A lock just made has no owner record yet: that is not a dead owner.
      if (owner && !recordAlive(owner)) {
        this.logger.warn({ lock, owner }, 'the VM template lock is held by a process that is gone; taking it over');
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new FailedPreconditionError(`the VM template lock ${lock} is still held (by ${JSON.stringify(owner ?? 'a process that has not recorded itself yet')})`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    try {
      writeProcessRecord(path.join(lock, OWNER_FILE), process.pid);
      return await fn();
    } finally {
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
}

/** Every template under `templatePath`, for `kata-ts-runtime factory status`. */
export function listTemplates(templatePath: string): Array<{ dir: string; meta?: TemplateMeta; bytes: number }> {
  let entries: string[];
  try {
    entries = fs.readdirSync(templatePath);
  } catch {
    return [];
  }
  return entries
    .filter((e) => !e.startsWith('.'))
    .map((e) => {
      const dir = path.join(templatePath, e);
      let meta: TemplateMeta | undefined;
      try {
        meta = JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')) as TemplateMeta;
      } catch {
        meta = undefined;
      }
      const bytes = [MEMORY_FILE, STATE_FILE].reduce((sum, f) => sum + allocatedBytes(path.join(dir, f)), 0);
      return { dir, meta, bytes };
    });
}

/** Removes one template; clones running from it keep their mapping of the (now unlinked) file. */
export function removeTemplate(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
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

function sha256File(file: string): string {
  try {
    return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch {
    return '';
  }
}
