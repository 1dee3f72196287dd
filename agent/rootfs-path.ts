// Resolves paths *inside* a container rootfs without escaping it: absolute symlinks
// point at the rootfs root, `..` stops at it. Used to check the entrypoint exists
// before the OCI runtime runs, so a typo gives a clear error at Create.
import * as fs from 'fs';
import * as path from 'path';

const MAX_SYMLINKS = 40;

/** Host path of `inner` (an absolute path inside `rootfs`), with symlinks followed inside rootfs. */
export function resolveInRootfs(rootfs: string, inner: string): string | undefined {
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
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(candidate);
    } catch {
      return undefined;
    }
    if (stat.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) return undefined;
      const target = fs.readlinkSync(candidate);
      const targetParts = target.split('/').filter(Boolean);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...targetParts, ...pending];
      continue;
    }
    resolved.push(part);
  }
  return path.join(rootfs, ...resolved);
}

function isExecutableFile(hostPath: string | undefined): boolean {
  if (!hostPath) return false;
  try {
    const stat = fs.statSync(hostPath);
    return stat.isFile() && (stat.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Finds the executable a process spec names, the way execvp would inside the
 * container: names with a slash are taken relative to cwd, others searched in PATH.
 * Returns the inner path, or undefined when there is no such executable file.
 */
export function findExecutable(rootfs: string, name: string, env: string[], cwd = '/'): string | undefined {
  if (name.includes('/')) {
    const inner = path.posix.resolve(cwd, name);
    return isExecutableFile(resolveInRootfs(rootfs, inner)) ? inner : undefined;
  }
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  for (const dir of pathVar.split(':').filter(Boolean)) {
    const inner = path.posix.join(dir, name);
    if (isExecutableFile(resolveInRootfs(rootfs, inner))) return inner;
  }
  return undefined;
}
