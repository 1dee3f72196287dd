// Host snapshots for "nothing left behind" assertions in e2e tests: take one before a
// test, one after teardown, and diff. Only things that appeared are reported (things
// that vanished are not leaks), so unrelated pre-existing state does not matter.

import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { WARM_DIR_NAME } from '../../sandbox/warm-vm';
import { CONTAINERD_DIR_PREFIX, DEFAULT_NAMESPACE, readlinkOr } from './containerd';
import { CRI_BRIDGE_PREFIX, CRI_CGROUP_PREFIX } from './containerd-cri';
import { readMounts } from './mounts';

/** Dirs always scanned for unix sockets: the shim's runtime dir and containerd 1.6's shim socket dir. */
export const DEFAULT_SOCKET_DIRS = ['/run/kata-ts', '/run/containerd/s'];
const SOCKET_SCAN_DEPTH = 8;

/**
 * Who a process belongs to, judged by its ancestry: 'ours' descends from this test
 * process (e.g. under our private containerd); 'orphan' was daemonised and reparented
 * to init through relevant processes only (a shim that outlived its containerd, its
 * VMM); 'foreign' hangs below some unrelated process, e.g. a developer's or another
 * test session's QEMU, and is not reported by default.
 */
export type ProcessOwner = 'ours' | 'orphan' | 'foreign';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** Kernel start time (clock ticks since boot); with pid it identifies a process despite pid reuse. */
  startTime: string;
  /** Single-letter state from /proc/<pid>/stat; 'Z' for an unreaped zombie. */
  state: string;
  comm: string;
  argv: string[];
  owner: ProcessOwner;
}

export interface SnapshotOptions {
  /** Extra dirs to scan (recursively) for unix socket files, besides DEFAULT_SOCKET_DIRS. */
  dirs?: string[];
}

/** Where QEMU's C virtiofsd keeps its lock files (hypervisors/virtiofsd.ts cVirtiofsdLockFile). */
const VIRTIOFSD_LOCK_DIR = '/run/virtiofsd';

export interface HostSnapshot {
  takenAt: Date;
  /** Processes that belong to the system under test (see isRelevantProcess). */
  processes: ProcessInfo[];
  /** "<source> on <target> type <fstype>", one per line of /proc/self/mounts (duplicates kept). */
  mounts: string[];
  /** Unix socket files found under the scanned dirs. */
  sockets: string[];
  /** Names from `ip netns list`. */
  netns: string[];
  /** Lock files QEMU's C virtiofsd leaves in /run/virtiofsd, one per socket it served. */
  virtiofsdLocks: string[];
  /**
   * Host network interfaces (`ip -o link`), by name: a pod's veth, a VM's tap or a
   * harness bridge left behind shows up here.
   */
  links: string[];
  /**
   * Links of other live harness containerds (their CRI bridge "ktbr-<suffix>" and what
   * is enslaved to it); not reported by default, like foreignDirs.
   */
  foreignLinks: string[];
  /** cgroup dirs as "<hierarchy>:<path>" (systemd's slices excluded; see listCgroups). */
  cgroups: string[];
  /** Dirs that were scanned, so a later snapshot for comparison scans the same ones. */
  socketDirs: string[];
  /**
   * Private containerd dirs (CONTAINERD_DIR_PREFIX...) of live containerds that are not
   * ours, e.g. another test run using this harness at the same time. Mounts and sockets
   * inside them, and their CRI pods' cgroups, are not reported by default.
   */
  foreignDirs: string[];
}

/**
 * Which processes a snapshot records: VMMs, any containerd shim (kata or runc), the kata
 * shim's node daemon, virtiofsd, vhost-device-vsock, and harness-started containerds. Matching looks at the
 * executable, the first argument (the script, for `node script.js`) and comm (what is
 * left of a zombie), never the whole command line, so a shell merely mentioning
 * "qemu-system" is not mistaken for a VM.
 */
