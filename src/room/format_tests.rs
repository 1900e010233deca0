//! Formats in the room core (issue 15), in virtual time: segments, their rules, overrides.

use super::*;
use crate::protocol::{FormatSpec, GoAroundWho, Segment, SegmentRules, ShareEnd, WhoMayUnmute};
use std::sync::Arc;

fn seg(title: &str, minutes: Option<u32>, rules: SegmentRules) -> Segment {
    Segment { title: title.into(), planned_minutes: minutes, rules, auto_advance: false }
}

/// A recovery meeting's shape: readings by the chair, a check-in round, open sharing, a closing.
fn group_format() -> FormatSpec {
    FormatSpec {
        segments: vec![
            seg(
                "Readings",
                Some(5),
                SegmentRules { unmute: WhoMayUnmute::Facilitators, hands: false, chat: false, ..Default::default() },
            ),
            seg(
                "Check-in round",
                Some(15),
                SegmentRules {
                    unmute: WhoMayUnmute::FloorHolder,
                    hands: false,
                    share_seconds: Some(120),
                    share_warning_seconds: 20,
                    share_end: ShareEnd::Hard,
                    go_around: Some(GoAroundWho::Members),
                    ..Default::default()
                },
            ),
            seg(
                "Open sharing",
                Some(30),
                SegmentRules {
                    unmute: WhoMayUnmute::FloorHolder,
                    share_seconds: Some(300),
                    share_end: ShareEnd::Soft,
                    ..Default::default()
                },
            ),
            seg("Open discussion", None, SegmentRules::default()),
        ],
        segment_warning_seconds: 120,
    }
}

fn start(h: &mut H, spec: FormatSpec) {
    h.run(Input::StartFormat(Arc::new(spec))).unwrap();
}

fn segment_changes(out: &[Effect]) -> Vec<u32> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { event: Event::SegmentChanged { segment }, .. } => Some(segment.index),
            _ => None,
        })
        .collect()
}

/// The settings every other rule reads agree with the rules in force.
pub(super) fn assert_settings_follow(room: &Room) {
    let r = room.rules_in_force().unwrap();
    let s = room.settings();
    assert_eq!(s.floor_control, r.unmute != WhoMayUnmute::Anyone);
    assert_eq!(
        (s.share_seconds, s.share_warning_seconds, s.share_end),
        (r.share_seconds, r.share_warning_seconds, r.share_end)
    );
    assert_eq!(s.chat_enabled, r.chat);
    assert_eq!(s.hands, r.hands);
}

fn hands(v: bool) -> Command {
    Command::UpdateSettings {
        waiting_room: None,
        floor_control: None,
        share_seconds: None,
        share_warning_seconds: None,
        share_end: None,
        video: None,
        hands: Some(v),
    }
}

/// A facilitator opens hands within a segment that has none (a question during the readings),
/// and the next segment starts from its own rule; outside a format, hands can be paused and a
/// hand already up stays until lowered.
#[test]
fn hands_are_overridden_within_a_segment_and_paused_in_any_meeting() {
    let mut h = H::open();
    start(&mut h, group_format());
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    assert_eq!(h.code(a, Command::RaiseHand), ErrorCode::SegmentRules);
    h.cmd(f, hands(true)).unwrap();
    assert_eq!(h.room.overrides().and_then(|o| o.hands), Some(true));
    assert_settings_follow(&h.room);
    h.cmd(a, Command::RaiseHand).unwrap();
    h.cmd(a, Command::LowerHand { participant_id: None }).unwrap();
    // The check-in round has no hands either: its own rule again.
    h.cmd(f, Command::NextSegment).unwrap();
    assert_eq!(h.room.overrides().and_then(|o| o.hands), None);
    assert_eq!(h.code(a, Command::RaiseHand), ErrorCode::SegmentRules);
    // Open sharing has hands; a facilitator pauses them: paused, not the segment's rule.
    h.cmd(f, Command::NextSegment).unwrap();
    h.cmd(f, hands(false)).unwrap();
    assert_eq!(h.code(a, Command::RaiseHand), ErrorCode::HandsPaused);
    assert_settings_follow(&h.room);

    // Without a format.
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(a, Command::RaiseHand).unwrap();
    assert_eq!(h.code(a, hands(false)), ErrorCode::Forbidden);
    h.cmd(f, hands(false)).unwrap();
    assert!(!h.room.settings().hands);
    assert_eq!(h.code(b, Command::RaiseHand), ErrorCode::HandsPaused);
    h.cmd(f, Command::RaiseHand).unwrap();
    assert_eq!(h.room.queue().len(), 2, "a hand already up stays; facilitators always may");
    h.cmd(a, Command::LowerHand { participant_id: None }).unwrap();
    h.cmd(f, hands(true)).unwrap();
    h.cmd(b, Command::RaiseHand).unwrap();
}

