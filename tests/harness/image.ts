// Builds small container images as OCI image-layout tar archives that `ctr images
// import` accepts, without a registry, umoci or skopeo: buildOciImage() does the layout
// for any one-layer rootfs; buildBusyboxImage() is the busybox test image (a static
// busybox plus applet symlinks). pause-image.ts builds the pod sandbox image with it.
//
// Everything is deterministic (fixed mtimes, numeric root ownership, sorted tar entries,
// no gzip timestamp), so the same inputs give byte-identical blobs and digests. Each
// archive is cached under a name derived from its inputs, so repeated calls only hash
// the inputs and stat one file.

import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { runOk } from './exec';

export const DEFAULT_IMAGE_NAME = 'localhost/kata-ts/busybox:latest';
/** A cache dir shared by test files (and runs), so the archive is built once per host. */
export const DEFAULT_IMAGE_CACHE_DIR = path.join(os.tmpdir(), 'kata-ts-test-images');

/** Bump whenever the produced layout changes so stale cached archives are not reused. */
const BUILDER_VERSION = '1';

export const HOST_BUSYBOX = '/bin/busybox';

/** Applets the e2e tests rely on; building fails if the host busybox lacks one. */
const REQUIRED_APPLETS = [
  'sh', 'echo', 'ls', 'cat', 'uname', 'sleep', 'true', 'false', 'id', 'ps', 'env',
  'hostname', 'head', 'md5sum', 'sha256sum', 'dd', 'yes', 'wc', 'mount', 'grep',
  'touch', 'mkdir', 'rm', 'kill', 'seq', 'tr',
];
/** Handy extras, linked only when the host busybox provides them. */
const OPTIONAL_APPLETS = [
  'umount', 'df', 'tail', 'stat', 'cut', 'sed', 'awk', 'printf', 'test', 'sync', 'date',
  'nproc', 'free', 'cp', 'mv', 'ln', 'chmod', 'readlink', 'timeout', 'xargs', 'sort',
  'uniq', 'tee', 'find', 'dmesg', 'ip', 'ifconfig', 'ping', 'nc', 'which', 'pwd',
  'basename', 'dirname', 'mkfifo', 'rmdir', 'stty', 'tty', 'uptime', 'whoami', 'du',
  'httpd', 'wget',
];

const IMAGE_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const MT_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const MT_CONFIG = 'application/vnd.oci.image.config.v1+json';
const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MT_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Full image name, read by containerd's importer in preference to the OCI ref name. */
export const ANNOTATION_CONTAINERD_NAME = 'io.containerd.image.name';
export const ANNOTATION_OCI_REF_NAME = 'org.opencontainers.image.ref.name';

/** Fixed flags that make GNU tar output depend only on file contents and modes. */
const DETERMINISTIC_TAR = [
  '--numeric-owner', '--owner=0', '--group=0', '--mtime=@0', '--sort=name', '--format=gnu',
];

export interface BuildImageOptions {
  /** Image name stored in containerd; a missing tag becomes ':latest'. */
  name?: string;
}

export interface BuiltImage {
  /** Path of the OCI image-layout tar, ready for `ctr images import`. */
  archive: string;
  /** Exact image name the archive imports as (what `ctr run` must be given). */
  ref: string;
}

interface Blob {
  digest: string;
  size: number;
  data: Buffer;
}

export async function buildBusyboxImage(outDir: string, opts: BuildImageOptions = {}): Promise<BuiltImage> {
  const busybox = await fs.promises.readFile(HOST_BUSYBOX);
  return buildOciImage(outDir, {
    cacheName: 'busybox',
    ref: opts.name ?? DEFAULT_IMAGE_NAME,
    inputs: { busybox: sha256Hex(busybox), applets: [...REQUIRED_APPLETS, ...OPTIONAL_APPLETS].join(',') },
    config: { Env: [IMAGE_PATH_ENV], Cmd: ['sh'], WorkingDir: '/' },
    createdBy: 'kata-ts tests/harness/image.ts (busybox rootfs)',
    populate: (rootfs) => makeBusyboxRootfs(rootfs, busybox),
  });
}

