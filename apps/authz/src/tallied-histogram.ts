// A Prometheus histogram for the Check's hot path. prom-client's Histogram hashes
// the label set and converts its arguments on every observe(); here each label
// value owns plain arrays, so an observation is a bucket search and two additions.
// Scrapes see exactly what prom-client's Histogram would export.
import type { Metric, Registry } from 'prom-client';

interface Series {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export interface TalliedHistogramOptions<L extends string> {
  name: string;
  help: string;
  labelName: L;
  /** Upper bounds, ascending. */
  buckets: readonly number[];
  registers: Registry[];
}

export class TalliedHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly labelName: L;
  private readonly bounds: readonly number[];
  private readonly series = new Map<string, Series>();

  constructor(options: TalliedHistogramOptions<L>) {
    this.name = options.name;
    this.help = options.help;
    this.labelName = options.labelName;
    this.bounds = options.buckets;
    // prom-client's registry takes any object with its metrics' shape (name, help, type, get()).
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The recorder of one label value: keep it, and observe through it. */
  labels(value: string): { observe(seconds: number): void } {
    let series = this.series.get(value);
    if (!series) {
      series = { counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(value, series);
    }
    const s = series;
    const bounds = this.bounds;
    return {
      observe(seconds: number): void {
        let i = 0;
        while (i < bounds.length && seconds > bounds[i]!) i++;
        s.counts[i]! += 1;
        s.sum += seconds;
        s.count += 1;
      },
    };
  }

  /** What prom-client's Histogram.get() returns, for the registry to format. */
  get(): {
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }>;
  } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const [labelValue, s] of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i]!;
        values.push({
          labels: { le: i < this.bounds.length ? this.bounds[i]! : '+Inf', [this.labelName]: labelValue },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({ labels: { [this.labelName]: labelValue }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.labelName]: labelValue }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
