// `containerd-shim-kata-v2 start`: find or launch the pod's shim daemon and print its
// address. Containers of an existing pod (CRI sandbox-id annotation) reuse its daemon.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InternalError } from '../lib/errors';
import { CRI_CONTAINER_TYPE, CRI_SANDBOX_ID } from '../lib/cri-annotations';
import { readBundleSpec } from '../sandbox/spec';
import { daemonArgs, ShimFlags } from './flags';
import { isListening, removeSocket, shimSocketPath } from './socket';
import { SHIM_PID_FILE } from './bundle-files';
import { writeProcessRecord } from '../lib/recorded-process';
import { claimSpare, daemonEnv, shimEntry, sparePoolDir, sparePoolKey, sparePoolsRoot } from './spare-pool';

const DAEMON_READY_TIMEOUT_MS = 30_000;

export async function startAction(flags: ShimFlags): Promise<string> {
  const bundle = process.cwd();
  const spec = readBundleSpec(bundle);
  const annotations = spec.annotations ?? {};
  const groupId = annotations[CRI_SANDBOX_ID] || flags.id;
  const socket = shimSocketPath(bundle, flags.address, flags.namespace, groupId);
  const address = `unix://${socket}`;
  const joinsPod = annotations[CRI_CONTAINER_TYPE] === 'container' && groupId !== flags.id;

  if (await isListening(socket)) {
    writeBundleFile(bundle, 'address', address);
    return address;
  }
  if (joinsPod) throw new FailedPreconditionError(`container ${flags.id} belongs to sandbox ${groupId}, whose shim is not running (no listener on ${socket})`);

  removeSocket(socket); // a stale file from a crashed daemon
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o711 });
  const pid = (await claimSpareDaemon(flags, socket, bundle)) ?? (await spawnDaemon(flags, socket, bundle));
  writeBundleFile(bundle, 'address', address);
  // pid and start time: a later delete must never mistake another process with a reused pid for this daemon.
  writeProcessRecord(path.join(bundle, SHIM_PID_FILE), pid);
  return address;
}

/**
 * A spare daemon of this start's kind ([factory] spare_shims), now the pod's; undefined
 * when there is none or it failed: the caller then launches a daemon as always.
 */
async function claimSpareDaemon(flags: ShimFlags, socket: string, bundle: string): Promise<number | undefined> {
  // No pool ever made (spares off, the default): nothing to hash or list.
  if (!fs.existsSync(sparePoolsRoot(bundle))) return undefined;
  const entry = shimEntry();
  if (!fs.existsSync(entry)) return undefined; // run from sources: spares run the built shim only
  let result: { pid?: number; failures: string[] };
  try {
    result = await claimSpare(sparePoolDir(bundle, sparePoolKey(flags, process.env, entry)), { id: flags.id, bundle, socket, env: daemonEnv(process.env) });
  } catch (err) {
    result = { failures: [(err as Error).message] }; // e.g. the shim replaced under us
  }
  // The pod starts anyway, on a daemon of its own. Not on stdout or stderr: containerd
  // reads start's combined output as the address.
  for (const failure of result.failures) logToBundle(bundle, flags, `no spare shim daemon took the pod: ${failure}`);
  return result.pid;
}

/**
 * One warning line in the bundle's `log` FIFO, which containerd reads into its own log
 * (it opens it before it runs start); nothing when nobody reads it.
 */
function logToBundle(bundle: string, flags: ShimFlags, msg: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path.join(bundle, 'log'), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.writeSync(fd, `${JSON.stringify({ level: 40, time: new Date().toISOString(), pid: process.pid, shim: flags.id, namespace: flags.namespace, msg })}\n`);
  } catch {
    /* no reader, or no FIFO (started by hand) */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writeBundleFile(bundle: string, name: string, content: string): void {
  fs.writeFileSync(path.join(bundle, name), content, { mode: 0o600 });
}

/** Starts the daemon detached and waits for it to report "ready" on fd 3. */
function spawnDaemon(flags: ShimFlags, socket: string, bundle: string): Promise<number> {
  const main = shimEntry();
  const entry = fs.existsSync(main) ? [main] : ['-r', 'ts-node/register', path.join(__dirname, 'main.ts')];
  const child = spawn(process.execPath, [...entry, ...daemonArgs(flags, socket)], {
    cwd: bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    // With libuv's pool sized: headroom for file operations on slow host filesystems (FIFOs, commands and volume stats never hold a pool thread).
    env: daemonEnv(process.env),
  });
  return new Promise((resolve, reject) => {
    let report = '';
    const timer = setTimeout(() => fail(`the shim daemon did not become ready within ${DAEMON_READY_TIMEOUT_MS} ms`), DAEMON_READY_TIMEOUT_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    function fail(message: string): void {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new InternalError(message));
    }
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => {
      report += chunk;
      if (report.startsWith('ready')) {
        clearTimeout(timer);
        (pipe as unknown as { destroy(): void }).destroy();
        child.unref();
        resolve(child.pid!);
      }
    });
    pipe.on('end', () => {
      if (!report.startsWith('ready')) fail(report.replace(/^error: /, '').trim() || 'the shim daemon exited before it was ready');
    });
    child.once('error', (err) => fail(`cannot start the shim daemon: ${err.message}`));
  });
}
