// The agent over vsock where the host kernel has no vhost-vsock: QEMU's
// vhost-user-vsock-pci with a user-space backend, vhost-device-vsock (rust-vmm). The
// backend exposes the guest's vsock on the host as a Unix socket speaking hybrid vsock
// (`CONNECT <port>\n` → `OK <n>\n`), the protocol of Cloud Hypervisor and Firecracker,
// so the shim dials the agent exactly as it does with those VMMs.
//
// One backend per sandbox, started before QEMU (which connects to its vhost-user
// socket at start-up) and recorded (pid + start time) for `delete` after a crash. It
// does not exit with QEMU (it waits for the next VMM), so the driver kills it.
//
// It parses guest-controlled virtqueues, so it runs as nobody, with no capability and
// no_new_privs, in network and IPC namespaces of its own (vmm-launch.ts). Its sockets
// are in a directory of its own in the work dir (`vsock/`, nobody's, mode 0700): it
// can write nothing else, and its pid record stays in the root-owned work dir. A
// guest connecting out to host port P reaches `<uds>_P` in that directory, where
// nothing listens under such a name.
import * as fs from 'fs';
import * as path from 'path';
import { runBounded } from '../lib/bounded-command';
import { HypervisorError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { killRecordedIfAlive, writeProcessRecord } from '../lib/recorded-process';
import { UNPRIVILEGED_ID } from './vmm-launch';
import { resolveExecutable, VmmProcess } from './vmm-process';

/** Debian's package (unstable) installs it here; scripts/fetch-vhost-device-vsock.sh caches it elsewhere. */
export const DEFAULT_VSOCK_BACKEND = '/usr/bin/vhost-device-vsock';
/** Any CID will do: only this VM's backend sees it. */
export const BACKEND_GUEST_CID = 3;
/**
 * Memory regions vhost-device-vsock maps: 8, the boot RAM and 7 DIMMs (measured: the
 * read-only rootfs NVDIMM does not count). QEMU refuses a DIMM beyond that ("a used
 * vhost backend has no free memory slots left").
 */
export const BACKEND_MEMORY_SLOTS = 8;

const SOCKET_TIMEOUT_MS = 10_000;
const VERSION_TIMEOUT_MS = 10_000;

export interface VsockBackendPaths {
  /** The backend's own directory (the hybrid socket's): nobody's, mode 0700. */
  dir: string;
  /** QEMU's vhost-user connection. */
  vhostUserSocket: string;
  /** Hybrid vsock: where the shim dials the guest. */
  hybridSocket: string;
  /** Its pid record, outside `dir`, where the backend cannot rewrite it. */
  record: string;
}

export function vsockBackendPaths(workDir: string, hybridSocket: string): VsockBackendPaths {
  const dir = path.dirname(hybridSocket);
  if (dir === workDir) throw new Error(`the hybrid vsock socket ${hybridSocket} must be in a directory of its own below the work dir`);
  return { dir, vhostUserSocket: path.join(dir, 'vhost.sock'), hybridSocket, record: vsockBackendRecord(workDir) };
}

function vsockBackendRecord(workDir: string): string {
  return path.join(workDir, 'vsock-backend.pid');
}

/**
 * Relative to its directory, which is its working directory: as nobody it cannot reach
 * the directory by path through the root-only work dir, but it is already in it.
 */
export function vsockBackendArgs(paths: VsockBackendPaths): string[] {
  return [`--guest-cid=${BACKEND_GUEST_CID}`, `--socket=${path.basename(paths.vhostUserSocket)}`, `--uds-path=${path.basename(paths.hybridSocket)}`];
}

/** The first line `--version` prints ("vhost-device-vsock 0.3.0"); throws what a person can act on. */
export async function vsockBackendVersion(binaryPath: string): Promise<string> {
  const binary = resolveExecutable(binaryPath);
  if (!binary) throw new HypervisorError(`vsock backend '${binaryPath}' is not an executable file; fetch it with scripts/fetch-vhost-device-vsock.sh (Debian unstable's vhost-device-vsock) or set vsock_backend`);
  try {
    const { stdout } = await runBounded(binary, ['--version'], VERSION_TIMEOUT_MS);
    const line = stdout.split('\n')[0].trim();
    if (!/^vhost-device-vsock \d/.test(line)) throw new Error(`it says ${JSON.stringify(line.slice(0, 100))}, not vhost-device-vsock's version`);
    return line;
  } catch (err) {
    throw new HypervisorError(`vsock backend '${binaryPath}' cannot be used: ${(err as Error).message}`, { cause: err });
  }
}

export interface VsockBackend {
  process: VmmProcess;
  paths: VsockBackendPaths;
}

/** Starts the backend and waits until QEMU can connect to it. */
export async function startVsockBackend(binaryPath: string, paths: VsockBackendPaths, logger: Logger): Promise<VsockBackend> {
  // A crashed predecessor's directory goes (rmSync follows no symlink it may have left).
  fs.rmSync(paths.dir, { recursive: true, force: true });
  fs.mkdirSync(paths.dir, { mode: 0o700 });
  fs.chownSync(paths.dir, UNPRIVILEGED_ID, UNPRIVILEGED_ID);
  const process = VmmProcess.spawn({ name: 'vhost-device-vsock', binaryPath, args: vsockBackendArgs(paths), logger, confinement: 'unprivileged', cwd: paths.dir });
  const backend = { process, paths };
  try {
    if (process.pid !== undefined) writeProcessRecord(paths.record, process.pid);
    // In its own network namespace: its listening socket is in that namespace's table, not ours.
    await process.waitForSocketFile(paths.vhostUserSocket, SOCKET_TIMEOUT_MS, { unixTable: `/proc/${process.pid}/net/unix`, boundAs: path.basename(paths.vhostUserSocket) });
    // Whoever connects here reaches the agent (and the debug console): root only (the
    // directory is nobody's 0700 already; this is for a mode that outlives a chown).
    fs.chmodSync(paths.hybridSocket, 0o600);
    return backend;
  } catch (err) {
    await stopVsockBackend(backend);
    throw err;
  }
}

/** Kills the backend (it would wait for another VMM forever) and removes its directory. Safe to call more than once. */
export async function stopVsockBackend(backend: VsockBackend | undefined): Promise<void> {
  if (!backend) return;
  await backend.process.stop(0, async () => backend.process.signal('SIGTERM'));
  fs.rmSync(backend.paths.dir, { recursive: true, force: true });
}

/** For `delete` after a crash: kills the backend `workDir` records if it still runs (a reused pid is left alone). */
export async function killRecordedVsockBackend(workDir: string): Promise<number | undefined> {
  return killRecordedIfAlive(vsockBackendRecord(workDir));
}
