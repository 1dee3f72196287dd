// The OCI hooks of a container's spec (runtime-spec config.md "POSIX-platform Hooks",
// runtime.md "Lifecycle"), run on the host where Kata runs them
// (src/runtime/pkg/katautils/hook.go and create.go, containerd-shim-v2 start.go and
// delete.go; docs/design/hooks-handling.md):
//   prestart (deprecated), createRuntime   during Create, once the VM runs and the guest
//       holds the container's spec, before any Start; the first failure fails the
//       Create and the container is removed (lifecycle steps 3-4, then 12-13).
//   poststart   after the init started, before Start answers; a failure is a warning.
//   poststop    after the container was deleted, before Delete answers; a failure is a
//       warning (step 13).
// createContainer and startContainer must run in the container's namespaces, which
// are inside the VM: they are refused at Create (see parseHostHooks).
// Kata's guest hooks (`guest_hook_path`, executables packaged in the guest image) are
// not implemented: the configuration takes that key only empty (config/kata-keys.ts).
//
// Where hooks come from: the bundle's config.json, which containerd writes for the
// runtime's caller before the guest exists: `ctr`, nerdctl, NRI and CDI plugins (GPU
// and network tooling). Kubelet's CRI requests carry no hooks. They are trusted as far
// as that caller is, read once at Create and kept in memory, never taken from anything
// the guest can influence (the guest spec goes out without them, and nothing is read
// back from the guest or the bundle later). Nor may a hook be a file the guest can
// write: one inside the container's rootfs, the runtime's state dir (the share lives
// there) or a read-write volume is refused, link by link, since it would run on the
// host as the runtime's user. (Another container's volume is not known here.)
import * as fs from 'fs';
import * as path from 'path';
import { CommandFailedError, runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, FailedPreconditionError, HookFailedError, InvalidArgumentError } from '../lib/errors';
import { Logger } from '../lib/logger';
import type { OciSpec } from './spec';
import { isHostBind } from './volumes';

export const HOST_HOOK_KINDS = ['prestart', 'createRuntime', 'poststart', 'poststop'] as const;
export type HostHookKind = (typeof HOST_HOOK_KINDS)[number];
/** Hooks the spec runs in the container's namespaces: inside the VM, for us. */
const CONTAINER_NAMESPACE_HOOK_KINDS = ['createContainer', 'startContainer'] as const;

export interface OciHook {
  /** Absolute host path of the executable. */
  path: string;
  /** argv, args[0] included (execv semantics); absent: just the path. */
  args?: string[];
  /** The hook's whole environment, NAME=value. */
  env?: string[];
  /** Seconds before the hook is killed; > 0. */
  timeout?: number;
}

export type HostHooks = Record<HostHookKind, OciHook[]>;

