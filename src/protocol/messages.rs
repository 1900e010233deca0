//! Commands (client to server) and events (server to client).
//!
//! Both are internally tagged by `type` and flat: `{"type": "join", "display_name": "Sam"}`.
//! A client frame may carry an `id`; every event caused by that request and sent back to the
//! requester echoes it. Every server frame carries `seq`, counted per participant, so a resumed
//! client can say what it already has.

use super::error::{ErrorCode, ProtocolError};
use super::ids::ParticipantId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A place to find help outside the meeting (a crisis line), configured per program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrisisResource {
    /// What it is called, e.g. "988 Suicide & Crisis Lifeline".
    pub name: String,
    /// A `tel:`, `sms:` or `https:` URI.
    pub contact: String,
    /// A short note, e.g. "call or text, 24/7".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CrisisResource {
    /// Checks a configured resource: a name, a contact a phone or browser can open, short texts.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err("name: 1 to 120 characters".into());
        }
        let contact = self.contact.trim();
        let scheme_ok = ["tel:", "sms:", "https://"]
            .iter()
            .any(|s| contact.len() > s.len() && contact.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)));
        if !scheme_ok || contact.len() > 500 || contact.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("contact `{contact}`: use a tel:, sms: or https:// URI without spaces"));
        }
        if self.note.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err("note: at most 200 characters".into());
        }
        Ok(())
    }
}

/// A participant's role in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the meeting: admits, mutes, runs the queue.
    Facilitator,
    /// Has every facilitator control; promoted by a facilitator.
    CoFacilitator,
    /// Listens, raises a hand, shares when given the floor, chats.
    Member,
    /// Listed like everyone, but cannot speak or chat.
    Observer,
}

impl Role {
    /// Facilitators and co-facilitators hold the meeting's controls.
    pub fn is_facilitator(self) -> bool {
        matches!(self, Role::Facilitator | Role::CoFacilitator)
    }
}

/// What happens when a timed share reaches its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShareEnd {
    /// The floor is taken back at the end.
    Hard,
    /// The share is marked over time; the facilitator decides.
    #[default]
    Soft,
}

/// Who may send video (the media layer enforces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoPolicy {
    /// Nobody's camera is forwarded to members; facilitators' are.
    #[default]
    FacilitatorsOnly,
    /// Members' cameras are shown to facilitators only (a camera-on check).
    MembersToFacilitators,
    /// Everyone sees everyone's camera.
    Everyone,
}

/// A meeting's settings. Programs set them at creation; facilitators change them live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MeetingSettings {
    /// Members wait until a facilitator admits them.
    pub waiting_room: bool,
    /// Only the floor holder and facilitators may unmute.
    pub floor_control: bool,
    /// Length of a share in seconds; `null` for untimed shares.
    pub share_seconds: Option<u32>,
    /// How many seconds before the end of a share the warning is sent.
    pub share_warning_seconds: u32,
    /// Whether the end of a share takes the floor back.
    #[schema(value_type = String)]
    pub share_end: ShareEnd,
    /// Whether chat is on.
    pub chat_enabled: bool,
    /// Who may send video.
    #[schema(value_type = String)]
    pub video: VideoPolicy,
}

impl Default for MeetingSettings {
    fn default() -> Self {
        MeetingSettings {
            waiting_room: true,
            floor_control: false,
            share_seconds: None,
            share_warning_seconds: 30,
            share_end: ShareEnd::Soft,
            chat_enabled: true,
            video: VideoPolicy::FacilitatorsOnly,
        }
    }
}

/// Longest share a meeting may set, in seconds (one hour).
pub const MAX_SHARE_SECONDS: u32 = 3600;

impl MeetingSettings {
    /// Checks the ranges a program or facilitator could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.share_seconds {
            if s == 0 || s > MAX_SHARE_SECONDS {
                return Err(format!("share_seconds must be between 1 and {MAX_SHARE_SECONDS}"));
            }
            if self.share_warning_seconds >= s {
                return Err("share_warning_seconds must be shorter than share_seconds".into());
            }
        }
        Ok(())
    }
}

/// A client frame: a command plus the optional request `id` the replies echo.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ClientMessage {
    /// Echoed by every event this request causes for the requester (at most 64 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The command.
    #[serde(flatten)]
    pub command: Command,
}

/// Longest request id a client may send.
pub const MAX_REQUEST_ID_LEN: usize = 64;

