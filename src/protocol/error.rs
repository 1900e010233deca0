//! Stable error codes of the signaling protocol.
//!
//! A code, once shipped, never changes meaning: clients branch on it. The human message may change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every refusal the signaling protocol can send, as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame was not valid JSON.
    InvalidJson,
    /// The frame was JSON but not a known message (unknown `type`, missing `type`).
    UnknownType,
    /// The message had a field the protocol does not define.
    UnknownField,
    /// The message had the right type but a missing or ill-typed field.
    InvalidMessage,
    /// The frame exceeded the message size limit.
    MessageTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// The client sent too many messages too quickly.
    RateLimited,
    /// `join` or `resume` on a connection that already joined.
    AlreadyJoined,
    /// A command before `join` (or `resume`).
    NotJoined,
    /// The display name breaks a naming rule; `message` says which.
    InvalidName,
    /// Someone in the meeting already uses a name that looks the same; see `suggestion`.
    NameTaken,
    /// The sender's role may not do this.
    Forbidden,
    /// The sender is still in the waiting room.
    NotAdmitted,
    /// The named participant is not in the meeting (left, never there, stale id).
    ParticipantNotFound,
    /// The meeting is locked against new joins.
    MeetingLocked,
    /// The meeting has reached its capacity.
    MeetingFull,
    /// The meeting has ended.
    MeetingEnded,
    /// This member was banned from this meeting.
    Banned,
    /// Chat is switched off in this meeting, or the sender's role cannot chat.
    ChatDisabled,
    /// The chat message is empty or too long.
    InvalidChat,
    /// The chat message does not exist (or was already deleted).
    ChatNotFound,
    /// Observers cannot speak, raise a hand or unmute.
    ObserverCannotSpeak,
    /// The hand is already raised.
    HandAlreadyRaised,
    /// A facilitator has paused raised hands (`update_settings` with `hands: false`); a hand
    /// already up can still be lowered.
    HandsPaused,
    /// The hand is not raised.
    HandNotRaised,
    /// `next_speaker` with nobody in the queue.
    QueueEmpty,
    /// The sender does not hold the floor.
    NotFloorHolder,
    /// No share is running (nothing to extend or yield).
    NoShareRunning,
    /// A facilitator muted this participant; only a facilitator can allow unmuting.
    MuteLocked,
    /// In a floor-controlled meeting only the floor holder and facilitators may unmute.
    FloorRequired,
    /// A go-around is already running.
    GoAroundActive,
    /// No go-around is running.
    NoGoAround,
    /// A go-around needs at least one member present.
    NobodyPresent,
    /// The change would leave the meeting without a facilitator.
    LastFacilitator,
    /// The support request does not exist or was already acknowledged.
    SupportRequestNotFound,
    /// The resume token is unknown, used, expired or for another meeting.
    InvalidResumeToken,
    /// A setting value is out of range.
    InvalidSettings,
    /// The value given is already in effect (mute an already muted participant's lock, lock a locked meeting).
    NoChange,
    /// No certificate: the meeting has not ended, or the attendance was not credited.
    CertificateUnavailable,
    /// The SDP or ICE candidate could not be used; `message` says why.
    InvalidMedia,
    /// The server is shutting down or overloaded; try again shortly.
    Unavailable,
    /// The server's storage is far behind (its database is unreachable): no new participants for
    /// now; everyone already in a meeting stays. Try again in a few minutes.
    StorageBacklog,
    /// The current segment of the meeting's format does not allow this (only facilitators speak
    /// in it, or hands are not raised in it); `message` says which.
    SegmentRules,
    /// The meeting has no format (no agenda to move through).
    NoFormat,
    /// There is no segment after the last (or before the first).
    NoSuchSegment,
    /// Leaving would take the main room's last facilitator away, pausing its floor and queue
    /// until one is back: send the command again with `confirm: true` to go anyway.
    ConfirmRequired,
    /// The named participant (or the sender) is in another room of the meeting (a side room or a
    /// breakout group) than the command needs.
    WrongLocation,
    /// The step-out invitation does not exist any more (answered, withdrawn, or never sent).
    InviteNotFound,
    /// `return_to_main` from someone already in the main room.
    NotInSideRoom,
    /// Breakout groups are already open.
    BreakoutsOpen,
    /// No breakout groups are open (or not ones members may choose).
    NoBreakouts,
    /// An unexpected server-side failure; nothing the client did.
    Internal,
}

