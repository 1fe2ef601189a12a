// DOM building without HTML strings: every value reaches the page as a text node or an
// attribute, so product data can never become markup.
const SVG_NS = 'http://www.w3.org/2000/svg';

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** An HTML element: el('td', { class: 'num', text: '3' }); strings among children are text. */
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same shape as el(). */
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function byId(id) {
  return document.getElementById(id);
}

/**
 * Opens a <dialog> as a modal and gives the focus back to the element that opened it
 * when it closes, or to `fallback` when that element has left the page meanwhile.
 * Buttons marked data-close inside it close it.
 */
export function openModal(dialog, fallback = null) {
  if (dialog.open) return;
  if (!dialog.dataset.wired) {
    dialog.dataset.wired = 'true';
    dialog.addEventListener('click', (event) => {
      if (event.target.closest('[data-close]')) dialog.close();
    });
  }
  const opener = document.activeElement;
  dialog.addEventListener('close', () => (opener?.isConnected ? opener : fallback)?.focus(), { once: true });
  dialog.showModal();
}
