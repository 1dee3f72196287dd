// containerd's CRI plugin for a private containerd (containerd.ts, option `cri`): its
// config, a private CNI network (a bridge per containerd), readiness, and teardown.
//
// Where containerd 1.6 puts CRI state, and what this module does about it:
// - the plugin's own dirs are <root>/io.containerd.grpc.v1.cri (sandboxes' hostname,
//   hosts, resolv.conf; containers' status) and <state>/io.containerd.grpc.v1.cri
//   (sandboxes' /dev/shm tmpfs): private already;
// - pod network namespaces default to the global /var/run/netns/cni-<uuid>;
//   `netns_mounts_under_state_dir` moves them to <state>/io.containerd.grpc.v1.cri/netns;
// - runc's state defaults to /run/containerd/runc/k8s.io; the runc runtime's `Root`
//   option moves it into our dir;
// - CNI: the config dir is ours; host-local keeps leases in /var/lib/cni/networks/<net>
//   unless given `dataDir` (ours); libcni caches each attachment's result in
//   /var/lib/cni/results/<net>-<sandbox>-<ifname> (not configurable in 1.6; removed on
//   CNI DEL, and by teardown if left); the bridge plugin with isGateway sets
//   net.ipv4.ip_forward=1 (restored by teardown when no other harness containerd runs);
// - shim sockets stay in the global /run/containerd/s, as for ctr (containerd.ts);
// - cgroups: runc makes <cgroup_parent>/<id> per container and mkdir -p's the parent,
//   which kubelet would remove; pods get parents under CriEndpoint.cgroupRoot, and
//   teardown removes that tree (reporting container-level dirs left behind).
// Nothing is pulled: sandbox_image names a locally built image (cri-images.ts).

import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from './cgroups';
import { CriClient, CriError } from './cri';
import { run, runOk } from './exec';
import { DEFAULT_PAUSE_IMAGE_NAME } from './pause-image';

/** Bridge of the CRI containerd in /tmp/kt-<suffix>: "ktbr-<suffix>" (leaks.ts relies on it). */
export const CRI_BRIDGE_PREFIX = 'ktbr-';
/** The containerd namespace the CRI plugin works in (and where its images must be). */
export const CRI_NAMESPACE = 'k8s.io';
export const CRI_PLUGIN = 'io.containerd.grpc.v1.cri';
/** containerd's name for the runc runtime, and the default handler. */
export const RUNC_HANDLER = 'runc';
/** The kata-ts runtime's handler (RuntimeClass handler in Kubernetes terms). */
export const KATA_HANDLER = 'kata';
/** Where containernetworking-plugins puts its binaries on Debian. */
export const CNI_BIN_DIR = '/usr/lib/cni';
/** libcni's cache of ADD results (its default CacheDir + "/results"). */
const CNI_RESULTS_DIR = '/var/lib/cni/results';
/** host-local's default data dir, used only if our dataDir were ignored. */
const CNI_GLOBAL_IPAM_DIR = '/var/lib/cni/networks';
/** The name go-cni gives the loopback network it attaches to every pod on its own. */
const CNI_LOOPBACK_NETWORK = 'cni-loopback';
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
/**
 * Pod cgroups of the CRI containerd in /tmp/kt-<suffix> go below "<this><suffix>", under
 * the same top dir ctr's containers use (containerd.ts' DEFAULT_NAMESPACE), which runc
 * never removes and leak checks ignore (leaks.ts relies on the name).
 */
export const CRI_CGROUP_PREFIX = '/katats-test/cri-';
const CRI_READY_TIMEOUT_MS = 30_000;

