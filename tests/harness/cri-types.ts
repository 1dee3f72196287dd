// TypeScript shapes of the CRI runtime.v1 messages in protos/cri/api.proto, with the
// proto's own (snake_case) field names, as the client encodes and decodes them.
//
// Requests: every field optional (proto3 defaults apply); enums by name or number.
// Responses: every scalar, list and map is present (proto3 defaults filled in), unset
// message fields are null, enums are names, 64-bit integers are JS numbers (exact up to
// 2^53: byte and nanosecond counters; created_at loses its last nanosecond digits) and
// bytes are Buffers.

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type MountPropagation = 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
export type ProfileType = 'RuntimeDefault' | 'Unconfined' | 'Localhost';
export type Protocol = 'TCP' | 'UDP' | 'SCTP';

type Labels = Record<string, string>;

// ---- request side --------------------------------------------------------------------

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  target_id?: string;
}

export interface Int64Value {
  value: number;
}

export interface SecurityProfile {
  /** RuntimeDefault when omitted (the proto3 zero value), so `{}` means "runtime default". */
  profile_type?: ProfileType;
  localhost_ref?: string;
}

export interface SELinuxOption {
  user?: string;
  role?: string;
  type?: string;
  level?: string;
}

export interface LinuxContainerResources {
  cpu_period?: number;
  cpu_quota?: number;
  cpu_shares?: number;
  memory_limit_in_bytes?: number;
  oom_score_adj?: number;
  cpuset_cpus?: string;
  cpuset_mems?: string;
  hugepage_limits?: Array<{ page_size?: string; limit?: number }>;
  unified?: Labels;
  memory_swap_limit_in_bytes?: number;
}

export interface PodSandboxMetadata {
  name?: string;
  uid?: string;
  namespace?: string;
  attempt?: number;
}

export interface LinuxSandboxSecurityContext {
  namespace_options?: NamespaceOption;
  selinux_options?: SELinuxOption;
  run_as_user?: Int64Value;
  readonly_rootfs?: boolean;
  supplemental_groups?: number[];
  privileged?: boolean;
  seccomp_profile_path?: string;
  run_as_group?: Int64Value;
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}

export interface PodSandboxConfig {
  metadata?: PodSandboxMetadata;
  hostname?: string;
  log_directory?: string;
  dns_config?: { servers?: string[]; searches?: string[]; options?: string[] };
  port_mappings?: Array<{ protocol?: Protocol; container_port?: number; host_port?: number; host_ip?: string }>;
  labels?: Labels;
  annotations?: Labels;
  linux?: {
    cgroup_parent?: string;
    security_context?: LinuxSandboxSecurityContext;
    sysctls?: Labels;
    overhead?: LinuxContainerResources;
    resources?: LinuxContainerResources;
  };
}

export interface ImageSpec {
  image?: string;
  annotations?: Labels;
}

export interface Mount {
  container_path?: string;
  host_path?: string;
  readonly?: boolean;
  selinux_relabel?: boolean;
  propagation?: MountPropagation;
}

export interface LinuxContainerSecurityContext {
  capabilities?: { add_capabilities?: string[]; drop_capabilities?: string[]; add_ambient_capabilities?: string[] };
  privileged?: boolean;
  namespace_options?: NamespaceOption;
  selinux_options?: SELinuxOption;
  run_as_user?: Int64Value;
  run_as_username?: string;
  readonly_rootfs?: boolean;
  supplemental_groups?: number[];
  apparmor_profile?: string;
  seccomp_profile_path?: string;
  no_new_privs?: boolean;
  run_as_group?: Int64Value;
  masked_paths?: string[];
  readonly_paths?: string[];
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}

export interface ContainerConfig {
  metadata?: { name?: string; attempt?: number };
  image?: ImageSpec;
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: Array<{ key: string; value: string }>;
  mounts?: Mount[];
  devices?: Array<{ container_path?: string; host_path?: string; permissions?: string }>;
  labels?: Labels;
  annotations?: Labels;
  log_path?: string;
  stdin?: boolean;
  stdin_once?: boolean;
  tty?: boolean;
  linux?: { resources?: LinuxContainerResources; security_context?: LinuxContainerSecurityContext };
}

export interface RunPodSandboxRequest {
  config: PodSandboxConfig;
  runtime_handler?: string;
}

export interface CreateContainerRequest {
  pod_sandbox_id: string;
  config: ContainerConfig;
  sandbox_config: PodSandboxConfig;
}

export interface PodSandboxFilter {
  id?: string;
  state?: { state: PodSandboxState };
  label_selector?: Labels;
}

export interface ContainerFilter {
  id?: string;
  state?: { state: ContainerState };
  pod_sandbox_id?: string;
  label_selector?: Labels;
}

// ---- response side -------------------------------------------------------------------

export interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

export interface StatusResponse {
  status: { conditions: Array<{ type: string; status: boolean; reason: string; message: string }> } | null;
  info: Labels;
}

export interface PodSandboxMetadataOut {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadataOut | null;
  state: PodSandboxState;
  created_at: number;
  network: { ip: string; additional_ips: Array<{ ip: string }> } | null;
  linux: { namespaces: { options: Required<NamespaceOption> | null } | null } | null;
  labels: Labels;
  annotations: Labels;
  runtime_handler: string;
}

export interface PodSandboxStatusResponse {
  status: PodSandboxStatus | null;
  /** With verbose: containerd puts one JSON document under "info" (pid, netns path, OCI spec...). */
  info: Labels;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadataOut | null;
  state: PodSandboxState;
  created_at: number;
  labels: Labels;
  annotations: Labels;
  runtime_handler: string;
}

export interface ImageSpecOut {
  image: string;
  annotations: Labels;
}

export interface Container {
  id: string;
  pod_sandbox_id: string;
  metadata: { name: string; attempt: number } | null;
  image: ImageSpecOut | null;
  image_ref: string;
  state: ContainerState;
  created_at: number;
  labels: Labels;
  annotations: Labels;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number } | null;
  state: ContainerState;
  created_at: number;
  started_at: number;
  finished_at: number;
  exit_code: number;
  image: ImageSpecOut | null;
  image_ref: string;
  reason: string;
  message: string;
  labels: Labels;
  annotations: Labels;
  mounts: Array<Required<Mount>>;
  log_path: string;
  resources: { linux: Required<LinuxContainerResources> | null } | null;
}

export interface ContainerStatusResponse {
  status: ContainerStatus | null;
  /** With verbose: containerd puts one JSON document under "info" (pid, OCI spec...). */
  info: Labels;
}

export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exit_code: number;
}

type UInt64Value = { value: number } | null;

export interface ContainerStats {
  attributes: { id: string; metadata: { name: string; attempt: number } | null; labels: Labels; annotations: Labels } | null;
  cpu: { timestamp: number; usage_core_nano_seconds: UInt64Value; usage_nano_cores: UInt64Value } | null;
  memory: {
    timestamp: number;
    working_set_bytes: UInt64Value;
    available_bytes: UInt64Value;
    usage_bytes: UInt64Value;
    rss_bytes: UInt64Value;
    page_faults: UInt64Value;
    major_page_faults: UInt64Value;
  } | null;
  writable_layer: { timestamp: number; fs_id: { mountpoint: string } | null; used_bytes: UInt64Value; inodes_used: UInt64Value } | null;
}

export interface Image {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
  uid: { value: number } | null;
  username: string;
  spec: ImageSpecOut | null;
  pinned: boolean;
}

export interface ImageStatusResponse {
  /** null when the image is not present (not an error in CRI). */
  image: Image | null;
  info: Labels;
}
