import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError, ResourceExhaustedError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { Hypervisor, VmDevice } from '../hypervisors/hypervisor';
import { ContainerDevices, planDevices } from './devices';
import { OciSpec } from './spec';

/** A spec as containerd's CRI writes it for `devices: [{container_path, host_path, permissions}]`. */
function criSpec(devices: Array<{ path: string; type: string; major: number; minor: number; access: string }>): OciSpec {
  return {
    linux: {
      devices: devices.map(({ path: p, type, major, minor }) => ({ path: p, type, major, minor, uid: 0, gid: 6 })),
      resources: { devices: [{ allow: false, access: 'rwm' }, ...devices.map(({ type, major, minor, access }) => ({ allow: true, type, major, minor, access }))] },
    },
  };
}

/** A stand-in for /sys/dev/block with the host block devices the tests name. */
let sysDevBlock: string;
beforeEach(() => {
  sysDevBlock = fs.mkdtempSync(path.join(os.tmpdir(), 'sys-dev-block-'));
  for (const [numbers, name] of [['7:0', 'loop0'], ['7:1', 'loop1'], ['7:3', 'loop3'], ['259:1', 'nvme0n1p1']]) {
    const [major, minor] = numbers.split(':');
    fs.mkdirSync(path.join(sysDevBlock, numbers));
    fs.writeFileSync(path.join(sysDevBlock, numbers, 'uevent'), `MAJOR=${major}\nMINOR=${minor}\nDEVNAME=${name}\nDEVTYPE=disk\n`);
  }
});
afterEach(() => fs.rmSync(sysDevBlock, { recursive: true, force: true }));

describe('planDevices', () => {
  let ids: number;
  const newId = () => `blk${ids++}`;
  beforeEach(() => (ids = 0));

  it('finds block devices on the host by their numbers, read-only unless the rules grant writes', () => {
    const spec = criSpec([
      { path: '/dev/xvdb', type: 'b', major: 7, minor: 3, access: 'r' },
      { path: '/dev/xvdc', type: 'b', major: 259, minor: 1, access: 'rwm' },
    ]);
    expect(planDevices('c1', spec, newId, sysDevBlock)).toEqual([
      { vm: { kind: 'block', id: 'blk0', hostPath: '/dev/loop3', readOnly: true }, guest: { container_path: '/dev/xvdb', serial: 'blk0' } },
      { vm: { kind: 'block', id: 'blk1', hostPath: '/dev/nvme0n1p1', readOnly: false }, guest: { container_path: '/dev/xvdc', serial: 'blk1' } },
    ]);
  });

  it('lets a later deny rule take writes away, as the cgroup device controller does', () => {
    const spec = criSpec([{ path: '/dev/xvdb', type: 'b', major: 7, minor: 3, access: 'rw' }]);
    (spec.linux!.resources as { devices: object[] }).devices.push({ allow: false, type: 'b', major: 7, minor: -1, access: 'w' });
    expect(planDevices('c1', spec, newId, sysDevBlock)[0].vm.readOnly).toBe(true);
  });

  it('passes the standard character devices through and plugs nothing for them', () => {
    const spec = criSpec([
      { path: '/dev/null', type: 'c', major: 1, minor: 3, access: 'rwm' },
      { path: '/dev/my-zero', type: 'c', major: 1, minor: 5, access: 'r' },
    ]);
    expect(planDevices('c1', spec, newId, sysDevBlock)).toEqual([]);
    expect(planDevices('c1', {}, newId, sysDevBlock)).toEqual([]);
  });

  it('refuses other character devices, FIFOs and unknown block numbers, naming container and device', () => {
    expect(() => planDevices('c1', criSpec([{ path: '/dev/kvm', type: 'c', major: 10, minor: 232, access: 'rwm' }]), newId, sysDevBlock)).toThrow(
      new FailedPreconditionError('container c1: device /dev/kvm (character device 10:232) cannot be passed into the VM: only block devices are hot-plugged'),
    );
    expect(() => planDevices('c1', criSpec([{ path: '/dev/pipe', type: 'p', major: 0, minor: 0, access: 'rwm' }]), newId, sysDevBlock)).toThrow('device /dev/pipe (FIFO 0:0) cannot be passed into the VM');
    expect(() => planDevices('c1', criSpec([{ path: '/dev/xvdz', type: 'b', major: 8, minor: 0, access: 'r' }]), newId, sysDevBlock)).toThrow(
      new FailedPreconditionError('container c1: device /dev/xvdz: the host has no block device 8:0'),
    );
  });
});

describe('ContainerDevices', () => {
  const spec = criSpec([
    { path: '/dev/xvdb', type: 'b', major: 7, minor: 0, access: 'r' },
    { path: '/dev/xvdc', type: 'b', major: 7, minor: 1, access: 'r' },
  ]);

  function fakeHypervisor(failOn?: string): Hypervisor & { calls: string[] } {
    const calls: string[] = [];
    return {
      calls,
      name: 'fake',
      agentChannelKind: 'virtio-serial',
      exited: new Promise(() => undefined),
      start: async () => undefined,
      stop: async () => undefined,
      pid: () => 1,
      consoleTail: () => '',
      addDevice: async (d: VmDevice) => {
        calls.push(`add ${d.id}`);
        if (d.id === failOn) throw new ResourceExhaustedError(`block device ${d.id}: all 1 hot-plug ports of the VM are in use`);
      },
      removeDevice: async (id: string) => {
        calls.push(`remove ${id}`);
      },
    };
  }

  /** What the metrics are told: one entry per hot-plug. */
  function countingObserver(): { counted: string[]; hotplug: (device: string, op: string, failed: boolean) => void } {
    const counted: string[] = [];
    return { counted, hotplug: (device, op, failed) => counted.push(`${device} ${op}${failed ? ' failed' : ''}`) };
  }

  it('plugs a container\'s devices and unplugs exactly those, counting each', async () => {
    const hv = fakeHypervisor();
    const observer = countingObserver();
    const devices = new ContainerDevices(hv, silentLogger(), sysDevBlock, observer);
    await devices.plug('c1', devices.plan('c1', spec));
    await devices.plug('c2', devices.plan('c2', spec));
    await devices.unplug('c1');
    await devices.unplug('c1');
    expect(hv.calls).toEqual(['add blk0', 'add blk1', 'add blk2', 'add blk3', 'remove blk0', 'remove blk1']);
    expect(observer.counted).toEqual(['block add', 'block add', 'block add', 'block add', 'block remove', 'block remove']);
  });

  it('unplugs what it plugged when a later device fails, keeping the error kind and naming the container', async () => {
    const hv = fakeHypervisor('blk1');
    const observer = countingObserver();
    const devices = new ContainerDevices(hv, silentLogger(), sysDevBlock, observer);
    const err = await devices.plug('c1', devices.plan('c1', spec)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as Error).message).toBe('container c1: device /dev/xvdc (host /dev/loop1): block device blk1: all 1 hot-plug ports of the VM are in use');
    expect(hv.calls).toEqual(['add blk0', 'add blk1', 'remove blk0']);
    expect(observer.counted).toEqual(['block add', 'block add failed', 'block remove']);
  });

  it('refuses block devices when the driver cannot hot-plug', () => {
    const { removeDevice: _ignored, ...noRemove } = fakeHypervisor();
    expect(() => new ContainerDevices(noRemove, silentLogger(), sysDevBlock).plan('c1', spec)).toThrow(
      new FailedPreconditionError('container c1: device /dev/xvdb: the fake driver cannot hot-plug block devices'),
    );
  });
});
