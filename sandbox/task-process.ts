// One process of a task as containerd sees it: the container's init (execId '') or
// an exec. created → running → stopped; its exit is known only after its output
// was copied to the end, so Wait never returns before the last byte.
import { FailedPreconditionError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AgentClient } from './agent-client';
import { ProcessIo, StdioPaths } from './process-io';

export type ProcessStatus = 'created' | 'running' | 'stopped';

export interface ExitInfo {
  status: number;
  exitedAt: Date;
}

/** Status reported when the guest can no longer tell us how a process ended. */
export const LOST_EXIT_STATUS = 255;

export class TaskProcess {
  status: ProcessStatus = 'created';
  /** The pid containerd is told (the VM's: guest pids mean nothing on the host). */
  pid = 0;
  /** The pid inside the guest. */
  guestPid = 0;
  exit: ExitInfo | undefined;
  private io: ProcessIo | undefined;
  /** The Start in flight: status changes only when it settles, so a racing Kill waits for it. */
  private starting: Promise<number> | undefined;
  private readonly exitWaiters: Array<(exit: ExitInfo) => void> = [];

  constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly stdio: StdioPaths,
    readonly terminal: boolean,
    private readonly agent: AgentClient,
    private readonly logger: Logger,
  ) {}

  get name(): string {
    return this.execId ? `exec ${this.execId} of container ${this.containerId}` : `container ${this.containerId}`;
  }

  /**
   * Launches the process through `launch` (which returns its guest pid, and must send
   * its agent request before its first await); `onExit` runs once it exited and its
   * output is flushed. Output copying starts right after that request went out: on the
   * same connection, the agent takes the calls in the order sent, and a read of an
   * exec it has not been asked for fails (it cannot tell one not asked for yet from
   * one never asked for; an init's read waits for its Start in our agent, not in
   * older ones). A failed read ends the copy, and output nobody reads fills the
   * process's pipe: a container without stdio FIFOs, the pod's pause container among
   * them, had its reads sent first. Nothing written early is missed: the agent keeps
   * output until it is read.
   */
  async start(launch: () => Promise<number>, onExit: (exit: ExitInfo) => void): Promise<number> {
    if (this.status !== 'created' || this.starting) throw new FailedPreconditionError(`${this.name} is ${this.starting ? 'starting' : this.status}; only a created process can be started`);
    const launching = launch();
    const io = new ProcessIo(this.agent, this.containerId, this.execId, this.stdio, this.logger);
    this.io = io;
    const started = (async () => {
      try {
        this.guestPid = await launching;
      } catch (err) {
        io.close();
        throw err;
      }
      io.startStdin();
      this.status = 'running';
      void this.monitor(onExit);
      return this.guestPid;
    })();
    this.starting = started;
    try {
      return await started;
    } finally {
      this.starting = undefined;
    }
  }

  /** Resolves once no Start is in flight (whether it succeeded or not). */
  async startSettled(): Promise<void> {
    await this.starting?.catch(() => undefined);
  }

  /** True while a Start is launching the process in the guest. */
  get isStarting(): boolean {
    return this.starting !== undefined;
  }

  async closeStdin(): Promise<void> {
    if (this.status !== 'running' || !this.io) return;
    await this.io.closeStdin();
  }

  /** Records the end of the process; the first report wins. */
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
      status = await this.agent.waitProcess(this.containerId, this.execId);
      await this.io?.done;
    } catch (err) {
      // The agent is unreachable: nobody can tell how the process ended.
      this.logger.error({ err: (err as Error).message }, `lost ${this.name}`);
      status = LOST_EXIT_STATUS;
    }
    if (this.exit) return;
    const exit = this.markExited(status);
    this.logger.info({ status, exec: this.execId || undefined }, 'process exited');
    onExit(exit);
  }
}
