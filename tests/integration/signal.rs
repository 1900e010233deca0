//! Joining, leaving and bad input over the signaling WebSocket.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn joining_receives_welcome_snapshot_with_resume_token() {
    let app = spawn_app().await;
    let (_f, _) = app.join(ALPHA, "open", "fac-1", Facilitator, "Facil").await;
    let (_m, welcome) = app.join(ALPHA, "open", "mem-1", Member, "Sam").await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["seq"], 1);
    assert_eq!(welcome["role"], "member");
    assert_eq!(welcome["display_name"], "Sam");
    assert_eq!(welcome["meeting"]["id"], "open");
    assert_eq!(welcome["meeting"]["title"], "Open group");
    assert!(welcome["resume_token"].as_str().unwrap().starts_with("hvr."));
    let names: Vec<&str> =
        welcome["participants"].as_array().unwrap().iter().map(|p| p["display_name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Facil", "Sam"]);
    assert!(welcome["participant_id"].as_str().unwrap().starts_with('p'));
}

#[tokio::test]
async fn a_welcome_larger_than_the_write_buffer_still_reaches_the_joiner() {
    // Small buffers, so a meeting of 24 makes a `welcome` several times the write buffer (the
    // same as ~900 participants with the default 4 KiB buffer and 64 KiB frame cap).
    let app = spawn_with(|c| {
        c.limits.ws_write_buffer_bytes = 512;
        c.limits.max_frame_bytes = 1024;
    })
    .await;
    let (_f, _) = app.join(ALPHA, "open", "fac-1", Facilitator, "Facil").await;
    let mut keep = Vec::new();
    for i in 0..24 {
        let (c, welcome) = app.join(ALPHA, "open", &format!("m-{i}"), Member, &format!("Person {i}")).await;
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["participants"].as_array().map(Vec::len), Some(i + 2));
        keep.push(c);
    }
}

#[tokio::test]
async fn others_see_joins_and_leaves() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac-1", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "mem-1", Member, "Sam").await;
    let joined = f.recv_type("participant_joined").await;
    assert_eq!(joined["participant"]["display_name"], "Sam");
    assert_eq!(joined["participant"]["participant_id"].as_str(), m.pid.as_deref());
    m.send(json!({"type": "leave"})).await;
    assert_eq!(m.closed().await, Some(1000));
    let left = f.recv_type("participant_left").await;
    assert_eq!(left["participant_id"].as_str(), m.pid.as_deref());
    assert_eq!(left["reason"], "left");
}

#[tokio::test]
async fn a_dropped_socket_is_held_then_reported_as_disconnected() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac-1", Facilitator, "Facil").await;
    let (m, _) = app.join(ALPHA, "open", "mem-1", Member, "Sam").await;
    let pid = m.pid.clone().unwrap();
    drop(m);
    let upd = f
        .recv_until(|v| v["type"] == "participant_updated" && v["participant"]["participant_id"] == pid.as_str())
        .await;
    assert_eq!(upd["participant"]["connected"], false, "seat held, shown as disconnected");
}

#[tokio::test]
async fn request_id_is_echoed_and_ping_is_answered() {
    let app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "mem-1", Member, "Sam").await;
    let (pong, _) = m.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["seq"], 0, "connection-level frames carry seq 0");
    let (reply, _) = m.request(json!({"type": "raise_hand"})).await;
    assert_eq!(reply["type"], "queue_updated");
}

