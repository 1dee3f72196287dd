// Kata-style configuration: one TOML file plus a `config.d/` directory beside it,
// whose files (in name order) override only the keys they set. Keys follow Kata's
// names where Kata has them (default_memory, kernel_params, dial_timeout …), and Kata's
// other keys are judged by config/kata-keys.ts, so Kata's own file loads. Every error
// names the file that set the offending key.
import * as fs from 'fs';
import * as path from 'path';
import { parse } from 'smol-toml';
import { InvalidArgumentError } from '../lib/errors';
import { HYPERVISOR_KINDS, HypervisorKind } from '../hypervisors/hypervisor';
import { IgnoredKey, KATA_AGENT_KEYS, KATA_FACTORY_KEYS, KATA_IMAGE_KEYS, KATA_RUNTIME_KEYS, kataHypervisorKeys, KataKeyRule, refusal } from './kata-keys';
import { annotationWarnings, ConfigNaming, hypervisorSettingApplies, LoadedFile, parseConfig, RuntimeConfig, splitKernelParams } from './runtime-config';

type Table = Record<string, unknown>;

/** Where a TOML key lands in its RuntimeConfig section, and how its value converts. */
interface KeyMapping {
  field: string;
  convert?: (value: unknown, where: string) => unknown;
}

// One table per TOML block, so a new key is one line in the block it belongs to. Keys
// that are not Kata's (accelerator, call_timeout, state_dir, ksm …) are kata-ts's own.

/** Keys of every `[hypervisor.<kind>]` block; parseConfig refuses, with the reason, those a VMM does not take. */
const HYPERVISOR_KEYS: Record<string, KeyMapping> = {
  path: { field: 'path' },
  accelerator: { field: 'accelerator' },
  kernel: { field: 'kernel' },
  image: { field: 'image' },
  initrd: { field: 'initrd' },
  kernel_params: { field: 'kernelParams', convert: kernelParams },
  default_memory: { field: 'memoryMiB' },
  default_vcpus: { field: 'vcpus' },
  default_maxvcpus: { field: 'maxVcpus' },
  default_maxmemory: { field: 'maxMemoryMiB' },
  shared_fs: { field: 'sharedFs' },
  virtio_fs_daemon: { field: 'virtioFsDaemon' },
  virtio_fs_cache: { field: 'virtioFsCache' },
  virtio_fs_extra_args: { field: 'virtioFsExtraArgs' },
  agent_channel: { field: 'agentChannel' },
  vsock_backend: { field: 'vsockBackend' },
  seccompsandbox: { field: 'seccompSandbox' },
  cpu_features: { field: 'pmu', convert: cpuFeatures },
  tcg_tb_size: { field: 'tcgTbSizeMiB' },
  enable_annotations: { field: 'enableAnnotations' },
};

const AGENT_KEYS: Record<string, KeyMapping> = {
  dial_timeout: { field: 'bootTimeoutMs', convert: seconds },
  call_timeout: { field: 'callTimeoutMs', convert: seconds },
  debug_console_enabled: { field: 'debugConsole' },
};

const RUNTIME_KEYS: Record<string, KeyMapping> = {
  state_dir: { field: 'stateDir' },
  ksm: { field: 'ksm' },
  sandbox_cgroup_only: { field: 'sandboxCgroupOnly' },
  overhead_cgroup: { field: 'overheadCgroup' },
  valid_config_paths: { field: 'validConfigPaths' },
  kill_grace: { field: 'killGraceMs', convert: seconds },
};

const FACTORY_KEYS: Record<string, KeyMapping> = {
  enable_template: { field: 'enableTemplate' },
  template_path: { field: 'templatePath' },
  spare_shims: { field: 'spareShims' },
  spare_vms: { field: 'spareVms' },
};

interface Block {
  /** The RuntimeConfig section the implemented keys fill; none for a block kata-ts implements nothing of. */
  section?: keyof RuntimeConfig;
  keys: Record<string, KeyMapping>;
  /** Kata's keys of the block that kata-ts accepts without using, or refuses (config/kata-keys.ts). */
  kata: Record<string, KataKeyRule>;
  /** Set for the `[hypervisor.<kind>]` blocks. */
  kind?: HypervisorKind;
}

