// The shim's configuration, parsed once into a typed, validated object.
// Which file: config-location.ts; TOML with drop-ins: toml-config.ts; JSON: here.
// Every bad value is rejected with the file, the key and the reason.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { Accelerator, GuestRootfs, HYPERVISOR_KINDS, HypervisorKind } from '../hypervisors/hypervisor';
import type { IgnoredKey } from './kata-keys';
import { extraArgsRefusal, VIRTIO_FS_CACHE_MODES, VirtioFsCache } from '../hypervisors/virtiofsd';
import { DEFAULT_VSOCK_BACKEND } from '../hypervisors/vsock-backend';

/** Kata's shared_fs values kata-ts implements. */
export const SHARED_FS_KINDS = ['virtio-9p', 'virtio-fs'] as const;
export type SharedFs = (typeof SHARED_FS_KINDS)[number];
/** How the shim reaches the agent in a QEMU guest (Cloud Hypervisor and Firecracker: hybrid vsock only). */
export const QEMU_AGENT_CHANNELS = ['virtio-serial', 'hybrid-vsock', 'auto'] as const;
export type QemuAgentChannel = (typeof QEMU_AGENT_CHANNELS)[number];

export interface HypervisorConfig {
  /** Which driver runs the VM: the one `[hypervisor.<kind>]` section of the TOML form. */
  kind: HypervisorKind;
  path: string;
  accelerator: Accelerator;
  kernel: string;
  /** The rootfs: a DAX image (shared through the host page cache) or an initrd; exactly one is set. */
  image: string;
  initrd: string;
  kernelParams: string[];
  memoryMiB: number;
  vcpus: number;
  /**
   * How far Update and new containers may grow the VM (vCPU/memory hot-plug), as
   * Kata's default_maxvcpus/default_maxmemory: 0 means the host's CPU count / half the
   * host's memory; the pod cgroup's limits cap both. sandbox/resources.ts resolves them.
   */
  maxVcpus: number;
  maxMemoryMiB: number;
  /**
   * How the sandbox's shared directory reaches the guest (Kata's shared_fs): QEMU
   * "virtio-9p" (the default: no daemon, private guest RAM) or "virtio-fs" (one
   * confined virtiofsd, guest RAM in shared memory); Cloud Hypervisor "virtio-fs" only.
   */
  sharedFs: SharedFs;
  /** The virtiofsd serving the shared directory when sharedFs is virtio-fs (QEMU's C one or the Rust one). */
  virtioFsDaemon: string;
  /** Kata's virtio_fs_cache: "never", "auto" or "always" (how much of the shared files the guest may cache). */
  virtioFsCache: VirtioFsCache;
  /** Kata's virtio_fs_extra_args: only --thread-pool-size=N and --announce-submounts (hypervisors/virtiofsd.ts). */
  virtioFsExtraArgs: string[];
  /**
   * QEMU only: how the shim reaches the agent. "virtio-serial" (the default: no daemon,
   * private guest RAM) or "hybrid-vsock": vsock ports 1024 (agent) and 1026 (debug
   * console), as Kata's, through vhost-user-vsock-pci and one vhost-device-vsock per
   * sandbox (guest RAM in shared memory), the protocol Cloud Hypervisor and Firecracker speak.
   * "auto": hybrid-vsock where vsockBackend is installed and ksm is not "on",
   * virtio-serial otherwise (hypervisors/qemu/agent-channel-choice.ts).
   */
  agentChannel: QemuAgentChannel;
  /** The vhost-device-vsock binary for agentChannel "hybrid-vsock" (scripts/fetch-vhost-device-vsock.sh). */
  vsockBackend: string;
  /**
   * QEMU only: its `-sandbox` option (a seccomp filter QEMU installs on itself), as
   * Kata's `seccompsandbox`; '' leaves QEMU unfiltered.
   */
  seccompSandbox: string;
  /**
   * QEMU only: whether the guest CPU has a virtual PMU (performance counters), which
   * `-cpu host` gives it under KVM; false, as Kata's `cpu_features = "pmu=off"`,
   * passes pmu=off. True (the default) leaves QEMU's CPU model as it is.
   */
  pmu: boolean;
  /**
   * QEMU under TCG only: a cap, in MiB, on QEMU's buffer of translated guest code
   * (`-accel tcg,tb-size=N`); 0 (the default) leaves QEMU's own size (the smaller of
   * 1 GiB and an eighth of the host's memory, touched as code is translated). A smaller
   * buffer holds less host memory per VM and may cost boot time: translations are
   * thrown away and redone when it fills (bench/agent-startup.md).
   */
  tcgTbSizeMiB: number;
  /**
   * Which `io.katacontainers.config.hypervisor.<key>` pod annotations may override this
   * configuration: regular expressions over <key>, as Kata's enable_annotations. Empty:
   * none (config/pod-annotations.ts).
   */
  enableAnnotations: string[];
}

