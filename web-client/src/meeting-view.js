// The meeting screen: the floor and its timer, your own controls, the speaking queue, who is
// here, chat, and for facilitators the waiting room, support requests and meeting controls.
// `render` is called after every change; it updates the page in place.

import { bindBreakouts, renderBreakouts, tickBreakouts } from './breakout-view.js';
import { byId, clock, confirmDialog, h, label, reconcile, setText, show, spokenDuration, timeOfDay } from './dom.js';
import {
  labelShareOptions,
  renderMeetingControls,
  renderSoundButton,
  renderSupport,
  renderWaiting,
  waitedFor,
} from './facilitator-view.js';
import { onLangChange, ordinal, t } from './i18n.js';
import { media } from './media.js';
import { renderSupportAlert, setSound, soundOn } from './support-alert.js';
import {
  canSendVideo,
  handRaised,
  heldMuted,
  isFacilitator,
  lastFacilitatorHere,
  muteAction,
  mySeat,
  myQueuePlace,
  nameOf,
  placeText,
  roleLabel,
  serverNow,
  stepOutTarget,
  unmuteBlocker,
} from './state.js';

/** @typedef {import('./state.js').MeetingState} MeetingState */
/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ParticipantView} ParticipantView */
/** @typedef {import('./protocol').WaitingView} WaitingView */
/** @typedef {import('./protocol').SupportView} SupportView */
/** @typedef {import('./protocol').QueueEntry} QueueEntry */
/** @typedef {import('./state.js').ChatLine} ChatLine */

/**
 * @typedef {object} Ctx
 * @property {() => MeetingState} state
 * @property {(cmd: ClientMessage) => boolean} send false when offline (the caller said so on screen)
 * @property {() => void} leave
 */

/** @type {Ctx} */
let ctx;

/** @param {string} id */
const button = (id) => byId(id, HTMLButtonElement);

/**
 * Asks `id` to step out privately (from their support request or their row). When I am the main
 * room's only facilitator, I am told first that its queue and floor will wait for me.
 * @param {MeetingState} s @param {(cmd: ClientMessage) => boolean} send @param {string} id
 */
export async function stepOutWith(s, send, id) {
  let confirm = false;
  if (lastFacilitatorHere(s)) {
    const ok = await confirmDialog({ title: t('side.confirmTitle'), text: t('side.confirmText'), confirm: t('side.confirmGo') });
    if (ok === null) return;
    confirm = true;
  }
  send({ type: 'step_out', participant_id: id, confirm });
}

/**
 * Wires the meeting screen's fixed controls once.
 * @param {Ctx} c
 */
