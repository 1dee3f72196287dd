// The last bytes of an output stream the guest or its VMM controls (the guest console,
// a VMM's stderr): kept for error messages, in a fixed-size ring, so however much the
// other side writes, the shim holds at most `capacity` bytes of it.

/** The stderr a driver keeps of its VMM: enough for the reason it failed. */
export const VMM_STDERR_TAIL_BYTES = 16 * 1024;

export class TailBuffer {
  private readonly ring: Buffer;
  /** Where the next byte goes. */
  private end = 0;
  /** Bytes held, at most `capacity`. */
  private held = 0;
  /** Bytes ever pushed, including those overwritten since. */
  private total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError(`tail buffer capacity must be a positive integer, not ${capacity}`);
    this.ring = Buffer.alloc(capacity);
  }

  push(chunk: Uint8Array): void {
    this.total += chunk.length;
    // Of a chunk larger than the ring only its end can survive.
    const data = chunk.length > this.capacity ? chunk.subarray(chunk.length - this.capacity) : chunk;
    const first = Math.min(data.length, this.capacity - this.end);
    this.ring.set(data.subarray(0, first), this.end);
    this.ring.set(data.subarray(first), 0);
    this.end = (this.end + data.length) % this.capacity;
    this.held = Math.min(this.capacity, this.held + data.length);
  }

  /** The last `maxBytes` (at most `capacity`) bytes pushed, as a copy. */
  tail(maxBytes = this.capacity): Buffer {
    const n = Math.max(0, Math.min(maxBytes, this.held));
    const start = (this.end - n + this.capacity) % this.capacity;
    if (start + n <= this.capacity) return Buffer.from(this.ring.subarray(start, start + n));
    return Buffer.concat([this.ring.subarray(start), this.ring.subarray(0, this.end)]);
  }

  /** Bytes pushed over the buffer's life, kept or not. */
  get totalBytes(): number {
    return this.total;
  }
}
