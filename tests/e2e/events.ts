// Follows `ctr events` so a test can assert what the shim published to containerd.
import { ChildProcess, spawn } from 'child_process';
import { PrivateContainerd } from '../harness/containerd';

export interface SeenEvent {
  topic: string;
  line: string;
}

export class EventLog {
  private child!: ChildProcess;
  private buffer = '';
  private closed = false;
  readonly events: SeenEvent[] = [];

  /**
   * `resubscribe`: when `ctr events` ends (containerd stopped, or is not up yet), start
   * it again every 50 ms, so events published right after a restart are seen too.
   */
  constructor(private readonly containerd: PrivateContainerd, private readonly opts: { resubscribe?: boolean } = {}) {
    this.subscribe();
  }

  private subscribe(): void {
    this.child = spawn('ctr', ['-a', this.containerd.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString();
      let newline: number;
      while ((newline = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        const topic = /\/tasks\/[a-z-]+/.exec(line)?.[0];
        if (topic) this.events.push({ topic, line });
      }
    });
    this.child.on('exit', () => {
      if (this.opts.resubscribe && !this.closed) setTimeout(() => !this.closed && this.subscribe(), 50);
    });
  }

  /** Topics seen for a container id, in order. */
  topicsFor(containerId: string): string[] {
    return this.events.filter((e) => e.line.includes(containerId)).map((e) => e.topic);
  }

  /** Waits until an event with `topic` mentioning `containerId` arrives; returns its line. */
  async waitFor(topic: string, containerId: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = this.events.find((e) => e.topic === topic && e.line.includes(containerId));
      if (found) return found.line;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no ${topic} event for ${containerId} within ${timeoutMs} ms; saw: ${JSON.stringify(this.events.map((e) => e.line))}`);
  }

  /** The /tasks/exit line of one process: the init (`"id":"<container>"`) or an exec. */
  waitForExit(containerId: string, execId = '', timeoutMs = 30_000): Promise<string> {
    return this.waitFor('/tasks/exit', `"container_id":"${containerId}","id":"${execId || containerId}"`, timeoutMs);
  }

  close(): void {
    this.closed = true;
    this.child.kill();
  }
}
