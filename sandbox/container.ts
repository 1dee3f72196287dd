// A container as the shim sees it: its init process, its exec processes, and
// whether it is paused. The container's status is its init's, or paused.
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AgentClient } from './agent-client';
import type { ContainerHooks } from './oci-hooks';
import { StdioPaths } from './process-io';
import { ProcessStatus, TaskProcess } from './task-process';

export type ContainerStatus = ProcessStatus | 'paused';

export interface ContainerParams {
  id: string;
  bundle: string;
  stdio: StdioPaths;
  terminal: boolean;
  /** Host paths this container mounted, unmounted on delete (deepest first). */
  mounts: string[];
  /** The OCI hooks its spec named at Create, run on the host (Start: poststart; Delete: poststop). */
  hooks?: ContainerHooks;
}

export class Container {
  readonly init: TaskProcess;
  private readonly execs = new Map<string, TaskProcess>();
  paused = false;

  constructor(readonly params: ContainerParams, private readonly agent: AgentClient, private readonly logger: Logger) {
    this.init = new TaskProcess(params.id, '', params.stdio, params.terminal, agent, logger);
  }

  get id(): string {
    return this.params.id;
  }

  get status(): ContainerStatus {
    return this.paused && this.init.status === 'running' ? 'paused' : this.init.status;
  }

  /** The init for '' or the named exec. */
  process(execId: string): TaskProcess {
    if (!execId) return this.init;
    const proc = this.execs.get(execId);
    if (!proc) throw new NotFoundError(`exec ${execId} not found in container ${this.id}`);
    return proc;
  }

  runningExecs(): TaskProcess[] {
    return [...this.execs.values()].filter((p) => p.status === 'running');
  }

  addExec(execId: string, stdio: StdioPaths, terminal: boolean): TaskProcess {
    if (this.status !== 'running') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; exec needs a running container`);
    if (this.execs.has(execId)) throw new AlreadyExistsError(`exec ${execId} already exists in container ${this.id}`);
    const proc = new TaskProcess(this.id, execId, stdio, terminal, this.agent, this.logger.child({ exec: execId }));
    proc.pid = this.init.pid;
    this.execs.set(execId, proc);
    return proc;
  }

  removeExec(execId: string): TaskProcess {
    const proc = this.process(execId);
    if (proc.status === 'running') throw new FailedPreconditionError(`exec ${execId} of container ${this.id} is running; kill it before deleting`);
    this.execs.delete(execId);
    return proc;
  }

  /** Marks every process that still runs as ended (the VM or the agent is gone). */
  markAllExited(status: number): TaskProcess[] {
    const ended = [...this.runningExecs(), ...(this.init.status === 'running' ? [this.init] : [])];
    for (const proc of ended) proc.markExited(status);
    return ended;
  }
}
