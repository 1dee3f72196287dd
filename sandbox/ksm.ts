// The host's KSM switch, /sys/kernel/mm/ksm/run: 0 stops ksmd, 1 runs it, 2 stops it
// and unmerges every merged page (on the whole host, so we never write 2). The switch
// is host-wide: the last sandbox to start with "on" or "off" decides it for everyone,
// which is why "unchanged" is the default. KSM lets co-located VMs detect each other's
// memory contents through copy-on-write timing, so "off" suits multi-tenant hosts.
import * as fs from 'fs';
import * as path from 'path';
import { KsmMode } from '../config/runtime-config';
import { FailedPreconditionError } from '../lib/errors';

export const KSM_SYSFS = '/sys/kernel/mm/ksm';

export type KsmState =
  | { available: false; reason: string }
  | { available: true; run: number; pagesSharing: number; writable: boolean };

const RUN_MEANING: Record<number, string> = { 0: 'ksmd stopped', 1: 'ksmd running', 2: 'ksmd stopped, unmerging' };

export function describeKsm(state: KsmState): string {
  if (!state.available) return state.reason;
  return `run = ${state.run} (${RUN_MEANING[state.run] ?? 'unknown'}), ${state.pagesSharing} pages merged away`;
}

/** Whether the VMM should mark guest memory mergeable; undefined keeps the VMM's own default. */
export function memoryMergeFor(mode: KsmMode): boolean | undefined {
  return mode === 'unchanged' ? undefined : mode === 'on';
}

export class HostKsm {
  /** `dir` is injectable so tests need not touch the host's switch. */
  constructor(readonly dir = KSM_SYSFS) {}

  state(): KsmState {
    const read = (name: string): number => Number(fs.readFileSync(path.join(this.dir, name), 'utf8').trim());
    let run: number;
    try {
      run = read('run');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { available: false, reason: code === 'ENOENT' ? `this host has no KSM (${this.dir}/run does not exist: a kernel without CONFIG_KSM)` : `${this.dir}/run cannot be read: ${(err as Error).message}` };
    }
    let pagesSharing = 0;
    try {
      pagesSharing = read('pages_sharing');
    } catch {
      /* older kernels: the count is informational */
    }
    let writable = true;
    try {
      fs.accessSync(path.join(this.dir, 'run'), fs.constants.W_OK);
    } catch {
      writable = false;
    }
    return { available: true, run, pagesSharing, writable };
  }

  /** Sets the switch for `mode`; returns what was done, for the log. */
  apply(mode: KsmMode): string {
    if (mode === 'unchanged') return 'left unchanged';
    const wanted = mode === 'on' ? 1 : 0;
    const state = this.state();
    if (!state.available) {
      // Without KSM nothing is merged, which is all "off" asks for.
      if (mode === 'off') return `nothing to switch off: ${state.reason}`;
      throw new FailedPreconditionError(`configuration runtime ksm = "on", but ${state.reason}`);
    }
    if (state.run === wanted) return `already run = ${wanted}`;
    try {
      fs.writeFileSync(path.join(this.dir, 'run'), `${wanted}\n`);
    } catch (err) {
      throw new FailedPreconditionError(`configuration runtime ksm = "${mode}": cannot write ${wanted} to ${this.dir}/run: ${(err as Error).message} (it needs root; ksm = "unchanged" leaves the switch alone)`);
    }
    return `set run = ${wanted} (was ${state.run})`;
  }
}