#[test]
fn moving_through_a_formats_segments_applies_each_segments_rules() {
    let mut h = H::open();
    start(&mut h, group_format());
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    // Readings: only the chair speaks; no hands, no chat.
    assert_eq!(h.room.segment_index(), Some(0));
    assert_settings_follow(&h.room);
    assert_eq!(h.code(a, Command::SetMuted { muted: false }), ErrorCode::SegmentRules);
    assert_eq!(h.code(a, Command::RaiseHand), ErrorCode::SegmentRules);
    assert_eq!(h.code(a, Command::Chat { text: "hi".into() }), ErrorCode::ChatDisabled);
    assert_eq!(h.code(a, Command::NextSegment), ErrorCode::Forbidden);
    assert_eq!(h.code(f, Command::PreviousSegment), ErrorCode::NoSuchSegment);
    h.cmd(f, Command::SetMuted { muted: false }).unwrap();

    // Check-in round: a timed, hard-ended round starts by itself with the first member.
    h.cmd(f, Command::NextSegment).unwrap();
    assert_eq!(segment_changes(&h.out), vec![1]);
    assert_settings_follow(&h.room);
    assert_eq!(h.room.floor_holder(), Some(a));
    assert_eq!(h.code(b, Command::SetMuted { muted: false }), ErrorCode::FloorRequired);
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(a).media.audio);
    h.advance(120_000);
    assert_eq!(h.room.floor_holder(), Some(b), "the hard share end passes the round on");
    assert!(!h.p(a).media.audio && h.p(a).muted);

    // Open sharing: hands and the queue; the round of the last segment is over.
    h.cmd(f, Command::NextSegment).unwrap();
    assert_eq!(h.room.floor_holder(), None);
    assert!(h.room.go_around.is_none());
    assert_eq!(h.room.settings().share_seconds, Some(300));
    h.cmd(b, Command::RaiseHand).unwrap();
    h.cmd(f, Command::NextSpeaker).unwrap();
    assert_eq!(h.room.floor_holder(), Some(b));
    h.cmd(a, Command::Chat { text: "thank you".into() }).unwrap();

    // Open discussion: anyone may unmute; it is the last segment.
    h.cmd(f, Command::NextSegment).unwrap();
    assert_settings_follow(&h.room);
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(a).media.audio);
    assert_eq!(h.code(f, Command::NextSegment), ErrorCode::NoSuchSegment);
    // And back: readings again mute a at once.
    h.cmd(f, Command::PreviousSegment).unwrap();
    h.cmd(f, Command::PreviousSegment).unwrap();
    h.cmd(f, Command::PreviousSegment).unwrap();
    assert_eq!(h.room.segment_index(), Some(0));
    assert!(h.p(a).muted && !h.p(a).media.audio);
}

#[test]
fn a_member_who_could_unmute_is_refused_with_segment_rules_in_the_next_segment_and_not_forwarded() {
    let mut h = H::open();
    start(
        &mut h,
        FormatSpec {
            segments: vec![
                seg("Open discussion", None, SegmentRules::default()),
                seg(
                    "Psycho-education",
                    Some(20),
                    SegmentRules { unmute: WhoMayUnmute::Facilitators, ..Default::default() },
                ),
            ],
            segment_warning_seconds: 120,
        },
    );
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(a).media.audio, "forwarded while anyone may speak");
    h.cmd(f, Command::NextSegment).unwrap();
    // One input: the segment's event, a's new state and a's media rule all at once.
    assert_eq!(segment_changes(&h.out), vec![1]);
    assert!(h.out.contains(&Effect::MediaRule { participant_id: a, rule: MediaRule { audio: false, ..h.p(a).media } }));
    assert!(h.p(a).muted && !h.p(a).media.audio, "not forwarded in the next segment");
    let e = h.cmd(a, Command::SetMuted { muted: false }).unwrap_err();
    assert_eq!(e.code, ErrorCode::SegmentRules);
    assert!(e.message.contains("Psycho-education"), "{}", e.message);
    assert!(!h.p(a).media.audio);
    // The facilitator's word still overrides within the segment: the floor lets a speak.
    h.cmd(f, Command::GiveFloor { participant_id: a }).unwrap();
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(a).media.audio);
}

