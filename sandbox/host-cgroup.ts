// The pod's cgroup on the host. Kubelet's accounting, limits and eviction see a pod
// through its cgroup; a VM outside it would use memory and CPU nobody charges to the
// pod. So, as Kata does with `sandbox_cgroup_only = true`, the shim daemon moves
// itself into the sandbox's cgroup (the pause container's `linux.cgroupsPath`)
// before the VMM starts, and every VMM thread is born there. With
// sandbox_cgroup_only = false only the VMM stays there: the shim moves on to the
// configured overhead cgroup (or back where it came from).
//
// Works on cgroup v1 (one hierarchy per controller, as on these machines) and v2
// (one unified tree). The root is injectable so tests can use a fake cgroupfs.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';

export const CGROUP_ROOT = '/sys/fs/cgroup';

/** v1 controllers the pod is accounted and limited by; cpuset and devices need set-up of their own and are left alone. */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio'];

/** v1's "no limit" is a huge page-rounded number; anything at least this large means none. */
const V1_UNLIMITED = 2 ** 62;

export interface CgroupLimits {
  /** The smallest memory limit on the path from the cgroup to the root, if any. */
  memoryBytes?: number;
  /** The smallest CPU quota on that path, in CPUs (quota / period), if any. */
  cpus?: number;
}

/** What `delete` needs to remove the cgroup after a crash; JSON in the sandbox's state directory. */
export interface CgroupRecord {
  /** The leaf directories this sandbox created, one per hierarchy: only these are ever removed. */
  created: string[];
}

/**
 * An OCI `linux.cgroupsPath` as a path below the cgroup root. cgroupfs paths are
 * taken as they are; systemd's "slice:prefix:name" becomes
 * `<slice hierarchy>/<prefix>-<name>.scope`, as runc lays it out.
 */
export function cgroupRelativePath(cgroupsPath: string): string {
  let rel: string;
  const parts = cgroupsPath.split(':');
  if (parts.length === 3 && !cgroupsPath.startsWith('/')) {
    const [slice, prefix, name] = parts;
    rel = path.join(expandSlice(slice || '-.slice'), `${prefix}-${name}.scope`);
  } else {
    rel = cgroupsPath;
  }
  const segments = rel.split('/').filter(Boolean);
  if (segments.length === 0 || segments.some((s) => s === '.' || s === '..')) {
    throw new InvalidArgumentError(`linux.cgroupsPath ${JSON.stringify(cgroupsPath)} does not name a cgroup below the root`);
  }
  return segments.join('/');
}

/** systemd slice names nest by their dashes: a-b.slice lives in a.slice. */
function expandSlice(slice: string): string {
  if (slice === '-.slice') return '';
  if (!slice.endsWith('.slice') || slice.includes('/')) throw new InvalidArgumentError(`cgroup slice ${JSON.stringify(slice)} is not a systemd slice name`);
  const words = slice.slice(0, -'.slice'.length).split('-');
  return words.map((_, i) => `${words.slice(0, i + 1).join('-')}.slice`).join('/');
}

export class HostCgroups {
  constructor(readonly root = CGROUP_ROOT) {}

  get unified(): boolean {
    return fs.existsSync(path.join(this.root, 'cgroup.controllers'));
  }

  /** The hierarchy directories a sandbox cgroup lives in: the root on v2, one per controller on v1. */
  hierarchies(): string[] {
    if (this.unified) return [this.root];
    return V1_CONTROLLERS.map((c) => path.join(this.root, c)).filter((dir) => fs.existsSync(path.join(dir, 'cgroup.procs')));
  }

  /** The cgroup `pid` is in, per hierarchy directory (from /proc/<pid>/cgroup). */
  cgroupsOf(pid: number | 'self' = 'self', procFile = `/proc/${pid}/cgroup`): Map<string, string> {
    const byHierarchy = new Map<string, string>();
    for (const line of fs.readFileSync(procFile, 'utf8').split('\n')) {
      const [, controllers, rel] = line.split(':');
      if (rel === undefined) continue;
      if (this.unified) {
        if (controllers === '') byHierarchy.set(this.root, rel);
        continue;
      }
      for (const c of controllers.split(',')) if (V1_CONTROLLERS.includes(c)) byHierarchy.set(path.join(this.root, c), rel);
    }
    return byHierarchy;
  }
}

