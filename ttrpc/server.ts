import * as fs from 'fs';
import * as net from 'net';
import type { Duplex } from 'stream';

import pino from 'pino';
import type * as protobuf from 'protobufjs/light';

import { Code } from './codes';
import { TtrpcError, statusFromError } from './errors';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  FLAG_NO_DATA,
  FLAG_REMOTE_CLOSED,
  FLAG_REMOTE_OPEN,
  type DecodedItem,
  type Frame,
  FrameDecoder,
  FrameType,
  encodeFrame,
  writeFrame,
  oversizedError,
} from './frame';
import {
  type DecodedRequest,
  type MethodInfo,
  type Metadata,
  decodeMessage,
  decodeRequest,
  encodeMessage,
  encodeResponse,
  errorMessage,
  methodInfo,
  pairsToMetadata,
  serviceName,
} from './messages';
import { AsyncQueue } from './queue';

export interface CallContext {
  /** Request metadata, values grouped by key. */
  metadata: Metadata;
  /** Absolute deadline (ms since epoch) derived from the request's timeout_nano; absent without one. */
  deadline?: number;
  /** Aborted when the deadline passes, the connection closes, or the server shuts down. */
  signal: AbortSignal;
  /** Full service name and method name of the call. */
  service: string;
  method: string;
}

/** Sends one message on a server stream; resolves once it is handed to the transport. */
export type SendFn = (message: object) => Promise<void>;

export type UnaryHandler = (request: any, ctx: CallContext) => Promise<any> | any;
export type ServerStreamHandler = (request: any, ctx: CallContext, send: SendFn) => Promise<void> | void;
export type ClientStreamHandler = (requests: AsyncIterable<any>, ctx: CallContext) => Promise<any> | any;
export type BidiStreamHandler = (requests: AsyncIterable<any>, ctx: CallContext, send: SendFn) => Promise<void> | void;
/** Which signature applies is decided by the method's stream markers in the .proto. */
export type Handler = UnaryHandler | ServerStreamHandler | ClientStreamHandler | BidiStreamHandler;
export type ServiceImpl = Record<string, Handler>;

export interface ServerOptions {
  logger?: pino.Logger;
  /** Largest frame data accepted or sent, in bytes (default 4 MiB). */
  maxMessageSize?: number;
}

export interface ListenOptions {
  /** Permission bits for the socket file (default 0o600). */
  mode?: number;
}

export interface CloseOptions {
  /** How long to let in-flight handlers finish before aborting them (default 1000 ms). */
  graceMs?: number;
}

interface RegisteredMethod extends MethodInfo {
  name: string;
  handler: Handler;
}

interface RegisteredService {
  name: string;
  methods: Map<string, RegisteredMethod>;
}

/** setTimeout cannot wait longer than this; longer deadlines get no timer. */
const MAX_TIMER_MS = 0x7fffffff;

export class TtrpcServer {
  readonly logger: pino.Logger;
  readonly maxMessageSize: number;
  private readonly services = new Map<string, RegisteredService>();
  private readonly connections = new Set<ServerConnection>();
  private readonly listeners: { server: net.Server; path: string }[] = [];
  private idleWaiters: (() => void)[] = [];
  private closing = false;

