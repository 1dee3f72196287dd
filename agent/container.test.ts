// GuestContainer against a stand-in for crun (a node script with crun's command line,
// behaviour and error messages) running host processes: calls about processes still
// being set up, and runc's kill semantics (what an init leaves behind, signals that
// race an exit). The real crun in a guest: tests/e2e/guest-stdio.test.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NotFoundError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { GuestContainer, hasOwnPidNamespace, OciSpec, stdioOwner } from './container';
import { OciRuntime } from './oci-runtime';

jest.setTimeout(30_000);

describe('hasOwnPidNamespace (kill what the init leaves when false)', () => {
  it.each<[string, OciSpec['linux'], boolean]>([
    ['no namespaces at all (the guest’s)', undefined, false],
    ['no pid entry', { namespaces: [{ type: 'ipc' }, { type: 'mount' }] }, false],
    ['a pid entry with a path (the pod’s)', { namespaces: [{ type: 'pid', path: '/proc/12/ns/pid' }] }, false],
    ['a pid entry without a path', { namespaces: [{ type: 'mount' }, { type: 'pid' }] }, true],
  ])('%s', (_what, linux, own) => {
    expect(hasOwnPidNamespace({ linux })).toBe(own);
  });
});

describe('stdioOwner', () => {
  it('is the process user, root meaning nothing to change', () => {
    expect(stdioOwner({}, { user: { uid: 1000, gid: 100 } })).toEqual({ uid: 1000, gid: 100 });
    expect(stdioOwner({}, { user: { uid: 0, gid: 0 } })).toBeUndefined();
    expect(stdioOwner({}, undefined)).toBeUndefined();
  });

  it('maps through a user namespace, and leaves an unmapped id to root', () => {
    const linux = { uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 200000, size: 10 }] };
    expect(stdioOwner({ linux }, { user: { uid: 0, gid: 0 } })).toEqual({ uid: 100000, gid: 200000 });
    expect(stdioOwner({ linux }, { user: { uid: 33, gid: 5 } })).toEqual({ uid: 100033, gid: 200005 });
    expect(stdioOwner({ linux }, { user: { uid: 33, gid: 50 } })).toBeUndefined();
  });
});

/**
 * crun's command line and behaviour, on this host. `run` starts process.args in a
 * process group of its own and, like crun (their subreaper), returns only once every
 * process of the group is gone, with the init's status; then its state is gone too.
 * Its state says pid 0 once the init exited, and kill answers as crun does then
 * (`open pidfd: Invalid argument`) or without state; `kill --all` signals the group
 * (crun: the cgroup). Kills are logged; `<root>/kill-error` makes kill fail with its text.
 */
const FAKE_CRUN = `
const fs = require('fs'), path = require('path'), { spawn } = require('child_process');
const argv = process.argv.slice(2);
const root = argv[argv.indexOf('--root') + 1];
const cmd = argv.find((a) => ['run', 'exec', 'kill', 'delete'].includes(a));
const rest = argv.slice(argv.indexOf(cmd) + 1);
const state = (id) => path.join(root, id, 'status');
const groupAlive = (pgid) => { try { process.kill(-pgid, 0); return true; } catch { return false; } };
if (cmd === 'run') {
  const id = rest[rest.length - 1];
  const bundle = rest[rest.indexOf('--bundle') + 1];
  const args = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')).process.args;
  const child = spawn(args[0], args.slice(1), { stdio: 'inherit', detached: true });
  fs.mkdirSync(path.join(root, id), { recursive: true });
  fs.writeFileSync(state(id), JSON.stringify({ pid: child.pid, pgid: child.pid }));
  fs.writeFileSync(rest[rest.indexOf('--pid-file') + 1], String(child.pid));
  child.on('exit', (code) => {
    fs.writeFileSync(state(id), JSON.stringify({ pid: 0, pgid: child.pid }));
    const timer = setInterval(() => {
      if (groupAlive(child.pid)) return;
      clearInterval(timer);
      fs.rmSync(path.join(root, id), { recursive: true, force: true });
      process.exit(code ?? 137);
    }, 20);
  });
} else if (cmd === 'exec') {
  const args = JSON.parse(fs.readFileSync(rest[rest.indexOf('--process') + 1], 'utf8')).args;
  const child = spawn(args[0], args.slice(1), { stdio: 'inherit' });
  fs.writeFileSync(rest[rest.indexOf('--pid-file') + 1], String(child.pid));
  child.on('exit', (code) => process.exit(code ?? 137));
} else if (cmd === 'kill') {
  const all = rest[0] === '--all';
  const [id, signal] = all ? rest.slice(1) : rest;
  fs.appendFileSync(path.join(root, 'kills'), rest.join(' ') + '\\n');
  if (fs.existsSync(path.join(root, 'kill-error'))) {
    process.stderr.write(fs.readFileSync(path.join(root, 'kill-error'), 'utf8'));
    process.exit(1);
  }
  let st;
  try { st = JSON.parse(fs.readFileSync(state(id), 'utf8')); } catch {
    process.stderr.write('error opening file \`' + state(id) + '\`: No such file or directory\\n');
    process.exit(1);
  }
  if (all) { try { process.kill(-st.pgid, Number(signal)); } catch {} }
  else if (!st.pid) { process.stderr.write('open pidfd: Invalid argument\\n'); process.exit(1); }
  else process.kill(st.pid, Number(signal));
} else if (cmd === 'delete') {
  fs.rmSync(path.join(root, rest[rest.length - 1]), { recursive: true, force: true });
}
`;