export function bindMeeting(c) {
  ctx = c;
  const send = c.send;

  button('hand-btn').addEventListener('click', () => {
    const s = ctx.state();
    const me = mySeat(s);
    if (me) send(handRaised(s, me.participant_id) ? { type: 'lower_hand' } : { type: 'raise_hand' });
  });
  button('mic-btn').addEventListener('click', () => {
    const s = ctx.state();
    const me = mySeat(s);
    if (!me) return;
    if (!me.muted) {
      send({ type: 'set_muted', muted: true });
      return;
    }
    const blocker = unmuteBlocker(s);
    if (blocker) {
      // The button says why it is unavailable; say it again for whoever pressed it anyway.
      const reason = byId('mic-reason');
      reason.classList.remove('flash');
      void reason.offsetWidth;
      reason.classList.add('flash');
      return;
    }
    send({ type: 'set_muted', muted: false });
  });
  button('camera-btn').addEventListener('click', () => {
    const s = ctx.state();
    if (!media.cameraOn && !canSendVideo(s)) return;
    void media.setCamera(!media.cameraOn);
  });
  button('sound-btn').addEventListener('click', () => media.enableSound());
  button('media-retry').addEventListener('click', () => void media.retry());
  button('yield-btn').addEventListener('click', () => send({ type: 'yield_floor' }));

  // Side rooms and breakout groups.
  const answer = async (/** @type {boolean} */ accept) => {
    const s = ctx.state();
    const invite = s.invite;
    if (!invite) return;
    let confirm = false;
    if (accept && lastFacilitatorHere(s)) {
      const ok = await confirmDialog({ title: t('side.confirmTitle'), text: t('side.confirmText'), confirm: t('side.confirmGo') });
      if (ok === null) return;
      confirm = true;
    }
    if (send({ type: 'answer_step_out', invite_id: invite.invite_id, accept, confirm })) {
      s.invite = null;
      render(s);
    }
  };
  button('invite-accept').addEventListener('click', () => void answer(true));
  button('invite-decline').addEventListener('click', () => void answer(false));
  button('return-btn').addEventListener('click', () => send({ type: 'return_to_main' }));
  bindBreakouts(c);
  button('pass-btn').addEventListener('click', () => send({ type: 'pass' }));

  // Support: a small private form.
  const supportBtn = button('support-btn');
  const supportForm = byId('support-form', HTMLFormElement);
  const supportText = byId('support-text', HTMLTextAreaElement);
  const closeSupport = () => {
    show(supportForm, false);
    supportBtn.setAttribute('aria-expanded', 'false');
  };
  supportBtn.addEventListener('click', () => {
    const open = Boolean(supportForm.hidden);
    show(supportForm, open);
    supportBtn.setAttribute('aria-expanded', String(open));
    if (open) supportText.focus();
  });
  supportForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = supportText.value.trim();
    if (send({ type: 'support_request', text: text || null })) {
      supportText.value = '';
      closeSupport();
      setText(byId('support-status'), t('support.sending'));
      supportBtn.focus();
    }
  });
  button('support-cancel').addEventListener('click', () => {
    closeSupport();
    supportBtn.focus();
  });

  // Chat.
  const chatForm = byId('chat-form', HTMLFormElement);
  const chatInput = byId('chat-input', HTMLInputElement);
  chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = chatInput.value.trim();
    if (text && send({ type: 'chat', text })) chatInput.value = '';
  });

  // Facilitator: the agenda.
  button('segment-next').addEventListener('click', () => send({ type: 'next_segment' }));
  button('segment-prev').addEventListener('click', () => send({ type: 'previous_segment' }));

  // Facilitator: the floor.
  button('next-btn').addEventListener('click', () => send({ type: 'next_speaker' }));
  button('extend-btn').addEventListener('click', () => send({ type: 'extend_share' }));
  button('goaround-btn').addEventListener('click', () =>
    send(ctx.state().goAround ? { type: 'end_go_around' } : { type: 'start_go_around' }),
  );

  // Facilitator: the waiting room and the meeting.
  button('admit-all').addEventListener('click', () => send({ type: 'admit_all' }));
  button('lock-btn').addEventListener('click', () =>
    send(ctx.state().meeting?.locked ? { type: 'unlock' } : { type: 'lock' }),
  );
  button('chat-toggle').addEventListener('click', () =>
    send({ type: 'set_chat', enabled: !ctx.state().meeting?.settings.chat_enabled }),
  );
  button('hands-toggle').addEventListener('click', () =>
    send({ type: 'update_settings', hands: !(ctx.state().meeting?.settings.hands ?? true) }),
  );
  button('mute-all').addEventListener('click', () => send({ type: 'mute_all' }));
  button('waiting-toggle').addEventListener('click', () =>
    send({ type: 'update_settings', waiting_room: !(ctx.state().meeting?.settings.waiting_room ?? true) }),
  );
  button('support-sound').addEventListener('click', () => {
    setSound(!soundOn());
    renderSoundButton();
  });
  button('support-alert-show').addEventListener('click', () => {
    const card = byId('fac-support');
    card.scrollIntoView({ block: 'start' });
    byId('support-list-h').focus({ preventScroll: true });
  });
  const shareLength = byId('share-length', HTMLSelectElement);
  labelShareOptions();
  onLangChange(labelShareOptions);
  shareLength.addEventListener('change', () =>
    send({ type: 'update_settings', share_seconds: Number(shareLength.value) }),
  );
  button('end-btn').addEventListener('click', async () => {
    const ok = await confirmDialog({ title: t('end.title'), text: t('end.text'), confirm: t('end.confirm'), danger: true });
    if (ok !== null) send({ type: 'end_meeting' });
  });
}

