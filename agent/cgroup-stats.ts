// Reads a container's cgroup counters and shapes them like containerd's cgroup metrics
// messages (protos/containerd/cgroups/v{1,2}/metrics.proto), so the shim can pack them
// into the google.protobuf.Any that `ctr task metrics` and the CRI plugin decode.
//
// The returned objects use the proto field names (snake_case) as keys, ready for
// `Type.fromObject` of a protobufjs root loaded with keepCase: true. 64-bit counters
// are JS numbers while they are exact (<= 2^53-1) and decimal strings beyond that;
// protobufjs accepts both for uint64 fields.
//
// Conventions follow containerd/cgroups so numbers mean the same as with runc shims:
//  - v2: a limit file reading "max" (memory.max, memory.swap.max, pids.max, ...) is
//    reported as 2^64-1 (UNLIMITED), as cgroup2's Manager.Stat does.
//  - v1: "max" in pids.max is reported as 0 (as cgroup1's pids controller does); the
//    kernel's own v1 "unlimited" memory limit (e.g. 9223372036854771712) is passed on.
//  - v1 cpuacct.stat ticks (USER_HZ, 100 on Linux) are converted to nanoseconds.
// Missing or unreadable optional files leave their part out (or zero); only a cgroup
// that does not exist at all is an error.
import * as fs from 'fs';
import * as path from 'path';

/** A uint64 as protobufjs accepts it: a number when exact, else a decimal string. */
export type Uint64 = number | string;

export const CGROUP_V2_METRICS_TYPE = 'io.containerd.cgroups.v2.Metrics';
export const CGROUP_V1_METRICS_TYPE = 'io.containerd.cgroups.v1.Metrics';
export type CgroupMetricsTypeName = typeof CGROUP_V2_METRICS_TYPE | typeof CGROUP_V1_METRICS_TYPE;

/** 2^64-1: what containerd reports for a v2 limit of "max". */
export const UNLIMITED = '18446744073709551615';

const DEFAULT_ROOT = '/sys/fs/cgroup';
const DEFAULT_PROC = '/proc';
/** USER_HZ; containerd/cgroups hard-codes the same value for cpuacct.stat. */
const CLOCK_TICKS = 100;
const NS_PER_SEC = 1_000_000_000n;

// ---- v2 message shapes ------------------------------------------------------------

export interface PsiData {
  avg10?: number;
  avg60?: number;
  avg300?: number;
  total?: Uint64;
}
export interface PsiStats {
  some?: PsiData;
  full?: PsiData;
}
export interface V2PidsStat {
  current?: Uint64;
  limit?: Uint64;
}
export interface V2CpuStat {
  usage_usec?: Uint64;
  user_usec?: Uint64;
  system_usec?: Uint64;
  nr_periods?: Uint64;
  nr_throttled?: Uint64;
  throttled_usec?: Uint64;
  nr_bursts?: Uint64;
  burst_usec?: Uint64;
  psi?: PsiStats;
}
/** memory.stat keys share the proto field names; see V2_MEMORY_STAT_KEYS. */
export type V2MemoryStat = { [key: string]: Uint64 | PsiStats | undefined } & {
  usage?: Uint64;
  usage_limit?: Uint64;
  swap_usage?: Uint64;
  swap_limit?: Uint64;
  max_usage?: Uint64;
  swap_max_usage?: Uint64;
  psi?: PsiStats;
};
export interface V2MemoryEvents {
  low?: Uint64;
  high?: Uint64;
  max?: Uint64;
  oom?: Uint64;
  oom_kill?: Uint64;
  oom_group_kill?: Uint64;
}
export interface RdmaEntry {
  device: string;
  hca_handles?: number;
  hca_objects?: number;
}
export interface IOEntry {
  major: Uint64;
  minor: Uint64;
  rbytes: Uint64;
  wbytes: Uint64;
  rios: Uint64;
  wios: Uint64;
}
export interface V2HugeTlbStat {
  pagesize: string;
  current?: Uint64;
  max?: Uint64;
  failcnt?: Uint64;
}
export interface V2Metrics {
  pids?: V2PidsStat;
  cpu?: V2CpuStat;
  memory?: V2MemoryStat;
  rdma?: { current: RdmaEntry[]; limit: RdmaEntry[] };
  io?: { usage: IOEntry[]; psi?: PsiStats };
  hugetlb?: V2HugeTlbStat[];
  memory_events?: V2MemoryEvents;
}

