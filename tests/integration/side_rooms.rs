//! Side rooms and breakout groups over real sockets (issue 17): media with webrtc-rs peers against
//! the str0m SFU (who hears whom, by packet counters), and the step-out's signaling.

use crate::media::{assert_not_forwarded, MediaPeer};
use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Packets that may still arrive from before a move (see the breakout test).
const IN_FLIGHT: u64 = 15;

fn pid(c: &Client) -> String {
    c.pid.clone().unwrap()
}

/// `f` asks `m` to step out (confirming: `f` is the only facilitator) and `m` accepts.
async fn step_out(f: &mut MediaPeer, m: &mut MediaPeer) {
    f.send(json!({"type": "step_out", "participant_id": m.pid, "confirm": true})).await;
    let invite = m.event("step_out_invite").await;
    assert_eq!(invite["participant_id"], f.pid.as_str());
    m.send(json!({"type": "answer_step_out", "invite_id": invite["invite_id"], "accept": true})).await;
    let here = m.event("location_changed").await;
    assert_eq!(here["location"]["kind"], "step_out", "{here}");
    let there = f.event("location_changed").await;
    assert_eq!(there["location"]["kind"], "step_out", "{there}");
}

#[tokio::test]
async fn step_out_the_two_hear_each_other_nobody_else_hears_them_and_the_main_room_hears_them_again_after() {
    let app = spawn_app().await;
    let mut f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    let mut m = MediaPeer::join(&app, "open", "alex", Member, false).await;
    let mut speaker = MediaPeer::join(&app, "open", "speaker", Member, false).await;
    let mut l = MediaPeer::join(&app, "open", "listener", Member, false).await;
    for p in [&f, &m, &speaker] {
        p.send(json!({"type": "set_muted", "muted": false})).await;
    }
    // Positive control: the main room hears all three.
    for from in [&f.pid, &m.pid, &speaker.pid] {
        l.wait_received(from, "audio", 20).await;
    }
    step_out(&mut f, &mut m).await;
    // The two hear each other...
    let (fm, mf) = (f.received(&m.pid, "audio"), m.received(&f.pid, "audio"));
    m.wait_received(&f.pid, "audio", mf + 25).await;
    f.wait_received(&m.pid, "audio", fm + 25).await;
    // ...nobody else hears them, and they hear nothing of the main room...
    assert_not_forwarded(&mut m, &l, "audio").await;
    assert_not_forwarded(&mut f, &l, "audio").await;
    assert_not_forwarded(&mut f, &speaker, "audio").await;
    assert_not_forwarded(&mut speaker, &m, "audio").await;
    assert_not_forwarded(&mut speaker, &f, "audio").await;
    // ...while the main room keeps hearing its speaker.
    let before = l.received(&speaker.pid, "audio");
    l.wait_received(&speaker.pid, "audio", before + 25).await;
    // After the return, the main room hears them again, and they the main room.
    m.send(json!({"type": "return_to_main"})).await;
    let back = m.event("location_changed").await;
    assert!(back["location"].is_null(), "{back}");
    for from in [&f.pid, &m.pid] {
        let before = l.received(from, "audio");
        l.wait_received(from, "audio", before + 20).await;
    }
    let before = m.received(&speaker.pid, "audio");
    m.wait_received(&speaker.pid, "audio", before + 20).await;
    // Numbering continues across the absence, both ways: no gap reads as loss to a jitter buffer.
    assert_eq!(l.largest_jump(&m.pid, "audio"), Some(1), "the main room's stream of m has a gap");
    assert_eq!(m.largest_jump(&speaker.pid, "audio"), Some(1), "m's stream of the main room has a gap");
}

/// Waits for 20 more packets of `from`'s audio at `listener`.
async fn hears_more(listener: &mut MediaPeer, from: &str) {
    let n = listener.received(from, "audio") + 20;
    listener.wait_received(from, "audio", n).await;
}

