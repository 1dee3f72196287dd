// The network namespace of its own a VMM runs in when its NICs are hot-plugged
// (vmm-launch.ts `ownNetns`). A NIC's tap is made in the pod's namespace (persistent,
// as for a cold boot: `delete` after a crash finds it there), moved into the VMM's for
// the VMM to open by name (QMP netdev_add), and moved back into the pod's, where the
// sandbox wires it. The VMM itself never joins the pod's namespace, so a VM can start
// before its pod's network exists.
//
// The namespace is held by an fd the shim opens once, while the VMM is surely its own
// child, and every later command reaches it through that fd, which each `ip` gets as
// its own fd 3: a pid path read later could name another process once the VMM died and
// its pid was reused, and an interface of that name in that process's namespace would
// then be moved into the pod's (or the pod's tap into a stranger's).
import * as fs from 'fs';
import * as path from 'path';
import { CommandFailedError, NETNS_COMMAND_TIMEOUT_MS, runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, HypervisorError } from '../lib/errors';
import { INTERFACE_NAME } from '../lib/net-names';

/** The VMM's namespace, as `ip` and `nsenter` see it: the fd they are given as their fd 3. */
export const VMM_NETNS = '/proc/self/fd/3';

/** Runs `ip args` inside the namespace `nsenterNet` names, with `vmmNetnsFd` as its fd 3; replaced in tests. */
export type IpWithVmmNetns = (nsenterNet: string, args: string[], vmmNetnsFd: number) => Promise<void>;

const ipWithVmmNetns: IpWithVmmNetns = async (nsenterNet, args, vmmNetnsFd) => {
  try {
    await runBounded('nsenter', [`--net=${nsenterNet}`, '--', 'ip', ...args], NETNS_COMMAND_TIMEOUT_MS, { fd3: vmmNetnsFd });
  } catch (err) {
    if (err instanceof DeadlineExceededError) throw err;
    const stderr = err instanceof CommandFailedError ? err.stderr.trim() : '';
    throw new HypervisorError(`'ip ${args.join(' ')}' in ${nsenterNet === VMM_NETNS ? "the VMM's network namespace" : nsenterNet} failed: ${stderr || (err as Error).message}`, { cause: err });
  }
};

function sameFile(a: fs.Stats, b: fs.Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

export class VmmNetns {
  private fd: number | undefined;

  private constructor(fd: number, private readonly ip: IpWithVmmNetns) {
    this.fd = fd;
  }

  /**
   * Opens the network namespace of the VMM `pid`. `running` must say whether the VMM
   * is still unreaped (Node reaps a child and reports its exit in one callback, so a
   * child not reported exited is still its own pid, at most a zombie, whose namespace
   * cannot be opened). Fails when the VMM is gone, or shares the shim's namespace (the
   * VMM did not get one of its own: a wrapper that ran it elsewhere).
   */
  static open(pid: number, running: () => boolean, ip: IpWithVmmNetns = ipWithVmmNetns): VmmNetns {
    if (!running()) throw new HypervisorError('the VMM exited before its network namespace could be opened');
    let fd: number;
    try {
      fd = fs.openSync(`/proc/${pid}/ns/net`, 'r'); // close-on-exec, as every fd Node opens
    } catch (err) {
      throw new HypervisorError(`cannot open the VMM's network namespace: ${(err as Error).message}`, { cause: err });
    }
    if (sameFile(fs.fstatSync(fd), fs.statSync('/proc/self/ns/net'))) {
      fs.closeSync(fd);
      throw new HypervisorError("the VMM runs in the shim's network namespace, not one of its own; its taps would be the host's");
    }
    return new VmmNetns(fd, ip);
  }

  /** Moves the pod's interface `name` (its tap) from the namespace at `podNetnsPath` into the VMM's, where it arrives down. */
  async moveIn(name: string, podNetnsPath: string): Promise<void> {
    const fd = this.checked(name, podNetnsPath);
    // An absolute path for ip's `netns` is opened as a namespace file (a name would be looked up in /run/netns).
    await this.ip(podNetnsPath, ['link', 'set', 'dev', name, 'netns', VMM_NETNS], fd);
  }

  /**
   * Moves the VMM's interface `name` (back) into the namespace at `podNetnsPath`, where
   * it arrives down, as `podName` (renamed first here: a tap made ahead for a pod not
   * known yet). Fails if the pod's namespace has an interface of that name.
   */
  async moveOut(name: string, podNetnsPath: string, podName = name): Promise<void> {
    const fd = this.checked(name, podNetnsPath);
    this.checkedName(podName);
    if (podName !== name) await this.ip(VMM_NETNS, ['link', 'set', 'dev', name, 'name', podName], fd);
    await this.ip(VMM_NETNS, ['link', 'set', 'dev', podName, 'netns', podNetnsPath], fd);
  }

  /** Makes a tap `name` in the VMM's namespace (persistent, down; it ends with the namespace). */
  async makeTap(name: string): Promise<void> {
    const fd = this.checkedName(name);
    await this.ip(VMM_NETNS, ['tuntap', 'add', 'dev', name, 'mode', 'tap'], fd);
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private checked(name: string, podNetnsPath: string): number {
    if (!path.isAbsolute(podNetnsPath)) throw new HypervisorError(`the pod's network namespace '${podNetnsPath}' is not an absolute path`);
    return this.checkedName(name);
  }

  private checkedName(name: string): number {
    if (!INTERFACE_NAME.test(name)) throw new HypervisorError(`'${name}' is not an interface name`);
    if (this.fd === undefined) throw new HypervisorError("the VMM's network namespace is closed (the VM ended)");
    return this.fd;
  }
}
