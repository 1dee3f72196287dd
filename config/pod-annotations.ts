// Pod annotations that change a sandbox's configuration, under the allowlists of the
// main configuration, as Kata's `enable_annotations` and `valid_*_paths`: whoever writes
// a pod spec sets annotations (CRI passes `io.katacontainers.*` through when
// pod_annotations allows it), while the configuration names binaries the shim runs as
// root and switches host-wide settings. Nothing is enabled by default; every refusal
// names the annotation and the rule, and comes before any VM starts.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { annotationEnabled, checkConfig, ConfigValueError, HypervisorConfig, RuntimeConfig, splitKernelParams } from './runtime-config';
import { hostSize, vmCap } from '../sandbox/resources';

/** The OCI annotation Kata reads a sandbox's configuration path from. */
export const CONFIG_PATH_ANNOTATION = 'io.katacontainers.config_path';
/** Per-pod overrides of configuration keys; the hypervisor's follow this prefix. */
const CONFIG_ANNOTATION_PREFIX = 'io.katacontainers.config.';
const HYPERVISOR_ANNOTATION_PREFIX = `${CONFIG_ANNOTATION_PREFIX}hypervisor.`;

/** How one annotation's value lands in the sandbox's configuration. */
interface Override {
  /** The field it sets, so that a value rule it breaks names the annotation; none for a key that sets nothing. */
  field?: keyof HypervisorConfig;
  apply(h: HypervisorConfig, value: string, annotation: string, config: RuntimeConfig): void;
}

/**
 * The hypervisor keys a pod may override when enabled, and how each applies. After
 * all of a pod's overrides, the configuration passes the file's value rules again
 * (checkConfig), so an annotation can set nothing a file could not.
 */
const HYPERVISOR_OVERRIDES: Record<string, Override> = {
  default_memory: { field: 'memoryMiB', apply: (h, value, annotation) => void (h.memoryMiB = integer(value, annotation, 128)) },
  default_vcpus: { field: 'vcpus', apply: (h, value, annotation) => void (h.vcpus = integer(value, annotation, 1)) },
  default_maxmemory: { field: 'maxMemoryMiB', apply: (h, value, annotation) => void (h.maxMemoryMiB = integer(value, annotation, 0)) },
  // As in Kata: a parameter replaces the configuration's of the same name, else joins
  // them, after the runtime's own. Each must be one of POD_KERNEL_PARAMS; length
  // follows the file's rule.
  kernel_params: {
    field: 'kernelParams',
    apply: (h, value, annotation) => {
      const params = splitKernelParams(value);
      for (const param of params) {
        const refused = annotationKernelParamRefusal(param);
        if (refused) throw new InvalidArgumentError(`annotation ${annotation}: kernel parameter ${JSON.stringify(param)} is refused: ${refused}`);
      }
      h.kernelParams = overrideKernelParams(h.kernelParams, params);
    },
  },
  // A pod may opt out of templating (its VM then shares no pages with other pods'), not
  // in: where templates are made and kept is the administrator's choice.
  enable_template: {
    apply: (_h, value, annotation, config) => {
      if (value !== 'true' && value !== 'false') throw new InvalidArgumentError(`annotation ${annotation}: must be "true" or "false", got ${JSON.stringify(value)}`);
      if (value === 'true' && !config.factory.enableTemplate) throw new InvalidArgumentError(`annotation ${annotation}: true cannot be honoured: a pod may only turn VM templates off; set [factory] enable_template in the configuration to use them`);
      config.factory.enableTemplate = value === 'true';
    },
  },
};

