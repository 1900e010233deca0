//! Room core tests in virtual time: unit tests of each rule and property tests of the invariants.

use super::*;
use crate::protocol::{ErrorCode, PromoteTo, ShareEnd, ShareEndReason};
use proptest::prelude::*;

/// A room driven by hand: time is a number, timers fire when `advance` passes them.
struct H {
    room: Room,
    now: Millis,
    out: Vec<Effect>,
    timers: Vec<(Millis, Timer)>,
    next: u64,
}

fn key(m: &str) -> MemberKey {
    MemberKey { program: "prog".into(), member_ref: m.into() }
}

impl H {
    fn new(settings: MeetingSettings) -> H {
        H {
            room: Room::new("m1".into(), "Tuesday group".into(), settings, RoomLimits::default(), []),
            now: 1_000_000,
            out: Vec::new(),
            timers: Vec::new(),
            next: 1,
        }
    }

    fn open() -> H {
        H::new(MeetingSettings { waiting_room: false, ..Default::default() })
    }

    /// `id`'s connection drops (a no-op for someone not here).
    fn disconnect(&mut self, id: ParticipantId) {
        let _ = self.run(Input::Disconnected { participant_id: id });
    }

    /// `id` comes back with their current resume token.
    fn resume(&mut self, id: ParticipantId) -> Result<Outcome, ProtocolError> {
        let token = self.p(id).resume_token.clone();
        self.run(Input::Resume { resume_token: token, new_resume_token: format!("r{}", self.now) })
    }

    fn run(&mut self, input: Input) -> Result<Outcome, ProtocolError> {
        self.out.clear();
        let r = self.room.handle(input, self.now, &mut self.out);
        for e in &self.out {
            if let Effect::SetTimer { at, timer } = e {
                self.timers.push((*at, *timer));
            }
        }
        r
    }

    fn join_as(&mut self, member: &str, role: Role, name: Option<&str>) -> Result<ParticipantId, ProtocolError> {
        self.next += 1;
        let pid = ParticipantId::from_random(self.next * 7919);
        let r = self.run(Input::Join {
            participant_id: pid,
            member: key(member),
            role,
            display_name: name.map(String::from),
            resume_token: format!("tok-{member}-{}", self.next),
            random: self.next,
        })?;
        match r {
            Outcome::Attached { participant_id, .. } => Ok(participant_id),
            Outcome::Done => panic!("join without attach"),
        }
    }

    fn join(&mut self, member: &str, role: Role) -> ParticipantId {
        self.join_as(member, role, Some(member)).unwrap()
    }

    fn cmd(&mut self, from: ParticipantId, command: Command) -> Result<(), ProtocolError> {
        self.run(Input::Command { from, command }).map(|_| ())
    }

    fn code(&mut self, from: ParticipantId, command: Command) -> ErrorCode {
        self.cmd(from, command).unwrap_err().code
    }

