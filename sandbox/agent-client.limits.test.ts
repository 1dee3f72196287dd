// The shim's agent client against a fake agent: the project's own ttrpc server, in
// this process, serving the agent API. The guest is not trusted, so the fake may
// answer with more than the client accepts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ResourceExhaustedError } from '../lib/errors';
import { AGENT_SERVICE, lookupService } from '../lib/protos';
import { Code, DEFAULT_MAX_MESSAGE_SIZE, TtrpcClient, TtrpcServer } from '../ttrpc';
import { TtrpcAgentClient } from './agent-client';

describe('TtrpcAgentClient against a fake agent', () => {
  let dir: string;
  let server: TtrpcServer;
  let agent: TtrpcAgentClient;
  let releaseWait: (status: number) => void;
  let disconnected: boolean;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-client-'));
    // The fake sends what the shim's client must refuse: its own limit is far higher.
    server = new TtrpcServer({ maxMessageSize: 64 << 20 });
    const waited = new Promise<number>((resolve) => (releaseWait = resolve));
    server.addService(lookupService(AGENT_SERVICE), {
      GetGuestDetails: () => ({ agent_version: 'fake', kernel_release: '6.1.0-fake', boot_id: 'b', oci_runtime: 'crun' }),
      WaitProcess: async () => ({ status: await waited }),
      // A guest that ignores max_len for one container.
      ReadStdout: (req: { container_id: string; max_len: number }) =>
        req.container_id === 'flood' ? { data: Buffer.alloc(DEFAULT_MAX_MESSAGE_SIZE + 1024, 0x61), eof: false } : { data: Buffer.from('ok'), eof: true },
    });
    const socketPath = path.join(dir, 'agent.sock');
    await server.listen(socketPath);
    agent = new TtrpcAgentClient(await TtrpcClient.connect(socketPath), 10_000);
    disconnected = false;
    void agent.disconnected.then(() => (disconnected = true));
  });

  afterEach(async () => {
    agent.close();
    await server.close({ graceMs: 0 });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fails only the call whose reply is over the message limit, naming it, and keeps serving the others', async () => {
    const wait = agent.waitProcess('c1', ''); // in flight on the same connection throughout
    const err = await agent.readStdout('flood', '', 65536).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as ResourceExhaustedError).grpcCode).toBe(Code.RESOURCE_EXHAUSTED);
    expect((err as Error).message).toMatch(/^guest agent ReadStdout: message length \d+ exceeds maximum message size of 4194304$/);

    // The connection is fine: other calls, new and pending, are answered.
    expect(await agent.readStdout('c1', '', 65536)).toEqual({ data: Buffer.from('ok'), eof: true });
    expect((await agent.guestDetails()).kernel_release).toBe('6.1.0-fake');
    releaseWait(7);
    expect(await wait).toBe(7);
    expect(disconnected).toBe(false);
  });
});
