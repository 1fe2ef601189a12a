// An admin-token field inside a dialog. A modal dialog makes the header's token field
// unreachable, so a change refused for its token (or lack of one) asks for it right there;
// the token typed in is saved like the header's before the change is sent again.
import { el } from './dom.js';
import { getToken, setToken } from './token.js';

/** Builds the field into `container` (kept hidden until needed). */
export function createTokenPrompt(container, idPrefix) {
  const input = el('input', { id: `${idPrefix}-token`, type: 'password', autocomplete: 'off', spellcheck: 'false' });
  container.classList.add('token-prompt');
  container.hidden = true;
  container.replaceChildren(
    el('label', { for: input.id }, 'Admin token'),
    input,
    el('p', { class: 'hint' }, 'The server prints it at start (or reads ADMIN_TOKEN).'),
  );

  return {
    /** Shows the field when no token is set yet, hides it otherwise. */
    reset() {
      input.value = '';
      container.hidden = Boolean(getToken());
    },
    /** Shows the field and puts the focus in it (after a refusal). */
    ask() {
      container.hidden = false;
      input.focus();
    },
    /** Saves the token typed here, if any, before a change is sent. */
    apply() {
      if (!container.hidden && input.value.trim()) setToken(input.value);
    },
  };
}
