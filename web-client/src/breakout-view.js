// Facilitators: breakout groups. Before they open: how many groups, for how long, who goes where
// (spread evenly by the server, put in groups by hand with one choice per person, or let members
// choose) and, in every case, optionally a facilitator for each group (a facilitator placed in a
// group runs it). While they are open: each group with its people, the time left, and "Return
// everyone". The protocol's `open_breakouts` (proto/protocol.md, "Side rooms").

import { byId, clock, confirmDialog, h, reconcile, setText, show } from './dom.js';
import { t } from './i18n.js';
import { isFacilitator, nameOf, roleLabel, serverNow } from './state.js';

/** @typedef {import('./state.js').MeetingState} MeetingState */
/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ParticipantView} ParticipantView */
/** @typedef {'auto' | 'manual' | 'choose'} Assign */

/**
 * @typedef {object} Ctx
 * @property {() => MeetingState} state
 * @property {(cmd: ClientMessage) => boolean} send
 */

/** @type {Ctx} */
let ctx;

/** By hand: the group a person was put in (0: stays in the main room). Others get the default. */
const placedByHand = new Map();
/** The facilitator chosen for each group: group number → participant id. */
const runBy = new Map();

const MAX_GROUPS = 20;

/** @param {string} id */
const button = (id) => byId(id, HTMLButtonElement);

/** How many groups the form asks for (2 to 20). */
function groupCount() {
  const n = Math.round(Number(byId('breakout-groups', HTMLInputElement).value));
  return Number.isFinite(n) ? Math.min(MAX_GROUPS, Math.max(2, n)) : 2;
}

/** @returns {Assign} */
function assignMode() {
  const v = byId('breakout-assign', HTMLSelectElement).value;
  return v === 'manual' || v === 'choose' ? v : 'auto';
}

/**
 * Who can be placed: everyone in the main room (I am there too when the form shows), facilitators
 * and the rest apart.
 * @param {MeetingState} s
 */
function candidates(s) {
  const here = [...s.participants.values()].filter((p) => !p.away);
  return { facilitators: here.filter((p) => isFacilitator(p.role)), others: here.filter((p) => !isFacilitator(p.role)) };
}

/**
 * The group a person goes to by hand: the one chosen for them, else spread in order (the i-th
 * person to group i mod n + 1), so the form starts from an even split the facilitator adjusts.
 * @param {string} id @param {number} i @param {number} n
 */
function handGroup(id, i, n) {
  const g = placedByHand.get(id);
  return g !== undefined && g <= n ? g : (i % n) + 1;
}

/**
 * The facilitator chosen for group `g`, while they can still be placed.
 * @param {number} g @param {ParticipantView[]} facilitators
 */
function runnerOf(g, facilitators) {
  const id = runBy.get(g);
  return id && facilitators.some((p) => p.participant_id === id) ? id : '';
}

/**
 * The `open_breakouts` the form describes, and whether it would take every facilitator out of
 * the main room (the server then asks for a confirmation; the client asks first).
 * @param {MeetingState} s
 */
export function breakoutPlan(s) {
  const n = groupCount();
  const assign = assignMode();
  const { facilitators, others } = candidates(s);
  /** @type {string[][]} */
  const assignments = Array.from({ length: n }, () => []);
  for (let g = 1; g <= n; g++) {
    const id = runnerOf(g, facilitators);
    if (id) assignments[g - 1].push(id);
  }
  if (assign === 'manual') {
    others.forEach((p, i) => {
      const g = handGroup(p.participant_id, i, n);
      if (g > 0) assignments[g - 1].push(p.participant_id);
    });
  }
  const placed = new Set(assignments.flat());
  const everyFacilitator = facilitators.length > 0 && facilitators.every((p) => placed.has(p.participant_id));
  while (assignments.length && assignments[assignments.length - 1].length === 0) assignments.pop();
  const minutes = Number(byId('breakout-minutes', HTMLInputElement).value);
  const seconds = Math.min(14_400, Math.max(60, Math.round((Number.isFinite(minutes) ? minutes : 10) * 60)));
  /** @type {ClientMessage} */
  const cmd = { type: 'open_breakouts', groups: n, seconds, assign, assignments };
  return { cmd, everyFacilitator };
}