/** @param {MeetingState} s */
export function render(s) {
  const me = mySeat(s);
  const fac = isFacilitator(s.myRole);
  const observer = s.myRole === 'observer';

  renderAgenda(s, fac);
  renderFloor(s, fac);
  renderMe(s, me, fac, observer);
  renderQueue(s, fac);
  renderPeople(s, fac);
  renderChat(s, fac, observer);
  renderSide(s, fac);
  renderBreakouts(s);

  show(byId('fac-waiting'), fac && s.waiting.length > 0);
  show(byId('fac-support'), fac && s.support.length > 0);
  show(byId('fac-meeting'), fac);
  show(byId('fac-floor'), fac);
  if (fac) {
    renderWaiting(s, ctx.send);
    renderSupport(s, ctx.send, (id) => stepOutWith(ctx.state(), ctx.send, id));
    renderMeetingControls(s);
  }
  renderSupportAlert(fac ? s.support : [], (request_id) => ctx.send({ type: 'ack_support', request_id }));
}

/** Only the timers change every second. @param {MeetingState} s */
export function tick(s) {
  renderTimer(s);
  renderSideTimers(s);
  tickBreakouts(s);
  renderAgendaTimer(s);
  for (const li of byId('waiting-list').children) {
    const since = Number(/** @type {HTMLElement} */ (li).dataset.since);
    const el = li.querySelector('.since');
    if (el && since) setText(el, waitedFor(serverNow(s) - since));
  }
}

/**
 * The step-out invitation, the side room I am in ("You and Alex, privately. The group can't hear
 * you.") with its way back, who runs my breakout group, the choice of groups when members choose,
 * and the main room's pause while its facilitators are away. (Facilitators open and follow the
 * groups in breakout-view.js.)
 * @param {MeetingState} s @param {boolean} fac
 */
function renderSide(s, fac) {
  const invite = s.invite;
  // Asked from the main room or from inside my breakout group.
  show(byId('step-out-invite'), Boolean(invite) && s.location?.kind !== 'step_out');
  if (invite) setText(byId('invite-text'), t('side.invite', { name: invite.display_name }));

  const room = byId('side-room');
  const wasShown = !room.hidden;
  show(room, Boolean(s.location));
  room.dataset.kind = s.location?.kind ?? '';
  setText(byId('side-room-text'), placeText(s));
  if (s.location && !wasShown) byId('side-room-text').focus({ preventScroll: true });
  // A breakout group goes back to the main room; a step-out to where it started (the group).
  setText(button('return-btn'), s.location?.kind === 'breakout' ? t('side.returnMain') : t('side.return'));
  // Who runs this breakout group: a facilitator placed in it.
  const runs = s.location?.kind === 'breakout'
    ? s.location.participants.filter((id) => isFacilitator(s.participants.get(id)?.role))
    : [];
  const runsEl = byId('side-room-runs');
  show(runsEl, runs.length > 0);
  let runsText = '';
  if (s.me && runs.includes(s.me)) runsText = t('side.youFacilitate');
  else if (runs.length) runsText = t('side.facilitatedBy', { names: runs.map((id) => nameOf(s, id)).join(', ') });
  setText(runsEl, runsText);
  // A facilitator in a step-out can ask another facilitator in.
  const askable = fac && s.location?.kind === 'step_out'
    ? [...s.participants.values()].filter((p) => stepOutTarget(s, p) === 'askIn')
    : [];
  reconcile(
    byId('side-room-ask'),
    askable,
    (p) => p.participant_id,
    (p) => h('button', { type: 'button', class: 'small', onclick: () => ctx.send({ type: 'step_out', participant_id: p.participant_id, confirm: true }) }),
    (el, p) => label(/** @type {HTMLElement} */ (el), t('side.askIn'), p.display_name),
  );

  const b = s.breakouts;
  const choose = byId('breakout-choose');
  // Facilitators visit groups from their breakout card instead.
  const choosing = Boolean(b && b.assign === 'choose') && s.location?.kind !== 'step_out' && !isFacilitator(s.myRole);
  show(choose, choosing);
  if (b && choosing) {
    reconcile(
      byId('breakout-choices'),
      b.groups,
      (g) => String(g.group),
      (g) => h('button', { type: 'button', class: 'small', onclick: () => ctx.send({ type: 'choose_breakout', group: g.group }) }),
      (el, g) => {
        setText(el, t('side.choose', { n: g.group }));
        show(/** @type {HTMLElement} */ (el), s.location?.group !== g.group);
      },
    );
  }
  show(byId('paused-note'), Boolean(s.meeting?.main_room_paused) && !s.location && !fac);
  setText(byId('paused-note'), t('side.paused'));
  renderSideTimers(s);
}

