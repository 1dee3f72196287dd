// WarmUp: runs once, in a VM no pod uses yet, what a pod's start runs in the guest,
// and removes it all again. A spare's VM restored from a template ([factory]
// spare_vms) is warmed up this way while it waits for a pod.
//
// Why: under TCG QEMU translates guest code the first time it runs, and keeps the
// translation per QEMU process, so a clone starts with none (the template's is not
// saved). A spare-VM pod's first container start took 370 ms against 170 ms for its
// second (crun, the kernel's namespace, mount and cgroup paths, all run for the first
// time), inside the pod's start. The agent's own code is warmed too: it runs without
// a JIT, so its interpreter's code is the same for every call.
//
// What runs: a container with its own PID, IPC, UTS and mount namespaces and a
// cgroup, as CRI's pause container has, through GuestContainer as CreateContainer,
// StartContainer and RemoveContainer run it; its rootfs is a copy of the guest's
// static busybox in a tmpfs directory (the guest's read-only root cannot hold the
// mountpoints a container needs), and its process is `busybox true`. (No seccomp
// profile or capability set: the shim passes the pod's, which differ from pod to pod.)
// Then commands a pod's set-up runs: mount and umount of a scratch tmpfs of its own
// (the agent's service mounts the shared filesystem right after), and ip on the
// loopback link, which the guest's init brought up already (so `up` changes nothing;
// UpdateInterface and UpdateRoutes run ip). Last, a regular expression is compiled.
//
// It never meets a pod's containers: WarmUpGate refuses it once CreateSandbox or
// CreateContainer began, and they wait for one under way (the shim calls it before it
// offers the VM to a pod, and ends a VM whose warm-up failed).
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { GuestContainer, OciSpec } from './container';
import { OciRuntime } from './oci-runtime';

/** The id of the warm-up's container (WarmUpGate keeps it from ever being alive beside a pod's). */
export const WARM_UP_CONTAINER_ID = 'katats-warm-up';

export interface WarmUpOptions {
  runtime: OciRuntime;
  bundlesRoot: string;
  /** A directory of the warm-up's own (rootfs, scratch mountpoint); removed afterwards. */
  workDir: string;
  /** A static binary with busybox's applets (`true`): the container's one file. */
  busybox: string;
  /** The container's cgroup (cgroupfs path). */
  cgroupsPath: string;
  /** Runs a short command as the agent's calls do (the command shell). */
  runCommand: (file: string, args: string[]) => Promise<unknown>;
  logger: Logger;
}

/**
 * The namespaces, mounts, masked paths and cgroup of a CRI pod's sandbox container, less
 * what only a pod has (a rootfs image, a shared /dev/shm, its seccomp profile and capabilities).
 */
export function warmUpSpec(rootfs: string, cgroupsPath: string): OciSpec {
  return {
    ociVersion: '1.0.2',
    process: {
      args: ['/bin/busybox', 'true'],
      env: ['PATH=/bin'],
      cwd: '/',
      user: { uid: 0, gid: 0 },
    },
    root: { path: rootfs, readonly: true },
    hostname: 'katats-warm-up',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    // (The masked and read-only paths are runtime fields GuestContainer passes through untyped.)
    linux: {
      cgroupsPath,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    } as OciSpec['linux'],
  };
}

/**
 * Runs the warm-up (see the file's head). Throws on the first failure, after removing
 * what it made; a clean-up that fails fails a warm-up that went well (what it left
 * would be a pod's to meet), and is only logged after an earlier failure (the reason).
 */
