// Haven's web client: the entry point. It reads the join token, runs the screens (name, waiting
// room, meeting, the end) and connects the signaling session to the meeting state and the views.

import { Session } from './connection.js';
import { announce, byId, confirmDialog, setText, show } from './dom.js';
import { bindJoin, busy, sentence, showJoinRefusal, showUnreachable } from './join-view.js';
import { media } from './media.js';
import { bindMeeting, render, tick } from './meeting-view.js';
import { apply, canSendVideo, initialState, mySeat } from './state.js';
import { saved, takeJoinToken } from './token.js';

/** @typedef {import('./protocol').ClientMessage} ClientMessage */
/** @typedef {import('./protocol').ServerMessage} ServerMessage */
/** @typedef {import('./connection.js').Status} Status */
/** @typedef {'loading' | 'notoken' | 'name' | 'waiting' | 'meeting' | 'over'} Screen */

let state = initialState();
/** @type {Session | null} */
let session = null;
/** @type {Screen | null} */
let screen = null;
/** Requests sent and not yet answered, for attributing errors. @type {Map<string, ClientMessage['type']>} */
const pending = new Map();
let wasReconnecting = false;
/** @type {ReturnType<typeof setTimeout> | null} */
let bannerTimer = null;
/** @type {ReturnType<typeof setTimeout> | null} */
let toastTimer = null;

/** Friendlier words for refusals a person may meet in normal use. @type {Partial<Record<string, string>>} */
const FRIENDLY = {
  mute_locked: 'A facilitator muted you. You can unmute when they allow it.',
  floor_required: 'In this meeting only the person sharing can unmute.',
  rate_limited: 'That was a lot at once. Please wait a moment and try again.',
  chat_disabled: 'Chat is off right now.',
  not_admitted: "You're still in the waiting room.",
  queue_empty: 'Nobody has a hand raised.',
  hand_already_raised: 'Your hand is already raised.',
  hand_not_raised: 'That hand is already down.',
  participant_not_found: 'That person is no longer in the meeting.',
  unavailable: 'The server is busy for a moment. Please try again.',
};

const SCREENS = /** @type {const} */ (['loading', 'notoken', 'name', 'waiting', 'meeting', 'over']);

/** @param {Screen} next */
function showScreen(next) {
  if (screen === next) return;
  screen = next;
  for (const name of SCREENS) show(byId(`screen-${name}`), name === next);
  // Move focus to the new screen so keyboard and screen-reader users start at its top.
  if (next === 'name') byId('name-input').focus();
  else if (next === 'meeting') byId('meeting-h').focus();
  else if (next !== 'loading') byId(`screen-${next}`).querySelector('h1')?.focus();
}

/**
 * Sends a command, remembering it so an error can be shown against it.
 * @param {ClientMessage} cmd
 */
