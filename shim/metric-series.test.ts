import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Family, formatPrometheusText, parsePrometheusText } from '../lib/prom-text';
import { HistogramSeries, MetricSeries } from './metric-series';

/** Families as read back, values as numbers: "1" and "1.0" are one value. */
function normalised(text: string): Array<Omit<Family, 'samples'> & { samples: Array<{ name: string; labels: Array<[string, string]>; value: number }> }> {
  return parsePrometheusText(text).map((f) => ({ ...f, samples: f.samples.map((s) => ({ name: s.name, labels: s.labels, value: Number(s.value) })) }));
}

const AWKWARD = 'a "quoted" back\\slash and a\nnewline';
const BUCKETS = [0.001, 0.01, 0.1, 1];

describe('shim metric series', () => {
  it('write what prom-client writes for the same figures: counters, labelled gauges, histograms, escapes', async () => {
    const registry = new Registry();
    const registers = [registry];
    const promCounter = new Counter({ name: 'x_total', help: `Things, ${AWKWARD}.`, labelNames: ['topic'], registers });
    const promGauge = new Gauge({ name: 'x_bytes', help: 'Bytes.', labelNames: ['item'], registers });
    const promPlain = new Gauge({ name: 'x_seconds', help: 'Unset: reads 0.', registers });
    const promHistogram = new Histogram({ name: 'x_duration_seconds', help: 'Latency.', labelNames: ['method'], buckets: BUCKETS, registers });

    const counter = new MetricSeries('x_total', `Things, ${AWKWARD}.`, 'counter', ['topic']);
    const gauge = new MetricSeries('x_bytes', 'Bytes.', 'gauge', ['item']);
    const plain = new MetricSeries('x_seconds', 'Unset: reads 0.', 'gauge');
    const histogram = new HistogramSeries('x_duration_seconds', 'Latency.', ['method'], BUCKETS);

    for (const topic of ['/tasks/start', AWKWARD, '/tasks/start']) {
      promCounter.inc({ topic });
      counter.inc(1, { topic });
    }
    promCounter.inc({ topic: 'none' }, 0);
    counter.inc(0, { topic: 'none' });
    promGauge.set({ item: 'mem_total' }, 512 * 1024 * 1024);
    gauge.set(512 * 1024 * 1024, { item: 'mem_total' });
    promGauge.set({ item: 'load' }, 0.25);
    gauge.set(0.25, { item: 'load' });
    // On a bound, between bounds, past the last one; two methods.
    for (const [method, seconds] of [['A', 0.001], ['A', 0.05], ['A', 7], ['B', 0.0001], ['A', 1]] as const) {
      promHistogram.observe({ method }, seconds);
      histogram.observe({ method }, seconds);
    }

    const ours = formatPrometheusText([counter.family(), gauge.family(), plain.family(), histogram.family()]);
    expect(normalised(ours)).toEqual(normalised(await registry.metrics()));
    // Read back exactly: the label value with a quote, a backslash and a newline survives.
    expect(parsePrometheusText(ours)[0].samples.map((s) => s.labels[0][1])).toContain(AWKWARD);
  });

  it('replace a value on set, add on inc, and hold nothing after reset (a family without labels reads 0 again)', () => {
    const labelled = new MetricSeries('y', 'Y.', 'gauge', ['item']);
    labelled.set(1, { item: 'a' });
    labelled.set(2, { item: 'a' });
    labelled.inc(3, { item: 'b' });
    labelled.inc(4, { item: 'b' });
    expect(labelled.family().samples.map((s) => [s.labels, s.value])).toEqual([
      [[['item', 'a']], '2'],
      [[['item', 'b']], '7'],
    ]);
    labelled.reset();
    expect(labelled.family().samples).toEqual([]);

    const plain = new MetricSeries('z_total', 'Z.', 'counter');
    plain.set(1.5);
    expect(plain.family().samples.map((s) => s.value)).toEqual(['1.5']);
    plain.reset();
    expect(plain.family().samples.map((s) => s.value)).toEqual(['0']);
  });

  it('leave a value that is not finite out of a histogram', () => {
    const histogram = new HistogramSeries('h', 'H.', ['m'], [1]);
    histogram.observe({ m: 'a' }, NaN);
    histogram.observe({ m: 'a' }, Infinity);
    histogram.observe({ m: 'a' }, 0.5);
    expect(histogram.family().samples.map((s) => [s.name, s.value])).toEqual([
      ['h_bucket', '1'],
      ['h_bucket', '1'],
      ['h_sum', '0.5'],
      ['h_count', '1'],
    ]);
  });

  it('write +Inf, -Inf and NaN as the format spells them', () => {
    const series = new MetricSeries('w', 'W.', 'gauge', ['k']);
    series.set(Infinity, { k: 'up' });
    series.set(-Infinity, { k: 'down' });
    series.set(NaN, { k: 'none' });
    expect(series.family().samples.map((s) => s.value)).toEqual(['+Inf', '-Inf', 'NaN']);
    expect(() => parsePrometheusText(formatPrometheusText([series.family()]))).not.toThrow();
  });
});
