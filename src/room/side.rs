//! Side rooms: a facilitator steps out with one member, and breakout groups.
//!
//! Every participant is in exactly one room of the meeting, their `location`: the main room
//! (`MAIN`) or a side room (a step-out or a breakout group). Each room has its own stage (speaking
//! queue, floor, go-around). The main room's stage is `Room`'s own fields; a side room's lives in
//! its `SideRoom`. The rules of `floor.rs` and `controls.rs` work on "the" stage: [`Room::in_location`]
//! swaps a side room's stage in while they run for it, and narrows what they address to everyone
//! (`Audience::Admitted`) to that room. Views follow the same split: someone in another side room
//! is shown as `away` and nothing more (`away_view`), and a side room's events reach only its
//! occupants. Media follows `MediaRule::location`.
//!
//! The main room's rules follow people: mutes, bans, roles and observers are the participant's,
//! whichever room they are in. Presence is the meeting's: moving between rooms records nothing for
//! attendance, so time in a side room counts as time in the meeting. The audit log records side
//! rooms opened and closed (who, when), never what was said.

use super::lobby::not_found;
use super::{Audience, Effect, Floor, GoAround, Millis, Participant, Room, Timer};
use crate::protocol::{
    BreakoutAssign, BreakoutGroupView, BreakoutsView, Command, ErrorCode as C, Event, LocationKind, LocationView,
    ParticipantId, ParticipantView, ProtocolError, QueueEntry, ShareEndReason,
};
use serde::{Deserialize, Serialize};

/// A room of the meeting: `MAIN`, or a side room's id (never reused within a meeting).
pub type Location = u32;
/// The main room.
pub const MAIN: Location = 0;

/// Most breakout groups at once.
const MAX_GROUPS: u32 = 20;
/// Longest a breakout may last (four hours).
const MAX_BREAKOUT_SECONDS: u32 = 14_400;
/// The warning before breakout groups close, unless the facilitator chose another.
const DEFAULT_BREAKOUT_WARNING_SECONDS: u32 = 60;

/// A side room's queue, floor and go-around (the main room's are `Room`'s own fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Stage {
    queue: Vec<QueueEntry>,
    floor: Option<Floor>,
    floor_epoch: u32,
    go_around: Option<GoAround>,
}

/// A room's stage as it stands, wherever it is swapped to.
pub(crate) struct StageRef<'a> {
    pub queue: &'a [QueueEntry],
    pub floor: Option<&'a Floor>,
    pub go_around: Option<&'a GoAround>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// A facilitator and a member (`member`), and any facilitator brought in; started from `from`
    /// (the main room, or the breakout group the two were in).
    StepOut {
        member: ParticipantId,
        #[serde(default)]
        from: Location,
    },
    /// Breakout group number `group` (from 1).
    Breakout { group: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SideRoom {
    pub id: Location,
    pub kind: Kind,
    opened_by: ParticipantId,
    stage: Stage,
    /// A step-out's occupants and the room each came from (a breakout group; the main room when
    /// absent): where they go back to while that room is open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    came_from: Vec<(ParticipantId, Location)>,
}

/// An open step-out invitation: `room` none for a new step-out, else the step-out `to` is asked into.
/// `at` is where `to` was asked (for a new step-out, where both are): the main room or a breakout
/// group. It holds while `to` (and for a new step-out the facilitator) is still there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Invite {
    pub id: u64,
    from: ParticipantId,
    pub to: ParticipantId,
    room: Option<Location>,
    #[serde(default)]
    at: Location,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Breakout {
    ends_at: Millis,
    /// When the warning goes out, if one does.
    warn_at: Option<Millis>,
    epoch: u32,
    assign: BreakoutAssign,
    opened_by: ParticipantId,
}

/// What `open_breakouts` asked for.
pub(crate) struct BreakoutPlan {
    pub groups: u32,
    pub seconds: u32,
    pub warning_seconds: Option<u32>,
    pub assign: BreakoutAssign,
    pub assignments: Vec<Vec<ParticipantId>>,
    pub confirm: bool,
}

/// The side rooms of a meeting. Part of the room's snapshot (cluster): what is marked `skip` lives
/// only within one input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Side {
    pub rooms: Vec<SideRoom>,
    pub invites: Vec<Invite>,
    breakout: Option<Breakout>,
    breakout_epoch: u32,
    last_room: Location,
    last_invite: u64,
    /// The room whose stage is in `Room`'s fields right now (`MAIN` outside `in_location`).
    #[serde(skip)]
    pub here: Location,
    /// Every facilitator is in a side room: the main room's floor and queue wait.
    pub paused: bool,
    /// Moved during this input: each gets a fresh view of where they are.
    #[serde(skip)]
    moved: Vec<ParticipantId>,
    /// Side rooms whose occupants changed during this input: their occupants get a fresh view.
    #[serde(skip)]
    changed: Vec<Location>,
    #[serde(skip)]
    breakouts_dirty: bool,
}

