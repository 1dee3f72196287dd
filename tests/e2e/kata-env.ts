// Everything an e2e test needs to run containers through containerd with our shim:
// a launcher for the freshly compiled shim, a TCG configuration pointing at the built
// guest, a private containerd using both, and the busybox test image imported.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { buildBusyboxImage } from '../harness/image';
import { CriContainerd, PrivateContainerd, startContainerd } from '../harness/containerd';
import { CriClient } from '../harness/cri';
import { CriImages, importCriImages } from '../harness/cri-images';
import { HostSnapshot, snapshotHost } from '../harness/leaks';
import { GUEST_CURRENT, REPO } from '../harness/repo';
import { run, RunResult } from '../harness/exec';
import { defaultConfig } from '../../config/runtime-config';
import { Sandbox } from '../../sandbox/sandbox';
import { escapeRegExp } from '../../lib/regexp';
import { silentLogger } from '../../lib/logger';
import { sweepWarmDirs, WARM_DIR_NAME, warmRoot } from '../../sandbox/warm-vm';
import { isZombie } from '../../lib/recorded-process';
import { runningQemuPid } from '../../hypervisors/qemu';

export { REPO } from '../harness/repo';

/** A sandbox's work dir under `stateDir`, as the shim names it (hashed when too long for a socket path). */
export function sandboxWorkDir(stateDir: string, namespace: string, sandboxId: string): string {
  const config = defaultConfig();
  return Sandbox.workDirFor({ ...config, runtime: { ...config.runtime, stateDir } }, namespace, sandboxId);
}

export const RUNTIME = 'io.containerd.kata.v2';

/**
 * The live QEMU processes of a sandbox: the one named after it (`-name sandbox-<id>`:
 * booted, or cloned at its Create), or the one its work dir's pid file names (a VM a
 * spare shim restored before the pod came carries the spare's name, and is found as
 * `delete` finds it).
 */
export function sandboxVmms(stateDir: string, namespace: string, sandboxId: string): number[] {
  const named = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes('qemu-system') && l.includes(`sandbox-${sandboxId},`))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
  const fromWorkDir = runningQemuPid(sandboxWorkDir(stateDir, namespace, sandboxId));
  return [...new Set([...named, ...(fromWorkDir === undefined ? [] : [fromWorkDir])])];
}

export interface KataEnv {
  containerd: PrivateContainerd;
  image: string;
  /** Directory with the `containerd-shim-kata-v2` launcher. */
  shimDir: string;
  /** The sandboxes' state dir (from the configuration). */
  stateDir: string;
  configPath: string;
  stop(): Promise<void>;
}

