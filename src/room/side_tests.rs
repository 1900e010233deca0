//! Side rooms and breakout groups in virtual time (issue 17), and the privacy property: nobody in
//! the main room receives anything of a side room beyond "away".

use super::*;
use crate::protocol::{BreakoutAssign, ErrorCode, LocationKind};

fn step_out(_by: ParticipantId, m: ParticipantId) -> Command {
    Command::StepOut { participant_id: m, confirm: false }
}

fn invite_to(h: &H, pid: ParticipantId) -> u64 {
    h.events_to(pid)
        .iter()
        .find_map(|e| if let Event::StepOutInvite { invite_id, .. } = e { Some(*invite_id) } else { None })
        .expect("an invitation")
}

fn accept(invite_id: u64) -> Command {
    Command::AnswerStepOut { invite_id, accept: true, confirm: false }
}

fn loc(h: &H, id: ParticipantId) -> Location {
    h.p(id).location
}

/// A facilitator, a co-facilitator (so the main room keeps one), a member and another member.
fn four() -> (H, ParticipantId, ParticipantId, ParticipantId, ParticipantId) {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let c = h.join("cof", Role::CoFacilitator);
    let m = h.join("alex", Role::Member);
    let o = h.join("other", Role::Member);
    (h, f, c, m, o)
}

/// Whom `to` was told is no longer away (the `participant_updated` frames showing them back).
fn seen_back(h: &H, to: ParticipantId) -> Vec<ParticipantId> {
    h.events_to(to)
        .iter()
        .filter_map(|e| match e {
            Event::ParticipantUpdated { participant } if !participant.away => Some(participant.participant_id),
            _ => None,
        })
        .collect()
}

/// `f` steps out with `m`; returns the side room.
fn stepped_out(h: &mut H, f: ParticipantId, m: ParticipantId) -> Location {
    h.cmd(f, step_out(f, m)).unwrap();
    let inv = invite_to(h, m);
    h.cmd(m, accept(inv)).unwrap();
    loc(h, m)
}

#[test]
fn step_out_asks_the_member_and_the_main_room_sees_both_only_as_away() {
    let (mut h, f, _c, m, o) = four();
    let _ = f;
    h.cmd(f, step_out(f, m)).unwrap();
    assert!(h.events_to(o).is_empty(), "nobody else hears of the invitation");
    assert_eq!(loc(&h, m), MAIN, "nobody moves before the member says yes");
    let inv = invite_to(&h, m);
    h.cmd(m, accept(inv)).unwrap();
    let side = loc(&h, m);
    assert_ne!(side, MAIN);
    assert_eq!(loc(&h, f), side, "both are in the one side room");
    for who in [f, m] {
        let got = h.events_to(who);
        let view = got.iter().find_map(|e| match e {
            Event::LocationChanged { location: Some(l), participants, .. } => Some((l.clone(), participants.clone())),
            _ => None,
        });
        let (l, participants) = view.expect("a fresh view of the side room");
        assert_eq!(l.kind, LocationKind::StepOut);
        assert_eq!(l.participants.len(), 2);
        assert!(l.participants.contains(&f) && l.participants.contains(&m));
        assert!(participants.iter().filter(|p| p.participant_id == o).all(|p| !p.away), "the main room is not away");
    }
    // The main room: both away, nothing else.
    let to_o = h.events_to(o);
    assert!(!to_o.is_empty());
    for e in &to_o {
        match e {
            Event::ParticipantUpdated { participant } => {
                assert!(participant.away, "{participant:?}");
                assert!(participant.muted && !participant.can_unmute);
            }
            e => panic!("the main room got more than away: {e:?}"),
        }
    }
    // Media: the two hear each other, the main room hears neither.
    assert_eq!(h.p(m).media.location, side);
    assert_eq!(h.p(f).media.location, side);
    assert_eq!(h.p(o).media.location, MAIN);
    // Inside, talking and chat stay inside.
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    h.cmd(m, Command::Chat { text: "I am not ok".into() }).unwrap();
    assert!(h.events_to(o).is_empty(), "chat and mute changes inside reach nobody outside");
    assert!(h.events_to(f).iter().any(|e| matches!(e, Event::Chat { .. })));
}

#[test]
fn a_member_can_decline_a_step_out() {
    let (mut h, f, c, m, o) = four();
    h.cmd(f, step_out(f, m)).unwrap();
    let inv = invite_to(&h, m);
    h.cmd(m, Command::AnswerStepOut { invite_id: inv, accept: false, confirm: false }).unwrap();
    assert!(matches!(&h.events_to(f)[..], [Event::StepOutDeclined { participant_id }] if *participant_id == m));
    for who in [c, o] {
        assert!(h.events_to(who).is_empty(), "nobody else learns of it");
    }
    assert_eq!((loc(&h, f), loc(&h, m)), (MAIN, MAIN));
    assert_eq!(h.code(m, accept(inv)), ErrorCode::InviteNotFound, "a declined invitation is gone");
    // Members cannot ask anyone out; facilitators cannot be asked from the main room.
    assert_eq!(h.code(m, step_out(m, o)), ErrorCode::Forbidden);
    assert_eq!(h.code(f, step_out(f, c)), ErrorCode::Forbidden);
}

