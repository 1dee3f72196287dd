import { capturedLogger } from '../lib/testing/captured-logger';
import { parsePrometheusText } from '../lib/prom-text';
import type { NodeRuntimeSeries as NodeRuntimeSeriesClass } from './runtime-series';
import type { ShimMetrics as ShimMetricsClass } from './shim-metrics';

/** The modules under test, loaded afresh after `mock` replaced prom-client. */
function loadWith(mock: () => unknown): { NodeRuntimeSeries: typeof NodeRuntimeSeriesClass; ShimMetrics: typeof ShimMetricsClass } {
  jest.doMock('prom-client', mock);
  let loaded!: { NodeRuntimeSeries: typeof NodeRuntimeSeriesClass; ShimMetrics: typeof ShimMetricsClass };
  jest.isolateModules(() => {
    loaded = { ...jest.requireActual<typeof import('./runtime-series')>('./runtime-series'), ...jest.requireActual<typeof import('./shim-metrics')>('./shim-metrics') };
  });
  return loaded;
}

const valueIn = (text: string, name: string): number | undefined => {
  const sample = parsePrometheusText(text).find((f) => f.name === name)?.samples[0];
  return sample === undefined ? undefined : Number(sample.value);
};

describe("Node's runtime series of a shim", () => {
  afterEach(() => {
    jest.dontMock('prom-client');
    jest.resetModules();
  });

  it('load prom-client at the first scrape, not before, and only once', async () => {
    let loads = 0;
    const { ShimMetrics } = loadWith(() => {
      loads++;
      return jest.requireActual('prom-client');
    });
    const metrics = new ShimMetrics({ logger: capturedLogger().logger, runtimeMetrics: true, minRenderIntervalMs: 0 });
    metrics.agentCall('CreateSandbox', 0.2, false);
    metrics.published('/tasks/start');
    metrics.hotplug('memory', 'add', false);
    expect(loads).toBe(0);
    await metrics.render(undefined);
    await metrics.render(undefined);
    expect(loads).toBe(1);
  });

  it('leave out the event-loop distribution until it has a sample, and count CPU from the start of the process', async () => {
    const { NodeRuntimeSeries } = loadWith(() => jest.requireActual('prom-client'));
    const series = new NodeRuntimeSeries(capturedLogger().logger, 20);
    const cpuBefore = process.cpuUsage();
    const first = await series.text();
    // The histogram is empty at the first scrape: no minimum of 292 years, no NaN mean.
    expect(valueIn(first, 'kata_shim_nodejs_eventloop_lag_min_seconds')).toBeUndefined();
    expect(valueIn(first, 'kata_shim_nodejs_eventloop_lag_mean_seconds')).toBeUndefined();
    expect(valueIn(first, 'kata_shim_nodejs_eventloop_lag_seconds')).toBeDefined();
    // All the process's CPU time, not only what came after prom-client was loaded.
    expect(valueIn(first, 'kata_shim_process_cpu_seconds_total')).toBeGreaterThanOrEqual((cpuBefore.user + cpuBefore.system) / 1e6);

    await new Promise((resolve) => setTimeout(resolve, 200)); // Node records a first delay at the second tick
    const second = await series.text();
    expect(valueIn(second, 'kata_shim_nodejs_eventloop_lag_min_seconds')).toBeLessThan(60);
    expect(valueIn(second, 'kata_shim_nodejs_eventloop_lag_mean_seconds')).toBeLessThan(60);
    expect(valueIn(second, 'kata_shim_process_cpu_seconds_total')).toBeGreaterThanOrEqual(valueIn(first, 'kata_shim_process_cpu_seconds_total')!);
  });

  it("answer the sandbox's own series when prom-client cannot be loaded, warn once, and try again at the next scrape", async () => {
    let loads = 0;
    const { ShimMetrics } = loadWith(() => {
      loads++;
      throw new Error('prom-client is not installed');
    });
    const { logger, lines } = capturedLogger();
    const metrics = new ShimMetrics({ logger, runtimeMetrics: true, minRenderIntervalMs: 0 });
    metrics.published('/tasks/start');
    for (const scrape of [1, 2, 3]) {
      const names = parsePrometheusText(await metrics.render(undefined)).map((f) => f.name);
      expect(names).toContain('kata_shim_events_published_total');
      expect(names.filter((name) => name.startsWith('kata_shim_nodejs_'))).toEqual([]);
      expect(loads).toBe(scrape); // not given up after one failure
    }
    const failures = lines.filter((l) => l.err === 'prom-client is not installed');
    expect(failures.map((l) => l.level)).toEqual([40, 20, 20]); // warn, then debug
  });
});
