// How every VMM process is launched: with the capabilities it never needs removed from
// its bounding set (setpriv), and inside the pod's network namespace when it has one
// (nsenter). Both exec, so the VMM keeps the pid the driver spawned.
//
// The guest drives the VMM's device emulation, so a VMM compromise is the first step
// out; root without CAP_MKNOD also cannot create device nodes on a host volume through
// the 9p share (QEMU's mknodat fails with EPERM, which the guest sees).

/** Capabilities no VMM here uses. QEMU keeps the file and network ones 9p and taps need. */
export const VMM_DROPPED_CAPABILITIES = [
  'mknod', 'sys_module', 'sys_boot', 'sys_time', 'sys_ptrace', 'setfcap', 'linux_immutable',
  'mac_admin', 'mac_override', 'syslog', 'audit_control', 'wake_alarm', 'block_suspend',
] as const;

/** The command and argv that start `binary args` with the reduced capabilities, in `netnsPath` if given. */
export function vmmCommand(binary: string, args: string[], netnsPath?: string, capabilities: 'vmm' | 'none' = 'vmm'): [string, string[]] {
  const inNetns = netnsPath ? ['nsenter', `--net=${netnsPath}`, '--'] : [];
  // 'none' (a daemon that only moves bytes between sockets it creates in a root-owned
  // directory): no capability at all, the bounding set included.
  const bounding = capabilities === 'none' ? '-all' : VMM_DROPPED_CAPABILITIES.map((c) => `-${c}`).join(',');
  // The inheritable and ambient sets go too: a root process keeps what is inheritable across
  // exec whatever the bounding set says, and containerd may have been started with some.
  return ['setpriv', ['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set', bounding, '--', ...inNetns, binary, ...args]];
}
