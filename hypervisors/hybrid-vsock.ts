// Hybrid vsock, the host side of Cloud Hypervisor's and Firecracker's virtio-vsock:
// the VMM listens on a Unix socket; the host connects, writes `CONNECT <port>\n`, and
// the VMM answers `OK <host port>\n` once the guest accepted the connection on that
// vsock port. From then on the stream is the guest's. If nothing in the guest listens
// on the port (yet: the guest may still boot), the VMM closes the connection instead,
// so connecting means retrying until a deadline.
//
// An attempt may also get no answer at all: the VMM forwards the request to the guest,
// and a request that reaches the guest while its vsock driver is still starting (or
// resetting the device) can be dropped, with nothing left to ever answer or close.
// So no single attempt may wait for the whole deadline: an unanswered attempt is
// abandoned and retried, with a bound that doubles each time in case the guest is
// merely slow (a busy TCG guest), and starts again from the first after a refusal.
import * as net from 'net';
import { DeadlineExceededError, UnavailableError } from '../lib/errors';

/** Longest acknowledgement we accept ("OK " and a 32-bit port fit in 14 bytes). */
const MAX_ACK_BYTES = 32;
const RETRY_DELAY_MS = 50;
/** The first attempt's wait for an answer; a running guest answers in milliseconds. */
export const FIRST_ANSWER_TIMEOUT_MS = 2_000;
const MAX_ANSWER_TIMEOUT_MS = 30_000;

export interface HybridVsockOptions {
  /** Stops the retrying early (e.g. once the VM is gone): the promise then rejects with UnavailableError. */
  signal?: AbortSignal;
  /** The first attempt's wait for the VMM's answer (doubled after each unanswered attempt). */
  firstAnswerTimeoutMs?: number;
}

/** One refused (or unanswered) attempt, retried until the deadline. */
class AttemptFailed extends Error {
  constructor(message: string, readonly unanswered = false) {
    super(message);
  }
}

/** A connection to guest vsock `port` through the VMM's hybrid socket, retried until `timeoutMs`. */
export async function connectHybridVsock(socketPath: string, port: number, timeoutMs: number, opts: HybridVsockOptions = {}): Promise<net.Socket> {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) throw new RangeError(`vsock port must be a 32-bit unsigned integer, got ${port}`);
  const { signal } = opts;
  const deadline = Date.now() + timeoutMs;
  const firstAnswerTimeoutMs = opts.firstAnswerTimeoutMs ?? FIRST_ANSWER_TIMEOUT_MS;
  let answerTimeoutMs = firstAnswerTimeoutMs;
  let lastFailure = 'no attempt finished';
  const aborted = (): UnavailableError => new UnavailableError(`hybrid vsock ${socketPath}: connecting to guest port ${port} was abandoned (last attempt: ${lastFailure})`);
  for (;;) {
    if (signal?.aborted) throw aborted();
    try {
      return await attempt(socketPath, port, Math.max(1, Math.min(answerTimeoutMs, deadline - Date.now())), signal);
    } catch (err) {
      if (!(err instanceof AttemptFailed)) throw err;
      if (!signal?.aborted) lastFailure = err.message;
      // A prompt refusal shows the path answers again: the next silence is waited for briefly again.
      answerTimeoutMs = err.unanswered ? Math.min(answerTimeoutMs * 2, MAX_ANSWER_TIMEOUT_MS) : firstAnswerTimeoutMs;
    }
    if (Date.now() + RETRY_DELAY_MS >= deadline) break;
    await pause(RETRY_DELAY_MS, signal);
  }
  if (signal?.aborted) throw aborted();
  throw new DeadlineExceededError(`hybrid vsock ${socketPath}: guest port ${port} did not accept a connection within ${timeoutMs} ms (last attempt: ${lastFailure})`);
}

/** Waits `ms`, or until `signal` aborts. */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(); // no abort event will come
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

function attempt(socketPath: string, port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let received = Buffer.alloc(0);
    const onAbort = (): void => fail('abandoned');
    const fail = (reason: string, unanswered = false): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(new AttemptFailed(reason, unanswered));
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`, true), timeoutMs);
    signal?.addEventListener('abort', onAbort);
    const onError = (err: Error): void => fail(err.message); // ENOENT/ECONNREFUSED: the VMM is not up yet
    const onClose = (): void => fail('the VMM closed the connection (nothing listens on that port in the guest yet)');
    // 'readable' + read() rather than 'data': the socket stays paused, so whatever
    // the guest sends right after the acknowledgement waits for the caller.
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) received = Buffer.concat([received, chunk]);
      const newline = received.indexOf(0x0a);
      if (newline < 0) {
        if (received.length > MAX_ACK_BYTES) fail(`unexpected answer ${JSON.stringify(received.toString('latin1'))}`);
        return;
      }
      const line = received.subarray(0, newline).toString('latin1');
      if (!/^OK \d+$/.test(line)) return fail(`unexpected answer ${JSON.stringify(line)}`);
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError).off('close', onClose).off('readable', onReadable);
      const rest = received.subarray(newline + 1);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.once('connect', () => socket.write(`CONNECT ${port}\n`));
    socket.on('error', onError).on('close', onClose).on('readable', onReadable);
  });
}