// ---- v1 message shapes ------------------------------------------------------------

export interface V1MemoryEntry {
  limit?: Uint64;
  usage?: Uint64;
  max?: Uint64;
  failcnt?: Uint64;
}
export type V1MemoryStat = { [key: string]: Uint64 | V1MemoryEntry | undefined } & {
  usage?: V1MemoryEntry;
  swap?: V1MemoryEntry;
  kernel?: V1MemoryEntry;
  kernel_tcp?: V1MemoryEntry;
};
export interface V1CpuStat {
  usage: { total?: Uint64; kernel?: Uint64; user?: Uint64; per_cpu?: Uint64[] };
  throttling?: { periods?: Uint64; throttled_periods?: Uint64; throttled_time?: Uint64 };
}
export interface BlkIOEntry {
  op: string;
  device: string;
  major: Uint64;
  minor: Uint64;
  value: Uint64;
}
export type V1BlkIOStat = Partial<
  Record<
    | 'io_service_bytes_recursive'
    | 'io_serviced_recursive'
    | 'io_queued_recursive'
    | 'io_service_time_recursive'
    | 'io_wait_time_recursive'
    | 'io_merged_recursive'
    | 'io_time_recursive'
    | 'sectors_recursive',
    BlkIOEntry[]
  >
>;
export interface V1HugetlbStat {
  pagesize: string;
  usage?: Uint64;
  max?: Uint64;
  failcnt?: Uint64;
}
export interface V1Metrics {
  hugetlb?: V1HugetlbStat[];
  pids?: { current?: Uint64; limit?: Uint64 };
  cpu?: V1CpuStat;
  memory?: V1MemoryStat;
  blkio?: V1BlkIOStat;
  memory_oom_control?: { oom_kill_disable?: Uint64; under_oom?: Uint64; oom_kill?: Uint64 };
}

export type CgroupMetrics =
  | { typeName: typeof CGROUP_V2_METRICS_TYPE; metrics: V2Metrics }
  | { typeName: typeof CGROUP_V1_METRICS_TYPE; metrics: V1Metrics };

export interface ReadCgroupMetricsOptions {
  /** Where the cgroup filesystem is mounted; default /sys/fs/cgroup. */
  root?: string;
  /** procfs, for v1 block device names (/proc/partitions); default /proc. */
  procRoot?: string;
}

/** memory.stat keys (cgroup v2) that have a MemoryStat field of the same name. */
export const V2_MEMORY_STAT_KEYS: readonly string[] = [
  'anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty',
  'file_writeback', 'anon_thp', 'inactive_anon', 'active_anon', 'inactive_file',
  'active_file', 'unevictable', 'slab_reclaimable', 'slab_unreclaimable', 'pgfault',
  'pgmajfault', 'workingset_refault', 'workingset_activate', 'workingset_nodereclaim',
  'pgrefill', 'pgscan', 'pgsteal', 'pgactivate', 'pgdeactivate', 'pglazyfree',
  'pglazyfreed', 'thp_fault_alloc', 'thp_collapse_alloc', 'workingset_refault_anon',
  'workingset_refault_file', 'workingset_activate_anon', 'workingset_activate_file',
];

/** memory.stat keys (cgroup v1) → MemoryStat field names. */
export const V1_MEMORY_STAT_FIELDS: Readonly<Record<string, string>> = (() => {
  const local: Record<string, string> = {
    cache: 'cache', rss: 'rss', rss_huge: 'rss_huge', mapped_file: 'mapped_file',
    dirty: 'dirty', writeback: 'writeback', pgpgin: 'pg_pg_in', pgpgout: 'pg_pg_out',
    pgfault: 'pg_fault', pgmajfault: 'pg_maj_fault', inactive_anon: 'inactive_anon',
    active_anon: 'active_anon', inactive_file: 'inactive_file', active_file: 'active_file',
    unevictable: 'unevictable',
  };
  const out: Record<string, string> = {
    ...local,
    hierarchical_memory_limit: 'hierarchical_memory_limit',
    hierarchical_memsw_limit: 'hierarchical_swap_limit',
  };
  for (const [key, field] of Object.entries(local)) out[`total_${key}`] = `total_${field}`;
  return out;
})();

/**
 * Reads the cgroup at `cgroupsPath` (the OCI linux.cgroupsPath, relative to the cgroup
 * mount) and returns containerd's metrics message for the hierarchy in use:
 * v2 when `<root>/cgroup.controllers` exists, else v1.
 */
