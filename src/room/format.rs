//! Meeting formats in the room: the agenda, the current segment, and its rules.
//!
//! A segment's rules are written into the room's settings when it starts (`set_rules`), so every
//! rule already enforced (floor control, timed shares, chat) and the media rules the SFU applies
//! follow from them with no second path. What only a format says (facilitators alone speak,
//! hands are not raised) is read from `FormatState::rules`. A facilitator's live change of
//! settings within a segment is recorded as an override; the next segment starts from its own
//! rules again. Invariant (property-tested): the rules in force are the current segment's rules
//! with the overrides applied.

use super::{Audience, Effect, GoAround, Millis, Room, Timer};
use crate::protocol::{
    AgendaItem, AgendaView, ErrorCode as C, Event, FormatSpec, GoAroundWho, MeetingSettings, ParticipantId,
    ProtocolError, Role, SegmentRules, SegmentView, ShareEnd, ShareEndReason, WhoMayUnmute,
};
use std::sync::Arc;

/// What facilitators changed within the current segment; `None`: the segment's own rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleOverrides {
    pub unmute: Option<WhoMayUnmute>,
    pub share_seconds: Option<Option<u32>>,
    pub share_warning_seconds: Option<u32>,
    pub share_end: Option<ShareEnd>,
    pub chat: Option<bool>,
    #[serde(default)]
    pub hands: Option<bool>,
}

impl RuleOverrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &SegmentRules) -> SegmentRules {
        SegmentRules {
            unmute: self.unmute.unwrap_or(base.unmute),
            hands: self.hands.unwrap_or(base.hands),
            share_seconds: self.share_seconds.unwrap_or(base.share_seconds),
            share_warning_seconds: self.share_warning_seconds.unwrap_or(base.share_warning_seconds),
            share_end: self.share_end.unwrap_or(base.share_end),
            go_around: base.go_around,
            chat: self.chat.unwrap_or(base.chat),
        }
    }
}

/// A meeting's format as the room runs it (and as a cluster's room snapshot carries it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct FormatState {
    pub spec: Arc<FormatSpec>,
    /// The current segment (an index into `spec.segments`).
    pub current: usize,
    pub started_at: Millis,
    pub overrides: RuleOverrides,
    /// The rules in force: the segment's with the overrides applied.
    pub rules: SegmentRules,
    /// Bumped at every segment change, so a timer of an earlier segment does nothing.
    pub epoch: u32,
}

impl Room {
    /// Starts the meeting's format at its first segment (the actor does this once, as the room starts).
    pub(super) fn start_format(&mut self, spec: Arc<FormatSpec>, now: Millis, out: &mut Vec<Effect>) {
        if self.format.is_some() || spec.segments.is_empty() {
            return;
        }
        let rules = spec.segments[0].rules.clone();
        self.format = Some(FormatState {
            spec,
            current: 0,
            started_at: now,
            overrides: RuleOverrides::default(),
            rules,
            epoch: 0,
        });
        self.enter_segment(0, now, out);
    }

