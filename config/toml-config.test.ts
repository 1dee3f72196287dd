import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { DEFAULT_QEMU_SECCOMP_SANDBOX, defaultConfig, loadConfigFile } from './runtime-config';
import { dropInFiles, loadTomlConfig } from './toml-config';

describe('Kata-style TOML configuration', () => {
  let dir: string;
  let main: string;
  const write = (file: string, text: string): string => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  };
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toml-'));
    main = path.join(dir, 'configuration.toml');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("maps Kata's key names onto the runtime configuration", () => {
    write(main, `
[hypervisor.qemu]
path = "/opt/qemu/bin/qemu-system-x86_64"
accelerator = "tcg"
kernel = "/k"
initrd = "/i"
kernel_params = "quiet  systemd.show_status=0"
default_memory = 2048
default_vcpus = 2
default_maxvcpus = 4
default_maxmemory = 8192

[agent.kata]
dial_timeout = 90
call_timeout = 10
debug_console_enabled = true

[runtime]
state_dir = "/run/kt"
ksm = "off"
`);
    const { config } = loadTomlConfig(main);
    expect(config.hypervisor).toEqual({ kind: 'qemu', path: '/opt/qemu/bin/qemu-system-x86_64', accelerator: 'tcg', kernel: '/k', image: '', initrd: '/i', kernelParams: ['quiet', 'systemd.show_status=0'], memoryMiB: 2048, vcpus: 2, maxVcpus: 4, maxMemoryMiB: 8192, sharedFs: 'virtio-9p', virtioFsDaemon: '/usr/lib/qemu/virtiofsd', virtioFsCache: 'never', virtioFsExtraArgs: [], agentChannel: 'virtio-serial', vsockBackend: '/usr/bin/vhost-device-vsock', seccompSandbox: DEFAULT_QEMU_SECCOMP_SANDBOX, pmu: true, tcgTbSizeMiB: 0, enableAnnotations: [] });
    expect(config.agent).toEqual({ bootTimeoutMs: 90_000, callTimeoutMs: 10_000, debugConsole: true });
    expect(config.runtime).toEqual({ stateDir: '/run/kt', ksm: 'off', sandboxCgroupOnly: true, overheadCgroup: '', validConfigPaths: [], killGraceMs: 10_000 });
    expect(defaultConfig().runtime.ksm).toBe('unchanged');
  });

  it('applies config.d drop-ins in name order, each overriding only the keys it sets', () => {
    write(main, '[hypervisor.qemu]\ndefault_memory = 1024\ndefault_vcpus = 1\naccelerator = "kvm"\n');
    write(path.join(dir, 'config.d', '20-memory.toml'), '[hypervisor.qemu]\ndefault_memory = 3072\n');
    write(path.join(dir, 'config.d', '10-memory.toml'), '[hypervisor.qemu]\ndefault_memory = 512\ndefault_vcpus = 4\n');
    write(path.join(dir, 'config.d', 'notes.txt'), 'not configuration');
    expect(dropInFiles(main).map((f) => path.basename(f))).toEqual(['10-memory.toml', '20-memory.toml']);
    const { config, files } = loadTomlConfig(main);
    expect(files).toEqual([main, path.join(dir, 'config.d', '10-memory.toml'), path.join(dir, 'config.d', '20-memory.toml')]);
    expect(config.hypervisor.memoryMiB).toBe(3072); // the last file wins
    expect(config.hypervisor.vcpus).toBe(4); // set only by 10-memory.toml
    expect(config.hypervisor.accelerator).toBe('kvm'); // untouched by drop-ins
    expect(config.runtime.stateDir).toBe(defaultConfig().runtime.stateDir);
  });

  it('takes the rootfs kind from the last file that names one (Kata: image or initrd)', () => {
    write(main, '[hypervisor.qemu]\nimage = "/guest/rootfs.img"\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ image: '/guest/rootfs.img', initrd: '' });
    write(path.join(dir, 'config.d', '10-initrd.toml'), '[hypervisor.qemu]\ninitrd = "/guest/initrd.img"\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ image: '', initrd: '/guest/initrd.img' });
  });

  it('refuses an image and an initrd together, and neither', () => {
    write(main, '[hypervisor.qemu]\nimage = "/r.img"\ninitrd = "/i.img"\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: hypervisor.qemu.image: set together with hypervisor.qemu.initrd ("/i.img"); set exactly one of them`);
    write(main, '[hypervisor.qemu]\nimage = ""\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: hypervisor.qemu.image: neither an image nor an initrd is set; set exactly one of them`);
  });

  it('selects the driver by the one [hypervisor.<kind>] section, with that VMM\'s defaults', () => {
    write(main, '[runtime]\nstate_dir = "/run/kt"\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ kind: 'qemu', path: 'qemu-system-x86_64' });
    write(main, '[hypervisor.clh]\nkernel = "/k"\nimage = "/r.img"\nvirtio_fs_daemon = "/opt/virtiofsd"\ndefault_memory = 2048\n');
    expect(loadTomlConfig(main).config.hypervisor).toEqual({ ...defaultConfig('clh').hypervisor, kind: 'clh', path: 'cloud-hypervisor', kernel: '/k', image: '/r.img', virtioFsDaemon: '/opt/virtiofsd', memoryMiB: 2048 });
    // Firecracker cannot map the DAX image, so its default rootfs is the initrd.
    write(main, '[hypervisor.firecracker]\npath = "/usr/local/bin/firecracker"\ndefault_vcpus = 2\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ kind: 'firecracker', path: '/usr/local/bin/firecracker', image: '', initrd: '/usr/share/kata-ts/guest/initrd.img', vcpus: 2, virtioFsDaemon: '' });
  });

  it('lets a drop-in override one key of the main file\'s hypervisor block, later files winning', () => {
    write(main, '[hypervisor.clh]\ndefault_memory = 1024\ndefault_vcpus = 2\npath = "/opt/clh"\n');
    write(path.join(dir, 'config.d', '10-memory.toml'), '[hypervisor.clh]\ndefault_memory = 2048\n');
    write(path.join(dir, 'config.d', '20-memory.toml'), '[hypervisor.clh]\ndefault_memory = 4096\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ kind: 'clh', memoryMiB: 4096, vcpus: 2, path: '/opt/clh' });
  });

  it('takes the hypervisor from a drop-in when the main file names none', () => {
    write(main, '[runtime]\nstate_dir = "/run/kt"\n');
    write(path.join(dir, 'config.d', '10-fc.toml'), '[hypervisor.firecracker]\n');
    expect(loadTomlConfig(main).config.hypervisor.kind).toBe('firecracker');
  });

  it('refuses two different hypervisor sections, naming both files', () => {
    write(main, '[hypervisor.qemu]\naccelerator = "tcg"\n');
    const dropIn = write(path.join(dir, 'config.d', '50-clh.toml'), '[hypervisor.clh]\ndefault_memory = 2048\n');
    expect(() => loadTomlConfig(main)).toThrow(InvalidArgumentError);
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: [hypervisor.clh]: ${main} already configures [hypervisor.qemu]: the configuration names exactly one of [hypervisor.qemu], [hypervisor.clh], [hypervisor.firecracker]`);
    fs.rmSync(dropIn);
    write(main, '[hypervisor.qemu]\n[hypervisor.firecracker]\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: [hypervisor.qemu] and [hypervisor.firecracker]: the configuration names exactly one of`);
  });

  it.each([
    // unknown sections and keys
    ['[network]\nx = 1\n', '[network]: unknown section'],
    ['[hypervisor.xen]\npath = "/x"\n', '[hypervisor.xen]: unknown section'],
    ['[hypervisor.dragonball]\npath = "/x"\n', '[hypervisor.dragonball]: kata-ts has no driver for this VMM (it drives [hypervisor.qemu], [hypervisor.clh], [hypervisor.firecracker])'],
    ['[hypervisor.qemu.extra]\nx = 1\n', '[hypervisor.qemu.extra]: unknown section'],
    ['colour = "red"\n', 'colour: unknown key at the top level'],
    ['[hypervisor.qemu]\ncolour = "red"\n', 'hypervisor.qemu.colour: unknown key in [hypervisor.qemu]: neither kata-ts nor Kata has it; kata-ts implements path, accelerator, kernel, image, initrd, kernel_params, default_memory, default_vcpus, default_maxvcpus, default_maxmemory, shared_fs, virtio_fs_daemon, virtio_fs_cache, virtio_fs_extra_args, agent_channel, vsock_backend, seccompsandbox, cpu_features, tcg_tb_size, enable_annotations'],
    ['[hypervisor.firecracker]\ncolour = "red"\n', 'hypervisor.firecracker.colour: unknown key in [hypervisor.firecracker]: neither kata-ts nor Kata has it; kata-ts implements path, kernel, initrd, kernel_params, default_memory, default_vcpus, default_maxvcpus, default_maxmemory, enable_annotations'],
    ['[agent.kata]\ndebug = true\n', 'agent.kata.debug: unknown key in [agent.kata]: neither kata-ts nor Kata has it; kata-ts implements dial_timeout, call_timeout, debug_console_enabled'],
    ['[runtime]\nstate_dri = "/run/kt"\n', 'runtime.state_dri: unknown key in [runtime]: did you mean state_dir?'],
    // keys of one VMM set for another
    ['[hypervisor.clh]\naccelerator = "kvm"\n', 'hypervisor.clh.accelerator: not a Cloud Hypervisor setting: Cloud Hypervisor and Firecracker run guests under KVM only'],
    ['[hypervisor.firecracker]\naccelerator = "tcg"\n', 'hypervisor.firecracker.accelerator: not a Firecracker setting: Cloud Hypervisor and Firecracker run guests under KVM only'],
    ['[hypervisor.firecracker]\nshared_fs = "virtio-fs"\n', 'hypervisor.firecracker.shared_fs: not a Firecracker setting: Firecracker has no shared filesystem'],
    ['[hypervisor.firecracker]\nimage = "/r.img"\n', 'hypervisor.firecracker.image: not a Firecracker setting: Firecracker has no NVDIMM or virtio-pmem device to map a DAX image; set initrd instead'],
    // wrong types
    ['[hypervisor.qemu]\ndefault_memory = "2G"\n', 'hypervisor.qemu.default_memory: must be a number, got "2G"'],
    ['[hypervisor.clh]\npath = 7\n', 'hypervisor.clh.path: must be a string, got 7'],
    ['[hypervisor.qemu]\nkernel_params = ["a"]\n', 'hypervisor.qemu.kernel_params: must be a string of space-separated kernel parameters'],
    ['[hypervisor.qemu]\nkernel_params = "quiet console=\\u0000"\n', 'hypervisor.qemu.kernel_params: must not contain control characters'],
    [`[hypervisor.qemu]\nkernel_params = "${'x'.repeat(1537)}"\n`, 'hypervisor.qemu.kernel_params: must be at most 1536 bytes together (the guest\'s command line holds 2048, and kata-ts adds its own), got 1537'],
    ['[agent.kata]\ncall_timeout = "10s"\n', 'agent.kata.call_timeout: must be a positive number of seconds'],
    // values out of range
    ['[hypervisor.qemu]\naccelerator = "hvf"\n', 'hypervisor.qemu.accelerator: must be "kvm" or "tcg"'],
    ['[hypervisor.qemu]\ndefault_memory = 64\n', 'hypervisor.qemu.default_memory: must be an integer of at least 128'],
    ['[hypervisor.firecracker]\ndefault_vcpus = 0\n', 'hypervisor.firecracker.default_vcpus: must be a positive integer'],
    ['[hypervisor.clh]\ndefault_vcpus = 1.5\n', 'hypervisor.clh.default_vcpus: must be a positive integer'],
    ['[hypervisor.clh]\nvirtio_fs_daemon = ""\n', 'hypervisor.clh.virtio_fs_daemon: must name the virtiofsd binary'],
    ['[agent.kata]\ndial_timeout = 0\n', 'agent.kata.dial_timeout: must be a positive number of seconds'],
    ['[hypervisor.qemu]\ndefault_maxvcpus = 1.5\n', "hypervisor.qemu.default_maxvcpus: must be a non-negative integer (0: the host's CPU count)"],
    ['[hypervisor.qemu]\ndefault_maxvcpus = -1\n', "hypervisor.qemu.default_maxvcpus: must be a non-negative integer (0: the host's CPU count)"],
    ['[hypervisor.qemu]\ndefault_maxvcpus = "4"\n', 'hypervisor.qemu.default_maxvcpus: must be a number, got "4"'],
    ['[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_maxvcpus = 2\n', "hypervisor.qemu.default_maxvcpus: must be 0 (the host's CPU count) or at least the boot vCPUs (4)"],
    ['[hypervisor.qemu]\ndefault_maxmemory = 2048.5\n', "hypervisor.qemu.default_maxmemory: must be a non-negative integer of MiB (0: half the host's memory)"],
    ['[hypervisor.qemu]\ndefault_maxmemory = 512\n', "hypervisor.qemu.default_maxmemory: must be 0 (half the host's memory) or at least the boot memory (1024 MiB)"],
    ['[agent.kata]\ndebug_console_enabled = "yes"\n', 'agent.kata.debug_console_enabled: must be a boolean, got "yes"'],
    ['[runtime]\nksm = "sometimes"\n', 'runtime.ksm: must be one of "on", "off", "unchanged", got "sometimes"'],
    ['[runtime]\nksm = true\n', 'runtime.ksm: must be a string, got true'],
    ['[hypervisor.firecracker]\n[runtime]\nksm = "on"\n', 'runtime.ksm: "on" cannot work with Firecracker: it never marks guest memory mergeable'],
    // not TOML at all
    ['[hypervisor.qemu\n', 'not valid TOML'],
  ])('rejects %j naming the file, key and reason', (text, message) => {
    write(main, text);
    expect(() => loadTomlConfig(main)).toThrow(InvalidArgumentError);
    expect(() => loadTomlConfig(main)).toThrow(`${main}: ${message}`);
  });

  it('checks the limits against the boot size of the merged files, naming the file that set the limit', () => {
    // A limit below the default boot size is fine when the same file lowers the boot size.
    write(main, '[hypervisor.qemu]\ndefault_memory = 256\ndefault_maxmemory = 512\ndefault_maxvcpus = 2\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ memoryMiB: 256, maxMemoryMiB: 512, vcpus: 1, maxVcpus: 2 });
    // A drop-in that raises the boot size past the main file's limit.
    write(path.join(dir, 'config.d', '10-big.toml'), '[hypervisor.qemu]\ndefault_vcpus = 3\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: hypervisor.qemu.default_maxvcpus: must be 0 (the host's CPU count) or at least the boot vCPUs (3)`);
    // 0, the default, means the host's size and fits any boot size.
    write(main, '[hypervisor.qemu]\ndefault_maxvcpus = 0\ndefault_maxmemory = 0\n');
    expect(loadTomlConfig(main).config.hypervisor).toMatchObject({ vcpus: 3, maxVcpus: 0, maxMemoryMiB: 0 });
  });

  it('names the drop-in that set a bad value, not the main file', () => {
    write(main, '[hypervisor.qemu]\ndefault_memory = 1024\n');
    const dropIn = write(path.join(dir, 'config.d', '50-bad.toml'), '[hypervisor.qemu]\ndefault_vcpus = 0\n');
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: hypervisor.qemu.default_vcpus: must be a positive integer`);
    // A later file that sets the key again takes the blame away from the earlier one.
    const fix = write(path.join(dir, 'config.d', '60-fix.toml'), '[hypervisor.qemu]\ndefault_vcpus = 2\ndefault_memory = "big"\n');
    expect(() => loadTomlConfig(main)).toThrow(`${fix}: hypervisor.qemu.default_memory: must be a number, got "big"`);
  });

  it('names the file that asked for KSM when the hypervisor chosen elsewhere cannot merge', () => {
    write(main, '[hypervisor.firecracker]\n');
    const dropIn = write(path.join(dir, 'config.d', '10-ksm.toml'), '[runtime]\nksm = "on"\n');
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: runtime.ksm: "on" cannot work with Firecracker`);
  });

  it('maps cpu_features "pmu=off" and "" onto QEMU\'s pmu setting, refusing other flags', () => {
    write(main, '[hypervisor.qemu]\ncpu_features = "pmu=off"\n');
    expect(loadTomlConfig(main)).toMatchObject({ config: { hypervisor: { pmu: false } }, ignoredKeys: [] });
    const dropIn = write(path.join(dir, 'config.d', '10-cpu.toml'), '[hypervisor.qemu]\ncpu_features = ""\n');
    expect(loadTomlConfig(main).config.hypervisor.pmu).toBe(true);
    write(dropIn, '[hypervisor.qemu]\ncpu_features = "pmu=off,+vmx"\n');
    expect(() => loadTomlConfig(main)).toThrow(new InvalidArgumentError(`${dropIn}: hypervisor.qemu.cpu_features: "pmu=off,+vmx" cannot be honoured: kata-ts passes QEMU no CPU feature flags but pmu=off (accepted: "", "pmu=off")`));
    fs.rmSync(dropIn);
    expect(defaultConfig().hypervisor.pmu).toBe(true); // absent: QEMU's CPU model as it is
    // The other VMMs get no CPU flags: accepted as Kata's, with the warning.
    write(main, '[hypervisor.clh]\ncpu_features = "pmu=off"\n');
    expect(loadTomlConfig(main).ignoredKeys).toEqual([{ key: 'hypervisor.clh.cpu_features', file: main, reason: expect.stringContaining('no CPU feature flags') }]);
  });

  it('keeps a VM restored ahead in each spare ([factory] spare_vms) only with templates and spares', () => {
    expect(defaultConfig().factory.spareVms).toBe(false);
    write(main, '[factory]\nenable_template = true\nspare_shims = 1\nspare_vms = true\n');
    expect(loadTomlConfig(main).config.factory.spareVms).toBe(true);
    for (const text of ['spare_shims = 1\nspare_vms = true\n', 'enable_template = true\nspare_vms = true\n']) {
      write(main, `[factory]\n${text}`);
      expect(() => loadTomlConfig(main)).toThrow(`${main}: factory.spare_vms: needs enable_template = true and spare_shims > 0`);
    }
  });

  it('keeps 0 to 8 spare shim daemons ([factory] spare_shims), none by default', () => {
    expect(defaultConfig().factory.spareShims).toBe(0);
    write(main, '[factory]\nspare_shims = 2\n');
    expect(loadTomlConfig(main).config.factory.spareShims).toBe(2);
    for (const bad of ['-1', '1.5', '9']) {
      write(main, `[factory]\nspare_shims = ${bad}\n`);
      expect(() => loadTomlConfig(main)).toThrow(`${main}: factory.spare_shims: must be an integer from 0 to 8 (each spare is an idle shim process), got ${bad}`);
    }
    write(main, '[factory]\nspare_shims = true\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: factory.spare_shims: must be a number, got true`);
  });

  it('caps the TCG translation buffer (tcg_tb_size) only under TCG, in MiB from 1 to 2048, and only for QEMU', () => {
    write(main, '[hypervisor.qemu]\naccelerator = "tcg"\ntcg_tb_size = 64\n');
    expect(loadTomlConfig(main).config.hypervisor.tcgTbSizeMiB).toBe(64);
    expect(defaultConfig().hypervisor.tcgTbSizeMiB).toBe(0); // QEMU's own size
    const dropIn = write(path.join(dir, 'config.d', '10-tb.toml'), '[hypervisor.qemu]\naccelerator = "kvm"\n');
    expect(() => loadTomlConfig(main)).toThrow(`${main}: hypervisor.qemu.tcg_tb_size: sizes the TCG translation buffer, but hypervisor.qemu.accelerator is "kvm"; set it to 0 or use "tcg"`);
    for (const bad of ['-1', '1.5', '4096']) {
      write(dropIn, `[hypervisor.qemu]\ntcg_tb_size = ${bad}\n`);
      expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: hypervisor.qemu.tcg_tb_size: must be an integer of MiB from 1 to 2048 (or 0: QEMU's own size)`);
    }
    write(dropIn, '[hypervisor.qemu]\ntcg_tb_size = "64"\n');
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: hypervisor.qemu.tcg_tb_size: must be a number, got "64"`);
    fs.rmSync(dropIn);
    write(main, '[hypervisor.clh]\ntcg_tb_size = 64\n');
    expect(() => loadTomlConfig(main)).toThrow('hypervisor.clh.tcg_tb_size');
  });

  it('warns once at load when enable_annotations lets pods set kernel_params, naming the file that set it', () => {
    write(main, '[hypervisor.qemu]\nenable_annotations = ["default_memory"]\n');
    expect(loadTomlConfig(main).ignoredKeys).toEqual([]);
    const dropIn = write(path.join(dir, 'config.d', '10-annotations.toml'), '[hypervisor.qemu]\nenable_annotations = ["default_.*", "kernel_.*"]\n');
    expect(loadTomlConfig(main).ignoredKeys).toEqual([{ key: 'hypervisor.qemu.enable_annotations', file: dropIn, reason: expect.stringContaining('io.katacontainers.config.hypervisor.kernel_params') }]);
    const json = write(path.join(dir, 'config.json'), JSON.stringify({ hypervisor: { enableAnnotations: ['.*'] } }));
    expect(loadConfigFile(json).ignoredKeys).toEqual([{ key: 'hypervisor.enableAnnotations', file: json, reason: expect.stringContaining('kernel_params') }]);
  });

  it('is chosen by loadConfigFile for a .toml path', () => {
    write(main, '[hypervisor.qemu]\naccelerator = "tcg"\n');
    expect(loadConfigFile(main).config.hypervisor.accelerator).toBe('tcg');
  });
});
