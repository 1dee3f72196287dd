import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findExecutable, lstatOrUndefined, resolveInRootfs } from './rootfs-path';

describe('paths inside a container rootfs', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rootfs-'));
    fs.mkdirSync(path.join(root, 'bin'));
    fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
    fs.writeFileSync(path.join(root, 'bin/busybox'), '', { mode: 0o755 });
    fs.writeFileSync(path.join(root, 'bin/data'), '', { mode: 0o644 });
    fs.symlinkSync('/bin/busybox', path.join(root, 'bin/sh')); // absolute: means the rootfs's /bin
    fs.symlinkSync('../../bin/busybox', path.join(root, 'usr/bin/env'));
    fs.symlinkSync('/etc/passwd', path.join(root, 'bin/escape')); // must not reach the host's file
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('follows absolute symlinks relative to the rootfs, not the host', () => {
    expect(resolveInRootfs(root, '/bin/sh')).toBe(path.join(root, 'bin/busybox'));
    expect(resolveInRootfs(root, '/bin/escape')).toBeUndefined();
  });

  it('stops `..` at the rootfs root', () => {
    expect(resolveInRootfs(root, '/../../../bin/busybox')).toBe(path.join(root, 'bin/busybox'));
  });

  it('searches PATH like execvp and requires an executable file', () => {
    expect(findExecutable(root, 'sh', ['PATH=/usr/bin:/bin'])).toBe('/bin/sh');
    expect(findExecutable(root, 'env', ['PATH=/usr/bin:/bin'])).toBe('/usr/bin/env');
    expect(findExecutable(root, 'data', ['PATH=/bin'])).toBeUndefined();
    expect(findExecutable(root, 'nope', ['PATH=/usr/bin:/bin'])).toBeUndefined();
    expect(findExecutable(root, 'sh', ['PATH=/usr/bin'])).toBeUndefined();
  });

  it('resolves names with a slash against the working directory', () => {
    expect(findExecutable(root, './busybox', [], '/bin')).toBe('/bin/busybox');
    expect(findExecutable(root, '/bin/sh', [])).toBe('/bin/sh');
  });

  it('looks at each path once in a PATH search (each look is a round trip to the host in a guest)', () => {
    const looked: string[] = [];
    const lookUp = (p: string) => (looked.push(path.relative(root, p)), lstatOrUndefined(p));
    // An image's default PATH, in a rootfs without /usr/local, /usr/sbin or /sbin.
    expect(findExecutable(root, 'sh', ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], '/', lookUp)).toBe('/bin/sh');
    expect(looked.sort()).toEqual(['bin', 'bin/busybox', 'bin/sh', 'sbin', 'usr', 'usr/bin', 'usr/bin/sh', 'usr/local', 'usr/sbin']);
  });

  it('a directory or a file without an execute bit is not an executable, through a symlink either', () => {
    fs.symlinkSync('/bin', path.join(root, 'usr/bin/dir'));
    fs.symlinkSync('/bin/data', path.join(root, 'usr/bin/data'));
    expect(findExecutable(root, 'dir', ['PATH=/usr/bin'])).toBeUndefined();
    expect(findExecutable(root, 'data', ['PATH=/usr/bin'])).toBeUndefined();
    expect(findExecutable(root, '/', [])).toBeUndefined();
  });

  it('a symlink replaced by a file between its lstat and its readlink is not found, not an error', () => {
    // The lstat saw a symlink; by the readlink, the running container had put a file there.
    const lstatBeforeTheSwap: typeof lstatOrUndefined = (hostPath) => (hostPath === path.join(root, 'bin/data') ? fs.lstatSync(path.join(root, 'bin/sh')) : lstatOrUndefined(hostPath));
    expect(resolveInRootfs(root, '/bin/data', lstatBeforeTheSwap)).toBeUndefined();
    expect(findExecutable(root, '/bin/data', [], '/', lstatBeforeTheSwap)).toBeUndefined();
  });

  it('gives up on symlink loops', () => {
    fs.symlinkSync('/bin/loop', path.join(root, 'bin/loop'));
    expect(resolveInRootfs(root, '/bin/loop')).toBeUndefined();
  });
});