/** @param {MeetingState} s */
function renderSideTimers(s) {
  const endsAt = s.location?.ends_at ?? null;
  const timer = byId('side-room-timer');
  show(timer, endsAt !== null);
  if (endsAt !== null) setText(timer, t('side.backIn', { time: clock(Math.max(0, endsAt - serverNow(s))) }));
}

/** The meeting's format: every segment, the current one, its time left. @param {MeetingState} s @param {boolean} fac */
function renderAgenda(s, fac) {
  const agenda = s.agenda;
  show(byId('agenda-card'), Boolean(agenda));
  if (!agenda) return;
  const current = agenda.current;
  const list = byId('agenda-list');
  reconcile(
    list,
    agenda.segments.map((seg, i) => ({ key: String(i), seg, i })),
    (x) => x.key,
    () => h('li', { class: 'agenda-item' }),
    (li, x) => {
      const minutes = x.seg.planned_minutes ? ` · ${t('agenda.minutes', { n: x.seg.planned_minutes })}` : '';
      setText(li, `${x.seg.title}${minutes}`);
      li.dataset.index = String(x.i);
      li.classList.toggle('current', x.i === current.index);
      li.classList.toggle('done', x.i < current.index);
      if (x.i === current.index) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
    },
  );
  setText(byId('agenda-now'), t('agenda.now', { title: current.title }));
  renderAgendaTimer(s);
  show(byId('fac-agenda'), fac);
  if (fac) {
    button('segment-prev').disabled = current.index === 0;
    button('segment-next').disabled = current.index + 1 >= agenda.segments.length;
  }
}

/** @param {MeetingState} s */
function renderAgendaTimer(s) {
  const el = byId('agenda-left');
  const end = s.agenda?.current.planned_end;
  if (!end) {
    setText(el, '');
    el.removeAttribute('aria-label');
    return;
  }
  const left = end - serverNow(s);
  const key = left >= 0 ? 'agenda.left' : 'agenda.over';
  setText(el, t(key, { time: clock(Math.abs(left)) }));
  el.setAttribute('aria-label', t(key, { time: spokenDuration(Math.abs(left)) }));
  el.dataset.tone = left < 0 ? 'over' : s.segmentWarning === end ? 'warn' : 'calm';
}

/** @param {MeetingState} s @param {boolean} fac */
function renderFloor(s, fac) {
  const floor = s.floor;
  const status = byId('floor-status');
  const card = byId('floor-card');
  const mine = floor?.participant_id === s.me;
  let text = t('floor.nobody');
  const me = mySeat(s);
  if (floor && mine) {
    // Say only what the member can do now: unmute, wait to be allowed, or just speak.
    if (me && !me.muted) text = t('floor.mineLive');
    else if (me && !me.can_unmute) text = t('floor.mineHeld');
    else text = t('floor.mine');
  } else if (floor) {
    text = t('floor.theirs', { name: nameOf(s, floor.participant_id) });
  }
  setText(status, text);
  card.classList.toggle('mine', mine);
  card.classList.toggle('active', Boolean(floor));
  renderTimer(s);

  const g = s.goAround;
  const gEl = byId('goaround-status');
  show(gEl, Boolean(g));
  if (g) {
    const names = g.order.map((id) => {
      const passed = g.passed.includes(id) ? ` (${t('goAround.passed')})` : '';
      const now = id === g.current ? ` (${t('goAround.now')})` : '';
      return `${nameOf(s, id)}${now}${passed}`;
    });
    setText(gEl, t('goAround.status', { names: names.join(', ') || t('goAround.nobody') }));
  }

  show(button('yield-btn'), mine);
  show(button('pass-btn'), Boolean(g && g.current === s.me));
  if (fac) {
    const next = button('next-btn');
    next.disabled = s.queue.length === 0 && !g;
    setText(next, g ? t('floor.nextGoAround') : t('floor.next'));
    show(button('extend-btn'), Boolean(floor));
    setText(button('goaround-btn'), g ? t('goAround.end') : t('goAround.start'));
  }
}

