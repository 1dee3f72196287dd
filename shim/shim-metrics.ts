// The per-sandbox metrics registry of a shim daemon, served on its management socket
// as Prometheus text (Kata's /metrics). Counters are pushed as things happen (agent
// calls, events, hot-plugs); the rest is read at each scrape: the VMM's and the shim's
// footprint from /proc, and the guest's memory and load from the agent. Series carry
// no sandbox label: kata-ts-monitor adds sandbox_id and the CRI labels.
//
// The series are plain numbers (metric-series.ts); Node's runtime series come from
// prom-client, loaded at the first scrape (runtime-series.ts).
import { Logger } from '../lib/logger';
import { Family, formatPrometheusText, PROMETHEUS_TEXT_CONTENT_TYPE } from '../lib/prom-text';
import { ProcessStats, readProcessStats } from '../lib/proc-stats';
import { GuestMetricsReport } from '../sandbox/agent-client';
import { HotplugDevice, HotplugOp, ObservedSandbox, SandboxObserver } from '../sandbox/sandbox-observer';
import { EventDropReason, EventObserver } from './events';
import { HistogramSeries, MetricSeries } from './metric-series';
import { NodeRuntimeSeries } from './runtime-series';

/** A scrape waits this long for the guest; a slow guest costs its own series, not the scrape. */
const GUEST_TIMEOUT_MS = 2000;

/**
 * Figures are read at most this often: a scrape within it gets the last text. Reading
 * QEMU's smaps_rollup walks page tables whose size the guest controls, and each render
 * asks the guest; a scraper in a loop must not turn that into load.
 */
const MIN_RENDER_INTERVAL_MS = 1000;

/** A kernel's /proc/meminfo has some 60 fields: entries of the guest's map past this many are not looked at. */
export const MAX_MEMINFO_ENTRIES = 256;

/** /proc/meminfo fields worth a series, and their item labels (Kata's names). Others are ignored. */
const MEMINFO_ITEMS: ReadonlyArray<readonly [string, string]> = [
  ['MemTotal', 'mem_total'],
  ['MemFree', 'mem_free'],
  ['MemAvailable', 'mem_available'],
  ['Buffers', 'buffers'],
  ['Cached', 'cached'],
  ['SwapCached', 'swap_cached'],
  ['Active', 'active'],
  ['Inactive', 'inactive'],
  ['AnonPages', 'anon_pages'],
  ['Mapped', 'mapped'],
  ['Shmem', 'shmem'],
  ['Slab', 'slab'],
  ['SReclaimable', 's_reclaimable'],
  ['SUnreclaim', 's_unreclaim'],
  ['KernelStack', 'kernel_stack'],
  ['PageTables', 'page_tables'],
  ['Dirty', 'dirty'],
  ['Writeback', 'writeback'],
  ['SwapTotal', 'swap_total'],
  ['SwapFree', 'swap_free'],
  ['CommitLimit', 'commit_limit'],
  ['Committed_AS', 'committed_as'],
  ['Unevictable', 'unevictable'],
  ['Mlocked', 'mlocked'],
];

/** Bounds on what a guest may claim: beyond them a value is a lie or a bug, and is dropped. */
const MAX_BYTES = 2 ** 50; // 1 PiB
const MAX_LOAD = 1e6;
const MAX_TASKS = 2 ** 22; // the kernel's pid_max ceiling
const MAX_CPU_SECONDS = 2 ** 40;

/** A finite number in [0, max], or undefined: the only values a guest can put in a series. */
export function checked(value: unknown, max: number): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= max ? value : undefined;
}

/** Agent calls take milliseconds on KVM and up to seconds under TCG; the call timeout caps them. */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface ShimMetricsOptions {
  logger: Logger;
  /** Node's process and runtime series (prom-client's defaults) as kata_shim_process_*, kata_shim_nodejs_*, from the first scrape on. */
  runtimeMetrics?: boolean;
  guestTimeoutMs?: number;
  procDir?: string;
  /** The shim's own pid (this process by default). */
  shimPid?: number;
  /** Renders within this long of the last one answer its text (1 s by default). */
  minRenderIntervalMs?: number;
  /** Milliseconds, monotonic; for tests. */
  now?: () => number;
}

/** At most `max` of the guest map's own entries, in its order: a bloated map costs no more than that. */
export function boundedEntries(map: Record<string, unknown>, max: number): { entries: Map<string, unknown>; truncated: boolean } {
  const entries = new Map<string, unknown>();
  for (const key in map) {
    if (!Object.prototype.hasOwnProperty.call(map, key)) continue;
    if (entries.size >= max) return { entries, truncated: true };
    entries.set(key, map[key]);
  }
  return { entries, truncated: false };
}

/** Something written to the exposition: a series, or a histogram. */
type Written = { family(): Family };

/** Puts a series in the exposition and gives it back, so the field that holds it is its only mention. */
type Own = <T extends Written>(series: T) => T;

