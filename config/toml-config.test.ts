import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { defaultConfig, loadConfig } from './runtime-config';
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

[agent.kata]
dial_timeout = 90
call_timeout = 10
debug_console_enabled = true

[runtime]
state_dir = "/run/kt"
`);
    const config = loadTomlConfig(main);
    expect(config.hypervisor).toEqual({ path: '/opt/qemu/bin/qemu-system-x86_64', accelerator: 'tcg', kernel: '/k', image: '', initrd: '/i', kernelParams: ['quiet', 'systemd.show_status=0'], memoryMiB: 2048, vcpus: 2 });
    expect(config.agent).toEqual({ bootTimeoutMs: 90_000, callTimeoutMs: 10_000, debugConsole: true });
    expect(config.runtime.stateDir).toBe('/run/kt');
  });

  it('applies config.d drop-ins in name order, each overriding only the keys it sets', () => {
    write(main, '[hypervisor.qemu]\ndefault_memory = 1024\ndefault_vcpus = 1\naccelerator = "kvm"\n');
    write(path.join(dir, 'config.d', '20-memory.toml'), '[hypervisor.qemu]\ndefault_memory = 3072\n');
    write(path.join(dir, 'config.d', '10-memory.toml'), '[hypervisor.qemu]\ndefault_memory = 512\ndefault_vcpus = 4\n');
    write(path.join(dir, 'config.d', 'notes.txt'), 'not configuration');
    expect(dropInFiles(main).map((f) => path.basename(f))).toEqual(['10-memory.toml', '20-memory.toml']);
    const config = loadTomlConfig(main);
    expect(config.hypervisor.memoryMiB).toBe(3072); // the last file wins
    expect(config.hypervisor.vcpus).toBe(4); // set only by 10-memory.toml
    expect(config.hypervisor.accelerator).toBe('kvm'); // untouched by drop-ins
    expect(config.runtime.stateDir).toBe(defaultConfig().runtime.stateDir);
  });

  it('takes the rootfs kind from the last file that names one (Kata: image or initrd)', () => {
    write(main, '[hypervisor.qemu]\nimage = "/guest/rootfs.img"\n');
    expect(loadTomlConfig(main).hypervisor).toMatchObject({ image: '/guest/rootfs.img', initrd: '' });
    write(path.join(dir, 'config.d', '10-initrd.toml'), '[hypervisor.qemu]\ninitrd = "/guest/initrd.img"\n');
    expect(loadTomlConfig(main).hypervisor).toMatchObject({ image: '', initrd: '/guest/initrd.img' });
  });

  it('refuses an image and an initrd together, and neither', () => {
    write(main, '[hypervisor.qemu]\nimage = "/r.img"\ninitrd = "/i.img"\n');
    expect(() => loadTomlConfig(main)).toThrow('hypervisor.image: set together with hypervisor.initrd ("/i.img"); set exactly one of them');
    write(main, '[hypervisor.qemu]\nimage = ""\n');
    expect(() => loadTomlConfig(main)).toThrow('hypervisor.image: neither an image nor an initrd is set; set exactly one of them');
  });

  it.each([
    ['[hypervisor.qemu]\ncolour = "red"\n', 'hypervisor.qemu.colour: unknown key in [hypervisor.qemu]'],
    ['[network]\nx = 1\n', '[network]: unknown section'],
    ['[hypervisor.clh]\npath = "/x"\n', '[hypervisor.clh]: this runtime drives only QEMU for now'],
    ['[hypervisor.qemu]\naccelerator = "hvf"\n', 'hypervisor.qemu.accelerator: must be "kvm" or "tcg"'],
    ['[hypervisor.qemu]\ndefault_memory = "2G"\n', 'hypervisor.qemu.default_memory: must be a number'],
    ['[hypervisor.qemu]\ndefault_memory = 64\n', 'hypervisor.qemu.default_memory: must be an integer of at least 128'],
    ['[hypervisor.qemu]\nkernel_params = ["a"]\n', 'hypervisor.qemu.kernel_params: must be a string of space-separated kernel parameters'],
    ['[agent.kata]\ndial_timeout = 0\n', 'agent.kata.dial_timeout: must be a positive number of seconds'],
    ['[agent.kata]\ndebug_console_enabled = "yes"\n', 'agent.kata.debug_console_enabled: must be a boolean, got "yes"'],
    ['[hypervisor.qemu\n', 'not valid TOML'],
  ])('rejects %j naming the file, key and reason', (text, message) => {
    write(main, text);
    expect(() => loadTomlConfig(main)).toThrow(InvalidArgumentError);
    expect(() => loadTomlConfig(main)).toThrow(`${main}: ${message}`);
  });

  it('names the drop-in that set a bad value, not the main file', () => {
    write(main, '[hypervisor.qemu]\ndefault_memory = 1024\n');
    const dropIn = write(path.join(dir, 'config.d', '50-bad.toml'), '[hypervisor.qemu]\ndefault_vcpus = 0\n');
    expect(() => loadTomlConfig(main)).toThrow(`${dropIn}: hypervisor.qemu.default_vcpus: must be a positive integer`);
  });

  it('is chosen by loadConfig for a .toml path', () => {
    write(main, '[hypervisor.qemu]\naccelerator = "tcg"\n');
    expect(loadConfig(main).hypervisor.accelerator).toBe('tcg');
  });
});
