// containerd.task.v2.Task: translates ttrpc requests into Pod calls and publishes
// the matching events. No lifecycle logic lives here.
import { NotImplementedError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { timestamp } from '../lib/protos';
import { Container, ExitInfo } from '../sandbox/container';
import { Pod } from '../sandbox/pod';
import { EventPublisher } from './events';

export const SHIM_VERSION = '0.1.0';

/** containerd.v1.types.Status */
const TaskStatus = { created: 1, running: 2, stopped: 3 } as const;

type Req = Record<string, any>;
type Handler = (req: Req) => Promise<object>;

export interface TaskServiceDeps {
  pod: Pod;
  events: EventPublisher;
  logger: Logger;
  /** Called by Shutdown once no container remains: stop serving and exit. */
  shutdown: () => void;
}

export class TaskService {
  constructor(private readonly deps: TaskServiceDeps) {}

  handlers(): Record<string, Handler> {
    const { pod, events } = this.deps;
    const execNotSupported = (req: Req): void => {
      if (req.exec_id) throw new NotImplementedError(`exec processes are not supported yet (exec ${req.exec_id} of ${req.id})`);
    };
    const unimplemented = (method: string, why = 'not implemented yet'): Handler => async (req) => {
      throw new NotImplementedError(`${method} of ${req.id ?? 'task'}: ${why}`);
    };
    return {
      Create: async (req) => {
        const container = await pod.create({
          id: req.id,
          bundle: req.bundle,
          rootfs: (req.rootfs ?? []).map((m: Req) => ({ type: m.type, source: m.source, target: m.target, options: m.options ?? [] })),
          terminal: req.terminal,
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
        });
        const pid = pod.hypervisorPid();
        container.pid = pid;
        events.publish('/tasks/create', 'containerd.events.TaskCreate', {
          container_id: req.id,
          bundle: req.bundle,
          rootfs: req.rootfs ?? [],
          io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
          pid,
        });
        return { pid };
      },
      Start: async (req) => {
        execNotSupported(req);
        await pod.start(req.id);
        // The task's pid, as containerd sees it, is the VM's: guest pids mean nothing on the host.
        const pid = pod.container(req.id).pid;
        events.publish('/tasks/start', 'containerd.events.TaskStart', { container_id: req.id, pid });
        return { pid };
      },
      Wait: async (req) => {
        execNotSupported(req);
        const exit = await pod.container(req.id).wait();
        return { exit_status: exit.status, exited_at: timestamp(exit.exitedAt) };
      },
      State: async (req) => {
        execNotSupported(req);
        const c = pod.container(req.id);
        return {
          id: c.id,
          bundle: c.params.bundle,
          pid: c.pid,
          status: TaskStatus[c.status],
          stdin: c.params.stdio.stdin,
          stdout: c.params.stdio.stdout,
          stderr: c.params.stdio.stderr,
          terminal: c.params.terminal,
          exit_status: c.exit?.status ?? 0,
          exited_at: c.exit ? timestamp(c.exit.exitedAt) : undefined,
        };
      },
      Kill: async (req) => {
        execNotSupported(req);
        const exit = await pod.kill(req.id, req.signal, req.all);
        if (exit) publishExit(events, pod.container(req.id), exit);
        return {};
      },
      Delete: async (req) => {
        execNotSupported(req);
        const container = await pod.delete(req.id);
        const exit = container.exit ?? { status: 0, exitedAt: new Date() };
        events.publish('/tasks/delete', 'containerd.events.TaskDelete', {
          container_id: req.id,
          pid: container.pid,
          exit_status: exit.status,
          exited_at: timestamp(exit.exitedAt),
        });
        return { pid: container.pid, exit_status: exit.status, exited_at: timestamp(exit.exitedAt) };
      },
      Pids: async (req) => ({ processes: (await pod.pids(req.id)).map((pid) => ({ pid })) }),
      Connect: async () => ({ shim_pid: process.pid, task_pid: pod.hypervisorPid(), version: SHIM_VERSION }),
      Shutdown: async () => {
        if (pod.isEmpty) this.deps.shutdown();
        return {};
      },
      Pause: unimplemented('Pause'),
      Resume: unimplemented('Resume'),
      Checkpoint: unimplemented('Checkpoint', 'checkpointing a VM-isolated container is not supported'),
      Exec: unimplemented('Exec'),
      ResizePty: unimplemented('ResizePty'),
      CloseIO: unimplemented('CloseIO'),
      Update: unimplemented('Update'),
      Stats: unimplemented('Stats'),
    };
  }
}

/** Publishes /tasks/exit for a container's init (also the pod's exit hook). */
export function publishExit(events: EventPublisher, container: Container, exit: ExitInfo): void {
  events.publish('/tasks/exit', 'containerd.events.TaskExit', {
    container_id: container.id,
    id: container.id,
    pid: container.pid,
    exit_status: exit.status,
    exited_at: timestamp(exit.exitedAt),
  });
}
