// The product view: every field of one product, where it was read from, and the way to
// edit or delete it (deletion asks for a confirmation inside the dialog).
import { ApiError, request } from './api.js';
import { byId, el, openModal } from './dom.js';
import { count, dateTime } from './format.js';
import { notify } from './notice.js';
import { DELETE_PRODUCT, PRODUCT_DETAILS } from './operations.js';
import { showError, showReport } from './report.js';
import { createTokenPrompt } from './token-prompt.js';

/**
 * @param {{onEdit: (product: object) => void, onDeleted: () => void}} options
 */
export function createDetails({ onEdit, onDeleted }) {
  const dialog = byId('details-dialog');
  const title = byId('details-title');
  const meta = byId('details-meta');
  const fields = byId('details-fields');
  const error = byId('details-error');
  const actions = byId('details-actions');
  const confirm = byId('details-confirm');
  const confirmButton = byId('details-confirm-delete');
  const tokenPrompt = createTokenPrompt(byId('details-token-prompt'), 'details');
  let product = null;

  function show(next) {
    product = next;
    title.textContent = product.name;
    const item = (label, value) => el('div', {}, el('dt', { text: label }), el('dd', {}, value));
    fields.replaceChildren(
      item('Price', product.price),
      item('Stock', product.inStock ? count(product.stockQuantity) : '0 (out of stock)'),
      item('Category', product.category.name),
      item('Description', product.description || el('span', { class: 'muted' }, 'none')),
      item('Id', product.id),
      item('Version', String(product.version)),
      item('Created', dateTime(product.createdAt)),
      item('Updated', dateTime(product.updatedAt)),
    );
    actions.hidden = false;
  }

  function reset(heading) {
    product = null;
    title.textContent = heading;
    fields.replaceChildren();
    meta.replaceChildren();
    error.textContent = '';
    confirm.hidden = true;
    actions.hidden = true;
    tokenPrompt.reset();
  }

  async function open(id) {
    reset('Loading…');
    openModal(dialog, byId('products')); // its row may be redrawn while the dialog is open
    try {
      const result = await request(PRODUCT_DETAILS, { id });
      showReport(meta, result);
      if (result.data.product) show(result.data.product);
      else title.textContent = `Product ${id} no longer exists`;
    } catch (e) {
      title.textContent = `Product ${id}`;
      showError(meta, e.message);
    }
  }

  /** Reads the open product again, in place (no dialog reset, no focus move). */
  async function refresh(id) {
    try {
      const result = await request(PRODUCT_DETAILS, { id });
      if (product?.id !== id) return;
      showReport(meta, result);
      if (result.data.product) show(result.data.product);
      else {
        title.textContent = `Product ${id} was deleted`;
        fields.replaceChildren();
        actions.hidden = true;
      }
    } catch (e) {
      showError(meta, e.message);
    }
  }

  byId('details-edit').addEventListener('click', () => onEdit(product));
  byId('details-delete').addEventListener('click', () => {
    error.textContent = '';
    confirm.hidden = false;
    actions.hidden = true;
    byId('details-keep').focus();
  });
  byId('details-keep').addEventListener('click', () => {
    confirm.hidden = true;
    actions.hidden = false;
    byId('details-delete').focus();
  });
  confirm.addEventListener('submit', async (event) => {
    event.preventDefault();
    tokenPrompt.apply();
    confirmButton.disabled = true;
    try {
      const { data } = await request(DELETE_PRODUCT, { id: product.id });
      dialog.close();
      notify(`Deleted “${data.deleteProduct.name}”.`);
      onDeleted();
    } catch (e) {
      error.textContent = e.message;
      if (e instanceof ApiError && e.kind === 'auth') tokenPrompt.ask();
    } finally {
      confirmButton.disabled = false;
    }
  });

  return {
    open,
    /** Another client changed a product: the open one is read again if it is that one. */
    changed({ id, version }) {
      if (!dialog.open || product?.id !== id || product.version >= version) return;
      refresh(id);
    },
    /** Shows a newer copy of the open product (after an edit). */
    update(next) {
      if (!dialog.open || product?.id !== next.id) return;
      show(next);
      meta.replaceChildren(el('p', { class: 'muted' }, `Saved: version ${next.version}, as the server returned it.`));
    },
  };
}