export function isRelevantProcess(p: Pick<ProcessInfo, 'argv' | 'comm'>): boolean {
  const exe = path.basename(p.argv[0] ?? '');
  const arg1 = p.argv[1] ?? '';
  const ids = [exe, path.basename(arg1), p.comm];
  // comm holds 15 characters: "vhost-device-vs".
  if (ids.some((s) => /^qemu-system-/.test(s) || /^containerd-shim/.test(s) || /^virtiofsd/.test(s) || /^vhost-device-vs/.test(s))) return true;
  if (/(^|\/)dist\/shim\/main\.js$/.test(arg1)) return true;
  return exe === 'containerd' && p.argv.some((a) => a.startsWith(CONTAINERD_DIR_PREFIX));
}

/** The pool a spare shim daemon (`… -spares-dir <dir> … spare`) was launched into; undefined for any other process. */
function spareDir(p: Pick<ProcessInfo, 'argv'>): string | undefined {
  const at = p.argv.indexOf('-spares-dir');
  return at >= 0 && p.argv[p.argv.length - 1] === 'spare' ? p.argv[at + 1] : undefined;
}

/** A spare's pool entries while it waits: listening, being claimed, or still starting (shim/spare-pool.ts). */
const SPARE_SOCKET_SUFFIXES = ['.sock', '.claimed'];
const SPARE_WAITING_SUFFIXES = [...SPARE_SOCKET_SUFFIXES, '.starting'];

/** A spare that has not listened this long after its launch is stuck, not starting. */
const SPARE_START_MS = 60_000;

/**
 * A spare shim daemon ([factory] spare_shims) that still waits for a pod: its pool holds
 * an entry of its own (a `.starting` marker only while young), and it has not moved into
 * a pod's bundle (spares are launched in /). Once claimed it is a pod's daemon like any
 * other, reported when left behind. A waiting spare that outlives its containerd is
 * tests/e2e/spare-shims.test.ts's to catch (the harness's stop kills what names its dir).
 */
export function isWaitingSpare(p: Pick<ProcessInfo, 'argv' | 'pid'>, cwdOf: (pid: number) => string = (pid) => readlinkOr(`/proc/${pid}/cwd`)): boolean {
  const dir = spareDir(p);
  if (dir === undefined || cwdOf(p.pid) !== '/') return false;
  return SPARE_WAITING_SUFFIXES.some((suffix) => {
    try {
      const st = fs.statSync(path.join(dir, `${p.pid}${suffix}`));
      return suffix !== '.starting' || Date.now() - st.mtimeMs < SPARE_START_MS;
    } catch {
      return false;
    }
  });
}


/** The paths of the Unix sockets a process holds open, from its fds and its network namespace's socket table. */
export function unixSocketsOf(pid: number): string[] {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return []; // gone
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  let table = '';
  try {
    table = fs.readFileSync(`/proc/${pid}/net/unix`, 'utf8');
  } catch {
    return [];
  }
  // Num RefCount Protocol Flags Type St Inode Path (the path may hold spaces)
  const paths: string[] = [];
  for (const line of table.split('\n').slice(1)) {
    const m = /^\s*(?:\S+\s+){6}(\d+) (.+)$/.exec(line);
    if (m && inodes.has(m[1])) paths.push(m[2]);
  }
  return paths;
}

export async function snapshotHost(opts: SnapshotOptions = {}): Promise<HostSnapshot> {
  const socketDirs = [...new Set([...DEFAULT_SOCKET_DIRS, ...(opts.dirs ?? []).map((d) => path.resolve(d))])];
  const [{ processes, foreignDirs }, mounts, sockets, netns, cgroups, links, virtiofsdLocks] = await Promise.all([
    listProcesses(),
    readMounts(),
    Promise.all(socketDirs.map((d) => findSockets(d, SOCKET_SCAN_DEPTH))),
    listNetns(),
    listCgroups(),
    listLinks(),
    fs.promises.readdir(VIRTIOFSD_LOCK_DIR).catch(() => [] as string[]),
  ]);
  // A spare shim that waits for a pod is its containerd's configured state, not a leak;
  // so is the VM it restored meanwhile ([factory] spare_vms): its QEMU, mounts and sockets
  // under <state_dir>/.warm/<spare pid>-<hex> (sandbox/warm-vm.ts).
  const waitingSpares = processes.filter((p) => isWaitingSpare(p));
  const ofWaitingSpare = (text: string) => waitingSpares.some((p) => text.includes(`/${WARM_DIR_NAME}/${p.pid}-`));
  const waiting = [...waitingSpares, ...processes.filter((p) => p.argv.some(ofWaitingSpare))];
  const spareSockets = new Set(waitingSpares.flatMap((p) => SPARE_SOCKET_SUFFIXES.map((suffix) => path.join(spareDir(p)!, `${p.pid}${suffix}`))));
  const foreignBridges = new Set(foreignDirs.map((d) => `${CRI_BRIDGE_PREFIX}${d.slice(CONTAINERD_DIR_PREFIX.length)}`));
  const foreignLinks = links.filter((l) => foreignBridges.has(l.name) || (l.master !== undefined && foreignBridges.has(l.master)));
  return {
    takenAt: new Date(),
    processes: processes.filter((p) => !waiting.includes(p)),
    mounts: mounts.filter((m) => !ofWaitingSpare(m.target)).map((m) => `${m.source} on ${m.target} type ${m.fstype}`),
    sockets: [...new Set(sockets.flat())].filter((s) => !spareSockets.has(s) && !ofWaitingSpare(s)).sort(),
    netns,
    virtiofsdLocks: virtiofsdLocks.sort(),
    links: links.map((l) => l.name).sort(),
    foreignLinks: foreignLinks.map((l) => l.name).sort(),
    cgroups,
    socketDirs,
    foreignDirs,
  };
}