export interface CriOptions {
  /**
   * Image of every pod's sandbox container. It must be in the k8s.io namespace before
   * the first RunPodSandbox (importCriImages()); there is no registry to pull it from.
   * Default DEFAULT_PAUSE_IMAGE_NAME.
   */
  sandboxImage?: string;
  /** The `kata` runtime's `options.ConfigPath`: containerd passes it to the shim in Create. */
  kataConfigPath?: string;
  /**
   * Appends CNI's `portmap` plugin to the chain, so PodSandboxConfig.port_mappings
   * (hostPort) work: iptables nat rules in the host netns (chains CNI-HOSTPORT-*, one
   * CNI-DN-* per pod, removed by CNI DEL). Teardown removes the top-level chains if this
   * containerd's start found none and no pod (of any containerd) has hostPort rules in
   * them any more; a CNI-DN-* chain left is reported. Default false: no iptables rules.
   */
  portMappings?: boolean;
  /**
   * The `kata` runtime's `privileged_without_host_devices` (as README.md recommends):
   * a privileged container then gets no host devices, which a VM could not take anyway.
   */
  kataPrivilegedWithoutHostDevices?: boolean;
}

export interface CriNetwork {
  /** CNI network name (also the libcni cache file prefix). */
  name: string;
  /** Linux bridge created at start and deleted by stop(); at most 15 characters. */
  bridge: string;
  /** The pods' IPv4 subnet, e.g. "10.213.57.0/24". */
  subnet: string;
  /** The bridge's address, the pods' default gateway, e.g. "10.213.57.1". */
  gateway: string;
  /** Our CNI config dir (one .conflist). */
  confDir: string;
  /** host-local's lease dir. */
  ipamDir: string;
}

export interface CriEndpoint {
  /** The CRI socket: containerd's own gRPC socket (the CRI plugin registers on it). */
  socket: string;
  namespace: typeof CRI_NAMESPACE;
  sandboxImage: string;
  network: CriNetwork;
  /** A dir for PodSandboxConfig.log_directory (removed with the containerd dir). */
  logDir: string;
  /** The CRI plugin's dirs: <root>/io.containerd.grpc.v1.cri and <state>/io.containerd.grpc.v1.cri. */
  rootDir: string;
  stateDir: string;
  /** Where pod network namespaces are bind-mounted (netns_mounts_under_state_dir). */
  netnsDir: string;
  /**
   * Parent for this containerd's pod cgroups ("/katats-test/cri-<suffix>"): give pods
   * `cgroup_parent: <cgroupRoot>/pod<uid>` (podSandboxConfig() does). Kubelet owns pod
   * cgroups, runtimes only their containers'; so stop() removes this tree, reporting
   * container-level dirs a runtime left.
   */
  cgroupRoot: string;
}

export interface CriPaths {
  dir: string;
  root: string;
  state: string;
  address: string;
}

/** Everything containerd.ts needs from us at start. */
export interface PreparedCri {
  endpoint: CriEndpoint;
  /** TOML tables for containerd's config. */
  toml: string;
  /** What ip_forward was before we started (restored by teardown). */
  ipForwardBefore: string;
  /** libcni's global dirs that did not exist before (removed by teardown once empty). */
  absentCniDirs: string[];
  /** With `portMappings`: whether the host's nat table had no portmap chains at start (teardown may then remove them). */
  portmapChainsAbsent?: boolean;
}

/**
 * Picks a free /24 and a bridge name, creates the bridge, writes the CNI config, and
 * returns the TOML for containerd. Undo with cleanupCriHost() (also on start failure).
 */