    /// `next_segment` / `previous_segment`.
    pub(super) fn move_segment(
        &mut self,
        by: ParticipantId,
        forward: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> Result<(), ProtocolError> {
        let fs = self.format.as_ref().ok_or_else(|| ProtocolError::new(C::NoFormat, "this meeting has no agenda"))?;
        let target = if forward {
            Some(fs.current + 1).filter(|&i| i < fs.spec.segments.len())
        } else {
            fs.current.checked_sub(1)
        };
        let Some(target) = target else {
            return Err(ProtocolError::new(
                C::NoSuchSegment,
                if forward { "this is the last segment" } else { "this is the first segment" },
            ));
        };
        let title = fs.spec.segments[target].title.clone();
        out.push(self.audit(now, by, if forward { "next_segment" } else { "previous_segment" }, None, Some(title)));
        self.enter_segment(target, now, out);
        Ok(())
    }

    /// Makes segment `idx` current and applies its rules, all in this one input.
    fn enter_segment(&mut self, idx: usize, now: Millis, out: &mut Vec<Effect>) {
        let Some(fs) = self.format.as_ref() else { return };
        let Some(seg) = fs.spec.segments.get(idx) else { return };
        let rules = seg.rules.clone();
        // A share and a round belong to the segment they started in.
        if self.floor.is_some() {
            self.end_share(ShareEndReason::Facilitator, now, out);
        }
        if self.go_around.take().is_some() {
            self.dirty.go_around = true;
        }
        if let Some(fs) = self.format.as_mut() {
            fs.current = idx;
            fs.started_at = now;
            fs.overrides = RuleOverrides::default();
            fs.epoch = fs.epoch.wrapping_add(1);
        }
        self.set_rules(rules.clone());
        if let Some(segment) = self.segment_view() {
            out.push(Effect::Send { to: Audience::Admitted, event: Event::SegmentChanged { segment } });
        }
        self.set_segment_timers(now, out);
        if let Some(who) = rules.go_around {
            self.start_segment_round(who, now, out);
        }
    }

    /// The current segment's warning and end timers, from `now` on (a restored room sets them
    /// again; one already past fires at once).
    pub(super) fn set_segment_timers(&self, now: Millis, out: &mut Vec<Effect>) {
        let Some(fs) = self.format.as_ref() else { return };
        let Some(seg) = fs.spec.segments.get(fs.current) else { return };
        let Some(end) = seg.planned_minutes.map(|m| fs.started_at + u64::from(m) * 60_000) else { return };
        let (epoch, warn_ms) = (fs.epoch, u64::from(fs.spec.segment_warning_seconds) * 1000);
        if warn_ms > 0 && end.saturating_sub(warn_ms) > now {
            out.push(Effect::SetTimer { at: end - warn_ms, timer: Timer::SegmentWarning { epoch } });
        }
        out.push(Effect::SetTimer { at: end.max(now), timer: Timer::SegmentEnd { epoch } });
    }

    /// Writes `rules` into the settings the other rules read, and re-derives who may speak.
    fn set_rules(&mut self, rules: SegmentRules) {
        let s = &mut self.settings;
        s.floor_control = rules.unmute != WhoMayUnmute::Anyone;
        s.share_seconds = rules.share_seconds;
        s.share_warning_seconds = rules.share_warning_seconds;
        s.share_end = rules.share_end;
        s.chat_enabled = rules.chat;
        s.hands = rules.hands;
        if let Some(fs) = self.format.as_mut() {
            fs.rules = rules;
        }
        self.dirty.meeting = true;
        // Whoever may no longer speak is muted now (muting needs no consent; unmuting does), and
        // everyone's can_unmute may have changed.
        for i in 0..self.participants.len() {
            let p = &self.participants[i];
            let id = p.id;
            if !p.muted && !self.may_speak(p) {
                self.participants[i].muted = true;
            }
            self.touch(id);
        }
    }

    /// A go-around that comes with a segment: everyone it names who is present, in order of arrival.
    fn start_segment_round(&mut self, who: GoAroundWho, now: Millis, out: &mut Vec<Effect>) {
        // Those in the room whose stage this is (side rooms and breakout groups keep their own floor).
        let here = self.side.here;
        let admitted = || self.participants.iter().filter(|p| p.admitted && p.location == here);
        let mut order: Vec<ParticipantId> = admitted().filter(|p| p.role == Role::Member).map(|p| p.id).collect();
        if who == GoAroundWho::Everyone {
            order.extend(admitted().filter(|p| p.role.is_facilitator()).map(|p| p.id));
        }
        let Some(&first) = order.first() else { return };
        self.go_around = Some(GoAround { order, pos: 0, passed: Vec::new() });
        self.dirty.go_around = true;
        self.give_floor(first, now, out);
    }

    /// A segment timer: the warning to facilitators, or the planned end (which moves on only
    /// when the segment says `auto_advance`).
    pub(super) fn segment_timer(&mut self, end: bool, epoch: u32, now: Millis, out: &mut Vec<Effect>) {
        let Some(fs) = self.format.as_ref().filter(|fs| fs.epoch == epoch) else { return };
        let Some(seg) = fs.spec.segments.get(fs.current) else { return };
        let Some(planned_end) = seg.planned_minutes.map(|m| fs.started_at + u64::from(m) * 60_000) else { return };
        if !end {
            let remaining_seconds = planned_end.saturating_sub(now).div_ceil(1000) as u32;
            out.push(Effect::Send {
                to: Audience::Facilitators,
                event: Event::SegmentWarning { index: fs.current as u32, planned_end, remaining_seconds },
            });
        } else if seg.auto_advance && fs.current + 1 < fs.spec.segments.len() {
            let next = fs.current + 1;
            self.enter_segment(next, now, out);
        }
    }

    /// After a facilitator changed settings within a segment: what differs from before is an
    /// override of the segment's rules until the next segment.
    pub(super) fn record_overrides(&mut self, old: &MeetingSettings) {
        let new = &self.settings;
        let Some(fs) = self.format.as_mut() else { return };
        let o = &mut fs.overrides;
        if new.floor_control != old.floor_control {
            o.unmute = Some(if new.floor_control { WhoMayUnmute::FloorHolder } else { WhoMayUnmute::Anyone });
        }
        if new.share_seconds != old.share_seconds {
            o.share_seconds = Some(new.share_seconds);
        }
        if new.share_warning_seconds != old.share_warning_seconds {
            o.share_warning_seconds = Some(new.share_warning_seconds);
        }
        if new.share_end != old.share_end {
            o.share_end = Some(new.share_end);
        }
        if new.chat_enabled != old.chat_enabled {
            o.chat = Some(new.chat_enabled);
        }
        if new.hands != old.hands {
            o.hands = Some(new.hands);
        }
        if let Some(seg) = fs.spec.segments.get(fs.current) {
            fs.rules = fs.overrides.apply(&seg.rules);
        }
    }

    /// Why the current segment refuses this participant an unmute, if it does.
    pub(super) fn segment_refuses_unmute(&self) -> Option<ProtocolError> {
        self.format.as_ref().filter(|fs| fs.rules.unmute == WhoMayUnmute::Facilitators).map(|fs| {
            let title = fs.spec.segments.get(fs.current).map(|s| s.title.as_str()).unwrap_or_default();
            ProtocolError::new(C::SegmentRules, format!("only facilitators speak during \"{title}\""))
        })
    }

    /// Why a raised hand is refused, if it is (facilitators never are): the current segment's
    /// rule, or a facilitator's pause (`hands`, which the segment's rule sets and a facilitator
    /// overrides).
    pub(super) fn refuses_hand(&self, role: Role) -> Option<ProtocolError> {
        if role.is_facilitator() || self.settings.hands {
            return None;
        }
        let segment = self.format.as_ref().filter(|fs| fs.overrides.hands.is_none());
        Some(match segment {
            Some(fs) => {
                let title = fs.spec.segments.get(fs.current).map(|s| s.title.as_str()).unwrap_or_default();
                ProtocolError::new(C::SegmentRules, format!("hands are not raised during \"{title}\""))
            }
            None => ProtocolError::new(
                C::HandsPaused,
                "a facilitator has paused raised hands; raise yours once they allow hands again",
            ),
        })
    }

    /// The current segment, as `segment_changed` and `welcome` show it.
    pub(super) fn segment_view(&self) -> Option<SegmentView> {
        let fs = self.format.as_ref()?;
        let seg = fs.spec.segments.get(fs.current)?;
        Some(SegmentView {
            index: fs.current as u32,
            title: seg.title.clone(),
            rules: seg.rules.clone(),
            started_at: fs.started_at,
            planned_end: seg.planned_minutes.map(|m| fs.started_at + u64::from(m) * 60_000),
            auto_advance: seg.auto_advance,
        })
    }

    /// The whole agenda with the current segment, for `welcome`.
    pub(super) fn agenda_view(&self) -> Option<AgendaView> {
        let fs = self.format.as_ref()?;
        Some(AgendaView {
            segments: fs
                .spec
                .segments
                .iter()
                .map(|s| AgendaItem { title: s.title.clone(), planned_minutes: s.planned_minutes })
                .collect(),
            current: self.segment_view()?,
        })
    }

    /// The index of the current segment, when the meeting has a format.
    pub fn segment_index(&self) -> Option<usize> {
        self.format.as_ref().map(|fs| fs.current)
    }

    /// The rules in force (the current segment's, with facilitators' overrides), when the
    /// meeting has a format.
    pub fn rules_in_force(&self) -> Option<&SegmentRules> {
        self.format.as_ref().map(|fs| &fs.rules)
    }

    /// The overrides of the current segment's rules.
    pub fn overrides(&self) -> Option<&RuleOverrides> {
        self.format.as_ref().map(|fs| &fs.overrides)
    }
}
