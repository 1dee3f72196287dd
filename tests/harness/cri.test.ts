// Pins the CRI wire facts our protos/cri/api.proto must keep: field numbers and enum
// values copied from kubernetes' cri-api runtime/v1 api.proto. A renumbered field
// would still "work" against itself, and silently send containerd something else.
import * as grpc from '@grpc/grpc-js';
import { criProtoRoot, CriError } from './cri';

const FIELDS: Array<[string, Record<string, number>]> = [
  ['PodSandboxConfig', { metadata: 1, hostname: 2, log_directory: 3, dns_config: 4, port_mappings: 5, labels: 6, annotations: 7, linux: 8 }],
  ['PodSandboxMetadata', { name: 1, uid: 2, namespace: 3, attempt: 4 }],
  ['LinuxPodSandboxConfig', { cgroup_parent: 1, security_context: 2, sysctls: 3, overhead: 4, resources: 5 }],
  ['LinuxSandboxSecurityContext', {
    namespace_options: 1, selinux_options: 2, run_as_user: 3, readonly_rootfs: 4, supplemental_groups: 5,
    privileged: 6, seccomp_profile_path: 7, run_as_group: 8, seccomp: 9, apparmor: 10,
  }],
  ['NamespaceOption', { network: 1, pid: 2, ipc: 3, target_id: 4 }],
  ['RunPodSandboxRequest', { config: 1, runtime_handler: 2 }],
  ['PodSandboxStatus', { id: 1, metadata: 2, state: 3, created_at: 4, network: 5, linux: 6, labels: 7, annotations: 8, runtime_handler: 9 }],
  ['PodSandboxNetworkStatus', { ip: 1, additional_ips: 2 }],
  ['ContainerConfig', {
    metadata: 1, image: 2, command: 3, args: 4, working_dir: 5, envs: 6, mounts: 7, devices: 8, labels: 9,
    annotations: 10, log_path: 11, stdin: 12, stdin_once: 13, tty: 14, linux: 15,
  }],
  ['Mount', { container_path: 1, host_path: 2, readonly: 3, selinux_relabel: 4, propagation: 5 }],
  ['LinuxContainerSecurityContext', {
    capabilities: 1, privileged: 2, namespace_options: 3, selinux_options: 4, run_as_user: 5, run_as_username: 6,
    readonly_rootfs: 7, supplemental_groups: 8, apparmor_profile: 9, seccomp_profile_path: 10, no_new_privs: 11,
    run_as_group: 12, masked_paths: 13, readonly_paths: 14, seccomp: 15, apparmor: 16,
  }],
  ['LinuxContainerResources', {
    cpu_period: 1, cpu_quota: 2, cpu_shares: 3, memory_limit_in_bytes: 4, oom_score_adj: 5, cpuset_cpus: 6,
    cpuset_mems: 7, hugepage_limits: 8, unified: 9, memory_swap_limit_in_bytes: 10,
  }],
  ['CreateContainerRequest', { pod_sandbox_id: 1, config: 2, sandbox_config: 3 }],
  ['ContainerStatus', {
    id: 1, metadata: 2, state: 3, created_at: 4, started_at: 5, finished_at: 6, exit_code: 7, image: 8, image_ref: 9,
    reason: 10, message: 11, labels: 12, annotations: 13, mounts: 14, log_path: 15, resources: 16,
  }],
  ['ExecSyncRequest', { container_id: 1, cmd: 2, timeout: 3 }],
  ['ExecSyncResponse', { stdout: 1, stderr: 2, exit_code: 3 }],
  ['ContainerStats', { attributes: 1, cpu: 2, memory: 3, writable_layer: 4 }],
  ['MemoryUsage', { timestamp: 1, working_set_bytes: 2, available_bytes: 3, usage_bytes: 4, rss_bytes: 5, page_faults: 6, major_page_faults: 7 }],
  ['Image', { id: 1, repo_tags: 2, repo_digests: 3, size: 4, uid: 5, username: 6, spec: 7, pinned: 8 }],
];

const ENUMS: Array<[string, Record<string, number>]> = [
  ['NamespaceMode', { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 }],
  ['PodSandboxState', { SANDBOX_READY: 0, SANDBOX_NOTREADY: 1 }],
  ['ContainerState', { CONTAINER_CREATED: 0, CONTAINER_RUNNING: 1, CONTAINER_EXITED: 2, CONTAINER_UNKNOWN: 3 }],
  ['MountPropagation', { PROPAGATION_PRIVATE: 0, PROPAGATION_HOST_TO_CONTAINER: 1, PROPAGATION_BIDIRECTIONAL: 2 }],
  ['SecurityProfile.ProfileType', { RuntimeDefault: 0, Unconfined: 1, Localhost: 2 }],
];

describe('protos/cri/api.proto', () => {
  it.each(FIELDS)('%s keeps the upstream field numbers', (name, fields) => {
    const type = criProtoRoot().lookupType(`runtime.v1.${name}`);
    const actual = Object.fromEntries(Object.keys(fields).map((f) => [f, type.fields[f]?.id]));
    expect(actual).toEqual(fields);
  });

  it.each(ENUMS)('%s keeps the upstream values', (name, values) => {
    expect(criProtoRoot().lookupEnum(`runtime.v1.${name}`).values).toEqual(values);
  });

  it('skips fields it does not declare (newer servers add them)', () => {
    const type = criProtoRoot().lookupType('runtime.v1.ExecSyncResponse');
    // exit_code=3, then an undeclared field 9 (varint), as a newer containerd might send.
    const bytes = Buffer.from([0x18, 0x03, 0x48, 0x01]);
    expect(type.toObject(type.decode(bytes))).toEqual({ exit_code: 3 });
  });
});

describe('CriError', () => {
  it('carries the gRPC code, its name and the details', () => {
    const e = new CriError('ContainerStatus', grpc.status.NOT_FOUND, 'container "x" not found');
    expect(e).toMatchObject({ rpc: 'ContainerStatus', code: 5, codeName: 'NotFound', details: 'container "x" not found' });
    expect(e.message).toBe('CRI ContainerStatus failed: NOT_FOUND (5): container "x" not found');
  });
});