export async function prepareCri(p: CriPaths, opts: CriOptions): Promise<PreparedCri> {
  const suffix = path.basename(p.dir).replace(/^kt-/, '');
  const name = `katats-${suffix}`;
  // IFNAMSIZ is 16 including the NUL: "ktbr-" + mkdtemp's 6 characters = 11.
  const bridge = `${CRI_BRIDGE_PREFIX}${suffix}`.slice(0, 15);
  const base = await pickSubnet(suffix);
  const network: CriNetwork = {
    name,
    bridge,
    subnet: `${base}.0/24`,
    gateway: `${base}.1`,
    confDir: path.join(p.dir, 'cni', 'net.d'),
    ipamDir: path.join(p.dir, 'cni', 'ipam'),
  };
  const endpoint: CriEndpoint = {
    socket: p.address,
    namespace: CRI_NAMESPACE,
    sandboxImage: opts.sandboxImage ?? DEFAULT_PAUSE_IMAGE_NAME,
    network,
    logDir: path.join(p.dir, 'logs'),
    rootDir: path.join(p.root, CRI_PLUGIN),
    stateDir: path.join(p.state, CRI_PLUGIN),
    netnsDir: path.join(p.state, CRI_PLUGIN, 'netns'),
    cgroupRoot: `${CRI_CGROUP_PREFIX}${suffix}`,
  };
  const ipForwardBefore = fs.readFileSync(IP_FORWARD, 'utf8').trim();
  const absentCniDirs = [CNI_RESULTS_DIR, path.dirname(CNI_RESULTS_DIR)].filter((d) => !fs.existsSync(d));
  await fs.promises.mkdir(network.confDir, { recursive: true });
  await fs.promises.mkdir(endpoint.logDir, { recursive: true });
  const portmapChainsAbsent = opts.portMappings ? !(await natRules()).some((r) => r.includes(PORTMAP_DNAT_CHAIN)) : undefined;
  await fs.promises.writeFile(path.join(network.confDir, `10-${name}.conflist`), JSON.stringify(cniConflist(network, opts), null, 2));
  await createBridge(network);
  return { endpoint, toml: criToml(p, endpoint, opts), ipForwardBefore, absentCniDirs, portmapChainsAbsent };
}

/** CNI portmap's top-level chains (plugins/meta/portmap, v1.1.1) and its per-pod prefix. */
const PORTMAP_DNAT_CHAIN = 'CNI-HOSTPORT-DNAT';
const PORTMAP_TOP_CHAINS = [PORTMAP_DNAT_CHAIN, 'CNI-HOSTPORT-SETMARK', 'CNI-HOSTPORT-MASQ'];
const PORTMAP_POD_CHAIN_PREFIX = 'CNI-DN-';

/** `iptables -t nat -S` lines (empty if iptables is missing). */
async function natRules(): Promise<string[]> {
  const r = await run('iptables', ['-w', '-t', 'nat', '-S'], { timeoutMs: 10_000 }).catch(() => undefined);
  return r?.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

/** The words of an `iptables -S` rule; "double quoted" ones (comments) as one argument. */
function ruleArgs(rule: string): string[] {
  return [...rule.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]));
}

/**
 * After containerd (and so every CNI DEL) is done: CNI-DN-* chains still there are a
 * pod's hostPort rules that CNI DEL should have removed (reported, then removed); the
 * top-level chains and their jumps go if start found none.
 */
async function cleanupPortmap(chainsAbsentAtStart: boolean): Promise<string[]> {
  const leaked: string[] = [];
  const rules = await natRules();
  const podChains = rules.filter((r) => r.startsWith(`-N ${PORTMAP_POD_CHAIN_PREFIX}`)).map((r) => r.slice(3));
  for (const chain of podChains) {
    leaked.push(`iptables nat chain ${chain} (a pod's hostPort rules)`);
    for (const r of rules.filter((l) => l.startsWith('-A ') && l.endsWith(`-j ${chain}`))) {
      await run('iptables', ['-w', '-t', 'nat', '-D', ...ruleArgs(r.slice(3))], { timeoutMs: 10_000 });
    }
    await run('iptables', ['-w', '-t', 'nat', '-F', chain], { timeoutMs: 10_000 });
    await run('iptables', ['-w', '-t', 'nat', '-X', chain], { timeoutMs: 10_000 });
  }
  const now = await natRules();
  // Another containerd's pods may still forward through them.
  if (!chainsAbsentAtStart || now.some((l) => l.startsWith(`-A ${PORTMAP_DNAT_CHAIN} `))) return leaked;
  // Jumps into the top-level chains from the built-in ones ("-A PREROUTING ... -j CNI-HOSTPORT-DNAT").
  for (const r of now.filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING) /.test(l) && PORTMAP_TOP_CHAINS.some((c) => l.endsWith(`-j ${c}`)))) {
    await run('iptables', ['-w', '-t', 'nat', '-D', ...ruleArgs(r.slice(3))], { timeoutMs: 10_000 });
  }
  for (const chain of PORTMAP_TOP_CHAINS) await run('iptables', ['-w', '-t', 'nat', '-F', chain], { timeoutMs: 10_000 });
  for (const chain of PORTMAP_TOP_CHAINS) await run('iptables', ['-w', '-t', 'nat', '-X', chain], { timeoutMs: 10_000 });
  return leaked;
}

