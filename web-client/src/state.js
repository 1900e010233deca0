// The meeting as this client knows it, and how each server event changes it.
//
// `apply` handles every server message type in an exhaustive switch: when proto/schema.json gains
// an event and protocol.d.ts is regenerated, the type check fails here until the client handles it.

/** @typedef {import('./protocol').ServerMessage} ServerMessage */
/** @typedef {import('./protocol').ParticipantView} ParticipantView */
/** @typedef {import('./protocol').QueueEntry} QueueEntry */
/** @typedef {import('./protocol').FloorView} FloorView */
/** @typedef {import('./protocol').GoAroundView} GoAroundView */
/** @typedef {import('./protocol').WaitingView} WaitingView */
/** @typedef {import('./protocol').SupportView} SupportView */
/** @typedef {import('./protocol').MeetingView} MeetingView */
/** @typedef {import('./protocol').Role} Role */
/** @typedef {import('./protocol').LocationView} LocationView */
/** @typedef {import('./protocol').BreakoutsView} BreakoutsView */
/** @typedef {import('./protocol').ErrorCode} ErrorCode */
/** @typedef {Extract<ServerMessage, { type: 'media_quality' }>} MediaQuality */
/** @typedef {import('./protocol').AgendaView} AgendaView */
/** @typedef {import('./crisis.js').CrisisResource} CrisisResource */

import { crisisFrom } from './crisis.js';
import { t } from './i18n.js';

/**
 * @typedef {object} ChatLine
 * @property {number} message_id
 * @property {string} participant_id
 * @property {string} display_name
 * @property {string} text
 * @property {number} at
 */

/**
 * Why the meeting is over for this client.
 * @typedef {object} Ending
 * @property {'left' | 'removed' | 'banned' | 'denied' | 'ended' | 'replaced' | 'failed'} kind
 * @property {string | null} [message]
 * @property {boolean} [attendance] the server recorded this person's attendance (ended meetings)
 */

/**
 * @typedef {object} MeetingState
 * @property {'join' | 'waiting' | 'meeting' | 'over'} phase
 * @property {string | null} me my participant id
 * @property {string} myName
 * @property {Role | null} myRole
 * @property {string} title
 * @property {MeetingView | null} meeting
 * @property {Map<string, ParticipantView>} participants in the order they arrived
 * @property {QueueEntry[]} queue in the server's order
 * @property {FloorView | null} floor
 * @property {GoAroundView | null} goAround
 * @property {WaitingView[]} waiting facilitators only
 * @property {SupportView[]} support open support requests, facilitators only
 * @property {ChatLine[]} chat
 * @property {{ request_id: number, acknowledged: boolean }[]} mySupport my own support requests
 * @property {{ participant_id: string, ends_at: number } | null} warning the running share's warning
 * @property {number} clockOffset server clock minus this device's clock, in ms (estimated)
 * @property {Ending | null} ending
 * @property {string | null} activeSpeaker who is speaking now (from the SFU), if anyone
 * @property {Map<string, MediaQuality>} quality connections with a problem, by participant id
 *   (facilitators: everyone's; a member: only their own)
 * @property {CrisisResource[]} crisis my program's crisis resources (may be empty)
 * @property {LocationView | null} location the side room or breakout group I am in; null in the main room
 * @property {BreakoutsView | null} breakouts the breakout groups, while open
 * @property {{ invite_id: number, participant_id: string, display_name: string } | null} invite a facilitator asks me to step out
 * @property {AgendaView | null} agenda the meeting's format: its segments and the current one
 * @property {number | null} segmentWarning facilitators: the current segment's planned end, once warned
 */

/**
 * Something to tell a screen-reader user (and show briefly).
 * @typedef {{ text: string, urgent?: boolean }} Note
 */

/** Most chat lines kept in memory. */
const CHAT_KEEP = 300;

/** @returns {MeetingState} */
export function initialState() {
  return {
    phase: 'join',
    activeSpeaker: null,
    quality: new Map(),
    me: null,
    myName: '',
    myRole: null,
    title: '',
    meeting: null,
    participants: new Map(),
    queue: [],
    floor: null,
    goAround: null,
    waiting: [],
    support: [],
    chat: [],
    mySupport: [],
    warning: null,
    clockOffset: 0,
    ending: null,
    crisis: [],
    location: null,
    breakouts: null,
    invite: null,
    agenda: null,
    segmentWarning: null,
  };
}

