//! The speaking queue, the floor, timed shares and go-arounds.
//!
//! The queue is in the server's order of raising (facilitators may move someone); everyone is sent
//! the same list. One participant at most holds the floor. A timed share sets two timers (warning,
//! end) tagged with the floor epoch, so a timer from an earlier share does nothing.

use super::lobby::not_found;
use super::{Audience, Effect, Floor, GoAround, Millis, Room, Timer};
use crate::protocol::{
    ErrorCode as C, Event, ParticipantId, ProtocolError, QueueEntry, Role, ShareEnd, ShareEndReason,
};

/// Extension used when a share is extended without a length and the meeting has no share length.
const DEFAULT_EXTENSION_SECONDS: u32 = 60;

impl Room {
    pub(super) fn raise_hand(&mut self, id: ParticipantId, now: Millis) -> Result<(), ProtocolError> {
        let p = self.get(id).ok_or_else(not_found)?;
        if p.role == Role::Observer {
            return Err(ProtocolError::new(C::ObserverCannotSpeak, "observers cannot raise a hand"));
        }
        if let Some(e) = self.refuses_hand(p.role) {
            return Err(e);
        }
        if self.queue.iter().any(|q| q.participant_id == id) {
            return Err(ProtocolError::new(C::HandAlreadyRaised, "your hand is already raised"));
        }
        // One frame for everyone: `queue_updated` says whose hand is up (views carry no copy).
        self.queue.push(QueueEntry { participant_id: id, raised_at: now });
        self.dirty.queue = true;
        Ok(())
    }

    pub(super) fn lower_hand(
        &mut self,
        by: ParticipantId,
        target: Option<ParticipantId>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let id = target.unwrap_or(by);
        if id != by && !self.get(by).is_some_and(|p| p.role.is_facilitator()) {
            return Err(ProtocolError::new(C::Forbidden, "only a facilitator can lower someone else's hand"));
        }
        let pos = self
            .queue
            .iter()
            .position(|q| q.participant_id == id)
            .ok_or_else(|| ProtocolError::new(C::HandNotRaised, "that hand is not raised"))?;
        if id != by {
            out.push(self.audit(now, by, "lower_hand", Some(id), None));
        }
        self.queue.remove(pos);
        self.dirty.queue = true;
        Ok(())
    }

    pub(super) fn move_hand(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        position: u32,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let from = self
            .queue
            .iter()
            .position(|q| q.participant_id == id)
            .ok_or_else(|| ProtocolError::new(C::HandNotRaised, "that participant is not in the queue"))?;
        let to = (position as usize).min(self.queue.len() - 1);
        if from == to {
            return Err(ProtocolError::new(C::NoChange, "they are already at that place"));
        }
        out.push(self.audit(now, by, "move_hand", Some(id), Some(format!("position {to}"))));
        let entry = self.queue.remove(from);
        self.queue.insert(to, entry);
        self.dirty.queue = true;
        Ok(())
    }

    pub(super) fn yield_floor(
        &mut self,
        id: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.floor_holder() != Some(id) {
            return Err(ProtocolError::new(C::NotFloorHolder, "you do not have the floor"));
        }
        self.end_share(ShareEndReason::Yielded, now, out);
        self.advance_go_around_after(id, now, out);
        Ok(())
    }

    pub(super) fn pass(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) -> Result<(), ProtocolError> {
        let g = self.go_around.as_ref().ok_or_else(|| ProtocolError::new(C::NoGoAround, "no go-around is running"))?;
        if g.order.get(g.pos) != Some(&id) {
            return Err(ProtocolError::new(C::NotFloorHolder, "it is not your turn"));
        }
        if let Some(g) = self.go_around.as_mut() {
            g.passed.push(id);
        }
        if self.floor_holder() == Some(id) {
            self.end_share(ShareEndReason::Passed, now, out);
        }
        self.advance_go_around(now, out);
        Ok(())
    }

