import { Code } from './codes';
import { TtrpcError } from './errors';
import { FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, FrameType } from './frame';
import { decodeRequest, encodeResponse } from './messages';
import { TtrpcClient } from './client';
import { CallContext, SendFn, TtrpcServer } from './server';
import { EchoService, failOnUnhandledRejections, Num, RawServer, sleep, tmpSocketPath } from './test-helpers';

const num = (value: number): Uint8Array => Num.encode(Num.fromObject({ value })).finish();

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function failure(p: Promise<unknown>): Promise<TtrpcError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TtrpcError);
    return err as TtrpcError;
  }
  throw new Error('expected failure');
}

failOnUnhandledRejections();

describe('streaming calls between TtrpcClient and TtrpcServer', () => {
  let server: TtrpcServer;
  let client: TtrpcClient;
  let rangeCtx: CallContext | undefined;

  beforeEach(async () => {
    rangeCtx = undefined;
    server = new TtrpcServer();
    server.addService(EchoService, {
      Range: async (req: { count: number; failAfter: number }, ctx: CallContext, send: SendFn) => {
        rangeCtx = ctx;
        for (let i = 0; i < req.count; i++) {
          if (req.failAfter > 0 && i === req.failAfter) throw new TtrpcError(Code.DATA_LOSS, `lost after ${i}`);
          await send({ value: i });
          if (req.count > 100) await sleep(5);
        }
      },
      Sum: async (reqs: AsyncIterable<{ value: number }>, ctx: CallContext) => {
        let total = 0;
        let count = 0;
        for await (const r of reqs) {
          total += r.value;
          count++;
        }
        if (ctx.metadata.fail) throw new TtrpcError(Code.OUT_OF_RANGE, 'asked to fail');
        return { total, count };
      },
      Chat: async (reqs: AsyncIterable<{ text: string }>, _ctx: CallContext, send: SendFn) => {
        for await (const r of reqs) await send({ text: r.text.toUpperCase() });
        await send({ text: 'bye' });
      },
    });
    const path = tmpSocketPath();
    await server.listen(path);
    client = await TtrpcClient.connect(path);
  });

  afterEach(async () => {
    client.close();
    await server.close({ graceMs: 0 });
  });

  it('receives every message of a server stream, then ends', async () => {
    const out = await collect(client.callServerStream(EchoService, 'Range', { count: 5 }, { metadata: { who: ['test'] } }));
    expect(out).toEqual([0, 1, 2, 3, 4].map((value) => ({ value })));
    expect(rangeCtx?.metadata).toEqual({ who: ['test'] });
  });

  it('ends an empty server stream cleanly', async () => {
    expect(await collect(client.callServerStream(EchoService, 'Range', { count: 0 }))).toEqual([]);
  });

  it('surfaces a server-stream error after the messages sent before it', async () => {
    const got: unknown[] = [];
    const err = await failure(
      (async () => {
        for await (const m of client.callServerStream(EchoService, 'Range', { count: 5, failAfter: 2 })) got.push(m);
      })(),
    );
    expect(got).toEqual([{ value: 0 }, { value: 1 }]);
    expect([err.code, err.message]).toEqual([Code.DATA_LOSS, 'lost after 2']);
  });

  it('lets the consumer stop early without disturbing the connection', async () => {
    const it = client.callServerStream<{ value: number }>(EchoService, 'Range', { count: 1000 });
    for await (const m of it) {
      if (m.value === 2) break;
    }
    expect((await client.callClientStream(EchoService, 'Sum', [{ value: 1 }])).total).toBe(1);
  });

  it('applies the call timeout to a server stream', async () => {
    const it = client.callServerStream(EchoService, 'Range', { count: 1000 }, { timeoutMs: 60 });
    const err = await failure(collect(it));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    await sleep(20);
    expect(rangeCtx?.signal.aborted).toBe(true);
  });

  it('sends a client stream from an array or an async generator', async () => {
    expect(await client.callClientStream(EchoService, 'Sum', [{ value: 1 }, { value: 2 }, { value: 39 }])).toEqual({ total: 42, count: 3 });
    async function* gen(): AsyncGenerator<object> {
      for (let i = 1; i <= 4; i++) {
        await sleep(2);
        yield { value: i };
      }
    }
    expect(await client.callClientStream(EchoService, 'Sum', gen())).toEqual({ total: 10, count: 4 });
    expect(await client.callClientStream(EchoService, 'Sum', [])).toEqual({ total: 0, count: 0 });
  });

  it('propagates a client-stream handler error', async () => {
    const err = await failure(client.callClientStream(EchoService, 'Sum', [{ value: 1 }], { metadata: { fail: ['1'] } }));
    expect([err.code, err.message]).toEqual([Code.OUT_OF_RANGE, 'asked to fail']);
  });

  it('fails a client stream whose request source throws', async () => {
    async function* broken(): AsyncGenerator<object> {
      yield { value: 1 };
      throw new TtrpcError(Code.ABORTED, 'source broke');
    }
    const err = await failure(client.callClientStream(EchoService, 'Sum', broken()));
    expect(err.code).toBe(Code.ABORTED);
  });

  it('runs a bidirectional stream', async () => {
    const out = await collect(client.callBidiStream(EchoService, 'Chat', [{ text: 'a' }, { text: 'b' }]));
    expect(out.map((m: { text: string }) => m.text)).toEqual(['A', 'B', 'bye']);
  });

  it('fails an open server stream with UNAVAILABLE when the client closes', async () => {
    const it = client.callServerStream(EchoService, 'Range', { count: 1000 });
    const first = await it.next();
    expect(first.value).toEqual({ value: 0 });
    client.close();
    const err = await failure(collect(it));
    expect(err.code).toBe(Code.UNAVAILABLE);
  });
});

