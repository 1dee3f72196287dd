import { Code } from './codes';
import { TtrpcError } from './errors';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  DecodedItem,
  FLAG_NO_DATA,
  FLAG_REMOTE_CLOSED,
  FrameDecoder,
  FrameType,
  encodeFrame,
} from './frame';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Hand-assembled frames: length(4, BE) | stream id(4, BE) | type | flags | data
const FRAME_A = hex('00000003 00000001 01 00 aabbcc'); // request on stream 1, 3 data bytes
const FRAME_B = hex('00000000 00000003 03 05'); // data on stream 3, remote-closed|no-data, empty
const FRAME_C = hex('00000002 01020304 02 00 0102'); // response on stream 0x01020304

function frames(items: DecodedItem[]): { streamId: number; type: number; flags: number; length: number; data: string }[] {
  return items.map((i) => {
    if (i.kind !== 'frame') throw new Error('unexpected oversized item');
    const f = i.frame;
    return { streamId: f.streamId, type: f.type, flags: f.flags, length: f.length, data: f.data.toString('hex') };
  });
}

const EXPECTED = [
  { streamId: 1, type: 1, flags: 0, length: 3, data: 'aabbcc' },
  { streamId: 3, type: 3, flags: 5, length: 0, data: '' },
  { streamId: 0x01020304, type: 2, flags: 0, length: 2, data: '0102' },
];

describe('encodeFrame', () => {
  it('writes the 10-byte big-endian header followed by the data', () => {
    expect(encodeFrame(1, FrameType.Request, 0, Buffer.from([0xaa, 0xbb, 0xcc]))).toEqual(FRAME_A);
    expect(encodeFrame(3, FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)).toEqual(FRAME_B);
    expect(encodeFrame(0x01020304, FrameType.Response, 0, Buffer.from([1, 2]))).toEqual(FRAME_C);
    expect(encodeFrame(0xffffffff, 0x7f, 0xff).toString('hex')).toBe('00000000ffffffff7fff');
  });

  it('refuses data over the limit with RESOURCE_EXHAUSTED', () => {
    let err: unknown;
    try {
      encodeFrame(1, FrameType.Request, 0, Buffer.alloc(11), 10);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TtrpcError);
    expect((err as TtrpcError).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(encodeFrame(1, FrameType.Request, 0, Buffer.alloc(10), 10)).toHaveLength(20);
  });

  it('defaults to a 4 MiB limit', () => {
    expect(DEFAULT_MAX_MESSAGE_SIZE).toBe(4 * 1024 * 1024);
    expect(() => encodeFrame(1, 1, 0, Buffer.alloc(DEFAULT_MAX_MESSAGE_SIZE + 1))).toThrow(/exceeds maximum/);
    expect(encodeFrame(1, 1, 0, Buffer.alloc(DEFAULT_MAX_MESSAGE_SIZE))).toHaveLength(DEFAULT_MAX_MESSAGE_SIZE + 10);
  });
});

describe('FrameDecoder', () => {
  const all = Buffer.concat([FRAME_A, FRAME_B, FRAME_C]);

  it('decodes several frames from one chunk', () => {
    const d = new FrameDecoder();
    expect(frames(d.push(all))).toEqual(EXPECTED);
    expect(d.pendingBytes).toBe(0);
  });

  it('decodes the same frames however the stream is split in two', () => {
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      expect({ cut, frames: frames(out) }).toEqual({ cut, frames: EXPECTED });
    }
  });

  it('decodes byte by byte, reporting partial frames as pending', () => {
    const d = new FrameDecoder();
    const out: DecodedItem[] = [];
    for (let i = 0; i < all.length; i++) {
      out.push(...d.push(all.subarray(i, i + 1)));
      // Only at frame boundaries is nothing pending.
      const boundary = [FRAME_A.length, FRAME_A.length + FRAME_B.length, all.length].includes(i + 1);
      expect(d.pendingBytes === 0).toBe(boundary);
    }
    expect(frames(out)).toEqual(EXPECTED);
  });

  it('decodes with every pair of cut points (three chunks)', () => {
    for (let a = 0; a <= all.length; a++) {
      for (let b = a; b <= all.length; b++) {
        const d = new FrameDecoder();
        const out = [...d.push(all.subarray(0, a)), ...d.push(all.subarray(a, b)), ...d.push(all.subarray(b))];
        expect(frames(out)).toEqual(EXPECTED);
      }
    }
  });

  it('does not alias the caller chunk', () => {
    const d = new FrameDecoder();
    const chunk = Buffer.from(FRAME_A);
    const [item] = d.push(chunk);
    chunk.fill(0);
    expect(item.kind === 'frame' && item.frame.data.toString('hex')).toBe('aabbcc');
  });

  it('skips the data of an oversized frame and resumes on the next one, across any split', () => {
    const oversized = Buffer.concat([hex('00000009 00000005 01 00'), Buffer.alloc(9, 0xee)]);
    const stream = Buffer.concat([oversized, FRAME_C]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder(8);
      const out = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(out).toEqual([
        { kind: 'oversized', header: { length: 9, streamId: 5, type: 1, flags: 0 } },
        { kind: 'frame', frame: { length: 2, streamId: 0x01020304, type: 2, flags: 0, data: Buffer.from([1, 2]) } },
      ]);
    }
  });

  it('reports an oversized frame only once its data has been skipped', () => {
    const d = new FrameDecoder(4);
    expect(d.push(hex('00000006 00000001 01 00 0000'))).toEqual([]);
    expect(d.pendingBytes).toBe(12);
    expect(d.push(hex('000000'))).toEqual([]);
    expect(d.push(hex('00'))).toEqual([{ kind: 'oversized', header: { length: 6, streamId: 1, type: 1, flags: 0 } }]);
    expect(d.pendingBytes).toBe(0);
  });

  it('accepts a frame exactly at the limit', () => {
    const d = new FrameDecoder(3);
    expect(frames(d.push(FRAME_A))).toEqual([EXPECTED[0]]);
  });

  it('holds a truncated frame without emitting it', () => {
    const d = new FrameDecoder();
    expect(d.push(FRAME_A.subarray(0, 11))).toEqual([]);
    expect(d.pendingBytes).toBe(11);
    expect(d.push(Buffer.alloc(0))).toEqual([]);
  });
});
