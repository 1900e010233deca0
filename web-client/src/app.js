// Haven's web client: the entry point. It reads the join token, asks the server whether it can
// join (before a name is typed), runs the screens (name, waiting room, meeting, the end) and
// connects the signaling session to the meeting state and the views.

import { requestCertificate, certificateLink } from './certificate.js';
import { Session } from './connection.js';
import { crisisFrom, renderCrisis } from './crisis.js';
import { announce, byId, confirmDialog, setText, show } from './dom.js';
import { LANGS, currentLang, has, onLangChange, setLang, t, translatePage } from './i18n.js';
import { bindJoin, busy, refreshJoin, showJoinRefusal, showUnreachable } from './join-view.js';
import { media } from './media.js';
import { bindMeeting, render, tick } from './meeting-view.js';
import { apply, canSendVideo, initialState, isFacilitator, mySeat } from './state.js';
import { renderSupportAlert, titlePrefix } from './support-alert.js';
import { saved, takeJoinToken } from './token.js';

/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ServerMessage} ServerMessage */
/** @typedef {import('./connection.js').Status} Status */
/** @typedef {import('./crisis.js').CrisisResource} CrisisResource */
/** @typedef {'loading' | 'notoken' | 'name' | 'refused' | 'waiting' | 'meeting' | 'over'} Screen */

/**
 * The answer of `POST /v1/join-check`.
 * @typedef {{ joinable: boolean, code: string | null, message?: string, meeting_title: string | null,
 *   role: string | null, crisis_resources?: unknown }} JoinCheck
 */

let state = initialState();
/** @type {Session | null} */
let session = null;
/** @type {Screen | null} */
let screen = null;
/** This tab's join token. */
let joinToken = '';
/** Crisis resources from the pre-join check, until `welcome` brings the program's own. @type {CrisisResource[]} */
let checkCrisis = [];
/** The last refusal shown on the refused screen. @type {string | null} */
let refusedCode = null;
/** The meeting's title from the pre-join check. @type {string | null} */
let checkTitle = null;
/** Requests sent and not yet answered, for attributing errors. @type {Map<string, ClientMessage['type']>} */
const pending = new Map();
let wasReconnecting = false;
/** @type {ReturnType<typeof setTimeout> | null} */
let bannerTimer = null;
/** @type {ReturnType<typeof setTimeout> | null} */
let toastTimer = null;
/** The certificate request for the ended screen: started once per ending. */
let certificateAsked = false;

/** Refusal codes a person may meet in normal use that have their own words. */
const FRIENDLY = new Set([
  'mute_locked',
  'floor_required',
  'rate_limited',
  'chat_disabled',
  'not_admitted',
  'queue_empty',
  'hand_already_raised',
  'hand_not_raised',
  'participant_not_found',
  'unavailable',
  'no_change',
  'forbidden',
  'invalid_chat',
  'last_facilitator',
  'go_around_active',
  'no_go_around',
  'nobody_present',
  'not_floor_holder',
  'no_share_running',
  'observer_cannot_speak',
  'invalid_settings',
  'chat_not_found',
  'support_request_not_found',
  'message_too_large',
  'confirm_required',
  'wrong_location',
  'invite_not_found',
  'not_in_side_room',
  'breakouts_open',
  'no_breakouts',
  'segment_rules',
  'no_such_segment',
]);

/**
 * An error the server sent, in the person's language: by its stable code, never its English text.
 * @param {string} code
 */
function errorText(code) {
  const key = `error.${code}`;
  if (FRIENDLY.has(code) && has(key)) return t(key);
  return t('error.generic', { code });
}

const SCREENS = /** @type {const} */ (['loading', 'notoken', 'name', 'refused', 'waiting', 'meeting', 'over']);

/** @param {Screen} next */
function showScreen(next) {
  if (screen === next) return;
  screen = next;
  for (const name of SCREENS) show(byId(`screen-${name}`), name === next);
  // The language can be changed before joining.
  show(byId('lang-wrap'), next === 'name' || next === 'refused' || next === 'notoken');
  // Move focus to the new screen so keyboard and screen-reader users start at its top.
  if (next === 'name') byId('name-input').focus();
  else if (next === 'meeting') byId('meeting-h').focus();
  else if (next !== 'loading') byId(`screen-${next}`).querySelector('h1')?.focus();
}