/** One process's series: rss, pss, cpu, threads, fds under `prefix`. */
class ProcessSeries {
  private readonly rss: MetricSeries;
  private readonly pss: MetricSeries;
  private readonly cpu: MetricSeries;
  private readonly threads: MetricSeries;
  private readonly fds: MetricSeries;

  constructor(prefix: string, what: string, own: Own) {
    this.rss = own(new MetricSeries(`${prefix}_rss_bytes`, `Resident memory of the ${what} (VmRSS).`, 'gauge'));
    this.pss = own(new MetricSeries(`${prefix}_pss_bytes`, `Proportional memory of the ${what}: shared pages divided among their users (smaps_rollup Pss).`, 'gauge'));
    this.cpu = own(new MetricSeries(`${prefix}_cpu_seconds_total`, `User and system CPU time of the ${what}.`, 'counter'));
    this.threads = own(new MetricSeries(`${prefix}_threads`, `Threads of the ${what}.`, 'gauge'));
    this.fds = own(new MetricSeries(`${prefix}_fds`, `Open file descriptors of the ${what}.`, 'gauge'));
  }

  /** Zeros when the process is not there (no VMM yet, or it exited). */
  set(stats: ProcessStats | undefined): void {
    this.rss.set(stats?.rssBytes ?? 0);
    this.pss.set(stats?.pssBytes ?? 0);
    // A counter read from the kernel: set, not accumulated.
    this.cpu.set(stats?.cpuSeconds ?? 0);
    this.threads.set(stats?.threads ?? 0);
    this.fds.set(stats?.openFds ?? 0);
  }
}

export class ShimMetrics implements EventObserver, Pick<SandboxObserver, 'agentCall' | 'hotplug'> {
  /**
   * Every series in the order it is written. Each joins as its field below is made
   * (`own`), so a series added to the class cannot be missing from the exposition.
   * Declared first: fields are made in the order they are declared.
   */
  private readonly families: Written[] = [];
  private readonly bootDuration = this.own(new MetricSeries('kata_hypervisor_boot_duration_seconds', "Seconds from the VMM's launch to the guest agent's first answer (0 until then).", 'gauge'));
  private readonly hypervisor = new ProcessSeries('kata_hypervisor', 'VMM process (QEMU)', (series) => this.own(series));
  private readonly shim = new ProcessSeries('kata_shim', 'shim daemon', (series) => this.own(series));
  private readonly guestMeminfo = this.own(new MetricSeries('kata_guest_meminfo_bytes', "The guest kernel's /proc/meminfo, by field (item).", 'gauge', ['item']));
  private readonly guestLoad = this.own(new MetricSeries('kata_guest_load', "The guest's load averages (item load1, load5, load15).", 'gauge', ['item']));
  private readonly guestTasks = this.own(new MetricSeries('kata_guest_tasks', "The guest's scheduling entities (item running, total), from /proc/loadavg.", 'gauge', ['item']));
  private readonly agentRss = this.own(new MetricSeries('kata_agent_rss_bytes', 'Resident memory of the guest agent, as the guest reports it.', 'gauge'));
  private readonly agentCpu = this.own(new MetricSeries('kata_agent_cpu_seconds_total', 'CPU time of the guest agent, as the guest reports it.', 'counter'));
  private readonly guestFailures = this.own(new MetricSeries('kata_shim_guest_metrics_failures_total', 'Scrapes whose guest figures could not be had (no agent, no answer in time).', 'counter'));
  private readonly agentCalls = this.own(new HistogramSeries('kata_agent_call_duration_seconds', 'Latency of control calls to the guest agent, by method (waits and stdio reads excluded).', ['method'], CALL_BUCKETS));
  private readonly agentCallFailures = this.own(new MetricSeries('kata_agent_call_failures_total', 'Control calls to the guest agent that failed, by method.', 'counter', ['method']));
  private readonly eventsPublished = this.own(new MetricSeries('kata_shim_events_published_total', 'Task events containerd accepted, by topic.', 'counter', ['topic']));
  private readonly eventsDropped = this.own(new MetricSeries('kata_shim_events_dropped_total', 'Task events that never reached containerd, by reason (queue_full, gave_up, closed).', 'counter', ['reason']));
  private readonly hotplugs = this.own(new MetricSeries('kata_hypervisor_hotplugs_total', 'Devices, vCPUs and memory hot-plugged into (op add) or out of (op remove) the VM.', 'counter', ['device', 'op']));
  private readonly hotplugFailures = this.own(new MetricSeries('kata_hypervisor_hotplug_failures_total', 'Hot-plugs the VMM or the guest refused.', 'counter', ['device', 'op']));
  /** Node's runtime series, when runtimeMetrics is on. */
  private readonly runtime: NodeRuntimeSeries | undefined;
  /** A scrape in progress: concurrent scrapes share it rather than each asking the guest. */
  private rendering: Promise<string> | undefined;
  /** The last render's text, when it finished, and for which sandbox. */
  private rendered: { text: string; at: number; sandbox: ObservedSandbox | undefined } | undefined;

