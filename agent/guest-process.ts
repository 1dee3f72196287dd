// One process running in the guest (a container's init or an exec): its stdio
// buffers and its exit status, available once it exited *and* its output was fully
// captured.
import { Writable } from 'stream';
import { FailedPreconditionError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { OutputBuffer } from './output-buffer';
import { ProcessHandle } from './process-handle';

/** After the process exits, how long a grandchild may keep its stdout open. */
const OUTPUT_DRAIN_LIMIT_MS = 30_000;

export class GuestProcess {
  readonly stdout: OutputBuffer;
  readonly stderr: OutputBuffer;
  readonly stdin: Writable | null;
  /** Exit status as a shell reports it: the code, or 128 + signal number. */
  readonly exitStatus: Promise<number>;
  private exitedWith: number | undefined;
  /** Pid in the guest, once the runtime reported it. */
  pid = 0;

  constructor(private readonly handle: ProcessHandle, logger: Logger) {
    this.stdout = new OutputBuffer(handle.stdout);
    this.stderr = new OutputBuffer(handle.stderr);
    this.stdin = handle.stdin;
    this.stdin?.on('error', (err) => logger.debug({ err }, 'stdin closed by the process'));
    this.exitStatus = handle.exited.then(async (status) => {
      this.exitedWith = status;
      const drained = Promise.all([this.stdout.finished, this.stderr.finished]);
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<'limit'>((resolve) => (timer = setTimeout(() => resolve('limit'), OUTPUT_DRAIN_LIMIT_MS)));
      if ((await Promise.race([drained, limit])) === 'limit') {
        logger.warn('output still open after exit; a leftover process holds it; closing');
        this.stdout.forceEnd();
        this.stderr.forceEnd();
      }
      clearTimeout(timer);
      return status;
    });
  }

  /** The runtime process's exit, before its output was awaited. */
  get runtimeExited(): Promise<number> {
    return this.handle.exited;
  }

  get exited(): boolean {
    return this.exitedWith !== undefined;
  }

  resize(columns: number, rows: number): void {
    if (!this.handle.resize) throw new FailedPreconditionError('the process has no terminal to resize');
    if (columns > 0 && rows > 0) this.handle.resize(columns, rows);
  }
}
