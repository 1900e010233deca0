// The facilitators' part of the meeting screen: the waiting room, support requests and the
// meeting's controls (lock, chat, waiting room, share length, the support sound).

import { byId, confirmDialog, h, label, reconcile, setText, show, timeOfDay } from './dom.js';
import { durationWords, t } from './i18n.js';
import { serverNow, stepOutTarget } from './state.js';
import { soundOn } from './support-alert.js';

/** @typedef {import('./state.js').MeetingState} MeetingState */
/** @typedef {(cmd: import('./protocol').ClientMessage) => boolean} Send */

/** @param {string} id */
const button = (id) => byId(id, HTMLButtonElement);

/** The share-length choices in words ("15 seconds", "5 minutes", "Untimed"). */
export function labelShareOptions() {
  for (const o of byId('share-length', HTMLSelectElement).options) {
    o.textContent = Number(o.value) === 0 ? t('duration.untimed') : durationWords(Number(o.value));
  }
}

export function renderSoundButton() {
  const b = button('support-sound');
  const on = soundOn();
  setText(b, on ? t('fac.soundOn') : t('fac.soundOff'));
  b.setAttribute('aria-pressed', String(on));
}

/** @param {number} ms */
export function waitedFor(ms) {
  const min = Math.floor(ms / 60_000);
  return min < 1 ? t('waiting.justArrived') : t('waiting.for', { n: min });
}

/** @param {MeetingState} s @param {Send} send */
export function renderWaiting(s, send) {
  setText(byId('waiting-count'), `(${s.waiting.length})`);
  button('admit-all').hidden = s.waiting.length < 2;
  reconcile(
    byId('waiting-list'),
    s.waiting,
    (w) => w.participant_id,
    (w) => {
      const id = w.participant_id;
      return h(
        'li',
        { class: 'row' },
        h('span', { class: 'name' }),
        h('span', { class: 'meta since' }),
        h(
          'span',
          { class: 'row-actions' },
          h('button', { type: 'button', class: 'small primary', 'data-act': 'admit', onclick: () => send({ type: 'admit', participant_id: id }) }),
          h('button', {
            type: 'button',
            class: 'small quiet',
            'data-act': 'deny',
            onclick: async () => {
              const message = await confirmDialog({
                title: t('deny.title', { name: w.display_name }),
                text: t('deny.text'),
                confirm: t('deny.confirm'),
                field: t('deny.field'),
              });
              if (message !== null) send({ type: 'deny', participant_id: id, message: message || null });
            },
          }),
        ),
      );
    },
    (li, w) => {
      li.dataset.since = String(w.since);
      setText(/** @type {Element} */ (li.querySelector('.name')), w.display_name);
      setText(/** @type {Element} */ (li.querySelector('.since')), waitedFor(serverNow(s) - w.since));
      label(/** @type {HTMLElement} */ (li.querySelector('[data-act="admit"]')), t('act.admit'), w.display_name);
      label(/** @type {HTMLElement} */ (li.querySelector('[data-act="deny"]')), t('act.deny'), w.display_name);
    },
  );
}

/**
 * @param {MeetingState} s @param {Send} send
 * @param {(participantId: string) => Promise<void>} stepOut "Step out with them" (meeting-view.js)
 */
export function renderSupport(s, send, stepOut) {
  setText(byId('support-count'), `(${s.support.length})`);
  reconcile(
    byId('support-list'),
    s.support,
    (r) => String(r.request_id),
    (r) =>
      h(
        'li',
        { class: 'row support-row' },
        h('span', { class: 'who' }, h('span', { class: 'name' }), ' ', h('span', { class: 'meta' })),
        h('span', { class: 'text' }),
        h('button', { type: 'button', class: 'small primary', 'data-act': 'ack', onclick: () => send({ type: 'ack_support', request_id: r.request_id }) }),
        h('button', { type: 'button', class: 'small', 'data-act': 'stepout', onclick: () => void stepOut(r.participant_id) }),
      ),
    (li, r) => {
      setText(/** @type {Element} */ (li.querySelector('.name')), r.display_name);
      setText(/** @type {Element} */ (li.querySelector('.meta')), t('support.at', { time: timeOfDay(r.at) }));
      setText(/** @type {Element} */ (li.querySelector('.text')), r.text ? `“${r.text}”` : t('support.noMessage'));
      label(/** @type {HTMLElement} */ (li.querySelector('[data-act="ack"]')), t('support.ack'), t('support.whose', { name: r.display_name }));
      const out = /** @type {HTMLElement} */ (li.querySelector('[data-act="stepout"]'));
      label(out, t('side.stepOut'), r.display_name);
      // Only while they are in my room (the main room, or my breakout group).
      const who = s.participants.get(r.participant_id);
      show(out, Boolean(who && stepOutTarget(s, who) === 'stepOut'));
    },
  );
}

/** @param {MeetingState} s */
export function renderMeetingControls(s) {
  const m = s.meeting;
  if (!m) return;
  const lock = button('lock-btn');
  setText(lock, m.locked ? t('fac.unlock') : t('fac.lock'));
  lock.setAttribute('aria-pressed', String(m.locked));
  const chat = button('chat-toggle');
  setText(chat, m.settings.chat_enabled ? t('fac.chatOff') : t('fac.chatOn'));
  chat.setAttribute('aria-pressed', String(Boolean(m.settings.chat_enabled)));
  const hands = button('hands-toggle');
  const handsOn = m.settings.hands ?? true;
  setText(hands, handsOn ? t('fac.handsOff') : t('fac.handsOn'));
  hands.setAttribute('aria-pressed', String(handsOn));
  const waiting = button('waiting-toggle');
  const wr = m.settings.waiting_room ?? true;
  setText(waiting, wr ? t('fac.waitingOff') : t('fac.waitingOn'));
  waiting.setAttribute('aria-pressed', String(wr));
  const select = byId('share-length', HTMLSelectElement);
  const secs = String(m.settings.share_seconds ?? 0);
  if (![...select.options].some((o) => o.value === secs)) {
    select.append(h('option', { value: secs, text: durationWords(Number(secs)) }));
  }
  renderSoundButton();
  if (document.activeElement !== select) select.value = secs;
}
