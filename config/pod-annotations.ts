// Pod annotations that change a sandbox's configuration, under the allowlists of the
// main configuration, as Kata's `enable_annotations` and `valid_*_paths`: whoever writes
// a pod spec sets annotations (CRI passes `io.katacontainers.*` through when
// pod_annotations allows it), while the configuration names binaries the shim runs as
// root and switches host-wide settings. Nothing is enabled by default; every refusal
// names the annotation and the rule, and comes before any VM starts.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { RuntimeConfig } from './runtime-config';
import { vmCap } from '../sandbox/resources';

/** The OCI annotation Kata reads a sandbox's configuration path from. */
export const CONFIG_PATH_ANNOTATION = 'io.katacontainers.config_path';
/** Per-pod overrides of configuration keys; the hypervisor's follow this prefix. */
const CONFIG_ANNOTATION_PREFIX = 'io.katacontainers.config.';
const HYPERVISOR_ANNOTATION_PREFIX = `${CONFIG_ANNOTATION_PREFIX}hypervisor.`;

/** The hypervisor keys a pod may override when enabled, and how each applies. */
const HYPERVISOR_OVERRIDES: Record<string, (config: RuntimeConfig, value: string, annotation: string) => void> = {
  // Never beyond the VM's maximum, also where the maximum is the default (0): a pod must not boot a VM bigger than the cap.
  default_memory: (config, value, annotation) => {
    const h = config.hypervisor;
    h.memoryMiB = positiveInteger(value, annotation, 128);
    const max = vmCap(h).memoryMiB;
    if (h.memoryMiB > max) throw new InvalidArgumentError(`annotation ${annotation}: ${h.memoryMiB} MiB is more than the VM's maximum (default_maxmemory: ${h.maxMemoryMiB || `0, i.e. ${max}`} MiB)`);
  },
  default_vcpus: (config, value, annotation) => {
    const h = config.hypervisor;
    h.vcpus = positiveInteger(value, annotation, 1);
    const max = vmCap(h).vcpus;
    if (h.vcpus > max) throw new InvalidArgumentError(`annotation ${annotation}: ${h.vcpus} vCPUs is more than the VM's maximum (default_maxvcpus: ${h.maxVcpus || `0, i.e. ${max}`})`);
  },
};

function positiveInteger(value: string, annotation: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min) throw new InvalidArgumentError(`annotation ${annotation}: must be an integer of at least ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/** A glob of Kata's valid_*_paths: `*` and `?` within one path component. */
function globMatches(glob: string, file: string): boolean {
  const pattern = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${pattern}$`).test(file);
}

/**
 * The file `io.katacontainers.config_path` may make the sandbox use: a regular file
 * (symlinks resolved) matching one of the main configuration's `valid_config_paths`,
 * and never a drop-in (a `config.d` file read as a main file would shed every key the
 * main file sets, the administrator's caps among them).
 */
export function allowedConfigPath(file: string, validPaths: string[], mainFile: string): string {
  const rule = `[runtime] valid_config_paths of ${mainFile}`;
  if (validPaths.length === 0) throw new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} is not enabled: ${rule} is empty, so a pod cannot choose its configuration`);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read configuration ${file} (named by annotation ${CONFIG_PATH_ANNOTATION}): ${(err as Error).message}`);
  }
  const isDropIn = (p: string): boolean => path.basename(path.dirname(p)) === 'config.d';
  if (isDropIn(path.resolve(file)) || isDropIn(real)) throw new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} names ${file}, a config.d drop-in; a drop-in only amends its main file and is never one itself`);
  if (!validPaths.some((glob) => globMatches(glob, real))) throw new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} names ${file}${real === file ? '' : ` (${real})`}, which matches none of ${rule} (${validPaths.join(', ')})`);
  if (!fs.statSync(real).isFile()) throw new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} names ${file}, which is not a regular file`);
  return real;
}

/**
 * Applies the pod's `io.katacontainers.config.*` annotations to `config` (the
 * sandbox's own copy). Each must be enabled by the configuration's
 * `enable_annotations` (regular expressions over the key after
 * `io.katacontainers.config.hypervisor.`) and be one kata-ts implements.
 */
export function applyConfigAnnotations(config: RuntimeConfig, annotations: Record<string, string> | undefined, source: string): void {
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if (!key.startsWith(CONFIG_ANNOTATION_PREFIX)) continue;
    const name = key.startsWith(HYPERVISOR_ANNOTATION_PREFIX) ? key.slice(HYPERVISOR_ANNOTATION_PREFIX.length) : undefined;
    const enabled = name !== undefined && config.hypervisor.enableAnnotations.some((re) => new RegExp(`^(?:${re})$`).test(name));
    if (!enabled) {
      throw new InvalidArgumentError(`annotation ${key} is not enabled: ${name === undefined ? 'only hypervisor keys can be' : `no entry of enable_annotations in [hypervisor.${config.hypervisor.kind}] of ${source} matches ${JSON.stringify(name)}`}`);
    }
    const apply = HYPERVISOR_OVERRIDES[name];
    if (!apply) throw new InvalidArgumentError(`annotation ${key} is enabled but kata-ts cannot apply it per pod (it can: ${Object.keys(HYPERVISOR_OVERRIDES).join(', ')})`);
    apply(config, value, key);
  }
}
