import { PassThrough } from 'stream';
import { Code } from './codes';
import { TtrpcError } from './errors';
import { FrameType, encodeFrame } from './frame';
import { decodeRequest, encodeResponse } from './messages';
import { TtrpcClient } from './client';
import { CallContext, TtrpcServer } from './server';
import {
  EchoResponse,
  EchoService,
  RawServer,
  sleep,
  tmpSocketPath,
  failOnUnhandledRejections,
} from './test-helpers';

async function rejection(p: Promise<unknown>): Promise<TtrpcError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TtrpcError);
    return err as TtrpcError;
  }
  throw new Error('expected the call to fail');
}

const echoBytes = (text: string): Uint8Array => EchoResponse.encode(EchoResponse.fromObject({ text })).finish();

failOnUnhandledRejections();

describe('TtrpcClient against TtrpcServer', () => {
  let server: TtrpcServer;
  let client: TtrpcClient;
  let sockPath: string;
  let lastCtx: CallContext | undefined;
  let hung: AbortSignal[];

  beforeEach(async () => {
    lastCtx = undefined;
    hung = [];
    server = new TtrpcServer();
    server.addService(EchoService, {
      Echo: async (req: { text: string; big: number; blob: Buffer; delayMs: number }, ctx: CallContext) => {
        lastCtx = ctx;
        switch (req.text) {
          case 'not-found':
            throw new TtrpcError(Code.NOT_FOUND, 'container c1 not found');
          case 'catalogue':
            throw Object.assign(new Error('precondition failed: task running'), { grpcCode: Code.FAILED_PRECONDITION });
          case 'plain':
            throw new Error('something broke');
          case 'hang':
            hung.push(ctx.signal);
            await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
            return { text: 'late' };
        }
        if (req.delayMs) await sleep(req.delayMs);
        return { text: req.text, big: req.big, blob: req.blob };
      },
    });
    sockPath = tmpSocketPath();
    await server.listen(sockPath);
    client = await TtrpcClient.connect(sockPath);
  });

  afterEach(async () => {
    client.close();
    await server.close({ graceMs: 0 });
  });

  it('makes a unary round trip with plain objects (int64 as number, bytes as Buffer)', async () => {
    const resp = await client.call(EchoService, 'Echo', { text: 'hi', big: 2 ** 40 + 3, blob: Buffer.from([1, 2, 3]) });
    expect(resp).toEqual({ text: 'hi', big: 2 ** 40 + 3, blob: Buffer.from([1, 2, 3]), num: null });
    expect(Buffer.isBuffer(resp.blob)).toBe(true);
  });

  it('delivers metadata and leaves the deadline unset without a timeout', async () => {
    await client.call(EchoService, 'Echo', { text: 'md' }, { metadata: { 'x-one': ['a', 'b'], 'x-two': ['c'] } });
    expect(lastCtx?.metadata).toEqual({ 'x-one': ['a', 'b'], 'x-two': ['c'] });
    expect(lastCtx?.deadline).toBeUndefined();
    expect(lastCtx?.service).toBe('test.v1.Echo');
    expect(lastCtx?.method).toBe('Echo');
  });

  it('propagates status code and message', async () => {
    const e1 = await rejection(client.call(EchoService, 'Echo', { text: 'not-found' }));
    expect([e1.code, e1.message]).toEqual([Code.NOT_FOUND, 'container c1 not found']);
    const e2 = await rejection(client.call(EchoService, 'Echo', { text: 'catalogue' }));
    expect([e2.code, e2.message]).toEqual([Code.FAILED_PRECONDITION, 'precondition failed: task running']);
    const e3 = await rejection(client.call(EchoService, 'Echo', { text: 'plain' }));
    expect([e3.code, e3.message]).toEqual([Code.UNKNOWN, 'something broke']);
  });

  it('gets UNIMPLEMENTED for unknown services and methods', async () => {
    const e1 = await rejection(client.call('test.v1.Echo', 'Missing', Buffer.alloc(0)));
    expect(e1.code).toBe(Code.UNIMPLEMENTED);
    expect(e1.message).toContain('Missing');
    const e2 = await rejection(client.call('test.v1.Nothing', 'Echo', Buffer.alloc(0)));
    expect(e2.code).toBe(Code.UNIMPLEMENTED);
    expect(e2.message).toContain('test.v1.Nothing');
    const e3 = await rejection(client.call(EchoService, 'Other', {}));
    expect(e3.code).toBe(Code.UNIMPLEMENTED);
    // Not even in the .proto: refused locally.
    const e4 = await rejection(client.call(EchoService, 'Missing', {}));
    expect(e4.code).toBe(Code.UNIMPLEMENTED);
    // A streaming method through the unary entry point is a local error.
    const e5 = await rejection(client.call(EchoService, 'Range', {}));
    expect(e5.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('sends and receives raw bytes when the service is given by name', async () => {
    const resp = await client.call<Buffer>('test.v1.Echo', 'Echo', Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]));
    expect(Buffer.isBuffer(resp)).toBe(true);
    expect(EchoResponse.toObject(EchoResponse.decode(resp)).text).toBe('abc');
    const e = await rejection(client.call('test.v1.Echo', 'Echo', { text: 'x' }));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('matches concurrent responses that arrive out of order', async () => {
    const order: string[] = [];
    const calls = [
      { text: 'slow', delayMs: 90 },
      { text: 'fast', delayMs: 5 },
      { text: 'medium', delayMs: 45 },
    ].map((r) =>
      client.call(EchoService, 'Echo', r).then((resp: { text: string }) => {
        order.push(resp.text);
        return resp.text;
      }),
    );
    expect(await Promise.all(calls)).toEqual(['slow', 'fast', 'medium']);
    expect(order).toEqual(['fast', 'medium', 'slow']);
  });

  it('handles many calls in flight at once', async () => {
    const texts = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const results = await Promise.all(texts.map((text, i) => client.call(EchoService, 'Echo', { text, delayMs: i % 7 })));
    expect(results.map((r: { text: string }) => r.text)).toEqual(texts);
  });

  it('times out with DEADLINE_EXCEEDED; the server sees the deadline and aborts the handler', async () => {
    const started = Date.now();
    const e = await rejection(client.call(EchoService, 'Echo', { text: 'hang' }, { timeoutMs: 80 }));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    expect(lastCtx?.deadline).toBeGreaterThanOrEqual(started + 70);
    await sleep(20);
    expect(hung[0].aborted).toBe(true);
    // The connection is still fine.
    expect((await client.call(EchoService, 'Echo', { text: 'after' })).text).toBe('after');
  });

  it('rejects a call immediately for a non-positive timeout or an aborted signal', async () => {
    expect((await rejection(client.call(EchoService, 'Echo', { text: 'x' }, { timeoutMs: 0 }))).code).toBe(Code.DEADLINE_EXCEEDED);
    const ac = new AbortController();
    ac.abort();
    expect((await rejection(client.call(EchoService, 'Echo', { text: 'x' }, { signal: ac.signal }))).code).toBe(Code.CANCELLED);
  });

  it('cancels a pending call when its signal aborts', async () => {
    const ac = new AbortController();
    const p = client.call(EchoService, 'Echo', { text: 'hang' }, { signal: ac.signal });
    await sleep(20);
    ac.abort();
    expect((await rejection(p)).code).toBe(Code.CANCELLED);
  });

  it('close() rejects pending calls with UNAVAILABLE and emits close', async () => {
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const pending = [client.call(EchoService, 'Echo', { text: 'hang' }), client.call(EchoService, 'Echo', { text: 'hang' })];
    await sleep(20);
    client.close();
    for (const p of pending) {
      const e = await rejection(p);
      expect([e.code, e.message]).toEqual([Code.UNAVAILABLE, 'connection closed']);
    }
    await closed;
    expect(client.closed).toBe(true);
    expect((await rejection(client.call(EchoService, 'Echo', { text: 'x' }))).code).toBe(Code.UNAVAILABLE);
    // The server side saw the connection go and aborted its handlers.
    await sleep(20);
    expect(hung.every((s) => s.aborted)).toBe(true);
  });

  it('fails pending calls with UNAVAILABLE when the server goes away', async () => {
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const pending = client.call(EchoService, 'Echo', { text: 'hang' });
    await sleep(20);
    await server.close({ graceMs: 0 });
    expect((await rejection(pending)).code).toBe(Code.UNAVAILABLE);
    await closed;
  });
});

describe('TtrpcClient against a raw peer', () => {
  let raw: RawServer;
  let client: TtrpcClient;

  beforeEach(async () => {
    raw = await RawServer.start();
  });
  afterEach(async () => {
    client?.close();
    await raw.close();
  });

  it('uses odd increasing stream ids and sends service, method, payload, timeout and metadata', async () => {
    client = await TtrpcClient.connect(raw.path);
    const p1 = client.call(EchoService, 'Echo', { text: 'one' }, { timeoutMs: 1500, metadata: { k: ['v1', 'v2'] } });
    const p2 = client.call('test.v1.Echo', 'Echo', Buffer.from([0x0a, 0x01, 0x32]));
    const p3 = client.call(EchoService, 'Echo', { text: 'three' });
    const peer = await raw.peer();
    const [f1, f3] = await Promise.all([peer.frameOn(1), peer.frameOn(3), peer.frameOn(5)]);
    expect(peer.frames.map((f) => [f.streamId, f.type, f.flags])).toEqual([
      [1, FrameType.Request, 0],
      [3, FrameType.Request, 0],
      [5, FrameType.Request, 0],
    ]);
    const r1 = decodeRequest(f1.data);
    expect(r1).toMatchObject({ service: 'test.v1.Echo', method: 'Echo', timeoutNano: 1500e6 });
    expect(r1.metadata).toEqual([
      { key: 'k', value: 'v1' },
      { key: 'k', value: 'v2' },
    ]);
    expect(Buffer.from(r1.payload).toString('hex')).toBe('0a036f6e65');
    expect(decodeRequest(f3.data).timeoutNano).toBe(0);
    // Answer out of order.
    peer.sendFrame(5, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('five')));
    peer.sendFrame(1, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('one!')));
    peer.sendFrame(3, FrameType.Response, 0, encodeResponse(Code.ABORTED, 'nope'));
    expect((await p3).text).toBe('five');
    expect((await p1).text).toBe('one!');
    const e = await rejection(p2);
    expect([e.code, e.message]).toEqual([Code.ABORTED, 'nope']);
  });

  it('continues another session past its stream ids when asked (firstStreamId): its late answers match no call', async () => {
    client = await TtrpcClient.connect(raw.path, { firstStreamId: 7 });
    expect(client.unusedStreamId).toBe(7);
    const call = client.call(EchoService, 'Echo', { text: 'mine' });
    expect(client.unusedStreamId).toBe(9);
    const peer = await raw.peer();
    await peer.frameOn(7);
    // What a template's session left queued: an answer to its stream 3, an error on 5.
    peer.sendFrame(3, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('stale')));
    peer.sendFrame(5, FrameType.Response, 0, encodeResponse(Code.INVALID_ARGUMENT, 'stale error'));
    peer.sendFrame(7, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('fresh')));
    expect((await call).text).toBe('fresh');
    expect(peer.frames.map((f) => f.streamId)).toEqual([7]);
    for (const bad of [0, 2, -1, 1.5, 2 ** 32 + 1]) expect(() => new TtrpcClient(new PassThrough(), { firstStreamId: bad })).toThrow(RangeError);
  });

  it('times out locally when the server never answers, and ignores a late response', async () => {
    client = await TtrpcClient.connect(raw.path);
    const started = Date.now();
    const e = await rejection(client.call(EchoService, 'Echo', { text: 'x' }, { timeoutMs: 60 }));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    const peer = await raw.peer();
    expect(decodeRequest((await peer.frameOn(1)).data).timeoutNano).toBe(60e6);
    peer.sendFrame(1, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('late')));
    const next = client.call(EchoService, 'Echo', { text: 'y' });
    await peer.frameOn(3);
    peer.sendFrame(3, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('on time')));
    expect((await next).text).toBe('on time');
  });

  it('refuses an oversized outgoing message with RESOURCE_EXHAUSTED without writing anything', async () => {
    client = await TtrpcClient.connect(raw.path, { maxMessageSize: 1024 });
    const e = await rejection(client.call(EchoService, 'Echo', { blob: Buffer.alloc(2000) }));
    expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
    const e2 = await rejection(client.call('test.v1.Echo', 'Echo', Buffer.alloc(5 * 1024 * 1024)));
    expect(e2.code).toBe(Code.RESOURCE_EXHAUSTED);
    const peer = await raw.peer();
    let bytes = 0;
    peer.socket.on('data', (c: Buffer) => (bytes += c.length));
    await sleep(50);
    expect(bytes).toBe(0);
    expect(peer.frames).toHaveLength(0);
    // The refused calls consumed no stream id.
    void client.call(EchoService, 'Echo', { text: 'small' }).catch(() => undefined);
    expect((await peer.frameOn(1)).type).toBe(FrameType.Request);
  });

  it('refuses messages over the default 4 MiB limit', async () => {
    client = await TtrpcClient.connect(raw.path);
    const e = await rejection(client.call(EchoService, 'Echo', { blob: Buffer.alloc(4 * 1024 * 1024) }));
    expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it('fails only the affected call on an oversized or undecodable response', async () => {
    client = await TtrpcClient.connect(raw.path, { maxMessageSize: 100 });
    const a = client.call(EchoService, 'Echo', { text: 'a' });
    const b = client.call(EchoService, 'Echo', { text: 'b' });
    const c = client.call(EchoService, 'Echo', { text: 'c' });
    const peer = await raw.peer();
    await peer.frameOn(5);
    peer.sendFrame(1, FrameType.Response, 0, Buffer.alloc(500, 0x0a));
    peer.sendFrame(3, FrameType.Response, 0, Buffer.from([0x0f, 0x01]));
    peer.sendFrame(99, FrameType.Response, 0, encodeResponse(Code.OK, '')); // unknown stream: ignored
    peer.sendFrame(5, 0x09, 0, Buffer.from('future frame type')); // ignored
    peer.sendFrame(5, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('fine')));
    expect((await rejection(a)).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((await rejection(b)).code).toBe(Code.INTERNAL);
    expect((await c).text).toBe('fine');
  });

  it("fails a call whose answer is over its own maxResponseBytes, undecoded, and leaves the other calls' limits alone", async () => {
    client = await TtrpcClient.connect(raw.path);
    const small = client.call(EchoService, 'Echo', { text: 'a' }, { maxResponseBytes: 64 });
    const big = client.call(EchoService, 'Echo', { text: 'b' });
    const peer = await raw.peer();
    await peer.frameOn(3);
    const answer = encodeResponse(Code.OK, '', echoBytes('x'.repeat(100)));
    peer.sendFrame(1, FrameType.Response, 0, answer);
    peer.sendFrame(3, FrameType.Response, 0, answer);
    const e = await rejection(small);
    expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(e.message).toBe(`ttrpc: an answer of ${answer.length} bytes is over this call's limit of 64`);
    expect((await big).text).toBe('x'.repeat(100));
  });

  it('survives the server closing mid-frame', async () => {
    client = await TtrpcClient.connect(raw.path);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const a = client.call(EchoService, 'Echo', { text: 'a' });
    const peer = await raw.peer();
    await peer.frameOn(1);
    peer.write(encodeFrame(1, FrameType.Response, 0, encodeResponse(Code.OK, '', echoBytes('cut'))).subarray(0, 14));
    await sleep(10);
    peer.socket.end();
    expect((await rejection(a)).code).toBe(Code.UNAVAILABLE);
    await closed;
  });

  it('reports a failed connect as UNAVAILABLE', async () => {
    const e = await rejection(TtrpcClient.connect(tmpSocketPath('nobody.sock')));
    expect(e.code).toBe(Code.UNAVAILABLE);
  });
});
