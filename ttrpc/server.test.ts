import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import pino from 'pino';
import { PassThrough } from 'stream';

import { Code } from './codes';
import { TtrpcError } from './errors';
import { FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, FrameType, encodeFrame } from './frame';
import { decodeResponse } from './messages';
import { CallContext, TtrpcServer } from './server';
import {
  EchoResponse,
  EchoService,
  Num,
  RawPeer,
  encodeEcho,
  removeTmpDirs,
  sleep,
  testRoot,
  tmpSocketPath,
  trackUnhandledRejections,
} from './test-helpers';

const SVC = 'test.v1.Echo';
const num = (value: number): Uint8Array => Num.encode(Num.fromObject({ value })).finish();
const decodeEchoResponse = (b: Uint8Array): Record<string, unknown> =>
  EchoResponse.toObject(EchoResponse.decode(b), { longs: Number, defaults: true });

describe('TtrpcServer over a unix socket, driven with raw frames', () => {
  let server: TtrpcServer;
  let sockPath: string;
  let peers: RawPeer[];
  let unhandled: ReturnType<typeof trackUnhandledRejections>;
  let hung: { ctx: CallContext; aborted: Promise<unknown> }[];

  async function peer(): Promise<RawPeer> {
    const p = await RawPeer.connect(sockPath);
    peers.push(p);
    return p;
  }

  beforeEach(async () => {
    unhandled = trackUnhandledRejections();
    peers = [];
    hung = [];
    server = new TtrpcServer();
    server.addService(EchoService, {
      Echo: async (req: { text: string; delayMs: number }, ctx: CallContext) => {
        if (req.text === 'hang') {
          const aborted = new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason)));
          hung.push({ ctx, aborted });
          await aborted;
          return { text: 'too late' };
        }
        if (req.delayMs) await sleep(req.delayMs);
        return { text: req.text };
      },
      Range: async (req: { count: number }, _ctx: CallContext, send: (m: object) => Promise<void>) => {
        for (let i = 0; i < req.count; i++) await send({ value: i * 10 });
      },
      Sum: async (reqs: AsyncIterable<{ value: number }>) => {
        let total = 0;
        let count = 0;
        for await (const r of reqs) {
          total += r.value;
          count++;
        }
        return { total, count };
      },
    });
    sockPath = tmpSocketPath();
    await server.listen(sockPath);
  });

  afterEach(async () => {
    for (const p of peers) p.destroy();
    await server.close({ graceMs: 0 });
    await sleep(10);
    unhandled.dispose();
    removeTmpDirs();
    expect(unhandled.list).toEqual([]);
  });

  async function expectEchoWorks(p: RawPeer, streamId: number): Promise<void> {
    p.sendRequest(streamId, { service: SVC, method: 'Echo', payload: encodeEcho({ text: `ok-${streamId}` }) });
    const resp = await p.responseOn(streamId);
    expect(resp.status?.code ?? 0).toBe(Code.OK);
    expect(decodeEchoResponse(resp.payload).text).toBe(`ok-${streamId}`);
  }

  it('answers a unary request with an OK Response on the same stream', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hello' }) });
    const f = await p.frameOn(1);
    expect(f.type).toBe(FrameType.Response);
    expect(f.flags).toBe(0);
    const resp = decodeResponse(f.data);
    expect(resp.status?.code).toBe(0);
    expect(decodeEchoResponse(resp.payload)).toEqual({ text: 'hello', big: 0, blob: Buffer.alloc(0), num: null });
  });

  it('ignores frames of unknown type (and client-sent Responses) and keeps serving', async () => {
    const p = await peer();
    p.sendFrame(1, 0x07, 0, Buffer.from('junk'));
    p.sendFrame(3, 0x00, 0xff);
    p.sendFrame(5, FrameType.Response, 0, Buffer.from([0x0a, 0x00]));
    await expectEchoWorks(p, 7);
    await sleep(50);
    expect(p.frames.map((f) => f.streamId)).toEqual([7]);
  });

  it('skips an oversized frame, answers RESOURCE_EXHAUSTED on its stream, and stays usable', async () => {
    const q = await peer();
    const length = 4 * 1024 * 1024 + 1; // default limit + 1
    const header = Buffer.alloc(10);
    header.writeUInt32BE(length, 0);
    header.writeUInt32BE(1, 4);
    header[8] = FrameType.Request;
    q.write(header);
    const filler = Buffer.alloc(64 * 1024, 0x0f); // would be an invalid protobuf if parsed
    for (let sent = 0; sent < length; sent += filler.length) q.write(filler.subarray(0, Math.min(filler.length, length - sent)));
    const resp = await q.responseOn(1, 5000);
    expect(resp.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(resp.status?.message).toMatch(/4194305.*exceeds maximum message size of 4194304/);
    await expectEchoWorks(q, 3);
    expect(q.frames).toHaveLength(2);
  });

  it('applies a configured maxMessageSize to incoming frames', async () => {
    await server.close({ graceMs: 0 });
    server = new TtrpcServer({ maxMessageSize: 64 });
    server.addService(EchoService, { Echo: async (req: { text: string }) => ({ text: req.text }) });
    sockPath = tmpSocketPath();
    await server.listen(sockPath);
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'x'.repeat(100) }) });
    expect((await p.responseOn(1)).status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    await expectEchoWorks(p, 3);
  });

  it('survives a truncated frame followed by close, aborting in-flight handlers', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hang' }) });
    while (hung.length === 0) await sleep(5);
    const full = encodeFrame(3, FrameType.Request, 0, Buffer.alloc(50, 1));
    p.write(full.subarray(0, 23)); // header plus part of the data
    await sleep(20);
    p.socket.end();
    await p.closed;
    const reason = await hung[0].aborted;
    expect(reason).toBeInstanceOf(TtrpcError);
    expect((reason as TtrpcError).code).toBe(Code.CANCELLED);

    // A half-sent header also does no harm.
    const q = await peer();
    q.write(Buffer.from([0, 0, 0]));
    q.socket.end();
    await q.closed;

    // The server still serves new connections.
    await expectEchoWorks(await peer(), 1);
  });

  it('answers a Request whose frame data is not a Request message with INVALID_ARGUMENT', async () => {
    const p = await peer();
    p.sendFrame(1, FrameType.Request, 0, Buffer.from([0x0f, 0xff, 0xff])); // wire type 7
    const resp = await p.responseOn(1);
    expect(resp.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(resp.status?.message).toMatch(/^unmarshal request error: /);
    await expectEchoWorks(p, 3);
  });

  it('answers a method payload that does not decode with INTERNAL (as containerd does)', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: Buffer.from([0x0a, 0xff]) });
    const resp = await p.responseOn(1);
    expect(resp.status?.code).toBe(Code.INTERNAL);
    expect(resp.status?.message).toMatch(/error unmarshalling payload/);
  });

  it('rejects even, reused and decreasing stream ids with INVALID_ARGUMENT', async () => {
    const p = await peer();
    p.sendRequest(2, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'a' }) });
    const even = await p.responseOn(2);
    expect(even.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(even.status?.message).toMatch(/odd/);

    await expectEchoWorks(p, 5);
    p.sendRequest(5, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'again' }) });
    p.sendRequest(3, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'older' }) });
    const [, reused] = await p.framesOn(5, 2);
    expect(decodeResponse(reused.data).status?.code).toBe(Code.INVALID_ARGUMENT);
    expect((await p.responseOn(3)).status?.code).toBe(Code.INVALID_ARGUMENT);
    await expectEchoWorks(p, 7);
  });

  it('answers a Data frame on a stream that is not active with INVALID_ARGUMENT', async () => {
    const p = await peer();
    p.sendFrame(9, FrameType.Data, 0, num(1));
    const resp = await p.responseOn(9);
    expect(resp.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(resp.status?.message).toMatch(/no longer active/);
  });

  it('answers unknown services and methods with UNIMPLEMENTED naming them', async () => {
    const p = await peer();
    p.sendRequest(1, { service: 'no.such.Service', method: 'Echo' });
    p.sendRequest(3, { service: SVC, method: 'NoSuchMethod' });
    p.sendRequest(5, { service: SVC, method: 'Other' }); // in the .proto, not implemented
    const r1 = await p.responseOn(1);
    const r3 = await p.responseOn(3);
    const r5 = await p.responseOn(5);
    expect([r1.status?.code, r3.status?.code, r5.status?.code]).toEqual([Code.UNIMPLEMENTED, Code.UNIMPLEMENTED, Code.UNIMPLEMENTED]);
    expect(r1.status?.message).toContain('no.such.Service');
    expect(r3.status?.message).toContain('NoSuchMethod');
    expect(r5.status?.message).toContain('Other');
  });

  it('enforces timeout_nano: sets ctx.deadline, aborts the signal, answers DEADLINE_EXCEEDED', async () => {
    const p = await peer();
    const before = Date.now();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hang' }), timeoutNano: 80e6 });
    const resp = await p.responseOn(1);
    const elapsed = Date.now() - before;
    expect(resp.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(elapsed).toBeGreaterThanOrEqual(70);
    expect(elapsed).toBeLessThan(1500);
    expect(hung).toHaveLength(1);
    expect(hung[0].ctx.deadline).toBeGreaterThanOrEqual(before + 70);
    expect(hung[0].ctx.deadline).toBeLessThanOrEqual(before + 200);
    const reason = await hung[0].aborted;
    expect((reason as TtrpcError).code).toBe(Code.DEADLINE_EXCEEDED);
    await sleep(30);
    // The handler's late result is not sent.
    expect(p.frames.filter((f) => f.streamId === 1)).toHaveLength(1);
  });

  it('gives no deadline when timeout_nano is 0', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hang' }) });
    while (hung.length === 0) await sleep(5);
    expect(hung[0].ctx.deadline).toBeUndefined();
    expect(hung[0].ctx.signal.aborted).toBe(false);
  });

  it('streams server responses as Data frames closed by an empty remote-closed Data frame', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Range', payload: Buffer.from([0x08, 0x03]) }, FLAG_REMOTE_CLOSED);
    const frames = await p.framesOn(1, 4);
    expect(frames.map((f) => [f.type, f.flags])).toEqual([
      [FrameType.Data, 0],
      [FrameType.Data, 0],
      [FrameType.Data, 0],
      [FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA],
    ]);
    expect(frames.slice(0, 3).map((f) => Num.toObject(Num.decode(f.data), { longs: Number, defaults: true }).value)).toEqual([0, 10, 20]);
    expect(frames[3].data).toHaveLength(0);
    await sleep(30);
    expect(p.frames).toHaveLength(4);
  });

  it('collects client-stream Data frames until remote-closed, then answers with a Response', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Sum' }, FLAG_REMOTE_OPEN);
    p.sendFrame(1, FrameType.Data, 0, num(5));
    p.sendFrame(1, FrameType.Data, 0, Buffer.alloc(0)); // an empty message counts (value 0)
    p.sendFrame(1, FrameType.Data, FLAG_NO_DATA, Buffer.alloc(0)); // no-data: not a message
    p.sendFrame(1, FrameType.Data, 0, num(7));
    await sleep(20);
    expect(p.frames).toHaveLength(0);
    p.sendFrame(1, FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA);
    const resp = await p.responseOn(1);
    expect(resp.status?.code).toBe(Code.OK);
    const out = testSum(resp.payload);
    expect(out).toEqual({ total: 12, count: 3 });
  });

  it('treats a client-streaming Request without remote-open as a single closed message', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Sum', payload: num(4) });
    const resp = await p.responseOn(1);
    expect(testSum(resp.payload)).toEqual({ total: 4, count: 1 });
  });

  it('rejects Data frames on a unary stream, ending that call', async () => {
    const p = await peer();
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hang' }) });
    while (hung.length === 0) await sleep(5);
    p.sendFrame(1, FrameType.Data, 0, num(1));
    const resp = await p.responseOn(1);
    expect(resp.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(((await hung[0].aborted) as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
  });
});

function testSum(payload: Uint8Array): unknown {
  const T = testRoot.lookupType('test.v1.SumResponse');
  return T.toObject(T.decode(payload), { longs: Number, defaults: true });
}

describe('TtrpcServer handler results', () => {
  let server: TtrpcServer;
  let sockPath: string;
  let p: RawPeer;

  beforeEach(async () => {
    server = new TtrpcServer({ maxMessageSize: 1024 });
    server.addService(EchoService, {
      Echo: async (req: { text: string }) => {
        switch (req.text) {
          case 'ttrpc':
            throw new TtrpcError(Code.NOT_FOUND, 'container abc not found');
          case 'grpcCode':
            throw Object.assign(new Error('already there'), { grpcCode: Code.ALREADY_EXISTS });
          case 'plain':
            throw new Error('boom');
          case 'string':
            throw 'just a string';
          case 'big':
            return { text: 'y'.repeat(2000) };
          case 'sync':
            return { text: 'sync result' };
          case 'undefined':
            return undefined;
          case 'badshape':
            return { num: 5 }; // a message field must be an object
          default:
            return { text: req.text };
        }
      },
    });
    sockPath = tmpSocketPath();
    await server.listen(sockPath);
    p = await RawPeer.connect(sockPath);
  });

  afterEach(async () => {
    p.destroy();
    await server.close({ graceMs: 0 });
    removeTmpDirs();
  });

  const call = async (id: number, text: string) => {
    p.sendRequest(id, { service: SVC, method: 'Echo', payload: encodeEcho({ text }) });
    return p.responseOn(id);
  };

  it('maps thrown errors to status codes', async () => {
    expect((await call(1, 'ttrpc')).status).toMatchObject({ code: Code.NOT_FOUND, message: 'container abc not found' });
    expect((await call(3, 'grpcCode')).status).toMatchObject({ code: Code.ALREADY_EXISTS, message: 'already there' });
    expect((await call(5, 'plain')).status).toMatchObject({ code: Code.UNKNOWN, message: 'boom' });
    expect((await call(7, 'string')).status).toMatchObject({ code: Code.UNKNOWN, message: 'just a string' });
  });

  it('answers an oversized handler result with RESOURCE_EXHAUSTED and keeps the connection', async () => {
    const resp = await call(1, 'big');
    expect(resp.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(decodeEchoResponse((await call(3, 'small')).payload).text).toBe('small');
  });

  it('encodes empty results and reports unencodable ones as INTERNAL', async () => {
    const empty = await call(1, 'undefined');
    expect(empty.status?.code).toBe(Code.OK);
    expect(empty.payload).toHaveLength(0);
    const bad = await call(3, 'badshape');
    expect(bad.status?.code).toBe(Code.INTERNAL);
    expect(bad.status?.message).toMatch(/marshal.*object expected/);
  });
});

describe('TtrpcServer lifecycle', () => {
  afterEach(() => removeTmpDirs());

  it('listens with mode 0600 by default, or the given mode, and removes the socket on close', async () => {
    const server = new TtrpcServer();
    const a = tmpSocketPath('a.sock');
    const b = tmpSocketPath('b.sock');
    await server.listen(a);
    await server.listen(b, { mode: 0o660 });
    expect(fs.statSync(a).mode & 0o777).toBe(0o600);
    expect(fs.statSync(b).mode & 0o777).toBe(0o660);
    expect(fs.statSync(a).isSocket()).toBe(true);
    await server.close();
    expect(fs.existsSync(a)).toBe(false);
    expect(fs.existsSync(b)).toBe(false);
  });

  it('creates the socket with its final mode, never wider for a moment, and restores the umask', async () => {
    // With chmod disabled, only the creation itself decides the permissions.
    const chmod = jest.spyOn(fs.promises, 'chmod').mockResolvedValue(undefined);
    const umaskBefore = process.umask();
    const server = new TtrpcServer();
    const path = tmpSocketPath('born.sock');
    try {
      await server.listen(path);
      expect(fs.statSync(path).mode & 0o777).toBe(0o600);
      expect(process.umask()).toBe(umaskBefore);
    } finally {
      chmod.mockRestore();
      await server.close();
    }
  });

  it('replaces a stale socket file but refuses a live socket or a regular file', async () => {
    const stale = tmpSocketPath();
    // A process that dies without cleaning up leaves its socket file behind.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('ready'))`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(fs.statSync(stale).isSocket()).toBe(true);

    const server = new TtrpcServer();
    server.addService(EchoService, { Echo: async () => ({ text: 'fresh' }) });
    await server.listen(stale);
    const p = await RawPeer.connect(stale);
    p.sendRequest(1, { service: SVC, method: 'Echo' });
    expect(decodeEchoResponse((await p.responseOn(1)).payload).text).toBe('fresh');

    const other = new TtrpcServer();
    await expect(other.listen(stale)).rejects.toThrow(/in use/);
    const regular = tmpSocketPath('file');
    fs.writeFileSync(regular, 'keep me');
    await expect(other.listen(regular)).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(regular, 'utf8')).toBe('keep me');

    p.destroy();
    await server.close();
    await other.close();
  });

  it('close() lets in-flight calls finish within the grace period, then closes connections', async () => {
    const server = new TtrpcServer();
    server.addService(EchoService, {
      Echo: async (req: { text: string; delayMs: number }) => {
        await sleep(req.delayMs);
        return { text: req.text };
      },
    });
    const path = tmpSocketPath();
    await server.listen(path);
    const p = await RawPeer.connect(path);
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'finished', delayMs: 60 }) });
    await sleep(10);
    await server.close({ graceMs: 2000 });
    const resp = await p.responseOn(1, 10);
    expect(decodeEchoResponse(resp.payload).text).toBe('finished');
    await p.closed;
    expect(fs.existsSync(path)).toBe(false);
    await expect(RawPeer.connect(path)).rejects.toThrow();
  });

  it('close() aborts handlers still running after the grace period', async () => {
    const server = new TtrpcServer();
    let signal: AbortSignal | undefined;
    server.addService(EchoService, {
      Echo: (_req: unknown, ctx: CallContext) =>
        new Promise((_resolve, reject) => {
          signal = ctx.signal;
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }),
    });
    const path = tmpSocketPath();
    await server.listen(path);
    const p = await RawPeer.connect(path);
    p.sendRequest(1, { service: SVC, method: 'Echo' });
    while (!signal) await sleep(5);
    const started = Date.now();
    await server.close({ graceMs: 50 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as TtrpcError).code).toBe(Code.UNAVAILABLE);
    await p.closed;
    expect(p.frames).toHaveLength(0);
  });

  it('serveConnection works on any duplex and refuses registration mistakes', async () => {
    const server = new TtrpcServer();
    expect(() => server.addService(EchoService, { Nope: async () => ({}) })).toThrow(/no method Nope/);
    server.addService(EchoService, { Echo: async (req: { text: string }) => ({ text: req.text.toUpperCase() }) });
    expect(() => server.addService(EchoService, {})).toThrow(/already registered/);

    const path = tmpSocketPath();
    const listener = net.createServer((s) => server.serveConnection(s));
    await new Promise<void>((r) => listener.listen(path, r));
    const p = await RawPeer.connect(path);
    p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'abc' }) });
    expect(decodeEchoResponse((await p.responseOn(1)).payload).text).toBe('ABC');
    await server.close();
    await p.closed;
    await new Promise((r) => listener.close(r));
  });
});

