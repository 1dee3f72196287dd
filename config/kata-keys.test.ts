import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parse } from 'smol-toml';
import { InvalidArgumentError } from '../lib/errors';
import { HYPERVISOR_KINDS } from '../hypervisors/hypervisor';
import { KATA_AGENT_KEYS, KATA_FACTORY_KEYS, KATA_IMAGE_KEYS, KATA_RUNTIME_KEYS, kataHypervisorKeys, refusal } from './kata-keys';
import { loadTomlConfig } from './toml-config';

/** Kata's QEMU configuration at its documented defaults (our own fixture, written from Kata's key names and Makefile values). */
const FIXTURE = path.join(__dirname, '..', 'tests', 'fixtures', 'kata-configuration-qemu.toml');

/** `block.key` of every key a TOML file sets. */
function keysOf(file: string): string[] {
  const out: string[] = [];
  const walk = (table: Record<string, unknown>, prefix: string): void => {
    for (const [name, value] of Object.entries(table)) {
      const key = prefix ? `${prefix}.${name}` : name;
      if (value && typeof value === 'object' && !Array.isArray(value)) walk(value as Record<string, unknown>, key);
      else out.push(key);
    }
  };
  walk(parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>, '');
  return out;
}

/** Kata keys kata-ts implements (toml-config.ts's tables); every other key of the fixture must be ignored with a reason. */
const IMPLEMENTED = [
  'hypervisor.qemu.path', 'hypervisor.qemu.kernel', 'hypervisor.qemu.image', 'hypervisor.qemu.kernel_params', 'hypervisor.qemu.default_memory',
  'hypervisor.qemu.default_vcpus', 'hypervisor.qemu.default_maxvcpus', 'hypervisor.qemu.default_maxmemory', 'hypervisor.qemu.seccompsandbox', 'hypervisor.qemu.cpu_features',
  'hypervisor.qemu.shared_fs', 'hypervisor.qemu.virtio_fs_daemon', 'hypervisor.qemu.virtio_fs_cache', 'hypervisor.qemu.virtio_fs_extra_args',
  'hypervisor.qemu.enable_annotations', 'agent.kata.dial_timeout', 'agent.kata.debug_console_enabled', 'runtime.sandbox_cgroup_only',
  'factory.enable_template', 'factory.template_path',
];