/**
 * Wires the form once.
 * @param {Ctx} c
 */
export function bindBreakouts(c) {
  ctx = c;
  const rerender = () => renderBreakouts(ctx.state());
  byId('breakout-groups', HTMLInputElement).addEventListener('input', rerender);
  byId('breakout-assign', HTMLSelectElement).addEventListener('change', rerender);
  byId('breakout-form', HTMLFormElement).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const { cmd, everyFacilitator } = breakoutPlan(ctx.state());
    if (everyFacilitator) {
      if (!(await confirmLeavingMain('side.confirmBreakoutText', 'side.confirmBreakoutGo'))) return;
      if (cmd.type === 'open_breakouts') cmd.confirm = true;
    }
    ctx.send(cmd);
  });
  button('breakout-close').addEventListener('click', () => ctx.send({ type: 'close_breakouts' }));
}

/**
 * A <select> whose options are `opts` ([value, text]), rebuilt only when they changed (so an open
 * list or the focus is not disturbed), set to `value`.
 * @param {HTMLSelectElement} select @param {[string, string][]} opts @param {string} value
 */
function fillSelect(select, opts, value) {
  const key = JSON.stringify(opts);
  if (select.dataset.opts !== key) {
    select.dataset.opts = key;
    select.replaceChildren(...opts.map(([v, text]) => h('option', { value: v, text })));
  }
  if (select.value !== value) select.value = value;
}

/** @param {MeetingState} s */
export function renderBreakouts(s) {
  const fac = isFacilitator(s.myRole);
  const b = s.breakouts;
  show(byId('fac-breakouts'), fac && (Boolean(b) || !s.location));
  if (!fac) return;
  const form = byId('breakout-form', HTMLFormElement);
  show(form, !b && !s.location);
  show(byId('breakout-running'), Boolean(b));
  if (!b && !s.location) renderForm(s);
  if (b) {
    reconcile(
      byId('breakout-list'),
      b.groups,
      (g) => String(g.group),
      (g) => h(
        'li',
        { class: 'row' },
        h('span', { class: 'name' }),
        h('span', { class: 'meta' }),
        h('button', { type: 'button', class: 'small visit', onclick: () => visit(g.group) }),
      ),
      (li, g) => {
        li.dataset.group = String(g.group);
        // A facilitator visits any group (not from a step-out, not the group they are in).
        const visitBtn = /** @type {HTMLElement} */ (li.querySelector('.visit'));
        setText(visitBtn, t('side.visit', { n: g.group }));
        show(visitBtn, s.location?.kind !== 'step_out' && s.location?.group !== g.group);
        setText(/** @type {Element} */ (li.querySelector('.name')), t('side.groupN', { n: g.group }));
        // "Kim (co-facilitator), Bo": who runs the group shows.
        const names = g.participants.map((id) => {
          const role = s.participants.get(id)?.role;
          const marks = [id === s.me ? t('you') : '', role && isFacilitator(role) ? roleLabel(role) : ''].filter(Boolean);
          return marks.length ? `${nameOf(s, id)} (${marks.join(', ')})` : nameOf(s, id);
        });
        setText(/** @type {Element} */ (li.querySelector('.meta')), names.length ? names.join(', ') : t('side.groupEmpty'));
      },
    );
  }
  tickBreakouts(s);
}

/**
 * Goes to group `group`. The main room's only facilitator is asked first (the server would ask
 * for a confirmation too): its queue and floor pause while no facilitator is there.
 * @param {number} group
 */
