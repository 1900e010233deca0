// Crisis resources a program configured (a crisis line, a text line, a web page). They come with
// the pre-join check and with `welcome`, and are shown where someone may need them: the join page,
// after "I need support", and on the end screens. Nothing is shown when the program set none.

import { h } from './dom.js';
import { t } from './i18n.js';

/** @typedef {import('./protocol').CrisisResource} CrisisResource */

/** Only links a phone or browser opens safely (the server validates these schemes too). */
const SAFE = /^(tel:|sms:|https:)/i;

/**
 * The readable part of a contact: the number of a `tel:`/`sms:` link, the host of a web page.
 * @param {string} contact
 */
function shown(contact) {
  if (/^(tel|sms):/i.test(contact)) return decodeURIComponent(contact.replace(/^(tel|sms):/i, ''));
  try {
    const u = new URL(contact);
    return u.host + (u.pathname === '/' ? '' : u.pathname);
  } catch {
    return contact;
  }
}

/** @param {string} contact */
function verb(contact) {
  if (/^tel:/i.test(contact)) return t('crisis.call');
  if (/^sms:/i.test(contact)) return t('crisis.text');
  return t('crisis.open');
}

/**
 * Reads the crisis resources from a message that may carry them (join-check, welcome).
 * @param {unknown} source
 * @returns {CrisisResource[]}
 */
export function crisisFrom(source) {
  const list = /** @type {{ crisis_resources?: unknown }} */ (source ?? {}).crisis_resources;
  if (!Array.isArray(list)) return [];
  return list.filter(
    (r) => r && typeof r.name === 'string' && typeof r.contact === 'string' && SAFE.test(r.contact),
  );
}

/**
 * Fills a crisis box (or hides it when there is nothing to show).
 * @param {HTMLElement} box @param {CrisisResource[]} resources @param {'join' | 'support' | 'end'} where
 */
export function renderCrisis(box, resources, where) {
  const key = resources.map((r) => `${r.name}|${r.contact}|${r.note ?? ''}`).join('\n') + `|${where}|${t('crisis.heading')}`;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.hidden = resources.length === 0;
  if (resources.length === 0) {
    box.replaceChildren();
    return;
  }
  const intro = where === 'support' ? t('crisis.introSupport') : t('crisis.intro');
  box.setAttribute('aria-label', t('crisis.heading'));
  box.replaceChildren(
    h('h2', { class: 'crisis-h', text: t('crisis.heading') }),
    h('p', { class: 'hint', text: intro }),
    h(
      'ul',
      { class: 'crisis-list' },
      ...resources.map((r) =>
        h(
          'li',
          {},
          h('strong', { text: r.name }),
          ' ',
          h('a', { href: r.contact, rel: 'noopener noreferrer', target: /^https:/i.test(r.contact) ? '_blank' : null, text: `${verb(r.contact)} ${shown(r.contact)}` }),
          r.note ? h('span', { class: 'hint', text: ` (${r.note})` }) : null,
        ),
      ),
    ),
  );
}