#[test]
fn a_go_around_segment_starts_its_round() {
    let mut h = H::open();
    start(
        &mut h,
        FormatSpec {
            segments: vec![
                seg("Welcome", None, SegmentRules::default()),
                seg(
                    "Check-in",
                    None,
                    SegmentRules {
                        unmute: WhoMayUnmute::FloorHolder,
                        go_around: Some(GoAroundWho::Members),
                        ..Default::default()
                    },
                ),
                seg(
                    "Check-out",
                    None,
                    SegmentRules {
                        unmute: WhoMayUnmute::FloorHolder,
                        go_around: Some(GoAroundWho::Everyone),
                        ..Default::default()
                    },
                ),
            ],
            segment_warning_seconds: 120,
        },
    );
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let _o = h.join("o", Role::Observer);
    let b = h.join("b", Role::Member);
    assert!(h.room.go_around.is_none());
    h.cmd(f, Command::NextSegment).unwrap();
    let round = h.events_to(b).into_iter().find_map(|e| match e {
        Event::GoAround { go_around } => Some(go_around),
        _ => None,
    });
    let round = round.expect("everyone is told the round started");
    assert_eq!(round.order, vec![a, b], "members in order of arrival; no observers, no facilitators");
    assert_eq!(round.current, Some(a));
    assert_eq!(h.room.floor_holder(), Some(a));
    h.cmd(a, Command::Pass).unwrap();
    assert_eq!(h.room.floor_holder(), Some(b));
    // Check-out: the round of the check-in ends with its segment; the new one includes facilitators.
    h.cmd(f, Command::NextSegment).unwrap();
    assert_eq!(h.room.go_around.as_ref().map(|g| g.order.clone()), Some(vec![a, b, f]));
    assert_eq!(h.room.floor_holder(), Some(a));
}

#[test]
fn a_segment_warns_facilitators_before_its_end_and_moves_on_only_when_the_format_says_so() {
    let mut h = H::open();
    let mut spec = group_format();
    spec.segments[1].auto_advance = true;
    start(&mut h, spec);
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    // Readings: 5 minutes, warned 2 minutes before; nothing moves on at the end.
    let fired = h.advance(3 * 60_000 - 1);
    assert!(fired.is_empty());
    let fired = h.advance(1);
    let warning = fired.iter().find_map(|e| match e {
        Effect::Send { to, event: Event::SegmentWarning { index, remaining_seconds, .. } } => {
            Some((*to, *index, *remaining_seconds))
        }
        _ => None,
    });
    assert_eq!(warning, Some((Audience::Facilitators, 0, 120)));
    let fired = h.advance(10 * 60_000);
    assert!(segment_changes(&fired).is_empty(), "a segment without auto_advance waits for the facilitator");
    assert_eq!(h.room.segment_index(), Some(0));
    // Check-in says auto_advance: at its planned end it moves to open sharing by itself.
    h.cmd(f, Command::NextSegment).unwrap();
    let fired = h.advance(15 * 60_000);
    assert_eq!(segment_changes(&fired), vec![2]);
    assert_eq!(h.room.segment_index(), Some(2));
    // A timer of a segment left early does nothing: back to check-in, then on at once.
    h.cmd(f, Command::PreviousSegment).unwrap();
    h.cmd(f, Command::NextSegment).unwrap();
    let fired = h.advance(60 * 60_000);
    assert!(segment_changes(&fired).is_empty(), "the check-in's end timer is stale");
    let _ = a;
}