    /// Events of the last input that reach `pid`.
    fn events_to(&self, pid: ParticipantId) -> Vec<Event> {
        let admitted = |id: ParticipantId| self.room.get(id).is_some_and(|p| p.admitted);
        let at = |id: ParticipantId| self.room.get(id).map(|p| p.location);
        let fac = |id: ParticipantId| self.room.get(id).is_some_and(|p| p.admitted && p.role.is_facilitator());
        self.out
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to, event } => {
                    let hit = match *to {
                        Audience::One(p) => p == pid,
                        Audience::Admitted => admitted(pid),
                        Audience::AdmittedExcept(x) => x != pid && admitted(pid),
                        Audience::Facilitators => fac(pid),
                        Audience::Location(l) => admitted(pid) && at(pid) == Some(l),
                        Audience::Outside(l) => admitted(pid) && at(pid) != Some(l),
                    };
                    hit.then(|| event.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Moves time forward, firing due timers in deadline order; returns every effect they caused.
    fn advance(&mut self, ms: u64) -> Vec<Effect> {
        let target = self.now + ms;
        let mut all = Vec::new();
        loop {
            self.timers.sort_by_key(|(at, _)| *at);
            match self.timers.first().copied() {
                Some((at, t)) if at <= target => {
                    self.timers.remove(0);
                    self.now = at.max(self.now);
                    let _ = self.run(Input::Timer(t));
                    all.append(&mut self.out);
                }
                _ => break,
            }
        }
        self.now = target;
        all
    }

    fn p(&self, id: ParticipantId) -> &Participant {
        self.room.get(id).unwrap()
    }
}

fn sends(effects: &[Effect]) -> Vec<&Event> {
    effects.iter().filter_map(|e| if let Effect::Send { event, .. } = e { Some(event) } else { None }).collect()
}

// ---- joining and names ----

#[test]
fn join_sends_welcome_snapshot_and_tells_others() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("sam", Role::Member);
    match &h.events_to(m)[0] {
        Event::Welcome { participant_id, participants, role, .. } => {
            assert_eq!(*participant_id, m);
            assert_eq!(*role, Role::Member);
            assert_eq!(participants.len(), 2);
        }
        e => panic!("expected welcome, got {e:?}"),
    }
    assert!(
        matches!(&h.events_to(f)[..], [Event::ParticipantJoined { participant }] if participant.participant_id == m)
    );
}

#[test]
fn taken_name_is_refused_with_a_free_suggestion() {
    let mut h = H::open();
    h.join_as("a", Role::Member, Some("Sam")).unwrap();
    h.join_as("b", Role::Member, Some("Sam 2")).unwrap();
    for clash in ["SAM", "sam", "\u{0405}am", "  Sam "] {
        let e = h.join_as("c", Role::Member, Some(clash)).unwrap_err();
        assert_eq!(e.code, ErrorCode::NameTaken, "{clash}");
        let suggestion = e.suggestion.unwrap();
        assert_eq!(
            DisplayName::parse(&suggestion).unwrap().skeleton(),
            DisplayName::parse("Sam 3").unwrap().skeleton()
        );
    }
    assert_eq!(h.room.len(), 2, "a refused join leaves no seat behind");
}

#[test]
fn invalid_names_are_refused_with_invalid_name() {
    let mut h = H::open();
    for bad in ["", "sam@example.com", "call 555 123 4567", "Sa\u{202E}m", &"x".repeat(33)] {
        assert_eq!(h.join_as("a", Role::Member, Some(bad)).unwrap_err().code, ErrorCode::InvalidName, "{bad:?}");
    }
}

#[test]
fn join_without_a_name_gets_a_pseudonym() {
    let mut h = H::open();
    let a = h.join_as("a", Role::Member, None).unwrap();
    let name = h.p(a).name.as_str().to_string();
    assert!(name.contains(' ') && !name.contains("a@"), "{name}");
}

#[test]
fn same_member_joining_again_takes_over_the_seat() {
    let mut h = H::open();
    let a = h.join("a", Role::Member);
    h.cmd(a, Command::RaiseHand).unwrap();
    let again = h.join_as("a", Role::Member, Some("Other name")).unwrap();
    assert_eq!(again, a);
    assert_eq!(h.room.len(), 1);
    assert_eq!(h.room.queue().len(), 1, "hand kept");
}

// ---- waiting room ----

#[test]
fn waiting_member_is_admitted_by_facilitator() {
    let mut h = H::new(MeetingSettings::default());
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("sam", Role::Member);
    assert!(matches!(h.events_to(m)[0], Event::Waiting { .. }));
    assert!(h.events_to(f).iter().any(|e| matches!(e, Event::WaitingList { waiting } if waiting.len() == 1)));
    assert_eq!(h.code(m, Command::RaiseHand), ErrorCode::NotAdmitted);
    // Presence starts only at admission.
    h.cmd(f, Command::Admit { participant_id: m }).unwrap();
    assert!(h.out.iter().any(
        |e| matches!(e, Effect::Presence { change: Presence::Admitted, participant_id, .. } if *participant_id == m)
    ));
    let to_m = h.events_to(m);
    assert!(matches!(to_m[0], Event::Admitted));
    assert!(to_m.iter().any(|e| matches!(e, Event::Welcome { .. })));
    assert_eq!(h.code(f, Command::Admit { participant_id: m }), ErrorCode::NoChange);
}

#[test]
fn denied_member_is_told_and_closed_without_presence() {
    let mut h = H::new(MeetingSettings::default());
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("sam", Role::Member);
    h.cmd(f, Command::Deny { participant_id: m, message: Some("Not tonight".into()) }).unwrap();
    assert!(matches!(&h.events_to(m)[..], [Event::Denied { message: Some(t) }] if t == "Not tonight"));
    assert!(h.out.iter().any(|e| matches!(e, Effect::Close { reason: LeaveReason::Denied, .. })));
    assert!(!h.out.iter().any(|e| matches!(e, Effect::Presence { .. })));
    assert!(h.room.get(m).is_none());
}

#[test]
fn admit_all_admits_everyone_waiting() {
    let mut h = H::new(MeetingSettings::default());
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Observer);
    h.cmd(f, Command::AdmitAll).unwrap();
    assert!(h.p(a).admitted && h.p(b).admitted);
    assert_eq!(h.code(f, Command::AdmitAll), ErrorCode::NoChange);
}

// ---- roles and controls ----

#[test]
fn members_cannot_use_facilitator_commands() {
    let mut h = H::open();
    let _f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    let o = h.join("o", Role::Observer);
    for cmd in [
        Command::Mute { participant_id: o },
        Command::MuteAll,
        Command::Lock,
        Command::EndMeeting,
        Command::NextSpeaker,
        Command::GiveFloor { participant_id: m },
        Command::Remove { participant_id: o, reason: None },
        Command::StartGoAround,
    ] {
        let before = format!("{:?}", h.room);
        assert_eq!(h.code(m, cmd.clone()), ErrorCode::Forbidden, "{cmd:?}");
        assert_eq!(format!("{:?}", h.room), before);
    }
}

#[test]
fn member_cannot_unmute_after_facilitator_mute() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    assert!(h.out.contains(&Effect::MediaRule { participant_id: m, rule: MediaRule { audio: true, ..h.p(m).media } }));
    h.cmd(f, Command::Mute { participant_id: m }).unwrap();
    assert!(h.out.contains(&Effect::MediaRule { participant_id: m, rule: MediaRule { audio: false, ..h.p(m).media } }));
    assert_eq!(h.code(m, Command::SetMuted { muted: false }), ErrorCode::MuteLocked);
    h.cmd(f, Command::AllowUnmute { participant_id: m }).unwrap();
    assert!(h.p(m).muted, "allowing does not unmute anyone without their consent");
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    assert!(!h.p(m).muted);
}

#[test]
fn mute_all_locks_every_non_facilitator() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(f, Command::MuteAll).unwrap();
    assert!(h.p(a).mute_locked && h.p(b).mute_locked && !h.p(f).mute_locked);
    assert_eq!(h.code(f, Command::MuteAll), ErrorCode::NoChange);
}

#[test]
fn floor_control_lets_only_floor_holder_and_facilitators_speak() {
    let mut h = H::new(MeetingSettings { waiting_room: false, floor_control: true, ..Default::default() });
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    assert_eq!(h.code(m, Command::SetMuted { muted: false }), ErrorCode::FloorRequired);
    h.cmd(f, Command::SetMuted { muted: false }).unwrap();
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    assert!(h.out.contains(&Effect::MediaRule { participant_id: m, rule: MediaRule { audio: true, ..h.p(m).media } }));
    h.cmd(m, Command::YieldFloor).unwrap();
    assert!(h.p(m).muted, "the share's end mutes the speaker again");
    assert!(h.out.contains(&Effect::MediaRule { participant_id: m, rule: MediaRule { audio: false, ..h.p(m).media } }));
}

