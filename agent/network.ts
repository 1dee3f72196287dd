// The pod network inside the guest. The shim moved the pod's interface into the VM
// (a virtio NIC carrying the pod interface's MAC); here the NIC gets the pod
// interface's name, MTU, addresses and routes, with busybox `ip`. A NIC the shim
// plugged before its pod existed (into a spare's VM) carries a MAC of the shim's
// choosing, named in the request (plugged_hw_addr): here it gets the pod interface's.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { INTERFACE_NAME, MAC_ADDRESS } from '../lib/net-names';
import { runCommand } from './guest-command';
import { readTrimmed } from '../lib/recorded-process';

export interface IpAddress {
  address: string;
  prefix_length: number;
}
export interface NetInterface {
  name: string;
  hw_addr: string;
  mtu: number;
  addresses: IpAddress[];
  /** The MAC of a NIC plugged before its pod existed; empty or absent otherwise. */
  plugged_hw_addr?: string;
}
export interface Route {
  destination: string;
  gateway: string;
  device: string;
  source: string;
  scope: string;
}

/** Runs `ip` with these arguments; replaced in tests. */
export type IpCommand = (args: string[]) => Promise<void>;

const runIp: IpCommand = async (args) => {
  try {
    await runCommand('ip', args);
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? '').trim();
    throw new InvalidArgumentError(`ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
  }
};

const NAME = INTERFACE_NAME;
/** In /sys/class/net/<link>/flags. */
const IFF_UP = 0x1;
const MAC = MAC_ADDRESS;

/**
 * How long UpdateInterface waits for a NIC that is not there yet. A VM cloned from a
 * template gets the pod's NIC by hot-plug while the call is on its way (the shim sends
 * it before it plugs), and the plug, the guest's PCI hot-plug and the virtio-net probe
 * take a moment (longer under TCG on a busy host).
 */
export const NIC_APPEAR_TIMEOUT_MS = 10_000;
const NIC_POLL_MS = 50;

export class GuestNetwork {
  /** The calls so far, settled: each waits for those before it (see inTurn). */
  private previous: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ip: IpCommand = runIp,
    private readonly sysClassNet = '/sys/class/net',
    private readonly nicAppearTimeoutMs = NIC_APPEAR_TIMEOUT_MS,
  ) {}

  /**
   * One call after another, in the order they came: the shim sends a pod's interfaces
   * and its routes without waiting for each answer, and a route needs its interface.
   */
  private inTurn<T>(call: () => Promise<T>): Promise<T> {
    const result = this.previous.then(call);
    this.previous = result.catch(() => undefined);
    return result;
  }

  /** Configures the NIC whose MAC is `iface.hw_addr` (or plugged_hw_addr), after the calls before it; returns what was applied. */
  updateInterface(iface: NetInterface): Promise<NetInterface> {
    return this.inTurn(() => this.configureInterface(iface));
  }

  /** Adds the routes, after the calls before it (the interfaces they use). */
  updateRoutes(routes: Route[]): Promise<Route[]> {
    return this.inTurn(() => this.addRoutes(routes));
  }

  private async configureInterface(iface: NetInterface): Promise<NetInterface> {
    const mac = (iface.hw_addr ?? '').toLowerCase();
    if (!MAC.test(mac)) throw new InvalidArgumentError(`interface ${iface.name}: '${iface.hw_addr}' is not a MAC address`);
    if (!NAME.test(iface.name ?? '')) throw new InvalidArgumentError(`'${iface.name}' is not a valid interface name`);
    const plugged = (iface.plugged_hw_addr ?? '').toLowerCase();
    if (plugged && !MAC.test(plugged)) throw new InvalidArgumentError(`interface ${iface.name}: plugged_hw_addr '${iface.plugged_hw_addr}' is not a MAC address`);
    // The pod's MAC first: a retry finds the NIC that the call before gave it.
    const macs = plugged && plugged !== mac ? [mac, plugged] : [mac];
    const current = await this.waitForLinkWithMac(macs);
    if (!current) throw new NotFoundError(`no guest network interface has MAC ${macs.join(' or ')} after ${this.nicAppearTimeoutMs} ms (the VM has: ${this.describeLinks()})`);
    // Renaming needs the link down; addresses are replaced wholesale so a retry is idempotent.
    // Each `ip` is a process (about 10 ms under TCG): what is so already is not set again,
    // and the link's changes go in one command (busybox applies the rename in its order).
    const link = this.linkState(current.name);
    if (link.up !== false) await this.ip(['link', 'set', 'dev', current.name, 'down']);
    const changes = [
      ...(current.mac !== mac ? ['address', mac] : []),
      ...((iface.mtu ?? 0) > 0 && iface.mtu !== link.mtu ? ['mtu', String(iface.mtu)] : []),
      ...(current.name !== iface.name ? ['name', iface.name] : []),
    ];
    if (changes.length > 0) await this.ip(['link', 'set', 'dev', current.name, ...changes]);
    await this.ip(['addr', 'flush', 'dev', iface.name]);
    for (const a of iface.addresses ?? []) {
      await this.ip([...family(a.address), 'addr', 'add', `${a.address}/${a.prefix_length}`, 'dev', iface.name]);
    }
    await this.ip(['link', 'set', 'dev', iface.name, 'up']);
    return { ...iface, hw_addr: mac, plugged_hw_addr: plugged };
  }

  /** On-link routes first, so gateways are reachable when theirs come. */
  private async addRoutes(routes: Route[]): Promise<Route[]> {
    const ordered = [...routes].sort((a, b) => Number(Boolean(a.gateway)) - Number(Boolean(b.gateway)));
    for (const r of ordered) {
      const args = [...family(r.gateway || r.destination || ''), 'route', 'replace', r.destination || 'default'];
      if (r.gateway) args.push('via', r.gateway);
      if (r.device) args.push('dev', r.device);
      if (r.source) args.push('src', r.source);
      if (r.scope) args.push('scope', r.scope);
      await this.ip(args);
    }
    return ordered;
  }

  /** The link with the first of `macs` some link has, once one has. */
  private async waitForLinkWithMac(macs: string[]): Promise<{ name: string; mac: string } | undefined> {
    const deadline = Date.now() + this.nicAppearTimeoutMs;
    for (;;) {
      const links = this.links();
      const found = macs.map((mac) => links.find((l) => l.mac === mac)).find(Boolean);
      if (found || Date.now() >= deadline) return found;
      await new Promise((resolve) => setTimeout(resolve, NIC_POLL_MS));
    }
  }

  /** Whether the link is up, and its MTU; undefined where sysfs does not say. */
  private linkState(name: string): { up?: boolean; mtu?: number } {
    const flags = readTrimmed(path.join(this.sysClassNet, name, 'flags'));
    const mtu = readTrimmed(path.join(this.sysClassNet, name, 'mtu'));
    return { up: flags === '' ? undefined : (Number(flags) & IFF_UP) !== 0, mtu: mtu === '' ? undefined : Number(mtu) };
  }

  /** The links and their MACs ('' for a link that vanished while we looked). */
  private links(): Array<{ name: string; mac: string }> {
    return fs.readdirSync(this.sysClassNet).map((name) => ({ name, mac: readTrimmed(path.join(this.sysClassNet, name, 'address')).toLowerCase() }));
  }

  private describeLinks(): string {
    return this.links().map((l) => `${l.name} ${l.mac}`).join(', ') || 'no links';
  }
}

function family(address: string): string[] {
  return address.includes(':') ? ['-6'] : [];
}
