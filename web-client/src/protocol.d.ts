/* Generated from proto/schema.json by `npm run gen:types` (web-client/tests/gen-types.mjs).
 * Do not edit: change the Rust protocol types, regenerate the schema, then run gen:types. */

/**
 * A client frame: a command plus the optional request `id` the replies echo.
 */
export type ClientMessage = ClientMessage1 & ClientMessage2;
export type ClientMessage1 =
  | {
      display_name?: string | null;
      type: "join";
    }
  | {
      /**
       * The highest `seq` the client has; later events are replayed when still held.
       */
      last_seq?: number;
      resume_token: string;
      type: "resume";
    }
  | {
      type: "leave";
    }
  | {
      type: "ping";
    }
  | {
      type: "raise_hand";
    }
  | {
      participant_id?: ParticipantId | null;
      type: "lower_hand";
    }
  | {
      type: "yield_floor";
    }
  | {
      type: "pass";
    }
  | {
      muted: boolean;
      type: "set_muted";
    }
  | {
      text: string;
      type: "chat";
    }
  | {
      text?: string | null;
      type: "support_request";
    }
  | {
      participant_id: ParticipantId;
      type: "admit";
    }
  | {
      type: "admit_all";
    }
  | {
      message?: string | null;
      participant_id: ParticipantId;
      type: "deny";
    }
  | {
      participant_id: ParticipantId;
      type: "mute";
    }
  | {
      type: "mute_all";
    }
  | {
      participant_id: ParticipantId;
      type: "allow_unmute";
    }
  | {
      participant_id: ParticipantId;
      reason?: string | null;
      type: "remove";
    }
  | {
      participant_id: ParticipantId;
      reason?: string | null;
      type: "ban";
    }
  | {
      display_name: string;
      participant_id: ParticipantId;
      type: "rename";
    }
  | {
      type: "lock";
    }
  | {
      type: "unlock";
    }
  | {
      enabled: boolean;
      type: "set_chat";
    }
  | {
      message_id: number;
      type: "delete_chat";
    }
  | {
      type: "end_meeting";
    }
  | {
      floor_control?: boolean | null;
      share_end?: ShareEnd | null;
      /**
       * `0` switches share timing off.
       */
      share_seconds?: number | null;
      share_warning_seconds?: number | null;
      type: "update_settings";
      video?: VideoPolicy | null;
      waiting_room?: boolean | null;
    }
  | {
      participant_id: ParticipantId;
      role: PromoteTo;
      type: "promote";
    }
  | {
      request_id: number;
      type: "ack_support";
    }
  | {
      type: "next_speaker";
    }
  | {
      participant_id: ParticipantId;
      type: "give_floor";
    }
  | {
      seconds?: number | null;
      type: "extend_share";
    }
  | {
      participant_id: ParticipantId;
      position: number;
      type: "move_hand";
    }
  | {
      type: "start_go_around";
    }
  | {
      type: "end_go_around";
    }
  | {
      type: "certificate_request";
    }
  | {
      sdp: string;
      type: "media_offer";
    }
  | {
      sdp: string;
      type: "media_answer";
    }
  | {
      candidate: string;
      type: "ice_candidate";
    };
/**
 * A participant's id, random per meeting.
 */
export type ParticipantId = string;
/**
 * What happens when a timed share reaches its end.
 */
export type ShareEnd = "hard" | "soft";
/**
 * Who may send video (the media layer enforces it).
 */
export type VideoPolicy = "facilitators_only" | "members_to_facilitators" | "everyone";
/**
 * A role a facilitator can give with `promote`.
 */
export type PromoteTo = "facilitator" | "co_facilitator" | "member";
/**
 * A server frame as it appears on the wire: the event plus `seq` and the echoed request `id`.
 *
 * The server never builds this struct on its hot path: it serialises an [`Event`] once per
 * fan-out and splices `seq` and `id` in front (see `signal::frame`). It exists for the schema
 * and for clients written in Rust (tests, load tests).
 */
