// The QEMU driver and the guest agent without containerd: a real TCG guest is paused
// and resumed over QMP, grown by vCPU and memory hot-plug, and its agent brings what
// arrived online. What the guest reports is the kernel's own count.
import { FailedPreconditionError, InvalidArgumentError } from '../../lib/errors';
import { BootedGuest, bootToAgent, guestVariants } from '../harness/guest-vm';

jest.setTimeout(300_000);

describe('QEMU vCPU and memory hot-plug, onlined by the agent', () => {
  let guest: BootedGuest;

  beforeAll(async () => {
    // The rootfs image, as installed: its NVDIMM shares the device memory area with the DIMMs.
    guest = await bootToAgent(guestVariants().dax, { memoryMiB: 1024, maxVcpus: 3, maxMemoryMiB: 1536, bootTimeoutMs: 240_000, callTimeoutMs: 60_000 });
  });

  afterAll(async () => {
    await guest?.agent.destroySandbox().catch(() => undefined);
    await guest?.stop();
  });

  it('boots with what the command line gave it', async () => {
    expect(await guest.agent.onlineCpuMem({ cpus: 0, memoryMiB: 0 })).toEqual({ cpus: 1, memoryMiB: 1024 });
  });

  it('pauses and resumes the vCPUs (QMP stop/cont)', async () => {
    await guest.hypervisor.pause();
    expect(await guest.hypervisor.vmState()).toBe('paused');
    await guest.hypervisor.resume();
    expect(await guest.hypervisor.vmState()).toBe('running');
    expect((await guest.agent.guestDetails()).kernel_release).toMatch(/^\d+\.\d+/);
  });

  it('hot-plugs a vCPU that the agent brings online', async () => {
    expect(await guest.hypervisor.resize({ vcpus: 2 })).toEqual({ vcpus: 2, memoryMiB: 1024 });
    expect(await guest.agent.onlineCpuMem({ cpus: 2, memoryMiB: 1024 })).toEqual({ cpus: 2, memoryMiB: 1024 });
  });

  it('hot-plugs memory in whole 128 MiB blocks that come online', async () => {
    expect(await guest.hypervisor.resize({ memoryMiB: 1200 })).toEqual({ vcpus: 2, memoryMiB: 1280 });
    expect(await guest.agent.onlineCpuMem({ cpus: 2, memoryMiB: 1280 })).toEqual({ cpus: 2, memoryMiB: 1280 });
  });

  it('grows both at once up to the limits, and refuses past them or below the current size', async () => {
    expect(await guest.hypervisor.resize({ vcpus: 3, memoryMiB: 1536 })).toEqual({ vcpus: 3, memoryMiB: 1536 });
    expect(await guest.agent.onlineCpuMem({ cpus: 3, memoryMiB: 1536 })).toEqual({ cpus: 3, memoryMiB: 1536 });
    await expect(guest.hypervisor.resize({ vcpus: 4 })).rejects.toThrow(new InvalidArgumentError('qemu: cannot resize to 4 vCPUs: the VM was booted with room for 3 (maxVcpus)'));
    await expect(guest.hypervisor.resize({ memoryMiB: 1024 })).rejects.toThrow(new FailedPreconditionError('qemu: cannot resize to 1024 MiB: the VM has 1536 MiB and memory is never hot-unplugged'));
  });
});
