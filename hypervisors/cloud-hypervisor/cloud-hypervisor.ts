// The Cloud Hypervisor driver: starts `cloud-hypervisor --api-socket`, describes and
// boots the VM over its REST API (vm.create, vm.boot), and drives it there: pause,
// resume, device hot-plug, resize, shutdown. The guest's serial console goes to a
// file in workDir; the agent is reached over hybrid vsock (hypervisors/hybrid-vsock.ts).
import { Logger } from '../../lib/logger';
import { VmConfig, VmDevice, VmResize, VmSize } from '../hypervisor';
import { RestVmmDriver } from '../rest-vmm-driver';
import { requireGuestImage } from '../vm-requirements';
import { prepareWorkDir, VmmProcess } from '../vmm-process';
import { ClhVmConfig, ClhVmState, CloudHypervisorApi } from './api';
import { recordServingChildren, startVirtiofsDaemons, stopVirtiofsDaemons, VirtiofsDaemon } from '../virtiofsd';
import { buildClhVmConfig, clhArgs, clhDisk, clhNet, clhPaths, clhResize, CloudHypervisorOptions, VMM_NAME } from './vm-config';

const API_READY_TIMEOUT_MS = 10_000;

export class CloudHypervisor extends RestVmmDriver<CloudHypervisorApi> {
  readonly name = VMM_NAME;
  /** It has no virtio-9p: shared directories are always served by virtiofsd. */
  readonly sharedFsKind = 'virtio-fs';
  /**
   * The vm.create body, whose limits resize() must respect. Assigned in start() before
   * the session exists, so it is set whenever requireRunning() passes.
   */
  private booted!: ClhVmConfig;
  /** What the last vm.resize asked for (the boot size before any). */
  private size!: VmSize;
  private virtiofsDaemons: VirtiofsDaemon[] = [];

  constructor(logger: Logger, private readonly options: CloudHypervisorOptions = {}) {
    super(logger);
  }

  async start(config: VmConfig): Promise<void> {
    this.assertNotStarted(config);
    const vmConfig = buildClhVmConfig(config, this.options, this.coldDevices);
    requireGuestImage(config);
    const paths = clhPaths(config.workDir);
    prepareWorkDir(config.workDir, [paths.apiSocket, vmConfig.vsock.socket]);
    if (this.options.virtiofsdPath) {
      const daemon = { binaryPath: this.options.virtiofsdPath, cache: this.options.virtioFsCache ?? 'never', extraArgs: this.options.virtioFsExtraArgs };
      this.virtiofsDaemons = await startVirtiofsDaemons(daemon, config.workDir, config.sharedDirectories, this.logger);
    }
    const api = new CloudHypervisorApi(paths.apiSocket);
    this.booted = vmConfig;
    this.size = { vcpus: config.vcpus, memoryMiB: config.memoryMiB };
    const vmmOptions = { name: VMM_NAME, binaryPath: config.binaryPath, args: clhArgs(paths), logger: this.logger, netnsPath: config.network?.netnsPath };
    try {
      await this.launch(vmmOptions, api, paths.consoleLog, async (vmm) => {
        const { version } = await vmm.waitForApi(() => api.ping(), API_READY_TIMEOUT_MS);
        this.logger.info({ version }, 'cloud-hypervisor API ready');
        await vmm.guard(api.createVm(vmConfig), 'vm.create');
        await vmm.guard(api.bootVm(), 'vm.boot');
      });
      recordServingChildren(this.virtiofsDaemons);
    } catch (err) {
      await stopVirtiofsDaemons(this.virtiofsDaemons, 0);
      throw err;
    }
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.session) return;
    const { vmm, api } = this.session;
    await vmm.stop(graceMs, async () => {
      await api.shutdownVm().catch((err: Error) => this.logger.warn({ err: err.message }, 'vm.shutdown failed'));
      await api.shutdownVmm();
    });
    await stopVirtiofsDaemons(this.virtiofsDaemons);
  }

  async pause(): Promise<void> {
    await this.requireRunning().api.pauseVm();
  }

  async resume(): Promise<void> {
    await this.requireRunning().api.resumeVm();
  }

  /** Before start(): part of the VM's boot configuration; after: hot-plugged. */
  async addDevice(device: VmDevice): Promise<void> {
    if (!this.session) {
      this.coldDevices.push(device);
      return;
    }
    const { api } = this.requireRunning();
    const pci = device.kind === 'block' ? await api.addDisk(clhDisk(device)) : await api.addNet(clhNet(device));
    this.logger.info({ device: device.id, pci }, 'device hot-plugged');
  }

  /** vm.resize answers with no body, so the size is what was asked. */
  async resize(target: VmResize): Promise<VmSize> {
    const { api } = this.requireRunning();
    await api.resize(clhResize(this.booted, target));
    this.size = { vcpus: target.vcpus ?? this.size.vcpus, memoryMiB: target.memoryMiB ?? this.size.memoryMiB };
    return this.size;
  }

  /** The VM's state as Cloud Hypervisor reports it (vm.info). */
  async vmState(): Promise<ClhVmState> {
    return (await this.requireRunning().api.info()).state;
  }
}
