// Ids and spec paths become host paths (state dirs, mount points, the VM's share);
// check them before they are used, so no input can point outside where it belongs.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';

/** containerd's own rule for identifiers (pkg/identifiers): 1–76 of [A-Za-z0-9_.-], alphanumeric first. */
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$/;

export function validateId(kind: string, id: string): string {
  if (!IDENTIFIER.test(id)) throw new InvalidArgumentError(`${kind} id ${JSON.stringify(id)} is not valid: use 1-76 characters of A-Z a-z 0-9 _ . - starting with a letter or digit`);
  return id;
}

/**
 * The host directory a spec's root.path names, which must lie inside the bundle
 * once symlinks are resolved: anything else would share a host directory with the VM.
 */
export function rootfsInsideBundle(bundle: string, rootPath: string | undefined): string {
  const candidate = path.resolve(bundle, rootPath || 'rootfs');
  let real: string;
  try {
    real = fs.realpathSync(candidate);
  } catch (err) {
    throw new InvalidArgumentError(`rootfs ${candidate} of bundle ${bundle} does not exist: ${(err as Error).message}`);
  }
  const realBundle = fs.realpathSync(bundle);
  if (real !== realBundle && !real.startsWith(realBundle + path.sep)) {
    throw new InvalidArgumentError(`spec root.path ${JSON.stringify(rootPath)} resolves to ${real}, outside the bundle ${realBundle}`);
  }
  if (real === realBundle) throw new InvalidArgumentError(`spec root.path ${JSON.stringify(rootPath)} is the bundle itself, not a rootfs inside it`);
  return real;
}
