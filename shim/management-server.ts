// Kata's shim management endpoints, over HTTP on a Unix socket in the sandbox's work
// dir (<work dir>/shim-monitor.sock, 0600: only root may connect here, but
// kata-ts-monitor republishes the figures on its TCP listen address):
//   GET /metrics    the sandbox's metrics in Prometheus text format (shim-metrics.ts)
//   GET /agent-url  where the host reaches the guest agent
// The socket lives while the sandbox's work dir does; the identity record beside it
// tells kata-ts-monitor whose socket it is.
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { Logger } from '../lib/logger';
import { CriMetadata, monitorSocketPath, SANDBOX_IDENTITY_FILE, writeSandboxIdentity } from '../lib/shim-monitor';
import { ObservedSandbox } from '../sandbox/sandbox-observer';
import { ShimMetrics } from './shim-metrics';

/** A scrape that takes longer than this is cut: its reader (the monitor) has given up by then. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface ManagementServerDeps {
  metrics: ShimMetrics;
  /** containerd's namespace of the sandbox. */
  namespace: string;
  /** The pod's CRI names, from the sandbox's spec (empty for a sandbox made without CRI). */
  cri: CriMetadata;
  logger: Logger;
}

export class ManagementServer {
  /** The open server and what it serves; one sandbox at a time. */
  private open: { server: http.Server; sandbox: ObservedSandbox; socket: string } | undefined;
  /** Open and close run one after another, so a close never overtakes the open it undoes. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly deps: ManagementServerDeps) {}

  /** Serves `sandbox` on <its work dir>/shim-monitor.sock. Never throws: a pod runs without its metrics rather than not at all. */
  start(sandbox: ObservedSandbox): Promise<void> {
    return this.serially(async () => {
      await this.closeNow();
      const socket = monitorSocketPath(sandbox.workDir);
      try {
        writeSandboxIdentity(sandbox.workDir, { id: sandbox.id, namespace: this.deps.namespace, cri: this.deps.cri });
        const server = http.createServer((req, res) => void this.handle(sandbox, req, res));
        server.requestTimeout = REQUEST_TIMEOUT_MS;
        await listenPrivately(server, socket);
        server.on('error', (err) => this.deps.logger.error({ socket, err: err.message }, 'management socket error'));
        this.open = { server, sandbox, socket };
        this.deps.logger.info({ socket }, 'management socket ready');
      } catch (err) {
        this.deps.logger.error({ socket, err: (err as Error).message }, 'cannot serve the management socket; this sandbox has no metrics');
        removeQuietly(socket);
        removeQuietly(path.join(sandbox.workDir, SANDBOX_IDENTITY_FILE));
      }
    });
  }

  /** Stops serving and removes the socket and the identity record. Safe to call twice. */
  stop(): Promise<void> {
    return this.serially(() => this.closeNow());
  }

  private serially(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async closeNow(): Promise<void> {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    const closed = new Promise<void>((resolve) => open.server.close(() => resolve()));
    // A scrape in progress ends with the sandbox; a reader must not keep it open.
    open.server.closeAllConnections();
    await closed;
    removeQuietly(open.socket);
    removeQuietly(path.join(open.sandbox.workDir, SANDBOX_IDENTITY_FILE));
  }

  private async handle(sandbox: ObservedSandbox, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const route = new URL(req.url ?? '/', 'http://shim').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'only GET is served here\n');
    try {
      switch (route) {
        case '/metrics':
          return reply(res, 200, await this.deps.metrics.render(sandbox), this.deps.metrics.contentType);
        case '/agent-url':
          return reply(res, 200, sandbox.agentUrl());
        default:
          return reply(res, 404, `no such endpoint ${route}: /metrics, /agent-url\n`);
      }
    } catch (err) {
      this.deps.logger.warn({ route, err: (err as Error).message }, 'management request failed');
      reply(res, 500, `${(err as Error).message}\n`);
    }
  }
}

function reply(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Listens on `socket` born 0600 (umask around the bind), as the shim's other sockets are. */
async function listenPrivately(server: http.Server, socket: string): Promise<void> {
  removeQuietly(socket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const previous = process.umask(0o177);
    try {
      server.listen(socket, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  try {
    fs.chmodSync(socket, 0o600);
  } catch (err) {
    server.close();
    throw err;
  }
}

function removeQuietly(file: string): void {
  fs.rmSync(file, { force: true });
}
