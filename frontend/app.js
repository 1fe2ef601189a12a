// The dashboard's entry point: takes the admin token, wires the panels together, and
// shows the connection state. Each panel lives in its own module; this one only decides
// who refreshes what after a change.
import { requests, request } from './api.js';
import { createDetails } from './details.js';
import { byId } from './dom.js';
import { createEditor } from './editor.js';
import { createLive } from './live.js';
import { createLog } from './log.js';
import { notify } from './notice.js';
import { CATEGORIES } from './operations.js';
import { createPerformance } from './performance.js';
import { createProductList } from './products.js';
import { createStats } from './stats.js';
import { adoptTokenFromUrl, getToken, onTokenChange, setToken } from './token.js';

adoptTokenFromUrl();

const tokenInput = byId('token-input');
const tokenStatus = byId('token-status');

function showTokenState(message = null, rejected = false) {
  tokenInput.toggleAttribute('aria-invalid', rejected);
  tokenStatus.classList.toggle('bad', rejected);
  tokenStatus.textContent =
    message ?? (getToken() ? 'Kept for this tab until it closes.' : 'Needed for changes and the comparison; the server prints it at start.');
}

tokenInput.value = getToken();
showTokenState();
byId('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  setToken(tokenInput.value);
});
byId('token-forget').addEventListener('click', () => setToken(''));
onTokenChange((token) => {
  tokenInput.value = token;
  showTokenState();
});

createLog();
const stats = createStats();
createPerformance();

const list = createProductList({ onOpen: (id) => details.open(id) });
const editor = createEditor({
  onSaved(product) {
    details.update(product);
    catalogChanged();
  },
});
const details = createDetails({
  onEdit: (product) => editor.openEdit(product),
  onDeleted: catalogChanged,
});
byId('new-product').addEventListener('click', () => editor.openCreate());

async function loadCategories() {
  try {
    const { data } = await request(CATEGORIES);
    list.setCategories(data.categories);
    editor.setCategories(data.categories);
  } catch (e) {
    notify(`Categories could not be loaded. ${e.message}`, 'error');
  }
}

/** After any write: the shown page, the category counts and the stats are stale. */
function catalogChanged() {
  list.reload();
  loadCategories();
  stats.refresh();
}

// One banner for the whole page: any answer means the server is up again.
requests.addEventListener('request', ({ detail }) => {
  byId('banner-offline').hidden = detail.kind !== 'network';
  if (detail.kind === 'auth') {
    const message = getToken()
      ? 'Rejected by the server: check the token it printed at start.'
      : 'Enter the token to create, edit or delete products and to manage the cache.';
    showTokenState(message, true);
  } else if (detail.ok && detail.type === 'mutation') {
    showTokenState(); // the token worked
  }
});

// Changes made by others: the shown page and the open product follow them at once.
// A load that starts after a change arrived already shows it (the change is sent only
// once its invalidation was delivered), so one started meanwhile (this page's own write,
// a search) makes the live reload unneeded.
let pending = null;
let countsStale = false;
createLive({
  onChange(change) {
    details.changed(change);
    countsStale ||= change.kind !== 'UPDATED';
    const loads = list.loadsStarted();
    clearTimeout(pending);
    pending = setTimeout(() => {
      if (list.loadsStarted() === loads) list.reload();
      if (countsStale) loadCategories();
      countsStale = false;
    }, 100);
  },
  onGap: catalogChanged,
});

loadCategories();
list.load();
stats.refresh();
