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

/// A relay for the browser's `RTCPeerConnection` (`iceServers`), with a short-lived credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IceServer {
    /// `turn:` and `turns:` URLs (UDP, TCP, TLS).
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Where a participant's media connection stands, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// Offered; no ICE check has succeeded yet.
    Checking,
    /// Media flows.
    Connected,
    /// No path: the participant cannot hear the meeting (or be heard).
    Failed,
}

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
    /// Whether members may raise a hand (facilitators always may).
    pub hands: bool,
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
            hands: true,
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

/// A frame the parser refused: the error, plus what could be read of it so the reply can echo the
/// request `id` and the reader can apply the size limit of the frame's `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub error: ProtocolError,
    /// The request id, when the frame was a JSON object with a valid `id`.
    pub id: Option<String>,
    /// The frame's `type`, when it named a known command.
    pub command_type: Option<&'static str>,
}

impl Rejected {
    fn new(error: ProtocolError) -> Self {
        Rejected { error, id: None, command_type: None }
    }
}

/// A JSON object whose keys are unique: `serde_json::Value` keeps the last of duplicate keys,
/// which would let `{"type":"ping","type":"raise_hand"}` mean something else to another parser.
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<UniqueObject, A::Error> {
                let mut m = serde_json::Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    let v: serde_json::Value = a.next_value()?;
                    if m.contains_key(&k) {
                        let shown: String = k.chars().take(40).collect();
                        return Err(serde::de::Error::custom(format_args!("{DUPLICATE_KEY} `{shown}`")));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueObject(m))
            }
        }
        d.deserialize_map(V)
    }
}

const DUPLICATE_KEY: &str = "duplicate key";

impl ClientMessage {
    /// Parses one text frame. Unknown types, unknown fields and duplicate keys are errors with
    /// their own codes; the rejection keeps the request id when one was readable.
    pub fn parse(text: &str) -> Result<ClientMessage, Rejected> {
        // Commands have no nested objects, so unique keys at the top level are enough (a nested
        // object is refused by the typed parse below).
        let mut obj = match serde_json::from_str::<UniqueObject>(text) {
            Ok(UniqueObject(m)) => m,
            Err(e) if e.is_data() => {
                let msg = e.to_string();
                let msg = match msg.find(DUPLICATE_KEY) {
                    Some(at) => msg[at..].split(" at line ").next().unwrap_or(DUPLICATE_KEY).to_string(),
                    None => "a message must be a JSON object".to_string(),
                };
                return Err(Rejected::new(ProtocolError::new(ErrorCode::InvalidMessage, msg)));
            }
            Err(e) => {
                return Err(Rejected::new(ProtocolError::new(
                    ErrorCode::InvalidJson,
                    format!("frame is not valid JSON: {e}"),
                )))
            }
        };
        let id = match obj.remove("id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.chars().count() <= MAX_REQUEST_ID_LEN => Some(s),
            Some(_) => {
                return Err(Rejected::new(ProtocolError::new(
                    ErrorCode::InvalidMessage,
                    format!("`id` must be a string of at most {MAX_REQUEST_ID_LEN} characters"),
                )))
            }
        };
        let reject =
            |error: ProtocolError, command_type: Option<&'static str>| Rejected { error, id: id.clone(), command_type };
        let ty: &'static str = match obj.get("type") {
            Some(serde_json::Value::String(t)) => match Command::TYPES.iter().find(|k| **k == t.as_str()) {
                Some(k) => k,
                None => {
                    let shown: String = t.chars().take(40).collect();
                    return Err(reject(
                        ProtocolError::new(ErrorCode::UnknownType, format!("unknown message type `{shown}`")),
                        None,
                    ));
                }
            },
            _ => {
                return Err(reject(ProtocolError::new(ErrorCode::UnknownType, "a message needs a string `type`"), None))
            }
        };
        // serde ignores extra keys on unit variants of an internally tagged enum, whatever
        // `deny_unknown_fields` says: check those by hand.
        if Command::FIELDLESS.contains(&ty) {
            if let Some(k) = obj.keys().find(|k| *k != "type") {
                let shown: String = k.chars().take(40).collect();
                return Err(reject(
                    ProtocolError::new(
                        ErrorCode::UnknownField,
                        format!("unknown field `{shown}`: `{ty}` has no fields"),
                    ),
                    Some(ty),
                ));
            }
        }
        let command = serde_json::from_value::<Command>(serde_json::Value::Object(obj)).map_err(|e| {
            let text = e.to_string();
            let code =
                if text.starts_with("unknown field") { ErrorCode::UnknownField } else { ErrorCode::InvalidMessage };
            reject(ProtocolError::new(code, text), Some(ty))
        })?;
        Ok(ClientMessage { id, command })
    }
}

