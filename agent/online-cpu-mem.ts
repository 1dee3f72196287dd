// Brings hot-plugged vCPUs and memory online. The guest kernel adds a hot-plugged CPU
// (ACPI) as /sys/devices/system/cpu/cpuN with online=0, and hot-plugged memory as
// memory blocks /sys/devices/system/memory/memoryN with state "offline" unless it was
// built to online memory itself (CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE); the guest has
// no udev to do it. The kernel handles the ACPI notification a moment after QEMU's
// device_add returned, so what the shim just plugged may not be there yet: we poll
// until the counts the shim expects are online, within a bound.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError } from '../lib/errors';
import { readTrimmed } from '../lib/recorded-process';

export const SYS_DEVICES_SYSTEM = '/sys/devices/system';
/** Under TCG on a loaded host a CPU takes well under a second; below the shim's 30 s call timeout. */
export const ONLINE_WAIT_MS = 20_000;
const POLL_MS = 50;
const MiB = 1024 * 1024;

export interface OnlineCounts {
  cpus: number;
  memoryMiB: number;
}

/**
 * Onlines every offline CPU and memory block below `sysRoot` until at least `want` is
 * online (a zero count does not wait), then returns what is online. Fails after
 * `timeoutMs` naming what is missing and the last write that failed.
 */
export async function onlineCpuMem(want: OnlineCounts, opts: { sysRoot?: string; timeoutMs?: number } = {}): Promise<OnlineCounts> {
  const sysRoot = opts.sysRoot ?? SYS_DEVICES_SYSTEM;
  const timeoutMs = opts.timeoutMs ?? ONLINE_WAIT_MS;
  const deadline = Date.now() + timeoutMs;
  const failures = new Map<string, string>();
  for (;;) {
    const online = { cpus: onlineCpus(path.join(sysRoot, 'cpu'), failures), memoryMiB: onlineMemoryMiB(path.join(sysRoot, 'memory'), failures) };
    if (online.cpus >= want.cpus && online.memoryMiB >= want.memoryMiB) return online;
    if (Date.now() >= deadline) {
      const failed = [...failures].map(([file, err]) => `${file}: ${err}`);
      throw new FailedPreconditionError(
        `after ${timeoutMs} ms the guest has ${online.cpus} of ${want.cpus} CPUs and ${online.memoryMiB} of ${want.memoryMiB} MiB online` +
          (failed.length > 0 ? ` (writes that failed: ${failed.join('; ')})` : ' (the hot-plugged devices did not appear)'),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The entries of /sys/devices/system/cpu and /sys/devices/system/memory that are a CPU and a memory block. */
export const CPU_DIR = /^cpu\d+$/;
export const MEMORY_BLOCK_DIR = /^memory\d+$/;

/** Onlines offline CPUs; returns how many are online. A CPU without an `online` file (cpu0) cannot go offline. */
function onlineCpus(cpuDir: string, failures: Map<string, string>): number {
  let count = 0;
  for (const name of entries(cpuDir, CPU_DIR)) {
    const file = path.join(cpuDir, name, 'online');
    if (!fs.existsSync(file)) {
      count++;
      continue;
    }
    const state = readTrimmed(file);
    if (state === '1' || (state === '0' && bringOnline(file, '1', failures))) count++;
  }
  return count;
}

/** Onlines offline memory blocks; returns the online memory in MiB. */
function onlineMemoryMiB(memoryDir: string, failures: Map<string, string>): number {
  const blockHex = readTrimmed(path.join(memoryDir, 'block_size_bytes'));
  if (!blockHex) return 0; // no memory hot-plug support in this kernel
  const blockMiB = parseInt(blockHex, 16) / MiB;
  let blocks = 0;
  for (const name of entries(memoryDir, MEMORY_BLOCK_DIR)) {
    const file = path.join(memoryDir, name, 'state');
    const state = readTrimmed(file);
    if (state === 'online' || (state === 'offline' && bringOnline(file, 'online', failures))) blocks++;
  }
  return blocks * blockMiB;
}

/** Writes `value`; true when the file then reads back as online (the kernel may have beaten us to it). */
function bringOnline(file: string, value: string, failures: Map<string, string>): boolean {
  let error: string | undefined;
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
  const online = readTrimmed(file) === value;
  if (online || !error) failures.delete(file);
  else failures.set(file, error);
  return online;
}

function entries(dir: string, pattern: RegExp): string[] {
  try {
    return fs.readdirSync(dir).filter((name) => pattern.test(name));
  } catch {
    return [];
  }
}