/**
 * Whether I am the only facilitator left in the main room (so stepping out pauses its floor and
 * queue: the server asks for a confirmation, and the client asks first).
 * @param {MeetingState} s
 */
export function lastFacilitatorHere(s) {
  if (s.location || !isFacilitator(s.myRole)) return false;
  return ![...s.participants.values()].some((p) => p.participant_id !== s.me && isFacilitator(p.role) && !p.away);
}

/**
 * What I, a facilitator, can ask of `p`: from the main room or a breakout group, to step out with
 * me (a member of that same room); from a step-out, to come in (another facilitator, from the main
 * room). Null when neither.
 * @param {MeetingState} s @param {ParticipantView} p @returns {'stepOut' | 'askIn' | null}
 */
export function stepOutTarget(s, p) {
  if (!isFacilitator(s.myRole) || p.participant_id === s.me || p.away) return null;
  const l = s.location;
  if (l?.kind === 'step_out') {
    return isFacilitator(p.role) && !l.participants.includes(p.participant_id) ? 'askIn' : null;
  }
  // In a breakout group, its own people; in the main room, whoever is not away is there too.
  const sameRoom = !l || l.participants.includes(p.participant_id);
  return sameRoom && !isFacilitator(p.role) ? 'stepOut' : null;
}

/** @param {Role | null | undefined} role */
export function isFacilitator(role) {
  return role === 'facilitator' || role === 'co_facilitator';
}

/** @param {MeetingState} s @param {string | null | undefined} id */
export function nameOf(s, id) {
  if (!id) return '';
  if (id === s.me) return s.participants.get(id)?.display_name ?? s.myName;
  return s.participants.get(id)?.display_name ?? t('someoneWhoLeft');
}

/** @param {MeetingState} s */
export function mySeat(s) {
  return s.me ? s.participants.get(s.me) ?? null : null;
}

/**
 * Whether the rules let this person speak at all (before any facilitator's mute): not an
 * observer, and in a floor-control meeting a facilitator or the one who has the floor.
 * @param {MeetingState} s @param {ParticipantView} p
 */
export function mayTalk(s, p) {
  if (p.role === 'observer') return false;
  // Floor control is the main room's; in a step-out or breakout group anyone unmuted is heard.
  if (!s.meeting?.settings.floor_control || s.location) return true;
  return isFacilitator(p.role) || s.floor?.participant_id === p.participant_id;
}

/**
 * A facilitator's mute control on someone, by what it would do: `mute` (mute and hold it),
 * `allow` (lift the hold so they may unmute), or null when it would do nothing.
 * @param {MeetingState} s @param {ParticipantView} p
 * @returns {'mute' | 'allow' | null}
 */
export function muteAction(s, p) {
  if (p.role === 'observer') return null;
  if (p.can_unmute) return 'mute';
  // Could speak but may not unmute: a facilitator's mute holds.
  if (mayTalk(s, p)) return 'allow';
  // Without the floor nobody unmutes; muting still stops someone who is unmuted.
  return p.muted ? null : 'mute';
}

/** Muted by a facilitator, and the hold is what keeps them muted. @param {MeetingState} s @param {ParticipantView} p */
export function heldMuted(s, p) {
  return !p.can_unmute && mayTalk(s, p);
}

/** Whether this participant's hand is up: the queue is the one record of it. @param {MeetingState} s @param {string} id */
export function handRaised(s, id) {
  return s.queue.some((q) => q.participant_id === id);
}

/** 1-based place in the queue, or 0. @param {MeetingState} s */
export function myQueuePlace(s) {
  return s.queue.findIndex((q) => q.participant_id === s.me) + 1;
}

/** Server time now, by this device's clock and the estimated offset. @param {MeetingState} s */
export function serverNow(s) {
  return Date.now() + s.clockOffset;
}

/**
 * Whether my camera would reach anyone: facilitators always; members when the meeting's `video`
 * setting lets members' video go to the facilitators or to everyone; observers never. (The server
 * enforces the same rule; the client only avoids offering a camera that nobody would see.)
 * @param {MeetingState} s
 */
export function canSendVideo(s) {
  const role = mySeat(s)?.role ?? s.myRole;
  if (!role || role === 'observer') return false;
  if (isFacilitator(role)) return true;
  const policy = s.meeting?.settings.video ?? 'facilitators_only';
  return policy === 'members_to_facilitators' || policy === 'everyone';
}

