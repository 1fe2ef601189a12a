// Live cache statistics: polls cacheStats every 2 seconds, fills the cards and the
// per-kind table, keeps the hit-rate samples of the last 5 minutes for the chart, and
// raises the "cache unreachable" banner when Redis is down. Also the cache's buttons:
// Clear cache and Reset stats.
import { request } from './api.js';
import { hitRateChart } from './charts.js';
import { byId, el } from './dom.js';
import { bytes, count, percent } from './format.js';
import { notify } from './notice.js';
import { CACHE_STATS, CLEAR_CACHE, RESET_CACHE_STATS } from './operations.js';

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;

export function createStats() {
  const samples = []; // {t, rate}, oldest first, within WINDOW_MS
  let timer = 0;
  let latest = 0; // only the newest poll renders and schedules the next one

  async function poll() {
    const id = ++latest;
    clearTimeout(timer);
    try {
      if (!document.hidden) {
        const { data } = await request(CACHE_STATS, {}, { background: true });
        if (id === latest) render(data.cacheStats);
      }
    } catch {
      // the connection banner tells; the cards keep the last numbers
    } finally {
      if (id === latest) timer = setTimeout(poll, POLL_MS);
    }
  }

  function render(stats) {
    byId('stat-hit-rate').textContent = percent(stats.hitRate);
    byId('stat-hits').textContent = count(stats.hits);
    byId('stat-misses').textContent = count(stats.misses);
    byId('stat-errors').textContent = count(stats.errors);
    byId('stat-errors').classList.toggle('bad', stats.errors > 0);
    byId('stat-sql').textContent = count(stats.sqlStatements);
    byId('stat-backend').replaceChildren(
      stats.backend,
      el('span', { class: `sub ${stats.connected ? 'ok' : 'bad'}` }, stats.connected ? 'connected' : 'unreachable'),
    );
    byId('stat-redis').replaceChildren(...redisSummary(stats));
    byId('banner-cache').hidden = !(stats.backend === 'redis' && !stats.connected);

    const cell = (label, value) => el('td', { class: 'num', 'data-label': label }, value);
    byId('entity-rows').replaceChildren(
      ...stats.entities.map((e) =>
        el(
          'tr',
          {},
          el('th', { scope: 'row' }, e.kind),
          cell('Hits', count(e.hits)),
          cell('Misses', count(e.misses)),
          cell('Hit rate', percent(e.hitRate)),
          cell('Errors', count(e.errors)),
          cell('Fills', count(e.fills)),
          cell('Rejected', count(e.fillsRejected)),
          cell('Invalidations', count(e.invalidations)),
        ),
      ),
    );

    const now = Date.now();
    samples.push({ t: now, rate: stats.hitRate });
    while (samples.length > 0 && now - samples[0].t > WINDOW_MS) samples.shift();
    const chart = byId('hit-rate-chart');
    chart.replaceChildren(hitRateChart(samples, now, chart.clientWidth || 320));
  }

  function redisSummary({ backend, redis }) {
    if (redis) {
      return [
        redis.version ? `v${redis.version}` : 'version unknown',
        el(
          'span',
          { class: 'sub' },
          [
            redis.usedMemoryBytes === null ? null : `${bytes(redis.usedMemoryBytes)} used`,
            redis.connectedClients === null ? null : `${count(redis.connectedClients)} client${redis.connectedClients === 1 ? '' : 's'}`,
          ]
            .filter(Boolean)
            .join(' · '),
        ),
      ];
    }
    return backend === 'redis' ? ['no answer'] : ['not in use', el('span', { class: 'sub' }, `backend: ${backend}`)];
  }

  /** Runs a cache mutation from a button, then shows its outcome and fresh numbers. */
  function action(buttonId, operation, describe) {
    const button = byId(buttonId);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const { data } = await request(operation);
        notify(describe(data));
        poll();
      } catch (e) {
        notify(e.message, 'error');
      } finally {
        button.disabled = false;
      }
    });
  }

  action('clear-cache', CLEAR_CACHE, ({ clearCache: r }) =>
    r.cleared ? `Cache cleared: the next reads go to the database (epoch ${r.epoch}).` : `Nothing to clear: the cache backend is “${r.backend}”.`,
  );
  action('reset-stats', RESET_CACHE_STATS, () => {
    samples.length = 0;
    return 'Cache statistics reset to zero.';
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) poll();
  });

  return { refresh: poll };
}
