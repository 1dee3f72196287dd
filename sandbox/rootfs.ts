// Mounts containerd's rootfs description (overlay or bind) at the bundle's rootfs and
// exposes it to the guest through the sandbox's shared directory.
import * as fs from 'fs';
import * as path from 'path';
import { runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, InternalError, InvalidArgumentError } from '../lib/errors';
import { removeTreeOnOneFilesystem } from './safe-paths';

/**
 * A bound on each mount(8)/umount(8): a hung NFS or FUSE source must fail the one
 * call naming what hung, not stall the pod's daemon (the child is SIGKILLed).
 */
export const MOUNT_TIMEOUT_MS = 30_000;

function bounded(command: string, args: string[]): Promise<unknown> {
  return runBounded(command, args, MOUNT_TIMEOUT_MS);
}

export interface MountSpec {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export async function mountAll(mounts: MountSpec[], target: string): Promise<void> {
  fs.mkdirSync(target, { recursive: true });
  const done: string[] = [];
  try {
    for (const m of mounts) {
      if (!m.type) throw new InvalidArgumentError(`rootfs mount of ${m.source} has no type`);
      // nosuid,nodev: the guest writes this tree (through the share, as root), and the
      // host never runs or opens devices from it; set-id bits still work in the guest.
      const options = withHostFlags(m.type === 'bind' && !m.options.includes('bind') && !m.options.includes('rbind') ? ['bind', ...m.options] : m.options);
      const args = m.type === 'bind' ? ['-o', options, m.source, target] : ['-t', m.type, '-o', options, m.source, target];
      await runMount(args);
      done.push(target);
    }
  } catch (err) {
    for (const t of done.reverse()) await unmount(t).catch(() => undefined);
    throw err;
  }
}

/** `options` with nosuid and nodev, as one mount(8) option string. */
export function withHostFlags(options: string[]): string {
  return [...options.filter((o) => o !== 'suid' && o !== 'dev'), 'nosuid', 'nodev'].join(',');
}

/**
 * Unmounts `target` if it is a mount point; lazily when it stays busy. `-c`: umount(8)
 * must not canonicalise the path, which would stat the mounted filesystem's root
 * (a volume's hung FUSE or NFS server would never answer).
 */
export async function unmount(target: string): Promise<void> {
  if (!isMountPoint(target)) return;
  try {
    await bounded('umount', ['-c', target]);
  } catch (first) {
    if (first instanceof DeadlineExceededError) throw first; // a second try would hang as long
    await bounded('umount', ['-l', '-c', target]).catch((err) => {
      throw new InternalError(`cannot unmount ${target}: ${(err as Error).message}`);
    });
  }
}

export function isMountPoint(target: string): boolean {
  let mounts: string;
  try {
    mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  const real = canonicalMountPoint(target);
  return mounts.split('\n').some((line) => unescapeMountPath(line.split(' ')[4] ?? '') === real);
}

/**
 * Mount points at or below `dir`, deepest first (for cleanup). mountinfo names mount
 * points by their canonical paths, so `dir` is canonicalised first: a state directory
 * reached through a symlink (Debian's /var/run) must not hide live binds.
 */
export function mountsBelow(dir: string): string[] {
  dir = canonical(dir);
  let mounts: string;
  try {
    mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mounts
    .split('\n')
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''))
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes a directory tree the shim made, but never through a mount: if an unmount
 * failed earlier, a recursive delete would reach into the container's rootfs on the
 * host (its snapshot). Returns the mount points that kept it from being removed.
 */
export function removeUnlessMounted(dir: string): string[] {
  const mounted = mountsBelow(dir);
  if (mounted.length > 0) return mounted;
  // Also safe if a mount appears meanwhile: the walk never leaves dir's filesystem nor follows a symlink.
  return removeTreeOnOneFilesystem(dir);
}

/** The path with symlinks resolved as far as it exists (a missing tail is kept as given). */
export function canonical(p: string): string {
  const absolute = path.resolve(p);
  try {
    return fs.realpathSync(absolute);
  } catch {
    const parent = path.dirname(absolute);
    return parent === absolute ? absolute : path.join(canonical(parent), path.basename(absolute));
  }
}

/**
 * The canonical path of a (possible) mount point without touching what is mounted
 * there: only its parent, a directory of ours, is resolved. realpath would lstat the
 * mount point itself, which a hung FUSE or NFS volume never answers.
 */
function canonicalMountPoint(target: string): string {
  const absolute = path.resolve(target);
  const parent = path.dirname(absolute);
  return parent === absolute ? absolute : path.join(canonical(parent), path.basename(absolute));
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export async function runMount(args: string[]): Promise<void> {
  try {
    await bounded('mount', args);
  } catch (err) {
    if (err instanceof DeadlineExceededError) throw err;
    const e = err as { stderr?: string; message: string };
    throw new InternalError(`mount ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}