/** @param {MeetingState} s */
function renderTimer(s) {
  const el = byId('floor-timer');
  const floor = s.floor;
  if (!floor) {
    show(el, false);
    return;
  }
  show(el, true);
  const now = serverNow(s);
  const warnMs = (s.meeting?.settings.share_warning_seconds ?? 30) * 1000;
  let text;
  let spoken;
  let tone = 'calm';
  if (floor.ends_at) {
    const left = floor.ends_at - now;
    if (floor.over_time || left <= 0) {
      const over = Math.max(0, -left);
      text = t('timer.over', { time: clock(over) });
      spoken = t('timer.over', { time: spokenDuration(over) });
      tone = 'over';
    } else {
      text = t('timer.left', { time: clock(left) });
      spoken = t('timer.left', { time: spokenDuration(left) });
      if (left <= warnMs || s.warning?.participant_id === floor.participant_id) tone = 'warn';
    }
  } else {
    const elapsed = now - floor.started_at;
    text = t('timer.elapsed', { time: clock(elapsed) });
    spoken = t('timer.elapsed', { time: spokenDuration(elapsed) });
  }
  setText(el, text);
  el.setAttribute('aria-label', spoken);
  el.dataset.tone = tone;
}

/**
 * @param {MeetingState} s
 * @param {ParticipantView | null} me
 * @param {boolean} fac
 * @param {boolean} observer
 */
function renderMe(s, me, fac, observer) {
  setText(byId('my-name'), s.myName);
  setText(byId('my-role'), s.myRole && s.myRole !== 'member' ? ` (${roleLabel(s.myRole)})` : '');

  const hand = button('hand-btn');
  const raised = Boolean(me && handRaised(s, me.participant_id));
  // A segment of the meeting's format, or a facilitator, may pause hands (the rule in force is
  // `settings.hands`); a raised hand can still be lowered.
  const handsAllowed = fac || s.meeting?.settings.hands !== false;
  show(hand, !observer && (raised || handsAllowed));
  setText(hand, raised ? t('hand.lower') : t('hand.raise'));
  hand.setAttribute('aria-pressed', String(raised));

  const mic = button('mic-btn');
  show(mic, !observer);
  const muted = me?.muted ?? true;
  const blocker = muted ? unmuteBlocker(s) : null;
  setText(mic, muted ? t('mic.unmute') : t('mic.mute'));
  mic.classList.toggle('live', !muted);
  // aria-disabled rather than disabled: the button stays focusable and its reason is read with it.
  mic.setAttribute('aria-disabled', String(Boolean(blocker)));
  let reason = blocker ?? (muted ? t('mic.muted') : t('mic.unmuted'));
  if (observer) reason = t('mic.observing');
  setText(byId('mic-reason'), reason);
  byId('mic-reason').dataset.tone = blocker ? 'blocked' : 'plain';

  renderMedia(s);

  show(button('support-btn'), !fac);
  const last = s.mySupport[s.mySupport.length - 1];
  const status = byId('support-status');
  if (last) {
    setText(status, last.acknowledged ? t('support.seen') : t('support.sent'));
  } else if (status.textContent !== t('support.sending')) {
    setText(status, '');
  }
}

/**
 * The camera button (only where this participant's video may go somewhere), the media status,
 * and the buttons that recover sound.
 * @param {MeetingState} s
 */
