import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Duplex, PassThrough } from 'stream';
import { DeadlineExceededError, NotImplementedError, UnavailableError } from '../lib/errors';
import { createLogger, silentLogger } from '../lib/logger';
import { serveHybridVsock } from '../hypervisors/testing/fake-hybrid-vsock';
import { TtrpcAgentClient } from './agent-client';
import { FAKE_GUEST, FakeAgent, fakeAgent } from './testing/fake-agent';
import { Code } from '../ttrpc';
import { encodeFrame, FrameType } from '../ttrpc/frame';
import { encodeResponse } from '../ttrpc/messages';

const never = new Promise<void>(() => undefined);
const options = (bootTimeoutMs: number, vmExited: Promise<unknown> = never) => ({ bootTimeoutMs, callTimeoutMs: 2000, vmExited, logger: silentLogger() });

describe('TtrpcAgentClient.connect', () => {
  let dir: string;
  const cleanups: Array<() => unknown> = [];
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentc-'))));
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A fake VMM's vsock socket with our ttrpc agent behind guest port 1024, once `listening()` says so. */
  async function hybridVsockVm(socketPath: string, listening: () => boolean = () => true) {
    const agent = fakeAgent({ ListProcesses: () => ({ pids: [1, 7] }) });
    const ports: number[] = [];
    const vmm = await serveHybridVsock(socketPath, {
      isListening: (port) => {
        ports.push(port);
        return port === 1024 && listening();
      },
      accept: (_port, stream) => agent.server.serveConnection(stream),
    });
    cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close());
    return { agent, ports, vmm };
  }

  describe('over hybrid vsock', () => {
    it('sends CONNECT 1024, waits for the agent to listen, then speaks ttrpc through the VMM', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      let attempts = 0;
      const { agent, ports } = await hybridVsockVm(socketPath, () => ++attempts > 3);
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(5000));
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      expect(ports).toEqual([1024, 1024, 1024, 1024]); // three refusals while the guest boots, then the agent
      expect(await client.listProcesses('c1')).toEqual([1, 7]);
      expect(agent.calls).toEqual(['GetGuestDetails', 'ListProcesses']);
      expect(agent.requests.get('ListProcesses')).toEqual({ container_id: 'c1' });
    });

    it('dials again, after a pause, when the guest accepts and then closes before its agent answers', async () => {
      // What a guest relay does that accepted before its agent listened and gave up, or
      // root in the guest closing the connection: the client must neither spin on the
      // dead connection nor give up before the boot deadline.
      const socketPath = path.join(dir, 'vsock.sock');
      const agent = fakeAgent({});
      let accepted = 0;
      const vmm = await serveHybridVsock(socketPath, {
        isListening: (port) => port === 1024,
        accept: (_port, stream) => (++accepted <= 2 ? stream.destroy() : agent.server.serveConnection(stream)),
      });
      cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close());
      const started = Date.now();
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(5000));
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      expect(accepted).toBe(3);
      expect(Date.now() - started).toBeGreaterThanOrEqual(200); // two pauses, no busy loop
    });

    it('dials again when the guest accepts and then never answers on that connection', async () => {
      // An acknowledged connection that stays silent is stuck on its way (a lost packet,
      // a stuck relay): asking it again until the boot deadline would never succeed.
      const socketPath = path.join(dir, 'vsock.sock');
      const agent = fakeAgent({});
      const silent: net.Socket[] = [];
      const vmm = await serveHybridVsock(socketPath, {
        isListening: (port) => port === 1024,
        accept: (_port, stream) => (silent.length < 1 ? silent.push(stream.on('data', () => undefined)) : agent.server.serveConnection(stream)),
      });
      cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close(), () => silent.forEach((s) => s.destroy()));
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(10_000));
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      expect(silent).toHaveLength(1);
      expect(silent[0].destroyed || silent[0].readableEnded).toBe(true); // the stuck connection was given up
    }, 20_000);

    it('waits longer after each redial, so a guest slower than the first wait still gets through', async () => {
      // Every connection's first answer takes 350 ms; the tries wait 100 ms at first.
      const socketPath = path.join(dir, 'vsock.sock');
      const agent = fakeAgent({ GetGuestDetails: () => new Promise((resolve) => setTimeout(() => resolve(FAKE_GUEST), 350)) });
      let connections = 0;
      const vmm = await serveHybridVsock(socketPath, {
        isListening: (port) => port === 1024,
        accept: (_port, stream) => {
          connections++;
          agent.server.serveConnection(stream);
        },
      });
      cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close());
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(10_000), firstTryTimeoutMs: 100 });
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      // 100 ms twice, 200 ms twice, then 400 ms: the third connection's first try is answered.
      expect(connections).toBe(3);
    });

    it('waits for the VMM to create its socket', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      const connecting = TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(5000));
      await new Promise((r) => setTimeout(r, 200));
      await hybridVsockVm(socketPath);
      const { agent: client } = await connecting;
      client.close();
    });

    it('gives up at the boot deadline, saying which socket and port never answered', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      await hybridVsockVm(socketPath, () => false);
      const err = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(400)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeadlineExceededError);
      expect((err as Error).message).toMatch(new RegExp(`^the guest agent did not answer within 400 ms: hybrid vsock ${socketPath}: guest port 1024 did not accept a connection`));
    });

    it('dials only once the channel is ready (QEMU: the guest started its vsock device)', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      const { ports } = await hybridVsockVm(socketPath);
      let portsWhenReady: number[] | undefined;
      const channelReady = async (): Promise<void> => {
        await new Promise((r) => setTimeout(r, 300));
        portsWhenReady = [...ports];
      };
      const { agent: client } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(5000), channelReady });
      cleanups.push(() => client.close());
      expect(portsWhenReady).toEqual([]);
      expect(ports).toEqual([1024]);
    });

    it('gives up at the boot deadline when the channel never gets ready, saying so, and without dialling', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      const { ports } = await hybridVsockVm(socketPath);
      let aborted = false;
      const channelReady = (signal: AbortSignal): Promise<void> => new Promise((resolve) => signal.addEventListener('abort', () => resolve(void (aborted = true))));
      const err = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(300), channelReady }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeadlineExceededError);
      expect((err as Error).message).toBe('the guest agent did not answer within 300 ms: its channel (hybrid-vsock) never became ready to dial');
      expect(aborted).toBe(true);
      expect(ports).toEqual([]);
    });

    it('dials anyway when the channel cannot say whether it is ready', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      const { ports } = await hybridVsockVm(socketPath);
      const channelReady = (): Promise<void> => Promise.reject(new Error('qmp: connection reset'));
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(5000), channelReady });
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      expect(ports).toEqual([1024]);
    });

    it('stops waiting for the channel as soon as the VM exits', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      await hybridVsockVm(socketPath);
      const channelReady = (signal: AbortSignal): Promise<void> => new Promise((resolve) => signal.addEventListener('abort', () => resolve()));
      const vmExited = new Promise<void>((r) => setTimeout(r, 100));
      const err = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(30_000, vmExited), channelReady }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toBe('the VM exited before its agent answered');
    });

    it('stops waiting as soon as the VM exits', async () => {
      const socketPath = path.join(dir, 'vsock.sock');
      await hybridVsockVm(socketPath, () => false);
      const vmExited = new Promise<void>((r) => setTimeout(r, 200));
      const started = Date.now();
      const err = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, options(30_000, vmExited)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toBe('the VM exited before its agent answered');
      expect(Date.now() - started).toBeLessThan(3000);
    });
  });

  describe('over virtio-serial', () => {
    it('retries on the open connection until the agent reads it', async () => {
      // QEMU accepts the chardev connection at once; the agent starts reading later.
      const socketPath = path.join(dir, 'agent.sock');
      const agent = fakeAgent();
      const vmm = net.createServer((stream) => {
        stream.pause();
        setTimeout(() => {
          agent.server.serveConnection(stream);
          stream.resume();
        }, 300);
      });
      await new Promise<void>((r) => vmm.listen(socketPath, r));
      cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close());
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'virtio-serial', socketPath, portName: 'agent.channel.0' }, options(5000));
      client.close();
      expect(details).toEqual(FAKE_GUEST);
    });

    /**
     * A virtio-serial port as the guest sees it: one stream for the agent that outlives
     * every host connection (QEMU's chardev socket), with what the agent writes while no
     * host is connected kept for the next one. Records the stream ids hosts send.
     */
    async function persistentPort(socketPath: string, agent: FakeAgent, opts: { dropFirstConnection?: boolean } = {}) {
      const toAgent = new PassThrough();
      const fromAgent = new PassThrough();
      agent.server.serveConnection(Duplex.from({ readable: toAgent, writable: fromAgent }));
      const streamIds: number[][] = [];
      let connections = 0;
      const vmm = net.createServer((host) => {
        const ids: number[] = [];
        streamIds.push(ids);
        const drop = opts.dropFirstConnection && ++connections === 1;
        host.on('data', (chunk: Buffer) => {
          // Each test request arrives whole in one chunk: its header's stream id.
          for (let at = 0; at + 10 <= chunk.length; at += 10 + chunk.readUInt32BE(at)) ids.push(chunk.readUInt32BE(at + 4));
          toAgent.write(chunk);
          if (drop) host.destroy(); // the chardev connection lost after one request
        });
        fromAgent.pipe(host, { end: false });
        host.on('close', () => fromAgent.unpipe(host));
        host.on('error', () => undefined);
      });
      await new Promise<void>((r) => vmm.listen(socketPath, r));
      cleanups.push(() => new Promise((r) => vmm.close(r)), () => agent.server.close());
      return { streamIds, queueAnswer: (frame: Uint8Array) => fromAgent.write(frame) };
    }

    it("continues a session the agent still holds (a clone of a template): ids past the old ones, the old session's late answers matched to nothing", async () => {
      const socketPath = path.join(dir, 'agent.sock');
      const port = await persistentPort(socketPath, fakeAgent({ ListProcesses: () => ({ pids: [3] }) }));
      const channel = { kind: 'virtio-serial', socketPath, portName: 'agent.channel.0' } as const;
      const first = await TtrpcAgentClient.connect(channel, options(5000));
      const next = first.agent.unusedStreamId;
      first.agent.close();
      await first.agent.disconnected;
      // An answer the agent gave the first session after it had gone, still in the port.
      port.queueAnswer(encodeFrame(1, FrameType.Response, 0, encodeResponse(Code.INVALID_ARGUMENT, 'a late answer')));
      const second = await TtrpcAgentClient.connect(channel, { ...options(5000), firstStreamId: next });
      cleanups.push(() => second.agent.close());
      expect(second.details).toEqual(FAKE_GUEST);
      expect(await second.agent.listProcesses('c1')).toEqual([3]);
      // No id refused by the agent as reused (each would have been polled again).
      expect(port.streamIds).toEqual([[1], [3, 5]]);
    });

    it('carries the stream ids on when it dials again, so the agent never sees one twice', async () => {
      const socketPath = path.join(dir, 'agent.sock');
      const port = await persistentPort(socketPath, fakeAgent(), { dropFirstConnection: true });
      const { agent: client, details } = await TtrpcAgentClient.connect({ kind: 'virtio-serial', socketPath, portName: 'agent.channel.0' }, options(5000));
      cleanups.push(() => client.close());
      expect(details).toEqual(FAKE_GUEST);
      const ids = port.streamIds.flat();
      expect(port.streamIds.length).toBe(2);
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('fails at once when nothing listens on the socket', async () => {
      const socketPath = path.join(dir, 'agent.sock');
      await expect(TtrpcAgentClient.connect({ kind: 'virtio-serial', socketPath, portName: 'p' }, options(5000))).rejects.toThrow(new UnavailableError(`cannot connect to the agent channel ${socketPath}: connect ENOENT ${socketPath}`));
    });
  });

  it('times control calls by method once the agent answered; not the boot polls, nor waits and reads', async () => {
    const socketPath = path.join(dir, 'vsock.sock');
    let attempts = 0;
    const { agent } = await hybridVsockVm(socketPath, () => ++attempts > 1);
    // The fake answers ListProcesses; any other method is unimplemented there.
    const observed: string[] = [];
    const observeCall = (method: string, seconds: number, failed: boolean) => observed.push(`${method}${failed ? ' failed' : ''}${seconds >= 0 ? '' : ' negative'}`);
    // At debug level each timed call is logged too, to see where a pod's start goes.
    const logged = new PassThrough();
    const logger = createLogger(logged, 'debug');
    const { agent: client } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(5000), observeCall, logger });
    cleanups.push(() => client.close());
    expect(observed).toEqual([]);
    await client.listProcesses('c1');
    await expect(client.removeContainer('c1')).rejects.toThrow();
    await expect(client.waitProcess('c1', '')).rejects.toThrow(); // no deadline: blocks by design, not timed
    expect(observed).toEqual(['ListProcesses', 'RemoveContainer failed']);
    await new Promise((r) => setImmediate(r));
    const calls = String(logged.read() ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { msg: string; method?: string; ms?: number; failed?: boolean })
      .filter((line) => line.msg === 'agent call');
    expect(calls.map((c) => [c.method, c.failed, typeof c.ms])).toEqual([
      ['ListProcesses', false, 'number'],
      ['RemoveContainer', true, 'number'],
    ]);
  });

  it('answers a call whatever its observer throws', async () => {
    const socketPath = path.join(dir, 'vsock.sock');
    await hybridVsockVm(socketPath);
    const observeCall = () => {
      throw new Error('metrics broke');
    };
    const { agent: client } = await TtrpcAgentClient.connect({ kind: 'hybrid-vsock', socketPath, port: 1024 }, { ...options(5000), observeCall });
    cleanups.push(() => client.close());
    expect(await client.listProcesses('c1')).toEqual([1, 7]);
    // A failed call keeps its own error, mapped as ever.
    await expect(client.removeContainer('c1')).rejects.not.toThrow('metrics broke');
  });

  it('refuses AF_VSOCK, which it cannot dial', async () => {
    await expect(TtrpcAgentClient.connect({ kind: 'vsock', guestCid: 3, port: 1024 }, options(1000))).rejects.toThrow(NotImplementedError);
  });
});
