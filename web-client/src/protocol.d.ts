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
      /**
       * `false` pauses raised hands (a hand already up stays until lowered).
       */
      hands?: boolean | null;
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
      type: "next_segment";
    }
  | {
      type: "previous_segment";
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
    }
  | {
      confirm?: boolean;
      participant_id: ParticipantId;
      type: "step_out";
    }
  | {
      accept: boolean;
      /**
       * As for `step_out`, when a facilitator accepting would leave the main room without one.
       */
      confirm?: boolean;
      invite_id: number;
      type: "answer_step_out";
    }
  | {
      type: "return_to_main";
    }
  | {
      /**
       * How people are placed; `assignments` always come first.
       */
      assign?: "auto" | "manual" | "choose";
      /**
       * Participants by group, `assignments[0]` being group 1; a facilitator placed here runs that group.
       */
      assignments?: ParticipantId[][];
      confirm?: boolean;
      /**
       * How many groups (2 to 20).
       */
      groups: number;
      /**
       * How long they last (1 to 14400 seconds); everyone returns at the end.
       */
      seconds: number;
      type: "open_breakouts";
      /**
       * How long before the end everyone is warned (default 60 s; 0 for no warning).
       */
      warning_seconds?: number | null;
    }
  | {
      confirm?: boolean;
      group: number;
      type: "choose_breakout";
    }
  | {
      type: "close_breakouts";
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
       * The meeting's agenda when it has a format; absent otherwise.
       */
      agenda?: AgendaView | null;
      /**
       * The breakout groups, while open.
       */
      breakouts?: BreakoutsView | null;
      /**
       * Where to find help outside the meeting, as the joining member's own program configured
       * it; empty when it configured none (then show nothing).
       */
      crisis_resources: CrisisResource[];
      display_name: string;
      floor?: FloorView | null;
      go_around?: GoAroundView | null;
      /**
       * The side room or breakout group one is in; `null` in the main room. `participants`,
       * `queue`, `floor` and `go_around` are that room's.
       */
      location?: LocationView | null;
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
      segment: SegmentView;
      type: "segment_changed";
    }
  | {
      index: number;
      planned_end: number;
      remaining_seconds: number;
      type: "segment_warning";
    }
  | {
      participant_id?: ParticipantId | null;
      type: "active_speaker";
    }
  | {
      display_name: string;
      invite_id: number;
      /**
       * A participant's id, random per meeting.
       */
      participant_id: string;
      type: "step_out_invite";
    }
  | {
      invite_id: number;
      type: "step_out_withdrawn";
    }
  | {
      participant_id: ParticipantId;
      type: "step_out_declined";
    }
  | {
      floor?: FloorView | null;
      go_around?: GoAroundView | null;
      location?: LocationView | null;
      participants: ParticipantView[];
      queue: QueueEntry[];
      type: "location_changed";
    }
  | {
      breakouts?: BreakoutsView | null;
      type: "breakouts_updated";
    }
  | {
      ends_at: number;
      remaining_seconds: number;
      type: "breakout_warning";
    }
  | {
      ice_servers: IceServer[];
      type: "ice_servers";
    }
  | {
      /**
       * Packets lost on the way to the server, percent (from RTCP receiver reports).
       */
      loss_percent?: number | null;
      participant_id: ParticipantId;
      /**
       * Round-trip time between the server and the participant, milliseconds (from RTCP).
       */
      rtt_ms?: number | null;
      state: MediaState;
      type: "media_quality";
    };
/**
 * Who takes part in a segment's go-around.
 */
export type GoAroundWho = "members" | "everyone";
/**
 * How `open_breakouts` places people who are not in its `assignments`.
 */
export type BreakoutAssign = "auto" | "manual" | "choose";
/**
 * What kind of room someone outside the main room is in.
 */
export type LocationKind = "step_out" | "breakout";
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
  | "hands_paused"
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
  | "segment_rules"
  | "no_format"
  | "no_such_segment"
  | "confirm_required"
  | "wrong_location"
  | "invite_not_found"
  | "not_in_side_room"
  | "breakouts_open"
  | "no_breakouts"
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
 * Where a participant's media connection stands, as the server sees it.
 */
export type MediaState = "checking" | "connected" | "failed";

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
 * The meeting's agenda: every segment and the current one.
 */
export interface AgendaView {
  current: SegmentView;
  segments: AgendaItem[];
}
/**
 * The current segment: what `segment_changed` carries and `welcome` includes.
 */
export interface SegmentView {
  /**
   * Whether it moves on by itself at `planned_end`.
   */
  auto_advance: boolean;
  /**
   * Position in the agenda, from 0.
   */
  index: number;
  /**
   * When it is planned to end (Unix ms); `null` when open-ended.
   */
  planned_end?: number | null;
  rules: SegmentRules;
  /**
   * When it started (Unix ms).
   */
  started_at: number;
  title: string;
}
/**
 * The segment's rules as it starts (facilitators may override them within it; the
 * meeting's settings in `meeting_updated` show what is in force).
 */
export interface SegmentRules {
  /**
   * Whether chat is on (default true).
   */
  chat?: boolean;
  /**
   * A go-around that starts with the segment, and who is in it (default none).
   */
  go_around?: GoAroundWho | null;
  /**
   * Whether members may raise a hand (default true).
   */
  hands?: boolean;
  /**
   * What happens when a timed share reaches its end.
   */
  share_end?: "hard" | "soft";
  /**
   * Length of a share in seconds; `null` for untimed shares (default).
   */
  share_seconds?: number | null;
  /**
   * Seconds before a share's end that its warning is sent (default 30).
   */
  share_warning_seconds?: number;
  /**
   * Who may unmute (default `anyone`).
   */
  unmute?: "facilitators" | "floor_holder" | "anyone";
}
/**
 * One line of the agenda as participants see it.
 */
export interface AgendaItem {
  planned_minutes?: number | null;
  title: string;
}
/**
 * The breakout groups while they are open.
 */
export interface BreakoutsView {
  assign: BreakoutAssign;
  /**
   * When everyone returns (Unix milliseconds).
   */
  ends_at: number;
  groups: BreakoutGroupView[];
}
/**
 * One breakout group.
 */
export interface BreakoutGroupView {
  /**
   * From 1.
   */
  group: number;
  participants: ParticipantId[];
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
 * Where one is when not in the main room, as its occupants see it.
 */
export interface LocationView {
  /**
   * When a breakout group returns to the main room (Unix milliseconds).
   */
  ends_at?: number | null;
  /**
   * The breakout group's number (from 1).
   */
  group?: number | null;
  kind: LocationKind;
  /**
   * Who is in this room (oneself included).
   */
  participants: ParticipantId[];
}
/**
 * The meeting as participants see it.
 */
export interface MeetingView {
  /**
   * The meeting's id as its program named it (ids are per program: a partner program's link
   * names it `<owner program>/<id>`).
   */
  id: string;
  locked: boolean;
  /**
   * Every facilitator is in a side room: the main room's floor and queue wait for one to return.
   */
  main_room_paused?: boolean;
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
   * Whether members may raise a hand (facilitators always may).
   */
  hands?: boolean;
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
   * In another room of the meeting (a side room or another breakout group): nothing else of
   * theirs is shown then (`muted`, no hand), and never why.
   */
  away?: boolean;
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
/**
 * A relay for the browser's `RTCPeerConnection` (`iceServers`), with a short-lived credential.
 */
export interface IceServer {
  credential: string;
  /**
   * `turn:` and `turns:` URLs (UDP, TCP, TLS).
   */
  urls: string[];
  username: string;
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
