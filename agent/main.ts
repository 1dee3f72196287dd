// Guest agent entry point: started by the guest's /init (PID 1), serves the
// AgentService over ttrpc on the virtio-serial port until DestroySandbox.
// The channel's blocking reads hold one libuv pool thread for good; give the pool
// room (read lazily by libuv, so setting it before the first file operation works).
process.env.UV_THREADPOOL_SIZE ??= '16';
import * as fs from 'fs';
import * as path from 'path';
import { createLogger } from '../lib/logger';
import { AGENT_SERVICE, lookupService } from '../lib/protos';
import { TtrpcServer } from '../ttrpc';
import { AgentService } from './agent-service';
import { CharDeviceStream, findVirtioPort } from './channel';
import { OciRuntime } from './oci-runtime';

const PORT_NAME = process.env.KATATS_AGENT_PORT ?? 'agent.channel.0';
const STATE_ROOT = '/run/katats-agent';

async function waitForPort(timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const device = findVirtioPort(PORT_NAME);
    if (device && fs.existsSync(device)) return device;
    if (Date.now() > deadline) throw new Error(`virtio-serial port ${PORT_NAME} did not appear`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  const logger = createLogger(process.stderr, process.env.KATATS_DEBUG ? 'debug' : 'info').child({ component: 'agent' });
  const version = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  fs.mkdirSync(path.join(STATE_ROOT, 'bundles'), { recursive: true, mode: 0o700 });
  const service = new AgentService({
    runtime: new OciRuntime(process.env.KATATS_OCI_RUNTIME ?? '/usr/bin/crun', path.join(STATE_ROOT, 'crun')),
    bundlesRoot: path.join(STATE_ROOT, 'bundles'),
    agentVersion: version,
    logger,
    onDestroyed: () => process.exit(0),
  });
  const server = new TtrpcServer({ logger });
  server.addService(lookupService(AGENT_SERVICE), service.handlers());
  const device = await waitForPort(30_000);
  const stream = new CharDeviceStream(fs.openSync(device, 'r+'));
  server.serveConnection(stream);
  logger.info({ device, version }, 'agent ready');
}

main().catch((err) => {
  process.stderr.write(`agent: fatal: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