    pub(super) fn next_speaker(
        &mut self,
        by: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.go_around.is_some() {
            out.push(self.audit(now, by, "next_speaker", None, Some("go-around".into())));
            if self.floor.is_some() {
                self.end_share(ShareEndReason::Facilitator, now, out);
            }
            self.advance_go_around(now, out);
            return Ok(());
        }
        let head = self
            .queue
            .first()
            .map(|q| q.participant_id)
            .ok_or_else(|| ProtocolError::new(C::QueueEmpty, "nobody is waiting to speak"))?;
        out.push(self.audit(now, by, "next_speaker", Some(head), None));
        self.give_floor(head, now, out);
        Ok(())
    }

    pub(super) fn give_floor_command(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let t = self.get(id).ok_or_else(not_found)?;
        if !t.admitted {
            return Err(ProtocolError::new(C::NotAdmitted, "that participant is still waiting"));
        }
        if t.role == Role::Observer {
            return Err(ProtocolError::new(C::ObserverCannotSpeak, "observers cannot be given the floor"));
        }
        if self.floor_holder() == Some(id) {
            return Err(ProtocolError::new(C::NoChange, "they already have the floor"));
        }
        out.push(self.audit(now, by, "give_floor", Some(id), None));
        self.give_floor(id, now, out);
        Ok(())
    }

    /// Ends any running share and gives the floor to `id` (who leaves the queue), with timers.
    pub(super) fn give_floor(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        if self.floor.is_some() {
            self.end_share(ShareEndReason::Facilitator, now, out);
        }
        if self.queue.iter().any(|q| q.participant_id == id) {
            self.queue.retain(|q| q.participant_id != id);
            self.dirty.queue = true;
        }
        self.floor_epoch = self.floor_epoch.wrapping_add(1);
        let ends_at = self.settings.share_seconds.map(|s| now + s as u64 * 1000);
        self.floor = Some(Floor { holder: id, started_at: now, ends_at, over_time: false });
        if let Some(end) = ends_at {
            self.set_share_timers(end, now, out);
        }
        if let Some(p) = self.get_mut(id) {
            // The floor lifts a facilitator's mute lock; unmuting stays the speaker's own choice.
            p.mute_locked = false;
        }
        self.dirty.floor = true;
        self.touch(id);
    }

    pub(super) fn set_share_timers(&self, end: Millis, now: Millis, out: &mut Vec<Effect>) {
        let (epoch, location) = (self.floor_epoch, self.side.here);
        let warn_ms = self.settings.share_warning_seconds as u64 * 1000;
        if warn_ms > 0 && end.saturating_sub(warn_ms) > now {
            out.push(Effect::SetTimer { at: end - warn_ms, timer: Timer::ShareWarning { epoch, location } });
        }
        out.push(Effect::SetTimer { at: end, timer: Timer::ShareEnd { epoch, location } });
    }

    /// Takes the floor back. In a floor-controlled meeting the speaker is muted again.
    pub(super) fn end_share(&mut self, reason: ShareEndReason, _now: Millis, out: &mut Vec<Effect>) {
        let Some(floor) = self.floor.take() else {
            return;
        };
        self.floor_epoch = self.floor_epoch.wrapping_add(1);
        let holder = floor.holder;
        if self.floor_gates(self.side.here) {
            if let Some(p) = self.get_mut(holder) {
                if !p.role.is_facilitator() {
                    p.muted = true;
                }
            }
        }
        out.push(Effect::Send { to: Audience::Admitted, event: Event::ShareEnded { participant_id: holder, reason } });
        self.dirty.floor = true;
        self.touch(holder);
    }

    pub(super) fn extend_share(
        &mut self,
        by: ParticipantId,
        seconds: Option<u32>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let floor = self.floor.as_ref().ok_or_else(|| ProtocolError::new(C::NoShareRunning, "no share is running"))?;
        let Some(end) = floor.ends_at else {
            return Err(ProtocolError::new(C::NoShareRunning, "this share is untimed; there is nothing to extend"));
        };
        let secs = seconds.or(self.settings.share_seconds).unwrap_or(DEFAULT_EXTENSION_SECONDS);
        if secs == 0 || secs > crate::protocol::MAX_SHARE_SECONDS {
            return Err(ProtocolError::new(C::InvalidSettings, "an extension must be 1 to 3600 seconds"));
        }
        let holder = floor.holder;
        out.push(self.audit(now, by, "extend_share", Some(holder), Some(format!("{secs} s"))));
        let new_end = end.max(now) + secs as u64 * 1000;
        self.floor_epoch = self.floor_epoch.wrapping_add(1);
        if let Some(f) = self.floor.as_mut() {
            f.ends_at = Some(new_end);
            f.over_time = false;
        }
        self.set_share_timers(new_end, now, out);
        self.dirty.floor = true;
        Ok(())
    }

