// The driver for the configured VMM: the one place that names every driver, so the
// daemon and the sandbox only ever see the Hypervisor interface.
import { Logger } from '../lib/logger';
import { CloudHypervisor } from './cloud-hypervisor';
import { Firecracker } from './firecracker';
import { Hypervisor, HypervisorKind } from './hypervisor';
import { QemuHypervisor } from './qemu';
import { AgentChannelHost, chooseAgentChannel, HOST_AGENT_CHANNEL } from './qemu/agent-channel-choice';
import { VirtioFsCache } from './virtiofsd';
import { DEFAULT_VSOCK_BACKEND } from './vsock-backend';

/** What picks and sets up a driver (the configuration's hypervisor section has these). */
export interface DriverChoice {
  kind: HypervisorKind;
  /** QEMU: "virtio-fs" shares directories through virtiofsd, anything else over virtio-9p (Cloud Hypervisor: always virtio-fs). */
  sharedFs?: string;
  /** The virtiofsd binary for shared directories over virtio-fs. */
  virtioFsDaemon: string;
  /** virtiofsd's cache mode; default never. */
  virtioFsCache?: VirtioFsCache;
  /** Kata's virtio_fs_extra_args (validated by the configuration; virtiofsdArgs refuses them again). */
  virtioFsExtraArgs?: readonly string[];
  /** QEMU: whether the guest CPU keeps its virtual PMU (false: -cpu …,pmu=off); default true. */
  pmu?: boolean;
  /** QEMU under TCG: the translation buffer's cap in MiB; 0 or unset: QEMU's own size. */
  tcgTbSizeMiB?: number;
  /** QEMU: "hybrid-vsock" reaches the agent through vsockBackend (vhost-device-vsock), "auto" chooses (agent-channel-choice.ts); anything else over virtio-serial. */
  agentChannel?: string;
  vsockBackend?: string;
  /** The runtime's ksm mode: "on" keeps "auto" on virtio-serial (required, so no caller forgets it). */
  ksm: string;
}

export function createHypervisor(choice: DriverChoice, logger: Logger, host: AgentChannelHost = HOST_AGENT_CHANNEL): Hypervisor {
  switch (choice.kind) {
    case 'qemu': {
      const vsockBackend = choice.vsockBackend || DEFAULT_VSOCK_BACKEND;
      const agentChannel = chooseAgentChannel(choice.agentChannel ?? 'virtio-serial', { vsockBackend, ksm: choice.ksm }, host);
      if (choice.agentChannel === 'auto') logger.info({ agentChannel: agentChannel.channel, reason: agentChannel.reason }, 'agent channel chosen');
      return new QemuHypervisor(logger.child({ component: 'qemu' }), {
        pmu: choice.pmu,
        tcgTbSizeMiB: choice.tcgTbSizeMiB || undefined,
        virtioFs: choice.sharedFs === 'virtio-fs' ? { binaryPath: choice.virtioFsDaemon, cache: choice.virtioFsCache ?? 'never', extraArgs: choice.virtioFsExtraArgs } : undefined,
        vsockBackend: agentChannel.channel === 'hybrid-vsock' ? vsockBackend : undefined,
      });
    }
    case 'clh':
      return new CloudHypervisor(logger.child({ component: 'cloud-hypervisor' }), { virtiofsdPath: choice.virtioFsDaemon || undefined, virtioFsCache: choice.virtioFsCache, virtioFsExtraArgs: choice.virtioFsExtraArgs });
    case 'firecracker':
      return new Firecracker(logger.child({ component: 'firecracker' }));
  }
}