#[tokio::test]
async fn a_step_out_inside_a_breakout_group_isolates_the_two_from_their_group_and_returns_them_to_it() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    let mut c = MediaPeer::join(&app, "open", "group-fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "open", "alex", Member, false).await;
    let mut b = MediaPeer::join(&app, "open", "bo", Member, false).await;
    for p in [&c, &a, &b] {
        p.send(json!({"type": "set_muted", "muted": false})).await;
    }
    // Group 1 by hand, run by the second facilitator; the first stays in the main room.
    f.send(json!({"type": "open_breakouts", "groups": 2, "seconds": 3600, "assign": "manual",
        "assignments": [[c.pid, a.pid, b.pid]]}))
        .await;
    for p in [&mut c, &mut a, &mut b] {
        let here = p.event("location_changed").await;
        assert_eq!(
            (here["location"]["kind"].as_str(), here["location"]["group"].as_u64()),
            (Some("breakout"), Some(1))
        );
    }
    // Positive control: the group hears itself.
    hears_more(&mut b, &a.pid).await;
    hears_more(&mut b, &c.pid).await;
    hears_more(&mut a, &b.pid).await;

    // The group's facilitator steps out with alex: no confirmation, the main room keeps its own.
    c.send(json!({"type": "step_out", "participant_id": a.pid})).await;
    let invite = a.event("step_out_invite").await;
    assert_eq!(invite["participant_id"], c.pid.as_str());
    a.send(json!({"type": "answer_step_out", "invite_id": invite["invite_id"], "accept": true})).await;
    for p in [&mut a, &mut c] {
        let here = p.event("location_changed").await;
        assert_eq!(here["location"]["kind"], "step_out", "{here}");
        assert_eq!(here["location"]["participants"].as_array().map(Vec::len), Some(2), "{here}");
    }
    // The group's own view: only bo is left, the two are away and nothing more.
    let group = b.event("location_changed").await;
    assert_eq!(group["location"]["participants"], json!([b.pid]), "{group}");
    for p in group["participants"].as_array().unwrap() {
        if p["participant_id"] == a.pid.as_str() || p["participant_id"] == c.pid.as_str() {
            assert_eq!((&p["away"], &p["muted"]), (&json!(true), &json!(true)), "{p}");
        }
    }
    assert!(!group.to_string().contains("step_out"), "{group}");
    // The two hear each other...
    let (ca, ac) = (c.received(&a.pid, "audio"), a.received(&c.pid, "audio"));
    c.wait_received(&a.pid, "audio", ca + 25).await;
    a.wait_received(&c.pid, "audio", ac + 25).await;
    // ...their group and the main room hear neither, and they hear nothing of the group.
    assert_not_forwarded(&mut a, &b, "audio").await;
    assert_not_forwarded(&mut c, &b, "audio").await;
    assert_not_forwarded(&mut a, &f, "audio").await;
    assert_not_forwarded(&mut b, &a, "audio").await;
    assert_not_forwarded(&mut b, &c, "audio").await;

    // Alex returns: to the group, and the step-out, left with one, brings its facilitator back too.
    a.send(json!({"type": "return_to_main"})).await;
    for p in [&mut a, &mut c] {
        let back = p.event("location_changed").await;
        assert_eq!(
            (back["location"]["kind"].as_str(), back["location"]["group"].as_u64()),
            (Some("breakout"), Some(1))
        );
        assert_eq!(back["location"]["participants"].as_array().map(Vec::len), Some(3), "{back}");
    }
    // The group hears them again, and they the group; the main room still hears no group.
    hears_more(&mut b, &a.pid).await;
    hears_more(&mut b, &c.pid).await;
    hears_more(&mut a, &b.pid).await;
    assert_not_forwarded(&mut a, &f, "audio").await;
}

/// Packet counts of every (listener, sender) pair among `peers`.
fn counts(peers: &[MediaPeer]) -> HashMap<(usize, usize), u64> {
    let mut c = HashMap::new();
    for (i, l) in peers.iter().enumerate() {
        for (j, s) in peers.iter().enumerate() {
            if i != j {
                c.insert((i, j), l.received(&s.pid, "audio"));
            }
        }
    }
    c
}

