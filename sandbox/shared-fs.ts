// The sandbox's shared directory, split the way Kata split it after CVE-2020-2026:
//
//   <workDir>/            a private bind of itself: nothing mounted below propagates to
//                         the host's other mount namespaces
//   <workDir>/mounts/     host-private, where the shim makes every mount
//                         (<container>/rootfs, <container>/mounts/<n>); a shared mount
//                         so that what is mounted here shows up in:
//   <workDir>/shared/     what the VM gets over 9p: a read-only, nosuid, nodev bind of
//                         mounts/, a slave of it (mounts appear and vanish with mounts/)
//   <workDir>/staging/    private: a bind gets its flags here before it moves into mounts/
//
// The guest can therefore neither create, rename nor replace anything at the share's
// root, in <container>/ or in <container>/mounts/: the symlinks it could plant there
// before are refused with EROFS, and it cannot write a byte into the host's state
// directory. A writable rootfs or volume stays writable only inside its own mount,
// whose flags are its own (rw, and nosuid,nodev as every bind the shim makes).
//
// Flags must be on a bind *before* it enters mounts/: propagation copies a mount as it
// is when it arrives, and a later remount changes only the private copy, never the
// guest's. So a bind is made and flagged in staging/ (whose parent mount is private,
// as `mount --move` requires) and then moved into place: its copy in shared/ is born
// with the same flags.
import * as fs from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { ensureDirChain, ensureEmptyFile } from './safe-paths';
import { runMount, unmount } from './rootfs';

/** Flags of every bind the shim exposes to the guest: no set-id programs, no device nodes usable through it on the host. */
export const SHARE_BIND_FLAGS = 'nosuid,nodev';

export interface ShareLayout {
  workDir: string;
  /** Host-private: the shim mounts here. */
  privateDir: string;
  /** Guest-visible (9p export): a read-only view of privateDir. */
  guestDir: string;
  /** Private: binds are flagged here before they move into privateDir. */
  stagingDir: string;
}

export function shareLayout(workDir: string): ShareLayout {
  return { workDir, privateDir: path.join(workDir, 'mounts'), guestDir: path.join(workDir, 'shared'), stagingDir: path.join(workDir, 'staging') };
}

/** Where a container's rootfs is mounted on the host, and what of it the guest sees. */
export function containerShareDir(layout: ShareLayout, containerId: string): string {
  return path.join(layout.privateDir, containerId);
}

/**
 * Makes the layout in an existing, empty `workDir`. The caller unmounts everything
 * below workDir (deepest first) to undo it, also after a partial failure.
 */
export async function setUpShare(layout: ShareLayout): Promise<void> {
  const { workDir, privateDir, guestDir } = layout;
  await runMount(['--bind', workDir, workDir]);
  await runMount(['--make-private', workDir]);
  await runMount(['-o', `remount,bind,${SHARE_BIND_FLAGS}`, workDir]);
  ensureDirChain(workDir, ['mounts']);
  ensureDirChain(workDir, ['shared']);
  ensureDirChain(workDir, ['staging']);
  await runMount(['--bind', privateDir, privateDir]);
  await runMount(['--make-private', privateDir]);
  await runMount(['-o', `remount,bind,${SHARE_BIND_FLAGS}`, privateDir]);
  await runMount(['--make-shared', privateDir]);
  await runMount(['--bind', privateDir, guestDir]);
  await runMount(['--make-slave', guestDir]);
  await runMount(['-o', `remount,bind,ro,${SHARE_BIND_FLAGS}`, guestDir]);
}

/**
 * Binds `source` over `target` (below privateDir, made by the caller with the
 * safe-paths helpers, a directory or a file like the source) with nosuid,nodev (and ro
 * when asked) already set when it appears there and, by propagation, in the guest's
 * view: what the guest sees through it never becomes a set-id program or a usable
 * device node on the host, and a read-only volume is never writable, not even briefly.
 */
export async function bindIntoShare(layout: ShareLayout, source: string, target: string, opts: { readonly?: boolean } = {}): Promise<void> {
  const name = randomBytes(8).toString('hex');
  const isDirectory = fs.statSync(target).isDirectory();
  const stage = isDirectory ? ensureDirChain(layout.stagingDir, [name]) : ensureEmptyFile(layout.stagingDir, name);
  try {
    // One mount(8), two mount(2)s: the bind, then its remount with the flags (util-linux
    // 2.27 and later). Not atomic, and need not be: staging/ is private, seen by nobody.
    // A failed remount leaves the bind mounted, so it is unmounted either way.
    try {
      await runMount(['--bind', '-o', `${SHARE_BIND_FLAGS}${opts.readonly ? ',ro' : ''}`, source, stage]);
      await runMount(['--move', stage, target]);
    } catch (err) {
      await unmount(stage).catch(() => undefined);
      throw err;
    }
  } finally {
    // Empty once the bind moved away (or was undone); never recursive.
    if (isDirectory) fs.rmdirSync(stage);
    else fs.unlinkSync(stage);
  }
}
