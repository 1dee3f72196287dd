// containerd's CRI plugin driven the way kubelet drives it, with the stock `runc`
// handler: proves the CRI harness (client, private containerd with CNI, pause image,
// leak checks) independently of our shim. The kata handler's suite uses the same
// harness with runtime_handler KATA_HANDLER.
// Needs root, containerd 1.6 with CRI, runc, containernetworking-plugins, gcc, busybox-static.

import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../harness/cgroups';
import { CriContainerd, RUNC_HANDLER, startContainerd } from '../harness/containerd';
import { CriClient, CriError, PodSandboxConfig } from '../harness/cri';
import { CriImages, importCriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { diffSnapshots, HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';

jest.setTimeout(120_000);

describe('CRI (runtime.v1) with the runc handler', () => {
  let before: HostSnapshot;
  /** containerd up, images imported, no pod yet: what "nothing left" compares against. */
  let baseline: HostSnapshot;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;

  beforeAll(async () => {
    // Fail loudly rather than skip: a silently skipped harness test hides a broken CI box.
    expect(process.getuid?.()).toBe(0);
    before = await snapshotHost();
    cd = await startContainerd({ cri: {} });
    cri = new CriClient(cd.cri.socket, { timeoutMs: 60_000 });
    images = await importCriImages(cd);
    baseline = await snapshotHost({ dirs: [cd.dir] });
  });

  afterAll(async () => {
    cri?.close();
    await cd?.stop();
  });

  /** Everything a pod run added is gone again: mounts, shims, netns, veths, cgroups. */
  async function expectNothingLeftSinceBaseline(): Promise<void> {
    const leaks = await waitForNoLeaks(baseline, 20_000, {
      // runc creates the pods' parent dirs with mkdir -p and never removes them.
      ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot],
    });
    expect(leaks).toEqual([]);
    expect(readdirOr(cd.cri.netnsDir)).toEqual([]);
  }

  /** What kubelet does once a pod is gone: remove the pod's cgroup (runtimes leave it). */
  function removePodCgroup(config: PodSandboxConfig): void {
    const parent = config.linux?.cgroup_parent ?? '';
    const r = removeCgroupTree(parent);
    expect(r.failed).toEqual([]);
    // Only the pod-level dir in each hierarchy: the runtime removed its containers' dirs.
    expect(r.removed.filter((d) => !d.endsWith(parent))).toEqual([]);
  }

  it('serves runtime.v1 and finds the imported images without a registry', async () => {
    expect(await cri.version()).toMatchObject({ runtime_name: 'containerd', runtime_api_version: 'v1' });
    for (const ref of [images.busybox, images.pause]) {
      const { image } = await cri.imageStatus({ image: { image: ref } });
      expect(image?.repo_tags).toContain(ref);
    }
    // Nothing else: had CRI pulled anything (say, its default pause image), it would be listed.
    const listed = (await cri.listImages()).images.flatMap((i) => i.repo_tags).sort();
    expect(listed).toEqual([images.busybox, images.pause].sort());
    expect((await cri.imageStatus({ image: { image: 'localhost/kata-ts/absent:latest' } })).image).toBeNull();
  });

  it('runs two pods on the CNI bridge; exec, stats and listing work; teardown leaves nothing', async () => {
    const [a, b] = [podSandboxConfig(cd.cri, 'pod-a'), podSandboxConfig(cd.cri, 'pod-b')];
    const podA = (await cri.runPodSandbox({ config: a, runtime_handler: RUNC_HANDLER })).pod_sandbox_id;
    const podB = (await cri.runPodSandbox({ config: b, runtime_handler: RUNC_HANDLER })).pod_sandbox_id;

    const statusA = await cri.podSandboxStatus({ pod_sandbox_id: podA, verbose: true });
    expect(statusA.status).toMatchObject({ id: podA, state: 'SANDBOX_READY', runtime_handler: RUNC_HANDLER, metadata: { name: 'pod-a' } });
    const ipA = statusA.status?.network?.ip ?? '';
    expect(inSubnet(ipA, cd.cri.network.subnet)).toBe(true);
    expect(ipA).not.toBe(cd.cri.network.gateway);
    // The sandbox container runs the imported pause image, in a netns under our state dir.
    const info = JSON.parse(statusA.info.info) as { image: string; runtimeSpec: { linux: { namespaces: Array<{ type: string; path?: string }> } } };
    expect(info.image).toBe(images.pause);
    const netns = info.runtimeSpec.linux.namespaces.find((n) => n.type === 'network')?.path ?? '';
    expect(path.dirname(netns)).toBe(cd.cri.netnsDir);
    expect(cd.logs()).not.toMatch(/PullImage/);

    const ctrA = await startedContainer(podA, a, 'app');
    const hi = await cri.execSync({ container_id: ctrA, cmd: ['echo', 'hi'], timeout: 30 });
    expect({ stdout: hi.stdout.toString(), stderr: hi.stderr.toString(), exit_code: hi.exit_code }).toEqual({ stdout: 'hi\n', stderr: '', exit_code: 0 });
    const three = await cri.execSync({ container_id: ctrA, cmd: ['sh', '-c', 'exit 3'], timeout: 30 });
    expect(three.exit_code).toBe(3);

    const { stats } = await cri.containerStats({ container_id: ctrA });
    expect(stats?.attributes?.id).toBe(ctrA);
    expect(stats?.memory?.working_set_bytes?.value).toBeGreaterThan(0);
    expect(stats?.cpu?.usage_core_nano_seconds?.value).toBeGreaterThan(0);

    const listed = (await cri.listContainers({ filter: { pod_sandbox_id: podA } })).containers;
    expect(listed.map((c) => ({ id: c.id, name: c.metadata?.name, state: c.state, image: c.image?.image }))).toEqual([
      { id: ctrA, name: 'app', state: 'CONTAINER_RUNNING', image: images.busybox },
    ]);

    // Pod B reaches pod A over the bridge (and its own veth).
    const ctrB = await startedContainer(podB, b, 'client');
    const ping = await cri.execSync({ container_id: ctrB, cmd: ['ping', '-c1', '-W5', ipA], timeout: 30 });
    expect({ exit_code: ping.exit_code, stderr: ping.stderr.toString() }).toEqual({ exit_code: 0, stderr: '' });
    expect(ping.stdout.toString()).toContain(`from ${ipA}`);

    // While the pods run, the detector sees them: a proof that it would catch leaks.
    const during = diffSnapshots(baseline, await snapshotHost({ dirs: [cd.dir] }));
    const veths = execFileSync('ip', ['-o', 'link', 'show', 'master', cd.cri.network.bridge], { encoding: 'utf8' })
      .split('\n').filter(Boolean).map((l) => l.split(/[:@]\s*/)[1].trim());
    expect(veths).toHaveLength(2);
    expect(during).toEqual(expect.arrayContaining(veths.map((v) => `link: ${v}`)));
    expect(during.some((l) => /^process \d+ .*containerd-shim-runc-v2/.test(l))).toBe(true);

    for (const id of [podA, podB]) {
      await cri.stopPodSandbox({ pod_sandbox_id: id });
      await cri.removePodSandbox({ pod_sandbox_id: id });
    }
    expect((await cri.listPodSandbox()).items).toEqual([]);
    expect((await cri.listContainers()).containers).toEqual([]);
    await expect(cri.containerStatus({ container_id: ctrA })).rejects.toMatchObject({ codeName: 'NotFound' });
    removePodCgroup(a);
    removePodCgroup(b);
    await expectNothingLeftSinceBaseline();
  });

  it('rejects an unknown runtime handler clearly, leaving no sandbox or netns', async () => {
    const config = podSandboxConfig(cd.cri, 'pod-bad');
    const err = await cri.runPodSandbox({ config, runtime_handler: 'no-such-handler' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CriError);
    expect(err).toMatchObject({ rpc: 'RunPodSandbox', details: expect.stringContaining('no runtime for "no-such-handler" is configured') });
    expect((await cri.listPodSandbox()).items).toEqual([]);
    await expectNothingLeftSinceBaseline();
  });

  it('stop() removes what it created: bridge, netns, dirs; nothing new on the host', async () => {
    const { network, netnsDir } = cd.cri;
    const report = await cd.stop();
    expect(report).toEqual({ leftovers: [], killedProcesses: [], removedPaths: [], unmounted: [] });
    expect(fs.existsSync(cd.dir)).toBe(false);
    expect(fs.existsSync(netnsDir)).toBe(false);
    expect(fs.existsSync(path.join('/var/lib/cni/networks', network.name))).toBe(false);
    // Polling, not one diff: a concurrent harness run's containerd that just exited is no
    // longer "foreign" while its own stop() is still removing its bridge and cgroups.
    expect(await waitForNoLeaks(before, 20_000)).toEqual([]);
    expect((await snapshotHost()).links).not.toContain(network.bridge);
  });

  /** CreateContainer + StartContainer of busybox `sleep 3600`, as kubelet would. */
  async function startedContainer(podId: string, sandboxConfig: PodSandboxConfig, name: string): Promise<string> {
    const config = containerConfig(name, images.busybox, ['sleep', '3600']);
    const { container_id } = await cri.createContainer({ pod_sandbox_id: podId, config, sandbox_config: sandboxConfig });
    await cri.startContainer({ container_id });
    const { status } = await cri.containerStatus({ container_id });
    expect(status?.state).toBe('CONTAINER_RUNNING');
    return container_id;
  }
});

describe('a CRI containerd that dies with a pod running', () => {
  it('is cleaned up by stop(): processes, mounts, netns, bridge, CNI caches, cgroups', async () => {
    expect(process.getuid?.()).toBe(0);
    const before = await snapshotHost();
    const cd = await startContainerd({ cri: {} });
    const cri = new CriClient(cd.cri.socket, { timeoutMs: 60_000 });
    let podId = '';
    let netns = '';
    try {
      const images = await importCriImages(cd);
      const config = podSandboxConfig(cd.cri, 'orphan');
      podId = (await cri.runPodSandbox({ config, runtime_handler: RUNC_HANDLER })).pod_sandbox_id;
      netns = readdirOr(cd.cri.netnsDir).map((n) => path.join(cd.cri.netnsDir, n))[0] ?? '';
      const { container_id } = await cri.createContainer({
        pod_sandbox_id: podId,
        config: containerConfig('app', images.busybox, ['sleep', '3600']),
        sandbox_config: config,
      });
      await cri.startContainer({ container_id });
    } finally {
      cri.close();
    }
    process.kill(cd.pid, 'SIGKILL');

    const report = await cd.stop();
    expect(report.leftovers).toEqual([]); // containerd was gone, nothing to ask it
    expect(report.killedProcesses).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`containerd-shim-runc-v2 -namespace k8s.io -id ${podId} `)),
      expect.stringMatching(/^\d+ \/pause$/),
      expect.stringMatching(/^\d+ sleep 3600$/),
    ]));
    expect(report.removedPaths).toEqual(expect.arrayContaining([
      `/var/lib/cni/results/${cd.cri.network.name}-${podId}-eth0`,
      `/var/lib/cni/results/cni-loopback-${podId}-lo`,
    ]));
    expect(report.unmounted).toContain(netns);
    expect(fs.existsSync(cd.dir)).toBe(false);
    expect(await waitForNoLeaks(before, 20_000)).toEqual([]);
  });
});

function inSubnet(ip: string, cidr: string): boolean {
  const toInt = (s: string): number => s.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
  const [base, bits] = cidr.split('/');
  const mask = (~0 << (32 - Number(bits))) >>> 0;
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip) && ((toInt(ip) & mask) >>> 0) === ((toInt(base) & mask) >>> 0);
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
