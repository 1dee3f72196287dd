// `containerd-shim-kata-v2 delete`: containerd runs this when a shim died. Clean up
// what the dead daemon owned for this container (and the VM, for the sandbox's own
// container) and report the exit as SIGKILL, as Kata does.
import * as fs from 'fs';
import * as path from 'path';
import { loadConfigFrom, locateConfig, recordedConfigSource } from '../config/config-location';
import { Logger } from '../lib/logger';
import { isZombie, readTrimmed, recordedProcessRunning } from '../lib/recorded-process';
import { validateId } from '../sandbox/identifiers';
import { CRI_SANDBOX_ID } from '../sandbox/pod';
import { mountsBelow, removeUnlessMounted, unmount } from '../sandbox/rootfs';
import { Sandbox } from '../sandbox/sandbox';
import { PodNetwork } from '../sandbox/network';
import { readBundleSpec } from '../sandbox/spec';
import { qemuPaths } from '../hypervisors/qemu';
import { ShimFlags } from './flags';
import { removeSocket } from './socket';

export const KILLED_EXIT_STATUS = 137;
/** How long a live daemon may take to finish its own teardown before we kill it. */
const DAEMON_GRACE_MS = 10_000;

export async function deleteAction(flags: ShimFlags, logger: Logger): Promise<void> {
  const bundle = flags.bundle || process.cwd();
  // Both ids become paths that are unmounted and removed recursively below.
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
  // The file the daemon noted; without that note, the same search the daemon made, minus the runtime options delete never gets.
  const { config } = loadConfigFrom(recordedConfigSource(bundle) ?? locateConfig({ annotations }));
  const workDir = Sandbox.workDirFor(config, sandboxId);

  // This container's own mounts: the shared-dir bind first, then the bundle rootfs.
  for (const target of [...mountsBelow(path.join(workDir, 'shared', flags.id)), path.join(bundle, 'rootfs')]) {
    await unmount(target).catch((err) => logger.error({ target, err: (err as Error).message }, 'unmount failed'));
  }
  warnIfKept(removeUnlessMounted(path.join(workDir, 'shared', flags.id)), logger);

  if (sandboxId === flags.id) {
    // containerd runs `delete` whenever the connection drops, also while a daemon that
    // answered Shutdown is still finishing; give it the chance to end cleanly.
    await exitedWithin(path.join(bundle, 'shim.pid'), 'dist/shim/main', DAEMON_GRACE_MS);
    killRecordedProcess(path.join(bundle, 'shim.pid'), 'dist/shim/main', logger);
    killRecordedProcess(qemuPaths(workDir).pidFile, `sandbox-${sandboxId}`, logger);
    if (netnsPath) await PodNetwork.cleanup(netnsPath, logger).catch((err) => logger.error({ err: (err as Error).message }, 'pod network cleanup failed'));
    for (const target of mountsBelow(workDir)) await unmount(target).catch(() => undefined);
    warnIfKept(removeUnlessMounted(workDir), logger);
    const address = readTrimmed(path.join(bundle, 'address'));
    if (address) removeSocket(address.replace(/^unix:\/\//, ''));
  }
}

/** Waits while the process in `pidFile` (if it is still ours) runs; true when it is gone. */
async function exitedWithin(pidFile: string, marker: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (recordedProcessRunning(pidFile, marker)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

function warnIfKept(stillMounted: string[], logger: Logger): void {
  if (stillMounted.length > 0) logger.error({ stillMounted }, 'left a directory in place: mounts below it could not be removed');
}

/** SIGKILLs the pid in `pidFile` if its command line still contains `marker` (pid reuse guard). */
function killRecordedProcess(pidFile: string, marker: string, logger: Logger): void {
  const pid = Number(readTrimmed(pidFile));
  if (!(pid > 0)) return;
  const cmdline = readTrimmed(`/proc/${pid}/cmdline`).replace(/\0/g, ' ');
  if (!cmdline.includes(marker)) return;
  try {
    process.kill(pid, 'SIGKILL');
    logger.info({ pid, marker }, 'killed leftover process');
  } catch {
    /* already gone */
  }
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`) && !isZombie(pid); i++) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}
