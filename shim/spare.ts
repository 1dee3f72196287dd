// A spare shim daemon's life (spare-pool.ts has the pool's protocol): launched by a
// pod's daemon at its first Create, it loads the daemon's modules, listens on its pool
// socket and waits. Claimed, it becomes the claiming pod's daemon (runDaemon), in the
// pod's bundle. Unclaimed, it retires when containerd stops answering, when the shim's
// code on disk changes, when the pool holds more spares than wanted, or after a long
// idle time, so no spare outlives what it was made for.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { fileIdentity } from '../lib/file-identity';
import { createLogger, HeldLog } from '../lib/logger';
import { setThreadsPriority } from '../lib/thread-priority';
import { daemonLogLevel, runDaemon } from './daemon';
import { startSpareVm } from './spare-vm';
import { ShimFlags } from './flags';
import {
  Claim,
  CLAIM_LINE_MAX,
  CLAIM_READY_TIMEOUT_MS,
  claimedSocketOf,
  parseClaim,
  readyRank,
  readySocketOf,
  retiredSocketOf,
  shimEntry,
  startingMarkerOf,
} from './spare-pool';
import { isListening } from './socket';
import { keepAllocatorSettingToSelf } from './daemon-allocator';

/** How often an unclaimed spare checks that it is still wanted. */
const CHECK_MS = Number(process.env.KATATS_SPARE_CHECK_MS ?? 5_000);
/** An unclaimed spare retires after this long: a node that starts no pods for a while gives the memory back. */
const IDLE_RETIRE_MS = Number(process.env.KATATS_SPARE_IDLE_MS ?? 30 * 60_000);

/** The entry script's and Node's identities now; undefined once either is gone (the shim uninstalled). */
function codeIdentity(entry: string): string | undefined {
  try {
    return `${fileIdentity(entry)} ${fileIdentity(process.execPath)}`;
  } catch {
    return undefined;
  }
}

/** Replaces this process's environment with the claimer's (see spare-pool.ts), as a daemon it launched would have it. */
export function takeEnvironment(env: Record<string, string>): void {
  for (const name of Object.keys(process.env)) if (!(name in env)) delete process.env[name];
  Object.assign(process.env, env);
  keepAllocatorSettingToSelf();
}

/** A spare's main: wait for a claim, then run as the claiming pod's daemon. */
export async function runSpare(flags: ShimFlags): Promise<void> {
  const dir = flags.sparesDir;
  const wanted = Number(flags.spares);
  const nice = Number(flags.nice);
  if (!path.isAbsolute(dir) || !(wanted > 0) || !Number.isInteger(nice)) throw new Error('spare: -spares-dir, -spares and -nice are required');
  const entry = shimEntry();
  const code = codeIdentity(entry);
  const containerd = process.env.TTRPC_ADDRESS ?? `${flags.address}.ttrpc`;
  const pid = process.pid;
  // Until a pod claims it, nobody reads what it logs: kept, then sent to the pod's log.
  const heldLog = new HeldLog();
  const logger = createLogger(heldLog, daemonLogLevel(flags.debug)).child({ spare: pid, namespace: flags.namespace });
  // Restored before the spare listens: a pod claims a spare that has its VM, or none (the spare is "starting" meanwhile).
  // Stopped meanwhile (factory destroy, a package's stop script): it leaves once the restore is over.
  let stoppedEarly = false;
  const onEarlyTerm = (): void => void (stoppedEarly = true);
  process.on('SIGTERM', onEarlyTerm);
  const warm = flags.spareVmConfig ? await startSpareVm(flags.spareVmConfig, logger) : undefined;
  process.removeListener('SIGTERM', onEarlyTerm);
  /** Exits, ending the VM first: a spare that leaves must leave nothing running. Every exit of a spare, claimed or not, goes through here. */
  let leaving = false;
  const leave = (code: number): void => {
    if (leaving) return;
    leaving = true;
    const ending = warm ? warm.discard().catch((err) => logger.error({ err: (err as Error).message }, "ending the spare's VM failed")) : Promise.resolve();
    void ending.then(() => process.exit(code));
  };
  if (stoppedEarly) return leave(0);
  // A VM that died while it waited is no use to a pod: the spare retires, and the next pod's start launches another.
  let vmGone = false;
  void warm?.clone.hypervisor.exited.then(() => (vmGone = true));
  // Surplus (pool larger than wanted), stale (the shim or Node on disk changed or went), or orphaned (containerd gone).
  const retireCheck = async () => vmGone || readyRank(dir, pid) >= wanted || codeIdentity(entry) !== code || !(await isListening(containerd));
  // A claim in the seconds before the check sees the VM gone is refused: the claimer launches a daemon of its own.
  const unfit = () => (vmGone ? "the spare's VM exited while it waited" : undefined);
  const { claim, conn } = await waitForClaim(dir, pid, retireCheck, unfit, leave);
  // From here on this process is the pod's daemon, as one launched for it would be.
  try {
    setThreadsPriority('self', nice);
    const vmmPid = warm?.clone.hypervisor.pid();
    if (vmmPid !== undefined) setThreadsPriority(vmmPid, nice);
    process.chdir(claim.bundle);
    takeEnvironment(claim.env);
  } catch (err) {
    conn.end(`error: ${(err as Error).message}\n`);
    return leave(1);
  }
  let answered = false;
  conn.once('close', () => {
    if (!answered) leave(1); // start gave up on us and launches a daemon itself
  });
  await runDaemon(
    { ...flags, id: claim.id, bundle: claim.bundle, socket: claim.socket },
    (message) => {
      if (conn.destroyed || !conn.writable) return false;
      answered = true;
      conn.end(message);
      return true;
    },
    { warm, heldLog, exit: leave },
  );
}

