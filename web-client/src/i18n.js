// Every string the client shows comes from a message catalog (src/locales/): English and Spanish.
// The language follows the browser (`navigator.language`) unless the person picked one on the
// join page (remembered in localStorage). Server error texts are never shown as sent: errors are
// translated by their stable `code`.

import en from './locales/en.js';
import es from './locales/es.js';

/** @typedef {import('./locales/en.js').Key} Key */
/** @typedef {Record<string, string | number>} Params */
/** @typedef {string | ((p: Params) => string)} Msg */
/** @typedef {'en' | 'es'} Lang */

/** @type {Record<Lang, { name: string, messages: Record<Key, Msg> }>} */
export const LANGS = {
  en: { name: 'English', messages: en },
  es: { name: 'Español', messages: es },
};

const STORE_KEY = 'haven.lang';

/** @param {string | null | undefined} tag @returns {Lang | null} */
function match(tag) {
  const base = (tag ?? '').toLowerCase().split('-')[0];
  return base === 'en' || base === 'es' ? base : null;
}

function stored() {
  try {
    return window.localStorage.getItem(STORE_KEY);
  } catch {
    return null;
  }
}

/** The person's choice, else the first browser language we have, else English. @returns {Lang} */
function initial() {
  const chosen = match(stored());
  if (chosen) return chosen;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const m = match(tag);
    if (m) return m;
  }
  return 'en';
}

/** @type {Lang} */
let lang = initial();
/** @type {Set<() => void>} */
const listeners = new Set();

export function currentLang() {
  return lang;
}

/**
 * A message in the current language, with `{name}` placeholders filled.
 * @param {Key} key @param {Params} [params]
 */
export function t(key, params = {}) {
  const msg = LANGS[lang].messages[key] ?? en[key];
  const text = typeof msg === 'function' ? msg(params) : msg;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Whether the catalog has this key (for codes from the server). @param {string} key @returns {key is Key} */
export function has(key) {
  return Object.prototype.hasOwnProperty.call(en, key);
}

/**
 * Switches the language, remembers it, translates the page and tells the listeners.
 * @param {Lang} next
 */
export function setLang(next) {
  lang = next;
  try {
    window.localStorage.setItem(STORE_KEY, next);
  } catch {
    // storage disabled: the choice lasts for this page
  }
  translatePage();
  for (const fn of listeners) fn();
}

/** @param {() => void} fn called after the language changed */
export function onLangChange(fn) {
  listeners.add(fn);
}

/**
 * Fills the static markup: `data-i18n="key"` sets the text, `data-i18n-attr="attr:key;..."` attributes.
 * @param {ParentNode} [root]
 */
export function translatePage(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) {
    const key = /** @type {HTMLElement} */ (el).dataset.i18n ?? '';
    if (has(key)) el.textContent = t(key);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of (/** @type {HTMLElement} */ (el).dataset.i18nAttr ?? '').split(';')) {
      const [attr, key] = pair.split(':');
      if (attr && key && has(key)) el.setAttribute(attr, t(key));
    }
  }
}

/** "2nd" / "2.º". @param {number} n */
export function ordinal(n) {
  return t('ordinal', { n });
}

/** "5 minutes" / "15 seconds": a length of time in whole units. @param {number} seconds */
export function durationWords(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  const rest = s % 60;
  const parts = [];
  if (m) parts.push(t('duration.minutes', { n: m }));
  if (rest || !m) parts.push(t('duration.seconds', { n: rest }));
  return parts.join(' ');
}