#[test]
fn queue_and_floor_are_per_location() {
    let (mut h, f, c, m, o) = four();
    h.cmd(o, Command::RaiseHand).unwrap();
    let side = stepped_out(&mut h, f, m);
    h.cmd(m, Command::RaiseHand).unwrap();
    assert!(h.events_to(o).is_empty(), "the side room's queue is its own");
    assert!(h
        .events_to(f)
        .iter()
        .any(|e| matches!(e, Event::QueueUpdated { queue } if queue.len() == 1 && queue[0].participant_id == m)));
    assert_eq!(h.room.queue().len(), 1, "the main room's queue still holds only its own hand");
    assert_eq!(h.room.queue()[0].participant_id, o);
    h.cmd(f, Command::GiveFloor { participant_id: m }).unwrap();
    assert_eq!(h.room.floor_holder(), None, "the main room's floor is untouched");
    assert_eq!(h.room.stage(side).floor.map(|f| f.holder), Some(m));
    assert!(h.events_to(o).is_empty());
    // Naming someone in another room is refused.
    assert_eq!(h.code(f, Command::GiveFloor { participant_id: o }), ErrorCode::WrongLocation);
    assert_eq!(h.code(c, Command::GiveFloor { participant_id: m }), ErrorCode::WrongLocation);
    h.cmd(c, Command::NextSpeaker).unwrap();
    assert_eq!(h.room.floor_holder(), Some(o), "the main room's queue runs on");
    assert!(h.events_to(m).iter().all(|e| !matches!(e, Event::FloorChanged { .. })));
}

/// Found by the property test: floor control is the main room's. A member who steps out under
/// floor control speaks to the facilitator without being given the floor (a private conversation
/// in which someone asks for help), and is muted again on coming back without the floor; the same
/// in a breakout group, which may have no facilitator to give the floor.
#[test]
fn floor_control_gates_the_main_room_only() {
    let mut h = H::new(MeetingSettings { waiting_room: false, floor_control: true, ..Default::default() });
    let f = h.join("fac", Role::Facilitator);
    let c = h.join("cof", Role::CoFacilitator);
    let m = h.join("alex", Role::Member);
    let o = h.join("other", Role::Member);
    assert_eq!(h.code(m, Command::SetMuted { muted: false }), ErrorCode::FloorRequired);
    stepped_out(&mut h, f, m);
    assert!(!h.p(m).media.audio && h.p(m).muted);
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(m).media.audio, "heard in the step-out without the floor");
    assert_eq!(h.room.floor_holder(), None);
    h.cmd(m, Command::ReturnToMain).unwrap();
    assert!(h.p(m).muted && !h.p(m).media.audio, "back in the main room without the floor: muted");
    // A breakout group without a facilitator: its members are heard.
    h.cmd(f, breakouts(2, 300, BreakoutAssign::Manual, vec![vec![m, o], vec![]])).unwrap();
    assert_ne!(loc(&h, o), MAIN);
    h.cmd(o, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(o).media.audio, "a group without a facilitator is not silenced by the main room's rule");
    h.cmd(c, Command::CloseBreakouts).unwrap();
    assert!(h.p(o).muted && !h.p(o).media.audio);
}

#[test]
fn returning_restores_the_main_rooms_view() {
    let (mut h, f, c, m, o) = four();
    stepped_out(&mut h, f, m);
    h.cmd(o, Command::RaiseHand).unwrap();
    h.cmd(c, Command::GiveFloor { participant_id: o }).unwrap();
    h.cmd(m, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, f), loc(&h, m)), (MAIN, MAIN), "either can return; the step-out then closes");
    for who in [f, m] {
        let snap = h.events_to(who).into_iter().find_map(|e| match e {
            Event::LocationChanged { location: None, participants, floor, .. } => Some((participants, floor)),
            _ => None,
        });
        let (participants, floor) = snap.expect("the main room's view");
        assert!(participants.iter().all(|p| !p.away));
        assert_eq!(floor.map(|f| f.participant_id), Some(o));
    }
    let back = seen_back(&h, o);
    assert!(back.contains(&f) && back.contains(&m), "the main room sees them back");
    assert_eq!(h.p(m).media.location, MAIN);
    assert_eq!(h.code(m, Command::ReturnToMain), ErrorCode::NotInSideRoom);
}

#[test]
fn the_only_facilitator_is_warned_and_the_main_room_pauses_until_one_is_back() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("alex", Role::Member);
    let o = h.join("other", Role::Member);
    h.cmd(f, Command::GiveFloor { participant_id: o }).unwrap();
    assert_eq!(h.code(f, step_out(f, m)), ErrorCode::ConfirmRequired, "warned first");
    h.cmd(f, Command::StepOut { participant_id: m, confirm: true }).unwrap();
    let inv = invite_to(&h, m);
    h.cmd(m, accept(inv)).unwrap();
    assert!(h.room.meeting_view().main_room_paused);
    assert_eq!(h.room.floor_holder(), None, "the main room's floor waits");
    assert!(h.events_to(o).iter().any(|e| matches!(e, Event::MeetingUpdated { meeting } if meeting.main_room_paused)));
    h.cmd(f, Command::ReturnToMain).unwrap();
    assert!(!h.room.meeting_view().main_room_paused);
    assert!(h.events_to(o).iter().any(|e| matches!(e, Event::MeetingUpdated { meeting } if !meeting.main_room_paused)));
}

