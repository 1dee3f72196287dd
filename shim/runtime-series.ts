// Node's own series for a shim daemon: prom-client's defaults, as kata_shim_process_* and
// kata_shim_nodejs_*, made at the first scrape. A shim nobody scrapes never loads
// prom-client, and never starts its event-loop sampler: at prom-client's default of
// 100 samples a second it kept every idle shim awake (0.4 % of a CPU each, measured).
// Loading it holds up that first scrape's event loop for some tens of ms.
import type { Counter, Registry } from 'prom-client';
import { Logger } from '../lib/logger';
import { formatPrometheusText, parsePrometheusText } from '../lib/prom-text';

const PREFIX = 'kata_shim_';

/** How often the event-loop delay is sampled, in ms: a stuck loop shows at once a second. */
const EVENT_LOOP_SAMPLE_MS = 1000;
// (Node records its first delay at the second tick: the distribution appears about 2 s
// after the first scrape.)

/** Families drawn from the event-loop delay histogram; an empty one gives placeholders (min 2^63 ns, mean NaN). */
const EVENT_LOOP_DISTRIBUTION = new RegExp(`^${PREFIX}nodejs_eventloop_lag_(min|max|mean|stddev|p50|p90|p99)_seconds$`);

/** prom-client counts CPU from when its counters are made; these carry the time before. */
const CPU_COUNTERS: ReadonlyArray<readonly [string, (usage: NodeJS.CpuUsage) => number]> = [
  [`${PREFIX}process_cpu_user_seconds_total`, (u) => u.user],
  [`${PREFIX}process_cpu_system_seconds_total`, (u) => u.system],
  [`${PREFIX}process_cpu_seconds_total`, (u) => u.user + u.system],
];

export class NodeRuntimeSeries {
  private registry: Promise<Registry> | undefined;
  private failures = 0;

  constructor(
    private readonly logger: Logger,
    private readonly eventLoopSampleMs = EVENT_LOOP_SAMPLE_MS,
  ) {}

  /** The series as exposition text; empty when they cannot be had (the sandbox's own series do not depend on them). */
  async text(): Promise<string> {
    let text: string;
    try {
      text = await (await this.made()).metrics();
    } catch (err) {
      const log = this.failures++ === 0 ? this.logger.warn.bind(this.logger) : this.logger.debug.bind(this.logger);
      log({ err: (err as Error).message }, "Node's runtime series could not be written; the scrape has the sandbox's own");
      return '';
    }
    this.failures = 0;
    return withoutEmptyEventLoopFigures(text);
  }

  /** Made once; when prom-client cannot be loaded, tried again at the next scrape. */
  private made(): Promise<Registry> {
    this.registry ??= import('prom-client').then(
      ({ Registry, collectDefaultMetrics }) => {
        const registry = new Registry();
        const before = process.cpuUsage();
        // Not tried again if it throws: what it made stays, and a second call would start a second sampler.
        try {
          collectDefaultMetrics({ register: registry, prefix: PREFIX, eventLoopMonitoringPrecision: this.eventLoopSampleMs });
          for (const [name, micros] of CPU_COUNTERS) (registry.getSingleMetric(name) as Counter | undefined)?.inc(micros(before) / 1e6);
        } catch (err) {
          this.logger.warn({ err: (err as Error).message }, "some of Node's runtime series could not be made");
        }
        return registry;
      },
      (err: unknown) => {
        this.registry = undefined;
        throw err;
      },
    );
    return this.registry;
  }
}

/**
 * `text` without the event-loop distribution while its histogram has no sample (at the
 * first scrape, or two within a sample's time): placeholders such as a minimum of 292
 * years are not delays.
 */
function withoutEmptyEventLoopFigures(text: string): string {
  const families = parsePrometheusText(text);
  const mean = families.find((f) => f.name === `${PREFIX}nodejs_eventloop_lag_mean_seconds`);
  if (!mean?.samples.some((s) => Number.isNaN(Number(s.value)))) return text; // prom-client writes NaN as Nan
  return formatPrometheusText(families.filter((f) => !EVENT_LOOP_DISTRIBUTION.test(f.name)));
}
