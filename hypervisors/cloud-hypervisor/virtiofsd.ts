// virtio-fs needs a vhost-user daemon per shared directory: Cloud Hypervisor only
// connects to its socket. We start one virtiofsd per directory before the VMM, and
// stop them after it (virtiofsd also exits by itself when its VMM disconnects). The
// flags are those of the Rust virtiofsd (gitlab.com/virtio-fs/virtiofsd); cache=never is
// what Cloud Hypervisor's docs/fs.md recommends: no guest data in the host page cache.
import { Logger } from '../../lib/logger';
import { SharedDirectory } from '../hypervisor';
import { VmmProcess } from '../vmm-process';
import { virtiofsSocket } from './vm-config';

const SOCKET_TIMEOUT_MS = 10_000;

export async function startVirtiofsDaemons(binaryPath: string, workDir: string, shares: readonly SharedDirectory[], logger: Logger): Promise<VmmProcess[]> {
  const daemons: VmmProcess[] = [];
  try {
    for (const [index, share] of shares.entries()) {
      const socketPath = virtiofsSocket(workDir, index);
      const daemon = VmmProcess.spawn({
        name: `virtiofsd (${share.tag})`,
        binaryPath,
        args: [`--socket-path=${socketPath}`, `--shared-dir=${share.hostPath}`, '--cache=never'],
        logger,
      });
      daemons.push(daemon);
      await daemon.waitForSocketFile(socketPath, SOCKET_TIMEOUT_MS);
    }
    return daemons;
  } catch (err) {
    await stopVirtiofsDaemons(daemons);
    throw err;
  }
}

export async function stopVirtiofsDaemons(daemons: readonly VmmProcess[]): Promise<void> {
  await Promise.all(daemons.map((d) => d.stop(0, async () => d.signal('SIGTERM'))));
}
