// Small DOM helpers: build elements, update keyed lists in place (so focus and screen-reader
// position survive updates), announce to assistive technology, confirm with a native <dialog>.

import { currentLang, durationWords } from './i18n.js';

/**
 * @typedef {{ [key: string]: string | number | boolean | null | undefined | EventListener }} Props
 * `on<event>` keys add listeners; `class`, `text` and attributes are set; false/null/undefined skip.
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'class') {
      el.className = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/**
 * Looks up an element that index.html is known to have.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T}
 */
export function byId(id, type) {
  const el = document.getElementById(id);
  if (!el || (type && !(el instanceof type))) throw new Error(`index.html lacks #${id}`);
  return /** @type {T} */ (el);
}

/** Sets text only when it changed (no needless screen-reader chatter). @param {Element} el @param {string} text */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** @param {HTMLElement} el @param {boolean} show */
export function show(el, show) {
  if (el.hidden === show) el.hidden = !show;
}

/**
 * Makes `container`'s children match `items`, reusing the element of each key: new ones are
 * created, gone ones removed, all are updated and put in order. Focus inside a kept element stays.
 * @template T
 * @param {HTMLElement} container
 * @param {T[]} items
 * @param {(item: T) => string} key
 * @param {(item: T) => HTMLElement} create
 * @param {(el: HTMLElement, item: T, index: number) => void} update
 */
export function reconcile(container, items, key, create, update) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of Array.from(container.children)) {
    if (child instanceof HTMLElement && child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  /** @type {Element | null} */
  let cursor = container.firstElementChild;
  items.forEach((item, index) => {
    const k = key(item);
    let el = existing.get(k);
    if (el) existing.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item, index);
    if (el !== cursor) container.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  });
  for (const el of existing.values()) {
    // Keep keyboard users in the list when the focused row goes away.
    const hadFocus = el.contains(document.activeElement);
    el.remove();
    if (hadFocus) container.closest('section')?.querySelector('h2')?.focus();
  }
}

/**
 * Speaks to screen-reader users through the live regions in index.html.
 * @param {string} text
 * @param {boolean} [urgent] assertive (interrupts) rather than polite
 */
export function announce(text, urgent = false) {
  const region = byId(urgent ? 'alerter' : 'announcer');
  // Re-setting the same text would not be announced again; a fresh node is.
  region.replaceChildren(h('p', { text }));
}

/**
 * Asks before something that cannot be undone. Resolves to null when cancelled, else the text
 * typed in the optional field.
 * @param {{ title: string, text: string, confirm: string, field?: string, danger?: boolean }} opts
 * @returns {Promise<string | null>}
 */
export function confirmDialog(opts) {
  const dialog = byId('confirm-dialog', HTMLDialogElement);
  setText(byId('confirm-title'), opts.title);
  setText(byId('confirm-text'), opts.text);
  const ok = byId('confirm-ok', HTMLButtonElement);
  setText(ok, opts.confirm);
  ok.className = opts.danger ? 'danger' : 'primary';
  const fieldWrap = byId('confirm-field-wrap');
  const field = byId('confirm-field', HTMLInputElement);
  field.value = '';
  show(fieldWrap, Boolean(opts.field));
  if (opts.field) setText(byId('confirm-field-label'), opts.field);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.returnValue = '';
    dialog.addEventListener(
      'close',
      () => {
        resolve(dialog.returnValue === 'ok' ? field.value.trim() : null);
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      },
      { once: true },
    );
    dialog.showModal();
    (opts.field ? field : byId('confirm-cancel')).focus();
  });
}

/** "3:07" from milliseconds. @param {number} ms */
export function clock(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}

/** "3 minutes 7 seconds", for the accessible name of a timer. @param {number} ms */
export function spokenDuration(ms) {
  return durationWords(ms / 1000);
}

/** "14:05" in the local time, in the page's language. @param {number} unixMs */
export function timeOfDay(unixMs) {
  return new Date(unixMs).toLocaleTimeString(currentLang(), { hour: '2-digit', minute: '2-digit' });
}

/**
 * Visible text plus a hidden part that names whom the button is about.
 * @param {HTMLElement} el @param {string} visible @param {string} hidden
 */
export function label(el, visible, hidden) {
  const full = `${visible} ${hidden}`;
  if (el.dataset.label === full) return;
  el.dataset.label = full;
  el.replaceChildren(visible, h('span', { class: 'visually-hidden', text: ` ${hidden}` }));
}
