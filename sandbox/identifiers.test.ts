import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { rootfsInsideBundle, validateId } from './identifiers';

describe('identifiers', () => {
  it.each(['abc', 'a1', 'pod_1.x-y', 'a'.repeat(76)])('accepts %s', (id) => {
    expect(validateId('container', id)).toBe(id);
  });
  it.each(['', '../etc', 'a/b', '.hidden', '-x', 'a b', 'a'.repeat(77), 'x\0y'])('rejects %j', (id) => {
    expect(() => validateId('container', id)).toThrow(InvalidArgumentError);
  });
});

describe('rootfs inside the bundle', () => {
  let bundle: string;
  let outside: string;
  beforeEach(() => {
    bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
    outside = fs.mkdtempSync(path.join(os.tmpdir(), 'outside-'));
    fs.mkdirSync(path.join(bundle, 'rootfs'));
  });
  afterEach(() => {
    fs.rmSync(bundle, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  it('resolves the usual relative and absolute rootfs', () => {
    const real = fs.realpathSync(path.join(bundle, 'rootfs'));
    expect(rootfsInsideBundle(bundle, 'rootfs')).toBe(real);
    expect(rootfsInsideBundle(bundle, path.join(bundle, 'rootfs'))).toBe(real);
    expect(rootfsInsideBundle(bundle, undefined)).toBe(real);
  });

  it('refuses `..` out of the bundle, an absolute host path, and the bundle itself', () => {
    expect(() => rootfsInsideBundle(bundle, '../../..')).toThrow(/outside the bundle/);
    expect(() => rootfsInsideBundle(bundle, outside)).toThrow(/outside the bundle/);
    expect(() => rootfsInsideBundle(bundle, '.')).toThrow(/the bundle itself/);
  });

  it('refuses a symlink inside the bundle that points out of it', () => {
    fs.symlinkSync(outside, path.join(bundle, 'sneaky'));
    expect(() => rootfsInsideBundle(bundle, 'sneaky')).toThrow(/outside the bundle/);
  });

  it('names a missing rootfs', () => {
    expect(() => rootfsInsideBundle(bundle, 'nope')).toThrow(/does not exist/);
  });
});
