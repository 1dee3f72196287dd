// The pod network, carried into the VM the way Kata's `tcfilter` model does it.
// CNI has put an interface (a veth end, usually eth0) with addresses and routes into
// the pod's network namespace before the sandbox container is created. For each such
// interface we add a tap device in that namespace and mirror every frame between the
// two with tc (ingress qdisc + mirred redirect, both directions). QEMU, started
// inside the namespace, attaches a virtio NIC to the tap with the pod interface's
// MAC, and the agent gives the guest NIC the interface's name, addresses and routes.
// A clone's QEMU is never in the pod's namespace: the driver moves each tap into QEMU's
// own for QEMU to open, then back here, where it is wired (makeTaps, then wire).
// The pod interface keeps its addresses on the host side; with its ingress
// redirected, the host stack never sees its frames.
// The namespace's loopback is carried to the VM too (port-forward.ts): CRI's
// PortForward dials 127.0.0.1 in the namespace. Started with the taps, gone with them.
import * as fs from 'fs';
import { CommandFailedError, NETNS_COMMAND_TIMEOUT_MS, runBounded } from '../lib/bounded-command';
import { DeadlineExceededError, FailedPreconditionError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { batchInput } from './netns-batch';
import { PortForward, portForwardGuestAddress } from './port-forward';

export interface IpAddress {
  address: string;
  prefix_length: number;
}

/** One pod interface moved into the VM. */
export interface Endpoint {
  /** Name in the pod netns, and the name the guest NIC gets. */
  name: string;
  mac: string;
  mtu: number;
  /**
   * The guest NIC's addresses: the pod interface's, and on the first endpoint also the
   * guest end of the port-forward link (port-forward.ts).
   */
  addresses: IpAddress[];
  /** Our tap device in the pod netns. */
  tapName: string;
}

export interface Route {
  destination: string;
  gateway: string;
  device: string;
  source: string;
  scope: string;
}

/** `ip -j addr` and `ip -j route` output, the fields we read. */
interface IpLink {
  ifname: string;
  link_type?: string;
  address?: string;
  mtu?: number;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope?: string }>;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
}

/** Runs a command inside a network namespace, `input` on its stdin; replaced in tests. */
export type NetnsCommand = (netnsPath: string, command: string, args: string[], input?: string) => Promise<string>;

const runInNetns: NetnsCommand = async (netnsPath, command, args, input) => {
  try {
    const { stdout } = await runBounded('nsenter', [`--net=${netnsPath}`, '--', command, ...args], NETNS_COMMAND_TIMEOUT_MS, { input });
    return stdout;
  } catch (err) {
    // Numbered: tc and iptables-restore name the line that failed by its number.
    const given = input === undefined ? '' : ` (given: ${input.trimEnd().split('\n').map((line, i) => `${i + 1}: ${line}`).join('; ')})`;
    if (err instanceof DeadlineExceededError) throw new DeadlineExceededError(`in pod netns ${netnsPath}: ${err.message}${given}`);
    const stderr = err instanceof CommandFailedError ? err.stderr : '';
    throw new FailedPreconditionError(`in pod netns ${netnsPath}: '${command} ${args.join(' ')}'${given} failed: ${stderr || (err as Error).message}`);
  }
};

const TAP_SUFFIX = '_kata';

/** Interfaces a pod network can have that we carry into the VM: ethernet ones with addresses. */
export function endpointsFrom(links: IpLink[]): Endpoint[] {
  return links
    .filter((l) => l.link_type === 'ether' && !l.ifname.endsWith(TAP_SUFFIX))
    .map((l, i) => ({
      name: l.ifname,
      mac: (l.address ?? '').toLowerCase(),
      mtu: l.mtu ?? 1500,
      // Link-local IPv6 addresses are derived from the MAC; the guest makes its own.
      addresses: (l.addr_info ?? []).filter((a) => a.scope !== 'link' && (a.family === 'inet' || a.family === 'inet6')).map((a) => ({ address: a.local, prefix_length: a.prefixlen })),
      tapName: `tap${i}${TAP_SUFFIX}`,
    }))
    .filter((e) => e.addresses.length > 0);
}

