// What a VM's vCPU thread spends its time on while a pod starts, from `perf script`
// samples: running translated guest code, or QEMU translating it (TCG) and the rest.
// bench/clone-profile.ts records the samples; this splits them by the agent calls the
// shim logged at debug level.

/** One sample of `perf script -F comm,pid,tid,time,ip,sym,dso`. */
export interface PerfSample {
  comm: string;
  pid: number;
  tid: number;
  /** The sampled address (user space: below 2^53, exact as a number). */
  ip: number;
  /** Seconds; CLOCK_REALTIME when recorded with `-k CLOCK_REALTIME`. */
  time: number;
  sym: string;
  dso: string;
}

// The dso is the last parenthesised part, which may hold one level of its own
// ("/memfd:ram0 (deleted)"); a symbol may hold parentheses and spaces.
const SAMPLE = /^\s*(.+?)\s+(\d+)\/(\d+)\s+(\d+\.\d+):\s+([0-9a-f]+)\s+(.*?)\s+\(((?:[^()]|\([^()]*\))*)\)\s*$/;
/**
 * `--show-mmap-events`: an executable mapping of a file by process `pid`, its start,
 * length and file offset (perf prints offset 0 as "0", others as "0x…").
 */
const MMAP = /PERF_RECORD_MMAP2 (\d+)\/\d+: \[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ (?:0x)?([0-9a-f]+)[^\]]*\]: r-xp (.+)$/;

export interface ExecMapping {
  pid: number;
  start: number;
  length: number;
  fileOffset: number;
  path: string;
}

/** x86-64 kernel addresses start here; a user-space dso in brackets ([vdso]) is below. */
const KERNEL_SPACE = 0xffff800000000000;

/** The samples, executable file mappings, and how many non-empty lines were neither (to report, not to hide). */
export function parsePerfScript(text: string): { samples: PerfSample[]; mappings: ExecMapping[]; unparsed: number } {
  const samples: PerfSample[] = [];
  const mappings: ExecMapping[] = [];
  let unparsed = 0;
  for (const line of text.split('\n')) {
    const map = MMAP.exec(line);
    if (map) {
      mappings.push({ pid: Number(map[1]), start: parseInt(map[2], 16), length: parseInt(map[3], 16), fileOffset: parseInt(map[4], 16), path: map[5].trim() });
      continue;
    }
    if (/PERF_RECORD_/.test(line)) continue; // other side-band events
    const m = SAMPLE.exec(line);
    if (m) samples.push({ comm: m[1], pid: Number(m[2]), tid: Number(m[3]), time: Number(m[4]), ip: parseInt(m[5], 16), sym: m[6].replace(/\+0x[0-9a-f]+$/, ''), dso: m[7] });
    else if (line.trim()) unparsed++;
  }
  return { samples, mappings, unparsed };
}

/**
 * Where the unnamed samples in a stripped binary fall: each is counted under the
 * address range from the nearest exported symbol at or below it to the next one
 * (`symbols`: file offset and name, as `nm -D` gives them for a PIE whose code is
 * mapped at its file offsets). Those ranges hold static functions too, from the same
 * source file or, at its edges, the next: they say roughly where, not which function.
 * A sample of no known mapping of its process counts under "(no mapping)".
 */
