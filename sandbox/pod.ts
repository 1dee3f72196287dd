// The containers a shim daemon serves, all in one sandbox (VM). The first Create
// boots the VM (for a CRI pod that is the pause container); later ones join it.
import { RuntimeConfig } from '../config/runtime-config';
import { FailedPreconditionError, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Container, ExitInfo } from './container';
import { MountSpec } from './rootfs';
import { Sandbox } from './sandbox';
import { readBundleSpec } from './spec';

export const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

export interface CreateParams {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
}

export interface PodEvents {
  onExit(container: Container, exit: ExitInfo): void;
}

export class Pod {
  private sandbox: Sandbox | undefined;
  private starting: Promise<Sandbox> | undefined;

  constructor(
    private readonly config: RuntimeConfig,
    private readonly newHypervisor: (logger: Logger) => Hypervisor,
    private readonly events: PodEvents,
    private readonly logger: Logger,
  ) {}

  async create(params: CreateParams): Promise<Container> {
    if (params.terminal) throw new FailedPreconditionError(`container ${params.id}: terminal (-t) is not supported yet`);
    const spec = readBundleSpec(params.bundle);
    const sandboxId = spec.annotations?.[CRI_SANDBOX_ID] || params.id;
    const sandbox = await this.sandboxFor(sandboxId, spec.hostname || sandboxId.slice(0, 12));
    return sandbox.createContainer(
      { id: params.id, bundle: params.bundle, terminal: params.terminal, stdio: { stdin: params.stdin, stdout: params.stdout, stderr: params.stderr } },
      spec,
      params.rootfs,
    );
  }

  container(id: string): Container {
    if (!this.sandbox) throw new NotFoundError(`container ${id} not found: no sandbox has been created in this shim`);
    return this.sandbox.container(id);
  }

  start(id: string): Promise<number> {
    this.container(id);
    return this.sandbox!.startContainer(id);
  }

  async kill(id: string, signal: number, all: boolean): Promise<ExitInfo | undefined> {
    const container = this.container(id);
    if (container.status === 'stopped') {
      if (all) return undefined; // killing what is already gone is fine (runc shim does the same)
      throw new NotFoundError(`container ${id}: process already finished`);
    }
    if (container.status === 'created') {
      // Never started: nothing runs in the guest; it simply ends with the signal's status.
      await this.sandbox!.requireAgent().signalProcess(id, '', signal, all);
      return container.markExited(128 + signal);
    }
    await this.sandbox!.requireAgent().signalProcess(id, '', signal, all);
    return undefined;
  }

  async pids(id: string): Promise<number[]> {
    const container = this.container(id);
    if (container.status !== 'running') return [];
    return this.sandbox!.requireAgent().listProcesses(id);
  }

  async delete(id: string): Promise<Container> {
    this.container(id);
    return this.sandbox!.deleteContainer(id);
  }

  get isEmpty(): boolean {
    return !this.sandbox || this.sandbox.containerCount === 0;
  }

  hypervisorPid(): number {
    return this.sandbox?.hypervisorPid() ?? 0;
  }

  async destroy(): Promise<void> {
    const sandbox = this.sandbox;
    this.sandbox = undefined;
    await sandbox?.destroy();
  }

  private async sandboxFor(sandboxId: string, hostname: string): Promise<Sandbox> {
    if (this.sandbox) {
      if (this.sandbox.id !== sandboxId) throw new FailedPreconditionError(`this shim serves sandbox ${this.sandbox.id}, not ${sandboxId}`);
      return this.sandbox;
    }
    if (!this.starting) {
      const logger = this.logger.child({ sandbox: sandboxId });
      this.starting = Sandbox.start({
        id: sandboxId,
        hostname,
        config: this.config,
        hypervisor: this.newHypervisor(logger),
        events: { onContainerExit: (c, exit) => this.events.onExit(c, exit) },
        logger,
      });
      this.starting.then(
        (sandbox) => (this.sandbox = sandbox),
        () => (this.starting = undefined),
      );
    }
    return this.starting;
  }
}
