// Which configuration file a sandbox uses, chosen the way Kata chooses it: the first of
// containerd's runtime options (ConfigPath), the sandbox spec's annotation, the
// environment, then the default files, then built-in defaults. Only the choosing lives
// here; reading and checking the file is runtime-config.ts's and toml-config.ts's.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { defaultConfig, loadConfigFile, RuntimeConfig } from './runtime-config';
import type { IgnoredKey } from './kata-keys';
import { allowedConfigPath, applyConfigAnnotations, CONFIG_PATH_ANNOTATION } from './pod-annotations';

export { CONFIG_PATH_ANNOTATION } from './pod-annotations';

/** Looked for in this order when nothing names a file; Kata's own location first. */
export const DEFAULT_CONFIG_FILES = ['/etc/kata-containers/configuration.toml', '/etc/kata-ts/configuration.toml', '/etc/kata-ts/config.json'];

export interface ConfigHints {
  /** ConfigPath of containerd's runtime options (runtimeoptions.v1.Options) in Create. */
  runtimeOptionsPath?: string;
  /** The sandbox spec's annotations. */
  annotations?: Record<string, string>;
}

export interface ConfigSearch {
  env?: NodeJS.ProcessEnv;
  defaultFiles?: string[];
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
  /**
   * Kata keys the files set that kata-ts accepts without using, one entry per key, for
   * `kata-ts-runtime env` and the shim's log. Optional so that tests may build a
   * LoadedConfig by hand; the loaders always set it.
   */
  ignoredKeys?: IgnoredKey[];
}

/**
 * The file a sandbox uses. The annotation may only pick a file the main configuration
 * (the one chosen without it) allows in valid_config_paths.
 */
export function locateConfig(hints: ConfigHints, search: ConfigSearch = {}): ConfigSource {
  if (hints.runtimeOptionsPath) return { path: hints.runtimeOptionsPath, via: 'containerd runtime options (ConfigPath)' };
  const main = locateMainConfig(search);
  const annotated = hints.annotations?.[CONFIG_PATH_ANNOTATION];
  if (!annotated) return main;
  const validPaths = loadConfigFrom(main).config.runtime.validConfigPaths;
  return { path: allowedConfigPath(annotated, validPaths, main.path ?? 'the built-in defaults'), via: `annotation ${CONFIG_PATH_ANNOTATION}` };
}

function locateMainConfig(search: ConfigSearch): ConfigSource {
  const env = search.env ?? process.env;
  if (env.KATATS_CONFIG) return { path: env.KATATS_CONFIG, via: '$KATATS_CONFIG' };
  const found = (search.defaultFiles ?? DEFAULT_CONFIG_FILES).find((file) => fs.existsSync(file));
  return found ? { path: found, via: 'default location' } : { via: `built-in defaults (none of ${(search.defaultFiles ?? DEFAULT_CONFIG_FILES).join(', ')} exists)` };
}

/** Reads the configuration `source` names; errors name the file and what chose it. */
export function loadConfigFrom(source: ConfigSource): LoadedConfig {
  if (!source.path) return { config: defaultConfig(), files: [], via: source.via, ignoredKeys: [] };
  // Named explicitly, so its absence is an error, not a reason to fall back.
  if (!fs.existsSync(source.path)) throw new InvalidArgumentError(`cannot read configuration ${source.path} (named by ${source.via}): no such file`);
  return { ...loadConfigFile(source.path), via: source.via };
}

/** The sandbox's configuration: the chosen file, then the pod's enabled `io.katacontainers.config.*` overrides. */
export function resolveConfig(hints: ConfigHints, search: ConfigSearch = {}): LoadedConfig {
  const loaded = loadConfigFrom(locateConfig(hints, search));
  applyConfigAnnotations(loaded.config, hints.annotations, loaded.files[0] ?? 'the built-in defaults');
  return loaded;
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