/** @param {string} text */
function loading(text) {
  setText(byId('loading-text'), text);
}

/**
 * Sends a command, remembering it so an error can be shown against it.
 * @param {ClientMessage} cmd
 */
function send(cmd) {
  const id = session?.send(cmd) ?? null;
  if (id === null) {
    toast(t('conn.notConnected'));
    return false;
  }
  pending.set(id, cmd.type);
  return true;
}

/** @param {string} text */
function toast(text) {
  const el = byId('toast');
  setText(el, text);
  show(el, true);
  if (toastTimer) clearTimeout(toastTimer);
  toastTimer = setTimeout(() => show(el, false), 8000);
}

/** @param {ServerMessage} msg */
function onMessage(msg) {
  // Media signaling (and errors about it) go to the media layer.
  if (media.handle(msg)) {
    if (msg.id) pending.delete(msg.id);
    return;
  }
  if (msg.type === 'error') {
    const what = msg.id ? pending.get(msg.id) : undefined;
    if (msg.id) pending.delete(msg.id);
    if (what === 'support_request') setText(byId('support-status'), '');
    if (msg.code === 'name_taken' && msg.suggestion) {
      toast(t('error.nameTakenSuggestion', { name: msg.suggestion }));
    } else {
      toast(errorText(msg.code));
    }
    return;
  }
  if (msg.id) pending.delete(msg.id);
  const before = mySeat(state);
  const notes = apply(state, msg, Date.now());
  for (const n of notes) announce(n.text, n.urgent);
  const after = mySeat(state);
  if (after && before?.muted !== after.muted) media.setMicEnabled(!after.muted);
  if (msg.type === 'welcome' || msg.type === 'waiting') saved.setDisplayName(msg.display_name);
  if (msg.type === 'welcome' && !before) startMedia();
  if (msg.type === 'participant_left') media.forget(msg.participant_id);
  if (media.cameraOn && state.phase === 'meeting' && !canSendVideo(state)) {
    // The meeting no longer shares this participant's video: stop the camera rather than send
    // what the server would drop anyway.
    void media.setCamera(false);
    announce(t('media.cameraStopped'), true);
  }
  if (state.phase === 'over') {
    session?.stop();
    media.stop();
  }
  update();
}

/** Starts a fresh media session (after `welcome`, and again after a resume or a reconnect). */
function startMedia() {
  void media.start({ speak: state.myRole !== 'observer' });
}

/** @param {Status} status */
function onStatus(status) {
  const banner = byId('conn-banner');
  const text = byId('conn-banner-text');
  const pill = byId('conn-pill');
  const retry = button('retry-btn');
  if (bannerTimer) clearTimeout(bannerTimer);
  bannerTimer = null;
  switch (status.state) {
    case 'idle':
      show(banner, false);
      show(pill, false);
      break;
    case 'connecting':
      show(pill, true);
      setText(pill, t('conn.connecting'));
      pill.dataset.tone = 'pending';
      break;
    case 'online':
      show(pill, true);
      setText(pill, t('conn.connected'));
      pill.dataset.tone = 'ok';
      show(retry, false);
      // Back after a drop: the server expects a fresh media session (a new offer).
      if (wasReconnecting && state.phase === 'meeting') startMedia();
      if (wasReconnecting) {
        setText(text, status.resumed ? t('conn.reconnectedKept') : t('conn.reconnected'));
        banner.dataset.tone = 'ok';
        show(banner, true);
        bannerTimer = setTimeout(() => show(banner, false), 5000);
      } else {
        show(banner, false);
      }
      wasReconnecting = false;
      break;
    case 'reconnecting':
      if (!wasReconnecting) announce(t('conn.lostShort'), true);
      wasReconnecting = true;
      show(pill, true);
      setText(pill, t('conn.reconnecting'));
      pill.dataset.tone = 'pending';
      setText(text, status.attempt <= 3 ? t('conn.lost') : t('conn.stillTrying', { n: status.attempt }));
      banner.dataset.tone = 'pending';
      show(banner, true);
      show(retry, status.attempt > 3);
      if (screen === 'loading') loading(t('loading.reconnecting'));
      break;
    case 'stopped':
      show(pill, false);
      if (status.gaveUp) {
        setText(text, t('conn.gaveUp'));
        banner.dataset.tone = 'bad';
        show(banner, true);
        show(retry, true);
        retry.focus();
        return;
      }
      show(banner, false);
      endFromClose(status.code);
      break;
  }
}

