// A pod start measured on a spare ([factory] spare_shims, spare_vms): the bench waits,
// unmeasured, until the pool holds a ready spare (the steady state: a spare is ready
// about a second after the pod whose Create launched it, a spare with a VM once its VM
// is restored), and afterwards checks in containerd's log that the pod ran on that spare
// (and in its VM): a claim that fell back to a launched daemon must not be measured as a spare's.
import { waitForReadySpare } from '../tests/harness/spares';

const SPARE_READY_TIMEOUT_MS = 60_000;

/** A ready spare of the pool (the first, if several). */
export function spareReady(containerdState: string): Promise<number> {
  return waitForReadySpare(containerdState, { timeoutMs: SPARE_READY_TIMEOUT_MS, exactlyOne: false, pollMs: 100 });
}

/** Runs `start` (timed by the caller) once a spare is ready; throws unless the pod ran on it (`withVm`: in its VM). */
export async function onReadySpare<T>(containerdState: string, logs: () => string, withVm: boolean, start: () => Promise<T>): Promise<T> {
  const spare = await spareReady(containerdState);
  const result = await start();
  if (!new RegExp(`"pid":${spare},"msg":"shim daemon ready"`).test(logs())) throw new Error(`the pod did not run on spare ${spare}`);
  if (withVm && !new RegExp(`"pid":${spare},[^\\n]*"msg":"VM taken from a spare shim`).test(logs())) throw new Error(`the pod did not run in spare ${spare}'s VM`);
  return result;
}
