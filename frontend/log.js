// The request log: the last 20 requests this page sent (stats polls excepted), newest
// first, with the operation, the source the server reported, x-cache and the browser time.
import { requests } from './api.js';
import { byId, el } from './dom.js';
import { ms } from './format.js';
import { sourceBadge } from './report.js';

const LIMIT = 20;

export function createLog() {
  const rows = byId('log-rows');
  requests.addEventListener('request', ({ detail }) => {
    if (detail.background) return;
    const outcome = detail.ok ? sourceBadge(detail.source) : el('span', { class: 'badge failed' }, detail.kind);
    rows.prepend(
      el(
        'tr',
        {},
        el('td', { class: 'op' }, detail.operationName),
        el('td', { class: 'src' }, outcome),
        el('td', { class: 'xc' }, detail.xCache || '–'),
        el('td', { class: 'num' }, ms(detail.ms)),
      ),
    );
    while (rows.rows.length > LIMIT) rows.lastElementChild.remove();
    byId('log-empty').hidden = true;
  });
}
