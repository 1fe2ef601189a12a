// The line under a load that says where its data came from: the server's source, SQL
// statements and cache round trips (extensions.cache), the x-cache header, and the time
// this browser measured for the whole request.
import { el } from './dom.js';
import { count, ms } from './format.js';

const SOURCE_TITLES = {
  cache: 'every entity came from the cache',
  database: 'every entity came from the database',
  both: 'some entities from the cache, some from the database',
  none: 'no cache lookup was needed',
};

/** A source badge: "cache", "database", "both" or "none". */
export function sourceBadge(source) {
  return el('span', { class: `badge source-${source || 'none'}`, title: SOURCE_TITLES[source] ?? null }, source || 'none');
}

/** Replaces the content of `container` with the report of one request result. */
export function showReport(container, { cache, xCache, ms: elapsed }) {
  const item = (label, value, cls) => el('div', { class: cls }, el('dt', { text: label }), el('dd', {}, value));
  container.replaceChildren(
    el(
      'dl',
      { class: 'report' },
      item('Source', sourceBadge(cache?.source), 'source'),
      item('SQL statements', count(cache?.sqlStatements ?? 0), 'sql'),
      item('Cache round trips', count(cache?.roundTrips ?? 0), 'trips'),
      item('Time in browser', ms(elapsed), 'time'),
      item('x-cache', xCache || '–', 'x-cache'),
    ),
  );
}

/** Replaces the content of `container` with an error message. */
export function showError(container, message) {
  container.replaceChildren(el('p', { class: 'form-error', role: 'alert' }, message));
}
