// `kata-ts-runtime exec <sandbox-id>`: a root shell in a running sandbox's guest, over
// the debug console the VM has when `[agent.kata] debug_console_enabled = true` (like
// `kata-runtime exec`). The socket carries the guest terminal's bytes as they are; the
// shell's exit comes as an in-band notice (lib/debug-console.ts).
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Readable, Writable } from 'stream';
import { RuntimeConfig } from '../config/runtime-config';
import { runningQemuPid } from '../hypervisors/qemu';
import { DEBUG_CONSOLE_VSOCK_PARAM } from '../hypervisors/vm-requirements';
import { ShellExitScanner } from '../lib/debug-console';
import { DEBUG_CONSOLE_VSOCK_PORT } from '../lib/vsock-ports';
import { connectHybridVsock } from '../hypervisors/hybrid-vsock';
import { DeadlineExceededError, FailedPreconditionError, NotFoundError, UnavailableError } from '../lib/errors';
import { processArgs } from '../lib/recorded-process';
import { validateId } from '../sandbox/identifiers';
import { canonical } from '../sandbox/rootfs';
import { agentChannelFor, Sandbox } from '../sandbox/sandbox';

/** What a terminal sends for end of input; the shell exits on it at an empty prompt. */
const END_OF_INPUT = Buffer.from('\x04');

/**
 * The state directory of `sandboxId`: in `namespace` when given, else in the one
 * containerd namespace that has such a sandbox (ids are only unique per namespace).
 */
export function findSandboxDir(config: RuntimeConfig, sandboxId: string, namespace?: string): string {
  // The ids become paths below the state dir.
  validateId('sandbox', sandboxId);
  const stateDir = canonical(config.runtime.stateDir);
  if (namespace) {
    const workDir = Sandbox.workDirFor(config, namespace, sandboxId);
    if (!fs.existsSync(workDir)) throw new NotFoundError(`sandbox ${sandboxId} not found in namespace ${namespace}: no state in ${workDir} (runtime.state_dir is ${config.runtime.stateDir})`);
    return workDir;
  }
  // '.hashed' holds work dirs too long for a socket path; every other entry is a namespace.
  const namespaces = (fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : []).filter((ns) => !ns.startsWith('.') && fs.existsSync(Sandbox.workDirFor(config, ns, sandboxId)));
  if (namespaces.length === 0) throw new NotFoundError(`sandbox ${sandboxId} not found: no namespace in ${stateDir} has it (runtime.state_dir is ${config.runtime.stateDir}; a sandbox whose namespace and id are too long for a socket path is found only with --namespace)`);
  if (namespaces.length > 1) throw new FailedPreconditionError(`sandbox ${sandboxId} exists in namespaces ${namespaces.join(', ')}; name one with --namespace`);
  return Sandbox.workDirFor(config, namespaces[0], sandboxId);
}

/** Where a sandbox's debug console is: QEMU's socket for its virtio-serial port, or vsock port 1026 behind the hybrid vsock. */
export type DebugConsoleEndpoint = { kind: 'unix'; socketPath: string } | { kind: 'hybrid-vsock'; socketPath: string; port: number };

/** How long the guest gets to accept vsock port 1026 (it listens there from boot on, or never). */
const VSOCK_CONSOLE_TIMEOUT_MS = 5000;

