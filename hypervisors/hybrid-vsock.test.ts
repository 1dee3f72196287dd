import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { DeadlineExceededError, UnavailableError } from '../lib/errors';
import { connectHybridVsock } from './hybrid-vsock';
import { serveHybridVsock } from './testing/fake-hybrid-vsock';

function readExactly(socket: net.Socket, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (text.length >= length) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

describe('connectHybridVsock', () => {
  let dir: string;
  let socketPath: string;
  const servers: net.Server[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hvsock-'));
    socketPath = path.join(dir, 'vsock.sock');
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const serve = async (guest: Parameters<typeof serveHybridVsock>[1]): Promise<void> => {
    servers.push(await serveHybridVsock(socketPath, guest));
  };

  it('hands over the stream after the OK, keeping bytes the guest sent with it', async () => {
    await serve({ isListening: (port) => port === 1024, greeting: 'hello' });
    const socket = await connectHybridVsock(socketPath, 1024, 2000);
    try {
      expect(await readExactly(socket, 5)).toBe('hello');
      socket.write('ping');
      expect(await readExactly(socket, 4)).toBe('ping');
    } finally {
      socket.destroy();
    }
  });

  it('retries while the guest is not listening yet', async () => {
    let attempts = 0;
    await serve({ isListening: () => ++attempts >= 3 });
    const socket = await connectHybridVsock(socketPath, 1024, 5000);
    socket.destroy();
    expect(attempts).toBe(3);
  });

  it('retries while the VMM has not created its socket yet', async () => {
    const connecting = connectHybridVsock(socketPath, 1024, 5000);
    await new Promise((r) => setTimeout(r, 150));
    await serve({ isListening: () => true });
    (await connecting).destroy();
  });

  it('gives up at the deadline, naming the socket, the port and the last reason', async () => {
    await serve({ isListening: () => false });
    const err = await connectHybridVsock(socketPath, 2049, 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).message).toMatch(new RegExp(`${socketPath}: guest port 2049 did not accept a connection within 300 ms \\(last attempt: the VMM closed the connection`));
  });

  it('treats an answer other than OK as a refusal', async () => {
    const server = net.createServer((s) => s.resume().end('NOPE\n'));
    servers.push(server);
    await new Promise<void>((r) => server.listen(socketPath, r));
    await expect(connectHybridVsock(socketPath, 1024, 200)).rejects.toThrow(/last attempt: unexpected answer "NOPE"/);
  });

  it('stops retrying when told to, well before the deadline', async () => {
    await serve({ isListening: () => false });
    const abort = new AbortController();
    const started = Date.now();
    const connecting = connectHybridVsock(socketPath, 1024, 10_000, { signal: abort.signal });
    setTimeout(() => abort.abort(), 200);
    const err = await connecting.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/guest port 1024 was abandoned \(last attempt: the VMM closed the connection/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('abandons an attempt the VMM never answers and dials again, with a longer wait each time', async () => {
    // The first two requests are swallowed (the VMM read them, the guest never answered,
    // nothing closes them); the third is answered.
    const silent: net.Socket[] = [];
    const closedByClient: boolean[] = [];
    const server = net.createServer((s) => {
      s.once('data', () => {
        if (silent.length < 2) {
          const index = silent.push(s) - 1;
          closedByClient[index] = false;
          s.on('close', () => (closedByClient[index] = true));
        } else {
          s.end('OK 1073741824\n');
        }
      });
      s.on('error', () => undefined);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(socketPath, r));
    const started = Date.now();
    const socket = await connectHybridVsock(socketPath, 1024, 20_000, { firstAnswerTimeoutMs: 200 });
    const elapsed = Date.now() - started;
    socket.destroy();
    expect(silent).toHaveLength(2);
    expect(closedByClient).toEqual([true, true]);
    // 200 ms, then 400 ms: well before the deadline, and the second wait was the longer.
    expect(elapsed).toBeGreaterThanOrEqual(600);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('waits briefly again after a refusal: one early silence does not slow every later attempt', async () => {
    // Silent, silent, refused, silent, answered: the last silence is waited for 100 ms again, not 400.
    const script = ['silent', 'silent', 'refuse', 'silent', 'ok'];
    const stamps: number[] = [];
    const held: net.Socket[] = [];
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => {
        stamps.push(Date.now());
        const step = script.shift();
        if (step === 'refuse') s.destroy();
        else if (step === 'ok') s.end('OK 1073741824\n');
        else held.push(s);
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(socketPath, r));
    const socket = await connectHybridVsock(socketPath, 1024, 20_000, { firstAnswerTimeoutMs: 100 });
    socket.destroy();
    held.forEach((s) => s.destroy());
    expect(stamps).toHaveLength(5);
    // The fourth attempt (silent) is abandoned after ~100 ms, not ~400 ms: the fifth follows soon.
    expect(stamps[4] - stamps[3]).toBeLessThan(350);
    // The second wait was the doubled one.
    expect(stamps[2] - stamps[1]).toBeGreaterThanOrEqual(200);
  });

  it('gives up at the deadline when nothing ever answers, saying so', async () => {
    const server = net.createServer((s) => s.resume().on('error', () => undefined));
    servers.push(server);
    await new Promise<void>((r) => server.listen(socketPath, r));
    const err = await connectHybridVsock(socketPath, 1024, 500, { firstAnswerTimeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).message).toMatch(/last attempt: no answer within \d+ ms/);
  });

  it('rejects a port that is not a vsock port', async () => {
    await expect(connectHybridVsock(socketPath, -1, 100)).rejects.toThrow(RangeError);
  });
});
