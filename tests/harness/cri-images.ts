// The two images CRI tests need, imported where containerd's CRI plugin looks for them
// (namespace k8s.io): the busybox test image for containers and the pause image for
// pod sandboxes. Both are built locally and cached (image.ts, pause-image.ts); CRI
// must never pull, and finds them by these names.

import { CRI_NAMESPACE } from './containerd-cri';
import type { PrivateContainerd } from './containerd';
import { buildBusyboxImage, DEFAULT_IMAGE_CACHE_DIR } from './image';
import { buildPauseImage, DEFAULT_PAUSE_IMAGE_NAME } from './pause-image';

export interface CriImages {
  /** For ContainerConfig.image.image, e.g. "localhost/kata-ts/busybox:latest". */
  busybox: string;
  /** The sandbox image containerd was configured with, e.g. "localhost/kata-ts/pause:latest". */
  pause: string;
}

export interface ImportCriImagesOptions {
  /** Where the archives are built and cached; default DEFAULT_IMAGE_CACHE_DIR. */
  cacheDir?: string;
}

/**
 * Builds (or reuses) both archives and imports them into `cd`'s k8s.io namespace.
 * The pause image gets the name containerd's `sandbox_image` was set to.
 */
export async function importCriImages(cd: PrivateContainerd, opts: ImportCriImagesOptions = {}): Promise<CriImages> {
  const cacheDir = opts.cacheDir ?? DEFAULT_IMAGE_CACHE_DIR;
  const [busybox, pause] = await Promise.all([
    buildBusyboxImage(cacheDir),
    buildPauseImage(cacheDir, { name: cd.cri?.sandboxImage ?? DEFAULT_PAUSE_IMAGE_NAME }),
  ]);
  // One at a time: concurrent imports into one containerd contend on its metadata lock.
  const [busyboxRef] = await cd.importImage(busybox.archive, { namespace: CRI_NAMESPACE });
  const [pauseRef] = await cd.importImage(pause.archive, { namespace: CRI_NAMESPACE });
  return { busybox: busyboxRef, pause: pauseRef };
}
