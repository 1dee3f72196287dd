// Copies a guest process's stdio between containerd's FIFOs and the agent.
// Output is pulled from the agent until it reports end of stream, so when `done`
// settles every byte the process wrote has reached the FIFO (or was discarded
// because nobody reads it any more).
import * as fs from 'fs';
import { Writable } from 'stream';
import { Logger } from '../lib/logger';
import { AgentClient } from './agent-client';

const READ_CHUNK = 256 * 1024;

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
}

export class ProcessIo {
  /** Settles when stdout and stderr were copied to the end. */
  readonly done: Promise<void>;
  private stdinStream: fs.ReadStream | undefined;

  constructor(private readonly agent: AgentClient, private readonly containerId: string, private readonly execId: string, private readonly paths: StdioPaths, private readonly logger: Logger) {
    this.done = Promise.all([
      this.pumpOutput('stdout', paths.stdout, (max) => agent.readStdout(containerId, execId, max)),
      this.pumpOutput('stderr', paths.stderr, (max) => agent.readStderr(containerId, execId, max)),
    ]).then(() => undefined);
  }

  /** Starts forwarding stdin; the guest's stdin is closed when the FIFO's writer closes. */
  startStdin(): void {
    if (!this.paths.stdin || this.stdinStream) return;
    const stream = fs.createReadStream(this.paths.stdin);
    this.stdinStream = stream;
    let chain = Promise.resolve();
    stream.on('data', (chunk) => {
      stream.pause();
      chain = chain
        .then(() => this.agent.writeStdin(this.containerId, this.execId, chunk as Buffer))
        .then(() => undefined)
        .catch((err) => this.logger.debug({ err: (err as Error).message }, 'stdin write to guest failed'))
        .finally(() => stream.resume());
    });
    stream.on('end', () => {
      chain = chain.then(() => this.agent.closeStdin(this.containerId, this.execId)).catch(() => undefined);
    });
    stream.on('error', (err) => this.logger.warn({ err: err.message }, 'stdin FIFO error'));
  }

  /** Stops reading stdin (process gone or deleted). */
  close(): void {
    this.stdinStream?.destroy();
  }

  private async pumpOutput(name: string, fifo: string, read: (max: number) => Promise<{ data: Buffer; eof: boolean }>): Promise<void> {
    const sink = fifo ? await openSink(fifo, this.logger.child({ stream: name })) : undefined;
    try {
      for (;;) {
        const { data, eof } = await read(READ_CHUNK);
        if (data.length > 0 && sink && !sink.destroyed) await writeChunk(sink, data);
        if (eof) break;
      }
    } catch (err) {
      this.logger.warn({ stream: name, err: (err as Error).message }, 'output copy ended early');
    } finally {
      if (sink && !sink.destroyed) await new Promise<void>((resolve) => sink.end(resolve));
    }
  }
}

async function openSink(fifo: string, logger: Logger): Promise<Writable | undefined> {
  try {
    // O_RDWR would keep the FIFO open with no reader; containerd's reader is already open.
    const fd = await fs.promises.open(fifo, fs.constants.O_WRONLY);
    const stream = fd.createWriteStream();
    stream.on('error', (err) => logger.debug({ err: err.message }, 'FIFO reader went away; discarding output'));
    return stream;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot open output FIFO; discarding output');
    return undefined;
  }
}

function writeChunk(sink: Writable, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const ok = sink.write(data, () => undefined);
    if (ok || sink.destroyed) return resolve();
    const onDone = (): void => {
      sink.off('drain', onDone);
      sink.off('close', onDone);
      resolve();
    };
    sink.on('drain', onDone);
    sink.on('close', onDone);
  });
}
