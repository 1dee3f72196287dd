import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { CONFIG_PATH_ANNOTATION, ConfigSearch, locateConfig, recordConfigSource, recordedConfigSource, resolveConfig } from './config-location';

describe('where a sandbox configuration comes from', () => {
  let dir: string;
  let search: ConfigSearch;
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  };
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cfgloc-'));
    search = {
      env: {},
      defaultFiles: [path.join(dir, 'kata-containers', 'configuration.toml'), path.join(dir, 'kata-ts', 'configuration.toml'), path.join(dir, 'kata-ts', 'config.json')],
    };
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('takes the first that applies: runtime options, annotation, $KATATS_CONFIG, default files, built-in defaults', () => {
    const fromOptions = write('options.toml', '[hypervisor.qemu]\n');
    const annotated = write('kata-ts/pod.toml', '[hypervisor.qemu]\n');
    const fromEnv = write('env.json', JSON.stringify({ runtime: { validConfigPaths: [path.join(dir, 'kata-ts', 'pod*.toml')] } }));
    const secondDefault = write('kata-ts/configuration.toml', '[hypervisor.qemu]\n');
    const thirdDefault = write('kata-ts/config.json', '{}');
    const annotations = { [CONFIG_PATH_ANNOTATION]: annotated };
    search.env = { KATATS_CONFIG: fromEnv };

    expect(locateConfig({ runtimeOptionsPath: fromOptions, annotations }, search)).toEqual({ path: fromOptions, via: 'containerd runtime options (ConfigPath)' });
    expect(locateConfig({ annotations }, search)).toEqual({ path: fs.realpathSync(annotated), via: `annotation ${CONFIG_PATH_ANNOTATION}` });
    expect(locateConfig({}, search)).toEqual({ path: fromEnv, via: '$KATATS_CONFIG' });
    search.env = {};
    expect(locateConfig({}, search)).toEqual({ path: secondDefault, via: 'default location' });
    const kataDefault = write('kata-containers/configuration.toml', '[hypervisor.qemu]\n');
    expect(locateConfig({}, search).path).toBe(kataDefault); // Kata's own file before ours
    fs.rmSync(kataDefault);
    fs.rmSync(secondDefault);
    expect(locateConfig({}, search).path).toBe(thirdDefault);
    fs.rmSync(thirdDefault);
    expect(locateConfig({}, search)).toEqual({ via: expect.stringMatching(/^built-in defaults \(none of .*config\.json exists\)$/) });
  });

  it('reads the chosen TOML file with its drop-ins and says which files it used', () => {
    const main = write('pod/configuration.toml', '[hypervisor.clh]\ndefault_memory = 1024\n');
    const dropIn = write('pod/config.d/10-mem.toml', '[hypervisor.clh]\ndefault_memory = 2048\n');
    const loaded = resolveConfig({ runtimeOptionsPath: main }, search);
    expect(loaded.files).toEqual([main, dropIn]);
    expect(loaded.via).toBe('containerd runtime options (ConfigPath)');
    expect(loaded.config.hypervisor).toMatchObject({ kind: 'clh', memoryMiB: 2048 });
    expect(resolveConfig({}, search)).toMatchObject({ files: [], config: { hypervisor: { kind: 'qemu' } } });
  });

  it('fails for a named file that does not exist, saying what named it', () => {
    const missing = path.join(dir, 'nope.toml');
    expect(() => resolveConfig({ runtimeOptionsPath: missing }, search)).toThrow(new InvalidArgumentError(`cannot read configuration ${missing} (named by containerd runtime options (ConfigPath)): no such file`));
    search.env = { KATATS_CONFIG: missing };
    expect(() => resolveConfig({}, search)).toThrow('(named by $KATATS_CONFIG): no such file');
  });

  describe('pod annotations, under the main configuration\'s allowlists', () => {
    let main: string;
    const allow = (lines: string): void => void write('kata-ts/configuration.toml', lines);
    beforeEach(() => {
      main = path.join(dir, 'kata-ts', 'configuration.toml');
    });

    it('refuses config_path while the main configuration enables no file', () => {
      allow('[hypervisor.qemu]\n');
      const pod = write('kata-ts/pod.toml', '[hypervisor.qemu]\n');
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: pod } }, search)).toThrow(
        new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} is not enabled: [runtime] valid_config_paths of ${main} is empty, so a pod cannot choose its configuration`),
      );
    });

    it('lets config_path name only files valid_config_paths matches, symlinks resolved, and never a drop-in', () => {
      allow(`[hypervisor.qemu]\n[runtime]\nvalid_config_paths = ["${dir}/kata-ts/pod-*.toml", "${dir}/kata-ts/config.d/*.toml"]\n`);
      const pod = write('kata-ts/pod-small.toml', '[hypervisor.qemu]\ndefault_memory = 512\n');
      expect(resolveConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: pod } }, search)).toMatchObject({ files: [pod], config: { hypervisor: { memoryMiB: 512 } } });
      const outside = write('pod-volume/evil.toml', '[hypervisor.qemu]\npath = "/pod-volume/evil"\n');
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: outside } }, search)).toThrow(`names ${outside}, which matches none of [runtime] valid_config_paths of ${main}`);
      // A link whose name matches does not make the file it points to allowed.
      const link = path.join(dir, 'kata-ts', 'pod-link.toml');
      fs.symlinkSync(outside, link);
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: link } }, search)).toThrow(`names ${link} (${outside}), which matches none`);
      // A drop-in read as a main file would shed the main file's keys: refused even when a glob matches it.
      const dropIn = write('kata-ts/config.d/50-debug.toml', '[agent.kata]\ndebug_console_enabled = true\n');
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: dropIn } }, search)).toThrow(`names ${dropIn}, a config.d drop-in; a drop-in only amends its main file`);
      // Also a drop-in that is a link to a file the globs allow.
      const linkedDropIn = path.join(dir, 'kata-ts', 'config.d', '60-link.toml');
      fs.symlinkSync(pod, linkedDropIn);
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: linkedDropIn } }, search)).toThrow('a config.d drop-in');
      expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: path.join(dir, 'kata-ts', 'pod-missing.toml') } }, search)).toThrow(`cannot read configuration ${path.join(dir, 'kata-ts', 'pod-missing.toml')} (named by annotation`);
    });

    it('applies io.katacontainers.config.hypervisor.* only where enable_annotations allows, and only keys it implements', () => {
      const key = (name: string): string => `io.katacontainers.config.hypervisor.${name}`;
      allow('[hypervisor.qemu]\n');
      expect(() => resolveConfig({ annotations: { [key('default_memory')]: '2048' } }, search)).toThrow(
        `annotation ${key('default_memory')} is not enabled: no entry of enable_annotations in [hypervisor.qemu] of ${main} matches "default_memory"`,
      );
      allow('[hypervisor.qemu]\nenable_annotations = ["default_(memory|vcpus)", "enable_iommu"]\ndefault_maxmemory = 4096\n');
      expect(resolveConfig({ annotations: { [key('default_memory')]: '2048', [key('default_vcpus')]: '2', 'io.kubernetes.cri.sandbox-id': 'x' } }, search).config.hypervisor).toMatchObject({ memoryMiB: 2048, vcpus: 2 });
      expect(() => resolveConfig({ annotations: { [key('default_memory')]: '8192' } }, search)).toThrow("8192 MiB is more than the VM's maximum (default_maxmemory: 4096 MiB)");
      expect(() => resolveConfig({ annotations: { [key('default_memory')]: 'lots' } }, search)).toThrow('must be an integer of at least 128, got "lots"');
      expect(() => resolveConfig({ annotations: { [key('enable_iommu')]: 'true' } }, search)).toThrow(`annotation ${key('enable_iommu')} is enabled but kata-ts cannot apply it per pod (it can: default_memory, default_vcpus, default_maxmemory, kernel_params, enable_template)`);
      expect(() => resolveConfig({ annotations: { 'io.katacontainers.config.agent.debug_console_enabled': 'true' } }, search)).toThrow('is not enabled: only hypervisor keys can be');
      // Also where the maximum is the default: half the host, never the whole machine.
      allow('[hypervisor.qemu]\nenable_annotations = ["default_memory"]\n');
      expect(() => resolveConfig({ annotations: { [key('default_memory')]: String(1024 * 1024 * 1024) } }, search)).toThrow("is more than the VM's maximum (default_maxmemory: 0, i.e.");
    });
  });

  it('notes the file in the bundle so that delete reads the same one', () => {
    const bundle = fs.mkdtempSync(path.join(dir, 'bundle-'));
    expect(recordedConfigSource(bundle)).toBeUndefined();
    const main = write('pod/configuration.toml', '[runtime]\nstate_dir = "/run/elsewhere"\n');
    recordConfigSource(bundle, resolveConfig({ runtimeOptionsPath: main }, search));
    const source = recordedConfigSource(bundle)!;
    expect(source.path).toBe(main);
    expect(resolveConfig({ runtimeOptionsPath: source.path }, search).config.runtime.stateDir).toBe('/run/elsewhere');
    recordConfigSource(bundle, resolveConfig({}, search));
    expect(recordedConfigSource(bundle)).toEqual({ via: expect.stringContaining('built-in defaults') });
  });
});
