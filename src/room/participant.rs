//! One seat in a meeting: identity (private), name, role and the state the rules look at.

use super::names::DisplayName;
use super::Millis;
use crate::protocol::{ParticipantId, Role};

/// Who a participant is to their program. Never leaves the server except into that program's own
/// attendance records: no event, view or log line carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MemberKey {
    /// The program that signed the join token (`iss`).
    pub program: String,
    /// The program's reference for the member (`sub`).
    pub member_ref: String,
}

/// A small token bucket: `capacity` actions, one more every `refill_ms`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: u32,
    last: Millis,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: u32, now: Millis) -> Self {
        TokenBucket { tokens: capacity, last: now }
    }

    /// Whether an action may happen now (taking a token when it may).
    pub fn take(&mut self, capacity: u32, refill_ms: u64, now: Millis) -> bool {
        let refill_ms = refill_ms.max(1);
        let gained = now.saturating_sub(self.last) / refill_ms;
        if gained > 0 {
            self.tokens = (self.tokens as u64 + gained).min(capacity as u64) as u32;
            self.last += gained * refill_ms;
        }
        if self.tokens == capacity {
            self.last = now;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// A participant, waiting or admitted.
#[derive(Debug, Clone)]
pub struct Participant {
    pub id: ParticipantId,
    pub member: MemberKey,
    pub name: DisplayName,
    pub role: Role,
    /// False while in the waiting room.
    pub admitted: bool,
    pub waiting_since: Millis,
    /// False while the connection is down and the seat is held for the grace period.
    pub connected: bool,
    /// Bumped on every disconnect and resume, so a stale grace timer does nothing.
    pub grace_epoch: u32,
    pub muted: bool,
    /// Set by a facilitator's mute; only a facilitator's allow (or the floor) lifts it.
    pub mute_locked: bool,
    pub resume_token: String,
    pub chat_bucket: TokenBucket,
    /// The rule last sent to the media layer.
    pub media: super::MediaRule,
    /// Where they are: the main room (`MAIN`) or a side room's id (`side.rs`). Exactly one place.
    pub location: super::Location,
    /// What the other rooms were last shown of them while they are away (so a change inside a side
    /// room that the away view does not show sends nothing outside).
    pub shown_away: Option<crate::protocol::ParticipantView>,
}
