import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lookupType } from '../lib/protos';
import { parseLoadavg, parseMeminfo, readGuestMetrics } from './guest-metrics';

const MEMINFO = `MemTotal:         500000 kB
MemFree:          300000 kB
MemAvailable:     400000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap4k:       12288 kB
garbage line
`;

describe('guest metrics', () => {
  it('reads /proc/meminfo in bytes, counts without a unit as they are', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({
      MemTotal: 500000 * 1024,
      MemFree: 300000 * 1024,
      MemAvailable: 400000 * 1024,
      HugePages_Total: 0,
      Hugepagesize: 2048 * 1024,
      DirectMap4k: 12288 * 1024,
    });
  });

  it('reads /proc/loadavg, and answers zeros for what it cannot read', () => {
    expect(parseLoadavg('0.52 0.08 1.50 2/345 12345\n')).toEqual({ load1: 0.52, load5: 0.08, load15: 1.5, tasks_running: 2, tasks_total: 345 });
    expect(parseLoadavg('')).toEqual({ load1: 0, load5: 0, load15: 0, tasks_running: 0, tasks_total: 0 });
  });

  it('answers a message the proto encodes, with the agent process figures', () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    try {
      fs.writeFileSync(path.join(proc, 'meminfo'), MEMINFO);
      fs.writeFileSync(path.join(proc, 'loadavg'), '1.00 0.50 0.25 1/20 99\n');
      const reply = readGuestMetrics(proc);
      expect(reply.agent_rss_bytes).toBeGreaterThan(0);
      expect(reply.agent_cpu_seconds).toBeGreaterThan(0);
      const type = lookupType('katats.agent.v1.GuestMetrics');
      const decoded = type.toObject(type.decode(type.encode(type.fromObject(reply)).finish()), { longs: Number, defaults: true });
      expect(decoded).toMatchObject({ load1: 1, tasks_total: 20, meminfo_bytes: { MemTotal: 500000 * 1024 } });
    } finally {
      fs.rmSync(proc, { recursive: true, force: true });
    }
  });
});
