import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import {
  CGROUP_V1_METRICS_TYPE,
  CGROUP_V2_METRICS_TYPE,
  UNLIMITED,
  V1Metrics,
  V2Metrics,
  parseIoStat,
  parseUint64,
  readCgroupMetrics,
} from './cgroup-stats';

const PROTOS = path.resolve(__dirname, '..', 'protos');

function loadMetricsProtos(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (target.startsWith('google/protobuf/')) return target;
    return path.isAbsolute(target) ? target : path.join(PROTOS, target);
  };
  root.loadSync(['containerd/cgroups/v1/metrics.proto', 'containerd/cgroups/v2/metrics.proto'], { keepCase: true });
  root.resolveAll();
  return root;
}

/** Numbers/Longs as strings, proto3 defaults (0, "", [], null) dropped, for comparing objects. */
function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const n = normalize(v);
      if (n === undefined || n === null || n === '0' || n === '' || (Array.isArray(n) && n.length === 0)) continue;
      out[k] = n;
    }
    return out;
  }
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return value;
}

/** fromObject → encode → decode → plain object, as the shim and ctr would see it. */
function roundTrip(root: protobuf.Root, typeName: string, metrics: object): unknown {
  const type = root.lookupType(typeName);
  const err = type.verify(type.fromObject(metrics));
  expect(err).toBeNull();
  const bytes = type.encode(type.fromObject(metrics)).finish();
  return type.toObject(type.decode(bytes), { longs: String });
}

function write(dir: string, files: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
}

// Real formats, as printed by a 6.x kernel.
const V2_MEMORY_STAT = `anon 1871872
file 5537792
kernel 1351680
kernel_stack 98304
pagetables 114688
sec_pagetables 0
percpu 0
sock 4096
vmalloc 0
shmem 8192
zswap 0
zswapped 0
file_mapped 2834432
file_dirty 12288
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 1835008
active_anon 36864
inactive_file 3248128
active_file 2289664
unevictable 0
slab_reclaimable 915040
slab_unreclaimable 174080
slab 1089120
workingset_refault_anon 0
workingset_refault_file 17
workingset_activate_anon 0
workingset_activate_file 5
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 11
pgsteal 9
pgscan_kswapd 0
pgscan_direct 11
pgscan_khugepaged 0
pgsteal_kswapd 0
pgsteal_direct 9
pgsteal_khugepaged 0
pgfault 3762
pgmajfault 3
pgrefill 2
pgactivate 40
pgdeactivate 1
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
thp_fault_alloc 0
thp_collapse_alloc 0
`;

const V2_CPU_STAT = `usage_usec 123456789
user_usec 100000000
system_usec 23456789
core_sched.force_idle_usec 0
nr_periods 500
nr_throttled 7
throttled_usec 91011
nr_bursts 0
burst_usec 0
`;

const PRESSURE = `some avg10=1.50 avg60=0.25 avg300=0.00 total=123456
full avg10=0.00 avg60=0.00 avg300=0.00 total=789
`;