#[test]
fn another_facilitator_can_be_brought_in_and_either_returns() {
    let (mut h, f, c, m, o) = four();
    let side = stepped_out(&mut h, f, m);
    h.cmd(f, Command::StepOut { participant_id: c, confirm: false }).unwrap();
    let inv = invite_to(&h, c);
    // c is now the main room's only facilitator: warned too.
    assert_eq!(h.code(c, accept(inv)), ErrorCode::ConfirmRequired);
    h.cmd(c, Command::AnswerStepOut { invite_id: inv, accept: true, confirm: true }).unwrap();
    assert_eq!(loc(&h, c), side);
    assert!(h
        .events_to(m)
        .iter()
        .any(|e| matches!(e, Event::LocationChanged { location: Some(l), .. } if l.participants.len() == 3)));
    h.cmd(f, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, c), loc(&h, m)), (side, side), "a facilitator stays with the member");
    h.cmd(c, Command::ReturnToMain).unwrap();
    assert_eq!(loc(&h, m), MAIN, "without a facilitator the side room closes");
    let _ = o;
}

#[test]
fn a_member_removed_or_banned_in_a_side_room_leaves_the_meeting() {
    for ban in [false, true] {
        let (mut h, f, _c, m, o) = four();
        stepped_out(&mut h, f, m);
        let cmd = if ban {
            Command::Ban { participant_id: m, reason: None }
        } else {
            Command::Remove { participant_id: m, reason: None }
        };
        h.cmd(f, cmd).unwrap();
        assert!(h.room.get(m).is_none(), "out of the meeting, not just the side room");
        let reason = if ban { LeaveReason::Banned } else { LeaveReason::Removed };
        assert!(h.out.contains(&Effect::Close { participant_id: m, reason }));
        assert!(h.out.iter().any(|e| matches!(e, Effect::Presence { participant_id, change: Presence::Left(r), .. } if *participant_id == m && *r == reason)));
        assert_eq!(loc(&h, f), MAIN, "the facilitator is back");
        assert!(h
            .events_to(o)
            .iter()
            .any(|e| matches!(e, Event::ParticipantLeft { participant_id, .. } if *participant_id == m)));
        if ban {
            assert_eq!(h.join_as("alex", Role::Member, Some("alex")).unwrap_err().code, ErrorCode::Banned);
        }
    }
}

#[test]
fn side_room_time_is_presence_and_the_audit_log_says_who_and_when_never_what() {
    let (mut h, f, _c, m, _o) = four();
    h.cmd(f, step_out(f, m)).unwrap();
    let inv = invite_to(&h, m);
    h.cmd(m, accept(inv)).unwrap();
    assert!(!h.out.iter().any(|e| matches!(e, Effect::Presence { .. })), "moving records no presence change");
    let opened: Vec<&AuditEntry> =
        h.out.iter().filter_map(|e| if let Effect::Audit(a) = e { Some(a) } else { None }).collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(
        (opened[0].action, opened[0].actor, opened[0].target, opened[0].at),
        ("side_room_opened", f, Some(m), h.now)
    );
    assert_eq!(opened[0].detail, None);
    h.cmd(m, Command::Chat { text: "private words".into() }).unwrap();
    assert!(!h.out.iter().any(|e| matches!(e, Effect::Audit(_))), "nothing said inside is audited");
    h.now += 60_000;
    h.cmd(m, Command::ReturnToMain).unwrap();
    assert!(!h.out.iter().any(|e| matches!(e, Effect::Presence { .. })));
    assert!(h.out.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == "side_room_closed" && a.at == h.now && a.target == Some(m) && a.detail.is_none())));
}

fn breakouts(groups: u32, seconds: u32, assign: BreakoutAssign, assignments: Vec<Vec<ParticipantId>>) -> Command {
    Command::OpenBreakouts { groups, seconds, warning_seconds: Some(30), assign, assignments, confirm: false }
}