function send(cmd) {
  const id = session?.send(cmd) ?? null;
  if (id === null) {
    toast("You're not connected right now. Haven is reconnecting; try again in a moment.");
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
      toast(`Someone already uses that name. “${msg.suggestion}” is free.`);
    } else {
      toast(FRIENDLY[msg.code] ?? sentence(msg.message));
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
    announce('Your camera was turned off: this meeting no longer shares it.', true);
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
      setText(pill, 'Connecting…');
      pill.dataset.tone = 'pending';
      break;
    case 'online':
      show(pill, true);
      setText(pill, 'Connected');
      pill.dataset.tone = 'ok';
      show(retry, false);
      // Back after a drop: the server expects a fresh media session (a new offer).
      if (wasReconnecting && state.phase === 'meeting') startMedia();
      if (wasReconnecting) {
        setText(text, status.resumed ? 'Reconnected. You kept your place.' : 'Reconnected.');
        banner.dataset.tone = 'ok';
        show(banner, true);
        bannerTimer = setTimeout(() => show(banner, false), 5000);
      } else {
        show(banner, false);
      }
      wasReconnecting = false;
      break;
    case 'reconnecting':
      if (!wasReconnecting) announce('Connection lost. Reconnecting.', true);
      wasReconnecting = true;
      show(pill, true);
      setText(pill, 'Reconnecting…');
      pill.dataset.tone = 'pending';
      setText(
        text,
        status.attempt <= 3
          ? 'Connection lost. Reconnecting… Your seat and your place in the queue are kept for a short while.'
          : `Still reconnecting (attempt ${status.attempt})… Check your internet connection.`,
      );
      banner.dataset.tone = 'pending';
      show(banner, true);
      show(retry, status.attempt > 3);
      if (screen === 'loading') setText(byId('screen-loading'), 'Reconnecting to your meeting…');
      break;
    case 'stopped':
      show(pill, false);
      if (status.gaveUp) {
        setText(text, "Couldn't reconnect. Check your internet connection, then try again.");
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

function update() {
  const title = byId('meeting-title');
  setText(title, state.title);
  show(button('leave-btn'), state.phase === 'meeting');
  switch (state.phase) {
    case 'join':
      break;
    case 'waiting':
      setText(byId('waiting-name'), state.myName);
      document.title = `Waiting · ${state.title || 'Haven'}`;
      showScreen('waiting');
      break;
    case 'meeting':
      document.title = `${state.title || 'Meeting'} · Haven`;
      showScreen('meeting');
      render(state);
      break;
    case 'over':
      renderOver();
      showScreen('over');
      break;
  }
}

function renderOver() {
  const e = state.ending ?? { kind: 'left' };
  /** @type {Record<import('./state.js').Ending['kind'], [string, string, boolean]>} */
  const words = {
    left: ['You left the meeting', 'Thank you for being here. You can join again with the same link while the meeting is on.', true],
    removed: ['A facilitator removed you from the meeting', 'If you think this was a mistake, contact the people who run the group.', false],
    banned: ["You can't rejoin this meeting", 'A facilitator removed you from this meeting for its remaining time.', false],
    denied: ["The facilitator didn't let you in this time", 'You can contact the people who run the group about another meeting.', false],
    ended: ['The meeting has ended', 'Thank you for being here. Take care of yourself.', false],
    replaced: [
      'You opened this meeting somewhere else',
      'You joined from another tab or device, so this one stepped aside. Your seat moved with you.',
      true,
    ],
    failed: ["Couldn't join", 'The link may have expired, or the meeting may be locked, full or over.', true],
  };
  const [title, text, rejoin] = words[e.kind];
  setText(byId('over-h'), title);
  setText(byId('over-text'), text);
  const message = byId('over-message');
  show(message, Boolean(e.message));
  setText(message, e.message ? `“${e.message}”` : '');
  const again = button('rejoin-btn');
  show(again, rejoin);
  setText(again, e.kind === 'replaced' ? 'Use this tab instead' : 'Join again');
  document.title = `${title} · Haven`;
}

/** Starts (or restarts) a session for this tab's join token. @param {string} joinToken */
function newSession(joinToken) {
  return new Session(
    joinToken,
    {
      message: onMessage,
      status: onStatus,
      joinRefused: showJoinRefusal,
      unreachable: showUnreachable,
      resumeToken: (t) => saved.setResumeToken(t),
    },
    { resumeToken: saved.resumeToken(), displayName: saved.displayName() },
  );
}

function main() {
  const joinToken = takeJoinToken();
  if (!joinToken) {
    showScreen('notoken');
    return;
  }
  session = newSession(joinToken);
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
    const ok = await confirmDialog({
      title: 'Leave the meeting?',
      text: 'You can come back with the same link while the meeting is on.',
      confirm: 'Leave',
    });
    if (ok !== null) leave();
  });
  button('waiting-leave').addEventListener('click', leave);
  button('retry-btn').addEventListener('click', () => session?.retryNow());
  button('rejoin-btn').addEventListener('click', () => {
    const name = state.myName || saved.displayName();
    state = initialState();
    session?.stop();
    session = newSession(joinToken);
    showScreen('loading');
    setText(byId('screen-loading'), 'Joining…');
    session.join(name);
  });

  setInterval(() => {
    if (state.phase === 'meeting') tick(state);
  }, 1000);

  if (saved.resumeToken() && saved.displayName()) {
    // A reload: come back to the same seat (or take it over with the join token).
    setText(byId('screen-loading'), 'Reconnecting to your meeting…');
    session.resumeSaved();
  } else {
    busy(false);
    showScreen('name');
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
