// One debug console session, with a real shell on a real pseudo-terminal and the
// port's host played by an in-memory stream (the port's own semantics need a VM:
// tests/e2e/debug-console.test.ts).
import * as fs from 'fs';
import { Duplex } from 'stream';
import { shellExitNotice } from '../lib/debug-console';
import { silentLogger } from '../lib/logger';
import { serveConnection } from './debug-console';
import { DebugShell, DEFAULT_SHELL, spawnDebugShell } from './debug-shell';

/** The host end of the port: what the session wrote, and ways to type and to leave. */
class FakeHost extends Duplex {
  received = Buffer.alloc(0);
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.received = Buffer.concat([this.received, chunk]);
    callback();
  }
  type(text: string): void {
    this.push(Buffer.from(text));
  }
  leave(): void {
    this.push(null);
  }
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this.received.toString('latin1').match(pattern);
      if (match) return match;
      if (Date.now() > deadline) throw new Error(`never received ${pattern}; got ${JSON.stringify(this.received.toString('latin1'))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('debug console session', () => {
  jest.setTimeout(30_000);
  const hosts: FakeHost[] = [];
  const shells: DebugShell[] = [];
  const newHost = (): FakeHost => {
    const host = new FakeHost();
    hosts.push(host);
    return host;
  };
  /** The guest's shell, but with the host's sh and a writable cwd. */
  const shellHere = (): DebugShell => {
    const shell = spawnDebugShell({ ...DEFAULT_SHELL, command: ['/bin/sh'], cwd: '/tmp' });
    shells.push(shell);
    return shell;
  };
  // A failed test must not leave its shells running (nor a connection that would start more).
  afterEach(async () => {
    for (const host of hosts.splice(0)) host.destroy();
    for (const shell of shells.splice(0)) {
      shell.hangUp(0);
      await shell.exited;
    }
  });

  it('relays a terminal shell both ways, input typed ahead first; after its exit the host is told and gets a new shell', async () => {
    const host = newHost();
    const connection = serveConnection(host, shellHere, Buffer.from('echo "typed $((40 + 2))"\n'), silentLogger());
    await host.waitFor(/typed 42/);
    host.type('[ -t 0 ] && echo "on a terminal, TERM=$TERM HOME=$HOME"; exit 5\n');
    await host.waitFor(/on a terminal, TERM=xterm HOME=\/root/);
    const notice = shellExitNotice(5).toString('latin1');
    await host.waitFor(new RegExp(notice.replace(/[\x1b\]\[;.()]/g, (c) => `\\${c}`)));
    expect(await shells[0].exited).toBe(5);
    // Typed before the next shell is there: it gets it.
    host.type('echo "again $((1 + 1))"\n');
    await host.waitFor(/again 2/);
    // Leaving hangs the second shell up and ends the connection.
    host.leave();
    await connection;
    expect(shells).toHaveLength(2);
    expect(await shells[1].exited).toBe(128 + 1); // SIGHUP
    expect(host.destroyed).toBe(true);
  });

  it('hangs the shell up when the host leaves, ending its foreground job too', async () => {
    const host = newHost();
    const shell = shellHere();
    const connection = serveConnection(host, () => shell, Buffer.alloc(0), silentLogger());
    host.type("sh -c 'echo sleeper=$$; exec sleep 1000'\n");
    const sleeper = Number((await host.waitFor(/sleeper=(\d+)/))[1]);
    expect(isAlive(sleeper)).toBe(true);
    host.leave();
    await connection;
    expect(await shell.exited).toBe(128 + 1); // SIGHUP
    await waitUntil(() => !isAlive(sleeper));
  });

  it('kills a shell that ignores the hang-up', async () => {
    const host = newHost();
    const shell = shellHere();
    const connection = serveConnection(host, () => shell, Buffer.alloc(0), silentLogger());
    host.type("trap '' HUP; echo \"ignoring $((1 + 1))\"\n");
    await host.waitFor(/ignoring 2/);
    host.leave();
    await connection;
    expect(await shell.exited).toBe(128 + 9); // SIGKILL
  });
});

/** Running, as opposed to gone or a zombie (this container's pid 1 may not reap orphans). */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition never became true');
    await new Promise((r) => setTimeout(r, 50));
  }
}
