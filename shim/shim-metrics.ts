// The per-sandbox metrics registry of a shim daemon, served on its management socket
// as Prometheus text (Kata's /metrics). Counters are pushed as things happen (agent
// calls, events, hot-plugs); the rest is read at each scrape: the VMM's and the shim's
// footprint from /proc, and the guest's memory and load from the agent. Series carry
// no sandbox label: kata-ts-monitor adds sandbox_id and the CRI labels.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Logger } from '../lib/logger';
import { ProcessStats, readProcessStats } from '../lib/proc-stats';
import { GuestMetricsReport } from '../sandbox/agent-client';
import { HotplugDevice, HotplugOp, ObservedSandbox, SandboxObserver } from '../sandbox/sandbox-observer';
import { EventDropReason, EventObserver } from './events';

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
  /** Node's process and runtime series (prom-client's defaults) as kata_shim_process_*, kata_shim_nodejs_*. Off in tests. */
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

/** One process's series: rss, pss, cpu, threads, fds under `prefix`. */
class ProcessSeries {
  private readonly rss: Gauge;
  private readonly pss: Gauge;
  private readonly cpu: Counter;
  private readonly threads: Gauge;
  private readonly fds: Gauge;

  constructor(registry: Registry, prefix: string, what: string) {
    const registers = [registry];
    this.rss = new Gauge({ name: `${prefix}_rss_bytes`, help: `Resident memory of the ${what} (VmRSS).`, registers });
    this.pss = new Gauge({ name: `${prefix}_pss_bytes`, help: `Proportional memory of the ${what}: shared pages divided among their users (smaps_rollup Pss).`, registers });
    this.cpu = new Counter({ name: `${prefix}_cpu_seconds_total`, help: `User and system CPU time of the ${what}.`, registers });
    this.threads = new Gauge({ name: `${prefix}_threads`, help: `Threads of the ${what}.`, registers });
    this.fds = new Gauge({ name: `${prefix}_fds`, help: `Open file descriptors of the ${what}.`, registers });
  }

  /** Zeros when the process is not there (no VMM yet, or it exited). */
  set(stats: ProcessStats | undefined): void {
    this.rss.set(stats?.rssBytes ?? 0);
    this.pss.set(stats?.pssBytes ?? 0);
    // A counter read from the kernel: set, not accumulated.
    this.cpu.reset();
    this.cpu.inc(stats?.cpuSeconds ?? 0);
    this.threads.set(stats?.threads ?? 0);
    this.fds.set(stats?.openFds ?? 0);
  }
}

export class ShimMetrics implements EventObserver, Pick<SandboxObserver, 'agentCall' | 'hotplug'> {
  readonly registry = new Registry();
  private readonly bootDuration: Gauge;
  private readonly hypervisor: ProcessSeries;
  private readonly shim: ProcessSeries;
  private readonly guestMeminfo: Gauge<'item'>;
  private readonly guestLoad: Gauge<'item'>;
  private readonly guestTasks: Gauge<'item'>;
  private readonly agentRss: Gauge;
  private readonly agentCpu: Counter;
  private readonly guestFailures: Counter;
  private readonly agentCalls: Histogram<'method'>;
  private readonly agentCallFailures: Counter<'method'>;
  private readonly eventsPublished: Counter<'topic'>;
  private readonly eventsDropped: Counter<'reason'>;
  private readonly hotplugs: Counter<'device' | 'op'>;
  private readonly hotplugFailures: Counter<'device' | 'op'>;
  /** A scrape in progress: concurrent scrapes share it rather than each asking the guest. */
  private rendering: Promise<string> | undefined;
  /** The last render's text, when it finished, and for which sandbox. */
  private rendered: { text: string; at: number; sandbox: ObservedSandbox | undefined } | undefined;

