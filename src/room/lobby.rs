//! Coming and going: join, the waiting room, resume after a dropped connection, leaving.

use super::names::{pseudonym, DisplayName, NameError};
use super::participant::{MemberKey, Participant, TokenBucket};
use super::{Audience, Effect, Millis, Outcome, Presence, Room, Timer};
use crate::protocol::{ErrorCode as C, Event, LeaveReason, ParticipantId, ProtocolError, Role, ShareEndReason};

impl Room {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        id: ParticipantId,
        member: MemberKey,
        role: Role,
        display_name: Option<String>,
        resume_token: String,
        random: u64,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<Outcome, ProtocolError> {
        if let Some(refusal) = self.join_refusal(&member, role) {
            return Err(refusal);
        }
        // The same member joining again (a reload, a second device) takes over their seat rather
        // than appearing twice; their place, hand and floor stay theirs.
        if let Some(existing) = self.participants.iter().position(|p| p.member == member) {
            let pid = self.participants[existing].id;
            self.reattach(pid, resume_token, now, out);
            if let Some(ev) = self.snapshot(pid) {
                out.push(Effect::Send { to: Audience::One(pid), event: ev });
            }
            return Ok(Outcome::Attached { participant_id: pid, resumed: false });
        }
        if self.get(id).is_some() {
            return Err(ProtocolError::new(C::Internal, "participant id collision; please retry"));
        }
        let name = match display_name {
            Some(raw) => {
                let name = DisplayName::parse(&raw).map_err(name_error)?;
                if self.name_taken(&name, None) {
                    let mut err = ProtocolError::new(C::NameTaken, "someone in this meeting already uses that name");
                    err.suggestion = Some(self.free_variant(&name, None).as_str().to_string());
                    return Err(err);
                }
                name
            }
            None => {
                let base = pseudonym(random);
                self.free_variant(&base, None)
            }
        };
        let waits = self.settings.waiting_room && !role.is_facilitator();
        self.participants.push(Participant {
            id,
            member,
            name,
            role,
            admitted: !waits,
            waiting_since: now,
            connected: true,
            grace_epoch: 0,
            muted: true,
            mute_locked: false,
            resume_token,
            chat_bucket: TokenBucket::full(self.limits.chat_burst, now),
            media: Default::default(),
            location: super::MAIN,
            shown_away: None,
        });
        if waits {
            if let Some(ev) = self.snapshot(id) {
                out.push(Effect::Send { to: Audience::One(id), event: ev });
            }
            self.dirty.waiting = true;
        } else {
            self.enter(id, now, out);
        }
        Ok(Outcome::Attached { participant_id: id, resumed: false })
    }

    /// A participant becomes present: their snapshot, everyone else's notice, the ledger's record.
    fn enter(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        let Some(p) = self.get(id) else { return };
        let (member, view, is_member, connected) =
            (p.member.clone(), self.view(p), p.role == Role::Member, p.connected);
        if let Some(ev) = self.snapshot(id) {
            out.push(Effect::Send { to: Audience::One(id), event: ev });
        }
        out.push(Effect::Send {
            to: Audience::AdmittedExcept(id),
            event: Event::ParticipantJoined { participant: view },
        });
        out.push(Effect::Presence { participant_id: id, member: member.clone(), change: Presence::Admitted, at: now });
        if !connected {
            // Admitted while their connection was down: present from their resume on.
            out.push(Effect::Presence { participant_id: id, member, change: Presence::Disconnected, at: now });
        }
        if is_member {
            if let Some(g) = self.go_around.as_mut() {
                g.order.push(id);
                self.dirty.go_around = true;
            }
        }
    }

    fn reattach(&mut self, id: ParticipantId, new_token: String, now: Millis, out: &mut Vec<Effect>) {
        let Some(p) = self.get_mut(id) else { return };
        let was_disconnected = !p.connected;
        p.connected = true;
        p.grace_epoch = p.grace_epoch.wrapping_add(1);
        p.resume_token = new_token;
        let (admitted, member) = (p.admitted, p.member.clone());
        if was_disconnected && admitted {
            out.push(Effect::Presence { participant_id: id, member, change: Presence::Resumed, at: now });
            self.touch(id);
        }
    }

