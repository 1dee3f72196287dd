// The QMP conversation of NIC hot-plug (a clone's pod NIC), against a fake QMP server.
import { InvalidArgumentError, ResourceExhaustedError } from '../../lib/errors';
import { FakeQmp, QmpAnswer, QmpCommand } from '../testing/fake-qmp';
import { BlockHotplug } from './block-hotplug';
import { HotplugPorts } from './hotplug-ports';
import { plugNic, unplugNic } from './nic-hotplug';
import { QmpClient } from './qmp';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

describe('plugNic over QMP', () => {
  let fake: FakeQmp;
  let qmp: QmpClient;

  async function connect(answer: (command: QmpCommand) => QmpAnswer = () => ({})): Promise<void> {
    fake = await FakeQmp.start(answer);
    qmp = await QmpClient.connect(fake.socketPath, 2000);
  }

  afterEach(async () => {
    qmp?.close();
    await fake?.close();
  });

  it('adds a tap netdev and a virtio-net device with the pod MAC on a free root port', async () => {
    await connect();
    await plugNic(qmp, new HotplugPorts(['rp0', 'rp1']), { kind: 'network', id: 'nic0', tapName: 'tap0_kata', macAddress: '0A:58:0A:58:00:05' });
    expect(fake.commands).toEqual([
      { execute: 'netdev_add', arguments: { type: 'tap', id: 'netdev-nic0', ifname: 'tap0_kata', script: 'no', downscript: 'no', vhost: false } },
      { execute: 'device_add', arguments: { driver: 'virtio-net-pci', id: 'nic0', netdev: 'netdev-nic0', bus: 'rp0', mac: '0a:58:0a:58:00:05' } },
    ]);
  });

  it('shares the root ports with block hot-plug', async () => {
    await connect();
    const ports = new HotplugPorts(['rp0', 'rp1']);
    await plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0', macAddress: '0a:58:0a:58:00:05' });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nic-hotplug-'));
    fs.writeFileSync(path.join(dir, 'disk'), Buffer.alloc(4096));
    const blocks = new BlockHotplug(qmp, ports);
    await blocks.add({ kind: 'block', id: 'blk0', hostPath: path.join(dir, 'disk'), readOnly: true });
    expect(fake.commands.at(-1)).toMatchObject({ execute: 'device_add', arguments: { id: 'blk0', bus: 'rp1' } });
    await expect(blocks.add({ kind: 'block', id: 'blk1', hostPath: path.join(dir, 'disk'), readOnly: true })).rejects.toBeInstanceOf(ResourceExhaustedError);
    // A NIC is not a block device this module may unplug.
    await expect(blocks.remove('nic0')).rejects.toThrow('block device nic0 is not plugged');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('drops the netdev and frees the port when device_add fails', async () => {
    await connect((c) => (c.execute === 'device_add' ? { error: { class: 'GenericError', desc: 'no such bus' } } : {}));
    const ports = new HotplugPorts(['rp0']);
    await expect(plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0', macAddress: '0a:58:0a:58:00:05' })).rejects.toThrow('no such bus');
    expect(fake.commands.at(-1)).toEqual({ execute: 'netdev_del', arguments: { id: 'netdev-nic0' } });
    expect(ports.has('nic0')).toBe(false);
  });

  it('refuses tap names and MACs that are not, before any QMP command', async () => {
    await connect();
    const ports = new HotplugPorts(['rp0']);
    await expect(plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0,script=/bin/sh', macAddress: '0a:58:0a:58:00:05' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0', macAddress: 'nope' })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(fake.commands).toEqual([]);
  });

  it('unplugs a NIC once the guest let it go (DEVICE_DELETED), then drops its netdev and frees its port', async () => {
    await connect((c) => (c.execute === 'device_del' ? { eventsAfter: [{ event: 'DEVICE_DELETED', data: { device: 'nic0', path: '/machine/peripheral/nic0' } }] } : {}));
    const ports = new HotplugPorts(['rp0']);
    await plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0_kata', macAddress: '02:00:00:00:00:01' });
    expect(ports.free()).toBe(0);
    await unplugNic(qmp, ports, 'nic0', 2000);
    expect(fake.commands.slice(2)).toEqual([
      { execute: 'device_del', arguments: { id: 'nic0' } },
      { execute: 'netdev_del', arguments: { id: 'netdev-nic0' } },
    ]);
    expect(ports.free()).toBe(1);
  });

  it('keeps the port of a NIC the guest does not let go in time, and says so', async () => {
    await connect();
    const ports = new HotplugPorts(['rp0']);
    await plugNic(qmp, ports, { kind: 'network', id: 'nic0', tapName: 'tap0_kata', macAddress: '02:00:00:00:00:01' });
    await expect(unplugNic(qmp, ports, 'nic0', 200)).rejects.toThrow(/network device nic0: unplug failed/);
    expect(fake.commands.map((c) => c.execute)).toEqual(['netdev_add', 'device_add', 'device_del']);
    expect(ports.free()).toBe(0);
  });
});
