// A shim's series as plain numbers, written as Prometheus text by lib/prom-text. Every
// pod has a shim, and most are never scraped: prom-client would cost each of them
// about 1.2 MiB for the series it keeps, where these cost a few objects.
import { Family, formatSampleValue, Sample } from '../lib/prom-text';

type LabelValues<L extends string> = Record<L, string>;

/** The label pairs of `values` in the family's declared order, and their key. */
function labelPairs<L extends string>(names: readonly L[], values: LabelValues<L> | undefined): { key: string; pairs: Array<[string, string]> } {
  const pairs = names.map((name): [string, string] => [name, values?.[name] ?? '']);
  return { key: JSON.stringify(pairs.map(([, v]) => v)), pairs };
}

/** A counter or gauge family: one value per label set. */
export class MetricSeries<L extends string = never> {
  private readonly values = new Map<string, { labels: Array<[string, string]>; value: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly type: 'counter' | 'gauge',
    private readonly labelNames: readonly L[] = [],
  ) {}

  set(value: number, labels?: LabelValues<L>): void {
    const { key, pairs } = labelPairs(this.labelNames, labels);
    this.values.set(key, { labels: pairs, value });
  }

  inc(by = 1, labels?: LabelValues<L>): void {
    const { key, pairs } = labelPairs(this.labelNames, labels);
    this.values.set(key, { labels: pairs, value: (this.values.get(key)?.value ?? 0) + by });
  }

  /** No samples until set again (a family without labels then reads 0). */
  reset(): void {
    this.values.clear();
  }

  family(): Family {
    // A family without labels always has its one sample, as prom-client writes it.
    const entries = this.values.size === 0 && this.labelNames.length === 0 ? [{ labels: [], value: 0 }] : [...this.values.values()];
    return { name: this.name, help: this.help, type: this.type, samples: entries.map(({ labels, value }) => ({ name: this.name, labels, value: formatSampleValue(value) })) };
  }
}

/** A histogram family with one label set per distinct value of its labels. */
export class HistogramSeries<L extends string> {
  private readonly values = new Map<string, { labels: Array<[string, string]>; counts: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelNames: readonly L[],
    /** Upper bounds, ascending; +Inf is added. */
    private readonly buckets: readonly number[],
  ) {}

  /** A value that is not finite is not counted: one NaN would make the sum NaN for good. */
  observe(labels: LabelValues<L>, value: number): void {
    if (!Number.isFinite(value)) return;
    const { key, pairs } = labelPairs(this.labelNames, labels);
    let series = this.values.get(key);
    if (!series) {
      series = { labels: pairs, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.values.set(key, series);
    }
    // Counts are per bucket here and made cumulative when written.
    const index = this.buckets.findIndex((bound) => value <= bound);
    if (index >= 0) series.counts[index]++;
    series.sum += value;
    series.count++;
  }

  family(): Family {
    const samples: Sample[] = [];
    for (const { labels, counts, sum, count } of this.values.values()) {
      let cumulative = 0;
      this.buckets.forEach((bound, i) => {
        cumulative += counts[i];
        samples.push({ name: `${this.name}_bucket`, labels: [['le', formatSampleValue(bound)], ...labels], value: String(cumulative) });
      });
      samples.push({ name: `${this.name}_bucket`, labels: [['le', '+Inf'], ...labels], value: String(count) });
      samples.push({ name: `${this.name}_sum`, labels, value: formatSampleValue(sum) });
      samples.push({ name: `${this.name}_count`, labels, value: String(count) });
    }
    return { name: this.name, help: this.help, type: 'histogram', samples };
  }
}
