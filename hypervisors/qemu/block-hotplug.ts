// Block devices hot-plugged into a running QEMU over QMP. Adding: the host file or
// block device becomes a block node (blockdev-add), then a virtio-blk-pci device on a
// free PCIe root port (device_add) whose serial is the device id, so the guest finds
// the disk as /sys/block/<vdX>/serial. Removing: device_del only asks the guest to let
// go; the device is gone when QEMU emits DEVICE_DELETED, and only then may its block
// node be dropped (blockdev-del) and its port reused.
import * as fs from 'fs';
import { FailedPreconditionError, HypervisorError, InvalidArgumentError, NotFoundError } from '../../lib/errors';
import { HotplugPorts } from './hotplug-ports';
import { VmDevice } from '../hypervisor';
import { QmpClient } from './qmp';

export type BlockDevice = Extract<VmDevice, { kind: 'block' }>;

/** The id is also the virtio-blk serial (20 bytes at most) and a QEMU id (starts with a letter). */
const DEVICE_ID = /^[A-Za-z][A-Za-z0-9_.-]{0,19}$/;

/** device_del needs the guest's cooperation; under TCG that can take seconds. */
export const DEFAULT_UNPLUG_TIMEOUT_MS = 30_000;
/** How long a late DEVICE_DELETED is still acted on; the VM's end releases the file anyway. */
const LATE_UNPLUG_WAIT_MS = 24 * 3600_000;

/** QEMU's block driver for a host path: a block device, or an image file. */
export function blockDriver(stat: Pick<fs.Stats, 'isBlockDevice'>): 'host_device' | 'file' {
  return stat.isBlockDevice() ? 'host_device' : 'file';
}

function nodeName(id: string): string {
  return `drive-${id}`;
}

export class BlockHotplug {
  /** Each plugged device's root port, held from the first QMP command on; shared with NIC hot-plug. */
  private readonly ports: HotplugPorts;
  /** The devices this plugged (ids), so another kind's device is never unplugged here. */
  private readonly plugged = new Set<string>();
  /** Devices whose unplug timed out, still waiting for the guest to let go. */
  private readonly releasing = new Set<string>();

  constructor(
    private readonly qmp: QmpClient,
    /** Root ports reserved on the command line (command-line.ts hotplugPortIds). */
    ports: HotplugPorts | string[],
    private readonly unplugTimeoutMs = DEFAULT_UNPLUG_TIMEOUT_MS,
  ) {
    this.ports = Array.isArray(ports) ? new HotplugPorts(ports) : ports;
  }

  async add(device: BlockDevice): Promise<void> {
    if (!DEVICE_ID.test(device.id)) throw new InvalidArgumentError(`block device id '${device.id}' must be a letter then up to 19 letters, digits, '.', '_' or '-' (it is the virtio-blk serial)`);
    const driver = blockDriver(statSource(device));
    const port = this.ports.take(device.id, `block device ${device.id}`);
    this.plugged.add(device.id);
    const node = nodeName(device.id);
    try {
      await this.qmp.execute('blockdev-add', { driver, 'node-name': node, filename: device.hostPath, 'read-only': device.readOnly });
      try {
        await this.qmp.execute('device_add', { driver: 'virtio-blk-pci', id: device.id, drive: node, bus: port, serial: device.id });
      } catch (err) {
        await this.qmp.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      this.forget(device.id);
      throw err;
    }
  }

  private forget(id: string): void {
    this.plugged.delete(id);
    this.ports.release(id);
  }

  async remove(id: string): Promise<void> {
    if (!this.plugged.has(id)) throw new NotFoundError(`block device ${id} is not plugged`);
    if (this.releasing.has(id)) throw new FailedPreconditionError(`block device ${id}: an unplug is already waiting for the guest to let go`);
    // Registered before device_del: the event may come before the command's return.
    const deleted = this.qmp.waitForEvent('DEVICE_DELETED', (data) => data.path === `/machine/peripheral/${id}`, this.unplugTimeoutMs);
    try {
      await this.qmp.execute('device_del', { id });
    } catch (err) {
      deleted.catch(() => undefined);
      // Already gone (guest root can power off its slot, and QEMU then drops the device): release.
      if (/not found/i.test((err as Error).message)) return this.release(id);
      throw new HypervisorError(`block device ${id}: unplug failed: ${(err as Error).message}`, { cause: err });
    }
    try {
      await deleted;
    } catch (err) {
      // Only a request that QEMU took and the guest has not answered can still complete.
      this.releaseWhenDeleted(id);
      throw new HypervisorError(`block device ${id}: unplug failed: ${(err as Error).message}`, { cause: err });
    }
    await this.release(id);
  }

  /**
   * A guest that ignores (or is too slow for) the unplug request keeps the device,
   * and QEMU keeps the host file open for it. The request stays pending in QEMU:
   * whenever the guest lets go, drop the node then, so the host file is not held
   * until the VM ends. The port stays taken until that moment.
   */
  private releaseWhenDeleted(id: string): void {
    this.releasing.add(id);
    this.qmp
      .waitForEvent('DEVICE_DELETED', (data) => data.path === `/machine/peripheral/${id}`, LATE_UNPLUG_WAIT_MS)
      .then(() => this.release(id))
      .catch(() => undefined) // the VM ended (or a day passed): QEMU's exit closes the file; or the node stays until then
      .finally(() => this.releasing.delete(id));
  }

  private async release(id: string): Promise<void> {
    // The port is free once the device is gone, even if dropping the node fails.
    this.forget(id);
    await this.qmp.execute('blockdev-del', { 'node-name': nodeName(id) });
  }
}

function statSource(device: BlockDevice): fs.Stats {
  try {
    return fs.statSync(device.hostPath);
  } catch (err) {
    throw new FailedPreconditionError(`block device ${device.id}: host source ${device.hostPath} cannot be used (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