/// Commands that act on the sender's room's stage (or its chat): they run in that room.
pub(super) fn is_local(command: &Command) -> bool {
    matches!(
        command,
        Command::RaiseHand
            | Command::LowerHand { .. }
            | Command::YieldFloor
            | Command::Pass
            | Command::SetMuted { .. }
            | Command::Chat { .. }
            | Command::DeleteChat { .. }
            | Command::NextSpeaker
            | Command::GiveFloor { .. }
            | Command::ExtendShare { .. }
            | Command::MoveHand { .. }
            | Command::StartGoAround
            | Command::EndGoAround
    )
}

/// Events that belong to one room (its stage and its chat), never to the whole meeting.
fn is_local_event(event: &Event) -> bool {
    matches!(
        event,
        Event::Chat { .. }
            | Event::ChatDeleted { .. }
            | Event::QueueUpdated { .. }
            | Event::FloorChanged { .. }
            | Event::ShareWarning { .. }
            | Event::ShareEnded { .. }
            | Event::GoAround { .. }
    )
}

/// What rules addressed to everyone admitted that belongs to one room goes to `loc` only.
fn narrow(effects: &mut [Effect], loc: Location) {
    for e in effects {
        if let Effect::Send { to, event } = e {
            if *to == Audience::Admitted && is_local_event(event) {
                *to = Audience::Location(loc);
            }
        }
    }
}

fn wrong_location(message: &'static str) -> ProtocolError {
    ProtocolError::new(C::WrongLocation, message)
}

fn confirm_required() -> ProtocolError {
    ProtocolError::new(
        C::ConfirmRequired,
        "you are the only facilitator in the main room: its floor and queue will pause until a facilitator \
         is back; send again with confirm to go",
    )
}

impl Room {
    // ---- where people are ----

    /// Whether `loc` is the main room or an open side room.
    pub(crate) fn location_exists(&self, loc: Location) -> bool {
        loc == MAIN || self.side.rooms.iter().any(|r| r.id == loc)
    }

    fn side_room(&self, loc: Location) -> Option<&SideRoom> {
        self.side.rooms.iter().find(|r| r.id == loc)
    }

    /// Whether `loc` is an open breakout group.
    fn is_breakout(&self, loc: Location) -> bool {
        self.side_room(loc).is_some_and(|r| matches!(r.kind, Kind::Breakout { .. }))
    }

    /// Where `id`, in `loc`, goes on leaving it: from a step-out, back to the breakout group they
    /// came from while it is open; otherwise (and from a breakout group) the main room.
    fn way_back(&self, id: ParticipantId, loc: Location) -> Location {
        let came_from = self.side_room(loc).and_then(|r| r.came_from.iter().find(|(p, _)| *p == id)).map(|&(_, l)| l);
        match came_from {
            Some(l) if self.is_breakout(l) => l,
            _ => MAIN,
        }
    }

    /// Admitted participants in `loc`.
    pub(crate) fn occupants(&self, loc: Location) -> impl Iterator<Item = &Participant> {
        self.participants.iter().filter(move |p| p.admitted && p.location == loc)
    }

