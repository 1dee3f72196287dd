// kata-ts-monitor's work (Kata's kata-monitor): one scrape of the node asks every
// sandbox's shim for its /metrics at once, each within its own deadline, labels each
// series with the sandbox, its containerd namespace and its pod's CRI names (Kata's
// sandbox_id, cri_uid, cri_name, cri_namespace, plus containerd_namespace: one id may run in two
// containerd namespaces) and merges them, family by family, with the monitor's own
// kata_monitor_* series. A hung or broken shim costs its own series, never the answer.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { FailedPreconditionError, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { unixHttpGet } from '../lib/unix-http-get';
import { DiscoveredSandbox, discoverSandboxes } from './discovery';
import { Family, formatPrometheusText, mergeFamilies, parsePrometheusText, withLabels } from '../lib/prom-text';

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
/** A sandbox id found in more than one containerd namespace, asked for without one. */
export class AmbiguousSandboxError extends FailedPreconditionError {}

const SCRAPE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class KataMonitor {
  readonly registry = new Registry();
  private readonly runningShims: Gauge;
  private readonly scrapes: Counter;
  private readonly scrapeFailures: Counter;
  private readonly scrapeDuration: Histogram;
  /** A collection in progress: concurrent scrapes share it rather than each asking every shim. */
  private collecting: Promise<string> | undefined;

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

  /** Every sandbox's series, labelled, and the monitor's own; concurrent callers share one collection. */
  metrics(): Promise<string> {
    this.collecting ??= this.collect().finally(() => (this.collecting = undefined));
    return this.collecting;
  }

  private async collect(): Promise<string> {
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
  sandboxMetrics(sandboxId: string, namespace?: string): Promise<string> {
    return this.get(this.find(sandboxId, namespace), '/metrics');
  }

  agentUrl(sandboxId: string, namespace?: string): Promise<string> {
    return this.get(this.find(sandboxId, namespace), '/agent-url');
  }

  /** The sandbox `sandboxId` (in containerd namespace `namespace`, when given); an id in several namespaces needs one. */
  private find(sandboxId: string, namespace?: string): DiscoveredSandbox {
    const matches = this.sandboxes().filter((s) => s.identity.id === sandboxId && (!namespace || s.identity.namespace === namespace));
    if (matches.length === 0) throw new NotFoundError(`sandbox ${sandboxId}${namespace ? ` in namespace ${namespace}` : ''} not found: no management socket under ${this.options.stateDirs.join(', ')} belongs to it`);
    if (matches.length > 1) {
      const namespaces = [...new Set(matches.map((m) => m.identity.namespace))].sort();
      throw new AmbiguousSandboxError(`sandbox ${sandboxId} exists in namespaces ${namespaces.join(', ')}; name one with &namespace=`);
    }
    return matches[0];
  }

  private get(sandbox: DiscoveredSandbox, urlPath: string): Promise<string> {
    return unixHttpGet(sandbox.socket, urlPath, { timeoutMs: this.options.scrapeTimeoutMs, maxBytes: this.options.maxBytesPerShim ?? DEFAULT_MAX_BYTES });
  }

  private async scrapeOne(sandbox: DiscoveredSandbox): Promise<Family[] | undefined> {
    const { id, namespace, cri } = sandbox.identity;
    try {
      const families = parsePrometheusText(await this.get(sandbox, '/metrics'));
      return withLabels(families, [
        ['sandbox_id', id],
        // Not `namespace`: Prometheus targets in Kubernetes carry that label already (the scraped pod's).
        ['containerd_namespace', namespace],
        ['cri_uid', cri.uid],
        ['cri_name', cri.name],
        ['cri_namespace', cri.namespace],
      ]);
    } catch (err) {
      this.scrapeFailures.inc();
      this.options.logger.warn({ sandbox: id, namespace, socket: sandbox.socket, err: (err as Error).message }, 'no metrics from this sandbox in this scrape');
      return undefined;
    }
  }
}
