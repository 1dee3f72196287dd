// The QMP conversation of block hot-plug, against a fake QMP server (testing/fake-qmp.ts).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError, HypervisorError, InvalidArgumentError, ResourceExhaustedError } from '../../lib/errors';
import { FakeQmp, QmpAnswer, QmpCommand } from '../testing/fake-qmp';
import { BlockHotplug, blockDriver } from './block-hotplug';
import { QmpClient } from './qmp';

const deleted = (id: string) => ({ event: 'DEVICE_DELETED', data: { device: id, path: `/machine/peripheral/${id}` } });

describe('BlockHotplug over QMP', () => {
  let fake: FakeQmp;
  let qmp: QmpClient;
  let image: string;

  async function connect(answer: (command: QmpCommand) => QmpAnswer): Promise<void> {
    fake = await FakeQmp.start(answer);
    qmp = await QmpClient.connect(fake.socketPath, 2000);
  }

  beforeEach(() => {
    image = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hotplug-')), 'disk.img');
    fs.writeFileSync(image, Buffer.alloc(4096));
  });

  afterEach(async () => {
    qmp?.close();
    await fake?.close();
    fs.rmSync(path.dirname(image), { recursive: true, force: true });
  });

  it('adds a node and a virtio-blk device on a free root port, and removes them after DEVICE_DELETED', async () => {
    // As QEMU: device_del returns at once, the event follows when the guest let go.
    await connect((c) => (c.execute === 'device_del' ? { eventsAfter: [deleted(String(c.arguments?.id))] } : {}));
    const hotplug = new BlockHotplug(qmp, ['rp0', 'rp1']);
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: true });
    await hotplug.add({ kind: 'block', id: 'blk1', hostPath: image, readOnly: false });
    await hotplug.remove('blk0');
    // rp0 is free again; the next device takes it.
    await hotplug.add({ kind: 'block', id: 'blk2', hostPath: image, readOnly: false });
    expect(fake.commands).toEqual([
      { execute: 'blockdev-add', arguments: { driver: 'file', 'node-name': 'drive-blk0', filename: image, 'read-only': true } },
      { execute: 'device_add', arguments: { driver: 'virtio-blk-pci', id: 'blk0', drive: 'drive-blk0', bus: 'rp0', serial: 'blk0' } },
      { execute: 'blockdev-add', arguments: { driver: 'file', 'node-name': 'drive-blk1', filename: image, 'read-only': false } },
      { execute: 'device_add', arguments: { driver: 'virtio-blk-pci', id: 'blk1', drive: 'drive-blk1', bus: 'rp1', serial: 'blk1' } },
      { execute: 'device_del', arguments: { id: 'blk0' } },
      { execute: 'blockdev-del', arguments: { 'node-name': 'drive-blk0' } },
      { execute: 'blockdev-add', arguments: { driver: 'file', 'node-name': 'drive-blk2', filename: image, 'read-only': false } },
      { execute: 'device_add', arguments: { driver: 'virtio-blk-pci', id: 'blk2', drive: 'drive-blk2', bus: 'rp0', serial: 'blk2' } },
    ]);
  });

  it('takes a DEVICE_DELETED that comes before the return of device_del, and ignores other devices\' events', async () => {
    await connect((c) => (c.execute === 'device_del' ? { eventsBefore: [deleted('other'), deleted('blk0')] } : {}));
    const hotplug = new BlockHotplug(qmp, ['rp0']);
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false });
    await hotplug.remove('blk0');
    expect(fake.commands.map((c) => c.execute)).toEqual(['blockdev-add', 'device_add', 'device_del', 'blockdev-del']);
  });

  it('keeps the block node until the guest let go: no DEVICE_DELETED, no blockdev-del, the port stays taken; a late DEVICE_DELETED releases both', async () => {
    await connect(() => ({}));
    const hotplug = new BlockHotplug(qmp, ['rp0'], 200);
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false });
    const other = fake.commands.length;
    fake.emit(deleted('blk9'));
    const err = await hotplug.remove('blk0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toBe('block device blk0: unplug failed: QMP event DEVICE_DELETED did not arrive within 200 ms');
    expect(fake.commands.slice(other).map((c) => c.execute)).toEqual(['device_del']);
    await expect(hotplug.add({ kind: 'block', id: 'blk1', hostPath: image, readOnly: false })).rejects.toBeInstanceOf(ResourceExhaustedError);
    await expect(hotplug.remove('blk0')).rejects.toThrow('block device blk0: an unplug is already waiting for the guest to let go');
    // The guest lets go late: the node is dropped then, and the port is free again.
    fake.emit(deleted('blk0'));
    for (let i = 0; i < 50 && fake.commands.at(-1)?.execute !== 'blockdev-del'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake.commands.slice(other).map((c) => [c.execute, c.arguments?.['node-name'] ?? c.arguments?.id])).toEqual([
      ['device_del', 'blk0'],
      ['blockdev-del', 'drive-blk0'],
    ]);
    await hotplug.add({ kind: 'block', id: 'blk1', hostPath: image, readOnly: false });
  });

  it('releases node and port when the device is already gone (guest root powered its slot off)', async () => {
    await connect((c) => (c.execute === 'device_del' ? { error: { class: 'DeviceNotFound', desc: "Device 'blk0' not found" } } : {}));
    const hotplug = new BlockHotplug(qmp, ['rp0'], 200);
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false });
    await hotplug.remove('blk0');
    expect(fake.commands.map((c) => c.execute)).toEqual(['blockdev-add', 'device_add', 'device_del', 'blockdev-del']);
    await hotplug.add({ kind: 'block', id: 'blk1', hostPath: image, readOnly: false }); // the port is free
  });

  it('drops the block node again when device_add fails, and frees the port', async () => {
    let failAdd = true;
    await connect((c) => (c.execute === 'device_add' && failAdd ? { error: { class: 'GenericError', desc: "Bus 'rp0' does not support hotplugging" } } : {}));
    const hotplug = new BlockHotplug(qmp, ['rp0']);
    await expect(hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false })).rejects.toThrow("QMP device_add failed: GenericError: Bus 'rp0' does not support hotplugging");
    expect(fake.commands.map((c) => [c.execute, c.arguments?.['node-name'] ?? c.arguments?.id])).toEqual([
      ['blockdev-add', 'drive-blk0'],
      ['device_add', 'blk0'],
      ['blockdev-del', 'drive-blk0'],
    ]);
    failAdd = false;
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false });
    expect(fake.commands.at(-1)?.arguments).toMatchObject({ bus: 'rp0' });
  });

  it('refuses before any QMP command: a full VM, a bad id, a missing source', async () => {
    await connect(() => ({}));
    const hotplug = new BlockHotplug(qmp, ['rp0']);
    await hotplug.add({ kind: 'block', id: 'blk0', hostPath: image, readOnly: false });
    const sent = fake.commands.length;
    await expect(hotplug.add({ kind: 'block', id: 'blk1', hostPath: image, readOnly: false })).rejects.toThrow(new ResourceExhaustedError('block device blk1: all 1 hot-plug ports of the VM are in use'));
    await expect(hotplug.add({ kind: 'block', id: 'a-serial-longer-than-20', hostPath: image, readOnly: false })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(new BlockHotplug(qmp, ['rp1']).add({ kind: 'block', id: 'blk2', hostPath: '/nonexistent/disk', readOnly: false })).rejects.toThrow(
      new FailedPreconditionError('block device blk2: host source /nonexistent/disk cannot be used (ENOENT)'),
    );
    expect(fake.commands.length).toBe(sent);
  });

  it('uses host_device for block devices and file for image files', () => {
    expect(blockDriver({ isBlockDevice: () => true })).toBe('host_device');
    expect(blockDriver(fs.statSync(image))).toBe('file');
  });
});
