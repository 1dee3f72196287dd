// Notices OOM kills in containers by watching the oom_kill counter of their cgroup v2
// memory.events files.
//
// Two triggers feed the same check: fs.watch (inotify; the kernel notifies on cgroup v2
// memory.events when a counter changes) and a slow poll, because inotify does not fire
// on every filesystem. Each check reads the file synchronously and compares with the
// last value seen, so the two triggers can never report the same increase twice.
//
// Events:
//   'oom' (containerId: string, oomKills: number) — oom_kill went up since the last check
//   (once per observed increase, even if several kills happened in between; the count
//   read at watch() time is the baseline and never fires).
import { EventEmitter } from 'events';
import * as fs from 'fs';

export interface OomWatcherOptions {
  /** Poll interval of the fallback check; default 500 ms. */
  pollIntervalMs?: number;
  /** Also use fs.watch (default true); false leaves only the poll. */
  useFsWatch?: boolean;
}

interface Watched {
  file: string;
  lastKills: bigint;
  watcher?: fs.FSWatcher;
}

const DEFAULT_POLL_MS = 500;

/** memory.events' oom_kill line (compiled ahead in a VM template: template-prep). */
export const OOM_KILL_LINE = /^oom_kill\s+(\d+)\s*$/m;

/** oom_kill from memory.events text; undefined when absent (e.g. a half-written file). */
export function parseOomKillCount(text: string): bigint | undefined {
  const m = OOM_KILL_LINE.exec(text);
  return m ? BigInt(m[1]) : undefined;
}

export class OomWatcher extends EventEmitter {
  private readonly watched = new Map<string, Watched>();
  private readonly pollIntervalMs: number;
  private readonly useFsWatch: boolean;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: OomWatcherOptions = {}) {
    super();
    this.pollIntervalMs = opts.pollIntervalMs ?? DEFAULT_POLL_MS;
    this.useFsWatch = opts.useFsWatch ?? true;
  }

  /**
   * Starts watching `memoryEventsFile` for `containerId` (replacing an earlier watch of
   * the same id). Returns false, watching nothing, when the file cannot be read now
   * (no cgroup v2 memory controller, or the cgroup is already gone) or after close().
   */
  watch(containerId: string, memoryEventsFile: string): boolean {
    this.unwatch(containerId);
    if (this.closed) return false;
    let text: string;
    try {
      text = fs.readFileSync(memoryEventsFile, 'utf8');
    } catch {
      return false;
    }
    const entry: Watched = { file: memoryEventsFile, lastKills: parseOomKillCount(text) ?? 0n };
    this.watched.set(containerId, entry);

    if (this.useFsWatch) {
      try {
        const watcher = fs.watch(memoryEventsFile, { persistent: false }, () => this.check(containerId, entry));
        // e.g. the cgroup was removed, or inotify limits: the poll carries on alone.
        watcher.on('error', () => {
          watcher.close();
          if (entry.watcher === watcher) entry.watcher = undefined;
        });
        entry.watcher = watcher;
      } catch {
        // fs.watch unsupported here; the poll covers it.
      }
    }
    this.ensureTimer();
    return true;
  }

  /** Stops watching `containerId`; unknown ids are ignored. */
  unwatch(containerId: string): void {
    const entry = this.watched.get(containerId);
    if (!entry) return;
    this.watched.delete(containerId);
    entry.watcher?.close();
    entry.watcher = undefined;
    if (this.watched.size === 0) this.stopTimer();
  }

  /** Stops everything; later watch() calls are refused. */
  close(): void {
    this.closed = true;
    for (const id of [...this.watched.keys()]) this.unwatch(id);
    this.stopTimer();
  }

  /** Container ids currently watched. */
  watchedIds(): string[] {
    return [...this.watched.keys()];
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const [id, entry] of [...this.watched]) this.check(id, entry);
    }, this.pollIntervalMs);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(containerId: string, entry: Watched): void {
    // A stale callback (fs.watch event queued before unwatch / re-watch) is ignored.
    if (this.watched.get(containerId) !== entry) return;
    let text: string;
    try {
      text = fs.readFileSync(entry.file, 'utf8');
    } catch (err) {
      // Cgroup removed: nothing more can happen to it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        this.unwatch(containerId);
      }
      return;
    }
    const kills = parseOomKillCount(text);
    if (kills === undefined) return;
    if (kills > entry.lastKills) {
      entry.lastKills = kills;
      this.emit('oom', containerId, Number(kills));
    } else if (kills < entry.lastKills) {
      // Not something a cgroup does; a replaced file. Re-baseline without reporting.
      entry.lastKills = kills;
    }
  }
}