/**
 * The bridge network. Loopback is not in the list: containerd 1.6's CRI plugin attaches
 * `lo` to every pod itself (go-cni's WithLoNetwork, with the `loopback` binary from
 * bin_dir), and a second loopback in the chain would only repeat that.
 */
function cniConflist(n: CriNetwork, opts: CriOptions = {}): object {
  return {
    cniVersion: '1.0.0',
    name: n.name,
    plugins: [
      {
        type: 'bridge',
        bridge: n.bridge,
        isGateway: true,
        // No NAT: pods talk to each other and to the host, never beyond (no iptables rules to leak).
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: n.ipamDir,
          ranges: [[{ subnet: n.subnet, gateway: n.gateway }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
      // hostPort: DNAT on the host (127.0.0.1 included: it sets route_localnet on the bridge and masquerades).
      ...(opts.portMappings ? [{ type: 'portmap', capabilities: { portMappings: true } }] : []),
    ],
  };
}

function criToml(p: CriPaths, e: CriEndpoint, opts: CriOptions): string {
  const q = (s: string): string => JSON.stringify(s); // TOML basic strings accept JSON escapes
  const cri = `plugins.${q(CRI_PLUGIN)}`;
  return [
    `[${cri}]`,
    `  sandbox_image = ${q(e.sandboxImage)}`,
    '  netns_mounts_under_state_dir = true',
    // CRI gives sandboxes oom_score_adj -998, and lowering it needs CAP_SYS_RESOURCE;
    // without it (as on these sandboxed dev VMs) runc's init dies with EACCES. Then
    // clamp to containerd's own value, as containerd does for rootless setups.
    `  restrict_oom_score_adj = ${!hasCapability(CAP_SYS_RESOURCE)}`,
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    `  default_runtime_name = ${q(RUNC_HANDLER)}`,
    `[${cri}.containerd.runtimes.${RUNC_HANDLER}]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.${RUNC_HANDLER}.options]`,
    `  Root = ${q(path.join(p.dir, 'runc'))}`,
    `[${cri}.containerd.runtimes.${KATA_HANDLER}]`,
    '  runtime_type = "io.containerd.kata.v2"',
    // Lets pods pass kata's per-pod settings through to the shim, as with Kata.
    '  pod_annotations = ["io.katacontainers.*"]',
    ...(opts.kataPrivilegedWithoutHostDevices ? ['  privileged_without_host_devices = true'] : []),
    ...(opts.kataConfigPath ? [`[${cri}.containerd.runtimes.${KATA_HANDLER}.options]`, `  ConfigPath = ${q(opts.kataConfigPath)}`] : []),
    `[${cri}.cni]`,
    `  bin_dir = ${q(CNI_BIN_DIR)}`,
    `  conf_dir = ${q(e.network.confDir)}`,
    '  max_conf_num = 1',
    '',
  ].join('\n');
}

const CAP_SYS_RESOURCE = 24;

/** Whether this process (and so the containerd it starts) has the capability. */
function hasCapability(bit: number): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(bit))) !== 0n;
}

/**
 * A /24 in 10.200.0.0-10.239.255.0 derived from the dir's random suffix, skipping any
 * that overlaps an existing route (another harness containerd's bridge included).
 */
async function pickSubnet(seed: string): Promise<string> {
  const routes = (await runOk('ip', ['-o', '-4', 'route', 'show', 'table', 'all'])).stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((d) => d && d !== 'default' && /^[\d.]+(\/\d+)?$/.test(d))
    .map(parseCidr);
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  for (let i = 0; i < 40 * 256; i++) {
    const n = (h + i) % (40 * 256);
    const base = `10.${200 + Math.floor(n / 256)}.${n % 256}`;
    const mine = parseCidr(`${base}.0/24`);
    if (!routes.some((r) => overlaps(r, mine))) return base;
  }
  throw new Error('no free /24 in 10.200.0.0/13 for the CRI bridge');
}

