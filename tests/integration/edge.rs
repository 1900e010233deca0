//! Hardening of the WebSocket edge (issue 12): forged resume tokens, per-address limits,
//! shared meetings, close handshakes, floods, validation replies, and what reaches the log.

use crate::support::*;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use haven::auth::join_token::TokenRole::{self, Facilitator, Member};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

fn forged_resume_token(meeting: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("hvr.{}.{}", b64.encode(meeting), b64.encode([0x5au8; 32]))
}

/// Waits until `f` holds, yielding to the server in between; panics after `WAIT`.
async fn eventually(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_forged_resume_token_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let (_f, welcome) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    // The meeting is live, and the forged token has the right shape and names it.
    let (status, body) = Client::connect(app.addr, &forged_resume_token("open")).await.err().expect("refused");
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_resume_token")));
    // Positive control: a genuine token passes the upgrade.
    let genuine = welcome["resume_token"].as_str().unwrap();
    let _c = app.connect(genuine).await;
}

#[tokio::test]
async fn forged_resume_sockets_cannot_lock_members_out() {
    // The attack from the report: with few slots, forged resume sockets held them all.
    let app = spawn_with(|c| c.limits.max_connections = 4).await;
    let (_f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    for _ in 0..10 {
        assert_eq!(Client::connect(app.addr, &forged_resume_token("open")).await.err().map(|e| e.0), Some(401));
    }
    let (_m, welcome) = app.join(ALPHA, "open", "mem", Member, "Sam").await;
    assert_eq!(welcome["type"], "welcome");
}

#[tokio::test]
async fn unjoined_connections_are_limited_per_address_until_they_join() {
    let app = spawn_with(|c| c.limits.max_unjoined_per_address = 3).await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(app.connect(&app.token(ALPHA, "open", &format!("m{i}"), Member)).await);
    }
    let (status, body) =
        Client::connect(app.addr, &app.token(ALPHA, "open", "m3", Member)).await.err().expect("4th refused");
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_pending")));
    // Joining releases the slot: another connection is accepted.
    held[0].send(json!({"type": "join", "display_name": "First"})).await;
    held[0].recv_type("welcome").await;
    let _more = app.connect(&app.token(ALPHA, "open", "m4", Member)).await;
}

#[tokio::test]
async fn upgrades_are_rate_limited_per_address_counting_failed_ones() {
    let app = spawn_with(|c| {
        c.limits.upgrade_burst_per_address = 5;
        c.limits.upgrades_per_address_per_minute = 1;
    })
    .await;
    for _ in 0..4 {
        assert_eq!(Client::connect(app.addr, "not-a-token").await.err().map(|e| e.0), Some(401));
    }
    // Positive control: the fifth (within the burst) is judged on its token.
    let _c = app.connect(&app.token(ALPHA, "open", "m1", Member)).await;
    let (status, body) = Client::connect(app.addr, &app.token(ALPHA, "open", "m2", Member)).await.err().unwrap();
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_upgrades")));
}

async fn joins_as(app: &TestApp, program: &str, meeting: &str, role: TokenRole) -> Result<String, (u16, String)> {
    let member = format!("{program}-{role:?}");
    let token = app.token(program, meeting, &member, role);
    match Client::connect(app.addr, &token).await {
        Ok(mut c) => {
            c.send(json!({"type": "join"})).await;
            let v = c.recv_until(|v| v["type"] == "welcome").await;
            Ok(v["role"].as_str().unwrap().to_string())
        }
        Err((s, b)) => Err((s, b["code"].as_str().unwrap_or_default().to_string())),
    }
}

#[tokio::test]
async fn a_shared_meeting_admits_partner_members_but_not_partner_facilitators_by_default() {
    let app = spawn_app().await;
    assert_eq!(joins_as(&app, BETA, &alphas("shared"), Facilitator).await, Err((403, "role_not_shared".into())));
    // Positive controls: the partner's members join, the owner's facilitator runs it.
    assert_eq!(joins_as(&app, BETA, &alphas("shared"), Member).await, Ok("member".into()));
    assert_eq!(joins_as(&app, ALPHA, "shared", Facilitator).await, Ok("facilitator".into()));
}

