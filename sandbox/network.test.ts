import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { PodNetwork } from './network';
import { withPodNetns } from './testing/pod-netns';

// What `ip -j` printed in a CNI bridge pod's netns on this machine (trimmed).
const ADDR = JSON.stringify([
  { ifname: 'lo', link_type: 'loopback', address: '00:00:00:00:00:00', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  {
    ifname: 'eth0',
    link_type: 'ether',
    address: '5A:1B:2C:3D:4E:5F',
    mtu: 1500,
    addr_info: [
      { family: 'inet', local: '10.88.7.5', prefixlen: 24, scope: 'global' },
      { family: 'inet6', local: 'fe80::581b:2cff:fe3d:4e5f', prefixlen: 64, scope: 'link' },
    ],
  },
]);
const ROUTES4 = JSON.stringify([
  { dst: 'default', gateway: '10.88.7.1', dev: 'eth0' },
  { dst: '10.88.7.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.88.7.5' },
]);
const ROUTES6 = JSON.stringify([{ dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel' }]);

describe('PodNetwork', () => {
  let netns: string;
  let calls: string[];
  beforeEach(() => {
    netns = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kt-netns-')), 'ns');
    fs.writeFileSync(netns, '');
    calls = [];
  });
  afterEach(() => fs.rmSync(path.dirname(netns), { recursive: true, force: true }));

  function fakeRun(failOn?: string) {
    return async (nsPath: string, command: string, args: string[], input?: string) => {
      const line = given(command, args, input);
      calls.push(line);
      expect(nsPath).toBe(netns);
      if (failOn && line.startsWith(failOn)) throw new Error(`refused: ${line}`);
      if (line === 'ip -j addr show') return ADDR;
      if (line === 'ip -j -4 route show') return ROUTES4;
      if (line === 'ip -j -6 route show') return ROUTES6;
      return '';
    };
  }

  /** A command as the fake records it: one entry per process, what it was given on stdin after `<<<`, line by line. */
  function given(command: string, args: string[], input?: string): string {
    return input === undefined ? `${command} ${args.join(' ')}` : `${command} ${args.join(' ')} <<< ${input.trimEnd().split('\n').join(' ; ')}`;
  }

  const PORT_FORWARD_SETUP = [
    'ip addr add 169.254.75.1/30 dev tap0_kata',
    // From the guest into the namespace's own stack: replies only, and never a loopback source; in place before the guest's frames can get there.
    'iptables-restore -w --noflush <<< *raw' +
      ' ; -A PREROUTING -i tap0_kata -s 127.0.0.0/8 -m comment --comment "kata-ts port-forward to the pod VM" -j DROP' +
      ' ; COMMIT ; *filter' +
      ' ; -A INPUT -i tap0_kata -m conntrack ! --ctstate ESTABLISHED,RELATED -m comment --comment "kata-ts port-forward to the pod VM" -j DROP' +
      ' ; COMMIT ; *nat' +
      ' ; -A OUTPUT -d 127.0.0.1/32 -p tcp -m comment --comment "kata-ts port-forward to the pod VM" -j DNAT --to-destination 169.254.75.2' +
      ' ; -A POSTROUTING -s 127.0.0.0/8 -o tap0_kata -m comment --comment "kata-ts port-forward to the pod VM" -j SNAT --to-source 169.254.75.1' +
      ' ; COMMIT',
    'sysctl -q -w net.ipv4.conf.tap0_kata.route_localnet=1',
    'tc -batch - <<< filter add dev tap0_kata parent ffff: prio 1 protocol arp u32 match u32 0xa9fe4b01 0xffffffff at 24 flowid ffff:1' +
      ' ; filter add dev tap0_kata parent ffff: prio 2 protocol ip u32 match ip dst 169.254.75.1/32 flowid ffff:1',
  ];
  /** The tap up, and the mirror both ways between it and the pod interface: one process per tool. */
  const TAP_WIRING = [
    'ip -batch - <<< link set dev tap0_kata mtu 1500 up',
    'tc -batch - <<< qdisc add dev eth0 ingress' +
      ' ; filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev tap0_kata' +
      ' ; qdisc add dev tap0_kata ingress' +
      ' ; filter add dev tap0_kata parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev eth0',
  ];
  const PORT_FORWARD_REMOVAL = [
    'iptables -w -t raw -D PREROUTING -i tap0_kata -s 127.0.0.0/8 -m comment --comment kata-ts port-forward to the pod VM -j DROP',
    'iptables -w -t filter -D INPUT -i tap0_kata -m conntrack ! --ctstate ESTABLISHED,RELATED -m comment --comment kata-ts port-forward to the pod VM -j DROP',
    'iptables -w -t nat -D OUTPUT -d 127.0.0.1/32 -p tcp -m comment --comment kata-ts port-forward to the pod VM -j DNAT --to-destination 169.254.75.2',
    'iptables -w -t nat -D POSTROUTING -s 127.0.0.0/8 -o tap0_kata -m comment --comment kata-ts port-forward to the pod VM -j SNAT --to-source 169.254.75.1',
  ];

  it('reads the pod interface and routes, mirrors it to a tap both ways, and forwards the netns loopback to the guest', async () => {
    const network = await PodNetwork.attach(netns, silentLogger(), fakeRun());
    // The guest NIC also gets the guest end of the port-forward link.
    expect(network.endpoints).toEqual([
      { name: 'eth0', mac: '5a:1b:2c:3d:4e:5f', mtu: 1500, addresses: [{ address: '10.88.7.5', prefix_length: 24 }, { address: '169.254.75.2', prefix_length: 30 }], tapName: 'tap0_kata' },
    ]);
    expect(network.routes).toEqual([{ destination: '', gateway: '10.88.7.1', device: 'eth0', source: '', scope: '' }]);
    expect(calls.slice(3)).toEqual(['ip tuntap add dev tap0_kata mode tap', ...TAP_WIRING, ...PORT_FORWARD_SETUP]);
    calls = [];
    await network.detach();
    expect(calls).toEqual([...PORT_FORWARD_REMOVAL, 'tc qdisc del dev eth0 ingress', 'ip link del tap0_kata']);
  });

  it('reads without making anything, with the guest end of the loopback forward already among the addresses the guest NIC gets', async () => {
    const network = await PodNetwork.read(netns, silentLogger(), fakeRun());
    expect(calls.slice(3)).toEqual([]);
    // A clone's NIC gets its addresses while its taps are still being wired.
    expect(network.endpoints).toEqual([
      { name: 'eth0', mac: '5a:1b:2c:3d:4e:5f', mtu: 1500, addresses: [{ address: '10.88.7.5', prefix_length: 24 }, { address: '169.254.75.2', prefix_length: 30 }], tapName: 'tap0_kata' },
    ]);
    await network.makeTaps();
    expect(calls.slice(3)).toEqual(['ip tuntap add dev tap0_kata mode tap']);
    await network.wire();
    expect(calls.slice(4)).toEqual([...TAP_WIRING, ...PORT_FORWARD_SETUP]);
  });

  /** A pod netns with two interfaces (no routes); `failOn`: the command that fails. */
  function twoInterfaces(failOn?: string) {
    const twoLinks = JSON.stringify([
      { ifname: 'eth0', link_type: 'ether', address: '5a:1b:2c:3d:4e:5f', mtu: 1500, addr_info: [{ family: 'inet', local: '10.88.7.5', prefixlen: 24, scope: 'global' }] },
      { ifname: 'net1', link_type: 'ether', address: '5a:1b:2c:3d:4e:60', mtu: 1500, addr_info: [{ family: 'inet', local: '10.99.0.5', prefixlen: 24, scope: 'global' }] },
    ]);
    return async (_ns: string, command: string, args: string[]) => {
      const line = `${command} ${args.join(' ')}`;
      calls.push(line);
      if (line === failOn) throw new Error('refused');
      return line === 'ip -j addr show' ? twoLinks : line.includes('route show') ? '[]' : '';
    };
  }

  it('removes every tap of its endpoints when making one fails (one whose ip was killed at its bound may exist)', async () => {
    const network = await PodNetwork.read(netns, silentLogger(), twoInterfaces('ip tuntap add dev tap1_kata mode tap'));
    await expect(network.makeTaps()).rejects.toThrow('refused');
    expect(calls.slice(3)).toEqual(['ip tuntap add dev tap0_kata mode tap', 'ip tuntap add dev tap1_kata mode tap', 'ip link del tap0_kata', 'ip link del tap1_kata']);
  });

  it("makes only the taps asked for: none for a NIC plugged ahead (its tap comes from the VMM), that one after all if its VM is not used", async () => {
    const network = await PodNetwork.read(netns, silentLogger(), twoInterfaces());
    await network.makeTaps({ from: 1 });
    expect(calls.slice(3)).toEqual(['ip tuntap add dev tap1_kata mode tap']);
    await network.makeTaps({ to: 1 });
    expect(calls.slice(4)).toEqual(['ip tuntap add dev tap0_kata mode tap']);
  });

  it('makes the taps anew, touching nothing else of the namespace (a clone whose NICs could not be plugged)', async () => {
    const network = await PodNetwork.read(netns, silentLogger(), fakeRun());
    await network.remakeTaps();
    expect(calls.slice(3)).toEqual(['ip link del tap0_kata', 'ip tuntap add dev tap0_kata mode tap']);
  });

  it('undoes the port-forward rules and the taps when a port-forward step fails', async () => {
    for (const failOn of ['iptables-restore', 'tc -batch - <<< filter add dev tap0_kata parent ffff: prio 1']) {
      calls = [];
      await expect(PodNetwork.attach(netns, silentLogger(), fakeRun(failOn))).rejects.toThrow('refused');
      const failed = PORT_FORWARD_SETUP.findIndex((c) => c.startsWith(failOn));
      expect(calls.slice(3)).toEqual(['ip tuntap add dev tap0_kata mode tap', ...TAP_WIRING, ...PORT_FORWARD_SETUP.slice(0, failed + 1), ...PORT_FORWARD_REMOVAL, 'tc qdisc del dev eth0 ingress', 'ip link del tap0_kata']);
    }
  });

  it('undoes the mirror and the taps when the tc batch fails', async () => {
    await expect(PodNetwork.attach(netns, silentLogger(), fakeRun('tc -batch - <<< qdisc'))).rejects.toThrow('refused');
    expect(calls.slice(3)).toEqual(['ip tuntap add dev tap0_kata mode tap', ...TAP_WIRING, 'tc qdisc del dev eth0 ingress', 'ip link del tap0_kata']);
  });

  it('forwards nothing when no pod interface has an IPv4 address', async () => {
    const v6only = JSON.stringify([{ ifname: 'eth0', link_type: 'ether', address: '5a:1b:2c:3d:4e:5f', mtu: 1500, addr_info: [{ family: 'inet6', local: 'fd00::5', prefixlen: 64, scope: 'global' }] }]);
    const run = async (_ns: string, command: string, args: string[]) => {
      const line = `${command} ${args.join(' ')}`;
      calls.push(line);
      return line === 'ip -j addr show' ? v6only : line.includes('route show') ? '[]' : '';
    };
    const network = await PodNetwork.attach(netns, silentLogger(), run);
    expect(network.endpoints[0].addresses).toEqual([{ address: 'fd00::5', prefix_length: 64 }]);
    expect(calls.filter((c) => c.includes('169.254.75') || c.startsWith('iptables'))).toEqual([]);
  });

  it('after a crash, finds our taps by name and undoes the mirroring', async () => {
    const links = JSON.stringify([
      { ifname: 'lo', link_type: 'loopback' },
      { ifname: 'eth0', link_type: 'ether' },
      { ifname: 'tap0_kata', link_type: 'ether' },
    ]);
    const run = async (_ns: string, command: string, args: string[]) => {
      calls.push(`${command} ${args.join(' ')}`);
      return command === 'ip' && args[1] === 'link' ? links : '';
    };
    await PodNetwork.cleanup(netns, silentLogger(), run);
    expect(calls).toEqual(['ip -j link show', ...PORT_FORWARD_REMOVAL, 'tc qdisc del dev eth0 ingress', 'ip link del tap0_kata']);
    calls = [];
    await PodNetwork.cleanup(netns, silentLogger(), async (_ns, command, args) => (calls.push(`${command} ${args.join(' ')}`), JSON.stringify([{ ifname: 'eth0', link_type: 'ether' }])));
    expect(calls).toEqual(['ip -j link show']); // not ours: nothing touched
  });

  it('says which netns is missing', async () => {
    await expect(PodNetwork.attach('/nonexistent/netns', silentLogger(), fakeRun())).rejects.toThrow('pod network namespace /nonexistent/netns does not exist');
  });
  const asRoot = process.getuid?.() === 0 ? it : it.skip;

  asRoot('wires a real pod netns with the real tools, and undoes all of it', async () => {
    await withPodNetns(async (netnsPath, inNetns) => {
      const network = await PodNetwork.attach(netnsPath, silentLogger());
      const state = () => ({
        tapUp: inNetns('ip -o link show tap0_kata 2>/dev/null || true').includes('UP'),
        tapAddress: inNetns('ip -o -4 addr show dev tap0_kata 2>/dev/null || true').includes('169.254.75.1/30'),
        routeLocalnet: inNetns('cat /proc/sys/net/ipv4/conf/tap0_kata/route_localnet 2>/dev/null || echo gone').trim(),
        eth0Mirror: inNetns('tc filter show dev eth0 ingress').includes('tap0_kata'),
        // Each u32 filter prints several lines: its prefs, once each.
        tapFilters: [...new Set(inNetns('tc filter show dev tap0_kata ingress 2>/dev/null || true').match(/ pref \d+ /g) ?? [])].map((p) => p.trim().split(' ')[1]),
        rules: ['nat', 'raw', 'filter'].map((t) => inNetns(`iptables -w -t ${t} -S`).split('\n').filter((l) => l.includes('"kata-ts port-forward to the pod VM"')).length),
      });
      // The ARP and IPv4 hand-offs (prefs 1, 2) ahead of the mirror; 2 nat rules, 1 raw, 1 filter.
      expect(state()).toEqual({ tapUp: true, tapAddress: true, routeLocalnet: '1', eth0Mirror: true, tapFilters: ['1', '2', '49152'], rules: [2, 1, 1] });
      await network.detach();
      expect(state()).toEqual({ tapUp: false, tapAddress: false, routeLocalnet: 'gone', eth0Mirror: false, tapFilters: [], rules: [0, 0, 0] });
    });
  });
});
