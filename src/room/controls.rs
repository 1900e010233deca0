//! Facilitator controls on participants and the meeting, chat and the support signal.

use super::lobby::{bounded_text, name_error, not_found};
use super::{Audience, Effect, Millis, Room};
use crate::protocol::{
    ErrorCode as C, Event, LeaveReason, MeetingSettings, ParticipantId, PromoteTo, ProtocolError, Role, SupportView,
};

impl Room {
    pub(super) fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), ProtocolError> {
        let p = self.get(id).ok_or_else(not_found)?;
        if p.muted == muted {
            return Err(ProtocolError::new(
                C::NoChange,
                if muted { "you are already muted" } else { "you are already unmuted" },
            ));
        }
        if !muted {
            if p.role == Role::Observer {
                return Err(ProtocolError::new(C::ObserverCannotSpeak, "observers cannot unmute"));
            }
            if p.mute_locked {
                return Err(ProtocolError::new(C::MuteLocked, "a facilitator muted you; they can allow you to unmute"));
            }
            if !self.may_speak(p) {
                if let Some(e) = self.segment_refuses_unmute() {
                    return Err(e);
                }
                return Err(ProtocolError::new(
                    C::FloorRequired,
                    "in this meeting you can unmute when you have the floor",
                ));
            }
        }
        if let Some(p) = self.get_mut(id) {
            p.muted = muted;
        }
        self.touch(id);
        Ok(())
    }

    /// The target of a facilitator control: present, admitted, and not a facilitator unless the
    /// sender is the facilitator (co-facilitators cannot act against the facilitator).
    fn control_target(&self, by: ParticipantId, id: ParticipantId) -> Result<&super::Participant, ProtocolError> {
        let t = self.get(id).ok_or_else(not_found)?;
        if id == by {
            return Err(ProtocolError::new(C::Forbidden, "you cannot do that to yourself"));
        }
        let by_role = self.get(by).map(|p| p.role);
        if t.role == Role::Facilitator || (t.role == Role::CoFacilitator && by_role != Some(Role::Facilitator)) {
            return Err(ProtocolError::new(C::Forbidden, "you cannot do that to a facilitator"));
        }
        Ok(t)
    }

    pub(super) fn mute(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let t = self.control_target(by, id)?;
        if !t.admitted {
            return Err(ProtocolError::new(C::NotAdmitted, "that participant is still waiting"));
        }
        if t.muted && t.mute_locked {
            return Err(ProtocolError::new(C::NoChange, "that participant is already muted"));
        }
        out.push(self.audit(now, by, "mute", Some(id), None));
        if let Some(p) = self.get_mut(id) {
            p.muted = true;
            p.mute_locked = true;
        }
        self.touch(id);
        Ok(())
    }

    pub(super) fn mute_all(
        &mut self,
        by: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let targets: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.admitted && !p.role.is_facilitator() && !(p.muted && p.mute_locked))
            .map(|p| p.id)
            .collect();
        if targets.is_empty() {
            return Err(ProtocolError::new(C::NoChange, "everyone is already muted"));
        }
        out.push(self.audit(now, by, "mute_all", None, None));
        for id in targets {
            if let Some(p) = self.get_mut(id) {
                p.muted = true;
                p.mute_locked = true;
            }
            self.touch(id);
        }
        Ok(())
    }

    pub(super) fn allow_unmute(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let t = self.get(id).ok_or_else(not_found)?;
        if !t.mute_locked {
            return Err(ProtocolError::new(C::NoChange, "that participant may already unmute"));
        }
        out.push(self.audit(now, by, "allow_unmute", Some(id), None));
        if let Some(p) = self.get_mut(id) {
            // They stay muted: nobody is unmuted without their own consent.
            p.mute_locked = false;
        }
        self.touch(id);
        Ok(())
    }

    pub(super) fn remove(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        reason: Option<String>,
        ban: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let t = self.control_target(by, id)?;
        let member = t.member.clone();
        let reason = bounded_text(reason, self.limits.support_max_chars)?;
        out.push(self.audit(now, by, if ban { "ban" } else { "remove" }, Some(id), reason.clone()));
        if ban {
            self.banned.insert(member.clone());
            out.push(Effect::Banned { member });
        }
        out.push(Effect::Send { to: Audience::One(id), event: Event::Removed { banned: ban, reason } });
        let leave = if ban { LeaveReason::Banned } else { LeaveReason::Removed };
        self.remove_participant(id, leave, now, out);
        Ok(())
    }

    pub(super) fn rename(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        raw: &str,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let t = self.get(id).ok_or_else(not_found)?;
        let name = super::DisplayName::parse(raw).map_err(name_error)?;
        if t.name == name {
            return Err(ProtocolError::new(C::NoChange, "that is already their name"));
        }
        if self.name_taken(&name, Some(id)) {
            let mut err = ProtocolError::new(C::NameTaken, "someone in this meeting already uses that name");
            err.suggestion = Some(self.free_variant(&name, Some(id)).as_str().to_string());
            return Err(err);
        }
        out.push(self.audit(now, by, "rename", Some(id), Some(name.as_str().to_string())));
        let admitted = t.admitted;
        if let Some(p) = self.get_mut(id) {
            p.name = name;
        }
        if admitted {
            self.touch(id);
        } else {
            self.dirty.waiting = true;
        }
        Ok(())
    }

    pub(super) fn set_locked(
        &mut self,
        by: ParticipantId,
        locked: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.locked == locked {
            return Err(ProtocolError::new(C::NoChange, if locked { "already locked" } else { "already unlocked" }));
        }
        out.push(self.audit(now, by, if locked { "lock" } else { "unlock" }, None, None));
        self.locked = locked;
        self.dirty.meeting = true;
        Ok(())
    }

    pub(super) fn set_chat(
        &mut self,
        by: ParticipantId,
        enabled: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        if self.settings.chat_enabled == enabled {
            return Err(ProtocolError::new(
                C::NoChange,
                if enabled { "chat is already on" } else { "chat is already off" },
            ));
        }
        out.push(self.audit(now, by, if enabled { "chat_on" } else { "chat_off" }, None, None));
        let old = self.settings.clone();
        self.settings.chat_enabled = enabled;
        self.record_overrides(&old);
        self.dirty.meeting = true;
        Ok(())
    }

    pub(super) fn chat(
        &mut self,
        id: ParticipantId,
        text: String,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let (capacity, refill) = (self.limits.chat_burst, self.limits.chat_refill_ms);
        let p = self.get(id).ok_or_else(not_found)?;
        if p.role == Role::Observer {
            return Err(ProtocolError::new(C::ChatDisabled, "observers cannot chat"));
        }
        if !self.settings.chat_enabled && !p.role.is_facilitator() {
            return Err(ProtocolError::new(C::ChatDisabled, "chat is switched off in this meeting"));
        }
        let text = text.trim();
        let len = text.chars().count();
        if len == 0 || len > self.limits.chat_max_chars {
            return Err(ProtocolError::new(
                C::InvalidChat,
                format!("a chat message must be 1 to {} characters", self.limits.chat_max_chars),
            ));
        }
        if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ProtocolError::new(C::InvalidChat, "a chat message cannot contain control characters"));
        }
        // Checked last: a refused message must not cost a token (the state stays unchanged).
        let mut bucket = p.chat_bucket.clone();
        if !bucket.take(capacity, refill, now) {
            return Err(ProtocolError::new(C::RateLimited, "you are sending messages too quickly; wait a moment"));
        }
        let display_name = p.name.as_str().to_string();
        if let Some(p) = self.get_mut(id) {
            p.chat_bucket = bucket;
        }
        let message_id = self.next_chat_id;
        self.next_chat_id += 1;
        if self.chat_ids.len() == super::CHAT_IDS_KEPT {
            self.chat_ids.pop_front();
        }
        self.chat_ids.push_back(message_id);
        out.push(Effect::Send {
            to: Audience::Admitted,
            event: Event::Chat { message_id, participant_id: id, display_name, text: text.to_string(), at: now },
        });
        Ok(())
    }

    pub(super) fn delete_chat(
        &mut self,
        by: ParticipantId,
        message_id: u64,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let pos =
            self.chat_ids.iter().position(|&m| m == message_id).ok_or_else(|| {
                ProtocolError::new(C::ChatNotFound, "no such chat message (or it was already deleted)")
            })?;
        self.chat_ids.remove(pos);
        out.push(self.audit(now, by, "delete_chat", None, Some(format!("message {message_id}"))));
        out.push(Effect::Send { to: Audience::Admitted, event: Event::ChatDeleted { message_id } });
        Ok(())
    }

    pub(super) fn update_settings(
        &mut self,
        by: ParticipantId,
        settings: MeetingSettings,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        settings.validate().map_err(|m| ProtocolError::new(C::InvalidSettings, m))?;
        if settings == self.settings {
            return Err(ProtocolError::new(C::NoChange, "those settings are already in effect"));
        }
        let detail = serde_json::to_string(&settings).ok();
        out.push(self.audit(now, by, "update_settings", None, detail));
        let floor_control_on = settings.floor_control && !self.settings.floor_control;
        // A new share length applies from the next share; the running one keeps its end.
        let old = std::mem::replace(&mut self.settings, settings);
        self.record_overrides(&old);
        self.dirty.meeting = true;
        if floor_control_on {
            // Whoever may no longer speak is muted now (muting needs no consent; unmuting does).
            let ids: Vec<ParticipantId> =
                self.participants.iter().filter(|p| !p.muted && !self.may_speak(p)).map(|p| p.id).collect();
            for id in ids {
                if let Some(p) = self.get_mut(id) {
                    p.muted = true;
                }
                self.touch(id);
            }
        }
        // can_unmute changes for everyone when floor control flips.
        let all: Vec<ParticipantId> = self.participants.iter().map(|p| p.id).collect();
        for id in all {
            self.touch(id);
        }
        Ok(())
    }

    pub(super) fn promote(
        &mut self,
        by: ParticipantId,
        id: ParticipantId,
        to: PromoteTo,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let by_role = self.get(by).map(|p| p.role).ok_or_else(not_found)?;
        let t = self.get(id).ok_or_else(not_found)?;
        if !t.admitted {
            return Err(ProtocolError::new(C::NotAdmitted, "that participant is still waiting"));
        }
        if t.role == Role::Observer {
            return Err(ProtocolError::new(C::Forbidden, "observers cannot be given a speaking role"));
        }
        let new_role = match to {
            PromoteTo::Facilitator => Role::Facilitator,
            PromoteTo::CoFacilitator => Role::CoFacilitator,
            PromoteTo::Member => Role::Member,
        };
        if t.role == new_role {
            return Err(ProtocolError::new(C::NoChange, "they already have that role"));
        }
        if (t.role == Role::Facilitator || new_role == Role::Facilitator) && by_role != Role::Facilitator {
            return Err(ProtocolError::new(
                C::Forbidden,
                "only the facilitator can hand over or change the facilitator",
            ));
        }
        if !new_role.is_facilitator() {
            let others = self
                .participants
                .iter()
                .filter(|p| p.id != id && p.admitted && p.connected && p.role.is_facilitator())
                .count();
            if others == 0 {
                return Err(ProtocolError::new(C::LastFacilitator, "the meeting needs at least one facilitator"));
            }
        }
        let detail = serde_json::to_value(new_role).ok().and_then(|v| v.as_str().map(String::from));
        out.push(self.audit(now, by, "promote", Some(id), detail));
        if let Some(p) = self.get_mut(id) {
            p.role = new_role;
            if new_role.is_facilitator() {
                p.mute_locked = false;
            }
        }
        self.touch(id);
        if new_role == Role::Facilitator && by != id {
            // A handover: the giver stays on as co-facilitator.
            if let Some(p) = self.get_mut(by) {
                p.role = Role::CoFacilitator;
            }
            self.touch(by);
        }
        Ok(())
    }

    pub(super) fn support_request(
        &mut self,
        id: ParticipantId,
        text: Option<String>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let p = self.get(id).ok_or_else(not_found)?;
        if p.role.is_facilitator() {
            return Err(ProtocolError::new(C::Forbidden, "support requests go from members to facilitators"));
        }
        if self.support.iter().filter(|s| s.participant_id == id).count() >= 3 {
            return Err(ProtocolError::new(
                C::RateLimited,
                "the facilitators already have your requests; they will reach out",
            ));
        }
        let text = bounded_text(text, self.limits.support_max_chars)?;
        let request = SupportView {
            request_id: self.next_support_id,
            participant_id: id,
            display_name: p.name.as_str().to_string(),
            text,
            at: now,
        };
        self.next_support_id += 1;
        self.support.push(request.clone());
        out.push(Effect::Send {
            to: Audience::One(id),
            event: Event::SupportRequestSent { request_id: request.request_id },
        });
        out.push(Effect::Send { to: Audience::Facilitators, event: Event::SupportRequest { request } });
        Ok(())
    }

    pub(super) fn ack_support(
        &mut self,
        by: ParticipantId,
        request_id: u64,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let pos = self
            .support
            .iter()
            .position(|s| s.request_id == request_id)
            .ok_or_else(|| ProtocolError::new(C::SupportRequestNotFound, "no open support request with that id"))?;
        let req = self.support.remove(pos);
        out.push(self.audit(now, by, "ack_support", Some(req.participant_id), None));
        let ev = Event::SupportAcknowledged { request_id, by };
        out.push(Effect::Send { to: Audience::Facilitators, event: ev.clone() });
        if self.get(req.participant_id).is_some_and(|p| !p.role.is_facilitator()) {
            out.push(Effect::Send { to: Audience::One(req.participant_id), event: ev });
        }
        Ok(())
    }
}
