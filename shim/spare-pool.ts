// Spare shim daemons ([factory] spare_shims): daemons started ahead of demand, their
// Node start-up and module loading done, waiting for `start` to hand them a pod. A
// pod's `start` then claims one instead of launching a daemon, which saves the
// daemon's start-up (about 200 ms of CPU) on the pod's critical path.
//
// The pool is a directory, root's only, with one listening socket per spare,
// `<pid>.sock`. A claim renames that socket to `<pid>.claimed` (rename is atomic:
// exactly one claimer wins), connects to it, sends the pod's id, bundle and socket,
// and reads the same "ready" the daemon writes to a freshly launched `start`. A spare
// only takes a claim through a renamed socket, so a prober that merely connects is
// ignored; one that retires renames its own socket first, so it never leaves while
// a claimer holds it.
//
// Spares are pooled by what a daemon takes from the `start` that would have launched
// it and cannot change once running: containerd's address, the namespace, the flags,
// the shim's code, the Node binary and the environment read at start-up (STARTUP_ENV).
// A pod's `start` computes the same key, so it claims only a spare that is what it
// would have started. The rest of the environment (PATH, TTRPC_ADDRESS, KATATS_* …)
// travels with the claim and replaces the spare's: containerd changes its own (its
// NRI plugin appends to PATH after the first pod), and a claimed spare then runs with
// exactly the environment a launched daemon would have had.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { fileIdentity } from '../lib/file-identity';
import { killAndWait, processArgs } from '../lib/recorded-process';
import { validateId } from '../sandbox/identifiers';
import { ShimFlags } from './flags';
import { stateDirFromBundle } from './socket';
import { withDaemonAllocator } from './daemon-allocator';

/** Below containerd's state dir (or /run/kata-ts), one directory per pool key. */
export const SPARES_DIR_NAME = 'kata-ts-spares';
const READY = '.sock';
const CLAIMED = '.claimed';
const STARTING = '.starting';
const RETIRED = '.retired';
/** A claim is one JSON line: three short fields and the environment (Linux caps a process's at 2 MiB with its argv). */
export const CLAIM_LINE_MAX = 2 * 1024 * 1024;
/** How long `start` waits for a claimed spare to answer "ready" before it launches a daemon itself. */
export const CLAIM_READY_TIMEOUT_MS = 10_000;
/** sun_path holds 107 bytes and the NUL. */
const UNIX_SOCKET_PATH_MAX = 107;
/**
 * Variables read once, when a process or a library in it starts: Node's options, libuv's
 * pool, the dynamic loader, glibc's allocator, OpenSSL, the locale and time zone ICU
 * takes up. A spare has them from its launch, so they are part of a pool's key.
 */
const STARTUP_ENV = /^(NODE_|UV_|LD_|GLIBC_|MALLOC_|OPENSSL_|SSL_|LC_|LANG$|LANGUAGE$|TZ$)/;
/** What `start` gives a daemon's libuv pool when containerd sets nothing (start.ts). */
export const DEFAULT_UV_THREADPOOL_SIZE = '16';

/** The daemon's entry script, which a spare runs too (and whose identity keys the pool). */
export function shimEntry(): string {
  return path.join(__dirname, 'main.js');
}

/** What a pod's `start` hands a spare: the fields that differ from pod to pod, and the environment. */
export interface Claim {
  id: string;
  bundle: string;
  socket: string;
  env: Record<string, string>;
}

/** The environment `start` gives the daemon it launches (and a claimed spare): its own, with libuv's pool sized. */
export function daemonEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) out[name] = value;
  out.UV_THREADPOOL_SIZE = env.UV_THREADPOOL_SIZE ?? DEFAULT_UV_THREADPOOL_SIZE;
  return withDaemonAllocator(out);
}

/**
 * The pool a daemon launched with these flags and this environment belongs to. The
 * entry script's and the Node binary's identities are part of it: after an upgrade,
 * spares running the old code are never claimed (and retire, see spare.ts). Throws if
 * either file cannot be read.
 */