type RetireCheck = () => Promise<boolean>;

/**
 * Listens on the pool socket until a claimer renames it and sends a claim. Exits the
 * process when the spare retires (or a claim is bad, or the spare unfit to serve it: the
 * claimer then starts a daemon).
 */
function waitForClaim(dir: string, pid: number, shouldRetire: RetireCheck, unfit: () => string | undefined, leave: (code: number) => void): Promise<{ claim: Claim; conn: net.Socket }> {
  const ready = readySocketOf(dir, pid);
  const claimed = claimedSocketOf(dir, pid);
  const since = Date.now();
  return new Promise((resolve) => {
    let taken = false;
    let stopping = false;
    let left = false;
    /** Leaves (leave() ends the VM first, which takes a while): no claim is taken meanwhile. */
    const leaveNow = (code: number): void => {
      left = true;
      clearInterval(timer);
      clearTimeout(orphaned);
      server.close();
      leave(code);
    };
    const server = net.createServer((conn) => {
      // Only a claimer renames the socket first; anything else that connects is sent away.
      if (taken || left || !fs.existsSync(claimed)) return void conn.destroy();
      taken = true;
      readClaimLine(conn).then(
        (line) => {
          let claim: Claim;
          try {
            if (stopping) throw new Error('the spare is stopping (SIGTERM)');
            const why = unfit();
            if (why) throw new Error(why);
            claim = parseClaim(line);
          } catch (err) {
            conn.end(`error: ${(err as Error).message}\n`, () => leaveNow(1));
            return;
          }
          clearInterval(timer);
          clearTimeout(orphaned);
          process.removeListener('SIGTERM', onTerm);
          server.close();
          fs.rmSync(claimed, { force: true });
          fs.rmSync(startingMarkerOf(dir, pid), { force: true }); // should its launcher have written it late
          resolve({ claim, conn });
        },
        () => leaveNow(1),
      );
    });
    // A dead spare's, with our (reused) pid: a leftover `claimed` would make any connection a claim.
    for (const leftover of [ready, claimed, retiredSocketOf(dir, pid)]) fs.rmSync(leftover, { force: true });
    server.listen(ready, () => {
      try {
        fs.chmodSync(ready, 0o600); // the pool directory is root's only already
      } catch {
        /* claimed (renamed) already */
      }
      fs.rmSync(startingMarkerOf(dir, pid), { force: true });
    });
    server.on('error', () => leaveNow(1));
    // A claimer holding the renamed socket gets this long to connect and send its claim.
    let orphaned: NodeJS.Timeout | undefined;
    const awaitClaimer = (): void => {
      clearInterval(timer);
      orphaned ??= setTimeout(() => leaveNow(1), CLAIM_READY_TIMEOUT_MS);
    };
    const retire = (): void => {
      try {
        fs.renameSync(ready, retiredSocketOf(dir, pid));
      } catch {
        return awaitClaimer(); // claimed meanwhile: serve that claim, unless it never comes
      }
      fs.rmSync(retiredSocketOf(dir, pid), { force: true });
      leaveNow(0);
    };
    // Stopped while waiting (factory destroy, a package's stop script): leave no socket
    // behind, and refuse a claim under way. Until claimed only: the daemon has its own handler.
    const onTerm = (): void => {
      stopping = true;
      if (!taken) retire();
    };
    process.on('SIGTERM', onTerm);
    const timer = setInterval(() => {
      if (taken) return;
      if (Date.now() - since > IDLE_RETIRE_MS) return retire();
      // Renamed by a claimer that has not connected (or died before it could).
      if (!fs.existsSync(ready)) return awaitClaimer();
      shouldRetire().then((yes) => {
        if (yes && !taken) retire();
      }, () => undefined);
    }, CHECK_MS);
  });
}

function readClaimLine(conn: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('no claim in time')), CLAIM_READY_TIMEOUT_MS);
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end >= 0) {
        clearTimeout(timer);
        conn.removeAllListeners('data');
        resolve(text.slice(0, end));
      } else if (text.length > CLAIM_LINE_MAX) {
        clearTimeout(timer);
        reject(new Error('claim too long'));
      }
    });
    conn.once('error', reject);
    conn.once('end', () => reject(new Error('closed before a claim')));
  });
}