describe('TtrpcServer debug log', () => {
  it("logs each call's method and time at debug level, and a failed one's code", async () => {
    const logged = new PassThrough();
    const server = new TtrpcServer({ logger: pino({ level: 'debug' }, logged) });
    server.addService(EchoService, {
      Echo: async (req: { text: string; delayMs: number }) => {
        await sleep(req.delayMs);
        if (req.text === 'fail') throw new TtrpcError(Code.NOT_FOUND, 'no such thing');
        return { text: req.text };
      },
    });
    const sockPath = tmpSocketPath();
    await server.listen(sockPath);
    const p = await RawPeer.connect(sockPath);
    try {
      p.sendRequest(1, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'hi', delayMs: 50 }) });
      await p.responseOn(1);
      p.sendRequest(3, { service: SVC, method: 'Echo', payload: encodeEcho({ text: 'fail', delayMs: 0 }) });
      await p.responseOn(3);
      await sleep(10);
      const lines = String(logged.read() ?? '')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { msg: string; method?: string; ms?: number; code?: number });
      const handled = lines.find((l) => l.msg === 'ttrpc: handled');
      expect(handled).toMatchObject({ method: 'Echo' });
      expect(handled!.ms).toBeGreaterThanOrEqual(45); // the handler's own time, not the send's
      expect(lines.find((l) => l.msg === 'ttrpc: handler returned error')).toMatchObject({ method: 'Echo', code: Code.NOT_FOUND, ms: expect.any(Number) });
    } finally {
      p.destroy();
      await server.close({ graceMs: 0 });
      removeTmpDirs();
    }
  });
});
