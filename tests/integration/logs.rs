//! Promise 1 in the logs: at debug level, nothing the server logs carries a token, an API key or
//! a member reference, whatever happens (joins, refusals, resumes, API calls).

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: every task of the server runs on this thread, so the thread-local
// subscriber sees all of their log lines.
#[tokio::test(flavor = "current_thread")]
async fn logs_carry_no_tokens_api_keys_or_member_references() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let fac_token = app.token(ALPHA, "lobby", "fac-ref-SECRET-5521", Facilitator);
    let mem_token = app.token(ALPHA, "lobby", "member-ref-SECRET-8812", Member);
    let mut f = app.connect(&fac_token).await;
    f.send(json!({"type": "join", "display_name": "Facil"})).await;
    f.recv_type("welcome").await;
    let mut m = app.connect(&mem_token).await;
    m.send(json!({"type": "join", "display_name": "Sam"})).await;
    let waiting = m.recv_type("waiting").await;
    let resume = waiting["resume_token"].as_str().unwrap().to_string();
    let pid = waiting["participant_id"].as_str().unwrap().to_string();
    f.request(json!({"type": "admit", "participant_id": pid})).await;
    // A refused token, a resume, API calls with the key, an ended meeting.
    let bad = format!("{}x", &mem_token[..mem_token.len() - 1]);
    let _ = Client::connect(app.addr, &bad).await;
    // The join-check takes tokens in its body; none reaches a log either.
    for t in [&mem_token, &bad] {
        assert!(app.post_json("/v1/join-check", json!({"token": t})).await["joinable"].is_boolean());
    }
    drop(m);
    let mut m2 = app.connect(&resume).await;
    m2.send(json!({"type": "resume", "resume_token": resume, "last_seq": 0})).await;
    m2.recv_type("resumed").await;
    app.get_json("/v1/meetings", Some(ALPHA_KEY)).await;
    let csv = app.http.get(app.url("/v1/attendance?format=csv")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    f.request(json!({"type": "end_meeting"})).await;
    app.server.as_ref().unwrap().app.flush_store().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("listening"), "the capture works: {logs}");
    for secret in ["SECRET-5521", "SECRET-8812", ALPHA_KEY, ALPHA_SECRET, resume.as_str()] {
        assert!(!logs.contains(secret), "a log line carries `{secret}`");
    }
    for token in [&fac_token, &mem_token, &bad] {
        for part in token.split('.').skip(1) {
            assert!(!logs.contains(part), "a log line carries part of a token");
        }
    }
}
