// How every VMM process is launched: with the capabilities it never needs removed from
// its bounding set (setpriv), and inside the pod's network namespace when it has one
// (nsenter) or in an empty one of its own (unshare). Each execs, so the VMM keeps the
// pid the driver spawned.
//
// The guest drives the VMM's device emulation, so a VMM compromise is the first step
// out; root without CAP_MKNOD also cannot create device nodes on a host volume through
// the 9p share (QEMU's mknodat fails with EPERM, which the guest sees).

/** Capabilities no VMM here uses. QEMU keeps the file and network ones 9p and taps need. */
export const VMM_DROPPED_CAPABILITIES = [
  'mknod', 'sys_module', 'sys_boot', 'sys_time', 'sys_ptrace', 'setfcap', 'linux_immutable',
  'mac_admin', 'mac_override', 'syslog', 'audit_control', 'wake_alarm', 'block_suspend',
] as const;

export interface VmmLaunchOptions {
  /** The pod's network namespace, joined before the VMM runs. */
  netnsPath?: string;
  /**
   * A new, empty network namespace for the VMM (only `lo`, down): for a VM whose NICs
   * are hot-plugged, whose driver moves each of the pod's taps in for the VMM to open
   * and back out (vmm-netns.ts). Not with `netnsPath`.
   */
  ownNetns?: boolean;
  /**
   * The VMM is killed (SIGKILL) when the process that spawned it dies. For a VMM nobody
   * else would clean up after: a template's, whose shim or `factory init` may be killed
   * mid-build (a pod's VMM is killed by the shim's `delete`, which containerd runs).
   */
  dieWithSpawner?: boolean;
}

/** The command and argv that start `binary args` with the reduced capabilities, as `options` say. */
export function vmmCommand(binary: string, args: string[], options: VmmLaunchOptions = {}): [string, string[]] {
  if (options.netnsPath && options.ownNetns) throw new Error('a VMM runs in the pod netns or in its own, not both');
  const inNetns = options.netnsPath ? ['nsenter', `--net=${options.netnsPath}`, '--'] : options.ownNetns ? ['unshare', '--net', '--'] : [];
  // The parent-death signal survives both execs (neither binary is set-id or has file
  // capabilities; an LSM that changes domain on exec would clear it). It fires when the
  // spawning thread ends: Node spawns from its main thread. A spawner killed before setpriv
  // armed it (a few ms) or a configured wrapper that forks the VMM escapes it: callers
  // that rely on it also record the VMM's pid for whoever cleans up after them.
  const deathSignal = options.dieWithSpawner ? ['--pdeathsig', 'KILL'] : [];
  // The inheritable and ambient sets go too: a root process keeps what is inheritable across
  // exec whatever the bounding set says, and containerd may have been started with some.
  return ['setpriv', [...deathSignal, '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set', VMM_DROPPED_CAPABILITIES.map((c) => `-${c}`).join(','), '--', ...inNetns, binary, ...args]];
}

/** Debian's nobody and nogroup: owns nothing on the host. */
export const UNPRIVILEGED_ID = 65534;

/**
 * The command and argv that start a daemon which only moves bytes between sockets in a
 * directory of its own (vhost-device-vsock): as nobody, with no capability, no way to
 * gain one (no_new_privs), and its own network and IPC namespaces (no abstract Unix
 * sockets, no TCP to the host's loopback services). Both exec: same pid.
 */
export function unprivilegedCommand(binary: string, args: string[]): [string, string[]] {
  const id = String(UNPRIVILEGED_ID);
  return ['unshare', ['--net', '--ipc', '--', 'setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--', binary, ...args]];
}