impl ClientMessage {
    /// Parses one text frame. Unknown types and unknown fields are errors with their own codes.
    pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        let mut value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ProtocolError::new(ErrorCode::InvalidJson, format!("frame is not valid JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| ProtocolError::new(ErrorCode::InvalidMessage, "a message must be a JSON object"))?;
        let id = match obj.remove("id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.chars().count() <= MAX_REQUEST_ID_LEN => Some(s),
            Some(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidMessage,
                    format!("`id` must be a string of at most {MAX_REQUEST_ID_LEN} characters"),
                ))
            }
        };
        match obj.get("type") {
            Some(serde_json::Value::String(t)) if Command::TYPES.contains(&t.as_str()) => {}
            Some(serde_json::Value::String(t)) => {
                let shown: String = t.chars().take(40).collect();
                return Err(ProtocolError::new(ErrorCode::UnknownType, format!("unknown message type `{shown}`")));
            }
            _ => return Err(ProtocolError::new(ErrorCode::UnknownType, "a message needs a string `type`")),
        }
        let command = serde_json::from_value::<Command>(value).map_err(|e| {
            let text = e.to_string();
            let code =
                if text.starts_with("unknown field") { ErrorCode::UnknownField } else { ErrorCode::InvalidMessage };
            ProtocolError::new(code, text)
        })?;
        Ok(ClientMessage { id, command })
    }
}

/// A role a facilitator can give with `promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromoteTo {
    /// Hand the meeting over (the giver stays a co-facilitator).
    Facilitator,
    /// Share the controls.
    CoFacilitator,
    /// Back to member.
    Member,
}

/// What a client asks of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Enter the meeting; without `display_name` the server picks a pseudonym.
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// Come back after a dropped connection with the token from `welcome` (or the last `resumed`).
    Resume {
        resume_token: String,
        /// The highest `seq` the client has; later events are replayed when still held.
        #[serde(default)]
        last_seq: u64,
    },
    /// Leave the meeting.
    Leave,
    /// Keep-alive; answered by `pong`.
    Ping,
    /// Join the speaking queue.
    RaiseHand,
    /// Leave the queue; a facilitator may name someone else's hand.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    /// End one's own share.
    YieldFloor,
    /// Pass one's turn in a go-around.
    Pass,
    /// Mute or unmute oneself (unmuting may be refused).
    SetMuted { muted: bool },
    /// Send a chat message to the meeting.
    Chat { text: String },
    /// Tell the facilitators privately that one needs support.
    SupportRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Facilitator: let a waiting member in.
    Admit { participant_id: ParticipantId },
    /// Facilitator: let everyone waiting in.
    AdmitAll,
    /// Facilitator: turn a waiting member away.
    Deny {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Facilitator: mute someone; they cannot unmute until allowed.
    Mute { participant_id: ParticipantId },
    /// Facilitator: mute every non-facilitator.
    MuteAll,
    /// Facilitator: let a muted participant unmute themselves when they choose.
    AllowUnmute { participant_id: ParticipantId },
    /// Facilitator: remove someone from the meeting.
    Remove {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Facilitator: remove someone and refuse their member reference for the rest of the meeting.
    Ban {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Facilitator: change someone's display name.
    Rename { participant_id: ParticipantId, display_name: String },
    /// Facilitator: refuse new joins.
    Lock,
    /// Facilitator: accept new joins again.
    Unlock,
    /// Facilitator: switch chat on or off.
    SetChat { enabled: bool },
    /// Facilitator: delete a chat message.
    DeleteChat { message_id: u64 },
    /// Facilitator: end the meeting for everyone.
    EndMeeting,
    /// Facilitator: change settings live; absent fields stay as they are.
    UpdateSettings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_room: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        floor_control: Option<bool>,
        /// `0` switches share timing off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_seconds: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_warning_seconds: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_end: Option<ShareEnd>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<VideoPolicy>,
    },
    /// Facilitator: change someone's role.
    Promote { participant_id: ParticipantId, role: PromoteTo },
    /// Facilitator: acknowledge a support request.
    AckSupport { request_id: u64 },
    /// Facilitator: give the floor to the head of the queue (or the next in a go-around).
    NextSpeaker,
    /// Facilitator: give the floor to anyone present.
    GiveFloor { participant_id: ParticipantId },
    /// Facilitator: lengthen the running share (default: one share length, or 60 s if untimed).
    ExtendShare {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u32>,
    },
    /// Facilitator: move a raised hand to a position (0 = head).
    MoveHand { participant_id: ParticipantId, position: u32 },
    /// Facilitator: start a check-in round.
    StartGoAround,
    /// Facilitator: stop the round.
    EndGoAround,
    /// After the meeting's end: one's own attendance certificate (connect with `certificate=1`).
    CertificateRequest,
    /// Start (or restart) media: the client's SDP offer. Each offer starts a fresh media session.
    MediaOffer { sdp: String },
    /// The client's SDP answer to a server `media_offer` (the server adds or removes others' tracks).
    MediaAnswer { sdp: String },
    /// A trickled ICE candidate (`candidate:...` line). Optional: the server also learns addresses from ICE checks.
    IceCandidate { candidate: String },
}

impl Command {
    /// Every `type` a client may send, for telling an unknown type from a malformed known one.
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "resume",
        "leave",
        "ping",
        "raise_hand",
        "lower_hand",
        "yield_floor",
        "pass",
        "set_muted",
        "chat",
        "support_request",
        "admit",
        "admit_all",
        "deny",
        "mute",
        "mute_all",
        "allow_unmute",
        "remove",
        "ban",
        "rename",
        "lock",
        "unlock",
        "set_chat",
        "delete_chat",
        "end_meeting",
        "update_settings",
        "promote",
        "ack_support",
        "next_speaker",
        "give_floor",
        "extend_share",
        "move_hand",
        "start_go_around",
        "end_go_around",
        "certificate_request",
        "media_offer",
        "media_answer",
        "ice_candidate",
    ];

    /// Whether only facilitators (and co-facilitators) may send this.
    pub fn is_facilitator_only(&self) -> bool {
        matches!(
            self,
            Command::Admit { .. }
                | Command::AdmitAll
                | Command::Deny { .. }
                | Command::Mute { .. }
                | Command::MuteAll
                | Command::AllowUnmute { .. }
                | Command::Remove { .. }
                | Command::Ban { .. }
                | Command::Rename { .. }
                | Command::Lock
                | Command::Unlock
                | Command::SetChat { .. }
                | Command::DeleteChat { .. }
                | Command::EndMeeting
                | Command::UpdateSettings { .. }
                | Command::Promote { .. }
                | Command::AckSupport { .. }
                | Command::NextSpeaker
                | Command::GiveFloor { .. }
                | Command::ExtendShare { .. }
                | Command::MoveHand { .. }
                | Command::StartGoAround
                | Command::EndGoAround
        )
    }
}