  constructor(opts: ServerOptions = {}) {
    this.logger = opts.logger ?? pino({ level: 'silent' });
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /**
   * Register an implementation for a protobufjs service. Keys of `impl` are
   * method names as written in the .proto; methods left out answer UNIMPLEMENTED.
   */
  addService(service: protobuf.Service, impl: ServiceImpl): void {
    const name = serviceName(service);
    if (this.services.has(name)) throw new Error(`ttrpc: service ${name} is already registered`);
    const methods = new Map<string, RegisteredMethod>();
    for (const [method, handler] of Object.entries(impl)) {
      if (typeof handler !== 'function') throw new TypeError(`ttrpc: handler for ${name}.${method} is not a function`);
      const info = methodInfo(service, method);
      if (!info) throw new Error(`ttrpc: service ${name} has no method ${method}`);
      methods.set(method, { ...info, name: method, handler });
    }
    this.services.set(name, { name, methods });
  }

  /** Serve ttrpc on one already-established connection. */
  serveConnection(stream: Duplex): void {
    if (this.closing) {
      stream.destroy();
      return;
    }
    const conn = new ServerConnection(this, stream);
    this.connections.add(conn);
    void conn.closed.then(() => {
      this.connections.delete(conn);
      this.checkIdle();
    });
  }

  /**
   * Listen on a unix socket. A leftover socket file nobody answers on is
   * removed first; a live socket or a non-socket file at `path` is an error.
   */
  async listen(path: string, opts: ListenOptions = {}): Promise<void> {
    if (this.closing) throw new Error('ttrpc: server is closed');
    await removeStaleSocket(path);
    const server = net.createServer((sock) => this.serveConnection(sock));
    const mode = opts.mode ?? 0o600;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket file is created inside listen(), synchronously: a umask for just
      // that call means it never exists with wider permissions than `mode`.
      const previousUmask = process.umask(~mode & 0o777);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(previousUmask);
      }
    });
    server.on('error', (err) => this.logger.error({ err, path }, 'ttrpc: listener error'));
    try {
      await fs.promises.chmod(path, mode); // in case the umask trick is not honoured
    } catch (err) {
      server.close();
      throw err;
    }
    this.listeners.push({ server, path });
  }

  /**
   * Stop accepting connections and remove socket files, give in-flight calls
   * up to `graceMs` to finish, then abort what is left and close every connection.
   */
  async close(opts: CloseOptions = {}): Promise<void> {
    this.closing = true;
    const listenersClosed = this.listeners.splice(0).map(({ server, path }) => {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      unlinkQuiet(path);
      return done;
    });
    await this.waitIdle(opts.graceMs ?? 1000);
    const reason = new TtrpcError(Code.UNAVAILABLE, 'ttrpc: server closed');
    await Promise.all([...[...this.connections].map((c) => c.shutdown(reason)), ...listenersClosed]);
  }

  /** @internal */
  lookup(service: string, method: string): RegisteredMethod | TtrpcError {
    const svc = this.services.get(service);
    if (!svc) return new TtrpcError(Code.UNIMPLEMENTED, `service ${service} is not implemented`);
    const m = svc.methods.get(method);
    if (!m) return new TtrpcError(Code.UNIMPLEMENTED, `method ${service}/${method} is not implemented`);
    return m;
  }

  /** @internal */
  checkIdle(): void {
    if (this.idleWaiters.length === 0) return;
    for (const c of this.connections) if (c.activeCalls > 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private waitIdle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiters.push(done);
      this.checkIdle();
    });
  }
}

class ServerConnection {
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private readonly decoder: FrameDecoder;
  private readonly calls = new Map<number, ServerCall>();
  private lastStreamId = 0;
  private finished = false;
  readonly logger: pino.Logger;

  constructor(
    readonly server: TtrpcServer,
    private readonly stream: Duplex,
  ) {
    this.logger = server.logger;
    this.decoder = new FrameDecoder(server.maxMessageSize);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    stream.on('data', (chunk: Buffer) => this.onChunk(chunk));
    stream.on('end', () => {
      // The client went away: stop serving it (as containerd does) and finish our side.
      this.teardown('peer ended the connection');
      if (!stream.writableEnded) stream.end();
    });
    stream.on('error', (err) => {
      this.logger.debug({ err }, 'ttrpc: connection error');
      this.teardown('connection error');
      stream.destroy();
    });
    stream.on('close', () => this.teardown('connection closed'));
  }

  get activeCalls(): number {
    return this.calls.size;
  }

  get maxMessageSize(): number {
    return this.server.maxMessageSize;
  }

