// The client half of a CRI PortForward, as kubectl port-forward speaks it over
// WebSocket: CriClient.portForward() returns a URL on containerd's streaming server,
// and this connects to it, carries one TCP exchange to the pod's port and back, and
// returns what came back. containerd 1.6 (pkg/cri/streaming/portforward/websocket.go,
// k8s.io/apiserver wsstream) serves subprotocol "v4.channel.k8s.io": two channels per
// port, 0 data and 1 error, each message prefixed with its channel byte; the server
// first writes the port (uint16 little endian) on both. It dials the pod's port when
// the connection opens and closes the WebSocket once that connection ended.
//
// A minimal RFC 6455 client (node 20 has no WebSocket): one unfragmented masked binary
// frame out, frames in until the server closes.
import { randomBytes } from 'crypto';
import * as net from 'net';

export interface PortForwardResult {
  /** Bytes from the pod's port (channel 0, after the port prefix). */
  data: Buffer;
  /** Text containerd wrote on the error channel (e.g. "failed to connect to localhost:80 ..."). */
  error: string;
}

const PROTOCOL = 'v4.channel.k8s.io';

/**
 * Sends `request` to `port` through the streaming URL and collects the answer until the
 * server closes the WebSocket (it does once the pod's end of the connection closed).
 */
export function portForwardExchange(url: string, port: number, request: string | Buffer, opts: { timeoutMs?: number } = {}): Promise<PortForwardResult> {
  const target = new URL(url);
  target.searchParams.append('port', String(port));
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(target.port), target.hostname);
    const timer = setTimeout(() => fail(new Error(`port-forward to ${port} via ${url}: no end within ${opts.timeoutMs ?? 30_000} ms`)), opts.timeoutMs ?? 30_000);
    let buffered = Buffer.alloc(0);
    let upgraded = false;
    const channels: Buffer[][] = [[], []];
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      // Each channel starts with the port the server writes on it.
      const [data, error] = channels.map((parts) => Buffer.concat(parts));
      if (data.length >= 2 && data.readUInt16LE(0) !== port) return reject(new Error(`port-forward: data channel announced port ${data.readUInt16LE(0)}, not ${port}`));
      resolve({ data: data.subarray(2), error: error.subarray(2).toString('utf8') });
    };
    socket.on('connect', () => {
      socket.write(
        [
          `GET ${target.pathname}${target.search} HTTP/1.1`,
          `Host: ${target.host}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
          `Sec-WebSocket-Protocol: ${PROTOCOL}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!upgraded) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        if (!/^HTTP\/1\.1 101 /.test(head)) return fail(new Error(`port-forward: the streaming server refused the upgrade: ${head.split('\r\n')[0]}`));
        upgraded = true;
        buffered = buffered.subarray(end + 4);
        socket.write(frame(Buffer.concat([Buffer.from([0]), Buffer.from(request)])));
      }
      for (;;) {
        const parsed = parseFrame(buffered);
        if (!parsed) return;
        buffered = buffered.subarray(parsed.length);
        if (parsed.opcode === 0x8) return finish(); // close
        if (parsed.opcode === 0x9) socket.write(frame(parsed.payload, 0xa)); // ping -> pong
        if ((parsed.opcode === 0x2 || parsed.opcode === 0x0) && parsed.payload.length > 0) {
          const channel = parsed.payload[0];
          if (channel < channels.length) channels[channel].push(parsed.payload.subarray(1));
        }
      }
    });
    socket.on('end', () => (upgraded ? finish() : fail(new Error('port-forward: the streaming server closed before the upgrade'))));
    socket.on('error', (err) => fail(err));
  });
}

/** A masked client frame (FIN set). */
function frame(payload: Buffer, opcode = 0x2): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]) : undefined;
  if (!head) throw new Error('port-forward: request too large for this client');
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, masked]);
}

function parseFrame(buf: Buffer): { opcode: number; payload: Buffer; length: number } | undefined {
  if (buf.length < 2) return undefined;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    offset = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  const maskKey = masked ? buf.subarray(offset, offset + 4) : undefined;
  if (masked) offset += 4;
  if (buf.length < offset + len) return undefined;
  let payload = buf.subarray(offset, offset + len);
  if (maskKey) payload = Buffer.from(payload.map((b, i) => b ^ maskKey[i % 4]));
  return { opcode, payload, length: offset + len };
}