  constructor(private readonly options: ShimMetricsOptions) {
    if (options.runtimeMetrics) this.runtime = new NodeRuntimeSeries(options.logger);
    // Present from the start, so "nothing dropped" reads as 0 rather than as no data.
    for (const reason of ['queue_full', 'gave_up', 'closed'] as const) this.eventsDropped.inc(0, { reason });
  }

  private own<T extends Written>(series: T): T {
    this.families.push(series);
    return series;
  }

  get contentType(): string {
    return PROMETHEUS_TEXT_CONTENT_TYPE;
  }

  readonly agentCall = (method: string, seconds: number, failed: boolean): void => {
    this.agentCalls.observe({ method }, seconds);
    if (failed) this.agentCallFailures.inc(1, { method });
  };

  hotplug(device: HotplugDevice, op: HotplugOp, failed: boolean): void {
    (failed ? this.hotplugFailures : this.hotplugs).inc(1, { device, op });
  }

  published(topic: string): void {
    this.eventsPublished.inc(1, { topic });
  }

  dropped(_topic: string, reason: EventDropReason): void {
    this.eventsDropped.inc(1, { reason });
  }

  /**
   * The exposition text, with the figures read now, or the last text when it is less
   * than a second old; concurrent callers share one render. `sandbox` undefined before
   * the first Create.
   */
  render(sandbox: ObservedSandbox | undefined): Promise<string> {
    const now = this.options.now ?? (() => performance.now());
    const last = this.rendered;
    if (last && last.sandbox === sandbox && now() - last.at < (this.options.minRenderIntervalMs ?? MIN_RENDER_INTERVAL_MS)) return Promise.resolve(last.text);
    this.rendering ??= this.refresh(sandbox)
      .then(() => this.text())
      .then((text) => {
        this.rendered = { text, at: now(), sandbox };
        return text;
      })
      .finally(() => (this.rendering = undefined));
    return this.rendering;
  }

  private async text(): Promise<string> {
    const own = formatPrometheusText(this.families.map((series) => series.family()));
    return own + ((await this.runtime?.text()) ?? '');
  }

  private async refresh(sandbox: ObservedSandbox | undefined): Promise<void> {
    const { procDir } = this.options;
    const [shim, hypervisor] = await Promise.all([
      readProcessStats(this.options.shimPid ?? process.pid, procDir),
      sandbox ? readProcessStats(sandbox.hypervisorPid(), procDir) : undefined,
    ]);
    this.shim.set(shim);
    this.hypervisor.set(hypervisor);
    this.bootDuration.set(sandbox?.bootSeconds ?? 0);
    await this.refreshGuest(sandbox);
  }

  private async refreshGuest(sandbox: ObservedSandbox | undefined): Promise<void> {
    // Nothing stale: what the guest does not say in this scrape is not in it.
    for (const metric of [this.guestMeminfo, this.guestLoad, this.guestTasks, this.agentRss, this.agentCpu]) metric.reset();
    let report: GuestMetricsReport | undefined;
    if (sandbox?.bootSeconds !== undefined) {
      report = await sandbox.guestMetrics(this.options.guestTimeoutMs ?? GUEST_TIMEOUT_MS).catch((err: unknown) => {
        this.options.logger.debug({ err: (err as Error).message }, 'no guest metrics for this scrape');
        return undefined;
      });
      if (!report) this.guestFailures.inc();
    }
    if (!report) return;
    const rawMeminfo = report.meminfo_bytes;
    const { entries: meminfo, truncated } = boundedEntries(typeof rawMeminfo === 'object' && rawMeminfo !== null ? rawMeminfo : {}, MAX_MEMINFO_ENTRIES);
    if (truncated) this.options.logger.debug({ max: MAX_MEMINFO_ENTRIES }, "guest's meminfo map has too many entries; the rest are ignored");
    for (const [field, item] of MEMINFO_ITEMS) {
      const value = checked(meminfo.get(field), MAX_BYTES);
      if (value !== undefined) this.guestMeminfo.set(value, { item });
    }
    for (const item of ['load1', 'load5', 'load15'] as const) {
      const value = checked(report[item], MAX_LOAD);
      if (value !== undefined) this.guestLoad.set(value, { item });
    }
    const running = checked(report.tasks_running, MAX_TASKS);
    const total = checked(report.tasks_total, MAX_TASKS);
    if (running !== undefined) this.guestTasks.set(running, { item: 'running' });
    if (total !== undefined) this.guestTasks.set(total, { item: 'total' });
    this.agentRss.set(checked(report.agent_rss_bytes, MAX_BYTES) ?? 0);
    this.agentCpu.set(checked(report.agent_cpu_seconds, MAX_CPU_SECONDS) ?? 0);
  }
}