#[test]
fn facilitator_overrides_hold_within_a_segment_and_the_next_segment_starts_from_its_own_rules() {
    let mut h = H::open();
    start(&mut h, group_format());
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    h.cmd(f, Command::SetChat { enabled: true }).unwrap();
    h.cmd(
        f,
        Command::UpdateSettings {
            waiting_room: None,
            floor_control: Some(false),
            share_seconds: None,
            share_warning_seconds: None,
            share_end: None,
            video: None,
            hands: None,
        },
    )
    .unwrap();
    let o = h.room.overrides().unwrap().clone();
    assert_eq!((o.chat, o.unmute), (Some(true), Some(WhoMayUnmute::Anyone)));
    assert_settings_follow(&h.room);
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    h.cmd(a, Command::Chat { text: "hello".into() }).unwrap();
    h.cmd(f, Command::NextSegment).unwrap();
    assert_eq!(h.room.overrides(), Some(&RuleOverrides::default()));
    assert_eq!(h.room.rules_in_force(), Some(&group_format().segments[1].rules));
    assert_settings_follow(&h.room);
}

#[test]
fn welcome_carries_the_agenda_and_a_meeting_without_a_format_has_none() {
    let mut h = H::open();
    start(&mut h, group_format());
    let m = h.join("m", Role::Member);
    match h.room.snapshot(m) {
        Some(Event::Welcome { agenda: Some(agenda), .. }) => {
            assert_eq!(agenda.segments.len(), 4);
            assert_eq!(agenda.segments[1].title, "Check-in round");
            assert_eq!(agenda.current.index, 0);
            assert_eq!(agenda.current.planned_end, Some(agenda.current.started_at + 5 * 60_000));
        }
        other => panic!("no agenda: {other:?}"),
    }
    let mut plain = H::open();
    let f = plain.join("fac", Role::Facilitator);
    assert!(matches!(plain.room.snapshot(f), Some(Event::Welcome { agenda: None, .. })));
    assert_eq!(plain.code(f, Command::NextSegment), ErrorCode::NoFormat);
}

/// The formats the property test runs: every kind of rule, a timed auto-advancing segment.
pub(super) fn prop_format() -> FormatSpec {
    let mut spec = group_format();
    spec.segments[0].planned_minutes = Some(1);
    spec.segments[0].auto_advance = true;
    spec.segments.push(seg(
        "Closing",
        Some(2),
        SegmentRules { go_around: Some(GoAroundWho::Everyone), chat: false, ..Default::default() },
    ));
    spec
}