/** runtime.md "State", as a hook reads it on stdin. */
export interface HookState {
  ociVersion: string;
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped';
  /** The VMM's pid; absent once the VM is gone. */
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** The state schema we fill (status, pid, bundle, annotations) is the same from 1.0.2 to 1.2. */
export const STATE_OCI_VERSION = '1.0.2';
/**
 * A hook without `timeout` may run this long. The spec bounds it only when `timeout` is
 * set, but every command this daemon runs has a bound (ARCHITECTURE.md), and a hung
 * poststop would make the container impossible to delete.
 */
export const DEFAULT_HOOK_TIMEOUT_S = 120;
/** setTimeout's longest delay (2^31 - 1 ms); a longer timeout would fire at once. */
const MAX_HOOK_TIMEOUT_S = Math.floor(0x7fffffff / 1000);
/** How much of a failed hook's stderr its error carries (the end says why). */
const STDERR_TAIL_CHARS = 1000;
/** Linux's own limit on symlinks followed in one path resolution. */
const MAX_SYMLINKS = 40;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/**
 * Reads and checks `spec.hooks`: every host hook well formed (absolute path, string
 * args and NAME=value env without NUL bytes, a positive whole timeout), none inside
 * `guestWritable`, and no createContainer or startContainer hook. Throws
 * InvalidArgumentError or FailedPreconditionError naming the container and the field.
 */
export function parseHostHooks(raw: unknown, containerId: string, guestWritable: string[]): HostHooks {
  const hooks: HostHooks = { prestart: [], createRuntime: [], poststart: [], poststop: [] };
  if (raw === undefined || raw === null) return hooks;
  const invalid = (what: string): InvalidArgumentError => new InvalidArgumentError(`container ${containerId}: spec ${what}`);
  if (!isObject(raw)) throw invalid('hooks must be an object');
  for (const kind of CONTAINER_NAMESPACE_HOOK_KINDS) {
    const list = raw[kind];
    if (list === undefined || list === null || (Array.isArray(list) && list.length === 0)) continue;
    // The spec runs these in the container's namespaces: for us inside the VM, whose
    // guest has none of the host paths they name. Running them on the host would act on
    // the host instead of the container (an `ldconfig` hook would rewrite the host's
    // cache); skipping them (Kata drops every hook from the guest spec) would start a
    // container its caller expected to be prepared. So, like a host namespace, refused.
    throw new FailedPreconditionError(
      `container ${containerId}: spec hooks.${kind} cannot be honoured: ${kind} hooks run in the container's namespaces, which are inside the VM, where the host paths they name do not exist; only prestart, createRuntime, poststart and poststop hooks (run on the host) are supported`,
    );
  }
  for (const kind of HOST_HOOK_KINDS) {
    const list = raw[kind];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw invalid(`hooks.${kind} must be an array`);
    hooks[kind] = list.map((entry, i) => parseHook(entry, `hooks.${kind}[${i}]`, invalid, guestWritable));
  }
  return hooks;
}

function parseHook(raw: unknown, where: string, invalid: (what: string) => InvalidArgumentError, guestWritable: string[]): OciHook {
  if (!isObject(raw)) throw invalid(`${where} must be an object`);
  const { path: file, args, env, timeout } = raw;
  if (typeof file !== 'string' || !path.isAbsolute(file) || file.includes('\0')) throw invalid(`${where}.path must be an absolute path (got ${JSON.stringify(file)})`);
  if (args !== undefined && (!isStringArray(args) || args.some((a) => a.includes('\0')))) throw invalid(`${where}.args must be an array of strings without NUL bytes`);
  if (env !== undefined && (!isStringArray(env) || env.some((e) => !/^[^=\0]+=[^\0]*$/.test(e)))) throw invalid(`${where}.env must be an array of NAME=value strings without NUL bytes`);
  if (timeout !== undefined && !(typeof timeout === 'number' && Number.isInteger(timeout) && timeout > 0)) throw invalid(`${where}.timeout must be a whole number of seconds greater than zero (got ${JSON.stringify(timeout)})`);
  const root = insideAny(path.resolve(file), guestWritable.map((r) => path.resolve(r)));
  if (root) throw invalid(`${where}.path ${file} lies inside ${root}, which the guest can write; a hook runs on the host and must not be a file the guest controls`);
  return { path: file, args, env, timeout };
}

/** The first of `roots` that `p` is or lies inside. */
function insideAny(p: string, roots: string[]): string | undefined {
  return roots.find((root) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`));
}

/** How long resolving the guest-writable roots at Create may take (a hung volume). */
const ROOTS_RESOLVE_TIMEOUT_MS = 10_000;

/**
 * Each root as written and as `realpath -m` resolves it, in a bounded child: a link on
 * the way to a root must not hide it, and a hung filesystem under a volume must stall
 * a child we can kill, not the daemon's event loop.
 */
export async function canonicalRoots(roots: string[]): Promise<string[]> {
  const lexical = roots.map((r) => path.resolve(r));
  if (lexical.length === 0) return [];
  const { stdout } = await runBounded('realpath', ['-m', '-z', '--', ...lexical], ROOTS_RESOLVE_TIMEOUT_MS, { env: { LC_ALL: 'C' } });
  const real = stdout.split('\0').filter(Boolean);
  return [...new Set([...lexical, ...real])];
}

/**
 * `file` resolved the way exec would, one component at a time, refusing it if any path
 * visited on the way (links and their targets included) lies inside `roots`. What is
 * left outside belongs to the host, so the answer (free of links) cannot be redirected
 * by the guest between this check and the exec.
 */
export function resolveOutside(file: string, roots: string[]): string {
  // `roots` come canonical already (canonicalRoots, once at Create): resolving them here
  // would touch rw volumes, which may sit on a hung filesystem, on the event loop.
  const realRoots = roots.map((r) => path.resolve(r));
  let todo = file.split('/').filter(Boolean);
  let current = '/';
  let links = 0;
  while (todo.length > 0) {
    const name = todo.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      current = path.dirname(current);
      continue;
    }
    const next = path.join(current, name);
    const root = insideAny(next, realRoots);
    if (root) throw new Error(`it resolves into ${root}, which the guest can write`);
    if (!fs.lstatSync(next).isSymbolicLink()) {
      current = next;
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links at ${next}`);
    const target = fs.readlinkSync(next);
    if (target.startsWith('/')) current = '/';
    todo = [...target.split('/').filter(Boolean), ...todo];
  }
  return current;
}

