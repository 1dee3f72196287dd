import { InvalidArgumentError } from '../../lib/errors';
import { vmConfigIn } from '../testing/vm-fixture';
import { buildClhVmConfig, clhResize } from './vm-config';

const MiB = 1024 * 1024;
const vm = vmConfigIn('/run/kata-ts/sb1', 'cloud-hypervisor');

describe('Cloud Hypervisor VM configuration', () => {
  it('boots with exactly the boot vCPUs and memory unless hot-plug room is asked for', () => {
    const plain = buildClhVmConfig(vm, {}, []);
    expect(plain.cpus).toEqual({ boot_vcpus: 2, max_vcpus: 2 });
    expect(plain.memory).toEqual({ size: 512 * MiB });
    const roomy = buildClhVmConfig({ ...vm, maxVcpus: 8, maxMemoryMiB: 1536 }, {}, []);
    expect(roomy.cpus).toEqual({ boot_vcpus: 2, max_vcpus: 8 });
    expect(roomy.memory).toEqual({ size: 512 * MiB, hotplug_size: 1024 * MiB });
  });

  it("tells the guest agent to listen on vsock, its only channel, after the configuration's own parameters", () => {
    expect(buildClhVmConfig(vm, {}, []).payload.cmdline).toBe('console=ttyS0 quiet katats.agent_vsock=1');
    expect(buildClhVmConfig({ ...vm, rootfs: { kind: 'image', path: '/rootfs.img' } }, {}, []).payload.cmdline).toMatch(/^root=\/dev\/pmem0 .* console=ttyS0 quiet katats\.agent_vsock=1$/);
  });

  it('marks guest memory mergeable for KSM only when told either way', () => {
    expect(buildClhVmConfig({ ...vm, memoryMerge: true }, {}, []).memory).toEqual({ size: 512 * MiB, mergeable: true });
    expect(buildClhVmConfig({ ...vm, memoryMerge: false }, {}, []).memory).toEqual({ size: 512 * MiB, mergeable: false });
    expect(buildClhVmConfig(vm, {}, []).memory).not.toHaveProperty('mergeable');
  });

  it("gives the pod's NICs first, then devices added before start", () => {
    const pod = { ...vm, network: { netnsPath: '/var/run/netns/cni-1', nics: [{ tapName: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f' }] } };
    const config = buildClhVmConfig(pod, {}, [{ kind: 'network', id: 'extra', tapName: 'tap9' }]);
    expect(config.net).toEqual([
      { tap: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f', id: 'pod_net0' },
      { tap: 'tap9', id: 'extra' },
    ]);
    expect(buildClhVmConfig(vm, {}, []).net).toBeUndefined();
  });

  it('refuses shared directories without virtiofsd, naming the option', () => {
    const shared = { ...vm, sharedDirectories: [{ tag: 'kataShared', hostPath: '/s' }] };
    expect(() => buildClhVmConfig(shared, {}, [])).toThrow(
      new InvalidArgumentError("cloud-hypervisor shares directories over virtio-fs only, which needs virtiofsd: set the driver's virtiofsdPath option, or pass no sharedDirectories (got kataShared)"),
    );
  });

  it('refuses limits below the boot size', () => {
    expect(() => buildClhVmConfig({ ...vm, maxVcpus: 1 }, {}, [])).toThrow(new InvalidArgumentError('cloud-hypervisor: maxVcpus 1 is below the boot vcpus 2'));
    expect(() => buildClhVmConfig({ ...vm, maxMemoryMiB: 256 }, {}, [])).toThrow(new InvalidArgumentError('cloud-hypervisor: maxMemoryMiB 256 is below the boot memoryMiB 512'));
  });

  it('resizes only within the room the VM booted with', () => {
    const booted = buildClhVmConfig({ ...vm, maxVcpus: 4, maxMemoryMiB: 1024 }, {}, []);
    expect(clhResize(booted, { vcpus: 4, memoryMiB: 1024 })).toEqual({ desired_vcpus: 4, desired_ram: 1024 * MiB });
    expect(clhResize(booted, { memoryMiB: 256 })).toEqual({ desired_ram: 256 * MiB });
    expect(() => clhResize(booted, { vcpus: 5 })).toThrow(new InvalidArgumentError('cloud-hypervisor: cannot resize to 5 vCPUs: the VM was booted with room for 4 (maxVcpus)'));
    expect(() => clhResize(booted, { memoryMiB: 1025 })).toThrow(new InvalidArgumentError('cloud-hypervisor: cannot resize to 1025 MiB: the VM was booted with room for 1024 MiB (maxMemoryMiB)'));
    expect(() => clhResize(booted, {})).toThrow('cloud-hypervisor: resize needs vcpus or memoryMiB');
  });
});
