// Which configuration file a sandbox uses, chosen the way Kata chooses it: the first of
// containerd's runtime options (ConfigPath), the sandbox spec's annotation, the
// environment, then the default files, then built-in defaults. Only the choosing lives
// here; reading and checking the file is runtime-config.ts's and toml-config.ts's.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { defaultConfig, loadConfigFile, RuntimeConfig } from './runtime-config';

/** The OCI annotation Kata reads a sandbox's configuration path from. */
export const CONFIG_PATH_ANNOTATION = 'io.katacontainers.config_path';

/** Looked for in this order when nothing names a file; Kata's own location first. */
export const DEFAULT_CONFIG_FILES = ['/etc/kata-containers/configuration.toml', '/etc/kata-ts/configuration.toml', '/etc/kata-ts/config.json'];

/**
 * Where an annotation may point. Pod annotations come from whoever writes the pod spec
 * (CRI passes `io.katacontainers.*` through when pod_annotations allows it), and the
 * configuration names binaries the shim runs as root: a pod must not choose a file
 * it could have written itself, e.g. through a volume.
 */
export const ANNOTATION_CONFIG_DIRS = ['/etc/kata-containers', '/etc/kata-ts'];

export interface ConfigHints {
  /** ConfigPath of containerd's runtime options (runtimeoptions.v1.Options) in Create. */
  runtimeOptionsPath?: string;
  /** The sandbox spec's annotations. */
  annotations?: Record<string, string>;
}

export interface ConfigSearch {
  env?: NodeJS.ProcessEnv;
  defaultFiles?: string[];
  annotationDirs?: string[];
}

/** The main file to read (undefined: built-in defaults) and what chose it. */
export interface ConfigSource {
  path?: string;
  via: string;
}

export interface LoadedConfig {
  config: RuntimeConfig;
  /** The files read, main file first, then its drop-ins; empty for built-in defaults. */
  files: string[];
  via: string;
}

export function locateConfig(hints: ConfigHints, search: ConfigSearch = {}): ConfigSource {
  const env = search.env ?? process.env;
  if (hints.runtimeOptionsPath) return { path: hints.runtimeOptionsPath, via: 'containerd runtime options (ConfigPath)' };
  const annotated = hints.annotations?.[CONFIG_PATH_ANNOTATION];
  if (annotated) return { path: allowedAnnotationPath(annotated, search.annotationDirs ?? ANNOTATION_CONFIG_DIRS), via: `annotation ${CONFIG_PATH_ANNOTATION}` };
  if (env.KATATS_CONFIG) return { path: env.KATATS_CONFIG, via: '$KATATS_CONFIG' };
  const found = (search.defaultFiles ?? DEFAULT_CONFIG_FILES).find((file) => fs.existsSync(file));
  return found ? { path: found, via: 'default location' } : { via: `built-in defaults (none of ${(search.defaultFiles ?? DEFAULT_CONFIG_FILES).join(', ')} exists)` };
}

function allowedAnnotationPath(file: string, dirs: string[]): string {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read configuration ${file} (named by annotation ${CONFIG_PATH_ANNOTATION}): ${(err as Error).message}`);
  }
  const inside = dirs.some((dir) => real.startsWith(path.join(fs.existsSync(dir) ? fs.realpathSync(dir) : dir, path.sep)));
  if (!inside) {
    throw new InvalidArgumentError(`annotation ${CONFIG_PATH_ANNOTATION} names ${file}, which is outside ${dirs.join(' and ')}; a pod may only choose among the configurations installed there`);
  }
  return real;
}

/** Reads the configuration `source` names; errors name the file and what chose it. */
export function loadConfigFrom(source: ConfigSource): LoadedConfig {
  if (!source.path) return { config: defaultConfig(), files: [], via: source.via };
  // Named explicitly, so its absence is an error, not a reason to fall back.
  if (!fs.existsSync(source.path)) throw new InvalidArgumentError(`cannot read configuration ${source.path} (named by ${source.via}): no such file`);
  return { ...loadConfigFile(source.path), via: source.via };
}

export function resolveConfig(hints: ConfigHints, search: ConfigSearch = {}): LoadedConfig {
  return loadConfigFrom(locateConfig(hints, search));
}

/**
 * containerd's `delete` (after a daemon died) gets no runtime options, so the daemon
 * notes in each bundle which file its sandbox used; delete reads the same one.
 */
const RECORD_FILE = 'kata-ts.config-path';

export function recordConfigSource(bundle: string, loaded: LoadedConfig): void {
  fs.writeFileSync(path.join(bundle, RECORD_FILE), `${loaded.files[0] ?? ''}\n`, { mode: 0o600 });
}

/** The source the daemon recorded in `bundle`, if it got that far. */
export function recordedConfigSource(bundle: string): ConfigSource | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(bundle, RECORD_FILE), 'utf8').trim();
  } catch {
    return undefined;
  }
  return text ? { path: text, via: `${RECORD_FILE} in the bundle` } : { via: `built-in defaults (${RECORD_FILE} in the bundle)` };
}
