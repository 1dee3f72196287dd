// Publishes task events to containerd's ttrpc event service (TTRPC_ADDRESS), in
// order, through one queue with per-call deadlines, retries and reconnects — the
// way containerd's own shims do, so a busy containerd does not lose events.
import { Logger } from '../lib/logger';
import { EVENTS_SERVICE, lookupService, packAny, timestamp } from '../lib/protos';
import { TtrpcClient } from '../ttrpc';

const CALL_TIMEOUT_MS = 5000;
const MAX_ATTEMPTS = 5;
const QUEUE_LIMIT = 2048;

export interface EventPublisher {
  publish(topic: string, typeName: string, event: object): void;
  /** Resolves when everything queued so far was sent (or given up). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

interface QueuedEvent {
  topic: string;
  typeName: string;
  event: object;
  at: Date;
}

export class TtrpcEventPublisher implements EventPublisher {
  private readonly queue: QueuedEvent[] = [];
  private client: TtrpcClient | undefined;
  private draining: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly service = lookupService(EVENTS_SERVICE);

  constructor(private readonly address: string, private readonly namespace: string, private readonly logger: Logger) {}

  publish(topic: string, typeName: string, event: object): void {
    if (this.closed) return;
    if (this.queue.length >= QUEUE_LIMIT) {
      this.logger.error({ topic }, 'event queue full; dropping event');
      return;
    }
    this.queue.push({ topic, typeName, event, at: new Date() });
    this.draining = this.draining.then(() => this.drain());
  }

  flush(): Promise<void> {
    return this.draining;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.client?.close();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const next = this.queue.shift()!;
      await this.send(next);
    }
  }

  private async send(item: QueuedEvent): Promise<void> {
    const request = {
      envelope: { timestamp: timestamp(item.at), namespace: this.namespace, topic: item.topic, event: packAny(item.typeName, item.event) },
    };
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      try {
        const client = await this.connect();
        await client.call(this.service, 'Forward', request, { timeoutMs: CALL_TIMEOUT_MS, metadata: { 'containerd-namespace-ttrpc': [this.namespace] } });
        this.logger.debug({ topic: item.topic }, 'event published');
        return;
      } catch (err) {
        this.logger.warn({ topic: item.topic, attempt, err: (err as Error).message }, 'event publish failed');
        this.client?.close();
        this.client = undefined;
        await new Promise((r) => setTimeout(r, attempt * 100));
      }
    }
    this.logger.error({ topic: item.topic }, 'giving up on event after retries');
  }

  private async connect(): Promise<TtrpcClient> {
    if (!this.client) {
      const client = await TtrpcClient.connect(this.address.replace(/^unix:\/\//, ''));
      client.on('close', () => {
        if (this.client === client) this.client = undefined;
      });
      this.client = client;
    }
    return this.client;
  }
}
