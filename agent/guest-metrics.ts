// GetGuestMetrics: the guest's memory and load as its kernel reports them, and the
// agent's own footprint, for the shim's /metrics (kata_guest_*, kata_agent_*). Typed
// fields rather than Kata's Prometheus text: the shim decides names and labels, so a
// guest can never add series or label values on the host.
import * as fs from 'fs';
import * as path from 'path';

export interface GuestMetricsReply {
  meminfo_bytes: Record<string, number>;
  load1: number;
  load5: number;
  load15: number;
  tasks_running: number;
  tasks_total: number;
  agent_rss_bytes: number;
  agent_cpu_seconds: number;
}

/** /proc/meminfo has ~50 fields; more would be a kernel we do not know, not more to say. */
const MAX_MEMINFO_FIELDS = 128;

/** "MemTotal:  1014492 kB" → { MemTotal: 1038839808 }; lines without a number are skipped. */
export function parseMeminfo(text: string): Record<string, number> {
  const fields: Record<string, number> = {};
  let count = 0;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$/.exec(line);
    if (!m || count >= MAX_MEMINFO_FIELDS) continue;
    // HugePages_Total and friends are counts, not sizes: no unit.
    fields[m[1]] = Number(m[2]) * (m[3] ? 1024 : 1);
    count++;
  }
  return fields;
}

/** "0.52 0.58 0.59 2/345 12345" → load averages and running/total entities. */
export function parseLoadavg(text: string): Pick<GuestMetricsReply, 'load1' | 'load5' | 'load15' | 'tasks_running' | 'tasks_total'> {
  const m = /^(\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+)\/(\d+)/.exec(text.trim());
  if (!m) return { load1: 0, load5: 0, load15: 0, tasks_running: 0, tasks_total: 0 };
  return { load1: Number(m[1]), load5: Number(m[2]), load15: Number(m[3]), tasks_running: Number(m[4]), tasks_total: Number(m[5]) };
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export function readGuestMetrics(procDir = '/proc'): GuestMetricsReply {
  const cpu = process.cpuUsage();
  return {
    meminfo_bytes: parseMeminfo(readOr(path.join(procDir, 'meminfo'))),
    ...parseLoadavg(readOr(path.join(procDir, 'loadavg'))),
    agent_rss_bytes: process.memoryUsage.rss(),
    agent_cpu_seconds: (cpu.user + cpu.system) / 1e6,
  };
}
