//! Promise 3: a `kill -9` loses at most a heartbeat of presence. The real binary is started,
//! members are admitted, the process is killed with SIGKILL and started again, and the export
//! holds every member with presence up to within one heartbeat of the kill.

use crate::support::*;
use haven::auth::join_token::TokenRole::Member;
use serde_json::{json, Value};

/// The program's attendance export from the server at `addr`.
async fn attendance(http: &reqwest::Client, addr: std::net::SocketAddr) -> Vec<Value> {
    http.get(format!("http://{addr}/v1/attendance")).bearer_auth(ALPHA_KEY).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn after_sigkill_the_export_keeps_presence_up_to_the_last_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(&config, binary_config(&[("limits", "heartbeat_seconds = 1")])).unwrap();
    let mut server = BinaryServer::start(dir.path(), &config, &[]);
    let addr = server.addr;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{addr}/v1/meetings"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"id": "crash", "title": "Crash", "settings": {"waiting_room": false}, "credit_policy": {"min_minutes": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = |m: &str| {
        let claims = haven::auth::join_token::claims_for(ALPHA, "crash", m, Member, 600);
        sign_hs(ALPHA, &claims)
    };
    let mut clients = Vec::new();
    for m in ["m-1", "m-2", "m-3"] {
        let mut c = Client::connect(addr, &token(m)).await.unwrap();
        c.send(json!({"type": "join"})).await;
        assert_eq!(c.recv().await["type"], "welcome");
        clients.push(c);
    }
    // Wait until the live export shows presence extending two heartbeats past admission.
    let live = async {
        loop {
            let rows = attendance(&http, addr).await;
            if rows.len() == 3 && rows.iter().all(|r| r["seconds_present"].as_i64().unwrap() >= 2) {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), live).await.expect("heartbeats advance presence");
    let killed_at = chrono::Utc::now().timestamp_millis();
    server.kill(); // SIGKILL
    drop(clients);

    let server = BinaryServer::start(dir.path(), &config, &[]);
    // The journal replays what the database had not confirmed; the export reads the database.
    let wait = async {
        loop {
            let r: serde_json::Value =
                http.get(format!("http://{}/readyz", server.addr)).send().await.unwrap().json().await.unwrap();
            if r["journal"]["records"] == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait).await.expect("the journal drains");
    let rows = attendance(&http, server.addr).await;
    assert_eq!(rows.len(), 3, "every member is in the export");
    for r in &rows {
        let last = chrono::DateTime::parse_from_rfc3339(r["last_left"].as_str().unwrap()).unwrap().timestamp_millis();
        // One heartbeat (1 s), with room for the kill itself.
        assert!(killed_at - last <= 2_000, "presence lost: {} ms before the kill ({r})", killed_at - last);
        assert!(last <= killed_at + 1_000);
    }
}