function renderMedia(s) {
  const cam = button('camera-btn');
  const allowed = canSendVideo(s) && media.available;
  show(cam, allowed || media.cameraOn);
  setText(cam, media.cameraOn ? t('camera.off') : t('camera.on'));
  cam.setAttribute('aria-pressed', String(media.cameraOn));
  const note = byId('camera-note');
  let audience = '';
  if (allowed) {
    const everyone = isFacilitator(s.myRole) || s.meeting?.settings.video === 'everyone';
    audience = everyone ? t('camera.everyone') : t('camera.facilitators');
  }
  setText(note, audience);
  show(note, Boolean(audience));

  const status = media.statusText;
  const box = byId('media-box');
  setText(byId('media-status'), status);
  box.dataset.tone = media.status === 'failed' || media.status === 'unavailable' ? 'bad' : 'plain';
  show(button('sound-btn'), media.soundBlocked);
  show(button('media-retry'), media.canRetry);
  show(box, Boolean(status) || media.soundBlocked || media.canRetry);
}

/** @param {MeetingState} s @param {boolean} fac */
function renderQueue(s, fac) {
  const n = s.queue.length;
  const place = myQueuePlace(s);
  let summary = n === 0 ? t('queue.none') : t('queue.count', { n });
  if (place) summary += ` ${t('queue.place', { place: ordinal(place) })}`;
  setText(byId('queue-summary'), summary);

  reconcile(
    byId('queue-list'),
    s.queue,
    (q) => q.participant_id,
    (q) => {
      const li = h('li', { class: 'row' }, h('span', { class: 'name' }), h('span', { class: 'meta' }));
      const actions = h('span', { class: 'row-actions' });
      const id = q.participant_id;
      actions.append(
        h('button', { type: 'button', class: 'small', 'data-act': 'give', onclick: () => ctx.send({ type: 'give_floor', participant_id: id }) }),
        h('button', { type: 'button', class: 'small', 'data-act': 'front', onclick: () => ctx.send({ type: 'move_hand', participant_id: id, position: 0 }) }),
        h('button', { type: 'button', class: 'small quiet', 'data-act': 'lower', onclick: () => ctx.send({ type: 'lower_hand', participant_id: id }) }),
      );
      li.append(actions);
      return li;
    },
    (li, q, i) => {
      const name = nameOf(s, q.participant_id);
      const you = q.participant_id === s.me;
      setText(/** @type {Element} */ (li.querySelector('.name')), name);
      setText(/** @type {Element} */ (li.querySelector('.meta')), you ? t('you') : '');
      li.classList.toggle('you', you);
      li.dataset.pid = q.participant_id;
      const actions = /** @type {HTMLElement} */ (li.querySelector('.row-actions'));
      show(actions, fac);
      if (fac) {
        const [give, front, lower] = /** @type {HTMLButtonElement[]} */ (Array.from(actions.children));
        label(give, t('act.giveFloor'), t('act.toName', { name }));
        label(front, t('act.front'), name);
        show(front, i > 0);
        label(lower, t('hand.lower'), t('act.ofName', { name }));
      }
    },
  );
}

/** @param {ParticipantView} p @param {MeetingState} s */
function personStatus(p, s) {
  // Someone in another room: away, and nothing more (the server sends nothing more).
  if (p.away) return p.connected ? t('side.away') : `${t('side.away')} · ${t('status.reconnecting')}`;
  const bits = [];
  if (s.activeSpeaker === p.participant_id) bits.push(t('status.speaking'));
  if (s.floor?.participant_id === p.participant_id) bits.push(t('status.sharing'));
  if (handRaised(s, p.participant_id)) bits.push(t('status.hand'));
  if (!p.muted) bits.push(t('status.unmuted'));
  else if (heldMuted(s, p)) bits.push(t('status.heldMuted'));
  else bits.push(t('status.muted'));
  if (!p.connected) bits.push(t('status.reconnecting'));
  // Facilitators (and a member for themself) learn who has no audio path or a poor one.
  const q = s.quality.get(p.participant_id);
  if (q?.state === 'failed') bits.push(t('status.noAudio'));
  else if (q) bits.push(t('status.poorConnection'));
  return bits.join(' · ');
}

