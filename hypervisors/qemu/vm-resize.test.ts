// The QMP conversation of vCPU and memory hot-plug, against a fake QMP server that
// keeps QEMU's view of the VM (testing/fake-qmp.ts plus the model below).
import { FailedPreconditionError, HypervisorError, InvalidArgumentError, ResourceExhaustedError } from '../../lib/errors';
import { FakeQmp, QmpAnswer, QmpCommand } from '../testing/fake-qmp';
import { QmpClient } from './qmp';
import { HotpluggableCpu, MemoryDeviceInfo, QemuResize } from './vm-resize';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * QEMU 7.2's answers for `-smp <boot>,maxcpus=<max>`: one socket of cores, listed
 * highest first, the present ones with a qom-path; DIMMs placed where device_add says,
 * else at the first 2 MiB boundary after the last device (as memory-backend-ram aligns).
 */
function qemuModel(opts: { type: string; bootCpus: number; maxCpus: number; devices?: MemoryDeviceInfo[] }) {
  const cpus: HotpluggableCpu[] = Array.from({ length: opts.maxCpus }, (_, i) => ({
    type: opts.type,
    'vcpus-count': 1,
    props: { 'core-id': i, 'thread-id': 0, 'node-id': 0, 'socket-id': 0 },
    ...(i < opts.bootCpus ? { 'qom-path': `/machine/unattached/device[${i}]` } : {}),
  })).reverse();
  const devices: MemoryDeviceInfo[] = [...(opts.devices ?? [])];
  const backends = new Map<string, number>();
  const answer = (c: QmpCommand): QmpAnswer => {
    const args = c.arguments ?? {};
    switch (c.execute) {
      case 'query-hotpluggable-cpus':
        return { return: structuredClone(cpus) };
      case 'query-memory-devices':
        return { return: structuredClone(devices) };
      case 'object-add':
        backends.set(String(args.id), Number(args.size));
        return {};
      case 'object-del':
        backends.delete(String(args.id));
        return {};
      case 'device_add': {
        if (args.driver === 'pc-dimm') {
          const size = backends.get(String(args.memdev));
          if (size === undefined) return { error: { class: 'GenericError', desc: `can't find backend ${args.memdev}` } };
          const end = Math.max(4 * GiB, ...devices.map((d) => d.data.addr + d.data.size));
          devices.push({ type: 'dimm', data: { id: String(args.id), addr: Number(args.addr ?? Math.ceil(end / (2 * MiB)) * 2 * MiB), size } });
          return {};
        }
        const { driver, id, ...props } = args;
        const cpu = cpus.find((x) => x.type === driver && Object.entries(x.props).every(([k, v]) => props[k] === v));
        if (!cpu) return { error: { class: 'GenericError', desc: `no CPU slot ${JSON.stringify(props)} of type ${driver}` } };
        if (cpu['qom-path']) return { error: { class: 'GenericError', desc: `CPU[${props['core-id']}] with APIC ID ${props['core-id']} exists` } };
        cpu['qom-path'] = `/machine/peripheral/${id}`;
        return {};
      }
    }
    return { error: { class: 'CommandNotFound', desc: `The command ${c.execute} has not been found` } };
  };
  return { answer, cpus, devices, backends };
}

