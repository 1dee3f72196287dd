// The VM boundary, tried as an attacker with root in the guest: the debug console is
// such a root shell (so is a container that broke out of crun, or a privileged pod).
// Real containerd, real QEMU (TCG). Each case keeps a canary on the host that must be
// untouched afterwards, and checks that nothing is left behind.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../harness/cgroups';
import { run } from '../harness/exec';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { readMounts } from '../harness/mounts';
import { builtGuest, guestShell, KataEnv, removeContainer, RUNTIME, RUNTIME_CLI, startKataEnv, expectCtrOk } from './kata-env';

jest.setTimeout(900_000);

/** Where the guest mounts the sandbox's share. */
const G = '/run/kata-containers/shared';
const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
const MiB = 1024 * 1024;

describe('the VM boundary: root in the guest gains nothing on the host', () => {
  let env: KataEnv;
  let work: string;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv({ agent: { debugConsole: true } });
    work = fs.mkdtempSync('/tmp/kt-bnd-');
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** A root shell script in the pod's guest; its output with the terminal's \r removed. */
  async function asGuestRoot(pod: string, lines: string[]): Promise<string> {
    const result = await guestShell(env.configPath, pod, [...lines, 'exit', ''].join('\n'), { namespace: env.containerd.namespace, timeoutMs: 240_000 });
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    return result.stdout.replace(/\r/g, '');
  }

  /** The value the guest printed as `name=<value>` (the last one: the terminal also echoes the script). */
  function printed(output: string, name: string): string {
    const values = [...output.matchAll(new RegExp(`^${name}=(\\S*)$`, 'gm'))].map((m) => m[1]);
    expect(values.length).toBeGreaterThan(0);
    return values[values.length - 1];
  }

  /** A mount option for `ctr run --mount`. */
  const bind = (src: string, dst: string, mode: 'ro' | 'rw'): string => `type=bind,src=${src},dst=${dst},options=rbind:${mode}`;

  const removeTask = (id: string, ctr = (args: string[]) => env.containerd.ctr(args)): Promise<void> => removeContainer(ctr, id);

  /** Runs `body` while pod `id` (its own sandbox, with `mounts`) sleeps; then removes it and checks nothing is left. */
  async function withPod(id: string, mounts: string[], body: () => Promise<void>): Promise<void> {
    const started = await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, ...mounts.flatMap((m) => ['--mount', m]), env.image, id, 'sleep', '600'], { timeoutMs: 240_000 });
    try {
      expectCtrOk(started, () => env.containerd.logs(), id);
      await body();
    } finally {
      await removeTask(id);
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  }

  /** `ctr run` of a container that joins pod `pod` (CRI's annotations), with extra ctr flags. */
  function joinPod(pod: string, id: string, flags: string[], command: string[]): ReturnType<KataEnv["containerd"]["ctr"]> {
    return env.containerd.ctr(['run', '--runtime', RUNTIME, '--annotation', `${CRI_SANDBOX_ID}=${pod}`, '--annotation', `${CRI_CONTAINER_TYPE}=container`, ...flags, env.image, id, ...command], { timeoutMs: 240_000 });
  }

  function canaryFile(name: string, text: string): { file: string; intact(): void } {
    const file = path.join(work, name);
    fs.writeFileSync(file, text);
    const before = fs.statSync(file);
    return {
      file,
      intact() {
        const now = fs.statSync(file);
        expect(fs.readFileSync(file, 'utf8')).toBe(text);
        expect({ size: now.size, mtimeMs: now.mtimeMs, ino: now.ino }).toEqual({ size: before.size, mtimeMs: before.mtimeMs, ino: before.ino });
      },
    };
  }

  /** A host directory holding `keep` (and `marker`, an empty file the guest script looks for, if named). */
  function canaryDir(name: string, marker?: string): { dir: string; intact(): void } {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'keep'), 'host data\n');
    if (marker) fs.writeFileSync(path.join(dir, marker), '');
    return {
      dir,
      intact() {
        expect(fs.readdirSync(dir).sort()).toEqual(['keep', ...(marker ? [marker] : [])].sort());
        expect(fs.readFileSync(path.join(dir, 'keep'), 'utf8')).toBe('host data\n');
      },
    };
  }

  /** Mount points that are neither in the baseline nor below the sandboxes' state dir or containerd's. */
  async function mountsOutsideOwnDirs(before: Set<string>): Promise<string[]> {
    const own = [fs.realpathSync(env.stateDir), env.containerd.state, env.containerd.root].map((d) => `${d}/`);
    return (await readMounts()).map((m) => m.target).filter((t) => !before.has(t) && !own.some((d) => t.startsWith(d)));
  }

  it('1. symlinks planted in the share cannot redirect the next container\'s mounts or empty a host file', async () => {
    const file = canaryFile('canary-file', 'host secret\n');
    const dir = canaryDir('canary-dir');
    const volumeFile = path.join(work, 'volume-file');
    fs.writeFileSync(volumeFile, 'from the volume\n');
    const volumeDir = path.join(work, 'volume-dir');
    fs.mkdirSync(volumeDir);
    fs.writeFileSync(path.join(volumeDir, 'data-file'), 'x');
    const pod = 'bnd-plant';
    await withPod(pod, [], async () => {
      const before = new Set((await readMounts()).map((m) => m.target));
      const out = await asGuestRoot(pod, [
        `mkdir -p ${G}/bnd-next/mounts; echo "mkdir=$?"`,
        `ln -s ${file.file} ${G}/bnd-next/mounts/0; echo "file=$?"`,
        `ln -s ${dir.dir} ${G}/bnd-next/mounts/1; echo "dir=$?"`,
        `ln -s ${dir.dir} ${G}/bnd-next/rootfs; echo "rootfs=$?"`,
        `ln -s / ${G}/bnd-next; echo "root=$?"`,
        `touch ${G}/planted; echo "touch=$?"`,
      ]);
      for (const name of ['mkdir', 'file', 'dir', 'rootfs', 'root', 'touch']) expect(printed(out, name)).not.toBe('0');
      expect(out).toContain('Read-only file system');

      // The next container, with a file and a directory volume, works as if nothing had been tried.
      const next = await joinPod(pod, 'bnd-next', ['-d', '--mount', bind(volumeFile, '/etc/volume-file', 'ro'), '--mount', bind(volumeDir, '/data', 'rw')], ['sleep', '600']);
      expect(next).toMatchObject({ code: 0 });
      try {
        const seen = await env.containerd.ctr(['task', 'exec', '--exec-id', 'look', 'bnd-next', 'sh', '-c', 'cat /etc/volume-file; ls /data']);
        expect(seen).toMatchObject({ code: 0, stdout: 'from the volume\ndata-file\n' });
        expect(await mountsOutsideOwnDirs(before)).toEqual([]);
      } finally {
        await removeTask('bnd-next');
      }
      file.intact();
      dir.intact();
    });
  });

  it('2. the guest cannot fill the host: the share root, its sandbox directory and a read-only volume refuse 64 MiB', async () => {
    const roVolume = canaryDir('ro-volume', 'ro-marker');
    const pod = 'bnd-fill';
    await withPod(pod, [bind(roVolume.dir, '/ro', 'ro')], async () => {
      const free = (p: string): number => {
        const s = fs.statfsSync(p);
        return s.bavail * s.bsize;
      };
      const freeBefore = { state: free(env.stateDir), volume: free(roVolume.dir) };
      const out = await asGuestRoot(pod, [
        `for d in ${G}/${pod}/mounts/*; do [ -e "$d/ro-marker" ] && RO=$d; done; echo "ro_volume=$RO"`,
        `dd if=/dev/zero of=${G}/fill bs=1M count=64 2>&1; echo "share_root=$?"`,
        `dd if=/dev/zero of=${G}/${pod}/fill bs=1M count=64 2>&1; echo "sandbox_dir=$?"`,
        `dd if=/dev/zero of=$RO/fill bs=1M count=64 2>&1; echo "ro_volume_dd=$?"`,
      ]);
      expect(printed(out, 'ro_volume')).toMatch(new RegExp(`^${G}/${pod}/mounts/\\d+$`));
      for (const name of ['share_root', 'sandbox_dir', 'ro_volume_dd']) expect(printed(out, name)).not.toBe('0');
      expect(out).toContain('Read-only file system');
      // Nothing landed: no fill file anywhere the guest aimed, and no space went.
      const stateFiles = fs.readdirSync(fs.realpathSync(env.stateDir), { recursive: true }) as string[];
      expect(stateFiles.filter((f) => path.basename(f) === 'fill')).toEqual([]);
      expect(fs.existsSync(path.join(roVolume.dir, 'fill'))).toBe(false);
      expect(freeBefore.state - free(env.stateDir)).toBeLessThan(16 * MiB);
      expect(freeBefore.volume - free(roVolume.dir)).toBeLessThan(16 * MiB);
    });
    roVolume.intact();
  });

  it('3. a directory/symlink swap loop in the share while a container is deleted and re-created 20 times leaves the canary intact', async () => {
    const dir = canaryDir('swap-canary');
    const volume = path.join(work, 'swap-volume');
    fs.mkdirSync(volume);
    const pod = 'bnd-swap';
    await withPod(pod, [], async () => {
      // In the background, detached from the console's shell: each place of a container's share the host
      // creates, mounts on or removes, swapped between a directory and a symlink to the canary as fast as
      // the guest can; and the same inside what the guest may write (the container's rootfs and volume).
      // (Never rm -r of the container's own files: root in the guest may break its containers, not the host.)
      const structure = [`${G}/bnd-loop`, `${G}/bnd-loop/mounts`, `${G}/bnd-loop/mounts/0`, `${G}/bnd-loop/rootfs`];
      const writable = [`${G}/bnd-loop/rootfs/tmp/swap`, `${G}/bnd-loop/mounts/0/swap`];
      const loop = `C=${dir.dir}; i=0; while :; do for t in ${[...structure, ...writable].join(' ')}; do rm -f $t; rmdir $t; mkdir $t; rmdir $t; ln -s $C $t; done 2>/dev/null; i=$((i+1)); echo "swaps=$i"; done`;
      // The loop runs in the foreground of a console session held open until the re-creations are done.
      const session = spawn(process.execPath, [RUNTIME_CLI, 'exec', '--namespace', env.containerd.namespace, pod], { env: { ...process.env, KATATS_CONFIG: env.configPath }, stdio: ['pipe', 'pipe', 'ignore'] });
      let output = '';
      session.stdout.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4096)));
      const swaps = (): number => Number([...output.matchAll(/swaps=(\d+)/g)].pop()?.[1] ?? 0);
      try {
        session.stdin.write(`${loop}\n`);
        for (let i = 0; i < 600 && swaps() === 0; i++) await new Promise((r) => setTimeout(r, 200));
        const before = swaps();
        expect(before).toBeGreaterThan(0);
        for (let i = 0; i < 20; i++) {
          const r = await joinPod(pod, 'bnd-loop', ['--rm', '--mount', bind(volume, '/v', 'rw')], ['sh', '-c', `echo run-${i}`]);
          expect({ i, code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ i, code: 0, stdout: `run-${i}\n`, stderr: '' });
        }
        // The loop kept swapping through all of it.
        expect(swaps()).toBeGreaterThan(before);
      } finally {
        const ended = new Promise((r) => session.once('exit', r));
        session.kill('SIGKILL'); // the console hangs its shell (and the loop) up
        await ended;
      }
      dir.intact();
      // The volume (the pod's to write) holds at most the loop's own links and directories, never the
      // canary's contents. The loop's own can nest: a volume unmounted and mounted again between its
      // rmdir and ln -s leaves swap/swap-canary (ln -s into a directory), dangling in the guest.
      // (A walk of its own: Node's recursive readdir follows symlinks, here into the canary.)
      const entries: Array<{ name: string; type: string }> = [];
      const walk = (dir: string): void => {
        for (const name of fs.readdirSync(dir)) {
          const stat = fs.lstatSync(path.join(dir, name));
          entries.push({ name: path.relative(volume, path.join(dir, name)), type: stat.isSymbolicLink() ? 'symlink' : stat.isDirectory() ? 'directory' : 'other' });
          if (stat.isDirectory()) walk(path.join(dir, name));
        }
      };
      walk(volume);
      expect(entries.filter((e) => !['swap', 'swap-canary'].includes(path.basename(e.name)) || e.type === 'other')).toEqual([]);
      // Of the 20 containers, nothing is left in the private mount directory: only the pod's own container.
      expect(fs.readdirSync(fs.realpathSync(path.join(env.stateDir, env.containerd.namespace, pod, 'mounts')))).toEqual([pod]);
    });
  });

  it('4. device nodes cannot be made through the share; every mount the shim made for it is nosuid,nodev', async () => {
    const volume = path.join(work, 'rw-volume');
    fs.mkdirSync(volume);
    fs.writeFileSync(path.join(volume, 'rw-marker'), '');
    const pod = 'bnd-dev';
    await withPod(pod, [bind(volume, '/rw', 'rw')], async () => {
      const out = await asGuestRoot(pod, [
        `for d in ${G}/${pod}/mounts/*; do [ -e "$d/rw-marker" ] && RW=$d; done`,
        'mknod $RW/blk b 8 0; echo "mknod=$?"',
        'mknod $RW/null c 1 3; echo "mknod_char=$?"',
        'cp /bin/busybox $RW/suid && chmod 4755 $RW/suid; echo "suid=$?"',
      ]);
      expect(printed(out, 'mknod')).not.toBe('0');
      expect(printed(out, 'mknod_char')).not.toBe('0');
      expect(fs.existsSync(path.join(volume, 'blk'))).toBe(false);
      expect(fs.existsSync(path.join(volume, 'null'))).toBe(false);
      // A writable host volume is the pod's to write, set-id bits included (as with runc); README says so.
      expect(printed(out, 'suid')).toBe('0');
      expect(fs.statSync(path.join(volume, 'suid')).mode & 0o4000).toBe(0o4000);

      const workDir = fs.realpathSync(path.join(env.stateDir, env.containerd.namespace, pod));
      const shareMounts = (await readMounts()).filter((m) => m.target === workDir || m.target.startsWith(`${workDir}/`));
      // The sandbox dir, the private dir, the guest's view, the rootfs and the volume, each seen privately and in the view.
      expect(shareMounts.length).toBeGreaterThanOrEqual(5);
      for (const m of shareMounts) expect({ target: m.target, options: m.options.split(',').filter((o) => o === 'nosuid' || o === 'nodev') }).toEqual({ target: m.target, options: ['nosuid', 'nodev'] });
      expect(shareMounts.find((m) => m.target === path.join(workDir, 'shared'))?.options.split(',')).toContain('ro');
    });
  });

  it("5. QEMU runs under its seccomp filter, without CAP_MKNOD", async () => {
    const pod = 'bnd-qemu';
    await withPod(pod, [], async () => {
      const pid = Number(fs.readFileSync(path.join(env.stateDir, env.containerd.namespace, pod, 'qemu.pid'), 'utf8'));
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(/^Seccomp:\s+2$/m);
      const CAP_MKNOD = 27n;
      // Not in any set: effective, permitted, inheritable (which a root exec would keep), bounding, ambient.
      for (const set of ['CapEff', 'CapPrm', 'CapInh', 'CapBnd', 'CapAmb']) {
        const bits = BigInt(`0x${new RegExp(`^${set}:\\s+([0-9a-f]+)$`, 'm').exec(status)![1]}`);
        expect({ set, mknod: (bits >> CAP_MKNOD) & 1n }).toEqual({ set, mknod: 0n });
      }
    });
  });

  it('6. the same container id in two namespaces at once, and 20 back-to-back runs of one id', async () => {
    const ctrIn = (ns: string) => (args: string[], timeoutMs = 240_000) => run('ctr', ['-a', env.containerd.address, '-n', ns, ...args], { timeoutMs });
    const [a, b] = [ctrIn('bnd-a'), ctrIn('bnd-b')];
    const archive = path.join(work, 'image.tar');
    expect(await env.containerd.ctr(['images', 'export', archive, env.image])).toMatchObject({ code: 0 });
    for (const ns of ['bnd-a', 'bnd-b']) await env.containerd.importImage(archive, { namespace: ns });
    expect(await a(['run', '-d', '--runtime', RUNTIME, env.image, 'same', 'sleep', '600'])).toMatchObject({ code: 0 });
    try {
      const other = await b(['run', '--rm', '--runtime', RUNTIME, env.image, 'same', 'sh', '-c', 'echo from-b; exit 3']);
      expect({ code: other.code, stdout: other.stdout }).toEqual({ code: 3, stdout: 'from-b\n' });
      for (let i = 0; i < 20; i++) {
        const r = await b(['run', '--rm', '--runtime', RUNTIME, env.image, 'same', 'sh', '-c', `echo run-${i}; exit ${i + 1}`]);
        expect({ i, code: r.code, stdout: r.stdout }).toEqual({ i, code: i + 1, stdout: `run-${i}\n` });
      }
      // Namespace a's VM was never touched.
      const alive = await a(['task', 'exec', '--exec-id', 'alive', 'same', 'echo', 'alive']);
      expect(alive).toMatchObject({ code: 0, stdout: 'alive\n' });
    } finally {
      await removeTask('same', (args) => a(args));
    }
    for (const ns of ['bnd-a', 'bnd-b']) {
      await ctrIn(ns)(['images', 'rm', env.image]);
      await ctrIn(ns)(['namespaces', 'rm', ns]);
      // ctr's cgroupsPath is /<namespace>/<id>: like runc, the shim made the parent and leaves it to its owner.
      expect(removeCgroupTree(`/${ns}`).failed).toEqual([]);
    }
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
  });

  it("7. a state_dir reached through a symlink, a rw volume, the shim SIGKILLed: containerd's delete keeps the volume's files and leaves no mount", async () => {
    const realState = path.join(work, 'real-state');
    fs.mkdirSync(realState);
    const linkedState = path.join(work, 'linked-state');
    fs.symlinkSync(realState, linkedState);
    const volume = canaryDir('crash-volume');
    const { kernel, image } = builtGuest();
    const config = path.join(work, 'linked.toml');
    const q = JSON.stringify;
    fs.writeFileSync(config, ['[hypervisor.qemu]', 'accelerator = "tcg"', `kernel = ${q(kernel)}`, `image = ${q(image)}`, '[agent.kata]', 'dial_timeout = 180', '[runtime]', `state_dir = ${q(linkedState)}`, ''].join('\n'));
    const id = 'bnd-crash';
    const started = await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, '--runtime-config-path', config, '--mount', bind(volume.dir, '/data', 'rw'), env.image, id, 'sleep', '600'], { timeoutMs: 240_000 });
    expectCtrOk(started, () => env.containerd.logs(), id);
    const workDir = path.join(realState, env.containerd.namespace, id);
    expect((await readMounts()).some((m) => m.target.startsWith(`${workDir}/`))).toBe(true);
    const bundle = path.join(env.containerd.state, 'io.containerd.runtime.v2.task', env.containerd.namespace, id);
    const shimPid = Number(fs.readFileSync(path.join(bundle, 'shim.pid'), 'utf8').split(' ')[0]);
    process.kill(shimPid, 'SIGKILL');
    // containerd sees the connection drop and runs our delete; then the task is gone or stopped.
    for (let i = 0; i < 300 && !/STOPPED|^$/m.test((await env.containerd.ctr(['task', 'ls'])).stdout.split('\n').find((l) => l.startsWith(id)) ?? ''); i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await removeTask(id);
    expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
    expect((await readMounts()).filter((m) => m.target.startsWith(`${realState}/`) || m.target.startsWith(`${linkedState}/`))).toEqual([]);
    volume.intact();
    expect(fs.readdirSync(realState)).toEqual([]);
  });
});
