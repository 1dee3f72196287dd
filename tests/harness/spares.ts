// Spare shim daemons ([factory] spare_shims) a containerd's pools hold, as the e2e suite
// and the bench look for them: ready spares listen on `<pid>.sock` (shim/spare-pool.ts).
import * as fs from 'fs';
import * as path from 'path';
import { SPARES_DIR_NAME } from '../../shim/spare-pool';

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
