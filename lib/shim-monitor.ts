// The contract between a shim daemon's management socket and its readers
// (kata-ts-monitor, `kata-ts-runtime metrics`): where the socket is in the sandbox's
// work dir, and the identity record beside it, which says whose socket it is. A work
// dir's path does not always say (long ids are hashed), and CRI's pod name and
// namespace are only in the sandbox's spec, which the daemon read at startup.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError, NotFoundError } from './errors';

/** Kata's name: /run/vc/sbs/<id>/shim-monitor.sock there, <work dir>/shim-monitor.sock here. */
export const SHIM_MONITOR_SOCKET = 'shim-monitor.sock';
export const SANDBOX_IDENTITY_FILE = 'sandbox-identity.json';

export const CRI_SANDBOX_NAME = 'io.kubernetes.cri.sandbox-name';
export const CRI_SANDBOX_NAMESPACE = 'io.kubernetes.cri.sandbox-namespace';
export const CRI_SANDBOX_UID = 'io.kubernetes.cri.sandbox-uid';

/** The pod as Kubernetes names it; empty strings for a sandbox not made through CRI. */
export interface CriMetadata {
  name: string;
  namespace: string;
  uid: string;
}

export interface SandboxIdentity {
  id: string;
  /** containerd's namespace. */
  namespace: string;
  cri: CriMetadata;
}

/** Kubernetes names are at most 253 characters; anything longer is not one of ours. */
const MAX_FIELD = 253;
const MAX_RECORD_BYTES = 16 * 1024;

export function criMetadataOf(annotations: Record<string, string> | undefined): CriMetadata {
  return { name: annotations?.[CRI_SANDBOX_NAME] ?? '', namespace: annotations?.[CRI_SANDBOX_NAMESPACE] ?? '', uid: annotations?.[CRI_SANDBOX_UID] ?? '' };
}

export function monitorSocketPath(workDir: string): string {
  return path.join(workDir, SHIM_MONITOR_SOCKET);
}

export function writeSandboxIdentity(workDir: string, identity: SandboxIdentity): void {
  fs.writeFileSync(path.join(workDir, SANDBOX_IDENTITY_FILE), JSON.stringify(identity), { mode: 0o600 });
}

function field(value: unknown, name: string, file: string): string {
  if (typeof value !== 'string' || value.length > MAX_FIELD) throw new InvalidArgumentError(`${file}: ${name} is not a string of at most ${MAX_FIELD} characters`);
  return value;
}

export function readSandboxIdentity(workDir: string): SandboxIdentity {
  const file = path.join(workDir, SANDBOX_IDENTITY_FILE);
  let text: string;
  try {
    // Non-blocking: a FIFO put here must not hang the reader (the monitor scans every work dir);
    // no symlinks; and only a regular file of bounded size is read.
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new InvalidArgumentError(`${file}: not a regular file`);
      if (st.size > MAX_RECORD_BYTES) throw new InvalidArgumentError(`${file}: larger than ${MAX_RECORD_BYTES} bytes`);
      const buffer = Buffer.alloc(MAX_RECORD_BYTES + 1);
      let length = 0;
      while (length < buffer.length) {
        const n = fs.readSync(fd, buffer, length, buffer.length - length, length);
        if (n === 0) break;
        length += n;
      }
      if (length > MAX_RECORD_BYTES) throw new InvalidArgumentError(`${file}: larger than ${MAX_RECORD_BYTES} bytes`);
      text = buffer.subarray(0, length).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${file} not found: no shim records a sandbox in ${workDir}`);
    throw err;
  }
  type Record = { id?: unknown; namespace?: unknown; cri?: { name?: unknown; namespace?: unknown; uid?: unknown } };
  let parsed: Record;
  try {
    // `null` or a number parses too: treat it as a record without fields.
    parsed = Object(JSON.parse(text)) as Record;
  } catch (err) {
    throw new InvalidArgumentError(`${file}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  return {
    id: field(parsed.id, 'id', file),
    namespace: field(parsed.namespace, 'namespace', file),
    cri: { name: field(parsed.cri?.name, 'cri.name', file), namespace: field(parsed.cri?.namespace, 'cri.namespace', file), uid: field(parsed.cri?.uid, 'cri.uid', file) },
  };
}
