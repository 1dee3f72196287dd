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
      annotationDirs: [path.join(dir, 'kata-containers'), path.join(dir, 'kata-ts')],
    };
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('takes the first that applies: runtime options, annotation, $KATATS_CONFIG, default files, built-in defaults', () => {
    const fromOptions = write('options.toml', '[hypervisor.qemu]\n');
    const annotated = write('kata-ts/pod.toml', '[hypervisor.qemu]\n');
    const fromEnv = write('env.json', '{}');
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

  it('lets an annotation choose only among the installed configurations', () => {
    const outside = write('pod-volume/evil.toml', '[hypervisor.qemu]\npath = "/pod-volume/evil"\n');
    const annotations = { [CONFIG_PATH_ANNOTATION]: outside };
    expect(() => locateConfig({ annotations }, search)).toThrow(InvalidArgumentError);
    expect(() => locateConfig({ annotations }, search)).toThrow(`annotation ${CONFIG_PATH_ANNOTATION} names ${outside}, which is outside`);
    // A link inside the allowed directory does not make the file it points to allowed.
    fs.mkdirSync(path.join(dir, 'kata-ts'));
    const link = path.join(dir, 'kata-ts', 'link.toml');
    fs.symlinkSync(outside, link);
    expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: link } }, search)).toThrow('which is outside');
    // Nor does a sibling directory whose name merely starts the same.
    const sibling = write('kata-ts-evil/c.toml', '[hypervisor.qemu]\n');
    expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: sibling } }, search)).toThrow('which is outside');
    expect(() => locateConfig({ annotations: { [CONFIG_PATH_ANNOTATION]: path.join(dir, 'kata-ts', 'missing.toml') } }, search)).toThrow(`cannot read configuration ${path.join(dir, 'kata-ts', 'missing.toml')} (named by annotation`);
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
