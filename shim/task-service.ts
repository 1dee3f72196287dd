// containerd.task.v2.Task: translates ttrpc requests into Pod calls and publishes
// the matching events. No lifecycle logic lives here.
import { SHIM_VERSION } from './version';
import { InvalidArgumentError, NotImplementedError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { timestamp } from '../lib/protos';
import { Decoded, google, TaskHandlers } from '../lib/proto-types';
import { Container } from '../sandbox/container';
import { Pod } from '../sandbox/pod';
import { ExitInfo, TaskProcess } from '../sandbox/task-process';
import { EventPublisher } from './events';
import { configPathFromOptions } from './runtime-options';


/** containerd.v1.types.Status */
const TaskStatus = { created: 1, running: 2, stopped: 3, paused: 4 } as const;

export interface TaskServiceDeps {
  pod: Pod;
  events: EventPublisher;
  logger: Logger;
  /**
   * Called by Shutdown once no container remains: tears the sandbox down before the
   * answer (containerd runs our `delete` as soon as the connection drops, as Kata's
   * shim also expects), then stops serving and exits.
   */
  shutdown: () => Promise<void>;
}

/** The JSON inside an Any that containerd fills with an OCI type (Process, LinuxResources). */
function anyJson(value: Decoded<google.protobuf.IAny> | null, what: string): Buffer {
  const bytes = value?.value;
  if (!bytes || bytes.length === 0) throw new InvalidArgumentError(`${what} is missing`);
  try {
    JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  return bytes;
}

export class TaskService {
  constructor(private readonly deps: TaskServiceDeps) {}

  handlers(): TaskHandlers {
    const { pod, events } = this.deps;
    return {
      Create: async (req) => {
        const container = await pod.create({
          id: req.id,
          bundle: req.bundle,
          rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })),
          terminal: req.terminal,
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          runtimeOptionsConfigPath: configPathFromOptions(req.options),
        });
        // The task's pid, as containerd sees it, is the VM's: guest pids mean nothing on the host.
        const pid = pod.hypervisorPid();
        container.init.pid = pid;
        events.publish('/tasks/create', {
          container_id: req.id,
          bundle: req.bundle,
          rootfs: req.rootfs,
          io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
          pid,
        });
        return { pid };
      },
      Start: async (req) => {
        const proc = await pod.start(req.id, req.exec_id);
        if (req.exec_id) events.publish('/tasks/exec-started', { container_id: req.id, exec_id: req.exec_id, pid: proc.pid });
        else events.publish('/tasks/start', { container_id: req.id, pid: proc.pid });
        return { pid: proc.pid };
      },
      Exec: async (req) => {
        pod.exec({
          containerId: req.id,
          execId: req.exec_id,
          terminal: req.terminal,
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          processJson: anyJson(req.spec, `exec ${req.exec_id}: process spec`),
        });
        events.publish('/tasks/exec-added', { container_id: req.id, exec_id: req.exec_id });
        return {};
      },
      Wait: async (req) => {
        const exit = await pod.process(req.id, req.exec_id).wait();
        return { exit_status: exit.status, exited_at: timestamp(exit.exitedAt) };
      },
      State: async (req) => {
        const container = pod.container(req.id);
        const proc = container.process(req.exec_id);
        return {
          id: req.id,
          exec_id: req.exec_id,
          bundle: container.params.bundle,
          pid: proc.pid,
          status: TaskStatus[req.exec_id ? proc.status : container.status],
          stdin: proc.stdio.stdin,
          stdout: proc.stdio.stdout,
          stderr: proc.stdio.stderr,
          terminal: proc.terminal,
          exit_status: proc.exit?.status ?? 0,
          exited_at: proc.exit ? timestamp(proc.exit.exitedAt) : undefined,
        };
      },
      Kill: async (req) => {
        // Looked up first: a Delete may remove them while the Kill is under way, and the exit must still go out.
        const container = pod.container(req.id);
        const proc = pod.process(req.id, req.exec_id);
        const exit = await pod.kill(req.id, req.exec_id, req.signal, req.all);
        if (exit) publishExit(events, container, proc, exit);
        return {};
      },
      Delete: async (req) => {
        const proc = await pod.delete(req.id, req.exec_id);
        const exit = proc.exit ?? { status: 0, exitedAt: new Date() };
        if (!req.exec_id) {
          events.publish('/tasks/delete', {
            container_id: req.id,
            pid: proc.pid,
            exit_status: exit.status,
            exited_at: timestamp(exit.exitedAt),
          });
        }
        return { pid: proc.pid, exit_status: exit.status, exited_at: timestamp(exit.exitedAt) };
      },
      Pids: async (req) => ({ processes: (await pod.pids(req.id)).map((pid) => ({ pid })) }),
      Pause: async (req) => {
        await pod.pause(req.id);
        events.publish('/tasks/paused', { container_id: req.id });
        return {};
      },
      Resume: async (req) => {
        await pod.resume(req.id);
        events.publish('/tasks/resumed', { container_id: req.id });
        return {};
      },
      Update: async (req) => {
        await pod.update(req.id, anyJson(req.resources, `update of ${req.id}: resources`));
        return {};
      },
      Stats: async (req) => ({ stats: await pod.stats(req.id) }),
      CloseIO: async (req) => {
        if (req.stdin) await pod.closeStdin(req.id, req.exec_id);
        return {};
      },
      ResizePty: async (req) => {
        await pod.resizeTerminal(req.id, req.exec_id, req.width, req.height);
        return {};
      },
      Checkpoint: async (req) => {
        throw new NotImplementedError(`Checkpoint of ${req.id}: checkpointing a VM-isolated container is not supported (the process state lives in the guest kernel; CRIU cannot reach it from the host)`);
      },
      Connect: async () => ({ shim_pid: process.pid, task_pid: pod.hypervisorPid(), version: SHIM_VERSION }),
      Shutdown: async () => {
        if (pod.isEmpty) await this.deps.shutdown();
        return {};
      },
    };
  }
}

/** Publishes /tasks/exit for a process (also the pod's exit hook). */
export function publishExit(events: EventPublisher, container: Container, proc: TaskProcess, exit: ExitInfo): void {
  events.publish('/tasks/exit', {
    container_id: container.id,
    id: proc.execId || container.id,
    pid: proc.pid,
    exit_status: exit.status,
    exited_at: timestamp(exit.exitedAt),
  });
}
