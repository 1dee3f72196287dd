// Pod and container configs shaped the way kubelet sends them, so CRI tests exercise
// what a real node does: pod metadata and labels, a log dir per pod, a pod cgroup
// parent, and kubelet's namespace choices (pod network and IPC, a PID namespace per
// container). Callers override any top-level field.

import { randomUUID } from 'crypto';
import * as path from 'path';
import type { CriEndpoint } from './containerd-cri';
import type { ContainerConfig, PodSandboxConfig } from './cri-types';

/** kubelet's defaults for a pod without hostNetwork/hostPID/hostIPC/shareProcessNamespace. */
const KUBELET_NAMESPACES = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } as const;

export interface PodOptions {
  /** Kubernetes namespace of the pod; default "default". */
  namespace?: string;
  /** Pod UID; default a fresh UUID (so names can repeat across tests). */
  uid?: string;
}

/**
 * A PodSandboxConfig for pod `name` on the CRI containerd `cri`. Pass the same object
 * to CreateContainer's sandbox_config, as kubelet does. `extra` replaces top-level fields.
 */
export function podSandboxConfig(cri: CriEndpoint, name: string, opts: PodOptions = {}, extra: PodSandboxConfig = {}): PodSandboxConfig {
  const namespace = opts.namespace ?? 'default';
  const uid = opts.uid ?? randomUUID();
  return {
    metadata: { name, uid, namespace, attempt: 0 },
    hostname: name,
    // kubelet: /var/log/pods/<namespace>_<name>_<uid>
    log_directory: path.join(cri.logDir, `${namespace}_${name}_${uid}`),
    labels: {
      'io.kubernetes.pod.name': name,
      'io.kubernetes.pod.namespace': namespace,
      'io.kubernetes.pod.uid': uid,
    },
    annotations: {},
    linux: {
      // kubelet (cgroupfs driver): /kubepods/<qos>/pod<uid>
      cgroup_parent: `${cri.cgroupRoot}/pod${uid}`,
      security_context: { namespace_options: { ...KUBELET_NAMESPACES } },
    },
    ...extra,
  };
}

/**
 * A ContainerConfig for container `name` running `command` from `image` (a name that
 * ImageStatus finds, e.g. importCriImages()'s busybox). `extra` replaces top-level fields.
 */
export function containerConfig(name: string, image: string, command: string[], extra: ContainerConfig = {}): ContainerConfig {
  return {
    metadata: { name, attempt: 0 },
    image: { image },
    command,
    // kubelet: <container name>/<restart count>.log, relative to the pod's log_directory
    log_path: `${name}/0.log`,
    labels: { 'io.kubernetes.container.name': name },
    linux: { security_context: { namespace_options: { ...KUBELET_NAMESPACES } } },
    ...extra,
  };
}