export type ServerMessage = ServerMessage1 & ServerMessage2;
export type ServerMessage1 =
  | {
      /**
       * Where to find help outside the meeting, as the joining member's own program configured
       * it; empty when it configured none (then show nothing).
       */
      crisis_resources: CrisisResource[];
      display_name: string;
      floor?: FloorView | null;
      go_around?: GoAroundView | null;
      meeting: MeetingView;
      participant_id: ParticipantId;
      participants: ParticipantView[];
      queue: QueueEntry[];
      /**
       * Present once to come back after a dropped connection; works once, for this meeting only.
       */
      resume_token: string;
      role: Role;
      /**
       * Facilitators only; empty for everyone else.
       */
      support_requests: SupportView[];
      type: "welcome";
      /**
       * Facilitators only; empty for everyone else.
       */
      waiting: WaitingView[];
    }
  | {
      code: ErrorCode;
      message: string;
      suggestion?: string | null;
      type: "error";
    }
  | {
      type: "pong";
    }
  | {
      type: "ack";
    }
  | {
      participant_id: ParticipantId;
      /**
       * True when the missed events follow; false when a fresh snapshot follows instead.
       */
      replayed: boolean;
      resume_token: string;
      type: "resumed";
    }
  | {
      display_name: string;
      meeting_title: string;
      participant_id: ParticipantId;
      resume_token: string;
      type: "waiting";
    }
  | {
      type: "admitted";
    }
  | {
      message?: string | null;
      type: "denied";
    }
  | {
      type: "waiting_list";
      waiting: WaitingView[];
    }
  | {
      participant: ParticipantView;
      type: "participant_joined";
    }
  | {
      participant_id: ParticipantId;
      reason: LeaveReason;
      type: "participant_left";
    }
  | {
      participant: ParticipantView;
      type: "participant_updated";
    }
  | {
      queue: QueueEntry[];
      type: "queue_updated";
    }
  | {
      floor?: FloorView | null;
      type: "floor_changed";
    }
  | {
      ends_at: number;
      participant_id: ParticipantId;
      remaining_seconds: number;
      type: "share_warning";
    }
  | {
      participant_id: ParticipantId;
      reason: ShareEndReason;
      type: "share_ended";
    }
  | {
      go_around: GoAroundView;
      type: "go_around";
    }
  | {
      at: number;
      display_name: string;
      message_id: number;
      participant_id: ParticipantId;
      text: string;
      type: "chat";
    }
  | {
      message_id: number;
      type: "chat_deleted";
    }
  | {
      request: SupportView;
      type: "support_request";
    }
  | {
      request_id: number;
      type: "support_request_sent";
    }
  | {
      by: ParticipantId;
      request_id: number;
      type: "support_acknowledged";
    }
  | {
      meeting: MeetingView;
      type: "meeting_updated";
    }
  | {
      banned: boolean;
      reason?: string | null;
      type: "removed";
    }
  | {
      /**
       * True when this participant's attendance was recorded for their program (members and
       * facilitators); false for observers.
       */
      attendance_recorded: boolean;
      type: "meeting_ended";
    }
  | {
      certificate: string;
      credited: boolean;
      minutes_present: number;
      type: "certificate";
    }
  | {
      sdp: string;
      type: "media_answer";
    }
  | {
      sdp: string;
      type: "media_offer";
    }
  | {
      type: "media_restart";
    }
  | {
      participant_id?: ParticipantId | null;
      type: "active_speaker";
    };
/**
 * A participant's role in a meeting.
 */
export type Role = "facilitator" | "co_facilitator" | "member" | "observer";
/**
 * Every refusal the signaling protocol can send, as a stable snake_case code.
 */
export type ErrorCode =
  | "invalid_json"
  | "unknown_type"
  | "unknown_field"
  | "invalid_message"
  | "message_too_large"
  | "binary_not_supported"
  | "rate_limited"
  | "already_joined"
  | "not_joined"
  | "invalid_name"
  | "name_taken"
  | "forbidden"
  | "not_admitted"
  | "participant_not_found"
  | "meeting_locked"
  | "meeting_full"
  | "meeting_ended"
  | "banned"
  | "chat_disabled"
  | "invalid_chat"
  | "chat_not_found"
  | "observer_cannot_speak"
  | "hand_already_raised"
  | "hand_not_raised"
  | "queue_empty"
  | "not_floor_holder"
  | "no_share_running"
  | "mute_locked"
  | "floor_required"
  | "go_around_active"
  | "no_go_around"
  | "nobody_present"
  | "last_facilitator"
  | "support_request_not_found"
  | "invalid_resume_token"
  | "invalid_settings"
  | "no_change"
  | "certificate_unavailable"
  | "invalid_media"
  | "unavailable"
  | "storage_backlog"
  | "internal";