function parseCidr(cidr: string): { addr: number; bits: number } {
  const [ip, bits] = cidr.split('/');
  const addr = ip.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
  return { addr, bits: bits === undefined ? 32 : Number(bits) };
}

function overlaps(a: { addr: number; bits: number }, b: { addr: number; bits: number }): boolean {
  const bits = Math.min(a.bits, b.bits);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((a.addr & mask) >>> 0) === ((b.addr & mask) >>> 0);
}

/**
 * Created here rather than by the bridge plugin on the first pod, so that it exists for
 * the whole life of the containerd: a leak snapshot taken after start (before any pod)
 * already holds it, and stop() knows the link is ours to delete. The address is the
 * one the plugin would set (gateway/prefix), which it then accepts as is.
 */
async function createBridge(n: CriNetwork): Promise<void> {
  await runOk('ip', ['link', 'add', 'name', n.bridge, 'type', 'bridge']);
  try {
    await runOk('ip', ['addr', 'add', `${n.gateway}/24`, 'dev', n.bridge]);
    await runOk('ip', ['link', 'set', n.bridge, 'up']);
  } catch (e) {
    await run('ip', ['link', 'del', n.bridge], { timeoutMs: 10_000 });
    throw e;
  }
}

/**
 * Waits until the CRI plugin answers and reports RuntimeReady and NetworkReady (the
 * latter once it has loaded our CNI config). `logs` feeds the error message.
 */
