#!/usr/bin/env node
// containerd-shim-kata-v2: `start` and `delete` are short-lived actions containerd
// runs; `daemon` is the per-pod server `start` launches.
import { errorMessage } from '../lib/errors';
import { createLogger } from '../lib/logger';
import { encodeAs, timestamp } from '../lib/protos';
import type { containerd } from '../lib/proto-types';
import { runDaemon } from './daemon';
import { deleteAction, KILLED_EXIT_STATUS } from './delete';
import { parseFlags } from './flags';
import { startAction } from './start';
import { SHIM_VERSION } from './task-service';

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  switch (flags.action) {
    case 'start': {
      const address = await startAction(flags);
      process.stdout.write(address);
      return;
    }
    case 'delete': {
      await deleteAction(flags, createLogger(process.stderr, flags.debug ? 'debug' : 'warn').child({ action: 'delete', id: flags.id }));
      const bytes = encodeAs<containerd.task.v2.IDeleteResponse>('containerd.task.v2.DeleteResponse', { pid: 0, exit_status: KILLED_EXIT_STATUS, exited_at: timestamp(new Date()) });
      process.stdout.write(Buffer.from(bytes));
      return;
    }
    case 'daemon':
      return runDaemon(flags);
    case 'version':
      process.stdout.write(`containerd-shim-kata-v2 ${SHIM_VERSION}\n`);
      return;
    default:
      throw new Error(`unknown action '${flags.action}'; expected start, delete or -v`);
  }
}

main().catch((err) => {
  process.stderr.write(`containerd-shim-kata-v2: ${errorMessage(err)}\n`);
  process.exit(1);
});