  constructor(private readonly options: ShimMetricsOptions) {
    const registers = [this.registry];
    this.bootDuration = new Gauge({ name: 'kata_hypervisor_boot_duration_seconds', help: "Seconds from the VMM's launch to the guest agent's first answer (0 until then).", registers });
    this.hypervisor = new ProcessSeries(this.registry, 'kata_hypervisor', 'VMM process (QEMU)');
    this.shim = new ProcessSeries(this.registry, 'kata_shim', 'shim daemon');
    this.guestMeminfo = new Gauge({ name: 'kata_guest_meminfo_bytes', help: "The guest kernel's /proc/meminfo, by field (item).", labelNames: ['item'], registers });
    this.guestLoad = new Gauge({ name: 'kata_guest_load', help: "The guest's load averages (item load1, load5, load15).", labelNames: ['item'], registers });
    this.guestTasks = new Gauge({ name: 'kata_guest_tasks', help: "The guest's scheduling entities (item running, total), from /proc/loadavg.", labelNames: ['item'], registers });
    this.agentRss = new Gauge({ name: 'kata_agent_rss_bytes', help: 'Resident memory of the guest agent, as the guest reports it.', registers });
    this.agentCpu = new Counter({ name: 'kata_agent_cpu_seconds_total', help: 'CPU time of the guest agent, as the guest reports it.', registers });
    this.guestFailures = new Counter({ name: 'kata_shim_guest_metrics_failures_total', help: 'Scrapes whose guest figures could not be had (no agent, no answer in time).', registers });
    this.agentCalls = new Histogram({ name: 'kata_agent_call_duration_seconds', help: 'Latency of control calls to the guest agent, by method (waits and stdio reads excluded).', labelNames: ['method'], buckets: CALL_BUCKETS, registers });
    this.agentCallFailures = new Counter({ name: 'kata_agent_call_failures_total', help: 'Control calls to the guest agent that failed, by method.', labelNames: ['method'], registers });
    this.eventsPublished = new Counter({ name: 'kata_shim_events_published_total', help: 'Task events containerd accepted, by topic.', labelNames: ['topic'], registers });
    this.eventsDropped = new Counter({ name: 'kata_shim_events_dropped_total', help: 'Task events that never reached containerd, by reason (queue_full, gave_up, closed).', labelNames: ['reason'], registers });
    this.hotplugs = new Counter({ name: 'kata_hypervisor_hotplugs_total', help: 'Devices, vCPUs and memory hot-plugged into (op add) or out of (op remove) the VM.', labelNames: ['device', 'op'], registers });
    this.hotplugFailures = new Counter({ name: 'kata_hypervisor_hotplug_failures_total', help: 'Hot-plugs the VMM or the guest refused.', labelNames: ['device', 'op'], registers });
    // Present from the start, so "nothing dropped" reads as 0 rather than as no data.
    for (const reason of ['queue_full', 'gave_up', 'closed'] as const) this.eventsDropped.inc({ reason }, 0);
    if (options.runtimeMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'kata_shim_' });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  readonly agentCall = (method: string, seconds: number, failed: boolean): void => {
    this.agentCalls.observe({ method }, seconds);
    if (failed) this.agentCallFailures.inc({ method });
  };

  hotplug(device: HotplugDevice, op: HotplugOp, failed: boolean): void {
    (failed ? this.hotplugFailures : this.hotplugs).inc({ device, op });
  }

  published(topic: string): void {
    this.eventsPublished.inc({ topic });
  }

  dropped(_topic: string, reason: EventDropReason): void {
    this.eventsDropped.inc({ reason });
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
      .then(() => this.registry.metrics())
      .then((text) => {
        this.rendered = { text, at: now(), sandbox };
        return text;
      })
      .finally(() => (this.rendering = undefined));
    return this.rendering;
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
      if (value !== undefined) this.guestMeminfo.set({ item }, value);
    }
    for (const item of ['load1', 'load5', 'load15'] as const) {
      const value = checked(report[item], MAX_LOAD);
      if (value !== undefined) this.guestLoad.set({ item }, value);
    }
    const running = checked(report.tasks_running, MAX_TASKS);
    const total = checked(report.tasks_total, MAX_TASKS);
    if (running !== undefined) this.guestTasks.set({ item: 'running' }, running);
    if (total !== undefined) this.guestTasks.set({ item: 'total' }, total);
    this.agentRss.set(checked(report.agent_rss_bytes, MAX_BYTES) ?? 0);
    this.agentCpu.inc(checked(report.agent_cpu_seconds, MAX_CPU_SECONDS) ?? 0);
  }
}
