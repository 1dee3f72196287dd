// Kata-style configuration: one TOML file plus a `config.d/` directory beside it,
// whose files (in name order) override only the keys they set. Keys follow Kata's
// names where Kata has them (default_memory, kernel_params, dial_timeout …). Every
// error names the file that set the offending key.
import * as fs from 'fs';
import * as path from 'path';
import { parse } from 'smol-toml';
import { InvalidArgumentError } from '../lib/errors';
import { ConfigValueError, parseConfig, RuntimeConfig } from './runtime-config';

type Table = Record<string, unknown>;

/** TOML key (section.key) → where it lands in RuntimeConfig, and how to convert it. */
const KEYS: Record<string, { section: keyof RuntimeConfig; key: string; convert?: (value: unknown, where: string) => unknown }> = {
  'hypervisor.qemu.path': { section: 'hypervisor', key: 'path' },
  'hypervisor.qemu.accelerator': { section: 'hypervisor', key: 'accelerator' },
  'hypervisor.qemu.kernel': { section: 'hypervisor', key: 'kernel' },
  'hypervisor.qemu.image': { section: 'hypervisor', key: 'image' },
  'hypervisor.qemu.initrd': { section: 'hypervisor', key: 'initrd' },
  'hypervisor.qemu.kernel_params': { section: 'hypervisor', key: 'kernelParams', convert: (v, where) => splitParams(v, where) },
  'hypervisor.qemu.default_memory': { section: 'hypervisor', key: 'memoryMiB' },
  'hypervisor.qemu.default_vcpus': { section: 'hypervisor', key: 'vcpus' },
  'agent.kata.dial_timeout': { section: 'agent', key: 'bootTimeoutMs', convert: (v, where) => seconds(v, where) },
  'agent.kata.call_timeout': { section: 'agent', key: 'callTimeoutMs', convert: (v, where) => seconds(v, where) },
  'agent.kata.debug_console_enabled': { section: 'agent', key: 'debugConsole' },
  'runtime.state_dir': { section: 'runtime', key: 'stateDir' },
};

/** VMMs Kata configures that this runtime does not drive yet. */
const OTHER_HYPERVISORS = ['clh', 'firecracker', 'dragonball', 'stratovirt', 'acrn'];

function splitParams(value: unknown, where: string): unknown {
  if (typeof value !== 'string') throw new InvalidArgumentError(`${where}: must be a string of space-separated kernel parameters`);
  return value.split(/\s+/).filter(Boolean);
}

function seconds(value: unknown, where: string): unknown {
  if (typeof value !== 'number' || !(value > 0)) throw new InvalidArgumentError(`${where}: must be a positive number of seconds`);
  return value * 1000;
}

/** Flattens a parsed TOML file to `a.b.c` → value, rejecting unknown keys. */
function flatten(table: Table, file: string, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name, value] of Object.entries(table)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (prefix === 'hypervisor' && OTHER_HYPERVISORS.includes(name)) {
      throw new InvalidArgumentError(`${file}: [hypervisor.${name}]: this runtime drives only QEMU for now ([hypervisor.qemu])`);
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)) {
      const isKnownSection = Object.keys(KEYS).some((k) => k.startsWith(`${key}.`));
      if (!isKnownSection) throw new InvalidArgumentError(`${file}: [${key}]: unknown section`);
      for (const [k, v] of flatten(value as Table, file, key)) out.set(k, v);
    } else {
      if (!KEYS[key]) {
        const section = prefix || '(top level)';
        const known = Object.keys(KEYS).filter((k) => k.startsWith(`${prefix}.`)).map((k) => k.slice(prefix.length + 1));
        throw new InvalidArgumentError(`${file}: ${key}: unknown key in [${section}]${known.length ? ` (known: ${known.join(', ')})` : ''}`);
      }
      out.set(key, value);
    }
  }
  return out;
}

function readToml(file: string): Table {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read configuration ${file}: ${(err as Error).message}`);
  }
  try {
    return parse(text) as Table;
  } catch (err) {
    throw new InvalidArgumentError(`${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** The drop-in files that apply to `mainFile`, in the order they override it. */
export function dropInFiles(mainFile: string): string[] {
  const dir = path.join(path.dirname(mainFile), 'config.d');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.toml')).sort().map((n) => path.join(dir, n));
}

/**
 * Loads `mainFile` and its drop-ins. Each value is converted and validated on its
 * own first, so a bad value is reported with the file that set it; the merged
 * result then goes through the same checks as every configuration.
 */
export function loadTomlConfig(mainFile: string): RuntimeConfig {
  const files = [mainFile, ...dropInFiles(mainFile)];
  const raw: Record<string, Table> = {};
  for (const file of files) {
    const values = flatten(readToml(file), file);
    // A file that names one rootfs kind replaces what earlier files said of the other.
    for (const [kind, other] of [['image', 'initrd'], ['initrd', 'image']] as const) {
      if (values.has(`hypervisor.qemu.${kind}`) && !values.has(`hypervisor.qemu.${other}`)) (raw.hypervisor ??= {})[other] = '';
    }
    for (const [key, value] of values) {
      const target = KEYS[key];
      const converted = target.convert ? target.convert(value, `${file}: ${key}`) : value;
      // Check this one value in isolation, so the error names this file and key.
      try {
        // An empty image/initrd only says "not this kind"; the merged result is checked below.
        if (!(converted === '' && (target.key === 'image' || target.key === 'initrd'))) parseConfig({ [target.section]: { [target.key]: converted } }, file);
      } catch (err) {
        if (err instanceof ConfigValueError) throw new InvalidArgumentError(`${file}: ${key}: ${err.reason}`);
        throw err;
      }
      (raw[target.section] ??= {})[target.key] = converted;
    }
  }
  return parseConfig(raw, files.join(' + '));
}