export interface DiffOptions {
  /** Also report processes owned by someone else (see ProcessOwner) and mounts/sockets in foreignDirs. */
  includeForeign?: boolean;
  /**
   * cgroup paths (without hierarchy) never reported. Default: the harness namespace's
   * parent cgroup, which runc creates with mkdir -p and, being shared by all containers
   * of the namespace, never removes.
   */
  ignoreCgroups?: string[];
}

/** Human-readable lines for everything present in `after` but not in `before`. */
export function diffSnapshots(before: HostSnapshot, after: HostSnapshot, opts: DiffOptions = {}): string[] {
  const leaks: string[] = [];
  const procKey = (p: ProcessInfo): string => `${p.pid}@${p.startTime}`;
  const oldProcs = new Set(before.processes.map(procKey));
  for (const p of after.processes) {
    if (oldProcs.has(procKey(p))) continue;
    if (p.owner === 'foreign' && !opts.includeForeign) continue;
    const cmd = p.argv.join(' ') || `[${p.comm}]`;
    leaks.push(`process ${p.pid} (${p.owner}, state ${p.state}): ${truncate(cmd, 300)}`);
  }
  const foreign = opts.includeForeign ? [] : after.foreignDirs;
  const inForeignDir = (p: string): boolean => foreign.some((d) => p === d || p.startsWith(`${d}/`));
  // Mounts are a multiset: the same line can legitimately appear twice (stacked mounts).
  for (const m of multisetMinus(after.mounts, before.mounts)) {
    if (!inForeignDir(m.slice(m.indexOf(' on ') + 4, m.lastIndexOf(' type ')))) leaks.push(`mount: ${m}`);
  }
  for (const s of multisetMinus(after.sockets, before.sockets)) {
    if (!inForeignDir(s)) leaks.push(`socket: ${s}`);
  }
  for (const n of multisetMinus(after.netns, before.netns)) leaks.push(`netns: ${n}`);
  // Named after the socket path ('/' as '.'): one under another harness's dir is its own.
  const foreignLock = (name: string): boolean => foreign.some((d) => name.startsWith(`${d.replace(/\//g, '.')}.`));
  for (const l of multisetMinus(after.virtiofsdLocks ?? [], before.virtiofsdLocks ?? [])) {
    if (!foreignLock(l)) leaks.push(`virtiofsd lock file: ${path.join(VIRTIOFSD_LOCK_DIR, l)}`);
  }
  const foreignLinks = new Set(opts.includeForeign ? [] : after.foreignLinks);
  for (const l of multisetMinus(after.links, before.links)) {
    if (!foreignLinks.has(l)) leaks.push(`link: ${l}`);
  }
  const ignored = new Set(opts.ignoreCgroups ?? [`/${DEFAULT_NAMESPACE}`]);
  const foreignCgroups = foreign.map((d) => `${CRI_CGROUP_PREFIX}${d.slice(CONTAINERD_DIR_PREFIX.length)}`);
  for (const c of multisetMinus(after.cgroups, before.cgroups)) {
    const rel = c.slice(c.indexOf(':') + 1);
    if (ignored.has(rel) || foreignCgroups.some((f) => rel === f || rel.startsWith(`${f}/`))) continue;
    leaks.push(`cgroup: ${c}`);
  }
  return leaks;
}