#[test]
fn the_floor_lifts_a_facilitator_mute_lock() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::Mute { participant_id: m }).unwrap();
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    assert!(h.p(m).muted && !h.p(m).mute_locked);
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
}

#[test]
fn observers_cannot_speak_raise_hands_or_chat() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let o = h.join("o", Role::Observer);
    assert_eq!(h.code(o, Command::RaiseHand), ErrorCode::ObserverCannotSpeak);
    assert_eq!(h.code(o, Command::SetMuted { muted: false }), ErrorCode::ObserverCannotSpeak);
    assert_eq!(h.code(o, Command::Chat { text: "hi".into() }), ErrorCode::ChatDisabled);
    assert_eq!(h.code(f, Command::GiveFloor { participant_id: o }), ErrorCode::ObserverCannotSpeak);
}

#[test]
fn ban_refuses_the_member_reference_whatever_token_it_brings() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::Ban { participant_id: m, reason: Some("harassment".into()) }).unwrap();
    assert!(matches!(&h.events_to(m)[..], [Event::Removed { banned: true, .. }]));
    assert!(h.out.iter().any(|e| matches!(e, Effect::Banned { member } if member == &key("m"))));
    assert_eq!(h.join_as("m", Role::Facilitator, Some("New name")).unwrap_err().code, ErrorCode::Banned);
}

#[test]
fn remove_takes_hand_and_floor_and_records_leave_reason() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    h.cmd(f, Command::Remove { participant_id: m, reason: None }).unwrap();
    assert_eq!(h.room.floor_holder(), None);
    assert!(h.out.iter().any(|e| matches!(e, Effect::Presence { change: Presence::Left(LeaveReason::Removed), .. })));
    assert!(h.events_to(f).iter().any(|e| matches!(e, Event::ParticipantLeft { reason: LeaveReason::Removed, .. })));
    assert_eq!(h.code(f, Command::Remove { participant_id: m, reason: None }), ErrorCode::ParticipantNotFound);
}

#[test]
fn co_facilitator_cannot_act_against_the_facilitator() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::Promote { participant_id: m, role: PromoteTo::CoFacilitator }).unwrap();
    assert_eq!(h.code(m, Command::Remove { participant_id: f, reason: None }), ErrorCode::Forbidden);
    assert_eq!(h.code(m, Command::Promote { participant_id: f, role: PromoteTo::Member }), ErrorCode::Forbidden);
}

#[test]
fn handover_and_last_facilitator_rule() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    assert_eq!(h.code(f, Command::Promote { participant_id: f, role: PromoteTo::Member }), ErrorCode::LastFacilitator);
    h.cmd(f, Command::Promote { participant_id: m, role: PromoteTo::Facilitator }).unwrap();
    assert_eq!(h.p(m).role, Role::Facilitator);
    assert_eq!(h.p(f).role, Role::CoFacilitator);
    // When the facilitator leaves, the co-facilitator takes over.
    h.cmd(m, Command::Leave).unwrap();
    assert_eq!(h.p(f).role, Role::Facilitator);
}

#[test]
fn rename_applies_name_rules() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    assert_eq!(h.code(f, Command::Rename { participant_id: m, display_name: "fac".into() }), ErrorCode::NameTaken);
    assert_eq!(h.code(f, Command::Rename { participant_id: m, display_name: "@bad".into() }), ErrorCode::InvalidName);
    h.cmd(f, Command::Rename { participant_id: m, display_name: "Member A".into() }).unwrap();
    assert!(h
        .events_to(m)
        .iter()
        .any(|e| matches!(e, Event::ParticipantUpdated { participant } if participant.display_name == "Member A")));
    assert!(h.out.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == "rename")));
}

#[test]
fn lock_refuses_new_members_but_not_facilitators() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    h.cmd(f, Command::Lock).unwrap();
    assert_eq!(h.join_as("m", Role::Member, Some("m")).unwrap_err().code, ErrorCode::MeetingLocked);
    h.join_as("f2", Role::Facilitator, Some("f2")).unwrap();
    h.cmd(f, Command::Unlock).unwrap();
    h.join_as("m", Role::Member, Some("m")).unwrap();
}

#[test]
fn capacity_is_enforced() {
    let mut h = H::open();
    h.room.limits.capacity = 2;
    h.join("a", Role::Member);
    h.join("b", Role::Member);
    assert_eq!(h.join_as("c", Role::Member, Some("c")).unwrap_err().code, ErrorCode::MeetingFull);
}

// ---- chat and support ----

#[test]
fn chat_is_rate_limited_and_can_be_switched_off_and_deleted() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    for _ in 0..5 {
        h.cmd(m, Command::Chat { text: "hello".into() }).unwrap();
    }
    assert_eq!(h.code(m, Command::Chat { text: "hello".into() }), ErrorCode::RateLimited);
    h.advance(2000);
    h.cmd(m, Command::Chat { text: "again".into() }).unwrap();
    let id = match &h.events_to(f)[0] {
        Event::Chat { message_id, .. } => *message_id,
        e => panic!("{e:?}"),
    };
    h.cmd(f, Command::DeleteChat { message_id: id }).unwrap();
    assert!(matches!(&h.events_to(m)[..], [Event::ChatDeleted { message_id }] if *message_id == id));
    assert_eq!(h.code(f, Command::DeleteChat { message_id: id }), ErrorCode::ChatNotFound);
    h.cmd(f, Command::SetChat { enabled: false }).unwrap();
    h.advance(10_000);
    assert_eq!(h.code(m, Command::Chat { text: "x".into() }), ErrorCode::ChatDisabled);
    assert_eq!(h.code(m, Command::Chat { text: "   ".into() }), ErrorCode::ChatDisabled);
    h.cmd(f, Command::Chat { text: "announcement".into() }).unwrap();
    h.cmd(f, Command::SetChat { enabled: true }).unwrap();
    assert_eq!(h.code(m, Command::Chat { text: "  ".into() }), ErrorCode::InvalidChat);
    assert_eq!(h.code(m, Command::Chat { text: "x".repeat(2001) }), ErrorCode::InvalidChat);
}

