// Frame-level fuzzing of the ttrpc server: a seeded generator writes a byte stream of
// random frames (lengths up to past the 4 MiB limit, stream ids odd, even, zero and
// reused, any type and flags, Requests with random envelopes, Data on live and dead
// streams) and hands it to the server in random chunk splits, one 'data' event per
// chunk. The server must not fail internally, must end every stream a Request opened
// with an answer whose status is a known code (with a message unless OK), and must
// serve a normal call afterwards. A failure names its seed; rerun with that seed.
import { Duplex } from 'stream';

import pino from 'pino';

import { Code, isCode } from './codes';
import { TtrpcClient } from './client';
import { DEFAULT_MAX_MESSAGE_SIZE, FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, Frame, FrameDecoder, FrameType, HEADER_LENGTH, encodeFrame } from './frame';
import { decodeResponse, encodeRequest } from './messages';
import { TtrpcServer } from './server';
import { EchoResponse, EchoService, Num, encodeEcho, failOnUnhandledRejections, seededRandom, sleep, testRoot, tmpSocketPath } from './test-helpers';

const SVC = 'test.v1.Echo';
const SEEDS = [0x1, 0xfeed, 0xc0ffee, 0x5eed5eed, 0x2545f491];
const OPS_PER_SEED = 400;
const RangeRequest = testRoot.lookupType('test.v1.RangeRequest');
const METHODS = ['Echo', 'Other', 'Range', 'Sum', 'Chat'];
const CLIENT_STREAMING = new Set(['Sum', 'Chat']);

jest.setTimeout(60_000);
failOnUnhandledRejections();

/** The server's side of one connection, fed by the test chunk by chunk; what it writes is decoded. */
class FuzzConnection extends Duplex {
  readonly frames: Frame[] = [];
  private readonly decoder = new FrameDecoder(Number.MAX_SAFE_INTEGER);

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    for (const item of this.decoder.push(chunk)) if (item.kind === 'frame') this.frames.push(item.frame);
    callback();
  }

  /** Stream ids on which the server ended the stream: a Response, or a closing Data frame. */
  endedStreams(): Set<number> {
    return new Set(this.frames.filter((f) => f.type === FrameType.Response || (f.type === FrameType.Data && (f.flags & FLAG_REMOTE_CLOSED) !== 0)).map((f) => f.streamId));
  }
}

