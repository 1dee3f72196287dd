// A minimal HTTP/1.1 JSON client over a Unix socket: the control channel of Cloud
// Hypervisor and Firecracker. One connection per request (no keep-alive), so a VMM
// that dies mid-call fails that call and nothing else.
import * as http from 'http';
import { DeadlineExceededError, HypervisorError, UnavailableError } from '../lib/errors';

export type HttpMethod = 'GET' | 'PUT' | 'PATCH';

/** The VMM answered, but not with success; carries what it said. */
export class VmmApiError extends HypervisorError {
  constructor(readonly endpoint: string, readonly status: number, readonly detail: string) {
    super(`${endpoint} failed with HTTP ${status}${detail ? `: ${detail}` : ''}`);
  }
}

export interface UnixHttpClientOptions {
  /** Names the VMM in error messages ("cloud-hypervisor API PUT /vm.boot ..."). */
  vmmName: string;
  timeoutMs: number;
  /** Turns the VMM's parsed error body into one line; each VMM words errors its own way. */
  errorDetail?: (body: unknown) => string | undefined;
}

/** Error bodies are echoed into messages; a runaway one must not flood the log. */
const MAX_DETAIL_CHARS = 2000;

export class UnixHttpClient {
  constructor(readonly socketPath: string, private readonly options: UnixHttpClientOptions) {}

  /** Sends `body` as JSON; resolves to the parsed answer, or undefined for an empty one (204). */
  request<T = unknown>(method: HttpMethod, path: string, body?: object): Promise<T | undefined> {
    const endpoint = `${this.options.vmmName} API ${method} ${path}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T | undefined>((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
      if (payload) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': payload.length });
      const req = http.request({ socketPath: this.socketPath, method, path, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (err) => reject(new UnavailableError(`${endpoint}: answer cut off: ${err.message}`, { cause: err })));
        res.on('end', () => {
          try {
            resolve(this.interpret<T>(endpoint, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
      });
      req.setTimeout(this.options.timeoutMs, () => {
        req.destroy(new DeadlineExceededError(`${endpoint}: no answer within ${this.options.timeoutMs} ms`));
      });
      req.on('error', (err) => {
        if (err instanceof DeadlineExceededError) reject(err);
        // ENOENT/ECONNREFUSED before the VMM listens, ECONNRESET when it dies mid-call.
        else reject(new UnavailableError(`${endpoint}: cannot talk to ${this.socketPath}: ${err.message}`, { cause: err }));
      });
      req.end(payload);
    });
  }

  /** A GET whose answer must carry a JSON body. */
  async get<T>(path: string): Promise<T> {
    const answer = await this.request<T>('GET', path);
    if (answer === undefined) throw new HypervisorError(`${this.options.vmmName} API GET ${path}: answered without a body`);
    return answer;
  }

  private interpret<T>(endpoint: string, status: number, text: string): T | undefined {
    const parsed = parseJson(text);
    if (status < 200 || status > 299) {
      const detail = (parsed.ok ? this.options.errorDetail?.(parsed.value) : undefined) ?? text.trim();
      throw new VmmApiError(endpoint, status, detail.slice(0, MAX_DETAIL_CHARS));
    }
    if (!text) return undefined;
    if (!parsed.ok) throw new HypervisorError(`${endpoint}: answered ${status} with a body that is not JSON: ${text.slice(0, 200)}`);
    return parsed.value as T;
  }
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
