// virtio-fs needs a vhost-user daemon per shared directory: the VMM only connects to
// its socket. The sandbox's driver (QEMU with shared_fs = "virtio-fs", Cloud
// Hypervisor always) starts one virtiofsd per directory before the VMM and stops it
// after; each is recorded (pid + start time) so `delete` after a crash finds it.
//
// virtiofsd serves the guest's file requests as root on the host, so it runs confined:
// its own mount, pid and net namespaces, pivoted into the shared directory (the guest's
// paths cannot leave it, whatever symlinks the guest makes), under its seccomp filter,
// without CAP_MKNOD (guest root could otherwise make a real device node on the host),
// and without extended attributes or CAP_SETFCAP (no file capabilities, no security.*
// labels). It sets its own capabilities from a list that includes CAP_SETFCAP, which
// the VMM launch (vmm-launch.ts) removes from the bounding set, so that one is taken
// off the list too: otherwise it fails ("capng_apply failed") once QEMU connects.
//
// Two implementations speak it: QEMU's C virtiofsd (Debian 12: /usr/lib/qemu/virtiofsd,
// `-o source=…`) and the Rust one (gitlab.com/virtio-fs/virtiofsd: `--shared-dir=…`,
// Kata's and Cloud Hypervisor's). Their flags differ; `--version` tells them apart.
import * as fs from 'fs';
import * as path from 'path';
import { runBounded } from '../lib/bounded-command';
import { HypervisorError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { killRecordedIfAlive, writeProcessRecord } from '../lib/recorded-process';
import { SharedDirectory } from './hypervisor';
import { resolveExecutable, VmmProcess } from './vmm-process';

const SOCKET_TIMEOUT_MS = 10_000;
const VERSION_TIMEOUT_MS = 10_000;

export type VirtiofsdFlavour = 'c' | 'rust';

/** Kata's virtio_fs_cache values: never (no guest page cache of shared files), auto, always. */
export const VIRTIO_FS_CACHE_MODES = ['never', 'auto', 'always'] as const;
export type VirtioFsCache = (typeof VIRTIO_FS_CACHE_MODES)[number];

export interface VirtiofsdOptions {
  binaryPath: string;
  cache: VirtioFsCache;
  /** Kata's virtio_fs_extra_args, as far as allowed (extraArgsRefusal). */
  extraArgs?: readonly string[];
}

/**
 * Kata's virtio_fs_extra_args, honoured only where a flag cannot loosen the daemon:
 * its default (`--thread-pool-size=1`, `--announce-submounts`). Any other flag could
 * undo the confinement (`--sandbox`, `--seccomp`, `--modcaps`, `--xattr`, `-o …`) or
 * widen the share, so it is refused with the reason, not passed on.
 */
const THREAD_POOL_SIZE = /^--thread-pool-size=(\d{1,4})$/;
const MAX_THREAD_POOL_SIZE = 1024;
const ANNOUNCE_SUBMOUNTS = '--announce-submounts';

/** Why `args` cannot be passed to virtiofsd, or undefined if they all can. */
export function extraArgsRefusal(args: readonly string[]): string | undefined {
  for (const arg of args) {
    if (arg === ANNOUNCE_SUBMOUNTS) continue;
    const pool = THREAD_POOL_SIZE.exec(arg);
    if (pool && Number(pool[1]) <= MAX_THREAD_POOL_SIZE) continue;
    return `${JSON.stringify(arg)} is not passed to virtiofsd: kata-ts allows only --thread-pool-size=N (N up to ${MAX_THREAD_POOL_SIZE}) and --announce-submounts, since other flags can undo its confinement (sandbox, seccomp, capabilities, xattrs) or widen its share`;
  }
  return undefined;
}

/** The vhost-user socket of the virtiofsd serving sharedDirectories[index]. */
export function virtiofsSocket(workDir: string, index: number): string {
  return path.join(workDir, `virtiofsd-${index}.sock`);
}

/** The record (pid + start time) of that virtiofsd, for `delete` after a crash. */
export function virtiofsdRecord(workDir: string, index: number): string {
  return path.join(workDir, `virtiofsd-${index}.pid`);
}

/** Which virtiofsd `binaryPath` is, by what `--version` prints. */
export async function virtiofsdFlavour(binaryPath: string): Promise<VirtiofsdFlavour> {
  const binary = resolveExecutable(binaryPath);
  if (!binary) throw new HypervisorError(`virtiofsd binary '${binaryPath}' is not an executable file; install it (Debian 12: qemu-system-common, /usr/lib/qemu/virtiofsd) or set virtio_fs_daemon`);
  let output: string;
  try {
    const { stdout, stderr } = await runBounded(binary, ['--version'], VERSION_TIMEOUT_MS);
    output = `${stdout}\n${stderr}`;
  } catch (err) {
    throw new HypervisorError(`virtiofsd '${binaryPath}' cannot be used: ${(err as Error).message}; install it (Debian 12: qemu-system-common, /usr/lib/qemu/virtiofsd) or set virtio_fs_daemon`, { cause: err });
  }
  return flavourOf(output, binaryPath);
}

/** QEMU's prints "virtiofsd version 7.2.x (…)"; the Rust one "virtiofsd 1.x.y". */
export function flavourOf(versionOutput: string, binaryPath: string): VirtiofsdFlavour {
  if (/virtiofsd version \d/.test(versionOutput)) return 'c';
  if (/virtiofsd v?\d+\.\d+/.test(versionOutput)) return 'rust';
  throw new HypervisorError(`'${binaryPath} --version' does not say which virtiofsd it is (${JSON.stringify(versionOutput.trim().slice(0, 200))}); expected QEMU's or the Rust virtiofsd`);
}

/** The command line of one confined virtiofsd (see the top of this file). */
export function virtiofsdArgs(flavour: VirtiofsdFlavour, socketPath: string, sharedDir: string, cache: VirtioFsCache, extraArgs: readonly string[] = []): string[] {
  const refusal = extraArgsRefusal(extraArgs);
  if (refusal) throw new HypervisorError(`virtio_fs_extra_args: ${refusal}`);
  // Both flavours take --thread-pool-size=N; --announce-submounts is passed already.
  const extra = extraArgs.filter((arg) => arg !== ANNOUNCE_SUBMOUNTS);
  return [...confinedArgs(flavour, socketPath, sharedDir, cache), ...extra];
}

function confinedArgs(flavour: VirtiofsdFlavour, socketPath: string, sharedDir: string, cache: VirtioFsCache): string[] {
  if (flavour === 'c') {
    return [
      `--socket-path=${socketPath}`,
      '-o', `source=${sharedDir}`,
      // QEMU's virtiofsd calls "never" none.
      '-o', `cache=${cache === 'never' ? 'none' : cache}`,
      '-o', 'sandbox=namespace',
      '-o', 'modcaps=-mknod:-setfcap',
      '-o', 'no_xattr',
      // Each container rootfs is its own host mount under the share: the guest gets
      // them as submounts with their own st_dev, as it did over 9p.
      '-o', 'announce_submounts',
      // QEMU 7.2's defaults, pinned: no locks or direct I/O passed to the host on the
      // guest's behalf, no writeback caching of guest writes.
      '-o', 'no_posix_lock', '-o', 'no_flock', '-o', 'no_allow_direct_io', '-o', 'no_writeback',
      // Only errors reach the shim's log (the guest decides how many warnings there are).
      '-o', 'log_level=err',
    ];
  }
  return [
    `--socket-path=${socketPath}`,
    `--shared-dir=${sharedDir}`,
    `--cache=${cache}`,
    '--sandbox=namespace',
    '--seccomp=kill',
    '--modcaps=-mknod:-setfcap',
    '--announce-submounts',
    '--log-level=error',
  ];
}

/** One running virtiofsd and the files that name it. */
export interface VirtiofsDaemon {
  process: VmmProcess;
  flavour: VirtiofsdFlavour;
  socketPath: string;
  /** The record of the process we spawned. */
  recordFile: string;
  /**
   * The record of the child that serves the guest: with sandbox=namespace, the C
   * virtiofsd forks once its VMM connected; the parent only waits for it.
   */
  childRecordFile: string;
}

/** How long a daemon may take to exit by itself after its VMM went (its socket closed). */
export const DAEMON_EXIT_GRACE_MS = 2000;

/**
 * QEMU's C virtiofsd locks /run/virtiofsd/<socket path with '/' as '.'>.pid and leaves
 * the file behind when it exits.
 */
export function cVirtiofsdLockFile(socketPath: string): string {
  return path.join('/run/virtiofsd', `${socketPath.replace(/\//g, '.')}.pid`);
}

/** Starts one virtiofsd per share and waits for each socket; on failure stops those it started. */
export async function startVirtiofsDaemons(options: VirtiofsdOptions, workDir: string, shares: readonly SharedDirectory[], logger: Logger): Promise<VirtiofsDaemon[]> {
  if (shares.length === 0) return [];
  const flavour = await virtiofsdFlavour(options.binaryPath);
  const daemons: VirtiofsDaemon[] = [];
  try {
    for (const [index, share] of shares.entries()) {
      const socketPath = virtiofsSocket(workDir, index);
      // One a crashed predecessor left would be taken for this daemon's.
      fs.rmSync(socketPath, { force: true });
      const process = VmmProcess.spawn({
        name: `virtiofsd (${share.tag})`,
        binaryPath: options.binaryPath,
        args: virtiofsdArgs(flavour, socketPath, share.hostPath, options.cache, options.extraArgs),
        logger,
      });
      const daemon = { process, flavour, socketPath, recordFile: virtiofsdRecord(workDir, index), childRecordFile: virtiofsdChildRecord(workDir, index) };
      daemons.push(daemon);
      recordProcess(daemon.recordFile, process.pid);
      await process.waitForSocketFile(socketPath, SOCKET_TIMEOUT_MS);
    }
    return daemons;
  } catch (err) {
    await stopVirtiofsDaemons(daemons, 0);
    throw err;
  }
}

/** The record of the child serving sharedDirectories[index] (see VirtiofsDaemon). */
export function virtiofsdChildRecord(workDir: string, index: number): string {
  return path.join(workDir, `virtiofsd-${index}-child.pid`);
}

/**
 * Records each daemon's serving child, once the VMM connected (the driver calls this
 * after its VMM is up): killing the parent alone would leave it running, since the
 * parent-death signal does not reach the init of a pid namespace.
 */
export function recordServingChildren(daemons: readonly VirtiofsDaemon[]): void {
  for (const daemon of daemons) {
    const pid = daemon.process.pid;
    if (pid === undefined) continue;
    let children: string;
    try {
      children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
    } catch {
      continue; // gone already
    }
    const child = Number(children.trim().split(/\s+/)[0]);
    if (child > 0) recordProcess(daemon.childRecordFile, child);
  }
}

function recordProcess(file: string, pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    writeProcessRecord(file, pid);
  } catch {
    // It exited at once: waiting for its socket reports why, with its stderr.
  }
}

