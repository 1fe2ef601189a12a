// The performance comparison: asks the server to run one read scenario through the cache
// and with the cache bypassed (cachePerformance), then shows both latencies as bars, the
// numbers, and the speedup.
import { ApiError, request } from './api.js';
import { latencyChart } from './charts.js';
import { byId, el } from './dom.js';
import { ms, perRun } from './format.js';
import { CACHE_PERFORMANCE } from './operations.js';
import { showError } from './report.js';

export function createPerformance() {
  const form = byId('perf-form');
  const run = byId('perf-run');
  const iterations = byId('perf-iterations');
  const iterationsError = byId('perf-iterations-error');
  const result = byId('perf-result');

  function render(report, browserMs) {
    const row = (label, key, format) =>
      el(
        'tr',
        {},
        el('th', { scope: 'row' }, label),
        el('td', { class: 'num' }, format(report.cached[key])),
        el('td', { class: 'num' }, format(report.uncached[key])),
      );
    const table = el(
      'table',
      { class: 'data compact numbers' },
      el('caption', { class: 'visually-hidden' }, 'Latency per run, measured on the server'),
      el(
        'thead',
        {},
        el('tr', {}, el('td'), el('th', { scope: 'col', class: 'num' }, 'cached'), el('th', { scope: 'col', class: 'num' }, 'uncached')),
      ),
      el(
        'tbody',
        {},
        row('p50', 'p50Ms', ms),
        row('p95', 'p95Ms', ms),
        row('mean', 'meanMs', ms),
        row('min', 'minMs', ms),
        row('max', 'maxMs', ms),
        row('SQL statements per run', 'sqlStatementsPerRun', perRun),
        row('Cache round trips per run', 'cacheRoundTripsPerRun', perRun),
      ),
    );
    result.replaceChildren(
      el(
        'p',
        { class: 'speedup' },
        el('strong', { id: 'perf-speedup' }, `${report.speedup.toFixed(1)}×`),
        ` faster with the cache (mean of ${report.iterations} runs each)`,
      ),
      el('div', { class: 'perf-body' }, el('figure', { class: 'chart' }, latencyChart(report, Math.min(form.clientWidth, 560))), table),
      el('p', { class: 'hint' }, `The whole comparison took ${ms(browserMs)} in this browser.`),
    );
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    iterationsError.textContent = '';
    iterations.removeAttribute('aria-invalid');
    const count = Number(iterations.value);
    if (iterations.value === '' || !Number.isInteger(count)) {
      iterations.setAttribute('aria-invalid', 'true');
      iterationsError.textContent = 'Iterations must be a whole number from 1 to 200.';
      iterations.focus();
      return;
    }
    run.disabled = true;
    run.textContent = 'Running…';
    result.setAttribute('aria-busy', 'true');
    try {
      const scenario = byId('perf-scenario').value;
      const response = await request(CACHE_PERFORMANCE, { scenario, iterations: count });
      render(response.data.cachePerformance, response.ms);
    } catch (e) {
      if (e instanceof ApiError && e.fields.iterations) {
        iterations.setAttribute('aria-invalid', 'true');
        iterationsError.textContent = e.fields.iterations;
        iterations.focus();
      } else {
        showError(result, `The comparison could not run. ${e.message}`);
      }
    } finally {
      run.disabled = false;
      run.textContent = 'Run comparison';
      result.removeAttribute('aria-busy');
    }
  });
}
