// File operations below directories the shim owns, written so that a symlink or a
// mount appearing in the tree (the guest writes into container rootfs and volumes,
// and an earlier bug could have let it write more) is never followed or crossed:
// each step is an lstat-checked directory, files are opened O_NOFOLLOW without
// truncation, and removal stays on the tree's own filesystem.
import * as fs from 'fs';
import * as path from 'path';
import { InternalError } from '../lib/errors';

/** A path component is one plain name: no separators, no '.' or '..'. */
function checkName(name: string, what: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw new InternalError(`${what}: ${JSON.stringify(name)} is not a single path component`);
}

/** lstat that answers undefined for a missing entry. */
function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates `base/names[0]/names[1]/…` one component at a time, each a real directory
 * (mode 0700 when made here); any component that exists as a symlink or a
 * non-directory is refused, so nothing is ever created through a link. `base` itself
 * must already be a real directory. Returns the full path.
 */
export function ensureDirChain(base: string, names: string[], mode = 0o700): string {
  let current = base;
  const baseStat = fs.lstatSync(base);
  if (!baseStat.isDirectory()) throw new InternalError(`${base} is not a directory (a symlink or another kind of file): refusing to create ${names.join('/')} below it`);
  for (const name of names) {
    checkName(name, `creating below ${base}`);
    current = path.join(current, name);
    const stat = lstatOrUndefined(current);
    if (!stat) {
      fs.mkdirSync(current, { mode });
    } else if (stat.isSymbolicLink() || !stat.isDirectory()) {
      throw new InternalError(`${current} exists and is ${stat.isSymbolicLink() ? `a symlink to ${fs.readlinkSync(current)}` : 'not a directory'}; refusing to use it as a mount point's directory`);
    }
  }
  return current;
}

/**
 * Makes an empty regular file at `dir/name` to bind a file over, without following a
 * symlink there (O_NOFOLLOW) and without truncating a file that already exists (no
 * O_TRUNC): whatever the path turns out to be, no host file loses a byte.
 */
export function ensureEmptyFile(dir: string, name: string): string {
  checkName(name, `creating in ${dir}`);
  const file = path.join(dir, name);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InternalError(`cannot create the bind target ${file}: ${code === 'ELOOP' ? 'it is a symlink' : (err as Error).message}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new InternalError(`${file} is not a regular file; refusing to bind a file over it`);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/**
 * Removes the tree at `root` without following symlinks (they are unlinked, never
 * entered) and without crossing into another filesystem: a directory whose device
 * differs from the root's is a mount point (a bind that failed to unmount), and is
 * left with everything above it. Returns the paths it left for that reason.
 */
export function removeTreeOnOneFilesystem(root: string): string[] {
  const rootStat = lstatOrUndefined(root);
  if (!rootStat) return [];
  if (!rootStat.isDirectory()) {
    fs.unlinkSync(root);
    return [];
  }
  const kept: string[] = [];
  const walk = (dir: string): boolean => {
    let clean = true;
    for (const name of fs.readdirSync(dir)) {
      const entry = path.join(dir, name);
      const stat = lstatOrUndefined(entry);
      if (!stat) continue;
      if (stat.isDirectory()) {
        if (stat.dev !== rootStat.dev) {
          kept.push(entry);
          clean = false;
        } else if (walk(entry)) {
          fs.rmdirSync(entry);
        } else {
          clean = false;
        }
      } else {
        fs.unlinkSync(entry);
      }
    }
    return clean;
  };
  if (walk(root)) fs.rmdirSync(root);
  return kept;
}

/** Removes `dir` if it is an empty directory; another user may still have entries in it. */
export function removeDirIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    /* not empty, or already gone */
  }
}