/// The test's own account of the overrides: from the commands that succeeded.
fn expect_overrides(model: &mut RuleOverrides, in_force: &SegmentRules, cmd: &Command) {
    match cmd {
        Command::SetChat { enabled } => model.chat = Some(*enabled),
        Command::UpdateSettings { floor_control, share_seconds, share_warning_seconds, share_end, hands, .. } => {
            if let Some(v) = hands {
                if *v != in_force.hands {
                    model.hands = Some(*v);
                }
            }
            if let Some(v) = floor_control {
                if *v != (in_force.unmute != WhoMayUnmute::Anyone) {
                    model.unmute = Some(if *v { WhoMayUnmute::FloorHolder } else { WhoMayUnmute::Anyone });
                }
            }
            if let Some(v) = share_seconds {
                let v = (*v > 0).then_some(*v);
                if v != in_force.share_seconds {
                    model.share_seconds = Some(v);
                }
            }
            if let Some(v) = share_warning_seconds {
                if *v != in_force.share_warning_seconds {
                    model.share_warning_seconds = Some(*v);
                }
            }
            if let Some(v) = share_end {
                if *v != in_force.share_end {
                    model.share_end = Some(*v);
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After any sequence of commands, segment changes (by hand and by timer) and drops, the
    /// rules in force are the current segment's rules plus the facilitators' overrides, and the
    /// settings every other rule reads agree with them.
    #[test]
    fn rules_in_force_equal_the_current_segments_rules_plus_overrides(
        ops in proptest::collection::vec(op(), 1..120),
        moves in proptest::collection::vec(any::<u8>(), 120),
    ) {
        let spec = prop_format();
        let mut h = H::open();
        start(&mut h, spec.clone());
        h.join("f0", Role::Facilitator);
        for m in ["m0", "m1", "m2"] {
            h.join(m, Role::Member);
        }
        let mut model = RuleOverrides::default();
        for (i, op) in ops.into_iter().enumerate() {
            let ids: Vec<ParticipantId> = h.room.participants().iter().map(|p| p.id).collect();
            let pick = |i: u8| ids.get(i as usize % ids.len().max(1)).copied();
            // Every few steps a facilitator (or anyone) moves the agenda.
            let m = moves[i % moves.len()];
            if m % 4 == 0 {
                if let Some(from) = pick(m / 4) {
                    let cmd = if m % 8 == 0 { Command::NextSegment } else { Command::PreviousSegment };
                    let _ = h.cmd(from, cmd);
                }
            } else {
                match op {
                    Op::Join { member, role, .. } => {
                        let roles = [Role::Facilitator, Role::CoFacilitator, Role::Member, Role::Observer];
                        let _ = h.join_as(&format!("m{member}"), roles[role as usize], None);
                    }
                    Op::Cmd { actor, kind, target, n } => {
                        let Some(from) = pick(actor) else { continue };
                        let cmd = command(kind, pick(target).unwrap_or(from), n);
                        let in_force = h.room.rules_in_force().cloned().unwrap();
                        if h.cmd(from, cmd.clone()).is_ok() {
                            expect_overrides(&mut model, &in_force, &cmd);
                        }
                    }
                    Op::Drop { who } => {
                        if let Some(p) = pick(who) {
                            h.disconnect(p);
                        }
                    }
                    Op::Resume { who } => {
                        if let Some(p) = pick(who) {
                            let _ = h.resume(p);
                        }
                    }
                    Op::Advance { ms } => {
                        let fired = h.advance(u64::from(ms));
                        if !segment_changes(&fired).is_empty() {
                            model = RuleOverrides::default();
                        }
                    }
                }
            }
            if !segment_changes(&h.out).is_empty() {
                model = RuleOverrides::default();
            }
            if h.room.is_ended() {
                break;
            }
            let idx = h.room.segment_index().unwrap();
            prop_assert_eq!(h.room.overrides(), Some(&model));
            prop_assert_eq!(h.room.rules_in_force(), Some(&model.apply(&spec.segments[idx].rules)));
            assert_settings_follow(&h.room);
            check_invariants(&h.room);
        }
    }
}

#[test]
fn a_room_snapshot_carries_the_current_segment_its_overrides_and_its_timers() {
    let mut h = H::open();
    start(&mut h, group_format());
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    h.cmd(f, Command::NextSegment).unwrap();
    h.cmd(f, Command::NextSegment).unwrap();
    h.cmd(f, Command::SetChat { enabled: false }).unwrap();
    h.advance(60_000);
    let snap = super::snapshot::decode(&super::snapshot::encode(&h.room.to_snapshot(h.now))).unwrap();
    let now = h.now + 5_000;
    let mut out = Vec::new();
    let mut room = Room::restore(snap, RoomLimits::default(), [], h.now, now, &mut out);
    assert!(h.room.same_state(&room));
    assert_eq!(room.segment_index(), Some(2));
    assert_eq!(room.overrides().and_then(|o| o.chat), Some(false));
    assert_eq!(room.settings().share_seconds, Some(300), "open sharing's rules hold");
    // Open sharing's 30 minutes still end where they did: the warning and the end are set again.
    let started = h.room.segment_view().unwrap().started_at;
    let timers: Vec<(Millis, Timer)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::SetTimer { at, timer: t @ (Timer::SegmentWarning { .. } | Timer::SegmentEnd { .. }) } => {
                Some((*at, *t))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        timers.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
        vec![started + 28 * 60_000, started + 30 * 60_000]
    );
    let mut out = Vec::new();
    room.handle(Input::Timer(timers[0].1), started + 28 * 60_000, &mut out).unwrap();
    assert!(out.iter().any(|e| matches!(e, Effect::Send { event: Event::SegmentWarning { index: 2, .. }, .. })));
    // And the agenda moves on from there.
    let mut out = Vec::new();
    room.handle(Input::Command { from: f, command: Command::NextSegment }, now + 10, &mut out).unwrap();
    assert_eq!(room.segment_index(), Some(3));
    let _ = a;
}
