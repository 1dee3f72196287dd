import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { QmpClient } from './qmp';

/** A QMP peer that answers `query-status` only when told to, and everything else at once. */
function fakeQmp(socketPath: string): { server: net.Server; releaseStatus: () => void } {
  const held: (() => void)[] = [];
  const server = net.createServer((socket) => {
    socket.write(JSON.stringify({ QMP: { version: {}, capabilities: [] } }) + '\n');
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const { execute } = JSON.parse(buffer.slice(0, nl)) as { execute: string };
        buffer = buffer.slice(nl + 1);
        const reply = (): boolean => socket.write(JSON.stringify({ return: { answered: execute } }) + '\n');
        // In order, like QEMU: once one command is held, every later reply waits behind it.
        if (execute === 'query-status' || held.length > 0) held.push(reply);
        else reply();
      }
    });
  });
  server.listen(socketPath);
  return { server, releaseStatus: () => held.splice(0).forEach((r) => r()) };
}

describe('QmpClient', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-qmp-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('bounds each command, naming it, and keeps later replies matched to their commands', async () => {
    const socketPath = path.join(dir, 'qmp.sock');
    const peer = fakeQmp(socketPath);
    const qmp = await QmpClient.connect(socketPath, 2000);
    try {
      await expect(qmp.execute('query-status', undefined, 200)).rejects.toThrow('QMP query-status: no answer within 200 ms (QEMU stopped or wedged?)');
      const next = qmp.execute('query-cpus-fast');
      peer.releaseStatus(); // the late reply arrives first and must not be taken for the next command's
      expect(await next).toEqual({ answered: 'query-cpus-fast' });
    } finally {
      qmp.close();
      peer.server.close();
    }
  });
});
