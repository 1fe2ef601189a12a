// The admin token: kept in sessionStorage for this tab's session, taken once from a
// `#token=` link (the server prints one at start) and then removed from the address bar.
// When storage is disabled the token lives in memory until the page is closed.
const KEY = 'larder.adminToken';

let current = read();
const listeners = new Set();

function read() {
  try {
    return sessionStorage.getItem(KEY) ?? '';
  } catch {
    return '';
  }
}

export function getToken() {
  return current;
}

export function setToken(token) {
  current = token.trim();
  try {
    if (current) sessionStorage.setItem(KEY, current);
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the in-memory copy serves this page
  }
  for (const listener of listeners) listener(current);
}

/** Calls `listener(token)` after every change of the token. */
export function onTokenChange(listener) {
  listeners.add(listener);
}

/**
 * Moves a `#token=` in the address's fragment (the link the server prints at start) into
 * storage and out of the URL (and the history entry). The fragment is never sent to a
 * server, nor in a `Referer`: a token in the query string would be. Other parts of the
 * fragment (`#products&token=…`) stay.
 */
export function adoptTokenFromUrl() {
  const parts = window.location.hash.replace(/^#/, '').split('&').filter(Boolean);
  const found = parts.find((p) => p.startsWith('token='));
  if (found === undefined) return;
  setToken(decodeURIComponent(found.slice('token='.length)));
  const rest = parts.filter((p) => !p.startsWith('token=')).join('&');
  history.replaceState(history.state, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''));
}
