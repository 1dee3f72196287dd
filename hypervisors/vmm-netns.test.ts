import { ChildProcess, execFileSync, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import { readTrimmed } from '../lib/recorded-process';
import { waitFor } from '../tests/harness/wait';
import { vmmCommand } from './vmm-launch';
import { VmmNetns } from './vmm-netns';

/** unshare, nsenter and ip need root. */
const asRoot = process.getuid?.() === 0 ? it : it.skip;

/** `sleep` launched as a clone's VMM is (vmmCommand with ownNetns), once it runs. */
async function launchVmm(ownNetns: boolean): Promise<ChildProcess> {
  const [command, args] = vmmCommand('sleep', ['60'], { ownNetns });
  const child = spawn(command, args, { stdio: 'ignore' });
  await waitFor('the stand-in VMM to exec sleep', () => (readTrimmed(`/proc/${child.pid}/comm`) === 'sleep' ? true : undefined), 5000, 50);
  return child;
}

function ip(args: string[], netns?: string): string {
  return execFileSync(netns ? 'nsenter' : 'ip', netns ? [`--net=${netns}`, '--', 'ip', ...args] : args, { encoding: 'utf8' });
}

describe('VmmNetns', () => {
  const children: ChildProcess[] = [];
  const namespaces: string[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    for (const n of namespaces.splice(0)) execFileSync('ip', ['netns', 'del', n]);
  });

  asRoot("moves the pod's tap into the VMM's own namespace and back, through the fd it opened", async () => {
    const vmm = await launchVmm(true);
    children.push(vmm);
    const netns = VmmNetns.open(vmm.pid!, () => vmm.exitCode === null && vmm.signalCode === null);
    const vmmLinks = () => (JSON.parse(ip(['-j', 'link', 'show'], `/proc/${vmm.pid}/ns/net`)) as Array<{ ifname: string }>).map((l) => l.ifname);
    // What the VMM's namespace holds: only its loopback, so nothing of the host or the pod.
    expect(vmmLinks()).toEqual(['lo']);
    const pod = `kt-test-${randomBytes(4).toString('hex')}`;
    ip(['netns', 'add', pod]);
    namespaces.push(pod);
    const podNetns = `/var/run/netns/${pod}`;
    ip(['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap'], podNetns); // as PodNetwork.makeTaps does
    await netns.moveIn('tap0_kata', podNetns);
    expect(vmmLinks()).toEqual(['lo', 'tap0_kata']);
    expect(ip(['-j', 'link', 'show'], podNetns)).not.toContain('tap0_kata');
    await netns.moveOut('tap0_kata', podNetns);
    expect(vmmLinks()).toEqual(['lo']);
    expect(ip(['-j', 'link', 'show'], podNetns)).toContain('"tap0_kata"');
    netns.close();
    await expect(netns.moveIn('tap0_kata', podNetns)).rejects.toThrow('closed');
  }, 20_000);

  asRoot("makes a tap in the VMM's namespace and moves it into the pod's, renamed if need be, never over one there", async () => {
    const vmm = await launchVmm(true);
    children.push(vmm);
    const netns = VmmNetns.open(vmm.pid!, () => vmm.exitCode === null && vmm.signalCode === null);
    const vmmNs = `/proc/${vmm.pid}/ns/net`;
    const links = (where: string) => (JSON.parse(ip(['-j', 'link', 'show'], where)) as Array<{ ifname: string; ifindex: number }>);
    await netns.makeTap('tap0_kata');
    await netns.makeTap('spare1_kata');
    expect(links(vmmNs).map((l) => l.ifname)).toEqual(['lo', 'tap0_kata', 'spare1_kata']);
    const ahead = links(vmmNs).find((l) => l.ifname === 'tap0_kata')!.ifindex;
    const pod = `kt-test-${randomBytes(4).toString('hex')}`;
    ip(['netns', 'add', pod]);
    namespaces.push(pod);
    const podNetns = `/var/run/netns/${pod}`;
    await netns.moveOut('tap0_kata', podNetns);
    // The pod's namespace now holds the VMM's tap (an ifindex moves with its device).
    expect(links(podNetns).filter((l) => l.ifname === 'tap0_kata').map((l) => l.ifindex)).toEqual([ahead]);
    await netns.moveOut('spare1_kata', podNetns, 'tap1_kata');
    expect(links(podNetns).map((l) => l.ifname).sort()).toEqual(['lo', 'tap0_kata', 'tap1_kata']);
    expect(links(vmmNs).map((l) => l.ifname)).toEqual(['lo']);
    // A tap of the pod's of that name stays the pod's: the move fails, saying where.
    ip(['tuntap', 'add', 'dev', 'tap2_kata', 'mode', 'tap'], podNetns);
    await netns.makeTap('tap2_kata');
    await expect(netns.moveOut('tap2_kata', podNetns)).rejects.toThrow(/'ip link set dev tap2_kata netns \/var\/run\/netns\/kt-test-\w+' in the VMM's network namespace failed/);
    expect(links(vmmNs).map((l) => l.ifname)).toEqual(['lo', 'tap2_kata']);
    netns.close();
    await expect(netns.makeTap('tap3_kata')).rejects.toThrow('closed');
  }, 20_000);

  asRoot("moves through its own fd 3: closing the shim's fd while a move runs changes nothing", async () => {
    const vmm = await launchVmm(true);
    children.push(vmm);
    const netns = VmmNetns.open(vmm.pid!, () => true);
    const pod = `kt-test-${randomBytes(4).toString('hex')}`;
    ip(['netns', 'add', pod]);
    namespaces.push(pod);
    const podNetns = `/var/run/netns/${pod}`;
    ip(['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap'], podNetns);
    const moving = netns.moveIn('tap0_kata', podNetns);
    netns.close(); // as when QEMU exits mid-move: the command already holds its own reference
    await moving;
    expect(ip(['-j', 'link', 'show'], `/proc/${vmm.pid}/ns/net`)).toContain('"tap0_kata"');
  }, 20_000);

  asRoot("refuses a VMM that shares the shim's namespace: its taps would be the host's", async () => {
    const vmm = await launchVmm(false);
    children.push(vmm);
    expect(() => VmmNetns.open(vmm.pid!, () => true)).toThrow("runs in the shim's network namespace");
  }, 20_000);

  it('refuses a VMM already reported exited: its pid may be another process by now', () => {
    expect(() => VmmNetns.open(process.pid, () => false)).toThrow('exited before');
  });

  asRoot('refuses an interface name or a namespace path that ip would read as something else', async () => {
    const vmm = await launchVmm(true);
    children.push(vmm);
    const moves: string[][] = [];
    const fds: number[] = [];
    const netns = VmmNetns.open(vmm.pid!, () => true, async (where, args, fd) => void (moves.push([where, ...args]), fds.push(fd)));
    await expect(netns.moveIn('tap0_kata; reboot', '/var/run/netns/pod')).rejects.toThrow('not an interface name');
    await expect(netns.moveOut('tap0_kata', 'pod')).rejects.toThrow('not an absolute path');
    await expect(netns.makeTap('tap0_kata mode tun')).rejects.toThrow('not an interface name');
    await expect(netns.moveOut('tap0_kata', '/var/run/netns/pod', 'eth0 netns 1')).rejects.toThrow('not an interface name');
    await netns.moveIn('tap0_kata', '/var/run/netns/pod');
    await netns.moveOut('tap0_kata', '/var/run/netns/pod');
    expect(moves).toEqual([
      ['/var/run/netns/pod', 'link', 'set', 'dev', 'tap0_kata', 'netns', '/proc/self/fd/3'],
      ['/proc/self/fd/3', 'link', 'set', 'dev', 'tap0_kata', 'netns', '/var/run/netns/pod'],
    ]);
    // Both through the one fd on the VMM's namespace, which ip gets as its fd 3.
    expect(fds[0]).toBe(fds[1]);
    expect(fs.readlinkSync(`/proc/self/fd/${fds[0]}`)).toBe(fs.readlinkSync(`/proc/${vmm.pid}/ns/net`));
    netns.close();
  }, 20_000);
});
