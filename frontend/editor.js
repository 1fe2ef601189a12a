// The product form, for creating and for editing. The server validates; its
// BAD_USER_INPUT errors name a field and are shown under that field. The browser only
// checks what GraphQL could not even carry (a missing price, a fractional stock).
import { ApiError, request } from './api.js';
import { byId, el, openModal } from './dom.js';
import { notify } from './notice.js';
import { CREATE_PRODUCT, UPDATE_PRODUCT } from './operations.js';
import { createTokenPrompt } from './token-prompt.js';

const INT_MAX = 2 ** 31 - 1;

/** The form field of each `extensions.field` the server can name. */
const FIELDS = {
  name: 'e-name',
  description: 'e-description',
  price: 'e-price',
  stockQuantity: 'e-stock',
  category: 'e-category',
};

/** @param {{onSaved: (product: object) => void}} options  called with the saved product */
export function createEditor({ onSaved }) {
  const dialog = byId('editor-dialog');
  const form = byId('editor-form');
  const formError = byId('editor-error');
  const submit = byId('editor-submit');
  const tokenPrompt = createTokenPrompt(byId('editor-token-prompt'), 'editor');
  let editing = null; // the product being edited, null when creating

  function clearErrors() {
    formError.textContent = '';
    for (const id of Object.values(FIELDS)) {
      byId(id).removeAttribute('aria-invalid');
      byId(`${id}-error`).textContent = '';
    }
  }

  /** Shows `errors` ({field: message}); the first invalid field gets the focus. */
  function showErrors(errors) {
    let first = null;
    for (const [field, message] of Object.entries(errors)) {
      const id = FIELDS[field];
      if (!id) {
        formError.textContent = message;
        continue;
      }
      byId(id).setAttribute('aria-invalid', 'true');
      byId(`${id}-error`).textContent = message;
      first ??= byId(id);
    }
    first?.focus(); // a form-level message is announced by its role=alert
  }

  function open(product) {
    editing = product;
    form.reset();
    clearErrors();
    tokenPrompt.reset();
    byId('editor-title').textContent = product ? `Edit “${product.name}”` : 'New product';
    submit.textContent = product ? 'Save changes' : 'Create product';
    const values = product
      ? { ...product, category: product.category.name }
      : { name: '', description: '', price: '', category: '', stockQuantity: 0 };
    for (const [field, id] of Object.entries(FIELDS)) byId(id).value = values[field];
    openModal(dialog);
    byId('e-name').focus();
  }

  /** The fields as GraphQL input, or the errors the browser can tell without asking. */
  function read() {
    const price = byId('e-price');
    const stock = byId('e-stock');
    const errors = {};
    if (price.value === '') {
      errors.price = price.validity.badInput ? 'Price must be a number, such as 19.99.' : 'Enter a price, such as 19.99.';
    }
    const quantity = Number(stock.value);
    if (stock.value === '' || !Number.isInteger(quantity)) {
      errors.stockQuantity = 'Stock quantity must be a whole number.';
    } else if (quantity > INT_MAX) {
      errors.stockQuantity = `Stock quantity must be at most ${INT_MAX}.`;
    }
    const input = {
      name: byId('e-name').value,
      description: byId('e-description').value,
      price: price.value,
      category: byId('e-category').value,
      stockQuantity: quantity,
    };
    return { input, errors };
  }

  /** Only the fields that differ from the product being edited. */
  function changes(input) {
    const before = { ...editing, category: editing.category.name };
    return Object.fromEntries(Object.entries(input).filter(([field, value]) => value !== before[field]));
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const { input, errors } = read();
    if (Object.keys(errors).length > 0) {
      showErrors(errors);
      return;
    }
    tokenPrompt.apply();
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const product = editing
        ? (await request(UPDATE_PRODUCT, { id: editing.id, input: changes(input) })).data.updateProduct
        : (await request(CREATE_PRODUCT, { input })).data.createProduct;
      dialog.close();
      notify(editing ? `Saved “${product.name}” (version ${product.version}).` : `Created “${product.name}”.`);
      onSaved(product);
    } catch (e) {
      if (e instanceof ApiError && e.kind === 'input') showErrors(e.fields);
      else showErrors({ form: e.message });
      if (e instanceof ApiError && e.kind === 'auth') tokenPrompt.ask();
    } finally {
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  return {
    openCreate: () => open(null),
    openEdit: (product) => open(product),
    /** Offers the known category names as suggestions. */
    setCategories(categories) {
      byId('category-names').replaceChildren(...categories.map((c) => el('option', { value: c.name })));
    },
  };
}