    /// The stage of `loc`, wherever it is swapped to.
    pub(crate) fn stage(&self, loc: Location) -> StageRef<'_> {
        let here = self.side.here;
        let swapped = if loc == here {
            None
        } else if loc == MAIN {
            // The main room's stage sits in the side room that is swapped in.
            self.side_room(here).map(|r| &r.stage)
        } else {
            self.side_room(loc).map(|r| &r.stage)
        };
        match swapped {
            Some(s) => StageRef { queue: &s.queue, floor: s.floor.as_ref(), go_around: s.go_around.as_ref() },
            None if loc == here => {
                StageRef { queue: &self.queue, floor: self.floor.as_ref(), go_around: self.go_around.as_ref() }
            }
            None => StageRef { queue: &[], floor: None, go_around: None },
        }
    }

    /// Exchanges `loc`'s stage with `Room`'s stage fields (a second call undoes it).
    fn swap_stage(&mut self, loc: Location) {
        if loc == MAIN {
            return;
        }
        let Some(r) = self.side.rooms.iter_mut().find(|r| r.id == loc) else { return };
        std::mem::swap(&mut self.queue, &mut r.stage.queue);
        std::mem::swap(&mut self.floor, &mut r.stage.floor);
        std::mem::swap(&mut self.floor_epoch, &mut r.stage.floor_epoch);
        std::mem::swap(&mut self.go_around, &mut r.stage.go_around);
    }

    /// Runs `f` with `loc`'s stage in `Room`'s stage fields: the floor rules then act on that
    /// room, its stage events go to its occupants, and what `f` addresses to everyone admitted
    /// that belongs to a room (chat, queue, floor) is narrowed to `loc`. `loc` must exist.
    pub(crate) fn in_location<R>(
        &mut self,
        loc: Location,
        out: &mut Vec<Effect>,
        f: impl FnOnce(&mut Room, &mut Vec<Effect>) -> R,
    ) -> R {
        let prev = self.side.here;
        let start = out.len();
        if loc == prev {
            // The stage in place already: its changes are flushed with the rest of the input.
            let r = f(self, out);
            narrow(&mut out[start..], loc);
            return r;
        }
        // Stage changes already marked belong to `prev`'s stage: kept aside, restored after.
        let marked = (
            std::mem::take(&mut self.dirty.queue),
            std::mem::take(&mut self.dirty.floor),
            std::mem::take(&mut self.dirty.go_around),
        );
        self.swap_stage(prev);
        self.swap_stage(loc);
        self.side.here = loc;
        let r = f(self, out);
        self.flush_stage(out);
        narrow(&mut out[start..], loc);
        self.swap_stage(loc);
        self.swap_stage(prev);
        self.side.here = prev;
        (self.dirty.queue, self.dirty.floor, self.dirty.go_around) = marked;
        r
    }

    /// Takes `id` out of the queue, floor and go-around of the room they are in.
    pub(super) fn leave_stage(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        let Some(loc) = self.get(id).map(|p| p.location) else { return };
        if !self.location_exists(loc) {
            return;
        }
        self.in_location(loc, out, |room, out| {
            if room.queue.iter().any(|q| q.participant_id == id) {
                room.queue.retain(|q| q.participant_id != id);
                room.dirty.queue = true;
            }
            let held_floor = room.floor_holder() == Some(id);
            if held_floor {
                room.end_share(ShareEndReason::Left, now, out);
            }
            room.drop_from_go_around(id, held_floor, now, out);
        });
    }

    /// Moves `id` to `to` (which exists): out of their room's stage, into the other; both rooms'
    /// occupants and the mover get fresh views at the flush.
    fn move_to(&mut self, id: ParticipantId, to: Location, now: Millis, out: &mut Vec<Effect>) {
        let Some(from) = self.get(id).map(|p| p.location) else { return };
        if from == to {
            return;
        }
        self.leave_stage(id, now, out);
        if let Some(r) = self.side.rooms.iter_mut().find(|r| r.id == from) {
            r.came_from.retain(|(p, _)| *p != id);
        }
        if let Some(p) = self.get_mut(id) {
            p.location = to;
            p.shown_away = None;
        }
        // Back in the main room under floor control without the floor: muted, as after a share.
        if self.get(id).is_some_and(|p| !p.muted && !self.may_speak(p)) {
            if let Some(p) = self.get_mut(id) {
                p.muted = true;
            }
        }
        self.touch(id);
        self.side.moved.push(id);
        for loc in [from, to] {
            if loc != MAIN && !self.side.changed.contains(&loc) {
                self.side.changed.push(loc);
            }
            if self.is_breakout(loc) {
                self.side.breakouts_dirty = true;
            }
        }
    }

    /// Whether `id` leaving the main room would leave it without an admitted facilitator.
    fn last_facilitator_in_main(&self, id: ParticipantId) -> bool {
        self.get(id).is_some_and(|p| p.role.is_facilitator() && p.location == MAIN)
            && !self.occupants(MAIN).any(|p| p.id != id && p.role.is_facilitator())
    }

    /// Refuses commands that name someone in another room than the sender's stage.
    pub(super) fn check_location(&self, from: ParticipantId, command: &Command) -> Result<(), ProtocolError> {
        let target = match command {
            Command::GiveFloor { participant_id }
            | Command::MoveHand { participant_id, .. }
            | Command::LowerHand { participant_id: Some(participant_id) } => *participant_id,
            _ => return Ok(()),
        };
        let here = self.get(from).map(|p| p.location);
        match self.get(target) {
            Some(t) if Some(t.location) != here => Err(wrong_location("they are in another room of the meeting")),
            _ => Ok(()),
        }
    }

    // ---- views ----

    /// What others outside someone's room see of them: away, and nothing more.
    fn away_view(&self, p: &Participant) -> ParticipantView {
        ParticipantView {
            participant_id: p.id,
            display_name: p.name.as_str().to_string(),
            role: p.role,
            muted: true,
            can_unmute: false,
            connected: p.connected,
            away: true,
        }
    }

    /// Everyone admitted as seen from `loc`: the main room and `loc` in full, other side rooms away.
    pub(super) fn views_from(&self, loc: Location) -> Vec<ParticipantView> {
        self.participants
            .iter()
            .filter(|q| q.admitted)
            .map(|q| if q.location == MAIN || q.location == loc { self.view(q) } else { self.away_view(q) })
            .collect()
    }

    /// `loc` as its occupants see it; none for the main room.
    pub(super) fn location_view(&self, loc: Location) -> Option<LocationView> {
        let r = self.side_room(loc)?;
        let participants = self.occupants(loc).map(|p| p.id).collect();
        Some(match r.kind {
            Kind::StepOut { .. } => {
                LocationView { kind: LocationKind::StepOut, group: None, participants, ends_at: None }
            }
            Kind::Breakout { group } => LocationView {
                kind: LocationKind::Breakout,
                group: Some(group),
                participants,
                ends_at: self.side.breakout.as_ref().map(|b| b.ends_at),
            },
        })
    }

    /// The breakout groups, while open.
    pub(super) fn breakouts_view(&self) -> Option<BreakoutsView> {
        let b = self.side.breakout.as_ref()?;
        let groups = self
            .side
            .rooms
            .iter()
            .filter_map(|r| match r.kind {
                Kind::Breakout { group } => {
                    Some(BreakoutGroupView { group, participants: self.occupants(r.id).map(|p| p.id).collect() })
                }
                Kind::StepOut { .. } => None,
            })
            .collect();
        Some(BreakoutsView { groups, ends_at: b.ends_at, assign: b.assign })
    }

    /// Sends a changed participant's view: in full to the main room (when they are in it) or to
    /// their own room, and to everyone else their away view when that changed.
    pub(super) fn send_participant(&mut self, id: ParticipantId, out: &mut Vec<Effect>) {
        let Some(p) = self.get(id).filter(|p| p.admitted) else { return };
        if p.location == MAIN {
            out.push(Effect::Send {
                to: Audience::Admitted,
                event: Event::ParticipantUpdated { participant: self.view(p) },
            });
            return;
        }
        let loc = p.location;
        out.push(Effect::Send {
            to: Audience::Location(loc),
            event: Event::ParticipantUpdated { participant: self.view(p) },
        });
        let away = self.away_view(p);
        if p.shown_away.as_ref() != Some(&away) {
            out.push(Effect::Send {
                to: Audience::Outside(loc),
                event: Event::ParticipantUpdated { participant: away.clone() },
            });
            if let Some(p) = self.get_mut(id) {
                p.shown_away = Some(away);
            }
        }
    }

    /// Fresh views for whoever moved or whose side room changed, and the breakout list.
    pub(super) fn flush_side(&mut self, out: &mut Vec<Effect>) {
        if std::mem::take(&mut self.side.breakouts_dirty) {
            out.push(Effect::Send {
                to: Audience::Admitted,
                event: Event::BreakoutsUpdated { breakouts: self.breakouts_view() },
            });
        }
        let mut who = std::mem::take(&mut self.side.moved);
        for loc in std::mem::take(&mut self.side.changed) {
            who.extend(self.occupants(loc).map(|p| p.id));
        }
        let mut sent: Vec<ParticipantId> = Vec::with_capacity(who.len());
        for id in who {
            if sent.contains(&id) {
                continue;
            }
            sent.push(id);
            let Some(p) = self.get(id).filter(|p| p.admitted) else { continue };
            let here = p.location;
            out.push(Effect::Send {
                to: Audience::One(id),
                event: Event::LocationChanged {
                    location: self.location_view(here),
                    participants: self.views_from(here),
                    queue: self.stage(here).queue.to_vec(),
                    floor: self.floor_view_at(here),
                    go_around: self.go_around_view_at(here),
                },
            });
        }
    }

    /// After every input: step-outs without a facilitator or a second person close, invitations
    /// that no longer fit are withdrawn, and the main room pauses or resumes.
    pub(super) fn tidy_side(&mut self, now: Millis, out: &mut Vec<Effect>) {
        if self.ended {
            self.side = Default::default();
            return;
        }
        let closing: Vec<(Location, ParticipantId, ParticipantId)> = self
            .side
            .rooms
            .iter()
            .filter_map(|r| match r.kind {
                Kind::StepOut { member, .. } => {
                    let n = self.occupants(r.id).count();
                    let fac = self.occupants(r.id).any(|p| p.role.is_facilitator());
                    (n < 2 || !fac).then_some((r.id, r.opened_by, member))
                }
                Kind::Breakout { .. } => None,
            })
            .collect();
        for (loc, opened_by, member) in closing {
            out.push(self.audit(now, opened_by, "side_room_closed", Some(member), None));
            let ids: Vec<ParticipantId> = self.occupants(loc).map(|p| p.id).collect();
            for id in ids {
                let to = self.way_back(id, loc);
                self.move_to(id, to, now, out);
            }
            self.side.rooms.retain(|r| r.id != loc);
            self.side.changed.retain(|&l| l != loc);
        }
        let mut withdrawn = Vec::new();
        let invites = std::mem::take(&mut self.side.invites);
        for inv in invites {
            let from = self.get(inv.from).filter(|p| p.admitted).map(|p| p.location);
            let to = self.get(inv.to).filter(|p| p.admitted).map(|p| p.location);
            // Both still where the invitation found them (a closed group has sent them back).
            let fits = to == Some(inv.at)
                && (inv.at == MAIN || self.is_breakout(inv.at))
                && match inv.room {
                    None => from == Some(inv.at),
                    Some(r) => from == Some(r) && self.location_exists(r),
                };
            if fits {
                self.side.invites.push(inv);
            } else {
                withdrawn.push(inv);
            }
        }
        for inv in withdrawn {
            if self.get(inv.to).is_some() {
                out.push(Effect::Send {
                    to: Audience::One(inv.to),
                    event: Event::StepOutWithdrawn { invite_id: inv.id },
                });
            }
        }
        let paused = !self.occupants(MAIN).any(|p| p.role.is_facilitator())
            && self.participants.iter().any(|p| p.admitted && p.location != MAIN && p.role.is_facilitator());
        if paused != self.side.paused {
            self.side.paused = paused;
            self.dirty.meeting = true;
            if paused {
                // Nobody holds the main room's floor, nor is called, while no facilitator is there.
                self.in_location(MAIN, out, |room, out| {
                    if room.go_around.take().is_some() {
                        room.dirty.go_around = true;
                    }
                    room.end_share(ShareEndReason::Facilitator, now, out);
                });
            }
        }
    }

    // ---- step-outs ----

    pub(super) fn step_out(
        &mut self,
        from: ParticipantId,
        target: ParticipantId,
        confirm: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let f = self.get(from).ok_or_else(not_found)?;
        let t = self.get(target).ok_or_else(not_found)?;
        if target == from {
            return Err(ProtocolError::new(C::Forbidden, "you cannot step out with yourself"));
        }
        if !t.admitted {
            return Err(ProtocolError::new(C::NotAdmitted, "that participant is still waiting"));
        }
        let here = f.location;
        let room = match self.side_room(here).map(|r| r.kind) {
            // From the main room or a breakout group: with a member of that room.
            None | Some(Kind::Breakout { .. }) => {
                if t.location != here {
                    return Err(wrong_location("they are not in your room"));
                }
                if t.role.is_facilitator() {
                    return Err(ProtocolError::new(
                        C::Forbidden,
                        "step out with a member; another facilitator is asked in from the side room",
                    ));
                }
                if !confirm && self.last_facilitator_in_main(from) {
                    return Err(confirm_required());
                }
                None
            }
            // From a step-out: another facilitator, from the main room or the group it started from.
            Some(Kind::StepOut { from: origin, .. }) => {
                if t.location != MAIN && (t.location != origin || !self.is_breakout(origin)) {
                    return Err(wrong_location(
                        "they are neither in the main room nor in the group you stepped out of",
                    ));
                }
                if !t.role.is_facilitator() {
                    return Err(ProtocolError::new(
                        C::Forbidden,
                        "only another facilitator can be asked into a side room",
                    ));
                }
                Some(here)
            }
        };
        let at = t.location;
        let display_name = f.name.as_str().to_string();
        // One open invitation per person: a new one replaces the old.
        if let Some(old) = self.side.invites.iter().position(|i| i.to == target) {
            let old = self.side.invites.remove(old);
            out.push(Effect::Send { to: Audience::One(target), event: Event::StepOutWithdrawn { invite_id: old.id } });
        }
        self.side.last_invite += 1;
        let invite_id = self.side.last_invite;
        self.side.invites.push(Invite { id: invite_id, from, to: target, room, at });
        out.push(Effect::Send {
            to: Audience::One(target),
            event: Event::StepOutInvite { invite_id, participant_id: from, display_name },
        });
        Ok(())
    }

    pub(super) fn answer_step_out(
        &mut self,
        from: ParticipantId,
        invite_id: u64,
        accept: bool,
        confirm: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let pos = self
            .side
            .invites
            .iter()
            .position(|i| i.id == invite_id && i.to == from)
            .ok_or_else(|| ProtocolError::new(C::InviteNotFound, "that invitation is no longer open"))?;
        if !accept {
            let inv = self.side.invites.remove(pos);
            // Only the facilitator who asked is told; nobody else ever learns of the invitation.
            out.push(Effect::Send {
                to: Audience::One(inv.from),
                event: Event::StepOutDeclined { participant_id: from },
            });
            return Ok(());
        }
        if !confirm && self.last_facilitator_in_main(from) {
            return Err(confirm_required());
        }
        let inv = self.side.invites.remove(pos);
        match inv.room {
            None => {
                self.side.last_room += 1;
                let id = self.side.last_room;
                self.side.rooms.push(SideRoom {
                    id,
                    kind: Kind::StepOut { member: from, from: inv.at },
                    opened_by: inv.from,
                    stage: Stage::default(),
                    came_from: vec![(inv.from, inv.at), (from, inv.at)],
                });
                out.push(self.audit(now, inv.from, "side_room_opened", Some(from), None));
                self.move_to(inv.from, id, now, out);
                self.move_to(from, id, now, out);
            }
            Some(room) => {
                out.push(self.audit(now, inv.from, "side_room_joined", Some(from), None));
                if let Some(r) = self.side.rooms.iter_mut().find(|r| r.id == room) {
                    r.came_from.push((from, inv.at));
                }
                self.move_to(from, room, now, out);
            }
        }
        Ok(())
    }

    pub(super) fn return_to_main(
        &mut self,
        from: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let here = self.get(from).ok_or_else(not_found)?.location;
        if here == MAIN {
            return Err(ProtocolError::new(C::NotInSideRoom, "you are in the main room"));
        }
        // From a step-out, back to the group it started from while that is open. A step-out left
        // with one person (or without a facilitator) closes in `tidy_side`.
        let to = self.way_back(from, here);
        self.move_to(from, to, now, out);
        Ok(())
    }

    // ---- breakout groups ----

    pub(super) fn open_breakouts(
        &mut self,
        from: ParticipantId,
        plan: BreakoutPlan,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let invalid = |m: &'static str| ProtocolError::new(C::InvalidSettings, m);
        if self.side.breakout.is_some() {
            return Err(ProtocolError::new(C::BreakoutsOpen, "breakout groups are already open"));
        }
        if self.get(from).map(|p| p.location) != Some(MAIN) {
            return Err(wrong_location("breakout groups are opened from the main room"));
        }
        if !(2..=MAX_GROUPS).contains(&plan.groups) {
            return Err(invalid("breakouts need 2 to 20 groups"));
        }
        if !(1..=MAX_BREAKOUT_SECONDS).contains(&plan.seconds) {
            return Err(invalid("breakouts last 1 to 14400 seconds"));
        }
        if plan.assignments.len() > plan.groups as usize {
            return Err(invalid("more assignment lists than groups"));
        }
        let n = plan.groups as usize;
        let mut placed: Vec<(ParticipantId, usize)> = Vec::new();
        for (g, ids) in plan.assignments.iter().enumerate() {
            for &id in ids {
                let p = self.get(id).ok_or_else(not_found)?;
                if !p.admitted {
                    return Err(ProtocolError::new(C::NotAdmitted, "that participant is still waiting"));
                }
                if p.location != MAIN {
                    return Err(wrong_location("someone assigned is not in the main room"));
                }
                if placed.iter().any(|(q, _)| *q == id) {
                    return Err(invalid("someone is assigned to two groups"));
                }
                placed.push((id, g));
            }
        }
        if plan.assign == BreakoutAssign::Auto {
            let mut sizes = vec![0usize; n];
            for &(_, g) in &placed {
                sizes[g] += 1;
            }
            let rest: Vec<ParticipantId> = self
                .occupants(MAIN)
                .filter(|p| !p.role.is_facilitator() && !placed.iter().any(|(q, _)| *q == p.id))
                .map(|p| p.id)
                .collect();
            for id in rest {
                // The smallest group so far, the lowest number on a tie.
                let g = (0..n).min_by_key(|&g| (sizes[g], g)).unwrap_or(0);
                sizes[g] += 1;
                placed.push((id, g));
            }
        }
        if placed.is_empty() && plan.assign != BreakoutAssign::Choose {
            return Err(ProtocolError::new(C::NobodyPresent, "there is nobody to place in breakout groups"));
        }
        // Placing every facilitator of the main room in groups leaves it without one: warned first.
        let all_facilitators_placed =
            self.occupants(MAIN).filter(|p| p.role.is_facilitator()).all(|f| placed.iter().any(|&(id, _)| id == f.id));
        if !plan.confirm && all_facilitators_placed {
            return Err(confirm_required());
        }
        let seconds = plan.seconds;
        let detail = format!(
            "{n} groups, {seconds} s, {}",
            match plan.assign {
                BreakoutAssign::Auto => "auto",
                BreakoutAssign::Manual => "manual",
                BreakoutAssign::Choose => "choose",
            }
        );
        out.push(self.audit(now, from, "breakouts_opened", None, Some(detail)));
        let mut ids = Vec::with_capacity(n);
        for g in 0..plan.groups {
            self.side.last_room += 1;
            let id = self.side.last_room;
            ids.push(id);
            self.side.rooms.push(SideRoom {
                id,
                kind: Kind::Breakout { group: g + 1 },
                opened_by: from,
                stage: Stage::default(),
                came_from: Vec::new(),
            });
        }
        self.side.breakout_epoch = self.side.breakout_epoch.wrapping_add(1);
        let epoch = self.side.breakout_epoch;
        let ends_at = now + u64::from(seconds) * 1000;
        let warning = plan.warning_seconds.unwrap_or(DEFAULT_BREAKOUT_WARNING_SECONDS);
        let warn_at = (warning > 0 && warning < seconds).then(|| ends_at - u64::from(warning) * 1000);
        if let Some(at) = warn_at {
            out.push(Effect::SetTimer { at, timer: Timer::Breakout { epoch, warning: true } });
        }
        out.push(Effect::SetTimer { at: ends_at, timer: Timer::Breakout { epoch, warning: false } });
        self.side.breakout = Some(Breakout { ends_at, warn_at, epoch, assign: plan.assign, opened_by: from });
        self.side.breakouts_dirty = true;
        for (id, g) in placed {
            self.move_to(id, ids[g], now, out);
        }
        Ok(())
    }

    pub(super) fn choose_breakout(
        &mut self,
        from: ParticipantId,
        group: u32,
        confirm: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        // Members choose when the facilitator let them; a facilitator visits any group any time.
        let fac = self.get(from).is_some_and(|p| p.role.is_facilitator());
        let open = self.side.breakout.as_ref().map(|b| b.assign);
        if open.is_none() || (!fac && open != Some(BreakoutAssign::Choose)) {
            return Err(ProtocolError::new(C::NoBreakouts, "there are no breakout groups to choose from"));
        }
        let room = self
            .side
            .rooms
            .iter()
            .find(|r| r.kind == Kind::Breakout { group })
            .map(|r| r.id)
            .ok_or_else(|| ProtocolError::new(C::NoBreakouts, "there is no breakout group with that number"))?;
        let here = self.get(from).map(|p| p.location).ok_or_else(not_found)?;
        if here == room {
            return Err(ProtocolError::new(C::NoChange, "you are already in that group"));
        }
        if self.side_room(here).is_some_and(|r| matches!(r.kind, Kind::StepOut { .. })) {
            return Err(wrong_location("you are in a side room"));
        }
        if !confirm && self.last_facilitator_in_main(from) {
            return Err(confirm_required());
        }
        if fac {
            out.push(self.audit(now, from, "breakout_visited", None, Some(format!("group {group}"))));
        }
        self.move_to(from, room, now, out);
        Ok(())
    }

    pub(super) fn close_breakouts(
        &mut self,
        from: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.side.breakout.is_none() {
            return Err(ProtocolError::new(C::NoBreakouts, "no breakout groups are open"));
        }
        out.push(self.audit(now, from, "breakouts_closed", None, None));
        self.end_breakouts(now, out);
        Ok(())
    }

    pub(super) fn breakout_timer(&mut self, epoch: u32, warning: bool, now: Millis, out: &mut Vec<Effect>) {
        let Some(b) = self.side.breakout.as_ref().filter(|b| b.epoch == epoch) else { return };
        let (ends_at, opened_by) = (b.ends_at, b.opened_by);
        if warning {
            let remaining_seconds = ends_at.saturating_sub(now).div_ceil(1000) as u32;
            out.push(Effect::Send {
                to: Audience::Admitted,
                event: Event::BreakoutWarning { ends_at, remaining_seconds },
            });
            return;
        }
        out.push(self.audit(now, opened_by, "breakouts_closed", None, Some("time up".into())));
        self.end_breakouts(now, out);
    }

    /// Everyone in a breakout group returns to the main room; the groups close.
    fn end_breakouts(&mut self, now: Millis, out: &mut Vec<Effect>) {
        let groups: Vec<Location> =
            self.side.rooms.iter().filter(|r| matches!(r.kind, Kind::Breakout { .. })).map(|r| r.id).collect();
        for loc in &groups {
            let ids: Vec<ParticipantId> = self.occupants(*loc).map(|p| p.id).collect();
            for id in ids {
                self.move_to(id, MAIN, now, out);
            }
        }
        // Seats held for someone whose connection dropped return too.
        let held: Vec<ParticipantId> =
            self.participants.iter().filter(|p| groups.contains(&p.location)).map(|p| p.id).collect();
        for id in held {
            self.move_to(id, MAIN, now, out);
        }
        self.side.rooms.retain(|r| !groups.contains(&r.id));
        self.side.changed.retain(|l| !groups.contains(l));
        self.side.breakout = None;
        self.side.breakouts_dirty = true;
    }
}

impl Room {
    /// After a restore (cluster): the timers of the breakout groups and of side rooms' shares,
    /// which lived on the previous owner.
    pub(super) fn restore_side_timers(&mut self, now: Millis, out: &mut Vec<Effect>) {
        if let Some(b) = &self.side.breakout {
            let epoch = b.epoch;
            if let Some(at) = b.warn_at.filter(|&at| at > now) {
                out.push(Effect::SetTimer { at, timer: Timer::Breakout { epoch, warning: true } });
            }
            out.push(Effect::SetTimer { at: b.ends_at.max(now), timer: Timer::Breakout { epoch, warning: false } });
        }
        let shares: Vec<(Location, Millis)> = self
            .side
            .rooms
            .iter()
            .filter_map(|r| r.stage.floor.as_ref().and_then(|f| f.ends_at).map(|end| (r.id, end)))
            .collect();
        for (loc, end) in shares {
            self.in_location(loc, out, |room, out| room.set_share_timers(end.max(now), now, out));
        }
    }
}
