import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError } from '../lib/errors';
import { describeKsm, HostKsm, memoryMergeFor } from './ksm';

describe('the host KSM switch', () => {
  let dir: string;
  let ksmDir: string;
  const run = (): string => fs.readFileSync(path.join(ksmDir, 'run'), 'utf8').trim();
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ksm-'));
    ksmDir = path.join(dir, 'ksm');
    fs.mkdirSync(ksmDir);
    fs.writeFileSync(path.join(ksmDir, 'run'), '0\n');
    fs.writeFileSync(path.join(ksmDir, 'pages_sharing'), '12\n');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reports the state it reads', () => {
    const state = new HostKsm(ksmDir).state();
    expect(state).toEqual({ available: true, run: 0, pagesSharing: 12, writable: true });
    expect(describeKsm(state)).toBe('run = 0 (ksmd stopped), 12 pages merged away');
    const none = new HostKsm(path.join(dir, 'absent')).state();
    expect(none.available).toBe(false);
    expect(describeKsm(none)).toMatch(/^this host has no KSM \(.*absent\/run does not exist/);
  });

  it('switches KSM on and off as configured, and leaves it alone when unchanged', () => {
    const ksm = new HostKsm(ksmDir);
    expect(ksm.apply('on')).toBe('set run = 1 (was 0)');
    expect(run()).toBe('1');
    expect(ksm.apply('on')).toBe('already run = 1');
    expect(ksm.apply('off')).toBe('set run = 0 (was 1)');
    expect(run()).toBe('0');
    // "2" (stop and unmerge everything) is the host's business; unchanged keeps it.
    fs.writeFileSync(path.join(ksmDir, 'run'), '2\n');
    expect(ksm.apply('unchanged')).toBe('left unchanged');
    expect(run()).toBe('2');
  });

  it('refuses "on" on a host without KSM, and takes "off" there as already true', () => {
    const ksm = new HostKsm(path.join(dir, 'absent'));
    expect(() => ksm.apply('on')).toThrow(FailedPreconditionError);
    expect(() => ksm.apply('on')).toThrow(/^configuration runtime ksm = "on", but this host has no KSM/);
    expect(ksm.apply('off')).toMatch(/^nothing to switch off: this host has no KSM/);
  });

  it('says why when the switch cannot be written', () => {
    // A read-only sysctl: readable as a number, unwritable even for root.
    fs.rmSync(path.join(ksmDir, 'run'));
    fs.symlinkSync('/proc/sys/kernel/ngroups_max', path.join(ksmDir, 'run'));
    const ksm = new HostKsm(ksmDir);
    expect(ksm.state()).toMatchObject({ available: true, writable: false });
    expect(() => ksm.apply('off')).toThrow(new FailedPreconditionError(`configuration runtime ksm = "off": cannot write 0 to ${ksmDir}/run: EACCES: permission denied, open '${ksmDir}/run' (it needs root; ksm = "unchanged" leaves the switch alone)`));
  });

  it('tells the VMM to mark guest memory mergeable only under "on"', () => {
    expect(memoryMergeFor('on')).toBe(true);
    expect(memoryMergeFor('off')).toBe(false);
    expect(memoryMergeFor('unchanged')).toBeUndefined();
  });
});