/** @param {MeetingState} s @param {boolean} fac */
function renderPeople(s, fac) {
  // In a side room or breakout group: the people in it (the rest are elsewhere).
  const here = s.location?.participants;
  const people = [...s.participants.values()].filter((p) => !here || here.includes(p.participant_id));
  setText(byId('people-count'), `(${people.length})`);
  reconcile(
    byId('people-list'),
    people,
    (p) => p.participant_id,
    (p) => createPerson(p.participant_id),
    (li, p) => {
      const you = p.participant_id === s.me;
      li.dataset.pid = p.participant_id;
      li.classList.toggle('you', you);
      li.classList.toggle('away', !p.connected);
      li.classList.toggle('speaking', s.activeSpeaker === p.participant_id);
      renderVideo(li, p, you);
      setText(/** @type {Element} */ (li.querySelector('.name')), p.display_name);
      const role = p.role === 'member' ? '' : roleLabel(p.role);
      setText(/** @type {Element} */ (li.querySelector('.badge')), [you ? t('you') : '', role].filter(Boolean).join(', '));
      setText(/** @type {Element} */ (li.querySelector('.meta')), personStatus(p, s));
      const manage = /** @type {HTMLDetailsElement} */ (li.querySelector('details'));
      show(manage, fac && !you);
      if (fac && !you) updateManage(manage, p, s);
    },
  );
}

/**
 * Shows a participant's camera in their row while it arrives (my own as a preview).
 * @param {HTMLElement} li @param {ParticipantView} p @param {boolean} you
 */
function renderVideo(li, p, you) {
  const stream = media.videoOf(p.participant_id, you);
  let video = li.querySelector('video');
  if (!stream) {
    if (video) {
      video.srcObject = null;
      video.remove();
    }
    return;
  }
  if (!video) {
    // Muted: the sound plays through the participant's <audio> element (media.js).
    video = h('video', { class: you ? 'tile mirror' : 'tile', autoplay: true, playsinline: true, muted: true });
    video.muted = true;
    li.prepend(video);
  }
  video.setAttribute('aria-label', you ? t('camera.yours') : t('camera.theirs', { name: p.display_name }));
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    video.play().catch(() => {});
  }
}

/** @param {string} id */
function createPerson(id) {
  const act = (/** @type {string} */ name, /** @type {() => void} */ fn, cls = 'small') =>
    h('button', { type: 'button', class: cls, 'data-act': name, onclick: fn });
  const who = () => ctx.state().participants.get(id);
  const menu = h(
    'div',
    { class: 'menu' },
    act('mute', () => {
      const p = who();
      if (!p) return;
      const action = muteAction(ctx.state(), p);
      if (action === 'mute') ctx.send({ type: 'mute', participant_id: id });
      else if (action === 'allow') ctx.send({ type: 'allow_unmute', participant_id: id });
    }),
    act('floor', () => ctx.send({ type: 'give_floor', participant_id: id })),
    act('stepout', () => void stepOutWith(ctx.state(), ctx.send, id)),
    act('lower', () => ctx.send({ type: 'lower_hand', participant_id: id })),
    act('rename', async () => {
      const p = who();
      if (!p) return;
      const name = await confirmDialog({
        title: t('rename.title', { name: p.display_name }),
        text: t('rename.text'),
        confirm: t('rename.confirm'),
        field: t('rename.field'),
      });
      if (name) ctx.send({ type: 'rename', participant_id: id, display_name: name });
    }),
    act('promote', () => {
      const p = who();
      if (!p) return;
      ctx.send({ type: 'promote', participant_id: id, role: p.role === 'co_facilitator' ? 'member' : 'co_facilitator' });
    }),
    act(
      'remove',
      async () => {
        const p = who();
        if (!p) return;
        const reason = await confirmDialog({
          title: t('remove.title', { name: p.display_name }),
          text: t('remove.text'),
          confirm: t('remove.confirm'),
          field: t('remove.field'),
          danger: true,
        });
        if (reason !== null) ctx.send({ type: 'remove', participant_id: id, reason: reason || null });
      },
      'small danger',
    ),
    act(
      'ban',
      async () => {
        const p = who();
        if (!p) return;
        const reason = await confirmDialog({
          title: t('ban.title', { name: p.display_name }),
          text: t('ban.text'),
          confirm: t('ban.confirm'),
          field: t('remove.field'),
          danger: true,
        });
        if (reason !== null) ctx.send({ type: 'ban', participant_id: id, reason: reason || null });
      },
      'small danger',
    ),
  );
  return h(
    'li',
    { class: 'row person' },
    h('span', { class: 'who' }, h('span', { class: 'name' }), ' ', h('span', { class: 'badge' })),
    h('span', { class: 'meta' }),
    h('details', { class: 'manage' }, h('summary', {}), menu),
  );
}