/**
 * Polls until nothing new is left compared to `before` (teardown is often asynchronous:
 * a shim may take a moment to exit after its task is deleted). Resolves with the
 * remaining leaks, empty on success; never rejects on leaks.
 */
export async function waitForNoLeaks(
  before: HostSnapshot,
  timeoutMs: number,
  opts: DiffOptions & { intervalMs?: number } = {},
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const intervalMs = opts.intervalMs ?? 250;
  for (;;) {
    const leaks = diffSnapshots(before, await snapshotHost({ dirs: before.socketDirs }), opts);
    if (leaks.length === 0 || Date.now() >= deadline) return leaks;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Relevant processes, each classified by owner (which needs the whole process table). */
async function listProcesses(): Promise<{ processes: ProcessInfo[]; foreignDirs: string[] }> {
  const all = new Map<number, Omit<ProcessInfo, 'owner'>>();
  for (const name of await fs.promises.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const stat = await fs.promises.readFile(`/proc/${pid}/stat`, 'utf8');
      // comm is parenthesised and may itself contain spaces or ')': split at the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const rest = stat.slice(close + 2).split(' '); // rest[0] is field 3 of proc(5)
      const cmdline = await fs.promises.readFile(`/proc/${pid}/cmdline`, 'utf8');
      all.set(pid, {
        pid,
        ppid: Number(rest[1]),
        state: rest[0],
        startTime: rest[19],
        comm,
        argv: cmdline.replace(/\0+$/, '').split('\0').filter((a, i) => i > 0 || a !== ''),
      });
    } catch {
      // The process exited while we were looking at it.
    }
  }
  type Raw = Omit<ProcessInfo, 'owner'>;
  const isDescendantOfUs = (p: Raw): boolean => {
    for (let cur: Raw | undefined = p, hops = 0; cur && hops < 1000; hops++) {
      if (cur.ppid === process.pid) return true;
      cur = all.get(cur.ppid);
    }
    return false;
  };
  // Private containerd dirs (/tmp/kt-XXXXXX) served by a live containerd that is not
  // ours. Kata shims daemonise to init, so ancestry alone cannot tell another session's
  // shim from our leaked one, but its `-address` names the containerd it serves.
  const foreignDirs = new Set<string>();
  for (const p of all.values()) {
    if (path.basename(p.argv[0] ?? '') !== 'containerd' || isDescendantOfUs(p)) continue;
    for (const a of p.argv) {
      const d = harnessDirOf(a);
      if (d) foreignDirs.add(d);
    }
  }
  const servesForeign = (p: Raw): boolean => p.argv.some((a) => {
    const d = harnessDirOf(a);
    return d !== undefined && foreignDirs.has(d);
  });
  const owner = (p: Raw): ProcessOwner => {
    // Walk up through relevant processes (VMM -> shim -> containerd -> ...).
    let cur = p;
    for (let hops = 0; hops < 1000; hops++) {
      if (servesForeign(cur)) return 'foreign';
      if (cur.ppid === process.pid) return 'ours';
      const parent = all.get(cur.ppid);
      if (!parent || cur.ppid <= 1) return 'orphan';
      if (!isRelevantProcess(parent)) return isDescendantOfUs(parent) ? 'ours' : 'foreign';
      cur = parent;
    }
    return 'foreign';
  };
  const processes = [...all.values()]
    // A zombie reparented to init has exited and holds nothing; only init's reaping is
    // pending (lazy when pid 1 is not a real init, e.g. in a sandbox). A zombie under
    // any other parent is kept: e.g. a shim that never waits for its VMM is a real bug.
    .filter((p) => isRelevantProcess(p) && !(p.state === 'Z' && p.ppid <= 1))
    .map((p) => ({ ...p, owner: owner(p) }));
  return { processes, foreignDirs: [...foreignDirs].sort() };
}

/** "/tmp/kt-AbC123" for any path inside a harness containerd dir, else undefined. */
function harnessDirOf(arg: string): string | undefined {
  if (!arg.startsWith(CONTAINERD_DIR_PREFIX)) return undefined;
  const end = arg.indexOf('/', CONTAINERD_DIR_PREFIX.length);
  return end < 0 ? arg : arg.slice(0, end);
}

async function findSockets(dir: string, depth: number): Promise<string[]> {
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch {
    return []; // absent (e.g. /run/kata-ts before the first sandbox) or vanished
  }
  const out: string[] = [];
  for (const e of entries) {
    const p = path.join(dir, e.name);
    // Dirent types come from lstat semantics, so symlinked dirs are not followed.
    if (e.isSocket()) out.push(p);
    else if (e.isDirectory() && depth > 0) out.push(...(await findSockets(p, depth - 1)));
  }
  return out;
}

/**
 * `ip -o link` lines look like "18: veth8851e8bc@if2: <...> mtu 1500 ... master ktbr-x ...":
 * the name (without the "@peer" part) and the bridge it is enslaved to, if any.
 */
function listLinks(): Promise<Array<{ name: string; master?: string }>> {
  return new Promise((resolve) => {
    execFile('ip', ['-o', 'link', 'show'], { timeout: 10_000 }, (err, stdout) => {
      if (err) {
        resolve([]); // no iproute2: no links to compare (netns has the same fallback limits)
        return;
      }
      const out: Array<{ name: string; master?: string }> = [];
      for (const line of stdout.split('\n')) {
        const m = /^\d+:\s+([^:@\s]+)(@\S+)?:/.exec(line);
        if (!m) continue;
        const master = / master (\S+)/.exec(line)?.[1];
        out.push(master ? { name: m[1], master } : { name: m[1] });
      }
      resolve(out);
    });
  });
}

function listNetns(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'list'], { timeout: 10_000 }, (err, stdout) => {
      if (err) {
        // No iproute2: /run/netns is where `ip netns` keeps its bind mounts anyway.
        fs.promises.readdir('/run/netns').then(
          (names) => resolve(names.sort()),
          () => resolve([]),
        );
        return;
      }
      // Lines look like "cni-1234 (id: 0)".
      resolve(stdout.split('\n').map((l) => l.trim().split(' ')[0]).filter(Boolean).sort());
    });
  });
}

