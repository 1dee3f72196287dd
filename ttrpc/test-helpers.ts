// Shared fixtures for the ttrpc unit tests (not part of the public API).
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import * as protobuf from 'protobufjs';

import { Frame, FrameDecoder, FrameType, encodeFrame } from './frame';
import { RequestMessage, ResponseMessage, decodeResponse, encodeRequest } from './messages';

export const TEST_PROTO = `
syntax = "proto3";
package test.v1;

message EchoRequest {
  string text = 1;
  int64 big = 2;
  bytes blob = 3;
  uint32 delay_ms = 4;
}
message EchoResponse {
  string text = 1;
  int64 big = 2;
  bytes blob = 3;
  Num num = 4;
}
message RangeRequest {
  uint32 count = 1;
  int32 fail_after = 2;
}
message Num {
  int64 value = 1;
}
message SumResponse {
  int64 total = 1;
  uint32 count = 2;
}

service Echo {
  rpc Echo(EchoRequest) returns (EchoResponse);
  rpc Other(EchoRequest) returns (EchoResponse);
  rpc Range(RangeRequest) returns (stream Num);
  rpc Sum(stream Num) returns (SumResponse);
  rpc Chat(stream EchoRequest) returns (stream EchoResponse);
}
`;

export const testRoot = protobuf.parse(TEST_PROTO).root;
export const EchoService = testRoot.lookupService('test.v1.Echo');
export const EchoRequest = testRoot.lookupType('test.v1.EchoRequest');
export const EchoResponse = testRoot.lookupType('test.v1.EchoResponse');
export const Num = testRoot.lookupType('test.v1.Num');

export function encodeEcho(obj: Record<string, unknown>): Uint8Array {
  return EchoRequest.encode(EchoRequest.fromObject(obj)).finish();
}

const tmpDirs: string[] = [];

/** A fresh unix socket path in its own temp directory. */
export function tmpSocketPath(name = 'ttrpc.sock'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttrpc-test-'));
  tmpDirs.push(dir);
  return path.join(dir, name);
}

export function removeTmpDirs(): void {
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** A seeded generator of numbers in [0, 1) (xorshift32): the same seed, the same run. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A hand-driven ttrpc peer speaking raw frames over a socket. */
export class RawPeer {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder(Number.MAX_SAFE_INTEGER);
  private waiters: (() => void)[] = [];

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.decoder.push(chunk)) {
        if (item.kind === 'frame') this.frames.push(item.frame);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static connect(socketPath: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawPeer(s));
      });
    });
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  sendFrame(streamId: number, type: number, flags: number, data?: Uint8Array): void {
    this.write(encodeFrame(streamId, type, flags, data, Number.MAX_SAFE_INTEGER));
  }

  sendRequest(streamId: number, req: Partial<RequestMessage>, flags = 0): void {
    this.sendFrame(streamId, FrameType.Request, flags, encodeRequest(req));
  }

  /** Wait for the first received frame on `streamId` (any frame already received counts). */
  async frameOn(streamId: number, timeoutMs = 2000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find((x) => x.streamId === streamId);
      if (f) return f;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame on stream ${streamId} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Wait until `count` frames have arrived on `streamId`. */
  async framesOn(streamId: number, count: number, timeoutMs = 2000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const fs_ = this.frames.filter((x) => x.streamId === streamId);
      if (fs_.length >= count) return fs_;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`only ${fs_.length}/${count} frames on stream ${streamId}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async responseOn(streamId: number, timeoutMs?: number): Promise<ResponseMessage> {
    const f = await this.frameOn(streamId, timeoutMs);
    if (f.type !== FrameType.Response) throw new Error(`expected a Response frame, got type ${f.type}`);
    return decodeResponse(f.data);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Records unhandled promise rejections while installed. */
export function trackUnhandledRejections(): { list: unknown[]; dispose(): void } {
  const list: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    list.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  return { list, dispose: () => process.off('unhandledRejection', onRejection) };
}

/** A listening socket whose accepted connections are handed out as RawPeers. */
export class RawServer {
  readonly peers: RawPeer[] = [];
  private waiters: (() => void)[] = [];
  private constructor(
    readonly path: string,
    private readonly server: net.Server,
  ) {
    server.on('connection', (s) => {
      this.peers.push(new RawPeer(s));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async start(): Promise<RawServer> {
    const p = tmpSocketPath('raw.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(p, resolve));
    return new RawServer(p, server);
  }

  async peer(index = 0): Promise<RawPeer> {
    while (this.peers.length <= index) await new Promise<void>((r) => this.waiters.push(r));
    return this.peers[index];
  }

  async close(): Promise<void> {
    for (const p of this.peers) p.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** Fails each test of the file that leaves an unhandled promise rejection behind. */
export function failOnUnhandledRejections(): void {
  let unhandled: ReturnType<typeof trackUnhandledRejections>;
  beforeEach(() => {
    unhandled = trackUnhandledRejections();
  });
  afterEach(async () => {
    await sleep(10);
    unhandled.dispose();
    removeTmpDirs();
    expect(unhandled.list).toEqual([]);
  });
}