    pub(super) fn share_warning(&mut self, epoch: u32, now: Millis, out: &mut Vec<Effect>) {
        if epoch != self.floor_epoch {
            return;
        }
        let Some(f) = self.floor.as_ref() else { return };
        let Some(ends_at) = f.ends_at else { return };
        let remaining_seconds = (ends_at.saturating_sub(now).div_ceil(1000)) as u32;
        out.push(Effect::Send {
            to: Audience::Admitted,
            event: Event::ShareWarning { participant_id: f.holder, ends_at, remaining_seconds },
        });
    }

    pub(super) fn share_end(&mut self, epoch: u32, now: Millis, out: &mut Vec<Effect>) {
        if epoch != self.floor_epoch {
            return;
        }
        let Some(holder) = self.floor_holder() else {
            return;
        };
        match self.settings.share_end {
            ShareEnd::Hard => {
                self.end_share(ShareEndReason::TimeUp, now, out);
                self.advance_go_around_after(holder, now, out);
            }
            ShareEnd::Soft => {
                if let Some(f) = self.floor.as_mut() {
                    f.over_time = true;
                }
                self.dirty.floor = true;
            }
        }
    }

    pub(super) fn start_go_around(
        &mut self,
        by: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.go_around.is_some() {
            return Err(ProtocolError::new(C::GoAroundActive, "a go-around is already running"));
        }
        let here = self.side.here;
        let order: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.admitted && p.role == Role::Member && p.location == here)
            .map(|p| p.id)
            .collect();
        if order.is_empty() {
            return Err(ProtocolError::new(C::NobodyPresent, "there are no members present for a go-around"));
        }
        out.push(self.audit(now, by, "start_go_around", None, None));
        let first = order[0];
        self.go_around = Some(GoAround { order, pos: 0, passed: Vec::new() });
        self.dirty.go_around = true;
        self.give_floor(first, now, out);
        Ok(())
    }

    pub(super) fn end_go_around(
        &mut self,
        by: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.go_around.take().is_none() {
            return Err(ProtocolError::new(C::NoGoAround, "no go-around is running"));
        }
        out.push(self.audit(now, by, "end_go_around", None, None));
        self.dirty.go_around = true;
        Ok(())
    }

    /// After `id`'s share ended: if it was their go-around turn, the next one comes up.
    fn advance_go_around_after(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        if self.go_around.as_ref().is_some_and(|g| g.order.get(g.pos) == Some(&id)) {
            self.advance_go_around(now, out);
        }
    }

    /// Moves the round to the next member still present, or ends it after the last.
    pub(super) fn advance_go_around(&mut self, now: Millis, out: &mut Vec<Effect>) {
        let Some(g) = self.go_around.as_mut() else {
            return;
        };
        g.pos += 1;
        self.dirty.go_around = true;
        let next = g.order.get(g.pos).copied();
        match next {
            Some(next) => self.give_floor(next, now, out),
            None => self.go_around = None,
        }
    }

    /// A leaver is taken out of the round; when it was their turn, the round moves on.
    pub(super) fn drop_from_go_around(
        &mut self,
        id: ParticipantId,
        was_current: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let Some(g) = self.go_around.as_mut() else {
            return;
        };
        let Some(idx) = g.order.iter().position(|&p| p == id) else {
            return;
        };
        let current = idx == g.pos;
        g.order.remove(idx);
        g.passed.retain(|&p| p != id);
        self.dirty.go_around = true;
        if idx < g.pos {
            g.pos -= 1;
        } else if current || was_current {
            // The next member now sits at `pos`: their turn starts.
            match g.order.get(g.pos).copied() {
                Some(next) => self.give_floor(next, now, out),
                None => self.go_around = None,
            }
        }
    }
}