/** The byte stream for one seed, and the stream ids whose Request frames the server must answer. */
function generate(random: () => number): { bytes: Buffer; mustAnswer: Set<number> } {
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const frames: Buffer[] = [];
  const mustAnswer = new Set<number>();
  const used: number[] = [];
  /** Client-streaming calls opened with remote-open: they wait for Data until closed. */
  const open = new Set<number>();
  let nextId = 1;
  const freshId = (): number => {
    const id = nextId;
    nextId += 2 * (1 + int(3));
    used.push(id);
    return id;
  };

  const payloadFor = (method: string): Buffer => {
    const roll = random();
    if (roll < 0.2) return randomBytes(int(40));
    if (roll < 0.3) return Buffer.alloc(0);
    if (method === 'Range') return Buffer.from(RangeRequest.encode(RangeRequest.fromObject({ count: int(4), failAfter: int(3) - 1 })).finish());
    if (method === 'Sum') return Buffer.from(Num.encode(Num.fromObject({ value: int(1000) })).finish());
    return Buffer.from(encodeEcho({ text: `t${int(1000)}`, big: int(1 << 30), blob: randomBytes(int(16)), delayMs: int(3) }));
  };
  const requestEnvelope = (): Buffer => {
    const roll = random();
    if (roll < 0.1) return randomBytes(int(64));
    const method = roll < 0.15 ? `Nope${int(10)}` : pick(METHODS);
    const service = random() < 0.05 ? 'test.v1.Missing' : SVC;
    // Some deadlines are 1 ns: those calls end DEADLINE_EXCEEDED.
    const timeoutNano = pick([0, 0, 1, 5_000_000_000]);
    const metadata = random() < 0.2 ? [{ key: 'k', value: randomBytes(4).toString('hex') }] : [];
    return Buffer.from(encodeRequest({ service, method, payload: random() < 0.9 ? payloadFor(method) : undefined, timeoutNano, metadata }));
  };

  // Every seed sends at least one frame over the limit.
  const oversizedAt = int(OPS_PER_SEED);
  for (let op = 0; op < OPS_PER_SEED; op++) {
    const roll = op === oversizedAt ? 0.99 : random();
    const flags = random() < 0.5 ? 0 : int(256);
    if (roll < 0.45) {
      // A Request on a fresh odd id: must be answered, whatever its envelope says.
      const id = freshId();
      const body = requestEnvelope();
      const requestFlags = random() < 0.5 ? FLAG_REMOTE_OPEN : flags;
      frames.push(encodeFrame(id, FrameType.Request, requestFlags, body, Infinity));
      mustAnswer.add(id);
      if ((requestFlags & FLAG_REMOTE_OPEN) !== 0) open.add(id);
    } else if (roll < 0.65) {
      // Data: on a live call, on a finished one, on one never opened, on even or zero ids.
      // Never on an id a later Request will use: its answer would pass for that Request's.
      const id = random() < 0.6 && open.size > 0 ? pick([...open]) : pick([pick(used.length ? used : [1]), 2 * int(1000), 0, 0xffffffff]);
      const dataFlags = random() < 0.5 ? pick([0, FLAG_REMOTE_CLOSED, FLAG_REMOTE_CLOSED | FLAG_NO_DATA]) : flags;
      frames.push(encodeFrame(id, FrameType.Data, dataFlags, random() < 0.5 ? payloadFor('Sum') : randomBytes(int(32)), Infinity));
      if ((dataFlags & FLAG_REMOTE_CLOSED) !== 0) open.delete(id);
    } else if (roll < 0.8) {
      // A Request on an id the server must refuse: even, zero, or already used.
      const id = pick([0, 2 * (1 + int(1000)), pick(used.length ? used : [1])]);
      frames.push(encodeFrame(id, FrameType.Request, flags, requestEnvelope(), Infinity));
    } else if (roll < 0.99) {
      // Frames a server ignores: unknown types, Responses sent by a client.
      frames.push(encodeFrame(pick([0, 1, nextId, 2 * int(100) + 1]), pick([0x00, FrameType.Response, 0x04, 0x7f, 0xff]), flags, randomBytes(int(48)), Infinity));
    } else if (roll < 0.995) {
      // Over the limit, on a Request or on a live stream's Data: skipped unread, answered RESOURCE_EXHAUSTED.
      const onData = random() < 0.5 && open.size > 0;
      const id = onData ? pick([...open]) : freshId();
      frames.push(encodeFrame(id, onData ? FrameType.Data : FrameType.Request, flags, Buffer.alloc(DEFAULT_MAX_MESSAGE_SIZE + 1 + int(70_000), int(256)), Infinity));
      mustAnswer.add(id);
      open.delete(id);
    } else {
      // Exactly at the limit: read, and answered like any Request (here: a bad envelope).
      const id = freshId();
      frames.push(encodeFrame(id, FrameType.Request, flags, Buffer.alloc(DEFAULT_MAX_MESSAGE_SIZE, 0x0f), Infinity));
      mustAnswer.add(id);
      open.delete(id);
    }
  }
  // Close what is still open, so every call can finish.
  for (const id of open) frames.push(encodeFrame(id, FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA));
  return { bytes: Buffer.concat(frames), mustAnswer };
}

/** Chunk sizes from one byte to 64 KiB, mostly small: frames and headers split anywhere. */
function chunkSize(random: () => number): number {
  const roll = random();
  if (roll < 0.4) return 1 + Math.floor(random() * HEADER_LENGTH);
  if (roll < 0.8) return 1 + Math.floor(random() * 512);
  return 1 + Math.floor(random() * 65536);
}