/** TOML block name → the RuntimeConfig section it fills. */
const BLOCKS: Record<string, Block> = {
  ...Object.fromEntries(HYPERVISOR_KINDS.map((kind) => [`hypervisor.${kind}`, { section: 'hypervisor', keys: HYPERVISOR_KEYS, kata: kataHypervisorKeys(kind), kind }])),
  'agent.kata': { section: 'agent', keys: AGENT_KEYS, kata: KATA_AGENT_KEYS },
  runtime: { section: 'runtime', keys: RUNTIME_KEYS, kata: KATA_RUNTIME_KEYS },
  factory: { section: 'factory', keys: FACTORY_KEYS, kata: KATA_FACTORY_KEYS },
  image: { keys: {}, kata: KATA_IMAGE_KEYS },
};

/** VMMs Kata configures that this runtime has no driver for. */
const OTHER_HYPERVISORS = ['dragonball', 'stratovirt', 'acrn', 'remote'];

const HYPERVISOR_SECTIONS = HYPERVISOR_KINDS.map((k) => `[hypervisor.${k}]`).join(', ');

function kernelParams(value: unknown, where: string): unknown {
  if (typeof value !== 'string') throw new InvalidArgumentError(`${where}: must be a string of space-separated kernel parameters`);
  return splitKernelParams(value);
}

/**
 * Kata's cpu_features, QEMU's -cpu flags: kata-ts honours "pmu=off" (Kata's default,
 * the guest gets no virtual PMU) and "" (QEMU's CPU model as it is), as the `pmu` setting.
 */
function cpuFeatures(value: unknown, where: string): unknown {
  if (value === '') return true;
  if (value === 'pmu=off') return false;
  throw new InvalidArgumentError(`${where}: ${JSON.stringify(value)} cannot be honoured: kata-ts passes QEMU no CPU feature flags but pmu=off (accepted: "", "pmu=off")`);
}

function seconds(value: unknown, where: string): unknown {
  if (typeof value !== 'number' || !(value > 0)) throw new InvalidArgumentError(`${where}: must be a positive number of seconds`);
  return value * 1000;
}

const isTable = (value: unknown): value is Table => value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);

/** One key a file sets. */
interface Setting {
  block: string;
  key: string;
  value: unknown;
}

/** What one file says: its settings, the Kata keys it sets that kata-ts does not use, and the blocks it names (an empty block still names its VMM). */
interface FileContent {
  blocks: string[];
  settings: Setting[];
  ignored: IgnoredKey[];
}

/** The keys of `block` kata-ts implements, for messages. */
function implementedKeys(block: Block): string[] {
  return Object.entries(block.keys).filter(([, m]) => !block.kind || hypervisorSettingApplies(block.kind, m.field)).map(([k]) => k);
}

/** The key of `candidates` one or two edits away from `name`: the likely intent of a typo. */
function nearest(name: string, candidates: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      row = next;
    }
    return row[b.length];
  };
  return candidates.map((c) => ({ c, d: distance(name, c) })).filter(({ d }) => d <= 2).sort((x, y) => x.d - y.d)[0]?.c;
}

/**
 * One key of a block: implemented (a setting), one of Kata's that kata-ts accepts
 * without using (noted in `ignored`) or refuses, or a key nobody has (refused, naming
 * the likely intended one). A key kata-ts implements only for other VMMs goes on as a
 * setting when Kata has no rule for it, so parseConfig refuses it saying why.
 */
function readKey(block: Block, blockName: string, name: string, value: unknown, file: string, out: FileContent): void {
  const key = `${blockName}.${name}`;
  const mapping = block.keys[name];
  const kata = block.kata[name];
  if (mapping && (!block.kind || hypervisorSettingApplies(block.kind, mapping.field) || !kata)) {
    out.settings.push({ block: blockName, key: name, value });
    return;
  }
  if (kata) {
    const refused = refusal(kata, value);
    if (refused) throw new InvalidArgumentError(`${file}: ${key}: ${refused}`);
    out.ignored.push({ key, file, reason: kata.ours });
    return;
  }
  const implemented = implementedKeys(block);
  const guess = nearest(name, [...implemented, ...Object.keys(block.kata)]);
  const known = implemented.length ? `; kata-ts implements ${implemented.join(', ')}` : '';
  throw new InvalidArgumentError(`${file}: ${key}: unknown key in [${blockName}]: ${guess ? `did you mean ${guess}?` : `neither kata-ts nor Kata has it${known}`}`);
}