/**
 * Why I cannot unmute, or null when I can.
 * @param {MeetingState} s
 * @returns {string | null}
 */
export function unmuteBlocker(s) {
  const me = mySeat(s);
  if (!me) return t('mic.notIn');
  if (me.role === 'observer') return t('mic.observer');
  if (me.can_unmute) return null;
  if (!mayTalk(s, me) && s.agenda?.current.rules.unmute === 'facilitators') {
    return t('mic.segment', { title: s.agenda.current.title });
  }
  if (!mayTalk(s, me)) return t('mic.floorOnly');
  return t('mic.heldMuted');
}

/**
 * Applies one server message. Returns what to announce.
 * @param {MeetingState} s
 * @param {ServerMessage} msg
 * @param {number} now this device's clock, ms
 * @returns {Note[]}
 */
export function apply(s, msg, now) {
  /** @type {Note[]} */
  const notes = [];
  switch (msg.type) {
    case 'welcome': {
      const sameSeat = s.me === msg.participant_id;
      s.phase = 'meeting';
      s.me = msg.participant_id;
      s.myName = msg.display_name;
      s.myRole = msg.role;
      s.meeting = msg.meeting;
      s.title = msg.meeting.title;
      s.participants = new Map(msg.participants.map((p) => [p.participant_id, p]));
      s.queue = msg.queue;
      s.floor = msg.floor ?? null;
      s.goAround = msg.go_around ?? null;
      s.waiting = msg.waiting;
      s.support = msg.support_requests;
      if (!sameSeat) {
        s.chat = [];
        s.mySupport = [];
      }
      if (s.warning && s.floor?.participant_id !== s.warning.participant_id) s.warning = null;
      s.ending = null;
      s.crisis = crisisFrom(msg);
      s.location = msg.location ?? null;
      s.breakouts = msg.breakouts ?? null;
      s.agenda = msg.agenda ?? null;
      if (s.agenda?.current.planned_end !== s.segmentWarning) s.segmentWarning = null;
      if (!sameSeat) notes.push({ text: t('note.inMeeting', { title: msg.meeting.title, name: msg.display_name }) });
      break;
    }
    case 'waiting':
      s.phase = 'waiting';
      s.me = msg.participant_id;
      s.myName = msg.display_name;
      s.title = msg.meeting_title;
      s.ending = null;
      notes.push({ text: t('note.waiting', { name: msg.display_name }) });
      break;
    case 'admitted':
      notes.push({ text: t('note.admitted'), urgent: true });
      break;
    case 'denied':
      s.phase = 'over';
      s.ending = { kind: 'denied', message: msg.message ?? null };
      break;
    case 'waiting_list': {
      const before = new Set(s.waiting.map((w) => w.participant_id));
      const arrived = msg.waiting.filter((w) => !before.has(w.participant_id));
      s.waiting = msg.waiting;
      for (const w of arrived) notes.push({ text: t('note.arrived', { name: w.display_name }) });
      break;
    }
    case 'participant_joined':
      s.participants.set(msg.participant.participant_id, msg.participant);
      notes.push({ text: t('note.joined', { name: msg.participant.display_name }) });
      break;
    case 'participant_left': {
      const who = nameOf(s, msg.participant_id);
      s.participants.delete(msg.participant_id);
      s.quality.delete(msg.participant_id);
      if (msg.participant_id !== s.me) notes.push({ text: t('note.left', { name: who }) });
      break;
    }
    case 'participant_updated': {
      const p = msg.participant;
      const before = s.participants.get(p.participant_id);
      s.participants.set(p.participant_id, p);
      if (p.participant_id === s.me) {
        s.myName = p.display_name;
        s.myRole = p.role;
        if (before) {
          if (before.can_unmute && heldMuted(s, p) && p.muted) {
            notes.push({ text: t('note.facMuted'), urgent: true });
          } else if (!before.muted && p.muted && before.can_unmute === p.can_unmute) {
            notes.push({ text: t('note.muted') });
          }
          if (!before.can_unmute && p.can_unmute) notes.push({ text: t('note.mayUnmute'), urgent: true });
          if (before.display_name !== p.display_name) {
            notes.push({ text: t('note.renamed', { name: p.display_name }), urgent: true });
          }
          if (before.role !== p.role) notes.push({ text: t('note.role', { role: roleLabel(p.role) }), urgent: true });
        }
      } else if (before && before.connected !== p.connected) {
        notes.push({ text: t(p.connected ? 'note.back' : 'note.lost', { name: p.display_name }) });
      }
      break;
    }
    case 'queue_updated':
      // The queue summary on screen is a live region: it announces the count and one's place.
      s.queue = msg.queue;
      break;
    case 'floor_changed': {
      const before = s.floor;
      const floor = msg.floor ?? null;
      s.floor = floor;
      if (floor && (!before || before.participant_id !== floor.participant_id || before.started_at !== floor.started_at)) {
        // A share that just started: its start is close to the server's now.
        s.clockOffset = floor.started_at - now;
      }
      if (!floor || floor.participant_id !== s.warning?.participant_id) s.warning = null;
      // Who holds the floor is announced by the floor status on screen (a live region).
      if (floor && floor.over_time && !before?.over_time && floor.participant_id === before?.participant_id) {
        notes.push({ text: t(floor.participant_id === s.me ? 'note.myOverTime' : 'note.overTime') });
      }
      break;
    }
    case 'share_warning':
      s.warning = { participant_id: msg.participant_id, ends_at: msg.ends_at };
      s.clockOffset = msg.ends_at - msg.remaining_seconds * 1000 - now;
      notes.push({
        text:
          msg.participant_id === s.me
            ? t('note.myShareLeft', { n: msg.remaining_seconds })
            : t('note.shareLeft', { n: msg.remaining_seconds }),
        urgent: msg.participant_id === s.me,
      });
      break;
    case 'share_ended':
      if (s.warning?.participant_id === msg.participant_id) s.warning = null;
      if (msg.reason === 'time_up') {
        notes.push({ text: t(msg.participant_id === s.me ? 'note.myTimeUp' : 'note.timeUp') });
      }
      break;
    case 'go_around': {
      const was = s.goAround?.active ?? false;
      s.goAround = msg.go_around.active ? msg.go_around : null;
      if (!was && msg.go_around.active) notes.push({ text: t('note.goAroundStarted') });
      if (was && !msg.go_around.active) notes.push({ text: t('note.goAroundEnded') });
      break;
    }
    case 'chat':
      s.chat.push({
        message_id: msg.message_id,
        participant_id: msg.participant_id,
        display_name: msg.display_name,
        text: msg.text,
        at: msg.at,
      });
      if (s.chat.length > CHAT_KEEP) s.chat.splice(0, s.chat.length - CHAT_KEEP);
      break;
    case 'chat_deleted':
      s.chat = s.chat.filter((c) => c.message_id !== msg.message_id);
      break;
    case 'support_request':
      s.support = [...s.support.filter((r) => r.request_id !== msg.request.request_id), msg.request];
      notes.push({ text: t('note.supportAsked', { name: msg.request.display_name }), urgent: true });
      break;
    case 'support_request_sent':
      s.mySupport.push({ request_id: msg.request_id, acknowledged: false });
      notes.push({ text: t('support.sent') });
      break;
    case 'support_acknowledged': {
      s.support = s.support.filter((r) => r.request_id !== msg.request_id);
      const mine = s.mySupport.find((r) => r.request_id === msg.request_id);
      if (mine) {
        mine.acknowledged = true;
        notes.push({ text: t('support.seen'), urgent: true });
      }
      break;
    }
    case 'meeting_updated': {
      const before = s.meeting;
      s.meeting = msg.meeting;
      s.title = msg.meeting.title;
      if (before && before.locked !== msg.meeting.locked) {
        notes.push({ text: t(msg.meeting.locked ? 'note.locked' : 'note.unlocked') });
      }
      if (before && before.settings.chat_enabled !== msg.meeting.settings.chat_enabled) {
        notes.push({ text: t(msg.meeting.settings.chat_enabled ? 'note.chatOn' : 'note.chatOff') });
      }
      const handsBefore = before?.settings.hands ?? true;
      const handsNow = msg.meeting.settings.hands ?? true;
      if (before && handsBefore !== handsNow) notes.push({ text: t(handsNow ? 'note.handsOn' : 'note.handsOff') });
      break;
    }
    case 'removed':
      s.phase = 'over';
      s.ending = { kind: msg.banned ? 'banned' : 'removed', message: msg.reason ?? null };
      break;
    case 'meeting_ended':
      s.phase = 'over';
      s.ending = { kind: 'ended', attendance: msg.attendance_recorded };
      break;
    case 'error':
    case 'pong':
    case 'ack':
    case 'resumed':
      break; // the connection and the caller handle these
    case 'certificate':
      break; // only on a certificate connection after the meeting (certificate.js)
    case 'media_answer':
    case 'media_offer':
    case 'media_restart':
    case 'ice_servers':
      break; // media signaling: handled by media.js through the connection
    case 'media_quality':
      // Facilitators get everyone's; a member only their own.
      // A fresh attempt (`checking`) leaves a known problem shown until it is solved.
      if (msg.state === 'failed' || (msg.state === 'connected' && poorConnection(msg))) {
        s.quality.set(msg.participant_id, msg);
      } else if (msg.state === 'connected') {
        s.quality.delete(msg.participant_id);
      }
      break;
    case 'active_speaker':
      s.activeSpeaker = msg.participant_id ?? null;
      break;
    case 'step_out_invite':
      s.invite = { invite_id: msg.invite_id, participant_id: msg.participant_id, display_name: msg.display_name };
      notes.push({ text: t('side.invite', { name: msg.display_name }), urgent: true });
      break;
    case 'step_out_withdrawn':
      if (s.invite?.invite_id === msg.invite_id) s.invite = null;
      break;
    case 'step_out_declined':
      notes.push({ text: t('side.declined', { name: nameOf(s, msg.participant_id) }), urgent: true });
      break;
    case 'location_changed': {
      const was = s.location;
      s.location = msg.location ?? null;
      s.participants = new Map(msg.participants.map((p) => [p.participant_id, p]));
      s.queue = msg.queue;
      s.floor = msg.floor ?? null;
      s.goAround = msg.go_around ?? null;
      s.warning = null;
      s.invite = null;
      s.activeSpeaker = null;
      // Each room has its own chat: what was said in one stays there.
      if (Boolean(was) !== Boolean(s.location) || was?.group !== s.location?.group) s.chat = [];
      // Somewhere else now (not just someone joining my room): say where.
      if (s.location && (was?.kind !== s.location.kind || was?.group !== s.location.group)) {
        notes.push({ text: placeText(s), urgent: true });
      }
      if (was && !s.location) notes.push({ text: t('side.back'), urgent: true });
      break;
    }
    case 'breakouts_updated':
      s.breakouts = msg.breakouts ?? null;
      break;
    case 'breakout_warning':
      s.clockOffset = msg.ends_at - msg.remaining_seconds * 1000 - now;
      notes.push({ text: t('side.breakoutWarning', { n: msg.remaining_seconds }), urgent: true });
      break;
    case 'segment_changed':
      if (s.agenda) s.agenda.current = msg.segment;
      s.segmentWarning = null;
      notes.push({ text: t('note.segment', { title: msg.segment.title }) });
      break;
    case 'segment_warning': {
      s.segmentWarning = msg.planned_end;
      const title = s.agenda?.segments[msg.index]?.title ?? '';
      notes.push({ text: t('note.segmentEnds', { title, n: Math.max(1, Math.round(msg.remaining_seconds / 60)) }) });
      break;
    }
    default: {
      /** @type {never} */
      const unhandled = msg;
      void unhandled;
    }
  }
  return notes;
}

/**
 * Where I am, in words: "You and Alex, privately. The group can't hear you." in a step-out, the
 * group's number and who is in it in a breakout group; '' in the main room.
 * @param {MeetingState} s
 */
export function placeText(s) {
  const l = s.location;
  if (!l) return '';
  const others = l.participants.filter((id) => id !== s.me).map((id) => nameOf(s, id));
  const names = others.length ? others.join(', ') : t('side.nobodyYet');
  if (l.kind === 'step_out') return t('side.private', { names });
  return t('side.group', { n: l.group ?? 0, names });
}

/**
 * Loss or delay that makes a meeting hard to follow.
 * @param {{ loss_percent?: number | null, rtt_ms?: number | null }} q
 */
export function poorConnection(q) {
  return (q.loss_percent ?? 0) >= 10 || (q.rtt_ms ?? 0) >= 800;
}

/** @param {Role} role */
export function roleLabel(role) {
  switch (role) {
    case 'facilitator':
      return t('role.facilitator');
    case 'co_facilitator':
      return t('role.co_facilitator');
    case 'member':
      return t('role.member');
    case 'observer':
      return t('role.observer');
  }
}
