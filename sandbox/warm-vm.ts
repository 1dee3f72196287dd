// A VM restored from its template before its pod exists ([factory] spare_vms). A spare
// shim daemon makes one while it waits to be claimed; the pod that claims the spare
// adopts the running VM instead of restoring one, which takes the restore (QEMU's
// start, the migration stream, the agent's first answer) off the pod's start.
//
// A VM's work dir cannot be renamed under it: QEMU's sockets, its pid file and its 9p
// root were opened by path or are found by path later (`delete`, `kata-ts-runtime
// exec`). So the spare's VM runs in a work dir that is a mount of its own, set up as a
// sandbox's is (shared-fs.ts), under `<state_dir>/.warm/<spare>/vm`; at the claim that
// mount is moved (mount --move) to `<state_dir>/<namespace>/<sandbox>`. QEMU's open
// directories follow the mount, and every path below the work dir is then the one a
// cold-booted sandbox has. mount(2) refuses to move a mount whose parent mount is
// shared, so `<state_dir>/.warm/<spare>` is a private bind of itself; and a mount moved
// under a shared one (systemd makes / and /run shared) would become shared itself, with
// copies in every peer, into which the pod's rootfs mounts would then propagate: so the
// sandbox's work dir is first made a private bind of itself, and the VM's moved onto it.
//
// The moved mount is a bind of `.warm/<spare>/vm`: the work dir's files live in that
// directory, which therefore stays until the sandbox's work dir is unmounted. The
// sandbox removes it after its work dir (removeOrigin); after a crash, the next spare
// or `factory destroy` does (sweepWarmDirs), once nothing is mounted from it.
//
// The spare's VM dies with the spare (the parent-death signal), also once it is the
// pod's daemon: containerd's `delete` would end it then anyway.
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { RuntimeConfig } from '../config/runtime-config';
import { Hypervisor, VmConfig } from '../hypervisors/hypervisor';
import { runningQemuPid } from '../hypervisors/qemu';
import { agentHas, NIC_PLUGGED_AHEAD } from '../lib/agent-features';
import { GUEST_SHARED_DIR, SHARED_FS_TAG } from '../lib/guest-paths';
import { Logger } from '../lib/logger';
import { Code } from '../ttrpc';
import { killAndWait, readProcessRecord, recordAlive, writeProcessRecord } from '../lib/recorded-process';
import { AgentCallObserver } from './agent-client';
import { hostSize, vmSizing } from './resources';
import { canonical, mountsBelow, removeUnlessMounted, runMount, unmount } from './rootfs';
import { setUpShare, shareLayout } from './shared-fs';
import { Clone, discardClone, VmTemplates } from './vm-templates';
import type { podVmConfig as PodVmConfig } from './sandbox';

/** Below the state dir: a name no namespace can have (ids start with a letter or digit). */
export const WARM_DIR_NAME = '.warm';
const OWNER_FILE = 'owner';
/** How long a spare VM dir with no owner record yet is taken to be a spare's that is starting. */
const OWNERLESS_GRACE_MS = 60_000;
const VM_DIR = 'vm';

/** How long a spare waits for its VM's warm-up (QEMU at nice 19, on a node that may be busy). */
const WARM_UP_TIMEOUT_MS = 60_000;

/** How the spare's VM is described: podVmConfig, passed in (sandbox.ts imports this module). */
type VmConfigOf = typeof PodVmConfig;

export interface WarmVmParams {
  config: RuntimeConfig;
  templates: VmTemplates;
  /** A driver, for the VM's description (its agent channel's kind). */
  newHypervisor: () => Hypervisor;
  podVmConfig: VmConfigOf;
  /** Told of the clone's agent calls (the daemon's metrics, once claimed). */
  observeCall?: AgentCallObserver;
  logger: Logger;
}

export class WarmVm {
  /** Its work dir moved to a sandbox's: the VM is the sandbox's to end. */
  private moved = false;
  private discarded = false;

  private constructor(
    /** `<state_dir>/.warm/<spare>`: the private mount the VM's work dir sits under until the claim. */
    readonly dir: string,
    /** The VM as restored; its workDir is `dir/vm`. */
    readonly vm: VmConfig,
    readonly clone: Clone,
    /** QEMU's launch to the clone's agent answering, in seconds. */
    readonly restoreSeconds: number,
    /** The guest MACs of NICs plugged into the VM ahead, which the pod's first NICs are (their taps come from the VMM). */
    readonly nicMacsPluggedAhead: string[],
    private readonly logger: Logger,
  ) {}

