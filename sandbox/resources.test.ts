import { defaultConfig } from '../config/runtime-config';
import { containerResources, MAX_VCPUS_FROM_HOST, NO_RESOURCES, VMM_OVERHEAD_MIB, vmSizing, vmTarget } from './resources';

const MiB = 1024 * 1024;
const hypervisor = { ...defaultConfig().hypervisor, memoryMiB: 1024, vcpus: 1, maxMemoryMiB: 4096, maxVcpus: 4 };
const sizing = vmSizing(hypervisor);

/** As `ctr run --memory-limit <bytes> --cpus <n>` writes linux.resources. */
const ctrRun = (memoryBytes: number, cpus: number) => containerResources({ memory: { limit: memoryBytes }, cpu: { quota: Math.round(cpus * 100_000), period: 100_000 } });

describe('VM sizing from the pod', () => {
  it('boots at the configured size, the overhead of the VM itself', () => {
    expect(sizing).toEqual({ boot: { vcpus: 1, memoryMiB: 1024 }, max: { vcpus: 4, memoryMiB: 4096 }, room: { vcpus: 4, memoryMiB: 4096 } });
    expect(vmTarget(sizing, [])).toEqual({ vcpus: 1, memoryMiB: 1024 });
    expect(vmTarget(sizing, [NO_RESOURCES, containerResources(undefined), containerResources({})])).toEqual({ vcpus: 1, memoryMiB: 1024 });
  });

  it('adds each container memory limit and the rounded-up sum of their CPU quotas', () => {
    expect(vmTarget(sizing, [ctrRun(256 * MiB, 1.5)])).toEqual({ vcpus: 3, memoryMiB: 1280 });
    // 0.5 + 0.25 + 0.25 CPUs is one CPU, not three; odd bytes round up to a whole MiB.
    expect(vmTarget(sizing, [ctrRun(100 * MiB, 0.5), ctrRun(MiB + 1, 0.25), ctrRun(0, 0.25)])).toEqual({ vcpus: 2, memoryMiB: 1126 });
    // Sums that doubles get wrong (1.1 + 1.3 + 0.6 is 3.0000000000000004) still make exactly three CPUs.
    const roomy = vmSizing({ ...hypervisor, maxVcpus: 8 });
    expect(vmTarget(roomy, [ctrRun(0, 1.1), ctrRun(0, 1.3), ctrRun(0, 0.6)]).vcpus).toBe(4);
    // A quota without a period uses the kernel's 100 ms.
    expect(vmTarget(sizing, [containerResources({ cpu: { quota: 200_000 } })]).vcpus).toBe(3);
  });

  it('asks nothing for unlimited memory and CPU (-1, 0, null)', () => {
    expect(containerResources({ memory: { limit: -1 }, cpu: { quota: -1, period: 100_000 } })).toEqual({ memoryLimitBytes: 0, cpuQuotaUs: 0, cpuPeriodUs: 100_000 });
    expect(vmTarget(sizing, [containerResources({ memory: { limit: null }, cpu: { quota: 0, period: 100_000 } })])).toEqual({ vcpus: 1, memoryMiB: 1024 });
  });

  it('caps the target at the configured maximums', () => {
    expect(vmTarget(sizing, [ctrRun(8192 * MiB, 16)])).toEqual({ vcpus: 4, memoryMiB: 4096 });
  });

  it('keeps what an update does not name', () => {
    const before = ctrRun(256 * MiB, 1);
    expect(containerResources({ memory: { limit: 512 * MiB } }, before)).toEqual({ memoryLimitBytes: 512 * MiB, cpuQuotaUs: 100_000, cpuPeriodUs: 100_000 });
    expect(containerResources({ cpu: { quota: 300_000 } }, before)).toEqual({ memoryLimitBytes: 256 * MiB, cpuQuotaUs: 300_000, cpuPeriodUs: 100_000 });
    expect(containerResources({ memory: { limit: -1 } }, before).memoryLimitBytes).toBe(0);
  });

  it("takes a limit of 0 as the host's CPU count and half its memory (bounded, not the whole host), never below the boot size", () => {
    const host = { vcpus: 8, memoryMiB: 16_000 };
    expect(vmSizing({ ...hypervisor, maxVcpus: 0, maxMemoryMiB: 0 }, host).max).toEqual({ vcpus: 8, memoryMiB: 8_000 });
    expect(vmSizing({ ...hypervisor, maxVcpus: 0, maxMemoryMiB: 0 }, { vcpus: 512, memoryMiB: 16_000 }).max.vcpus).toBe(MAX_VCPUS_FROM_HOST);
    // A host smaller than the boot size: the VM still boots at its configured size.
    expect(vmSizing({ ...hypervisor, vcpus: 4, maxVcpus: 0, memoryMiB: 2048, maxMemoryMiB: 0 }, { vcpus: 2, memoryMiB: 1024 }).max).toEqual({ vcpus: 4, memoryMiB: 2048 });
    // Explicit limits are taken as they are, even above the host's.
    expect(vmSizing({ ...hypervisor, maxVcpus: 16, maxMemoryMiB: 65_536 }, host).max).toEqual({ vcpus: 16, memoryMiB: 65_536 });
  });

  it("never grows past the pod cgroup's limits: memory less the VMM's own overhead, CPUs rounded up", () => {
    const host = { vcpus: 8, memoryMiB: 16_000 };
    const roomy = { ...hypervisor, maxVcpus: 16, maxMemoryMiB: 65_536 };
    expect(vmSizing(roomy, host, { memoryBytes: 3 * 1024 * MiB, cpus: 2.5 }).max).toEqual({ vcpus: 3, memoryMiB: 3 * 1024 - VMM_OVERHEAD_MIB });
    // Only the tighter of the two caps counts.
    expect(vmSizing({ ...hypervisor, maxVcpus: 2, maxMemoryMiB: 2048 }, host, { memoryBytes: 64 * 1024 * MiB, cpus: 6 }).max).toEqual({ vcpus: 2, memoryMiB: 2048 });
    // A limit below the boot size leaves the boot size (and no room to grow).
    expect(vmSizing({ ...hypervisor, memoryMiB: 1024 }, host, { memoryBytes: 512 * MiB }).max.memoryMiB).toBe(1024);
  });

  it("gives the virtual hardware the configured room whatever the pod's limits, so every pod size is the same VM (one template)", () => {
    const host = { vcpus: 8, memoryMiB: 16_000 };
    const roomy = { ...hypervisor, maxVcpus: 16, maxMemoryMiB: 65_536 };
    const unlimited = vmSizing(roomy, host);
    const small = vmSizing(roomy, host, { memoryBytes: 3 * 1024 * MiB, cpus: 2.5 });
    const tiny = vmSizing(roomy, host, { memoryBytes: 512 * MiB, cpus: 0.1 });
    expect(unlimited.room).toEqual({ vcpus: 16, memoryMiB: 65_536 });
    expect(small.room).toEqual(unlimited.room);
    expect(tiny.room).toEqual(unlimited.room);
    // What the VM may grow to is still the pod's.
    expect(small.max).toEqual({ vcpus: 3, memoryMiB: 3 * 1024 - VMM_OVERHEAD_MIB });
    expect(tiny.max).toEqual({ vcpus: 1, memoryMiB: 1024 });
    // Never below the boot size.
    expect(vmSizing({ ...hypervisor, vcpus: 4, maxVcpus: 2, memoryMiB: 2048, maxMemoryMiB: 1024 }, host).room).toEqual({ vcpus: 4, memoryMiB: 2048 });
  });
});