#[test]
fn support_request_reaches_facilitators_only_until_acknowledged() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    let other = h.join("o", Role::Member);
    h.cmd(m, Command::SupportRequest { text: Some("struggling".into()) }).unwrap();
    assert!(matches!(&h.events_to(f)[..], [Event::SupportRequest { request }] if request.participant_id == m));
    assert!(h.events_to(other).is_empty());
    assert!(matches!(&h.events_to(m)[..], [Event::SupportRequestSent { .. }]));
    // A facilitator arriving later still sees it.
    let f2 = h.join("f2", Role::Facilitator);
    let id = match &h.events_to(f2)[0] {
        Event::Welcome { support_requests, .. } => support_requests[0].request_id,
        e => panic!("{e:?}"),
    };
    h.cmd(f2, Command::AckSupport { request_id: id }).unwrap();
    assert!(h.events_to(f).iter().any(|e| matches!(e, Event::SupportAcknowledged { .. })));
    assert!(h.events_to(m).iter().any(|e| matches!(e, Event::SupportAcknowledged { .. })));
    assert!(h.events_to(other).is_empty());
    assert_eq!(h.code(f, Command::AckSupport { request_id: id }), ErrorCode::SupportRequestNotFound);
    // Members never see open requests in their snapshot.
    assert!(
        matches!(h.room.snapshot(other), Some(Event::Welcome { support_requests, .. }) if support_requests.is_empty())
    );
}

// ---- queue and floor ----

#[test]
fn queue_is_in_server_order_of_raising() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    let c = h.join("c", Role::Member);
    for p in [b, c, a] {
        h.cmd(p, Command::RaiseHand).unwrap();
        h.now += 10;
    }
    let order: Vec<_> = h.room.queue().iter().map(|q| q.participant_id).collect();
    assert_eq!(order, vec![b, c, a]);
    assert_eq!(h.code(b, Command::RaiseHand), ErrorCode::HandAlreadyRaised);
    h.cmd(f, Command::MoveHand { participant_id: a, position: 0 }).unwrap();
    h.cmd(f, Command::NextSpeaker).unwrap();
    assert_eq!(h.room.floor_holder(), Some(a));
    assert!(h.events_to(b).iter().any(|e| matches!(e, Event::QueueUpdated { queue } if queue.len() == 2)));
    h.cmd(c, Command::LowerHand { participant_id: None }).unwrap();
    assert_eq!(h.code(c, Command::LowerHand { participant_id: None }), ErrorCode::HandNotRaised);
    assert_eq!(h.code(c, Command::LowerHand { participant_id: Some(b) }), ErrorCode::Forbidden);
    h.cmd(f, Command::LowerHand { participant_id: Some(b) }).unwrap();
    assert_eq!(h.code(f, Command::NextSpeaker), ErrorCode::QueueEmpty);
}

#[test]
fn yield_and_extend_need_a_running_share() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    assert_eq!(h.code(m, Command::YieldFloor), ErrorCode::NotFloorHolder);
    assert_eq!(h.code(f, Command::ExtendShare { seconds: None }), ErrorCode::NoShareRunning);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    // Untimed shares have nothing to extend.
    assert_eq!(h.code(f, Command::ExtendShare { seconds: None }), ErrorCode::NoShareRunning);
}

fn timed(end: ShareEnd) -> MeetingSettings {
    MeetingSettings {
        waiting_room: false,
        share_seconds: Some(180),
        share_warning_seconds: 30,
        share_end: end,
        ..Default::default()
    }
}

#[test]
fn timed_share_warns_then_ends_hard() {
    let mut h = H::new(timed(ShareEnd::Hard));
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    let start = h.now;
    assert!(h.advance(149_999).is_empty());
    let warn = h.advance(1);
    assert!(
        matches!(sends(&warn)[..], [Event::ShareWarning { remaining_seconds: 30, ends_at, .. }] if *ends_at == start + 180_000)
    );
    assert!(h.advance(29_999).is_empty());
    let end = h.advance(1);
    assert!(sends(&end).iter().any(|e| matches!(e, Event::ShareEnded { reason: ShareEndReason::TimeUp, .. })));
    assert_eq!(h.room.floor_holder(), None);
}

#[test]
fn timed_share_soft_end_marks_over_time() {
    let mut h = H::new(timed(ShareEnd::Soft));
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    let end = h.advance(180_000);
    assert!(sends(&end).iter().any(|e| matches!(e, Event::FloorChanged { floor: Some(fl) } if fl.over_time)));
    assert_eq!(h.room.floor_holder(), Some(m));
}

#[test]
fn extension_moves_warning_and_end_and_old_timers_do_nothing() {
    let mut h = H::new(timed(ShareEnd::Hard));
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    h.advance(100_000);
    h.cmd(f, Command::ExtendShare { seconds: Some(60) }).unwrap();
    // Old warning (at 150 s) and end (at 180 s) are stale now.
    assert!(h.advance(109_999).is_empty(), "nothing until the new warning at 210 s");
    assert!(matches!(sends(&h.advance(1))[..], [Event::ShareWarning { .. }]));
    assert_eq!(h.room.floor_holder(), Some(m));
    assert!(sends(&h.advance(30_000)).iter().any(|e| matches!(e, Event::ShareEnded { .. })));
}

#[test]
fn a_new_share_ignores_the_previous_shares_timers() {
    let mut h = H::new(timed(ShareEnd::Hard));
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: a }).unwrap();
    h.advance(100_000);
    h.cmd(f, Command::GiveFloor { participant_id: b }).unwrap();
    h.advance(80_000); // a's end would have been now
    assert_eq!(h.room.floor_holder(), Some(b));
    h.advance(100_000);
    assert_eq!(h.room.floor_holder(), None);
}

