//! The room core: every rule of a meeting, sans-IO.
//!
//! `Room` is plain data plus [`Room::handle`]: an input and the time in, effects out. No tokio, no
//! sockets, no clock, no randomness it was not given. The room actor (`meeting::actor`) carries the
//! effects out. The rules are split by concern: `lobby` (joining, the waiting room, resume, leaving),
//! `controls` (facilitator controls, chat, support), `floor` (the speaking queue, the floor, timed
//! shares, go-arounds), `format` (the agenda: segments and their rules), `side` (side rooms and
//! breakout groups: where each participant is, and what each room sees), `names` (display names).
//!
//! Contract: when `handle` returns `Err`, the room is unchanged and no effect was pushed.

mod controls;
mod floor;
pub mod format;
mod lobby;
pub mod names;
pub mod participant;
mod side;
pub mod snapshot;
#[cfg(test)]
mod tests;

use crate::protocol::{
    Command, Event, FloorView, GoAroundView, LeaveReason, MeetingSettings, MeetingView, ParticipantId, ParticipantView,
    ProtocolError, QueueEntry, Role, SupportView, WaitingView,
};
pub use format::RuleOverrides;
pub use names::DisplayName;
pub use participant::{MemberKey, Participant};
pub use side::{Location, MAIN};
use std::collections::{HashSet, VecDeque};

/// Time in milliseconds since the Unix epoch, as the actor's clock says.
pub type Millis = u64;

/// Limits the room enforces (from configuration).
#[derive(Debug, Clone)]
pub struct RoomLimits {
    pub capacity: usize,
    pub grace_ms: u64,
    pub chat_max_chars: usize,
    pub chat_burst: u32,
    pub chat_refill_ms: u64,
    pub support_max_chars: usize,
    /// Each program's crisis resources (configuration), for its own members' `welcome`.
    pub crisis_resources: std::sync::Arc<std::collections::HashMap<String, Vec<crate::protocol::CrisisResource>>>,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            capacity: 50,
            grace_ms: 30_000,
            chat_max_chars: 2000,
            chat_burst: 5,
            chat_refill_ms: 2000,
            support_max_chars: 500,
            crisis_resources: Default::default(),
        }
    }
}

/// What the room is asked to do.
#[derive(Debug, Clone)]
pub enum Input {
    /// A new connection joins. The actor supplies the random id, resume token and pseudonym bits.
    Join {
        participant_id: ParticipantId,
        member: MemberKey,
        role: Role,
        display_name: Option<String>,
        resume_token: String,
        random: u64,
    },
    /// A new connection presents a resume token; `new_resume_token` replaces it (tokens work once).
    Resume { resume_token: String, new_resume_token: String },
    /// A command from a participant.
    Command { from: ParticipantId, command: Command },
    /// A participant's connection dropped; their seat is held for the grace period.
    Disconnected { participant_id: ParticipantId },
    /// A timer the room set came due.
    Timer(Timer),
    /// The server is stopping: everyone leaves with `server_shutdown`.
    Shutdown,
    /// The program ended (deleted) the meeting: everyone gets `meeting_ended`.
    End,
    /// The meeting has a format: its first segment starts now (the actor sends this once, first).
    StartFormat(std::sync::Arc<crate::protocol::FormatSpec>),
}

/// A deadline the room asked for. Each carries an epoch; a stale one does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Grace {
        participant_id: ParticipantId,
        epoch: u32,
    },
    ShareWarning {
        epoch: u32,
        location: Location,
    },
    ShareEnd {
        epoch: u32,
        location: Location,
    },
    SegmentWarning {
        epoch: u32,
    },
    SegmentEnd {
        epoch: u32,
    },
    /// The breakout groups' warning (`warning`) or end.
    Breakout {
        epoch: u32,
        warning: bool,
    },
}

/// Who an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    One(ParticipantId),
    /// Everyone admitted (not the waiting room).
    Admitted,
    AdmittedExcept(ParticipantId),
    /// Admitted facilitators and co-facilitators.
    Facilitators,
    /// Everyone admitted in this room of the meeting (the main room or a side room).
    Location(Location),
    /// Everyone admitted who is not in this room.
    Outside(Location),
}

/// A change of someone's presence, for the attendance ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Admitted,
    Disconnected,
    Resumed,
    Left(LeaveReason),
}

/// A facilitator action, for the meeting's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Millis,
    pub actor: ParticipantId,
    pub actor_name: String,
    pub action: &'static str,
    pub target: Option<ParticipantId>,
    pub target_name: Option<String>,
    pub detail: Option<String>,
}

