//! Promise 3: a `kill -9` loses at most a heartbeat of presence. The real binary is started,
//! members are admitted, the process is killed with SIGKILL and started again, and the export
//! holds every member with presence up to within one heartbeat of the kill.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn after_sigkill_the_export_keeps_presence_up_to_the_last_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(&config, binary_config(&[("limits", "heartbeat_seconds = 1")])).unwrap();
    let mut server = BinaryServer::start(dir.path(), &config, &[]);
    server
        .create_meeting(json!({"id": "crash", "title": "Crash", "settings": {"waiting_room": false}, "credit_policy": {"min_minutes": 0}}))
        .await;
    let mut clients = Vec::new();
    for m in ["m-1", "m-2", "m-3"] {
        clients.push(server.join("crash", m).await);
    }
    // Wait until the live export shows presence extending two heartbeats past admission.
    server
        .wait_json("/v1/attendance", |rows| {
            let rows = rows.as_array().unwrap();
            rows.len() == 3 && rows.iter().all(|r| r["seconds_present"].as_i64().unwrap() >= 2)
        })
        .await;
    let killed_at = chrono::Utc::now().timestamp_millis();
    server.kill(); // SIGKILL
    drop(clients);

    let server = BinaryServer::start(dir.path(), &config, &[]);
    // The journal replays what the database had not confirmed; the export reads the database.
    server.wait_json("/readyz", |r| r["journal"]["records"] == 0).await;
    let rows = server.get_json("/v1/attendance").await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "every member is in the export");
    for r in rows {
        let last = chrono::DateTime::parse_from_rfc3339(r["last_left"].as_str().unwrap()).unwrap().timestamp_millis();
        // One heartbeat (1 s), with room for the kill itself.
        assert!(killed_at - last <= 2_000, "presence lost: {} ms before the kill ({r})", killed_at - last);
        assert!(last <= killed_at + 1_000);
    }
}