#[tokio::test]
async fn bad_input_gets_stable_error_codes_and_harms_no_one() {
    let app = spawn_app().await;
    let (mut other, _) = app.join(ALPHA, "open", "mem-2", Member, "Other").await;
    let mut c = app.connect(&app.token(ALPHA, "open", "mem-1", Member)).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "invalid_json"),
        (Message::Text(r#"{"type":"teleport"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"display_name":"x"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"type":"join","display_name":"Sam","admin":true}"#.into()), "unknown_field"),
        (Message::Text(r#"{"type":"set_muted","muted":"no"}"#.into()), "invalid_message"),
        (Message::Text(r#"["join"]"#.into()), "invalid_message"),
        (Message::Binary(vec![1, 2, 3].into()), "binary_not_supported"),
        (Message::Text(r#"{"type":"raise_hand"}"#.into()), "not_joined"),
        (Message::Text(format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(17 * 1024)).into()), "message_too_large"),
        (Message::Text(r#"{"type":"join","display_name":"bob@example.com"}"#.into()), "invalid_name"),
    ];
    for (msg, code) in cases {
        c.send_raw(msg).await;
        let e = c.recv().await;
        assert_eq!(e["type"], "error");
        assert_eq!(e["code"], code, "{e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    // SDP may be larger than other messages (it grows with the tracks of a meeting).
    c.send(json!({"type": "join", "display_name": "Sam"})).await;
    assert_eq!(c.recv().await["type"], "welcome");
    let big_sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(4000));
    c.send(json!({"type": "media_offer", "sdp": big_sdp, "id": "sdp"})).await;
    let reply = c.recv_until(|v| v["id"] == "sdp").await;
    assert_eq!(
        reply["code"], "invalid_media",
        "a large SDP is read, and refused only because it is not valid: {}",
        reply["code"]
    );
    c.send(json!({"type": "chat", "text": "a".repeat(20 * 1024), "id": "big"})).await;
    assert_eq!(c.recv_until(|v| v["id"] == "big").await["code"], "message_too_large");
    c.send(json!({"type": "leave"})).await;
    c.closed().await;
    let mut c = app.connect(&app.token(ALPHA, "open", "mem-1", Member)).await;
    // The connection still works: join, then a second join is refused.
    c.send(json!({"type": "join", "display_name": "Sam"})).await;
    assert_eq!(c.recv().await["type"], "welcome");
    c.expect_error(json!({"type": "join"}), "already_joined").await;
    // And everyone else carried on.
    let (pong, _) = other.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_only_that_connection() {
    let app = spawn_app().await;
    let (mut other, _) = app.join(ALPHA, "open", "mem-2", Member, "Other").await;
    let mut c = app.connect(&app.token(ALPHA, "open", "mem-1", Member)).await;
    use futures_util::SinkExt;
    let _ = c.ws.send(Message::Text("x".repeat(200 * 1024).into())).await;
    let code = c.closed().await;
    assert_eq!(code, Some(1009), "closed with {code:?}");
    let (pong, _) = other.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn unknown_meeting_and_full_meeting_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let err = Client::connect(app.addr, &app.token(ALPHA, "no-such-meeting", "m", Member)).await.err().unwrap();
    assert_eq!(err.0, 404);
    assert_eq!(err.1["code"], "meeting_not_found");
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "tiny", "title": "Tiny", "capacity": 1, "settings": {"waiting_room": false}}),
    )
    .await;
    let (_a, _) = app.join(ALPHA, "tiny", "a", Member, "A").await;
    let err = Client::connect(app.addr, &app.token(ALPHA, "tiny", "b", Member)).await.err().unwrap();
    assert_eq!(err.0, 409);
    assert_eq!(err.1["code"], "meeting_full");
}

#[tokio::test]
async fn graceful_shutdown_tells_connected_clients() {
    let mut app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "mem-1", Member, "Sam").await;
    let unjoined = app.connect(&app.token(ALPHA, "open", "mem-2", Member)).await;
    let server = app.server.take().unwrap();
    let stop = tokio::spawn(server.shutdown());
    assert_eq!(m.closed().await, Some(1001));
    let mut unjoined = unjoined;
    assert_eq!(unjoined.closed().await, Some(1001));
    stop.await.unwrap();
}

#[tokio::test]
async fn a_connection_that_never_joins_is_closed() {
    let app = spawn_with(|c| c.limits.join_timeout_seconds = 1).await;
    let mut c = app.connect(&app.token(ALPHA, "open", "mem-1", Member)).await;
    assert_eq!(c.closed().await, Some(4010));
}
