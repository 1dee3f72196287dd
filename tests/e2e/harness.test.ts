// Proves the e2e harness itself with the stock runc runtime, so that a failing kata
// e2e test can be blamed on the shim rather than on the image, containerd or teardown.
// Needs root, containerd/ctr, runc and busybox-static; no registry or network.

import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { startContainerd } from '../harness/containerd';
import { buildBusyboxImage, DEFAULT_IMAGE_CACHE_DIR, DEFAULT_IMAGE_NAME } from '../harness/image';
import { diffSnapshots, snapshotHost, waitForNoLeaks } from '../harness/leaks';

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

beforeAll(() => {
  // Fail loudly rather than skip: a silently skipped harness test hides a broken CI box.
  expect(process.getuid?.()).toBe(0);
});

test('builds a deterministic, self-consistent OCI image layout', async () => {
  const cached = await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR);
  expect(cached.ref).toBe(DEFAULT_IMAGE_NAME);

  // A cache hit must not rebuild; a fresh build elsewhere must give identical bytes.
  const t0 = Date.now();
  expect(await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR)).toEqual(cached);
  expect(Date.now() - t0).toBeLessThan(1_000);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'katats-img-'));
  try {
    const fresh = await buildBusyboxImage(scratch);
    expect(fs.readFileSync(fresh.archive).equals(fs.readFileSync(cached.archive))).toBe(true);

    const layout = path.join(scratch, 'layout');
    fs.mkdirSync(layout);
    execFileSync('tar', ['-xf', cached.archive, '-C', layout]);
    expect(JSON.parse(fs.readFileSync(path.join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const readBlob = (d: Descriptor): Buffer => {
      const b = fs.readFileSync(path.join(layout, 'blobs', 'sha256', d.digest.slice('sha256:'.length)));
      expect(sha256(b)).toBe(d.digest);
      expect(b.length).toBe(d.size);
      return b;
    };

    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].annotations).toEqual({
      'io.containerd.image.name': DEFAULT_IMAGE_NAME,
      'org.opencontainers.image.ref.name': 'latest',
    });
    const manifest = JSON.parse(readBlob(index.manifests[0]).toString()) as { config: Descriptor; layers: Descriptor[] };
    const config = JSON.parse(readBlob(manifest.config).toString()) as {
      architecture: string;
      os: string;
      config: { Cmd: string[]; Env: string[] };
      rootfs: { diff_ids: string[] };
    };
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] } });
    expect(manifest.layers).toHaveLength(1);
    const layerTar = zlib.gunzipSync(readBlob(manifest.layers[0]));
    expect(config.rootfs.diff_ids).toEqual([sha256(layerTar)]);

    const layerFile = path.join(scratch, 'layer.tar');
    fs.writeFileSync(layerFile, layerTar);
    const listing = execFileSync('tar', ['-tvf', layerFile, '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rwxr-xr-x 0\/0 .* bin\/busybox$/m);
    expect(listing).toMatch(/^lrwxrwxrwx 0\/0 .* bin\/sh -> busybox$/m);
    expect(listing).toMatch(/^drwxrwxrwt 0\/0 .* tmp\/$/m);
    expect(listing).not.toMatch(/ \.\/$/m); // no root entry that would chmod the rootfs
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);

test('runs a container with the stock runc runtime and leaves nothing behind', async () => {
  const img = await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR);
  const before = await snapshotHost();
  const cd = await startContainerd();
  let stopped = false;
  try {
    expect(cd.address.length).toBeLessThan(100); // unix socket path limit
    expect(await cd.importImage(img.archive)).toEqual([img.ref]);

    const r = await cd.ctr(
      // --runc-root keeps runc's state in our dir instead of the host-global
      // /run/containerd/runc/<namespace>, where a concurrent run using id t1 would clash.
      ['run', '--rm', '--runtime', 'io.containerd.runc.v2', '--runc-root', path.join(cd.dir, 'runc'),
        img.ref, 't1', 'sh', '-c', 'echo hi; exit 3'],
      { timeoutMs: 60_000 },
    );
    expect({ stdout: r.stdout, code: r.code }).toEqual({ stdout: 'hi\n', code: 3 });

    // While containerd runs, its sockets are visible to a snapshot of its dir.
    const during = diffSnapshots(before, await snapshotHost({ dirs: [cd.dir] }));
    expect(during).toContain(`socket: ${cd.address}`);

    const report = await cd.stop();
    stopped = true;
    // Everything was cleaned by the runtime itself; stop() had nothing to force.
    expect(report).toEqual({ leftovers: [], killedProcesses: [], removedPaths: [], unmounted: [] });
  } finally {
    if (!stopped) await cd.stop();
  }
  expect(fs.existsSync(cd.dir)).toBe(false);
  expect(diffSnapshots(before, await snapshotHost())).toEqual([]);
}, 120_000);

