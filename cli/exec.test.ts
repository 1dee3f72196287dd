import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { PassThrough, Writable } from 'stream';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { shellExitNotice } from '../lib/debug-console';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError } from '../lib/errors';
import { connectDebugConsole, ConsoleIo, findDebugConsole, relayConsole } from './exec';

describe('kata-ts-runtime exec', () => {
  let dir: string;
  let config: RuntimeConfig;
  const cleanups: Array<() => void> = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-exec-'));
    config = { ...defaultConfig(), runtime: { ...defaultConfig().runtime, stateDir: dir } };
  });
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A process standing in for the sandbox's QEMU, once it runs with its argv (spawn returns before the exec). */
  async function fakeVm(sandboxId: string, kernelParams = 'console=ttyS0'): Promise<ChildProcess> {
    const pidFile = path.join(dir, 'default', sandboxId, 'qemu.pid');
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', '-pidfile', pidFile, '-append', kernelParams], { stdio: 'ignore' });
    cleanups.push(() => child.kill('SIGKILL'));
    fs.mkdirSync(path.dirname(pidFile), { recursive: true });
    fs.writeFileSync(pidFile, `${child.pid}\n`);
    while (!fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(pidFile)) await new Promise((r) => setTimeout(r, 10));
    return child;
  }

  /** The guest end of the console: a server on the socket that records what it gets. */
  async function fakeConsole(socketPath: string): Promise<{ connection: Promise<net.Socket>; received: () => string }> {
    let received = '';
    let accept!: (socket: net.Socket) => void;
    const connection = new Promise<net.Socket>((resolve) => (accept = resolve));
    const server = net.createServer((socket) => {
      socket.on('data', (data) => (received += data.toString('latin1')));
      accept(socket);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => server.close());
    return { connection, received: () => received };
  }

  function captureOutput(): { stream: Writable; text: () => string } {
    const chunks: Buffer[] = [];
    const stream = new Writable({ write: (chunk: Buffer, _encoding, callback) => (chunks.push(chunk), callback()) });
    return { stream, text: () => Buffer.concat(chunks).toString('latin1') };
  }

  describe('finding the console', () => {
    it('refuses an id that is no identifier, before it becomes a path', () => {
      expect(() => findDebugConsole(config, '../etc')).toThrow(InvalidArgumentError);
    });

    it('tells a missing sandbox from a stopped one from one without a console', async () => {
      expect(() => findDebugConsole(config, 'sb1')).toThrow(new NotFoundError(`sandbox sb1 not found: no namespace in ${dir} has it (runtime.state_dir is ${dir}; a sandbox whose namespace and id are too long for a socket path is found only with --namespace)`));
      expect(() => findDebugConsole(config, 'sb1', 'k8s.io')).toThrow(new NotFoundError(`sandbox sb1 not found in namespace k8s.io: no state in ${dir}/k8s.io/sb1 (runtime.state_dir is ${dir})`));
      fs.mkdirSync(path.join(dir, 'default', 'sb1'), { recursive: true });
      expect(() => findDebugConsole(config, 'sb1')).toThrow(new FailedPreconditionError('sandbox sb1 is not running: its VM is not up'));
      await fakeVm('sb1');
      expect(() => findDebugConsole(config, 'sb1')).toThrow(FailedPreconditionError);
      expect(() => findDebugConsole(config, 'sb1')).toThrow('debug console is not enabled for sandbox sb1: set [agent.kata] debug_console_enabled = true');
    });

    it("is the socket in the sandbox's state directory while its VM runs", async () => {
      await fakeVm('sb1');
      const socketPath = path.join(dir, 'default', 'sb1', 'debug-console.sock');
      await fakeConsole(socketPath);
      expect(findDebugConsole(config, 'sb1')).toEqual({ kind: 'unix', socketPath });
      expect(findDebugConsole(config, 'sb1', 'default')).toEqual({ kind: 'unix', socketPath });
    });

    it('over vsock, is port 1026 behind the hybrid vsock socket, only if QEMU was started with the console', async () => {
      const socketPath = path.join(dir, 'default', 'sb1', 'vsock', 'vsock.sock');
      fs.mkdirSync(path.dirname(socketPath), { recursive: true });
      await fakeConsole(socketPath);
      // Without the console, anything in the guest could listen on 1026: never dialled.
      const plain = await fakeVm('sb1', 'console=ttyS0 katats.agent_vsock=1');
      expect(() => findDebugConsole(config, 'sb1')).toThrow('debug console is not enabled for sandbox sb1: set [agent.kata] debug_console_enabled = true');
      plain.kill('SIGKILL');
      await new Promise((r) => plain.once('exit', r));
      await fakeVm('sb1', 'console=ttyS0 katats.agent_vsock=1 katats.debug_console_vsock=1');
      expect(findDebugConsole(config, 'sb1')).toEqual({ kind: 'hybrid-vsock', socketPath, port: 1026 });
    });

    it('asks for the namespace when two namespaces have the sandbox id', () => {
      fs.mkdirSync(path.join(dir, 'a', 'sb1'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'b', 'sb1'), { recursive: true });
      expect(() => findDebugConsole(config, 'sb1')).toThrow(new FailedPreconditionError('sandbox sb1 exists in namespaces a, b; name one with --namespace'));
    });

    it('reports a socket nobody serves as a sandbox that is not running', async () => {
      // What a VMM that died leaves: the socket file, with no listener behind it (moved
      // aside first, because a closing Node server removes its own).
      const listening = path.join(dir, 'listening.sock');
      const stale = path.join(dir, 'stale.sock');
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(listening, resolve));
      fs.renameSync(listening, stale);
      await new Promise((resolve) => server.close(resolve));
      expect(fs.statSync(stale).isSocket()).toBe(true);
      await expect(connectDebugConsole({ kind: 'unix', socketPath: stale }, 'sb1')).rejects.toThrow(new FailedPreconditionError(`sandbox sb1 is not running: nothing serves its debug console ${stale}`));
    });
  });

  describe('relaying', () => {
    it("passes input through, shows the shell's output and returns its status", async () => {
      const socketPath = path.join(dir, 'console.sock');
      const guest = await fakeConsole(socketPath);
      const stdin = new PassThrough();
      const stdout = captureOutput();
      const relay = relayConsole(await connectDebugConsole({ kind: 'unix', socketPath }, 'sb1'), { stdin, stdout: stdout.stream }, 'sb1');
      const socket = await guest.connection;
      stdin.end('uname -r; exit 3\n');
      await waitUntil(() => guest.received().length > 0 && guest.received().endsWith('\x04'));
      // End of input went on as a terminal's Ctrl-D, after the script.
      expect(guest.received()).toBe('uname -r; exit 3\n\x04');
      socket.write('6.1.0-guest\r\n');
      socket.write(Buffer.concat([shellExitNotice(3), Buffer.from('~ # ')]));
      expect(await relay).toBe(3);
      expect(stdout.text()).toBe('6.1.0-guest\r\n');
    });

    it('puts a terminal in raw mode and restores it, also when the console goes away', async () => {
      const socketPath = path.join(dir, 'console.sock');
      const guest = await fakeConsole(socketPath);
      const modes: boolean[] = [];
      const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: (raw: boolean) => modes.push(raw) }) as ConsoleIo['stdin'];
      const relay = relayConsole(await connectDebugConsole({ kind: 'unix', socketPath }, 'sb1'), { stdin, stdout: captureOutput().stream }, 'sb1');
      expect(modes).toEqual([true]);
      (await guest.connection).destroy();
      await expect(relay).rejects.toThrow(new UnavailableError('sandbox sb1: the debug console closed before the shell exited (did the VM stop?)'));
      expect(modes).toEqual([true, false]);
    });
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition never became true');
    await new Promise((r) => setTimeout(r, 20));
  }
}