  /** End the connection, aborting what is still running. */
  shutdown(reason: TtrpcError): Promise<void> {
    if (this.finished) return this.closed;
    for (const call of [...this.calls.values()]) call.abandon(reason);
    const destroy = (): void => {
      this.stream.destroy();
      this.teardown('server closed');
    };
    const timer = setTimeout(destroy, 1000);
    timer.unref();
    this.stream.end(destroy);
    return this.closed.finally(() => clearTimeout(timer));
  }

  write(frame: Buffer): Promise<void> {
    return writeFrame(this.stream, frame, this.finished, 'ttrpc: connection closed');
  }

  /** Send a Response frame; a response too large to send becomes RESOURCE_EXHAUSTED. */
  writeResponse(streamId: number, code: Code, message: string, payload?: Uint8Array): void {
    let data = encodeResponse(code, message, payload);
    if (data.length > this.maxMessageSize) {
      this.logger.warn({ streamId, length: data.length }, 'ttrpc: response exceeds maximum message size');
      data = encodeResponse(Code.RESOURCE_EXHAUSTED, oversizedError(data.length, this.maxMessageSize).message);
    }
    this.write(encodeFrame(streamId, FrameType.Response, 0, data, Infinity)).catch((err: unknown) =>
      this.logger.debug({ err, streamId }, 'ttrpc: failed to send response'),
    );
  }

  /** @internal called by a call once it has settled. */
  callDone(call: ServerCall): void {
    if (this.calls.get(call.streamId) === call) this.calls.delete(call.streamId);
    this.server.checkIdle();
  }

  private onChunk(chunk: Buffer): void {
    if (this.finished) return;
    for (const item of this.decoder.push(chunk)) {
      try {
        this.onItem(item);
      } catch (err) {
        // Nothing a peer sends may take the process down.
        this.logger.error({ err }, 'ttrpc: internal error handling frame');
      }
      if (this.finished) return;
    }
  }

  private onItem(item: DecodedItem): void {
    if (item.kind === 'oversized') {
      const { streamId, length } = item.header;
      this.logger.warn({ streamId, length }, 'ttrpc: discarded oversized frame');
      this.failStream(streamId, oversizedError(length, this.maxMessageSize));
      return;
    }
    const frame = item.frame;
    if (frame.streamId % 2 !== 1) {
      this.failStream(frame.streamId, new TtrpcError(Code.INVALID_ARGUMENT, 'stream id must be odd for client-initiated streams'));
      return;
    }
    switch (frame.type) {
      case FrameType.Request:
        this.onRequest(frame);
        return;
      case FrameType.Data:
        this.onData(frame);
        return;
      default:
        // Unknown (or client-sent Response) frames are ignored for forward compatibility, like containerd does.
        this.logger.debug({ streamId: frame.streamId, type: frame.type }, 'ttrpc: ignoring frame of unexpected type');
    }
  }

  /** Answer a stream with an error; a call running on it is ended. */
  private failStream(streamId: number, err: TtrpcError): void {
    const call = this.calls.get(streamId);
    if (call) call.fail(err);
    else this.writeResponse(streamId, err.code, err.message);
  }

  private onRequest(frame: Frame): void {
    const id = frame.streamId;
    if (id <= this.lastStreamId) {
      this.failStream(id, new TtrpcError(Code.INVALID_ARGUMENT, 'stream id cannot be reused and must increase'));
      return;
    }
    this.lastStreamId = id;
    if (this.server.isClosing) {
      this.writeResponse(id, Code.UNAVAILABLE, 'ttrpc: server closed');
      return;
    }
    let req: DecodedRequest;
    try {
      req = decodeRequest(frame.data);
    } catch (err) {
      this.writeResponse(id, Code.INVALID_ARGUMENT, `unmarshal request error: ${errorMessage(err)}`);
      return;
    }
    const method = this.server.lookup(req.service, req.method);
    if (method instanceof TtrpcError) {
      this.logger.debug({ service: req.service, method: req.method }, 'ttrpc: unimplemented method called');
      this.writeResponse(id, method.code, method.message);
      return;
    }
    const call = new ServerCall(this, id, frame.flags, req, method);
    this.calls.set(id, call);
    call.start();
  }