function integer(value: string, annotation: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`annotation ${annotation}: must be ${min > 0 ? `an integer of at least ${min}` : 'a non-negative integer'}, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * The kernel parameters a pod may set, when enable_annotations lets it: each changes only
 * how much its own guest logs or how that guest sizes its memory pages. Every other one
 * is refused. A deny list cannot be complete: the kernel also takes sysctls as
 * `sysctl/kernel/core_pattern=…` and bare aliases, `-` for `_` in names, argv and
 * environment entries for init, and hundreds of switches that weaken what keeps the
 * pod's containers apart (cgroup_disable=, pti=off, …).
 */
export const POD_KERNEL_PARAMS: readonly string[] = [
  'quiet', 'debug', 'loglevel', 'ignore_loglevel', 'log_buf_len', 'printk.time', 'printk.devkmsg', 'initcall_debug', 'nmi_watchdog',
  'hugepages', 'hugepagesz', 'default_hugepagesz', 'transparent_hugepage',
];

/** A parameter's name as the kernel compares it: '-' and '_' are the same character there. */
function kernelParamName(param: string): string {
  return param.split('=')[0].replace(/-/g, '_');
}

/** Why a pod's kernel_params annotation may not carry `param`; undefined when it may. */
export function annotationKernelParamRefusal(param: string): string | undefined {
  // The kernel splits at byte 0xA0 too (a UTF-8 continuation byte), and strips quotes
  // ("init=/x" sets init): only printable ASCII without quotes means what it seems.
  if (!/^[\x21-\x7e]+$/.test(param) || param.includes('"')) return 'only printable ASCII without double quotes is allowed';
  if (!POD_KERNEL_PARAMS.includes(kernelParamName(param))) {
    return `a pod may set only ${POD_KERNEL_PARAMS.join(', ')} (the rest belong to the runtime and its administrator)`;
  }
  return undefined;
}

/** `params` over `base`, Kata's way: each replaces the base parameters of its name (the part before '='). */
export function overrideKernelParams(base: string[], params: string[]): string[] {
  const nameOf = kernelParamName;
  let result = base;
  for (const param of params) result = [...result.filter((p) => nameOf(p) !== nameOf(param)), param];
  return result;
}

/**
 * Checks the combined result of a pod's overrides (`setBy`: field → annotation):
 * never a VM bigger than its maximum, also where the maximum is the default (0), a
 * maximum no bigger than the host, then the file's own value rules.
 */
function checkOverrides(config: RuntimeConfig, setBy: Map<string, string>, source: string): void {
  const h = config.hypervisor;
  const cap = vmCap(h);
  const memory = setBy.get('memoryMiB');
  if (memory && h.memoryMiB > cap.memoryMiB) throw new InvalidArgumentError(`annotation ${memory}: ${h.memoryMiB} MiB is more than the VM's maximum (default_maxmemory: ${h.maxMemoryMiB || `0, i.e. ${cap.memoryMiB}`} MiB)`);
  const vcpus = setBy.get('vcpus');
  if (vcpus && h.vcpus > cap.vcpus) throw new InvalidArgumentError(`annotation ${vcpus}: ${h.vcpus} vCPUs is more than the VM's maximum (default_maxvcpus: ${h.maxVcpus || `0, i.e. ${cap.vcpus}`})`);
  const maxMemory = setBy.get('maxMemoryMiB');
  const host = hostSize().memoryMiB;
  // Kata caps a larger default_maxmemory at the host's memory; a pod gets no more.
  if (maxMemory && h.maxMemoryMiB > host) throw new InvalidArgumentError(`annotation ${maxMemory}: ${h.maxMemoryMiB} MiB is more than the host's memory (${host} MiB)`);
  const annotationOf = (section: string, field: string): string | undefined => (section === 'hypervisor' ? setBy.get(field) : undefined);
  try {
    checkConfig(config, { keyName: (section, field) => annotationOf(section, field) ?? `${section}.${field}`, fileOf: () => source });
  } catch (err) {
    if (!(err instanceof ConfigValueError)) throw err;
    if ([...setBy.values()].includes(err.key)) throw new InvalidArgumentError(`annotation ${err.key}: ${err.reason}`);
    throw new InvalidArgumentError(`annotations ${[...setBy.values()].join(', ')} do not fit ${err.message}`);
  }
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
 * `io.katacontainers.config.hypervisor.`) and be one kata-ts implements; together
 * they pass the file's value rules, or `config` stays as it was.
 */
export function applyConfigAnnotations(config: RuntimeConfig, annotations: Record<string, string> | undefined, source: string): void {
  // Overrides go onto a copy, which replaces the configuration only once it passed every check.
  const next = structuredClone(config);
  const setBy = new Map<string, string>();
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if (!key.startsWith(CONFIG_ANNOTATION_PREFIX)) continue;
    const name = key.startsWith(HYPERVISOR_ANNOTATION_PREFIX) ? key.slice(HYPERVISOR_ANNOTATION_PREFIX.length) : undefined;
    const enabled = name !== undefined && annotationEnabled(config, name);
    if (!enabled) {
      throw new InvalidArgumentError(`annotation ${key} is not enabled: ${name === undefined ? 'only hypervisor keys can be' : `no entry of enable_annotations in [hypervisor.${config.hypervisor.kind}] of ${source} matches ${JSON.stringify(name)}`}`);
    }
    const override = HYPERVISOR_OVERRIDES[name];
    if (!override) throw new InvalidArgumentError(`annotation ${key} is enabled but kata-ts cannot apply it per pod (it can: ${Object.keys(HYPERVISOR_OVERRIDES).join(', ')})`);
    override.apply(next.hypervisor, value, key, next);
    if (override.field) setBy.set(override.field, key);
  }
  if (setBy.size > 0) {
    checkOverrides(next, setBy, source);
    const asConfigured = structuredClone(config.hypervisor);
    Object.assign(config.hypervisor, next.hypervisor);
    config.podOverrides = { annotations: [...new Set(setBy.values())].sort(), asConfigured };
  }
  config.factory.enableTemplate = next.factory.enableTemplate;
}
