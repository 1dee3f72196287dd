// Starts a private, throw-away containerd for e2e tests so they never touch (or depend
// on) a system containerd: own config, root, state and sockets under one temp dir.
//
// Socket paths: sun_path is 108 bytes (107 usable), and shims create sockets derived
// from containerd's paths, so the temp dir lives directly under /tmp with a short
// prefix (/tmp/kt-XXXXXX) rather than under os.tmpdir() or a jest cache dir.

import { ChildProcess, spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import {
  cleanupCriHost, CriEndpoint, CriOptions, CriTeardown, PreparedCri, prepareCri, removeCriPods, waitCriReady,
} from './containerd-cri';
import { run, RunResult } from './exec';
import { readMountPoints } from './mounts';

export { CRI_NAMESPACE, CriEndpoint, CriNetwork, CriOptions, KATA_HANDLER, RUNC_HANDLER } from './containerd-cri';

export const DEFAULT_NAMESPACE = 'katats-test';
/** Prefix of every private containerd dir; leaks.ts uses it to spot stray containerds. */
export const CONTAINERD_DIR_PREFIX = '/tmp/kt-';
/** Where containerd 1.6 creates v2 shim sockets, whatever its own state dir is. */
export const SHIM_SOCKET_DIR = '/run/containerd/s';

const STARTUP_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const DEFAULT_CTR_TIMEOUT_MS = 60_000;
/** Keep at most this much containerd output in memory (the tail is what matters). */
const MAX_LOG_BYTES = 8 * 1024 * 1024;

export interface StartContainerdOptions {
  /** Directory holding a freshly built `containerd-shim-*-v2`; prepended to containerd's PATH. */
  runtimeShimDir?: string;
  /** Namespace used by ctr(); default 'katats-test'. */
  namespace?: string;
  /** containerd log level; default 'info' ('debug' is very chatty but shows shim events). */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Extra TOML appended to the generated config; start it with a [table] header. */
  extraConfig?: string;
  /** Extra environment for containerd, and therefore for the shims it starts. */
  env?: NodeJS.ProcessEnv;
  /**
   * Enables containerd's CRI plugin (disabled otherwise): runtimes `runc` (default) and
   * `kata`, a private CNI bridge network, the sandbox image. See containerd-cri.ts.
   * `extraConfig` must not repeat the CRI tables this generates.
   */
  cri?: CriOptions;
}

export interface CtrOptions {
  /** Kill ctr (SIGKILL) after this long; default 60 s. The result then has code null. */
  timeoutMs?: number;
  /**
   * Written to ctr's stdin, then closed. `ctr run` forwards it to the container but,
   * without -t, never forwards the EOF (ctr 1.6 does not CloseIO), so a container
   * that reads stdin to the end (`cat`) hangs; read a known amount (`head -n1`).
   */
  input?: string;
}

export interface CtrResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** What stop() had to clean up: anything non-empty means the test left something behind. */
export interface StopReport {
  /**
   * Pod sandboxes ("pod sandbox <id> (<ns>/<name>, <state>)", with their "pod container"s)
   * stopped and removed through CRI, then tasks/containers ("task <ns>/<id>",
   * "container <ns>/<id>") force-deleted through containerd.
   */
  leftovers: string[];
  /** Processes still tied to this containerd (shims and their descendants) that were SIGKILLed. */
  killedProcesses: string[];
  /**
   * What killed shims left outside `dir` (shim socket, runc state, cgroups), and what CRI
   * or CNI left outside it (netns, IPAM leases, libcni caches), that stop() removed.
   */
  removedPaths: string[];
  /** Mount points under the private dir that were still mounted and got lazily unmounted. */
  unmounted: string[];
}

export interface PrivateContainerd {
  /** containerd gRPC socket path (what `ctr -a` takes). */
  readonly address: string;
  readonly ttrpcAddress: string;
  readonly root: string;
  readonly state: string;
  /** The temp dir holding everything above; removed by stop(). */
  readonly dir: string;
  readonly namespace: string;
  readonly pid: number;
  /** With the `cri` option: the CRI socket, network and dirs; undefined otherwise. */
  readonly cri: CriEndpoint | undefined;
  /** Runs `ctr -a <address> -n <namespace> ...args`; never throws on a non-zero exit. */
  ctr(args: string[], opts?: CtrOptions): Promise<CtrResult>;
  /**
   * `ctr images import` (which also unpacks into the default overlayfs snapshotter), into
   * `namespace` (default: this instance's; CRI_NAMESPACE for CRI's images).
   * Resolves with the image names created; throws if ctr fails or creates none.
   */
  importImage(archive: string, opts?: { namespace?: string }): Promise<string[]>;
  /** containerd's stdout+stderr so far. */
  logs(): string;
  /**
   * Stops containerd alone (SIGTERM, as an upgrade or a crash-restart would) and
   * starts it again on the same root, state and sockets; shims keep running.
   * `whileDown` runs after containerd has exited and before it starts again.
   */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /** Idempotent. Kills containerd and anything left behind, unmounts, removes `dir`. */
  stop(): Promise<StopReport>;
}

/** A private containerd with the CRI plugin enabled: `cri` is always set. */
export type CriContainerd = PrivateContainerd & { readonly cri: CriEndpoint };

export function startContainerd(opts: StartContainerdOptions & { cri: CriOptions }): Promise<CriContainerd>;
export function startContainerd(opts?: StartContainerdOptions): Promise<PrivateContainerd>;
export async function startContainerd(opts: StartContainerdOptions = {}): Promise<PrivateContainerd> {
  const dir = await fs.promises.mkdtemp(CONTAINERD_DIR_PREFIX);
  const paths = {
    root: path.join(dir, 'root'),
    state: path.join(dir, 'state'),
    address: path.join(dir, 'c.sock'),
    ttrpcAddress: path.join(dir, 'c.sock.ttrpc'),
    config: path.join(dir, 'config.toml'),
  };
  let cri: PreparedCri | undefined;
  try {
    if (opts.cri) cri = await prepareCri({ dir, ...paths }, opts.cri);
    await fs.promises.writeFile(paths.config, renderConfig(dir, paths, opts, cri?.toml));
  } catch (e) {
    if (cri) await cleanupCriHost(cri, NO_CRI_TEARDOWN, { otherHarnessAlive: true });
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw e;
  }

  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, PATH: containerdPath(opts.runtimeShimDir) };
  const launch = (): ChildProcess => spawn('containerd', ['--config', paths.config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const instance = new ContainerdProcess(launch, dir, paths, opts.namespace ?? DEFAULT_NAMESPACE, cri);
  try {
    await instance.waitReady(STARTUP_TIMEOUT_MS);
    if (cri) await waitCriReady(cri.endpoint, instance.logs.bind(instance));
  } catch (e) {
    await instance.stop();
    throw e;
  }
  return instance;
}

const NO_CRI_TEARDOWN: CriTeardown = { leftovers: [], netnsPaths: [], sandboxIds: [] };

function renderConfig(
  dir: string,
  p: { root: string; state: string; address: string; ttrpcAddress: string },
  opts: StartContainerdOptions,
  criToml: string | undefined,
): string {
  const q = (s: string): string => JSON.stringify(s); // TOML basic strings accept JSON escapes
  // Without the `cri` option the harness drives containerd with ctr only, and CRI would
  // just want CNI, sandbox images, etc. The other snapshotters are never used here and
  // only add startup noise.
  const disabled = [
    ...(criToml ? [] : ['io.containerd.grpc.v1.cri']),
    'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
  ];
  return [
    'version = 2',
    `root = ${q(p.root)}`,
    `state = ${q(p.state)}`,
    `disabled_plugins = [${disabled.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(p.address)}`,
    '[ttrpc]',
    `  address = ${q(p.ttrpcAddress)}`,
    '[debug]',
    `  level = ${q(opts.logLevel ?? 'info')}`,
    '',
    // The opt plugin defaults to /opt/containerd, a host-global dir; keep it private too.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(path.join(dir, 'opt'))}`,
    '',
    criToml ?? '',
    opts.extraConfig ?? '',
    '',
  ].join('\n');
}

/** containerd resolves `io.containerd.<name>.v2` runtimes to `containerd-shim-<name>-v2` on PATH. */
function containerdPath(shimDir: string | undefined): string {
  const parts = (process.env.PATH ?? '').split(':').filter(Boolean);
  // runc lives in /usr/sbin on Debian, which a non-login PATH may lack.
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!parts.includes(d)) parts.push(d);
  }
  if (shimDir) parts.unshift(path.resolve(shimDir));
  return parts.join(':');
}