export function readCgroupMetrics(cgroupsPath: string, opts: ReadCgroupMetricsOptions = {}): CgroupMetrics {
  const root = path.resolve(opts.root ?? DEFAULT_ROOT);
  if (fs.existsSync(path.join(root, 'cgroup.controllers'))) {
    return { typeName: CGROUP_V2_METRICS_TYPE, metrics: readV2(cgroupDir(root, cgroupsPath)) };
  }
  return { typeName: CGROUP_V1_METRICS_TYPE, metrics: readV1(root, cgroupsPath, opts.procRoot ?? DEFAULT_PROC) };
}

// ---- helpers ------------------------------------------------------------------------

/** `<base>/<cgroupsPath>`, refusing paths that climb out of `base`. */
function cgroupDir(base: string, cgroupsPath: string): string {
  if (typeof cgroupsPath !== 'string' || cgroupsPath.includes('\0')) {
    throw new Error(`invalid cgroupsPath ${JSON.stringify(cgroupsPath)}`);
  }
  const dir = path.join(base, cgroupsPath);
  const rel = path.relative(base, dir);
  if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
    throw new Error(`cgroupsPath ${JSON.stringify(cgroupsPath)} escapes the cgroup mount ${base}`);
  }
  return dir;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** File contents, or undefined when the file is missing or unreadable. */
function readOptional(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Parses a decimal uint64; undefined for anything else (negative, garbage, empty). */
export function parseUint64(text: string): Uint64 | undefined {
  const s = text.trim();
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (Number.isSafeInteger(n)) return n;
  const big = BigInt(s);
  return (big > BigInt(UNLIMITED) ? BigInt(UNLIMITED) : big).toString();
}

function toUint64(value: bigint): Uint64 {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

/** A single-value file; `maxValue` is what "max" reads as. */
function readSingle(file: string, maxValue?: Uint64): Uint64 | undefined {
  const text = readOptional(file);
  if (text === undefined) return undefined;
  if (text.trim() === 'max') return maxValue;
  return parseUint64(text);
}

/** "key value" lines (memory.stat, cpu.stat, memory.events, ...). */
function readKeyValues(file: string): Map<string, Uint64> | undefined {
  const text = readOptional(file);
  if (text === undefined) return undefined;
  const out = new Map<string, Uint64>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) continue;
    const v = parseUint64(parts[1]);
    if (v !== undefined) out.set(parts[0], v);
  }
  return out;
}

