// Pod NICs hot-plugged into a running QEMU over QMP: a VM cloned from a template has
// no NIC on its command line (it must match the template's), so it gets the pod's tap
// once it runs. netdev_add opens the tap by name in QEMU's own network namespace, into
// which the driver moved it from the pod's (and moves it back after; vmm-netns.ts).
// NICs stay until the VM ends (a pod's network never changes). The one exception is a
// NIC plugged ahead into a spare's VM that its pod had no use for: it is unplugged when
// a block device needs its root port (unplugNic).
import { HypervisorError, InvalidArgumentError } from '../../lib/errors';
import { INTERFACE_NAME, MAC_ADDRESS } from '../../lib/net-names';
import { VmDevice } from '../hypervisor';
import { HotplugPorts } from './hotplug-ports';
import { QmpClient } from './qmp';

export type NetworkDevice = Extract<VmDevice, { kind: 'network' }>;

const DEVICE_ID = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

export async function plugNic(qmp: QmpClient, ports: HotplugPorts, device: NetworkDevice): Promise<void> {
  if (!DEVICE_ID.test(device.id)) throw new InvalidArgumentError(`network device id '${device.id}' must be a letter then up to 30 letters, digits, '.', '_' or '-'`);
  if (!INTERFACE_NAME.test(device.tapName)) throw new InvalidArgumentError(`network device ${device.id}: '${device.tapName}' is not a tap name`);
  const mac = device.macAddress?.toLowerCase();
  if (mac !== undefined && !MAC_ADDRESS.test(mac)) throw new InvalidArgumentError(`network device ${device.id}: '${device.macAddress}' is not a MAC address`);
  const port = ports.take(device.id, `network device ${device.id}`);
  const netdev = `netdev-${device.id}`;
  try {
    // As on the cold-boot command line: vhost-net off (no /dev/vhost-net use; nothing gained under TCG).
    await qmp.execute('netdev_add', { type: 'tap', id: netdev, ifname: device.tapName, script: 'no', downscript: 'no', vhost: false });
    try {
      await qmp.execute('device_add', { driver: 'virtio-net-pci', id: device.id, netdev, bus: port, ...(mac ? { mac } : {}) });
    } catch (err) {
      await qmp.execute('netdev_del', { id: netdev }).catch(() => undefined);
      throw err;
    }
  } catch (err) {
    ports.release(device.id);
    throw err;
  }
}

/**
 * Unplugs the NIC `id` (device_del, then its netdev once the guest let it go) and frees
 * its port. Fails, the port still taken, when the guest does not let go in time.
 */
export async function unplugNic(qmp: QmpClient, ports: HotplugPorts, id: string, timeoutMs: number): Promise<void> {
  // Registered before device_del: the event may come before the command's return.
  const deleted = qmp.waitForEvent('DEVICE_DELETED', (data) => data.path === `/machine/peripheral/${id}`, timeoutMs);
  try {
    await qmp.execute('device_del', { id });
    await deleted;
  } catch (err) {
    deleted.catch(() => undefined);
    // Already gone (guest root can power off its slot, and QEMU then drops the device).
    if (!/not found/i.test((err as Error).message)) throw new HypervisorError(`network device ${id}: unplug failed: ${(err as Error).message}`, { cause: err });
  }
  ports.release(id);
  // A netdev left without its device holds only its tap (which ends with the VM): no reason to fail.
  await qmp.execute('netdev_del', { id: `netdev-${id}` }).catch(() => undefined);
}
