// vCPUs and memory hot-plugged into a running QEMU over QMP, into the room the command
// line reserved (-smp maxcpus, -m slots/maxmem; command-line.ts).
// vCPUs: query-hotpluggable-cpus lists every possible CPU; those without a qom-path are
// free, and device_add of the type and topology props QEMU reports plugs one (the type
// follows -cpu: max-x86_64-cpu under TCG, host-x86_64-cpu under KVM).
// Memory: one memory-backend-ram (memfd, shared, under virtio-fs) object and one pc-dimm on it per grow (object-add,
// device_add), in whole guest memory blocks on a block boundary: Linux adds hot-plugged
// memory only in whole aligned blocks, and QEMU would otherwise put a DIMM straight after
// the rootfs NVDIMM, which ends on a 2 MiB boundary.
// Nothing is unplugged: the guest would have to give the memory back, and Kata does not
// shrink either. The guest must online what arrives (the agent's OnlineCpuMem).
import { FailedPreconditionError, HypervisorError, ResourceExhaustedError } from '../../lib/errors';
import { VmResize, VmSize } from '../hypervisor';
import { refuseBeyondLimits } from '../vm-requirements';
import { QmpClient } from './qmp';

/** x86-64 Linux's memory block (and section) size for guests below 64 GiB. */
export const GUEST_MEMORY_BLOCK_MiB = 128;

const MiB = 1024 * 1024;

/** One entry of query-hotpluggable-cpus. */
export interface HotpluggableCpu {
  type: string;
  'vcpus-count': number;
  props: Record<string, number>;
  /** Set when the CPU is present. */
  'qom-path'?: string;
}

/** One entry of query-memory-devices (dimm, nvdimm, …). */
export interface MemoryDeviceInfo {
  type: string;
  data: { id?: string; addr: number; size: number };
}

/** The order QEMU numbers CPUs in; node-id is passed along but does not order. */
const TOPOLOGY = ['socket-id', 'die-id', 'cluster-id', 'core-id', 'thread-id'];

