// Host bind mounts of a container (CRI's /etc/hosts, /etc/resolv.conf, /etc/hostname,
// volumes, emptyDirs, `ctr run --mount`) reach the guest through the sandbox's shared
// directory: each source is bind-mounted (nosuid,nodev) under
// <private>/<container>/mounts/<n> on the host, which the guest sees through the
// read-only share (shared-fs.ts) over virtio-9p, and the spec's source becomes that
// guest path. The pod's /dev/shm becomes the guest's pod-wide tmpfs instead.
import * as fs from 'fs';
import * as path from 'path';
import { CommandFailedError, runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, FailedPreconditionError } from '../lib/errors';
import { GUEST_SHARED_DIR, SANDBOX_SHM_DIR } from '../lib/guest-paths';
import { isMountPoint, unmount } from './rootfs';
import { bindIntoShare, ShareLayout } from './shared-fs';
import { ensureDirChain, ensureEmptyFile } from './safe-paths';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** One host path made visible in the guest. */
export interface VolumeShare {
  hostSource: string;
  /** Bind target inside the sandbox's host-private mount directory. */
  sharedPath: string;
  isDirectory: boolean;
  readonly: boolean;
}

export function isHostBind(m: OciMount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

/** The file type bits of a stat(2) mode. */
type FileType = number;

function kindOf(type: FileType): string | undefined {
  if (type === fs.constants.S_IFSOCK) return 'Unix socket';
  if (type === fs.constants.S_IFCHR) return 'character device';
  if (type === fs.constants.S_IFBLK) return 'block device';
  if (type === fs.constants.S_IFIFO) return 'FIFO';
  return undefined;
}

/**
 * Plans the shares for `mounts` and returns the mounts the guest spec gets. Refuses,
 * before anything is mounted, sources that cannot cross into a VM over 9p.
 */
export async function planVolumes(containerId: string, mounts: OciMount[], hostPrivateDir: string): Promise<{ mounts: OciMount[]; shares: VolumeShare[] }> {
  const shares: VolumeShare[] = [];
  const out: OciMount[] = [];
  for (const m of mounts) {
    if (!isHostBind(m)) {
      out.push(m);
      continue;
    }
    if (m.destination === '/dev/shm') {
      out.push({ ...m, source: SANDBOX_SHM_DIR });
      continue;
    }
    const source = m.source ?? '';
    if (!path.isAbsolute(source)) throw new FailedPreconditionError(`container ${containerId}: mount ${m.destination}: bind source '${source}' is not an absolute host path`);
    let type: FileType;
    try {
      type = await fileTypeBounded(source);
    } catch (err) {
      throw new FailedPreconditionError(`container ${containerId}: mount ${m.destination}: host source ${source} cannot be used (${(err as Error).message})`);
    }
    const kind = kindOf(type);
    if (kind) throw new FailedPreconditionError(`container ${containerId}: mount ${m.destination}: host source ${source} is a ${kind}, which cannot be shared into the VM (only files and directories can)`);
    const name = String(shares.length);
    shares.push({ hostSource: source, sharedPath: path.join(hostPrivateDir, containerId, 'mounts', name), isDirectory: type === fs.constants.S_IFDIR, readonly: (m.options ?? []).includes('ro') });
    out.push({ ...m, source: path.posix.join(GUEST_SHARED_DIR, containerId, 'mounts', name) });
  }
  return { mounts: out, shares };
}

/** How long a volume's host source may take to answer a stat (a hung NFS or FUSE server never does). */
export const VOLUME_STAT_TIMEOUT_MS = 10_000;

/**
 * stat(2) of a volume source, in a child process SIGKILLed at the bound: a hung
 * filesystem fails this Create, not the pod's daemon. (In the daemon, even off the
 * event loop, the stat would pin one of libuv's four pool threads until the server
 * answers; a few such volumes would stall every file operation of the pod.)
 */
async function fileTypeBounded(source: string): Promise<FileType> {
  let stdout: string;
  try {
    ({ stdout } = await runBounded('stat', ['-L', '--printf=%f', '--', source], VOLUME_STAT_TIMEOUT_MS, { env: { ...process.env, LC_ALL: 'C' } }));
  } catch (err) {
    if (err instanceof DeadlineExceededError) throw new Error(`no answer within ${VOLUME_STAT_TIMEOUT_MS / 1000} s: is its filesystem hung?`);
    const stderr = (err instanceof CommandFailedError && err.stderr) || (err as Error).message;
    throw new Error(/No such file or directory/.test(stderr) ? 'ENOENT' : stderr.replace(/^stat: /, ''));
  }
  return parseInt(stdout.trim(), 16) & fs.constants.S_IFMT;
}

/**
 * Bind-mounts each share below the layout's private directory (whose <container>/mounts/ the caller
 * has not made yet); on failure unmounts what it did. Returns the mount points.
 * Every directory on the way is created and checked one component at a time and a
 * file target is opened O_NOFOLLOW without truncation, so even a symlink found there
 * could not redirect a mount or empty a host file.
 */
export async function mountShares(shares: VolumeShare[], layout: ShareLayout): Promise<string[]> {
  const hostPrivateDir = layout.privateDir;
  const done: string[] = [];
  try {
    for (const s of shares) {
      const relative = path.relative(hostPrivateDir, s.sharedPath).split(path.sep);
      const dir = ensureDirChain(hostPrivateDir, relative.slice(0, -1));
      const name = relative[relative.length - 1];
      if (s.isDirectory) ensureDirChain(dir, [name]);
      else ensureEmptyFile(dir, name);
      await bindIntoShare(layout, s.hostSource, s.sharedPath, { readonly: s.readonly });
      done.push(s.sharedPath);
    }
  } catch (err) {
    for (const target of done.reverse()) if (isMountPoint(target)) await unmount(target).catch(() => undefined);
    throw err;
  }
  return done;
}