#[tokio::test]
async fn breakout_three_groups_each_hears_only_its_own_a_mute_follows_and_everyone_returns_at_the_end() {
    let app = spawn_app().await;
    let mut f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    let mut peers = Vec::new();
    for i in 0..6 {
        peers.push(MediaPeer::join(&app, "open", &format!("member-{i}"), Member, false).await);
    }
    for p in &peers {
        p.send(json!({"type": "set_muted", "muted": false})).await;
    }
    // Muted by the facilitator before the groups open: the mute goes with them.
    f.send(json!({"type": "mute", "participant_id": peers[0].pid})).await;
    peers[0].event("participant_updated").await;
    for i in 1..6 {
        let from = peers[i].pid.clone();
        peers[0].wait_received(&from, "audio", 10).await;
    }

    f.send(json!({"type": "open_breakouts", "groups": 3, "seconds": 3600, "assign": "auto"})).await;
    let opened = f.event("breakouts_updated").await;
    assert_eq!(opened["breakouts"]["groups"].as_array().unwrap().len(), 3, "{opened}");
    let mut group = Vec::new();
    for p in &mut peers {
        let here = p.event("location_changed").await;
        assert_eq!(here["location"]["kind"], "breakout", "{here}");
        group.push(here["location"]["group"].as_u64().unwrap());
    }
    for g in 1..=3 {
        assert_eq!(group.iter().filter(|&&x| x == g).count(), 2, "two in each group: {group:?}");
    }
    // Everyone sends 75 more packets; then compare who got what.
    let before = counts(&peers);
    let f_before: Vec<u64> = peers.iter().map(|p| f.received(&p.pid, "audio")).collect();
    for p in &mut peers {
        p.wait_sent(75).await;
    }
    // Positive control: each unmuted member's groupmate hears them.
    for i in 1..6 {
        let Some(j) = (0..6).find(|&j| j != i && group[j] == group[i]) else { continue };
        let (from, n) = (peers[i].pid.clone(), before[&(j, i)] + 20);
        peers[j].wait_received(&from, "audio", n).await;
    }
    peers[0].wait_sent(25).await;
    let after = counts(&peers);
    for i in 0..6 {
        for j in 0..6 {
            if i == j {
                continue;
            }
            // Packets already on their way when the groups opened (the media engine applies the
            // new rules a moment after the room tells people where they are) may still arrive: a
            // few, where a leak would be the 75 sent since.
            let grew = after[&(i, j)].saturating_sub(before[&(i, j)]);
            if group[i] != group[j] {
                assert!(
                    grew <= IN_FLIGHT,
                    "member {i} (group {}) heard member {j} (group {}): {grew} packets",
                    group[i],
                    group[j]
                );
            } else if j == 0 {
                assert!(grew <= IN_FLIGHT, "the facilitator's mute of member 0 holds in their group: {grew} packets");
            }
        }
        let f_grew = f.received(&peers[i].pid, "audio").saturating_sub(f_before[i]);
        assert!(f_grew <= IN_FLIGHT, "the main room hears no group: {f_grew} packets from member {i}");
    }

    // Closed by hand; then a short breakout ends by itself and everyone is heard again.
    f.send(json!({"type": "close_breakouts"})).await;
    let closed = f.event("breakouts_updated").await;
    assert!(closed["breakouts"].is_null(), "{closed}");
    for p in &mut peers {
        assert!(p.event("location_changed").await["location"].is_null());
    }
    f.send(json!({"type": "open_breakouts", "groups": 3, "seconds": 1, "assign": "auto"})).await;
    f.event("breakouts_updated").await;
    let ended = f.event("breakouts_updated").await;
    assert!(ended["breakouts"].is_null(), "the timer brings everyone back: {ended}");
    for p in &mut peers {
        p.event("location_changed").await;
        let back = p.event("location_changed").await;
        assert!(back["location"].is_null(), "{back}");
    }
    let (a, b) = (peers[1].pid.clone(), peers[2].pid.clone());
    let n = peers[5].received(&a, "audio") + 20;
    peers[5].wait_received(&a, "audio", n).await;
    let n = peers[5].received(&b, "audio") + 20;
    peers[5].wait_received(&b, "audio", n).await;
    let n = f.received(&a, "audio") + 20;
    f.wait_received(&a, "audio", n).await;
}

