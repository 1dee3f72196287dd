// Port-forward into the VM (CRI PortForward, `kubectl port-forward`). containerd's CRI
// plugin serves it by entering the pod's network namespace and dialling
// 127.0.0.1:<port> there (then [::1]:<port>). With runc the container is in that
// namespace; with us only the pod interface is, mirrored to the VM's tap by tc
// (network.ts), and nothing listens on the namespace's loopback.
//
// So the namespace's loopback is carried to the VM, for every TCP port at once, by
// the kernel: no process of ours stays in the path, nothing to leak when the namespace
// goes. The pod's own address cannot be the target (inside the namespace it is a
// local address: traffic to it never leaves), so the tap and the guest NIC share a
// second, link-local /30 that only this path uses:
//
//   containerd ─▶ 127.0.0.1:P ─DNAT─▶ 169.254.75.2:P ─(route_localnet, SNAT from
//   169.254.75.1)─▶ tap ─▶ guest NIC (169.254.75.2, beside the pod IP) ─▶ the server
//
// - the tap gets 169.254.75.1/30 and route_localnet (a 127.0.0.1 source may leave
//   through it; replies to a de-NATed 127.0.0.1 destination are accepted on it);
// - iptables nat in the namespace: OUTPUT DNATs TCP to 127.0.0.1 to the guest's
//   169.254.75.2; POSTROUTING SNATs what leaves the tap from 127.0.0.0/8 to 169.254.75.1
//   (the guest would answer a 127.0.0.1 source itself);
// - the tap's ingress mirror gains two filters ahead of it that hand the namespace
//   what is addressed to 169.254.75.1 (ARP for it, IPv4 to it); everything else the
//   guest sends still goes out on the pod interface. A u32 match without an action
//   ends classification and lets the frame in (hosts often lack act_gact's "pass").
// - the guest NIC gets 169.254.75.2/30 as a second address (added by the agent with
//   the pod's own, network.ts).
//
// A server in the VM must listen on the pod's addresses (0.0.0.0 or ::, as servers in
// pods do): one bound to the guest's 127.0.0.1 only is not reached, unlike with runc.
// ::1 is not forwarded (Linux has no route_localnet for IPv6); containerd tries
// 127.0.0.1 first.
import { Logger } from '../lib/logger';
import type { IpAddress, NetnsCommand } from './network';
import { batchInput, iptablesRestoreInput } from './netns-batch';

/** The namespace's end of the port-forward link (on the tap). */
export const PORT_FORWARD_HOST_ADDRESS = '169.254.75.1';
/** The guest's end: a second address on the guest NIC. */
export const PORT_FORWARD_GUEST_ADDRESS = '169.254.75.2';
export const PORT_FORWARD_PREFIX_LENGTH = 30;
/** Marks our iptables rules (and finds them after a crash). */
export const PORT_FORWARD_COMMENT = 'kata-ts port-forward to the pod VM';

/** What the guest NIC gets besides the pod's addresses. */
export function portForwardGuestAddress(): IpAddress {
  return { address: PORT_FORWARD_GUEST_ADDRESS, prefix_length: PORT_FORWARD_PREFIX_LENGTH };
}

/** The nat rules, as `iptables -t nat` arguments after -A/-D. */
export function portForwardRules(tapName: string): string[][] {
  const tag = ['-m', 'comment', '--comment', PORT_FORWARD_COMMENT];
  return [
    // What the guest may send into the namespace's own stack: replies to the forwarded
    // connections, nothing else. route_localnet lifts the martian check for 127.0.0.0/8
    // on the tap, so a guest-forged loopback source is dropped before routing, and no
    // new connection from the guest reaches a listener in the pod netns. First: in
    // place before anything from the guest can reach that stack.
    ['raw', 'PREROUTING', '-i', tapName, '-s', '127.0.0.0/8', ...tag, '-j', 'DROP'],
    ['filter', 'INPUT', '-i', tapName, '-m', 'conntrack', '!', '--ctstate', 'ESTABLISHED,RELATED', ...tag, '-j', 'DROP'],
    ['nat', 'OUTPUT', '-d', '127.0.0.1/32', '-p', 'tcp', ...tag, '-j', 'DNAT', '--to-destination', PORT_FORWARD_GUEST_ADDRESS],
    ['nat', 'POSTROUTING', '-s', '127.0.0.0/8', '-o', tapName, ...tag, '-j', 'SNAT', '--to-source', PORT_FORWARD_HOST_ADDRESS],
  ];
}

