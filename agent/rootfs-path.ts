// Resolves paths *inside* a container rootfs without escaping it: absolute symlinks
// point at the rootfs root, `..` stops at it. Used to check the entrypoint exists
// before the OCI runtime runs, so a typo gives a clear error at Create.
import * as fs from 'fs';
import * as path from 'path';

const MAX_SYMLINKS = 40;

/** lstat(2), undefined for anything that cannot be lstat'ed. */
export type Lstat = (hostPath: string) => fs.Stats | undefined;

export function lstatOrUndefined(hostPath: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(hostPath);
  } catch {
    return undefined;
  }
}

function readlinkOrUndefined(hostPath: string): string | undefined {
  try {
    return fs.readlinkSync(hostPath);
  } catch {
    return undefined;
  }
}

/**
 * lstat with its answers kept, for one search: PATH's entries share their parents
 * (/usr for each of /usr/local/sbin, /usr/local/bin, /usr/sbin and /usr/bin), and in a
 * guest each lstat of a container's rootfs is a round trip to the host's file server
 * (3-4 ms under TCG).
 */
function rememberingLstat(lookUp: Lstat): Lstat {
  const answers = new Map<string, fs.Stats | undefined>();
  return (hostPath) => {
    if (!answers.has(hostPath)) answers.set(hostPath, lookUp(hostPath));
    return answers.get(hostPath);
  };
}

/** Host path of `inner` (an absolute path inside `rootfs`), with symlinks followed inside rootfs. */
export function resolveInRootfs(rootfs: string, inner: string, lstat: Lstat = lstatOrUndefined): string | undefined {
  let pending = inner.split('/').filter(Boolean);
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(rootfs, ...resolved, part);
    const stat = lstat(candidate);
    if (!stat) return undefined;
    if (stat.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) return undefined;
      const target = readlinkOrUndefined(candidate);
      // Replaced since its lstat (a running container's rootfs changes under an exec's
      // check): reported as not found, which a retry of the exec gets past.
      if (target === undefined) return undefined;
      const targetParts = target.split('/').filter(Boolean);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...targetParts, ...pending];
      continue;
    }
    resolved.push(part);
  }
  return path.join(rootfs, ...resolved);
}

/** Whether a resolved path (no symlink left in it, so lstat is stat) is an executable file. */
function isExecutableFile(hostPath: string | undefined, lstat: Lstat): boolean {
  const stat = hostPath === undefined ? undefined : lstat(hostPath);
  return stat !== undefined && stat.isFile() && (stat.mode & 0o111) !== 0;
}

/**
 * Finds the executable a process spec names, the way execvp would inside the
 * container: names with a slash are taken relative to cwd, others searched in PATH.
 * Returns the inner path, or undefined when there is no such executable file.
 * `lookUp` is lstat(2); each path is looked up once.
 */
export function findExecutable(rootfs: string, name: string, env: string[], cwd = '/', lookUp: Lstat = lstatOrUndefined): string | undefined {
  const lstat = rememberingLstat(lookUp);
  if (name.includes('/')) {
    const inner = path.posix.resolve(cwd, name);
    return isExecutableFile(resolveInRootfs(rootfs, inner, lstat), lstat) ? inner : undefined;
  }
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  for (const dir of pathVar.split(':').filter(Boolean)) {
    const inner = path.posix.join(dir, name);
    if (isExecutableFile(resolveInRootfs(rootfs, inner, lstat), lstat)) return inner;
  }
  return undefined;
}