export function sparePoolKey(flags: Pick<ShimFlags, 'namespace' | 'address' | 'publishBinary' | 'debug'>, env: NodeJS.ProcessEnv, entry: string): string {
  const startup = Object.entries(daemonEnv(env))
    .filter(([name]) => STARTUP_ENV.test(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const identity = {
    namespace: flags.namespace,
    address: flags.address,
    publishBinary: flags.publishBinary,
    debug: flags.debug,
    startup,
    entry: fileIdentity(entry),
    node: fileIdentity(process.execPath),
  };
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 32);
}

/** Where every pool of the containerd that made `bundle` lives: absent until a daemon first launches spares. */
export function sparePoolsRoot(bundle: string): string {
  return path.join(stateDirFromBundle(bundle), SPARES_DIR_NAME);
}

/** The pools root of a containerd with this state dir (`<state>/kata-ts-spares`). */
export function sparePoolsRootOf(containerdState: string): string {
  return path.join(containerdState, SPARES_DIR_NAME);
}

/** The pool directories under a pools root (named by their key); none when it does not exist. Throws when it cannot be read. */
export function poolDirs(root: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((name) => /^[0-9a-f]{32}$/.test(name))
    .sort()
    .map((name) => path.join(root, name));
}

export function sparePoolDir(bundle: string, key: string): string {
  return path.join(sparePoolsRoot(bundle), key);
}

/**
 * Creates the pool directory (and its parent) root-only, and refuses one that is not
 * a real directory of root's that only root can enter: the sockets in it hand pods to
 * daemons.
 */
export function ensurePoolDir(dir: string): void {
  for (const d of [path.dirname(dir), dir]) {
    try {
      fs.mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    checkPoolDir(d);
  }
}

/** Throws unless `dir` is a real directory of ours that only we can enter. */
export function checkPoolDir(dir: string): void {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory() || st.uid !== process.getuid!() || (st.mode & 0o077) !== 0) {
    throw new Error(`spare shim pool ${dir} is not a directory only its owner (uid ${process.getuid!()}) can enter; remove it`);
  }
}

/** The pid a pool entry name carries, if it is of that kind. */
function pidOf(name: string, suffix: string): number | undefined {
  if (!name.endsWith(suffix)) return undefined;
  const digits = name.slice(0, -suffix.length);
  return /^[1-9][0-9]{0,9}$/.test(digits) ? Number(digits) : undefined;
}

/**
 * Whether `pid` is a spare of this pool (launched, waiting, or claimed since): its
 * command line names the pool. A dead spare's pid taken by another process is not.
 */
export function isSpareOf(dir: string, pid: number): boolean {
  const argv = processArgs(pid);
  const at = argv.indexOf('-spares-dir');
  if (at < 0 || argv[at + 1] === undefined) return false;
  if (argv[at + 1] === dir) return true;
  // The same directory by another path (containerd's state given as /var/run/…, say).
  const named = realPath(argv[at + 1]);
  return named !== undefined && named === realPath(dir);
}

function realPath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

const SUFFIXES = [READY, CLAIMED, STARTING, RETIRED];

/** The pool's entries whose spare is alive, by pid; a dead spare's files are removed on the way unless `prune` is false. */
function liveEntries(dir: string, prune = true): Array<{ name: string; pid: number; suffix: string }> {
  const live: Array<{ name: string; pid: number; suffix: string }> = [];
  for (const name of entries(dir)) {
    const suffix = SUFFIXES.find((s) => pidOf(name, s) !== undefined);
    if (!suffix) continue;
    const pid = pidOf(name, suffix)!;
    if (isSpareOf(dir, pid)) live.push({ name, pid, suffix });
    else if (prune) fs.rmSync(path.join(dir, name), { force: true });
  }
  return live;
}

/** A pool's live spares by what they do now. */
export interface PoolSpares {
  /** Listening, claimable. */
  ready: number[];
  /** Launched, loading the daemon's code. */
  starting: number[];
  /** Their socket renamed by a pod's `start` (becoming that pod's daemon), or by `factory destroy` (being stopped). */
  beingClaimed: number[];
}

/** What lives in a pool now; `prune` removes dead spares' files on the way. */
export function poolSpares(dir: string, prune = true): PoolSpares {
  const live = liveEntries(dir, prune);
  const pids = (suffix: string) => [...new Set(live.filter((e) => e.suffix === suffix).map((e) => e.pid))].sort((a, b) => a - b);
  const ready = pids(READY);
  const beingClaimed = pids(CLAIMED).filter((pid) => !ready.includes(pid));
  const starting = pids(STARTING).filter((pid) => !ready.includes(pid) && !beingClaimed.includes(pid));
  return { ready, starting, beingClaimed };
}

/** Live spares ready or on their way (launched, `<pid>.starting`, not yet listening). */
export function countSpares(dir: string): number {
  const { ready, starting } = poolSpares(dir);
  return ready.length + starting.length;
}

/** Notes a just-launched spare, so that a second top-up does not launch another in its place. */
export function markStarting(dir: string, pid: number): void {
  fs.writeFileSync(path.join(dir, `${pid}${STARTING}`), '', { mode: 0o600 });
}

export function readySocketOf(dir: string, pid: number): string {
  return path.join(dir, `${pid}${READY}`);
}

export function claimedSocketOf(dir: string, pid: number): string {
  return path.join(dir, `${pid}${CLAIMED}`);
}

export function startingMarkerOf(dir: string, pid: number): string {
  return path.join(dir, `${pid}${STARTING}`);
}

export function retiredSocketOf(dir: string, pid: number): string {
  return path.join(dir, `${pid}${RETIRED}`);
}

/** The live ready spares' rank by name: a spare ranked at or past the wanted count is surplus. */
export function readyRank(dir: string, pid: number): number {
  return liveEntries(dir)
    .filter((e) => e.suffix === READY)
    .map((e) => e.name)
    .sort()
    .indexOf(`${pid}${READY}`);
}

export function parseClaim(line: string): Claim {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new InvalidArgumentError('spare shim claim: not JSON');
  }
  const { id, bundle, socket, env } = (raw ?? {}) as Record<string, unknown>;
  if (typeof id !== 'string' || typeof bundle !== 'string' || typeof socket !== 'string') throw new InvalidArgumentError('spare shim claim: id, bundle and socket must be strings');
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw new InvalidArgumentError('spare shim claim: env must be an object of strings');
  for (const [name, value] of Object.entries(env)) {
    if (!/^[^=\0]+$/.test(name) || typeof value !== 'string' || value.includes('\0')) throw new InvalidArgumentError(`spare shim claim: env ${JSON.stringify(name)} is not a variable a process can have`);
  }
  validateId('container', id);
  if (!path.isAbsolute(bundle) || path.normalize(bundle) !== bundle) throw new InvalidArgumentError(`spare shim claim: bundle ${JSON.stringify(bundle)} is not a normalised absolute path`);
  if (!path.isAbsolute(socket) || path.normalize(socket) !== socket || Buffer.byteLength(socket) > UNIX_SOCKET_PATH_MAX) {
    throw new InvalidArgumentError(`spare shim claim: socket ${JSON.stringify(socket)} is not a normalised absolute path of at most ${UNIX_SOCKET_PATH_MAX} bytes`);
  }
  return { id, bundle, socket, env: env as Record<string, string> };
}