/** The ARP target IP and IPv4 destination matches, as 32-bit hex for u32. */
const HOST_ADDRESS_HEX = `0x${PORT_FORWARD_HOST_ADDRESS.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')}`;
/** Filter priorities on the tap's ingress, ahead of the mirror (added without one: 49152). */
const ARP_PRIO = '1';
const IPV4_PRIO = '2';

export class PortForward {
  private constructor(
    private readonly netnsPath: string,
    private readonly tapName: string,
    private readonly run: NetnsCommand,
    private readonly logger: Logger,
  ) {}

  /**
   * Sets up the path from the namespace's 127.0.0.1 to the guest behind `tapName`,
   * whose ingress mirror must exist already. Undone on failure.
   */
  static async start(netnsPath: string, tapName: string, run: NetnsCommand, logger: Logger): Promise<PortForward> {
    const forward = new PortForward(netnsPath, tapName, run, logger);
    try {
      await forward.setUp();
    } catch (err) {
      await forward.stop();
      throw err;
    }
    logger.info({ netns: netnsPath, tap: tapName, guest: PORT_FORWARD_GUEST_ADDRESS }, 'port-forward: 127.0.0.1 in the pod netns reaches the VM');
    return forward;
  }

  /**
   * Removes the nat rules (by their exact arguments: what else is in the namespace is
   * not ours). The tap's address, sysctl and filters go with the tap. Never throws;
   * used after a crash too, when nothing says what had been set up.
   */
  static async removeRules(netnsPath: string, tapName: string, run: NetnsCommand, logger: Logger): Promise<void> {
    for (const [table, ...rule] of portForwardRules(tapName)) {
      await run(netnsPath, 'iptables', ['-w', '-t', table, '-D', ...rule]).catch((err) => logger.debug({ err: (err as Error).message }, 'no port-forward rule to remove'));
    }
  }

  async stop(): Promise<void> {
    await PortForward.removeRules(this.netnsPath, this.tapName, this.run, this.logger);
  }

  private async setUp(): Promise<void> {
    const run = (command: string, args: string[], input?: string) => this.run(this.netnsPath, command, args, input);
    const tap = this.tapName;
    await run('ip', ['addr', 'add', `${PORT_FORWARD_HOST_ADDRESS}/${PORT_FORWARD_PREFIX_LENGTH}`, 'dev', tap]);
    // All four rules by one process, the guest's limits first (each table is committed
    // whole or not at all), before the guest's frames can reach the namespace's stack:
    // until the filters below, the tap's ingress sends all of them to the pod interface.
    await run('iptables-restore', ['-w', '--noflush'], iptablesRestoreInput(portForwardRules(tap)));
    await run('sysctl', ['-q', '-w', `net.ipv4.conf.${tap}.route_localnet=1`]);
    await run(
      'tc',
      ['-batch', '-'],
      batchInput([
        // ARP payload (Ethernet/IPv4): the target protocol address is at offset 24.
        ['filter', 'add', 'dev', tap, 'parent', 'ffff:', 'prio', ARP_PRIO, 'protocol', 'arp', 'u32', 'match', 'u32', HOST_ADDRESS_HEX, '0xffffffff', 'at', '24', 'flowid', 'ffff:1'],
        ['filter', 'add', 'dev', tap, 'parent', 'ffff:', 'prio', IPV4_PRIO, 'protocol', 'ip', 'u32', 'match', 'ip', 'dst', `${PORT_FORWARD_HOST_ADDRESS}/32`, 'flowid', 'ffff:1'],
      ]),
    );
  }
}
