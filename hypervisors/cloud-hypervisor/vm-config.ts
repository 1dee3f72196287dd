// Builds Cloud Hypervisor's command line and request bodies from our VmConfig. Pure,
// so the mapping and the refusals are unit-tested without a VMM.
import * as path from 'path';
import { InvalidArgumentError } from '../../lib/errors';
import { VmConfig, VmDevice, VmResize, VmSize } from '../hypervisor';
import { hotplugLimits, hybridVsock, podNetworkDevices, refuseBeyondLimits, refuseDebugConsole, requireKvm, vsockChannelKernelParams } from '../vm-requirements';
import { ClhDiskConfig, ClhNetConfig, ClhResize, ClhVmConfig } from './api';
import { rootfsKernelParams } from '../rootfs-params';
import { virtiofsSocket, VirtioFsCache } from '../virtiofsd';

export const VMM_NAME = 'cloud-hypervisor';

export interface CloudHypervisorOptions {
  /**
   * virtiofsd binary. Cloud Hypervisor shares host directories only over virtio-fs,
   * served by one virtiofsd per directory; without it sharedDirectories are refused.
   */
  virtiofsdPath?: string;
  /** virtiofsd's cache mode (Kata's virtio_fs_cache); default never, as Cloud Hypervisor's docs/fs.md recommends. */
  virtioFsCache?: VirtioFsCache;
  /** Kata's virtio_fs_extra_args (hypervisors/virtiofsd.ts allows only a few). */
  virtioFsExtraArgs?: readonly string[];
}

export interface ClhPaths {
  apiSocket: string;
  consoleLog: string;
}

export function clhPaths(workDir: string): ClhPaths {
  return { apiSocket: path.join(workDir, 'clh-api.sock'), consoleLog: path.join(workDir, 'console.log') };
}

/** The VM itself is described over the API (vm.create), not on the command line. */
export function clhArgs(paths: ClhPaths): string[] {
  return ['--api-socket', `path=${paths.apiSocket}`];
}

const MiB = 1024 * 1024;
/** Upstream FsConfig defaults (one request queue of 1024 descriptors). */
const FS_QUEUES = { num_queues: 1, queue_size: 1024 };

/** The vm.create body; `coldDevices` were added before start. Throws for options CLH cannot honour. */
export function buildClhVmConfig(config: VmConfig, options: CloudHypervisorOptions, coldDevices: readonly VmDevice[]): ClhVmConfig {
  requireKvm(config, VMM_NAME);
  const vsock = hybridVsock(config, VMM_NAME);
  refuseDebugConsole(config, VMM_NAME);
  const shares = config.sharedDirectories;
  if (shares.length > 0 && !options.virtiofsdPath) {
    throw new InvalidArgumentError(
      `${VMM_NAME} shares directories over virtio-fs only, which needs virtiofsd: set the driver's virtiofsdPath option, or pass no sharedDirectories (got ${shares.map((d) => d.tag).join(', ')})`,
    );
  }
  const limits = hotplugLimits(config, VMM_NAME);
  const hotplugMiB = limits.memoryMiB - config.memoryMiB;
  const devices = [...podNetworkDevices(config), ...coldDevices];
  const disks = devices.flatMap((d) => (d.kind === 'block' ? [clhDisk(d)] : []));
  const nets = devices.flatMap((d) => (d.kind === 'network' ? [clhNet(d)] : []));
  return {
    payload: {
      kernel: config.kernelPath,
      ...(config.rootfs.kind === 'initrd' ? { initramfs: config.rootfs.path } : {}),
      cmdline: [...rootfsKernelParams(config.rootfs), ...config.kernelParams, ...vsockChannelKernelParams(config)].join(' '),
    },
    cpus: { boot_vcpus: config.vcpus, max_vcpus: limits.vcpus },
    memory: {
      size: config.memoryMiB * MiB,
      ...(hotplugMiB > 0 ? { hotplug_size: hotplugMiB * MiB } : {}),
      // vhost-user backends (virtiofsd) map guest memory, so it must be shared.
      ...(shares.length > 0 ? { shared: true } : {}),
      ...(config.memoryMerge === undefined ? {} : { mergeable: config.memoryMerge }),
    },
    // ttyS0 (the kernel's console=ttyS0) to a file for consoleTail; no virtio-console.
    serial: { mode: 'File', file: clhPaths(config.workDir).consoleLog },
    console: { mode: 'Off' },
    rng: { src: '/dev/urandom' },
    vsock: { cid: vsock.guestCid, socket: vsock.socketPath },
    ...(disks.length > 0 ? { disks } : {}),
    ...(nets.length > 0 ? { net: nets } : {}),
    // virtio-pmem: the guest sees /dev/pmem0 as with QEMU's NVDIMM (same kernel parameters).
    ...(config.rootfs.kind === 'image' ? { pmem: [{ file: config.rootfs.path, discard_writes: true }] } : {}),
    ...(shares.length > 0 ? { fs: shares.map((dir, index) => ({ tag: dir.tag, socket: virtiofsSocket(config.workDir, index), ...FS_QUEUES })) } : {}),
  };
}

export function clhDisk(device: Extract<VmDevice, { kind: 'block' }>): ClhDiskConfig {
  return { path: device.hostPath, readonly: device.readOnly, id: device.id };
}

export function clhNet(device: Extract<VmDevice, { kind: 'network' }>): ClhNetConfig {
  return { tap: device.tapName, ...(device.macAddress ? { mac: device.macAddress } : {}), id: device.id };
}

/** The limits the vm.create body reserved room for (max_vcpus, size + hotplug_size). */
function clhLimits(booted: ClhVmConfig): VmSize {
  return { vcpus: booted.cpus.max_vcpus, memoryMiB: (booted.memory.size + (booted.memory.hotplug_size ?? 0)) / MiB };
}

/** The vm.resize body, refused beyond the limits the VM was booted with (CLH cannot raise them later). */
export function clhResize(booted: ClhVmConfig, target: VmResize): ClhResize {
  refuseBeyondLimits(VMM_NAME, target, clhLimits(booted));
  const body: ClhResize = {};
  if (target.vcpus !== undefined) body.desired_vcpus = target.vcpus;
  if (target.memoryMiB !== undefined) body.desired_ram = target.memoryMiB * MiB;
  if (Object.keys(body).length === 0) throw new InvalidArgumentError(`${VMM_NAME}: resize needs vcpus or memoryMiB`);
  return body;
}
