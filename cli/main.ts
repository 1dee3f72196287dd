#!/usr/bin/env node
// kata-ts-runtime: host and configuration checks and a debug shell, in the spirit of kata-runtime.
//   check [--kvm-timeout S] [--tcg-timeout S]   what this host can run, found by trying
//   env                                         the effective configuration, as JSON
//   exec <sandbox-id>                           a root shell in the sandbox's guest (debug console)
import * as os from 'os';
import { loadConfig } from '../config/runtime-config';
import { errorMessage } from '../lib/errors';
import { formatChecks, runChecks } from './check';
import { connectDebugConsole, findDebugConsole, relayConsole } from './exec';

const USAGE = 'usage: kata-ts-runtime check [--kvm-timeout S] [--tcg-timeout S] | env | exec <sandbox-id>\n';

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!(value > 0)) throw new Error(`${name} takes a positive number of seconds`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'check': {
      const lines = await runChecks(loadConfig(), { kvmTimeoutMs: option(args, '--kvm-timeout', 30) * 1000, tcgTimeoutMs: option(args, '--tcg-timeout', 120) * 1000 });
      process.stdout.write(formatChecks(lines));
      return lines.some((l) => l.verdict === 'FAIL' && (l.name === 'configuration' || l.name === 'qemu' || l.name === 'guest image')) ? 1 : 0;
    }
    case 'env':
      process.stdout.write(JSON.stringify({ source: process.env.KATATS_CONFIG ?? 'default search (/etc/kata-ts/configuration.toml, /etc/kata-ts/config.json)', config: loadConfig() }, null, 2) + '\n');
      return 0;
    case 'exec': {
      if (args.length !== 1) break;
      const sandboxId = args[0];
      const socket = await connectDebugConsole(findDebugConsole(loadConfig(), sandboxId), sandboxId);
      // A raw-mode terminal must not outlive us, however we are stopped.
      for (const signal of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
        process.once(signal, () => {
          if (process.stdin.isTTY) process.stdin.setRawMode(false);
          process.exit(128 + os.constants.signals[signal]);
        });
      }
      return relayConsole(socket, { stdin: process.stdin, stdout: process.stdout }, sandboxId);
    }
  }
  process.stderr.write(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`kata-ts-runtime: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