// ---- go-around ----

#[test]
fn go_around_passes_skips_leavers_appends_late_arrivals_and_ends() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    let c = h.join("c", Role::Member);
    assert_eq!(h.code(a, Command::Pass), ErrorCode::NoGoAround);
    h.cmd(f, Command::StartGoAround).unwrap();
    assert_eq!(h.code(f, Command::StartGoAround), ErrorCode::GoAroundActive);
    assert_eq!(h.room.floor_holder(), Some(a));
    assert_eq!(h.code(b, Command::Pass), ErrorCode::NotFloorHolder);
    h.cmd(a, Command::Pass).unwrap();
    assert_eq!(h.room.floor_holder(), Some(b));
    let d = h.join("d", Role::Member); // late arrival goes to the end
    h.cmd(c, Command::Leave).unwrap(); // c leaves before their turn
    h.cmd(b, Command::YieldFloor).unwrap();
    assert_eq!(h.room.floor_holder(), Some(d), "c was skipped");
    h.cmd(d, Command::YieldFloor).unwrap();
    assert_eq!(h.room.floor_holder(), None);
    assert!(h.events_to(f).iter().any(|e| matches!(e, Event::GoAround { go_around } if !go_around.active)));
    assert_eq!(h.code(f, Command::EndGoAround), ErrorCode::NoGoAround);
}

#[test]
fn go_around_needs_members() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    h.join("o", Role::Observer);
    assert_eq!(h.code(f, Command::StartGoAround), ErrorCode::NobodyPresent);
}

#[test]
fn go_around_moves_on_when_the_speaker_leaves() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(f, Command::StartGoAround).unwrap();
    h.cmd(a, Command::Leave).unwrap();
    assert_eq!(h.room.floor_holder(), Some(b));
}

// ---- resume ----

#[test]
fn dropped_participant_keeps_seat_hand_and_floor_within_grace() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(b, Command::RaiseHand).unwrap();
    h.cmd(f, Command::GiveFloor { participant_id: a }).unwrap();
    let token = h.p(b).resume_token.clone();
    h.run(Input::Disconnected { participant_id: b }).unwrap();
    h.run(Input::Disconnected { participant_id: a }).unwrap();
    h.advance(29_000);
    let r = h.run(Input::Resume { resume_token: token.clone(), new_resume_token: "next".into() }).unwrap();
    assert_eq!(r, Outcome::Attached { participant_id: b, resumed: true });
    assert_eq!(h.room.queue()[0].participant_id, b);
    assert!(h.p(b).connected);
    // The token worked once.
    assert_eq!(
        h.run(Input::Resume { resume_token: token, new_resume_token: "x".into() }).unwrap_err().code,
        ErrorCode::InvalidResumeToken
    );
    // a did not come back: gone after the grace period, floor released.
    let gone = h.advance(1_000);
    assert!(gone.iter().any(|e| matches!(e, Effect::Presence { change: Presence::Left(LeaveReason::ConnectionLost), participant_id, .. } if *participant_id == a)));
    assert!(h.room.get(a).is_none());
    assert_eq!(h.room.floor_holder(), None);
    // b's old grace timer (30 s after their drop) does nothing now.
    h.advance(60_000);
    assert!(h.room.get(b).is_some());
}

#[test]
fn shutdown_and_end_close_everyone() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(f, Command::EndMeeting).unwrap();
    assert!(h
        .out
        .iter()
        .any(|e| matches!(e, Effect::Send { to: Audience::One(p), event: Event::MeetingEnded { .. } } if *p == m)));
    assert_eq!(
        h.out.iter().filter(|e| matches!(e, Effect::Close { reason: LeaveReason::MeetingEnded, .. })).count(),
        2
    );
    assert!(h.out.contains(&Effect::Ended));
    assert!(h.room.is_ended() && h.room.is_empty());
    assert_eq!(h.join_as("x", Role::Member, Some("x")).unwrap_err().code, ErrorCode::MeetingEnded);
}

#[test]
fn settings_update_validates_and_floor_control_mutes_speakers_without_floor() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    let upd = |fc: Option<bool>, secs: Option<u32>, warn: Option<u32>| Command::UpdateSettings {
        waiting_room: None,
        floor_control: fc,
        share_seconds: secs,
        share_warning_seconds: warn,
        share_end: None,
        video: None,
        hands: None,
    };
    assert_eq!(h.code(f, upd(None, Some(20), Some(30))), ErrorCode::InvalidSettings);
    h.cmd(f, upd(Some(true), None, None)).unwrap();
    assert!(h.p(m).muted);
    assert_eq!(h.code(f, upd(Some(true), None, None)), ErrorCode::NoChange);
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Join { member: u8, role: u8, named: bool },
    Cmd { actor: u8, kind: u8, target: u8, n: u32 },
    Drop { who: u8 },
    Resume { who: u8 },
    Advance { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(member, role, named)| Op::Join { member, role, named }),
        10 => (0u8..8, kind(), 0u8..8, 0u32..400).prop_map(|(actor, kind, target, n)| Op::Cmd { actor, kind, target, n }),
        1 => (0u8..8).prop_map(|who| Op::Drop { who }),
        1 => (0u8..8).prop_map(|who| Op::Resume { who }),
        2 => (0u32..200_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Mostly side-room commands, with what happens around them (hands, floor, chat, mutes, roles,
/// removals, time).
fn side_op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        12 => 38u8..47,
        2 => prop_oneof![Just(0u8), Just(5), Just(7), Just(12), Just(15), Just(24), Just(26), Just(27), Just(32)],
    ];
    prop_oneof![
        1 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(member, role, named)| Op::Join { member, role, named }),
        12 => (0u8..8, kind, 0u8..8, 0u32..400).prop_map(|(actor, kind, target, n)| Op::Cmd { actor, kind, target, n }),
        1 => (0u8..8).prop_map(|who| Op::Drop { who }),
        1 => (0u8..8).prop_map(|who| Op::Resume { who }),
        1 => (0u32..200_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Command kinds, weighted toward the ones whose interplay the invariants are about.
fn kind() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(5u8),  // unmute self
        2 => Just(12u8), // facilitator mute
        1 => Just(14u8), // allow unmute
        2 => Just(27u8), // give floor
        2 => Just(0u8),  // raise hand
        1 => Just(26u8), // next speaker
        1 => Just(9u8),  // admit
        8 => 0u8..38,
        6 => 38u8..47, // side rooms and breakout groups
    ]
}

