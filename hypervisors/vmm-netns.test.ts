import { ChildProcess, execFileSync, spawn } from 'child_process';
import { randomBytes } from 'crypto';
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

  asRoot("moves a tap the VMM made in its own namespace into the pod's, through the fd it opened", async () => {
    const vmm = await launchVmm(true);
    children.push(vmm);
    const netns = VmmNetns.open(vmm.pid!, () => vmm.exitCode === null && vmm.signalCode === null);
    // What the VMM's namespace holds: only its loopback, so nothing of the host or the pod.
    expect(JSON.parse(ip(['-j', 'link', 'show'], `/proc/${vmm.pid}/ns/net`)).map((l: { ifname: string }) => l.ifname)).toEqual(['lo']);
    ip(['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap'], `/proc/${vmm.pid}/ns/net`); // as QEMU's netdev_add does
    const pod = `kt-test-${randomBytes(4).toString('hex')}`;
    ip(['netns', 'add', pod]);
    namespaces.push(pod);
    await netns.moveInterface('tap0_kata', `/var/run/netns/${pod}`);
    expect(ip(['-j', 'link', 'show'], `/var/run/netns/${pod}`)).toContain('"tap0_kata"');
    expect(ip(['-j', 'link', 'show'], `/proc/${vmm.pid}/ns/net`)).not.toContain('tap0_kata');
    netns.close();
    await expect(netns.moveInterface('tap0_kata', `/var/run/netns/${pod}`)).rejects.toThrow('closed');
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
    const netns = VmmNetns.open(vmm.pid!, () => true, async (_ns, args) => void moves.push(args));
    await expect(netns.moveInterface('tap0_kata; reboot', '/var/run/netns/pod')).rejects.toThrow('not an interface name');
    await expect(netns.moveInterface('tap0_kata', 'pod')).rejects.toThrow('not an absolute path');
    await netns.moveInterface('tap0_kata', '/var/run/netns/pod');
    expect(moves).toEqual([['link', 'set', 'dev', 'tap0_kata', 'netns', '/var/run/netns/pod']]);
    netns.close();
  }, 20_000);
});