  /**
   * Restores a VM from the configuration's template (made first if there is none) in a
   * work dir of its own. Undefined, logged and with nothing left behind, when it cannot:
   * the spare then waits without one.
   */
  static async start(params: WarmVmParams): Promise<WarmVm | undefined> {
    const { config, logger } = params;
    let dir: string | undefined;
    try {
      const root = warmRoot(config.runtime.stateDir);
      ensureRootDir(root);
      await sweepWarmDirs(root, logger);
      dir = path.join(root, `${process.pid}-${randomBytes(4).toString('hex')}`);
      fs.mkdirSync(dir, { mode: 0o700 });
      await runMount(['--bind', dir, dir]);
      await runMount(['--make-private', dir]);
      // Whole or not at all (written aside, renamed): a sweep must never read a half-written record as a dead owner's.
      writeProcessRecord(path.join(dir, `${OWNER_FILE}.new`), process.pid);
      fs.renameSync(path.join(dir, `${OWNER_FILE}.new`), path.join(dir, OWNER_FILE));
      const workDir = path.join(dir, VM_DIR);
      fs.mkdirSync(workDir, { mode: 0o700 });
      const share = shareLayout(workDir);
      await setUpShare(share);
      const vm = params.podVmConfig(config, params.newHypervisor(), { id: `spare-${path.basename(dir)}`, workDir, sharedDir: share.guestDir, sizing: vmSizing(config.hypervisor, hostSize()) });
      const launched = performance.now();
      // Never made here: the pod whose daemon launched this spare makes it (at its own priority, in its start).
      const clone = await params.templates.startClone(vm, params.observeCall, { make: false, dieWithSpawner: true });
      if (!clone) throw new Error('no VM could be restored (the reason is logged above)');
      const restoreSeconds = (performance.now() - launched) / 1000;
      logger.info({ dir, pid: clone.hypervisor.pid(), restoreSeconds }, 'spare VM restored from its template');
      const nicMacsPluggedAhead = await plugNicAhead(clone, logger);
      await warmUpGuest(clone, logger);
      logger.info({ dir }, 'spare VM waiting for a pod');
      return new WarmVm(dir, vm, clone, restoreSeconds, nicMacsPluggedAhead, logger);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'no spare VM: the spare waits without one, and the pod that claims it restores its own');
      if (dir) await removeWarmDir(dir, logger);
      return undefined;
    }
  }

  /**
   * Moves the VM's work dir to `workDir` (an empty directory the caller made), where it
   * then is the sandbox's. Once only; the VM is the caller's from then on.
   */
  async moveTo(workDir: string): Promise<void> {
    if (this.moved || this.discarded) throw new Error('the spare VM was taken or ended already');
    await runMount(['--bind', workDir, workDir]);
    try {
      await runMount(['--make-private', workDir]);
      await runMount(['--move', this.vm.workDir, workDir]);
    } catch (err) {
      await unmount(workDir).catch(() => undefined);
      throw err;
    }
    this.moved = true;
    this.logger.info({ from: this.vm.workDir, to: workDir }, "the spare VM's work dir is the sandbox's now");
  }

  /**
   * After the sandbox's work dir was unmounted: removes what the work dir's files lived
   * in. Left (for sweepWarmDirs) while anything is still mounted from it.
   */
  async removeOrigin(): Promise<void> {
    await removeWarmDir(this.dir, this.logger);
  }

  /** Ends the VM and removes its work dir (a VM no pod takes: the spare retires, or the pod's VM is another). */
  async discard(): Promise<void> {
    if (this.moved || this.discarded) return;
    this.discarded = true;
    await discardClone(this.clone);
    await removeWarmDir(this.dir, this.logger);
  }
}

/** `<state_dir>/.warm`, with state_dir canonicalised as Sandbox.workDirFor does. */
export function warmRoot(stateDir: string): string {
  return path.join(canonical(stateDir), WARM_DIR_NAME);
}

/** Creates the root (root's only) and refuses one that is not a real directory of ours closed to others. */
function ensureRootDir(root: string): void {
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(root);
  if (!st.isDirectory() || st.uid !== process.getuid!() || (st.mode & 0o077) !== 0) {
    throw new Error(`${root} is not a directory only its owner (uid ${process.getuid!()}) can enter; remove it`);
  }
}

/**
 * Removes the spare VM dirs under `root` whose spare (or the daemon it became) is
 * gone: their VM is killed if it still runs, their mounts unmounted, the directory
 * removed, unless a sandbox's work dir is still mounted from it (its pod's `delete` has
 * not run yet). `only`: the spares (by pid) whose directories may go. Returns the
 * directories removed. Never throws for one directory.
 */
export async function sweepWarmDirs(root: string, logger: Logger, only: (spare: number) => boolean = () => true): Promise<string[]> {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    if (!/^[1-9][0-9]*-[0-9a-f]{8}$/.test(name) || !only(Number(name.split('-')[0]))) continue;
    const owner = readProcessRecord(path.join(dir, OWNER_FILE));
    if (recordAlive(owner)) continue;
    // A spare writes its record just after it made the dir: a young dir without one is left for a later sweep.
    if (owner === undefined && ageMs(dir) < OWNERLESS_GRACE_MS) continue;
    if (await removeWarmDir(dir, logger)) removed.push(dir);
  }
  if (removed.length > 0) logger.info({ removed }, 'removed spare VMs whose spare shim is gone');
  return removed;
}

function ageMs(dir: string): number {
  try {
    return Date.now() - fs.lstatSync(dir).mtimeMs;
  } catch {
    return Infinity;
  }
}

