// Saving and restoring a template's state over QMP, against a fake QMP server that
// plays QEMU's part of the stream: it writes to the shim's socket on `migrate` and reads
// from its own listening socket on `migrate-incoming`.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { FakeQmp, QmpAnswer, QmpCommand } from '../testing/fake-qmp';
import { VmExit } from '../hypervisor';
import { QmpClient } from './qmp';
import { HypervisorError, TemplateRestoreError } from '../../lib/errors';
import { MigrationRejectedError, restoreFailure, restoreTemplateState, saveTemplateState } from './template-migration';

describe('template state over QMP', () => {
  let dir: string;
  let fake: FakeQmp;
  let qmp: QmpClient;
  const running: Promise<VmExit> = new Promise(() => undefined);

  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-mig-'))));
  afterEach(async () => {
    qmp?.close();
    await fake?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function connect(answer: (command: QmpCommand) => QmpAnswer): Promise<void> {
    fake = await FakeQmp.start(answer);
    qmp = await QmpClient.connect(fake.socketPath, 2000);
  }

  it('stops the VM, leaves shared RAM out and writes the stream QEMU sends into a new 0600 file', async () => {
    const stream = Buffer.from('QEVM device state '.repeat(1000));
    let polls = 0;
    await connect((c) => {
      if (c.execute === 'migrate') {
        const socket = net.connect(String(c.arguments?.uri).replace(/^unix:/, ''));
        socket.end(stream);
      }
      if (c.execute === 'query-migrate') return { return: { status: ++polls < 3 ? 'active' : 'completed' } };
      return {};
    });
    const state = path.join(dir, 'state');
    await saveTemplateState(qmp, path.join(dir, 'migrate.sock'), state, running);
    expect(fake.commands.slice(0, 3)).toEqual([
      { execute: 'stop' },
      { execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'x-ignore-shared', state: true }] } },
      { execute: 'migrate', arguments: { uri: `unix:${path.join(dir, 'migrate.sock')}` } },
    ]);
    expect(fs.readFileSync(state)).toEqual(stream);
    expect(fs.statSync(state).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(path.join(dir, 'migrate.sock'))).toBe(false);
  });

  it('never writes through a file or symlink that is already there', async () => {
    await connect((c) => {
      if (c.execute === 'migrate') net.connect(String(c.arguments?.uri).replace(/^unix:/, '')).on('error', () => undefined).end('stream');
      return c.execute === 'query-migrate' ? { return: { status: 'completed' } } : {};
    });
    const target = path.join(dir, 'target');
    fs.writeFileSync(target, 'keep');
    const state = path.join(dir, 'state');
    fs.symlinkSync(target, state);
    await expect(saveTemplateState(qmp, path.join(dir, 'migrate.sock'), state, running, 2000)).rejects.toThrow(/EEXIST/);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep');
  });

  it('names the failure QEMU reports', async () => {
    await connect((c) => (c.execute === 'query-migrate' ? { return: { status: 'failed', 'error-desc': 'Unable to write to socket' } } : {}));
    await expect(saveTemplateState(qmp, path.join(dir, 'migrate.sock'), path.join(dir, 'state'), running)).rejects.toThrow('saving the template failed: Unable to write to socket');
  });

  it('streams the state file into the socket QEMU listens on, and waits for the load', async () => {
    const content = Buffer.from('saved state');
    let received: Buffer | undefined;
    const incoming = path.join(dir, 'migrate.sock');
    await connect((c) => {
      if (c.execute === 'migrate-incoming') {
        // As QEMU: listen on the URI's socket and read the stream to its end.
        const server = net.createServer((socket) => {
          const chunks: Buffer[] = [];
          socket.on('data', (d) => chunks.push(d)).on('end', () => {
            received = Buffer.concat(chunks);
            server.close();
          });
        });
        server.listen(String(c.arguments?.uri).replace(/^unix:/, ''));
      }
      if (c.execute === 'query-migrate') return { return: { status: received ? 'completed' : 'active' } };
      return {};
    });
    // QEMU's listen happens while answering migrate-incoming, before the shim dials.
    await restoreTemplateState(qmp, incoming, content, running);
    expect(received).toEqual(content);
    expect(fake.commands[0]).toEqual({ execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'x-ignore-shared', state: true }] } });
    expect(fake.commands[1]).toEqual({ execute: 'migrate-incoming', arguments: { uri: `unix:${incoming}` } });
  });

  it('fails at once when QEMU exits during the load (as it does on a bad stream)', async () => {
    const servers: net.Server[] = [];
    await connect((c) => {
      // QEMU listens and takes the stream, then gives up on it.
      if (c.execute === 'migrate-incoming') servers.push(net.createServer((socket) => socket.resume()).listen(String(c.arguments?.uri).replace(/^unix:/, '')));
      return c.execute === 'query-migrate' ? { return: { status: 'active' } } : {};
    });
    const exited = Promise.resolve({ code: 1, signal: null });
    const failure = restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.from('garbage'), exited);
    await expect(failure).rejects.toThrow('restoring the template: QEMU exited (code 1, signal null)');
    // QEMU ended itself: it refused the state.
    await expect(failure).rejects.toBeInstanceOf(MigrationRejectedError);
    for (const server of servers) server.close();
  });

  it('takes QEMU ending itself as a refusal when its QMP closes before its exit is seen', async () => {
    const servers: net.Server[] = [];
    let resolveExit!: (exit: VmExit) => void;
    const exited = new Promise<VmExit>((r) => (resolveExit = r));
    await connect((c) => {
      if (c.execute === 'migrate-incoming') servers.push(net.createServer((socket) => socket.resume()).listen(String(c.arguments?.uri).replace(/^unix:/, '')));
      if (c.execute === 'query-migrate') {
        // "load of migration failed": QEMU exits; its QMP socket goes first, its exit status a moment later.
        fake.dropClient();
        setTimeout(() => resolveExit({ code: 1, signal: null }), 100);
      }
      return c.execute === 'query-migrate' ? { return: { status: 'active' } } : {};
    });
    try {
      const failure = restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.from('not a migration stream'), exited);
      await expect(failure).rejects.toThrow('restoring the template: QEMU exited (code 1, signal null)');
      await expect(failure).rejects.toBeInstanceOf(MigrationRejectedError);
    } finally {
      for (const server of servers) server.close();
    }
  });

  it('does not call a QEMU that was killed (the pod cgroup\'s OOM killer) or a cancelled load a refusal of the state', async () => {
    const servers: net.Server[] = [];
    let status = 'active';
    await connect((c) => {
      if (c.execute === 'migrate-incoming') servers.push(net.createServer((socket) => socket.resume()).listen(String(c.arguments?.uri).replace(/^unix:/, '')));
      return c.execute === 'query-migrate' ? { return: { status } } : {};
    });
    const killed = restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.from('state'), Promise.resolve({ code: null, signal: 'SIGKILL' }));
    await expect(killed).rejects.toThrow('restoring the template: QEMU exited (code null, signal SIGKILL)');
    await expect(killed).rejects.not.toBeInstanceOf(MigrationRejectedError);
    status = 'cancelled';
    const cancelled = restoreTemplateState(qmp, path.join(dir, 'migrate2.sock'), Buffer.from('state'), running);
    await expect(cancelled).rejects.toThrow('restoring the template was cancelled');
    await expect(cancelled).rejects.not.toBeInstanceOf(MigrationRejectedError);
    for (const server of servers) server.close();
  });

  it('makes only a refusal of the state a TemplateRestoreError, the error that removes a template', () => {
    const refused = restoreFailure(new MigrationRejectedError('restoring the template failed: load of migration failed'));
    expect(refused).toBeInstanceOf(TemplateRestoreError);
    expect(refused.message).toBe('restoring the template failed: load of migration failed');
    const killed = new HypervisorError('restoring the template: QEMU exited (code null, signal SIGKILL)');
    expect(restoreFailure(killed)).toBe(killed);
    expect(restoreFailure(killed)).not.toBeInstanceOf(TemplateRestoreError);
  });

  it('calls a load QEMU reports failed a refusal of the state', async () => {
    const servers: net.Server[] = [];
    await connect((c) => {
      if (c.execute === 'migrate-incoming') servers.push(net.createServer((socket) => socket.resume()).listen(String(c.arguments?.uri).replace(/^unix:/, '')));
      return c.execute === 'query-migrate' ? { return: { status: 'failed', 'error-desc': 'load of migration failed: Invalid argument' } } : {};
    });
    const failure = restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.from('state'), running);
    await expect(failure).rejects.toThrow('restoring the template failed: load of migration failed: Invalid argument');
    await expect(failure).rejects.toBeInstanceOf(MigrationRejectedError);
    for (const server of servers) server.close();
  });

  it('takes a load QEMU reports done even when QEMU closed the stream before the copy finished', async () => {
    let closed = false;
    const servers: net.Server[] = [];
    await connect((c) => {
      if (c.execute === 'migrate-incoming') {
        servers.push(
          net
            .createServer((socket) => {
              socket.once('data', () => {
                socket.destroy(); // as QEMU once its loader is done with the socket
                closed = true;
              });
            })
            .listen(String(c.arguments?.uri).replace(/^unix:/, '')),
        );
      }
      return c.execute === 'query-migrate' ? { return: { status: closed ? 'completed' : 'active' } } : {};
    });
    await restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.alloc(4 * 1024 * 1024, 7), running);
    for (const server of servers) server.close();
  });

  it('fails after a short grace, not at the timeout, when the state cannot be sent', async () => {
    // Nobody listens on the socket: QEMU did not take migrate-incoming's URI.
    await connect((c) => (c.execute === 'query-migrate' ? { return: { status: 'setup' } } : {}));
    // The migration status never ends; the answer is the send's failure, not the (60 s) timeout's.
    const failure = restoreTemplateState(qmp, path.join(dir, 'migrate.sock'), Buffer.from('state'), running);
    await expect(failure).rejects.toThrow(/restoring the template: sending the state failed: connect ENOENT/);
    await expect(failure).rejects.not.toBeInstanceOf(MigrationRejectedError);
  }, 20_000);
});