/** A *.pressure file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" (+ "full ..."). */
function readPsi(file: string): PsiStats | undefined {
  const text = readOptional(file);
  if (text === undefined) return undefined;
  const out: PsiStats = {};
  for (const line of text.split('\n')) {
    const [kind, ...pairs] = line.trim().split(/\s+/);
    if (kind !== 'some' && kind !== 'full') continue;
    const data: PsiData = {};
    for (const pair of pairs) {
      const [k, v] = pair.split('=');
      if (v === undefined) continue;
      if (k === 'avg10' || k === 'avg60' || k === 'avg300') {
        const f = Number(v);
        if (Number.isFinite(f)) data[k] = f;
      } else if (k === 'total') {
        const t = parseUint64(v);
        if (t !== undefined) data.total = t;
      }
    }
    out[kind] = data;
  }
  return out.some || out.full ? out : undefined;
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

// ---- cgroup v2 ----------------------------------------------------------------------

function readV2(dir: string): V2Metrics {
  if (!isDir(dir)) throw new Error(`cgroup ${dir} does not exist`);
  const file = (name: string) => path.join(dir, name);
  const metrics: V2Metrics = {};

  const pidsCurrent = readSingle(file('pids.current'));
  const pidsLimit = readSingle(file('pids.max'), UNLIMITED);
  if (pidsCurrent !== undefined || pidsLimit !== undefined) {
    metrics.pids = { current: pidsCurrent ?? 0, limit: pidsLimit ?? 0 };
  }

  const cpuStat = readKeyValues(file('cpu.stat'));
  const cpuPsi = readPsi(file('cpu.pressure'));
  if (cpuStat || cpuPsi) {
    const cpu: V2CpuStat = {};
    for (const key of ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec', 'nr_bursts', 'burst_usec'] as const) {
      cpu[key] = cpuStat?.get(key) ?? 0;
    }
    if (cpuPsi) cpu.psi = cpuPsi;
    metrics.cpu = cpu;
  }

  const memoryStat = readKeyValues(file('memory.stat'));
  const usage = readSingle(file('memory.current'));
  if (memoryStat || usage !== undefined) {
    const memory: V2MemoryStat = {};
    for (const key of V2_MEMORY_STAT_KEYS) {
      const v = memoryStat?.get(key);
      if (v !== undefined) memory[key] = v;
    }
    memory.usage = usage ?? 0;
    memory.usage_limit = readSingle(file('memory.max'), UNLIMITED) ?? 0;
    memory.swap_usage = readSingle(file('memory.swap.current')) ?? 0;
    memory.swap_limit = readSingle(file('memory.swap.max'), UNLIMITED) ?? 0;
    memory.max_usage = readSingle(file('memory.peak')) ?? 0;
    memory.swap_max_usage = readSingle(file('memory.swap.peak')) ?? 0;
    const psi = readPsi(file('memory.pressure'));
    if (psi) memory.psi = psi;
    metrics.memory = memory;
  }

  const events = readKeyValues(file('memory.events'));
  if (events && events.size > 0) {
    metrics.memory_events = {
      low: events.get('low') ?? 0,
      high: events.get('high') ?? 0,
      max: events.get('max') ?? 0,
      oom: events.get('oom') ?? 0,
      oom_kill: events.get('oom_kill') ?? 0,
      oom_group_kill: events.get('oom_group_kill') ?? 0,
    };
  }

  const ioStat = readOptional(file('io.stat'));
  const ioPsi = readPsi(file('io.pressure'));
  if (ioStat !== undefined || ioPsi) {
    metrics.io = { usage: ioStat === undefined ? [] : parseIoStat(ioStat) };
    if (ioPsi) metrics.io.psi = ioPsi;
  }

  const rdmaCurrent = readOptional(file('rdma.current'));
  const rdmaMax = readOptional(file('rdma.max'));
  if (rdmaCurrent !== undefined || rdmaMax !== undefined) {
    metrics.rdma = { current: parseRdma(rdmaCurrent ?? ''), limit: parseRdma(rdmaMax ?? '') };
  }

  const hugetlb: V2HugeTlbStat[] = [];
  for (const name of listDir(dir).sort()) {
    const m = /^hugetlb\.([^.]+)\.current$/.exec(name);
    if (!m) continue;
    const pagesize = m[1];
    hugetlb.push({
      pagesize,
      current: readSingle(file(name)) ?? 0,
      max: readSingle(file(`hugetlb.${pagesize}.max`), UNLIMITED) ?? 0,
      failcnt: readKeyValues(file(`hugetlb.${pagesize}.events`))?.get('max') ?? 0,
    });
  }
  if (hugetlb.length > 0) metrics.hugetlb = hugetlb;

  return metrics;
}

/** io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per device. */
export function parseIoStat(text: string): IOEntry[] {
  const out: IOEntry[] = [];
  for (const line of text.split('\n')) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const entry: IOEntry = { major: parseUint64(m[1]) ?? 0, minor: parseUint64(m[2]) ?? 0, rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
    for (const pair of pairs) {
      const [k, v] = pair.split('=');
      if (v === undefined) continue;
      if (k === 'rbytes' || k === 'wbytes' || k === 'rios' || k === 'wios') {
        const n = parseUint64(v);
        if (n !== undefined) entry[k] = n;
      }
    }
    out.push(entry);
  }
  return out;
}

/** rdma.current / rdma.max: "mlx4_0 hca_handle=2 hca_object=2000" ("max" → unset). */
function parseRdma(text: string): RdmaEntry[] {
  const out: RdmaEntry[] = [];
  for (const line of text.split('\n')) {
    const [device, ...pairs] = line.trim().split(/\s+/);
    if (!device || pairs.length === 0) continue;
    const entry: RdmaEntry = { device };
    for (const pair of pairs) {
      const [k, v] = pair.split('=');
      const n = v === undefined ? NaN : Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) continue;
      if (k === 'hca_handle') entry.hca_handles = n;
      else if (k === 'hca_object') entry.hca_objects = n;
    }
    out.push(entry);
  }
  return out;
}

// ---- cgroup v1 ----------------------------------------------------------------------

/**
 * The mount of one v1 controller: `<root>/<name>` (often a symlink such as
 * cpuacct → cpu,cpuacct), else any `<root>/a,b,...` directory that lists it.
 */