export async function warmUp(opts: WarmUpOptions): Promise<void> {
  const { workDir, logger } = opts;
  const started = performance.now();
  const rootfs = path.join(workDir, 'rootfs');
  const scratch = path.join(workDir, 'mnt');
  let scratchMounted = false;
  let failure: unknown;
  try {
    fs.rmSync(workDir, { recursive: true, force: true });
    for (const dir of ['bin', 'proc', 'dev', 'sys']) fs.mkdirSync(path.join(rootfs, dir), { recursive: true, mode: 0o755 });
    fs.mkdirSync(scratch, { mode: 0o700 });
    fs.copyFileSync(opts.busybox, path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    await runContainer(opts, rootfs);
    const containerMs = performance.now() - started;
    // mount and ip, as a pod's set-up runs them, on the warm-up's own things.
    await opts.runCommand('mount', ['-t', 'tmpfs', '-o', 'nosuid,nodev,noexec,mode=0700,size=1m', 'katats-warm-up', scratch]);
    scratchMounted = true;
    await opts.runCommand('umount', [scratch]);
    scratchMounted = false;
    await opts.runCommand('ip', ['link', 'set', 'dev', 'lo', 'up']);
    await opts.runCommand('ip', ['addr', 'show', 'dev', 'lo']);
    await opts.runCommand('ip', ['route', 'show']);
    compileAPattern();
    logger.info({ ms: Math.round(performance.now() - started), containerMs: Math.round(containerMs) }, 'warmed up: a container run and removed, the sandbox commands run');
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    const steps: CleanUpStep[] = [['remove its directory', () => fs.rmSync(workDir, { recursive: true, force: true })]];
    if (scratchMounted) steps.unshift(['unmount its scratch tmpfs', () => opts.runCommand('umount', ['-l', scratch])]);
    await cleanUp(steps, failure, logger);
  }
}

/**
 * Compiles a regular expression of its own: QEMU then has V8's regexp compiler translated
 * for a pattern a pod's calls compile first (those the template compiled ahead need none:
 * template-prep). A first compile in a clone took 35 ms, a second 1.5 ms.
 */
function compileAPattern(): void {
  void new RegExp(`^${WARM_UP_CONTAINER_ID}-[0-9]+$`).test(`${WARM_UP_CONTAINER_ID}-1`);
}

async function runContainer(opts: WarmUpOptions, rootfs: string): Promise<void> {
  const spec = warmUpSpec(rootfs, opts.cgroupsPath);
  const logger = opts.logger.child({ container: WARM_UP_CONTAINER_ID });
  let container: GuestContainer;
  try {
    container = GuestContainer.create(WARM_UP_CONTAINER_ID, Buffer.from(JSON.stringify(spec)), false, opts.bundlesRoot, opts.runtime, logger);
  } catch (err) {
    // It may have made the bundle's directory before it failed.
    await cleanUp([['remove its bundle', () => fs.rmSync(path.join(opts.bundlesRoot, WARM_UP_CONTAINER_ID), { recursive: true, force: true })]], err, logger);
    throw err;
  }
  let failure: unknown;
  try {
    await container.start();
    const status = await container.wait('');
    if (status !== 0) throw new Error(`the warm-up container exited with status ${status}`);
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    await cleanUp([['remove its container', () => container.remove()]], failure, logger);
  }
}

type CleanUpStep = [what: string, step: () => unknown];

/**
 * Runs every step; after an earlier failure (`failure` set) a step's failure is only
 * logged, else the first one is thrown once all ran.
 */
async function cleanUp(steps: CleanUpStep[], failure: unknown, logger: Logger): Promise<void> {
  let first: Error | undefined;
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (err) {
      const error = new Error(`warm-up: cannot ${what}: ${(err as Error).message}`, { cause: err });
      if (failure !== undefined || first) logger.warn({ err: error.message }, 'warm-up clean-up failed');
      else first = error;
    }
  }
  if (first) throw first;
}

/**
 * Lets a warm-up run only in a VM that serves no pod yet, one at a time; the pod's
 * first call (CreateSandbox, or a CreateContainer without one) waits for one under
 * way, and none may start after it.
 */
export class WarmUpGate {
  private sandbox = false;
  private running: Promise<void> | undefined;

  async warmUp(run: () => Promise<void>): Promise<void> {
    if (this.sandbox) throw new FailedPreconditionError('WarmUp: this VM serves a sandbox already; a warm-up is for a VM no pod uses yet');
    if (this.running) throw new FailedPreconditionError('WarmUp: a warm-up is running already');
    const running = run();
    this.running = running;
    try {
      await running;
    } finally {
      this.running = undefined;
    }
  }

  /** Called as CreateSandbox or CreateContainer begins: waits for a warm-up under way (its outcome is WarmUp's to report). */
  async podArriving(): Promise<void> {
    this.sandbox = true;
    await this.running?.catch(() => undefined);
  }
}
