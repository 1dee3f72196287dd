import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GuestNetwork } from './network';

const made: string[] = [];
afterAll(() => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

function fakeSysfs(links: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-net-'));
  made.push(dir);
  for (const [name, mac] of Object.entries(links)) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'address'), `${mac}\n`);
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
      'link set dev enp0s3 name eth0',
      'link set dev eth0 mtu 1450',
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
