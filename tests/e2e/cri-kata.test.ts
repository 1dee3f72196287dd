// Kubernetes pods in VMs, driven as kubelet drives them: real containerd's CRI plugin
// with the RuntimeClass handler `kata` (runtime_type io.containerd.kata.v2), our shim,
// QEMU (TCG) and the CNI bridge. One pod's containers share one VM and its network;
// two pods reach each other over the bridge; nothing is left once the pods are gone.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { removeCgroupTree } from '../harness/cgroups';
import { CriContainerd, KATA_HANDLER, readlinkOr } from '../harness/containerd';
import { ContainerConfig, CriClient, CriError, PodSandboxConfig } from '../harness/cri';
import { CriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { HostSnapshot, isWaitingSpare, unixSocketsOf, waitForNoLeaks } from '../harness/leaks';
import { readMountPoints } from '../harness/mounts';
import { waitFor } from '../harness/wait';
import { CriKataEnv, sandboxVmms, startCriKataEnv } from './kata-env';
import { DAEMON_MMAP_THRESHOLD, MMAP_THRESHOLD_VAR } from '../../shim/daemon-allocator';
import { startEnvValue } from '../harness/process-env';

jest.setTimeout(600_000);

describe('CRI pods with the kata handler', () => {
  let env: CriKataEnv;
  let dir: string;
  let baseline: HostSnapshot;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    env = await startCriKataEnv('/tmp/kt-cri-');
    ({ dir, cd, cri, images, baseline } = env);
  });

  afterAll(async () => {
    expect((await env?.stop()) ?? []).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  async function exec(containerId: string, cmd: string[]): Promise<{ stdout: string; stderr: string; exit_code: number }> {
    const r = await cri.execSync({ container_id: containerId, cmd, timeout: 60 });
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exit_code: r.exit_code };
  }

  async function started(podId: string, sandboxConfig: PodSandboxConfig, config: ContainerConfig): Promise<string> {
    const { container_id } = await cri.createContainer({ pod_sandbox_id: podId, config, sandbox_config: sandboxConfig });
    await cri.startContainer({ container_id });
    expect((await cri.containerStatus({ container_id })).status?.state).toBe('CONTAINER_RUNNING');
    return container_id;
  }

  async function podIp(podId: string): Promise<string> {
    return (await cri.podSandboxStatus({ pod_sandbox_id: podId })).status?.network?.ip ?? '';
  }

  /** The MAC of the pod interface (in one of CRI's pod namespaces) that has `ip`. */
  function podInterfaceMac(ip: string): string | undefined {
    for (const name of fs.readdirSync(cd.cri.netnsDir)) {
      const links = JSON.parse(execFileSync('nsenter', [`--net=${path.join(cd.cri.netnsDir, name)}`, '--', 'ip', '-j', 'addr', 'show'], { encoding: 'utf8' })) as Array<{ address?: string; addr_info?: Array<{ local: string }> }>;
      const link = links.find((l) => l.addr_info?.some((a) => a.local === ip));
      if (link) return link.address;
    }
    return undefined;
  }

  /** QEMU processes of one sandbox. */
  const qemusOf = (podId: string): number[] => sandboxVmms(path.join(dir, 'vm'), 'k8s.io', podId);

  /**
   * The network namespace a pod's QEMU runs in: whether it is one of CRI's pod
   * namespaces, and the interfaces in it.
   */
  function qemuNetns(podId: string): { aPodNetns: boolean; links: string[] } {
    const [pid] = qemusOf(podId);
    const ns = `/proc/${pid}/ns/net`;
    const inode = fs.statSync(ns).ino;
    const podNamespaces = fs.readdirSync(cd.cri.netnsDir).map((name) => fs.statSync(path.join(cd.cri.netnsDir, name)).ino);
    const links = (JSON.parse(execFileSync('nsenter', [`--net=${ns}`, '--', 'ip', '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname);
    return { aPodNetns: podNamespaces.includes(inode), links };
  }

  /** Our shim daemons serving this containerd, with the pod (-id) and socket each serves. */
  function shimDaemons(): Array<{ pid: number; id: string; socket: string }> {
    const daemons: Array<{ pid: number; id: string; socket: string }> = [];
    for (const pid of fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
      let argv: string[];
      try {
        argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').split('\0');
      } catch {
        continue; // exited meanwhile
      }
      const flag = (name: string): string | undefined => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
      if (!argv[1]?.endsWith('/dist/shim/main.js') || flag('-address') !== cd.address) continue;
      if (argv.includes('daemon')) daemons.push({ pid: Number(pid), id: flag('-id') ?? '', socket: flag('-socket') ?? '' });
      // A spare claimed by a pod (KATATS_E2E_SPARE_SHIMS) runs as its daemon with its spare's
      // argv: its pod is the bundle it moved into, its socket the one it listens on.
      else if (argv[argv.length - 1] === 'spare' && !isWaitingSpare({ argv, pid: Number(pid) })) {
        const cwd = readlinkOr(`/proc/${pid}/cwd`);
        // Not yet (or no longer) in a bundle: starting, or retiring (or gone), not a pod's.
        if (path.dirname(cwd) !== path.join(cd.state, 'io.containerd.runtime.v2.task', 'k8s.io')) continue;
        daemons.push({ pid: Number(pid), id: path.basename(cwd), socket: unixSocketsOf(Number(pid)).find((s) => s.startsWith(path.join(cd.state, 's') + '/')) ?? '' });
      }
    }
    return daemons;
  }

  /** The host's address on its default route's interface, if it has one: off every pod subnet. */
  function hostUplinkAddress(): string | undefined {
    const dev = /\bdev (\S+)/.exec(execFileSync('ip', ['-4', '-o', 'route', 'show', 'default'], { encoding: 'utf8' }))?.[1];
    return dev && /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', dev], { encoding: 'utf8' }))?.[1];
  }

  /** Options of the mount the container sees at `/` (the last one stacked there). */
  async function rootMountOptions(containerId: string): Promise<string> {
    return (await exec(containerId, ['awk', '$2 == "/" { options = $4 } END { print options }', '/proc/self/mounts'])).stdout.trim();
  }

  /** Host mount points at or below any of `dirs`, sorted. */
  async function mountsUnder(...dirs: string[]): Promise<string[]> {
    return (await readMountPoints()).filter((m) => dirs.some((d) => m === d || m.startsWith(`${d}/`))).sort();
  }

  async function removePod(podId: string, config: PodSandboxConfig): Promise<void> {
    await cri.stopPodSandbox({ pod_sandbox_id: podId });
    await cri.removePodSandbox({ pod_sandbox_id: podId });
    // kubelet removes the pod cgroup; the runtime only removes what it made.
    expect(removeCgroupTree(config.linux?.cgroup_parent ?? '').failed).toEqual([]);
  }

  it('runs a two-container pod in one VM, a second pod beside it, and leaves nothing', async () => {
    const volume = fs.mkdtempSync(path.join(dir, 'www-'));
    fs.writeFileSync(path.join(volume, 'index.html'), 'served from a host volume\n');
    const scratch = fs.mkdtempSync(path.join(dir, 'scratch-'));
    fs.chmodSync(scratch, 0o777); // as kubelet makes emptyDirs: writable by any pod user
    const podA = podSandboxConfig(cd.cri, 'pod-a', {}, { dns_config: { servers: ['192.0.2.53'], searches: ['pods.example.test'], options: [] } });
    const idA = (await cri.runPodSandbox({ config: podA, runtime_handler: KATA_HANDLER })).pod_sandbox_id;
    expect(qemusOf(idA)).toHaveLength(1);
    // The pod's daemon (launched, or a spare it claimed) started with its allocator setting; its QEMU did not get it (shim/daemon-allocator.ts).
    const [daemonA] = shimDaemons().filter((d) => d.id === idA);
    expect(startEnvValue(daemonA.pid, MMAP_THRESHOLD_VAR)).toBe(DAEMON_MMAP_THRESHOLD);
    expect(startEnvValue(qemusOf(idA)[0], MMAP_THRESHOLD_VAR)).toBeUndefined();
    // A cold boot's QEMU runs in the pod's netns, with the tap it opened there. A clone's
    // never does: it runs in an empty one of its own (only lo), into which the pod's tap
    // was moved for it to open and out of which it was moved back (the pings below go through it).
    expect(qemuNetns(idA)).toEqual(process.env.KATATS_E2E_TEMPLATE_PATH ? { aPodNetns: false, links: ['lo'] } : { aPodNetns: true, links: expect.arrayContaining(['lo', 'eth0', 'tap0_kata']) });

    // "web": root, caps dropped to NET_BIND_SERVICE + NET_RAW, RuntimeDefault seccomp,
    // serving a read-only host volume on :80 with busybox httpd.
    const web = await started(idA, podA, containerConfig('web', images.busybox, ['httpd', '-f', '-p', '80', '-h', '/www'], {
      mounts: [{ container_path: '/www', host_path: volume, readonly: true }, { container_path: '/scratch', host_path: scratch }],
      linux: {
        security_context: {
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
          capabilities: { drop_capabilities: ['ALL'], add_capabilities: ['NET_BIND_SERVICE', 'NET_RAW'] },
          seccomp: { profile_type: 'RuntimeDefault' },
        },
      },
    }));
    // "app": uid/gid 1000, read-only rootfs, env and working dir from the spec.
    const app = await started(idA, podA, containerConfig('app', images.busybox, ['sleep', '3600'], {
      working_dir: '/scratch',
      envs: [{ key: 'GREETING', value: 'hello from the spec' }],
      mounts: [{ container_path: '/scratch', host_path: scratch }],
      linux: {
        security_context: {
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
          run_as_user: { value: 1000 },
          run_as_group: { value: 1000 },
          readonly_rootfs: true,
        },
      },
    }));

    // One VM: same guest boot id in both containers (and not the host's), one QEMU.
    const hostBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const bootIds = await Promise.all([web, app].map(async (c) => (await exec(c, ['cat', '/proc/sys/kernel/random/boot_id'])).stdout.trim()));
    expect(bootIds[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(bootIds[1]).toBe(bootIds[0]);
    expect(bootIds[0]).not.toBe(hostBootId);
    expect(qemusOf(idA)).toHaveLength(1);
    // One shim daemon serves the pod, on a socket only root may use, and containerd
    // talks to it for all three of the pod's tasks.
    const daemonsA = shimDaemons();
    expect(daemonsA.map((d) => d.id)).toEqual([idA]);
    const socketA = fs.statSync(daemonsA[0].socket);
    expect({ socket: socketA.isSocket(), mode: socketA.mode & 0o777, uid: socketA.uid }).toEqual({ socket: true, mode: 0o600, uid: 0 });
    for (const task of [idA, web, app]) {
      expect(fs.readFileSync(path.join(cd.state, 'io.containerd.runtime.v2.task', 'k8s.io', task, 'address'), 'utf8')).toBe(`unix://${daemonsA[0].socket}`);
    }

    // ExecSync: output and exit codes.
    expect(await exec(app, ['echo', 'hi'])).toEqual({ stdout: 'hi\n', stderr: '', exit_code: 0 });
    expect((await exec(app, ['sh', '-c', 'exit 3'])).exit_code).toBe(3);

    // The OCI spec is honoured in the guest.
    expect((await exec(app, ['sh', '-c', 'echo "$(id -u):$(id -g) $(pwd) $GREETING"'])).stdout).toBe('1000:1000 /scratch hello from the spec\n');
    // Read-only rootfs: /tmp is 1777 in the image, so only the read-only mount stops uid
    // 1000 there; web (root, rootfs writable) writes to / itself. Pod B's client shows root
    // stopped by a read-only rootfs too.
    expect(await exec(app, ['touch', '/tmp/probe'])).toMatchObject({ exit_code: 1, stderr: expect.stringContaining('Read-only file system') });
    expect(await rootMountOptions(app)).toMatch(/^ro,/);
    expect(await exec(web, ['sh', '-c', 'touch /probe && rm /probe'])).toEqual({ stdout: '', stderr: '', exit_code: 0 });
    expect(await rootMountOptions(web)).toMatch(/^rw,/);
    const webStatus = (await exec(web, ['cat', '/proc/self/status'])).stdout;
    // NET_BIND_SERVICE (10) and NET_RAW (13) only; Seccomp 2 = filter mode.
    expect(webStatus).toMatch(/^CapEff:\s+0000000000002400$/m);
    expect(webStatus).toMatch(/^Seccomp:\s+2$/m);
    expect((await exec(app, ['grep', '^Seccomp:', '/proc/self/status'])).stdout).toMatch(/Seccomp:\s+0/);
    expect((await exec(app, ['hostname'])).stdout).toBe('pod-a\n');
    const resolv = (await exec(app, ['cat', '/etc/resolv.conf'])).stdout;
    expect(resolv).toContain('nameserver 192.0.2.53');
    expect(resolv).toContain('search pods.example.test');
    // /etc/hosts is the file CRI wrote for the pod on the host, shared into the VM.
    const hostsOnHost = fs.readFileSync(path.join(cd.root, 'io.containerd.grpc.v1.cri', 'sandboxes', idA, 'hosts'), 'utf8');
    expect(hostsOnHost).toContain('localhost');
    expect((await exec(app, ['cat', '/etc/hosts'])).stdout).toBe(hostsOnHost);

    // Shared pod network: the app reaches web's server on localhost; both see the pod IP.
    const ipA = await podIp(idA);
    expect((await exec(app, ['wget', '-q', '-O', '-', 'http://127.0.0.1:80/index.html'])).stdout).toBe('served from a host volume\n');
    for (const c of [web, app]) expect((await exec(c, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout).toContain(`inet ${ipA}/24`);
    // The read-only volume is read-only in the guest; the shared one carries files both ways.
    expect((await exec(web, ['touch', '/www/x'])).exit_code).not.toBe(0);
    expect((await exec(app, ['sh', '-c', 'echo written-by-app > /scratch/note'])).exit_code).toBe(0);
    expect((await exec(web, ['cat', '/scratch/note'])).stdout).toBe('written-by-app\n');
    expect(fs.readFileSync(path.join(scratch, 'note'), 'utf8')).toBe('written-by-app\n');
    // Both containers share the pod's IPC namespace and /dev/shm.
    expect((await exec(web, ['sh', '-c', 'echo shm-note > /dev/shm/n'])).exit_code).toBe(0);
    expect((await exec(app, ['cat', '/dev/shm/n'])).stdout).toBe('shm-note\n');
    const ipcNs = await Promise.all([web, app].map(async (c) => (await exec(c, ['readlink', '/proc/self/ns/ipc'])).stdout));
    expect(ipcNs[1]).toBe(ipcNs[0]);

    // The guest NIC carries the pod's address and the guest end of the loopback forward
    // (CRI PortForward), also on a clone, whose taps are wired while its NIC is set up.
    expect((await exec(web, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout).toMatch(/inet 169\.254\.75\.2\/30/);
    // The pod reaches its host-side gateway (the CNI bridge).
    const pingGw = await exec(web, ['ping', '-c1', '-W5', cd.cri.network.gateway]);
    expect(pingGw.exit_code).toBe(0);
    // The agent applied CNI's routes in the guest: the default route goes via the bridge,
    // so an address off the pod subnet (the host's own uplink address) answers too.
    expect((await exec(web, ['ip', '-4', 'route', 'show', 'default'])).stdout.trim()).toBe(`default via ${cd.cri.network.gateway} dev eth0`);
    const offSubnet = hostUplinkAddress();
    if (offSubnet) {
      expect(offSubnet.startsWith(cd.cri.network.subnet.replace(/0\/24$/, ''))).toBe(false);
      expect(await exec(web, ['ping', '-c1', '-W5', offSubnet])).toMatchObject({ exit_code: 0, stdout: expect.stringContaining(`from ${offSubnet}`) });
    }

    // ContainerStats: real numbers from the guest's cgroups.
    const { stats } = await cri.containerStats({ container_id: web });
    expect(stats?.attributes?.id).toBe(web);
    expect(stats?.memory?.working_set_bytes?.value).toBeGreaterThan(0);
    expect(stats?.cpu?.usage_core_nano_seconds?.value).toBeGreaterThan(0);
    const listed = (await cri.listContainers({ filter: { pod_sandbox_id: idA } })).containers;
    expect(listed.map((c) => [c.metadata?.name, c.state]).sort()).toEqual([['app', 'CONTAINER_RUNNING'], ['web', 'CONTAINER_RUNNING']]);

    // A second pod, its own VM, pings pod A and fetches from it over the bridge.
    const podB = podSandboxConfig(cd.cri, 'pod-b');
    const idB = (await cri.runPodSandbox({ config: podB, runtime_handler: KATA_HANDLER })).pod_sandbox_id;
    const client = await started(idB, podB, containerConfig('client', images.busybox, ['sleep', '3600'], {
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' }, readonly_rootfs: true } },
    }));
    expect(await exec(client, ['id', '-u'])).toMatchObject({ stdout: '0\n' });
    expect(await exec(client, ['touch', '/probe'])).toMatchObject({ exit_code: 1, stderr: expect.stringContaining('Read-only file system') });
    expect(await rootMountOptions(client)).toMatch(/^ro,/);
    const ipB = await podIp(idB);
    expect(ipB).not.toBe(ipA);
    expect((await exec(client, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout).toContain(`inet ${ipB}/24`);
    // The guest's NIC has the pod interface's MAC, also one plugged into a spare's VM before the pod existed.
    expect((await exec(client, ['cat', '/sys/class/net/eth0/address'])).stdout.trim()).toBe(podInterfaceMac(ipB));
    const ping = await exec(client, ['ping', '-c1', '-W5', ipA]);
    expect(ping).toMatchObject({ exit_code: 0 });
    expect(ping.stdout).toContain(`from ${ipA}`);
    expect((await exec(client, ['wget', '-q', '-O', '-', `http://${ipA}/index.html`])).stdout).toBe('served from a host volume\n');
    const bootB = (await exec(client, ['cat', '/proc/sys/kernel/random/boot_id'])).stdout.trim();
    expect(bootB).not.toBe(bootIds[0]);

    // A mount source that cannot cross into a VM fails clearly (containerd creates the
    // task, and so calls us, at StartContainer); the pod runs on, nothing of it is left.
    const podBDir = path.join(dir, 'vm', idB);
    const startFails = async (name: string, mount: { container_path: string; host_path: string }, beforeStart: () => void = () => undefined): Promise<string> => {
      // Our state dir (the pod's shared dir) and containerd's (the task bundles' rootfs).
      const mountsBefore = await mountsUnder(dir, cd.dir);
      const { container_id } = await cri.createContainer({ pod_sandbox_id: idB, config: containerConfig(name, images.busybox, ['sleep', '1'], { mounts: [mount] }), sandbox_config: podB });
      beforeStart();
      const err = await cri.startContainer({ container_id }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CriError);
      // What a failed Create could leave: its rootfs or a share mounted, its directory in
      // the pod's shared dir, a daemon of its own.
      expect(await mountsUnder(dir, cd.dir)).toEqual(mountsBefore);
      expect(fs.existsSync(path.join(podBDir, 'shared', container_id))).toBe(false);
      expect(shimDaemons().map((d) => d.id).sort()).toEqual([idA, idB].sort());
      await cri.removeContainer({ container_id });
      return (err as CriError).details;
    };
    const socketPath = path.join(dir, 'host.sock');
    const server = net.createServer().listen(socketPath);
    try {
      expect(await startFails('bad-mount', { container_path: '/run/host.sock', host_path: socketPath })).toContain(
        `mount /run/host.sock: host source ${socketPath} is a Unix socket, which cannot be shared into the VM`,
      );
    } finally {
      server.close();
    }
    // A missing host path never reaches us: containerd's CreateContainer makes it a
    // directory. One that vanishes before StartContainer fails naming the mount.
    const vanishing = path.join(dir, 'vanishing');
    const details = await startFails('gone-mount', { container_path: '/data', host_path: vanishing }, () => {
      expect(fs.statSync(vanishing).isDirectory()).toBe(true);
      fs.rmdirSync(vanishing);
    });
    expect(details).toContain(`mount /data: host source ${vanishing} cannot be used (ENOENT)`);
    expect((await exec(client, ['echo', 'still-here'])).stdout).toBe('still-here\n');

    await removePod(idB, podB);
    await removePod(idA, podA);
    expect((await cri.listPodSandbox()).items).toEqual([]);
    expect(qemusOf(idA)).toEqual([]);
    const leaks = await waitForNoLeaks(baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] });
    expect(leaks).toEqual([]);
    expect(fs.readdirSync(cd.cri.netnsDir)).toEqual([]);
  });

  it("after a pod's shim is killed, containerd's delete removes the pod's taps, mirroring and port-forward rules from its netns", async () => {
    const config = podSandboxConfig(cd.cri, 'pod-crash');
    const id = (await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER })).pod_sandbox_id;
    const spec = JSON.parse(fs.readFileSync(path.join(cd.state, 'io.containerd.runtime.v2.task', 'k8s.io', id, 'config.json'), 'utf8')) as { linux: { namespaces: Array<{ type: string; path?: string }> } };
    const netns = spec.linux.namespaces.find((n) => n.type === 'network')!.path!;
    // What the pod's daemon set up in the netns: ours, found by name and comment.
    const ours = () => {
      const inNetns = (...args: string[]) => execFileSync('nsenter', [`--net=${netns}`, '--', ...args], { encoding: 'utf8' });
      return {
        taps: inNetns('ip', '-o', 'link', 'show').split('\n').filter((l) => l.includes('_kata')).length,
        ingressOnEth0: inNetns('tc', 'qdisc', 'show', 'dev', 'eth0').includes('ingress'),
        portForwardRules: inNetns('iptables', '-w', '-t', 'nat', '-S').split('\n').filter((l) => l.includes('kata-ts port-forward')).length,
      };
    };
    expect(ours()).toEqual({ taps: 1, ingressOnEth0: true, portForwardRules: 2 });
    const [daemon] = shimDaemons().filter((d) => d.id === id);
    process.kill(daemon.pid, 'SIGKILL');
    // containerd sees the connection drop and runs our `delete`, which kills the VM and undoes the netns.
    await waitFor("delete to undo the pod's netns", () => (qemusOf(id).length === 0 && JSON.stringify(ours()) === JSON.stringify({ taps: 0, ingressOnEth0: false, portForwardRules: 0 }) ? true : undefined), 60_000);
    await removePod(id, config);
    expect(await waitForNoLeaks(baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
  });

  it('refuses an unknown runtime handler with a clear CRI error and leaves nothing', async () => {
    const config = podSandboxConfig(cd.cri, 'pod-bad');
    const err = await cri.runPodSandbox({ config, runtime_handler: 'no-such-handler' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ rpc: 'RunPodSandbox', details: expect.stringContaining('no runtime for "no-such-handler" is configured') });
    expect((await cri.listPodSandbox()).items).toEqual([]);
    expect(await waitForNoLeaks(baseline, 20_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
  });
});
