// Fuzzing the shim's request path: the real TaskService behind a real TtrpcServer,
// fed random frames and random protobuf payloads for every Task method. The server
// must never crash, must answer every well-framed request with a status, and must
// still serve a valid request afterwards. Seeded, so a failure reproduces.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig } from '../config/runtime-config';
import { silentLogger } from '../lib/logger';
import { lookupService, TASK_SERVICE } from '../lib/protos';
import { decodeResponse } from '../ttrpc/messages';
import { Pod } from '../sandbox/pod';
import { FrameDecoder, FrameType, encodeFrame, TtrpcClient, TtrpcServer } from '../ttrpc';
import { seededRandom } from '../ttrpc/test-helpers';
import { EventPublisher } from './events';
import { TaskService } from './task-service';

const ITERATIONS = 1500;

function encodeTtrpcRequest(service: string, method: string, payload: Uint8Array): Buffer {
  // ttrpc Request{service=1, method=2, payload=3, timeout_nano=4}
  const parts: Buffer[] = [];
  const field = (no: number, bytes: Buffer): void => {
    parts.push(Buffer.from([(no << 3) | 2]), varint(bytes.length), bytes);
  };
  field(1, Buffer.from(service));
  field(2, Buffer.from(method));
  field(3, Buffer.from(payload));
  parts.push(Buffer.from([4 << 3]), varint(2_000_000_000)); // 2 s deadline
  return Buffer.concat(parts);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

describe('Task service under random input', () => {
  let server: TtrpcServer;
  let socketPath: string;
  let dir: string;
  const shutdowns: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-'));
    socketPath = path.join(dir, 'shim.sock');
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'vm');
    const events: EventPublisher = { publish: () => undefined, flush: async () => undefined, close: async () => undefined };
    // No VM may ever start from fuzz input: the hypervisor factory fails loudly.
    const pod = new Pod({
      namespace: 'default',
      resolveConfig: () => ({ config, files: [], via: 'test' }),
      newHypervisor: () => {
        throw new Error('fuzz input must not reach the hypervisor');
      },
    }, { onExit: () => undefined, onOom: () => undefined }, silentLogger());
    const service = new TaskService({ pod, events, logger: silentLogger(), shutdown: async () => void shutdowns.push('shutdown') });
    server = new TtrpcServer({ logger: silentLogger() });
    server.addService(lookupService(TASK_SERVICE), service.handlers());
    await server.listen(socketPath);
  });

  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`answers ${ITERATIONS} random requests with a status each and stays up`, async () => {
    const random = seededRandom(0x5eed);
    const methods = Object.keys(lookupService(TASK_SERVICE).methods);
    const socket = net.createConnection(socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    const decoder = new FrameDecoder();
    const answered = new Map<number, { code: number; message: string }>(); // stream id → status
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        if ('frame' in item && item.frame.type === FrameType.Response) {
          answered.set(item.frame.streamId, responseStatus(item.frame.data));
        }
      }
    });

    const expected: number[] = [];
    let streamId = 1;
    for (let i = 0; i < ITERATIONS; i++) {
      const roll = random();
      const payload = Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256)));
      if (roll < 0.1) {
        // Garbage after a valid header with an unknown frame type: ignored, like containerd.
        socket.write(encodeFrame(streamId, 0x7f as FrameType, 0, payload, Infinity));
        streamId += 2;
        continue;
      }
      const method = roll < 0.2 ? `Nope${i}` : methods[Math.floor(random() * methods.length)];
      // 10%: the Request envelope itself is garbage; otherwise a random payload for a real
      // (or unknown) method. No container ever exists, so Wait and friends fail fast, and
      // Create fails reading a bundle that is not there.
      const body = roll < 0.3 ? payload : encodeTtrpcRequest(TASK_SERVICE, method, payload);
      socket.write(encodeFrame(streamId, FrameType.Request, 0, body, Infinity));
      expected.push(streamId);
      streamId += 2;
    }
    const deadline = Date.now() + 20_000;
    while (answered.size < expected.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const unanswered = expected.filter((id) => !answered.has(id));
    expect(unanswered).toEqual([]);
    // A known code each, and an error always says what went wrong.
    const bad = [...answered].filter(([, { code, message }]) => !(Number.isInteger(code) && code >= 0 && code <= 16) || (code !== 0 && message.trim() === ''));
    expect(bad).toEqual([]);
    expect([...answered.values()].filter(({ code }) => code !== 0).length).toBeGreaterThan(0);
    socket.destroy();

    // Still serving: a valid Connect on a new connection.
    const client = await TtrpcClient.connect(socketPath);
    const connect = await client.call(lookupService(TASK_SERVICE), 'Connect', { id: 'x' }, { timeoutMs: 2000 });
    expect(connect.shim_pid).toBe(process.pid);
    client.close();
  });
});

/** The status of an encoded ttrpc Response; OK when absent. */
function responseStatus(data: Buffer): { code: number; message: string } {
  const status = decodeResponse(data).status;
  return { code: status?.code ?? 0, message: status?.message ?? '' };
}