/** The debug console of the sandbox, or why there is none to use. */
export function findDebugConsole(config: RuntimeConfig, sandboxId: string, namespace?: string): DebugConsoleEndpoint {
  const workDir = findSandboxDir(config, sandboxId, namespace);
  // The debug console exists only with QEMU, which writes its pid file and names it in its argv.
  const qemuPid = runningQemuPid(workDir);
  if (qemuPid === undefined) throw new FailedPreconditionError(`sandbox ${sandboxId} is not running: its VM is not up`);
  const socket = Sandbox.debugConsoleSocket(workDir);
  if (fs.existsSync(socket)) return { kind: 'unix', socketPath: socket };
  // agent_channel = "hybrid-vsock": the guest serves the console on vsock port 1026 if
  // the VM was started with it. Asked of QEMU's own command line, not of the guest: with
  // the console off, any process in the guest could listen on 1026 and get our keystrokes.
  const vsock = agentChannelFor('hybrid-vsock', workDir);
  const consoleOnVsock = processArgs(qemuPid).some((arg) => arg.split(' ').includes(DEBUG_CONSOLE_VSOCK_PARAM));
  if (vsock.kind === 'hybrid-vsock' && consoleOnVsock && fs.existsSync(vsock.socketPath)) return { kind: 'hybrid-vsock', socketPath: vsock.socketPath, port: DEBUG_CONSOLE_VSOCK_PORT };
  throw new FailedPreconditionError(`debug console is not enabled for sandbox ${sandboxId}: set [agent.kata] debug_console_enabled = true (it applies to sandboxes started afterwards)`);
}

export async function connectDebugConsole(endpoint: DebugConsoleEndpoint, sandboxId: string): Promise<net.Socket> {
  if (endpoint.kind === 'hybrid-vsock') {
    try {
      return await connectHybridVsock(endpoint.socketPath, endpoint.port, VSOCK_CONSOLE_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof DeadlineExceededError) {
        throw new FailedPreconditionError(`debug console is not enabled for sandbox ${sandboxId}: set [agent.kata] debug_console_enabled = true (it applies to sandboxes started afterwards; nothing in its guest accepts vsock port ${endpoint.port})`, { cause: err });
      }
      throw err;
    }
  }
  const { socketPath } = endpoint;
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') reject(new FailedPreconditionError(`sandbox ${sandboxId} is not running: nothing serves its debug console ${socketPath}`));
      else if (err.code === 'EACCES') reject(new FailedPreconditionError(`cannot open the debug console ${socketPath}: permission denied (only root may enter the guest)`));
      else reject(new UnavailableError(`cannot connect to the debug console ${socketPath}: ${err.message}`, { cause: err }));
    });
  });
}

export interface ConsoleIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?(raw: boolean): unknown };
  stdout: Writable;
}

/**
 * Relays `io` to the console until the remote shell exits; resolves with its status.
 * End of stdin is passed on as a terminal's end of input, so a shell reading a script
 * from a pipe exits when the script ends. A TTY stdin is put in raw mode (keystrokes
 * such as Ctrl-C go to the guest) and restored however this ends.
 */
export async function relayConsole(socket: net.Socket, io: ConsoleIo, sandboxId: string): Promise<number> {
  const raw = Boolean(io.stdin.isTTY && io.stdin.setRawMode);
  if (raw) io.stdin.setRawMode!(true);
  const scanner = new ShellExitScanner();
  const onInput = (data: Buffer): void => void socket.write(data);
  const onInputEnd = (): void => void socket.write(END_OF_INPUT);
  try {
    return await new Promise<number>((resolve, reject) => {
      io.stdin.on('data', onInput);
      io.stdin.once('end', onInputEnd);
      socket.on('data', (chunk: Buffer) => {
        const { output, exitStatus } = scanner.push(chunk);
        if (output.length > 0) io.stdout.write(output);
        // Resolve once what came before the notice is written out.
        if (exitStatus !== undefined) io.stdout.write('', () => resolve(exitStatus));
      });
      socket.once('error', (err) => reject(new UnavailableError(`sandbox ${sandboxId}: debug console failed: ${err.message}`, { cause: err })));
      socket.once('close', () => {
        io.stdout.write(scanner.flush());
        reject(new UnavailableError(`sandbox ${sandboxId}: the debug console closed before the shell exited (did the VM stop?)`));
      });
    });
  } finally {
    io.stdin.off('data', onInput);
    io.stdin.off('end', onInputEnd);
    io.stdin.pause();
    socket.destroy();
    if (raw) io.stdin.setRawMode!(false);
  }
}
