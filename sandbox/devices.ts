// A container's devices in a VM. CRI (and `ctr run --device`) put each one in the
// spec's linux.devices with the host's major:minor and no host path, plus a cgroup
// rule granting access. A block device is found on the host through
// /sys/dev/block/<major>:<minor>, hot-plugged into the running VM as a virtio-blk
// disk of its own, read-only unless the rules grant writes, and handed to the agent by
// serial (agent/devices.ts gives the entry the guest disk's numbers). The devices
// every runtime creates in /dev have the same numbers in the guest and pass through;
// any other device node names host hardware that does not exist in the VM: refused.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, KataError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { Hypervisor, VmDevice } from '../hypervisors/hypervisor';
import { OciSpec } from './spec';
import { NO_SANDBOX_OBSERVER, SandboxObserver } from './sandbox-observer';

interface LinuxDevice {
  path: string;
  type: string;
  major?: number;
  minor?: number;
}

interface LinuxDeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

/** What CreateContainerRequest.devices carries for one disk. */
export interface GuestDeviceRequest {
  container_path: string;
  serial: string;
}

export interface PlannedDevice {
  vm: Extract<VmDevice, { kind: 'block' }>;
  guest: GuestDeviceRequest;
}

/** /dev/null, zero, full, random, urandom and tty: created by the runtime in every container, same numbers in the guest. */
const STANDARD_CHAR_DEVICES = new Set(['1:3', '1:5', '1:7', '1:8', '1:9', '5:0']);

const SYS_DEV_BLOCK = '/sys/dev/block';

/**
 * The block devices of `spec` to hot-plug, each with a fresh id from `newId` (also
 * its serial). Refuses, before anything is plugged, devices that cannot cross.
 */
export function planDevices(containerId: string, spec: OciSpec, newId: () => string, sysDevBlock = SYS_DEV_BLOCK): PlannedDevice[] {
  const linux = spec.linux as { devices?: LinuxDevice[]; resources?: { devices?: LinuxDeviceRule[] } } | undefined;
  const rules = linux?.resources?.devices ?? [];
  const planned: PlannedDevice[] = [];
  for (const dev of linux?.devices ?? []) {
    const numbers = `${dev.major}:${dev.minor}`;
    if ((dev.type === 'c' || dev.type === 'u') && STANDARD_CHAR_DEVICES.has(numbers)) continue;
    if (dev.type !== 'b') {
      throw new FailedPreconditionError(`container ${containerId}: device ${dev.path} (${dev.type === 'p' ? 'FIFO' : 'character device'} ${numbers}) cannot be passed into the VM: only block devices are hot-plugged`);
    }
    const id = newId();
    planned.push({
      vm: { kind: 'block', id, hostPath: hostBlockDevice(containerId, dev, sysDevBlock), readOnly: !writable(rules, dev) },
      guest: { container_path: dev.path, serial: id },
    });
  }
  return planned;
}

/** The host's /dev node for a block device's numbers, as the kernel names it. */
function hostBlockDevice(containerId: string, dev: LinuxDevice, sysDevBlock: string): string {
  const numbers = `${dev.major}:${dev.minor}`;
  let uevent: string;
  try {
    uevent = fs.readFileSync(path.join(sysDevBlock, numbers, 'uevent'), 'utf8');
  } catch {
    throw new FailedPreconditionError(`container ${containerId}: device ${dev.path}: the host has no block device ${numbers}`);
  }
  const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
  if (!name) throw new FailedPreconditionError(`container ${containerId}: device ${dev.path}: block device ${numbers} has no device name on the host`);
  return path.join('/dev', name);
}

/** cgroup device rules apply in order, the last match wins; writes need a 'w' allowed. */
function writable(rules: LinuxDeviceRule[], dev: LinuxDevice): boolean {
  let allowed = false;
  for (const rule of rules) {
    const matches =
      (rule.type === undefined || rule.type === 'a' || rule.type === dev.type) &&
      (rule.major === undefined || rule.major === -1 || rule.major === dev.major) &&
      (rule.minor === undefined || rule.minor === -1 || rule.minor === dev.minor);
    if (matches && (rule.access ?? 'rwm').includes('w')) allowed = rule.allow;
  }
  return allowed;
}

/** Owns the devices hot-plugged for each container of one VM until they are unplugged. */
export class ContainerDevices {
  /** Container id → ids of its plugged devices, in plug order. */
  private readonly plugged = new Map<string, string[]>();
  private created = 0;

  constructor(
    private readonly hypervisor: Hypervisor,
    private readonly logger: Logger,
    private readonly sysDevBlock = SYS_DEV_BLOCK,
    /** Counts each hot-plug and unplug (the shim's metrics). */
    private readonly observer: Pick<SandboxObserver, 'hotplug'> = NO_SANDBOX_OBSERVER,
  ) {}

  /** See planDevices; also refuses block devices when the driver cannot hot-plug. */
  plan(containerId: string, spec: OciSpec): PlannedDevice[] {
    const planned = planDevices(containerId, spec, () => `blk${this.created++}`, this.sysDevBlock);
    if (planned.length > 0 && !(this.hypervisor.addDevice && this.hypervisor.removeDevice)) {
      throw new FailedPreconditionError(`container ${containerId}: device ${planned[0].guest.container_path}: the ${this.hypervisor.name} driver cannot hot-plug block devices`);
    }
    return planned;
  }

  /** Hot-plugs `planned` into the VM; on failure unplugs what it plugged and rethrows. */
  async plug(containerId: string, planned: PlannedDevice[]): Promise<void> {
    const ids: string[] = [];
    this.plugged.set(containerId, ids);
    for (const { vm, guest } of planned) {
      try {
        await this.hypervisor.addDevice!(vm);
        this.observer.hotplug('block', 'add', false);
      } catch (err) {
        this.observer.hotplug('block', 'add', true);
        await this.unplug(containerId);
        throw withContext(err, `container ${containerId}: device ${guest.container_path} (host ${vm.hostPath})`);
      }
      ids.push(vm.id);
    }
  }

  /**
   * Unplugs the container's devices. A device the guest does not release is logged;
   * the driver drops it whenever the guest lets go, at the latest when the VM stops.
   */
  async unplug(containerId: string): Promise<void> {
    for (const id of this.plugged.get(containerId) ?? []) {
      await this.hypervisor.removeDevice!(id).then(
        () => this.observer.hotplug('block', 'remove', false),
        (err) => {
          this.observer.hotplug('block', 'remove', true);
          this.logger.error({ container: containerId, device: id, err: (err as Error).message }, 'device unplug failed');
        },
      );
    }
    this.plugged.delete(containerId);
  }
}

/** The same kind of error (so the gRPC code stays), its message prefixed with `context`. */
function withContext(err: unknown, context: string): Error {
  const message = `${context}: ${(err as Error).message}`;
  if (err instanceof KataError) return new (err.constructor as new (message: string, options?: { cause?: unknown }) => KataError)(message, { cause: err });
  return new Error(message, { cause: err });
}
