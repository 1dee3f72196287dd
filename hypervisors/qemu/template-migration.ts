// Saving a template VM's state and restoring it into a clone, over QMP: QEMU migrates
// to or from a Unix socket, whose other end the shim copies to or from the state file.
// (QEMU 7.2 has no file: migration, fd: needs SCM_RIGHTS that Node cannot send, and
// exec: needs the fork that QEMU's -sandbox spawn=deny forbids.) x-ignore-shared leaves
// the RAM out: the template's RAM is a shared file mapping that the clone maps
// privately, so the state is only the devices' and vCPUs' (well under a MiB).
import * as fs from 'fs';
import * as net from 'net';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { HypervisorError, TemplateRestoreError } from '../../lib/errors';
import { VmExit } from '../hypervisor';
import { QmpClient } from './qmp';

/** A saved template is well under a MiB; loading it takes a fraction of a second even on a busy host. */
export const MIGRATION_TIMEOUT_MS = 60_000;
const POLL_MS = 20;
/** After the state stream broke, how long QEMU's migration status may still say it loaded. */
const SEND_FAILURE_GRACE_MS = 5000;
/** QMP lost: how long QEMU's exit may take to be seen (QEMU ending itself closes QMP first). */
const EXIT_AFTER_QMP_LOSS_MS = 2000;

/**
 * QEMU itself refused the state: its migration status says "failed", or it ended itself
 * (with an exit code, as it does when a load fails). Not so when QEMU was killed (a
 * signal: the pod cgroup's OOM killer), timed out, or the stream could not be sent:
 * those say nothing about the state, and the template must not be removed for them.
 */
export class MigrationRejectedError extends HypervisorError {}

/** A failed restore as its template should take it: TemplateRestoreError (the template is bad) only when QEMU refused the state. */
export function restoreFailure(err: Error): Error {
  return err instanceof MigrationRejectedError ? new TemplateRestoreError(err.message, { cause: err }) : err;
}

interface MigrationInfo {
  status?: string;
  'error-desc'?: string;
}

const IGNORE_SHARED = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };

/**
 * Stops the vCPUs and writes the VM's state to `statePath` (created, mode 0600), through
 * a socket the shim listens on at `socketPath`; the VM stays stopped.
 */
export async function saveTemplateState(qmp: QmpClient, socketPath: string, statePath: string, exited: Promise<VmExit>, timeoutMs = MIGRATION_TIMEOUT_MS): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  try {
    const received = new Promise<void>((resolve, reject) => {
      server.once('connection', (socket) => {
        server.close(); // one stream only
        pipeline(socket, fs.createWriteStream(statePath, { flags: 'wx', mode: 0o600 })).then(resolve, reject);
      });
    });
    received.catch(() => undefined);
    await qmp.execute('stop');
    await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
    await qmp.execute('migrate', { uri: `unix:${socketPath}` });
    await waitForMigration(qmp, 'saving the template', exited, timeoutMs);
    await withTimeout(received, timeoutMs, 'saving the template: the state stream did not end');
  } finally {
    server.close();
    fs.rmSync(socketPath, { force: true });
  }
}

/**
 * Loads `state` (a saved template's bytes) into a QEMU started with `-incoming defer
 * -S`: QEMU listens on `socketPath`, the shim streams the bytes into it.
 */
export async function restoreTemplateState(qmp: QmpClient, socketPath: string, state: Buffer, exited: Promise<VmExit>, timeoutMs = MIGRATION_TIMEOUT_MS): Promise<void> {
  try {
    await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
    await qmp.execute('migrate-incoming', { uri: `unix:${socketPath}` });
    const sent = pipeline(Readable.from([state]), net.connect(socketPath));
    const loaded = waitForMigration(qmp, 'restoring the template', exited, timeoutMs);
    loaded.catch(() => undefined);
    const sendFailure = await Promise.race([loaded.then(() => undefined), sent.then(() => undefined, (err: Error) => err)]);
    if (sendFailure) {
      // QEMU may read the whole state and close its end before the copy noticed it was
      // done ("premature close"): the migration status decides, but not for long.
      await withTimeout(loaded, SEND_FAILURE_GRACE_MS, `restoring the template: sending the state failed: ${sendFailure.message}`);
    }
    await loaded;
  } finally {
    fs.rmSync(socketPath, { force: true });
  }
}

async function withTimeout(promise: Promise<void>, ms: number, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new HypervisorError(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** QEMU's end during a migration: its own (an exit code: it refused the stream) or not (a signal). */
function exitError(what: string, exit: VmExit): HypervisorError {
  const message = `${what}: QEMU exited (code ${exit.code}, signal ${exit.signal})`;
  return exit.signal === null && exit.code !== null && exit.code !== 0 ? new MigrationRejectedError(message) : new HypervisorError(message);
}

async function waitForMigration(qmp: QmpClient, what: string, exited: Promise<VmExit>, timeoutMs: number): Promise<void> {
  let gone: VmExit | undefined;
  void exited.then((exit) => (gone = exit));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // QEMU ends itself when an incoming migration fails to load.
    if (gone) throw exitError(what, gone);
    const info = await qmp.execute<MigrationInfo>('query-migrate').catch(async (err: Error) => {
      // QEMU's QMP ends as QEMU does, often before its exit is seen: the exit says why.
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXIT_AFTER_QMP_LOSS_MS)))]);
      clearTimeout(timer);
      throw exit ? exitError(what, exit) : new HypervisorError(`${what}: ${err.message}`, { cause: err });
    });
    if (info.status === 'completed') return;
    if (info.status === 'failed') throw new MigrationRejectedError(`${what} failed: ${info['error-desc'] ?? info.status}`);
    if (info.status === 'cancelled') throw new HypervisorError(`${what} was cancelled`);
    if (Date.now() > deadline) throw new HypervisorError(`${what}: not done after ${timeoutMs} ms (status ${info.status ?? 'none'})`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