    pub(super) fn resume(
        &mut self,
        token: &str,
        new_token: String,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<Outcome, ProtocolError> {
        if self.ended {
            return Err(ProtocolError::meeting_ended());
        }
        // Constant time, and every seat is compared: neither timing nor position tells how much
        // of a guessed token was right.
        let id = self
            .participants
            .iter()
            .fold(None, |found, p| if token_matches(&p.resume_token, token) { Some(p.id) } else { found })
            .ok_or_else(|| {
                ProtocolError::new(
                    C::InvalidResumeToken,
                    "that resume token is not valid here (used, expired or for another meeting); join again",
                )
            })?;
        self.reattach(id, new_token, now, out);
        Ok(Outcome::Attached { participant_id: id, resumed: true })
    }

    pub(super) fn disconnected(&mut self, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        let grace = self.limits.grace_ms;
        let Some(p) = self.get_mut(id) else { return };
        if !p.connected {
            return;
        }
        p.connected = false;
        p.grace_epoch = p.grace_epoch.wrapping_add(1);
        let (epoch, admitted, member) = (p.grace_epoch, p.admitted, p.member.clone());
        out.push(Effect::SetTimer { at: now + grace, timer: Timer::Grace { participant_id: id, epoch } });
        if admitted {
            out.push(Effect::Presence { participant_id: id, member, change: Presence::Disconnected, at: now });
            self.touch(id);
        }
    }

    /// Takes a participant out of the meeting: queue, floor, go-around, seat; tells everyone.
    pub(super) fn remove_participant(
        &mut self,
        id: ParticipantId,
        reason: LeaveReason,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        // Out of the queue, floor and go-around of whichever room they are in.
        self.leave_stage(id, now, out);
        let Some(idx) = self.participants.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.participants.remove(idx);
        if p.admitted {
            out.push(Effect::Send {
                to: Audience::Admitted,
                event: Event::ParticipantLeft { participant_id: id, reason },
            });
            out.push(Effect::Presence {
                participant_id: id,
                member: p.member,
                change: Presence::Left(reason),
                at: now,
            });
        } else {
            self.dirty.waiting = true;
        }
        out.push(Effect::Close { participant_id: id, reason });
        out.push(Effect::MediaClosed { participant_id: id });
        if p.role == Role::Facilitator {
            self.hand_over_if_needed(now, out);
        }
    }

    /// When the last facilitator leaves, the longest-present co-facilitator takes over, so the
    /// meeting keeps someone who can run it.
    fn hand_over_if_needed(&mut self, now: Millis, out: &mut Vec<Effect>) {
        if self.participants.iter().any(|p| p.admitted && p.role == Role::Facilitator) {
            return;
        }
        let Some(next) =
            self.participants.iter().find(|p| p.admitted && p.connected && p.role == Role::CoFacilitator).map(|p| p.id)
        else {
            return;
        };
        if let Some(p) = self.get_mut(next) {
            p.role = Role::Facilitator;
        }
        self.touch(next);
        out.push(self.audit(now, next, "handover", Some(next), Some("last facilitator left".into())));
    }

    pub(super) fn admit(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let p = self.get(id).ok_or_else(not_found)?;
        if p.admitted {
            return Err(ProtocolError::new(C::NoChange, "that participant is already in the meeting"));
        }
        self.admit_one(by, id, now, out);
        Ok(())
    }

    pub(super) fn admit_all(
        &mut self,
        by: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let waiting: Vec<ParticipantId> = self.participants.iter().filter(|p| !p.admitted).map(|p| p.id).collect();
        if waiting.is_empty() {
            return Err(ProtocolError::new(C::NoChange, "nobody is waiting"));
        }
        for id in waiting {
            self.admit_one(by, id, now, out);
        }
        Ok(())
    }

    fn admit_one(&mut self, by: ParticipantId, id: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        out.push(self.audit(now, by, "admit", Some(id), None));
        if let Some(p) = self.get_mut(id) {
            p.admitted = true;
        }
        self.dirty.waiting = true;
        out.push(Effect::Send { to: Audience::One(id), event: Event::Admitted });
        self.enter(id, now, out);
    }

    pub(super) fn deny(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        message: Option<String>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let p = self.get(id).ok_or_else(not_found)?;
        if p.admitted {
            return Err(ProtocolError::new(C::NoChange, "that participant is already in the meeting; use remove"));
        }
        let message = bounded_text(message, self.limits.support_max_chars)?;
        out.push(self.audit(now, by, "deny", Some(id), message.clone()));
        out.push(Effect::Send { to: Audience::One(id), event: Event::Denied { message } });
        self.remove_participant(id, LeaveReason::Denied, now, out);
        Ok(())
    }

    pub(super) fn end_meeting(&mut self, by: ParticipantId, now: Millis, out: &mut Vec<Effect>) {
        out.push(self.audit(now, by, "end_meeting", None, None));
        self.end(now, out);
    }

    pub(super) fn end(&mut self, now: Millis, out: &mut Vec<Effect>) {
        self.close_all(LeaveReason::MeetingEnded, now, out);
        self.ended = true;
        out.push(Effect::Ended);
    }

    pub(super) fn shutdown(&mut self, now: Millis, out: &mut Vec<Effect>) {
        self.close_all(LeaveReason::ServerShutdown, now, out);
    }

    fn close_all(&mut self, reason: LeaveReason, now: Millis, out: &mut Vec<Effect>) {
        if reason == LeaveReason::MeetingEnded {
            for p in &self.participants {
                // Observers and people never admitted have no attendance to speak of.
                let attendance_recorded = p.admitted && p.role != Role::Observer;
                out.push(Effect::Send { to: Audience::One(p.id), event: Event::MeetingEnded { attendance_recorded } });
            }
        }
        self.go_around = None;
        if self.floor.is_some() {
            self.end_share(ShareEndReason::Facilitator, now, out);
        }
        let ids: Vec<ParticipantId> = self.participants.iter().map(|p| p.id).collect();
        for id in ids {
            self.remove_participant(id, reason, now, out);
        }
        self.dirty = Default::default();
    }

    pub(super) fn name_taken(&self, name: &DisplayName, except: Option<ParticipantId>) -> bool {
        self.participants.iter().any(|p| Some(p.id) != except && p.name.skeleton() == name.skeleton())
    }

    /// The name itself when free, else the first free `name 2`, `name 3`, ...
    pub(super) fn free_variant(&self, name: &DisplayName, except: Option<ParticipantId>) -> DisplayName {
        if !self.name_taken(name, except) {
            return name.clone();
        }
        // With at most `capacity` names taken, one of the first capacity + 2 numbers is free.
        (2..)
            .map(|n| name.numbered(n))
            .find(|candidate| !self.name_taken(candidate, except))
            .unwrap_or_else(|| name.clone())
    }
}

pub(super) fn not_found() -> ProtocolError {
    ProtocolError::new(C::ParticipantNotFound, "that participant is not in this meeting")
}

pub(super) fn name_error(e: NameError) -> ProtocolError {
    ProtocolError::new(C::InvalidName, e.to_string())
}

/// Optional free text (reasons, messages): trimmed, empty becomes none, bounded in characters.
pub(super) fn bounded_text(text: Option<String>, max_chars: usize) -> Result<Option<String>, ProtocolError> {
    let Some(t) = text else { return Ok(None) };
    let t = t.trim();
    if t.chars().count() > max_chars {
        return Err(ProtocolError::new(C::InvalidMessage, format!("text can be at most {max_chars} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ProtocolError::new(C::InvalidMessage, "text cannot contain control characters"));
    }
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// Whether a presented resume token is this seat's, compared in constant time.
fn token_matches(held: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    !presented.is_empty() && held.len() == presented.len() && bool::from(held.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod token_tests {
    use super::token_matches;

    #[test]
    fn resume_token_match_is_exact_and_never_matches_empty() {
        assert!(token_matches("hvr.a.b", "hvr.a.b"));
        assert!(!token_matches("hvr.a.b", "hvr.a.c"));
        assert!(!token_matches("hvr.a.b", "hvr.a.b2"));
        assert!(!token_matches("", ""));
    }

    #[test]
    fn resume_tokens_are_not_compared_with_eq() {
        // `==` on strings stops at the first differing byte, which times how much of a guessed
        // token was right (issue 18, defect 5).
        let src = include_str!("lobby.rs");
        let code = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        assert!(!code.contains("resume_token == "), "compare resume tokens with token_matches");
        assert!(code.contains("ct_eq"));
    }
}