/**
 * Claims a ready spare of the pool and hands it the pod. Answers the daemon's pid once
 * it listens on the pod's socket, or undefined (with why, for the caller's log) when
 * no spare took the pod: the caller then launches a daemon as usual.
 */
export async function claimSpare(dir: string, claim: Claim, timeoutMs = CLAIM_READY_TIMEOUT_MS): Promise<{ pid?: number; failures: string[] }> {
  const failures: string[] = [];
  try {
    checkPoolDir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failures.push((err as Error).message);
    return { failures };
  }
  const deadline = Date.now() + timeoutMs;
  const ready = entries(dir)
    .map((name) => pidOf(name, READY))
    .filter((pid): pid is number => pid !== undefined);
  // Concurrent starts try the spares in different orders, so they seldom race for one.
  for (let i = ready.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [ready[i], ready[j]] = [ready[j], ready[i]];
  }
  for (const pid of ready) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    if (!isSpareOf(dir, pid)) {
      fs.rmSync(readySocketOf(dir, pid), { force: true }); // a dead spare's: nothing to claim
      continue;
    }
    const result = await claimOne(dir, pid, claim, left);
    if (result === 'taken') return { pid, failures };
    if (result !== 'lost') failures.push(`spare ${pid}: ${result}`);
  }
  return { failures };
}