/** Kata's recommended filter: no obsolete syscalls, no set*id, no fork/exec, no scheduler or resource changes. */
export const DEFAULT_QEMU_SECCOMP_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/**
 * The host's KSM (kernel same-page merging) at sandbox start: "on" starts ksmd and lets
 * the VMM mark guest memory mergeable, "off" stops ksmd and keeps guest memory
 * unmergeable, "unchanged" leaves the host switch and the VMM's default alone.
 */
export const KSM_MODES = ['on', 'off', 'unchanged'] as const;
export type KsmMode = (typeof KSM_MODES)[number];

export interface RuntimeConfig {
  hypervisor: HypervisorConfig;
  agent: {
    /** How long the guest may take from VMM start to the agent answering. */
    bootTimeoutMs: number;
    /** Default deadline of agent calls that are not waits or reads. */
    callTimeoutMs: number;
    /** A root shell in the guest for `kata-ts-runtime exec` (Kata's debug_console_enabled). */
    debugConsole: boolean;
  };
  runtime: {
    /** Where each sandbox keeps its VMM sockets, shared directory and console log. */
    stateDir: string;
    ksm: KsmMode;
    /**
     * Kata's sandbox_cgroup_only: true puts the shim daemon and the VMM in the
     * sandbox's cgroup (linux.cgroupsPath of the pod's first container); false only
     * the VMM, and the shim in `overheadCgroup`.
     */
    sandboxCgroupOnly: boolean;
    /** With sandboxCgroupOnly false: the cgroup (path below the root) the shim daemon moves to; '' leaves it where containerd started it. */
    overheadCgroup: string;
    /** Globs of the files the `io.katacontainers.config_path` annotation may name; empty: the annotation is refused. */
    validConfigPaths: string[];
    /**
     * How long a SIGKILLed container init may take to report its exit before the shim
     * stops the VM and ends every process of the pod with 137: a guest that stopped
     * answering must not make a pod unkillable.
     */
    killGraceMs: number;
  };
  /**
   * Set when pod annotations (io.katacontainers.config.hypervisor.*) changed this pod's
   * hypervisor settings: which, and the settings as the configuration had them. A VM
   * they made another than the configuration's is the pod's choice, and so is any VM
   * template made for it.
   */
  podOverrides?: { annotations: string[]; asConfigured: HypervisorConfig };
  /** Kata's [factory]: pods start as clones of a template VM (sandbox/vm-templates.ts). */
  factory: {
    enableTemplate: boolean;
    /**
     * Where templates are kept, one directory each, root's only. A disk filesystem: on
     * tmpfs, pages a clone touches that the template never used are allocated in the
     * template's file (measured: host Shmem grew with what a clone wrote).
     */
    templatePath: string;
    /**
     * Shim daemons kept started ahead of demand, per containerd and namespace: a pod's
     * `start` claims one instead of launching a daemon (shim/spare-pool.ts). 0: none.
     */
    spareShims: number;
    /**
     * Each spare shim holds a VM restored from the template while it waits (sandbox/warm-vm.ts):
     * the pod that claims it skips the restore. Needs enable_template and spare_shims.
     */
    spareVms: boolean;
  };
}

export const DEFAULT_TEMPLATE_PATH = '/var/lib/kata-ts/vm-templates';

/** A bad configuration value; `key` and `reason` let other formats word it their way. */
export class ConfigValueError extends InvalidArgumentError {
  constructor(readonly source: string, readonly key: string, readonly reason: string) {
    super(`${source}: ${key}: ${reason}`);
  }
}

const GUEST_DIR = '/usr/share/kata-ts/guest';

