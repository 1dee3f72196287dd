// The leak snapshot's view of spare shim daemons and of a process's sockets.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { isWaitingSpare, unixSocketsOf } from './leaks';

describe('leak snapshots', () => {
  let tmp: string;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-leaks-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('finds the Unix sockets a process holds, spaces in their paths too', async () => {
    const socket = path.join(tmp, 'held by me.sock');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      expect(unixSocketsOf(process.pid)).toContain(socket);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(unixSocketsOf(process.pid)).not.toContain(socket);
    expect(unixSocketsOf(999_999_999)).toEqual([]);
  });

  it('takes a spare for waiting only while its pool holds an entry of its own and it is in no bundle', () => {
    const argv = ['/usr/bin/node', '/opt/kata-ts/dist/shim/main.js', '-namespace', 'k8s.io', '-spares-dir', tmp, '-spares', '1', '-nice', '0', 'spare'];
    const inRoot = () => '/';
    expect(isWaitingSpare({ argv, pid: 42 }, inRoot)).toBe(false); // claimed: a pod's daemon now
    for (const suffix of ['.starting', '.sock', '.claimed']) {
      fs.writeFileSync(path.join(tmp, `42${suffix}`), '');
      expect(isWaitingSpare({ argv, pid: 42 }, inRoot)).toBe(true);
      expect(isWaitingSpare({ argv, pid: 42 }, () => '/run/containerd/io.containerd.runtime.v2.task/k8s.io/pod')).toBe(false);
      expect(isWaitingSpare({ argv, pid: 43 }, inRoot)).toBe(false);
      fs.rmSync(path.join(tmp, `42${suffix}`));
    }
    // Stuck in its start for minutes: reported, not waited on.
    fs.writeFileSync(path.join(tmp, '42.starting'), '');
    const old = new Date(Date.now() - 5 * 60_000);
    fs.utimesSync(path.join(tmp, '42.starting'), old, old);
    expect(isWaitingSpare({ argv, pid: 42 }, inRoot)).toBe(false);
    fs.writeFileSync(path.join(tmp, '42.sock'), '');
    expect(isWaitingSpare({ argv: [...argv.slice(0, -1), 'daemon'], pid: 42 }, inRoot)).toBe(false);
  });
});
