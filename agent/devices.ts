// Block devices the shim hot-plugged for a container. The shim names each disk by its
// virtio-blk serial; the guest kernel probes the new PCI device shortly after QEMU's
// device_add returned, and the disk appears as /sys/block/<vdX> with that `serial`.
// The container's spec still carries the host's major:minor for the device (what CRI
// found on the host); those become the guest disk's, in linux.devices and in the
// cgroup rules that granted access to them.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InvalidArgumentError } from '../lib/errors';

/** One entry of CreateContainerRequest.devices. */
export interface DeviceRequest {
  container_path: string;
  serial: string;
}

export interface GuestDisk {
  containerPath: string;
  /** Kernel name, e.g. "vda". */
  name: string;
  major: number;
  minor: number;
}

export interface LinuxDevice {
  path: string;
  type: string;
  major?: number;
  minor?: number;
  [key: string]: unknown;
}

export interface LinuxDeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface SpecWithDevices {
  linux?: { devices?: LinuxDevice[]; resources?: { devices?: LinuxDeviceRule[]; [key: string]: unknown } };
}

export const SYS_BLOCK = '/sys/block';
/** Hot-plug under TCG takes well under a second; this leaves room for a loaded host. */
export const DISK_APPEAR_TIMEOUT_MS = 10_000;
const POLL_MS = 50;

/** Waits for each requested disk to appear; fails naming the first that did not. */
export async function findDisks(containerId: string, requests: DeviceRequest[], opts: { sysBlock?: string; timeoutMs?: number } = {}): Promise<GuestDisk[]> {
  const sysBlock = opts.sysBlock ?? SYS_BLOCK;
  const deadline = Date.now() + (opts.timeoutMs ?? DISK_APPEAR_TIMEOUT_MS);
  for (;;) {
    const bySerial = disksBySerial(sysBlock);
    const missing = requests.find((r) => !bySerial.has(r.serial));
    if (!missing) return requests.map((r) => guestDisk(sysBlock, r.container_path, bySerial.get(r.serial)!));
    if (Date.now() >= deadline) {
      throw new FailedPreconditionError(`container ${containerId}: device ${missing.container_path}: no disk with serial ${missing.serial} appeared in the guest within ${opts.timeoutMs ?? DISK_APPEAR_TIMEOUT_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Rewrites `spec` in place: each disk's linux.devices entry (found by its container
 * path) and the cgroup rules for the host numbers it had get the guest disk's numbers.
 */
export function applyDisks(containerId: string, spec: SpecWithDevices, disks: GuestDisk[]): void {
  const renumbered = new Map<string, GuestDisk>();
  for (const disk of disks) {
    const entry = spec.linux?.devices?.find((d) => d.path === disk.containerPath);
    if (entry?.type !== 'b') throw new InvalidArgumentError(`container ${containerId}: device ${disk.containerPath} has no block device entry in the spec's linux.devices`);
    renumbered.set(`${entry.major}:${entry.minor}`, disk);
    entry.major = disk.major;
    entry.minor = disk.minor;
  }
  // One pass over the original rules, so a rewritten rule is never matched again.
  for (const rule of spec.linux?.resources?.devices ?? []) {
    const disk = rule.type === 'b' ? renumbered.get(`${rule.major}:${rule.minor}`) : undefined;
    if (disk) Object.assign(rule, { major: disk.major, minor: disk.minor });
  }
}

/** serial → kernel name of every disk that has a serial (virtio-blk does). */
function disksBySerial(sysBlock: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const name of fs.readdirSync(sysBlock)) {
    const serial = readOptional(path.join(sysBlock, name, 'serial'));
    if (serial) found.set(serial, name);
  }
  return found;
}

function guestDisk(sysBlock: string, containerPath: string, name: string): GuestDisk {
  const [major, minor] = (readOptional(path.join(sysBlock, name, 'dev')) ?? '').split(':').map(Number);
  return { containerPath, name, major, minor };
}

function readOptional(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}