/** What differs between the images the harness builds; the layout around it is shared. */
export interface OciImageRecipe {
  /** Prefix of the cached archive's file name ("busybox" gives busybox-<key>.oci.tar). */
  cacheName: string;
  /** Image name stored in containerd; a missing tag becomes ':latest'. */
  ref: string;
  /**
   * Hashes (or other small values) of everything that goes into the rootfs. With the
   * builder version, ref and architecture they name the cached archive, so whatever
   * changes the layer must change them.
   */
  inputs: Record<string, string>;
  /** The image config's `config` object. */
  config: { Env?: string[]; Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string };
  /** Recorded in the image history. */
  createdBy: string;
  /** Fills the (existing, empty) rootfs dir. Set modes explicitly: the umask must not leak in. */
  populate(rootfs: string): Promise<void>;
}

/** Builds, or finds in `outDir`, the one-layer OCI image-layout tar for `recipe`. */
export async function buildOciImage(outDir: string, recipe: OciImageRecipe): Promise<BuiltImage> {
  const ref = normalizeRef(recipe.ref);
  const arch = ociArch(process.arch);
  const key = sha256Hex(JSON.stringify({ v: BUILDER_VERSION, ...recipe.inputs, ref, arch })).slice(0, 20);

  await fs.promises.mkdir(outDir, { recursive: true });
  const archive = path.join(outDir, `${recipe.cacheName}-${key}.oci.tar`);
  if (fs.existsSync(archive)) return { archive, ref };

  // Build in a private dir and rename into place: concurrent callers (parallel jest
  // workers) then never observe a half-written archive, and the last rename wins
  // with identical bytes anyway.
  const work = await fs.promises.mkdtemp(path.join(outDir, '.build-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    await fs.promises.mkdir(rootfs);
    await recipe.populate(rootfs);
    const layerTar = await tarDir(rootfs, path.join(work, 'layer.tar'));
    const layer = blob(zlib.gzipSync(layerTar, { level: 9 }));
    const config = blob(jsonBytes(imageConfig(arch, sha256Digest(layerTar), recipe)));
    const manifest = blob(
      jsonBytes({
        schemaVersion: 2,
        mediaType: MT_MANIFEST,
        config: { mediaType: MT_CONFIG, digest: config.digest, size: config.size },
        layers: [{ mediaType: MT_LAYER, digest: layer.digest, size: layer.size }],
      }),
    );
    const index = {
      schemaVersion: 2,
      mediaType: MT_INDEX,
      manifests: [
        {
          mediaType: MT_MANIFEST,
          digest: manifest.digest,
          size: manifest.size,
          platform: { architecture: arch, os: 'linux' },
          annotations: {
            // containerd 1.6's importer names the image after this annotation verbatim.
            // Without it, it falls back to the OCI ref name, and `ctr images import`
            // turns a bare tag into "import-<date>:<tag>" unless --base-name is given.
            [ANNOTATION_CONTAINERD_NAME]: ref,
            // Per the OCI image-layout spec this is just the tag; that is also what
            // `ctr images export` writes.
            [ANNOTATION_OCI_REF_NAME]: tagOf(ref),
          },
        },
      ],
    };

    const layout = path.join(work, 'layout');
    const blobDir = path.join(layout, 'blobs', 'sha256');
    await fs.promises.mkdir(blobDir, { recursive: true });
    for (const b of [layer, config, manifest]) {
      await fs.promises.writeFile(path.join(blobDir, b.digest.slice('sha256:'.length)), b.data);
    }
    await fs.promises.writeFile(path.join(layout, 'oci-layout'), jsonBytes({ imageLayoutVersion: '1.0.0' }));
    await fs.promises.writeFile(path.join(layout, 'index.json'), jsonBytes(index));

    const tmpArchive = path.join(work, 'image.oci.tar');
    await runOk('tar', ['--create', '--file', tmpArchive, '--directory', layout, ...DETERMINISTIC_TAR,
      'blobs', 'index.json', 'oci-layout']);
    await fs.promises.rename(tmpArchive, archive);
  } finally {
    await fs.promises.rm(work, { recursive: true, force: true });
  }
  return { archive, ref };
}

/**
 * The busybox test image's rootfs, for other recipes to build on (web-image.ts):
 * `extraApplets` are linked too where the host busybox has them.
 */
export async function makeBusyboxRootfs(rootfs: string, busybox: Buffer, extraApplets: readonly string[] = []): Promise<void> {
  const dirs: Array<[string, number]> = [
    ['', 0o755], ['bin', 0o755], ['dev', 0o755], ['etc', 0o755], ['proc', 0o555],
    ['root', 0o700], ['sys', 0o555], ['tmp', 0o1777],
  ];
  for (const [d, mode] of dirs) {
    const p = path.join(rootfs, d);
    await fs.promises.mkdir(p, { recursive: true });
    // chmod explicitly: mkdir's mode is filtered by the umask, which would make the
    // layer (and its digest) depend on the environment.
    await fs.promises.chmod(p, mode);
  }
  const files: Array<[string, string, number]> = [
    ['etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', 0o644],
    ['etc/group', 'root:x:0:\nnobody:x:65534:\n', 0o644],
    // Empty placeholders: runtimes (and the kata shim) bind-mount over these, and a
    // bind mount needs an existing target file.
    ['etc/hosts', '', 0o644],
    ['etc/hostname', '', 0o644],
    ['etc/resolv.conf', '', 0o644],
  ];
  for (const [f, content, mode] of files) {
    const p = path.join(rootfs, f);
    await fs.promises.writeFile(p, content);
    await fs.promises.chmod(p, mode);
  }
  const bb = path.join(rootfs, 'bin', 'busybox');
  await fs.promises.writeFile(bb, busybox);
  await fs.promises.chmod(bb, 0o755);

  const available = new Set((await runOk(HOST_BUSYBOX, ['--list'])).stdout.split('\n').filter(Boolean));
  const missing = REQUIRED_APPLETS.filter((a) => !available.has(a));
  if (missing.length > 0) throw new Error(`${HOST_BUSYBOX} lacks required applets: ${missing.join(', ')}`);
  const applets = new Set([...REQUIRED_APPLETS, ...[...OPTIONAL_APPLETS, ...extraApplets].filter((a) => available.has(a))]);
  for (const a of applets) {
    // Relative target so the link resolves inside the container, not on the host.
    await fs.promises.symlink('busybox', path.join(rootfs, 'bin', a));
  }
}

/** Tars rootfs' top-level entries (not "./" itself, whose mode would be mkdtemp's 0700). */
async function tarDir(dir: string, out: string): Promise<Buffer> {
  const entries = (await fs.promises.readdir(dir)).sort();
  await runOk('tar', ['--create', '--file', out, '--directory', dir, ...DETERMINISTIC_TAR, ...entries]);
  return fs.promises.readFile(out);
}

function imageConfig(arch: string, diffId: string, recipe: OciImageRecipe): object {
  const created = '1970-01-01T00:00:00Z';
  return {
    created,
    architecture: arch,
    os: 'linux',
    config: recipe.config,
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created, created_by: recipe.createdBy }],
  };
}

/** Appends ':latest' when the name has neither tag nor digest, as docker would. */
export function normalizeRef(name: string): string {
  const lastSlash = name.lastIndexOf('/');
  const tail = name.slice(lastSlash + 1);
  if (name.includes('@') || tail.includes(':')) return name;
  return `${name}:latest`;
}

function tagOf(ref: string): string {
  if (ref.includes('@')) return ref.slice(ref.indexOf('@') + 1);
  return ref.slice(ref.lastIndexOf(':') + 1);
}

function ociArch(nodeArch: string): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', s390x: 's390x', ppc64: 'ppc64le' };
  const a = map[nodeArch];
  if (!a) throw new Error(`unsupported host architecture ${nodeArch}`);
  return a;
}

function blob(data: Buffer): Blob {
  return { digest: sha256Digest(data), size: data.length, data };
}

function jsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function sha256Digest(data: Buffer): string {
  return `sha256:${sha256Hex(data)}`;
}