  private onData(frame: Frame): void {
    const call = this.calls.get(frame.streamId);
    if (!call) {
      this.writeResponse(frame.streamId, Code.INVALID_ARGUMENT, 'stream id is no longer active');
      return;
    }
    call.onData(frame);
  }

  private teardown(why: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.decoder.pendingBytes > 0) {
      this.logger.debug({ pendingBytes: this.decoder.pendingBytes }, 'ttrpc: connection ended inside a frame');
    }
    const reason = new TtrpcError(Code.CANCELLED, `ttrpc: ${why}`);
    for (const call of [...this.calls.values()]) call.abandon(reason);
    this.calls.clear();
    this.resolveClosed();
  }
}

class ServerCall {
  private readonly controller = new AbortController();
  private timer?: NodeJS.Timeout;
  private settled = false;
  private handlerRunning = false;
  private input?: AsyncQueue<unknown>;
  private inputClosed = false;

  constructor(
    private readonly conn: ServerConnection,
    readonly streamId: number,
    private readonly flags: number,
    private readonly req: DecodedRequest,
    private readonly method: RegisteredMethod,
  ) {}

  start(): void {
    const { req, method } = this;
    const ctx: CallContext = {
      metadata: pairsToMetadata(req.metadata),
      signal: this.controller.signal,
      service: req.service,
      method: req.method,
    };
    if (req.timeoutNano !== 0) {
      const ms = Math.max(0, req.timeoutNano / 1e6);
      ctx.deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) {
        this.timer = setTimeout(() => this.expire(), Math.ceil(ms));
        this.timer.unref();
      }
    }

    // The Request payload is the (first) message, except for a client-streaming
    // call whose Request carries none.
    const hasFirst = !method.requestStream || req.hasPayload;
    let first: unknown;
    if (hasFirst) {
      try {
        first = decodeMessage(method.requestType, req.payload);
      } catch (err) {
        this.finish(Code.INTERNAL, `ttrpc: error unmarshalling payload: ${errorMessage(err)}`);
        return;
      }
    }
    if (method.requestStream) {
      this.input = new AsyncQueue<unknown>();
      if (hasFirst) this.input.push(first);
      if ((this.flags & FLAG_REMOTE_OPEN) === 0) this.closeInput();
    }

