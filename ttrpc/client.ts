import { EventEmitter } from 'events';
import * as net from 'net';
import type { Duplex } from 'stream';

import pino from 'pino';
import type * as protobuf from 'protobufjs/light';

import { Code } from './codes';
import { TtrpcError } from './errors';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  FLAG_NO_DATA,
  FLAG_REMOTE_CLOSED,
  FLAG_REMOTE_OPEN,
  type Frame,
  FrameDecoder,
  FrameType,
  encodeFrame,
  writeFrame,
  oversizedError,
} from './frame';
import {
  type MethodInfo,
  type Metadata,
  type RequestMessage,
  decodeMessage,
  decodeResponse,
  encodeMessage,
  encodeRequest,
  errorMessage,
  metadataToPairs,
  methodInfo,
  serviceName,
} from './messages';
import { AsyncQueue } from './queue';

export interface ClientOptions {
  /** Largest frame data sent or accepted, in bytes (default 4 MiB). */
  maxMessageSize?: number;
  logger?: pino.Logger;
  /**
   * The first stream id (odd; default 1). A client that continues another's session on
   * the same server connection (a VM clone's agent, whose virtio-serial port cannot tell
   * that the host reconnected) starts past the ids that session used: the server refuses
   * an id that does not increase, and a late answer to an old id must not match a new call.
   */
  firstStreamId?: number;
}

export interface CallOptions {
  /** Deadline relative to now; sent to the server as timeout_nano and enforced locally. */
  timeoutMs?: number;
  metadata?: Metadata;
  /** Aborting rejects the call locally with CANCELLED (ttrpc has no cancel frame). */
  signal?: AbortSignal;
  /**
   * A smaller limit than the connection's for this call's answers: a bigger one fails
   * the call with RESOURCE_EXHAUSTED before it is decoded (decoding is the costly part).
   */
  maxResponseBytes?: number;
}

/** A service given as a protobufjs Service (typed messages) or by full name (raw bytes in and out). */
export type ServiceRef = protobuf.Service | string;
export type RequestSource = Iterable<object> | AsyncIterable<object>;

interface Target {
  name: string;
  info?: MethodInfo;
}

interface Sink {
  message(value: unknown): void;
  end(): void;
  error(err: unknown): void;
}

