// Browsing: search, category and price filters, sort, and cursor pagination of the
// product table. "Previous" walks back a stack of the `after` cursors of the pages seen.
import { request } from './api.js';
import { byId, el } from './dom.js';
import { count } from './format.js';
import { PRODUCTS_PAGE } from './operations.js';
import { showError, showReport } from './report.js';

const TYPING_DELAY_MS = 300;

/** @param {{onOpen: (id: string) => void}} options  called when a product is chosen */
export function createProductList({ onOpen }) {
  const form = byId('filters');
  const rows = byId('product-rows');
  const meta = byId('load-meta');
  const empty = byId('products-empty');
  const prev = byId('page-prev');
  const next = byId('page-next');
  const pageInfo = byId('page-info');
  const categorySelect = byId('f-category');

  let cursors = [null]; // the `after` of every page from the first to the shown one
  let endCursor = null;
  let sequence = 0; // only the latest load may render
  let typingTimer = 0;

  function variables() {
    const data = new FormData(form);
    const filter = {};
    const search = data.get('search').trim();
    if (search) filter.search = search;
    if (data.get('categoryId')) filter.categoryId = data.get('categoryId');
    if (data.get('minPrice')) filter.minPrice = data.get('minPrice');
    if (data.get('maxPrice')) filter.maxPrice = data.get('maxPrice');
    if (data.get('inStock')) filter.inStock = true;
    return {
      filter,
      orderBy: { field: data.get('field'), direction: data.get('direction') },
      first: Number(data.get('first')),
      after: cursors.at(-1),
    };
  }

  async function load() {
    const id = ++sequence;
    rows.closest('table').setAttribute('aria-busy', 'true');
    try {
      const vars = variables();
      const result = await request(PRODUCTS_PAGE, vars);
      if (id !== sequence) return;
      const page = result.data.products;
      if (page.nodes.length === 0 && cursors.length > 1) {
        cursors.pop(); // the page emptied (its last product was deleted): show the one before
        load();
        return;
      }
      render(page, vars.first);
      showReport(meta, result);
    } catch (error) {
      if (id === sequence) showError(meta, `Products could not be loaded. ${error.message}`);
    } finally {
      if (id === sequence) rows.closest('table').removeAttribute('aria-busy');
    }
  }

  function render(page, first) {
    // A reload must not drop the keyboard focus: it stays on the same product, or moves
    // to the section when that product left the page.
    const focusedId = rows.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    rows.replaceChildren(...page.nodes.map(row));
    if (focusedId) (rows.querySelector(`button[data-id="${CSS.escape(focusedId)}"]`) ?? byId('products')).focus();
    empty.hidden = page.nodes.length > 0;
    endCursor = page.pageInfo.endCursor;
    const focused = document.activeElement;
    prev.disabled = cursors.length === 1;
    next.disabled = !page.pageInfo.hasNextPage;
    if (focused === prev && prev.disabled) next.focus(); // keep the keyboard in the pager
    if (focused === next && next.disabled) prev.focus();
    const start = (cursors.length - 1) * first;
    pageInfo.textContent =
      page.nodes.length === 0
        ? `0 of ${count(page.totalCount)}`
        : `${count(start + 1)}–${count(start + page.nodes.length)} of ${count(page.totalCount)}`;
  }

  function row(product) {
    const stock = product.inStock
      ? count(product.stockQuantity)
      : el('span', { class: 'badge out' }, 'out of stock');
    return el(
      'tr',
      {},
      el('td', { class: 'num id', 'data-label': 'Id' }, product.id),
      el('td', { class: 'name' }, el('button', { type: 'button', class: 'link', 'data-id': product.id }, product.name)),
      el('td', { 'data-label': 'Category' }, product.category.name),
      el('td', { class: 'num', 'data-label': 'Price' }, product.price),
      el('td', { class: 'num', 'data-label': 'Stock' }, stock),
      el('td', { class: 'num', 'data-label': 'Version' }, `v${product.version}`),
    );
  }

  function firstPage() {
    clearTimeout(typingTimer);
    cursors = [null];
    load();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    firstPage();
  });
  // Choices apply at once; typed text (search, prices) once the typing pauses.
  const typed = (target) => target.tagName === 'INPUT' && target.type !== 'checkbox';
  form.addEventListener('change', (event) => {
    if (!typed(event.target)) firstPage();
  });
  form.addEventListener('input', (event) => {
    if (!typed(event.target)) return;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(firstPage, TYPING_DELAY_MS);
  });
  form.addEventListener('reset', () => setTimeout(firstPage)); // after the fields are reset
  prev.addEventListener('click', () => {
    cursors.pop();
    load();
  });
  next.addEventListener('click', () => {
    cursors.push(endCursor);
    load();
  });
  rows.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-id]');
    if (button) onOpen(button.dataset.id);
  });

  return {
    /** Loads the first page with the current filters. */
    load: firstPage,
    /** Loads the shown page again (after a change). */
    reload: load,
    /** How many loads have started so far: one started after a change already shows it. */
    loadsStarted: () => sequence,
    /** Fills the category filter, keeping the chosen category. */
    setCategories(categories) {
      const chosen = categorySelect.value;
      categorySelect.replaceChildren(
        el('option', { value: '' }, 'All categories'),
        ...categories.map((c) => el('option', { value: c.id }, `${c.name} (${count(c.productCount)})`)),
      );
      categorySelect.value = categories.some((c) => c.id === chosen) ? chosen : '';
    },
  };
}