impl ErrorCode {
    /// The snake_case code as it appears on the wire (used for metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotAdmitted => "not_admitted",
            ErrorCode::ParticipantNotFound => "participant_not_found",
            ErrorCode::MeetingLocked => "meeting_locked",
            ErrorCode::MeetingFull => "meeting_full",
            ErrorCode::MeetingEnded => "meeting_ended",
            ErrorCode::Banned => "banned",
            ErrorCode::ChatDisabled => "chat_disabled",
            ErrorCode::InvalidChat => "invalid_chat",
            ErrorCode::ChatNotFound => "chat_not_found",
            ErrorCode::ObserverCannotSpeak => "observer_cannot_speak",
            ErrorCode::HandAlreadyRaised => "hand_already_raised",
            ErrorCode::HandsPaused => "hands_paused",
            ErrorCode::HandNotRaised => "hand_not_raised",
            ErrorCode::QueueEmpty => "queue_empty",
            ErrorCode::NotFloorHolder => "not_floor_holder",
            ErrorCode::NoShareRunning => "no_share_running",
            ErrorCode::MuteLocked => "mute_locked",
            ErrorCode::FloorRequired => "floor_required",
            ErrorCode::GoAroundActive => "go_around_active",
            ErrorCode::NoGoAround => "no_go_around",
            ErrorCode::NobodyPresent => "nobody_present",
            ErrorCode::LastFacilitator => "last_facilitator",
            ErrorCode::SupportRequestNotFound => "support_request_not_found",
            ErrorCode::InvalidResumeToken => "invalid_resume_token",
            ErrorCode::InvalidSettings => "invalid_settings",
            ErrorCode::NoChange => "no_change",
            ErrorCode::CertificateUnavailable => "certificate_unavailable",
            ErrorCode::InvalidMedia => "invalid_media",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StorageBacklog => "storage_backlog",
            ErrorCode::SegmentRules => "segment_rules",
            ErrorCode::NoFormat => "no_format",
            ErrorCode::NoSuchSegment => "no_such_segment",
            ErrorCode::ConfirmRequired => "confirm_required",
            ErrorCode::WrongLocation => "wrong_location",
            ErrorCode::InviteNotFound => "invite_not_found",
            ErrorCode::NotInSideRoom => "not_in_side_room",
            ErrorCode::BreakoutsOpen => "breakouts_open",
            ErrorCode::NoBreakouts => "no_breakouts",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refusal: a stable code, a human message, and for `name_taken` a free name to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, in words a member can act on.
    pub message: String,
    /// For `name_taken`: a similar name that is free.
    pub suggestion: Option<String>,
}

impl ProtocolError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { code, message: message.into(), suggestion: None }
    }

    /// A join to a meeting that has ended (or was deleted). The room, the registry and the
    /// upgrade refuse with this one text.
    pub fn meeting_ended() -> Self {
        ProtocolError::new(ErrorCode::MeetingEnded, "the meeting has ended")
    }

    /// A join by a member banned from the meeting.
    pub fn banned() -> Self {
        ProtocolError::new(ErrorCode::Banned, "you cannot join this meeting")
    }

    /// A new participant while the server's journal is past its bound.
    pub fn storage_backlog() -> Self {
        ProtocolError::new(
            ErrorCode::StorageBacklog,
            "the server cannot take new participants right now; try again in a few minutes",
        )
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde_name_for_every_code() {
        // A drift between the wire name and the metrics label would split one error into two series.
        let schema = serde_json::to_value(schemars::schema_for!(ErrorCode)).unwrap();
        let names: Vec<String> = schema["oneOf"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s["const"].as_str().map(String::from)).collect())
            .or_else(|| {
                schema["enum"].as_array().map(|v| v.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            })
            .unwrap();
        assert!(names.len() > 30);
        for name in names {
            let code: ErrorCode = serde_json::from_value(serde_json::Value::String(name.clone())).unwrap();
            assert_eq!(code.as_str(), name);
        }
    }
}