#[test]
fn three_breakout_groups_each_hear_only_their_own_and_return_when_time_is_up() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let members: Vec<ParticipantId> = (0..6).map(|i| h.join(&format!("m{i}"), Role::Member)).collect();
    h.cmd(f, breakouts(3, 300, BreakoutAssign::Auto, vec![])).unwrap();
    assert_eq!(loc(&h, f), MAIN, "the facilitator stays unless assigned");
    let mut by_group: std::collections::HashMap<Location, Vec<ParticipantId>> = Default::default();
    for &m in &members {
        assert_ne!(loc(&h, m), MAIN);
        by_group.entry(h.p(m).media.location).or_default().push(m);
    }
    assert_eq!(by_group.len(), 3);
    assert!(by_group.values().all(|g| g.len() == 2), "spread evenly");
    assert!(h
        .events_to(f)
        .iter()
        .any(|e| matches!(e, Event::BreakoutsUpdated { breakouts: Some(b) } if b.groups.len() == 3)));
    // Each group's floor and chat are its own.
    let g1 = by_group.values().next().unwrap().clone();
    h.cmd(g1[0], Command::Chat { text: "hello group".into() }).unwrap();
    for &m in &members {
        let got = h.events_to(m).iter().any(|e| matches!(e, Event::Chat { .. }));
        assert_eq!(got, g1.contains(&m), "chat stays in its group");
    }
    let warned = h.advance(271_000);
    assert!(sends(&warned).iter().any(|e| matches!(e, Event::BreakoutWarning { remaining_seconds: 30, .. })));
    let back = h.advance(30_000);
    assert!(sends(&back).iter().any(|e| matches!(e, Event::BreakoutsUpdated { breakouts: None })));
    for &m in &members {
        assert_eq!(loc(&h, m), MAIN, "everyone returns at the end");
        assert_eq!(h.p(m).media.location, MAIN);
    }
    assert!(back.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == "breakouts_closed")));
}

#[test]
fn a_facilitators_mute_follows_a_member_into_their_group() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let m = h.join("m", Role::Member);
    let n = h.join("n", Role::Member);
    let ob = h.join("ob", Role::Observer);
    h.cmd(f, Command::Mute { participant_id: m }).unwrap();
    h.cmd(f, breakouts(2, 600, BreakoutAssign::Manual, vec![vec![m, ob], vec![n]])).unwrap();
    assert_ne!(loc(&h, m), MAIN);
    assert_eq!(h.code(m, Command::SetMuted { muted: false }), ErrorCode::MuteLocked);
    assert!(!h.p(m).media.audio, "still not forwarded");
    assert_eq!(
        h.code(ob, Command::SetMuted { muted: false }),
        ErrorCode::ObserverCannotSpeak,
        "observers stay observers"
    );
    h.cmd(n, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(n).media.audio);
    // A facilitator anywhere can still act: the ban and mute are the meeting's.
    h.cmd(f, Command::AllowUnmute { participant_id: m }).unwrap();
    h.cmd(m, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(m).media.audio);
    h.cmd(f, Command::CloseBreakouts).unwrap();
    assert!([m, n, ob].iter().all(|&p| loc(&h, p) == MAIN), "return everyone");
}

/// A facilitator visits any group, whatever the assignment, moves between groups and comes back;
/// the main room's last facilitator is asked to confirm first; a member cannot choose unless the
/// facilitator let members choose.
#[test]
fn a_facilitator_visits_a_breakout_group_and_comes_back() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    let stay = h.join("stay", Role::Member);
    h.cmd(f, breakouts(2, 600, BreakoutAssign::Manual, vec![vec![a], vec![b]])).unwrap();
    assert_eq!(h.code(a, Command::ChooseBreakout { group: 2, confirm: true }), ErrorCode::NoBreakouts);
    // The only facilitator in the main room, with `stay` there: confirm first.
    assert_eq!(h.code(f, Command::ChooseBreakout { group: 1, confirm: false }), ErrorCode::ConfirmRequired);
    assert_eq!(loc(&h, f), MAIN);
    h.cmd(f, Command::ChooseBreakout { group: 1, confirm: true }).unwrap();
    assert_eq!(loc(&h, f), loc(&h, a), "visiting group 1");
    assert!(h.out.iter().any(|e| matches!(e, Effect::Audit(x) if x.action == "breakout_visited")));
    assert!(h.room.side.paused, "the main room pauses while no facilitator is there");
    // Group 1 hears the visitor; group 2 and the main room do not.
    h.cmd(f, Command::SetMuted { muted: false }).unwrap();
    assert!(h.p(f).media.audio && h.p(f).media.location == h.p(a).media.location);
    assert_ne!(h.p(f).media.location, h.p(b).media.location);
    h.cmd(f, Command::ChooseBreakout { group: 2, confirm: false }).unwrap();
    assert_eq!(loc(&h, f), loc(&h, b), "on to group 2");
    assert_ne!(loc(&h, a), loc(&h, f), "group 1 goes on without them");
    h.cmd(f, Command::ReturnToMain).unwrap();
    assert_eq!(loc(&h, f), MAIN);
    assert!(!h.room.side.paused);
    assert_eq!(loc(&h, stay), MAIN);
    assert_ne!(loc(&h, b), MAIN, "the group stays open");
}

