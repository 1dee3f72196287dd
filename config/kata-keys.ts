// Kata's configuration keys that kata-ts does not map onto its own configuration. A
// Kata file (the one a Kata user has at /etc/kata-containers/configuration.toml) sets
// about a hundred; toml-config.ts maps the ones kata-ts implements, and this module
// judges the rest, one table per block, each key in one of two classes:
//  - harmless: ignoring any value loses nothing that matters to a pod (performance
//    knobs, debugging, features whose other keys are refused when switched on);
//  - only: ignoring is right only at the values listed (Kata's default, or what kata-ts
//    does anyway); any other value asks for something kata-ts cannot do, so the file
//    is refused naming the key and why.
// Either way an accepted key is reported once (`kata-ts-runtime env`, the shim's log).
// Keys neither kata-ts nor Kata has stay errors: a typo must not pass silently.
import { HypervisorKind } from '../hypervisors/hypervisor';

/** The TOML type Kata decodes a key as; another type is refused, as Kata refuses it. */
export type KataValueType = 'boolean' | 'string' | 'integer' | 'strings' | 'tables';

type Scalar = string | number | boolean;

export interface KataKeyRule {
  type: KataValueType;
  /** What kata-ts does instead of what the key configures: the warning, and the reason of a refusal. */
  ours: string;
  /** The values ignoring loses nothing of ('empty': an empty list); absent: every value is harmless. */
  only?: readonly Scalar[] | 'empty';
}

/** A key kata-ts accepted without using it: reported once per load. */
export interface IgnoredKey {
  /** `<block>.<key>`, e.g. `hypervisor.qemu.cpu_features`. */
  key: string;
  /** The file that set it last. */
  file: string;
  reason: string;
}

const harmless = (type: KataValueType, ours: string): KataKeyRule => ({ type, ours });
const only = (type: KataValueType, values: readonly Scalar[] | 'empty', ours: string): KataKeyRule => ({ type, ours, only: values });

const TYPE_NAMES: Record<KataValueType, string> = { boolean: 'a boolean', string: 'a string', integer: 'a non-negative integer', strings: 'a list of strings', tables: 'a list of tables' };

function hasType(type: KataValueType, value: unknown): boolean {
  switch (type) {
    case 'boolean':
    case 'string':
      return typeof value === type;
    case 'integer':
      return Number.isInteger(value) && (value as number) >= 0;
    case 'strings':
      return Array.isArray(value) && value.every((v) => typeof v === 'string');
    case 'tables':
      return Array.isArray(value) && value.every((v) => typeof v === 'object' && v !== null && !Array.isArray(v));
  }
}

/** Why `value` cannot be accepted for a key of `rule`; undefined when it can (with the warning). */
export function refusal(rule: KataKeyRule, value: unknown): string | undefined {
  if (!hasType(rule.type, value)) return `must be ${TYPE_NAMES[rule.type]}, got ${JSON.stringify(value)}`;
  if (rule.only === undefined) return undefined;
  if (rule.only === 'empty') return (value as unknown[]).length === 0 ? undefined : `${JSON.stringify(value)} cannot be honoured: ${rule.ours} (accepted: [])`;
  if (rule.only.includes(value as Scalar)) return undefined;
  return `${JSON.stringify(value)} cannot be honoured: ${rule.ours} (accepted: ${rule.only.map((v) => JSON.stringify(v)).join(', ')})`;
}

/** What the driver shares the sandbox directory over, for the shared-filesystem keys. */
const SHARE: Record<HypervisorKind, string> = {
  qemu: 'QEMU shares the sandbox directory over virtio-9p (msize=262144, cache=none) or, with shared_fs = "virtio-fs", one virtiofsd run with kata-ts\'s own confining flags (hypervisors/virtiofsd.ts), no DAX window',
  clh: 'Cloud Hypervisor shares it over virtio-fs, one virtiofsd per directory run with kata-ts\'s own confining flags (hypervisors/virtiofsd.ts), no DAX window',
  firecracker: 'Firecracker has no shared filesystem',
};