const MAX_TIMER_MS = 0x7fffffff;
const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient extends EventEmitter {
  readonly maxMessageSize: number;
  private readonly logger: pino.Logger;
  private readonly decoder: FrameDecoder;
  private readonly calls = new Map<number, ClientCall>();
  private nextStreamId: number;
  private closing = false;
  private closeEmitted = false;

  constructor(
    private readonly stream: Duplex,
    opts: ClientOptions = {},
  ) {
    super();
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const first = opts.firstStreamId ?? 1;
    if (!Number.isInteger(first) || first % 2 !== 1 || first < 1 || first > MAX_STREAM_ID) throw new RangeError(`ttrpc: the first stream id must be an odd integer from 1 to ${MAX_STREAM_ID}, got ${first}`);
    this.nextStreamId = first;
    this.logger = opts.logger ?? pino({ level: 'silent' });
    this.decoder = new FrameDecoder(this.maxMessageSize);
    stream.on('data', (chunk: Buffer) => this.onChunk(chunk));
    stream.on('end', () => {
      this.shutdownCalls();
      stream.destroy();
    });
    stream.on('error', (err) => {
      this.logger.debug({ err }, 'ttrpc: client connection error');
      this.shutdownCalls();
      stream.destroy();
    });
    stream.on('close', () => {
      this.shutdownCalls();
      if (!this.closeEmitted) {
        this.closeEmitted = true;
        this.emit('close');
      }
    });
  }

  /** The id the next call gets: every id below it was used (or skipped) on this connection. */
  get unusedStreamId(): number {
    return this.nextStreamId;
  }

  /** Connect to a ttrpc server on a unix socket. */
  static connect(path: string, opts: ClientOptions = {}): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      const onError = (err: Error): void => {
        sock.destroy();
        reject(new TtrpcError(Code.UNAVAILABLE, `ttrpc: cannot connect to ${path}: ${err.message}`, { cause: err }));
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        sock.off('error', onError);
        resolve(new TtrpcClient(sock, opts));
      });
    });
  }

  /** True once close() was called or the connection ended. */
  get closed(): boolean {
    return this.closing;
  }

  /** Unary call. */
  call<Resp = any>(service: ServiceRef, method: string, request: object, opts: CallOptions = {}): Promise<Resp> {
    return new Promise<Resp>((resolve, reject) => {
      const sink = unarySink<Resp>(resolve, reject);
      try {
        const target = this.target(service, method, false, false);
        const payload = encodeMessage(target.info?.requestType, request, 'request');
        this.open(target, method, payload, 0, opts, sink, false);
      } catch (err) {
        reject(err);
      }
    });
  }

  /** Server-streaming call: one request, the responses as an async iterator. */
  callServerStream<Resp = any>(service: ServiceRef, method: string, request: object, opts: CallOptions = {}): AsyncIterableIterator<Resp> {
    let call: ClientCall | undefined;
    const queue = new AsyncQueue<Resp>(() => call?.cancel());
    try {
      const target = this.target(service, method, false, true);
      const payload = encodeMessage(target.info?.requestType, request, 'request');
      call = this.open(target, method, payload, FLAG_REMOTE_CLOSED, opts, queueSink(queue), true);
    } catch (err) {
      queue.fail(err);
    }
    return queue;
  }

  /** Client-streaming call: requests from an (async) iterable, one response. */
  callClientStream<Resp = any>(service: ServiceRef, method: string, requests: RequestSource, opts: CallOptions = {}): Promise<Resp> {
    return new Promise<Resp>((resolve, reject) => {
      const sink = unarySink<Resp>(resolve, reject);
      try {
        const target = this.target(service, method, true, false);
        const call = this.open(target, method, undefined, FLAG_REMOTE_OPEN, opts, sink, false);
        void this.pump(call, target, requests);
      } catch (err) {
        reject(err);
      }
    });
  }

  /** Bidirectional call: requests from an (async) iterable, responses as an async iterator. */
  callBidiStream<Resp = any>(service: ServiceRef, method: string, requests: RequestSource, opts: CallOptions = {}): AsyncIterableIterator<Resp> {
    let call: ClientCall | undefined;
    const queue = new AsyncQueue<Resp>(() => call?.cancel());
    try {
      const target = this.target(service, method, true, true);
      call = this.open(target, method, undefined, FLAG_REMOTE_OPEN, opts, queueSink(queue), true);
      void this.pump(call, target, requests);
    } catch (err) {
      queue.fail(err);
    }
    return queue;
  }

  /** Close the connection; calls still pending reject with UNAVAILABLE. */
  close(): void {
    this.shutdownCalls();
    if (this.stream.destroyed) return;
    const timer = setTimeout(() => this.stream.destroy(), 1000);
    timer.unref();
    this.stream.end(() => {
      clearTimeout(timer);
      this.stream.destroy();
    });
  }

  /** @internal */
  forget(call: ClientCall): void {
    if (this.calls.get(call.id) === call) this.calls.delete(call.id);
  }

  private target(service: ServiceRef, method: string, requestStream: boolean, responseStream: boolean): Target {
    if (typeof service === 'string') return { name: service };
    const name = serviceName(service);
    const info = methodInfo(service, method);
    if (!info) throw new TtrpcError(Code.UNIMPLEMENTED, `ttrpc: service ${name} has no method ${method}`);
    if (info.requestStream !== requestStream || info.responseStream !== responseStream) {
      throw new TtrpcError(
        Code.INVALID_ARGUMENT,
        `ttrpc: ${name}/${method} is ${describe(info.requestStream, info.responseStream)}, not ${describe(requestStream, responseStream)}`,
      );
    }
    return { name, info };
  }

  private open(
    target: Target,
    method: string,
    payload: Uint8Array | undefined,
    flags: number,
    opts: CallOptions,
    sink: Sink,
    responseStream: boolean,
  ): ClientCall {
    if (this.closing) throw new TtrpcError(Code.UNAVAILABLE, 'connection closed');
    if (opts.signal?.aborted) throw abortError(opts.signal);
    if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) {
      throw new TtrpcError(Code.DEADLINE_EXCEEDED, 'deadline exceeded');
    }
    const req: Partial<RequestMessage> = { service: target.name, method, metadata: metadataToPairs(opts.metadata) };
    if (payload !== undefined) req.payload = payload;
    if (opts.timeoutMs !== undefined) req.timeoutNano = Math.max(1, Math.round(opts.timeoutMs * 1e6));
    if (this.nextStreamId > MAX_STREAM_ID) {
      throw new TtrpcError(Code.RESOURCE_EXHAUSTED, 'ttrpc: stream ids exhausted on this connection');
    }
    // Throws RESOURCE_EXHAUSTED before anything is written or a stream id is used.
    const frame = encodeFrame(this.nextStreamId, FrameType.Request, flags, encodeRequest(req), this.maxMessageSize);
    const call = new ClientCall(this, this.nextStreamId, target.info?.responseType, responseStream, sink);
    this.nextStreamId += 2;
    this.calls.set(call.id, call);
    call.arm(opts);
    this.write(frame).catch((err: unknown) => call.fail(err));
    return call;
  }

  /** Send the client side of a stream: one Data frame per message, then a closing frame. */
  private async pump(call: ClientCall, target: Target, requests: RequestSource): Promise<void> {
    try {
      for await (const msg of requests) {
        if (call.settled) return;
        const payload = encodeMessage(target.info?.requestType, msg, 'request');
        await this.write(encodeFrame(call.id, FrameType.Data, 0, payload, this.maxMessageSize));
      }
      if (call.settled) return;
      await this.write(encodeFrame(call.id, FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA));
    } catch (err) {
      // The server's side of the stream stays open (ttrpc has no reset); the call fails locally.
      call.fail(err);
    }
  }

  private write(frame: Buffer): Promise<void> {
    return writeFrame(this.stream, frame, this.closing, 'connection closed');
  }

  private onChunk(chunk: Buffer): void {
    for (const item of this.decoder.push(chunk)) {
      try {
        if (item.kind === 'oversized') {
          const { streamId, length } = item.header;
          this.logger.warn({ streamId, length }, 'ttrpc: discarded oversized frame from server');
          this.calls.get(streamId)?.fail(oversizedError(length, this.maxMessageSize));
          continue;
        }
        const call = this.calls.get(item.frame.streamId);
        if (!call) {
          this.logger.debug({ streamId: item.frame.streamId, type: item.frame.type }, 'ttrpc: frame for inactive stream');
          continue;
        }
        call.onFrame(item.frame);
      } catch (err) {
        this.logger.error({ err }, 'ttrpc: internal error handling frame');
      }
    }
  }

  private shutdownCalls(): void {
    this.closing = true;
    const err = new TtrpcError(Code.UNAVAILABLE, 'connection closed');
    for (const call of [...this.calls.values()]) call.fail(err);
  }
}

