// The VM boundary as kubelet sees it, through containerd's CRI with the `kata` handler:
// a pod's VM is accounted in the pod's cgroup and bounded by its limits, and pod
// authors cannot pick configuration files or keys the administrator did not enable.
import * as fs from 'fs';
import * as path from 'path';
import { CriContainerd } from '../harness/containerd';
import { CriClient, CriError } from '../harness/cri';
import { CriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { removeCgroupTree } from '../harness/cgroups';
import { HostSnapshot, waitForNoLeaks } from '../harness/leaks';
import { builtGuest, CriKataEnv, sandboxWorkDir, startCriKataEnv } from './kata-env';

jest.setTimeout(900_000);

const MiB = 1024 * 1024;
const MEMORY_CGROUP = '/sys/fs/cgroup/memory';
/** The pod-level memory limit the test sets as kubelet would: boot memory (512 MiB) and room for QEMU, nothing more. */
const POD_LIMIT = 1024 * MiB;
/** What the shim leaves QEMU itself below the pod limit (sandbox/resources.ts VMM_OVERHEAD_MIB). */
const VMM_OVERHEAD = 128 * MiB;

describe('CRI pods: the VM in the pod cgroup, annotations under the allowlists', () => {
  let env: CriKataEnv;
  let dir: string;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;
  let baseline: HostSnapshot;
  let kataDir: string;

  beforeAll(async () => {
    env = await startCriKataEnv('/tmp/kt-bcri-', (d) => {
      // A Kata-style main file that enables one file pattern and one hypervisor key, with a drop-in beside it.
      kataDir = path.join(d, 'kata');
      fs.mkdirSync(path.join(kataDir, 'config.d'), { recursive: true });
      const { kernel, image } = builtGuest();
      const q = JSON.stringify;
      const main = path.join(kataDir, 'configuration.toml');
      fs.writeFileSync(main, [
        '[hypervisor.qemu]', 'accelerator = "tcg"', `kernel = ${q(kernel)}`, `image = ${q(image)}`, 'default_memory = 512',
        'enable_annotations = ["default_vcpus"]',
        '[agent.kata]', 'dial_timeout = 180',
        '[runtime]', `state_dir = ${q(path.join(d, 'vm'))}`, `valid_config_paths = [${q(`${kataDir}/pod-*.toml`)}, ${q(`${kataDir}/config.d/*.toml`)}]`, '',
      ].join('\n'));
      fs.writeFileSync(path.join(kataDir, 'config.d', '50-calls.toml'), '[agent.kata]\ncall_timeout = 60\n');
      return { env: { KATATS_CONFIG: main } };
    });
    ({ dir, cd, cri, images, baseline } = env);
  });

  afterAll(async () => {
    expect((await env?.stop()) ?? []).toEqual([]);
  });

  const noLeaks = (): Promise<string[]> => waitForNoLeaks(baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] });

  it('QEMU (every thread) and the shim run in the pod cgroup, which pays for the VM; hot-plug stops at the pod limit', async () => {
    const config = podSandboxConfig(cd.cri, 'cg-pod');
    const podCgroup = config.linux!.cgroup_parent!;
    // Kubelet's part: the pod-level cgroup and its limit exist before the sandbox starts.
    fs.mkdirSync(path.join(MEMORY_CGROUP, podCgroup), { recursive: true });
    fs.writeFileSync(path.join(MEMORY_CGROUP, podCgroup, 'memory.limit_in_bytes'), String(POD_LIMIT));
    const { pod_sandbox_id: podId } = await cri.runPodSandbox({ config, runtime_handler: 'kata' });
    try {
      const sandboxCgroup = `${podCgroup}/${podId}`;
      const qemuPid = Number(fs.readFileSync(path.join(sandboxWorkDir(path.join(dir, 'vm'), 'k8s.io', podId), 'qemu.pid'), 'utf8'));
      const memoryCgroupOf = (pid: number | string): string => /^\d+:memory:(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1];
      const threads = fs.readdirSync(`/proc/${qemuPid}/task`);
      expect(threads.length).toBeGreaterThan(1);
      for (const tid of threads) expect({ tid, cgroup: memoryCgroupOf(`${qemuPid}/task/${tid}`) }).toEqual({ tid, cgroup: sandboxCgroup });
      const shimPid = Number(fs.readFileSync(path.join(sandboxWorkDir(path.join(dir, 'vm'), 'k8s.io', podId), 'owner'), 'utf8').split(' ')[0]);
      expect(memoryCgroupOf(shimPid)).toBe(sandboxCgroup);

      // The cgroup's usage includes the VM: at least QEMU's anonymous memory (guest RAM and QEMU's own heap;
      // the shared rootfs image's page cache is charged to whoever read it first).
      const rssAnon = Number(/^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${qemuPid}/status`, 'utf8'))![1]) * 1024;
      const usage = Number(fs.readFileSync(path.join(MEMORY_CGROUP, sandboxCgroup, 'memory.usage_in_bytes'), 'utf8'));
      expect(rssAnon).toBeGreaterThan(64 * MiB);
      expect(usage).toBeGreaterThanOrEqual(rssAnon);

      // A container asking for 2 GiB would grow the VM to 2.5 GiB; the pod's limit holds it to 1 GiB less QEMU's share.
      const { container_id } = await cri.createContainer({
        pod_sandbox_id: podId,
        config: containerConfig('big', images.busybox, ['sleep', '600'], { linux: { resources: { memory_limit_in_bytes: 2048 * MiB } } }),
        sandbox_config: config,
      });
      await cri.startContainer({ container_id });
      const meminfo = await cri.execSync({ container_id, cmd: ['cat', '/proc/meminfo'], timeout: 60 });
      const memTotal = Number(/^MemTotal:\s+(\d+) kB$/m.exec(meminfo.stdout.toString())![1]) * 1024;
      expect(memTotal).toBeGreaterThan(512 * MiB); // it grew,
      expect(memTotal).toBeLessThanOrEqual(POD_LIMIT - VMM_OVERHEAD); // but only up to the cap.
    } finally {
      await cri.stopPodSandbox({ pod_sandbox_id: podId });
      await cri.removePodSandbox({ pod_sandbox_id: podId });
      expect(fs.existsSync(path.join(MEMORY_CGROUP, podCgroup, podId))).toBe(false);
      expect(removeCgroupTree(podCgroup).failed).toEqual([]);
    }
    expect(await noLeaks()).toEqual([]);
  });

  describe('a pod annotation the main configuration does not allow is refused at RunPodSandbox, before any VM', () => {
    async function refused(annotations: Record<string, string>): Promise<string> {
      const config = podSandboxConfig(cd.cri, 'ann-pod', {}, {});
      config.annotations = annotations;
      const err = await cri.runPodSandbox({ config, runtime_handler: 'kata' }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CriError);
      expect((await cri.listPodSandbox()).items.filter((p) => p.state === 'SANDBOX_READY')).toEqual([]);
      for (const p of (await cri.listPodSandbox()).items) await cri.removePodSandbox({ pod_sandbox_id: p.id });
      removeCgroupTree(config.linux!.cgroup_parent!);
      expect(await noLeaks()).toEqual([]);
      return (err as CriError).details;
    }

    it('a config.d drop-in named as the main file', async () => {
      const dropIn = path.join(kataDir, 'config.d', '50-calls.toml');
      expect(await refused({ 'io.katacontainers.config_path': dropIn })).toContain(`annotation io.katacontainers.config_path names ${dropIn}, a config.d drop-in`);
    });

    it('a file outside valid_config_paths', async () => {
      const outside = path.join(dir, 'pod-volume.toml');
      fs.writeFileSync(outside, '[agent.kata]\ndebug_console_enabled = true\n');
      expect(await refused({ 'io.katacontainers.config_path': outside })).toContain(`names ${outside}, which matches none of [runtime] valid_config_paths`);
    });

    it('a hypervisor key enable_annotations does not list', async () => {
      expect(await refused({ 'io.katacontainers.config.hypervisor.default_memory': '4096' })).toContain(
        'annotation io.katacontainers.config.hypervisor.default_memory is not enabled: no entry of enable_annotations in [hypervisor.qemu]',
      );
    });
  });
});
