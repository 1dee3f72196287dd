// Everything an e2e test needs to run containers through containerd with our shim:
// a launcher for the freshly compiled shim, a TCG configuration pointing at the built
// guest, a private containerd using both, and the busybox test image imported.
import * as fs from 'fs';
import * as path from 'path';
import { buildBusyboxImage } from '../harness/image';
import { PrivateContainerd, startContainerd } from '../harness/containerd';

/** The repository root, whether this runs from the sources (ts-jest) or from dist/. */
function findRepoRoot(start: string): string {
  for (let dir = start; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'guest', 'build.sh'))) return dir;
  }
  throw new Error(`no kata-ts repository above ${start}`);
}

export const REPO = findRepoRoot(__dirname);
export const RUNTIME = 'io.containerd.kata.v2';
const GUEST_CURRENT = path.join(REPO, 'guest', 'out', 'current');

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

/** Writes a launcher that runs the compiled shim (dist/) with this machine's node. */
export function writeShimLauncher(dir: string): string {
  const main = path.join(REPO, 'dist', 'shim', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} missing: run 'make build' first`);
  const launcher = path.join(dir, 'containerd-shim-kata-v2');
  fs.writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${main} "$@"\n`, { mode: 0o755 });
  return launcher;
}

export interface ConfigOverrides {
  hypervisor?: Record<string, unknown>;
  agent?: Record<string, unknown>;
}

export function writeConfig(file: string, stateDir: string, overrides: ConfigOverrides = {}): void {
  // Resolve `current` once: a rebuild swaps it, and a VM must get a matching pair.
  const guest = fs.existsSync(GUEST_CURRENT) ? fs.realpathSync(GUEST_CURRENT) : GUEST_CURRENT;
  for (const name of ['vmlinux', 'initrd.img']) {
    if (!fs.existsSync(path.join(guest, name))) throw new Error(`${guest}/${name} missing: run 'make guest' first`);
  }
  const config = {
    // Guests hang under nested KVM on these machines; production hosts use kvm.
    // The uncompressed vmlinux boots seconds faster than vmlinuz under TCG emulation.
    hypervisor: { accelerator: 'tcg', kernel: path.join(guest, 'vmlinux'), initrd: path.join(guest, 'initrd.img'), memoryMiB: 1024, ...overrides.hypervisor },
    agent: { bootTimeoutMs: 180_000, ...overrides.agent },
    runtime: { stateDir },
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
}

export async function startKataEnv(opts: ConfigOverrides = {}): Promise<KataEnv> {
  const dir = fs.mkdtempSync('/tmp/kt-env-');
  const shimDir = path.join(dir, 'bin');
  const stateDir = path.join(dir, 'vm');
  fs.mkdirSync(shimDir);
  writeShimLauncher(shimDir);
  const configPath = path.join(dir, 'config.json');
  writeConfig(configPath, stateDir, opts);
  const image = await buildBusyboxImage(path.join(REPO, 'tests', '.cache', 'image'));
  const containerd = await startContainerd({ runtimeShimDir: shimDir, env: { KATATS_CONFIG: configPath } });
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
      await containerd.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
