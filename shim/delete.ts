// `containerd-shim-kata-v2 delete`: containerd runs this whenever its connection to a
// shim drops, after a clean Shutdown as well as after a crash, and it may run late: by
// then the same id may have been run again from the same bundle path, or another
// container of the pod may still be served. So delete acts only on what its records
// prove is abandoned:
// - the daemon is named by `shim.pid` in the bundle (pid + start time); a live one gets
//   a grace period to finish its own teardown, and is killed only if it then does not
//   answer on its socket (a daemon that answers serves someone: the pod, or a re-run);
// - the sandbox's state directory names its owner daemon in `owner`; while that owner
//   lives, nothing in the directory is touched;
// - the VM counts as ours only while its pid file's process has that pid file's exact
//   path among its arguments.
// It reports the exit as SIGKILL, as Kata does.
import * as path from 'path';
import { loadConfigFrom, locateConfig, recordedConfigSource } from '../config/config-location';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { Logger } from '../lib/logger';
import { lookupService, TASK_SERVICE } from '../lib/protos';
import { killRecordedVirtiofsDaemons } from '../hypervisors/virtiofsd';
import { killRecordedVsockBackend } from '../hypervisors/vsock-backend';
import { killAndWait, readProcessRecord, readTrimmed, recordAlive } from '../lib/recorded-process';
import { validateId } from '../sandbox/identifiers';
import { CRI_SANDBOX_ID } from '../lib/cri-annotations';
import { mountsBelow, removeUnlessMounted, unmount } from '../sandbox/rootfs';
import { CGROUP_RECORD_FILE, Sandbox, SANDBOX_OWNER_FILE } from '../sandbox/sandbox';
import { CGROUP_ROOT, CgroupRecord, removeCreated } from '../sandbox/host-cgroup';
import { containerShareDir, shareLayout } from '../sandbox/shared-fs';
import { removeDirIfEmpty } from '../sandbox/safe-paths';
import { PodNetwork } from '../sandbox/network';
import { readBundleSpec } from '../sandbox/spec';
import { runningQemuPid } from '../hypervisors/qemu';
import { sweepWarmDirs, warmRoot } from '../sandbox/warm-vm';
import { Code, TtrpcClient } from '../ttrpc';
import { ShimFlags } from './flags';
import { removeSocket } from './socket';
import { SHIM_PID_FILE } from './bundle-files';

export const KILLED_EXIT_STATUS = 137;
/** How long a live daemon may take to finish its own teardown before we look closer. */
const DAEMON_GRACE_MS = 10_000;
/** How long a daemon has to answer a Connect before it counts as hung. */
const DAEMON_ANSWER_MS = 5_000;

export async function deleteAction(flags: ShimFlags, logger: Logger): Promise<void> {
  const bundle = flags.bundle || process.cwd();
  // Both ids become paths that are unmounted and removed below.
  let sandboxId = validateId('container', flags.id);
  let netnsPath: string | undefined;
  let annotations: Record<string, string> | undefined;
  try {
    const spec = readBundleSpec(bundle);
    annotations = spec.annotations;
    sandboxId = spec.annotations?.[CRI_SANDBOX_ID] || flags.id;
    netnsPath = spec.linux?.namespaces?.find((ns) => ns.type === 'network')?.path;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'no readable spec; treating the container as its own sandbox');
  }
  validateId('sandbox', sandboxId);
  const address = readTrimmed(path.join(bundle, 'address')).replace(/^unix:\/\//, '');

  const shim = readProcessRecord(path.join(bundle, SHIM_PID_FILE));
  if (recordAlive(shim)) {
    // A daemon that answered Shutdown may still be finishing; one serving others keeps running.
    if (!(await exitedWithin(shim, DAEMON_GRACE_MS))) {
      if (await answers(address, flags.id)) {
        logger.info({ pid: shim.pid }, 'the shim daemon is alive and answering: it owns this container; nothing to clean');
        return;
      }
      logger.warn({ pid: shim.pid }, 'the shim daemon neither exited nor answers; killing it');
      await killAndWait(shim.pid);
    }
  }

  const config = stateConfig(bundle, annotations, logger);
  const workDir = Sandbox.workDirFor(config, flags.namespace, sandboxId);
  if (ownedByLiveDaemon(workDir)) {
    // Another daemon (the pod's, or a later run of the same id) owns the state directory.
    logger.info({ workDir }, 'the sandbox state belongs to a live shim daemon; leaving it');
    return;
  }

  // This container's own mounts: its share binds first, then the bundle rootfs.
  const containerDir = containerShareDir(shareLayout(workDir), flags.id);
  for (const target of [...mountsBelow(containerDir), path.join(bundle, 'rootfs')]) {
    await unmount(target).catch((err) => logger.error({ target, err: (err as Error).message }, 'unmount failed'));
  }
  warnIfKept(removeUnlessMounted(containerDir), logger);

  if (sandboxId === flags.id) {
    const pid = runningQemuPid(workDir);
    if (pid !== undefined) {
      await killAndWait(pid);
      logger.info({ pid }, 'killed the VM its dead shim left');
    }
    // Each exits with its VM; one whose VM never connected to it would stay.
    const daemons = await killRecordedVirtiofsDaemons(workDir);
    if (daemons.length > 0) logger.info({ pids: daemons }, 'killed the virtiofsd processes its dead shim left');
    // It never exits by itself (it waits for the next VMM).
    const vsockBackend = await killRecordedVsockBackend(workDir);
    if (vsockBackend !== undefined) logger.info({ pid: vsockBackend }, 'killed the vhost-device-vsock its dead shim left');
    await removeRecordedCgroup(path.join(workDir, CGROUP_RECORD_FILE), logger);
    // Seconds may have passed: a new run of this id may own the directory by now.
    if (ownedByLiveDaemon(workDir)) {
      logger.info({ workDir }, 'a live shim daemon took the sandbox state meanwhile; leaving it');
      return;
    }
    if (netnsPath) await PodNetwork.cleanup(netnsPath, logger).catch((err) => logger.error({ err: (err as Error).message }, 'pod network cleanup failed'));
    for (const target of mountsBelow(workDir)) await unmount(target).catch((err) => logger.error({ target, err: (err as Error).message }, 'unmount failed'));
    warnIfKept(removeUnlessMounted(workDir), logger);
    removeDirIfEmpty(path.dirname(workDir));
    // A VM a spare shim restored ([factory] spare_vms) kept its files where the spare made them: gone now with its dead daemon.
    await sweepWarmDirs(warmRoot(config.runtime.stateDir), logger);
    if (address && !(await answers(address, flags.id))) removeSocket(address);
  }
}