#[test]
fn breakouts_by_hand_with_a_facilitator_per_group_and_by_choice() {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let c = h.join("cof", Role::CoFacilitator);
    let a = h.join("a", Role::Member);
    let b = h.join("b", Role::Member);
    h.cmd(f, breakouts(2, 600, BreakoutAssign::Manual, vec![vec![c, a]])).unwrap();
    assert_eq!(loc(&h, c), loc(&h, a), "a facilitator runs group 1");
    assert_eq!(loc(&h, b), MAIN, "by hand: the unassigned stay");
    h.cmd(c, Command::GiveFloor { participant_id: a }).unwrap();
    assert_eq!(h.room.stage(loc(&h, a)).floor.map(|x| x.holder), Some(a));
    assert_eq!(h.code(b, Command::ChooseBreakout { group: 2, confirm: false }), ErrorCode::NoBreakouts);
    assert_eq!(h.code(f, breakouts(2, 60, BreakoutAssign::Auto, vec![])), ErrorCode::BreakoutsOpen);
    h.cmd(c, Command::CloseBreakouts).unwrap();
    h.cmd(f, breakouts(3, 600, BreakoutAssign::Choose, vec![])).unwrap();
    assert!([c, a, b].iter().all(|&p| loc(&h, p) == MAIN), "choosing: everyone picks");
    h.cmd(a, Command::ChooseBreakout { group: 3, confirm: false }).unwrap();
    h.cmd(b, Command::ChooseBreakout { group: 3, confirm: false }).unwrap();
    assert_eq!(loc(&h, a), loc(&h, b));
    assert_eq!(h.code(b, Command::ChooseBreakout { group: 3, confirm: false }), ErrorCode::NoChange);
    assert_eq!(h.code(b, Command::ChooseBreakout { group: 9, confirm: false }), ErrorCode::NoBreakouts);
    assert!(matches!(
        h.room.breakouts_view(),
        Some(v) if v.groups.iter().any(|g| g.group == 3 && g.participants.len() == 2)
    ));
    // Bad plans are refused and change nothing.
    h.cmd(f, Command::CloseBreakouts).unwrap();
    for (groups, secs) in [(1, 60), (21, 60), (2, 0), (2, 14_401)] {
        assert_eq!(h.code(f, breakouts(groups, secs, BreakoutAssign::Auto, vec![])), ErrorCode::InvalidSettings);
    }
    assert_eq!(h.code(f, breakouts(2, 60, BreakoutAssign::Auto, vec![vec![a], vec![a]])), ErrorCode::InvalidSettings);
    h.cmd(f, breakouts(2, 60, BreakoutAssign::Manual, vec![vec![f]])).unwrap();
    h.cmd(f, Command::CloseBreakouts).unwrap();
    assert_eq!(h.code(f, breakouts(2, 60, BreakoutAssign::Manual, vec![vec![f], vec![c]])), ErrorCode::ConfirmRequired);
}

#[test]
fn a_dropped_connection_in_a_side_room_keeps_the_seat_there_and_resume_shows_it() {
    let (mut h, f, _c, m, o) = four();
    let side = stepped_out(&mut h, f, m);
    h.run(Input::Disconnected { participant_id: m }).unwrap();
    assert!(h.events_to(o).iter().all(|e| matches!(e, Event::ParticipantUpdated { participant } if participant.away)));
    let token = h.p(m).resume_token.clone();
    h.run(Input::Resume { resume_token: token, new_resume_token: "r2".into() }).unwrap();
    assert_eq!(loc(&h, m), side);
    match h.room.snapshot(m) {
        Some(Event::Welcome { location: Some(l), participants, .. }) => {
            assert_eq!(l.kind, LocationKind::StepOut);
            assert!(participants.iter().any(|p| p.participant_id == o && !p.away));
        }
        e => panic!("expected the side room's welcome, got {e:?}"),
    }
    match h.room.snapshot(o) {
        Some(Event::Welcome { location: None, participants, .. }) => {
            assert!(participants.iter().filter(|p| p.participant_id == m || p.participant_id == f).all(|p| p.away));
        }
        e => panic!("expected the main room's welcome, got {e:?}"),
    }
    // The grace period running out in a side room closes it.
    h.run(Input::Disconnected { participant_id: m }).unwrap();
    h.advance(31_000);
    assert!(h.room.get(m).is_none());
    assert_eq!(loc(&h, f), MAIN);
}

#[test]
fn a_restored_room_keeps_its_side_rooms_their_stages_and_the_breakout_timer() {
    let (mut h, f, c, m, o) = four();
    let side = stepped_out(&mut h, f, m);
    h.cmd(m, Command::RaiseHand).unwrap();
    let n = h.join("n", Role::Member);
    h.cmd(
        c,
        Command::OpenBreakouts {
            groups: 2,
            seconds: 600,
            warning_seconds: None,
            assign: BreakoutAssign::Manual,
            assignments: vec![vec![o], vec![n]],
            confirm: true,
        },
    )
    .unwrap();
    let group = loc(&h, o);
    let bytes = snapshot::encode(&h.room.to_snapshot(h.now));
    let snap = snapshot::decode(&bytes).unwrap();
    let mut out = Vec::new();
    let mut room = Room::restore(snap, RoomLimits::default(), [], h.now, h.now + 1_000, &mut out);
    assert!(h.room.same_state(&room));
    check_locations(&room);
    assert_eq!((room.get(m).unwrap().location, room.get(f).unwrap().location), (side, side));
    assert_eq!(room.get(o).unwrap().location, group);
    assert_eq!(room.stage(side).queue.len(), 1, "the side room's queue came along");
    assert!(room.get(m).unwrap().media.location == side, "media rules follow the restored locations");
    // The breakout groups still end on time on the new owner.
    let end = out.iter().find_map(|e| match e {
        Effect::SetTimer { at, timer: t @ Timer::Breakout { warning: false, .. } } => Some((*at, *t)),
        _ => None,
    });
    let (at, timer) = end.expect("the breakout's end is set again");
    assert_eq!(at, h.now + 600_000);
    let mut out = Vec::new();
    room.handle(Input::Timer(timer), at, &mut out).unwrap();
    assert_eq!(room.get(o).unwrap().location, MAIN, "everyone returns at the end");
    assert_eq!(room.get(m).unwrap().location, side, "a step-out is no breakout group");
}

