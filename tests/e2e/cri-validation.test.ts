// What Kubernetes' CRI validation suite (cri-tools) asks of a runtime, through
// containerd's CRI plugin, side by side for the `runc` handler and ours (issue 16):
// - an image whose server logs through /dev/stdout, /dev/stderr and /proc/self/fd/2
//   symlinks (nginx/httpd style) serves HTTP and its lines land in the CRI log file;
//   two containers of a pod keep their own logs and exec;
// - PortForward: 127.0.0.1:<port> inside the pod netns (what containerd dials) and a
//   real PortForward through containerd's streaming server; a hostPort mapping
//   (CNI portmap) answers on the host's 127.0.0.1;
// - CONTAINER and POD PID namespace modes: who is PID 1 and who sees whom; stopping an
//   init that leaves a worker behind; each pod stops and is removed within 30 s with
//   nothing left;
// - a privileged container makes a bridge, a veth and a tun device; an unprivileged
//   one is refused with EPERM (the guest kernel has the drivers: not ENOPKG);
// - what a VM cannot mean (hostNetwork, hostPID, hostIPC, a Bidirectional mount) is
//   refused by kata with an error naming the field, and accepted by runc.
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { promisify } from 'util';
import { removeCgroupTree } from '../harness/cgroups';
import { CriContainerd, KATA_HANDLER, RUNC_HANDLER, startContainerd } from '../harness/containerd';
import { ContainerConfig, CriClient, CriError, NamespaceMode, PodSandboxConfig } from '../harness/cri';
import { CriImages, importCriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { portForwardExchange } from '../harness/cri-portforward';
import { sandboxNetnsPath } from '../harness/containerd-cri';
import { diffSnapshots, HostSnapshot, snapshotHost } from '../harness/leaks';
import { importWebImage, WEB_INDEX, WEB_LOG_LINES } from '../harness/web-image';
import { waitFor } from '../harness/wait';
import { writeConfig, writeShimLauncher } from './kata-env';

jest.setTimeout(900_000);

const execFileAsync = promisify(execFile);
/** "Within 30 s", the bound for stopping and removing a pod. */
const STOP_AND_REMOVE_MS = 30_000;
/** What the kata handler's guest kernel must show in /proc/net/ip_tables_{matches,targets}. */
const XT_MATCHES = ['conntrack', 'state', 'addrtype', 'comment', 'multiport', 'mark', 'owner', 'socket', 'physdev', 'statistic', 'connmark'];
const XT_TARGETS = ['MASQUERADE', 'REDIRECT', 'DNAT', 'SNAT', 'TPROXY', 'MARK', 'CONNMARK', 'REJECT'];

describe('CRI validation: runc beside kata', () => {
  let before: HostSnapshot;
  let baseline: HostSnapshot;
  let natBefore: string[];
  let dir: string;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;
  let web: string;
  /** Measured for the report: how long each pod took to stop and be removed. */
  const timings: Record<string, number> = {};
  /** Pod cgroup parents made by this suite (kubelet's to remove). */
  const podCgroups: string[] = [];

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    before = await snapshotHost();
    natBefore = hostNatRules();
    dir = fs.mkdtempSync('/tmp/kt-crival-');
    const shimDir = path.join(dir, 'bin');
    fs.mkdirSync(shimDir);
    writeShimLauncher(shimDir);
    const config = path.join(dir, 'config.json');
    writeConfig(config, path.join(dir, 'vm'), { hypervisor: { memoryMiB: 512 } });
    cd = await startContainerd({ cri: { portMappings: true, kataPrivilegedWithoutHostDevices: true }, runtimeShimDir: shimDir, env: { KATATS_CONFIG: config } });
    cri = new CriClient(cd.cri.socket, { timeoutMs: 300_000 });
    images = await importCriImages(cd);
    web = await importWebImage(cd);
    baseline = await snapshotHost({ dirs: [cd.dir] });
  });

  afterAll(async () => {
    cri?.close();
    const report = await cd?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    console.log(`stop + remove pod (ms): ${JSON.stringify(timings)}`);
    expect(report?.leftovers ?? []).toEqual([]);
    expect(report?.removedPaths ?? []).toEqual([]);
    expect(await leaksSince(before)).toEqual([]);
    // portmap's rules went with their pods, its chains with the harness.
    expect(hostNatRules()).toEqual(natBefore);
  });

  // A failed test must not leave its pods to the next one's leak checks.
  afterEach(async () => {
    for (const p of (await cri.listPodSandbox()).items) {
      await cri.stopPodSandbox({ pod_sandbox_id: p.id }).catch(() => undefined);
      await cri.removePodSandbox({ pod_sandbox_id: p.id }).catch(() => undefined);
    }
    for (const parent of podCgroups.splice(0)) removeCgroupTree(parent);
  });

  // ---- helpers --------------------------------------------------------------------

  function hostNatRules(): string[] {
    return execFileSync('iptables', ['-w', '-t', 'nat', '-S'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  }

  async function exec(containerId: string, cmd: string[]): Promise<{ stdout: string; stderr: string; exit_code: number }> {
    const r = await cri.execSync({ container_id: containerId, cmd, timeout: 60 });
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exit_code: r.exit_code };
  }

  function pod(name: string, pid: NamespaceMode = 'CONTAINER', extra: { privileged?: boolean; hostPort?: number } = {}): PodSandboxConfig {
    const config = podSandboxConfig(cd.cri, name);
    podCgroups.push(config.linux!.cgroup_parent!);
    config.linux!.security_context = { namespace_options: { network: 'POD', pid, ipc: 'POD' }, privileged: extra.privileged };
    if (extra.hostPort) config.port_mappings = [{ protocol: 'TCP', container_port: 80, host_port: extra.hostPort }];
    fs.mkdirSync(config.log_directory!, { recursive: true }); // kubelet makes it
    return config;
  }

  function container(name: string, image: string, command: string[], pid: NamespaceMode = 'CONTAINER', extra: ContainerConfig = {}): ContainerConfig {
    return containerConfig(name, image, command, {
      linux: { security_context: { namespace_options: { network: 'POD', pid, ipc: 'POD' } } },
      ...extra,
    });
  }

  async function runPod(config: PodSandboxConfig, handler: string): Promise<string> {
    return (await cri.runPodSandbox({ config, runtime_handler: handler })).pod_sandbox_id;
  }

  async function started(podId: string, sandboxConfig: PodSandboxConfig, config: ContainerConfig): Promise<string> {
    fs.mkdirSync(path.join(sandboxConfig.log_directory!, config.metadata!.name!), { recursive: true });
    const { container_id } = await cri.createContainer({ pod_sandbox_id: podId, config, sandbox_config: sandboxConfig });
    await cri.startContainer({ container_id });
    expect((await cri.containerStatus({ container_id })).status?.state).toBe('CONTAINER_RUNNING');
    return container_id;
  }

  /** The container's CRI log file as (stream, line) pairs. */
  function criLog(config: PodSandboxConfig, name: string): Array<{ stream: string; line: string }> {
    const file = path.join(config.log_directory!, name, '0.log');
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    return text
      .split('\n')
      .map((l) => /^\S+ (stdout|stderr) [FP] (.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ stream: m[1], line: m[2] }));
  }

  function httpGet(url: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
      req.on('error', reject);
    });
  }

  async function freePort(): Promise<number> {
    const server = net.createServer().listen(0, '0.0.0.0');
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((r) => server.close(r));
    return port;
  }

  /** `curl` inside the pod's network namespace, as containerd's PortForward dials. */
  async function curlInNetns(netns: string, url: string): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync('nsenter', [`--net=${netns}`, '--', 'curl', '-sS', '-m', '10', url]);
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  function qemusOf(podId: string): string[] {
    return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('qemu-system') && l.includes(`sandbox-${podId}`));
  }

  /**
   * What this suite's pods left since `since`: processes, mounts and sockets that name
   * this containerd's or this suite's dirs (shims, QEMU, rootfs, shares), shim sockets,
   * host links and netns. Other test runs on the host (ctr-driven kata envs whose state
   * is not a containerd dir, so the harness cannot tell them apart) are not ours to judge.
   */
  async function leaksSince(since: HostSnapshot): Promise<string[]> {
    const ours = (l: string): boolean => l.includes(dir) || l.includes(cd.dir) || /^(link|netns): /.test(l) || l.startsWith('socket: /run/containerd/s/');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const leaks = diffSnapshots(since, await snapshotHost({ dirs: since.socketDirs }), { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] }).filter(ours);
      if (leaks.length === 0 || Date.now() > deadline) return leaks;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Stops and removes the pod as kubelet does, timed; then nothing of it may be left. */
  async function removePod(label: string, podId: string, config: PodSandboxConfig, since: HostSnapshot = baseline): Promise<void> {
    const t0 = Date.now();
    await cri.stopPodSandbox({ pod_sandbox_id: podId }, { timeoutMs: STOP_AND_REMOVE_MS });
    await cri.removePodSandbox({ pod_sandbox_id: podId }, { timeoutMs: STOP_AND_REMOVE_MS });
    timings[label] = Date.now() - t0;
    expect(timings[label]).toBeLessThan(STOP_AND_REMOVE_MS);
    expect(removeCgroupTree(config.linux?.cgroup_parent ?? '').failed).toEqual([]);
    expect(qemusOf(podId)).toEqual([]);
    expect(await leaksSince(since)).toEqual([]);
    expect(fs.readdirSync(cd.cri.netnsDir)).toEqual([]);
    expect(hostNatRules().filter((r) => r.includes('CNI-DN-'))).toEqual([]);
  }

  // ---- the suite, once per handler ---------------------------------------------------

  describe.each([RUNC_HANDLER, KATA_HANDLER])('%s', (handler) => {
    it('serves HTTP from an nginx-style image whose logs reach the CRI log file; two containers keep their own logs and exec; PortForward and a hostPort reach the server', async () => {
      const hostPort = await freePort();
      const config = pod(`web-${handler}`, 'CONTAINER', { hostPort });
      const podId = await runPod(config, handler);
      const webId = await started(podId, config, container('web', web, []));
      const sideId = await started(podId, config, container('side', images.busybox, ['sh', '-c', 'echo side-out; echo side-err >&2; exec sleep 7777']));
      const ip = (await cri.podSandboxStatus({ pod_sandbox_id: podId })).status?.network?.ip ?? '';
      expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

      // The server answers on the pod IP; every log path opened a pipe, none failed with ENXIO.
      const page = await waitFor('HTTP from the pod IP', () => httpGet(`http://${ip}:80/index.html`));
      expect(page).toEqual({ status: 200, body: WEB_INDEX });
      const webLog = await waitFor('the request in the web log', () => {
        const lines = criLog(config, 'web');
        return lines.some((l) => l.stream === 'stdout' && l.line.includes('url:/index.html')) ? lines : undefined;
      });
      // (stdout and stderr are two pipes: their lines interleave in either order, as with runc.)
      const byStream = (stream: string): string[] => webLog.filter((l) => l.stream === stream && l.line.startsWith('web: ')).map((l) => l.line);
      expect(byStream('stdout')).toEqual([expect.stringContaining(WEB_LOG_LINES.stdout)]);
      expect(byStream('stderr')).toEqual([WEB_LOG_LINES.stderr, WEB_LOG_LINES.procFd2]);
      expect((await cri.containerStatus({ container_id: webId })).status?.state).toBe('CONTAINER_RUNNING');
      // Each container its own log, its own exec, its own PID namespace (CONTAINER mode).
      const sideLog = await waitFor('the side log', () => (criLog(config, 'side').length >= 2 ? criLog(config, 'side') : undefined));
      expect(sideLog).toEqual([
        { stream: expect.stringMatching(/^std(out|err)$/), line: expect.stringMatching(/^side-(out|err)$/) },
        { stream: expect.stringMatching(/^std(out|err)$/), line: expect.stringMatching(/^side-(out|err)$/) },
      ]);
      expect(sideLog.find((l) => l.line === 'side-out')?.stream).toBe('stdout');
      expect(sideLog.find((l) => l.line === 'side-err')?.stream).toBe('stderr');
      expect(webLog.some((l) => l.line.startsWith('side-'))).toBe(false);
      expect((await exec(webId, ['cat', '/proc/1/cmdline'])).stdout).toMatch(/^httpd\0/);
      expect((await exec(sideId, ['cat', '/proc/1/cmdline'])).stdout).toBe('sleep\x007777\0');
      expect((await exec(sideId, ['ps', '-o', 'args'])).stdout).not.toContain('httpd');
      expect((await exec(webId, ['wget', '-q', '-O', '-', 'http://127.0.0.1/index.html'])).stdout).toBe(WEB_INDEX);

      // PortForward, the way containerd does it: 127.0.0.1:<port> inside the pod netns ...
      const netns = await sandboxNetnsPath(cri, podId);
      expect(netns).toBeTruthy();
      expect(await curlInNetns(netns!, 'http://127.0.0.1:80/index.html')).toMatchObject({ code: 0, stdout: WEB_INDEX });
      expect((await curlInNetns(netns!, 'http://127.0.0.1:81/')).stderr).toMatch(/Connection refused|Couldn't connect/);
      // ... and a real one through the streaming server (kubectl's WebSocket protocol).
      const { url } = await cri.portForward({ pod_sandbox_id: podId, port: [80] });
      const forwarded = await portForwardExchange(url, 80, 'GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n');
      expect(forwarded.error).toBe('');
      expect(forwarded.data.toString()).toMatch(/^HTTP\/1\.[01] 200 /);
      expect(forwarded.data.toString().endsWith(WEB_INDEX)).toBe(true);
      // hostPort: CNI portmap's DNAT on the host, on its loopback too.
      expect(await waitFor('the hostPort on 127.0.0.1', () => httpGet(`http://127.0.0.1:${hostPort}/index.html`))).toEqual({ status: 200, body: WEB_INDEX });

      await removePod(`web-${handler} (CONTAINER pid)`, podId, config);
    });

    it('shares one PID namespace in a POD-mode pod (pause is PID 1, each container sees the other); stopping an init ends the worker it leaves; the pod stops and is removed within 30 s', async () => {
      const config = pod(`pidpod-${handler}`, 'POD');
      const podId = await runPod(config, handler);
      const webId = await started(podId, config, container('web', web, [], 'POD'));
      const sideId = await started(podId, config, container('side', images.busybox, ['sleep', '7777'], 'POD'));
      await waitFor('web serving', async () => ((await exec(webId, ['wget', '-q', '-O', '-', 'http://127.0.0.1/index.html'])).stdout === WEB_INDEX ? true : undefined));
      for (const id of [webId, sideId]) expect((await exec(id, ['cat', '/proc/1/cmdline'])).stdout).toBe('/pause\0');
      const seen = (await exec(sideId, ['ps', '-o', 'args'])).stdout;
      expect(seen).toContain('httpd -f -vv');
      expect(seen).toContain('sleep 3600'); // web's worker
      expect((await exec(webId, ['ps', '-o', 'args'])).stdout).toContain('sleep 7777');

      // StopContainer: SIGTERM ends httpd; its worker is left in a container with no PID
      // namespace of its own, so the runtime must kill it (runc's shim does).
      const t0 = Date.now();
      await cri.stopContainer({ container_id: webId, timeout: 10 }, { timeoutMs: STOP_AND_REMOVE_MS });
      timings[`stop web in pidpod-${handler}`] = Date.now() - t0;
      expect((await cri.containerStatus({ container_id: webId })).status?.state).toBe('CONTAINER_EXITED');
      const after = (await exec(sideId, ['ps', '-o', 'args'])).stdout;
      expect(after).not.toContain('httpd');
      expect(after).not.toContain('sleep 3600');
      expect(after).toContain('sleep 7777');

      await removePod(`pidpod-${handler} (POD pid)`, podId, config);
    });

    it('lets a privileged container make a bridge and a veth (a tun device: see below); an unprivileged one gets EPERM', async () => {
      const config = pod(`priv-${handler}`, 'CONTAINER', { privileged: true });
      const podId = await runPod(config, handler);
      const privId = await started(podId, config, container('priv', web, ['sleep', '3600'], 'CONTAINER', {
        linux: { security_context: { privileged: true, namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
      }));
      const plainId = await started(podId, config, container('plain', web, ['sleep', '3600']));

      // (This busybox's brctl has no `show`; the bridge is in sysfs.)
      const bridge = await exec(privId, ['sh', '-c', 'brctl addbr kt-br0 && ip link set kt-br0 up && ls -d /sys/class/net/kt-br0/bridge']);
      expect(bridge).toEqual({ exit_code: 0, stdout: '/sys/class/net/kt-br0/bridge\n', stderr: '' });
      expect(await exec(privId, ['sh', '-c', 'ip link add kt-va type veth && ip -o link show kt-va'])).toMatchObject({ exit_code: 0, stdout: expect.stringContaining('kt-va'), stderr: '' });
      // The tun driver is there (its misc device registered) ...
      expect((await exec(privId, ['cat', '/sys/class/misc/tun/dev'])).stdout).toBe('10:200\n');
      const tun = await exec(privId, ['sh', '-c', 'mkdir -p /dev/net; [ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200; tunctl -t kt-tap0 >/dev/null && ip -o link show kt-tap0']);
      if (handler === RUNC_HANDLER) {
        expect(tun).toMatchObject({ exit_code: 0, stdout: expect.stringContaining('kt-tap0') });
      } else {
        // ... but with privileged_without_host_devices, containerd 1.6 leaves a privileged
        // container's device cgroup at the defaults (it allows all devices only together
        // with the host's), so opening /dev/net/tun is not permitted.
        expect(tun).toEqual({ exit_code: 1, stdout: '', stderr: "tunctl: can't open '/dev/net/tun': Operation not permitted\n" });
      }
      const refused = await exec(plainId, ['brctl', 'addbr', 'kt-br1']);
      expect(refused.exit_code).not.toBe(0);
      expect(refused.stderr).toContain('Operation not permitted');

      if (handler === KATA_HANDLER) {
        // The guest kernel's own configuration, and its registered xtables extensions.
        const kconfig = (await exec(privId, ['zcat', '/proc/config.gz'])).stdout;
        for (const option of ['BRIDGE', 'VETH', 'TUN', 'NF_NAT', 'NF_CONNTRACK', 'IP_NF_NAT', 'IP6_NF_NAT', 'NFT_COMPAT', 'NETFILTER_XT_MATCH_CONNTRACK', 'NETFILTER_XT_TARGET_MASQUERADE', 'NETFILTER_XT_TARGET_REDIRECT']) {
          expect(kconfig).toMatch(new RegExp(`^CONFIG_${option}=y$`, 'm'));
        }
        const matches = (await exec(privId, ['cat', '/proc/net/ip_tables_matches'])).stdout.split('\n');
        const targets = (await exec(privId, ['cat', '/proc/net/ip_tables_targets'])).stdout.split('\n');
        expect(XT_MATCHES.filter((m) => !matches.includes(m))).toEqual([]);
        expect(XT_TARGETS.filter((t) => !targets.includes(t))).toEqual([]);
      }
      await removePod(`priv-${handler}`, podId, config);
    });
  });

  // ---- what a VM cannot mean -----------------------------------------------------------

  it('refuses hostNetwork, hostPID and hostIPC pods at RunPodSandbox naming the field (runc runs them), and leaves nothing', async () => {
    const cases: Array<{ field: string; options: { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode } }> = [
      { field: 'hostNetwork (CRI namespace_options.network = NODE) is not supported', options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } },
      { field: 'hostPID (CRI namespace_options.pid = NODE) is not supported', options: { network: 'POD', pid: 'NODE', ipc: 'POD' } },
      { field: 'hostIPC (CRI namespace_options.ipc = NODE) is not supported', options: { network: 'POD', pid: 'CONTAINER', ipc: 'NODE' } },
    ];
    for (const { field, options } of cases) {
      const name = `host-${Object.entries(options).find(([, v]) => v === 'NODE')![0]}`;
      const config = podSandboxConfig(cd.cri, name);
      podCgroups.push(config.linux!.cgroup_parent!);
      config.linux!.security_context = { namespace_options: options };
      // As kubelet: a host-network pod has the node's hostname (runc cannot set one without a UTS namespace).
      if (options.network === 'NODE') config.hostname = '';
      // runc: the pod runs in the host's namespace.
      const runcPod = await runPod(config, RUNC_HANDLER);
      expect((await cri.podSandboxStatus({ pod_sandbox_id: runcPod })).status?.state).toBe('SANDBOX_READY');
      await removePod(`${name}-runc`, runcPod, config);
      // kata: refused before any VM boots, the field named.
      const t0 = Date.now();
      const err = await runPod(config, KATA_HANDLER).then(() => undefined, (e: unknown) => e);
      timings[`${name}-kata refused`] = Date.now() - t0;
      expect(err).toBeInstanceOf(CriError);
      expect((err as CriError).details).toContain(`pod default/${name} cannot run in a kata VM: ${field}`);
      expect((err as CriError).codeName).toBe('FailedPrecondition');
      expect((await cri.listPodSandbox()).items).toEqual([]);
      expect(removeCgroupTree(config.linux?.cgroup_parent ?? '').failed).toEqual([]);
      expect(await leaksSince(baseline)).toEqual([]);
    }
  });

  it('refuses a Bidirectional mount at StartContainer naming the mount (runc mounts it), accepts HostToContainer, and leaves nothing', async () => {
    // containerd itself requires the host path of Bidirectional to be on a shared mount.
    const shared = path.join(dir, 'shared-volume');
    fs.mkdirSync(shared);
    execFileSync('mount', ['--bind', shared, shared]);
    execFileSync('mount', ['--make-shared', shared]);
    const withShared = await snapshotHost({ dirs: [cd.dir] });
    try {
      for (const handler of [RUNC_HANDLER, KATA_HANDLER]) {
        const config = pod(`mounts-${handler}`, 'CONTAINER', { privileged: true });
        const podId = await runPod(config, handler);
        const withMount = (name: string, propagation: 'PROPAGATION_BIDIRECTIONAL' | 'PROPAGATION_HOST_TO_CONTAINER'): ContainerConfig =>
          container(name, images.busybox, ['sleep', '3600'], 'CONTAINER', {
            mounts: [{ container_path: '/data', host_path: shared, propagation }],
            linux: { security_context: { privileged: true, namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
          });
        const slaveId = await started(podId, config, withMount('slave', 'PROPAGATION_HOST_TO_CONTAINER'));
        expect((await exec(slaveId, ['ls', '/data'])).exit_code).toBe(0);
        fs.mkdirSync(path.join(config.log_directory!, 'bidi'), { recursive: true });
        const { container_id } = await cri.createContainer({ pod_sandbox_id: podId, config: withMount('bidi', 'PROPAGATION_BIDIRECTIONAL'), sandbox_config: config });
        const err = await cri.startContainer({ container_id }).then(() => undefined, (e: unknown) => e);
        if (handler === RUNC_HANDLER) {
          expect(err).toBeUndefined();
        } else {
          expect(err).toBeInstanceOf(CriError);
          expect((err as CriError).codeName).toBe('FailedPrecondition');
          expect((err as CriError).details).toContain(`container bidi of pod default/mounts-${handler} cannot run in a kata VM: mount /data (host path ${shared}) asks for Bidirectional mount propagation (rshared), which is not supported`);
          expect((await exec(slaveId, ['echo', 'pod-still-up'])).stdout).toBe('pod-still-up\n');
        }
        await cri.removeContainer({ container_id });
        await removePod(`mounts-${handler}`, podId, config, withShared);
      }
    } finally {
      execFileSync('umount', [shared]);
    }
  });
});
