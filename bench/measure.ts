// Measurement helpers for bench/run.ts: process memory and CPU from /proc, timing a
// ctr run to its first output byte and to its exit, and medians.
import { spawn } from 'child_process';
import * as fs from 'fs';
import { kibField } from '../lib/proc-stats';
import { statField } from '../lib/proc-stat';

/**
 * Waits for every stop, whichever fails. After a good measurement a failed stop is
 * thrown (a pod that booted cold, a leftover mount); after a failed one it is only
 * said, so the measurement's own error is the one thrown.
 */
export async function stopAll(stops: Array<Promise<unknown>>, measured: boolean, say: (line: string) => void): Promise<void> {
  const failures = (await Promise.allSettled(stops)).filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => s.reason as Error);
  if (failures.length > 0 && measured) throw failures.length === 1 ? failures[0] : new AggregateError(failures, `${failures.length} environments failed to stop cleanly`);
  for (const err of failures) say(`stopping an environment also failed: ${err.message}`);
}

/** Round `round` of interleaved measurements: every arm once, starting with arm `round mod arms`. */
export function roundOrder(arms: number, round: number): number[] {
  return Array.from({ length: arms }, (_, k) => (round + k) % arms);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Resident set size of a process in KiB (0 if it is gone). */
export function rssKiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * A process's proportional set size and private memory in KiB (/proc/<pid>/smaps_rollup;
 * 0 if it is gone). PSS counts a page shared by N processes as 1/N to each, so summing it
 * over pods counts the DAX rootfs and a VM template's pages once, where RSS sums count
 * them in every pod.
 */
export function pssKiB(pid: number): { pss: number; private: number } {
  try {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (name: string): number => (kibField(text, name) ?? 0) / 1024;
    return { pss: kib('Pss'), private: kib('Private_Clean') + kib('Private_Dirty') };
  } catch {
    return { pss: 0, private: 0 };
  }
}

/** CPU time (user + system) of a process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return statField(stat, 14) + statField(stat, 15); // utime, stime
}

/** Children (recursively) of a pid, from /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = statField(stat, 4);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export interface RunTiming {
  firstOutputMs: number;
  exitMs: number;
  code: number | null;
}

/** Runs ctr with args and times the first stdout byte and the exit. */
export function timeCtrRun(address: string, namespace: string, args: string[]): Promise<RunTiming> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const ms = (): number => Number(process.hrtime.bigint() - started) / 1e6;
    let firstOutputMs = -1;
    const child = spawn('ctr', ['-a', address, '-n', namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.on('data', () => {
      if (firstOutputMs < 0) firstOutputMs = ms();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`ctr ${args.join(' ')} exited ${code}: ${stderr}`));
      resolve({ firstOutputMs, exitMs: ms(), code });
    });
  });
}

/** What a VMM's memory holds, as PSS in KiB: how a pod's VM memory splits up. */
export interface VmmMemory {
  /** The guest's RAM: anonymous, a memfd (vhost-user backends), or a template's RAM file (counted 1/N to each of N clones). */
  guestRam: number;
  /** QEMU's buffer of translated guest code (TCG only): anonymous executable mappings, split into regions by guard pages. */
  translatedCode: number;
  /** The DAX rootfs image, shared by every VM. */
  rootfsImage: number;
  /** QEMU's own heap, stacks and libraries (and hot-plugged DIMMs, which no idle pod has). */
  rest: number;
}

/** Anonymous writable mappings this large are guest RAM, never QEMU's heap arenas (64 MiB at most). */
const LARGE_MAPPING_KIB = 256 * 1024;

/** Which part of a VMM's memory a mapping is, from its permissions, size and name. */
function mappingKind(perms: string, sizeKiB: number, rawName: string): keyof VmmMemory {
  const name = rawName.replace(/ \(deleted\)$/, '');
  if (name === '' && perms.includes('x')) return 'translatedCode';
  if ((name === '' && sizeKiB >= LARGE_MAPPING_KIB) || name.startsWith('/memfd:') || name.endsWith('/memory')) return 'guestRam';
  if (name.endsWith('/rootfs.img')) return 'rootfsImage';
  return 'rest';
}

/** PSS in KiB by part, from the text of /proc/<pid>/smaps. */
export function vmmMemoryFromSmaps(text: string): VmmMemory {
  const out: VmmMemory = { guestRam: 0, translatedCode: 0, rootfsImage: 0, rest: 0 };
  let kind: keyof VmmMemory = 'rest';
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      kind = mappingKind(head[3], (parseInt(head[2], 16) - parseInt(head[1], 16)) / 1024, head[4]);
      continue;
    }
    const pss = /^Pss:\s+(\d+) kB/.exec(line);
    if (pss) out[kind] += Number(pss[1]);
  }
  return out;
}

/** A VMM process's PSS by part (/proc/<pid>/smaps); zeros if it is gone. */
export function vmmMemoryKiB(pid: number): VmmMemory {
  try {
    return vmmMemoryFromSmaps(fs.readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  } catch {
    return { guestRam: 0, translatedCode: 0, rootfsImage: 0, rest: 0 };
  }
}
