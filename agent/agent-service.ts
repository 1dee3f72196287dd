// The AgentService handlers: translate requests into container-manager calls.
import * as fs from 'fs';
import * as os from 'os';
import { execFile } from 'child_process';
import { promisify } from 'util';
import { AlreadyExistsError, NotFoundError, NotImplementedError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { GuestContainer } from './container';
import { GuestProcess } from './guest-process';
import { OciRuntime } from './oci-runtime';

const execFileAsync = promisify(execFile);
const DEFAULT_READ_LEN = 64 * 1024;

export interface AgentOptions {
  runtime: OciRuntime;
  bundlesRoot: string;
  agentVersion: string;
  logger: Logger;
  /** Called after DestroySandbox answered: the agent exits and the guest powers off. */
  onDestroyed: () => void;
}

type Req = Record<string, any>;

export class AgentService {
  private readonly containers = new Map<string, GuestContainer>();
  private sharedMount: string | undefined;

  constructor(private readonly opts: AgentOptions) {}

  handlers(): Record<string, (req: Req) => Promise<object>> {
    return {
      GetGuestDetails: () => this.guestDetails(),
      CreateSandbox: (req) => this.createSandbox(req),
      DestroySandbox: () => this.destroySandbox(),
      CreateContainer: async (req) => {
        const id = req.container_id as string;
        if (this.containers.has(id)) throw new AlreadyExistsError(`container ${id} already exists in the guest`);
        const logger = this.opts.logger.child({ container: id });
        this.containers.set(id, GuestContainer.create(id, req.oci_spec_json, req.stdin, this.opts.bundlesRoot, this.opts.runtime, logger));
        return {};
      },
      StartContainer: async (req) => ({ pid: await this.container(req.container_id).start() }),
      RemoveContainer: async (req) => {
        await this.container(req.container_id).remove();
        this.containers.delete(req.container_id);
        return {};
      },
      WaitProcess: async (req) => ({ status: await this.container(req.container_id).wait() }),
      SignalProcess: async (req) => {
        await this.container(req.container_id).signal(req.signal, req.all);
        return {};
      },
      ListProcesses: async (req) => ({ pids: this.container(req.container_id).pids() }),
      ReadStdout: (req) => this.process(req).stdout.read(req.max_len || DEFAULT_READ_LEN),
      ReadStderr: (req) => this.process(req).stderr.read(req.max_len || DEFAULT_READ_LEN),
      WriteStdin: async (req) => {
        const stdin = this.process(req).stdin;
        if (!stdin || stdin.destroyed) throw new NotFoundError(`process ${req.container_id}/${req.exec_id || 'init'} has no open stdin`);
        const data = req.data as Buffer;
        await new Promise<void>((resolve, reject) => stdin.write(data, (err) => (err ? reject(err) : resolve())));
        return { len: data.length };
      },
      CloseStdin: async (req) => {
        this.process(req).stdin?.end();
        return {};
      },
    };
  }

  private container(id: string): GuestContainer {
    const container = this.containers.get(id);
    if (!container) throw new NotFoundError(`container ${id} not found in the guest`);
    return container;
  }

  private process(req: Req): GuestProcess {
    if (req.exec_id) throw new NotImplementedError(`exec processes are not supported yet (exec ${req.exec_id})`);
    const init = this.container(req.container_id).init;
    if (!init) throw new NotFoundError(`container ${req.container_id} has not been started`);
    return init;
  }

  private async guestDetails(): Promise<object> {
    return {
      agent_version: this.opts.agentVersion,
      kernel_release: os.release(),
      boot_id: readTrimmed('/proc/sys/kernel/random/boot_id'),
      oci_runtime: await this.opts.runtime.version().catch((err) => `unavailable: ${(err as Error).message}`),
    };
  }

  private async createSandbox(req: Req): Promise<object> {
    if (req.hostname) await execFileAsync('hostname', [req.hostname]);
    if (req.shared_fs_tag) {
      const target = req.shared_dir_guest_path as string;
      fs.mkdirSync(target, { recursive: true });
      await execFileAsync('mount', ['-t', '9p', '-o', 'trans=virtio,version=9p2000.L,msize=262144,cache=none', req.shared_fs_tag, target]);
      this.sharedMount = target;
    }
    this.opts.logger.info({ sandbox: req.sandbox_id }, 'sandbox created');
    return {};
  }

  private async destroySandbox(): Promise<object> {
    for (const [id, container] of this.containers) {
      await container.remove().catch((err) => this.opts.logger.warn({ err, container: id }, 'remove during destroy failed'));
    }
    this.containers.clear();
    if (this.sharedMount) await execFileAsync('umount', ['-l', this.sharedMount]).catch(() => undefined);
    // Answer first, then go: the guest powers off when the agent exits.
    setTimeout(() => this.opts.onDestroyed(), 100);
    return {};
  }
}

function readTrimmed(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
