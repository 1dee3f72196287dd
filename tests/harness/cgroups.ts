// Removing cgroup subtrees the harness is responsible for. Runtimes create a pod's
// parent cgroup (PodSandboxConfig.linux.cgroup_parent) with mkdir -p and never remove
// it: kubelet owns pod cgroups. Playing kubelet, the harness removes them.

import * as fs from 'fs';
import * as path from 'path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** The mount points of every hierarchy: the root itself on pure v2, one per controller on v1. */
export function cgroupHierarchies(): string[] {
  if (fs.existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) return [CGROUP_ROOT];
  let names: fs.Dirent[] = [];
  try {
    names = fs.readdirSync(CGROUP_ROOT, { withFileTypes: true });
  } catch {
    return [];
  }
  // Symlinks (cpu,cpuacct style aliases) would visit a tree twice.
  return names.filter((d) => d.isDirectory()).map((d) => path.join(CGROUP_ROOT, d.name));
}

export interface CgroupRemoval {
  /** Every dir removed, as "<hierarchy dir>/<rel path>", deepest first. */
  removed: string[];
  /** Dirs that could not be removed (still holding processes), with the error. */
  failed: string[];
}

/**
 * rmdir()s `rel` (e.g. "/katats-test/cri-AbC123") and everything below it, deepest
 * first, in every hierarchy. Cgroup dirs can only be removed with rmdir, and only
 * once no process is left in them.
 */
export function removeCgroupTree(rel: string): CgroupRemoval {
  const out: CgroupRemoval = { removed: [], failed: [] };
  const visit = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // absent in this hierarchy
    }
    for (const e of entries) if (e.isDirectory()) visit(path.join(dir, e.name));
    try {
      fs.rmdirSync(dir);
      out.removed.push(dir);
    } catch (err) {
      out.failed.push(`${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  };
  for (const h of cgroupHierarchies()) visit(path.join(h, rel));
  return out;
}

/**
 * removeCgroupTree, retried until it succeeds or `timeoutMs` passes: as kubelet does,
 * for a pod cgroup that the runtime's processes leave a moment after the CRI call returned.
 */
export async function removeCgroupTreeOnceEmpty(rel: string, timeoutMs = 30_000): Promise<CgroupRemoval> {
  const deadline = Date.now() + timeoutMs;
  let removal = removeCgroupTree(rel);
  while (removal.failed.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    removal = removeCgroupTree(rel);
  }
  return removal;
}