class ClientCall {
  settled = false;
  private timer?: NodeJS.Timeout;
  private signal?: AbortSignal;
  private maxResponseBytes?: number;
  private readonly onAbort = (): void => this.fail(abortError(this.signal));

  constructor(
    private readonly client: TtrpcClient,
    readonly id: number,
    private readonly responseType: protobuf.Type | undefined,
    private readonly responseStream: boolean,
    private readonly sink: Sink,
  ) {}

  arm(opts: CallOptions): void {
    this.maxResponseBytes = opts.maxResponseBytes;
    if (opts.timeoutMs !== undefined && opts.timeoutMs <= MAX_TIMER_MS) {
      this.timer = setTimeout(() => this.fail(new TtrpcError(Code.DEADLINE_EXCEEDED, 'deadline exceeded')), opts.timeoutMs);
      this.timer.unref();
    }
    if (opts.signal) {
      this.signal = opts.signal;
      opts.signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  onFrame(frame: Frame): void {
    if (this.settled) return;
    if (this.maxResponseBytes !== undefined && frame.data.length > this.maxResponseBytes) {
      this.fail(new TtrpcError(Code.RESOURCE_EXHAUSTED, `ttrpc: an answer of ${frame.data.length} bytes is over this call's limit of ${this.maxResponseBytes}`));
      return;
    }
    if (frame.type === FrameType.Response) {
      let code: number;
      let message: string;
      let payload: Uint8Array;
      try {
        const resp = decodeResponse(frame.data);
        code = resp.status?.code ?? Code.OK;
        message = resp.status?.message ?? '';
        payload = resp.payload;
      } catch (err) {
        this.fail(new TtrpcError(Code.INTERNAL, `ttrpc: cannot decode response: ${errorMessage(err)}`, { cause: err }));
        return;
      }
      if (code !== Code.OK) {
        this.fail(new TtrpcError(code, message));
        return;
      }
      // A unary answer is always a message; on a stream a final Response only adds one if it carries data.
      if (!this.responseStream || payload.length > 0) {
        if (!this.deliver(payload)) return;
      }
      this.settle();
      this.sink.end();
    } else if (frame.type === FrameType.Data) {
      if (!this.responseStream) {
        this.fail(new TtrpcError(Code.INTERNAL, 'ttrpc: data frame received on a call without a response stream'));
        return;
      }
      const remoteClosed = (frame.flags & FLAG_REMOTE_CLOSED) !== 0;
      // Like containerd's client, only a closing frame marked no-data carries no message.
      if (!(remoteClosed && (frame.flags & FLAG_NO_DATA) !== 0)) {
        if (!this.deliver(frame.data)) return;
      }
      if (remoteClosed) {
        this.settle();
        this.sink.end();
      }
    }
    // Other frame types from a server are ignored.
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settle();
    this.sink.error(err);
  }

  /** The consumer gave up: forget the stream; frames still arriving for it are dropped. */
  cancel(): void {
    if (this.settled) return;
    this.settle();
  }

  private deliver(data: Uint8Array): boolean {
    let value: unknown;
    try {
      value = decodeMessage(this.responseType, data);
    } catch (err) {
      this.fail(new TtrpcError(Code.INTERNAL, `ttrpc: error unmarshalling response: ${errorMessage(err)}`, { cause: err }));
      return false;
    }
    this.sink.message(value);
    return true;
  }

  private settle(): void {
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.client.forget(this);
  }
}

function queueSink<T>(queue: AsyncQueue<T>): Sink {
  return {
    message: (v) => queue.push(v as T),
    end: () => queue.end(),
    error: (e) => queue.fail(e),
  };
}

function abortError(signal: AbortSignal | undefined): TtrpcError {
  const reason: unknown = signal?.reason;
  if (reason instanceof TtrpcError) return reason;
  return new TtrpcError(Code.CANCELLED, 'call cancelled', { cause: reason });
}

function describe(requestStream: boolean, responseStream: boolean): string {
  if (requestStream && responseStream) return 'bidirectional-streaming';
  if (requestStream) return 'client-streaming';
  if (responseStream) return 'server-streaming';
  return 'unary';
}

/** A sink for calls with one response: the last message, delivered at the end. */
function unarySink<Resp>(resolve: (value: Resp) => void, reject: (err: unknown) => void): Sink {
  let value: unknown;
  return { message: (v) => (value = v), end: () => resolve(value as Resp), error: reject };
}
