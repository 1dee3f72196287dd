// One bounded HTTP GET over a Unix socket: how kata-ts-monitor and `kata-ts-runtime
// metrics` read a shim's management socket. Bounded in time as a whole (not per read)
// and in size, so a hung or runaway shim costs its own answer, never its reader.
import * as http from 'http';
import { DeadlineExceededError, NotFoundError, ResourceExhaustedError, UnavailableError } from './errors';

export interface UnixGetOptions {
  timeoutMs: number;
  maxBytes: number;
}

/** The body of a 2xx answer; anything else fails naming the socket and the path. */
export function unixHttpGet(socketPath: string, urlPath: string, opts: UnixGetOptions): Promise<string> {
  const what = `GET ${urlPath} on ${socketPath}`;
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | undefined, body?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(body!);
    };
    const req = http.get({ socketPath, path: urlPath, agent: false, headers: { Accept: 'text/plain' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > opts.maxBytes) return finish(new ResourceExhaustedError(`${what}: answer larger than ${opts.maxBytes} bytes`));
        chunks.push(chunk);
      });
      res.on('error', (err) => finish(new UnavailableError(`${what}: answer cut off: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) finish(new UnavailableError(`${what}: HTTP ${status}: ${body.trim().slice(0, 500)}`));
        else finish(undefined, body);
      });
    });
    timer = setTimeout(() => finish(new DeadlineExceededError(`${what}: no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') finish(new NotFoundError(`${what}: nothing serves it (${err.code}): the sandbox is gone or its shim is not running`, { cause: err }));
      else finish(new UnavailableError(`${what}: ${err.message}`, { cause: err }));
    });
  });
}
