// Launching spare shim daemons (spare.ts is a spare's life, spare-pool.ts the pool).
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import { Logger } from '../lib/logger';
import { ShimFlags, spareArgs } from './flags';
import { MAX_SPARE_SHIMS } from '../config/runtime-config';
import { countSpares, daemonEnv, ensurePoolDir, markStarting, shimEntry, sparePoolDir, sparePoolKey } from './spare-pool';

/** Spares start at the lowest priority, so their start-up never competes with the pod whose daemon launched them. */
const LAUNCH_NICE = 19;

/**
 * Launches spares until the pool of this daemon's kind holds `wanted` (ready or on
 * their way). Never fails the caller: a pod starts the same without spares.
 * `spareVmConfig`: the configuration file each spare restores a VM by ([factory] spare_vms).
 */
export function topUpSpares(flags: ShimFlags, bundle: string, wanted: number, logger: Logger, spareVmConfig?: string): void {
  if (wanted <= 0) return;
  const entry = shimEntry();
  try {
    if (!fs.existsSync(entry)) throw new Error(`${entry} is missing (a spare runs the built shim)`);
    const dir = sparePoolDir(bundle, sparePoolKey(flags, process.env, entry));
    ensurePoolDir(dir);
    const launched: number[] = [];
    const nice = os.getPriority();
    for (let have = countSpares(dir); have < Math.min(wanted, MAX_SPARE_SHIMS); have++) {
      // Through nice(1), which execs Node under the same pid: every thread Node starts has the low priority.
      const child = spawn('nice', ['-n', String(LAUNCH_NICE), process.execPath, entry, ...spareArgs(flags, dir, wanted, nice, spareVmConfig)], { cwd: '/', detached: true, stdio: 'ignore', env: daemonEnv(process.env) });
      child.on('error', () => undefined); // reported below: no pid
      if (child.pid === undefined) throw new Error('cannot run nice(1)');
      markStarting(dir, child.pid);
      child.unref();
      launched.push(child.pid);
    }
    if (launched.length > 0) logger.info({ pool: dir, wanted, launched, withVms: Boolean(spareVmConfig) }, 'spare shim daemons launched');
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot launch spare shim daemons; pods start as without them');
  }
}