    const arg = method.requestStream ? this.input : first;
    const handler = method.handler as (...args: unknown[]) => unknown;
    let result: Promise<unknown>;
    const started = performance.now(); // for the debug line: where a slow call's time went
    this.handlerRunning = true;
    try {
      result = Promise.resolve(method.responseStream ? handler(arg, ctx, (m: object) => this.send(m)) : handler(arg, ctx));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => {
        this.handlerRunning = false;
        // A call already answered (expired, cancelled) is not this handler's to report.
        const answered = this.settled;
        this.complete(value);
        if (!answered && this.conn.logger.isLevelEnabled('debug')) this.conn.logger.debug({ service: req.service, method: req.method, ms: Math.round(performance.now() - started) }, 'ttrpc: handled');
      },
      (err: unknown) => {
        this.handlerRunning = false;
        if (this.settled) return;
        const st = statusFromError(err, this.controller.signal);
        if (st.code === Code.UNKNOWN) {
          this.conn.logger.warn({ err, service: req.service, method: req.method, ms: Math.round(performance.now() - started) }, 'ttrpc: handler failed');
        } else {
          this.conn.logger.debug({ err, service: req.service, method: req.method, code: st.code, ms: Math.round(performance.now() - started) }, 'ttrpc: handler returned error');
        }
        this.finish(st.code, st.message);
      },
    );
  }

  onData(frame: Frame): void {
    if (!this.input) {
      this.fail(new TtrpcError(Code.INVALID_ARGUMENT, 'data frame on a stream that takes no client data'));
      return;
    }
    if (this.inputClosed) {
      this.fail(new TtrpcError(Code.INVALID_ARGUMENT, 'data frame after the client closed its side'));
      return;
    }
    if ((frame.flags & FLAG_NO_DATA) === 0) {
      try {
        this.input.push(decodeMessage(this.method.requestType, frame.data));
      } catch (err) {
        this.fail(new TtrpcError(Code.INTERNAL, `ttrpc: error unmarshalling payload: ${errorMessage(err)}`));
        return;
      }
    }
    if ((frame.flags & FLAG_REMOTE_CLOSED) !== 0) this.closeInput();
  }

  /** End the call with an error status (protocol problem or deadline), aborting the handler. */
  fail(err: TtrpcError): void {
    if (this.settled) return;
    if (this.handlerRunning && !this.controller.signal.aborted) this.controller.abort(err);
    this.finish(err.code, err.message);
  }

  /** The connection is gone: abort without answering. */
  abandon(reason: TtrpcError): void {
    if (this.settled) return;
    this.settle(reason);
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  private async send(message: object): Promise<void> {
    if (this.settled) {
      const reason: unknown = this.controller.signal.reason;
      throw reason instanceof TtrpcError ? reason : new TtrpcError(Code.CANCELLED, 'ttrpc: stream is finished');
    }
    let payload: Uint8Array;
    try {
      payload = encodeMessage(this.method.responseType, message, 'stream message');
    } catch (err) {
      throw new TtrpcError(Code.INTERNAL, errorMessage(err), { cause: err });
    }
    await this.conn.write(encodeFrame(this.streamId, FrameType.Data, 0, payload, this.conn.maxMessageSize));
  }

  private complete(value: unknown): void {
    if (this.settled) return;
    if (this.method.responseStream) {
      // As containerd does: a server stream that ends well closes with an empty Data frame, no Response.
      this.settle();
      this.conn
        .write(encodeFrame(this.streamId, FrameType.Data, FLAG_REMOTE_CLOSED | FLAG_NO_DATA))
        .catch((err: unknown) => this.conn.logger.debug({ err, streamId: this.streamId }, 'ttrpc: failed to close stream'));
      return;
    }
    let payload: Uint8Array;
    try {
      payload = encodeMessage(this.method.responseType, value, 'response');
    } catch (err) {
      // A handler's answer that does not fit its response type is a bug on our side: say so.
      this.conn.logger.warn({ err, method: this.method.name }, 'ttrpc: cannot encode the handler\'s answer');
      this.finish(Code.INTERNAL, `ttrpc: error marshaling payload: ${errorMessage(err)}`);
      return;
    }
    this.finish(Code.OK, '', payload);
  }

  private expire(): void {
    this.fail(new TtrpcError(Code.DEADLINE_EXCEEDED, 'deadline exceeded'));
  }

  private closeInput(): void {
    this.inputClosed = true;
    this.input?.end();
  }

  private finish(code: Code, message: string, payload?: Uint8Array): void {
    if (this.settled) return;
    this.settle(code === Code.OK ? undefined : new TtrpcError(code, message));
    this.conn.writeResponse(this.streamId, code, message, payload);
  }

  private settle(err?: TtrpcError): void {
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.input && !this.input.done) {
      if (err) this.input.fail(err);
      else this.input.end();
    }
    this.conn.callDone(this);
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`ttrpc: ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      probe.destroy();
      resolve(false);
    });
  });
  if (live) throw Object.assign(new Error(`ttrpc: ${path} is in use by a live server`), { code: 'EADDRINUSE' });
  await fs.promises.unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

function unlinkQuiet(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch {
    // already gone (libuv removes it when the listener closes)
  }
}
