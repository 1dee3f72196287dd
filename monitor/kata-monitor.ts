// kata-ts-monitor's work (Kata's kata-monitor): one scrape of the node asks every
// sandbox's shim for its /metrics at once, each within its own deadline, labels each
// series with the sandbox and its pod's CRI names (Kata's sandbox_id, cri_uid,
// cri_name, cri_namespace) and merges them, family by family, with the monitor's own
// kata_monitor_* series. A hung or broken shim costs its own series, never the answer.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { unixHttpGet } from '../lib/unix-http-get';
import { DiscoveredSandbox, discoverSandboxes } from './discovery';
import { Family, formatPrometheusText, mergeFamilies, parsePrometheusText, withLabels } from './prom-text';

export interface KataMonitorOptions {
  /** The runtime state dirs whose sandboxes are watched. */
  stateDirs: string[];
  /** Per shim; Kata's default is 3 s. */
  scrapeTimeoutMs: number;
  /** Per shim: more is a shim gone wrong, not more metrics. */
  maxBytesPerShim?: number;
  logger: Logger;
  /** Node's process and runtime series as kata_monitor_process_*, kata_monitor_nodejs_*. Off in tests. */
  runtimeMetrics?: boolean;
}

const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
const SCRAPE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class KataMonitor {
  readonly registry = new Registry();
  private readonly runningShims: Gauge;
  private readonly scrapes: Counter;
  private readonly scrapeFailures: Counter;
  private readonly scrapeDuration: Histogram;

  constructor(private readonly options: KataMonitorOptions) {
    const registers = [this.registry];
    this.runningShims = new Gauge({ name: 'kata_monitor_running_shim_count', help: 'Sandboxes found with a management socket at the last scrape.', registers });
    this.scrapes = new Counter({ name: 'kata_monitor_scrapes_total', help: 'Scrapes of this monitor.', registers });
    this.scrapeFailures = new Counter({ name: 'kata_monitor_scrape_failures_total', help: "Shims whose metrics were missing from a scrape (no answer in time, refused, unreadable).", registers });
    this.scrapeDuration = new Histogram({ name: 'kata_monitor_scrape_duration_seconds', help: 'Time to scrape every shim and merge their series.', buckets: SCRAPE_BUCKETS, registers });
    if (options.runtimeMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'kata_monitor_' });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  sandboxes(): DiscoveredSandbox[] {
    return discoverSandboxes(this.options.stateDirs, this.options.logger);
  }

  /** Every sandbox's series, labelled, and the monitor's own. */
  async metrics(): Promise<string> {
    const stopTimer = this.scrapeDuration.startTimer();
    this.scrapes.inc();
    const sandboxes = this.sandboxes();
    this.runningShims.set(sandboxes.length);
    const perSandbox = (await Promise.all(sandboxes.map((s) => this.scrapeOne(s)))).filter((f): f is Family[] => f !== undefined);
    stopTimer();
    // The monitor's own first: a shim cannot shadow a kata_monitor_* family.
    const own = parsePrometheusText(await this.registry.metrics());
    const { families, conflicts } = mergeFamilies([own, ...perSandbox]);
    if (conflicts.length > 0) this.options.logger.warn({ conflicts }, 'metric families with different types across shims; the later ones are left out');
    return formatPrometheusText(families);
  }

  /** One sandbox's own answer, unlabelled (Kata's /metrics?sandbox=<id>, `kata-ts-runtime metrics`). */
  sandboxMetrics(sandboxId: string): Promise<string> {
    return this.get(this.find(sandboxId), '/metrics');
  }

  agentUrl(sandboxId: string): Promise<string> {
    return this.get(this.find(sandboxId), '/agent-url');
  }

  private find(sandboxId: string): DiscoveredSandbox {
    const sandbox = this.sandboxes().find((s) => s.identity.id === sandboxId);
    if (!sandbox) throw new NotFoundError(`sandbox ${sandboxId} not found: no management socket under ${this.options.stateDirs.join(', ')} belongs to it`);
    return sandbox;
  }

  private get(sandbox: DiscoveredSandbox, urlPath: string): Promise<string> {
    return unixHttpGet(sandbox.socket, urlPath, { timeoutMs: this.options.scrapeTimeoutMs, maxBytes: this.options.maxBytesPerShim ?? DEFAULT_MAX_BYTES });
  }

  private async scrapeOne(sandbox: DiscoveredSandbox): Promise<Family[] | undefined> {
    const { id, cri } = sandbox.identity;
    try {
      const families = parsePrometheusText(await this.get(sandbox, '/metrics'));
      return withLabels(families, [
        ['sandbox_id', id],
        ['cri_uid', cri.uid],
        ['cri_name', cri.name],
        ['cri_namespace', cri.namespace],
      ]);
    } catch (err) {
      this.scrapeFailures.inc();
      this.options.logger.warn({ sandbox: id, socket: sandbox.socket, err: (err as Error).message }, 'no metrics from this sandbox in this scrape');
      return undefined;
    }
  }
}
