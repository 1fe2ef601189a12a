// The admin token: kept in sessionStorage for this tab's session, taken once from a
// `?token=` link (the server logs one at start) and then removed from the address bar.
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

/** Moves a `?token=` parameter into storage and out of the URL (and the history entry). */
export function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  setToken(token);
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
}