describe('readCgroupMetrics on cgroup v2', () => {
  let tmp: string;
  let cg: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cgroup-stats-'));
    write(tmp, { 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n' });
    cg = path.join(tmp, 'kata', 'ctr1');
    write(cg, {
      'cgroup.procs': '42\n',
      'pids.current': '3\n',
      'pids.max': '100\n',
      'cpu.stat': V2_CPU_STAT,
      'cpu.pressure': PRESSURE,
      'memory.current': '8409088\n',
      'memory.max': '268435456\n',
      'memory.swap.current': '0\n',
      'memory.swap.max': 'max\n',
      'memory.peak': '9000000\n',
      'memory.stat': V2_MEMORY_STAT,
      'memory.events': 'low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
      'io.stat': '8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n253:1 rbytes=4096 wbytes=8192 rios=10 wios=20 dbytes=0 dios=0\n',
      'hugetlb.2MB.current': '0\n',
      'hugetlb.2MB.max': 'max\n',
      'hugetlb.2MB.events': 'max 0\n',
      'hugetlb.1GB.current': '1073741824\n',
      'hugetlb.1GB.max': '2147483648\n',
      'hugetlb.1GB.events': 'max 2\n',
    });
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('parses every file into containerd field names', () => {
    const { typeName, metrics } = readCgroupMetrics('/kata/ctr1', { root: tmp });
    expect(typeName).toBe(CGROUP_V2_METRICS_TYPE);
    const m = metrics as V2Metrics;
    expect(m.pids).toEqual({ current: 3, limit: 100 });
    expect(m.cpu).toEqual({
      usage_usec: 123456789,
      user_usec: 100000000,
      system_usec: 23456789,
      nr_periods: 500,
      nr_throttled: 7,
      throttled_usec: 91011,
      nr_bursts: 0,
      burst_usec: 0,
      psi: { some: { avg10: 1.5, avg60: 0.25, avg300: 0, total: 123456 }, full: { avg10: 0, avg60: 0, avg300: 0, total: 789 } },
    });
    expect(m.memory).toMatchObject({
      usage: 8409088,
      usage_limit: 268435456,
      swap_usage: 0,
      swap_limit: UNLIMITED,
      max_usage: 9000000,
      swap_max_usage: 0,
      anon: 1871872,
      file: 5537792,
      kernel_stack: 98304,
      slab: 1089120,
      sock: 4096,
      shmem: 8192,
      file_mapped: 2834432,
      file_dirty: 12288,
      inactive_anon: 1835008,
      active_anon: 36864,
      inactive_file: 3248128,
      active_file: 2289664,
      slab_reclaimable: 915040,
      slab_unreclaimable: 174080,
      pgfault: 3762,
      pgmajfault: 3,
      pgrefill: 2,
      pgscan: 11,
      pgsteal: 9,
      pgactivate: 40,
      pgdeactivate: 1,
      workingset_refault_file: 17,
      workingset_activate_file: 5,
    });
    // Keys the proto has no field for are not passed on.
    expect(m.memory).not.toHaveProperty('pagetables');
    expect(m.memory).not.toHaveProperty('pgscan_direct');
    expect(m.memory_events).toEqual({ low: 0, high: 2, max: 5, oom: 1, oom_kill: 1, oom_group_kill: 0 });
    expect(m.io?.usage).toEqual([
      { major: 8, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 },
      { major: 253, minor: 1, rbytes: 4096, wbytes: 8192, rios: 10, wios: 20 },
    ]);
    expect(m.hugetlb).toEqual([
      { pagesize: '1GB', current: 1073741824, max: 2147483648, failcnt: 2 },
      { pagesize: '2MB', current: 0, max: UNLIMITED, failcnt: 0 },
    ]);
  });

  it('reports "max" limits as 2^64-1 like containerd', () => {
    write(cg, { 'memory.max': 'max\n', 'pids.max': 'max\n' });
    const m = readCgroupMetrics('kata/ctr1', { root: tmp }).metrics as V2Metrics;
    expect(m.memory?.usage_limit).toBe('18446744073709551615');
    expect(m.pids?.limit).toBe('18446744073709551615');
  });

  it('survives an encode/decode round trip through the v2 proto', () => {
    const root = loadMetricsProtos();
    write(cg, { 'memory.max': 'max\n' });
    const { typeName, metrics } = readCgroupMetrics('/kata/ctr1', { root: tmp });
    const decoded = roundTrip(root, typeName, metrics) as any;
    expect(normalize(decoded)).toEqual(normalize(metrics));
    // Spot checks on the decoded side.
    expect(decoded.memory.usage).toBe('8409088');
    expect(decoded.memory.usage_limit).toBe('18446744073709551615');
    expect(decoded.memory.swap_limit).toBe('18446744073709551615');
    expect(decoded.cpu.usage_usec).toBe('123456789');
    expect(decoded.cpu.psi.some.avg10).toBeCloseTo(1.5);
    expect(decoded.memory_events.oom_kill).toBe('1');
    expect(decoded.io.usage[1]).toEqual({ major: '253', minor: '1', rbytes: '4096', wbytes: '8192', rios: '10', wios: '20' });
  });

  it('leaves out parts whose files are missing and never throws for them', () => {
    const bare = path.join(tmp, 'bare');
    write(bare, { 'cgroup.procs': '', 'cpu.stat': 'usage_usec 5\nuser_usec 3\nsystem_usec 2\n' });
    const m = readCgroupMetrics('bare', { root: tmp }).metrics as V2Metrics;
    expect(m).toEqual({
      cpu: { usage_usec: 5, user_usec: 3, system_usec: 2, nr_periods: 0, nr_throttled: 0, throttled_usec: 0, nr_bursts: 0, burst_usec: 0 },
    });
    const decoded = roundTrip(loadMetricsProtos(), CGROUP_V2_METRICS_TYPE, m);
    expect(normalize(decoded)).toEqual(normalize(m));

    // Memory controller enabled but swap accounting off: swap fields are zero.
    write(bare, { 'memory.current': '4096\n', 'memory.max': 'max\n' });
    const m2 = readCgroupMetrics('bare', { root: tmp }).metrics as V2Metrics;
    expect(m2.memory).toEqual({ usage: 4096, usage_limit: UNLIMITED, swap_usage: 0, swap_limit: 0, max_usage: 0, swap_max_usage: 0 });
    expect(m2.memory_events).toBeUndefined();
  });

  it('throws a clear error when the cgroup does not exist', () => {
    expect(() => readCgroupMetrics('/kata/nope', { root: tmp })).toThrow(/cgroup .*kata\/nope does not exist/);
  });

  it('refuses a cgroupsPath that climbs out of the mount', () => {
    expect(() => readCgroupMetrics('../../etc', { root: tmp })).toThrow(/escapes the cgroup mount/);
  });

  it('parses io.stat and uint64 edge cases', () => {
    expect(parseIoStat('8:16 rbytes=10 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n\n')).toEqual([
      { major: 8, minor: 16, rbytes: 10, wbytes: 0, rios: 1, wios: 0 },
    ]);
    // A device without counters yet (e.g. only a limit configured).
    expect(parseIoStat('259:0\n')).toEqual([{ major: 259, minor: 0, rbytes: 0, wbytes: 0, rios: 0, wios: 0 }]);
    expect(parseUint64('9007199254740991')).toBe(9007199254740991);
    expect(parseUint64('9223372036854771712')).toBe('9223372036854771712');
    expect(parseUint64('-1')).toBeUndefined();
    expect(parseUint64('max')).toBeUndefined();
  });
});

const V1_MEMORY_STAT = `cache 9224192
rss 3997696
rss_huge 0
shmem 9068544
mapped_file 7569408
dirty 12288
writeback 0
workingset_refault_anon 0
workingset_refault_file 1700
swap 0
swapcached 0
pgpgin 51057
pgpgout 47828
pgfault 66312
pgmajfault 1
inactive_anon 0
active_anon 1531904
inactive_file 16384
active_file 139264
unevictable 11534336
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 429522944
total_rss 7270400
total_rss_huge 0
total_shmem 9068544
total_mapped_file 11001856
total_dirty 143360
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 711004
total_swap 0
total_swapcached 0
total_pgpgin 16745993
total_pgpgout 16649510
total_pgfault 21684170
total_pgmajfault 7243
total_inactive_anon 3088384
total_active_anon 1552384
total_inactive_file 210464768
total_active_file 208932864
total_unevictable 11534336
`;

describe('readCgroupMetrics on cgroup v1', () => {
  let tmp: string;
  let proc: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cgroup-stats-v1-'));
    proc = path.join(tmp, 'proc');
    write(proc, { partitions: 'major minor  #blocks  name\n\n 254        0   52428800 vda\n 254        1   52427759 vda1\n' });
    const cgroupRoot = path.join(tmp, 'sys');
    // systemd-style layout: cpu and cpuacct co-mounted, with symlinks.
    fs.mkdirSync(path.join(cgroupRoot, 'cpu,cpuacct'), { recursive: true });
    fs.symlinkSync('cpu,cpuacct', path.join(cgroupRoot, 'cpu'));
    fs.symlinkSync('cpu,cpuacct', path.join(cgroupRoot, 'cpuacct'));
    write(path.join(cgroupRoot, 'memory', 'kata', 'c1'), {
      'memory.stat': V1_MEMORY_STAT,
      'memory.usage_in_bytes': '13221888\n',
      'memory.limit_in_bytes': '268435456\n',
      'memory.max_usage_in_bytes': '20000000\n',
      'memory.failcnt': '4\n',
      'memory.memsw.usage_in_bytes': '13221888\n',
      'memory.memsw.limit_in_bytes': '9223372036854771712\n',
      'memory.memsw.max_usage_in_bytes': '20000000\n',
      'memory.memsw.failcnt': '0\n',
      'memory.kmem.usage_in_bytes': '1000\n',
      'memory.kmem.limit_in_bytes': '9223372036854771712\n',
      'memory.kmem.max_usage_in_bytes': '2000\n',
      'memory.kmem.failcnt': '0\n',
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    });
    write(path.join(cgroupRoot, 'cpu,cpuacct', 'kata', 'c1'), {
      'cpuacct.usage': '1501373094687\n',
      'cpuacct.usage_percpu': '730019339613 771353755074 \n',
      'cpuacct.stat': 'user 118331\nsystem 31806\n',
      'cpu.stat': 'nr_periods 10\nnr_throttled 2\nthrottled_time 3000000\nnr_bursts 0\nburst_time 0\n',
    });
    write(path.join(cgroupRoot, 'pids', 'kata', 'c1'), { 'pids.current': '5\n', 'pids.max': 'max\n' });
    write(path.join(cgroupRoot, 'blkio', 'kata', 'c1'), {
      'blkio.throttle.io_service_bytes_recursive': '254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 12288\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 12288\nTotal 12288\n',
      'blkio.throttle.io_serviced_recursive': '254:0 Read 1\n254:0 Write 2\n254:0 Sync 3\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 3\nTotal 3\n',
    });
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('reads memory, cpu, pids and blkio from their hierarchies', () => {
    const { typeName, metrics } = readCgroupMetrics('/kata/c1', { root: path.join(tmp, 'sys'), procRoot: proc });
    expect(typeName).toBe(CGROUP_V1_METRICS_TYPE);
    const m = metrics as V1Metrics;
    expect(m.memory?.usage).toEqual({ usage: 13221888, limit: 268435456, max: 20000000, failcnt: 4 });
    expect(m.memory?.swap).toEqual({ usage: 13221888, limit: '9223372036854771712', max: 20000000, failcnt: 0 });
    expect(m.memory?.kernel).toEqual({ usage: 1000, limit: '9223372036854771712', max: 2000, failcnt: 0 });
    expect(m.memory?.kernel_tcp).toBeUndefined();
    expect(m.memory).toMatchObject({
      cache: 9224192,
      rss: 3997696,
      mapped_file: 7569408,
      dirty: 12288,
      pg_pg_in: 51057,
      pg_pg_out: 47828,
      pg_fault: 66312,
      pg_maj_fault: 1,
      active_anon: 1531904,
      unevictable: 11534336,
      hierarchical_memory_limit: '9223372036854771712',
      hierarchical_swap_limit: '9223372036854771712',
      total_cache: 429522944,
      total_pg_pg_in: 16745993,
      total_pg_maj_fault: 7243,
      total_active_file: 208932864,
    });
    expect(m.memory_oom_control).toEqual({ oom_kill_disable: 0, under_oom: 0, oom_kill: 2 });
    expect(m.cpu).toEqual({
      usage: { total: 1501373094687, per_cpu: [730019339613, 771353755074], user: 1183310000000, kernel: 318060000000 },
      throttling: { periods: 10, throttled_periods: 2, throttled_time: 3000000 },
    });
    expect(m.pids).toEqual({ current: 5, limit: 0 });
    expect(m.blkio?.io_service_bytes_recursive?.slice(0, 2)).toEqual([
      { op: 'Read', device: '/dev/vda', major: 254, minor: 0, value: 4096 },
      { op: 'Write', device: '/dev/vda', major: 254, minor: 0, value: 8192 },
    ]);
    expect(m.blkio?.io_serviced_recursive).toHaveLength(6);
  });

  it('survives an encode/decode round trip through the v1 proto', () => {
    const root = loadMetricsProtos();
    const { typeName, metrics } = readCgroupMetrics('/kata/c1', { root: path.join(tmp, 'sys'), procRoot: proc });
    const decoded = roundTrip(root, typeName, metrics) as any;
    expect(normalize(decoded)).toEqual(normalize(metrics));
    expect(decoded.memory.usage.usage).toBe('13221888');
    expect(decoded.cpu.usage.per_cpu).toEqual(['730019339613', '771353755074']);
    expect(decoded.memory.hierarchical_swap_limit).toBe('9223372036854771712');
  });

  it('keeps memory.usage and cpu.usage present (ctr dereferences them) when files are missing', () => {
    const sys = path.join(tmp, 'sparse');
    fs.mkdirSync(path.join(sys, 'memory', 'x'), { recursive: true });
    fs.mkdirSync(path.join(sys, 'cpuacct', 'x'), { recursive: true });
    const m = readCgroupMetrics('x', { root: sys, procRoot: proc }).metrics as V1Metrics;
    expect(m).toEqual({
      memory: { usage: { usage: 0, limit: 0, max: 0, failcnt: 0 } },
      cpu: { usage: { total: 0, kernel: 0, user: 0, per_cpu: [] } },
    });
    const decoded = roundTrip(loadMetricsProtos(), CGROUP_V1_METRICS_TYPE, m) as any;
    // protobufjs writes explicitly set zeros, so the sub-messages are on the wire.
    expect(decoded.memory.usage).toBeDefined();
    expect(decoded.cpu.usage).toBeDefined();
    expect(normalize(decoded)).toEqual(normalize(m));
  });

  it('throws when no hierarchy has the cgroup', () => {
    expect(() => readCgroupMetrics('/kata/missing', { root: path.join(tmp, 'sys'), procRoot: proc })).toThrow(/cgroup \/kata\/missing does not exist/);
  });
});

describe('readCgroupMetrics on this host', () => {
  const hostRoot = '/sys/fs/cgroup';
  const v2 = fs.existsSync(path.join(hostRoot, 'cgroup.controllers'));
  const memoryUsageFile = v2 ? path.join(hostRoot, 'memory.stat') : path.join(hostRoot, 'memory', 'memory.usage_in_bytes');
  let readable = false;
  try {
    fs.readFileSync(memoryUsageFile, 'utf8');
    readable = true;
  } catch {
    readable = false;
  }
  const reason = `${memoryUsageFile} is not readable here`;

  (readable ? it : it.skip)(`reads the root cgroup (${v2 ? 'v2' : 'v1'})${readable ? '' : ` — skipped: ${reason}`}`, () => {
    const { typeName, metrics } = readCgroupMetrics('/');
    const decoded = roundTrip(loadMetricsProtos(), typeName, metrics) as any;
    if (typeName === CGROUP_V1_METRICS_TYPE) {
      const m = metrics as V1Metrics;
      expect(Number(m.memory?.usage?.usage)).toBeGreaterThan(0);
      expect(Number(m.cpu?.usage.total)).toBeGreaterThan(0);
      expect(Number(decoded.memory.usage.usage)).toBeGreaterThan(0);
    } else {
      // The v2 root has memory.stat but no memory.current.
      const m = metrics as V2Metrics;
      expect(Number(m.memory?.anon ?? 0) + Number(m.memory?.file ?? 0)).toBeGreaterThan(0);
      expect(Number(m.cpu?.usage_usec)).toBeGreaterThan(0);
    }
  });
});

describe('metrics protos', () => {
  it('load with protobufjs and carry containerd field numbers', () => {
    const root = loadMetricsProtos();
    const v2 = root.lookupType('io.containerd.cgroups.v2.Metrics');
    expect(Object.fromEntries(Object.values(v2.fields).map((f) => [f.name, f.id]))).toEqual({
      pids: 1, cpu: 2, memory: 4, rdma: 5, io: 6, hugetlb: 7, memory_events: 8, network: 9,
    });
    expect(root.lookupType('io.containerd.cgroups.v2.MemoryStat').fields.usage_limit.id).toBe(33);
    expect(root.lookupType('io.containerd.cgroups.v2.MemoryEvents').fields.oom_kill.id).toBe(5);
    const v1 = root.lookupType('io.containerd.cgroups.v1.Metrics');
    expect(Object.fromEntries(Object.values(v1.fields).map((f) => [f.name, f.id]))).toEqual({
      hugetlb: 1, pids: 2, cpu: 3, memory: 4, blkio: 5, rdma: 6, network: 7, cgroup_stats: 8, memory_oom_control: 9,
    });
    expect(root.lookupType('io.containerd.cgroups.v1.MemoryStat').fields.usage.id).toBe(33);
    expect(root.lookupType('io.containerd.cgroups.v1.CPUUsage').fields.per_cpu.repeated).toBe(true);
  });
});
