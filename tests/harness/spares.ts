// Spare shim daemons ([factory] spare_shims) a containerd's pools hold, as the e2e suite
// and the bench look for them: ready spares listen on `<pid>.sock` (shim/spare-pool.ts).
import * as fs from 'fs';
import * as path from 'path';
import { lookupService, TASK_SERVICE } from '../../lib/protos';
import { isZombie, processArgs } from '../../lib/recorded-process';
import { SPARES_DIR_NAME } from '../../shim/spare-pool';
import { TtrpcClient } from '../../ttrpc';

/** The pids of the ready spares in every pool under a containerd state dir. */
export function readySpares(containerdState: string): number[] {
  const root = path.join(containerdState, SPARES_DIR_NAME);
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .flatMap((key) => fs.readdirSync(path.join(root, key)))
    .map((name) => /^(\d+)\.sock$/.exec(name)?.[1])
    .filter((pid): pid is string => pid !== undefined)
    .map(Number);
}

/**
 * A ready spare under a containerd state dir, once there is one (`exactlyOne`: once there
 * is exactly one), polled every `pollMs` within `timeoutMs`.
 */
export async function waitForReadySpare(containerdState: string, opts: { timeoutMs: number; exactlyOne: boolean; pollMs: number }): Promise<number> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const ready = readySpares(containerdState);
    if (opts.exactlyOne ? ready.length === 1 : ready.length > 0) return ready[0];
    if (Date.now() > deadline) throw new Error(`expected ${opts.exactlyOne ? 'one ready spare' : 'a ready spare'} under ${containerdState} within ${opts.timeoutMs} ms, found ${JSON.stringify(ready)}`);
    await new Promise((r) => setTimeout(r, opts.pollMs));
  }
}

/** The one ready spare under a containerd state dir, once there is exactly one (within `timeoutMs`). */
export function oneReadySpare(containerdState: string, timeoutMs: number): Promise<number> {
  return waitForReadySpare(containerdState, { timeoutMs, exactlyOne: true, pollMs: 200 });
}

/** The pid of the shim serving a task, as it answers Connect. */
export async function shimPidAt(containerdState: string, namespace: string, id: string): Promise<number> {
  const bundle = path.join(containerdState, 'io.containerd.runtime.v2.task', namespace, id);
  const address = fs.readFileSync(path.join(bundle, 'address'), 'utf8').trim().replace(/^unix:\/\//, '');
  const client = await TtrpcClient.connect(address);
  try {
    return (await client.call(lookupService(TASK_SERVICE), 'Connect', { id }, { timeoutMs: 10_000 })).shim_pid;
  } finally {
    client.close();
  }
}

/** The live VMMs whose argv names a pid file under `dir` (spare VMs under `<state_dir>/.warm`: sandbox/warm-vm.ts). */
export function vmmsUnder(dir: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((pid) => {
      const args = processArgs(pid);
      const i = args.indexOf('-pidfile');
      return i >= 0 && args[i + 1]?.startsWith(`${dir}/`) && !isZombie(pid);
    });
}
