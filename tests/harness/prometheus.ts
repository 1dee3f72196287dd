// Reading Prometheus text in tests with a parser that is not ours
// (parse-prometheus-text-format, after Prometheus's client_python parser), so a test
// checks the monitor's and the shim's output against an independent reading. It folds
// the samples of a labelled histogram into one: read histograms with lib/prom-text.

export interface ParsedSample {
  labels?: Record<string, string>;
  /** Counter, gauge, untyped. */
  value?: string;
  /** Histogram: cumulative counts by `le`; with count and sum. */
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

export interface ParsedFamily {
  name: string;
  help: string;
  /** Upper case: COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED. */
  type: string;
  metrics: ParsedSample[];
}

// The package ships no types; this is its one export.
const parseText = require('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

/** Parses `text` (throws on a malformed line) and checks each family appears once, as Prometheus requires. */
export function parseExposition(text: string): ParsedFamily[] {
  const families = parseText(text);
  const seen = new Set<string>();
  for (const f of families) {
    if (seen.has(f.name)) throw new Error(`metric family ${f.name} appears twice: its samples must be grouped under one HELP/TYPE`);
    seen.add(f.name);
  }
  return families;
}

/** The samples of family `name` whose labels include `labels`. */
export function samplesOf(families: ParsedFamily[], name: string, labels: Record<string, string> = {}): ParsedSample[] {
  const family = families.find((f) => f.name === name);
  return (family?.metrics ?? []).filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

/** The one value of a counter or gauge sample matching `labels` (NaN when there is none or several). */
export function valueOf(families: ParsedFamily[], name: string, labels: Record<string, string> = {}): number {
  const samples = samplesOf(families, name, labels);
  return samples.length === 1 ? Number(samples[0].value ?? samples[0].count) : NaN;
}