describe("Kata's own configuration keys", () => {
  let dir: string;
  let main: string;
  const write = (file: string, text: string): string => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  };
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-keys-'));
    main = path.join(dir, 'configuration.toml');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("loads Kata's QEMU file at its defaults with warnings only: each key implemented or reported once, with why", () => {
    const { config, files, ignoredKeys } = loadTomlConfig(FIXTURE);
    expect(files).toEqual([FIXTURE]);
    expect(config.hypervisor).toMatchObject({
      kind: 'qemu', path: '/usr/bin/qemu-system-x86_64', kernel: '/usr/share/kata-containers/vmlinux.container', image: '/usr/share/kata-containers/kata-containers.img', initrd: '',
      kernelParams: ['cgroup_no_v1=all', 'systemd.unified_cgroup_hierarchy=1'], memoryMiB: 2048, vcpus: 1, maxVcpus: 0, maxMemoryMiB: 0, seccompSandbox: '', pmu: false,
      sharedFs: 'virtio-fs', virtioFsDaemon: '/usr/libexec/virtiofsd', virtioFsCache: 'auto',
      enableAnnotations: ['enable_iommu', 'kernel_params', 'kernel_verity_params'],
    });
    expect(config.agent).toMatchObject({ bootTimeoutMs: 45_000, debugConsole: false });
    expect(config.runtime).toMatchObject({ sandboxCgroupOnly: false });

    const all = keysOf(FIXTURE);
    expect(IMPLEMENTED.every((k) => all.includes(k))).toBe(true);
    // enable_annotations is implemented, and warned about: it lets pods set kernel_params.
    const expectedIgnored = [...all.filter((k) => !IMPLEMENTED.includes(k)), 'hypervisor.qemu.enable_annotations'];
    expect(ignoredKeys.map((k) => k.key).sort()).toEqual(expectedIgnored.sort());
    for (const entry of ignoredKeys) {
      expect(entry.file).toBe(FIXTURE);
      expect(entry.reason.length).toBeGreaterThan(10);
    }
    // Kata's default extra args are honoured: they cannot loosen the daemon.
    expect(config.hypervisor.virtioFsExtraArgs).toEqual(['--thread-pool-size=1', '--announce-submounts']);
  });

  it('gives every key a type Kata decodes it as, and accepts the value it would warn about', () => {
    const tables = [...HYPERVISOR_KINDS.map((k) => kataHypervisorKeys(k)), KATA_FACTORY_KEYS, KATA_AGENT_KEYS, KATA_RUNTIME_KEYS, KATA_IMAGE_KEYS];
    for (const table of tables) {
      for (const [key, rule] of Object.entries(table)) {
        const sample = rule.only === 'empty' ? [] : rule.only?.[0] ?? { boolean: false, string: '', integer: 0, strings: [], tables: [] }[rule.type];
        expect({ key, refusal: refusal(rule, sample) }).toEqual({ key, refusal: undefined });
      }
    }
  });

  it.each([
    // harmless whatever the value: reported, not refused
    ['[hypervisor.qemu]\nenable_debug = true\n', 'hypervisor.qemu.enable_debug'],
    ['[hypervisor.qemu]\ndefault_bridges = 5\n', 'hypervisor.qemu.default_bridges'],
    ['[hypervisor.qemu]\ndisable_vhost_net = true\n', 'hypervisor.qemu.disable_vhost_net'],
    ['[runtime]\njaeger_password = "s3cret"\n', 'runtime.jaeger_password'],
    // at a value kata-ts matches anyway
    ['[hypervisor.qemu]\nmachine_type = "q35"\n', 'hypervisor.qemu.machine_type'],
    ['[runtime]\ninternetworking_model = "tcfilter"\n', 'runtime.internetworking_model'],
    ['[image]\nservice_offload = false\n', 'image.service_offload'],
  ])('accepts %j with one warning', (text, key) => {
    write(main, text);
    const { ignoredKeys } = loadTomlConfig(main);
    expect(ignoredKeys).toEqual([{ key, file: main, reason: expect.any(String) }]);
    expect(ignoredKeys[0].reason).not.toContain('s3cret');
  });

  it.each([
    // what kata-ts cannot do
    ['[hypervisor.qemu]\nmachine_type = "pc"\n', 'hypervisor.qemu.machine_type: "pc" cannot be honoured: kata-ts builds a q35 machine (accepted: "q35")'],
    ['[hypervisor.qemu]\nconfidential_guest = true\n', 'hypervisor.qemu.confidential_guest: true cannot be honoured: kata-ts runs no confidential guests (SEV, SNP, TDX) (accepted: false)'],
    ['[hypervisor.qemu]\nshared_fs = "none"\n', 'hypervisor.qemu.shared_fs: must be one of "virtio-9p", "virtio-fs", got "none"'],
    ['[hypervisor.clh]\nshared_fs = "virtio-9p"\n', 'hypervisor.clh.shared_fs: must be "virtio-fs": Cloud Hypervisor has no virtio-9p'],
    ['[hypervisor.qemu]\nvirtio_fs_cache = "metadata"\n', 'hypervisor.qemu.virtio_fs_cache: must be one of "never", "auto", "always", got "metadata"'],
    ['[hypervisor.qemu]\nshared_fs = "virtio-fs"\n[runtime]\nksm = "on"\n', 'runtime.ksm: "on" cannot work with shared_fs = "virtio-fs"'],
    ['[hypervisor.qemu]\nenable_hugepages = true\n', 'hypervisor.qemu.enable_hugepages: true cannot be honoured: guest memory is backed by normal pages'],
    ['[hypervisor.qemu]\npflashes = ["/f.img"]\n', 'hypervisor.qemu.pflashes: ["/f.img"] cannot be honoured: kata-ts attaches no flash images (accepted: [])'],
    ['[factory]\ntemplate_path = "templates"\n', 'factory.template_path: must be an absolute path, got "templates"'],
    ['[factory]\nvm_cache_number = 2\n', 'factory.vm_cache_number: 2 cannot be honoured: kata-ts has no VMCache'],
    ['[agent.kata]\nkernel_modules = ["e1000e"]\n', 'agent.kata.kernel_modules: ["e1000e"] cannot be honoured: the agent loads no kernel modules'],
    ['[runtime]\ninternetworking_model = "macvtap"\n', 'runtime.internetworking_model: "macvtap" cannot be honoured: kata-ts connects the VM with tc mirroring'],
    ['[runtime]\nstatic_sandbox_resource_mgmt = true\n', 'runtime.static_sandbox_resource_mgmt: true cannot be honoured'],
    ['[image]\nservice_offload = true\n', 'image.service_offload: true cannot be honoured'],
    // a type Kata would not decode either
    ['[hypervisor.qemu]\nenable_debug = "yes"\n', 'hypervisor.qemu.enable_debug: must be a boolean, got "yes"'],
    ['[hypervisor.qemu]\nmemory_slots = -1\n', 'hypervisor.qemu.memory_slots: must be a non-negative integer, got -1'],
    ['[runtime]\nexperimental = "x"\n', 'runtime.experimental: must be a list of strings, got "x"'],
    // keys nobody has: a typo is named, never passed over
    ['[hypervisor.qemu]\ndefualt_memory = 2048\n', 'hypervisor.qemu.defualt_memory: unknown key in [hypervisor.qemu]: did you mean default_memory?'],
    ['[factory]\nenable_templates = false\n', 'factory.enable_templates: unknown key in [factory]: did you mean enable_template?'],
    ['[hypervisor.qemu]\ncolour = "red"\n', 'hypervisor.qemu.colour: unknown key in [hypervisor.qemu]: neither kata-ts nor Kata has it; kata-ts implements path, accelerator,'],
    ['[factory]\ncolour = "red"\n', 'factory.colour: unknown key in [factory]: neither kata-ts nor Kata has it'],
  ])('refuses %j naming the file, the key and why', (text, message) => {
    write(main, text);
    expect(() => loadTomlConfig(main)).toThrow(InvalidArgumentError);
    expect(() => loadTomlConfig(main)).toThrow(`${main}: ${message}`);
  });

  it('takes the shared filesystem keys for QEMU and Cloud Hypervisor', () => {
    write(main, '[hypervisor.clh]\nvirtio_fs_daemon = "/opt/virtiofsd"\nvirtio_fs_cache = "auto"\n');
    expect(loadTomlConfig(main)).toMatchObject({ config: { hypervisor: { sharedFs: 'virtio-fs', virtioFsDaemon: '/opt/virtiofsd', virtioFsCache: 'auto' } }, ignoredKeys: [] });
    write(main, '[hypervisor.qemu]\nshared_fs = "virtio-fs"\nvirtio_fs_daemon = "/opt/virtiofsd"\nvirtio_fs_cache = "never"\n');
    expect(loadTomlConfig(main)).toMatchObject({ config: { hypervisor: { sharedFs: 'virtio-fs', virtioFsDaemon: '/opt/virtiofsd', virtioFsCache: 'never' } }, ignoredKeys: [] });
    write(main, '[hypervisor.qemu]\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ sharedFs: 'virtio-9p', virtioFsDaemon: '/usr/lib/qemu/virtiofsd', virtioFsCache: 'never' });
  });

  it('reports a key set by several files once, with the file that set it last', () => {
    write(main, '[hypervisor.qemu]\nenable_debug = false\nmsize_9p = 8192\n');
    const dropIn = write(path.join(dir, 'config.d', '10-debug.toml'), '[hypervisor.qemu]\nenable_debug = true\n');
    expect(loadTomlConfig(main).ignoredKeys).toEqual([
      { key: 'hypervisor.qemu.msize_9p', file: main, reason: expect.any(String) },
      { key: 'hypervisor.qemu.enable_debug', file: dropIn, reason: expect.any(String) },
    ]);
    // A drop-in with a value kata-ts cannot honour is refused, naming the drop-in.
    write(dropIn, '[hypervisor.qemu]\nenable_iommu = true\n');
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: hypervisor.qemu.enable_iommu: true cannot be honoured: the guest has no vIOMMU`);
  });

  it('accepts empty [factory] and [image] blocks, as a Kata 3.0 file has them', () => {
    write(main, '[hypervisor.qemu]\n[factory]\n[image]\n');
    expect(loadTomlConfig(main).ignoredKeys).toEqual([]);
  });
});