/** `[hypervisor.<kind>]`: Kata's hypervisor keys kata-ts does not map (toml-config.ts maps the rest). */
export function kataHypervisorKeys(kind: HypervisorKind): Record<string, KataKeyRule> {
  const share = SHARE[kind];
  return {
    // The machine and the guest's boot.
    machine_type: kind === 'qemu' ? only('string', ['q35'], 'kata-ts builds a q35 machine') : harmless('string', 'the VMM has one machine type'),
    machine_accelerators: only('string', [''], 'kata-ts passes no machine options beyond its own'),
    // QEMU maps it (toml-config.ts: "pmu=off" is its `pmu` setting); the other VMMs get no CPU feature flags.
    cpu_features: only('string', ['', 'pmu=off'], 'kata-ts passes this VMM no CPU feature flags; its own CPU model decides whether the guest has a PMU'),
    rootfs_type: only('string', ['ext4'], 'the guest image is ext4, mounted with DAX'),
    firmware: only('string', [''], 'the VMM boots the kernel directly with its built-in firmware'),
    firmware_volume: only('string', [''], 'the VMM boots the kernel directly with its built-in firmware'),
    pflashes: only('strings', 'empty', 'kata-ts attaches no flash images'),
    kernel_verity_params: only('string', [''], 'kata-ts does not verify the guest image with dm-verity'),
    disable_image_nvdimm: only('boolean', [false], 'the image is mapped read-only as an NVDIMM (DAX); kata-ts has no virtio-blk rootfs'),
    use_legacy_serial: harmless('boolean', 'the guest console is always a serial port the shim reads'),
    enable_debug: harmless('boolean', "kata-ts's own log level decides its output; the last 128 KiB of the guest console are always kept"),
    disable_nesting_checks: harmless('boolean', 'kata-ts changes nothing when it runs nested'),
    extra_monitor_socket: only('string', [''], 'kata-ts opens no monitor socket besides its own QMP socket'),
    valid_hypervisor_paths: harmless('strings', 'a pod cannot choose the VMM binary: the `path` annotation is not implemented'),
    // Confidential guests.
    confidential_guest: only('boolean', [false], 'kata-ts runs no confidential guests (SEV, SNP, TDX)'),
    sev_snp_guest: only('boolean', [false], 'kata-ts runs no confidential guests (SEV, SNP, TDX)'),
    snp_id_block: harmless('string', 'used by SNP guests only, which kata-ts does not run'),
    snp_id_auth: harmless('string', 'used by SNP guests only, which kata-ts does not run'),
    snp_guest_policy: harmless('integer', 'used by SNP guests only, which kata-ts does not run'),
    tdx_quote_generation_service_socket_port: harmless('integer', 'used by TDX guests only, which kata-ts does not run'),
    measurement_algo: harmless('string', 'used by confidential guests only, which kata-ts does not run'),
    guest_extension_images: only('tables', 'empty', 'kata-ts attaches no guest extension images'),
    // Running the VMM.
    rootless: only('boolean', [false], 'kata-ts runs the VMM as root'),
    // Safer, not weaker: the VMM keeps its own filter.
    disable_seccomp: harmless('boolean', 'Cloud Hypervisor and Firecracker keep their own seccomp filters'),
    // A difference worth knowing on SELinux hosts, but never one a pod notices.
    disable_selinux: harmless('boolean', 'kata-ts starts the VMM without an SELinux label (as disable_selinux = true)'),
    disable_guest_selinux: only('boolean', [true], 'the guest has no SELinux; kata-ts drops the containers\' labels'),
    jailer_path: only('string', [''], 'kata-ts runs the VMM without a jailer'),
    valid_jailer_paths: harmless('strings', 'a pod cannot choose a jailer: kata-ts runs none'),
    hypervisor_loglevel: harmless('integer', "kata-ts keeps the VMM's default log level"),
    // Memory.
    memory_slots: harmless('integer', 'kata-ts keeps 8 DIMM slots for memory hot-plug'),
    memory_offset: only('integer', [0], 'kata-ts sizes the device memory area itself'),
    enable_virtio_mem: only('boolean', [false], 'memory is hot-plugged as DIMMs, not virtio-mem'),
    enable_mem_prealloc: only('boolean', [false], 'guest memory is allocated as the guest touches it'),
    reclaim_guest_freed_memory: only('boolean', [false], 'kata-ts has no free-page-reporting balloon'),
    enable_hugepages: only('boolean', [false], 'guest memory is backed by normal pages'),
    file_mem_backend: only('string', [''], 'guest memory is anonymous memory, not a file'),
    valid_file_mem_backends: harmless('strings', 'a pod cannot choose a memory backend file: the annotation is not implemented'),
    enable_numa: only('boolean', [false], 'the guest has one NUMA node'),
    numa_mapping: only('strings', 'empty', 'the guest has one NUMA node'),
    enable_guest_swap: only('boolean', [false], 'kata-ts gives the guest no swap device'),
    guest_memory_dump_path: harmless('string', 'kata-ts writes no guest memory dump when a guest panics'),
    guest_memory_dump_paging: harmless('boolean', 'kata-ts writes no guest memory dump when a guest panics'),
    // Devices: hot-plug is virtio-blk on PCIe root ports kata-ts reserves itself.
    default_bridges: harmless('integer', 'devices are hot-plugged into PCIe root ports kata-ts reserves, not PCI bridges'),
    pcie_root_port: harmless('integer', 'kata-ts reserves its own PCIe root ports for hot-plug and passes no VFIO devices'),
    pcie_switch_port: harmless('integer', 'kata-ts passes no VFIO devices'),
    hot_plug_vfio: only('string', ['no-port'], 'kata-ts passes no VFIO devices'),
    cold_plug_vfio: only('string', ['no-port'], 'kata-ts passes no VFIO devices'),
    hotplug_vfio_on_root_bus: only('boolean', [false], 'kata-ts passes no VFIO devices'),
    enable_iommu: only('boolean', [false], 'the guest has no vIOMMU'),
    enable_iommu_platform: only('boolean', [false], 'the guest has no vIOMMU'),
    // Block devices. Kata's driver and AIO choices only change how fast a disk is: every value Kata takes is accepted.
    disable_block_device_use: harmless('boolean', "a container's rootfs always reaches the guest through the shared directory, never as its block device"),
    block_device_driver: only('string', ['virtio-scsi', 'virtio-blk', 'virtio-blk-ccw', 'virtio-mmio', 'nvdimm'], 'block devices are always hot-plugged as virtio-blk-pci'),
    block_device_aio: only('string', ['threads', 'native', 'io_uring'], "block devices use QEMU's default I/O (threads)"),
    block_device_cache_set: only('boolean', [false], "block devices use QEMU's default cache mode"),
    block_device_cache_direct: only('boolean', [false], "block devices use QEMU's default cache mode"),
    block_device_cache_noflush: only('boolean', [false], "block devices use QEMU's default cache mode"),
    block_device_logical_sector_size: only('integer', [0], "block devices keep QEMU's default sector sizes"),
    block_device_physical_sector_size: only('integer', [0], "block devices keep QEMU's default sector sizes"),
    enable_iothreads: harmless('boolean', 'block I/O runs in the VMM\'s main loop'),
    indep_iothreads: harmless('integer', 'block I/O runs in the VMM\'s main loop'),
    enable_vhost_user_store: only('boolean', [false], 'kata-ts has no vhost-user block devices'),
    vhost_user_store_path: harmless('string', 'kata-ts has no vhost-user block devices'),
    valid_vhost_user_store_paths: harmless('strings', 'kata-ts has no vhost-user block devices'),
    vhost_user_reconnect_timeout_sec: harmless('integer', 'kata-ts has no vhost-user block devices'),
    disk_rate_limiter_bw_max_rate: only('integer', [0], 'kata-ts does not rate-limit disks'),
    disk_rate_limiter_bw_one_time_burst: only('integer', [0], 'kata-ts does not rate-limit disks'),
    disk_rate_limiter_ops_max_rate: only('integer', [0], 'kata-ts does not rate-limit disks'),
    disk_rate_limiter_ops_one_time_burst: only('integer', [0], 'kata-ts does not rate-limit disks'),
    // The shared directory: another transport is slower or faster, never different to a container.
    valid_virtio_fs_daemon_paths: harmless('strings', `${share}; a pod cannot choose a virtiofsd`),
    virtio_fs_cache_size: harmless('integer', share),
    virtio_fs_queue_size: harmless('integer', share),
    msize_9p: harmless('integer', share),
    // Network. vhost-net only makes the NIC faster.
    disable_vhost_net: harmless('boolean', "the NIC is served by the VMM's own virtio-net backend, never vhost-net"),
    rx_rate_limiter_max_rate: only('integer', [0], 'kata-ts does not rate-limit the network'),
    tx_rate_limiter_max_rate: only('integer', [0], 'kata-ts does not rate-limit the network'),
    net_rate_limiter_bw_max_rate: only('integer', [0], 'kata-ts does not rate-limit the network'),
    net_rate_limiter_bw_one_time_burst: only('integer', [0], 'kata-ts does not rate-limit the network'),
    net_rate_limiter_ops_max_rate: only('integer', [0], 'kata-ts does not rate-limit the network'),
    net_rate_limiter_ops_one_time_burst: only('integer', [0], 'kata-ts does not rate-limit the network'),
    // Entropy: the guest's virtio-rng draws on the host's getrandom(), as /dev/urandom does; /dev/random is no stronger.
    entropy_source: only('string', ['/dev/urandom', '/dev/random', ''], "the guest's virtio-rng reads the host's getrandom()"),
    valid_entropy_sources: harmless('strings', 'a pod cannot choose an entropy source: the annotation is not implemented'),
    // Inside the guest.
    guest_hook_path: only('string', [''], 'the agent runs no OCI hooks from the guest image'),
  };
}

