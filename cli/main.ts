#!/usr/bin/env node
// kata-ts-runtime: host and configuration checks and a debug shell, in the spirit of kata-runtime.
//   check [--kvm-timeout S] [--tcg-timeout S]   what this host can run, found by trying
//   env                                         the effective configuration, the files it came from and the Kata keys it ignored, as JSON
//   exec [--namespace NS] <sandbox-id>          a root shell in the sandbox's guest (debug console)
//   metrics [--namespace NS] <sandbox-id>       the sandbox's metrics (Prometheus text) from its shim
//   factory init|status|destroy [--containerd-state DIR]
//                                               VM templates: make this configuration's now, list them, remove them;
//                                               status and destroy: also the spare shims waiting under containerd's state dir
import * as os from 'os';
import * as path from 'path';
import { resolveConfig } from '../config/config-location';
import { errorMessage } from '../lib/errors';
import { formatChecks, hasFatalFailure, runChecks } from './check';
import { connectDebugConsole, findDebugConsole, relayConsole } from './exec';
import { findManagementSocket, readSandboxMetrics } from './metrics';
import { DEFAULT_CONTAINERD_STATE, factoryDestroy, factoryInit, factoryStatus } from './factory';
import { createHypervisor } from '../hypervisors/factory';
import { createLogger } from '../lib/logger';
import { RuntimeConfig } from '../config/runtime-config';

const USAGE = 'usage: kata-ts-runtime check [--kvm-timeout S] [--tcg-timeout S] | env | exec [--namespace NS] <sandbox-id> | metrics [--namespace NS] <sandbox-id> | factory init | factory status|destroy [--containerd-state DIR]\n';

/** `<sandbox-id>` or `--namespace NS <sandbox-id>` (also -n). */
function sandboxArgs(args: string[]): { sandboxId?: string; namespace?: string } {
  if (args.length === 1) return { sandboxId: args[0] };
  if (args.length === 3 && ['--namespace', '-n'].includes(args[0])) return { sandboxId: args[2], namespace: args[1] };
  return {};
}

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!(value > 0)) throw new Error(`${name} takes a positive number of seconds`);
  return value;
}

function driverChoice(config: RuntimeConfig) {
  return { ...config.hypervisor, ksm: config.runtime.ksm };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'check': {
      const lines = await runChecks(resolveConfig({}).config, { kvmTimeoutMs: option(args, '--kvm-timeout', 30) * 1000, tcgTimeoutMs: option(args, '--tcg-timeout', 120) * 1000 });
      process.stdout.write(formatChecks(lines));
      return hasFatalFailure(lines) ? 1 : 0;
    }
    case 'env': {
      // A pod may still name another file (runtime options, annotation); this is what the others get.
      // ignoredKeys: Kata keys the files set that kata-ts accepts without using, and why.
      const { via, files, config, ignoredKeys = [] } = resolveConfig({});
      process.stdout.write(JSON.stringify({ source: { via, files }, ignoredKeys, config }, null, 2) + '\n');
      return 0;
    }
    case 'exec': {
      const { sandboxId, namespace } = sandboxArgs(args);
      if (!sandboxId) break;
      // The configuration a sandbox without its own file gets: where its state lives.
      const socket = await connectDebugConsole(findDebugConsole(resolveConfig({}).config, sandboxId, namespace), sandboxId);
      // A raw-mode terminal must not outlive us, however we are stopped.
      for (const signal of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
        process.once(signal, () => {
          if (process.stdin.isTTY) process.stdin.setRawMode(false);
          process.exit(128 + os.constants.signals[signal]);
        });
      }
      return relayConsole(socket, { stdin: process.stdin, stdout: process.stdout }, sandboxId);
    }
    case 'metrics': {
      const { sandboxId, namespace } = sandboxArgs(args);
      if (!sandboxId) break;
      process.stdout.write(await readSandboxMetrics(findManagementSocket(resolveConfig({}).config, sandboxId, namespace)));
      return 0;
    }
    case 'factory': {
      const { config } = resolveConfig({});
      // Progress and problems on stderr; the answer on stdout.
      const logger = createLogger(2);
      const newHypervisor = () => createHypervisor(driverChoice(config), logger);
      // containerd's state dir (its `state` setting): where the spare shim pools are.
      let containerdState = DEFAULT_CONTAINERD_STATE;
      if (args.length === 3 && args[1] === '--containerd-state' && args[0] !== 'init') {
        if (!path.isAbsolute(args[2])) throw new Error(`--containerd-state takes an absolute path, not ${JSON.stringify(args[2])}`);
        containerdState = path.normalize(args[2]);
      } else if (args.length !== 1) break;
      const actions: Record<string, () => Promise<string> | string> = {
        init: () => factoryInit(config, newHypervisor, logger),
        status: () => factoryStatus(config, newHypervisor, containerdState),
        destroy: () => factoryDestroy(config, containerdState),
      };
      const action = actions[args[0]];
      if (!action) break;
      process.stdout.write(await action());
      return 0;
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
