import { HypervisorError } from '../lib/errors';
import { VmResize } from '../hypervisors/hypervisor';
import { countingResize, NO_SANDBOX_OBSERVER, SandboxObserver } from './sandbox-observer';

describe('countingResize', () => {
  function observer(): SandboxObserver & { counted: string[] } {
    const counted: string[] = [];
    return { ...NO_SANDBOX_OBSERVER, counted, hotplug: (device, op, failed) => counted.push(`${device} ${op}${failed ? ' failed' : ''}`) };
  }

  it('counts a vCPU and a memory hot-plug for each resize that asks for them', async () => {
    const asked: VmResize[] = [];
    const o = observer();
    const sizer = countingResize({ name: 'fake', resize: async (t) => (asked.push(t), { vcpus: t.vcpus ?? 1, memoryMiB: t.memoryMiB ?? 512 }) }, o);
    expect(await sizer.resize!({ vcpus: 2, memoryMiB: 768 })).toEqual({ vcpus: 2, memoryMiB: 768 });
    await sizer.resize!({ memoryMiB: 1024 });
    expect(asked).toEqual([{ vcpus: 2, memoryMiB: 768 }, { memoryMiB: 1024 }]);
    expect(o.counted).toEqual(['cpu add', 'memory add', 'memory add']);
  });

  it('counts a refused resize as failed and passes the error on', async () => {
    const o = observer();
    const sizer = countingResize({ name: 'fake', resize: async () => Promise.reject(new HypervisorError('no slot left')) }, o);
    await expect(sizer.resize!({ vcpus: 3 })).rejects.toThrow(new HypervisorError('no slot left'));
    expect(o.counted).toEqual(['cpu add failed']);
  });

  it('leaves a driver that cannot resize without resize', () => {
    expect(countingResize({ name: 'fake' }, observer())).toEqual({ name: 'fake' });
  });
});