/// What the actor must do.
// Effects live in one reused buffer per actor, so the size of the largest (a `welcome`) costs nothing per input.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: Audience,
        event: Event,
    },
    SetTimer {
        at: Millis,
        timer: Timer,
    },
    /// Close this participant's connection after the events already queued for it.
    Close {
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    Presence {
        participant_id: ParticipantId,
        member: MemberKey,
        change: Presence,
        at: Millis,
    },
    Audit(AuditEntry),
    /// The media layer's rule for this participant (what of theirs is forwarded, what they get).
    MediaRule {
        participant_id: ParticipantId,
        rule: MediaRule,
    },
    /// The participant is gone: the media layer releases everything of theirs.
    MediaClosed {
        participant_id: ParticipantId,
    },
    /// Persist a ban so it outlives this actor.
    Banned {
        member: MemberKey,
    },
    /// The meeting is over; the actor stops after delivering what is queued.
    Ended,
}

/// Whose video reaches whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoAudience {
    /// Not forwarded at all.
    #[default]
    Nobody,
    /// Forwarded to facilitators only (a camera-on check without exposing members to each other).
    Facilitators,
    Everyone,
}

/// The forwarding rule for one participant. The SFU applies it to every packet; the room is its
/// only source, so the facilitator's word holds whatever a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaRule {
    /// Their audio is forwarded (admitted, may speak, not muted).
    pub audio: bool,
    /// Who receives their video.
    pub video: VideoAudience,
    /// They receive the meeting's media (admitted: the waiting room hears nothing).
    pub receives: bool,
    /// They receive video meant for facilitators only.
    pub receives_private_video: bool,
    /// Their tracks are negotiated to others at all (admitted and not an observer). Muting does
    /// not change it, so a mute costs no renegotiation; whoever never publishes reveals nothing.
    pub publishes: bool,
    /// The room of the meeting they are in: media passes only between participants of the same
    /// room (compared per packet; moving costs no renegotiation).
    pub location: Location,
}