export interface HookRunContext {
  containerId: string;
  /** Host paths the guest can write; a hook resolving into one is not run. */
  guestWritable: string[];
  /** The hook's working directory: the bundle, where runc's hooks start too. */
  cwd: string;
  logger: Logger;
}

/**
 * Runs one hook: `state` as JSON on its stdin, exactly its own `env` (not the daemon's),
 * argv from `args`, killed (SIGKILL) at its timeout. Throws HookFailedError naming the
 * container, the kind, the path and the exit status or the end of its stderr.
 */
export async function runHook(kind: HostHookKind, hook: OciHook, state: HookState, ctx: HookRunContext): Promise<void> {
  const what = `container ${ctx.containerId}: ${kind} hook ${hook.path}`;
  const fail = (status: number | string | undefined, why: string, cause?: unknown): HookFailedError => new HookFailedError({ kind, path: hook.path }, status, `${what} ${why}`, { cause });
  let file: string;
  try {
    file = resolveOutside(hook.path, ctx.guestWritable);
  } catch (err) {
    throw fail((err as NodeJS.ErrnoException).code, `was not run: ${(err as Error).message}`, err);
  }
  // runc and Kata (Go's exec with a nil Env) give a hook without `env` their own
  // environment; here it gets exactly what its caller wrote. The daemon's environment
  // (containerd's addresses, where the configuration is) is not the hook's to see.
  const env: NodeJS.ProcessEnv = {};
  for (const entry of hook.env ?? []) {
    const eq = entry.indexOf('=');
    env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  const timeoutS = Math.min(hook.timeout ?? DEFAULT_HOOK_TIMEOUT_S, MAX_HOOK_TIMEOUT_S);
  const [argv0, ...args] = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
  const started = Date.now();
  try {
    await runBounded(file, args, timeoutS * 1000, { env, cwd: ctx.cwd, input: JSON.stringify(state), argv0 });
  } catch (err) {
    if (err instanceof DeadlineExceededError) throw fail('timeout', `did not finish within ${timeoutS} s and was killed`, err);
    if (!(err instanceof CommandFailedError)) throw err;
    const status = err.exitCode;
    const stderr = err.stderr.length > STDERR_TAIL_CHARS ? `…${err.stderr.slice(-STDERR_TAIL_CHARS)}` : err.stderr;
    if (typeof status === 'number') throw fail(status, `failed with exit status ${status}${stderr ? `: ${stderr}` : ''}`, err);
    if (typeof status === 'string' && status.startsWith('SIG')) throw fail(status, `was killed by ${status}${stderr ? `: ${stderr}` : ''}`, err);
    throw fail(status, `could not be run (${status ?? 'no exit status'})`, err);
  }
  ctx.logger.info({ hook: kind, path: hook.path, ms: Date.now() - started }, 'OCI hook ran');
}

/**
 * The host hooks of one container, as its spec named them at Create. `vmmPid` is the
 * pid hooks are told: the VMM's, as Kata passes the hypervisor's (hook.go
 * HypervisorPidKey) and as containerd is told for the task. QEMU runs inside the pod's
 * network namespace, so /proc/<pid>/ns/net is how a network hook (Docker's
 * libnetwork-setkey, for one) finds it; hooks themselves run in the daemon's own
 * namespaces, the spec's "runtime namespace" (runc runs them in its own too). The
 * network is read once, before the VM boots, so interfaces a hook adds are not seen.
 */
export class ContainerHooks {
  private poststopRan = false;

  private constructor(
    private readonly hooks: HostHooks,
    private readonly container: { id: string; bundle: string; annotations?: Record<string, string> },
    private readonly guestWritable: string[],
    private readonly logger: Logger,
  ) {}

  /**
   * The hooks of `spec`, checked (parseHostHooks); undefined when it names none.
   * `guestWritable`: the container's host rootfs (resolved) and the runtime's state dir;
   * the rootfs as the spec names it and the read-write bind mounts' sources are added.
   */
  static async fromSpec(spec: OciSpec, container: { id: string; bundle: string; guestWritable: string[] }, logger: Logger): Promise<ContainerHooks | undefined> {
    const rwVolumes = (spec.mounts ?? []).filter((m) => isHostBind(m) && !(m.options ?? []).includes('ro') && m.source && path.isAbsolute(m.source)).map((m) => m.source!);
    const guestWritable = [...container.guestWritable, path.resolve(container.bundle, spec.root?.path || 'rootfs'), ...rwVolumes];
    const hooks = parseHostHooks(spec.hooks, container.id, guestWritable);
    if (HOST_HOOK_KINDS.every((kind) => hooks[kind].length === 0)) return undefined;
    return new ContainerHooks(hooks, { id: container.id, bundle: container.bundle, annotations: spec.annotations }, await canonicalRoots(guestWritable), logger);
  }

  /** prestart, then createRuntime (lifecycle steps 3-4): the first failure is thrown. */
  async created(vmmPid: number): Promise<void> {
    for (const kind of ['prestart', 'createRuntime'] as const) {
      for (const hook of this.hooks[kind]) await runHook(kind, hook, this.state('creating', vmmPid), this.context());
    }
  }

  /**
   * poststart: each failure is a warning and the rest still run, as runtime-spec 1.0.2
   * to 1.2 say and Kata does (start.go). Spec 1.3 makes it an error that stops the
   * container, as runc always did; we keep Kata's behaviour.
   */
  async started(vmmPid: number): Promise<void> {
    await this.runWarning('poststart', this.state('running', vmmPid));
  }

  /** poststop (step 13): each failure is a warning and the rest still run. */
  async deleted(vmmPid: number): Promise<void> {
    // Once per container: a Create whose hook failed ran them already, and containerd's Delete may follow.
    if (this.poststopRan) return;
    this.poststopRan = true;
    await this.runWarning('poststop', this.state('stopped', vmmPid));
  }

  private async runWarning(kind: 'poststart' | 'poststop', state: HookState): Promise<void> {
    for (const hook of this.hooks[kind]) {
      await runHook(kind, hook, state, this.context()).catch((err: unknown) => this.logger.warn({ hook: kind, path: hook.path, err: (err as Error).message }, 'OCI hook failed; continuing, as the runtime spec says'));
    }
  }

  private state(status: HookState['status'], vmmPid: number): HookState {
    const { id, bundle, annotations } = this.container;
    return { ociVersion: STATE_OCI_VERSION, id, status, ...(vmmPid > 0 ? { pid: vmmPid } : {}), bundle, ...(annotations ? { annotations } : {}) };
  }

  private context(): HookRunContext {
    return { containerId: this.container.id, guestWritable: this.guestWritable, cwd: this.container.bundle, logger: this.logger };
  }
}