fn command(kind: u8, target: ParticipantId, n: u32) -> Command {
    let pid = target;
    match kind {
        0 => Command::RaiseHand,
        1 => Command::LowerHand { participant_id: None },
        2 => Command::LowerHand { participant_id: Some(pid) },
        3 => Command::YieldFloor,
        4 => Command::Pass,
        5 => Command::SetMuted { muted: false },
        6 => Command::SetMuted { muted: true },
        7 => Command::Chat { text: "hi".into() },
        8 => Command::SupportRequest { text: None },
        9 => Command::Admit { participant_id: pid },
        10 => Command::AdmitAll,
        11 => Command::Deny { participant_id: pid, message: None },
        12 => Command::Mute { participant_id: pid },
        13 => Command::MuteAll,
        14 => Command::AllowUnmute { participant_id: pid },
        15 => Command::Remove { participant_id: pid, reason: None },
        16 => Command::Ban { participant_id: pid, reason: None },
        17 => Command::Rename { participant_id: pid, display_name: format!("N{n}") },
        18 => Command::Lock,
        19 => Command::Unlock,
        20 => Command::SetChat { enabled: n.is_multiple_of(2) },
        21 => Command::DeleteChat { message_id: u64::from(n % 5) },
        22 => Command::EndMeeting,
        23 => Command::UpdateSettings {
            waiting_room: None,
            floor_control: Some(n.is_multiple_of(2)),
            share_seconds: Some(n % 4 * 60),
            share_warning_seconds: Some(n % 3 * 15),
            share_end: Some(if n.is_multiple_of(5) { ShareEnd::Hard } else { ShareEnd::Soft }),
            video: None,
            hands: n.is_multiple_of(7).then_some(n.is_multiple_of(2)),
        },
        24 => Command::Promote {
            participant_id: pid,
            role: [PromoteTo::Facilitator, PromoteTo::CoFacilitator, PromoteTo::Member][n as usize % 3],
        },
        25 => Command::AckSupport { request_id: u64::from(n % 4) },
        26 => Command::NextSpeaker,
        27 => Command::GiveFloor { participant_id: pid },
        28 => Command::ExtendShare { seconds: Some(n % 120) },
        29 => Command::MoveHand { participant_id: pid, position: n % 4 },
        30 => Command::StartGoAround,
        31 => Command::EndGoAround,
        32 => Command::Leave,
        33 => Command::Mute { participant_id: pid },
        34 => Command::GiveFloor { participant_id: pid },
        36 => Command::NextSegment,
        37 => Command::PreviousSegment,
        38 => Command::StepOut { participant_id: pid, confirm: n.is_multiple_of(2) },
        39 => Command::AnswerStepOut {
            invite_id: u64::from(n % 6),
            accept: !n.is_multiple_of(3),
            confirm: n.is_multiple_of(2),
        },
        40 => Command::ReturnToMain,
        41 => Command::OpenBreakouts {
            groups: 2 + n % 3,
            seconds: 1 + n % 400,
            warning_seconds: Some(n % 50),
            assign: [
                crate::protocol::BreakoutAssign::Auto,
                crate::protocol::BreakoutAssign::Manual,
                crate::protocol::BreakoutAssign::Choose,
            ][n as usize % 3],
            assignments: if n.is_multiple_of(4) { vec![vec![pid]] } else { Vec::new() },
            confirm: n.is_multiple_of(2),
        },
        42 => Command::ChooseBreakout { group: 1 + n % 3, confirm: n.is_multiple_of(2) },
        43 => Command::CloseBreakouts,
        44 => Command::StepOut { participant_id: pid, confirm: true },
        45 => Command::AnswerStepOut { invite_id: u64::from(n % 6), accept: true, confirm: true },
        // Group 1 by hand with its sender (see the property test), so step-outs start from groups too.
        46 => Command::OpenBreakouts {
            groups: 2,
            seconds: 1 + n % 800,
            warning_seconds: None,
            assign: crate::protocol::BreakoutAssign::Manual,
            assignments: vec![vec![pid]],
            confirm: true,
        },
        _ => Command::NextSpeaker,
    }
}

fn check_invariants(room: &Room) {
    let present = |id: ParticipantId| room.get(id).is_some_and(|p| p.admitted);
    if let Some(h) = room.floor_holder() {
        assert!(present(h), "the floor holder is present and admitted");
    }
    let mut seen = std::collections::HashSet::new();
    for q in room.queue() {
        assert!(seen.insert(q.participant_id), "nobody is in the queue twice");
        assert!(present(q.participant_id), "queued participants are present");
    }
    if let Some(g) = &room.go_around {
        for p in &g.order {
            assert!(present(*p), "the go-around lists only those present");
        }
    }
    for p in room.participants() {
        assert!(!p.mute_locked || p.muted, "a mute lock always means muted");
        assert_eq!(p.media, room.media_rule(p), "the media rule sent matches the room's state");
        if p.media.audio {
            assert!(
                !p.muted && p.admitted && p.role != Role::Observer,
                "only unmuted, admitted speakers are forwarded"
            );
            // Floor control is the main room's; in a side room anyone unmuted speaks.
            if room.settings.floor_control && p.location == MAIN && !p.role.is_facilitator() {
                assert_eq!(room.floor_holder(), Some(p.id), "floor control: only the floor holder is forwarded");
            }
        }
        if !p.admitted {
            assert_eq!(p.media, MediaRule::default(), "the waiting room publishes and receives nothing");
        }
    }
    let mut names = std::collections::HashSet::new();
    for p in room.participants() {
        assert!(names.insert(p.name.skeleton().to_string()), "names are unique by skeleton");
    }
}

