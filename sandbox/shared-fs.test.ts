import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mountsBelow, unmount } from './rootfs';
import { bindIntoShare, setUpShare, shareLayout } from './shared-fs';
import { ensureDirChain, ensureEmptyFile, removeTreeOnOneFilesystem } from './safe-paths';

const asRoot = process.getuid?.() === 0 ? it : it.skip;

/** The per-mount options of the mount at `target`; no mount there fails the test (an empty list would pass a `not.toContain`). */
function mountOptions(target: string): string[] {
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === target);
  if (!line) throw new Error(`nothing is mounted at ${target}`);
  return line.split(' ')[5].split(',');
}

describe('the share: host-private mounts, a read-only view for the guest', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'share-'))));

  /**
   * A volume on a mount of its own without nosuid or nodev: a bind copies its source
   * mount's flags, so from a nosuid,nodev /tmp the share's flags would show whether
   * the shim set them or not.
   */
  function flaglessVolume(name: string): string {
    const volume = path.join(dir, name);
    fs.mkdirSync(volume);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', volume]);
    const options = mountOptions(volume);
    expect(options).not.toContain('nosuid');
    expect(options).not.toContain('nodev');
    return volume;
  }
  afterEach(async () => {
    for (const target of mountsBelow(dir)) await unmount(target);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  asRoot('shows what is mounted privately in the guest view, which refuses every write of its own', async () => {
    const workDir = path.join(dir, 'sb');
    fs.mkdirSync(workDir);
    const layout = shareLayout(workDir);
    await setUpShare(layout);
    expect(mountOptions(layout.guestDir)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    for (const dir of [workDir, layout.privateDir]) expect(mountOptions(dir)).toEqual(expect.arrayContaining(['rw', 'nosuid', 'nodev']));

    // The guest's writes at the share root or in a container's directory: EROFS, nothing lands on the host.
    expect(() => fs.symlinkSync('/etc/passwd', path.join(layout.guestDir, 'c1'))).toThrow(/EROFS/);
    expect(() => fs.writeFileSync(path.join(layout.guestDir, 'fill'), 'x')).toThrow(/EROFS/);

    // A container's volume, bound privately, appears in the view and stays writable inside its own mount.
    const volume = flaglessVolume('volume');
    const target = ensureDirChain(layout.privateDir, ['c1', 'mounts', '0']);
    await bindIntoShare(layout, volume, target);
    expect(mountOptions(target)).toEqual(expect.arrayContaining(['rw', 'nosuid', 'nodev']));
    const seen = path.join(layout.guestDir, 'c1', 'mounts', '0');
    fs.writeFileSync(path.join(seen, 'data'), 'written through the view');
    expect(fs.readFileSync(path.join(volume, 'data'), 'utf8')).toBe('written through the view');
    expect(mountOptions(seen)).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    expect(() => fs.mkdirSync(path.join(layout.guestDir, 'c1', 'mounts', '1'))).toThrow(/EROFS/);

    // Unmounting privately removes it from the view too.
    await unmount(target);
    expect(fs.existsSync(path.join(seen, 'data'))).toBe(false);
  });

  asRoot('a read-only volume bind is read-only in the view', async () => {
    const workDir = path.join(dir, 'sb');
    fs.mkdirSync(workDir);
    const layout = shareLayout(workDir);
    await setUpShare(layout);
    const volume = flaglessVolume('ro-volume');
    const target = ensureDirChain(layout.privateDir, ['c1', 'mounts', '0']);
    await bindIntoShare(layout, volume, target, { readonly: true });
    expect(() => fs.writeFileSync(path.join(layout.guestDir, 'c1', 'mounts', '0', 'x'), 'x')).toThrow(/EROFS/);
    expect(mountOptions(path.join(layout.guestDir, 'c1', 'mounts', '0'))).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    // A file volume too, and the staging area is left empty.
    const file = path.join(volume, 'hosts');
    fs.writeFileSync(file, '127.0.0.1 localhost\n');
    const fileTarget = ensureEmptyFile(ensureDirChain(layout.privateDir, ['c1', 'mounts']), '1');
    await bindIntoShare(layout, file, fileTarget, { readonly: true });
    expect(fs.readFileSync(path.join(layout.guestDir, 'c1', 'mounts', '1'), 'utf8')).toBe('127.0.0.1 localhost\n');
    expect(() => fs.appendFileSync(path.join(layout.guestDir, 'c1', 'mounts', '1'), 'x')).toThrow(/EROFS/);
    expect(mountOptions(path.join(layout.guestDir, 'c1', 'mounts', '1'))).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    expect(fs.readdirSync(layout.stagingDir)).toEqual([]);
  });
});

describe('path operations that never follow what may be planted', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'safe-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses to create directories through a symlink', () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.mkdirSync(path.join(dir, 'base'));
    fs.symlinkSync(outside, path.join(dir, 'base', 'c1'));
    expect(() => ensureDirChain(path.join(dir, 'base'), ['c1', 'mounts'])).toThrow(/is a symlink to .*outside; refusing/);
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(() => ensureDirChain(path.join(dir, 'base'), ['..', 'x'])).toThrow('not a single path component');
  });

  it('makes a file bind target without following a symlink or truncating anything', () => {
    const canary = path.join(dir, 'canary');
    fs.writeFileSync(canary, 'host data');
    fs.symlinkSync(canary, path.join(dir, '0'));
    expect(() => ensureEmptyFile(dir, '0')).toThrow('it is a symlink');
    expect(fs.readFileSync(canary, 'utf8')).toBe('host data');
    // An existing regular file keeps its bytes (no O_TRUNC).
    expect(ensureEmptyFile(dir, 'canary')).toBe(canary);
    expect(fs.readFileSync(canary, 'utf8')).toBe('host data');
  });

  it('removes a tree without entering symlinks', () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'keep'), 'x');
    const tree = path.join(dir, 'tree');
    fs.mkdirSync(path.join(tree, 'a'), { recursive: true });
    fs.symlinkSync(outside, path.join(tree, 'a', 'link'));
    expect(removeTreeOnOneFilesystem(tree)).toEqual([]);
    expect(fs.existsSync(tree)).toBe(false);
    expect(fs.readFileSync(path.join(outside, 'keep'), 'utf8')).toBe('x');
  });

  asRoot('leaves a mount point and everything above it', () => {
    const tree = path.join(dir, 'tree');
    const mnt = path.join(tree, 'a', 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    try {
      fs.writeFileSync(path.join(mnt, 'precious'), 'y');
      expect(removeTreeOnOneFilesystem(tree)).toEqual([mnt]);
      expect(fs.readFileSync(path.join(mnt, 'precious'), 'utf8')).toBe('y');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
