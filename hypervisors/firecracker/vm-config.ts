// Builds Firecracker's command line and pre-boot requests from our VmConfig. Pure, so
// the mapping and the refusals are unit-tested without a VMM.
import * as path from 'path';
import { InvalidArgumentError, NotImplementedError } from '../../lib/errors';
import { VmConfig, VmDevice } from '../hypervisor';
import { hybridVsock, podNetworkDevices, refuseDebugConsole, requireKvm, vsockChannelKernelParams } from '../vm-requirements';
import { FcBootSource, FcDrive, FcMachineConfig, FcNetworkInterface, FcVsock } from './api';

export const VMM_NAME = 'firecracker';

export interface FirecrackerPaths {
  apiSocket: string;
  /** Firecracker's stdout: the guest's serial console (and Firecracker's own log lines). */
  consoleLog: string;
}

export function firecrackerPaths(workDir: string): FirecrackerPaths {
  return { apiSocket: path.join(workDir, 'firecracker-api.sock'), consoleLog: path.join(workDir, 'console.log') };
}

/** The VM itself is described over the API, not on the command line. */
export function firecrackerArgs(paths: FirecrackerPaths): string[] {
  return ['--api-sock', paths.apiSocket];
}

/** Everything sent before InstanceStart, in the order it is sent. */
export interface FirecrackerBootPlan {
  bootSource: FcBootSource;
  machineConfig: FcMachineConfig;
  drives: FcDrive[];
  networkInterfaces: FcNetworkInterface[];
  vsock: FcVsock;
}

/** Throws for options Firecracker cannot honour; `coldDevices` were added before start. */
export function buildFirecrackerPlan(config: VmConfig, coldDevices: readonly VmDevice[]): FirecrackerBootPlan {
  requireKvm(config, VMM_NAME);
  const vsock = hybridVsock(config, VMM_NAME);
  refuseDebugConsole(config, VMM_NAME);
  if (config.sharedDirectories.length > 0) {
    throw new NotImplementedError(
      `${VMM_NAME} has no shared filesystem (neither virtio-fs nor 9p), so sharedDirectories (${config.sharedDirectories.map((d) => d.tag).join(', ')}) cannot work; ` +
        'containers under Firecracker need their rootfs as block devices, which kata-ts does not support yet',
    );
  }
  if (config.memoryMerge) {
    // Its API has no such switch, and its seccomp filter allows no madvise(MADV_MERGEABLE).
    throw new InvalidArgumentError(`${VMM_NAME} never marks guest memory mergeable, so KSM cannot merge it; do not ask for memoryMerge`);
  }
  if (config.rootfs.kind !== 'initrd') {
    throw new InvalidArgumentError(`${VMM_NAME} has no NVDIMM or virtio-pmem device for the DAX rootfs image ${config.rootfs.path}; configure an initrd (hypervisor.firecracker.initrd) instead`);
  }
  const devices = [...podNetworkDevices(config), ...coldDevices];
  return {
    bootSource: { kernel_image_path: config.kernelPath, initrd_path: config.rootfs.path, boot_args: [...config.kernelParams, ...vsockChannelKernelParams(config)].join(' ') },
    machineConfig: { vcpu_count: config.vcpus, mem_size_mib: config.memoryMiB },
    drives: devices.flatMap((d) => (d.kind === 'block' ? [{ drive_id: d.id, path_on_host: d.hostPath, is_root_device: false, is_read_only: d.readOnly }] : [])),
    networkInterfaces: devices.flatMap((d) => (d.kind === 'network' ? [{ iface_id: d.id, host_dev_name: d.tapName, ...(d.macAddress ? { guest_mac: d.macAddress } : {}) }] : [])),
    vsock: { guest_cid: vsock.guestCid, uds_path: vsock.socketPath },
  };
}
