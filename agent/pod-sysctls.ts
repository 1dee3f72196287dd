// Network sysctls of a container that shares the pod's network. In the guest the pod
// network is the guest's own network namespace (the shim drops the CRI netns path, a
// host path), so the spec reaches the OCI runtime with no network namespace entry, and
// crun refuses any `net.*` sysctl there ("requires a new network namespace"). Yet the
// guest's namespace *is* the pod's: setting them in it is what the pod asked for.
// containerd 2.x's CRI puts `net.ipv4.ip_unprivileged_port_start=0` in every pod
// sandbox's spec, so without this no CRI pod starts on containerd 2.x.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';

interface SpecWithSysctls {
  linux?: { namespaces?: Array<{ type: string; path?: string }>; sysctl?: Record<string, string> };
}

/** A sysctl key under net., as dotted words (an interface name may hold '-' or '_'). */
export const NET_SYSCTL_KEY = /^net(\.[A-Za-z0-9_-]+)+$/;
/** What a value written to /proc/sys may not hold: the kernel ends it at a newline (a NUL ends a C string). */
export const PROC_SYS_VALUE_REFUSED = /[\n\0]/;

/**
 * Applies `spec`'s net.* sysctls to this (the pod's) network namespace and removes them
 * from the spec, when the container has no network namespace entry of its own. Other
 * containers (their own new namespace) keep them for the runtime to apply.
 */
export function applyPodNetworkSysctls(containerId: string, spec: SpecWithSysctls, procSys = '/proc/sys'): string[] {
  const sysctl = spec.linux?.sysctl;
  if (!sysctl || (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'network')) return [];
  const keys = Object.keys(sysctl).filter((key) => key.startsWith('net.'));
  for (const key of keys) {
    const value = sysctl[key];
    if (!NET_SYSCTL_KEY.test(key)) throw new InvalidArgumentError(`container ${containerId}: sysctl key ${JSON.stringify(key)} is not a network sysctl name`);
    if (typeof value !== 'string' || PROC_SYS_VALUE_REFUSED.test(value)) throw new InvalidArgumentError(`container ${containerId}: sysctl ${key} has an invalid value ${JSON.stringify(value)}`);
    const file = path.join(procSys, ...key.split('.'));
    try {
      // No O_CREAT: only a knob the kernel has can be set.
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
      try {
        fs.writeSync(fd, value);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      throw new InvalidArgumentError(`container ${containerId}: cannot set sysctl ${key}=${value} in the pod's network namespace: ${(err as Error).message}`);
    }
    delete sysctl[key];
  }
  return keys;
}
