// The hybrid vsock dial that the Cloud Hypervisor and Firecracker drivers use
// (hypervisors/hybrid-vsock.ts, through the agent client), against a real backend:
// QEMU's vhost-user-vsock-pci with vhost-device-vsock, which speaks the same
// `CONNECT <port>` protocol, and our guest's agent behind its vsock relay. Those two
// VMMs cannot be installed here; the protocol and the guest side are the same.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { connectHybridVsock } from '../../hypervisors/hybrid-vsock';
import { DeadlineExceededError } from '../../lib/errors';
import { DEBUG_CONSOLE_VSOCK_PORT } from '../../lib/vsock-ports';
import { TtrpcAgentClient } from '../../sandbox/agent-client';
import { agentChannelFor, AGENT_VSOCK_PORT } from '../../sandbox/sandbox';
import { CloudHypervisor } from '../../hypervisors/cloud-hypervisor';
import { Firecracker } from '../../hypervisors/firecracker';
import { silentLogger } from '../../lib/logger';
import { BootedGuest, bootToAgent, guestVariants } from '../harness/guest-vm';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';

jest.setTimeout(300_000);

/** make test-e2e fetches it (scripts/fetch-vhost-device-vsock.sh) and names it here. */
const BACKEND = process.env.KATATS_VSOCK_BACKEND;

/** Reads from `socket` until `pattern` shows up; the text read so far otherwise. */
function readUntil(socket: net.Socket, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms; got ${JSON.stringify(text)}`)), timeoutMs);
    socket.on('data', (data: Buffer) => {
      text += data.toString();
      if (pattern.test(text)) {
        clearTimeout(timer);
        resolve(text);
      }
    });
  });
}

describe('hybrid vsock against a real backend (vhost-device-vsock attached to QEMU)', () => {
  let baseline: HostSnapshot;
  let guest: BootedGuest | undefined;

  beforeAll(async () => {
    if (!BACKEND) throw new Error('KATATS_VSOCK_BACKEND must name vhost-device-vsock: run this through make test-e2e');
    baseline = await snapshotHost();
    guest = await bootToAgent(guestVariants().dax, { vsockBackend: BACKEND, debugConsole: true });
  });
  afterAll(async () => {
    await guest?.stop();
  });

  it.each([
    ['Cloud Hypervisor', () => new CloudHypervisor(silentLogger())],
    ['Firecracker', () => new Firecracker(silentLogger())],
  ])('reaches the agent on vsock port 1024 through the channel the %s driver gives the sandbox', async (_name, driver) => {
    // The sandbox dials agentChannelFor(driver.agentChannelKind, workDir) for every
    // driver; bootToAgent already dialled once, a second client is what a restarted shim does.
    const channel = agentChannelFor(driver().agentChannelKind, guest!.workDir);
    const socketPath = path.join(guest!.workDir, 'vsock', 'vsock.sock');
    expect(channel).toEqual({ kind: 'hybrid-vsock', socketPath, port: AGENT_VSOCK_PORT });
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
    const { agent, details } = await TtrpcAgentClient.connect(channel, { bootTimeoutMs: 30_000, callTimeoutMs: 30_000, vmExited: guest!.hypervisor.exited, logger: silentLogger() });
    try {
      expect(details.boot_id).toBe(guest!.details.boot_id);
      expect(Number((await agent.guestMetrics()).meminfo_bytes.MemTotal)).toBeGreaterThan(0);
    } finally {
      agent.close();
    }
  });

  it('serves the debug console on vsock port 1026: a root shell in the guest', async () => {
    const socket = await connectHybridVsock(path.join(guest!.workDir, 'vsock', 'vsock.sock'), DEBUG_CONSOLE_VSOCK_PORT, 30_000);
    try {
      const answer = readUntil(socket, /uid=0 answer=42/, 60_000);
      socket.write('echo "uid=$(id -u) answer=$((6 * 7))"\n');
      expect(await answer).toMatch(/uid=0 answer=42/);
    } finally {
      socket.destroy();
    }
  });

  it('gives up on a port nothing in the guest listens on, within its deadline', async () => {
    const started = Date.now();
    await expect(connectHybridVsock(path.join(guest!.workDir, 'vsock', 'vsock.sock'), 1025, 2000)).rejects.toThrow(DeadlineExceededError);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('leaves no backend, QEMU or socket once the VM is stopped', async () => {
    const workDir = guest!.workDir;
    await guest!.stop();
    guest = undefined;
    expect(fs.existsSync(workDir)).toBe(false);
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });
});
