// The pod sandbox ("pause") image for CRI tests: tests/harness/pause.c compiled
// statically and packed by image.ts's builder. containerd's CRI plugin runs it as every
// pod's first container; with no registry it must be imported, never pulled.
//
// Cached like the busybox image: the archive name derives from the source and the
// compiler's identity, so gcc only runs when either changes.

import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { runOk } from './exec';
import { BuildImageOptions, buildOciImage, BuiltImage } from './image';

export const DEFAULT_PAUSE_IMAGE_NAME = 'localhost/kata-ts/pause:latest';
/** Where the binary sits in the image (and the image's entrypoint). */
export const PAUSE_BINARY = '/pause';

const PAUSE_SOURCE = 'pause.c';
const GCC_FLAGS = ['-static', '-O2', '-s', '-Wall', '-Werror'];

export async function buildPauseImage(outDir: string, opts: BuildImageOptions = {}): Promise<BuiltImage> {
  const source = await fs.promises.readFile(pauseSourcePath());
  // The compiler is an input too: another gcc may produce another binary.
  const gcc = (await runOk('gcc', ['--version'])).stdout.split('\n')[0];
  return buildOciImage(outDir, {
    cacheName: 'pause',
    ref: opts.name ?? DEFAULT_PAUSE_IMAGE_NAME,
    inputs: { pause: sha256Hex(source), gcc, flags: GCC_FLAGS.join(' ') },
    config: { Entrypoint: [PAUSE_BINARY], WorkingDir: '/' },
    createdBy: 'kata-ts tests/harness/pause-image.ts (static pause)',
    populate: async (rootfs) => {
      // Mount points runtimes expect; runc would create them, but a VM guest's runtime
      // may work on a read-only share.
      for (const [d, mode] of [['', 0o755], ['dev', 0o755], ['etc', 0o755], ['proc', 0o555], ['sys', 0o555]] as const) {
        const p = path.join(rootfs, d);
        await fs.promises.mkdir(p, { recursive: true });
        await fs.promises.chmod(p, mode);
      }
      const bin = path.join(rootfs, PAUSE_BINARY);
      const src = path.join(path.dirname(rootfs), PAUSE_SOURCE);
      await fs.promises.writeFile(src, source);
      await runOk('gcc', [...GCC_FLAGS, '-o', bin, src]);
      await fs.promises.chmod(bin, 0o755);
    },
  });
}

/** pause.c next to this module's source, whether it runs from the sources or from dist/. */
function pauseSourcePath(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    for (const candidate of [path.join(dir, PAUSE_SOURCE), path.join(dir, 'tests', 'harness', PAUSE_SOURCE)]) {
      if (fs.existsSync(candidate)) return candidate;
    }
  }
  throw new Error(`tests/harness/${PAUSE_SOURCE} not found above ${__dirname}`);
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
