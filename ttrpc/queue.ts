/**
 * Minimal push-to-pull adapter: the connection pushes decoded stream messages,
 * the consumer pulls them with `for await`. Unbounded (ttrpc has no flow control).
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private readonly waiters: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void }[] = [];
  private ended = false;
  private failure: { error: unknown } | null = null;

  /** Called once when the consumer stops early (break / return()). */
  constructor(private readonly onReturn?: () => void) {}

  get done(): boolean {
    return this.ended || this.failure !== null;
  }

  push(item: T): void {
    if (this.done) return;
    const w = this.waiters.shift();
    if (w) w.resolve({ value: item, done: false });
    else this.items.push(item);
  }

  /** No more items; the consumer drains what is queued, then finishes. */
  end(): void {
    if (this.done) return;
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  /** The consumer drains what is queued, then gets `error`. */
  fail(error: unknown): void {
    if (this.done) return;
    this.failure = { error };
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as T, done: false });
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<T>> {
    const wasDone = this.done;
    this.items.length = 0;
    this.ended = true;
    this.failure = null;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    if (!wasDone) this.onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
