//! Promise 1 in the logs: at debug level, nothing the server logs carries a token, an API key or
//! a member reference, whatever happens (joins, refusals, join-checks, resumes, media, API calls).
//!
//! The real binary runs with `RUST_LOG=debug` and its stderr is scanned, so every thread's lines
//! are seen: the runtime's workers, the media engine, the journal, the database driver.

use crate::support::*;
use haven::auth::join_token::{
    claims_for,
    TokenRole::{Facilitator, Member},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_tokens_api_keys_or_member_references() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(&config, binary_config(&[])).unwrap();
    let server = BinaryServer::start_with_logs(dir.path(), &config, &[], Some("debug"));
    let (addr, http) = (server.addr, reqwest::Client::new());
    server.create_meeting(json!({"id": "lobby", "title": "Lobby"})).await;
    let token = |member: &str, role| sign_hs(ALPHA, &claims_for(ALPHA, "lobby", member, role, 3600));
    let fac_token = token("fac-ref-SECRET-5521", Facilitator);
    let mem_token = token("member-ref-SECRET-8812", Member);
    let mut f = Client::connect(addr, &fac_token).await.unwrap();
    f.send(json!({"type": "join", "display_name": "Facil"})).await;
    f.recv_type("welcome").await;
    // The relay (issue 14): a wrong password and a refused peer, with this participant's username.
    let servers = f.recv_type("ice_servers").await;
    let turn_user = servers["ice_servers"][0]["username"].as_str().unwrap().to_string();
    let turn_pass = servers["ice_servers"][0]["credential"].as_str().unwrap().to_string();
    let turn_udp: std::net::SocketAddr = servers["ice_servers"][0]["urls"][0]
        .as_str()
        .and_then(|u| u.strip_prefix("turn:"))
        .and_then(|u| u.split('?').next())
        .unwrap()
        .parse()
        .unwrap();
    let relay_client = |password: String| {
        let user = turn_user.clone();
        async move {
            let conn = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let c = turn::client::Client::new(turn::client::ClientConfig {
                stun_serv_addr: String::new(),
                turn_serv_addr: turn_udp.to_string(),
                username: user,
                password,
                realm: String::new(),
                software: String::new(),
                rto_in_ms: 0,
                conn,
                vnet: None,
            })
            .await
            .unwrap();
            c.listen().await.unwrap();
            c
        }
    };
    assert!(relay_client("wrong".into()).await.allocate().await.is_err());
    let relay = relay_client(turn_pass).await.allocate().await.unwrap();
    assert!(util::Conn::send_to(&relay, b"x", "127.0.0.1:9".parse().unwrap()).await.is_err());
    let mut m = Client::connect(addr, &mem_token).await.unwrap();
    m.send(json!({"type": "join", "display_name": "Sam"})).await;
    let waiting = m.recv_type("waiting").await;
    let resume = waiting["resume_token"].as_str().unwrap().to_string();
    let pid = waiting["participant_id"].as_str().unwrap().to_string();
    f.request(json!({"type": "admit", "participant_id": pid})).await;
    // Media: a real offer, so the media engine's thread logs too.
    let pc = crate::media::new_pc().await;
    pc.add_transceiver_from_kind(webrtc::rtp_transceiver::rtp_codec::RTPCodecType::Audio, None).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    f.send(json!({"type": "media_offer", "sdp": sdp})).await;
    f.recv_type("media_answer").await;
    // A refused token, join-checks, a resume, API calls with the key, an ended meeting.
    let bad = format!("{}x", &mem_token[..mem_token.len() - 1]);
    let _ = Client::connect(addr, &bad).await;
    for t in [&mem_token, &bad] {
        let r = http.post(format!("http://{addr}/v1/join-check")).json(&json!({"token": t})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(m);
    let mut m2 = Client::connect(addr, &resume).await.unwrap();
    m2.send(json!({"type": "resume", "resume_token": resume, "last_seq": 0})).await;
    m2.recv_type("resumed").await;
    for path in ["/v1/meetings", "/v1/attendance?format=csv", "/v1/meetings/lobby/audit"] {
        let r = http.get(format!("http://{addr}{path}")).bearer_auth(ALPHA_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    f.request(json!({"type": "end_meeting"})).await;
    f.closed().await;
    // The end reaches the database through the journal (a final attendance row shows it).
    server
        .wait_json("/v1/attendance?meeting=lobby", |rows| {
            let rows = rows.as_array().unwrap();
            !rows.is_empty() && rows.iter().all(|r| r["final"] == true)
        })
        .await;

    let logs = server.logs();
    // Positive controls: the capture holds lines from the media engine and the database driver.
    assert!(logs.contains("listening"), "the capture works: {logs}");
    assert!(logs.contains("str0m"), "the media engine's lines are captured");
    assert!(logs.contains("sqlx"), "the database driver's lines are captured");
    for secret in ["SECRET-5521", "SECRET-8812", ALPHA_KEY, ALPHA_SECRET, resume.as_str(), turn_user.as_str()] {
        assert!(!logs.contains(secret), "a log line carries `{secret}`");
    }
    // The relay's library logs each client's address ("received AllocateRequest from 1.2.3.4:5"):
    // none of it is written.
    assert!(!logs.contains("AllocateRequest"), "a log line carries a relay client's address");
    for token in [&fac_token, &mem_token, &bad] {
        for part in token.split('.').skip(1) {
            assert!(!logs.contains(part), "a log line carries part of a token");
        }
    }
}
