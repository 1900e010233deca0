//! A room's state as a cluster keeps it, so that another node can take the meeting over after its
//! owner died or handed it on (drain).
//!
//! A snapshot holds everything the facilitator decided and everyone's place: seats (participant
//! ids, display names, roles, admission, mutes and mute locks, resume tokens), the lock, settings,
//! bans, the speaking queue in order, the floor and its timer, the go-around, open support requests,
//! the format's current segment with its overrides and timers, and the side rooms (who is in which,
//! each one's queue and floor, invitations, breakout groups).
//! What it leaves out is rebuilt: connections (everyone comes back by resume), chat rate buckets
//! (full again), media rules (recomputed), the ids of old chat messages (a deletion of a message sent
//! before the takeover is refused as unknown).
//!
//! It names members (`MemberKey`) and carries support-request text, so the cluster seals it before
//! it leaves the process (`cluster::seal`); the room core only turns it into data and back.

use super::participant::TokenBucket;
use super::{Effect, Floor, GoAround, Millis, Participant, Presence, Room, RoomLimits, Timer};
use crate::protocol::{MeetingSettings, ParticipantId, QueueEntry, Role, SupportView};
use serde::{Deserialize, Serialize};

/// The format written today; a node refuses a snapshot of a format it does not know.
pub const FORMAT: u32 = 1;

/// One seat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    pub id: ParticipantId,
    pub member: super::MemberKey,
    pub name: super::DisplayName,
    pub role: Role,
    pub admitted: bool,
    pub waiting_since: Millis,
    pub connected: bool,
    pub muted: bool,
    pub mute_locked: bool,
    pub resume_token: String,
    /// The room of the meeting they are in (side rooms, `side.rs`); absent means the main room.
    #[serde(default)]
    pub location: super::Location,
}

/// A room's state (see the module documentation for what is left out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub format: u32,
    pub id: String,
    pub title: String,
    pub settings: MeetingSettings,
    pub locked: bool,
    pub ended: bool,
    pub seats: Vec<Seat>,
    pub queue: Vec<QueueEntry>,
    pub(crate) floor: Option<Floor>,
    pub floor_epoch: u32,
    pub(crate) go_around: Option<GoAround>,
    pub banned: Vec<super::MemberKey>,
    pub next_chat_id: u64,
    pub support: Vec<SupportView>,
    pub next_support_id: u64,
    /// When it was taken (the owner's clock).
    pub taken_at: Millis,
    /// Written by an owner that handed the meeting on (drain): it already recorded everyone's
    /// disconnection, so the next owner must not record it again.
    pub handed_over: bool,
    /// Side rooms, their stages, open step-out invitations and breakout groups (absent: none).
    #[serde(default)]
    pub(crate) side: super::side::Side,
    /// The meeting's format and where it is (absent for a meeting without one, and in snapshots
    /// written before formats).
    #[serde(default)]
    pub(crate) agenda: Option<super::format::FormatState>,
}

impl Room {
    /// The state another node needs to carry on with this meeting.
    pub fn to_snapshot(&self, now: Millis) -> RoomSnapshot {
        RoomSnapshot {
            format: FORMAT,
            id: self.id.clone(),
            title: self.title.clone(),
            settings: self.settings.clone(),
            locked: self.locked,
            ended: self.ended,
            seats: self
                .participants
                .iter()
                .map(|p| Seat {
                    id: p.id,
                    member: p.member.clone(),
                    name: p.name.clone(),
                    role: p.role,
                    admitted: p.admitted,
                    waiting_since: p.waiting_since,
                    connected: p.connected,
                    muted: p.muted,
                    mute_locked: p.mute_locked,
                    resume_token: p.resume_token.clone(),
                    location: p.location,
                })
                .collect(),
            queue: self.queue.clone(),
            floor: self.floor.clone(),
            floor_epoch: self.floor_epoch,
            go_around: self.go_around.clone(),
            banned: self.banned.iter().cloned().collect(),
            next_chat_id: self.next_chat_id,
            support: self.support.clone(),
            next_support_id: self.next_support_id,
            taken_at: now,
            handed_over: false,
            side: self.side.clone(),
            agenda: self.format.clone(),
        }
    }