export const VMM_NAMES: Record<HypervisorKind, string> = { qemu: 'QEMU', clh: 'Cloud Hypervisor', firecracker: 'Firecracker' };

/** Bare names are looked up on PATH when the VMM starts. */
const DEFAULT_BINARIES: Record<HypervisorKind, string> = { qemu: 'qemu-system-x86_64', clh: 'cloud-hypervisor', firecracker: 'firecracker' };

export function defaultConfig(kind: HypervisorKind = 'qemu'): RuntimeConfig {
  // Firecracker cannot map the DAX image (no NVDIMM, no virtio-pmem): it boots the initrd.
  const rootfs = kind === 'firecracker' ? { image: '', initrd: `${GUEST_DIR}/initrd.img` } : { image: `${GUEST_DIR}/rootfs.img`, initrd: '' };
  return {
    hypervisor: {
      kind,
      path: DEFAULT_BINARIES[kind],
      accelerator: 'kvm',
      kernel: `${GUEST_DIR}/vmlinux`,
      ...rootfs,
      kernelParams: [],
      memoryMiB: 1024,
      vcpus: 1,
      maxVcpus: 0,
      maxMemoryMiB: 0,
      sharedFs: kind === 'clh' ? 'virtio-fs' : 'virtio-9p',
      // Where Debian's packages put them: QEMU's C virtiofsd (Debian 12), the Rust one (Debian 13).
      virtioFsDaemon: kind === 'clh' ? '/usr/libexec/virtiofsd' : kind === 'qemu' ? '/usr/lib/qemu/virtiofsd' : '',
      // never: the guest caches no names or attributes of shared files. With auto, a
      // container re-created under the same id (ctr allows it) found an empty rootfs for
      // a while: the guest kept the dentries of the previous one (boundary.test.ts 3).
      virtioFsCache: 'never',
      virtioFsExtraArgs: [],
      agentChannel: 'virtio-serial',
      vsockBackend: kind === 'qemu' ? DEFAULT_VSOCK_BACKEND : '',
      seccompSandbox: kind === 'qemu' ? DEFAULT_QEMU_SECCOMP_SANDBOX : '',
      pmu: true,
      tcgTbSizeMiB: 0,
      enableAnnotations: [],
    },
    agent: { bootTimeoutMs: 120_000, callTimeoutMs: 30_000, debugConsole: false },
    runtime: { stateDir: '/run/kata-ts', ksm: 'unchanged', sandboxCgroupOnly: true, overheadCgroup: '', validConfigPaths: [], killGraceMs: 10_000 },
    factory: { enableTemplate: false, templatePath: DEFAULT_TEMPLATE_PATH, spareShims: 0, spareVms: false },
  };
}

/**
 * Hypervisor settings that only some VMMs take. Setting one for another VMM is an
 * error that says why, rather than a value silently ignored.
 */
const ONLY_FOR: Partial<Record<keyof HypervisorConfig, { kinds: readonly HypervisorKind[]; reason: string }>> = {
  accelerator: { kinds: ['qemu'], reason: 'Cloud Hypervisor and Firecracker run guests under KVM only; the accelerator is a QEMU choice' },
  sharedFs: { kinds: ['qemu', 'clh'], reason: 'Firecracker has no shared filesystem' },
  virtioFsDaemon: { kinds: ['qemu', 'clh'], reason: 'Firecracker has no shared filesystem, so no virtiofsd' },
  virtioFsCache: { kinds: ['qemu', 'clh'], reason: 'Firecracker has no shared filesystem, so no virtiofsd' },
  virtioFsExtraArgs: { kinds: ['qemu', 'clh'], reason: 'Firecracker has no shared filesystem, so no virtiofsd' },
  image: { kinds: ['qemu', 'clh'], reason: 'Firecracker has no NVDIMM or virtio-pmem device to map a DAX image; set initrd instead' },
  agentChannel: { kinds: ['qemu'], reason: 'Cloud Hypervisor and Firecracker reach the agent over their own hybrid vsock, always' },
  vsockBackend: { kinds: ['qemu'], reason: 'Cloud Hypervisor and Firecracker have their own vsock device; only QEMU needs vhost-device-vsock' },
  seccompSandbox: { kinds: ['qemu'], reason: "it is QEMU's -sandbox option; Cloud Hypervisor and Firecracker install their own seccomp filters" },
  pmu: { kinds: ['qemu'], reason: "it is a flag of QEMU's -cpu option; kata-ts passes Cloud Hypervisor and Firecracker no CPU features" },
  tcgTbSizeMiB: { kinds: ['qemu'], reason: "it sizes QEMU's TCG translation buffer; Cloud Hypervisor and Firecracker run guests under KVM only" },
};