/**
 * The configuration that says where sandbox state lives: the file the daemon noted,
 * else the search the daemon made. A file that is gone or no longer parses must not
 * stop the cleanup: then the built-in state directory is tried.
 */
function stateConfig(bundle: string, annotations: Record<string, string> | undefined, logger: Logger): RuntimeConfig {
  try {
    return loadConfigFrom(recordedConfigSource(bundle) ?? locateConfig({ annotations })).config;
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'the configuration cannot be read; cleaning up in the default state directory');
    return defaultConfig();
  }
}

/** Waits while the recorded process runs; true when it is gone. */
async function exitedWithin(record: Parameters<typeof recordAlive>[0], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (recordAlive(record)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** True when a Task service on `socket` answers a Connect within the bound (any status counts as an answer). */
async function answers(socket: string, id: string): Promise<boolean> {
  if (!socket) return false;
  let client: TtrpcClient | undefined;
  try {
    client = await TtrpcClient.connect(socket);
    await client.call(lookupService(TASK_SERVICE), 'Connect', { id }, { timeoutMs: DAEMON_ANSWER_MS }).catch((err: { code?: number }) => {
      // A status from the daemon is an answer; only a deadline or a dropped connection is not.
      if (err.code === undefined || err.code === Code.DEADLINE_EXCEEDED || err.code === Code.UNAVAILABLE) throw err;
    });
    return true;
  } catch {
    return false;
  } finally {
    client?.close();
  }
}

function ownedByLiveDaemon(workDir: string): boolean {
  return recordAlive(readProcessRecord(path.join(workDir, SANDBOX_OWNER_FILE)));
}

/** How long a dead sandbox's cgroup may stay busy: its killed VMM is released once its parent reaps it. */
const CGROUP_RELEASE_MS = 5_000;

/** Removes the sandbox cgroup the dead daemon recorded, once its last process is gone. */
async function removeRecordedCgroup(recordFile: string, logger: Logger): Promise<void> {
  const text = readTrimmed(recordFile);
  if (!text) return;
  let record: CgroupRecord;
  try {
    record = JSON.parse(text) as CgroupRecord;
  } catch (err) {
    logger.error({ recordFile, err: (err as Error).message }, 'unreadable cgroup record');
    return;
  }
  const created = (record.created ?? []).filter((dir) => typeof dir === 'string' && dir.startsWith(`${CGROUP_ROOT}/`) && !dir.split('/').includes('..'));
  const deadline = Date.now() + CGROUP_RELEASE_MS;
  let failed = removeCreated(created);
  while (failed.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    failed = removeCreated(created);
  }
  if (failed.length > 0) logger.error({ failed }, 'sandbox cgroup not removed');
}

function warnIfKept(stillMounted: string[], logger: Logger): void {
  if (stillMounted.length > 0) logger.error({ stillMounted }, 'left a directory in place: mounts below it could not be removed');
}
