// Publishes task events to containerd's ttrpc event service (TTRPC_ADDRESS), in
// order, through one queue with per-call deadlines, retries and reconnects — the
// way containerd's own shims do, so a busy containerd does not lose events.
import { Logger } from '../lib/logger';
import { EVENTS_SERVICE, lookupService, packAny, timestamp } from '../lib/protos';
import type { containerd } from '../lib/proto-types';
import { TtrpcClient } from '../ttrpc';

const CALL_TIMEOUT_MS = 5000;
/**
 * How long one event is retried: long enough for containerd to restart (its ttrpc
 * socket is gone meanwhile), so an exit that happens then still arrives after.
 */
const RETRY_WINDOW_MS = 300_000;
const MAX_BACKOFF_MS = 2000;
/** Events waiting beyond this push out the oldest non-exit one; exits are never dropped. */
const QUEUE_LIMIT = 2048;
const EXIT_TOPIC = '/tasks/exit';

/** The task events a shim publishes, by topic: the message each carries (containerd's runtime v2 topics). */
export interface TaskEvents {
  '/tasks/create': containerd.events.ITaskCreate;
  '/tasks/start': containerd.events.ITaskStart;
  '/tasks/delete': containerd.events.ITaskDelete;
  '/tasks/exit': containerd.events.ITaskExit;
  '/tasks/oom': containerd.events.ITaskOOM;
  '/tasks/exec-added': containerd.events.ITaskExecAdded;
  '/tasks/exec-started': containerd.events.ITaskExecStarted;
  '/tasks/paused': containerd.events.ITaskPaused;
  '/tasks/resumed': containerd.events.ITaskResumed;
}

export type TaskTopic = keyof TaskEvents;

/** The message type each topic's event is packed as (its Any's type_url, as containerd's shims write it). */
const EVENT_TYPE_NAMES: { readonly [T in TaskTopic]: string } = {
  '/tasks/create': 'containerd.events.TaskCreate',
  '/tasks/start': 'containerd.events.TaskStart',
  '/tasks/delete': 'containerd.events.TaskDelete',
  '/tasks/exit': 'containerd.events.TaskExit',
  '/tasks/oom': 'containerd.events.TaskOOM',
  '/tasks/exec-added': 'containerd.events.TaskExecAdded',
  '/tasks/exec-started': 'containerd.events.TaskExecStarted',
  '/tasks/paused': 'containerd.events.TaskPaused',
  '/tasks/resumed': 'containerd.events.TaskResumed',
};

export interface EventPublisher {
  publish<T extends TaskTopic>(topic: T, event: TaskEvents[T]): void;
  /** Resolves when everything queued so far was sent (or given up). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Why an event never reached containerd. */
export type EventDropReason = 'queue_full' | 'gave_up' | 'closed';

/** Counts what the publisher did (the shim's metrics). */
export interface EventObserver {
  published(topic: string): void;
  dropped(topic: string, reason: EventDropReason): void;
}

const NO_EVENT_OBSERVER: EventObserver = { published: () => undefined, dropped: () => undefined };

interface QueuedEvent {
  topic: TaskTopic;
  event: object;
  at: Date;
}

export class TtrpcEventPublisher implements EventPublisher {
  private readonly queue: QueuedEvent[] = [];
  private client: TtrpcClient | undefined;
  private draining: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly service = lookupService(EVENTS_SERVICE);

  constructor(
    private readonly address: string,
    private readonly namespace: string,
    private readonly logger: Logger,
    private readonly limits: { queue: number; retryWindowMs: number } = { queue: QUEUE_LIMIT, retryWindowMs: RETRY_WINDOW_MS },
    private readonly observer: EventObserver = NO_EVENT_OBSERVER,
  ) {}

  publish<T extends TaskTopic>(topic: T, event: TaskEvents[T]): void {
    if (this.closed) {
      this.observer.dropped(topic, 'closed');
      return;
    }
    if (this.queue.length >= this.limits.queue) {
      // A flood (a guest reporting OOMs, say) must cost other events, never an exit containerd waits for.
      const victim = this.queue.findIndex((e) => e.topic !== EXIT_TOPIC);
      if (victim >= 0) {
        this.logger.error({ dropped: this.queue[victim].topic, queued: this.queue.length }, 'event queue full; dropping the oldest event that is not an exit');
        this.observer.dropped(this.queue[victim].topic, 'queue_full');
        this.queue.splice(victim, 1);
      } else if (topic !== EXIT_TOPIC) {
        this.logger.error({ topic, queued: this.queue.length }, 'event queue full of exits; dropping this event');
        this.observer.dropped(topic, 'queue_full');
        return;
      }
    }
    this.queue.push({ topic, event, at: new Date() });
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
      envelope: { timestamp: timestamp(item.at), namespace: this.namespace, topic: item.topic, event: packAny(EVENT_TYPE_NAMES[item.topic], item.event) },
    };
    const deadline = Date.now() + this.limits.retryWindowMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const client = await this.connect();
        await client.call(this.service, 'Forward', request, { timeoutMs: CALL_TIMEOUT_MS, metadata: { 'containerd-namespace-ttrpc': [this.namespace] } });
        this.logger.debug({ topic: item.topic }, 'event published');
        this.observer.published(item.topic);
        return;
      } catch (err) {
        this.logger.warn({ topic: item.topic, attempt, err: (err as Error).message }, 'event publish failed');
        this.client?.close();
        this.client = undefined;
        if (this.closed || Date.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, Math.min(attempt * 100, MAX_BACKOFF_MS)));
      }
    }
    this.logger.error({ topic: item.topic, windowMs: this.limits.retryWindowMs }, 'giving up on event after retrying for the whole window');
    this.observer.dropped(item.topic, 'gave_up');
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
