// What the drivers demand of a VmConfig, checked before anything is spawned so the
// error names the option to change, and what they derive from it the same way.
import * as fs from 'fs';
import { HypervisorError, InvalidArgumentError, NotImplementedError } from '../lib/errors';
import { VmConfig, VmDevice, VmResize, VmSize } from './hypervisor';

/** Both VMMs use KVM directly; only QEMU can emulate a CPU. */
export function requireKvm(config: VmConfig, vmm: string): void {
  if (config.accelerator !== 'kvm') {
    throw new InvalidArgumentError(`${vmm} runs guests under KVM only: accelerator "${config.accelerator}" is QEMU's; use accelerator "kvm" or the QEMU driver`);
  }
}

/** A hybrid vsock needs a CID, but no other VM sees its socket: any valid one will do. */
const HYBRID_VSOCK_GUEST_CID = 3;

/** Kernel parameters that tell the guest its agent (and debug console) are reached over vsock. */
export const AGENT_VSOCK_PARAM = 'katats.agent_vsock=1';
export const DEBUG_CONSOLE_VSOCK_PARAM = 'katats.debug_console_vsock=1';

/**
 * What every driver whose agent channel is a vsock adds to the kernel command line:
 * the guest agent listens on virtio-serial unless told otherwise, and then starts its
 * vsock relay (ports 1024 and, with the debug console, 1026; guest/init, agent/main.ts).
 */
export function vsockChannelKernelParams(config: Pick<VmConfig, 'agentChannel' | 'debugConsole'>): string[] {
  if (config.agentChannel.kind !== 'hybrid-vsock') return [];
  return [AGENT_VSOCK_PARAM, ...(config.debugConsole ? [DEBUG_CONSOLE_VSOCK_PARAM] : [])];
}

/** Their only host↔guest channel is virtio-vsock behind a Unix socket (hybrid vsock). */
export function hybridVsock(config: VmConfig, vmm: string): { socketPath: string; guestCid: number } {
  const channel = config.agentChannel;
  if (channel.kind !== 'hybrid-vsock') {
    const why = channel.kind === 'virtio-serial' ? 'it has no virtio-serial ports' : 'its vsock device is not vhost-vsock';
    throw new InvalidArgumentError(`${vmm} cannot use agentChannel kind "${channel.kind}" (${why}); use agentChannel kind "hybrid-vsock"`);
  }
  return { socketPath: channel.socketPath, guestCid: HYBRID_VSOCK_GUEST_CID };
}

/**
 * Their guests have no virtio-serial ports, where the QEMU driver puts the debug
 * console; Kata serves it on vsock port 1026 there, which kata-ts does not yet.
 */
export function refuseDebugConsole(config: VmConfig, vmm: string): void {
  if (config.debugConsole) {
    throw new NotImplementedError(`${vmm} has no virtio-serial port for the debug console; kata-ts offers it with QEMU only: set [agent.kata] debug_console_enabled = false`);
  }
}

export function requireGuestImage(config: VmConfig): void {
  for (const file of [config.kernelPath, config.rootfs.path]) {
    if (!fs.existsSync(file)) throw new HypervisorError(`guest image file ${file} does not exist; build the guest with 'make guest'`);
  }
}

/**
 * The pod's NICs (VmConfig.network) as network devices of the boot configuration; the
 * VMM runs in the pod's netns, where it opens the taps by name. The ids use only
 * characters Firecracker accepts in an interface id.
 */
export function podNetworkDevices(config: VmConfig): VmDevice[] {
  return (config.network?.nics ?? []).map((nic, index) => ({ kind: 'network', id: `pod_net${index}`, tapName: nic.tapName, macAddress: nic.mac }));
}

/** The size resize() may grow the VM to (VmConfig.maxVcpus/maxMemoryMiB, default the boot size). */
export function hotplugLimits(config: VmConfig, vmm: string): VmSize {
  const limits = { vcpus: config.maxVcpus ?? config.vcpus, memoryMiB: config.maxMemoryMiB ?? config.memoryMiB };
  if (limits.vcpus < config.vcpus) throw new InvalidArgumentError(`${vmm}: maxVcpus ${limits.vcpus} is below the boot vcpus ${config.vcpus}`);
  if (limits.memoryMiB < config.memoryMiB) throw new InvalidArgumentError(`${vmm}: maxMemoryMiB ${limits.memoryMiB} is below the boot memoryMiB ${config.memoryMiB}`);
  return limits;
}

/** Refuses a resize() target beyond the room reserved at boot; no VMM can add room later. */
export function refuseBeyondLimits(vmm: string, target: VmResize, limits: VmSize): void {
  if (target.vcpus !== undefined && target.vcpus > limits.vcpus) {
    throw new InvalidArgumentError(`${vmm}: cannot resize to ${target.vcpus} vCPUs: the VM was booted with room for ${limits.vcpus} (maxVcpus)`);
  }
  if (target.memoryMiB !== undefined && target.memoryMiB > limits.memoryMiB) {
    throw new InvalidArgumentError(`${vmm}: cannot resize to ${target.memoryMiB} MiB: the VM was booted with room for ${limits.memoryMiB} MiB (maxMemoryMiB)`);
  }
}
