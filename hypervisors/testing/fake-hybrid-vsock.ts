// The VMM's side of hybrid vsock, for tests: reads `CONNECT <port>\n`; if the fake
// guest listens on that port, answers `OK <host port>\n` and echoes the stream back
// (as if a guest service did), otherwise closes the connection, which is what Cloud
// Hypervisor and Firecracker do when the guest resets it.
// Runs inside the fake VMM process too, so it imports node built-ins only.
import * as net from 'net';

export interface FakeGuest {
  isListening(port: number): boolean;
  /** Sent in the same write as the acknowledgement, as a guest that speaks first would. */
  greeting?: string;
}

/** Real VMMs number host-side ports from 2^30 up; any number will do for the client. */
const FIRST_HOST_PORT = 1 << 30;

export function serveHybridVsock(socketPath: string, guest: FakeGuest): Promise<net.Server> {
  let nextHostPort = FIRST_HOST_PORT;
  const server = net.createServer((socket) => {
    let line = '';
    const onData = (chunk: Buffer): void => {
      line += chunk.toString('latin1');
      const newline = line.indexOf('\n');
      if (newline < 0) return;
      socket.off('data', onData);
      const match = /^CONNECT (\d+)$/.exec(line.slice(0, newline));
      if (!match || !guest.isListening(Number(match[1]))) {
        socket.destroy();
        return;
      }
      socket.write(`OK ${nextHostPort++}\n${guest.greeting ?? ''}`);
      const early = line.slice(newline + 1);
      if (early) socket.write(early, 'latin1');
      socket.pipe(socket);
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}
