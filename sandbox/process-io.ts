// Copies a guest process's stdio between containerd's FIFOs and the agent.
// Output is pulled from the agent until it reports end of stream, so when `done`
// settles every byte the process wrote has reached the FIFO (or was discarded
// because nobody reads it any more).
import * as net from 'net';
import { Writable } from 'stream';
import { Logger } from '../lib/logger';
import { AgentClient } from './agent-client';
import { openFifoReader, openFifoWriter } from './fifo';

const READ_CHUNK = 256 * 1024;
/** On CloseIO, stdin counts as fully forwarded once the FIFO was quiet this long. */
const STDIN_QUIET_MS = 100;

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
}

export class ProcessIo {
  /** Settles when stdout and stderr were copied to the end. */
  readonly done: Promise<void>;
  private stdinStream: net.Socket | undefined;
  private closed = false;
  /** Chunks read from the stdin FIFO but not yet written to the guest, and when the last came. */
  private stdinInFlight = 0;
  private stdinLastData = 0;
  /** Forwarding of stdin, in order; settles after the guest's stdin was closed. */
  private stdinDone: Promise<void> = Promise.resolve();

  constructor(private readonly agent: AgentClient, private readonly containerId: string, private readonly execId: string, private readonly paths: StdioPaths, private readonly logger: Logger) {
    this.done = Promise.all([
      this.pumpOutput('stdout', paths.stdout, (max) => agent.readStdout(containerId, execId, max)),
      this.pumpOutput('stderr', paths.stderr, (max) => agent.readStderr(containerId, execId, max)),
    ]).then(() => undefined);
  }

  /** Starts forwarding stdin; the guest's stdin is closed when the FIFO's writer closes. */
  startStdin(): void {
    if (!this.paths.stdin) return;
    this.stdinDone = openFifoReader(this.paths.stdin).then(
      (stream) => this.forwardStdin(stream),
      (err) => {
        this.logger.warn({ err: (err as Error).message }, 'cannot open the stdin FIFO');
        return this.agent.closeStdin(this.containerId, this.execId).catch(() => undefined);
      },
    );
  }

  private forwardStdin(stream: net.Socket): Promise<void> {
    if (this.closed) {
      stream.destroy();
      return this.agent.closeStdin(this.containerId, this.execId).catch(() => undefined);
    }
    this.stdinStream = stream;
    let chain = Promise.resolve();
    stream.on('data', (chunk) => {
      stream.pause();
      this.stdinLastData = Date.now();
      this.stdinInFlight++;
      chain = chain
        .then(() => this.agent.writeStdin(this.containerId, this.execId, chunk as Buffer))
        .then(() => undefined)
        .catch((err) => this.logger.debug({ err: (err as Error).message }, 'stdin write to guest failed'))
        .finally(() => {
          this.stdinInFlight--;
          stream.resume();
        });
    });
    stream.on('error', (err) => this.logger.warn({ err: err.message }, 'stdin FIFO error'));
    return new Promise<void>((resolve) => {
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        chain = chain.then(() => this.agent.closeStdin(this.containerId, this.execId)).catch(() => undefined);
        void chain.then(resolve);
      };
      stream.once('end', finish);
      stream.once('close', finish);
    });
  }

  /**
   * CloseIO: containerd's clients finish writing and then ask us to close stdin,
   * often while still holding the FIFO open, so what they wrote may still be on its
   * way. Forward it first: wait until the FIFO has been quiet for a moment and every
   * chunk reached the guest (or the writer closed), at most `graceMs`.
   */
  async closeStdin(graceMs = 2000): Promise<void> {
    if (!this.paths.stdin) {
      await this.agent.closeStdin(this.containerId, this.execId);
      return;
    }
    const deadline = Date.now() + graceMs;
    // Quiet is measured from now: bytes the client wrote may still sit unread in the FIFO.
    this.stdinLastData = Date.now();
    let ended = false;
    void this.stdinDone.then(() => (ended = true));
    while (!ended && Date.now() < deadline) {
      if (this.stdinStream && this.stdinIdle()) break;
      await new Promise((r) => setTimeout(r, STDIN_QUIET_MS / 2));
    }
    if (!ended) {
      this.close();
      await this.agent.closeStdin(this.containerId, this.execId);
    }
  }

  private stdinIdle(): boolean {
    return this.stdinInFlight === 0 && Date.now() - this.stdinLastData >= STDIN_QUIET_MS;
  }

  /** Stops reading stdin (process gone or deleted). */
  close(): void {
    this.closed = true;
    this.stdinStream?.destroy();
  }

  private async pumpOutput(name: string, fifo: string, read: (max: number) => Promise<{ data: Buffer; eof: boolean }>): Promise<void> {
    const sink = fifo ? await openSink(fifo, this.logger.child({ stream: name })) : undefined;
    // Output is read from the agent to the end even without a sink, so the guest
    // process never blocks on a full pipe.
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
  const stream = await openFifoWriter(fifo);
  if (!stream) {
    logger.warn({ fifo }, 'nobody reads the output FIFO; discarding output');
    return undefined;
  }
  stream.on('error', (err) => logger.debug({ err: err.message }, 'FIFO reader went away; discarding output'));
  return stream;
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