function v1ControllerMount(root: string, controller: string): string | undefined {
  const direct = path.join(root, controller);
  if (isDir(direct)) return direct;
  for (const entry of listDir(root)) {
    if (entry.split(',').includes(controller) && isDir(path.join(root, entry))) return path.join(root, entry);
  }
  return undefined;
}

function readV1(root: string, cgroupsPath: string, procRoot: string): V1Metrics {
  const dirs = new Map<string, string>();
  for (const controller of ['memory', 'cpuacct', 'cpu', 'pids', 'blkio', 'hugetlb']) {
    const mount = v1ControllerMount(root, controller);
    if (!mount) continue;
    const dir = cgroupDir(mount, cgroupsPath);
    if (isDir(dir)) dirs.set(controller, dir);
  }
  if (dirs.size === 0) {
    throw new Error(`cgroup ${cgroupsPath} does not exist under ${root} (no memory, cpu, cpuacct, pids, blkio or hugetlb hierarchy has it)`);
  }
  const metrics: V1Metrics = {};

  const memDir = dirs.get('memory');
  if (memDir) {
    const file = (name: string) => path.join(memDir, name);
    const memory: V1MemoryStat = {};
    const stat = readKeyValues(file('memory.stat'));
    for (const [key, field] of Object.entries(V1_MEMORY_STAT_FIELDS)) {
      const v = stat?.get(key);
      if (v !== undefined) memory[field] = v;
    }
    const entry = (prefix: string): V1MemoryEntry | undefined => {
      const e: V1MemoryEntry = {
        usage: readSingle(file(`${prefix}.usage_in_bytes`)),
        limit: readSingle(file(`${prefix}.limit_in_bytes`)),
        max: readSingle(file(`${prefix}.max_usage_in_bytes`)),
        failcnt: readSingle(file(`${prefix}.failcnt`)),
      };
      if (Object.values(e).every((v) => v === undefined)) return undefined;
      return { usage: e.usage ?? 0, limit: e.limit ?? 0, max: e.max ?? 0, failcnt: e.failcnt ?? 0 };
    };
    // ctr's table printer dereferences memory.usage, so it is always present.
    memory.usage = entry('memory') ?? { usage: 0, limit: 0, max: 0, failcnt: 0 };
    const swap = entry('memory.memsw');
    if (swap) memory.swap = swap;
    const kernel = entry('memory.kmem');
    if (kernel) memory.kernel = kernel;
    const kernelTcp = entry('memory.kmem.tcp');
    if (kernelTcp) memory.kernel_tcp = kernelTcp;
    metrics.memory = memory;

    const oom = readKeyValues(file('memory.oom_control'));
    if (oom) {
      metrics.memory_oom_control = {
        oom_kill_disable: oom.get('oom_kill_disable') ?? 0,
        under_oom: oom.get('under_oom') ?? 0,
        oom_kill: oom.get('oom_kill') ?? 0,
      };
    }
  }

  const acctDir = dirs.get('cpuacct');
  const cpuDir = dirs.get('cpu');
  if (acctDir || cpuDir) {
    // ctr's table printer dereferences cpu.usage, so it is always present.
    const cpu: V1CpuStat = { usage: { total: 0, kernel: 0, user: 0, per_cpu: [] } };
    if (acctDir) {
      cpu.usage.total = readSingle(path.join(acctDir, 'cpuacct.usage')) ?? 0;
      const percpu = readOptional(path.join(acctDir, 'cpuacct.usage_percpu'));
      if (percpu !== undefined) {
        cpu.usage.per_cpu = percpu.trim().split(/\s+/).filter(Boolean).map((v) => parseUint64(v) ?? 0);
      }
      const ticks = readKeyValues(path.join(acctDir, 'cpuacct.stat'));
      const toNs = (v: Uint64 | undefined): Uint64 => (v === undefined ? 0 : toUint64((BigInt(v) * NS_PER_SEC) / BigInt(CLOCK_TICKS)));
      cpu.usage.user = toNs(ticks?.get('user'));
      cpu.usage.kernel = toNs(ticks?.get('system'));
    }
    const cpuStat = cpuDir ? readKeyValues(path.join(cpuDir, 'cpu.stat')) : undefined;
    if (cpuStat) {
      cpu.throttling = {
        periods: cpuStat.get('nr_periods') ?? 0,
        throttled_periods: cpuStat.get('nr_throttled') ?? 0,
        throttled_time: cpuStat.get('throttled_time') ?? 0,
      };
    }
    metrics.cpu = cpu;
  }

  const pidsDir = dirs.get('pids');
  if (pidsDir) {
    const current = readSingle(path.join(pidsDir, 'pids.current'));
    const limit = readSingle(path.join(pidsDir, 'pids.max'), 0);
    // The root of the pids hierarchy has neither file.
    if (current !== undefined || limit !== undefined) metrics.pids = { current: current ?? 0, limit: limit ?? 0 };
  }

  const blkioDir = dirs.get('blkio');
  if (blkioDir) metrics.blkio = readV1Blkio(blkioDir, procRoot);

  const hugetlbDir = dirs.get('hugetlb');
  if (hugetlbDir) {
    const hugetlb: V1HugetlbStat[] = [];
    for (const name of listDir(hugetlbDir).sort()) {
      const m = /^hugetlb\.([^.]+)\.usage_in_bytes$/.exec(name);
      if (!m) continue;
      const prefix = path.join(hugetlbDir, `hugetlb.${m[1]}`);
      hugetlb.push({
        pagesize: m[1],
        usage: readSingle(`${prefix}.usage_in_bytes`) ?? 0,
        max: readSingle(`${prefix}.max_usage_in_bytes`) ?? 0,
        failcnt: readSingle(`${prefix}.failcnt`) ?? 0,
      });
    }
    if (hugetlb.length > 0) metrics.hugetlb = hugetlb;
  }

  return metrics;
}

