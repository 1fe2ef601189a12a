// The two SVG charts, drawn from numbers only: the hit rate over time (a line) and the
// cached vs uncached latencies of a performance run (bars with their values beside them).
import { svg } from './dom.js';
import { ms, percent } from './format.js';

const MIN_SPAN_MS = 1000;

const spanText = (span) => (span < 60_000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60_000)} min`);

/**
 * Hit rate (0..1) over time, newest at the right. The time axis spans the samples, so a
 * chart that just started fills its width too. Drawn `width` pixels wide so that its
 * labels keep their size on every screen.
 * @param {{t: number, rate: number}[]} samples  oldest first
 */
export function hitRateChart(samples, now, width) {
  const [height, left, right, top, bottom] = [132, 38, 8, 8, 22];
  const span = Math.max(MIN_SPAN_MS, now - (samples[0]?.t ?? now));
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const x = (t) => left + plotWidth * (1 - (now - t) / span);
  const y = (rate) => top + plotHeight * (1 - rate);
  const latest = samples.at(-1);
  const label = latest
    ? `Hit rate over the last ${spanText(span)}: from ${percent(samples[0].rate)} to ${percent(latest.rate)}`
    : 'Hit rate: no samples yet';

  const chart = svg('svg', { class: 'line-chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  for (const rate of [0, 0.5, 1]) {
    chart.append(
      svg('line', { class: 'grid', x1: left, x2: width - right, y1: y(rate), y2: y(rate) }),
      svg('text', { class: 'axis', x: left - 6, y: y(rate) + 3.5, 'text-anchor': 'end' }, `${rate * 100}%`),
    );
  }
  chart.append(
    svg('text', { class: 'axis', x: left, y: height - 4 }, `${spanText(span)} ago`),
    svg('text', { class: 'axis', x: width - right, y: height - 4, 'text-anchor': 'end' }, 'now'),
  );
  if (samples.length < 2) {
    chart.append(svg('text', { class: 'axis', x: left + plotWidth / 2, y: top + plotHeight / 2, 'text-anchor': 'middle' }, 'collecting samples…'));
    return chart;
  }
  const points = samples.map((s) => `${x(s.t).toFixed(1)},${y(s.rate).toFixed(1)}`);
  chart.append(
    svg('path', { class: 'area', d: `M${x(samples[0].t).toFixed(1)},${y(0)} L${points.join(' L')} L${x(latest.t).toFixed(1)},${y(0)} Z` }),
    svg('polyline', { class: 'line', points: points.join(' ') }),
    svg('circle', { class: 'dot', cx: x(latest.t), cy: y(latest.rate), r: 3 }),
  );
  return chart;
}

const METRICS = [
  ['p50', 'p50Ms'],
  ['p95', 'p95Ms'],
  ['mean', 'meanMs'],
];

/**
 * Cached and uncached latencies of one PerformanceReport, as horizontal bars with their
 * values beside them, drawn `width` pixels wide.
 */
export function latencyChart(report, width) {
  const [labelWidth, valueWidth, bar, gap, groupGap, legend] = [44, 70, 16, 3, 12, 24];
  const barMax = width - labelWidth - valueWidth;
  const max = Math.max(...METRICS.flatMap(([, key]) => [report.cached[key], report.uncached[key]]), 1e-9);
  const groupHeight = 2 * bar + gap + groupGap;
  const height = legend + METRICS.length * groupHeight;
  const chart = svg('svg', {
    class: 'bar-chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Mean latency: ${ms(report.cached.meanMs)} cached, ${ms(report.uncached.meanMs)} uncached`,
  });
  chart.append(
    svg('rect', { class: 'bar-cached', x: labelWidth, y: 3, width: 12, height: 12, rx: 2 }),
    svg('text', { class: 'axis', x: labelWidth + 17, y: 13.5 }, 'cached'),
    svg('rect', { class: 'bar-uncached', x: labelWidth + 80, y: 3, width: 12, height: 12, rx: 2 }),
    svg('text', { class: 'axis', x: labelWidth + 97, y: 13.5 }, 'uncached (database)'),
  );
  METRICS.forEach(([name, key], i) => {
    const top = legend + i * groupHeight;
    chart.append(svg('text', { class: 'label', x: 0, y: top + bar + 6 }, name));
    [
      ['bar-cached', report.cached[key]],
      ['bar-uncached', report.uncached[key]],
    ].forEach(([cls, value], j) => {
      const y = top + j * (bar + gap);
      const length = Math.max(2, (value / max) * barMax);
      chart.append(
        svg('rect', { class: cls, x: labelWidth, y, width: length.toFixed(1), height: bar, rx: 2 }),
        svg('text', { class: 'value', x: labelWidth + length + 6, y: y + bar - 4 }, ms(value)),
      );
    });
  });
  return chart;
}