export async function waitCriReady(endpoint: CriEndpoint, logs: () => string, timeoutMs = CRI_READY_TIMEOUT_MS): Promise<void> {
  const client = new CriClient(endpoint.socket, { timeoutMs: 5_000 });
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      try {
        const { status } = await client.status();
        const notReady = (status?.conditions ?? []).filter((c) => !c.status);
        const seen = new Set((status?.conditions ?? []).map((c) => c.type));
        if (notReady.length === 0 && seen.has('RuntimeReady') && seen.has('NetworkReady')) return;
        last = notReady.map((c) => `${c.type}: ${c.reason} ${c.message}`).join('; ');
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`CRI plugin not ready after ${timeoutMs} ms: ${last}\n--- containerd log ---\n${logs()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}

export interface CriTeardown {
  /** "pod sandbox <id> (<namespace>/<name>)" and "pod container <id> (<name>)" still present. */
  leftovers: string[];
  /** Network namespace paths the removed sandboxes had (checked again after containerd exits). */
  netnsPaths: string[];
  /** Ids of the sandboxes found (their CNI caches are checked after containerd exits). */
  sandboxIds: string[];
}

/**
 * Stops and removes, through CRI as kubelet would, every pod sandbox still present
 * (which also removes their containers, tears down their network, unmounts /dev/shm).
 * Runs while containerd is still up; never throws (stop() must get on with it).
 */
export async function removeCriPods(endpoint: CriEndpoint): Promise<CriTeardown> {
  const client = new CriClient(endpoint.socket, { timeoutMs: 60_000 });
  const leftovers: string[] = [];
  const netnsPaths: string[] = [];
  const sandboxIds: string[] = [];
  try {
    const containers = await client.listContainers().then((r) => r.containers, () => []);
    const pods = await client.listPodSandbox().then((r) => r.items, () => []);
    for (const pod of pods) {
      sandboxIds.push(pod.id);
      const m = pod.metadata;
      leftovers.push(`pod sandbox ${pod.id} (${m?.namespace ?? ''}/${m?.name ?? ''}, ${pod.state})`);
      for (const c of containers.filter((c) => c.pod_sandbox_id === pod.id)) {
        leftovers.push(`pod container ${c.id} (${c.metadata?.name ?? ''}, ${c.state})`);
      }
      const netns = await sandboxNetnsPath(client, pod.id);
      if (netns) netnsPaths.push(netns);
      for (const step of ['stopPodSandbox', 'removePodSandbox'] as const) {
        try {
          await client[step]({ pod_sandbox_id: pod.id });
        } catch (e) {
          leftovers.push(`  ${step} ${pod.id} failed: ${(e as CriError).message}`);
        }
      }
    }
  } finally {
    client.close();
  }
  return { leftovers, netnsPaths, sandboxIds };
}

/**
 * The sandbox's netns path, from the OCI spec in PodSandboxStatus(verbose)'s "info"
 * JSON (containerd 1.6: pid, processStatus, runtimeHandler, runtimeType, config,
 * runtimeSpec, cniResult...). Undefined if the pod has none (host network) or is gone.
 */
export async function sandboxNetnsPath(client: CriClient, podSandboxId: string): Promise<string | undefined> {
  try {
    const r = await client.podSandboxStatus({ pod_sandbox_id: podSandboxId, verbose: true });
    const info = JSON.parse(r.info.info ?? '{}') as {
      runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } };
    };
    return info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path || undefined;
  } catch {
    return undefined;
  }
}

/**
 * After containerd exited: deletes the bridge, and removes what CRI/CNI left outside our
 * dir (netns mounts, IPAM leases, libcni result caches). Returns the paths it had to
 * remove, which are leaks a clean teardown would not have left.
 */
export async function cleanupCriHost(
  prepared: PreparedCri,
  teardown: CriTeardown,
  opts: { otherHarnessAlive: boolean },
): Promise<string[]> {
  const { endpoint, ipForwardBefore } = prepared;
  const removed: string[] = [];
  // Deleting the bridge also drops its address and route, and detaches any veth left.
  await run('ip', ['link', 'del', endpoint.network.bridge], { timeoutMs: 10_000 });

  // Our own pod-level dirs are expected; anything deeper is a container cgroup that the
  // runtime should have removed.
  const cgroups = removeCgroupTree(endpoint.cgroupRoot);
  const depthBelowRoot = (dir: string): number =>
    dir.slice(dir.indexOf(endpoint.cgroupRoot) + endpoint.cgroupRoot.length).split('/').filter(Boolean).length;
  removed.push(...cgroups.removed.filter((d) => depthBelowRoot(d) >= 2));
  removed.push(...cgroups.failed.map((f) => `(cgroup busy, not removed) ${f}`));

  const netnsOutsideDir = teardown.netnsPaths.filter((p) => !p.startsWith(`${path.dirname(endpoint.stateDir)}/`));
  for (const ns of netnsOutsideDir) {
    if (!fs.existsSync(ns)) continue;
    await run('umount', ['-l', ns], { timeoutMs: 10_000 });
    fs.rmSync(ns, { force: true });
    removed.push(ns);
  }
  if (prepared.portmapChainsAbsent !== undefined) removed.push(...(await cleanupPortmap(prepared.portmapChainsAbsent)));
  const ipam = path.join(CNI_GLOBAL_IPAM_DIR, endpoint.network.name);
  if (fs.existsSync(ipam)) {
    fs.rmSync(ipam, { recursive: true, force: true });
    removed.push(ipam);
  }
  // Sandboxes CRI never got to remove (containerd died) still have their dir here.
  const sandboxIds = new Set([...teardown.sandboxIds, ...readdirOr(path.join(endpoint.rootDir, 'sandboxes'))]);
  for (const f of readdirOr(CNI_RESULTS_DIR)) {
    const ours = f.startsWith(`${endpoint.network.name}-`) ||
      [...sandboxIds].some((id) => f.startsWith(`${CNI_LOOPBACK_NETWORK}-${id}-`));
    if (!ours) continue;
    fs.rmSync(path.join(CNI_RESULTS_DIR, f), { force: true });
    removed.push(path.join(CNI_RESULTS_DIR, f));
  }
  // Host state rather than leftover objects, so restored rather than reported, and only
  // when no other harness containerd (whose pods may need it) is running.
  if (!opts.otherHarnessAlive) {
    for (const d of prepared.absentCniDirs) {
      try {
        fs.rmdirSync(d); // only if empty: anything inside belongs to someone
      } catch {
        /* not empty, or already gone */
      }
    }
    if (ipForwardBefore === '0') {
      try {
        fs.writeFileSync(IP_FORWARD, '0');
      } catch {
        /* read-only /proc/sys (unprivileged container): nothing we could change either */
      }
    }
  }
  return removed;
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
