import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isMountPoint, mountsBelow, removeUnlessMounted, withHostFlags } from './rootfs';

const asRoot = process.getuid?.() === 0 ? it : it.skip;

describe('rootfs mount options', () => {
  it('always adds nosuid and nodev (the guest writes the tree as root), dropping suid/dev', () => {
    expect(withHostFlags(['lowerdir=/a', 'upperdir=/b', 'workdir=/c'])).toBe('lowerdir=/a,upperdir=/b,workdir=/c,nosuid,nodev');
    expect(withHostFlags(['rbind', 'rw', 'suid', 'dev'])).toBe('rbind,rw,nosuid,nodev');
    expect(withHostFlags([])).toBe('nosuid,nodev');
  });
});

describe('removing what the shim made', () => {
  asRoot('never deletes through a mount that is still there', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-'));
    const target = path.join(dir, 'shared', 'c1', 'rootfs');
    fs.mkdirSync(target, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', target]);
    try {
      fs.writeFileSync(path.join(target, 'precious'), 'container data');
      expect(isMountPoint(target)).toBe(true);
      expect(mountsBelow(dir)).toEqual([fs.realpathSync(target)]);
      expect(removeUnlessMounted(dir)).toEqual([fs.realpathSync(target)]);
      expect(fs.readFileSync(path.join(target, 'precious'), 'utf8')).toBe('container data');
    } finally {
      execFileSync('umount', [target]);
    }
    expect(removeUnlessMounted(dir)).toEqual([]);
    expect(fs.existsSync(dir)).toBe(false);
  });
});
