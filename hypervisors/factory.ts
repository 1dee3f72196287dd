// The driver for the configured VMM: the one place that names every driver, so the
// daemon and the sandbox only ever see the Hypervisor interface.
import { Logger } from '../lib/logger';
import { CloudHypervisor } from './cloud-hypervisor';
import { Firecracker } from './firecracker';
import { Hypervisor, HypervisorKind } from './hypervisor';
import { QemuHypervisor } from './qemu';
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
  /** QEMU: whether the guest CPU keeps its virtual PMU (false: -cpu …,pmu=off); default true. */
  pmu?: boolean;
  /** QEMU: "hybrid-vsock" reaches the agent through vsockBackend (vhost-device-vsock); anything else over virtio-serial. */
  agentChannel?: string;
  vsockBackend?: string;
}

export function createHypervisor(choice: DriverChoice, logger: Logger): Hypervisor {
  switch (choice.kind) {
    case 'qemu':
      return new QemuHypervisor(logger.child({ component: 'qemu' }), {
        pmu: choice.pmu,
        virtioFs: choice.sharedFs === 'virtio-fs' ? { binaryPath: choice.virtioFsDaemon, cache: choice.virtioFsCache ?? 'never' } : undefined,
        vsockBackend: choice.agentChannel === 'hybrid-vsock' ? choice.vsockBackend || DEFAULT_VSOCK_BACKEND : undefined,
      });
    case 'clh':
      return new CloudHypervisor(logger.child({ component: 'cloud-hypervisor' }), { virtiofsdPath: choice.virtioFsDaemon || undefined, virtioFsCache: choice.virtioFsCache });
    case 'firecracker':
      return new Firecracker(logger.child({ component: 'firecracker' }));
  }
}