async function visit(group) {
  const s = ctx.state();
  const othersHere = [...s.participants.values()].some(
    (p) => p.participant_id !== s.me && isFacilitator(p.role) && !p.away,
  );
  const lastInMain = !s.location && !othersHere;
  if (lastInMain && !(await confirmLeavingMain('side.confirmVisitText', 'side.confirmVisitGo'))) return;
  ctx.send({ type: 'choose_breakout', group, confirm: lastInMain });
}

/**
 * Asks before the main room is left without a facilitator (its queue and floor pause; the server
 * would ask for a confirmation too). True to go on.
 * @param {'side.confirmBreakoutText' | 'side.confirmVisitText'} text
 * @param {'side.confirmBreakoutGo' | 'side.confirmVisitGo'} go
 */
async function confirmLeavingMain(text, go) {
  const ok = await confirmDialog({ title: t('side.confirmBreakoutTitle'), text: t(text), confirm: t(go) });
  return ok !== null;
}

/** The time left, every second. @param {MeetingState} s */
export function tickBreakouts(s) {
  const b = s.breakouts;
  const status = byId('breakout-status');
  show(status, Boolean(b) && isFacilitator(s.myRole));
  if (b) setText(status, t('side.breakoutStatus', { n: b.groups.length, time: clock(Math.max(0, b.ends_at - serverNow(s))) }));
}

/** @param {MeetingState} s */
function renderForm(s) {
  const n = groupCount();
  const assign = assignMode();
  const { facilitators, others } = candidates(s);
  const groups = Array.from({ length: n }, (_, i) => i + 1);

  // A facilitator for each group (optional), in every mode.
  const facOpts = /** @type {[string, string][]} */ ([
    ['', t('side.nobody')],
    ...facilitators.map((p) => /** @type {[string, string]} */ ([p.participant_id, p.participant_id === s.me ? `${p.display_name} (${t('you')})` : p.display_name])),
  ]);
  reconcile(
    byId('breakout-facs'),
    groups,
    (g) => String(g),
    (g) => {
      const id = `breakout-fac-${g}`;
      const select = h('select', {
        id,
        onchange: () => {
          const chosen = select.value;
          if (chosen) {
            // One group each: choosing someone for this group takes them off another.
            for (const [other, pid] of runBy) if (pid === chosen) runBy.delete(other);
            runBy.set(g, chosen);
          } else {
            runBy.delete(g);
          }
          renderBreakouts(ctx.state());
        },
      });
      return h('div', { class: 'field-row fac-pick' }, h('label', { for: id }), select);
    },
    (el, g) => {
      setText(/** @type {Element} */ (el.querySelector('label')), t('side.facilitatorFor', { n: g }));
      fillSelect(/** @type {HTMLSelectElement} */ (el.querySelector('select')), facOpts, runnerOf(g, facilitators));
    },
  );
  show(byId('breakout-facs-box'), facilitators.length > 0);

  // By hand: one choice per person, the main room or a group.
  show(byId('breakout-people'), assign === 'manual');
  const placeOpts = /** @type {[string, string][]} */ ([
    ['0', t('side.mainRoom')],
    ...groups.map((g) => /** @type {[string, string]} */ ([String(g), t('side.groupN', { n: g })])),
  ]);
  reconcile(
    byId('breakout-people-list'),
    assign === 'manual' ? others : [],
    (p) => p.participant_id,
    (p) => {
      const id = `breakout-place-${p.participant_id}`;
      const select = h('select', {
        id,
        onchange: () => {
          placedByHand.set(p.participant_id, Number(select.value));
          renderBreakouts(ctx.state());
        },
      });
      return h('li', { class: 'row place' }, h('label', { for: id, class: 'name' }), select);
    },
    (li, p, i) => {
      li.dataset.pid = p.participant_id;
      setText(/** @type {Element} */ (li.querySelector('label')), p.display_name);
      fillSelect(/** @type {HTMLSelectElement} */ (li.querySelector('select')), placeOpts, String(handGroup(p.participant_id, i, n)));
    },
  );
  show(byId('breakout-people-none'), assign === 'manual' && others.length === 0);
}
