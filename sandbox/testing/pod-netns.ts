// A pod network namespace as CNI's bridge plugin leaves it, for tests that wire one
// with the real tools (root only): a veth whose pod end is eth0, an address, a default route.
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';

/** Runs `body` with the netns's path and a shell in it; the netns (and its veth) is removed after. */
export async function withPodNetns(body: (netnsPath: string, inNetns: (script: string) => string) => Promise<void>): Promise<void> {
  const ns = `kt-test-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const netnsPath = `/var/run/netns/${ns}`;
  const inNetns = (script: string) => execFileSync('nsenter', [`--net=${netnsPath}`, '--', 'sh', '-c', script], { encoding: 'utf8' });
  try {
    execFileSync('ip', ['link', 'add', `kth${ns.slice(-8)}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    inNetns('ip addr add 10.77.0.5/24 dev eth0 && ip link set eth0 up && ip route add default via 10.77.0.1');
    await body(netnsPath, inNetns);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