/// A facilitator `f`, a co-facilitator `c` and members `a`, `b`, `x`, all in the main room (see
/// [`groups_with_a_facilitator`]).
struct Five {
    h: H,
    f: ParticipantId,
    c: ParticipantId,
    a: ParticipantId,
    b: ParticipantId,
    x: ParticipantId,
}

fn five() -> Five {
    let mut h = H::open();
    let f = h.join("fac", Role::Facilitator);
    let c = h.join("cof", Role::CoFacilitator);
    let a = h.join("alex", Role::Member);
    let b = h.join("bo", Role::Member);
    let x = h.join("xi", Role::Member);
    Five { h, f, c, a, b, x }
}

/// `f` (in the main room) opens two groups by hand: the co-facilitator `c` runs group 1 with `a`
/// and `b`; `x` is in group 2. Returns group 1 and group 2.
fn groups_with_a_facilitator(
    h: &mut H,
    f: ParticipantId,
    c: ParticipantId,
    a: ParticipantId,
    b: ParticipantId,
    x: ParticipantId,
) -> (Location, Location) {
    h.cmd(f, breakouts(2, 600, BreakoutAssign::Manual, vec![vec![c, a, b], vec![x]])).unwrap();
    let (g1, g2) = (loc(h, a), loc(h, x));
    assert!(g1 != MAIN && g2 != MAIN && g1 != g2);
    assert_eq!((loc(h, c), loc(h, b)), (g1, g1));
    (g1, g2)
}

/// Everything `who` got in the last input, checked to say nothing of `x` beyond "away".
fn only_away(h: &H, who: ParticipantId, xs: &[ParticipantId]) {
    for e in h.events_to(who) {
        for &x in xs {
            assert!(!reveals(&e, x), "{who:?} learned more than away of {x:?}: {e:?}");
        }
        assert!(!matches!(e, Event::Chat { .. } | Event::StepOutInvite { .. }), "{who:?} got {e:?}");
    }
}