/** `[factory]`: VMCache (templates are implemented: toml-config.ts). */
export const KATA_FACTORY_KEYS: Record<string, KataKeyRule> = {
  vm_cache_number: only('integer', [0], 'kata-ts has no VMCache'),
  vm_cache_endpoint: harmless('string', 'kata-ts has no VMCache'),
};

/** `[agent.kata]`. */
export const KATA_AGENT_KEYS: Record<string, KataKeyRule> = {
  enable_debug: harmless('boolean', "the agent's log level is kata-ts's own"),
  enable_tracing: harmless('boolean', 'the agent produces no OpenTelemetry traces'),
  kernel_modules: only('strings', 'empty', 'the agent loads no kernel modules'),
  cdh_api_timeout: harmless('integer', 'the guest runs no Confidential Data Hub'),
  launch_process_timeout: harmless('integer', 'images are never pulled in the guest'),
  visible_cdi_devices: only('boolean', [false], 'kata-ts passes no CDI devices'),
};

/** `[runtime]`. */
export const KATA_RUNTIME_KEYS: Record<string, KataKeyRule> = {
  enable_debug: harmless('boolean', "kata-ts's log level decides its output"),
  enable_tracing: harmless('boolean', 'kata-ts produces no OpenTelemetry traces'),
  jaeger_endpoint: harmless('string', 'kata-ts produces no OpenTelemetry traces'),
  jaeger_user: harmless('string', 'kata-ts produces no OpenTelemetry traces'),
  jaeger_password: harmless('string', 'kata-ts produces no OpenTelemetry traces'),
  enable_pprof: harmless('boolean', 'kata-ts serves no pprof endpoint'),
  // The pod netns's interface mirrored to a tap with tc: Kata's tcfilter model.
  internetworking_model: only('string', ['tcfilter'], 'kata-ts connects the VM with tc mirroring between the pod interface and a tap (tcfilter)'),
  disable_new_netns: only('boolean', [false], 'the VMM always runs in the pod network namespace'),
  // Kata's default (true) skips the profile in the guest; kata-ts applies it, as runc does: stricter, never looser.
  disable_guest_seccomp: harmless('boolean', "the guest applies each container's seccomp profile (crun)"),
  guest_selinux_label: only('string', [''], 'the guest has no SELinux'),
  enable_vcpus_pinning: only('boolean', [false], 'vCPU threads are not pinned'),
  static_sandbox_resource_mgmt: only('boolean', [false], 'the VM boots at default_memory/default_vcpus and containers grow it by hot-plug'),
  sandbox_bind_mounts: only('strings', 'empty', 'kata-ts shares no extra host paths with the guest'),
  vfio_mode: only('string', ['guest-kernel', 'vfio'], 'kata-ts passes no VFIO devices'),
  pod_resource_api_sock: harmless('string', 'kata-ts passes no VFIO devices'),
  // emptyDir volumes are host directories in the shared directory: Kata's disable_guest_empty_dir = true.
  disable_guest_empty_dir: harmless('boolean', 'emptyDir volumes are host directories shared with the guest'),
  emptydir_mode: only('string', ['shared-fs'], 'emptyDir volumes are host directories shared with the guest'),
  experimental: only('strings', 'empty', 'kata-ts has none of Kata\'s experimental features'),
  experimental_force_guest_pull: only('boolean', [false], 'images are never pulled in the guest'),
  create_container_timeout: harmless('integer', "creating a container is bounded by [agent.kata] call_timeout"),
  dan_conf: harmless('string', 'kata-ts reads no directly attachable network configuration'),
  kubelet_root_dir: harmless('string', "kata-ts does not read kubelet's directory"),
};

/** `[image]` (Kata 3.0's placeholder for guest image pulls). */
export const KATA_IMAGE_KEYS: Record<string, KataKeyRule> = {
  service_offload: only('boolean', [false], 'images are pulled on the host by containerd, never in the guest'),
  provision: harmless('string', 'images are pulled on the host by containerd, never in the guest'),
};