/// What others see of a participant: never the program, member reference or anything network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParticipantView {
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub role: Role,
    pub muted: bool,
    /// False while a facilitator's mute holds (or, in floor control, without the floor).
    pub can_unmute: bool,
    pub hand_raised: bool,
    /// False while their connection is down and their seat is held for them.
    pub connected: bool,
}

/// A waiting member as facilitators see them: a name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WaitingView {
    pub participant_id: ParticipantId,
    pub display_name: String,
    /// When they started waiting (Unix milliseconds).
    pub since: u64,
}

/// A place in the speaking queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QueueEntry {
    pub participant_id: ParticipantId,
    /// Server time the hand went up (Unix milliseconds); the queue is in this order unless a facilitator moved someone.
    pub raised_at: u64,
}

/// Who holds the floor and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FloorView {
    pub participant_id: ParticipantId,
    pub started_at: u64,
    /// When the share ends (Unix milliseconds), for timed shares.
    pub ends_at: Option<u64>,
    /// A soft-timed share that ran past its end.
    pub over_time: bool,
}

/// The state of a go-around.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GoAroundView {
    pub active: bool,
    /// The fixed order (late arrivals appended, leavers removed).
    pub order: Vec<ParticipantId>,
    /// Whose turn it is.
    pub current: Option<ParticipantId>,
    /// Who passed.
    pub passed: Vec<ParticipantId>,
}

/// An open support request, as facilitators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SupportView {
    pub request_id: u64,
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub text: Option<String>,
    pub at: u64,
}

/// The meeting as participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MeetingView {
    pub id: String,
    pub title: String,
    pub locked: bool,
    pub settings: MeetingSettings,
}

/// Why someone left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Removed,
    Banned,
    Denied,
    ConnectionLost,
    MeetingEnded,
    ServerShutdown,
}

impl LeaveReason {
    /// The snake_case name (for the ledger and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Removed => "removed",
            LeaveReason::Banned => "banned",
            LeaveReason::Denied => "denied",
            LeaveReason::ConnectionLost => "connection_lost",
            LeaveReason::MeetingEnded => "meeting_ended",
            LeaveReason::ServerShutdown => "server_shutdown",
        }
    }
}

/// Why a share ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareEndReason {
    Yielded,
    Passed,
    TimeUp,
    Facilitator,
    Left,
}

