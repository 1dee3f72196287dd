import { HypervisorError } from '../lib/errors';
import { capturedLogger } from '../lib/testing/captured-logger';
import { VmResize, VmSize } from '../hypervisors/hypervisor';
import { containerResources, VmSizing } from './resources';
import { VmSizer } from './vm-sizer';

const MiB = 1024 * 1024;
const sizing: VmSizing = { boot: { vcpus: 1, memoryMiB: 1024 }, max: { vcpus: 4, memoryMiB: 4096 }, room: { vcpus: 8, memoryMiB: 8192 } };
const ask = (memoryMiB: number, cpus: number) => containerResources({ memory: { limit: memoryMiB * MiB }, cpu: { quota: cpus * 100_000, period: 100_000 } });

/** A VMM that grows memory in 128 MiB steps, as QEMU's driver does, and records each call. */
function fakeHypervisor(opts: { fail?: () => boolean } = {}) {
  let size: VmSize = { ...sizing.boot };
  const calls: VmResize[] = [];
  return {
    name: 'fake',
    calls,
    async resize(target: VmResize): Promise<VmSize> {
      calls.push(target);
      await new Promise((resolve) => setImmediate(resolve)); // the answer comes later, as over QMP
      if (opts.fail?.()) throw new HypervisorError('QMP device_add failed: GenericError: boom');
      size = {
        vcpus: target.vcpus ?? size.vcpus,
        memoryMiB: target.memoryMiB === undefined ? size.memoryMiB : size.memoryMiB + Math.ceil((target.memoryMiB - size.memoryMiB) / 128) * 128,
      };
      return size;
    },
  };
}

function fakeAgent() {
  const calls: Array<{ cpus: number; memoryMiB: number }> = [];
  return { calls, onlineCpuMem: async (want: { cpus: number; memoryMiB: number }) => (calls.push(want), want) };
}

describe('VmSizer', () => {
  it("grows the VM by a container's limits, then has the guest online what arrived", async () => {
    const vmm = fakeHypervisor();
    const agent = fakeAgent();
    const { logger, lines } = capturedLogger();
    const sizer = new VmSizer(sizing, vmm, agent, logger);
    await sizer.fit('c1', ask(200, 1.5));
    expect(vmm.calls).toEqual([{ vcpus: 3, memoryMiB: 1224 }]);
    // The guest is asked for what the VM has, rounding included.
    expect(agent.calls).toEqual([{ cpus: 3, memoryMiB: 1280 }]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.find((l) => l.msg === 'VM grown')).toMatchObject({ container: 'c1', target: { vcpus: 3, memoryMiB: 1224 }, current: { vcpus: 1, memoryMiB: 1024 }, size: { vcpus: 3, memoryMiB: 1280 } });
  });

  it('adds containers up, counts an updated container once, and asks only for what grows', async () => {
    const vmm = fakeHypervisor();
    const sizer = new VmSizer(sizing, vmm, fakeAgent(), capturedLogger().logger);
    await sizer.fit('c1', ask(256, 1));
    await sizer.fit('c2', ask(256, 0));
    await sizer.fit('c1', containerResources({ memory: { limit: 512 * MiB } }, sizer.resourcesOf('c1')));
    expect(vmm.calls).toEqual([{ vcpus: 2, memoryMiB: 1280 }, { memoryMiB: 1536 }, { memoryMiB: 1792 }]);
    expect(sizer.resourcesOf('c1')).toEqual({ memoryLimitBytes: 512 * MiB, cpuQuotaUs: 100_000, cpuPeriodUs: 100_000 });
  });

  it('never shrinks: lower limits and deleted containers leave the VM as it is', async () => {
    const vmm = fakeHypervisor();
    const agent = fakeAgent();
    const sizer = new VmSizer(sizing, vmm, agent, capturedLogger().logger);
    await sizer.fit('c1', ask(512, 2));
    await sizer.fit('c1', ask(128, 1));
    sizer.forget('c1');
    await sizer.fit('c2', ask(256, 1));
    expect(vmm.calls).toEqual([{ vcpus: 3, memoryMiB: 1536 }]);
    expect(agent.calls).toHaveLength(1);
    // Once the VM is past what is left, a new container grows it from its real size.
    await sizer.fit('c3', ask(512, 1));
    expect(vmm.calls.at(-1)).toEqual({ memoryMiB: 1792 });
  });

  it('grows to the limits and says so when the pod asks for more', async () => {
    const vmm = fakeHypervisor();
    const { logger, messages } = capturedLogger();
    const sizer = new VmSizer(sizing, vmm, fakeAgent(), logger);
    await sizer.fit('c1', ask(8192, 8));
    expect(vmm.calls).toEqual([{ vcpus: 4, memoryMiB: 4096 }]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(messages()).toContain('the pod asks for more than the VM may grow to (default_maxvcpus/default_maxmemory); growing to the limit');
  });

  it('skips sizing with one warning when the driver cannot resize', async () => {
    const agent = fakeAgent();
    const { logger, lines } = capturedLogger();
    const sizer = new VmSizer(sizing, { name: 'firecracker' }, agent, logger);
    await sizer.fit('c1', ask(256, 1));
    await sizer.fit('c2', ask(256, 1));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual(['the firecracker driver cannot hot-plug vCPUs or memory; the VM keeps its boot size']);
    expect(agent.calls).toEqual([]);
    expect(sizer.resourcesOf('c2').memoryLimitBytes).toBe(256 * MiB);
  });

  it('does not count a container the VM could not grow for', async () => {
    let failing = true;
    const vmm = fakeHypervisor({ fail: () => failing });
    const agent = fakeAgent();
    const sizer = new VmSizer(sizing, vmm, agent, capturedLogger().logger);
    await expect(sizer.fit('c1', ask(256, 1))).rejects.toThrow('QMP device_add failed: GenericError: boom');
    expect(sizer.resourcesOf('c1').memoryLimitBytes).toBe(0);
    expect(agent.calls).toEqual([]);
    failing = false;
    await sizer.fit('c2', ask(128, 0));
    expect(vmm.calls.at(-1)).toEqual({ memoryMiB: 1152 });
  });

  it('grows for overlapping creates one after the other, each from the size the last reached', async () => {
    const vmm = fakeHypervisor();
    const sizer = new VmSizer(sizing, vmm, fakeAgent(), capturedLogger().logger);
    await Promise.all([sizer.fit('c1', ask(256, 1)), sizer.fit('c2', ask(256, 1))]);
    expect(vmm.calls).toEqual([
      { vcpus: 2, memoryMiB: 1280 },
      { vcpus: 3, memoryMiB: 1536 },
    ]);
  });
});