/** Whether a `[hypervisor.<kind>]` block may set `field`. */
export function hypervisorSettingApplies(kind: HypervisorKind, field: string): boolean {
  const rule = ONLY_FOR[field as keyof HypervisorConfig];
  return !rule || rule.kinds.includes(kind);
}

/**
 * How error messages name a key and the file it came from. The JSON form names
 * RuntimeConfig's own paths in one file; the TOML form its own key names, in the file
 * (main or drop-in) that set the value last.
 */
export interface ConfigNaming {
  keyName(section: string, key: string): string;
  fileOf(section: string, key: string): string;
}

function singleFile(file: string): ConfigNaming {
  return { keyName: (section, key) => `${section}.${key}`, fileOf: () => file };
}

type Section = Record<string, unknown>;

const isTable = (value: unknown): value is Section => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Overlays `raw` (parsed JSON, or what the TOML loader made of its files) on the defaults, checking every key. */
export function parseConfig(raw: unknown, source: string | ConfigNaming): RuntimeConfig {
  const naming = typeof source === 'string' ? singleFile(source) : source;
  const fail: Fail = (section, key, reason) => {
    throw new ConfigValueError(naming.fileOf(section, key), key ? naming.keyName(section, key) : section, reason);
  };
  if (!isTable(raw)) return fail('(top level)', '', 'must be a JSON object');
  const rawHypervisor = isTable(raw.hypervisor) ? raw.hypervisor : {};
  const kind = rawHypervisor.kind ?? 'qemu';
  if (!HYPERVISOR_KINDS.includes(kind as HypervisorKind)) fail('hypervisor', 'kind', `must be one of ${HYPERVISOR_KINDS.map((k) => JSON.stringify(k)).join(', ')}, got ${JSON.stringify(kind)}`);
  const config = defaultConfig(kind as HypervisorKind);
  const sections = config as unknown as Record<string, Section>;
  // Setting one rootfs kind replaces the default of the other (Kata's image/initrd).
  if ('initrd' in rawHypervisor && !('image' in rawHypervisor)) config.hypervisor.image = '';
  if ('image' in rawHypervisor && !('initrd' in rawHypervisor)) config.hypervisor.initrd = '';
  for (const [sectionName, sectionValue] of Object.entries(raw)) {
    const target = sections[sectionName];
    if (!target) fail(sectionName, '', `unknown section (known: ${Object.keys(sections).join(', ')})`);
    if (!isTable(sectionValue)) return fail(sectionName, '', 'must be an object');
    for (const [key, value] of Object.entries(sectionValue)) {
      if (!(key in target)) fail(sectionName, key, `unknown key (known: ${Object.keys(target).join(', ')})`);
      const rule = sectionName === 'hypervisor' ? ONLY_FOR[key as keyof HypervisorConfig] : undefined;
      if (rule && !rule.kinds.includes(config.hypervisor.kind)) fail(sectionName, key, `not a ${VMM_NAMES[config.hypervisor.kind]} setting: ${rule.reason}`);
      const expected = target[key];
      if (Array.isArray(expected)) {
        if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) fail(sectionName, key, 'must be a list of strings');
      } else if (typeof value !== typeof expected) {
        fail(sectionName, key, `must be a ${typeof expected}, got ${JSON.stringify(value)}`);
      }
      target[key] = value;
    }
  }
  checkConfig(config, naming);
  return config;
}

type Fail = (section: string, key: string, reason: string) => never;

/**
 * The value rules every configuration passes, whatever set its values: a file, or a
 * pod annotation on top of one (config/pod-annotations.ts). Throws ConfigValueError.
 */
export function checkConfig(config: RuntimeConfig, naming: ConfigNaming): void {
  const fail: Fail = (section, key, reason) => {
    throw new ConfigValueError(naming.fileOf(section, key), naming.keyName(section, key), reason);
  };
  checkHypervisor(config.hypervisor, fail, naming);
  checkAgent(config.agent, fail);
  checkRuntime(config, fail);
  checkFactory(config, fail);
}