describe('QemuResize over QMP', () => {
  let fake: FakeQmp;
  let qmp: QmpClient;

  async function connect(answer: (command: QmpCommand) => QmpAnswer): Promise<void> {
    fake = await FakeQmp.start(answer);
    qmp = await QmpClient.connect(fake.socketPath, 2000);
  }

  afterEach(async () => {
    qmp?.close();
    await fake?.close();
  });

  const mutations = () => fake.commands.filter((c) => !c.execute.startsWith('query-'));

  it('plugs free CPU slots in topology order with the type and props QEMU reports', async () => {
    const model = qemuModel({ type: 'host-x86_64-cpu', bootCpus: 1, maxCpus: 4 });
    await connect(model.answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 4, memoryMiB: 1024 }, 0);
    expect(await resize.resize({ vcpus: 3 })).toEqual({ vcpus: 3, memoryMiB: 1024 });
    expect(await resize.resize({ vcpus: 4 })).toEqual({ vcpus: 4, memoryMiB: 1024 });
    expect(mutations()).toEqual([
      { execute: 'device_add', arguments: { driver: 'host-x86_64-cpu', id: 'vcpu1', 'core-id': 1, 'thread-id': 0, 'node-id': 0, 'socket-id': 0 } },
      { execute: 'device_add', arguments: { driver: 'host-x86_64-cpu', id: 'vcpu2', 'core-id': 2, 'thread-id': 0, 'node-id': 0, 'socket-id': 0 } },
      { execute: 'device_add', arguments: { driver: 'host-x86_64-cpu', id: 'vcpu3', 'core-id': 3, 'thread-id': 0, 'node-id': 0, 'socket-id': 0 } },
    ]);
    expect(model.cpus.every((c) => c['qom-path'])).toBe(true);
  });

  it('adds memory as one DIMM of whole 128 MiB blocks per grow, each on a block boundary', async () => {
    const model = qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1 });
    await connect(model.answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 2048 }, 8);
    // 200 MiB more becomes two blocks; the empty device memory area needs no address.
    expect(await resize.resize({ memoryMiB: 1224 })).toEqual({ vcpus: 1, memoryMiB: 1280 });
    // Already covered by the rounding: nothing to plug.
    expect(await resize.resize({ memoryMiB: 1280 })).toEqual({ vcpus: 1, memoryMiB: 1280 });
    expect(await resize.resize({ memoryMiB: 1300 })).toEqual({ vcpus: 1, memoryMiB: 1408 });
    expect(mutations()).toEqual([
      { execute: 'object-add', arguments: { 'qom-type': 'memory-backend-ram', id: 'mem-dimm0', size: 256 * MiB } },
      { execute: 'device_add', arguments: { driver: 'pc-dimm', id: 'dimm0', memdev: 'mem-dimm0' } },
      { execute: 'object-add', arguments: { 'qom-type': 'memory-backend-ram', id: 'mem-dimm1', size: 128 * MiB } },
      { execute: 'device_add', arguments: { driver: 'pc-dimm', id: 'dimm1', memdev: 'mem-dimm1', addr: 4 * GiB + 256 * MiB } },
    ]);
  });

  it('backs DIMMs with shared memory when the guest RAM is shared (virtio-fs: virtiofsd maps every region)', async () => {
    const model = qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1 });
    await connect(model.answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 2048 }, 8, true);
    expect(await resize.resize({ memoryMiB: 1152 })).toEqual({ vcpus: 1, memoryMiB: 1152 });
    expect(mutations()[0]).toEqual({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', share: true, id: 'mem-dimm0', size: 128 * MiB } });
  });

  it('places the first DIMM on the next block boundary after the rootfs NVDIMM, not straight after it', async () => {
    // As QEMU 7.2 reports the 211 MiB rootfs image of command-line.test.ts.
    const nvdimm = { type: 'nvdimm', data: { id: 'nv0', addr: 4 * GiB, size: 210 * MiB } };
    const model = qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1, devices: [nvdimm] });
    await connect(model.answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 2048 }, 8);
    // The NVDIMM is not guest RAM: the VM has its boot memory plus the new DIMM.
    expect(await resize.resize({ memoryMiB: 1152 })).toEqual({ vcpus: 1, memoryMiB: 1152 });
    expect(mutations().at(-1)).toEqual({ execute: 'device_add', arguments: { driver: 'pc-dimm', id: 'dimm0', memdev: 'mem-dimm0', addr: 4 * GiB + 256 * MiB } });
    expect(model.devices.map((d) => (d.data.addr - 4 * GiB) % (128 * MiB))).toEqual([0, 0]);
  });

  it('stops at the limit in whole blocks: the room left that is smaller than a block stays unused', async () => {
    await connect(qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1 }).answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 1500 }, 8);
    expect(await resize.resize({ memoryMiB: 1500 })).toEqual({ vcpus: 1, memoryMiB: 1408 });
    expect(await resize.resize({ memoryMiB: 1500 })).toEqual({ vcpus: 1, memoryMiB: 1408 });
    expect(mutations().map((c) => c.arguments?.size ?? c.arguments?.id)).toEqual([384 * MiB, 'dimm0']);
  });

  it('refuses targets beyond the limits before any QMP command, and shrinking, naming both numbers', async () => {
    await connect(qemuModel({ type: 'max-x86_64-cpu', bootCpus: 2, maxCpus: 4 }).answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 4, memoryMiB: 2048 }, 8);
    await expect(resize.resize({ vcpus: 5 })).rejects.toThrow(new InvalidArgumentError('qemu: cannot resize to 5 vCPUs: the VM was booted with room for 4 (maxVcpus)'));
    await expect(resize.resize({ memoryMiB: 4096 })).rejects.toThrow(new InvalidArgumentError('qemu: cannot resize to 4096 MiB: the VM was booted with room for 2048 MiB (maxMemoryMiB)'));
    expect(fake.commands).toEqual([]);
    const fewer = await resize.resize({ vcpus: 1 }).catch((e: unknown) => e);
    expect(fewer).toBeInstanceOf(FailedPreconditionError);
    expect((fewer as Error).message).toBe('qemu: cannot resize to 1 vCPUs: the VM has 2 and vCPU hot-unplug is not implemented');
    await expect(resize.resize({ memoryMiB: 512 })).rejects.toThrow(new FailedPreconditionError('qemu: cannot resize to 512 MiB: the VM has 1024 MiB and memory is never hot-unplugged'));
    expect(mutations()).toEqual([]);
  });

  it('refuses a grow once every memory slot holds a DIMM', async () => {
    await connect(qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1 }).answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 4096 }, 2);
    await resize.resize({ memoryMiB: 1152 });
    await resize.resize({ memoryMiB: 1280 });
    const err = await resize.resize({ memoryMiB: 1408 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as Error).message).toBe('qemu: cannot add 128 MiB of memory: all 2 memory hot-plug slots of the VM are in use');
    expect(mutations()).toHaveLength(4);
  });

  it('drops the memory backend again when device_add of the DIMM fails, and can grow afterwards', async () => {
    const model = qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 1 });
    let failDimm = true;
    await connect((c) =>
      c.execute === 'device_add' && failDimm ? { error: { class: 'GenericError', desc: 'not enough space, currently 0x0 in use of total space for memory devices 0x0' } } : model.answer(c),
    );
    const resize = new QemuResize(qmp, 1024, { vcpus: 1, memoryMiB: 2048 }, 8);
    const err = await resize.resize({ memoryMiB: 1152 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toBe('qemu: hot-plugging 128 MiB of memory (dimm0): QMP device_add failed: GenericError: not enough space, currently 0x0 in use of total space for memory devices 0x0');
    expect(mutations().map((c) => c.execute)).toEqual(['object-add', 'device_add', 'object-del']);
    expect(model.backends.size).toBe(0);
    failDimm = false;
    expect(await resize.resize({ memoryMiB: 1152 })).toEqual({ vcpus: 1, memoryMiB: 1152 });
  });

  it('runs overlapping resizes one after the other, so they never pick the same free slot', async () => {
    await connect(qemuModel({ type: 'max-x86_64-cpu', bootCpus: 1, maxCpus: 3 }).answer);
    const resize = new QemuResize(qmp, 1024, { vcpus: 3, memoryMiB: 2048 }, 8);
    const sizes = await Promise.all([resize.resize({ vcpus: 2, memoryMiB: 1152 }), resize.resize({ vcpus: 3, memoryMiB: 1280 })]);
    expect(sizes).toEqual([
      { vcpus: 2, memoryMiB: 1152 },
      { vcpus: 3, memoryMiB: 1280 },
    ]);
    expect(mutations().map((c) => c.arguments?.id)).toEqual(['vcpu1', 'mem-dimm0', 'dimm0', 'vcpu2', 'mem-dimm1', 'dimm1']);
  });
});