/// How `open_breakouts` places people who are not in its `assignments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BreakoutAssign {
    /// Everyone else in the main room (not facilitators) is spread evenly over the groups.
    #[default]
    Auto,
    /// Only those in `assignments` go; everyone else stays in the main room.
    Manual,
    /// Everyone else stays in the main room and picks a group with `choose_breakout`.
    Choose,
}

/// What kind of room someone outside the main room is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    /// A private side room: a facilitator and one member (and any facilitator brought in).
    StepOut,
    /// A breakout group.
    Breakout,
}

/// Where one is when not in the main room, as its occupants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocationView {
    pub kind: LocationKind,
    /// The breakout group's number (from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Who is in this room (oneself included).
    pub participants: Vec<ParticipantId>,
    /// When a breakout group returns to the main room (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<u64>,
}

/// One breakout group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BreakoutGroupView {
    /// From 1.
    pub group: u32,
    pub participants: Vec<ParticipantId>,
}

/// The breakout groups while they are open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BreakoutsView {
    pub groups: Vec<BreakoutGroupView>,
    /// When everyone returns (Unix milliseconds).
    pub ends_at: u64,
    pub assign: BreakoutAssign,
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
        /// `false` pauses raised hands (a hand already up stays until lowered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hands: Option<bool>,
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
    /// Facilitator: move to the next segment of the meeting's format (its rules apply at once).
    NextSegment,
    /// Facilitator: move back to the previous segment.
    PreviousSegment,
    /// After the meeting's end: one's own attendance certificate (connect with `certificate=1`).
    CertificateRequest,
    /// Start (or restart) media: the client's SDP offer. An offer from a new `RTCPeerConnection`
    /// starts a fresh media session; one from the current connection (the same DTLS fingerprint),
    /// such as an ICE restart after a network change, renegotiates the session and keeps its tracks.
    MediaOffer { sdp: String },
    /// The client's SDP answer to a server `media_offer` (the server adds or removes others' tracks).
    MediaAnswer { sdp: String },
    /// A trickled ICE candidate (`candidate:...` line). Optional: the server also learns addresses from ICE checks.
    IceCandidate { candidate: String },
    /// Facilitator: ask a member of your room (the main room, or the breakout group you are in) to
    /// step out with you into a private side room (they answer with `answer_step_out`). From inside
    /// a step-out, ask another facilitator in (from the main room, or from the group the step-out
    /// started from). When you are the main room's only facilitator the first try is refused with
    /// `confirm_required` (its floor and queue pause while you are away); `confirm: true` goes anyway.
    StepOut {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
    /// Accept or decline a `step_out_invite`.
    AnswerStepOut {
        invite_id: u64,
        accept: bool,
        /// As for `step_out`, when a facilitator accepting would leave the main room without one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
    /// Leave a side room or breakout group: a breakout group for the main room; a step-out for the
    /// room you came from (your breakout group while it is open, else the main room).
    ReturnToMain,
    /// Facilitator: split the main room into breakout groups for `seconds`.
    OpenBreakouts {
        /// How many groups (2 to 20).
        groups: u32,
        /// How long they last (1 to 14400 seconds); everyone returns at the end.
        seconds: u32,
        /// How long before the end everyone is warned (default 60 s; 0 for no warning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning_seconds: Option<u32>,
        /// How people are placed; `assignments` always come first.
        #[serde(default)]
        assign: BreakoutAssign,
        /// Participants by group, `assignments[0]` being group 1; a facilitator placed here runs that group.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignments: Vec<Vec<ParticipantId>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
    /// Join (or switch to) a breakout group: a member when the facilitator let members choose; a
    /// facilitator at any time, to visit a group (`confirm` when they are the main room's last
    /// facilitator: its floor and queue pause until one is back).
    ChooseBreakout {
        group: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
    /// Facilitator: bring everyone back from the breakout groups now.
    CloseBreakouts,
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
        "next_segment",
        "previous_segment",
        "certificate_request",
        "media_offer",
        "media_answer",
        "ice_candidate",
        "step_out",
        "answer_step_out",
        "return_to_main",
        "open_breakouts",
        "choose_breakout",
        "close_breakouts",
    ];

    /// The types that have no fields besides `type` (and `id`).
    pub const FIELDLESS: &'static [&'static str] = &[
        "leave",
        "ping",
        "raise_hand",
        "yield_floor",
        "pass",
        "admit_all",
        "mute_all",
        "lock",
        "unlock",
        "end_meeting",
        "next_speaker",
        "start_go_around",
        "end_go_around",
        "next_segment",
        "previous_segment",
        "certificate_request",
        "return_to_main",
        "close_breakouts",
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
                | Command::StepOut { .. }
                | Command::OpenBreakouts { .. }
                | Command::CloseBreakouts
                | Command::NextSegment
                | Command::PreviousSegment
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
    /// False while their connection is down and their seat is held for them.
    pub connected: bool,
    /// In another room of the meeting (a side room or another breakout group): nothing else of
    /// theirs is shown then (`muted`, no hand), and never why.
    #[serde(default)]
    pub away: bool,
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
    /// The meeting's id as its program named it (ids are per program: a partner program's link
    /// names it `<owner program>/<id>`).
    pub id: String,
    pub title: String,
    pub locked: bool,
    pub settings: MeetingSettings,
    /// Every facilitator is in a side room: the main room's floor and queue wait for one to return.
    #[serde(default)]
    pub main_room_paused: bool,
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
        /// The side room or breakout group one is in; `null` in the main room. `participants`,
        /// `queue`, `floor` and `go_around` are that room's.
        #[serde(default)]
        location: Option<LocationView>,
        /// The breakout groups, while open.
        #[serde(default)]
        breakouts: Option<BreakoutsView>,
        /// The meeting's agenda when it has a format; absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agenda: Option<super::format::AgendaView>,
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
    /// The server cannot renegotiate this media session (an answer was refused or never came, or
    /// the session grew too large): close the `RTCPeerConnection` and send a fresh `media_offer`.
    MediaRestart {},
    /// The meeting moved to another segment of its format; its rules are in force from now
    /// (settings follow in `meeting_updated`, can-unmute changes in `participant_updated`).
    SegmentChanged {
        segment: super::format::SegmentView,
    },
    /// Facilitators: the current segment's planned end is near. Nothing moves on by itself
    /// unless the segment says `auto_advance`.
    SegmentWarning {
        index: u32,
        planned_end: u64,
        remaining_seconds: u32,
    },
    /// Who is speaking now (from the audio-level header extension), or nobody.
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
    /// A facilitator asks you to step out with them into a private side room: answer with
    /// `answer_step_out` (declining is fine; nobody else is told).
    StepOutInvite {
        invite_id: u64,
        /// The facilitator asking.
        participant_id: ParticipantId,
        display_name: String,
    },
    /// An invitation you had is no longer open (the facilitator moved on).
    StepOutWithdrawn {
        invite_id: u64,
    },
    /// The member you asked to step out declined.
    StepOutDeclined {
        participant_id: ParticipantId,
    },
    /// You moved to another room of the meeting (or the room you are in changed): a fresh view of
    /// it. `location` is `null` in the main room; the rest is as in `welcome`.
    LocationChanged {
        location: Option<LocationView>,
        participants: Vec<ParticipantView>,
        queue: Vec<QueueEntry>,
        floor: Option<FloorView>,
        go_around: Option<GoAroundView>,
    },
    /// The breakout groups opened or changed (`null`: closed, everyone is back).
    BreakoutsUpdated {
        breakouts: Option<BreakoutsView>,
    },
    /// The breakout groups close soon.
    BreakoutWarning {
        ends_at: u64,
        remaining_seconds: u32,
    },
    /// Relays for this participant's `RTCPeerConnection` (`iceServers`), with short-lived
    /// credentials; sent after `welcome` and after `resumed` (a fresh set each time).
    IceServers {
        ice_servers: Vec<IceServer>,
    },
    /// A participant's media connection: to facilitators for everyone, to a member for their own
    /// connection only (nobody else's network figures). Sent when the state changes, and while
    /// connected when loss or round-trip time moved noticeably.
    MediaQuality {
        participant_id: ParticipantId,
        state: MediaState,
        /// Packets lost on the way to the server, percent (from RTCP receiver reports).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_percent: Option<f32>,
        /// Round-trip time between the server and the participant, milliseconds (from RTCP).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<u32>,
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
        let code = |s: &str| ClientMessage::parse(s).unwrap_err().error.code;
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
    fn fieldless_commands_refuse_any_other_field() {
        let err = |s: &str| ClientMessage::parse(s).unwrap_err();
        for ty in Command::FIELDLESS {
            let r = err(&format!(r#"{{"type":"{ty}","zz":1,"id":"r9"}}"#));
            assert_eq!(r.error.code, ErrorCode::UnknownField, "{ty}");
            assert_eq!(r.id.as_deref(), Some("r9"), "{ty}");
            // Positive control: the bare command parses.
            assert!(ClientMessage::parse(&format!(r#"{{"type":"{ty}","id":"r9"}}"#)).is_ok(), "{ty}");
        }
        assert_eq!(err(r#"{"type":"leave","zz":1}"#).error.code, ErrorCode::UnknownField);
        assert_eq!(err(r#"{"type":"raise_hand","zz":1}"#).error.code, ErrorCode::UnknownField);
    }

    #[test]
    fn fieldless_list_matches_the_schema() {
        let schema = serde_json::to_value(schemars::schema_for!(Command)).unwrap();
        let mut fieldless: Vec<String> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["properties"].as_object().is_some_and(|p| p.len() == 1))
            .map(|v| v["properties"]["type"]["const"].as_str().unwrap().to_string())
            .collect();
        fieldless.sort();
        let mut listed: Vec<String> = Command::FIELDLESS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(fieldless, listed);
    }

    #[test]
    fn duplicate_keys_are_refused_not_last_wins() {
        let r = ClientMessage::parse(r#"{"type":"ping","type":"raise_hand"}"#).unwrap_err();
        assert_eq!(r.error.code, ErrorCode::InvalidMessage);
        assert!(r.error.message.contains("duplicate key `type`"), "{}", r.error.message);
        let r = ClientMessage::parse(r#"{"type":"chat","text":"a","text":"b"}"#).unwrap_err();
        assert_eq!(r.error.code, ErrorCode::InvalidMessage);
        // Positive control: the same keys once each parse.
        assert!(ClientMessage::parse(r#"{"type":"chat","text":"a"}"#).is_ok());
    }

    #[test]
    fn validation_errors_echo_a_readable_id() {
        let r = ClientMessage::parse(r#"{"type":"dance","id":"a1"}"#).unwrap_err();
        assert_eq!((r.error.code, r.id.as_deref()), (ErrorCode::UnknownType, Some("a1")));
        let r = ClientMessage::parse(r#"{"type":"join","colour":"red","id":"a2"}"#).unwrap_err();
        assert_eq!((r.error.code, r.id.as_deref()), (ErrorCode::UnknownField, Some("a2")));
        let r = ClientMessage::parse(r#"{"type":"set_muted","id":"a3"}"#).unwrap_err();
        assert_eq!((r.error.code, r.id.as_deref()), (ErrorCode::InvalidMessage, Some("a3")));
        let r = ClientMessage::parse(r#"{"type":"set_muted","muted":"yes","id":"a4"}"#).unwrap_err();
        assert_eq!(
            (r.error.code, r.id.as_deref(), r.command_type),
            (ErrorCode::InvalidMessage, Some("a4"), Some("set_muted"))
        );
        // An id that is not a valid id is not echoed.
        let r = ClientMessage::parse(r#"{"type":"ping","id":5}"#).unwrap_err();
        assert_eq!(r.id, None);
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
