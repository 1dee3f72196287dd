import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError, InvalidArgumentError } from '../lib/errors';
import { applyDisks, findDisks, SpecWithDevices } from './devices';

describe('hot-plugged disks in the guest', () => {
  let sysBlock: string;

  function addDisk(name: string, dev: string, serial?: string): void {
    fs.mkdirSync(path.join(sysBlock, name));
    fs.writeFileSync(path.join(sysBlock, name, 'dev'), `${dev}\n`);
    if (serial !== undefined) fs.writeFileSync(path.join(sysBlock, name, 'serial'), serial);
  }

  beforeEach(() => {
    sysBlock = fs.mkdtempSync(path.join(os.tmpdir(), 'sys-block-'));
    addDisk('loop0', '7:0'); // no serial: never a candidate
  });
  afterEach(() => fs.rmSync(sysBlock, { recursive: true, force: true }));

  it('finds each disk by serial, waiting for one that appears after the request', async () => {
    addDisk('vda', '254:0', 'blk0');
    setTimeout(() => addDisk('vdb', '254:16', 'blk1'), 150);
    const disks = await findDisks('c1', [{ container_path: '/dev/xvdb', serial: 'blk0' }, { container_path: '/dev/xvdc', serial: 'blk1' }], { sysBlock, timeoutMs: 5000 });
    expect(disks).toEqual([
      { containerPath: '/dev/xvdb', name: 'vda', major: 254, minor: 0 },
      { containerPath: '/dev/xvdc', name: 'vdb', major: 254, minor: 16 },
    ]);
  });

  it('fails naming the container, the device and the serial when the disk never appears', async () => {
    addDisk('vda', '254:0', 'blk0');
    await expect(findDisks('c1', [{ container_path: '/dev/xvdb', serial: 'blk7' }], { sysBlock, timeoutMs: 100 })).rejects.toThrow(
      new FailedPreconditionError('container c1: device /dev/xvdb: no disk with serial blk7 appeared in the guest within 100 ms'),
    );
  });

  it('gives the spec entry and the cgroup rules for the host numbers the guest numbers', () => {
    const spec: SpecWithDevices = {
      linux: {
        devices: [
          { path: '/dev/xvdb', type: 'b', major: 7, minor: 3, uid: 0 },
          { path: '/dev/null', type: 'c', major: 1, minor: 3 },
        ],
        resources: {
          devices: [
            { allow: false, access: 'rwm' },
            { allow: true, type: 'c', major: 7, minor: 3, access: 'rwm' },
            { allow: true, type: 'b', major: 7, minor: 3, access: 'r' },
          ],
        },
      },
    };
    applyDisks('c1', spec, [{ containerPath: '/dev/xvdb', name: 'vda', major: 254, minor: 0 }]);
    expect(spec.linux?.devices).toEqual([
      { path: '/dev/xvdb', type: 'b', major: 254, minor: 0, uid: 0 },
      { path: '/dev/null', type: 'c', major: 1, minor: 3 },
    ]);
    expect(spec.linux?.resources?.devices).toEqual([
      { allow: false, access: 'rwm' },
      { allow: true, type: 'c', major: 7, minor: 3, access: 'rwm' },
      { allow: true, type: 'b', major: 254, minor: 0, access: 'r' },
    ]);
  });

  it('renumbers each rule once, even when one disk gets numbers another had on the host', () => {
    const spec: SpecWithDevices = {
      linux: {
        devices: [
          { path: '/dev/a', type: 'b', major: 7, minor: 0 },
          { path: '/dev/b', type: 'b', major: 254, minor: 0 },
        ],
        resources: { devices: [{ allow: true, type: 'b', major: 7, minor: 0, access: 'r' }, { allow: true, type: 'b', major: 254, minor: 0, access: 'rw' }] },
      },
    };
    applyDisks('c1', spec, [
      { containerPath: '/dev/a', name: 'vda', major: 254, minor: 0 },
      { containerPath: '/dev/b', name: 'vdb', major: 254, minor: 16 },
    ]);
    expect(spec.linux?.resources?.devices).toEqual([
      { allow: true, type: 'b', major: 254, minor: 0, access: 'r' },
      { allow: true, type: 'b', major: 254, minor: 16, access: 'rw' },
    ]);
  });

  it('refuses a disk whose container path has no block entry in the spec', () => {
    const spec: SpecWithDevices = { linux: { devices: [{ path: '/dev/xvdb', type: 'c', major: 1, minor: 5 }] } };
    expect(() => applyDisks('c1', spec, [{ containerPath: '/dev/xvdb', name: 'vda', major: 254, minor: 0 }])).toThrow(
      new InvalidArgumentError("container c1: device /dev/xvdb has no block device entry in the spec's linux.devices"),
    );
  });
});