/** The connection closed for good: make sure the end screen says why. @param {number} code */
function endFromClose(code) {
  if (state.phase === 'over' && state.ending) {
    update();
    return;
  }
  /** @type {import('./state.js').Ending['kind']} */
  let kind = 'left';
  if (code === 4000) kind = 'removed';
  else if (code === 4001) kind = 'banned';
  else if (code === 4002) kind = 'denied';
  else if (code === 4003) kind = 'ended';
  else if (code === 4004) kind = 'replaced';
  state.phase = 'over';
  state.ending = { kind };
  media.stop();
  update();
}

/** @param {string} id */
const button = (id) => byId(id, HTMLButtonElement);

/** The crisis resources known now: the program's own from `welcome`, else the pre-join check's. */
function crisis() {
  return state.crisis.length > 0 ? state.crisis : checkCrisis;
}

function update() {
  const title = byId('meeting-title');
  setText(title, state.title);
  show(button('leave-btn'), state.phase === 'meeting');
  if (state.phase === 'over') {
    // Nothing is connected any more: no "Connected" on the end screens, no support banner or sound.
    show(byId('conn-pill'), false);
    show(byId('conn-banner'), false);
    renderSupportAlert([], () => {});
  }
  switch (state.phase) {
    case 'join':
      break;
    case 'waiting':
      setText(byId('waiting-name'), state.myName);
      document.title = `${t('title.waiting')} · ${state.title || 'Haven'}`;
      showScreen('waiting');
      break;
    case 'meeting': {
      const open = isFacilitator(state.myRole) ? state.support.length : 0;
      document.title = `${titlePrefix(open)}${state.title || t('meeting.heading')} · Haven`;
      showScreen('meeting');
      render(state);
      renderCrisis(byId('support-crisis'), state.mySupport.length > 0 ? crisis() : [], 'support');
      break;
    }
    case 'over':
      renderOver();
      showScreen('over');
      break;
  }
}

function renderOver() {
  const e = state.ending ?? { kind: 'left' };
  /** @type {Record<import('./state.js').Ending['kind'], [import('./i18n.js').Key, import('./i18n.js').Key, boolean]>} */
  const words = {
    left: ['over.left.title', 'over.left.text', true],
    removed: ['over.removed.title', 'over.removed.text', true],
    banned: ['over.banned.title', 'over.banned.text', false],
    denied: ['over.denied.title', 'over.denied.text', false],
    ended: ['over.ended.title', 'over.ended.text', false],
    replaced: ['over.replaced.title', 'over.replaced.text', true],
    failed: ['over.failed.title', 'over.failed.text', true],
  };
  const [titleKey, textKey, rejoin] = words[e.kind];
  const title = t(titleKey);
  setText(byId('over-h'), title);
  setText(byId('over-text'), t(textKey));
  const message = byId('over-message');
  show(message, Boolean(e.message));
  setText(message, e.message ? `“${e.message}”` : '');
  const again = button('rejoin-btn');
  show(again, rejoin);
  setText(again, e.kind === 'replaced' ? t('over.useThisTab') : t('over.joinAgain'));
  const recorded = e.kind === 'ended' && e.attendance === true;
  const attendance = byId('over-attendance');
  show(attendance, recorded);
  setText(attendance, recorded ? t('over.attendance') : '');
  if (recorded && !certificateAsked) {
    certificateAsked = true;
    void fetchCertificate();
  }
  if (!recorded) show(byId('over-cert'), false);
  const shown = e.kind === 'ended' || e.kind === 'removed' || e.kind === 'banned' || e.kind === 'denied';
  renderCrisis(byId('over-crisis'), shown ? crisis() : [], 'end');
  document.title = `${title} · Haven`;
}

/**
 * After a meeting that recorded attendance: ask for the certificate and offer it when the
 * meeting gave credit. The final results are written as the meeting ends, so a first "no record"
 * is asked again a few times.
 */