/** Kills the dir's VM if it still runs there, unmounts what is below it and removes it; false when a work dir still mounted from it keeps it. */
async function removeWarmDir(dir: string, logger: Logger): Promise<boolean> {
  try {
    // Its argv names its pid file: a reused pid is never killed.
    const pid = runningQemuPid(path.join(dir, VM_DIR));
    if (pid !== undefined) await killAndWait(pid);
    for (const target of mountsBelow(dir)) await unmount(target);
    if (isMountedFrom(path.join(dir, VM_DIR))) {
      logger.info({ dir }, "a spare VM directory is kept: a sandbox's work dir is (or may be) mounted from it");
      return false;
    }
    const kept = removeUnlessMounted(dir);
    if (kept.length > 0) throw new Error(`still mounted: ${kept.join(', ')}`);
    return true;
  } catch (err) {
    logger.warn({ dir, err: (err as Error).message }, 'cannot remove a spare VM directory; the next spare or `kata-ts-runtime factory destroy` tries again');
    return false;
  }
}

/**
 * Whether a mount anywhere shows `dir` (a bind of it, moved elsewhere): mountinfo names
 * each mount's root inside its filesystem (field 4) and that filesystem's device (field 3).
 * True also when that cannot be told (mountinfo unreadable, no mount of dir's device:
 * btrfs subvolumes report another device than mountinfo's): the caller then keeps the
 * directory rather than delete files a sandbox may still show.
 */
export function isMountedFrom(dir: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return false; // gone: nothing shows it
  }
  let lines: string[];
  try {
    lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  } catch {
    return true;
  }
  // glibc's dev_t: major in bits 8-19, minor in bits 0-7 and 20-31 (the bits above 32 are not used here).
  const device = `${Math.floor(st.dev / 0x100) & 0xfff}:${(st.dev & 0xff) | (Math.floor(st.dev / 0x1000) & 0xfff00)}`;
  const mounts = lines.map((l) => l.split(' ')).filter((f) => f.length > 4 && f[2] === device);
  // dir's path inside its filesystem: from the mount it is reached through (the longest mount point above it).
  const real = canonical(dir);
  const through = mounts
    .filter((f) => real === unescape(f[4]) || real.startsWith(unescape(f[4]).replace(/\/?$/, '/')))
    .sort((a, b) => b[4].length - a[4].length)[0];
  if (!through) return true;
  const inFs = path.posix.join(unescape(through[3]), path.relative(unescape(through[4]), real));
  return mounts.some((f) => unescape(f[3]) === inFs && unescape(f[4]) !== real);
}

function unescape(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Plugs a NIC into the VM for the pod that takes it (Hypervisor.prePlugNic): the
 * guest's PCI hot-plug and virtio-net probe are then done before the pod's start, which
 * otherwise waits for them in UpdateInterface. Returns the MACs it plugged. A VM whose
 * plug failed is ended (and this throws): what the failed plug left is not known.
 */
async function plugNicAhead(clone: Clone, logger: Logger): Promise<string[]> {
  if (!clone.hypervisor.prePlugNic) return [];
  if (!agentHas(clone.details, NIC_PLUGGED_AHEAD)) {
    logger.info({ agentVersion: clone.details.agent_version }, "no NIC plugged ahead: the guest's agent cannot take one (an older guest image)");
    return [];
  }
  try {
    return [await clone.hypervisor.prePlugNic()];
  } catch (err) {
    await discardClone(clone);
    throw new Error(`its NIC could not be plugged ahead, so the VM was ended: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Has the VM run, once, what a pod's start runs in the guest (the agent's WarmUp): under
 * TCG, QEMU translates guest code on its first run, per QEMU process, and a clone has
 * none translated. A guest without the call (an older guest image) is used unwarmed.
 * A VM whose warm-up failed or did not end in time is ended (and this throws): its
 * guest may still be at it, or hold what it left, and a pod's CreateSandbox would
 * wait for it or meet it; the pod then restores a clone of its own.
 */
async function warmUpGuest(clone: Clone, logger: Logger): Promise<void> {
  const started = performance.now();
  // What CreateSandbox mounts is the same for any pod of the VM: mounted now, not at the pod's start.
  const share = { tag: SHARED_FS_TAG, guestPath: GUEST_SHARED_DIR, kind: clone.hypervisor.sharedFsKind ?? 'virtio-9p' };
  try {
    await clone.agent.warmUp(WARM_UP_TIMEOUT_MS, share);
    logger.info({ ms: Math.round(performance.now() - started) }, "spare VM warmed up: a container run and removed in it, and the pod's shared filesystem mounted");
  } catch (err) {
    if ((err as { code?: unknown }).code === Code.UNIMPLEMENTED) {
      logger.info({ err: (err as Error).message }, "spare VM not warmed up: its guest has no WarmUp (an older guest image); the pod that takes it pays for its guest code's first run");
      return;
    }
    await discardClone(clone);
    throw new Error(`its warm-up failed (limit ${WARM_UP_TIMEOUT_MS} ms), so the VM was ended: ${(err as Error).message}`, { cause: err });
  }
}
