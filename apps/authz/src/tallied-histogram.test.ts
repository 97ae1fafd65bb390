import { Histogram, Registry } from 'prom-client';
import { TalliedHistogram } from './tallied-histogram';

describe('TalliedHistogram', () => {
  it("exports exactly what prom-client's Histogram exports for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1];
    const [ours, theirs] = [new Registry(), new Registry()];
    const tallied = new TalliedHistogram({ name: 'x_seconds', help: 'h', labelName: 'direction', buckets, registers: [ours] });
    const reference = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['direction'], buckets, registers: [theirs] });
    const samples: Array<[string, number]> = [
      ['outbound', 0.0005],
      ['outbound', 0.001], // on a bound: counted in it (le)
      ['outbound', 0.05],
      ['inbound', 0.5], // above every bound: +Inf only
      ['outbound', 0.002],
    ];
    for (const [direction, seconds] of samples) {
      tallied.labels(direction).observe(seconds);
      reference.labels(direction).observe(seconds);
    }
    const sorted = (text: string) => text.split('\n').sort().join('\n');
    expect(sorted(await ours.metrics())).toBe(sorted(await theirs.metrics()));
  });
});