async function fetchCertificate() {
  const box = byId('over-cert');
  const link = byId('cert-link', HTMLAnchorElement);
  const status = byId('cert-status');
  for (const wait of [0, 1000, 2000, 4000]) {
    if (wait) await new Promise((r) => setTimeout(r, wait));
    const r = await requestCertificate(joinToken);
    if (r.ok) {
      certificateLink(link, r.certificate, `attendance-${(state.meeting?.id ?? 'meeting').replace(/[^\w.-]/g, '_')}.jwt`);
      setText(link, t('cert.download'));
      show(link, true);
      setText(status, t('cert.minutes', { n: r.minutes }));
      show(box, true);
      return;
    }
    // Not written yet, or the connection was refused while the meeting's end was being recorded.
    if (r.code !== 'certificate_unavailable' && r.code !== 'unreachable') break;
  }
  // No credit (or no certificate here): the attendance line above says what there is.
  show(box, false);
}

/**
 * Explains why this link cannot join now, and what to do; nothing to type first.
 * @param {string} code
 */
function showRefused(code) {
  refusedCode = code;
  const kind = refusalKind(code);
  const k = (/** @type {string} */ part) => /** @type {import('./i18n.js').Key} */ (`refused.${kind}.${part}`);
  const title = t(k('title'));
  setText(byId('refused-h'), title);
  setText(byId('refused-text'), t(k('text')));
  setText(byId('refused-next'), t(k('next')));
  show(button('refused-retry'), RETRYABLE.has(kind));
  renderCrisis(byId('refused-crisis'), checkCrisis, 'join');
  const meeting = byId('refused-meeting');
  show(meeting, Boolean(checkTitle));
  setText(meeting, checkTitle ? t('refused.meeting', { title: checkTitle }) : '');
  document.title = `${title} · Haven`;
  showScreen('refused');
}

/** Refusals worth checking again later. */
const RETRYABLE = new Set(['locked', 'full', 'notStarted', 'notYet', 'busy']);

/**
 * Groups the server's refusal codes by what the person reads.
 * @param {string} code
 * @returns {'ended' | 'locked' | 'full' | 'notStarted' | 'expired' | 'notYet' | 'banned' | 'notFound' | 'busy' | 'invalid'}
 */
function refusalKind(code) {
  switch (code) {
    case 'meeting_ended':
      return 'ended';
    case 'meeting_locked':
      return 'locked';
    case 'meeting_full':
      return 'full';
    case 'meeting_not_started':
    case 'series_not_open': // a series link between its meetings: the next one opens later
      return 'notStarted';
    case 'token_expired':
    case 'invalid_resume_token':
      return 'expired';
    case 'token_not_yet_valid':
      return 'notYet';
    case 'banned':
      return 'banned';
    case 'meeting_not_found':
    case 'series_not_found':
    case 'series_cancelled':
      return 'notFound';
    case 'server_busy':
    case 'shutting_down':
    case 'unavailable':
    case 'storage_backlog':
    case 'internal':
      return 'busy';
    default:
      return 'invalid';
  }
}

/** Codes that mean the link cannot join now (as opposed to a name to fix). @param {string} code */
function isRefusal(code) {
  if (code === 'invalid_name' || code === 'name_taken') return false;
  return refusalKind(code) !== 'invalid' || code.startsWith('token_') || code === 'forbidden';
}

/**
 * Asks the server whether this link can join now. Null when the check itself failed (an older
 * server, no network): the name screen is shown and the join says what happened.
 * @returns {Promise<JoinCheck | null>}
 */
async function joinCheck() {
  try {
    const res = await fetch('/v1/join-check', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: joinToken }),
      cache: 'no-store',
    });
    if (!res.ok) return null;
    const body = /** @type {JoinCheck} */ (await res.json());
    return typeof body.joinable === 'boolean' ? body : null;
  } catch {
    return null;
  }
}