/** "MAJ:MIN" → device name, from /proc/partitions ("major minor #blocks name"). */
function blockDeviceNames(procRoot: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const line of (readOptional(path.join(procRoot, 'partitions')) ?? '').split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length === 4 && /^\d+$/.test(parts[0]) && /^\d+$/.test(parts[1])) {
      names.set(`${parts[0]}:${parts[1]}`, `/dev/${parts[3]}`);
    }
  }
  return names;
}

/** blkio tables: "MAJ:MIN Op value" (or "MAJ:MIN value"), plus a "Total N" line. */
function parseBlkioTable(text: string, devices: Map<string, string>): BlkIOEntry[] {
  const out: BlkIOEntry[] = [];
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(parts[0] ?? '');
    if (!m || parts.length < 2 || parts.length > 3) continue;
    const value = parseUint64(parts[parts.length - 1]);
    if (value === undefined) continue;
    out.push({
      op: parts.length === 3 ? parts[1] : '',
      device: devices.get(`${m[1]}:${m[2]}`) ?? '',
      major: parseUint64(m[1]) ?? 0,
      minor: parseUint64(m[2]) ?? 0,
      value,
    });
  }
  return out;
}

function readV1Blkio(dir: string, procRoot: string): V1BlkIOStat {
  const devices = blockDeviceNames(procRoot);
  const table = (name: string) => {
    const text = readOptional(path.join(dir, `blkio.${name}`));
    return text === undefined ? [] : parseBlkioTable(text, devices);
  };
  // Like containerd: the CFQ/BFQ files first, the throttle files when those are empty.
  const stat: V1BlkIOStat = {};
  const cfq: Array<[keyof V1BlkIOStat, string]> = [
    ['sectors_recursive', 'sectors_recursive'],
    ['io_service_bytes_recursive', 'io_service_bytes_recursive'],
    ['io_serviced_recursive', 'io_serviced_recursive'],
    ['io_queued_recursive', 'io_queued_recursive'],
    ['io_service_time_recursive', 'io_service_time_recursive'],
    ['io_wait_time_recursive', 'io_wait_time_recursive'],
    ['io_merged_recursive', 'io_merged_recursive'],
    ['io_time_recursive', 'time_recursive'],
  ];
  let found = 0;
  for (const [field, name] of cfq) {
    const entries = table(name);
    if (entries.length > 0) {
      stat[field] = entries;
      found += entries.length;
    }
  }
  if (found === 0) {
    const serviced = table('throttle.io_serviced_recursive');
    const bytes = table('throttle.io_service_bytes_recursive');
    stat.io_serviced_recursive = serviced.length > 0 ? serviced : table('throttle.io_serviced');
    stat.io_service_bytes_recursive = bytes.length > 0 ? bytes : table('throttle.io_service_bytes');
  }
  return stat;
}