/** Kata's kernel_params: one string of space-separated parameters. */
export function splitKernelParams(value: string): string[] {
  return value.split(/\s+/).filter(Boolean);
}

/**
 * What the configuration's kernel parameters may add up to. x86's command line holds
 * 2048 bytes, the kernel silently cuts what is longer, and the driver puts its own
 * (the rootfs: root=, rootflags=, init=) first.
 */
export const MAX_KERNEL_PARAMS_BYTES = 1536;

/** Spare shim daemons per pool at most: each is an idle Node process. */
export const MAX_SPARE_SHIMS = 8;

/** QEMU's largest TCG translation buffer on a 64-bit host (2 GiB). */
export const MAX_TCG_TB_SIZE_MIB = 2048;

// Value checks, one function per section: a new key's rule goes beside its section's others.

function checkHypervisor(h: HypervisorConfig, fail: Fail, naming: ConfigNaming): void {
  if (h.accelerator !== 'kvm' && h.accelerator !== 'tcg') fail('hypervisor', 'accelerator', `must be "kvm" or "tcg", got ${JSON.stringify(h.accelerator)}`);
  if (Boolean(h.image) === Boolean(h.initrd)) {
    fail('hypervisor', 'image', h.image ? `set together with ${naming.keyName('hypervisor', 'initrd')} (${JSON.stringify(h.initrd)}); set exactly one of them` : 'neither an image nor an initrd is set; set exactly one of them');
  }
  if (!Number.isInteger(h.memoryMiB) || h.memoryMiB < 128) fail('hypervisor', 'memoryMiB', 'must be an integer of at least 128');
  if (!Number.isInteger(h.vcpus) || h.vcpus < 1) fail('hypervisor', 'vcpus', 'must be a positive integer');
  if (!Number.isInteger(h.maxVcpus) || h.maxVcpus < 0) fail('hypervisor', 'maxVcpus', "must be a non-negative integer (0: the host's CPU count)");
  if (!Number.isInteger(h.maxMemoryMiB) || h.maxMemoryMiB < 0) fail('hypervisor', 'maxMemoryMiB', "must be a non-negative integer of MiB (0: half the host's memory)");
  if (h.maxVcpus !== 0 && h.maxVcpus < h.vcpus) fail('hypervisor', 'maxVcpus', `must be 0 (the host's CPU count) or at least the boot vCPUs (${h.vcpus})`);
  if (h.maxMemoryMiB !== 0 && h.maxMemoryMiB < h.memoryMiB) fail('hypervisor', 'maxMemoryMiB', `must be 0 (half the host's memory) or at least the boot memory (${h.memoryMiB} MiB)`);
  const cmdline = h.kernelParams.join(' ');
  // A NUL cannot travel in QEMU's argv, and other control characters are no kernel parameter.
  if (/[\x00-\x1f\x7f]/.test(cmdline)) fail('hypervisor', 'kernelParams', `must not contain control characters, got ${JSON.stringify(cmdline)}`);
  if (Buffer.byteLength(cmdline) > MAX_KERNEL_PARAMS_BYTES) fail('hypervisor', 'kernelParams', `must be at most ${MAX_KERNEL_PARAMS_BYTES} bytes together (the guest's command line holds 2048, and kata-ts adds its own), got ${Buffer.byteLength(cmdline)}`);
  if (!Number.isInteger(h.tcgTbSizeMiB) || h.tcgTbSizeMiB < 0 || h.tcgTbSizeMiB > MAX_TCG_TB_SIZE_MIB) fail('hypervisor', 'tcgTbSizeMiB', `must be an integer of MiB from 1 to ${MAX_TCG_TB_SIZE_MIB} (or 0: QEMU's own size), got ${JSON.stringify(h.tcgTbSizeMiB)}`);
  else if (h.tcgTbSizeMiB > 0 && h.accelerator !== 'tcg') fail('hypervisor', 'tcgTbSizeMiB', `sizes the TCG translation buffer, but ${naming.keyName('hypervisor', 'accelerator')} is ${JSON.stringify(h.accelerator)}; set it to 0 or use "tcg"`);
  if (h.seccompSandbox && !/^(on|off)(,[a-z]+=(allow|deny|children))*$/.test(h.seccompSandbox)) fail('hypervisor', 'seccompSandbox', `must be QEMU -sandbox syntax such as ${JSON.stringify(DEFAULT_QEMU_SECCOMP_SANDBOX)} (or "" for none), got ${JSON.stringify(h.seccompSandbox)}`);
  for (const re of h.enableAnnotations) {
    try {
      new RegExp(re);
    } catch (err) {
      fail('hypervisor', 'enableAnnotations', `${JSON.stringify(re)} is not a regular expression: ${(err as Error).message}`);
    }
  }
  if (!SHARED_FS_KINDS.includes(h.sharedFs)) fail('hypervisor', 'sharedFs', `must be one of ${SHARED_FS_KINDS.map((k) => JSON.stringify(k)).join(', ')}, got ${JSON.stringify(h.sharedFs)}`);
  if (h.kind === 'clh' && h.sharedFs !== 'virtio-fs') fail('hypervisor', 'sharedFs', 'must be "virtio-fs": Cloud Hypervisor has no virtio-9p');
  if (!Array.isArray(h.virtioFsExtraArgs) || !h.virtioFsExtraArgs.every((a) => typeof a === 'string')) fail('hypervisor', 'virtioFsExtraArgs', 'must be a list of strings');
  const extraArgsRefused = extraArgsRefusal(h.virtioFsExtraArgs);
  if (extraArgsRefused) fail('hypervisor', 'virtioFsExtraArgs', extraArgsRefused);
  if (!VIRTIO_FS_CACHE_MODES.includes(h.virtioFsCache)) fail('hypervisor', 'virtioFsCache', `must be one of ${VIRTIO_FS_CACHE_MODES.map((m) => JSON.stringify(m)).join(', ')}, got ${JSON.stringify(h.virtioFsCache)}`);
  // Started as root: a bare name would be whatever PATH finds first.
  if (h.virtioFsDaemon && !path.isAbsolute(h.virtioFsDaemon)) fail('hypervisor', 'virtioFsDaemon', `must be an absolute path, got ${JSON.stringify(h.virtioFsDaemon)}`);
  if (!QEMU_AGENT_CHANNELS.includes(h.agentChannel)) fail('hypervisor', 'agentChannel', `must be one of ${QEMU_AGENT_CHANNELS.map((c) => JSON.stringify(c)).join(', ')}, got ${JSON.stringify(h.agentChannel)}`);
  if (h.kind === 'qemu' && h.agentChannel !== 'virtio-serial' && !path.isAbsolute(h.vsockBackend)) fail('hypervisor', 'vsockBackend', `must be the absolute path of vhost-device-vsock (the agent channel is ${h.agentChannel}), got ${JSON.stringify(h.vsockBackend)}`);
  if (h.kind !== 'firecracker' && h.sharedFs === 'virtio-fs' && !h.virtioFsDaemon) fail('hypervisor', 'virtioFsDaemon', `must name the virtiofsd binary: ${h.kind === 'clh' ? 'Cloud Hypervisor shares the sandbox directory only over virtio-fs' : 'the shared filesystem is virtio-fs'}`);
}