export function unnamedByNeighbour(samples: PerfSample[], mappings: ExecMapping[], binary: string, symbols: Array<{ offset: number; name: string }>): Map<string, number> {
  const sorted = [...symbols].sort((a, b) => a.offset - b.offset);
  const ofBinary = mappings.filter((m) => m.path === binary);
  const counts = new Map<string, number>();
  for (const s of samples) {
    if (s.dso !== binary || s.sym !== '[unknown]') continue;
    const map = ofBinary.find((m) => m.pid === s.pid && s.ip >= m.start && s.ip < m.start + m.length);
    if (!map) {
      counts.set('(no mapping)', (counts.get('(no mapping)') ?? 0) + 1);
      continue;
    }
    const offset = s.ip - map.start + map.fileOffset;
    let lo = 0;
    let hi = sorted.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid].offset <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const name = found < 0 ? '(before any symbol)' : `${sorted[found].name} … ${sorted[found + 1]?.name ?? '(end)'}`;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

/** QEMU names its TCG vCPU threads "CPU <n>/TCG" (debug-threads=on). */
export const isVcpuThread = (s: PerfSample): boolean => /^CPU \d+\/TCG$/.test(s.comm);

export type SampleKind = 'guestCode' | 'translating' | 'qemuOther' | 'hostKernel' | 'other';
export const SAMPLE_KINDS: SampleKind[] = ['guestCode', 'translating', 'qemuOther', 'hostKernel', 'other'];

/**
 * guestCode: in TCG's code buffer (an anonymous executable mapping, which perf names
 * perf-<pid>.map). translating: in QEMU's exported translation functions (tcg_*,
 * translator_*, gen_*, tb_gen_code, without the tcg_* that run guest code). Debian's
 * QEMU keeps only its dynamic symbols, so the x86 decoder's static functions land in
 * qemuOther, beside TCG's helpers, softmmu TLB fills, TB lookups and device emulation.
 */
export function sampleKind(s: PerfSample): SampleKind {
  if (/perf-\d+\.map$|\[JIT\]/.test(s.dso)) return 'guestCode';
  if (s.ip >= KERNEL_SPACE) return 'hostKernel'; // the kernel and its modules
  if (/qemu-system-/.test(s.dso)) return TRANSLATING.test(s.sym) && !RUNNING.test(s.sym) ? 'translating' : 'qemuOther';
  return 'other';
}

const TRANSLATING = /^(tcg_|translator_|gen_|tb_gen_code)/;
/** tcg_* functions of the execution loop, not of translation. */
const RUNNING = /^tcg_(cpus?_|handle_interrupt|tb_lookup|exec)/;

/** A span of wall-clock time (seconds) named after what the shim was waiting for. */
export interface Phase {
  name: string;
  start: number;
  end: number;
}

export interface PhaseSplit {
  name: string;
  ms: number;
  /** The vCPU's CPU time in the phase over the phase's time (one vCPU). */
  busy: number;
  /** How many vCPU samples the shares are of. */
  samples: number;
  /** Shares of the vCPU samples, summing to 1 (all 0 without samples). */
  share: Record<SampleKind, number>;
}

/**
 * The vCPU samples of QEMU process `vmmPid` by phase. Samples are taken every
 * `periodSeconds` of CPU time (perf -e cpu-clock -c N), so their count is CPU time.
 */
export function splitByPhase(samples: PerfSample[], vmmPid: number, phases: Phase[], periodSeconds: number): PhaseSplit[] {
  const vcpu = samples.filter((s) => s.pid === vmmPid && isVcpuThread(s));
  return phases.map((phase) => {
    const inside = vcpu.filter((s) => s.time >= phase.start && s.time < phase.end);
    const count = Object.fromEntries(SAMPLE_KINDS.map((k) => [k, 0])) as Record<SampleKind, number>;
    for (const s of inside) count[sampleKind(s)]++;
    const seconds = phase.end - phase.start;
    const share = Object.fromEntries(SAMPLE_KINDS.map((k) => [k, inside.length ? count[k] / inside.length : 0])) as Record<SampleKind, number>;
    return { name: phase.name, ms: seconds * 1000, busy: seconds > 0 ? (inside.length * periodSeconds) / seconds : 0, samples: inside.length, share };
  });
}

/** A line of one pod's shim log: its message, time (seconds) and every field. */
interface ShimLine {
  msg: string;
  time: number;
  fields: Record<string, unknown>;
}

/** The JSON lines that the shim of `podId` logged with a message and a time; containerd's own lines and broken ones skipped. */
function shimLines(shimLog: string, podId: string): ShimLine[] {
  const out: ShimLine[] = [];
  for (const line of shimLog.split('\n')) {
    if (!line.startsWith('{')) continue;
    let fields: Record<string, unknown>;
    try {
      fields = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // not a whole shim line
    }
    if (fields.shim === podId && typeof fields.msg === 'string' && typeof fields.time === 'string') out.push({ msg: fields.msg, time: Date.parse(fields.time) / 1000, fields });
  }
  return out;
}

/**
 * The agent calls of one pod, as the shim logs them at debug level ("agent call", with
 * `ms`, logged when the answer came), for the shim whose `shim` field is `podId`.
 */
export function agentCallPhases(shimLog: string, podId: string): Phase[] {
  const phases: Phase[] = [];
  for (const { msg, time: end, fields } of shimLines(shimLog, podId)) {
    const { method, ms } = fields;
    if (msg !== 'agent call' || typeof ms !== 'number' || typeof method !== 'string' || !method) continue;
    const earlier = phases.filter((p) => p.name === method || p.name.startsWith(`${method} #`)).length;
    phases.push({ name: earlier ? `${method} #${earlier + 1}` : method, start: end - ms / 1000, end });
  }
  return phases;
}

/** The first line the shim of `podId` logged with each message: its time (seconds) and fields. */
export function firstLogged(shimLog: string, podId: string): Map<string, { time: number; fields: Record<string, unknown> }> {
  const seen = new Map<string, { time: number; fields: Record<string, unknown> }>();
  for (const { msg, time, fields } of shimLines(shimLog, podId)) if (!seen.has(msg)) seen.set(msg, { time, fields });
  return seen;
}
