// Holds a process's output until the shim pulls it. Bounded: when more than
// `highWaterMark` bytes wait, the source stream is paused, so a chatty container
// cannot grow the agent's memory without limit; nothing is dropped.
import { Readable } from 'stream';

interface Waiter {
  maxLen: number;
  resolve: (result: { data: Buffer; eof: boolean }) => void;
}

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private waiters: Waiter[] = [];
  /** Resolves once the source has ended (all output captured, maybe not yet read). */
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;

  constructor(private readonly source: Readable | null, private readonly highWaterMark = 1 << 20) {
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    if (!source) {
      this.end();
      return;
    }
    source.on('data', (chunk: Buffer) => this.push(chunk));
    source.on('end', () => this.end());
    source.on('error', () => this.end());
    source.on('close', () => this.end());
  }

  /** Up to maxLen bytes; waits while nothing is buffered and the source is open. */
  read(maxLen: number): Promise<{ data: Buffer; eof: boolean }> {
    if (this.buffered > 0 || this.ended) return Promise.resolve(this.take(maxLen));
    return new Promise((resolve) => this.waiters.push({ maxLen, resolve }));
  }

  /** Stops waiting for the source (used when the process is gone but a grandchild holds the pipe). */
  forceEnd(): void {
    this.source?.destroy();
    this.end();
  }

  private push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered > this.highWaterMark) this.source?.pause();
    this.serveWaiters();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.resolveFinished();
    this.serveWaiters();
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0 && (this.buffered > 0 || this.ended)) {
      const waiter = this.waiters.shift()!;
      waiter.resolve(this.take(waiter.maxLen));
    }
  }

  private take(maxLen: number): { data: Buffer; eof: boolean } {
    const parts: Buffer[] = [];
    let size = 0;
    while (this.chunks.length > 0 && size < maxLen) {
      const head = this.chunks[0];
      const room = maxLen - size;
      if (head.length <= room) {
        parts.push(head);
        size += head.length;
        this.chunks.shift();
      } else {
        parts.push(head.subarray(0, room));
        this.chunks[0] = head.subarray(room);
        size += room;
      }
    }
    this.buffered -= size;
    if (this.buffered <= this.highWaterMark / 2 && this.source?.isPaused()) this.source.resume();
    return { data: Buffer.concat(parts), eof: size === 0 && this.ended };
  }
}
