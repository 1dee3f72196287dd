// The pod network inside the guest. The shim moved the pod's interface into the VM
// (a virtio NIC carrying the pod interface's MAC); here the NIC gets the pod
// interface's name, MTU, addresses and routes, with busybox `ip`.
import * as fs from 'fs';
import * as path from 'path';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { INTERFACE_NAME, MAC_ADDRESS } from '../lib/net-names';
import { runCommand } from './guest-command';

export interface IpAddress {
  address: string;
  prefix_length: number;
}
export interface NetInterface {
  name: string;
  hw_addr: string;
  mtu: number;
  addresses: IpAddress[];
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
const MAC = MAC_ADDRESS;

/**
 * How long UpdateInterface waits for a NIC that is not there yet. A VM cloned from a
 * template gets the pod's NIC by hot-plug just before the call, and the guest's PCI
 * hot-plug and virtio-net probe take a moment (longer under TCG on a busy host).
 */
export const NIC_APPEAR_TIMEOUT_MS = 10_000;
const NIC_POLL_MS = 50;

export class GuestNetwork {
  constructor(
    private readonly ip: IpCommand = runIp,
    private readonly sysClassNet = '/sys/class/net',
    private readonly nicAppearTimeoutMs = NIC_APPEAR_TIMEOUT_MS,
  ) {}

  /** Configures the NIC whose MAC is `iface.hw_addr`; returns what was applied. */
  async updateInterface(iface: NetInterface): Promise<NetInterface> {
    const mac = (iface.hw_addr ?? '').toLowerCase();
    if (!MAC.test(mac)) throw new InvalidArgumentError(`interface ${iface.name}: '${iface.hw_addr}' is not a MAC address`);
    if (!NAME.test(iface.name ?? '')) throw new InvalidArgumentError(`'${iface.name}' is not a valid interface name`);
    const current = await this.waitForLinkWithMac(mac);
    if (!current) throw new NotFoundError(`no guest network interface has MAC ${mac} after ${this.nicAppearTimeoutMs} ms (the VM has: ${this.describeLinks()})`);
    // Renaming needs the link down; addresses are replaced wholesale so a retry is idempotent.
    await this.ip(['link', 'set', 'dev', current, 'down']);
    if (current !== iface.name) await this.ip(['link', 'set', 'dev', current, 'name', iface.name]);
    if ((iface.mtu ?? 0) > 0) await this.ip(['link', 'set', 'dev', iface.name, 'mtu', String(iface.mtu)]);
    await this.ip(['addr', 'flush', 'dev', iface.name]);
    for (const a of iface.addresses ?? []) {
      await this.ip([...family(a.address), 'addr', 'add', `${a.address}/${a.prefix_length}`, 'dev', iface.name]);
    }
    await this.ip(['link', 'set', 'dev', iface.name, 'up']);
    return { ...iface, hw_addr: mac };
  }

  /** Adds the routes: on-link ones first, so gateways are reachable when theirs come. */
  async updateRoutes(routes: Route[]): Promise<Route[]> {
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

  private async waitForLinkWithMac(mac: string): Promise<string | undefined> {
    const deadline = Date.now() + this.nicAppearTimeoutMs;
    for (;;) {
      const name = this.linkWithMac(mac);
      if (name || Date.now() >= deadline) return name;
      await new Promise((resolve) => setTimeout(resolve, NIC_POLL_MS));
    }
  }

  private linkWithMac(mac: string): string | undefined {
    return this.links().find((l) => l.mac === mac)?.name;
  }

  private links(): Array<{ name: string; mac: string }> {
    return fs.readdirSync(this.sysClassNet).map((name) => {
      let mac = '';
      try {
        mac = fs.readFileSync(path.join(this.sysClassNet, name, 'address'), 'utf8').trim().toLowerCase();
      } catch {
        // a link that vanished while we looked
      }
      return { name, mac };
    });
  }

  private describeLinks(): string {
    return this.links().map((l) => `${l.name} ${l.mac}`).join(', ') || 'no links';
  }
}

function family(address: string): string[] {
  return address.includes(':') ? ['-6'] : [];
}
