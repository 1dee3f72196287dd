// Onlining against a fake /sys/devices/system: plain files where the kernel has
// attributes, so a write "takes" and reads back as the kernel's would.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError } from '../lib/errors';
import { onlineCpuMem } from './online-cpu-mem';

let sysRoot: string;

function write(relative: string, content: string): void {
  const file = path.join(sysRoot, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}
const read = (relative: string) => fs.readFileSync(path.join(sysRoot, relative), 'utf8');

/** A guest booted with 2 vCPUs and 1 GiB (eight 128 MiB blocks), as Linux lays it out. */
beforeEach(() => {
  sysRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sys-devices-system-'));
  fs.mkdirSync(path.join(sysRoot, 'cpu', 'cpu0'), { recursive: true }); // the boot CPU has no online file
  write('cpu/cpu1/online', '1\n');
  write('cpu/online', '0-1\n');
  write('cpu/possible', '0-3\n');
  fs.mkdirSync(path.join(sysRoot, 'cpu', 'cpufreq'));
  write('memory/block_size_bytes', '8000000\n');
  write('memory/auto_online_blocks', 'offline\n');
  for (let i = 0; i < 8; i++) write(`memory/memory${i}/state`, 'online\n');
  fs.mkdirSync(path.join(sysRoot, 'memory', 'power'));
});
afterEach(() => fs.rmSync(sysRoot, { recursive: true, force: true }));

describe('onlineCpuMem', () => {
  it('onlines hot-added CPUs and memory blocks and counts what is online', async () => {
    write('cpu/cpu2/online', '0\n');
    write('memory/memory32/state', 'offline\n');
    write('memory/memory33/state', 'offline\n');
    expect(await onlineCpuMem({ cpus: 3, memoryMiB: 1280 }, { sysRoot })).toEqual({ cpus: 3, memoryMiB: 1280 });
    expect(read('cpu/cpu2/online')).toBe('1');
    expect(read('memory/memory32/state')).toBe('online');
    expect(read('memory/memory33/state')).toBe('online');
    // What was online already is left alone.
    expect(read('cpu/cpu1/online')).toBe('1\n');
    expect(read('memory/memory0/state')).toBe('online\n');
  });

  it('waits for a CPU that appears a moment after the call, and onlines it', async () => {
    setTimeout(() => write('cpu/cpu2/online', '0\n'), 150);
    expect(await onlineCpuMem({ cpus: 3, memoryMiB: 0 }, { sysRoot, timeoutMs: 10_000 })).toEqual({ cpus: 3, memoryMiB: 1024 });
    expect(read('cpu/cpu2/online')).toBe('1');
  });

  it('counts memory the kernel onlined by itself without writing to it', async () => {
    write('memory/memory8/state', 'online\n');
    expect(await onlineCpuMem({ cpus: 2, memoryMiB: 1152 }, { sysRoot })).toEqual({ cpus: 2, memoryMiB: 1152 });
    expect(read('memory/memory8/state')).toBe('online\n');
  });

  it('does not wait when nothing is expected', async () => {
    write('cpu/cpu2/online', '0\n');
    expect(await onlineCpuMem({ cpus: 0, memoryMiB: 0 }, { sysRoot, timeoutMs: 60_000 })).toEqual({ cpus: 3, memoryMiB: 1024 });
  });

  it('gives up after the bound, naming what is missing', async () => {
    const err = await onlineCpuMem({ cpus: 4, memoryMiB: 1024 }, { sysRoot, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toBe('after 200 ms the guest has 2 of 4 CPUs and 1024 of 1024 MiB online (the hot-plugged devices did not appear)');
  });

  it('counts a CPU whose online file cannot be read as offline, not as the boot CPU', async () => {
    fs.mkdirSync(path.join(sysRoot, 'cpu', 'cpu2', 'online'), { recursive: true });
    expect(await onlineCpuMem({ cpus: 0, memoryMiB: 0 }, { sysRoot })).toEqual({ cpus: 2, memoryMiB: 1024 });
  });
});