/// What a successful input means for the connection that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The connection now speaks for this participant (join, resume or a second join by the same member).
    Attached {
        participant_id: ParticipantId,
        resumed: bool,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Floor {
    pub holder: ParticipantId,
    pub started_at: Millis,
    pub ends_at: Option<Millis>,
    pub over_time: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct GoAround {
    pub order: Vec<ParticipantId>,
    pub pos: usize,
    pub passed: Vec<ParticipantId>,
}

#[derive(Debug, Default, Clone)]
struct Dirty {
    participants: Vec<ParticipantId>,
    queue: bool,
    floor: bool,
    waiting: bool,
    go_around: bool,
    meeting: bool,
}

/// The state of one meeting.
#[derive(Debug, Clone)]
pub struct Room {
    /// The meeting's key (see `MeetingRow::id`).
    id: String,
    /// The meeting's id as its program named it, which participants see (`MeetingView::id`).
    public_id: String,
    title: String,
    settings: MeetingSettings,
    limits: RoomLimits,
    locked: bool,
    ended: bool,
    participants: Vec<Participant>,
    queue: Vec<QueueEntry>,
    floor: Option<Floor>,
    floor_epoch: u32,
    go_around: Option<GoAround>,
    banned: HashSet<MemberKey>,
    chat_ids: VecDeque<u64>,
    next_chat_id: u64,
    support: Vec<SupportView>,
    next_support_id: u64,
    /// The meeting's format, when it has one.
    format: Option<format::FormatState>,
    dirty: Dirty,
    /// Side rooms and breakout groups (`side.rs`).
    side: side::Side,
    /// Counts successful inputs: the cluster writes a snapshot when it moved (see `snapshot`).
    version: Version,
}

/// A counter left out of `Debug`, so that comparing two rooms' `Debug` compares their state.
#[derive(Clone, Copy, Default)]
struct Version(u64);

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
}

/// How many recent chat message ids are kept for `delete_chat`.
const CHAT_IDS_KEPT: usize = 1000;

impl Room {
    /// A new, empty meeting. `banned` comes from the store (bans outlive the actor).
    pub fn new(
        id: String,
        title: String,
        settings: MeetingSettings,
        limits: RoomLimits,
        banned: impl IntoIterator<Item = MemberKey>,
    ) -> Room {
        Room {
            public_id: id.clone(),
            id,
            title,
            settings,
            limits,
            locked: false,
            ended: false,
            participants: Vec::new(),
            queue: Vec::new(),
            floor: None,
            floor_epoch: 0,
            go_around: None,
            banned: banned.into_iter().collect(),
            chat_ids: VecDeque::new(),
            next_chat_id: 1,
            support: Vec::new(),
            next_support_id: 1,
            format: None,
            dirty: Dirty::default(),
            side: side::Side::default(),
            version: Version(0),
        }
    }

    /// Applies one input at time `now`, pushing effects onto `out`.
    pub fn handle(&mut self, input: Input, now: Millis, out: &mut Vec<Effect>) -> Result<Outcome, ProtocolError> {
        let outcome = match input {
            Input::Join { participant_id, member, role, display_name, resume_token, random } => {
                self.join(participant_id, member, role, display_name, resume_token, random, now, out)?
            }
            Input::Resume { resume_token, new_resume_token } => {
                self.resume(&resume_token, new_resume_token, now, out)?
            }
            Input::Command { from, command } => {
                self.command(from, command, now, out)?;
                Outcome::Done
            }
            Input::Disconnected { participant_id } => {
                self.disconnected(participant_id, now, out);
                Outcome::Done
            }
            Input::Timer(timer) => {
                self.timer(timer, now, out);
                Outcome::Done
            }
            Input::Shutdown => {
                self.shutdown(now, out);
                Outcome::Done
            }
            Input::End => {
                if !self.ended {
                    self.end(now, out);
                }
                Outcome::Done
            }
            Input::StartFormat(spec) => {
                self.start_format(spec, now, out);
                Outcome::Done
            }
        };
        self.tidy_side(now, out);
        self.flush(out);
        self.version.0 += 1;
        Ok(outcome)
    }

    fn command(
        &mut self,
        from: ParticipantId,
        command: Command,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        use crate::protocol::ErrorCode as C;
        let actor = self.get(from).ok_or_else(|| ProtocolError::new(C::NotJoined, "you are not in this meeting"))?;
        if self.ended {
            return Err(ProtocolError::meeting_ended());
        }
        if command.is_facilitator_only() && !actor.role.is_facilitator() {
            return Err(ProtocolError::new(C::Forbidden, "only a facilitator can do that"));
        }
        if !actor.admitted && !matches!(command, Command::Leave) {
            return Err(ProtocolError::new(
                C::NotAdmitted,
                "you are in the waiting room; a facilitator will let you in",
            ));
        }
        self.check_location(from, &command)?;
        if side::is_local(&command) {
            // The speaking queue, the floor and chat are the sender's room's own.
            let here = actor.location;
            return self.in_location(here, out, |room, out| room.run_command(from, command, now, out));
        }
        self.run_command(from, command, now, out)
    }

    fn run_command(
        &mut self,
        from: ParticipantId,
        command: Command,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        use crate::protocol::ErrorCode as C;
        match command {
            Command::Join { .. } | Command::Resume { .. } => {
                Err(ProtocolError::new(C::AlreadyJoined, "this connection has already joined"))
            }
            // The actor answers `ping` itself; it never reaches the room.
            Command::Ping => Ok(()),
            Command::Leave => {
                self.remove_participant(from, LeaveReason::Left, now, out);
                Ok(())
            }
            Command::RaiseHand => self.raise_hand(from, now),
            Command::LowerHand { participant_id } => self.lower_hand(from, participant_id, now, out),
            Command::YieldFloor => self.yield_floor(from, now, out),
            Command::Pass => self.pass(from, now, out),
            Command::SetMuted { muted } => self.set_muted(from, muted),
            Command::Chat { text } => self.chat(from, text, now, out),
            Command::SupportRequest { text } => self.support_request(from, text, now, out),
            Command::Admit { participant_id } => self.admit(from, participant_id, now, out),
            Command::AdmitAll => self.admit_all(from, now, out),
            Command::Deny { participant_id, message } => self.deny(from, participant_id, message, now, out),
            Command::Mute { participant_id } => self.mute(from, participant_id, now, out),
            Command::MuteAll => self.mute_all(from, now, out),
            Command::AllowUnmute { participant_id } => self.allow_unmute(from, participant_id, now, out),
            Command::Remove { participant_id, reason } => self.remove(from, participant_id, reason, false, now, out),
            Command::Ban { participant_id, reason } => self.remove(from, participant_id, reason, true, now, out),
            Command::Rename { participant_id, display_name } => {
                self.rename(from, participant_id, &display_name, now, out)
            }
            Command::Lock => self.set_locked(from, true, now, out),
            Command::Unlock => self.set_locked(from, false, now, out),
            Command::SetChat { enabled } => self.set_chat(from, enabled, now, out),
            Command::DeleteChat { message_id } => self.delete_chat(from, message_id, now, out),
            Command::EndMeeting => {
                self.end_meeting(from, now, out);
                Ok(())
            }
            Command::UpdateSettings {
                waiting_room,
                floor_control,
                share_seconds,
                share_warning_seconds,
                share_end,
                video,
                hands,
            } => {
                let mut s = self.settings.clone();
                if let Some(v) = waiting_room {
                    s.waiting_room = v;
                }
                if let Some(v) = floor_control {
                    s.floor_control = v;
                }
                if let Some(v) = share_seconds {
                    s.share_seconds = (v > 0).then_some(v);
                }
                if let Some(v) = share_warning_seconds {
                    s.share_warning_seconds = v;
                }
                if let Some(v) = share_end {
                    s.share_end = v;
                }
                if let Some(v) = video {
                    s.video = v;
                }
                if let Some(v) = hands {
                    s.hands = v;
                }
                self.update_settings(from, s, now, out)
            }
            Command::Promote { participant_id, role } => self.promote(from, participant_id, role, now, out),
            Command::AckSupport { request_id } => self.ack_support(from, request_id, now, out),
            Command::NextSpeaker => self.next_speaker(from, now, out),
            Command::GiveFloor { participant_id } => self.give_floor_command(from, participant_id, now, out),
            Command::ExtendShare { seconds } => self.extend_share(from, seconds, now, out),
            Command::MoveHand { participant_id, position } => self.move_hand(from, participant_id, position, now, out),
            Command::StartGoAround => self.start_go_around(from, now, out),
            Command::EndGoAround => self.end_go_around(from, now, out),
            Command::NextSegment => self.move_segment(from, true, now, out),
            Command::PreviousSegment => self.move_segment(from, false, now, out),
            // Media signaling goes from the actor to the SFU and never reaches the rules.
            Command::MediaOffer { .. } | Command::MediaAnswer { .. } | Command::IceCandidate { .. } => {
                Err(ProtocolError::new(C::Internal, "media signaling is handled by the media layer"))
            }
            // Answered by the connection from the store; a live meeting has no final record yet.
            Command::CertificateRequest => {
                Err(ProtocolError::new(C::CertificateUnavailable, "certificates are available after the meeting ends"))
            }
            Command::StepOut { participant_id, confirm } => self.step_out(from, participant_id, confirm, out),
            Command::AnswerStepOut { invite_id, accept, confirm } => {
                self.answer_step_out(from, invite_id, accept, confirm, now, out)
            }
            Command::ReturnToMain => self.return_to_main(from, now, out),
            Command::OpenBreakouts { groups, seconds, warning_seconds, assign, assignments, confirm } => {
                let plan = side::BreakoutPlan { groups, seconds, warning_seconds, assign, assignments, confirm };
                self.open_breakouts(from, plan, now, out)
            }
            Command::ChooseBreakout { group, confirm } => self.choose_breakout(from, group, confirm, now, out),
            Command::CloseBreakouts => self.close_breakouts(from, now, out),
        }
    }

    fn timer(&mut self, timer: Timer, now: Millis, out: &mut Vec<Effect>) {
        match timer {
            Timer::Grace { participant_id, epoch } => {
                let expired = self.get(participant_id).is_some_and(|p| !p.connected && p.grace_epoch == epoch);
                if expired {
                    self.remove_participant(participant_id, LeaveReason::ConnectionLost, now, out);
                }
            }
            Timer::ShareWarning { epoch, location } if self.location_exists(location) => {
                self.in_location(location, out, |room, out| room.share_warning(epoch, now, out))
            }
            Timer::ShareEnd { epoch, location } if self.location_exists(location) => {
                self.in_location(location, out, |room, out| room.share_end(epoch, now, out))
            }
            Timer::ShareWarning { .. } | Timer::ShareEnd { .. } => {}
            Timer::SegmentWarning { epoch } => self.segment_timer(false, epoch, now, out),
            Timer::SegmentEnd { epoch } => self.segment_timer(true, epoch, now, out),
            Timer::Breakout { epoch, warning } => self.breakout_timer(epoch, warning, now, out),
        }
    }

    // ---- queries ----

    /// The meeting's key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets the id participants see (the program's id for the meeting; the key until then).
    pub fn set_public_id(&mut self, id: String) {
        self.public_id = id;
    }

    /// Moves on every successful input (a snapshot is due when it moved).
    pub fn version(&self) -> u64 {
        self.version.0
    }

    /// Whether the meeting has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether nobody is in the meeting (nor in the waiting room, nor in a grace period).
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// How many seats are taken (waiting and held seats included).
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// The participants, waiting and admitted.
    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    /// The current settings.
    pub fn settings(&self) -> &MeetingSettings {
        &self.settings
    }

    /// Whether new joins are refused.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The speaking queue, head first.
    pub fn queue(&self) -> &[QueueEntry] {
        &self.queue
    }

    /// Who holds the floor.
    pub fn floor_holder(&self) -> Option<ParticipantId> {
        self.floor.as_ref().map(|f| f.holder)
    }

    /// Why a join by this member in this role would be refused now, if it would.
    pub fn join_refusal(&self, member: &MemberKey, role: Role) -> Option<ProtocolError> {
        use crate::protocol::ErrorCode as C;
        if self.ended {
            return Some(ProtocolError::meeting_ended());
        }
        if self.banned.contains(member) {
            return Some(ProtocolError::banned());
        }
        if self.participants.iter().any(|p| &p.member == member) {
            return None; // a second join by the same member takes over their seat
        }
        if self.locked && !role.is_facilitator() {
            return Some(ProtocolError::new(C::MeetingLocked, "the meeting is locked; ask the facilitator"));
        }
        if self.participants.len() >= self.limits.capacity {
            return Some(ProtocolError::new(C::MeetingFull, "the meeting is full"));
        }
        None
    }

    pub(crate) fn get(&self, id: ParticipantId) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.id == id)
    }

    /// Whether the floor rule decides who speaks in `loc`. Floor control is the main room's: a
    /// step-out is a private conversation with a facilitator (a member asking for help must not
    /// wait to be given the floor), and a breakout group may have no facilitator to give it, so in
    /// a side room anyone unmuted is heard and its queue and shares keep order only, as in a
    /// meeting without floor control.
    pub(crate) fn floor_gates(&self, loc: Location) -> bool {
        self.settings.floor_control && loc == MAIN
    }

    /// Whether this participant's role and the floor rule (of the room they are in) let them speak at all.
    fn may_speak(&self, p: &Participant) -> bool {
        p.admitted
            && p.role != Role::Observer
            && (!self.floor_gates(p.location)
                || p.role.is_facilitator()
                || self.stage(p.location).floor.map(|f| f.holder) == Some(p.id))
    }

    /// The forwarding rule that follows from the participant's role, state and the settings.
    pub(crate) fn media_rule(&self, p: &Participant) -> MediaRule {
        use crate::protocol::VideoPolicy;
        if !p.admitted {
            return MediaRule::default();
        }
        let fac = p.role.is_facilitator();
        let video = match (p.role, self.settings.video) {
            (Role::Observer, _) => VideoAudience::Nobody,
            _ if fac => VideoAudience::Everyone,
            (_, VideoPolicy::FacilitatorsOnly) => VideoAudience::Nobody,
            (_, VideoPolicy::MembersToFacilitators) => VideoAudience::Facilitators,
            (_, VideoPolicy::Everyone) => VideoAudience::Everyone,
        };
        MediaRule {
            audio: self.may_speak(p) && !p.muted,
            video,
            receives: true,
            receives_private_video: fac,
            publishes: p.role != Role::Observer,
            location: p.location,
        }
    }

    fn view(&self, p: &Participant) -> ParticipantView {
        ParticipantView {
            participant_id: p.id,
            display_name: p.name.as_str().to_string(),
            role: p.role,
            muted: p.muted,
            can_unmute: self.may_speak(p) && !p.mute_locked,
            connected: p.connected,
            away: false,
        }
    }

    fn meeting_view(&self) -> MeetingView {
        MeetingView {
            id: self.public_id.clone(),
            title: self.title.clone(),
            locked: self.locked,
            settings: self.settings.clone(),
            main_room_paused: self.side.paused,
        }
    }

    /// The floor of the room whose stage is swapped in (see `side::in_location`).
    fn floor_view(&self) -> Option<FloorView> {
        self.floor_view_at(self.side.here)
    }

    fn floor_view_at(&self, loc: Location) -> Option<FloorView> {
        self.stage(loc).floor.map(|f| FloorView {
            participant_id: f.holder,
            started_at: f.started_at,
            ends_at: f.ends_at,
            over_time: f.over_time,
        })
    }

    fn go_around_view(&self) -> Option<GoAroundView> {
        self.go_around_view_at(self.side.here)
    }

    fn go_around_view_at(&self, loc: Location) -> Option<GoAroundView> {
        self.stage(loc).go_around.map(|g| GoAroundView {
            active: true,
            order: g.order.clone(),
            current: g.order.get(g.pos).copied(),
            passed: g.passed.clone(),
        })
    }

    fn waiting_views(&self) -> Vec<WaitingView> {
        self.participants
            .iter()
            .filter(|p| !p.admitted)
            .map(|p| WaitingView {
                participant_id: p.id,
                display_name: p.name.as_str().to_string(),
                since: p.waiting_since,
            })
            .collect()
    }

    /// What a (re)connecting participant is shown: `welcome` when admitted, `waiting` otherwise.
    pub fn snapshot(&self, id: ParticipantId) -> Option<Event> {
        let p = self.get(id)?;
        if !p.admitted {
            return Some(Event::Waiting {
                participant_id: p.id,
                display_name: p.name.as_str().to_string(),
                resume_token: p.resume_token.clone(),
                meeting_title: self.title.clone(),
            });
        }
        let fac = p.role.is_facilitator();
        let here = p.location;
        Some(Event::Welcome {
            participant_id: p.id,
            role: p.role,
            display_name: p.name.as_str().to_string(),
            resume_token: p.resume_token.clone(),
            meeting: self.meeting_view(),
            participants: self.views_from(here),
            queue: self.stage(here).queue.to_vec(),
            floor: self.floor_view_at(here),
            go_around: self.go_around_view_at(here),
            waiting: if fac { self.waiting_views() } else { Vec::new() },
            support_requests: if fac { self.support.clone() } else { Vec::new() },
            crisis_resources: self.limits.crisis_resources.get(&p.member.program).cloned().unwrap_or_default(),
            location: self.location_view(here),
            breakouts: self.breakouts_view(),
            agenda: self.agenda_view(),
        })
    }

    fn touch(&mut self, id: ParticipantId) {
        if !self.dirty.participants.contains(&id) {
            self.dirty.participants.push(id);
        }
    }

    /// Emits the state-change events and media rules that the mutations of this input call for.
    fn flush(&mut self, out: &mut Vec<Effect>) {
        self.flush_side(out);
        self.flush_stage(out);
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.meeting {
            out.push(Effect::Send {
                to: Audience::Admitted,
                event: Event::MeetingUpdated { meeting: self.meeting_view() },
            });
        }
        if dirty.waiting {
            out.push(Effect::Send {
                to: Audience::Facilitators,
                event: Event::WaitingList { waiting: self.waiting_views() },
            });
        }
        for id in dirty.participants {
            self.send_participant(id, out);
        }
        // Media rules: recomputed for everyone (at most the meeting's capacity), sent when changed.
        for i in 0..self.participants.len() {
            let p = &self.participants[i];
            let rule = self.media_rule(p);
            if rule != p.media {
                let participant_id = p.id;
                self.participants[i].media = rule;
                out.push(Effect::MediaRule { participant_id, rule });
            }
        }
    }

    /// The stage events (queue, floor, go-around) of the room whose stage is swapped in, to that
    /// room only.
    fn flush_stage(&mut self, out: &mut Vec<Effect>) {
        let to = Audience::Location(self.side.here);
        if std::mem::take(&mut self.dirty.floor) {
            out.push(Effect::Send { to, event: Event::FloorChanged { floor: self.floor_view() } });
        }
        if std::mem::take(&mut self.dirty.queue) {
            out.push(Effect::Send { to, event: Event::QueueUpdated { queue: self.queue.clone() } });
        }
        if std::mem::take(&mut self.dirty.go_around) {
            let go_around = self.go_around_view().unwrap_or(GoAroundView {
                active: false,
                order: Vec::new(),
                current: None,
                passed: Vec::new(),
            });
            out.push(Effect::Send { to, event: Event::GoAround { go_around } });
        }
    }

    fn audit(
        &self,
        at: Millis,
        actor: ParticipantId,
        action: &'static str,
        target: Option<ParticipantId>,
        detail: Option<String>,
    ) -> Effect {
        Effect::Audit(AuditEntry {
            at,
            actor,
            actor_name: self.get(actor).map(|p| p.name.as_str().to_string()).unwrap_or_default(),
            action,
            target,
            target_name: target.and_then(|t| self.get(t)).map(|p| p.name.as_str().to_string()),
            detail,
        })
    }
}
