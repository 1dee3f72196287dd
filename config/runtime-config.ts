// The shim's configuration, parsed once into a typed, validated object.
// Sources: see loadConfig (TOML with drop-ins in toml-config.ts, or JSON).
// Every bad value is rejected with the file, the key and the reason.
import * as fs from 'fs';
import { InvalidArgumentError } from '../lib/errors';
import { Accelerator, GuestRootfs } from '../hypervisors/hypervisor';

export interface RuntimeConfig {
  hypervisor: {
    path: string;
    accelerator: Accelerator;
    kernel: string;
    /** The rootfs: a DAX image (shared through the host page cache) or an initrd; exactly one is set. */
    image: string;
    initrd: string;
    kernelParams: string[];
    memoryMiB: number;
    vcpus: number;
  };
  agent: {
    /** How long the guest may take from VMM start to the agent answering. */
    bootTimeoutMs: number;
    /** Default deadline of agent calls that are not waits or reads. */
    callTimeoutMs: number;
    /** A root shell in the guest for `kata-ts-runtime exec` (Kata's debug_console_enabled). */
    debugConsole: boolean;
  };
  runtime: {
    /** Where each sandbox keeps its VMM sockets, shared directory and console log. */
    stateDir: string;
  };
}

export const DEFAULT_CONFIG_PATH = '/etc/kata-ts/config.json';

/** A bad configuration value; `key` and `reason` let other formats word it their way. */
export class ConfigValueError extends InvalidArgumentError {
  constructor(readonly source: string, readonly key: string, readonly reason: string) {
    super(`${source}: ${key}: ${reason}`);
  }
}

export function defaultConfig(): RuntimeConfig {
  return {
    hypervisor: {
      path: 'qemu-system-x86_64',
      accelerator: 'kvm',
      kernel: '/usr/share/kata-ts/guest/vmlinux',
      image: '/usr/share/kata-ts/guest/rootfs.img',
      initrd: '',
      kernelParams: [],
      memoryMiB: 1024,
      vcpus: 1,
    },
    agent: { bootTimeoutMs: 120_000, callTimeoutMs: 30_000, debugConsole: false },
    runtime: { stateDir: '/run/kata-ts' },
  };
}

type Section = Record<string, unknown>;

/** Overlays `raw` (parsed JSON) on the defaults, checking every key. */
export function parseConfig(raw: unknown, source: string): RuntimeConfig {
  const config = defaultConfig();
  const fail = (key: string, reason: string): never => {
    throw new ConfigValueError(source, key, reason);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('(top level)', 'must be a JSON object');
  const sections = config as unknown as Record<string, Section>;
  // Setting one rootfs kind replaces the default of the other (Kata's image/initrd).
  const rawHypervisor = (raw as Section).hypervisor as Section | undefined;
  if (rawHypervisor && typeof rawHypervisor === 'object') {
    if ('initrd' in rawHypervisor && !('image' in rawHypervisor)) config.hypervisor.image = '';
    if ('image' in rawHypervisor && !('initrd' in rawHypervisor)) config.hypervisor.initrd = '';
  }
  for (const [sectionName, sectionValue] of Object.entries(raw as Section)) {
    const target = sections[sectionName];
    if (!target) fail(sectionName, `unknown section (known: ${Object.keys(sections).join(', ')})`);
    if (typeof sectionValue !== 'object' || sectionValue === null || Array.isArray(sectionValue)) fail(sectionName, 'must be an object');
    for (const [key, value] of Object.entries(sectionValue as Section)) {
      const name = `${sectionName}.${key}`;
      if (!(key in target)) fail(name, `unknown key (known: ${Object.keys(target).join(', ')})`);
      const expected = target[key];
      if (Array.isArray(expected)) {
        if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) fail(name, 'must be a list of strings');
      } else if (typeof value !== typeof expected) {
        fail(name, `must be a ${typeof expected}, got ${JSON.stringify(value)}`);
      }
      target[key] = value;
    }
  }
  const h = config.hypervisor;
  if (h.accelerator !== 'kvm' && h.accelerator !== 'tcg') fail('hypervisor.accelerator', `must be "kvm" or "tcg", got ${JSON.stringify(h.accelerator)}`);
  if (Boolean(h.image) === Boolean(h.initrd)) {
    fail('hypervisor.image', h.image ? `set together with hypervisor.initrd (${JSON.stringify(h.initrd)}); set exactly one of them` : 'neither an image nor an initrd is set; set exactly one of them');
  }
  if (!Number.isInteger(h.memoryMiB) || h.memoryMiB < 128) fail('hypervisor.memoryMiB', 'must be an integer of at least 128');
  if (!Number.isInteger(h.vcpus) || h.vcpus < 1) fail('hypervisor.vcpus', 'must be a positive integer');
  for (const key of ['bootTimeoutMs', 'callTimeoutMs'] as const) {
    if (!(config.agent[key] > 0)) fail(`agent.${key}`, 'must be a positive number of milliseconds');
  }
  return config;
}

/** The guest rootfs the configuration names (validation made sure exactly one is set). */
export function guestRootfs(config: RuntimeConfig): GuestRootfs {
  const h = config.hypervisor;
  return h.image ? { kind: 'image', path: h.image } : { kind: 'initrd', path: h.initrd };
}

/** Kata-style TOML (with config.d/ drop-ins), looked for before the JSON file. */
export const DEFAULT_TOML_CONFIG_PATH = '/etc/kata-ts/configuration.toml';

/**
 * The configuration: $KATATS_CONFIG (TOML if it ends in .toml, else JSON), else
 * /etc/kata-ts/configuration.toml, else /etc/kata-ts/config.json, else defaults.
 */
export function loadConfig(path = process.env.KATATS_CONFIG ?? (fs.existsSync(DEFAULT_TOML_CONFIG_PATH) ? DEFAULT_TOML_CONFIG_PATH : DEFAULT_CONFIG_PATH)): RuntimeConfig {
  if (path.endsWith('.toml')) {
    // Loaded lazily: the TOML loader imports this module.
    return (require('./toml-config') as typeof import('./toml-config')).loadTomlConfig(path);
  }
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && path === DEFAULT_CONFIG_PATH) return defaultConfig();
    throw new InvalidArgumentError(`cannot read configuration ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, path);
}