#[tokio::test]
async fn partner_facilitators_run_a_shared_meeting_only_when_the_owner_allows_it() {
    let app = spawn_app().await;
    let m = app
        .create_meeting(
            ALPHA_KEY,
            json!({"id": "co-run", "title": "Co-run", "shared_with": [BETA], "partner_facilitators": true,
                   "settings": {"waiting_room": false}}),
        )
        .await;
    assert_eq!(m["partner_facilitators"], true);
    let read = app.get_json("/v1/meetings/co-run", Some(ALPHA_KEY)).await;
    assert_eq!(read["partner_facilitators"], true, "stored and read back");
    assert_eq!(joins_as(&app, BETA, &alphas("co-run"), Facilitator).await, Ok("facilitator".into()));
    // Without shared_with the setting means nothing, so it is refused.
    let r = app
        .http
        .post(app.url("/v1/meetings"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"title": "x", "partner_facilitators": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn an_oversize_frame_is_closed_with_1009_and_so_are_oversize_fragments() {
    let app = spawn_app().await;
    let mut c = app.connect(&app.token(ALPHA, "open", "m1", Member)).await;
    let _ = c.ws.send(Message::Text("x".repeat(200 * 1024).into())).await;
    assert_eq!(c.closed().await, Some(1009));
    // Fragments under the frame cap that add up to more than the message cap.
    let mut c = app.connect(&app.token(ALPHA, "open", "m2", Member)).await;
    let part = vec![b'x'; 40 * 1024];
    let _ = c.ws.send(Message::Frame(Frame::message(part.clone(), OpCode::Data(Data::Text), false))).await;
    let _ = c.ws.send(Message::Frame(Frame::message(part, OpCode::Data(Data::Continue), true))).await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn a_client_close_is_answered_at_once_and_frees_the_slot() {
    let app = spawn_app().await;
    let metrics = app.metrics();
    let mut c = app.connect(&app.token(ALPHA, "open", "m1", Member)).await;
    c.send(json!({"type": "join", "display_name": "Sam"})).await;
    c.recv_type("welcome").await;
    assert_eq!(metrics.connections.get(), 1);
    c.ws.send(Message::Close(None)).await.unwrap();
    // The server's echo of the close arrives (a clean close for the browser).
    let echoed = loop {
        match tokio::time::timeout(WAIT, c.ws.next()).await.expect("no answer to the close") {
            Some(Ok(Message::Close(_))) => break true,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break false,
        }
    };
    assert!(echoed, "the server must answer a client's close frame");
    let m = metrics.clone();
    eventually(move || m.connections.get() == 0, "the slot to be freed").await;
}

#[tokio::test]
async fn fieldless_commands_with_extra_fields_and_duplicate_keys_are_refused_with_the_id() {
    let app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "m1", Member, "Sam").await;
    for (frame, code) in [
        (r#"{"type":"raise_hand","zz":1,"id":"x1"}"#, "unknown_field"),
        (r#"{"type":"leave","zz":1,"id":"x2"}"#, "unknown_field"),
        (r#"{"type":"raise_hand","bogus":true,"id":"x3"}"#, "unknown_field"),
        (r#"{"type":"teleport","id":"x4"}"#, "unknown_type"),
        (r#"{"type":"set_muted","muted":"no","id":"x5"}"#, "invalid_message"),
        (r#"{"type":"set_muted","id":"x6"}"#, "invalid_message"),
    ] {
        m.send_raw(Message::Text(frame.into())).await;
        let e = m.recv().await;
        assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some(code)), "{frame}: {e}");
        let id = serde_json::from_str::<serde_json::Value>(frame).unwrap()["id"].clone();
        assert_eq!(e["id"], id, "the error echoes the id: {e}");
    }
    m.send_raw(Message::Text(r#"{"type":"ping","type":"raise_hand"}"#.into())).await;
    assert_eq!(m.recv().await["code"], "invalid_message");
    // The hand was never raised by any of it, and the connection still works.
    let (reply, _) = m.request(json!({"type": "raise_hand"})).await;
    assert_eq!(reply["type"], "queue_updated", "the first real raise_hand succeeds: {reply}");
}

#[tokio::test]
async fn message_too_large_names_the_limit_that_applied_and_echoes_the_id() {
    let app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "m1", Member, "Sam").await;
    let big = "a".repeat(61 * 1024);
    m.send(json!({"type": "media_offer", "sdp": big, "id": "sdp1"})).await;
    let e = m.recv_until(|v| v["type"] == "error").await;
    assert_eq!((e["code"].as_str(), e["id"].as_str()), (Some("message_too_large"), Some("sdp1")));
    assert!(e["message"].as_str().unwrap().contains(&(60 * 1024).to_string()), "{e}");
    m.send(json!({"type": "chat", "text": "a".repeat(17 * 1024), "id": "c1"})).await;
    let e = m.recv_until(|v| v["type"] == "error").await;
    assert_eq!((e["code"].as_str(), e["id"].as_str()), (Some("message_too_large"), Some("c1")));
    assert!(e["message"].as_str().unwrap().contains(&(16 * 1024).to_string()), "{e}");
}

#[tokio::test]
async fn a_burst_gets_one_rate_limited_reply_and_a_flood_is_closed_with_1008() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "m1", Member, "Sam").await;
    // 1,000 pings back to back, without reading.
    for i in 0..1000 {
        if m.ws.feed(Message::Text(json!({"type": "ping", "id": format!("p{i}")}).to_string().into())).await.is_err() {
            break;
        }
    }
    let _ = m.ws.flush().await;
    let (mut pongs, mut limited) = (0, 0);
    let code = loop {
        match tokio::time::timeout(WAIT, m.ws.next()).await.expect("the flood is answered") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("pong"), _) => pongs += 1,
                    (Some("error"), Some("rate_limited")) => limited += 1,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    // The burst is 40 frames; the join took one.
    assert!(pongs >= 39, "the burst allowance is answered: {pongs}");
    assert_eq!(limited, 1, "one rate_limited reply for the burst, not one per frame");
    assert_eq!(code, Some(1008), "a flood is closed with a documented code");
    // Nobody else was affected.
    let (pong, _) = f.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn a_few_frames_over_the_limit_are_answered_once_and_the_connection_stays() {
    let app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "m1", Member, "Sam").await;
    for i in 0..50 {
        m.ws.feed(Message::Text(json!({"type": "ping", "id": format!("p{i}")}).to_string().into())).await.unwrap();
    }
    m.ws.flush().await.unwrap();
    // Once the bucket refills (20 a second) a ping is answered again; frames sent before then are
    // dropped unanswered, so keep asking until one is. Count every frame on the way.
    let (mut pongs, mut limited) = (0, 0);
    let answered = async {
        loop {
            m.send(json!({"type": "ping", "id": "again"})).await;
            while let Ok(Some(v)) = tokio::time::timeout(std::time::Duration::from_millis(100), m.next_frame()).await {
                match (v["type"].as_str(), v["code"].as_str(), v["id"].as_str()) {
                    (Some("pong"), _, Some("again")) => return,
                    (Some("pong"), _, _) => pongs += 1,
                    (Some("error"), Some("rate_limited"), _) => limited += 1,
                    _ => panic!("unexpected frame {v}"),
                }
            }
        }
    };
    tokio::time::timeout(WAIT, answered).await.expect("pings are answered again");
    // The burst is 40 frames and the join took one; a slow reader may see a refill or two.
    assert!(pongs >= 39, "the burst allowance is answered: {pongs}");
    assert_eq!(limited, 1, "one rate_limited reply for the burst, not one per frame");
}

// The real binary, its stderr read: a subscriber set for one test thread misses lines when
// another test registers the same log call sites at the same moment (tracing caches a call
// site's interest process-wide), so an in-process capture failed whenever a neighbouring test
// started a server at the same instant.
#[tokio::test]
async fn refusals_at_the_upgrade_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    // With a key-encryption key: without one the start itself warns (secrets stored unsealed).
    let text = format!(
        "key_encryption_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n{}",
        binary_config(&[("limits", "max_connections = 0")])
    );
    std::fs::write(&config, text).unwrap();
    let server = BinaryServer::start_with_logs(dir.path(), &config, &[], Some("info"));
    let claims = haven::auth::join_token::claims_for(ALPHA, "m1", "open", Member, 600);
    let (status, body) = Client::connect(server.addr, &sign_hs(ALPHA, &claims)).await.err().unwrap();
    assert_eq!((status, body["code"].as_str()), (503, Some("server_busy")));
    // Everything logged about the refusal comes before the shutdown's first line.
    server.signal("-TERM");
    let logs = server.wait_logs(|l| l.contains("shutting down")).await;
    assert!(logs.contains("listening"), "the capture works: {logs}");
    assert!(!logs.contains("ERROR"), "a client-caused 503 is not an error: {logs}");
    assert!(!logs.contains("WARN"), "nor a warning: {logs}");
}

/// Nagle's algorithm holds a small frame written while the previous one is unacknowledged until
/// the client's delayed ACK (up to 40 ms on Linux): every accepted socket has it off. The server
/// runs in this process, so its end of the connection is one of this process's sockets, found by
/// its two addresses and asked for `TCP_NODELAY` (no timing involved).
#[tokio::test]
async fn accepted_connections_have_nagles_algorithm_off() {
    use nix::sys::socket::{getpeername, getsockname, getsockopt, sockopt::TcpNoDelay, SockaddrIn};
    use std::net::{SocketAddr, SocketAddrV4};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // An answered request: the server has accepted the connection (kept alive after it).
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: haven\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let (server, client) = (app.addr, tcp.local_addr().unwrap());
    let v4 = |a: SockaddrIn| SocketAddr::V4(SocketAddrV4::from(a));
    let servers_end: Vec<bool> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            let name = getsockname::<SockaddrIn>(fd).ok().map(v4);
            let peer = getpeername::<SockaddrIn>(fd).ok().map(v4);
            name == Some(server) && peer == Some(client)
        })
        .map(|fd| getsockopt(fd, TcpNoDelay).unwrap_or(false))
        .collect();
    assert_eq!(servers_end, vec![true], "the server's end of the connection, found once, with TCP_NODELAY set");
}