/**
 * One spare: 'taken' once it serves the pod; 'lost' when another claimer (or its own
 * retirement) renamed its socket first; else why it failed. A spare that failed after
 * the claim reached it is killed and waited for, so that it never serves the pod's
 * socket beside the daemon the caller launches instead.
 */
export async function claimOne(dir: string, pid: number, claim: Claim, timeoutMs: number): Promise<'taken' | 'lost' | string> {
  const claimed = claimedSocketOf(dir, pid);
  try {
    fs.renameSync(readySocketOf(dir, pid), claimed);
  } catch {
    return 'lost';
  }
  try {
    await handOver(claimed, claim, timeoutMs);
    return 'taken';
  } catch (err) {
    await stopSpare(dir, pid);
    fs.rmSync(claimed, { force: true });
    return (err as Error).message;
  }
}

/**
 * Stops the pool's unclaimed spares (`kata-ts-runtime factory destroy`). Each ready one
 * is first taken as a claimer takes it, by renaming its socket, so that no pod's
 * `start` can claim it between the listing and the kill; then it is killed and waited
 * for. Spares still starting are waited for until they listen, up to `timeoutMs`; the
 * pids of those that did not are `left`. A spare whose socket a `start` renamed first is
 * left alone: it is becoming that pod's daemon.
 */
export async function stopWaitingSpares(dir: string, timeoutMs = CLAIM_READY_TIMEOUT_MS): Promise<{ stopped: number[]; left: number[] }> {
  checkPoolDir(dir);
  const deadline = Date.now() + timeoutMs;
  const stopped: number[] = [];
  for (;;) {
    // Read only: what a pool's users prune is theirs to prune.
    const { ready, starting } = poolSpares(dir, false);
    for (const pid of ready) {
      const claimed = claimedSocketOf(dir, pid);
      try {
        fs.renameSync(readySocketOf(dir, pid), claimed);
      } catch {
        continue; // claimed or retired meanwhile
      }
      await stopSpare(dir, pid);
      fs.rmSync(claimed, { force: true });
      fs.rmSync(startingMarkerOf(dir, pid), { force: true }); // killed before it removed its own
      stopped.push(pid);
    }
    if (starting.length === 0 || Date.now() > deadline) return { stopped, left: starting };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILLs a spare of this pool (checked by its command line, not by its pid alone) and waits until it is gone or a zombie: only then are its sockets closed. */
async function stopSpare(dir: string, pid: number): Promise<void> {
  if (isSpareOf(dir, pid)) await killAndWait(pid);
}

function handOver(socketPath: string, claim: Claim, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let answer = '';
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    function finish(err?: Error): void {
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve();
    }
    conn.setEncoding('utf8');
    conn.once('connect', () => conn.write(`${JSON.stringify(claim)}\n`));
    conn.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.startsWith('ready')) finish();
      else if (answer.length > CLAIM_LINE_MAX) finish(new Error('answer too long'));
    });
    conn.once('end', () => finish(answer.startsWith('ready') ? undefined : new Error(answer.replace(/^error: /, '').trim() || 'closed without an answer')));
    conn.once('error', (err) => finish(err));
  });
}
