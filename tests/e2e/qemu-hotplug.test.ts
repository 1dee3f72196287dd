// The QEMU driver and the guest agent without containerd: a real TCG guest is paused
// and resumed over QMP, grown by vCPU and memory hot-plug, and its agent brings what
// arrived online. What the guest reports is the kernel's own count.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InvalidArgumentError } from '../../lib/errors';
import { silentLogger } from '../../lib/logger';
import { QemuHypervisor } from '../../hypervisors/qemu';
import { vmConfigIn } from '../../hypervisors/testing/vm-fixture';
import { AgentClient, TtrpcAgentClient } from '../../sandbox/agent-client';
import { REPO } from './kata-env';

jest.setTimeout(300_000);

describe('QEMU vCPU and memory hot-plug, onlined by the agent', () => {
  let workDir: string;
  let vm: QemuHypervisor;
  let agent: AgentClient;

  beforeAll(async () => {
    const guest = fs.realpathSync(path.join(REPO, 'guest', 'out', 'current'));
    workDir = fs.mkdtempSync('/tmp/kt-hotplug-');
    const config = vmConfigIn(workDir, 'qemu-system-x86_64', {
      id: 'hotplug',
      accelerator: 'tcg',
      kernelPath: path.join(guest, 'vmlinux'),
      // The rootfs image, as installed: its NVDIMM shares the device memory area with the DIMMs.
      rootfs: { kind: 'image', path: path.join(guest, 'rootfs.img') },
      kernelParams: ['console=ttyS0', 'panic=-1', 'reboot=t', 'quiet'],
      memoryMiB: 1024,
      vcpus: 1,
      maxVcpus: 3,
      maxMemoryMiB: 1536,
      agentChannel: { kind: 'virtio-serial', socketPath: path.join(workDir, 'agent.sock'), portName: 'agent.channel.0' },
    });
    vm = new QemuHypervisor(silentLogger());
    await vm.start(config);
    ({ agent } = await TtrpcAgentClient.connect(config.agentChannel, { bootTimeoutMs: 240_000, callTimeoutMs: 60_000, vmExited: vm.exited, logger: silentLogger() }));
  });

  afterAll(async () => {
    await agent?.destroySandbox().catch(() => undefined);
    agent?.close();
    await vm?.stop(10_000);
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('boots with what the command line gave it', async () => {
    expect(await agent.onlineCpuMem({ cpus: 0, memoryMiB: 0 })).toEqual({ cpus: 1, memoryMiB: 1024 });
  });

  it('pauses and resumes the vCPUs (QMP stop/cont)', async () => {
    await vm.pause();
    expect(await vm.vmState()).toBe('paused');
    await vm.resume();
    expect(await vm.vmState()).toBe('running');
    expect((await agent.guestDetails()).kernel_release).toMatch(/^\d+\.\d+/);
  });

  it('hot-plugs a vCPU that the agent brings online', async () => {
    expect(await vm.resize({ vcpus: 2 })).toEqual({ vcpus: 2, memoryMiB: 1024 });
    expect(await agent.onlineCpuMem({ cpus: 2, memoryMiB: 1024 })).toEqual({ cpus: 2, memoryMiB: 1024 });
  });

  it('hot-plugs memory in whole 128 MiB blocks that come online', async () => {
    expect(await vm.resize({ memoryMiB: 1200 })).toEqual({ vcpus: 2, memoryMiB: 1280 });
    expect(await agent.onlineCpuMem({ cpus: 2, memoryMiB: 1280 })).toEqual({ cpus: 2, memoryMiB: 1280 });
  });

  it('grows both at once up to the limits, and refuses past them or below the current size', async () => {
    expect(await vm.resize({ vcpus: 3, memoryMiB: 1536 })).toEqual({ vcpus: 3, memoryMiB: 1536 });
    expect(await agent.onlineCpuMem({ cpus: 3, memoryMiB: 1536 })).toEqual({ cpus: 3, memoryMiB: 1536 });
    await expect(vm.resize({ vcpus: 4 })).rejects.toThrow(new InvalidArgumentError('qemu: cannot resize to 4 vCPUs: the VM was booted with room for 3 (maxVcpus)'));
    await expect(vm.resize({ memoryMiB: 1024 })).rejects.toThrow(new FailedPreconditionError('qemu: cannot resize to 1024 MiB: the VM has 1536 MiB and memory is never hot-unplugged'));
  });
});
