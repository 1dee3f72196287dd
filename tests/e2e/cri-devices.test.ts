// CRI `devices` in a kata pod: a host block device (a loop device over a sparse image
// with a known sector) is hot-plugged into the running pod VM when the container is
// created (QMP blockdev-add + device_add virtio-blk-pci), readable at the container
// path, unplugged when the container is deleted; a character device is refused with
// the device named. Nothing is left once the pod is gone.
import { createHash, randomBytes } from 'crypto';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../harness/cgroups';
import { CriContainerd, KATA_HANDLER } from '../harness/containerd';
import { CriClient, CriError } from '../harness/cri';
import { CriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { waitForNoLeaks } from '../harness/leaks';
import { CriKataEnv, sandboxVmms, startCriKataEnv } from './kata-env';

jest.setTimeout(600_000);

const SECTOR = 512;
const IMAGE_SECTORS = 16384; // 8 MiB, sparse
const PATTERN_SECTOR = 1000;

describe('CRI devices in a kata pod', () => {
  let env: CriKataEnv;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;
  let image: string;
  let loop: string | undefined;

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    env = await startCriKataEnv('/tmp/kt-cri-dev-');
    ({ cd, cri, images } = env);
    image = path.join(env.dir, 'disk.img');
  });

  afterAll(async () => {
    const leftovers = (await env?.stop()) ?? [];
    // After containerd stopped: a VM still running would hold the loop device.
    if (loop) execFileSync('losetup', ['-d', loop]);
    expect(leftovers).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  async function exec(containerId: string, script: string): Promise<{ stdout: string; stderr: string; exit_code: number }> {
    const r = await cri.execSync({ container_id: containerId, cmd: ['sh', '-c', script], timeout: 60 });
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exit_code: r.exit_code };
  }

  /** Host paths the pod's QEMU holds open (the hot-plugged source shows up here). */
  function qemuOpenFiles(podId: string): string[] {
    const [pid] = sandboxVmms(path.join(env.dir, 'vm'), 'k8s.io', podId);
    expect(pid).toBeDefined();
    const fdDir = `/proc/${pid}/fd`;
    return fs.readdirSync(fdDir).flatMap((fd) => {
      try {
        return [fs.readlinkSync(path.join(fdDir, fd))];
      } catch {
        return []; // closed meanwhile
      }
    });
  }

  it('hot-plugs a host block device for a container, reads it there, unplugs it on delete and leaves nothing', async () => {
    // A sparse image with one random sector at a known offset, behind a loop device.
    const pattern = randomBytes(SECTOR);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, IMAGE_SECTORS * SECTOR);
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, pattern, 0, SECTOR, PATTERN_SECTOR * SECTOR);
    fs.closeSync(fd);
    loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
    const expectedMd5 = createHash('md5').update(pattern).digest('hex');

    const pod = podSandboxConfig(cd.cri, 'pod-dev');
    const podId = (await cri.runPodSandbox({ config: pod, runtime_handler: KATA_HANDLER })).pod_sandbox_id;
    // A container without devices, to look at the guest's disks from inside the VM.
    const watcher = (await cri.createContainer({ pod_sandbox_id: podId, config: containerConfig('watcher', images.busybox, ['sleep', '3600']), sandbox_config: pod })).container_id;
    await cri.startContainer({ container_id: watcher });
    const guestDisks = async () => (await exec(watcher, 'for d in /sys/block/vd*; do [ -e "$d" ] && echo "$(cat $d/serial) $(cat $d/size)"; done')).stdout.trim();
    expect(await guestDisks()).toBe('');
    expect(qemuOpenFiles(podId)).not.toContain(loop);

    const config = containerConfig('disk', images.busybox, ['sleep', '3600'], { devices: [{ container_path: '/dev/xvdb', host_path: loop, permissions: 'r' }] });
    const disk = (await cri.createContainer({ pod_sandbox_id: podId, config, sandbox_config: pod })).container_id;
    await cri.startContainer({ container_id: disk });

    // QEMU opened the loop device; the guest has a virtio disk of the image's size with a serial.
    expect(qemuOpenFiles(podId)).toContain(loop);
    expect(await guestDisks()).toMatch(new RegExp(`^blk\\d+ ${IMAGE_SECTORS}$`));
    // The container reads the host's sector at its own path, and may not write (permissions 'r').
    const read = await exec(disk, `dd if=/dev/xvdb bs=${SECTOR} skip=${PATTERN_SECTOR} count=1 2>/dev/null | md5sum`);
    expect(read.stdout.split(' ')[0]).toBe(expectedMd5);
    expect((await exec(disk, 'test -b /dev/xvdb && echo block')).stdout).toBe('block\n');
    expect((await exec(disk, `dd if=/dev/zero of=/dev/xvdb bs=${SECTOR} count=1`)).exit_code).not.toBe(0);
    expect(createHash('md5').update(fs.readFileSync(loop).subarray(PATTERN_SECTOR * SECTOR, (PATTERN_SECTOR + 1) * SECTOR)).digest('hex')).toBe(expectedMd5);

    // Deleting the container unplugs the disk: gone from the guest, closed by QEMU.
    await cri.stopContainer({ container_id: disk, timeout: 0 });
    await cri.removeContainer({ container_id: disk });
    expect(await guestDisks()).toBe('');
    expect(qemuOpenFiles(podId)).not.toContain(loop);

    // A character device (the host's kernel log) cannot cross into the VM: the CRI call fails naming it (containerd
    // creates the task, and so calls us, at StartContainer); the pod runs on.
    const bad = containerConfig('bad-device', images.busybox, ['sleep', '1'], { devices: [{ container_path: '/dev/hostlog', host_path: '/dev/kmsg', permissions: 'r' }] });
    const badId = (await cri.createContainer({ pod_sandbox_id: podId, config: bad, sandbox_config: pod })).container_id;
    const err = await cri.startContainer({ container_id: badId }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CriError);
    expect((err as CriError).details).toContain('device /dev/hostlog (character device 1:11) cannot be passed into the VM: only block devices are hot-plugged');
    await cri.removeContainer({ container_id: badId });
    expect((await exec(watcher, 'echo still-here')).stdout).toBe('still-here\n');

    await cri.stopPodSandbox({ pod_sandbox_id: podId });
    await cri.removePodSandbox({ pod_sandbox_id: podId });
    expect(removeCgroupTree(pod.linux?.cgroup_parent ?? '').failed).toEqual([]);
    expect(await waitForNoLeaks(env.baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
    execFileSync('losetup', ['-d', loop]);
    loop = undefined;
    expect(execFileSync('losetup', ['-j', image], { encoding: 'utf8' })).toBe('');
  });
});