/// The frames `c` got up to its reply to a barrier request.
async fn drain(c: &mut Client) -> Vec<Value> {
    c.request(json!({"type": "ping"})).await.1
}

#[tokio::test]
async fn a_member_can_decline_a_step_out_and_nobody_else_learns_of_it() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Jordan").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Alex").await;
    let (mut o, _) = app.join(ALPHA, "open", "o", Member, "Other").await;
    drain(&mut f).await;
    drain(&mut o).await;
    f.expect_error(json!({"type": "step_out", "participant_id": pid(&m)}), "confirm_required").await;
    let (ack, _) = f.request(json!({"type": "step_out", "participant_id": pid(&m), "confirm": true})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let invite = m.recv_type("step_out_invite").await;
    assert_eq!(invite["display_name"], "Jordan");
    m.request(json!({"type": "answer_step_out", "invite_id": invite["invite_id"], "accept": false})).await;
    let declined = f.recv_type("step_out_declined").await;
    assert_eq!(declined["participant_id"], pid(&m).as_str());
    let seen = drain(&mut o).await;
    assert!(seen.is_empty(), "the other member saw: {seen:?}");
    // Both are still in the main room: chat from m reaches o.
    m.request(json!({"type": "chat", "text": "still here"})).await;
    assert_eq!(o.recv_type("chat").await["text"], "still here");
    m.expect_error(
        json!({"type": "answer_step_out", "invite_id": invite["invite_id"], "accept": true}),
        "invite_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_member_banned_in_a_side_room_is_removed_from_the_meeting_and_the_audit_log_has_no_content() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Jordan").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Alex").await;
    let (mut o, _) = app.join(ALPHA, "open", "o", Member, "Other").await;
    f.request(json!({"type": "step_out", "participant_id": pid(&m), "confirm": true})).await;
    let invite = m.recv_type("step_out_invite").await;
    m.request(json!({"type": "answer_step_out", "invite_id": invite["invite_id"], "accept": true})).await;
    f.recv_type("location_changed").await;
    // The other member sees both as away, and nothing more.
    let seen = drain(&mut o).await;
    assert!(!seen.is_empty());
    for e in &seen {
        let ok =
            (e["type"] == "participant_updated" && e["participant"]["away"] == true) || e["type"] == "meeting_updated";
        assert!(ok, "the main room saw more than away: {e}");
        assert!(!e.to_string().contains("step_out"), "{e}");
    }
    m.request(json!({"type": "chat", "text": "words for the side room only"})).await;
    f.recv_type("chat").await;
    f.request(json!({"type": "ban", "participant_id": pid(&m)})).await;
    assert_eq!(m.recv_type("removed").await["banned"], true);
    assert!(m.closed().await.is_some());
    let left = o.recv_type("participant_left").await;
    assert_eq!(left["participant_id"], pid(&m).as_str());
    assert!(f.recv_type("location_changed").await["location"].is_null(), "the facilitator is back");
    let seen = drain(&mut o).await;
    assert!(seen.iter().all(|e| !e.to_string().contains("words for")), "{seen:?}");
    // Refused at the door from now on.
    let refused = Client::connect(app.addr, &app.token(ALPHA, "open", "m", Member)).await;
    assert_eq!(refused.err().map(|(status, body)| (status, body["code"].clone())), Some((403, json!("banned"))));
    app.flush_store().await;
    let log: Vec<Value> =
        serde_json::from_value(app.get_json("/v1/meetings/open/audit", Some(ALPHA_KEY)).await).unwrap();
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["side_room_opened", "ban", "side_room_closed"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(!log.iter().any(|e| e.to_string().contains("words for")), "no content in the audit log");
}
