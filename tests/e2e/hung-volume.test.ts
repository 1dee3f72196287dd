// A volume whose filesystem hangs must fail only the container that mounts it: the
// pod's other containers keep answering. The volume is a real FUSE filesystem
// (fuse2fs over a small ext4 image) whose server the test SIGSTOPs after CRI's
// CreateContainer has checked the host path, so the shim meets the hang at
// StartContainer (containerd 1.6 creates the task there) and fails within the bound.
// Real containerd CRI, real QEMU.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTreeOnceEmpty } from '../harness/cgroups';
import { KATA_HANDLER } from '../harness/containerd';
import { CriError } from '../harness/cri';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { run } from '../harness/exec';
import { waitForNoLeaks } from '../harness/leaks';
import { CriKataEnv, startCriKataEnv } from './kata-env';

jest.setTimeout(600_000);

function isMounted(dir: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === dir);
}

/** fuse2fs in the foreground over a fresh ext4 image holding data/hello. */
async function startFuseVolume(dir: string): Promise<{ server: ChildProcess; mountPoint: string }> {
  const image = path.join(dir, 'volume.ext4');
  const mountPoint = path.join(dir, 'fuse');
  fs.mkdirSync(mountPoint);
  execFileSync('mkfs.ext4', ['-q', '-F', image, '16M']);
  const server = spawn('fuse2fs', ['-f', image, mountPoint], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !isMounted(mountPoint); i++) await new Promise((r) => setTimeout(r, 100));
  if (!isMounted(mountPoint)) {
    server.kill('SIGKILL');
    throw new Error('fuse2fs did not mount the volume');
  }
  fs.mkdirSync(path.join(mountPoint, 'data'));
  fs.writeFileSync(path.join(mountPoint, 'data', 'hello'), 'from FUSE\n');
  return { server, mountPoint };
}

/** Unmounts (lazily: a pod may still hold it) and ends the server, whatever state it is in. */
async function stopFuseVolume(server: ChildProcess, mountPoint: string): Promise<void> {
  try {
    process.kill(server.pid!, 'SIGCONT');
  } catch {
    /* already gone */
  }
  if (isMounted(mountPoint)) execFileSync('umount', ['-l', mountPoint]);
  server.kill('SIGKILL');
}

describe('a volume on a FUSE filesystem that hangs', () => {
  let env: CriKataEnv;
  beforeAll(async () => {
    env = await startCriKataEnv('/tmp/kt-hung-volume-');
  });
  afterAll(async () => {
    expect(await env?.stop()).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  it('fails only the container that mounts it, with a message naming the hang; the pod keeps answering `ctr task ps`', async () => {
    const { cd, cri, images } = env;
    const { server, mountPoint } = await startFuseVolume(env.dir);
    const volume = path.join(mountPoint, 'data');
    const withVolume = (name: string, command: string[]) =>
      containerConfig(name, images.busybox, command, { mounts: [{ container_path: '/data', host_path: volume, readonly: true }] });
    const config = podSandboxConfig(cd.cri, 'hung-volume');
    const { pod_sandbox_id: podId } = await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER });
    const psHealthy = async (healthy: string, answers: number[]): Promise<void> => {
      const asked = Date.now();
      const ps = await run('ctr', ['-a', cd.address, '-n', 'k8s.io', 'task', 'ps', healthy], { timeoutMs: 30_000 });
      expect({ code: ps.code, stderr: ps.stderr }).toEqual({ code: 0, stderr: '' });
      expect(ps.stdout).toMatch(/PID/);
      answers.push(Date.now() - asked);
    };
    try {
      const { container_id: healthy } = await cri.createContainer({ pod_sandbox_id: podId, config: containerConfig('healthy', images.busybox, ['sleep', '3600']), sandbox_config: config });
      await cri.startContainer({ container_id: healthy });
      const { container_id: late } = await cri.createContainer({ pod_sandbox_id: podId, config: withVolume('reads-volume', ['cat', '/data/hello']), sandbox_config: config });
      process.kill(server.pid!, 'SIGSTOP'); // from now on every request to the volume waits
      try {
        const starting = cri.startContainer({ container_id: late }).then(
          () => undefined,
          (err: unknown) => err,
        );
        // While the shim meets the hang, the pod's other container answers, again and again.
        const answers: number[] = [];
        for (let i = 0; i < 5; i++) {
          await psHealthy(healthy, answers);
          await new Promise((r) => setTimeout(r, 1000));
        }
        const failure = await starting;
        expect(failure).toBeInstanceOf(CriError);
        expect((failure as CriError).details).toContain(`host source ${volume} cannot be used (no answer within 10 s: is its filesystem hung?)`);
        await psHealthy(healthy, answers);
        console.log(`ctr task ps during the hang answered in ${answers.join(', ')} ms`);
      } finally {
        process.kill(server.pid!, 'SIGCONT');
      }
    } finally {
      await cri.stopPodSandbox({ pod_sandbox_id: podId }).catch(() => undefined);
      await cri.removePodSandbox({ pod_sandbox_id: podId }).catch(() => undefined);
      await stopFuseVolume(server, mountPoint);
    }
    expect((await removeCgroupTreeOnceEmpty(config.linux?.cgroup_parent ?? '')).failed).toEqual([]);
    expect(await waitForNoLeaks(env.baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
  });
});
