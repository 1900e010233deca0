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
/** @typedef {import('./protocol').ErrorCode} ErrorCode */

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
  };
}

/** @param {Role | null | undefined} role */
export function isFacilitator(role) {
  return role === 'facilitator' || role === 'co_facilitator';
}

/** @param {MeetingState} s @param {string | null | undefined} id */
export function nameOf(s, id) {
  if (!id) return '';
  if (id === s.me) return s.participants.get(id)?.display_name ?? s.myName;
  return s.participants.get(id)?.display_name ?? 'Someone who left';
}

/** @param {MeetingState} s */
export function mySeat(s) {
  return s.me ? s.participants.get(s.me) ?? null : null;
}

/** 1-based place in the queue, or 0. @param {MeetingState} s */
export function myQueuePlace(s) {
  return s.queue.findIndex((q) => q.participant_id === s.me) + 1;
}

/** @param {number} n */
export function ordinal(n) {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  return `${n}${['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'}`;
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
  if (!me) return 'You are not in the meeting.';
  if (me.role === 'observer') return 'Observers listen only.';
  if (me.can_unmute) return null;
  if (s.meeting?.settings.floor_control && s.floor?.participant_id !== s.me && !isFacilitator(me.role)) {
    return 'In this meeting only the person sharing can unmute. Raise your hand to ask for the floor.';
  }
  return 'A facilitator muted you. You can unmute when they allow it.';
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
      if (!sameSeat) notes.push({ text: `You are in the meeting ${msg.meeting.title} as ${msg.display_name}.` });
      break;
    }
    case 'waiting':
      s.phase = 'waiting';
      s.me = msg.participant_id;
      s.myName = msg.display_name;
      s.title = msg.meeting_title;
      s.ending = null;
      notes.push({ text: `You are in the waiting room as ${msg.display_name}. A facilitator will let you in.` });
      break;
    case 'admitted':
      notes.push({ text: 'A facilitator let you in.', urgent: true });
      break;
    case 'denied':
      s.phase = 'over';
      s.ending = { kind: 'denied', message: msg.message ?? null };
      break;
    case 'waiting_list': {
      const before = new Set(s.waiting.map((w) => w.participant_id));
      const arrived = msg.waiting.filter((w) => !before.has(w.participant_id));
      s.waiting = msg.waiting;
      for (const w of arrived) notes.push({ text: `${w.display_name} is in the waiting room.` });
      break;
    }
    case 'participant_joined':
      s.participants.set(msg.participant.participant_id, msg.participant);
      notes.push({ text: `${msg.participant.display_name} joined.` });
      break;
    case 'participant_left': {
      const who = nameOf(s, msg.participant_id);
      s.participants.delete(msg.participant_id);
      if (msg.participant_id !== s.me) notes.push({ text: `${who} left.` });
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
          if (before.can_unmute && !p.can_unmute && p.muted && !s.meeting?.settings.floor_control) {
            notes.push({ text: 'A facilitator muted you.', urgent: true });
          } else if (!before.muted && p.muted && before.can_unmute === p.can_unmute) {
            notes.push({ text: 'You are muted.' });
          }
          if (!before.can_unmute && p.can_unmute) notes.push({ text: 'You may unmute now.', urgent: true });
          if (before.display_name !== p.display_name) {
            notes.push({ text: `A facilitator changed your name to ${p.display_name}.`, urgent: true });
          }
          if (before.role !== p.role) notes.push({ text: `Your role is now ${roleLabel(p.role)}.`, urgent: true });
        }
      } else if (before && before.connected !== p.connected) {
        notes.push({ text: p.connected ? `${p.display_name} is back.` : `${p.display_name} lost their connection.` });
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
        notes.push({ text: floor.participant_id === s.me ? 'Your share is over time.' : 'The share is over time.' });
      }
      break;
    }
    case 'share_warning':
      s.warning = { participant_id: msg.participant_id, ends_at: msg.ends_at };
      s.clockOffset = msg.ends_at - msg.remaining_seconds * 1000 - now;
      notes.push({
        text:
          msg.participant_id === s.me
            ? `About ${msg.remaining_seconds} seconds left in your share.`
            : `About ${msg.remaining_seconds} seconds left in this share.`,
        urgent: msg.participant_id === s.me,
      });
      break;
    case 'share_ended':
      if (s.warning?.participant_id === msg.participant_id) s.warning = null;
      if (msg.reason === 'time_up') {
        notes.push({ text: msg.participant_id === s.me ? 'Your share time is up.' : 'The share time is up.' });
      }
      break;
    case 'go_around': {
      const was = s.goAround?.active ?? false;
      s.goAround = msg.go_around.active ? msg.go_around : null;
      if (!was && msg.go_around.active) notes.push({ text: 'A go-around started.' });
      if (was && !msg.go_around.active) notes.push({ text: 'The go-around ended.' });
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
      notes.push({ text: `${msg.request.display_name} asked for support.`, urgent: true });
      break;
    case 'support_request_sent':
      s.mySupport.push({ request_id: msg.request_id, acknowledged: false });
      notes.push({ text: 'Your request was sent privately to the facilitators.' });
      break;
    case 'support_acknowledged': {
      s.support = s.support.filter((r) => r.request_id !== msg.request_id);
      const mine = s.mySupport.find((r) => r.request_id === msg.request_id);
      if (mine) {
        mine.acknowledged = true;
        notes.push({ text: 'A facilitator saw your request for support.', urgent: true });
      }
      break;
    }
    case 'meeting_updated': {
      const before = s.meeting;
      s.meeting = msg.meeting;
      s.title = msg.meeting.title;
      if (before && before.locked !== msg.meeting.locked) {
        notes.push({ text: msg.meeting.locked ? 'The meeting is locked.' : 'The meeting is unlocked.' });
      }
      if (before && before.settings.chat_enabled !== msg.meeting.settings.chat_enabled) {
        notes.push({ text: msg.meeting.settings.chat_enabled ? 'Chat is on.' : 'Chat is off.' });
      }
      break;
    }
    case 'removed':
      s.phase = 'over';
      s.ending = { kind: msg.banned ? 'banned' : 'removed', message: msg.reason ?? null };
      break;
    case 'meeting_ended':
      s.phase = 'over';
      s.ending = { kind: 'ended' };
      break;
    case 'error':
    case 'pong':
    case 'ack':
    case 'resumed':
      break; // the connection and the caller handle these
    case 'certificate':
      break; // only on a certificate connection after the meeting (not offered by this client yet)
    case 'media_answer':
    case 'media_offer':
      break; // media signaling: handled by media.js through the connection
    case 'active_speaker':
      s.activeSpeaker = msg.participant_id ?? null;
      break;
    default: {
      /** @type {never} */
      const unhandled = msg;
      void unhandled;
    }
  }
  return notes;
}

/** @param {Role} role */
export function roleLabel(role) {
  switch (role) {
    case 'facilitator':
      return 'facilitator';
    case 'co_facilitator':
      return 'co-facilitator';
    case 'member':
      return 'member';
    case 'observer':
      return 'observer';
  }
}