    /// A room carried on from a snapshot at `now`. Everyone starts disconnected, with a fresh
    /// grace period to come back by resume (their tokens still work). `gap_start` is when the
    /// previous owner was last known alive: for a crash (not a hand-over), everyone who was
    /// connected is recorded as disconnected then, so the outage is an interruption in their
    /// attendance that the credit policy bridges when it is short. Timers (grace, share) are set
    /// again; bans known to the store are added to the snapshot's.
    pub fn restore(
        snap: RoomSnapshot,
        limits: RoomLimits,
        more_bans: impl IntoIterator<Item = super::MemberKey>,
        gap_start: Millis,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Room {
        let grace = limits.grace_ms;
        let mut room = Room::new(snap.id, snap.title, snap.settings, limits, snap.banned.into_iter().chain(more_bans));
        room.locked = snap.locked;
        room.ended = snap.ended;
        room.queue = snap.queue;
        room.floor = snap.floor;
        room.floor_epoch = snap.floor_epoch;
        room.go_around = snap.go_around;
        room.next_chat_id = snap.next_chat_id;
        room.support = snap.support;
        room.next_support_id = snap.next_support_id;
        room.side = snap.side;
        room.format = snap.agenda;
        let gap_start = gap_start.min(now);
        for s in snap.seats {
            if s.connected && s.admitted && !snap.handed_over {
                out.push(Effect::Presence {
                    participant_id: s.id,
                    member: s.member.clone(),
                    change: Presence::Disconnected,
                    at: gap_start,
                });
            }
            // Epoch 1: the grace timer below is the only one this seat has on this node.
            out.push(Effect::SetTimer { at: now + grace, timer: Timer::Grace { participant_id: s.id, epoch: 1 } });
            room.participants.push(Participant {
                id: s.id,
                member: s.member,
                name: s.name,
                role: s.role,
                admitted: s.admitted,
                waiting_since: s.waiting_since,
                connected: false,
                grace_epoch: 1,
                muted: s.muted,
                mute_locked: s.mute_locked,
                resume_token: s.resume_token,
                chat_bucket: TokenBucket::full(room.limits.chat_burst, now),
                media: Default::default(),
                location: s.location,
                shown_away: None,
            });
        }
        if let Some(end) = room.floor.as_ref().and_then(|f| f.ends_at) {
            room.set_share_timers(end.max(now), now, out);
        }
        room.restore_side_timers(now, out);
        room.set_segment_timers(now, out);
        // Nobody is connected yet: no events, only the media rules (recomputed from the state).
        room.flush(out);
        out.retain(|e| !matches!(e, Effect::Send { .. }));
        room
    }

    /// Whether `other` holds the same decisions as this room (tests of the round trip).
    #[cfg(test)]
    pub(crate) fn same_state(&self, other: &Room) -> bool {
        let seats = |r: &Room| {
            r.participants
                .iter()
                .map(|p| {
                    (p.id, p.member.clone(), p.name.clone(), p.role, p.admitted, p.muted, p.mute_locked, p.location)
                })
                .collect::<Vec<_>>()
        };
        self.id == other.id
            && self.settings == other.settings
            && self.locked == other.locked
            && self.ended == other.ended
            && seats(self) == seats(other)
            && self.queue == other.queue
            && self.floor_holder() == other.floor_holder()
            && self.banned == other.banned
            && self.support == other.support
            && format!("{:?}", self.side) == format!("{:?}", other.side)
            && self.format.as_ref().map(|f| (f.current, f.started_at, &f.rules, &f.overrides, f.epoch))
                == other.format.as_ref().map(|f| (f.current, f.started_at, &f.rules, &f.overrides, f.epoch))
    }
}

/// A parse of stored bytes, refusing formats this node does not know.
pub fn decode(bytes: &[u8]) -> Result<RoomSnapshot, String> {
    let snap: RoomSnapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if snap.format != FORMAT {
        return Err(format!("snapshot format {} is not {FORMAT}", snap.format));
    }
    Ok(snap)
}

/// The bytes to store.
pub fn encode(snap: &RoomSnapshot) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    serde_json::to_vec(snap).unwrap_or_default()
}