const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_SCAN_DEPTH = 4;
/**
 * systemd churns these on its own (sessions, timers), and a development machine's
 * command runner puts each command it runs in its own `process_api/<id>`; runtimes
 * create no cgroups there.
 */
const CGROUP_IGNORED = new Set(['system.slice', 'user.slice', 'init.scope', 'process_api']);

/**
 * Cgroup dirs, as "<hierarchy>:<path>" on cgroup v1 (one tree per controller) or
 * ":<path>" on a pure v2 host. Runtimes create one per container or sandbox, and a
 * leaked one outlives every process, so it is often the only trace of a sloppy teardown.
 */
async function listCgroups(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (hierarchy: string, base: string, rel: string, depth: number): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(path.join(base, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory() || CGROUP_IGNORED.has(e.name)) continue;
      const child = `${rel}/${e.name}`;
      out.push(`${hierarchy}:${child}`);
      if (depth > 1) await walk(hierarchy, base, child, depth - 1);
    }
  };
  if (fs.existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) {
    await walk('', CGROUP_ROOT, '', CGROUP_SCAN_DEPTH); // unified (v2) only
  } else {
    let hierarchies: fs.Dirent[] = [];
    try {
      hierarchies = await fs.promises.readdir(CGROUP_ROOT, { withFileTypes: true });
    } catch {
      return [];
    }
    for (const h of hierarchies) {
      // Skip the cpu,cpuacct-style symlinks so each tree is walked once.
      if (h.isDirectory()) await walk(h.name, path.join(CGROUP_ROOT, h.name), '', CGROUP_SCAN_DEPTH);
    }
  }
  return out.sort();
}

function multisetMinus(after: readonly string[], before: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const b of before) counts.set(b, (counts.get(b) ?? 0) + 1);
  const out: string[] = [];
  for (const a of after) {
    const c = counts.get(a) ?? 0;
    if (c > 0) counts.set(a, c - 1);
    else out.push(a);
  }
  return out;
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n)}…`;
}
