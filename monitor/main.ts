#!/usr/bin/env node
// kata-ts-monitor: one per node, Kata's kata-monitor. Serves every sandbox's metrics,
// labelled by sandbox and pod, for Prometheus to scrape.
//   --listen-address HOST:PORT   default 127.0.0.1:8090 (any local user may read it: keep it local)
//   --state-dir DIR              a runtime state dir to watch; repeatable (default: the
//                                configuration's [runtime] state_dir, as `kata-ts-runtime env` shows)
//   --scrape-timeout SECONDS     per shim, default 3
//   --log-level LEVEL            pino level, default info (logs go to stderr)
import { resolveConfig } from '../config/config-location';
import { errorMessage, InvalidArgumentError } from '../lib/errors';
import { createLogger } from '../lib/logger';
import { KataMonitor } from './kata-monitor';
import { parseListenAddress, serveMonitor } from './monitor-server';

const USAGE = 'usage: kata-ts-monitor [--listen-address HOST:PORT] [--state-dir DIR]... [--scrape-timeout SECONDS] [--log-level LEVEL]\n';

export interface MonitorFlags {
  listenAddress: string;
  stateDirs: string[];
  scrapeTimeoutMs: number;
  logLevel: string;
}

export function parseMonitorFlags(argv: string[]): MonitorFlags {
  const flags: MonitorFlags = { listenAddress: '127.0.0.1:8090', stateDirs: [], scrapeTimeoutMs: 3000, logLevel: 'info' };
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new InvalidArgumentError(`${name} needs a value`);
      return v;
    };
    switch (name.replace(/^--?/, '')) {
      case 'listen-address':
        flags.listenAddress = value();
        break;
      case 'state-dir':
        flags.stateDirs.push(value());
        break;
      case 'scrape-timeout': {
        const seconds = Number(value());
        if (!(seconds > 0)) throw new InvalidArgumentError('--scrape-timeout takes a positive number of seconds');
        flags.scrapeTimeoutMs = seconds * 1000;
        break;
      }
      case 'log-level':
        flags.logLevel = value();
        break;
      default:
        throw new InvalidArgumentError(`unknown argument ${JSON.stringify(argv[i])}`);
    }
  }
  return flags;
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  const flags = parseMonitorFlags(argv);
  const logger = createLogger(process.stderr, flags.logLevel).child({ component: 'kata-ts-monitor' });
  // Without --state-dir: where sandboxes without a file of their own keep their state.
  const stateDirs = flags.stateDirs.length > 0 ? flags.stateDirs : [resolveConfig({}).config.runtime.stateDir];
  const monitor = new KataMonitor({ stateDirs, scrapeTimeoutMs: flags.scrapeTimeoutMs, logger, runtimeMetrics: true });
  const { server, address } = await serveMonitor(monitor, parseListenAddress(flags.listenAddress), logger);
  logger.info({ host: address.host, port: address.port, stateDirs }, 'kata-ts-monitor listening');
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      server.closeAllConnections();
      server.close(() => process.exit(0));
    });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`kata-ts-monitor: ${errorMessage(err)}\n${USAGE}`);
    process.exit(1);
  });
}