#[test]
fn a_facilitator_in_a_breakout_group_steps_out_with_a_member_of_it_and_both_return_to_the_group() {
    let Five { mut h, f, c, a, b, x } = five();
    let (g1, g2) = groups_with_a_facilitator(&mut h, f, c, a, b, x);

    // The group's facilitator asks; nobody else hears of it. No warning: the main room keeps `f`.
    h.cmd(c, step_out(c, a)).unwrap();
    for who in [f, b, x] {
        assert!(h.events_to(who).is_empty(), "nobody else hears of the invitation");
    }
    let inv = invite_to(&h, a);
    h.cmd(a, accept(inv)).unwrap();
    let side = loc(&h, a);
    assert!(side != MAIN && side != g1 && side != g2, "a side room of its own");
    assert_eq!(loc(&h, c), side);
    assert_eq!(loc(&h, b), g1, "the rest of the group stays");
    for who in [a, c] {
        let view = h.events_to(who).into_iter().find_map(|e| match e {
            Event::LocationChanged { location: Some(l), participants, .. } => Some((l, participants)),
            _ => None,
        });
        let (l, participants) = view.expect("a fresh view of the step-out");
        assert_eq!(l.kind, LocationKind::StepOut);
        assert_eq!(l.group, None);
        assert!(l.participants.len() == 2 && l.participants.contains(&a) && l.participants.contains(&c));
        assert!(participants.iter().any(|p| p.participant_id == b && p.away), "the group is elsewhere now");
    }
    // The group sees the two as away and nothing more; its own view no longer lists them.
    let to_b = h.events_to(b);
    let away: Vec<ParticipantId> = to_b
        .iter()
        .filter_map(|e| match e {
            Event::ParticipantUpdated { participant } if participant.away => Some(participant.participant_id),
            _ => None,
        })
        .collect();
    let group_view = to_b.iter().find_map(|e| match e {
        Event::LocationChanged { location: Some(l), participants, .. } => Some((l.clone(), participants.clone())),
        _ => None,
    });
    let (l, participants) = group_view.expect("the group's fresh view");
    assert_eq!((l.kind, l.group, l.participants.clone()), (LocationKind::Breakout, Some(1), vec![b]));
    for id in [a, c] {
        assert!(
            away.contains(&id) || participants.iter().any(|p| p.participant_id == id && p.away),
            "the group sees {id:?} as away"
        );
        assert!(participants.iter().filter(|p| p.participant_id == id).all(|p| p.away && p.muted && !p.can_unmute));
    }
    for who in [b, f, x] {
        only_away(&h, who, &[a, c]);
    }
    assert!(
        !h.out.iter().any(
            |e| matches!(e, Effect::Send { event: Event::MeetingUpdated { meeting }, .. } if meeting.main_room_paused)
        ),
        "the main room keeps its facilitator"
    );
    // Media: the two hear each other only; the group and the main room go on.
    assert_eq!((h.p(a).media.location, h.p(c).media.location), (side, side));
    assert_eq!((h.p(b).media.location, h.p(x).media.location, h.p(f).media.location), (g1, g2, MAIN));
    // What happens inside stays inside, and the group's stage is its own.
    h.cmd(a, Command::SetMuted { muted: false }).unwrap();
    h.cmd(a, Command::Chat { text: "I am not ok".into() }).unwrap();
    for who in [b, f, x] {
        assert!(h.events_to(who).is_empty(), "nothing of the step-out reaches {who:?}");
    }
    h.cmd(a, Command::RaiseHand).unwrap();
    h.cmd(b, Command::RaiseHand).unwrap();
    assert!(h.events_to(a).is_empty() && h.events_to(c).is_empty(), "the group's queue is its own");
    assert_eq!(h.room.stage(g1).queue.iter().map(|q| q.participant_id).collect::<Vec<_>>(), vec![b]);
    assert_eq!(h.room.stage(side).queue.iter().map(|q| q.participant_id).collect::<Vec<_>>(), vec![a]);
    assert_eq!(h.code(c, Command::GiveFloor { participant_id: b }), ErrorCode::WrongLocation);
    check_locations(&h.room);

    // The member returns: to the group, not the main room; the step-out, left with one, closes
    // and the facilitator is back in the group too.
    h.now += 60_000;
    h.cmd(a, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, a), loc(&h, c)), (g1, g1), "both are back in their group");
    assert!(h.out.iter().any(|e| matches!(e, Effect::Audit(au) if au.action == "side_room_closed" && au.target == Some(a) && au.detail.is_none())));
    for who in [a, c] {
        let view = h.events_to(who).into_iter().find_map(|e| match e {
            Event::LocationChanged { location, participants, queue, .. } => Some((location, participants, queue)),
            _ => None,
        });
        let (l, participants, queue) = view.expect("the group's view again");
        let l = l.expect("in a breakout group, not the main room");
        assert_eq!((l.kind, l.group), (LocationKind::Breakout, Some(1)));
        assert_eq!(l.participants.len(), 3);
        assert!(participants.iter().any(|p| p.participant_id == b && !p.away));
        assert_eq!(queue.iter().map(|q| q.participant_id).collect::<Vec<_>>(), vec![b], "the group's queue");
    }
    let back = seen_back(&h, b);
    assert!(back.contains(&a) && back.contains(&c), "the group sees them back");
    for who in [f, x] {
        only_away(&h, who, &[a, c, b]);
    }
    assert_eq!((h.p(a).media.location, h.p(c).media.location), (g1, g1));
    assert!(matches!(
        h.room.breakouts_view(),
        Some(v) if v.groups.iter().any(|g| g.group == 1 && g.participants.len() == 3)
    ));
    check_locations(&h.room);
    // The groups end as usual: everyone is in the main room.
    h.advance(600_000);
    assert!([a, b, c, x].iter().all(|&p| loc(&h, p) == MAIN));
}

#[test]
fn a_step_out_from_a_group_outlives_the_groups_and_then_returns_to_the_main_room() {
    let Five { mut h, f, c, a, b, x } = five();
    groups_with_a_facilitator(&mut h, f, c, a, b, x);
    let side = stepped_out(&mut h, c, a);
    // "Return everyone" does not break up a private conversation.
    h.cmd(f, Command::CloseBreakouts).unwrap();
    assert_eq!((loc(&h, b), loc(&h, x)), (MAIN, MAIN));
    assert_eq!((loc(&h, a), loc(&h, c)), (side, side), "the step-out goes on");
    only_away(&h, f, &[a, c]);
    check_locations(&h.room);
    // Its group is gone: back to the main room.
    h.cmd(c, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, a), loc(&h, c)), (MAIN, MAIN));
    assert!(h.events_to(a).iter().any(|e| matches!(e, Event::LocationChanged { location: None, .. })));

    // An invitation made in a group is withdrawn when the group closes before the answer.
    groups_with_a_facilitator(&mut h, f, c, a, b, x);
    h.cmd(c, step_out(c, a)).unwrap();
    let inv = invite_to(&h, a);
    h.cmd(f, Command::CloseBreakouts).unwrap();
    assert!(h.events_to(a).iter().any(|e| matches!(e, Event::StepOutWithdrawn { invite_id } if *invite_id == inv)));
    assert_eq!(h.code(a, accept(inv)), ErrorCode::InviteNotFound);
    assert!([a, c].iter().all(|&p| loc(&h, p) == MAIN));
}