/**
 * Stops the daemons: each gets `graceMs` to exit by itself (it does once its VMM is
 * gone), then SIGTERM, then SIGKILL; a serving child left behind is killed; the C
 * daemon's lock file is removed. Safe to call more than once.
 */
export async function stopVirtiofsDaemons(daemons: readonly VirtiofsDaemon[], graceMs = DAEMON_EXIT_GRACE_MS): Promise<void> {
  await Promise.all(
    daemons.map(async (daemon) => {
      await daemon.process.stop(graceMs, async () => daemon.process.signal('SIGTERM'));
      await killRecordedIfAlive(daemon.childRecordFile);
      if (daemon.flavour === 'c') fs.rmSync(cVirtiofsdLockFile(daemon.socketPath), { force: true });
    }),
  );
}

/**
 * For `delete` after a crash: kills the virtiofsd processes `workDir` records that still
 * run (same pid and start time: a reused pid is left alone), children too, and removes
 * the C daemon's lock files. Returns the pids killed.
 */
export async function killRecordedVirtiofsDaemons(workDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = fs.readdirSync(workDir);
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const name of names) {
    const match = /^virtiofsd-(\d+)(-child)?\.pid$/.exec(name);
    if (!match) continue;
    const pid = await killRecordedIfAlive(path.join(workDir, name));
    if (pid !== undefined) killed.push(pid);
    if (!match[2]) fs.rmSync(cVirtiofsdLockFile(virtiofsSocket(workDir, Number(match[1]))), { force: true });
  }
  return killed;
}
