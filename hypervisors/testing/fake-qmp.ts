// A QMP server on a Unix socket that speaks the protocol as QEMU does: a greeting,
// then one JSON object per line each way; qmp_capabilities first, every command
// answered in order with "return" or "error", asynchronous events in between. It
// records every command after the capabilities handshake; the test decides the answers.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
}

/** What the fake sends for one command: events (before or after) and the answer. */
export interface QmpAnswer {
  eventsBefore?: QmpEvent[];
  /** An error answer instead of `{"return": {}}`. */
  error?: { class: string; desc: string };
  /** What a query returns, instead of `{}`. */
  return?: unknown;
  eventsAfter?: QmpEvent[];
}

export class FakeQmp {
  readonly commands: QmpCommand[] = [];
  private client: net.Socket | undefined;

  private constructor(
    readonly socketPath: string,
    private readonly server: net.Server,
    private readonly dir: string,
    private readonly answer: (command: QmpCommand) => QmpAnswer,
  ) {
    server.on('connection', (socket) => this.serve(socket));
  }

  static async start(answer: (command: QmpCommand) => QmpAnswer = () => ({})): Promise<FakeQmp> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-qmp-'));
    const socketPath = path.join(dir, 'qmp.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return new FakeQmp(socketPath, server, dir, answer);
  }

  /** Sends an event now, as QEMU does when something happens in the VM. */
  emit(event: QmpEvent): void {
    this.send(this.client, { ...event, timestamp: { seconds: Math.floor(Date.now() / 1000), microseconds: 0 } });
  }

  /** Ends the client's connection, as QEMU's QMP ends when QEMU exits. */
  dropClient(): void {
    this.client?.destroy();
  }

  async close(): Promise<void> {
    this.client?.destroy();
    await new Promise((resolve) => this.server.close(resolve));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private serve(socket: net.Socket): void {
    this.client = socket;
    this.send(socket, { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: ['oob'] } });
    let buffer = '';
    let negotiated = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const command = JSON.parse(buffer.slice(0, newline)) as QmpCommand;
        buffer = buffer.slice(newline + 1);
        if (!negotiated) {
          // QEMU refuses everything but qmp_capabilities until the handshake is done.
          negotiated = command.execute === 'qmp_capabilities';
          this.send(socket, negotiated ? { return: {} } : { error: { class: 'CommandNotFound', desc: 'Expecting capabilities negotiation with \'qmp_capabilities\'' } });
          continue;
        }
        this.commands.push(command);
        const answer = this.answer(command);
        for (const event of answer.eventsBefore ?? []) this.emit(event);
        this.send(socket, answer.error ? { error: answer.error } : { return: answer.return ?? {} });
        for (const event of answer.eventsAfter ?? []) this.emit(event);
      }
    });
  }

  private send(socket: net.Socket | undefined, message: object): void {
    socket?.write(JSON.stringify(message) + '\r\n');
  }
}