function checkAgent(agent: RuntimeConfig['agent'], fail: Fail): void {
  for (const key of ['bootTimeoutMs', 'callTimeoutMs'] as const) {
    if (!(agent[key] > 0)) fail('agent', key, 'must be a positive number of milliseconds');
  }
}

function checkFactory(config: RuntimeConfig, fail: Fail): void {
  if (!path.isAbsolute(config.factory.templatePath)) fail('factory', 'templatePath', `must be an absolute path, got ${JSON.stringify(config.factory.templatePath)}`);
  const spares = config.factory.spareShims;
  if (!Number.isInteger(spares) || spares < 0 || spares > MAX_SPARE_SHIMS) fail('factory', 'spareShims', `must be an integer from 0 to ${MAX_SPARE_SHIMS} (each spare is an idle shim process), got ${JSON.stringify(spares)}`);
  if (config.factory.spareVms && !(config.factory.enableTemplate && spares > 0)) fail('factory', 'spareVms', 'needs enable_template = true and spare_shims > 0: a spare VM is restored from the template by a spare shim');
}

function checkRuntime(config: RuntimeConfig, fail: Fail): void {
  if (!(config.runtime.killGraceMs > 0)) fail('runtime', 'killGraceMs', 'must be a positive number of milliseconds');
  if (!path.isAbsolute(config.runtime.stateDir)) fail('runtime', 'stateDir', `must be an absolute path, got ${JSON.stringify(config.runtime.stateDir)}`);
  for (const glob of config.runtime.validConfigPaths) if (!path.isAbsolute(glob)) fail('runtime', 'validConfigPaths', `each entry must be an absolute path or glob, got ${JSON.stringify(glob)}`);
  const overhead = config.runtime.overheadCgroup;
  if (overhead && overhead.split('/').some((s) => s === '..')) fail('runtime', 'overheadCgroup', `must be a cgroup path below the root, got ${JSON.stringify(overhead)}`);
  const ksm = config.runtime.ksm;
  if (!KSM_MODES.includes(ksm)) fail('runtime', 'ksm', `must be one of ${KSM_MODES.map((m) => JSON.stringify(m)).join(', ')}, got ${JSON.stringify(ksm)}`);
  // Its seccomp filter allows no madvise(MADV_MERGEABLE), and its API has no switch for it.
  if (ksm === 'on' && config.hypervisor.kind === 'firecracker') fail('runtime', 'ksm', '"on" cannot work with Firecracker: it never marks guest memory mergeable, so KSM would not merge it');
  // vhost-user needs the guest RAM in shared memory, and KSM merges only private anonymous pages.
  if (ksm === 'on' && config.hypervisor.kind !== 'firecracker' && config.hypervisor.sharedFs === 'virtio-fs') {
    fail('runtime', 'ksm', '"on" cannot work with shared_fs = "virtio-fs": virtiofsd needs the guest RAM in shared memory, which KSM does not merge; use virtio-9p (QEMU) or ksm = "unchanged"');
  }
  if (ksm === 'on' && config.hypervisor.kind === 'qemu' && config.hypervisor.agentChannel === 'hybrid-vsock') {
    fail('runtime', 'ksm', '"on" cannot work with agent_channel = "hybrid-vsock": vhost-device-vsock needs the guest RAM in shared memory, which KSM does not merge; use virtio-serial or ksm = "unchanged"');
  }
}

