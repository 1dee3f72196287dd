// One process running in the guest (a container's init for now): its stdio buffers
// and its exit status, available once it exited *and* its output was fully captured.
import { ChildProcess } from 'child_process';
import { Writable } from 'stream';
import { Logger } from '../lib/logger';
import { OutputBuffer } from './output-buffer';

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

  constructor(readonly child: ChildProcess, private readonly logger: Logger) {
    this.stdout = new OutputBuffer(child.stdout);
    this.stderr = new OutputBuffer(child.stderr);
    this.stdin = child.stdin;
    this.stdin?.on('error', (err) => logger.debug({ err }, 'stdin closed by the process'));
    const exited = new Promise<number>((resolve) => {
      child.once('exit', (code, signal) => {
        const status = code ?? 128 + signalNumber(signal);
        this.exitedWith = status;
        resolve(status);
      });
      child.once('error', (err) => {
        logger.error({ err }, 'process could not be spawned');
        this.exitedWith = 127;
        resolve(127);
      });
    });
    this.exitStatus = exited.then(async (status) => {
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

  get exited(): boolean {
    return this.exitedWith !== undefined;
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  if (!signal) return 0;
  const os = require('os') as typeof import('os');
  return (os.constants.signals as Record<string, number>)[signal] ?? 0;
}
