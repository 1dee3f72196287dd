// agent_channel = "auto": which channel a QEMU sandbox gets on this host, and why.
//
// The ladder the Kata world expects is kernel vhost-vsock, then a user-space vsock
// backend, then virtio-serial. kata-ts cannot take the first rung: the shim is Node,
// which has no AF_VSOCK socket to dial a guest CID with. So "auto" means hybrid vsock
// where vhost-device-vsock is installed, virtio-serial otherwise, except that
// ksm = "on" keeps virtio-serial: the backend needs the guest RAM in shared memory,
// which KSM does not merge.
import { resolveExecutable } from '../vmm-process';

export type ResolvedQemuAgentChannel = 'virtio-serial' | 'hybrid-vsock';

export interface AgentChannelChoice {
  channel: ResolvedQemuAgentChannel;
  /** One clause a person can read in a log line or in `check`. */
  reason: string;
}

export interface AgentChannelHost {
  /** The vhost-device-vsock binary, if it is an executable file here. */
  backendInstalled(binaryPath: string): boolean;
}

export const HOST_AGENT_CHANNEL: AgentChannelHost = {
  backendInstalled: (binaryPath) => resolveExecutable(binaryPath) !== undefined,
};

export function chooseAgentChannel(
  configured: string,
  opts: { vsockBackend: string; ksm: string },
  host: AgentChannelHost = HOST_AGENT_CHANNEL,
): AgentChannelChoice {
  if (configured === 'virtio-serial' || configured === 'hybrid-vsock') return { channel: configured, reason: `agent_channel = "${configured}"` };
  if (opts.ksm === 'on') return { channel: 'virtio-serial', reason: 'agent_channel = "auto" with ksm = "on": KSM needs the guest RAM private, which a vsock backend would share' };
  if (host.backendInstalled(opts.vsockBackend)) return { channel: 'hybrid-vsock', reason: `agent_channel = "auto": ${opts.vsockBackend} is installed` };
  return { channel: 'virtio-serial', reason: `agent_channel = "auto": no vsock backend at ${opts.vsockBackend} (scripts/fetch-vhost-device-vsock.sh fetches one)` };
}