class ContainerdProcess implements PrivateContainerd {
  readonly address: string;
  readonly ttrpcAddress: string;
  readonly root: string;
  readonly state: string;
  private child!: ChildProcess;
  private readonly logChunks: Buffer[] = [];
  private logBytes = 0;
  private exited!: Promise<void>;
  private exitInfo: string | undefined;
  private stopping: Promise<StopReport> | undefined;
  private readonly killOnExit = (): void => {
    // Last resort if the test process dies without calling stop(): do not leave a
    // containerd running. (Sync context: only a signal is possible here.)
    try {
      this.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  };

  constructor(
    private readonly launch: () => ChildProcess,
    readonly dir: string,
    p: { root: string; state: string; address: string; ttrpcAddress: string },
    readonly namespace: string,
    private readonly preparedCri: PreparedCri | undefined,
  ) {
    this.address = p.address;
    this.ttrpcAddress = p.ttrpcAddress;
    this.root = p.root;
    this.state = p.state;
    this.attach(launch());
    process.on('exit', this.killOnExit);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get cri(): CriEndpoint | undefined {
    return this.preparedCri?.endpoint;
  }

  async restart(whileDown?: () => Promise<void>): Promise<void> {
    this.child.kill('SIGTERM');
    if (!(await settlesWithin(this.exited, STOP_GRACE_MS))) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    await whileDown?.();
    this.exitInfo = undefined;
    this.attach(this.launch());
    await this.waitReady(STARTUP_TIMEOUT_MS);
  }

  private attach(child: ChildProcess): void {
    this.child = child;
    const collect = (b: Buffer): void => {
      this.logChunks.push(b);
      this.logBytes += b.length;
      while (this.logBytes > MAX_LOG_BYTES && this.logChunks.length > 1) {
        this.logBytes -= this.logChunks.shift()!.length;
      }
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => {
      // 'close' rather than 'exit' so that all output has been collected.
      child.on('close', (code, signal) => {
        this.exitInfo = `code=${code} signal=${signal}`;
        resolve();
      });
      child.on('error', (e) => {
        this.exitInfo = `spawn error: ${e.message}`;
        resolve();
      });
    });
  }

  logs(): string {
    return Buffer.concat(this.logChunks).toString('utf8');
  }

  async ctr(args: string[], opts: CtrOptions = {}): Promise<CtrResult> {
    return this.ctrIn(this.namespace, args, opts);
  }

  private async ctrIn(namespace: string, args: string[], opts: CtrOptions = {}): Promise<CtrResult> {
    const r: RunResult = await run('ctr', ['-a', this.address, '-n', namespace, ...args], {
      timeoutMs: opts.timeoutMs ?? DEFAULT_CTR_TIMEOUT_MS,
      input: opts.input,
    });
    const stderr = r.timedOut ? `${r.stderr}\n[harness] ctr timed out and was killed` : r.stderr;
    return { code: r.code, stdout: r.stdout, stderr };
  }

  async importImage(archive: string, opts: { namespace?: string } = {}): Promise<string[]> {
    const namespace = opts.namespace ?? this.namespace;
    const before = new Set(await this.imageNames(namespace));
    const r = await this.ctrIn(namespace, ['images', 'import', archive], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new Error(`ctr images import ${archive} failed (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    // An archive whose index entries carry no usable name is "imported" with exit code 0
    // and no image at all, so an empty list is an error, not a no-op. The names come from
    // the image list, not from ctr's progress output, whose format changed in 2.x.
    const names = (await this.imageNames(namespace)).filter((name) => !before.has(name) || r.stdout.includes(name));
    if (names.length === 0) {
      throw new Error(`ctr images import ${archive} created no image (no name annotation?):\n${r.stdout}\n${r.stderr}`);
    }
    return names;
  }

  private async imageNames(namespace: string): Promise<string[]> {
    const r = await this.ctrIn(namespace, ['images', 'ls', '-q']);
    if (r.code !== 0) throw new Error(`ctr images ls failed (code ${r.code}): ${r.stderr}`);
    return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (this.exitInfo !== undefined) {
        throw new Error(`containerd exited during startup (${this.exitInfo})\n--- containerd log ---\n${this.logs()}`);
      }
      if (fs.existsSync(this.address)) {
        const r = await run('ctr', ['-a', this.address, 'version'], { timeoutMs: 5_000 });
        if (r.code === 0) return;
        last = r.stderr;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `containerd not ready after ${timeoutMs} ms (last ctr error: ${last.trim()})\n` +
            `--- containerd log ---\n${this.logs()}`,
        );
      }
      await sleep(100);
    }
  }

  stop(): Promise<StopReport> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<StopReport> {
    let leftovers: string[] = [];
    let criTeardown = NO_CRI_TEARDOWN;
    if (this.exitInfo === undefined) {
      // Let containerd and the shims tear down what the test left running: that is the
      // only path that also cleans shim sockets, runtime state, cgroups and mounts.
      // Pods first, through CRI as kubelet would: that also releases their network.
      if (this.preparedCri) criTeardown = await removeCriPods(this.preparedCri.endpoint);
      leftovers = [...criTeardown.leftovers, ...(await this.removeLeftovers())];
      this.child.kill('SIGTERM');
      if (!(await settlesWithin(this.exited, STOP_GRACE_MS))) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    process.removeListener('exit', this.killOnExit);
    keepLogIfAsked(this.dir, this.logs());

    // Shims are daemonised and outlive containerd. Anything still tied to our dir
    // (a hung shim, or everything when containerd itself was unresponsive) goes now.
    const { killed, removedPaths } = await reapStragglers(this.dir, this.address);
    if (this.preparedCri) {
      const otherHarnessAlive = otherHarnessContainerds(this.dir).length > 0;
      removedPaths.push(...(await cleanupCriHost(this.preparedCri, criTeardown, { otherHarnessAlive })));
    }
    const unmounted = await unmountUnder(this.dir);
    const still = (await readMountPoints()).filter((m) => isUnder(m, this.dir));
    if (still.length > 0) {
      // Never rm -rf through a live mount: it would delete whatever is mounted there.
      throw new Error(`refusing to remove ${this.dir}: still mounted: ${still.join(', ')}`);
    }
    await fs.promises.rm(this.dir, { recursive: true, force: true });
    return { leftovers, killedProcesses: killed, removedPaths, unmounted };
  }

  /** Force-deletes every task and container in every namespace; returns what it found. */
  private async removeLeftovers(): Promise<string[]> {
    const found: string[] = [];
    const ctrIn = (ns: string, args: string[], timeoutMs = 30_000): Promise<RunResult> =>
      run('ctr', ['-a', this.address, '-n', ns, ...args], { timeoutMs });
    const list = async (ns: string, args: string[]): Promise<string[]> => {
      const r = await ctrIn(ns, args, 10_000);
      return r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter(Boolean) : [];
    };
    for (const ns of await list(this.namespace, ['namespaces', 'ls', '-q'])) {
      for (const id of await list(ns, ['tasks', 'ls', '-q'])) {
        found.push(`task ${ns}/${id}`);
        await ctrIn(ns, ['tasks', 'delete', '--force', id]);
      }
      for (const id of await list(ns, ['containers', 'ls', '-q'])) {
        found.push(`container ${ns}/${id}`);
        await ctrIn(ns, ['containers', 'delete', id]);
      }
    }
    return found;
  }
}

/**
 * SIGKILLs processes whose command line mentions `dir` (shims get `-address <dir>/c.sock`)
 * or whose cwd is inside it (shims run in their bundle dir), plus all their descendants:
 * container processes (runc) and VMMs (kata) are children of the shim, and their
 * /proc/<pid>/root reads as "/" from here, so ancestry is the only reliable link.
 * Then removes what each killed v2 shim would have cleaned up outside `dir`.
 */
async function reapStragglers(dir: string, address: string): Promise<{ killed: string[]; removedPaths: string[] }> {
  const procs = new Map<number, { ppid: number; argv: string[]; comm: string }>();
  for (const name of await fs.promises.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const stat = readOr(`/proc/${pid}/stat`);
    if (!stat) continue;
    const close = stat.lastIndexOf(')');
    procs.set(pid, {
      ppid: Number(stat.slice(close + 2).split(' ')[1]),
      argv: readOr(`/proc/${pid}/cmdline`).replace(/\0+$/, '').split('\0').filter(Boolean),
      comm: stat.slice(stat.indexOf('(') + 1, close),
    });
  }
  const victims: number[] = [];
  for (const [pid, p] of procs) {
    if (pid === process.pid) continue;
    const cwd = readlinkOr(`/proc/${pid}/cwd`);
    if (p.argv.some((a) => isUnder(a, dir) || a.includes(`${dir}/`)) || isUnder(cwd, dir)) victims.push(pid);
  }
  // Breadth-first over children so the whole tree below each match is included.
  for (let i = 0; i < victims.length; i++) {
    for (const [pid, p] of procs) {
      if (p.ppid === victims[i] && !victims.includes(pid) && pid !== process.pid) victims.push(pid);
    }
  }
  const killed: string[] = [];
  const shims: Array<{ ns: string; id: string }> = [];
  for (const pid of victims) {
    const p = procs.get(pid)!;
    killed.push(`${pid} ${p.argv.join(' ') || `[${p.comm}]`}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* exited meanwhile */
    }
    const shim = shimIdentity(p.argv, address);
    if (shim) shims.push(shim);
  }
  // Give the kernel a moment to tear the processes down (and drop their mounts and
  // cgroup membership, without which the cgroup dirs cannot be removed).
  const deadline = Date.now() + 5_000;
  while (victims.some(alive) && Date.now() < deadline) await sleep(50);

  const removedPaths: string[] = [];
  for (const { ns, id } of shims) {
    for (const p of shimLeftoverPaths(address, ns, id)) {
      try {
        // rmdir, not rm -r: cgroup dirs must be removed with rmdir, and a runc state
        // dir is only two files deep; recursive removal is done for that one alone.
        if (p.startsWith(RUNC_STATE_DIR)) fs.rmSync(p, { recursive: true });
        else if (fs.lstatSync(p).isDirectory()) fs.rmdirSync(p);
        else fs.rmSync(p);
        removedPaths.push(p);
      } catch {
        /* absent (the usual case) or busy */
      }
    }
  }
  return { killed, removedPaths };
}

/** Pids of live containerds started by this harness (any process) for a dir other than `dir`. */
function otherHarnessContainerds(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirOr('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const argv = readOr(`/proc/${name}/cmdline`).split('\0');
    if (path.basename(argv[0] ?? '') !== 'containerd') continue;
    if (argv.some((a) => a.startsWith(CONTAINERD_DIR_PREFIX) && !isUnder(a, dir))) pids.push(Number(name));
  }
  return pids;
}

/** containerd 1.6 and the runc shim keep some per-task state outside containerd's dirs. */
const RUNC_STATE_DIR = '/run/containerd/runc';
const CGROUP_ROOT = '/sys/fs/cgroup';

/** `-namespace`/`-id` of a v2 shim serving `address`, from its argv. */
function shimIdentity(argv: string[], address: string): { ns: string; id: string } | undefined {
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const ns = flag('-namespace');
  const id = flag('-id');
  return ns && id && flag('-address') === address ? { ns, id } : undefined;
}

/**
 * What a shim killed by SIGKILL leaves outside our dir: its socket, which containerd 1.6
 * puts at /run/containerd/s/<sha256(address/ns/id)> (runtime/v2/shim/util_unix.go); the
 * runc state dir (unless the test passed --runc-root); and the cgroup that ctr's default
 * spec puts at /<ns>/<id> in every hierarchy.
 */
function shimLeftoverPaths(address: string, ns: string, id: string): string[] {
  const paths = [
    path.join(SHIM_SOCKET_DIR, createHash('sha256').update(path.join(address, ns, id)).digest('hex')),
    path.join(RUNC_STATE_DIR, ns, id),
  ];
  const hierarchies = fs.existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))
    ? [CGROUP_ROOT]
    : readdirOr(CGROUP_ROOT).map((h) => path.join(CGROUP_ROOT, h));
  for (const h of hierarchies) paths.push(path.join(h, ns, id));
  return paths;
}

async function unmountUnder(dir: string): Promise<string[]> {
  // Deepest first so that parents are not busy because of their children.
  const targets = (await readMountPoints()).filter((m) => isUnder(m, dir)).sort((a, b) => b.length - a.length);
  const done: string[] = [];
  for (const t of targets) {
    // -l (lazy) so a lingering open file cannot block teardown; the mount is detached
    // from the tree immediately, which is all rm -rf needs.
    const r = await run('umount', ['-l', t], { timeoutMs: 10_000 });
    if (r.code === 0) done.push(t);
  }
  return done;
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it is gone for our purposes.
  const stat = readOr(`/proc/${pid}/stat`);
  return !/^\d+ \(.*\) Z /.test(stat);
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** The link's target, or '' when it cannot be read (its process gone, say). */
export function readlinkOr(link: string): string {
  try {
    return fs.readlinkSync(link);
  } catch {
    return '';
  }
}

/** True if `p` settles within `ms`; the timer is cleared so it cannot keep jest alive. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * KATATS_E2E_KEEP_LOGS=<dir>: each stopped containerd's log (the shims' lines among
 * them) is written there, for a run whose failures or rare paths need reading later.
 */
function keepLogIfAsked(dir: string, log: string): void {
  const keep = process.env.KATATS_E2E_KEEP_LOGS;
  if (!keep) return;
  try {
    fs.mkdirSync(keep, { recursive: true });
    fs.writeFileSync(path.join(keep, `containerd-${path.basename(dir)}.log`), log);
  } catch (err) {
    // Never at the cost of the clean-up that follows.
    console.warn(`KATATS_E2E_KEEP_LOGS: cannot keep the log in ${keep}: ${(err as Error).message}`);
  }
}
