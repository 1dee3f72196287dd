// Reads the bundle's OCI spec and turns it into the spec the guest runs: the rootfs
// becomes the guest path of the shared directory; host-only parts are dropped.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { SANDBOX_NS_DIR } from '../lib/guest-paths';
import { Logger } from '../lib/logger';

export interface OciSpec {
  ociVersion?: string;
  root?: { path?: string; readonly?: boolean };
  process?: { args?: string[]; terminal?: boolean };
  hostname?: string;
  mounts?: Array<{ destination: string; type?: string; source?: string; options?: string[] }>;
  hooks?: unknown;
  annotations?: Record<string, string>;
  linux?: { namespaces?: Array<{ type: string; path?: string }>; cgroupsPath?: string; mountLabel?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export function readBundleSpec(bundle: string): OciSpec {
  const file = path.join(bundle, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read OCI spec ${file}: ${(err as Error).message}`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`OCI spec ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new InvalidArgumentError(`OCI spec ${file} must be a JSON object`);
  return spec as OciSpec;
}

/**
 * A copy of `spec` ready for the guest: its rootfs at `guest.rootfs`, its mounts
 * replaced by `guest.mounts` (host binds already turned into guest paths, see
 * volumes.ts), and what only means something on the host dropped or translated.
 */
export function guestSpec(spec: OciSpec, guest: { containerId: string; rootfs: string; mounts?: OciSpec['mounts'] }, logger: Logger): OciSpec {
  const out: OciSpec = JSON.parse(JSON.stringify(spec));
  out.root = { ...(out.root ?? {}), path: guest.rootfs };
  if (guest.mounts) out.mounts = guest.mounts;
  out.ociVersion = guestOciVersion(out.ociVersion, logger);
  // Hooks name host executables and run on the host (oci-hooks.ts); the guest's crun
  // must never be handed them, whatever the guest would make of a host path.
  delete out.hooks;
  // The guest kernel has no AppArmor or SELinux; the VM is the isolation boundary.
  const proc = out.process as Record<string, unknown> | undefined;
  if (proc?.apparmorProfile || proc?.selinuxLabel || out.linux?.mountLabel) logger.debug('dropping AppArmor/SELinux labels: the guest has no LSM');
  delete proc?.apparmorProfile;
  delete proc?.selinuxLabel;
  if (out.linux) {
    delete out.linux.mountLabel;
    out.linux.namespaces = guestNamespaces(out.linux.namespaces ?? []);
    out.linux.cgroupsPath = guestCgroupsPath(out.linux.cgroupsPath, guest.containerId);
  }
  return out;
}

/**
 * The runtime-spec version the guest's OCI runtime is shown when the real one would
 * be refused: crun 1.8 takes only a version string containing "1.0" ("1.1.0" passes
 * by that accident, "1.1.1" and containerd 2.x's "1.2.x" fail with "unknown version
 * specified"). The spec's fields are what matter to crun; the version is only this gate.
 */
export const GUEST_OCI_VERSION = '1.0.2';

function guestOciVersion(version: string | undefined, logger: Logger): string | undefined {
  if (version === undefined || version.includes('1.0')) return version;
  logger.debug({ ociVersion: version, guest: GUEST_OCI_VERSION }, "spec version the guest's crun refuses; presenting it as one it takes");
  return GUEST_OCI_VERSION;
}

/**
 * Namespace paths name the host (CRI's pod netns, the pause container's /proc). The
 * pod network is the guest's own network namespace, so a network entry with a path
 * is dropped (the container joins it); other entries with a path join the pod
 * sandbox container's namespace in the guest. Entries without a path stay: the
 * runtime makes a new namespace, as on the host.
 */
function guestNamespaces(namespaces: Array<{ type: string; path?: string }>): Array<{ type: string; path?: string }> {
  return namespaces.filter((ns) => !(ns.type === 'network' && ns.path)).map(({ type, path: nsPath }) => (nsPath ? { type, path: `${SANDBOX_NS_DIR}/${type}` } : { type }));
}

/**
 * The guest has no systemd, so a systemd-style "slice:prefix:name" becomes a plain
 * cgroupfs path; a container without one gets one, so stats and OOM events work.
 */
function guestCgroupsPath(cgroupsPath: string | undefined, containerId: string): string {
  if (!cgroupsPath) return `/katats/${containerId}`;
  const systemd = /^([^/:]+):([^:]*):([^:]+)$/.exec(cgroupsPath);
  if (systemd) return `/${systemd[1]}/${systemd[2] ? `${systemd[2]}-` : ''}${systemd[3]}`;
  return cgroupsPath;
}
