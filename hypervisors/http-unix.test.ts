import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { DeadlineExceededError, HypervisorError, UnavailableError } from '../lib/errors';
import { UnixHttpClient, VmmApiError } from './http-unix';

describe('UnixHttpClient', () => {
  let dir: string;
  let socketPath: string;
  let server: http.Server;
  let seen: { method?: string; url?: string; contentType?: string; body: string }[];
  /** What the next request is answered with; `undefined` status means never answer. */
  let answer: { status?: number; body?: string };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'http-unix-'));
    socketPath = path.join(dir, 'api.sock');
    seen = [];
    answer = { status: 204 };
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, contentType: req.headers['content-type'], body });
        if (answer.status === undefined) return;
        res.writeHead(answer.status);
        res.end(answer.body ?? '');
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const client = (timeoutMs = 2000): UnixHttpClient =>
    new UnixHttpClient(socketPath, { vmmName: 'vmm', timeoutMs, errorDetail: (b) => (b as { message?: string }).message });

  it('sends JSON bodies and returns parsed answers, or undefined for 204', async () => {
    expect(await client().request('PUT', '/vm.create', { cpus: 2 })).toBeUndefined();
    expect(seen).toEqual([{ method: 'PUT', url: '/vm.create', contentType: 'application/json', body: '{"cpus":2}' }]);
    answer = { status: 200, body: '{"state":"Running"}' };
    expect(await client().get('/vm.info')).toEqual({ state: 'Running' });
    expect(seen[1]).toEqual({ method: 'GET', url: '/vm.info', contentType: undefined, body: '' });
  });

  it("carries the endpoint, the status and the VMM's own words on failure", async () => {
    answer = { status: 400, body: '{"message":"bad vcpu count"}' };
    const err = await client().request('PUT', '/machine-config', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmApiError);
    expect(err).toMatchObject({ endpoint: 'vmm API PUT /machine-config', status: 400, detail: 'bad vcpu count', message: 'vmm API PUT /machine-config failed with HTTP 400: bad vcpu count' });
    answer = { status: 500, body: 'plain text trouble\n' };
    await expect(client().request('PUT', '/x')).rejects.toThrow('vmm API PUT /x failed with HTTP 500: plain text trouble');
  });

  it('refuses a success answer that is not JSON, and a GET answered without a body', async () => {
    answer = { status: 200, body: '<html>' };
    await expect(client().request('GET', '/')).rejects.toThrow(new HypervisorError('vmm API GET /: answered 200 with a body that is not JSON: <html>'));
    answer = { status: 204 };
    await expect(client().get('/')).rejects.toThrow('vmm API GET /: answered without a body');
  });

  it('times out a VMM that does not answer', async () => {
    answer = {};
    const err = await client(100).request('GET', '/slow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).message).toBe('vmm API GET /slow: no answer within 100 ms');
  });

  it('reports a socket nobody listens on as unavailable', async () => {
    const missing = new UnixHttpClient(path.join(dir, 'missing.sock'), { vmmName: 'vmm', timeoutMs: 1000 });
    const err = await missing.request('GET', '/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/^vmm API GET \/: cannot talk to .*missing\.sock: connect ENOENT/);
  });
});
