// How big the pod's VM should be. It boots at the configured default_memory and
// default_vcpus: what the guest kernel, agent and runtime need for themselves (Kata's
// overhead model, which a RuntimeClass `overhead` mirrors for the scheduler). Each
// container's OCI linux.resources then adds its memory limit, and its CPU quota as
// quota/period CPUs, summed over the pod's containers and rounded up, all capped by the
// configured maximums. Pure; sandbox/vm-sizer.ts makes the VM that size.
import * as os from 'os';
import { RuntimeConfig } from '../config/runtime-config';
import { VmSize } from '../hypervisors/hypervisor';
import { CgroupLimits } from './host-cgroup';

const MiB = 1024 * 1024;
/** Quotas are summed in millionths of a CPU, so 0.7 + 0.2 + 0.1 CPUs make exactly 1. */
const MICRO = 1_000_000;
/** The kernel's CFS period when a quota comes without one. */
const DEFAULT_CPU_PERIOD_US = 100_000;
/**
 * Kata's cap for QEMU on x86 when the limit is taken from the host: APIC ids above 255
 * need interrupt remapping, and a sparse CPU topology reaches them before 256 vCPUs.
 */
export const MAX_VCPUS_FROM_HOST = 240;

/** What one container asks of the VM: the memory limit and the CFS quota/period it got. */
export interface ContainerResources {
  /** 0 when unlimited. */
  memoryLimitBytes: number;
  /** 0 when unlimited. */
  cpuQuotaUs: number;
  cpuPeriodUs: number;
}

export const NO_RESOURCES: ContainerResources = { memoryLimitBytes: 0, cpuQuotaUs: 0, cpuPeriodUs: 0 };

/** The parts of OCI LinuxResources that size the VM. */
export interface LinuxResources {
  memory?: { limit?: number | null };
  cpu?: { quota?: number | null; period?: number | null };
}

export interface VmSizing {
  /** The size the VM boots with. */
  boot: VmSize;
  /** The size it may grow to: the configured maximums, capped by the pod cgroup (VmSizer keeps to it). */
  max: VmSize;
  /**
   * The room its virtual hardware has (QEMU's maxcpus and maxmem): the configured
   * maximums alone. Not the pod's cap: then every pod size would be other hardware, and
   * so another VM template (a template is keyed by its command line), where one template
   * serves every pod of a configuration, as with `kata-ts-runtime factory init`. What
   * keeps a VM within its pod's cap is that nothing plugs more (VmSizer): the guest
   * cannot plug vCPUs or memory itself.
   */
  room: VmSize;
}

/**
 * `resources` (the spec's linux.resources, or an Update's) as the VM sees them. An
 * Update changes what it names and keeps the rest of `previous`, as runc's does;
 * a limit of -1 (or 0) is "unlimited" and asks for nothing.
 */
export function containerResources(resources: LinuxResources | undefined, previous: ContainerResources = NO_RESOURCES): ContainerResources {
  const limit = resources?.memory?.limit;
  const quota = resources?.cpu?.quota;
  const period = resources?.cpu?.period;
  return {
    memoryLimitBytes: typeof limit === 'number' ? Math.max(0, limit) : previous.memoryLimitBytes,
    cpuQuotaUs: typeof quota === 'number' ? Math.max(0, quota) : previous.cpuQuotaUs,
    cpuPeriodUs: typeof period === 'number' ? Math.max(0, period) : previous.cpuPeriodUs,
  };
}

/** Host memory a VMM process needs beside its guest's RAM, kept free below the pod cgroup's limit. */
export const VMM_OVERHEAD_MIB = 128;

/**
 * The configured boot size and limits. A configured limit of 0 is the host's CPU count
 * (at most MAX_VCPUS_FROM_HOST) and half the host's memory: bounded, so one pod cannot
 * be sized to the whole machine. The pod cgroup's limits (`pod`) cap both: the VM never
 * grows past the memory limit less VMM_OVERHEAD_MIB, nor past the CPU quota rounded up.
 * The boot size stands even when a limit is below it (the VM has to boot).
 */
export function vmSizing(hypervisor: RuntimeConfig['hypervisor'], host = hostSize(), pod: CgroupLimits = {}): VmSizing {
  const boot = { vcpus: hypervisor.vcpus, memoryMiB: hypervisor.memoryMiB };
  const atLeastBoot = (cap: VmSize): VmSize => ({ vcpus: Math.max(boot.vcpus, cap.vcpus), memoryMiB: Math.max(boot.memoryMiB, cap.memoryMiB) });
  return { boot, max: atLeastBoot(vmCap(hypervisor, host, pod)), room: atLeastBoot(vmCap(hypervisor, host)) };
}

/** The most a VM may be given: the configured maximums (0: the defaults above), capped by the pod cgroup. */
export function vmCap(hypervisor: Pick<RuntimeConfig['hypervisor'], 'maxVcpus' | 'maxMemoryMiB'>, host = hostSize(), pod: CgroupLimits = {}): VmSize {
  let vcpus = hypervisor.maxVcpus || Math.min(host.vcpus, MAX_VCPUS_FROM_HOST);
  let memoryMiB = hypervisor.maxMemoryMiB || Math.floor(host.memoryMiB / 2);
  if (pod.memoryBytes !== undefined) memoryMiB = Math.min(memoryMiB, Math.floor(pod.memoryBytes / MiB) - VMM_OVERHEAD_MIB);
  if (pod.cpus !== undefined) vcpus = Math.min(vcpus, Math.ceil(pod.cpus));
  return { vcpus, memoryMiB };
}

export function hostSize(): VmSize {
  return { vcpus: os.cpus().length, memoryMiB: Math.floor(os.totalmem() / MiB) };
}

/** What the containers add to the boot size, before the cap. */
export function podDemand(containers: Iterable<ContainerResources>): { memoryMiB: number; vcpus: number } {
  let bytes = 0;
  let microCpus = 0;
  for (const c of containers) {
    bytes += c.memoryLimitBytes;
    if (c.cpuQuotaUs > 0) microCpus += Math.round((c.cpuQuotaUs * MICRO) / (c.cpuPeriodUs || DEFAULT_CPU_PERIOD_US));
  }
  return { memoryMiB: Math.ceil(bytes / MiB), vcpus: Math.ceil(microCpus / MICRO) };
}

/** The VM size for `containers`: boot size plus what they ask, capped by the limits. */
export function vmTarget(sizing: VmSizing, containers: Iterable<ContainerResources>): VmSize {
  const demand = podDemand(containers);
  return {
    vcpus: Math.min(sizing.max.vcpus, sizing.boot.vcpus + demand.vcpus),
    memoryMiB: Math.min(sizing.max.memoryMiB, sizing.boot.memoryMiB + demand.memoryMiB),
  };
}
