import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { listeningUnixSocket, rateLimited } from './vmm-process';

describe('rateLimited (a VMM or virtiofsd whose stderr the guest can fill)', () => {
  it('opens `limit` times per window, then counts, and reports the count when the window ends', () => {
    let now = 0;
    const reported: number[] = [];
    const gate = rateLimited(2, 60_000, (n) => reported.push(n), () => now);
    expect([gate(), gate(), gate(), gate(), gate()]).toEqual([true, true, false, false, false]);
    expect(reported).toEqual([]);
    now = 60_000;
    expect(gate()).toBe(true);
    expect(reported).toEqual([3]);
    now = 120_000;
    expect(gate()).toBe(true);
    expect(reported).toEqual([3]); // nothing was refused in the second window
  });
});

describe('listeningUnixSocket (a daemon socket is ready only once it listens, not when its file appears)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'listening-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds a listening socket in /proc/net/unix, and not one that is only bound', async () => {
    const listening = path.join(dir, 'listening.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(listening, resolve));
    try {
      expect(await listeningUnixSocket(listening)).toBe(true);
      expect(await listeningUnixSocket(path.join(dir, 'absent.sock'))).toBe(false);
    } finally {
      server.close();
    }
    // What /proc/net/unix shows between bind() and listen(): the path, without __SO_ACCEPTCON.
    const table = path.join(dir, 'unix');
    fs.writeFileSync(table, [
      'Num       RefCount Protocol Flags    Type St Inode Path',
      `0000000000000000: 00000002 00000000 00000000 0001 01 101 ${path.join(dir, 'bound.sock')}`,
      `0000000000000000: 00000002 00000000 00010000 0001 01 102 ${path.join(dir, 'ready.sock')}`,
    ].join('\n'));
    expect(await listeningUnixSocket(path.join(dir, 'bound.sock'), table)).toBe(false);
    expect(await listeningUnixSocket(path.join(dir, 'ready.sock'), table)).toBe(true);
    expect(await listeningUnixSocket(path.join(dir, 'ready.sock'), path.join(dir, 'no-table'))).toBe(true);
  });
});
