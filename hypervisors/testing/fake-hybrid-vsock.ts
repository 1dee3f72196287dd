// The VMM's side of hybrid vsock, for tests: reads `CONNECT <port>\n`; if the fake
// guest listens on that port, answers `OK <host port>\n` and hands the stream to the
// guest's service (or echoes it back, as if one did), otherwise closes the connection,
// which is what Cloud Hypervisor and Firecracker do when the guest resets it.
// Runs inside the fake VMM process too, so it imports node built-ins only.
import * as net from 'net';

export interface FakeGuest {
  isListening(port: number): boolean;
  /** Sent in the same write as the acknowledgement, as a guest that speaks first would. */
  greeting?: string;
  /** The guest service on `port` takes the accepted stream; without one, the stream is echoed. */
  accept?(port: number, stream: net.Socket): void;
}

/** Real VMMs number host-side ports from 2^30 up; any number will do for the client. */
const FIRST_HOST_PORT = 1 << 30;

export function serveHybridVsock(socketPath: string, guest: FakeGuest): Promise<net.Server> {
  let nextHostPort = FIRST_HOST_PORT;
  const server = net.createServer((socket) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const newline = received.indexOf(0x0a);
      if (newline < 0) return;
      socket.off('data', onData);
      const match = /^CONNECT (\d+)$/.exec(received.subarray(0, newline).toString('latin1'));
      const port = Number(match?.[1]);
      if (!match || !guest.isListening(port)) {
        socket.destroy();
        return;
      }
      socket.write(`OK ${nextHostPort++}\n${guest.greeting ?? ''}`);
      // Bytes the host sent right behind the CONNECT line belong to the guest's stream.
      const early = received.subarray(newline + 1);
      if (guest.accept) {
        socket.pause();
        if (early.length > 0) socket.unshift(early);
        guest.accept(port, socket);
        socket.resume(); // the service has its listeners now
        return;
      }
      if (early.length > 0) socket.write(early);
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