function byTopology(a: HotpluggableCpu, b: HotpluggableCpu): number {
  for (const key of TOPOLOGY) {
    const diff = (a.props[key] ?? 0) - (b.props[key] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

function roundUp(value: number, step: number): number {
  return Math.ceil(value / step) * step;
}

export class QemuResize {
  /** Serializes resizes: two at once would pick the same free CPU slot or DIMM address. */
  private queue: Promise<unknown> = Promise.resolve();
  private dimmsAdded = 0;

  constructor(
    private readonly qmp: QmpClient,
    private readonly bootMemoryMiB: number,
    /** What the command line reserved room for. */
    private readonly limits: VmSize,
    /** DIMM slots for hot-plug (-m slots, less the NVDIMM's). */
    private readonly memorySlots: number,
    /**
     * Whether the guest RAM is shared memory (virtio-fs): a vhost-user backend maps every
     * RAM region, and one backed by private RAM makes virtiofsd fail ("invalid address
     * for buffers") as soon as the guest hands it a buffer there.
     */
    private readonly sharedMemory = false,
  ) {}

  resize(target: VmResize): Promise<VmSize> {
    const run = this.queue.then(() => this.resizeNow(target));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async resizeNow(target: VmResize): Promise<VmSize> {
    refuseBeyondLimits('qemu', target, this.limits);
    const cpus = await this.qmp.execute<HotpluggableCpu[]>('query-hotpluggable-cpus');
    const devices = await this.qmp.execute<MemoryDeviceInfo[]>('query-memory-devices');
    let vcpus = presentVcpus(cpus);
    let memoryMiB = this.bootMemoryMiB + dimmMiB(devices);
    if (target.vcpus !== undefined && target.vcpus < vcpus) {
      throw new FailedPreconditionError(`qemu: cannot resize to ${target.vcpus} vCPUs: the VM has ${vcpus} and vCPU hot-unplug is not implemented`);
    }
    if (target.memoryMiB !== undefined && target.memoryMiB < memoryMiB) {
      throw new FailedPreconditionError(`qemu: cannot resize to ${target.memoryMiB} MiB: the VM has ${memoryMiB} MiB and memory is never hot-unplugged`);
    }
    if (target.vcpus !== undefined && target.vcpus > vcpus) vcpus = await this.addVcpus(cpus, vcpus, target.vcpus);
    if (target.memoryMiB !== undefined && target.memoryMiB > memoryMiB) memoryMiB += await this.addMemory(devices, memoryMiB, target.memoryMiB);
    return { vcpus, memoryMiB };
  }

  /** Plugs free CPU slots in QEMU's order until `target`; returns the count then. */
  private async addVcpus(cpus: HotpluggableCpu[], present: number, target: number): Promise<number> {
    const free = cpus.filter((c) => !c['qom-path']).sort(byTopology);
    let count = present;
    for (const cpu of free) {
      if (count >= target) break;
      const id = `vcpu${count}`;
      try {
        await this.qmp.execute('device_add', { driver: cpu.type, id, ...cpu.props });
      } catch (err) {
        throw new HypervisorError(`qemu: hot-plugging vCPU ${id} (${count} of ${target} present): ${(err as Error).message}`, { cause: err });
      }
      count += cpu['vcpus-count'];
    }
    if (count < target) throw new HypervisorError(`qemu: cannot grow to ${target} vCPUs: QEMU lists only ${count} possible (-smp maxcpus)`);
    return count;
  }

  /**
   * Adds one DIMM of whole memory blocks covering `target`, or, where that would pass the
   * limit, as many whole blocks as fit; returns the MiB added (0 when not one block fits).
   */
  private async addMemory(devices: MemoryDeviceInfo[], current: number, target: number): Promise<number> {
    const room = Math.floor((this.limits.memoryMiB - current) / GUEST_MEMORY_BLOCK_MiB) * GUEST_MEMORY_BLOCK_MiB;
    const addMiB = Math.min(roundUp(target - current, GUEST_MEMORY_BLOCK_MiB), room);
    if (addMiB === 0) return 0;
    const dimms = devices.filter((d) => d.type === 'dimm').length;
    if (dimms >= this.memorySlots) throw new ResourceExhaustedError(`qemu: cannot add ${addMiB} MiB of memory: all ${this.memorySlots} memory hot-plug slots of the VM are in use`);
    // The device memory area starts on a 1 GiB boundary, so an empty one needs no address.
    const end = Math.max(0, ...devices.map((d) => d.data.addr + d.data.size));
    const addr = end > 0 ? { addr: roundUp(end, GUEST_MEMORY_BLOCK_MiB * MiB) } : {};
    const id = `dimm${this.dimmsAdded++}`;
    const memdev = `mem-${id}`;
    try {
      const backend = this.sharedMemory ? { 'qom-type': 'memory-backend-memfd', share: true } : { 'qom-type': 'memory-backend-ram' };
      await this.qmp.execute('object-add', { ...backend, id: memdev, size: addMiB * MiB });
      try {
        await this.qmp.execute('device_add', { driver: 'pc-dimm', id, memdev, ...addr });
      } catch (err) {
        await this.qmp.execute('object-del', { id: memdev }).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      throw new HypervisorError(`qemu: hot-plugging ${addMiB} MiB of memory (${id}): ${(err as Error).message}`, { cause: err });
    }
    return addMiB;
  }
}

function presentVcpus(cpus: HotpluggableCpu[]): number {
  return cpus.filter((c) => c['qom-path']).reduce((sum, c) => sum + c['vcpus-count'], 0);
}

/** Memory of the hot-plugged DIMMs; the NVDIMM (rootfs) is not guest RAM. */
function dimmMiB(devices: MemoryDeviceInfo[]): number {
  return devices.filter((d) => d.type === 'dimm').reduce((sum, d) => sum + d.data.size / MiB, 0);
}