test('stop() reaps a container the test left running', async () => {
  const img = await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR);
  const before = await snapshotHost();
  const cd = await startContainerd();
  try {
    await cd.importImage(img.archive);
    const r = await cd.ctr(['run', '-d', '--runc-root', path.join(cd.dir, 'runc'), '--fifo-dir', path.join(cd.dir, 'fifo'),
      img.ref, 'left-running', 'sleep', '1000']);
    expect(r).toMatchObject({ code: 0 });
    // The shim and its mount are real leaks until stop() runs; the detector must see them.
    const during = diffSnapshots(before, await snapshotHost());
    expect(during.some((l) => /^process \d+ .*containerd-shim-runc-v2 .*-id left-running/.test(l))).toBe(true);
    expect(during.some((l) => l.startsWith('mount: overlay on ') && l.includes('/left-running/rootfs'))).toBe(true);
  } finally {
    const report = await cd.stop();
    expect(report.leftovers).toEqual(['task katats-test/left-running', 'container katats-test/left-running']);
    expect(report.killedProcesses).toEqual([]);
  }
  expect(fs.existsSync(cd.dir)).toBe(false);
  expect(await waitForNoLeaks(before, 10_000)).toEqual([]);
}, 120_000);

test('stop() cleans up by force after containerd itself died', async () => {
  const img = await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR);
  const before = await snapshotHost();
  const cd = await startContainerd();
  await cd.importImage(img.archive);
  // Default runc root on purpose: stop() must also clear runc's host-global state.
  const r = await cd.ctr(['run', '-d', '--fifo-dir', path.join(cd.dir, 'fifo'), img.ref, 'orphaned', 'sleep', '1000']);
  expect(r).toMatchObject({ code: 0 });
  process.kill(cd.pid, 'SIGKILL');

  const report = await cd.stop();
  expect(report.leftovers).toEqual([]); // containerd was gone, nothing to ask it
  expect(report.killedProcesses).toEqual([
    expect.stringMatching(/containerd-shim-runc-v2 -namespace katats-test -id orphaned /),
    expect.stringMatching(/^\d+ sleep 1000$/),
  ]);
  expect(report.removedPaths).toEqual(
    expect.arrayContaining([expect.stringMatching(/^\/run\/containerd\/s\/[0-9a-f]{64}$/), '/run/containerd/runc/katats-test/orphaned']),
  );
  expect(report.unmounted).toEqual([expect.stringMatching(/\/orphaned\/rootfs$/)]);
  expect(fs.existsSync(cd.dir)).toBe(false);
  expect(await waitForNoLeaks(before, 10_000)).toEqual([]);
}, 120_000);

test('diffSnapshots reports a mount that appeared, and nothing once it is gone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'katats-mnt-'));
  try {
    const before = await snapshotHost();
    execFileSync('mount', ['-t', 'tmpfs', 'kt-leak-probe', dir]);
    try {
      expect(diffSnapshots(before, await snapshotHost())).toEqual([`mount: kt-leak-probe on ${dir} type tmpfs`]);
    } finally {
      execFileSync('umount', [dir]);
    }
    expect(await waitForNoLeaks(before, 2_000)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