/// Runs `ops` on a room that starts with a facilitator and three members, checking the invariants,
/// the location invariants and the side rooms' privacy after each step, and a snapshot at the end.
fn run_ops(ops: Vec<Op>, waiting: bool) -> Result<(), TestCaseError> {
    let mut h = H::new(MeetingSettings { waiting_room: waiting, ..Default::default() });
    // A facilitator and three members to start with, so most sequences exercise controls.
    h.join("f0", Role::Facilitator);
    for m in ["m0", "m1", "m2"] {
        h.join(m, Role::Member);
    }
    let roles = [Role::Facilitator, Role::CoFacilitator, Role::Member, Role::Observer];
    for op in ops {
        let ids: Vec<ParticipantId> = h.room.participants().iter().map(|p| p.id).collect();
        let pick = |i: u8| ids.get(i as usize % ids.len().max(1)).copied();
        match op {
            Op::Join { member, role, named } => {
                let name = format!("Person {member}");
                let _ = h.join_as(&format!("m{member}"), roles[role as usize], named.then_some(name.as_str()));
            }
            Op::Cmd { actor, kind, target, n } => {
                let Some(mut from) = pick(actor) else { continue };
                let target = pick(target).unwrap_or(from);
                let mut cmd = command(kind, target, n);
                if let Command::AnswerStepOut { invite_id, .. } = &mut cmd {
                    // Mostly someone who has an invitation answers it, so step-outs happen.
                    let open = &h.room.side.invites;
                    if let Some(inv) = open.get(n as usize % open.len().max(1)).filter(|_| n % 5 != 0) {
                        from = inv.to;
                    }
                    if let Some(inv) = h.room.side.invites.iter().find(|i| i.to == from).filter(|_| n % 5 != 0) {
                        *invite_id = inv.id;
                    }
                }
                if let Command::StepOut { participant_id, .. } = &mut cmd {
                    // Mostly a member of the sender's own room (the main room or a group), so
                    // step-outs happen from both.
                    let here = h.room.get(from).map(|p| p.location).unwrap_or(MAIN);
                    let members: Vec<ParticipantId> = h
                        .room
                        .occupants(here)
                        .filter(|p| p.id != from && !p.role.is_facilitator())
                        .map(|p| p.id)
                        .collect();
                    if !members.is_empty() && n % 4 != 0 {
                        *participant_id = members[n as usize % members.len()];
                    }
                }
                if let (46, Command::OpenBreakouts { assignments, .. }) = (kind, &mut cmd) {
                    // The sender runs group 1 with everyone in the main room (so that a
                    // facilitator in a group steps out with a member of it now and then).
                    *assignments = vec![std::iter::once(from)
                        .chain(h.room.occupants(MAIN).map(|p| p.id).filter(|&p| p != from))
                        .collect()];
                }
                let before = format!("{:?}", h.room);
                let actor = h.room.get(from).cloned();
                let actor_role = actor.as_ref().map(|p| p.role);
                let was_locked = actor.as_ref().is_some_and(|p| p.mute_locked);
                let fac_only = cmd.is_facilitator_only();
                let unmute = cmd == Command::SetMuted { muted: false };
                let side_before: Vec<(ParticipantId, Location)> =
                    h.room.participants().iter().filter(|p| p.location != MAIN).map(|p| (p.id, p.location)).collect();
                let result = h.cmd(from, cmd);
                side_tests::check_privacy(&h, &side_before);
                let after = format!("{:?}", h.room);
                match &result {
                    Err(_) => {
                        prop_assert_eq!(&before, &after, "an error leaves the room unchanged");
                        prop_assert!(h.out.is_empty(), "an error has no effects");
                    }
                    Ok(()) => prop_assert_ne!(&before, &after, "a successful command changes the room"),
                }
                if fac_only && !actor_role.is_some_and(Role::is_facilitator) {
                    prop_assert_eq!(result.as_ref().map_err(|e| e.code), Err(ErrorCode::Forbidden));
                }
                if unmute && was_locked {
                    prop_assert!(result.is_err(), "a member's own command never lifts a facilitator's mute");
                }
                if was_locked && !actor_role.is_some_and(Role::is_facilitator) {
                    if let Some(p) = h.room.get(from) {
                        prop_assert!(p.muted, "still muted after their own command");
                    }
                }
            }
            Op::Drop { who } => {
                if let Some(p) = pick(who) {
                    h.disconnect(p);
                }
            }
            Op::Resume { who } => {
                if let Some(p) = pick(who) {
                    let r = h.resume(p);
                    prop_assert!(r.is_ok() || h.room.is_ended());
                }
            }
            Op::Advance { ms } => {
                h.advance(u64::from(ms));
            }
        }
        check_invariants(&h.room);
        side_tests::check_locations(&h.room);
    }
    // Whatever happened, a snapshot carries every decision to another node (cluster).
    let bytes = crate::room::snapshot::encode(&h.room.to_snapshot(h.now));
    let snap = crate::room::snapshot::decode(&bytes).expect("a snapshot decodes");
    let mut out = Vec::new();
    let restored = Room::restore(snap, RoomLimits::default(), [], h.now, h.now + 1, &mut out);
    prop_assert!(h.room.same_state(&restored), "a restored room holds the same decisions");
    check_invariants(&restored);
    side_tests::check_locations(&restored);
    prop_assert!(restored.participants().iter().all(|p| !p.connected), "everyone comes back by resume");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn room_invariants_hold_under_random_commands(ops in proptest::collection::vec(op(), 1..120), waiting in any::<bool>()) {
        run_ops(ops, waiting)?;
    }

    /// The same with side rooms and breakout groups most of the time: step-outs from the main room
    /// and from inside groups, groups closing around them, returns.
    #[test]
    fn room_invariants_hold_under_random_side_room_commands(ops in proptest::collection::vec(side_op(), 1..120)) {
        run_ops(ops, false)?;
    }
}