describe('GuestContainer, crun stood in', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-container-'));
  const root = path.join(dir, 'crun');
  const bundles = path.join(dir, 'bundles');
  const rootfs = path.join(dir, 'rootfs');
  const crun = path.join(dir, 'crun.js');
  const runtime = new OciRuntime(crun, root);
  const containers: GuestContainer[] = [];

  beforeAll(() => {
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'bin', 'sh'), '', { mode: 0o755 });
    fs.mkdirSync(root);
    fs.writeFileSync(crun, `#!${process.execPath}\n${FAKE_CRUN}`, { mode: 0o755 });
  });

  afterEach(async () => {
    fs.rmSync(path.join(root, 'kill-error'), { force: true });
    for (const c of containers.splice(0)) await c.remove().catch(() => undefined);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const kills = (): string[] => (fs.existsSync(path.join(root, 'kills')) ? fs.readFileSync(path.join(root, 'kills'), 'utf8').trim().split('\n') : []);

  function created(id: string, script: string, namespaces: Array<{ type: string; path?: string }>): GuestContainer {
    const spec: OciSpec = { root: { path: rootfs }, process: { args: ['sh', '-c', script], env: ['PATH=/bin'] }, linux: { namespaces } };
    const container = GuestContainer.create(id, Buffer.from(JSON.stringify(spec)), false, bundles, runtime, silentLogger());
    containers.push(container);
    return container;
  }

  async function started(id: string, script: string, namespaces: Array<{ type: string; path?: string }>): Promise<GuestContainer> {
    const container = created(id, script, namespaces);
    await container.start();
    return container;
  }

  /** stdout to its end, read as the shim does (ReadStdout), asked for at once. */
  async function output(container: GuestContainer, execId = ''): Promise<string> {
    const proc = await container.ready(execId);
    let text = '';
    for (;;) {
      const { data, eof } = await proc.stdout.read(65536);
      if (eof) return text;
      text += data.toString();
    }
  }

  it('serves calls about a process still being set up once it is (the shim reads output at once)', async () => {
    const container = created('early', 'echo from-init; sleep 60', [{ type: 'pid' }]);
    const starting = container.start();
    const initOut = output(container);
    await starting;
    const exec = container.exec('e1', Buffer.from(JSON.stringify({ args: ['sh', '-c', 'echo from-exec'], env: ['PATH=/bin'] })), false);
    const [execOut, execStatus] = [output(container, 'e1'), container.wait('e1')];
    await exec;
    expect(await execOut).toBe('from-exec\n');
    expect(await execStatus).toBe(0);
    await container.signal('', 9, true);
    expect(await initOut).toBe('from-init\n');
  });

  it('without a PID namespace of its own: what the init left is SIGKILLed, so its exit (and status) is reported', async () => {
    fs.rmSync(path.join(root, 'kills'), { force: true });
    // Unkilled, the leftover would keep the runtime waiting for a minute.
    const container = await started('shared', 'sleep 60 & echo init-done; exit 3', [{ type: 'pid', path: '/proc/1/ns/pid' }, { type: 'mount' }]);
    const t0 = Date.now();
    const [status, out] = await Promise.all([container.wait(''), output(container)]);
    expect(status).toBe(3);
    expect(out).toBe('init-done\n');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(kills()).toEqual(['--all shared 9']);
    await expect(container.signal('', 15, true)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('with a PID namespace of its own: nothing is killed (the kernel does it in a guest)', async () => {
    fs.rmSync(path.join(root, 'kills'), { force: true });
    const container = await started('own', '(sleep 0.5; echo leftover-done) & echo init-done', [{ type: 'pid' }]);
    expect(await container.wait('')).toBe(0);
    expect(await output(container)).toBe('init-done\nleftover-done\n');
    expect(kills()).toEqual([]);
  });

  it('a signal after the init exited, the runtime still waiting for what it left, answers NotFound', async () => {
    const container = await started('waiting', 'sleep 1 & true', [{ type: 'pid' }]);
    const status = path.join(root, 'waiting', 'status');
    while (JSON.parse(fs.readFileSync(status, 'utf8')).pid !== 0) await new Promise((r) => setTimeout(r, 20));
    await expect(container.signal('', 15, false)).rejects.toBeInstanceOf(NotFoundError);
    await container.wait('');
    await expect(container.signal('', 15, false)).rejects.toBeInstanceOf(NotFoundError);
  });

  it.each([
    ['its state is gone', undefined],
    ['its pidfd cannot be opened', 'open pidfd: Invalid argument\n'],
    ['the runtime no longer knows it', 'container `racing` does not exist\n'],
  ])('a signal that races the exit answers NotFound when %s', async (_what, message) => {
    const container = await started('racing', 'exec sleep 60', [{ type: 'pid' }]);
    if (message) fs.writeFileSync(path.join(root, 'kill-error'), message);
    else fs.rmSync(path.join(root, 'racing', 'status'));
    await expect(container.signal('', 15, false)).rejects.toBeInstanceOf(NotFoundError);
    fs.rmSync(path.join(root, 'kill-error'), { force: true });
    process.kill(-container.process('').pid, 9);
    await container.wait('');
  });

  it("holds a read of the init's output asked for before its Start until the Start (the shim sends both at once)", async () => {
    const container = created('read-first', 'echo early', [{ type: 'pid' }]);
    const reading = (async () => {
      const proc = await container.outputOf('');
      let text = '';
      for (;;) {
        const { data, eof } = await proc.stdout.read(65536);
        if (eof) return text;
        text += data.toString();
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    await container.start();
    expect(await reading).toBe('early\n');
    expect(await container.wait('')).toBe(0);
  });

  it('ends a read held for a Start that never comes when the container is stopped or removed', async () => {
    /** The read (wrapped: an async function's result would wait for it), once seen still waiting 50 ms after it was asked for. */
    const heldRead = async (container: GuestContainer): Promise<{ read: Promise<unknown> }> => {
      const read = container.outputOf('');
      let settled = false;
      read.then(() => (settled = true), () => (settled = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(settled).toBe(false);
      return { read };
    };
    const stopped = created('stopped-unstarted', 'true', [{ type: 'pid' }]);
    const held = await heldRead(stopped);
    await stopped.signal('', 9, false);
    await expect(held.read).rejects.toBeInstanceOf(NotFoundError);
    const removed = created('removed-unstarted', 'true', [{ type: 'pid' }]);
    const alsoHeld = await heldRead(removed);
    await removed.remove();
    await expect(alsoHeld.read).rejects.toBeInstanceOf(NotFoundError);
  });

  it("makes the init's stdio FIFOs at Create, and Start takes them", async () => {
    const container = created('fifos-ahead', 'echo started', [{ type: 'pid' }]);
    const fifos = ['init.stdout', 'init.stderr'].map((name) => path.join(bundles, 'fifos-ahead', name));
    const deadline = Date.now() + 10_000;
    while (!fifos.every((f) => fs.existsSync(f)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const f of fifos) expect(fs.statSync(f).isFIFO()).toBe(true);
    await container.start();
    expect(await output(container)).toBe('started\n');
    expect(await container.wait('')).toBe(0);
    for (const f of fifos) expect(fs.existsSync(f)).toBe(false);
  });

  it('any other runtime failure stays an error of its own', async () => {
    const container = await started('failing', 'exec sleep 60', [{ type: 'pid' }]);
    fs.writeFileSync(path.join(root, 'kill-error'), 'cannot open cgroup: Permission denied\n');
    const err = await container.signal('', 15, true).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain('Permission denied');
  });
});
