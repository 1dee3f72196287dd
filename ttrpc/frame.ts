import type { Writable } from 'stream';
import { Code } from './codes';
import { TtrpcError } from './errors';

/** Bytes in a frame header: length(4) + stream id(4) + type(1) + flags(1). */
export const HEADER_LENGTH = 10;
/** Default ceiling on a frame's data length (4 MiB), as in containerd/ttrpc. */
export const DEFAULT_MAX_MESSAGE_SIZE = 4 << 20;

export enum FrameType {
  Request = 0x01,
  Response = 0x02,
  Data = 0x03,
}

export const FLAG_REMOTE_CLOSED = 0x01;
export const FLAG_REMOTE_OPEN = 0x02;
export const FLAG_NO_DATA = 0x04;

export interface FrameHeader {
  /** Data length announced by the header. */
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame extends FrameHeader {
  data: Buffer;
}

/**
 * What the decoder yields: a complete frame, or notice that a frame whose data
 * exceeded the limit has been read past (its data was discarded, not kept).
 */
export type DecodedItem = { kind: 'frame'; frame: Frame } | { kind: 'oversized'; header: FrameHeader };

/**
 * Writes one encoded frame, resolving once the stream took it. A stream that is
 * already closed, or fails the write, rejects with UNAVAILABLE `message`.
 */
export function writeFrame(stream: Writable, frame: Buffer, closed: boolean, message: string): Promise<void> {
  if (closed || stream.destroyed || stream.writableEnded) {
    return Promise.reject(new TtrpcError(Code.UNAVAILABLE, message));
  }
  return new Promise((resolve, reject) => {
    stream.write(frame, (err) => {
      if (err) reject(new TtrpcError(Code.UNAVAILABLE, message, { cause: err }));
      else resolve();
    });
  });
}

export function oversizedError(length: number, max: number): TtrpcError {
  return new TtrpcError(Code.RESOURCE_EXHAUSTED, `message length ${length} exceeds maximum message size of ${max}`);
}

/**
 * Build one frame. Throws RESOURCE_EXHAUSTED (before anything is produced) when
 * the data is larger than `maxDataLength`.
 */
export function encodeFrame(
  streamId: number,
  type: number,
  flags: number,
  data?: Uint8Array,
  maxDataLength: number = DEFAULT_MAX_MESSAGE_SIZE,
): Buffer {
  const length = data ? data.length : 0;
  if (length > maxDataLength) throw oversizedError(length, maxDataLength);
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffffffff) {
    throw new RangeError(`invalid stream id ${streamId}`);
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + length);
  out.writeUInt32BE(length, 0);
  out.writeUInt32BE(streamId, 4);
  out.writeUInt8(type & 0xff, 8);
  out.writeUInt8(flags & 0xff, 9);
  if (data && length > 0) out.set(data, HEADER_LENGTH);
  return out;
}

/**
 * Incremental frame decoder: feed it chunks exactly as they arrive from the
 * transport, in any split, and collect the frames they complete.
 */
export class FrameDecoder {
  private readonly headerBuf = Buffer.alloc(HEADER_LENGTH);
  private headerFilled = 0;
  private current: FrameHeader | null = null;
  private remaining = 0;
  private discarding = false;
  private body: Buffer[] = [];

  constructor(readonly maxDataLength: number = DEFAULT_MAX_MESSAGE_SIZE) {}

  /** Bytes of an unfinished frame held (or being skipped) so far; 0 between frames. */
  get pendingBytes(): number {
    if (this.current === null) return this.headerFilled;
    return HEADER_LENGTH + this.current.length - this.remaining;
  }

  push(chunk: Uint8Array): DecodedItem[] {
    const out: DecodedItem[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.current === null) {
        const n = Math.min(HEADER_LENGTH - this.headerFilled, chunk.length - off);
        this.headerBuf.set(chunk.subarray(off, off + n), this.headerFilled);
        this.headerFilled += n;
        off += n;
        if (this.headerFilled < HEADER_LENGTH) break;
        this.headerFilled = 0;
        const header: FrameHeader = {
          length: this.headerBuf.readUInt32BE(0),
          streamId: this.headerBuf.readUInt32BE(4),
          type: this.headerBuf.readUInt8(8),
          flags: this.headerBuf.readUInt8(9),
        };
        this.current = header;
        this.remaining = header.length;
        this.discarding = header.length > this.maxDataLength;
        this.body = [];
      } else {
        const n = Math.min(this.remaining, chunk.length - off);
        if (!this.discarding) this.body.push(Buffer.from(chunk.buffer, chunk.byteOffset + off, n));
        off += n;
        this.remaining -= n;
      }
      if (this.current !== null && this.remaining === 0) out.push(this.finishFrame(this.current));
    }
    return out;
  }

  private finishFrame(header: FrameHeader): DecodedItem {
    this.current = null;
    if (this.discarding) {
      this.discarding = false;
      return { kind: 'oversized', header };
    }
    const parts = this.body;
    this.body = [];
    // A copy detaches the frame from the caller's chunk buffers.
    const data = parts.length === 0 ? Buffer.alloc(0) : Buffer.concat(parts, header.length);
    return { kind: 'frame', frame: { ...header, data } };
  }
}