/** The guest rootfs the configuration names (validation made sure exactly one is set). */
export function guestRootfs(config: RuntimeConfig): GuestRootfs {
  const h = config.hypervisor;
  return h.image ? { kind: 'image', path: h.image } : { kind: 'initrd', path: h.initrd };
}

/** Whether the configuration's enable_annotations lets pods set `io.katacontainers.config.hypervisor.<key>`. */
export function annotationEnabled(config: RuntimeConfig, key: string): boolean {
  return config.hypervisor.enableAnnotations.some((re) => new RegExp(`^(?:${re})$`).test(key));
}

/**
 * The load-time warning of a configuration that lets pods set guest kernel parameters
 * (pod-annotations.ts allows them only a few), logged with the ignored keys.
 */
export function annotationWarnings(config: RuntimeConfig, key: string, file: string): IgnoredKey[] {
  if (!annotationEnabled(config, 'kernel_params')) return [];
  return [{ key, file, reason: 'used, with a warning: enables the io.katacontainers.config.hypervisor.kernel_params annotation, so pods add guest kernel parameters (only logging and page-size ones: config/pod-annotations.ts POD_KERNEL_PARAMS)' }];
}

/** A configuration read from its file(s). */
export interface LoadedFile {
  config: RuntimeConfig;
  /** The files read, main file first. */
  files: string[];
  /** Kata keys the files set that kata-ts accepted without using (config/kata-keys.ts), and annotationWarnings'. */
  ignoredKeys: IgnoredKey[];
}

/** Reads one configuration file: Kata-style TOML (with its config.d/ drop-ins) if it ends in .toml, else JSON. */
export function loadConfigFile(file: string): LoadedFile {
  if (file.endsWith('.toml')) {
    // Loaded lazily: the TOML loader imports this module.
    return (require('./toml-config') as typeof import('./toml-config')).loadTomlConfig(file);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read configuration ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const config = parseConfig(raw, file);
  return { config, files: [file], ignoredKeys: annotationWarnings(config, 'hypervisor.enableAnnotations', file) };
}
