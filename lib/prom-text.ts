// The Prometheus text exposition format (0.0.4), parsed and written: enough for the
// monitor to label each shim's series and merge them into one answer, where every
// metric family must appear once, its samples together under one HELP and TYPE, and
// for a shim to write its series without loading prom-client (shim/metric-series.ts).
// prom-client writes the format but does not read it.
import { InvalidArgumentError } from './errors';

/** The exposition's content type, as prom-client gives it. */
export const PROMETHEUS_TEXT_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
const TYPES: ReadonlySet<string> = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export interface Sample {
  /** The sample's own name: for a histogram family `x`, x_bucket, x_sum or x_count. */
  name: string;
  labels: Array<[string, string]>;
  /** As written (a float, +Inf, -Inf or NaN): passed on untouched. */
  value: string;
  timestamp?: string;
}

export interface Family {
  name: string;
  help?: string;
  type: MetricType;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$/i;
const TIMESTAMP = /^-?\d+$/;

/** The suffixes a histogram's or summary's samples may carry besides the family name. */
const SUFFIXES: Record<MetricType, readonly string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
  counter: [],
  gauge: [],
  untyped: [],
};

function fail(lineNo: number, message: string): never {
  throw new InvalidArgumentError(`line ${lineNo}: ${message}`);
}

/** `\\`, `\"` (label values only) and `\n` escapes; any other backslash stands for itself. */
function unescape(text: string): string {
  return text.replace(/\\(\\|"|n)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** Reads `{a="x",b="y"}` from `line` at `start` (the `{`); returns the labels and the index after `}`. */
function parseLabels(line: string, start: number, lineNo: number): { labels: Array<[string, string]>; end: number } {
  const labels: Array<[string, string]> = [];
  let i = start + 1;
  const skipSpace = (): void => {
    while (line[i] === ' ' || line[i] === '\t') i++;
  };
  for (;;) {
    skipSpace();
    if (line[i] === '}') return { labels, end: i + 1 };
    const nameStart = i;
    while (i < line.length && /[a-zA-Z0-9_]/.test(line[i])) i++;
    const name = line.slice(nameStart, i);
    if (!LABEL_NAME.test(name)) fail(lineNo, `invalid label name at column ${nameStart + 1}`);
    if (labels.some(([n]) => n === name)) fail(lineNo, `label ${name} given twice`);
    skipSpace();
    if (line[i] !== '=') fail(lineNo, `expected = after label ${name}`);
    i++;
    skipSpace();
    if (line[i] !== '"') fail(lineNo, `expected " to open the value of label ${name}`);
    i++;
    let raw = '';
    for (;;) {
      if (i >= line.length) fail(lineNo, `unterminated value of label ${name}`);
      const c = line[i];
      if (c === '\\') {
        raw += line.slice(i, i + 2);
        i += 2;
      } else if (c === '"') {
        i++;
        break;
      } else {
        raw += c;
        i++;
      }
    }
    labels.push([name, unescape(raw)]);
    skipSpace();
    if (line[i] === ',') i++;
    else if (line[i] !== '}') fail(lineNo, `expected , or } after label ${name}`);
  }
}

function parseSample(line: string, lineNo: number): Sample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) i++;
  const name = line.slice(0, i);
  if (!METRIC_NAME.test(name)) fail(lineNo, 'invalid metric name');
  let labels: Array<[string, string]> = [];
  while (line[i] === ' ' || line[i] === '\t') i++;
  if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i, lineNo));
  const rest = line.slice(i).trim().split(/[ \t]+/);
  const [value, timestamp, extra] = rest;
  if (!value || !FLOAT.test(value)) fail(lineNo, `${name}: invalid value ${JSON.stringify(value ?? '')}`);
  if (timestamp !== undefined && !TIMESTAMP.test(timestamp)) fail(lineNo, `${name}: invalid timestamp ${JSON.stringify(timestamp)}`);
  if (extra !== undefined) fail(lineNo, `${name}: unexpected text after the value`);
  return timestamp === undefined ? { name, labels, value } : { name, labels, value, timestamp };
}

