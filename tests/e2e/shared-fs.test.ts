// shared_fs = "virtio-fs" for QEMU: the sandbox directory reaches the guest through one
// confined virtiofsd (hypervisors/virtiofsd.ts) instead of 9p, and guest root gains
// nothing on the host by it. (`make test-virtiofs` runs the spine, Task API, CRI and
// pod-sizing suites this way too.)
import * as fs from 'fs';
import * as path from 'path';
import { diffSnapshots, HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { expectCtrOk, KataEnv, removeContainer, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);

describe('shared_fs = "virtio-fs" (QEMU)', () => {
  let env: KataEnv;
  let before: HostSnapshot;
  let baseline: HostSnapshot;
  let hostDir: string;

  beforeAll(async () => {
    before = await snapshotHost();
    // Kata's default virtio_fs_extra_args: the ones kata-ts passes on.
    env = await startKataEnv({ hypervisor: { sharedFs: 'virtio-fs', virtioFsExtraArgs: ['--thread-pool-size=1', '--announce-submounts'] } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
    hostDir = fs.mkdtempSync('/tmp/kt-virtiofs-volume-');
    fs.writeFileSync(path.join(hostDir, 'from-host'), 'written on the host\n');
  });

  afterAll(async () => {
    await env?.stop();
    if (hostDir) fs.rmSync(hostDir, { recursive: true, force: true });
    if (before) expect(diffSnapshots(before, await snapshotHost())).toEqual([]);
  });

  async function expectNothingLeft(): Promise<void> {
    // virtiofsd processes, their sockets and lock files included (leaks.ts).
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  }

  it('runs the container from a virtio-fs share, with a host volume read and written through it', async () => {
    const script = [
      "awk '$2 == \"/\" { print $3 }' /proc/mounts",
      'cat /data/from-host',
      'echo written in the guest > /data/from-guest',
      'echo hi; exit 3',
    ].join('; ');
    const result = await env.containerd.ctr(
      ['run', '--rm', '--runtime', RUNTIME, '--mount', `type=bind,src=${hostDir},dst=/data,options=rbind:rw`, env.image, 'vfs-1', 'sh', '-c', script],
      { timeoutMs: 240_000 },
    );
    expect({ stdout: result.stdout, stderr: result.stderr, code: result.code }).toEqual({ stdout: 'virtiofs\nwritten on the host\nhi\n', stderr: '', code: 3 });
    expect(fs.readFileSync(path.join(hostDir, 'from-guest'), 'utf8')).toBe('written in the guest\n');
    await expectNothingLeft();
  });

  it('gives guest root no device nodes on the host (virtiofsd runs without CAP_MKNOD); FIFOs stay FIFOs', async () => {
    // The container runs as root with CAP_MKNOD in the guest: only the host side can
    // refuse. virtiofsd lacks CAP_MKNOD twice over: its own modcaps, and the bounding
    // set every VMM process is launched with (vmm-launch.ts).
    const script = 'mknod /data/disk b 8 0; echo "block rc=$?"; mknod /data/null c 1 3; echo "char rc=$?"; mkfifo /data/fifo; echo "fifo rc=$?"';
    const result = await env.containerd.ctr(
      ['run', '--rm', '--runtime', RUNTIME, '--mount', `type=bind,src=${hostDir},dst=/data,options=rbind:rw`, env.image, 'vfs-2', 'sh', '-c', script],
      { timeoutMs: 240_000 },
    );
    expect(result.stdout).toBe('block rc=1\nchar rc=1\nfifo rc=0\n');
    expect(result.stderr).toMatch(/Operation not permitted/);
    expect(fs.existsSync(path.join(hostDir, 'disk'))).toBe(false);
    expect(fs.existsSync(path.join(hostDir, 'null'))).toBe(false);
    expect(fs.lstatSync(path.join(hostDir, 'fifo')).isFIFO()).toBe(true);
    await expectNothingLeft();
  });

  it("runs virtiofsd with Kata's default extra args after kata-ts's own flags, each once", async () => {
    const id = 'vfs-args';
    expectCtrOk(await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 }), () => env.containerd.logs(), id);
    try {
      // The leak harness's snapshot records every virtiofsd with its argv.
      const daemons = (await snapshotHost()).processes
        .map((p) => p.argv)
        .filter((argv) => path.basename(argv[0]) === 'virtiofsd' && argv.some((a) => a.includes(path.join(env.stateDir, env.containerd.namespace, id))));
      expect(daemons.length).toBeGreaterThanOrEqual(1);
      for (const argv of daemons) {
        expect(argv.at(-1)).toBe('--thread-pool-size=1');
        expect(argv).toEqual(expect.arrayContaining(['-o', 'sandbox=namespace', '-o', 'modcaps=-mknod:-setfcap', '-o', 'announce_submounts']));
        expect(argv.filter((a) => a.includes('announce'))).toHaveLength(1);
      }
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), id);
    }
    await expectNothingLeft();
  });
});
