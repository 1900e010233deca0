//! Resume after a dropped connection: same participant, missed events replayed, hand and floor
//! kept; after the grace period, gone.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;

#[tokio::test]
async fn resume_keeps_id_hand_and_floor_and_replays_missed_events() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut a, welcome) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let (mut b, _) = app.join(ALPHA, "open", "b", Member, "Blake").await;
    let a_pid = a.pid.clone().unwrap();
    let b_pid = b.pid.clone().unwrap();
    b.request(json!({"type": "raise_hand"})).await;
    f.request(json!({"type": "give_floor", "participant_id": a_pid})).await;
    a.recv_type("floor_changed").await;
    let (_, _) = a.request(json!({"type": "lower_hand"})).await; // an error reply: a is in sync
    let last_seq = a.last_seq;
    let token = welcome["resume_token"].as_str().unwrap().to_string();
    drop(a);
    f.recv_until(|v| {
        v["type"] == "participant_updated"
            && v["participant"]["participant_id"] == a_pid.as_str()
            && v["participant"]["connected"] == false
    })
    .await;
    // Things happen while a is away.
    f.request(json!({"type": "chat", "text": "while you were away"})).await;
    // a comes back with the resume token (the token alone authenticates the new connection).
    let mut a2 = app.connect(&token).await;
    a2.send(json!({"type": "resume", "resume_token": token, "last_seq": last_seq})).await;
    let resumed = a2.recv().await;
    assert_eq!(resumed["type"], "resumed");
    assert_eq!(resumed["participant_id"], a_pid.as_str());
    assert_eq!(resumed["replayed"], true);
    let missed = a2.recv().await;
    assert_eq!(missed["seq"].as_u64().unwrap(), last_seq + 1, "replay continues the sequence");
    let chat = a2.recv_until(|v| v["type"] == "chat").await;
    assert_eq!(chat["text"], "while you were away");
    // Floor and b's hand are as they were.
    let (pong, _) = a2.request(json!({"type": "yield_floor"})).await;
    assert_eq!(pong["type"], "share_ended", "a still held the floor");
    let (reply, _) = b.request(json!({"type": "lower_hand"})).await;
    assert_eq!(reply["type"], "queue_updated", "b's hand was still up");
    let _ = b_pid;
    // The resume token worked once.
    let used = resumed["resume_token"].as_str().unwrap();
    assert_ne!(used, token);
    let err = Client::connect(app.addr, &token).await;
    match err {
        Ok(mut c) => {
            c.send(json!({"type": "resume", "resume_token": token, "last_seq": 0})).await;
            let e = c.recv().await;
            assert_eq!(e["code"], "invalid_resume_token");
        }
        Err((status, body)) => assert_eq!((status, body["code"].as_str().unwrap()), (401, "invalid_resume_token")),
    }
}

#[tokio::test]
async fn a_large_gap_gets_a_fresh_snapshot() {
    let app = spawn_with(|c| c.limits.replay_events = 2).await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (a, welcome) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let a_pid = a.pid.clone().unwrap();
    drop(a);
    f.recv_until(|v| v["type"] == "participant_updated" && v["participant"]["connected"] == false).await;
    for i in 0..4 {
        f.request(json!({"type": "chat", "text": format!("m{i}")})).await;
    }
    let token = welcome["resume_token"].as_str().unwrap();
    let mut a2 = app.connect(token).await;
    a2.send(json!({"type": "resume", "resume_token": token, "last_seq": 1})).await;
    let resumed = a2.recv().await;
    assert_eq!(resumed["replayed"], false);
    let snap = a2.recv().await;
    assert_eq!(snap["type"], "welcome");
    assert_eq!(snap["participant_id"], a_pid.as_str());
}

#[tokio::test]
async fn after_the_grace_period_the_participant_has_left() {
    let app = spawn_with(|c| c.limits.reconnect_grace_seconds = 1).await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut a, welcome) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    a.request(json!({"type": "raise_hand"})).await;
    let a_pid = a.pid.clone().unwrap();
    drop(a);
    let left = f.recv_type("participant_left").await;
    assert_eq!(left["participant_id"], a_pid.as_str());
    assert_eq!(left["reason"], "connection_lost");
    let q = f.recv_until(|v| v["type"] == "queue_updated").await;
    let _ = q;
    // Their resume token no longer works.
    let token = welcome["resume_token"].as_str().unwrap();
    match Client::connect(app.addr, token).await {
        Ok(mut c) => {
            c.send(json!({"type": "resume", "resume_token": token})).await;
            assert_eq!(c.recv().await["code"], "invalid_resume_token");
        }
        Err((status, _)) => assert_eq!(status, 401),
    }
}

#[tokio::test]
async fn joining_again_from_another_device_takes_over_the_seat() {
    let app = spawn_app().await;
    let (mut a, w1) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let (_a2, w2) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    assert_eq!(w1["participant_id"], w2["participant_id"]);
    assert_eq!(w2["participants"].as_array().unwrap().len(), 1, "never listed twice");
    assert_eq!(a.closed().await, Some(4004));
}

#[tokio::test]
async fn after_an_unreplayable_resume_numbering_continues_above_the_clients_last_seq() {
    let app = spawn_app().await;
    let (a, welcome) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let token = welcome["resume_token"].as_str().unwrap().to_string();
    drop(a);
    // A client that saw numbers this server never gave (say, from a meeting's earlier run) resumes:
    // it drops every frame numbered at or below what it saw, so the snapshot must come above.
    let seen = 10_000;
    let mut a2 = app.connect(&token).await;
    a2.send(json!({"type": "resume", "resume_token": token, "last_seq": seen})).await;
    let resumed = a2.recv_type("resumed").await;
    assert_eq!(resumed["replayed"], false);
    let snapshot = a2.recv_type("welcome").await;
    assert!(snapshot["seq"].as_u64().unwrap() > seen, "snapshot numbered {} after {seen}", snapshot["seq"]);
    let (pong, _) = a2.request(json!({"type": "raise_hand"})).await;
    assert!(pong["seq"].as_u64().unwrap() > seen);
}
