// A minimal QMP client: one JSON object per line, a greeting, capability negotiation,
// then commands answered in order ("return" or "error"), events interleaved. Callers
// that need an event (device_del completes with DEVICE_DELETED) wait for it here.
import * as net from 'net';
import { HypervisorError } from '../../lib/errors';

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * A bound on every command: a QEMU that stopped answering (stopped, wedged in a
 * device model) fails the caller with the command's name instead of hanging it.
 */
export const QMP_COMMAND_TIMEOUT_MS = 30_000;

export type QmpEventData = Record<string, unknown>;

interface EventWaiter {
  event: string;
  matches: (data: QmpEventData) => boolean;
  resolve: (data: QmpEventData) => void;
  reject: (err: Error) => void;
}

export class QmpClient {
  private buffer = '';
  private readonly pending: Pending[] = [];
  private readonly eventWaiters = new Set<EventWaiter>();
  private closedError: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.failAll(new HypervisorError('QMP connection closed')));
    socket.on('error', (err) => this.failAll(new HypervisorError(`QMP socket error: ${err.message}`, { cause: err })));
  }

  /** Connects, reads the greeting and enters command mode. */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const socket = await connectWithRetry(path, timeoutMs);
    const client = new QmpClient(socket);
    await client.execute('qmp_capabilities');
    return client;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = QMP_COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new HypervisorError(`QMP ${command}: no answer within ${timeoutMs} ms (QEMU stopped or wedged?)`));
      }, timeoutMs);
      timer.unref();
      // A timed-out command stays queued: QEMU answers in order, so its late reply
      // must still be consumed by it, not taken for the next command's.
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        if (!settled) f();
        settled = true;
      };
      this.pending.push({ command, resolve: (v) => finish(() => resolve(v as T)), reject: (err) => finish(() => reject(err)) });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  /**
   * Settles with the data of the first `event` that `matches`, or fails after
   * `timeoutMs`. Call it before the command that causes the event: QEMU may send the
   * event before that command's return.
   */
  waitForEvent(event: string, matches: (data: QmpEventData) => boolean, timeoutMs: number): Promise<QmpEventData> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(() => reject(new HypervisorError(`QMP event ${event} did not arrive within ${timeoutMs} ms`))), timeoutMs);
      timer.unref();
      const settle = (finish: () => void) => {
        clearTimeout(timer);
        this.eventWaiters.delete(waiter);
        finish();
      };
      const waiter: EventWaiter = {
        event,
        matches,
        resolve: (data) => settle(() => resolve(data)),
        reject: (err) => settle(() => reject(err)),
      };
      this.eventWaiters.add(waiter);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: { QMP?: unknown; event?: string; data?: QmpEventData; return?: unknown; error?: { class: string; desc: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      return; // QEMU never sends partial JSON on a line; ignore noise rather than crash
    }
    if (msg.QMP !== undefined) return; // greeting
    if (msg.event !== undefined) {
      this.onEvent(msg.event, msg.data ?? {});
      return;
    }
    const waiter = this.pending.shift();
    if (!waiter) return;
    if (msg.error) waiter.reject(new HypervisorError(`QMP ${waiter.command} failed: ${msg.error.class}: ${msg.error.desc}`));
    else waiter.resolve(msg.return);
  }

  private onEvent(event: string, data: QmpEventData): void {
    for (const waiter of this.eventWaiters) if (waiter.event === event && waiter.matches(data)) waiter.resolve(data);
  }

  private failAll(err: Error): void {
    this.closedError ??= err;
    for (const waiter of this.pending.splice(0)) waiter.reject(err);
    for (const waiter of this.eventWaiters) waiter.reject(err);
  }
}

async function connectWithRetry(path: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  let lastError: Error | undefined;
  while (Date.now() < deadline) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const socket = net.createConnection(path);
        socket.once('connect', () => {
          socket.removeAllListeners('error');
          resolve(socket);
        });
        socket.once('error', reject);
      });
    } catch (err) {
      lastError = err as Error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new HypervisorError(`QMP socket ${path} did not accept connections within ${timeoutMs} ms: ${lastError?.message ?? 'timeout'}`);
}
