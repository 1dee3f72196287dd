// A container as the shim sees it: created → running → stopped, its init process's
// exit, and its stdio. Every transition is checked here with a precise message.
import { FailedPreconditionError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AgentClient } from './agent-client';
import { ProcessIo, StdioPaths } from './process-io';

export type ContainerStatus = 'created' | 'running' | 'stopped';

export interface ExitInfo {
  status: number;
  exitedAt: Date;
}

export interface ContainerParams {
  id: string;
  bundle: string;
  stdio: StdioPaths;
  terminal: boolean;
  /** Host paths this container mounted, unmounted on delete (deepest first). */
  mounts: string[];
}

export class Container {
  status: ContainerStatus = 'created';
  /** The pid containerd is told (the VM's: guest pids mean nothing on the host). */
  pid = 0;
  /** The init's pid inside the guest. */
  guestPid = 0;
  exit: ExitInfo | undefined;
  private io: ProcessIo | undefined;
  private readonly exitWaiters: Array<(exit: ExitInfo) => void> = [];

  constructor(readonly params: ContainerParams, private readonly agent: AgentClient, private readonly logger: Logger) {}

  get id(): string {
    return this.params.id;
  }

  /**
   * Starts the init process; `onExit` runs once it exited and its output is flushed.
   * Output copying starts before the process so nothing it writes early is missed.
   */
  async start(onExit: (exit: ExitInfo) => void): Promise<number> {
    if (this.status !== 'created') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; only a created container can be started`);
    this.io = new ProcessIo(this.agent, this.id, '', this.params.stdio, this.logger);
    this.guestPid = await this.agent.startContainer(this.id);
    this.io.startStdin();
    this.status = 'running';
    void this.monitor(onExit);
    return this.guestPid;
  }

  /** Records that the process is gone without the agent reporting it (VM or agent lost). */
  markExited(status: number): ExitInfo {
    if (this.exit) return this.exit;
    this.exit = { status, exitedAt: new Date() };
    this.status = 'stopped';
    this.io?.close();
    for (const resolve of this.exitWaiters.splice(0)) resolve(this.exit);
    return this.exit;
  }

  wait(): Promise<ExitInfo> {
    if (this.exit) return Promise.resolve(this.exit);
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  private async monitor(onExit: (exit: ExitInfo) => void): Promise<void> {
    let status: number;
    try {
      status = await this.agent.waitProcess(this.id, '');
      await this.io?.done;
    } catch (err) {
      // The agent connection broke: the process is unreachable; report it as killed.
      this.logger.error({ err: (err as Error).message }, 'lost the guest process');
      status = 255;
    }
    if (this.exit) return;
    const exit = this.markExited(status);
    this.logger.info({ status }, 'container exited');
    onExit(exit);
  }
}