/** Writes a launcher that runs the compiled shim (dist/) with this machine's node, as `make install` does. */
export function writeShimLauncher(dir: string): string {
  const main = path.join(REPO, 'dist', 'shim', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} missing: run 'make build' first`);
  const launcher = path.join(dir, 'containerd-shim-kata-v2');
  execFileSync(path.join(REPO, 'scripts', 'node-launcher.sh'), [process.execPath, main, launcher]);
  return launcher;
}

export interface ConfigOverrides {
  hypervisor?: Record<string, unknown>;
  agent?: Record<string, unknown>;
  factory?: Record<string, unknown>;
}

/**
 * KATATS_E2E_TEMPLATE_PATH=<dir> runs the suites with VM templates on, kept in <dir>
 * (make test-template): every pod then starts as a clone. KATATS_E2E_SPARE_SHIMS=N runs
 * them with N spare shim daemons: a pod that finds one ready (about a second after the
 * previous pod's Create launched it) runs on it (make test-template counts them).
 * KATATS_E2E_SPARE_VMS=1 (with both) has each spare restore a VM while it waits: a pod
 * that finds one ready runs in that VM.
 */
export function factoryFromEnv(): Record<string, unknown> {
  const dir = process.env.KATATS_E2E_TEMPLATE_PATH;
  const spares = Number(process.env.KATATS_E2E_SPARE_SHIMS ?? 0);
  const spareVms = process.env.KATATS_E2E_SPARE_VMS === '1';
  return { ...(dir ? { enableTemplate: true, templatePath: dir } : {}), ...(spares > 0 ? { spareShims: spares } : {}), ...(spareVms ? { spareVms } : {}) };
}

/** The built guest's kernel, rootfs image and initrd. */
export function builtGuest(): { kernel: string; image: string; initrd: string } {
  // Resolve `current` once: a rebuild swaps it, and a VM must get a matching pair.
  const guest = fs.existsSync(GUEST_CURRENT) ? fs.realpathSync(GUEST_CURRENT) : GUEST_CURRENT;
  for (const name of ['vmlinux', 'rootfs.img', 'initrd.img']) {
    if (!fs.existsSync(path.join(guest, name))) throw new Error(`${guest}/${name} missing: run 'make guest' first`);
  }
  // The uncompressed vmlinux boots seconds faster than vmlinuz under TCG emulation.
  return { kernel: path.join(guest, 'vmlinux'), image: path.join(guest, 'rootfs.img'), initrd: path.join(guest, 'initrd.img') };
}

/**
 * The data path the suites run on, from the environment: KATATS_E2E_SHARED_FS=virtio-fs
 * shares the sandbox directory over virtio-fs (make test-virtiofs);
 * KATATS_E2E_AGENT_CHANNEL=hybrid-vsock reaches the agent over vsock through
 * KATATS_E2E_VSOCK_BACKEND (make test-vsock). Unset: the defaults (virtio-9p, virtio-serial).
 */
export function dataPathFromEnv(): { sharedFs?: string; virtioFsCache?: string; agentChannel?: string; vsockBackend?: string } {
  const env = process.env;
  return {
    ...(env.KATATS_E2E_SHARED_FS ? { sharedFs: env.KATATS_E2E_SHARED_FS } : {}),
    ...(env.KATATS_E2E_VIRTIO_FS_CACHE ? { virtioFsCache: env.KATATS_E2E_VIRTIO_FS_CACHE } : {}),
    ...(env.KATATS_E2E_AGENT_CHANNEL ? { agentChannel: env.KATATS_E2E_AGENT_CHANNEL } : {}),
    ...(env.KATATS_E2E_VSOCK_BACKEND ? { vsockBackend: env.KATATS_E2E_VSOCK_BACKEND } : {}),
  };
}

/**
 * With KATATS_E2E_TEMPLATE_PATH, a suite proves something about clones only if its pods
 * were clones: a pod that booted cold instead fails the run, with the shim's reason.
 */
export function expectOnlyClones(containerdLogs: string): void {
  if (!process.env.KATATS_E2E_TEMPLATE_PATH) return;
  const cold = containerdLogs.split('\n').filter((l) => /booting (it )?cold/.test(l));
  if (cold.length > 0) throw new Error(`VM templates are on, but ${cold.length} pod(s) booted cold:\n${cold.join('\n')}`);
}

export function writeConfig(file: string, stateDir: string, overrides: ConfigOverrides = {}): void {
  const { kernel, image, initrd } = builtGuest();
  // The rootfs image (DAX), as installed; a test that wants the initrd says so.
  const rootfs = overrides.hypervisor && 'initrd' in overrides.hypervisor ? { initrd } : { image };
  const config = {
    // Guests hang under nested KVM on these machines; production hosts use kvm.
    hypervisor: { accelerator: 'tcg', kernel, ...rootfs, memoryMiB: 1024, ...dataPathFromEnv(), ...overrides.hypervisor },
    agent: { bootTimeoutMs: 180_000, ...overrides.agent },
    runtime: { stateDir },
    factory: { ...factoryFromEnv(), ...overrides.factory },
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
}

/**
 * The directories a test left in a state dir: sandboxes' work dirs, and spare VM dirs
 * (`.warm/<pid>-<hex>`, sandbox/warm-vm.ts) whose spare or pod daemon is gone. A live
 * spare's is its containerd's configured state, not something left.
 */
export function stateDirsLeft(stateDir: string): string[] {
  const entries = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : []);
  const ownerAlive = (name: string) => {
    const pid = Number(name.split('-')[0]);
    return pid > 0 && fs.existsSync(`/proc/${pid}`) && !isZombie(pid);
  };
  const warm = entries(path.join(stateDir, WARM_DIR_NAME)).filter((name) => !ownerAlive(name)).map((name) => `${WARM_DIR_NAME}/${name}`);
  return [...entries(stateDir).filter((name) => name !== WARM_DIR_NAME), ...warm];
}

/**
 * containerd's stop kills every spare shim it finds ([factory] spare_vms): their VMs die
 * with them, and their work dirs are left as a killed spare's are, for the next spare or
 * `factory destroy`, which this does as they do, for those spares only. Any other spare
 * VM dir is something a test left: returned, as containerd's stop returns its leftovers.
 */
async function removeKilledSpareVms(stateDir: string, killed: string[]): Promise<string[]> {
  const pids = new Set(killed.map((line) => Number(line.split(' ')[0])));
  await sweepWarmDirs(warmRoot(stateDir), silentLogger(), (spare) => pids.has(spare));
  return stateDirsLeft(stateDir)
    .filter((name) => name.startsWith(`${WARM_DIR_NAME}/`))
    .map((name) => `spare VM dir ${path.join(stateDir, name)}`);
}

/** Makes an environment's temporary directory and builds the environment in it; a build that fails leaves no directory behind. */
async function inNewDir<T>(prefix: string, build: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(prefix);
  try {
    return await build(dir);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export function startKataEnv(opts: ConfigOverrides & { containerdLogLevel?: 'debug' | 'info' } = {}): Promise<KataEnv> {
  return inNewDir('/tmp/kt-env-', (dir) => buildKataEnv(dir, opts));
}

async function buildKataEnv(dir: string, opts: ConfigOverrides & { containerdLogLevel?: 'debug' | 'info' }): Promise<KataEnv> {
  const shimDir = path.join(dir, 'bin');
  const stateDir = path.join(dir, 'vm');
  fs.mkdirSync(shimDir);
  writeShimLauncher(shimDir);
  const configPath = path.join(dir, 'config.json');
  writeConfig(configPath, stateDir, opts);
  const image = await buildBusyboxImage(path.join(REPO, 'tests', '.cache', 'image'));
  const containerd = await startContainerd({ runtimeShimDir: shimDir, env: { KATATS_CONFIG: configPath }, logLevel: opts.containerdLogLevel });
  try {
    await containerd.importImage(image.archive);
  } catch (err) {
    await containerd.stop();
    throw err;
  }
  return {
    containerd,
    image: image.ref,
    shimDir,
    stateDir,
    configPath,
    async stop() {
      const logs = containerd.logs();
      const report = await containerd.stop();
      const left = await removeKilledSpareVms(stateDir, report.killedProcesses);
      // Never rm -rf through what may still be mounted.
      if (left.length > 0) throw new Error(`left behind (${dir} kept): ${left.join(', ')}`);
      fs.rmSync(dir, { recursive: true, force: true });
      expectOnlyClones(logs);
    },
  };
}

export interface CriKataEnv {
  dir: string;
  cd: CriContainerd;
  cri: CriClient;
  images: CriImages;
  /** The host before containerd started: after stop(), nothing may be left beyond it. */
  before: HostSnapshot;
  /** The host with containerd up and no pod: once the pods are removed, nothing beyond it. */
  baseline: HostSnapshot;
  /** Stops containerd and removes the temp dir; returns what containerd left over. */
  stop(): Promise<string[]>;
}

/** How the shim finds its configuration: the containerd env, and the `kata` runtime's options.ConfigPath. */
export interface KataConfigChoice {
  env: Record<string, string>;
  kataConfigPath?: string;
}

/**
 * A private containerd with the CRI plugin whose `kata` handler runs our shim; by
 * default $KATATS_CONFIG names 512 MiB TCG guests, `configure` may choose otherwise.
 */
export async function startCriKataEnv(tmpPrefix: string, configure?: (dir: string) => KataConfigChoice): Promise<CriKataEnv> {
  const before = await snapshotHost();
  return inNewDir(tmpPrefix, (dir) => buildCriKataEnv(dir, before, configure));
}

async function buildCriKataEnv(dir: string, before: HostSnapshot, configure?: (dir: string) => KataConfigChoice): Promise<CriKataEnv> {
  const shimDir = path.join(dir, 'bin');
  fs.mkdirSync(shimDir);
  writeShimLauncher(shimDir);
  const defaultChoice = (): KataConfigChoice => {
    const config = path.join(dir, 'config.json');
    writeConfig(config, path.join(dir, 'vm'), { hypervisor: { memoryMiB: 512 } });
    return { env: { KATATS_CONFIG: config } };
  };
  const choice = (configure ?? defaultChoice)(dir);
  const cd = await startContainerd({ cri: { kataConfigPath: choice.kataConfigPath }, runtimeShimDir: shimDir, env: choice.env });
  const cri = new CriClient(cd.cri.socket, { timeoutMs: 300_000 });
  let images: Awaited<ReturnType<typeof importCriImages>>;
  let baseline: HostSnapshot;
  try {
    images = await importCriImages(cd);
    baseline = await snapshotHost({ dirs: [cd.dir] });
  } catch (err) {
    cri.close();
    await cd.stop();
    throw err;
  }
  return {
    dir,
    cd,
    cri,
    images,
    before,
    baseline,
    async stop() {
      cri.close();
      const logs = cd.logs();
      const report = await cd.stop();
      const left = await removeKilledSpareVms(path.join(dir, 'vm'), report.killedProcesses);
      // Never rm -rf through what may still be mounted.
      if (left.length === 0) fs.rmSync(dir, { recursive: true, force: true });
      expectOnlyClones(logs);
      return [...report.leftovers, ...left];
    },
  };
}

/** The CLI (dist/cli/main.js) that `kata-ts-runtime` runs. */
export const RUNTIME_CLI = path.join(REPO, 'dist', 'cli', 'main.js');

/**
 * Runs `script` in a root shell of the sandbox's guest (`kata-ts-runtime exec`, over the
 * debug console: the configuration must enable it). Output is the terminal's: \r\n lines.
 */
export function guestShell(configPath: string, sandboxId: string, script: string, opts: { namespace?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const args = [RUNTIME_CLI, 'exec', ...(opts.namespace ? ['--namespace', opts.namespace] : []), sandboxId];
  return run(process.execPath, args, { input: script, timeoutMs: opts.timeoutMs ?? 120_000, env: { ...process.env, KATATS_CONFIG: configPath } });
}

type Ctr = (args: string[]) => Promise<{ stdout: string }>;

/** Kills and removes a container (in the namespace `ctr` runs in); errors mean "already gone". */
export async function removeContainer(ctr: Ctr, id: string): Promise<void> {
  await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  for (let i = 0; i < 100 && (await ctr(['task', 'ls', '-q'])).stdout.split('\n').includes(id); i++) {
    await ctr(['task', 'delete', id]);
    await new Promise((r) => setTimeout(r, 200));
  }
  await ctr(['containers', 'rm', id]);
}

/**
 * Requires a `ctr` call about container `id` to have succeeded; otherwise fails with
 * ctr's own output and the log lines containerd and the shim wrote about `id`, so a
 * failure seen only in CI names its cause.
 */
export function expectCtrOk(result: { code: number | null; stdout: string; stderr: string }, logs: () => string, id: string): void {
  expectCtrExit(result, 0, logs, id);
}

/** As expectCtrOk, for a `ctr run` whose container must end with `expected` (137: OOM-killed). */
export function expectCtrExit(result: { code: number | null; stdout: string; stderr: string }, expected: number, logs: () => string, id: string): void {
  if (result.code === expected) return;
  // The shim's JSON lines carry "shim":"<id>"; containerd's own, id=<id> or a path with /<id>/ in it.
  const mentions = new RegExp(`"${escapeRegExp(id)}"|\\bid=${escapeRegExp(id)}\\b|/${escapeRegExp(id)}/`);
  const lines = logs().split('\n').filter((line) => mentions.test(line)).slice(-80);
  throw new Error(
    `ctr ended with code ${result.code}, not ${expected}, for ${id}\n--- ctr stdout ---\n${result.stdout}\n--- ctr stderr ---\n${result.stderr}\n` +
      `--- containerd and shim log lines about ${id} (last ${lines.length}) ---\n${lines.join('\n')}`,
  );
}
