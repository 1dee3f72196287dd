// Where a pod's shim daemon listens. One socket per pod, named from containerd's
// address, the namespace and the pod (sandbox) id, under containerd's state dir —
// so a second containerd on the machine never collides with the first.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

const TASK_DIR_NAME = 'io.containerd.runtime.v2.task';
const FALLBACK_STATE_DIR = '/run/kata-ts';

/** containerd's state dir, derived from the bundle path <state>/io.containerd.runtime.v2.task/<ns>/<id>. */
export function stateDirFromBundle(bundle: string): string {
  const taskDir = path.dirname(path.dirname(path.resolve(bundle)));
  return path.basename(taskDir) === TASK_DIR_NAME ? path.dirname(taskDir) : FALLBACK_STATE_DIR;
}

export function shimSocketPath(bundle: string, containerdAddress: string, namespace: string, groupId: string): string {
  const hash = createHash('sha256').update(`${containerdAddress}\0${namespace}\0${groupId}`).digest('hex').slice(0, 32);
  return path.join(stateDirFromBundle(bundle), 's', hash);
}

/** True when something accepts connections on the socket. */
export function isListening(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  if (!fs.existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(result: boolean): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    }
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export function removeSocket(socketPath: string): void {
  fs.rmSync(socketPath, { force: true });
}
