// How the agent mounts the sandbox's shared directory: the host says whether it shares
// it over virtio-9p or virtio-fs (CreateSandboxRequest.shared_fs_type).
import { InvalidArgumentError } from '../lib/errors';

/** mount(8)'s arguments for the shared directory `tag` at `target`. */
export function sharedFsMountArgs(type: string, tag: string, target: string): string[] {
  switch (type) {
    case '': // a shim that predates the field shares over 9p
    case 'virtio-9p':
      return ['-t', '9p', '-o', 'trans=virtio,version=9p2000.L,msize=262144,cache=none', tag, target];
    case 'virtio-fs':
      return ['-t', 'virtiofs', tag, target];
    default:
      throw new InvalidArgumentError(`CreateSandbox: unknown shared filesystem type ${JSON.stringify(type)} (this agent mounts "virtio-9p" and "virtio-fs")`);
  }
}