/** Routes the guest needs; the kernel makes the prefix routes itself when addresses are added. */
export function routesFrom(routes: IpRoute[], endpoints: Endpoint[]): Route[] {
  const devices = new Set(endpoints.map((e) => e.name));
  return routes
    .filter((r) => r.protocol !== 'kernel' && r.dev !== undefined && devices.has(r.dev) && !r.dst.startsWith('fe80:') && !r.dst.startsWith('multicast'))
    .map((r) => ({ destination: r.dst === 'default' ? '' : r.dst, gateway: r.gateway ?? '', device: r.dev ?? '', source: r.prefsrc ?? '', scope: r.scope === 'link' ? 'link' : '' }));
}

export class PodNetwork {
  private portForward: PortForward | undefined;

  private constructor(
    readonly netnsPath: string,
    readonly endpoints: Endpoint[],
    readonly routes: Route[],
    /** The tap the namespace's loopback is forwarded through (CRI PortForward): the first endpoint with an IPv4 address. */
    private readonly forwardedTap: string | undefined,
    private readonly run: NetnsCommand,
    private readonly logger: Logger,
  ) {}

  /** Fails, saying so, when the pod's netns is gone. */
  static requireNetns(netnsPath: string): void {
    if (!fs.existsSync(netnsPath)) throw new FailedPreconditionError(`pod network namespace ${netnsPath} does not exist (was the pod's network torn down?)`);
  }

  /** Reads the pod netns: its interfaces to carry into the VM, and their routes. Makes nothing. */
  static async read(netnsPath: string, logger: Logger, run: NetnsCommand = runInNetns): Promise<PodNetwork> {
    PodNetwork.requireNetns(netnsPath);
    // At once: three processes, none of which needs another's answer.
    const [addresses, routes4, routes6] = await Promise.all([run(netnsPath, 'ip', ['-j', 'addr', 'show']), run(netnsPath, 'ip', ['-j', '-4', 'route', 'show']), run(netnsPath, 'ip', ['-j', '-6', 'route', 'show'])]);
    const endpoints = endpointsFrom(JSON.parse(addresses) as IpLink[]);
    const routes = [...(JSON.parse(routes4) as IpRoute[]), ...(JSON.parse(routes6) as IpRoute[])];
    // The guest end of the loopback forward is known now, not once wired: the guest NIC
    // gets its addresses (UpdateInterface) while a clone's taps are still being wired.
    const forwarded = endpoints.find((e) => e.addresses.some((a) => !a.address.includes(':')));
    forwarded?.addresses.push(portForwardGuestAddress());
    return new PodNetwork(netnsPath, endpoints, routesFrom(routes, endpoints), forwarded?.tapName, run, logger);
  }

  /** Reads the pod netns, makes a tap beside each pod interface and wires it (for a VMM started in the netns). Undone on failure. */
  static async attach(netnsPath: string, logger: Logger, run: NetnsCommand = runInNetns): Promise<PodNetwork> {
    const network = await PodNetwork.read(netnsPath, logger, run);
    await network.makeTaps();
    await network.wire();
    return network;
  }

  /**
   * Makes each endpoint's tap (persistent: it outlives the VMM, and `delete` after a
   * crash finds it by name), those from `from` on: the first endpoints' may come
   * from the VMM (a NIC plugged ahead into a spare's VM). Undone on failure.
   */
  async makeTaps({ from = 0, to = this.endpoints.length }: { from?: number; to?: number } = {}): Promise<void> {
    try {
      for (const e of this.endpoints.slice(from, to)) await this.run(this.netnsPath, 'ip', ['tuntap', 'add', 'dev', e.tapName, 'mode', 'tap']);
    } catch (err) {
      // Every one of ours, not only those made: an `ip` killed at its bound may have made its tap.
      await this.removeTaps(this.endpoints.map((e) => e.tapName));
      throw err;
    }
  }