describe('TtrpcServer under random frames', () => {
  it.each(SEEDS.map((seed) => [`0x${seed.toString(16)}`, seed]))('seed %s: never fails internally, answers every Request with a known status, and serves on', async (_name, seed) => {
    const random = seededRandom(seed as number);
    const logged: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const server = new TtrpcServer({ logger });
    // Handlers that always finish: the fuzz is about framing, not about what a handler does.
    server.addService(EchoService, {
      Echo: async (req: { text: string; big: number; blob: Buffer; delayMs: number }) => {
        if (req.delayMs) await sleep(Math.min(req.delayMs, 5));
        return { text: req.text, big: req.big, blob: req.blob };
      },
      Range: async (req: { count: number; failAfter: number }, _ctx: unknown, send: (m: object) => Promise<void>) => {
        for (let i = 0; i < Math.min(req.count, 3); i++) {
          if (i === req.failAfter) throw Object.assign(new Error(`range failed at ${i}`), { grpcCode: Code.ABORTED });
          await send({ value: i });
        }
      },
      Sum: async (reqs: AsyncIterable<{ value: number }>) => {
        let total = 0;
        for await (const r of reqs) total += r.value;
        return { total };
      },
      Chat: async (reqs: AsyncIterable<{ text: string }>, _ctx: unknown, send: (m: object) => Promise<void>) => {
        for await (const r of reqs) await send({ text: r.text });
      },
    });
    const conn = new FuzzConnection();
    server.serveConnection(conn);
    try {
      const { bytes, mustAnswer } = generate(random);
      for (let off = 0; off < bytes.length; ) {
        const n = Math.min(chunkSize(random), bytes.length - off);
        conn.push(bytes.subarray(off, off + n));
        off += n;
        // Now and then let handlers run, so answers and new frames interleave.
        if (random() < 0.1) await new Promise((r) => setImmediate(r));
      }
      for (const deadline = Date.now() + 20_000; [...mustAnswer].some((id) => !conn.endedStreams().has(id)) && Date.now() < deadline; ) await sleep(10);

      const ended = conn.endedStreams();
      expect({ seed, unanswered: [...mustAnswer].filter((id) => !ended.has(id)) }).toEqual({ seed, unanswered: [] });
      const statuses = conn.frames.filter((f) => f.type === FrameType.Response).map((f) => decodeResponse(f.data).status ?? { code: Code.OK, message: '' });
      expect(statuses.length).toBeGreaterThan(0);
      const bad = statuses.filter((st) => !isCode(st.code) || (st.code !== Code.OK && st.message === ''));
      expect({ seed, bad }).toEqual({ seed, bad: [] });
      // Each kind of answer the generator provokes shows up: the run covered them.
      const codes = new Set(statuses.map((st) => st.code));
      for (const code of [Code.OK, Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED, Code.RESOURCE_EXHAUSTED]) expect({ seed, code, seen: codes.has(code) }).toEqual({ seed, code, seen: true });
      // The server's safety net for handler-side bugs ("internal error handling frame") never fired.
      expect({ seed, errors: logged.filter((l) => l.level >= 50) }).toEqual({ seed, errors: [] });

      // Still serving: a normal call on this connection, and one from a real client.
      const id = Math.max(...[...mustAnswer], 1) + 2;
      conn.push(encodeFrame(id, FrameType.Request, 0, encodeRequest({ service: SVC, method: 'Echo', payload: encodeEcho({ text: 'after the storm' }) })));
      for (const deadline = Date.now() + 5000; !conn.endedStreams().has(id) && Date.now() < deadline; ) await sleep(5);
      const answer = conn.frames.find((f) => f.streamId === id && f.type === FrameType.Response);
      expect(answer).toBeDefined();
      const response = decodeResponse(answer!.data);
      expect(response.status?.code ?? Code.OK).toBe(Code.OK);
      expect(EchoResponse.decode(response.payload).toJSON().text).toBe('after the storm');

      const socketPath = tmpSocketPath();
      await server.listen(socketPath);
      const client = await TtrpcClient.connect(socketPath);
      try {
        expect(await client.call(EchoService, 'Echo', { text: 'fresh client' }, { timeoutMs: 5000 })).toMatchObject({ text: 'fresh client' });
      } finally {
        client.close();
      }
    } finally {
      conn.destroy();
      await server.close({ graceMs: 0 });
    }
  });
});
