// The sandbox's shared directory, split the way Kata split it after CVE-2020-2026:
//
//   <workDir>/            a private bind of itself: nothing mounted below propagates to
//                         the host's other mount namespaces
//   <workDir>/mounts/     host-private, where the shim makes every mount
//                         (<container>/rootfs, <container>/mounts/<n>); a shared mount
//                         so that what is mounted here shows up in:
//   <workDir>/shared/     what the VM gets over 9p: a read-only, nosuid, nodev bind of
//                         mounts/, a slave of it (mounts appear and vanish with mounts/)
//
// The guest can therefore neither create, rename nor replace anything at the share's
// root, in <container>/ or in <container>/mounts/: the symlinks it could plant there
// before are refused with EROFS, and it cannot write a byte into the host's state
// directory. A writable rootfs or volume stays writable only inside its own mount,
// whose flags are its own (rw, and nosuid,nodev as every bind the shim makes).
import * as path from 'path';
import { ensureDirChain } from './safe-paths';
import { runMount } from './rootfs';

/** Flags of every bind the shim exposes to the guest: no set-id programs, no device nodes usable through it on the host. */
export const SHARE_BIND_FLAGS = 'nosuid,nodev';

export interface ShareLayout {
  workDir: string;
  /** Host-private: the shim mounts here. */
  privateDir: string;
  /** Guest-visible (9p export): a read-only view of privateDir. */
  guestDir: string;
}

export function shareLayout(workDir: string): ShareLayout {
  return { workDir, privateDir: path.join(workDir, 'mounts'), guestDir: path.join(workDir, 'shared') };
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
  ensureDirChain(workDir, ['mounts']);
  ensureDirChain(workDir, ['shared']);
  await runMount(['--bind', privateDir, privateDir]);
  await runMount(['--make-private', privateDir]);
  await runMount(['--make-shared', privateDir]);
  await runMount(['--bind', privateDir, guestDir]);
  await runMount(['--make-slave', guestDir]);
  await runMount(['-o', `remount,bind,ro,${SHARE_BIND_FLAGS}`, guestDir]);
}
