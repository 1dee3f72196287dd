import { Counter, Histogram, Registry } from 'prom-client';
import { InvalidArgumentError } from './errors';
import { parseExposition, samplesOf } from '../tests/harness/prometheus';
import { formatPrometheusText, mergeFamilies, parsePrometheusText, withLabels } from './prom-text';

/** What prom-client writes, with the awkward parts: escapes, a histogram, a timestamp. */
async function shimText(method: string): Promise<string> {
  const registry = new Registry();
  const calls = new Histogram({ name: 'calls_seconds', help: 'Call latency.\nSecond line, back\\slash.', labelNames: ['method'], buckets: [0.1, 1], registers: [registry] });
  calls.observe({ method }, 0.5);
  new Counter({ name: 'events_total', help: 'Events.', labelNames: ['topic'], registers: [registry] }).inc({ topic: 'a "quoted"\nnewline \\ topic' }, 3);
  return (await registry.metrics()) + 'stamped_gauge{x="1"} 1.5e+3 1700000000000\n';
}

describe('Prometheus text', () => {
  it('reads what prom-client writes and writes it back as the same exposition', async () => {
    const text = await shimText('Create');
    const families = parsePrometheusText(text);
    expect(families.map((f) => [f.name, f.type])).toEqual([
      ['calls_seconds', 'histogram'],
      ['events_total', 'counter'],
      ['stamped_gauge', 'untyped'],
    ]);
    expect(families[0].help).toBe('Call latency.\nSecond line, back\\slash.');
    expect(families[0].samples.map((s) => s.name)).toEqual(['calls_seconds_bucket', 'calls_seconds_bucket', 'calls_seconds_bucket', 'calls_seconds_sum', 'calls_seconds_count']);
    expect(families[1].samples[0].labels).toEqual([['topic', 'a "quoted"\nnewline \\ topic']]);
    expect(families[2].samples[0]).toEqual({ name: 'stamped_gauge', labels: [['x', '1']], value: '1.5e+3', timestamp: '1700000000000' });
    // Written back, an independent parser reads the same.
    expect(parseExposition(formatPrometheusText(families))).toEqual(parseExposition(text));
  });

  it('adds labels in front, replacing any of the same name, and merges two sources family by family', async () => {
    const a = withLabels(parsePrometheusText(await shimText('Create')), [['sandbox_id', 'a'], ['cri_name', 'pod-a']]);
    const b = withLabels(parsePrometheusText((await shimText('Start')).replace('method="Start"', 'method="Start",sandbox_id="forged"')), [['sandbox_id', 'b'], ['cri_name', 'pod-b']]);
    const { families, conflicts } = mergeFamilies([a, b]);
    expect(conflicts).toEqual([]);
    const text = formatPrometheusText(families);
    const parsed = parseExposition(text);
    expect(parsed.map((f) => f.name)).toEqual(['calls_seconds', 'events_total', 'stamped_gauge']);
    const topic = 'a "quoted"\nnewline \\ topic';
    expect(samplesOf(parsed, 'events_total').map((s) => s.labels)).toEqual([
      { sandbox_id: 'a', cri_name: 'pod-a', topic },
      { sandbox_id: 'b', cri_name: 'pod-b', topic },
    ]);
    // (That parser folds labelled histograms together; ours keeps them apart.)
    const counts = parsePrometheusText(text)[0].samples.filter((s) => s.name === 'calls_seconds_count');
    expect(counts.map((s) => [s.labels, s.value])).toEqual([
      [[['sandbox_id', 'a'], ['cri_name', 'pod-a'], ['method', 'Create']], '1'],
      [[['sandbox_id', 'b'], ['cri_name', 'pod-b'], ['method', 'Start']], '1'],
    ]);
  });

  it('leaves out a family whose type differs between sources, and says so', () => {
    const gauge = parsePrometheusText('# TYPE x gauge\nx 1\n');
    const counter = parsePrometheusText('# TYPE x counter\nx 2\n');
    const { families, conflicts } = mergeFamilies([gauge, counter]);
    expect(formatPrometheusText(families)).toBe('# TYPE x gauge\nx 1\n');
    expect(conflicts).toEqual(['x: counter, not gauge']);
  });

  it.each([
    ['x{a="1} 2', 'line 1: unterminated value of label a'],
    ['x{a="1" 2', 'line 1: expected , or } after label a'],
    ['x{a=1} 2', 'line 1: expected " to open the value of label a'],
    ['x{a="1",a="2"} 2', 'line 1: label a given twice'],
    ['x 1 2 3', 'line 1: x: unexpected text after the value'],
    ['x one', 'line 1: x: invalid value "one"'],
    ['x', 'line 1: x: invalid value ""'],
    ['# TYPE x gauge\n# TYPE x gauge', 'line 2: second TYPE for x'],
    ['# TYPE x sometimes', 'line 1: unknown TYPE "sometimes" for x'],
    ['# TYPE h histogram\nh 1', 'line 2: histogram h has a sample without _bucket, _sum or _count'],
    ['9x 1', 'line 1: invalid metric name'],
  ])('refuses %j', (text, message) => {
    expect(() => parsePrometheusText(text)).toThrow(new InvalidArgumentError(message));
  });

  it('accepts comments, blank lines, Inf and NaN', () => {
    const families = parsePrometheusText('# a comment\n\nx +Inf\ny{a="b",} NaN\nz -Inf\n');
    expect(families.map((f) => f.samples[0].value)).toEqual(['+Inf', 'NaN', '-Inf']);
  });
});
