// Which sandboxes run on this node: every work dir under the runtime's state dirs that
// has a management socket (<state_dir>/<namespace>/<sandbox>/shim-monitor.sock, or
// <state_dir>/.hashed/<hash>/… for ids too long for a socket path), with the identity
// record its shim wrote beside it. Scanned at each scrape, so a removed pod's series
// are gone from the next answer; the scan is two readdirs deep.
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../lib/logger';
import { monitorSocketPath, readSandboxIdentity, SandboxIdentity } from '../lib/shim-monitor';

export interface DiscoveredSandbox {
  workDir: string;
  socket: string;
  identity: SandboxIdentity;
}

/** sandbox.ts's directory for work dirs whose readable path would be too long. */
const HASHED_WORK_DIRS = '.hashed';

function subdirectories(dir: string): string[] {
  try {
    // Directories only, never through a symlink.
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
  } catch {
    return []; // no sandbox has run yet, or the namespace's dir went with its last sandbox
  }
}

function isSocket(file: string): boolean {
  try {
    return fs.lstatSync(file).isSocket();
  } catch {
    return false;
  }
}

/** The sandboxes under `stateDirs`; a work dir whose record cannot be read is skipped (and logged). */
export function discoverSandboxes(stateDirs: string[], logger: Logger): DiscoveredSandbox[] {
  const found: DiscoveredSandbox[] = [];
  for (const stateDir of stateDirs) {
    const groups = subdirectories(stateDir).filter((d) => path.basename(d) === HASHED_WORK_DIRS || !path.basename(d).startsWith('.'));
    for (const workDir of groups.flatMap(subdirectories)) {
      const socket = monitorSocketPath(workDir);
      if (!isSocket(socket)) continue; // starting (not serving yet) or stopping
      try {
        found.push({ workDir, socket, identity: readSandboxIdentity(workDir) });
      } catch (err) {
        logger.debug({ workDir, err: (err as Error).message }, 'management socket without a readable identity; skipped');
      }
    }
  }
  return found;
}
