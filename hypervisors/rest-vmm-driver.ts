// What the Cloud Hypervisor and Firecracker drivers share: one VMM process controlled
// over a REST API on a Unix socket, the guest console in a file, and devices added
// before start() kept for the boot configuration. Each driver says how to bring the
// VM up and how to ask its VMM to quit.
import { FailedPreconditionError, HypervisorError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { Hypervisor, VmConfig, VmDevice, VmExit } from './hypervisor';
import { tailOfFile, VmmProcess, VmmProcessOptions } from './vmm-process';

export interface VmmSession<Api> {
  vmm: VmmProcess;
  api: Api;
  consoleLog: string;
}

export abstract class RestVmmDriver<Api> implements Hypervisor {
  abstract readonly name: string;
  /** Their only host↔guest channel: virtio-vsock behind a Unix socket. */
  readonly agentChannelKind = 'hybrid-vsock';
  readonly exited: Promise<VmExit>;
  private resolveExited!: (exit: VmExit) => void;
  /** Set by launch(); stays after the VMM exits, so stop() and errors can use it. */
  protected session: VmmSession<Api> | undefined;
  /** Devices added before start(): part of the boot configuration. */
  protected readonly coldDevices: VmDevice[] = [];

  constructor(protected readonly logger: Logger) {
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  abstract start(config: VmConfig): Promise<void>;
  abstract stop(graceMs: number): Promise<void>;

  pid(): number | undefined {
    return this.session?.vmm.pid;
  }

  consoleTail(maxBytes = 4096): string {
    return this.session ? tailOfFile(this.session.consoleLog, maxBytes) : '';
  }

  protected assertNotStarted(config: VmConfig): void {
    if (this.session) throw new HypervisorError(`VM ${config.id} already started`);
  }

  /** Spawns the VMM, then `bringUp` must make the VM run; if it throws, the VMM is killed. */
  protected async launch(options: VmmProcessOptions, api: Api, consoleLog: string, bringUp: (vmm: VmmProcess) => Promise<void>): Promise<void> {
    const vmm = VmmProcess.spawn(options);
    this.session = { vmm, api, consoleLog };
    void vmm.exited.then(this.resolveExited);
    try {
      await bringUp(vmm);
    } catch (err) {
      vmm.signal('SIGKILL');
      await vmm.exited;
      throw err;
    }
  }

  protected requireRunning(): VmmSession<Api> {
    if (!this.session || this.session.vmm.hasExited) throw new FailedPreconditionError(`${this.name}: the VM is not running`);
    return this.session;
  }
}