/** One sandbox's cgroup, made (mkdir -p) in every hierarchy. */
export class SandboxCgroup {
  private constructor(
    private readonly host: HostCgroups,
    readonly relPath: string,
    /** The leaf directories created here. */
    readonly created: string[],
  ) {}

  /**
   * Parents are made as needed and left in place afterwards, as runc leaves them
   * (kubelet owns pod-level cgroups, and other sandboxes may share a parent); only
   * the sandbox's own leaf is recorded for removal.
   */
  static create(host: HostCgroups, relPath: string): SandboxCgroup {
    const created: string[] = [];
    try {
      for (const hierarchy of host.hierarchies()) {
        const leaf = path.join(hierarchy, relPath);
        fs.mkdirSync(path.dirname(leaf), { recursive: true });
        try {
          fs.mkdirSync(leaf);
          created.push(leaf);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
      }
    } catch (err) {
      removeCreated(created);
      throw err;
    }
    return new SandboxCgroup(host, relPath, created);
  }

  get record(): CgroupRecord {
    return { created: this.created };
  }

  /** Moves `pid` (all its threads) into this cgroup in every hierarchy. */
  join(pid: number): void {
    for (const hierarchy of this.host.hierarchies()) fs.writeFileSync(path.join(hierarchy, this.relPath, 'cgroup.procs'), String(pid));
  }

  /** Moves `pid` into the cgroups named per hierarchy (where it came from, or the overhead cgroup). */
  static moveTo(pid: number, cgroups: Map<string, string>): void {
    for (const [hierarchy, rel] of cgroups) fs.writeFileSync(path.join(hierarchy, rel, 'cgroup.procs'), String(pid));
  }

  /** The tightest limits on the way from this cgroup up to the root (kubelet sets them on the pod level, above ours). */
  limits(): CgroupLimits {
    const out: CgroupLimits = {};
    const unified = this.host.unified;
    for (const hierarchy of this.host.hierarchies()) {
      let rel = this.relPath;
      for (;;) {
        const dir = path.join(hierarchy, rel);
        const memory = unified ? readLimit(path.join(dir, 'memory.max')) : path.basename(hierarchy) === 'memory' ? readLimit(path.join(dir, 'memory.limit_in_bytes')) : undefined;
        if (memory !== undefined && memory < V1_UNLIMITED) out.memoryBytes = Math.min(out.memoryBytes ?? Infinity, memory);
        const cpus = unified ? cpusFromV2(dir) : path.basename(hierarchy) === 'cpu' ? cpusFromV1(dir) : undefined;
        if (cpus !== undefined) out.cpus = Math.min(out.cpus ?? Infinity, cpus);
        if (rel === '.' || rel === '') break;
        rel = path.dirname(rel);
      }
    }
    return out;
  }

  /** Removes what create() made; the cgroup must be empty (the VMM gone, the shim moved out). */
  remove(): string[] {
    return removeCreated(this.created);
  }
}

/** rmdir()s each directory; returns those that could not be removed, with the reason. */
export function removeCreated(created: string[]): string[] {
  const failed: string[] = [];
  for (const dir of created) {
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed.push(`${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return failed;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readLimit(file: string): number | undefined {
  const text = readText(file);
  if (text === undefined || text === 'max') return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function cpusFromV1(dir: string): number | undefined {
  const quota = Number(readText(path.join(dir, 'cpu.cfs_quota_us')));
  const period = Number(readText(path.join(dir, 'cpu.cfs_period_us')));
  return quota > 0 && period > 0 ? quota / period : undefined;
}

function cpusFromV2(dir: string): number | undefined {
  const [quota, period] = (readText(path.join(dir, 'cpu.max')) ?? 'max').split(/\s+/);
  return quota !== 'max' && Number(quota) > 0 && Number(period) > 0 ? Number(quota) / Number(period) : undefined;
}
