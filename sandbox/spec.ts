// Reads the bundle's OCI spec and turns it into the spec the guest runs: the rootfs
// becomes the guest path of the shared directory; host-only parts are dropped.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { Logger } from '../lib/logger';

export interface OciSpec {
  root?: { path?: string; readonly?: boolean };
  process?: { args?: string[]; terminal?: boolean };
  hostname?: string;
  mounts?: Array<{ destination: string; type?: string; source?: string; options?: string[] }>;
  hooks?: unknown;
  annotations?: Record<string, string>;
  linux?: { namespaces?: Array<{ type: string; path?: string }>; [key: string]: unknown };
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

/** A copy of `spec` ready for the guest, with its rootfs at `guestRootfs`. */
export function guestSpec(spec: OciSpec, guestRootfs: string, logger: Logger): OciSpec {
  const out: OciSpec = JSON.parse(JSON.stringify(spec));
  out.root = { ...(out.root ?? {}), path: guestRootfs };
  if (out.hooks) {
    // Hooks name host binaries; they cannot run inside the guest.
    logger.warn('OCI hooks are not run inside the VM; dropping them');
    delete out.hooks;
  }
  if (out.mounts) {
    out.mounts = out.mounts.filter((m) => {
      const isHostBind = m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
      if (isHostBind) logger.warn({ destination: m.destination, source: m.source }, 'host bind mounts are not shared with the VM yet; skipping');
      return !isHostBind;
    });
  }
  if (out.linux?.namespaces) {
    // Namespace paths refer to the host (e.g. the pod netns); the guest makes its own.
    out.linux.namespaces = out.linux.namespaces.map(({ type }) => ({ type }));
  }
  return out;
}