/** The pre-join check, then the name screen or the reason. */
async function checkThenAsk() {
  showScreen('loading');
  loading(t('loading.checking'));
  const check = await joinCheck();
  checkCrisis = crisisFrom(check);
  checkTitle = check?.meeting_title ?? null;
  renderJoinTitle();
  if (check && !check.joinable && check.code) {
    showRefused(check.code);
    return;
  }
  refusedCode = null;
  renderCrisis(byId('name-crisis'), checkCrisis, 'join');
  busy(false);
  showScreen('name');
}

function renderJoinTitle() {
  const heading = byId('join-meeting');
  show(heading, Boolean(checkTitle));
  setText(heading, checkTitle ? t('name.joining', { title: checkTitle }) : '');
}

/** Starts (or restarts) a session for this tab's join token. */
function newSession() {
  return new Session(
    joinToken,
    {
      message: onMessage,
      status: onStatus,
      joinRefused: (code, _message, suggestion) => {
        if (isRefusal(code)) showRefused(code);
        else showJoinRefusal(code, suggestion, errorText(code));
      },
      unreachable: () => void explainUnreachable(),
      resumeToken: (tok) => saved.setResumeToken(tok),
    },
    { resumeToken: saved.resumeToken(), displayName: saved.displayName() },
  );
}

/** The first join's socket was refused before it opened: ask the server why. */
async function explainUnreachable() {
  const check = await joinCheck();
  if (check && !check.joinable && check.code) {
    checkCrisis = crisisFrom(check);
    checkTitle = check.meeting_title ?? checkTitle;
    showRefused(check.code);
    return;
  }
  if (screen !== 'name') showScreen('name');
  showUnreachable();
}

function fillLanguages() {
  const select = byId('lang-select', HTMLSelectElement);
  select.replaceChildren(
    ...Object.entries(LANGS).map(([code, l]) => {
      const o = document.createElement('option');
      o.value = code;
      o.textContent = l.name;
      o.lang = code;
      return o;
    }),
  );
  select.value = currentLang();
  select.addEventListener('change', () => setLang(/** @type {import('./i18n.js').Lang} */ (select.value)));
}

/** After a language switch: redraw what is on screen in the new language. */
function relabel() {
  byId('lang-select', HTMLSelectElement).value = currentLang();
  if (screen === 'loading') loading(t('loading.checking'));
  if (screen === 'refused' && refusedCode) showRefused(refusedCode);
  if (screen === 'name') {
    renderJoinTitle();
    renderCrisis(byId('name-crisis'), checkCrisis, 'join');
    refreshJoin();
  }
  update();
}

function main() {
  translatePage();
  fillLanguages();
  onLangChange(relabel);
  loading(t('loading.opening'));
  const token = takeJoinToken();
  if (!token) {
    document.title = `${t('notoken.title')} · Haven`;
    showScreen('notoken');
    return;
  }
  joinToken = token;
  session = newSession();
  media.attach({
    send: (cmd) => session?.send(cmd) ?? null,
    announce,
    changed: () => {
      if (state.phase === 'meeting') render(state);
    },
    sinks: byId('media-sinks'),
  });

  bindJoin((name) => session?.join(name));
  bindMeeting({ state: () => state, send, leave });

  button('leave-btn').addEventListener('click', async () => {
    const ok = await confirmDialog({ title: t('leave.title'), text: t('leave.text'), confirm: t('leave') });
    if (ok !== null) leave();
  });
  button('waiting-leave').addEventListener('click', leave);
  button('retry-btn').addEventListener('click', () => session?.retryNow());
  button('refused-retry').addEventListener('click', () => void checkThenAsk());
  button('rejoin-btn').addEventListener('click', () => {
    const name = state.myName || saved.displayName();
    state = initialState();
    certificateAsked = false;
    session?.stop();
    session = newSession();
    showScreen('loading');
    loading(t('loading.joining'));
    session.join(name);
  });

  setInterval(() => {
    if (state.phase === 'meeting') tick(state);
  }, 1000);

  if (saved.resumeToken() && saved.displayName()) {
    // A reload: come back to the same seat (or take it over with the join token).
    loading(t('loading.reconnecting'));
    session.resumeSaved();
  } else {
    void checkThenAsk();
  }
}

function leave() {
  const s = session;
  if (!s) return;
  s.leave();
  media.stop();
  state.phase = 'over';
  state.ending = { kind: 'left' };
  update();
}

main();