/** The family `sampleName` belongs to among `byName`, by exact name or a histogram/summary suffix. */
function familyOf(byName: Map<string, Family>, sampleName: string): Family | undefined {
  const exact = byName.get(sampleName);
  if (exact && exact.type !== 'histogram') return exact;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = byName.get(sampleName.slice(0, -suffix.length));
    if (family && SUFFIXES[family.type].includes(suffix)) return family;
  }
  return undefined;
}

/** Parses exposition text; throws InvalidArgumentError naming the line of the first error. */
export function parsePrometheusText(text: string): Family[] {
  const families: Family[] = [];
  const byName = new Map<string, Family>();
  const declare = (name: string, lineNo: number): Family => {
    if (!METRIC_NAME.test(name)) fail(lineNo, `invalid metric name ${JSON.stringify(name)}`);
    let family = byName.get(name);
    if (!family) {
      family = { name, type: 'untyped', samples: [] };
      byName.set(name, family);
      families.push(family);
    }
    return family;
  };
  const typed = new Set<string>();
  const lines = text.split('\n');
  lines.forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.replace(/\r$/, '');
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // a comment
      const family = declare(m[2], lineNo);
      if (m[1] === 'HELP') {
        if (family.help !== undefined) fail(lineNo, `second HELP for ${family.name}`);
        family.help = unescape(m[3] ?? '');
      } else {
        const type = (m[3] ?? '').trim();
        if (!TYPES.has(type)) fail(lineNo, `unknown TYPE ${JSON.stringify(type)} for ${family.name}`);
        if (typed.has(family.name)) fail(lineNo, `second TYPE for ${family.name}`);
        if (family.samples.length > 0) fail(lineNo, `TYPE for ${family.name} after its samples`);
        typed.add(family.name);
        family.type = type as MetricType;
      }
      return;
    }
    const sample = parseSample(line, lineNo);
    const family = familyOf(byName, sample.name);
    if (!family && byName.get(sample.name)?.type === 'histogram') fail(lineNo, `histogram ${sample.name} has a sample without _bucket, _sum or _count`);
    (family ?? declare(sample.name, lineNo)).samples.push(sample);
  });
  return families;
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(text: string): string {
  return escapeHelp(text).replace(/"/g, '\\"');
}

/** A number as the format writes it: floats as JavaScript prints them, +Inf, -Inf, NaN. */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}

export function formatPrometheusText(families: Family[]): string {
  const out: string[] = [];
  for (const family of families) {
    if (family.help !== undefined) out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    out.push(`# TYPE ${family.name} ${family.type}`);
    for (const s of family.samples) {
      const labels = s.labels.length > 0 ? `{${s.labels.map(([n, v]) => `${n}="${escapeLabelValue(v)}"`).join(',')}}` : '';
      out.push(`${s.name}${labels} ${s.value}${s.timestamp !== undefined ? ` ${s.timestamp}` : ''}`);
    }
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

/** Every sample of `families` with `labels` first (replacing labels of the same names). */
export function withLabels(families: Family[], labels: Array<[string, string]>): Family[] {
  const names = new Set(labels.map(([n]) => n));
  return families.map((f) => ({ ...f, samples: f.samples.map((s) => ({ ...s, labels: [...labels, ...s.labels.filter(([n]) => !names.has(n))] })) }));
}

/**
 * One family per name from several sources' families, samples in source order. A
 * family whose type differs from the first source's (another shim version, say) is
 * left out and reported: one name cannot carry two types.
 */
export function mergeFamilies(sources: Family[][]): { families: Family[]; conflicts: string[] } {
  const merged = new Map<string, Family>();
  const conflicts: string[] = [];
  for (const families of sources) {
    for (const family of families) {
      const existing = merged.get(family.name);
      if (!existing) merged.set(family.name, { ...family, samples: [...family.samples] });
      else if (existing.type !== family.type) conflicts.push(`${family.name}: ${family.type}, not ${existing.type}`);
      else existing.samples.push(...family.samples);
    }
  }
  return { families: [...merged.values()], conflicts };
}
