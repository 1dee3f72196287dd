import * as fs from 'fs';
import * as path from 'path';
// A VMM for host-side tests whose "guest" is our fake agent (testing/fake-agent.ts)
// behind the channel kind the driver claims, as QEMU or Cloud Hypervisor would serve it.
import * as net from 'net';
import { AgentChannel, Hypervisor, VmConfig, VmExit } from '../../hypervisors/hypervisor';
import { serveHybridVsock } from '../../hypervisors/testing/fake-hybrid-vsock';
import { FakeAgent } from './fake-agent';

/** A VMM whose "guest" is our fake agent behind the channel kind it claims. */
export function fakeDriver(agentChannelKind: AgentChannel['kind'], agent: FakeAgent, startGate?: Promise<void>): Hypervisor & { booted?: VmConfig; stopped?: boolean } {
  let endpoint: net.Server | undefined;
  let resolveExited!: (exit: VmExit) => void;
  const driver: Hypervisor & { booted?: VmConfig; stopped?: boolean } = {
    name: `fake-${agentChannelKind}`,
    agentChannelKind,
    exited: new Promise((r) => (resolveExited = r)),
    async start(config) {
      driver.booted = config;
      await startGate; // a VM that takes its time to boot
      const channel = config.agentChannel;
      if (channel.kind === 'hybrid-vsock') {
        fs.mkdirSync(path.dirname(channel.socketPath), { recursive: true }); // as a VMM driver does (prepareWorkDir)
        endpoint = await serveHybridVsock(channel.socketPath, { isListening: (port) => port === channel.port, accept: (_port, stream) => agent.server.serveConnection(stream) });
      } else if (channel.kind === 'virtio-serial') {
        endpoint = net.createServer((stream) => agent.server.serveConnection(stream));
        await new Promise<void>((r) => endpoint!.listen(channel.socketPath, r));
      }
    },
    async stop() {
      driver.stopped = true;
      await new Promise((r) => (endpoint ? endpoint.close(r) : r(undefined)));
      resolveExited({ code: 0, signal: null });
    },
    pid: () => 4242,
    consoleTail: () => '',
  };
  return driver;
}
