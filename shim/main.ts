#!/usr/bin/env node
// containerd-shim-kata-v2: `start` and `delete` are short-lived actions containerd
// runs; `daemon` is the per-pod server `start` launches; `spare` is a daemon launched
// ahead of its pod, which a later `start` claims ([factory] spare_shims, spare.ts).
//
// Each action loads only its own modules: `start` runs on every pod's start, and the
// daemon's modules (protobuf, the sandbox, the drivers) cost it a few hundred ms of
// Node start-up it does not need.
import { errorMessage } from '../lib/errors';
import type { containerd } from '../lib/proto-types';
import { keepAllocatorSettingToSelf } from './daemon-allocator';
import { parseFlags } from './flags';

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  switch (flags.action) {
    case 'start': {
      const { startAction } = await import('./start');
      const address = await startAction(flags);
      process.stdout.write(address);
      return;
    }
    case 'delete': {
      const [{ deleteAction, KILLED_EXIT_STATUS }, { createLogger }, { encodeAs, timestamp }] = await Promise.all([import('./delete'), import('../lib/logger'), import('../lib/protos')]);
      await deleteAction(flags, createLogger(process.stderr, flags.debug ? 'debug' : 'warn').child({ action: 'delete', id: flags.id }));
      const bytes = encodeAs<containerd.task.v2.IDeleteResponse>('containerd.task.v2.DeleteResponse', { pid: 0, exit_status: KILLED_EXIT_STATUS, exited_at: timestamp(new Date()) });
      process.stdout.write(Buffer.from(bytes));
      return;
    }
    case 'daemon':
      keepAllocatorSettingToSelf();
      return (await import('./daemon')).runDaemon(flags);
    case 'spare':
      keepAllocatorSettingToSelf();
      return (await import('./spare')).runSpare(flags);
    case 'version':
      process.stdout.write(`containerd-shim-kata-v2 ${(await import('./version')).SHIM_VERSION}\n`);
      return;
    default:
      throw new Error(`unknown action '${flags.action}'; expected start, delete or -v`);
  }
}

main().catch((err) => {
  process.stderr.write(`containerd-shim-kata-v2: ${errorMessage(err)}\n`);
  process.exit(1);
});