#[test]
fn in_a_group_a_step_out_takes_only_its_own_members_and_each_returns_where_they_came_from() {
    let Five { mut h, f, c, a, b, x } = five();
    let (g1, _g2) = groups_with_a_facilitator(&mut h, f, c, a, b, x);
    // Only with someone in one's own room.
    assert_eq!(h.code(c, step_out(c, x)), ErrorCode::WrongLocation, "not with another group's member");
    assert_eq!(h.code(f, step_out(f, a)), ErrorCode::WrongLocation, "not from the main room into a group");
    assert_eq!(h.code(b, step_out(b, a)), ErrorCode::Forbidden, "members cannot");
    let side = stepped_out(&mut h, c, a);
    // From the step-out, the main room's facilitator can be asked in (warned: the last one there).
    h.cmd(c, Command::StepOut { participant_id: f, confirm: false }).unwrap();
    let inv = invite_to(&h, f);
    assert_eq!(h.code(f, accept(inv)), ErrorCode::ConfirmRequired);
    h.cmd(f, Command::AnswerStepOut { invite_id: inv, accept: true, confirm: true }).unwrap();
    assert_eq!(loc(&h, f), side);
    assert!(h.room.meeting_view().main_room_paused);
    // Each goes back where they came from: the group's facilitator to the group...
    h.cmd(c, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, c), loc(&h, a), loc(&h, f)), (g1, side, side));
    // ...the main room's to the main room, and the member, left alone, to their group.
    h.cmd(f, Command::ReturnToMain).unwrap();
    assert_eq!((loc(&h, f), loc(&h, a)), (MAIN, g1));
    assert!(!h.room.meeting_view().main_room_paused);
    check_locations(&h.room);
}

// ---- the property: one location each, and the main room learns only "away" ----

/// Whether `event`, reaching someone outside `x`'s side room, reveals more of `x` than "away".
pub(super) fn reveals(event: &Event, x: ParticipantId) -> bool {
    let id = serde_json::to_string(&x).unwrap_or_default();
    fn has<T: serde::Serialize>(v: &T, id: &str) -> bool {
        serde_json::to_string(v).unwrap_or_default().contains(id)
    }
    let mentions = |v: &dyn Fn(&str) -> bool| v(&id);
    match event {
        Event::ParticipantUpdated { participant } | Event::ParticipantJoined { participant } => {
            participant.participant_id == x && !participant.away
        }
        Event::ParticipantLeft { .. }
        | Event::BreakoutsUpdated { .. }
        | Event::SupportRequest { .. }
        | Event::SupportAcknowledged { .. }
        | Event::WaitingList { .. }
        | Event::StepOutInvite { .. } => false,
        Event::Welcome { participants, queue, floor, go_around, .. }
        | Event::LocationChanged { participants, queue, floor, go_around, .. } => {
            participants.iter().any(|p| p.participant_id == x && !p.away)
                || mentions(&|id| has(queue, id) || has(floor, id) || has(go_around, id))
        }
        e => has(e, &id),
    }
}

/// The structural invariants of locations.
pub(super) fn check_locations(room: &Room) {
    for p in room.participants() {
        assert!(room.location_exists(p.location), "everyone is in a room that exists");
        if !p.admitted {
            assert_eq!(p.location, MAIN, "the waiting room is no side room");
        }
        assert_eq!(p.media.location, if p.admitted { p.location } else { MAIN }, "media follows the location");
    }
    let here = |id: ParticipantId| room.get(id).map(|p| p.location);
    for r in &room.side.rooms {
        let stage = room.stage(r.id);
        for q in stage.queue {
            assert_eq!(here(q.participant_id), Some(r.id), "a side room's queue holds its own occupants");
        }
        if let Some(f) = stage.floor {
            assert_eq!(here(f.holder), Some(r.id), "a side room's floor is its occupant's");
        }
        if matches!(r.kind, side::Kind::StepOut { .. }) {
            assert!(room.occupants(r.id).count() >= 2, "a step-out has two people at least");
            assert!(room.occupants(r.id).any(|p| p.role.is_facilitator()), "and a facilitator");
        }
    }
    for q in room.queue() {
        assert_eq!(here(q.participant_id), Some(MAIN), "the main room's queue holds main-room people");
    }
    if let Some(h) = room.floor_holder() {
        assert_eq!(here(h), Some(MAIN));
    }
    assert_eq!(room.side.here, MAIN, "no stage is left swapped in");
}

/// After an input: nobody outside a side room got anything revealing more than "away" of someone
/// who was in that side room before the input and still is.
pub(super) fn check_privacy(h: &H, before: &[(ParticipantId, Location)]) {
    let stayed: Vec<(ParticipantId, Location)> =
        before.iter().copied().filter(|&(id, l)| h.room.get(id).is_some_and(|p| p.location == l)).collect();
    for r in h.room.participants() {
        for e in h.events_to(r.id) {
            for &(x, l) in &stayed {
                if r.location != l && x != r.id {
                    assert!(!reveals(&e, x), "{:?} in {} got {e:?} about {x:?} in {l}", r.id, r.location);
                }
            }
        }
    }
}