/// What the server tells a client.
// `Welcome` is large, but events are built once per fan-out and serialised straight away; boxing
// it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Joined (or admitted): a full snapshot of the meeting.
    Welcome {
        participant_id: ParticipantId,
        role: Role,
        display_name: String,
        /// Present once to come back after a dropped connection; works once, for this meeting only.
        resume_token: String,
        meeting: MeetingView,
        participants: Vec<ParticipantView>,
        queue: Vec<QueueEntry>,
        floor: Option<FloorView>,
        go_around: Option<GoAroundView>,
        /// Facilitators only; empty for everyone else.
        waiting: Vec<WaitingView>,
        /// Facilitators only; empty for everyone else.
        support_requests: Vec<SupportView>,
        /// Where to find help outside the meeting, as the joining member's own program configured
        /// it; empty when it configured none (then show nothing).
        crisis_resources: Vec<CrisisResource>,
    },
    /// A refusal.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suggestion: Option<String>,
    },
    /// Answer to `ping`.
    Pong,
    /// The request succeeded and caused no other event for the requester.
    Ack,
    /// Back after a dropped connection: same participant id; missed events follow (or a snapshot).
    Resumed {
        participant_id: ParticipantId,
        resume_token: String,
        /// True when the missed events follow; false when a fresh snapshot follows instead.
        replayed: bool,
    },
    /// In the waiting room until a facilitator admits.
    Waiting {
        participant_id: ParticipantId,
        display_name: String,
        resume_token: String,
        meeting_title: String,
    },
    /// A facilitator let you in; `welcome` follows.
    Admitted,
    /// A facilitator turned you away.
    Denied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Facilitators: who is waiting.
    WaitingList {
        waiting: Vec<WaitingView>,
    },
    ParticipantJoined {
        participant: ParticipantView,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    ParticipantUpdated {
        participant: ParticipantView,
    },
    QueueUpdated {
        queue: Vec<QueueEntry>,
    },
    FloorChanged {
        floor: Option<FloorView>,
    },
    /// The share ends soon.
    ShareWarning {
        participant_id: ParticipantId,
        ends_at: u64,
        remaining_seconds: u32,
    },
    ShareEnded {
        participant_id: ParticipantId,
        reason: ShareEndReason,
    },
    GoAround {
        go_around: GoAroundView,
    },
    Chat {
        message_id: u64,
        participant_id: ParticipantId,
        display_name: String,
        text: String,
        at: u64,
    },
    ChatDeleted {
        message_id: u64,
    },
    /// Facilitators: a member asked for support.
    SupportRequest {
        request: SupportView,
    },
    /// Your support request reached the facilitators.
    SupportRequestSent {
        request_id: u64,
    },
    /// A facilitator acknowledged a support request (to facilitators and the member who asked).
    SupportAcknowledged {
        request_id: u64,
        by: ParticipantId,
    },
    MeetingUpdated {
        meeting: MeetingView,
    },
    /// You were removed (or banned).
    Removed {
        banned: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    MeetingEnded {
        /// True when this participant's attendance was recorded for their program (members and
        /// facilitators); false for observers.
        attendance_recorded: bool,
    },
    /// One's own attendance certificate: a compact JWS anyone can verify with `/.well-known/jwks.json`.
    Certificate {
        certificate: String,
        minutes_present: i64,
        credited: bool,
    },
    /// The server's SDP answer to the client's `media_offer`.
    MediaAnswer {
        sdp: String,
    },
    /// The server renegotiates (someone started or stopped sending): answer with `media_answer`.
    /// Each incoming stream's id (msid) is the sender's participant id.
    MediaOffer {
        sdp: String,
    },
    /// Who is speaking now (from the audio-level header extension), or nobody.
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
}

/// A server frame as it appears on the wire: the event plus `seq` and the echoed request `id`.
///
/// The server never builds this struct on its hot path: it serialises an [`Event`] once per
/// fan-out and splices `seq` and `id` in front (see `signal::frame`). It exists for the schema
/// and for clients written in Rust (tests, load tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerMessage {
    /// Per-participant sequence number, from 1.
    pub seq: u64,
    /// The request id this event answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_command_with_id() {
        let m = ClientMessage::parse(r#"{"type":"join","display_name":"Sam","id":"r1"}"#).unwrap();
        assert_eq!(m.id.as_deref(), Some("r1"));
        assert_eq!(m.command, Command::Join { display_name: Some("Sam".into()) });
    }

    #[test]
    fn unknown_type_unknown_field_and_bad_json_have_distinct_codes() {
        let code = |s: &str| ClientMessage::parse(s).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"kind":"join"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join","colour":"red"}"#), ErrorCode::UnknownField);
        assert_eq!(code(r#"{"type":"set_muted"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"mute","participant_id":"bob"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"[1,2]"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"ping","id":5}"#), ErrorCode::InvalidMessage);
    }

    #[test]
    fn every_listed_type_is_a_command_and_every_command_is_listed() {
        let schema = serde_json::to_value(schemars::schema_for!(Command)).unwrap();
        let mut types: Vec<String> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["properties"]["type"]["const"].as_str().unwrap().to_string())
            .collect();
        types.sort();
        let mut listed: Vec<String> = Command::TYPES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(types, listed);
    }

    #[test]
    fn settings_validation_rejects_warning_longer_than_share() {
        let s = MeetingSettings { share_seconds: Some(30), share_warning_seconds: 30, ..Default::default() };
        assert!(s.validate().is_err());
        let s = MeetingSettings { share_seconds: Some(180), share_warning_seconds: 30, ..Default::default() };
        assert!(s.validate().is_ok());
    }
}