/** @param {HTMLDetailsElement} details @param {ParticipantView} p @param {MeetingState} s */
function updateManage(details, p, s) {
  const name = p.display_name;
  label(/** @type {HTMLElement} */ (details.querySelector('summary')), t('act.manage'), name);
  /** @param {string} act */
  const b = (act) => /** @type {HTMLButtonElement} */ (details.querySelector(`[data-act="${act}"]`));
  // One button for mute and allow-unmute, so focus stays on it when it flips. Its label is what
  // pressing it does now; it is hidden when it would do nothing.
  const action = muteAction(s, p);
  label(b('mute'), action === 'allow' ? t('act.allowUnmute') : t('mic.mute'), name);
  show(b('mute'), action !== null);
  label(b('floor'), t('act.giveFloor'), t('act.toName', { name }));
  show(b('floor'), p.role !== 'observer' && !p.away && s.floor?.participant_id !== p.participant_id);
  // From the main room or a breakout group: step out with a member of it. From a step-out: ask
  // another facilitator in.
  const step = stepOutTarget(s, p);
  label(b('stepout'), step === 'askIn' ? t('side.askIn') : t('side.stepOut'), name);
  show(b('stepout'), step !== null);
  label(b('lower'), t('hand.lower'), t('act.ofName', { name }));
  show(b('lower'), handRaised(s, p.participant_id));
  label(b('rename'), t('act.rename'), name);
  show(b('promote'), p.role === 'member' || p.role === 'co_facilitator');
  label(b('promote'), p.role === 'co_facilitator' ? t('act.makeMember') : t('act.makeCo'), name);
  label(b('remove'), t('act.remove'), name);
  label(b('ban'), t('act.ban'), name);
}

/** @param {MeetingState} s @param {boolean} fac @param {boolean} observer */
function renderChat(s, fac, observer) {
  const enabled = s.meeting?.settings.chat_enabled ?? true;
  show(byId('chat-off'), !enabled);
  show(byId('chat-empty'), s.chat.length === 0);
  const form = byId('chat-form', HTMLFormElement);
  show(form, !observer);
  const canChat = enabled || fac;
  byId('chat-input', HTMLInputElement).disabled = !canChat;
  button('chat-send').disabled = !canChat;
  const log = byId('chat-log');
  // Follow new messages only when the reader is already at the bottom.
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  reconcile(
    log,
    s.chat,
    (c) => String(c.message_id),
    (c) => {
      const del = h('button', {
        type: 'button',
        class: 'small quiet',
        'data-act': 'delete',
        onclick: () => ctx.send({ type: 'delete_chat', message_id: c.message_id }),
      });
      return h(
        'li',
        { class: 'msg' },
        h('span', { class: 'msg-head' }, h('span', { class: 'name' }), ' ', h('span', { class: 'meta' })),
        h('span', { class: 'text' }),
        del,
      );
    },
    (li, c) => {
      setText(/** @type {Element} */ (li.querySelector('.name')), c.participant_id === s.me ? `${c.display_name} (${t('you')})` : c.display_name);
      setText(/** @type {Element} */ (li.querySelector('.meta')), timeOfDay(c.at));
      setText(/** @type {Element} */ (li.querySelector('.text')), c.text);
      li.classList.toggle('you', c.participant_id === s.me);
      const del = /** @type {HTMLElement} */ (li.querySelector('[data-act="delete"]'));
      show(del, fac);
      if (fac) label(del, t('chat.delete'), t('chat.fromName', { name: c.display_name }));
    },
  );
  if (atBottom) log.scrollTop = log.scrollHeight;
}
