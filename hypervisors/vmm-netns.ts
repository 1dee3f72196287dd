// The network namespace of its own a VMM runs in when its NICs are hot-plugged
// (vmm-launch.ts `ownNetns`): the VMM makes each tap there, and the driver moves it into
// the pod's namespace, where the sandbox wires it. The VMM itself never joins the pod's
// namespace, so a VM can start before its pod's network exists.
//
// The namespace is held by an fd the shim opens once, while the VMM is surely its own
// child, and every later command enters it through that fd: a pid path read later could
// name another process once the VMM died and its pid was reused, and a tap of that name
// in that process's namespace would then be moved into the pod.
import * as fs from 'fs';
import * as path from 'path';
import { CommandFailedError, NETNS_COMMAND_TIMEOUT_MS, runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, HypervisorError } from '../lib/errors';
import { INTERFACE_NAME } from '../lib/net-names';

/** Runs `ip` with `args` inside the namespace `netnsPath` names; replaced in tests. */
export type IpInNetns = (netnsPath: string, args: string[]) => Promise<void>;

const ipInNetns: IpInNetns = async (netnsPath, args) => {
  try {
    await runBounded('nsenter', [`--net=${netnsPath}`, '--', 'ip', ...args], NETNS_COMMAND_TIMEOUT_MS);
  } catch (err) {
    if (err instanceof DeadlineExceededError) throw err;
    const stderr = err instanceof CommandFailedError ? err.stderr.trim() : '';
    throw new HypervisorError(`'ip ${args.join(' ')}' in the VMM's network namespace failed: ${stderr || (err as Error).message}`, { cause: err });
  }
};

function sameFile(a: fs.Stats, b: fs.Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

export class VmmNetns {
  private fd: number | undefined;

  private constructor(fd: number, private readonly ip: IpInNetns) {
    this.fd = fd;
  }

  /**
   * Opens the network namespace of the VMM `pid`. `running` must say whether the VMM
   * is still unreaped (Node reaps a child and reports its exit in one callback, so a
   * child not reported exited is still its own pid, at most a zombie, whose namespace
   * cannot be opened). Fails when the VMM is gone, or shares the shim's namespace (the
   * VMM did not get one of its own: a wrapper that ran it elsewhere).
   */
  static open(pid: number, running: () => boolean, ip: IpInNetns = ipInNetns): VmmNetns {
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

  /** Moves the VMM's interface `name` into the namespace at `netnsPath` (the pod's), where it arrives down. */
  async moveInterface(name: string, netnsPath: string): Promise<void> {
    if (!INTERFACE_NAME.test(name)) throw new HypervisorError(`'${name}' is not an interface name`);
    if (!path.isAbsolute(netnsPath)) throw new HypervisorError(`the pod's network namespace '${netnsPath}' is not an absolute path`);
    if (this.fd === undefined) throw new HypervisorError("the VMM's network namespace is closed (the VM ended)");
    // The shim's own fd, as a path nsenter can open while the shim lives; an absolute
    // path for ip's `netns` is opened as a namespace file (a name would be looked up in /run/netns).
    await this.ip(`/proc/${process.pid}/fd/${this.fd}`, ['link', 'set', 'dev', name, 'netns', netnsPath]);
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
