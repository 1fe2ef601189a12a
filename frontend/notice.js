// Short confirmations and errors that belong to no form, in one polite live region.
import { byId } from './dom.js';

const SHOW_MS = 6000;
let timer = 0;

/** Shows `message` for a few seconds; tone is "ok" or "error". */
export function notify(message, tone = 'ok') {
  const toast = byId('toast');
  toast.textContent = message;
  toast.dataset.tone = tone;
  clearTimeout(timer);
  timer = setTimeout(() => {
    toast.textContent = '';
  }, SHOW_MS);
}
