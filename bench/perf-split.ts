// What a VM's vCPU thread spends its time on while a pod starts, from `perf script`
// samples: running translated guest code, or QEMU translating it (TCG) and the rest.
// bench/clone-profile.ts records the samples; this splits them by the agent calls the
// shim logged at debug level.

/** One sample of `perf script -F comm,tid,time,ip,sym,dso`. */
export interface PerfSample {
  comm: string;
  tid: number;
  /** Seconds; CLOCK_REALTIME when recorded with `-k CLOCK_REALTIME`. */
  time: number;
  sym: string;
  dso: string;
}

const SAMPLE = /^\s*(.+?)\s+(\d+)\s+(\d+\.\d+):\s+[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)\s*$/;

export function parsePerfScript(text: string): PerfSample[] {
  const out: PerfSample[] = [];
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (m) out.push({ comm: m[1], tid: Number(m[2]), time: Number(m[3]), sym: m[4].replace(/\+0x[0-9a-f]+$/, ''), dso: m[5] });
  }
  return out;
}

/** QEMU names its TCG vCPU threads "CPU <n>/TCG" (debug-threads=on). */
export const isVcpuThread = (s: PerfSample): boolean => /^CPU \d+\/TCG$/.test(s.comm);

export type SampleKind = 'guestCode' | 'translating' | 'qemuOther' | 'hostKernel' | 'other';

/**
 * guestCode: in TCG's code buffer (perf names it after the JIT map, perf-<pid>.map).
 * translating: in QEMU's named translation functions (tcg_*, translator_*, gen_*,
 * tb_gen_code). Debian's QEMU is stripped to its dynamic symbols, so the x86 decoder's
 * static functions land in qemuOther: `translating` is a lower bound.
 */
export function sampleKind(s: PerfSample): SampleKind {
  if (/perf-\d+\.map$|\[JIT\]/.test(s.dso)) return 'guestCode';
  if (s.dso.includes('[kernel')) return 'hostKernel';
  if (/qemu-system-/.test(s.dso)) return /^(tcg_|translator_|gen_|tb_gen_code)/.test(s.sym) ? 'translating' : 'qemuOther';
  return 'other';
}

/** A span of wall-clock time (seconds) named after what the shim was waiting for. */
export interface Phase {
  name: string;
  start: number;
  end: number;
}

export interface PhaseSplit {
  name: string;
  ms: number;
  /** vCPU samples in the phase over the samples a fully busy vCPU would give. */
  busy: number;
  /** Shares of the vCPU samples, summing to 1 (all 0 without samples). */
  share: Record<SampleKind, number>;
}

const KINDS: SampleKind[] = ['guestCode', 'translating', 'qemuOther', 'hostKernel', 'other'];

export function splitByPhase(samples: PerfSample[], phases: Phase[], frequencyHz: number): PhaseSplit[] {
  const vcpu = samples.filter(isVcpuThread);
  return phases.map((phase) => {
    const inside = vcpu.filter((s) => s.time >= phase.start && s.time < phase.end);
    const count = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<SampleKind, number>;
    for (const s of inside) count[sampleKind(s)]++;
    const seconds = phase.end - phase.start;
    const share = Object.fromEntries(KINDS.map((k) => [k, inside.length ? count[k] / inside.length : 0])) as Record<SampleKind, number>;
    return { name: phase.name, ms: seconds * 1000, busy: seconds > 0 ? inside.length / (seconds * frequencyHz) : 0, share };
  });
}

/**
 * The agent calls of one pod, as the shim logs them at debug level ("agent call", with
 * `ms`, logged when the answer came), for the shim whose `shim` field is `podId`.
 */
export function agentCallPhases(shimLog: string, podId: string): Phase[] {
  const phases: Phase[] = [];
  for (const line of shimLog.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { msg?: string; shim?: string; time?: string; method?: string; ms?: number };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (entry.shim !== podId || entry.msg !== 'agent call' || typeof entry.ms !== 'number' || !entry.time || !entry.method) continue;
    const end = Date.parse(entry.time) / 1000;
    phases.push({ name: entry.method, start: end - entry.ms / 1000, end });
  }
  return phases;
}

/** When the shim of `podId` first logged each message (seconds). */
export function firstLogged(shimLog: string, podId: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const line of shimLog.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; shim?: string; time?: string };
      if (entry.shim === podId && entry.msg && entry.time && !seen.has(entry.msg)) seen.set(entry.msg, Date.parse(entry.time) / 1000);
    } catch {
      /* not a shim line */
    }
  }
  return seen;
}
