import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GuestNetwork } from './network';

const made: string[] = [];
afterAll(() => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** Links by name: a MAC, or the files a link has in sysfs (address, flags, mtu). */
function fakeSysfs(links: Record<string, string | Record<string, string>>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-net-'));
  made.push(dir);
  for (const [name, link] of Object.entries(links)) {
    fs.mkdirSync(path.join(dir, name));
    for (const [file, value] of Object.entries(typeof link === 'string' ? { address: link } : link)) fs.writeFileSync(path.join(dir, name, file), `${value}\n`);
  }
  return dir;
}

describe('GuestNetwork', () => {
  let calls: string[];
  const ip = async (args: string[]) => void calls.push(args.join(' '));
  beforeEach(() => (calls = []));

  it('finds the NIC by MAC, renames it and applies MTU and addresses', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({ lo: '00:00:00:00:00:00', enp0s3: '0a:58:0a:58:00:05' }));
    await net.updateInterface({ name: 'eth0', hw_addr: '0A:58:0A:58:00:05', mtu: 1450, addresses: [{ address: '10.88.0.5', prefix_length: 24 }, { address: 'fd00::5', prefix_length: 64 }] });
    expect(calls).toEqual([
      'link set dev enp0s3 down',
      'link set dev enp0s3 mtu 1450 name eth0',
      'addr flush dev eth0',
      'addr add 10.88.0.5/24 dev eth0',
      '-6 addr add fd00::5/64 dev eth0',
      'link set dev eth0 up',
    ]);
  });

  it('names the MACs it has when none matches', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({ eth0: '52:54:00:12:34:56' }), 100);
    await expect(net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', mtu: 0, addresses: [] })).rejects.toThrow('no guest network interface has MAC 0a:58:0a:58:00:05 after 100 ms (the VM has: eth0 52:54:00:12:34:56)');
    expect(calls).toEqual([]);
  });

  it('waits a bounded time for a hot-plugged NIC to appear', async () => {
    const sysfs = fakeSysfs({ lo: '00:00:00:00:00:00' });
    const net = new GuestNetwork(ip, sysfs, 5000);
    setTimeout(() => {
      fs.mkdirSync(path.join(sysfs, 'eth1'));
      fs.writeFileSync(path.join(sysfs, 'eth1', 'address'), '0a:58:0a:58:00:07\n');
    }, 200);
    await net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:07', mtu: 0, addresses: [] });
    expect(calls[1]).toBe('link set dev eth1 name eth0');
  });

  it('gives a NIC plugged ahead (plugged_hw_addr) the pod MAC, in one command with what else differs, then configures it', async () => {
    // Down (flags without IFF_UP), as a NIC plugged ahead is: not set down again.
    const net = new GuestNetwork(ip, fakeSysfs({ lo: '00:00:00:00:00:00', eth0: { address: '02:aa:bb:cc:dd:ee', flags: '0x1002', mtu: '1500' } }));
    await net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', plugged_hw_addr: '02:AA:BB:CC:DD:EE', mtu: 1450, addresses: [{ address: '10.88.0.5', prefix_length: 24 }] });
    expect(calls).toEqual(['link set dev eth0 address 0a:58:0a:58:00:05 mtu 1450', 'addr flush dev eth0', 'addr add 10.88.0.5/24 dev eth0', 'link set dev eth0 up']);
  });

  it('sets down a link that is up, and sets nothing its link has already', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({ eth0: { address: '0a:58:0a:58:00:05', flags: '0x1003', mtu: '1450' } }));
    await net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', mtu: 1450, addresses: [] });
    expect(calls).toEqual(['link set dev eth0 down', 'addr flush dev eth0', 'link set dev eth0 up']);
  });

  it('on a retry, takes the NIC that already has the pod MAC over another that still has the plugged one', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({ eth1: '02:aa:bb:cc:dd:ee', eth0: '0a:58:0a:58:00:05' }));
    await net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', plugged_hw_addr: '02:aa:bb:cc:dd:ee', mtu: 0, addresses: [] });
    expect(calls).toEqual(['link set dev eth0 down', 'addr flush dev eth0', 'link set dev eth0 up']);
  });

  it('names both MACs when no NIC has either, and refuses a plugged_hw_addr that is not a MAC', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({ eth0: '52:54:00:12:34:56' }), 100);
    await expect(net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', plugged_hw_addr: '02:aa:bb:cc:dd:ee', mtu: 0, addresses: [] })).rejects.toThrow(
      'no guest network interface has MAC 0a:58:0a:58:00:05 or 02:aa:bb:cc:dd:ee after 100 ms (the VM has: eth0 52:54:00:12:34:56)',
    );
    await expect(net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:05', plugged_hw_addr: 'eth0 address x', mtu: 0, addresses: [] })).rejects.toThrow("plugged_hw_addr 'eth0 address x' is not a MAC address");
    expect(calls).toEqual([]);
  });

  it('runs calls one after another in the order they came, also after one that failed', async () => {
    const sysfs = fakeSysfs({ lo: '00:00:00:00:00:00' });
    const net = new GuestNetwork(ip, sysfs, 5000);
    // Sent together, as the shim does: the routes wait for the NIC the first call waits for.
    const iface = net.updateInterface({ name: 'eth0', hw_addr: '0a:58:0a:58:00:07', mtu: 0, addresses: [] });
    const refused = net.updateInterface({ name: 'eth0', hw_addr: 'nope', mtu: 0, addresses: [] });
    const routes = net.updateRoutes([{ destination: '', gateway: '10.88.0.1', device: 'eth0', source: '', scope: '' }]);
    await new Promise((r) => setTimeout(r, 150));
    expect(calls).toEqual([]);
    fs.mkdirSync(path.join(sysfs, 'eth1'));
    fs.writeFileSync(path.join(sysfs, 'eth1', 'address'), '0a:58:0a:58:00:07\n');
    await iface;
    await expect(refused).rejects.toThrow('is not a MAC address');
    await routes;
    expect(calls.at(-1)).toBe('route replace default via 10.88.0.1 dev eth0');
    expect(calls.at(-2)).toBe('link set dev eth0 up');
  });

  it('refuses names and MACs that are not', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({}));
    await expect(net.updateInterface({ name: 'eth0;reboot', hw_addr: '0a:58:0a:58:00:05', mtu: 0, addresses: [] })).rejects.toThrow("'eth0;reboot' is not a valid interface name");
    await expect(net.updateInterface({ name: 'eth0', hw_addr: 'nope', mtu: 0, addresses: [] })).rejects.toThrow("'nope' is not a MAC address");
  });

  it('adds on-link routes before the routes that need a gateway', async () => {
    const net = new GuestNetwork(ip, fakeSysfs({}));
    await net.updateRoutes([
      { destination: '', gateway: '10.88.0.1', device: 'eth0', source: '', scope: '' },
      { destination: '10.88.0.0/24', gateway: '', device: 'eth0', source: '10.88.0.5', scope: 'link' },
    ]);
    expect(calls).toEqual(['route replace 10.88.0.0/24 dev eth0 src 10.88.0.5 scope link', 'route replace default via 10.88.0.1 dev eth0']);
  });
});
