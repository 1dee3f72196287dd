// kata-ts-monitor's HTTP endpoints, as Kata's kata-monitor serves them:
//   GET /metrics                 every sandbox's series, labelled, and the monitor's own
//   GET /metrics?sandbox=<id>    one sandbox's series as its shim gives them
//   GET /sandboxes               the sandbox ids found, one per line
//   GET /agent-url?sandbox=<id>  where that sandbox's shim reaches its guest agent
// The per-sandbox endpoints take &namespace=<containerd namespace>, needed (409
// otherwise) when the id runs in more than one.
// Answers are gzipped when the scraper accepts it (Prometheus does).
import * as http from 'http';
import * as zlib from 'zlib';
import { grpcCodeOf, GrpcCode, InvalidArgumentError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AmbiguousSandboxError, KataMonitor } from './kata-monitor';

export interface ListenAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:8090", "[::1]:8090", ":8090" (every address). */
export function parseListenAddress(text: string): ListenAddress {
  const colon = text.lastIndexOf(':');
  const port = Number(text.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535 || text.slice(colon + 1) === '') throw new InvalidArgumentError(`listen address ${JSON.stringify(text)} is not HOST:PORT`);
  const host = text.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host: host || '0.0.0.0', port };
}

function reply(req: http.IncomingMessage, res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const payload = gzip ? zlib.gzipSync(body) : Buffer.from(body);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': payload.length, ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
  res.end(req.method === 'HEAD' ? undefined : payload);
}

export function monitorHandler(monitor: KataMonitor, logger: Logger): http.RequestListener {
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://monitor');
      if (req.method !== 'GET' && req.method !== 'HEAD') return reply(req, res, 405, 'only GET is served here\n');
      const sandbox = url.searchParams.get('sandbox');
      const namespace = url.searchParams.get('namespace') || undefined;
      try {
        switch (url.pathname) {
          case '/metrics':
            return reply(req, res, 200, sandbox ? await monitor.sandboxMetrics(sandbox, namespace) : await monitor.metrics(), monitor.contentType);
          case '/sandboxes':
            return reply(req, res, 200, monitor.sandboxes().map((s) => `${s.identity.id}\n`).join(''));
          case '/agent-url':
            if (!sandbox) return reply(req, res, 400, 'name the sandbox: /agent-url?sandbox=<id>[&namespace=<ns>]\n');
            return reply(req, res, 200, `${await monitor.agentUrl(sandbox, namespace)}\n`);
          default:
            return reply(req, res, 404, `no such endpoint ${url.pathname}: /metrics, /sandboxes, /agent-url\n`);
        }
      } catch (err) {
        logger.warn({ path: url.pathname, sandbox, namespace, err: (err as Error).message }, 'monitor request failed');
        const status = err instanceof AmbiguousSandboxError ? 409 : grpcCodeOf(err) === GrpcCode.NOT_FOUND ? 404 : 500;
        reply(req, res, status, `${(err as Error).message}\n`);
      }
    })();
  };
}

/** Listens on `address`; resolves with the address actually bound (port 0 picks one). */
export async function serveMonitor(monitor: KataMonitor, address: ListenAddress, logger: Logger): Promise<{ server: http.Server; address: ListenAddress }> {
  const server = http.createServer(monitorHandler(monitor, logger));
  // Scrapes take at most the shims' deadline plus merging; a client that holds a connection idle is let go.
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err: err.message }, 'monitor server error'));
  const bound = server.address();
  return { server, address: typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : address };
}
