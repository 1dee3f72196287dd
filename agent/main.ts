// Guest agent entry point: started by the guest's /init (PID 1), serves the
// AgentService over ttrpc on the virtio-serial port, or on vsock through a relay
// (KATATS_AGENT_SOCKET), until DestroySandbox, and the debug console on its own port
// when the sandbox has one.
// The channel's blocking reads hold one libuv pool thread for good; give the pool
// room (read lazily by libuv, so setting it before the first file operation works).
process.env.UV_THREADPOOL_SIZE ??= '16';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { DEBUG_CONSOLE_PORT_NAME } from '../lib/debug-console';
import { AGENT_VSOCK_PORT, DEBUG_CONSOLE_VSOCK_PORT } from '../lib/vsock-ports';
import { createLogger, Logger } from '../lib/logger';
import { AGENT_SERVICE, lookupService } from '../lib/protos';
import { TtrpcServer } from '../ttrpc';
import { AgentService } from './agent-service';
import { CharDeviceStream, findVirtioPort } from './channel';
import { DebugConsole, serveConnection as serveConsoleConnection } from './debug-console';
import { spawnDebugShell } from './debug-shell';
import { commandShell } from './guest-command';
import { OciRuntime } from './oci-runtime';
import { prepareForClones } from './template-prep';

const PORT_NAME = process.env.KATATS_AGENT_PORT ?? 'agent.channel.0';
const STATE_ROOT = '/run/katats-agent';
/** guest/vsock-relay.c, built statically by guest/build.sh. */
const VSOCK_RELAY = '/usr/libexec/katats/vsock-relay';

const DEBUG_CONSOLE_PORT_WAIT_MS = 2000;

/** The device of the virtio-serial port `name`, once the guest knows it; undefined after `timeoutMs`. */
async function waitForPort(name: string, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const device = findVirtioPort(name);
    if (device && fs.existsSync(device)) return device;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The shim adds the console's port only when its configuration enables it. QEMU names
 * it before the agent's port, so it is normally known by now; the short wait covers
 * a guest that learns the names in another order.
 */
async function serveDebugConsole(logger: Logger): Promise<void> {
  const device = await waitForPort(DEBUG_CONSOLE_PORT_NAME, DEBUG_CONSOLE_PORT_WAIT_MS);
  if (!device) return;
  logger.info({ device }, 'debug console enabled');
  await new DebugConsole(device, () => spawnDebugShell(), logger).run();
}

/** How long the agent took to start, for the console ('agent ready'): make bench-agent-startup reads it. */
function startupTimes(mainStarted: number): Record<string, number> {
  const bootstrapped = performance.nodeTiming.bootstrapComplete;
  return {
    nodeMs: Math.round(bootstrapped), // Node's own bootstrap, from process start
    modulesMs: Math.round(mainStarted - bootstrapped), // loading main.js and everything it requires
    initMs: Math.round(performance.now() - mainStarted), // main(): the service built, the channel open
    modules: Object.keys(require.cache).length, // JavaScript files loaded (Node's own built-ins not counted)
    uptimeS: os.uptime(),
  };
}

async function main(): Promise<void> {
  const mainStarted = performance.now();
  const logger = createLogger(process.stderr, process.env.KATATS_DEBUG ? 'debug' : 'info').child({ component: 'agent' });
  const version = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  fs.mkdirSync(path.join(STATE_ROOT, 'bundles'), { recursive: true, mode: 0o700 });
  // Before the first answer, so a template VM holds the shell and its clones need not fork
  // the agent for their first command.
  commandShell.start();
  const service = new AgentService({
    runtime: new OciRuntime(process.env.KATATS_OCI_RUNTIME ?? '/usr/bin/crun', path.join(STATE_ROOT, 'crun')),
    bundlesRoot: path.join(STATE_ROOT, 'bundles'),
    warmUpDir: path.join(STATE_ROOT, 'warm-up'),
    agentVersion: version,
    logger,
    onDestroyed: () => process.exit(0),
  });
  const server = new TtrpcServer({ logger });
  const agentService = lookupService(AGENT_SERVICE);
  // A VM template (guest/init): built here once, not in each clone (see template-prep).
  if (process.env.KATATS_TEMPLATE === '1') {
    try {
      logger.info(prepareForClones(agentService, STATE_ROOT), 'prepared for clones');
    } catch (err) {
      // Only time is lost: each clone then builds what it needs on first use.
      logger.warn({ err: (err as Error).message }, 'preparing for clones failed');
    }
  }
  server.addService(agentService, service.handlers());
  const agentSocket = process.env.KATATS_AGENT_SOCKET;
  if (agentSocket) {
    // vsock: the host connects to port 1024, katats-vsock-relay to us here.
    await listenUnix(agentSocket, (connection) => server.serveConnection(connection));
    const ports = [`${AGENT_VSOCK_PORT}=${agentSocket}`];
    const consoleSocket = process.env.KATATS_CONSOLE_SOCKET;
    if (consoleSocket) {
      const consoleLogger = logger.child({ component: 'debug-console' });
      await listenUnix(consoleSocket, (connection) => void serveConsoleConnection(connection, () => spawnDebugShell(), Buffer.alloc(0), consoleLogger));
      ports.push(`${DEBUG_CONSOLE_VSOCK_PORT}=${consoleSocket}`);
    }
    startVsockRelay(ports, logger);
    logger.info({ socket: agentSocket, console: consoleSocket, version, startup: startupTimes(mainStarted) }, 'agent ready (vsock ports through the relay)');
    return;
  }
  const device = await waitForPort(PORT_NAME, 30_000);
  if (!device) throw new Error(`virtio-serial port ${PORT_NAME} did not appear`);
  const stream = new CharDeviceStream(fs.openSync(device, 'r+'));
  server.serveConnection(stream);
  logger.info({ device, version, startup: startupTimes(mainStarted) }, 'agent ready');
  void serveDebugConsole(logger.child({ component: 'debug-console' }));
}

/**
 * Started only once we listen, so the host's CONNECT is refused (and retried) until the
 * agent can answer. Without the relay nothing owns the ports: any guest process could
 * bind them. So its end is the agent's end, and /init then powers the VM off.
 */
function startVsockRelay(ports: string[], logger: Logger): void {
  const relay = spawn(VSOCK_RELAY, ports, { stdio: ['ignore', 'inherit', 'inherit'] });
  relay.once('error', (err) => {
    logger.error({ err: err.message }, 'vsock relay cannot start; the host cannot reach the agent');
    process.exit(1);
  });
  relay.once('exit', (code, signal) => {
    logger.error({ code, signal }, 'vsock relay exited; the host cannot reach the agent any more');
    process.exit(1);
  });
}

/** A Unix socket only root in the guest can reach (the relay runs as root). */
function listenUnix(socketPath: string, onConnection: (connection: net.Socket) => void): Promise<void> {
  fs.rmSync(socketPath, { force: true });
  const listener = net.createServer({ allowHalfOpen: true }, onConnection);
  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, () => {
      fs.chmodSync(socketPath, 0o600);
      resolve();
    });
  });
}

main().catch((err) => {
  process.stderr.write(`agent: fatal: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