  /** Removes the taps (those still here) and makes them anew, unwired: after a clone whose NICs could not be plugged. */
  async remakeTaps(): Promise<void> {
    await this.removeTaps(this.endpoints.map((e) => e.tapName));
    await this.makeTaps();
  }

  private async removeTaps(names: string[]): Promise<void> {
    for (const tap of names) await this.run(this.netnsPath, 'ip', ['link', 'del', tap]).catch((e) => this.logger.debug({ err: (e as Error).message }, 'no tap to remove'));
  }

  /**
   * Wires each endpoint's tap (made by makeTaps; for a clone, back from its VMM's
   * namespace, Hypervisor.plugNics) to its pod interface, and the namespace's loopback
   * to the VM. Undone on failure, taps included.
   */
  async wire(): Promise<void> {
    try {
      if (this.endpoints.length > 0) {
        await this.run(this.netnsPath, 'ip', ['-batch', '-'], batchInput(this.endpoints.map((e) => ['link', 'set', 'dev', e.tapName, 'mtu', String(e.mtu), 'up'])));
        // tc -batch stops at the first command that fails, and so fails: undone below.
        await this.run(this.netnsPath, 'tc', ['-batch', '-'], batchInput(this.endpoints.flatMap(mirrorCommands)));
      }
      if (this.forwardedTap) this.portForward = await PortForward.start(this.netnsPath, this.forwardedTap, this.run, this.logger);
    } catch (err) {
      await this.detach();
      throw err;
    }
    this.logger.info({ netns: this.netnsPath, endpoints: this.endpoints.map((e) => ({ name: e.name, mac: e.mac, addresses: e.addresses })) }, 'pod network attached');
  }

  /**
   * For `delete` after a daemon died: finds our taps in the netns by name and undoes
   * the mirroring on the other interfaces, without knowing what attach() made.
   */
  static async cleanup(netnsPath: string, logger: Logger, run: NetnsCommand = runInNetns): Promise<void> {
    if (!fs.existsSync(netnsPath)) return;
    const links = JSON.parse(await run(netnsPath, 'ip', ['-j', 'link', 'show'])) as IpLink[];
    if (!links.some((l) => l.ifname.endsWith(TAP_SUFFIX))) return;
    for (const l of links.filter((l) => l.ifname.endsWith(TAP_SUFFIX))) await PortForward.removeRules(netnsPath, l.ifname, run, logger);
    for (const l of links) {
      const undo = l.ifname.endsWith(TAP_SUFFIX) ? ['ip', 'link', 'del', l.ifname] : l.link_type === 'ether' ? ['tc', 'qdisc', 'del', 'dev', l.ifname, 'ingress'] : undefined;
      if (undo) await run(netnsPath, undo[0], undo.slice(1)).catch((err) => logger.debug({ err: (err as Error).message }, 'nothing to undo'));
    }
    logger.info({ netns: netnsPath }, 'removed a dead sandbox\'s taps');
  }

  /** Removes the taps and the mirroring; the netns may already be gone, which is fine. */
  async detach(): Promise<void> {
    if (!fs.existsSync(this.netnsPath)) return;
    await this.portForward?.stop();
    this.portForward = undefined;
    for (const e of this.endpoints) {
      await this.run(this.netnsPath, 'tc', ['qdisc', 'del', 'dev', e.name, 'ingress']).catch((err) => this.logger.debug({ err: (err as Error).message }, 'no ingress qdisc to remove'));
      await this.run(this.netnsPath, 'ip', ['link', 'del', e.tapName]).catch((err) => this.logger.debug({ err: (err as Error).message }, 'no tap to remove'));
    }
  }
}

/** The tc commands that mirror every frame between a pod interface and its tap, both ways. */
function mirrorCommands(e: Endpoint): string[][] {
  return [
    [e.name, e.tapName],
    [e.tapName, e.name],
  ].flatMap(([from, to]) => [
    ['qdisc', 'add', 'dev', from, 'ingress'],
    ['filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to],
  ]);
}
