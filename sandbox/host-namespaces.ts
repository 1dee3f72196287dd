// What a VM cannot mean is refused, before anything boots, instead of being accepted
// and then behaving differently (issue 16 E). A kata pod runs on its own guest kernel:
// it cannot share the node's network, PID or IPC namespace, and mounts made inside the
// VM cannot propagate back to the host. Kata documents the same limits.
//
// How containerd 1.6's CRI plugin writes what kubelet asks for (pkg/cri/server
// sandbox_run_linux.go, container_create_linux.go, pkg/cri/opts/spec_linux.go):
// - the pause container (annotation io.kubernetes.cri.container-type = "sandbox"):
//   hostNetwork (namespace_options.network = NODE) leaves out the `network` (and `uts`)
//   namespace entry, which otherwise carries the pod netns path; hostPID (pid = NODE)
//   leaves out `pid`; hostIPC (ipc = NODE) leaves out `ipc`, and /dev/shm becomes the
//   host's. Everything else gets a new namespace (an entry without a path).
// - app containers (container-type = "container") join the pause container's network,
//   IPC and UTS namespaces (and PID unless CONTAINER) by /proc/<pause pid>/ns paths, so
//   a host namespace shows only on the pause container: refusing the pod covers them.
//   A Bidirectional mount becomes a bind with option "rshared" (plus
//   linux.rootfsPropagation = "rshared"); HostToContainer is "rslave", None "rprivate".
// Only CRI containers are checked: a plain `ctr run` spec without a namespace entry
// (`--net-host`, or a test that shares the guest's PID namespace) keeps its meaning
// inside the VM, as it always had.
import { CRI_CONTAINER_TYPE } from '../lib/cri-annotations';
import { FailedPreconditionError } from '../lib/errors';
import type { OciSpec } from './spec';

const CRI_SANDBOX_NAME = 'io.kubernetes.cri.sandbox-name';
const CRI_SANDBOX_NAMESPACE = 'io.kubernetes.cri.sandbox-namespace';
const CRI_CONTAINER_NAME = 'io.kubernetes.cri.container-name';

const HOST_NAMESPACES: Array<{ type: string; field: string; why: string }> = [
  {
    type: 'network',
    field: 'hostNetwork (CRI namespace_options.network = NODE)',
    why: "the pod's VM has its own kernel and network stack and cannot join the node's network namespace; its interfaces, addresses and ports would be the guest's, not the node's",
  },
  {
    type: 'pid',
    field: 'hostPID (CRI namespace_options.pid = NODE)',
    why: "the pod's processes run on the VM's kernel, which cannot see or signal the node's processes",
  },
  {
    type: 'ipc',
    field: 'hostIPC (CRI namespace_options.ipc = NODE)',
    why: "the node's System V IPC objects, POSIX message queues and /dev/shm live in the host kernel, which the VM does not share",
  },
];

const SHARED = new Set(['shared', 'rshared']);

/**
 * Throws FailedPreconditionError naming every field of a CRI spec that a VM cannot
 * honour: a host namespace on the pod's sandbox container, a Bidirectional mount on
 * any container. Specs without CRI's container-type annotation pass unchecked.
 */
export function refuseWhatAVmCannotMean(spec: OciSpec): void {
  const annotations = spec.annotations ?? {};
  const kind = annotations[CRI_CONTAINER_TYPE];
  if (kind !== 'sandbox' && kind !== 'container') return;
  const problems: string[] = [];
  if (kind === 'sandbox') {
    const present = new Set((spec.linux?.namespaces ?? []).map((ns) => ns.type));
    for (const ns of HOST_NAMESPACES) if (!present.has(ns.type)) problems.push(`${ns.field} is not supported: ${ns.why}`);
  }
  const bidirectional = (spec.mounts ?? []).filter((m) => (m.options ?? []).some((o) => SHARED.has(o)));
  for (const m of bidirectional) {
    problems.push(
      `mount ${m.destination} (host path ${m.source ?? '?'}) asks for Bidirectional mount propagation (rshared), which is not supported: ` +
        'the volume reaches the VM over a file-sharing protocol, so mounts made inside the VM can never propagate back to the host; use HostToContainer or None',
    );
  }
  const rootPropagation = spec.linux?.rootfsPropagation;
  if (bidirectional.length === 0 && typeof rootPropagation === 'string' && SHARED.has(rootPropagation)) {
    problems.push(`linux.rootfsPropagation "${rootPropagation}" is not supported: mounts made inside the VM can never propagate back to the host`);
  }
  if (problems.length === 0) return;
  const pod = `${annotations[CRI_SANDBOX_NAMESPACE] ?? '?'}/${annotations[CRI_SANDBOX_NAME] ?? '?'}`;
  const who = kind === 'sandbox' ? `pod ${pod}` : `container ${annotations[CRI_CONTAINER_NAME] ?? '?'} of pod ${pod}`;
  throw new FailedPreconditionError(`${who} cannot run in a kata VM: ${problems.join('; ')}`);
}