describe('streaming against a raw peer', () => {
  let raw: RawServer;
  let client: TtrpcClient;

  beforeEach(async () => {
    raw = await RawServer.start();
    client = await TtrpcClient.connect(raw.path);
  });
  afterEach(async () => {
    client.close();
    await raw.close();
  });

  it('opens a server stream with remote-closed and accepts a final Response instead of a closing Data frame', async () => {
    const it = client.callServerStream(EchoService, 'Range', { count: 2 });
    const peer = await raw.peer();
    const req = await peer.frameOn(1);
    expect([req.type, req.flags]).toEqual([FrameType.Request, FLAG_REMOTE_CLOSED]);
    expect(decodeRequest(req.data).method).toBe('Range');
    peer.sendFrame(1, FrameType.Data, 0, num(7));
    peer.sendFrame(1, FrameType.Data, 0, Buffer.alloc(0)); // empty message
    peer.sendFrame(1, FrameType.Data, FLAG_REMOTE_CLOSED, num(9)); // last message with data
    expect(await collect(it)).toEqual([{ value: 7 }, { value: 0 }, { value: 9 }]);

    const it2 = client.callServerStream(EchoService, 'Range', { count: 2 });
    await peer.frameOn(3);
    peer.sendFrame(3, FrameType.Data, 0, num(1));
    peer.sendFrame(3, FrameType.Response, 0, encodeResponse(Code.OK, ''));
    expect(await collect(it2)).toEqual([{ value: 1 }]);
  });

  it('sends a client stream as Request[remote-open], Data frames, then Data[remote-closed|no-data]', async () => {
    const p = client.callClientStream(EchoService, 'Sum', [{ value: 3 }, { value: 4 }]);
    const peer = await raw.peer();
    const frames = await peer.framesOn(1, 4);
    expect(frames.map((f) => [f.type, f.flags, f.data.length])).toEqual([
      [FrameType.Request, FLAG_REMOTE_OPEN, expect.any(Number)],
      [FrameType.Data, 0, 2],
      [FrameType.Data, 0, 2],
      [FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, 0],
    ]);
    expect(decodeRequest(frames[0].data).hasPayload).toBe(false);
    const SumResponse = EchoService.root.lookupType('test.v1.SumResponse');
    peer.sendFrame(1, FrameType.Response, 0, encodeResponse(Code.OK, '', SumResponse.encode({ total: 7, count: 2 }).finish()));
    expect(await p).toEqual({ total: 7, count: 2 });
  });

  it('rejects Data frames on a unary call', async () => {
    const p = client.call(EchoService, 'Echo', { text: 'x' });
    const peer = await raw.peer();
    await peer.frameOn(1);
    peer.sendFrame(1, FrameType.Data, 0, Buffer.alloc(0));
    expect((await failure(p)).code).toBe(Code.INTERNAL);
  });
});