/** Walks a parsed file down to its blocks, rejecting unknown sections and keys. */
function readBlocks(table: Table, file: string, prefix = '', out: FileContent = { blocks: [], settings: [], ignored: [] }): FileContent {
  const block = BLOCKS[prefix];
  if (block) out.blocks.push(prefix);
  for (const [name, value] of Object.entries(table)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (block && !isTable(value)) {
      readKey(block, prefix, name, value, file, out);
    } else if (isTable(value)) {
      if (prefix === 'hypervisor' && OTHER_HYPERVISORS.includes(name)) {
        throw new InvalidArgumentError(`${file}: [${key}]: kata-ts has no driver for this VMM (it drives ${HYPERVISOR_SECTIONS})`);
      }
      const leadsToBlock = Object.keys(BLOCKS).some((b) => b === key || b.startsWith(`${key}.`));
      if (!leadsToBlock) throw new InvalidArgumentError(`${file}: [${key}]: unknown section`);
      readBlocks(value, file, key, out);
    } else {
      throw new InvalidArgumentError(`${file}: ${key}: unknown key ${prefix ? `in [${prefix}]` : 'at the top level'} (keys belong in a section such as ${HYPERVISOR_SECTIONS}, [agent.kata], [runtime] or [factory])`);
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
 * Loads `mainFile` and its drop-ins: each file's values override earlier files' key by
 * key, then the merged result goes through the same checks as every configuration,
 * its errors naming the TOML key and the file that set it last. Kata keys accepted
 * without being used come back once each, with the file that set them last.
 */
export function loadTomlConfig(mainFile: string): LoadedFile {
  const files = [mainFile, ...dropInFiles(mainFile)];
  const raw: Record<string, Table> = {};
  const ignored = new Map<string, IgnoredKey>();
  /** `section.field` → the file that set it last. */
  const origins = new Map<string, string>();
  let hypervisor: { kind: HypervisorKind; file: string; block: string } | undefined;
  for (const file of files) {
    const content = readBlocks(readToml(file), file);
    for (const block of content.blocks) {
      const kind = BLOCKS[block].kind;
      if (!kind) continue;
      if (hypervisor && hypervisor.kind !== kind) {
        const where = hypervisor.file === file ? `${file}: [${hypervisor.block}] and [${block}]` : `${file}: [${block}]: ${hypervisor.file} already configures [${hypervisor.block}]`;
        throw new InvalidArgumentError(`${where}: the configuration names exactly one of ${HYPERVISOR_SECTIONS} (drop-ins override keys of that one)`);
      }
      hypervisor ??= { kind, file, block };
    }
    for (const entry of content.ignored) {
      ignored.delete(entry.key); // re-inserted: listed in the order last set
      ignored.set(entry.key, entry);
    }
    const sets = (field: string): boolean => content.settings.some((s) => BLOCKS[s.block].section === 'hypervisor' && BLOCKS[s.block].keys[s.key].field === field);
    // A file that names one rootfs kind replaces what earlier files said of the other.
    for (const [kind, other] of [['image', 'initrd'], ['initrd', 'image']] as const) {
      if (sets(kind) && !sets(other) && raw.hypervisor) {
        delete raw.hypervisor[other];
        origins.delete(`hypervisor.${other}`);
      }
    }
    for (const { block, key, value } of content.settings) {
      const { section, keys } = BLOCKS[block];
      const { field, convert } = keys[key];
      // Only blocks with a section have implemented keys.
      (raw[section!] ??= {})[field] = convert ? convert(value, `${file}: ${block}.${key}`) : value;
      origins.set(`${section}.${field}`, file);
    }
  }
  if (hypervisor) {
    (raw.hypervisor ??= {}).kind = hypervisor.kind;
    origins.set('hypervisor.kind', hypervisor.file);
  }
  const kindBlock = hypervisor?.block ?? 'hypervisor.qemu';
  const naming: ConfigNaming = {
    keyName(section, field) {
      const blockName = section === 'hypervisor' ? kindBlock : Object.keys(BLOCKS).find((b) => BLOCKS[b].section === section);
      const key = blockName && Object.entries(BLOCKS[blockName].keys).find(([, m]) => m.field === field)?.[0];
      return key ? `${blockName}.${key}` : `[${blockName ?? section}]`;
    },
    fileOf: (section, field) => origins.get(`${section}.${field}`) ?? mainFile,
  };
  const config = parseConfig(raw, naming);
  const warnings = annotationWarnings(config, naming.keyName('hypervisor', 'enableAnnotations'), naming.fileOf('hypervisor', 'enableAnnotations'));
  return { config, files, ignoredKeys: [...ignored.values(), ...warnings] };
}
