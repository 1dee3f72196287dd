// Containers of a CRI pod share the pause container's IPC, UTS (and, if asked, PID)
// namespaces. The shim marks such entries with SANDBOX_NS_DIR paths; here they
// become the pause container's /proc/<pid>/ns entries in the guest.
import { CRI_SANDBOX_ID } from '../lib/cri-annotations';
import * as path from 'path';
import { FailedPreconditionError, InvalidArgumentError } from '../lib/errors';
import { SANDBOX_NS_DIR } from '../lib/guest-paths';

/** OCI namespace type → its file under /proc/<pid>/ns. */
const NS_FILES: Record<string, string> = { ipc: 'ipc', uts: 'uts', pid: 'pid', mount: 'mnt', network: 'net', user: 'user', cgroup: 'cgroup' };

interface SpecWithNamespaces {
  annotations?: Record<string, string>;
  linux?: { namespaces?: Array<{ type: string; path?: string }> };
}

/**
 * Rewrites `spec` in place. `sandboxPid(id)` gives the guest pid of the running
 * sandbox container `id`, or undefined when there is none.
 */
export function joinSandboxNamespaces(containerId: string, spec: SpecWithNamespaces, sandboxPid: (sandboxId: string) => number | undefined): void {
  for (const ns of spec.linux?.namespaces ?? []) {
    if (!ns.path) continue;
    if (path.posix.dirname(ns.path) !== SANDBOX_NS_DIR) throw new InvalidArgumentError(`container ${containerId}: namespace path ${ns.path} is not a guest path`);
    const file = NS_FILES[ns.type];
    if (!file || path.posix.basename(ns.path) !== ns.type) throw new InvalidArgumentError(`container ${containerId}: cannot join the sandbox's '${ns.type}' namespace`);
    const sandboxId = spec.annotations?.[CRI_SANDBOX_ID];
    if (!sandboxId) throw new InvalidArgumentError(`container ${containerId}: joins a sandbox namespace but has no ${CRI_SANDBOX_ID} annotation`);
    const pid = sandboxPid(sandboxId);
    if (!pid) throw new FailedPreconditionError(`container ${containerId}: joins the ${ns.type} namespace of pod sandbox ${sandboxId}, which is not running in this VM`);
    ns.path = `/proc/${pid}/ns/${file}`;
  }
}