#[test]
fn video_policy_decides_whose_camera_reaches_whom() {
    use crate::protocol::VideoPolicy;
    let mut h = H::new(MeetingSettings {
        waiting_room: false,
        video: VideoPolicy::MembersToFacilitators,
        ..Default::default()
    });
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    let o = h.join("o", Role::Observer);
    assert_eq!(h.p(m).media.video, VideoAudience::Facilitators);
    assert_eq!(h.p(f).media.video, VideoAudience::Everyone);
    assert_eq!(h.p(o).media.video, VideoAudience::Nobody);
    assert!(h.p(f).media.receives_private_video && !h.p(m).media.receives_private_video);
    let upd = |v| Command::UpdateSettings {
        waiting_room: None,
        floor_control: None,
        share_seconds: None,
        share_warning_seconds: None,
        share_end: None,
        video: Some(v),
        hands: None,
    };
    h.cmd(f, upd(VideoPolicy::FacilitatorsOnly)).unwrap();
    assert_eq!(h.p(m).media.video, VideoAudience::Nobody);
    assert!(h.out.iter().any(|e| matches!(e, Effect::MediaRule { participant_id, .. } if *participant_id == m)));
    h.cmd(f, upd(VideoPolicy::Everyone)).unwrap();
    assert_eq!(h.p(m).media.video, VideoAudience::Everyone);
}

#[test]
fn the_waiting_room_hears_and_publishes_nothing_and_leaving_releases_media() {
    let mut h = H::new(MeetingSettings::default());
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    assert_eq!(h.p(m).media, MediaRule::default());
    h.cmd(f, Command::Admit { participant_id: m }).unwrap();
    assert!(h.p(m).media.receives);
    h.cmd(m, Command::Leave).unwrap();
    assert!(h.out.contains(&Effect::MediaClosed { participant_id: m }));
}

#[test]
fn a_restored_room_keeps_every_decision_and_records_the_outage_as_a_gap() {
    let mut h = H::new(MeetingSettings {
        waiting_room: false,
        floor_control: true,
        share_seconds: Some(120),
        ..Default::default()
    });
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    let c = h.join("c", Role::Member);
    let d = h.join("d", Role::Member);
    let x = h.join("x", Role::Member);
    for p in [b, c, d] {
        h.cmd(p, Command::RaiseHand).unwrap();
    }
    h.cmd(f, Command::GiveFloor { participant_id: a }).unwrap();
    h.cmd(f, Command::Mute { participant_id: c }).unwrap();
    h.cmd(f, Command::Ban { participant_id: x, reason: None }).unwrap();
    h.cmd(f, Command::Lock).unwrap();
    let snap = h.room.to_snapshot(h.now);
    let c_token = h.p(c).resume_token.clone();

    // The owner dies; another node restores 8 s later, the owner last seen alive 2 s after the snapshot.
    let gap_start = h.now + 2_000;
    let now = h.now + 8_000;
    let mut out = Vec::new();
    let mut room = Room::restore(snap, RoomLimits::default(), [], gap_start, now, &mut out);
    assert!(h.room.same_state(&room));
    assert_eq!(room.floor_holder(), Some(a));
    assert_eq!(room.queue().iter().map(|q| q.participant_id).collect::<Vec<_>>(), vec![b, c, d]);
    assert!(room.is_locked());
    // Everyone who was connected is recorded as gone from when the owner was last alive.
    let gaps: Vec<(ParticipantId, Millis)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Presence { participant_id, change: Presence::Disconnected, at, .. } => Some((*participant_id, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps.len(), 5, "{gaps:?}");
    assert!(gaps.iter().all(|(_, at)| *at == gap_start));
    assert!(!out.iter().any(|e| matches!(e, Effect::Send { .. })), "nobody is connected to tell");
    // The muted member comes back muted, by the token issued before the crash, and cannot unmute.
    let mut out = Vec::new();
    let r = room.handle(Input::Resume { resume_token: c_token, new_resume_token: "new".into() }, now + 10, &mut out);
    assert_eq!(r.unwrap(), Outcome::Attached { participant_id: c, resumed: true });
    assert!(out.iter().any(|e| matches!(e, Effect::Presence { change: Presence::Resumed, .. })));
    let mut out = Vec::new();
    let e = room.handle(Input::Command { from: c, command: Command::SetMuted { muted: false } }, now + 20, &mut out);
    assert!(e.is_err());
    // The banned member is still refused.
    assert_eq!(room.join_refusal(&key("x"), Role::Member).map(|e| e.code), Some(ErrorCode::Banned));
}

#[test]
fn a_handed_over_room_does_not_record_the_gap_twice() {
    let mut h = H::open();
    h.join("fac", Role::Facilitator);
    h.join("a", Role::Member);
    let mut snap = h.room.to_snapshot(h.now);
    snap.handed_over = true;
    let mut out = Vec::new();
    let room = Room::restore(snap, RoomLimits::default(), [], h.now, h.now + 10, &mut out);
    assert_eq!(room.len(), 2);
    assert!(!out.iter().any(|e| matches!(e, Effect::Presence { .. })));
    let graces = out.iter().filter(|e| matches!(e, Effect::SetTimer { timer: Timer::Grace { .. }, .. })).count();
    assert_eq!(graces, 2, "every seat waits for its owner to come back");
}

// Meeting formats (issue 15): segments, their rules and overrides, in virtual time.
#[path = "format_tests.rs"]
mod format_tests;

// Side rooms and breakout groups (issue 17).
#[path = "side_tests.rs"]
mod side_tests;

// Stable fuzzing of the room core (issue 12): byte-driven input sequences, invariants per step.
#[path = "fuzz.rs"]
mod fuzz;