/**
 * Why someone left.
 */
export type LeaveReason =
  "left" | "removed" | "banned" | "denied" | "connection_lost" | "meeting_ended" | "server_shutdown";
/**
 * Why a share ended.
 */
export type ShareEndReason = "yielded" | "passed" | "time_up" | "facilitator" | "left";

/**
 * JSON text frames on /v1/signal. Generated from src/protocol by `haven schema`; do not edit.
 */
export interface HavenProtocol {
  client: ClientMessage;
  server: ServerMessage;
}
export interface ClientMessage2 {
  /**
   * Echoed by every event this request causes for the requester (at most 64 characters).
   */
  id?: string | null;
}
/**
 * A place to find help outside the meeting (a crisis line), configured per program.
 */
export interface CrisisResource {
  /**
   * A `tel:`, `sms:` or `https:` URI.
   */
  contact: string;
  /**
   * What it is called, e.g. "988 Suicide & Crisis Lifeline".
   */
  name: string;
  /**
   * A short note, e.g. "call or text, 24/7".
   */
  note?: string | null;
}
/**
 * Who holds the floor and until when.
 */
export interface FloorView {
  /**
   * When the share ends (Unix milliseconds), for timed shares.
   */
  ends_at?: number | null;
  /**
   * A soft-timed share that ran past its end.
   */
  over_time: boolean;
  participant_id: ParticipantId;
  started_at: number;
}
/**
 * The state of a go-around.
 */
export interface GoAroundView {
  active: boolean;
  /**
   * Whose turn it is.
   */
  current?: ParticipantId | null;
  /**
   * The fixed order (late arrivals appended, leavers removed).
   */
  order: ParticipantId[];
  /**
   * Who passed.
   */
  passed: ParticipantId[];
}
/**
 * The meeting as participants see it.
 */
export interface MeetingView {
  id: string;
  locked: boolean;
  settings: MeetingSettings;
  title: string;
}
/**
 * A meeting's settings. Programs set them at creation; facilitators change them live.
 */
export interface MeetingSettings {
  /**
   * Whether chat is on.
   */
  chat_enabled?: boolean;
  /**
   * Only the floor holder and facilitators may unmute.
   */
  floor_control?: boolean;
  /**
   * What happens when a timed share reaches its end.
   */
  share_end?: "hard" | "soft";
  /**
   * Length of a share in seconds; `null` for untimed shares.
   */
  share_seconds?: number | null;
  /**
   * How many seconds before the end of a share the warning is sent.
   */
  share_warning_seconds?: number;
  /**
   * Who may send video (the media layer enforces it).
   */
  video?: "facilitators_only" | "members_to_facilitators" | "everyone";
  /**
   * Members wait until a facilitator admits them.
   */
  waiting_room?: boolean;
}
/**
 * What others see of a participant: never the program, member reference or anything network.
 */
export interface ParticipantView {
  /**
   * False while a facilitator's mute holds (or, in floor control, without the floor).
   */
  can_unmute: boolean;
  /**
   * False while their connection is down and their seat is held for them.
   */
  connected: boolean;
  display_name: string;
  muted: boolean;
  participant_id: ParticipantId;
  role: Role;
}
/**
 * A place in the speaking queue.
 */
export interface QueueEntry {
  participant_id: ParticipantId;
  /**
   * Server time the hand went up (Unix milliseconds); the queue is in this order unless a facilitator moved someone.
   */
  raised_at: number;
}
/**
 * An open support request, as facilitators see it.
 */
export interface SupportView {
  at: number;
  display_name: string;
  participant_id: ParticipantId;
  request_id: number;
  text?: string | null;
}
/**
 * A waiting member as facilitators see them: a name only.
 */
export interface WaitingView {
  display_name: string;
  participant_id: ParticipantId;
  /**
   * When they started waiting (Unix milliseconds).
   */
  since: number;
}
export interface ServerMessage2 {
  /**
   * The request id this event answers, if any.
   */
  id?: string | null;
  /**
   * Per-participant sequence number, from 1.
   */
  seq: number;
}
