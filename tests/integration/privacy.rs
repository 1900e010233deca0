//! Promise 1: other participants see a display name and a per-meeting id, never a program, a
//! member reference, a token or an address.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;

#[tokio::test]
async fn nothing_a_member_receives_identifies_anyone_else() {
    let app = spawn_app().await;
    let refs = [
        ("alpha-fac-REF-1181", ALPHA),
        ("alpha-mem-REF-2292", ALPHA),
        ("beta-mem-REF-3303", BETA),
        ("beta-mem-REF-4414", BETA),
    ];
    let tokens: Vec<String> = refs
        .iter()
        .enumerate()
        .map(|(i, (r, p))| app.token(p, &alphas("shared"), r, if i == 0 { Facilitator } else { Member }))
        .collect();
    let mut clients = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let mut c = app.connect(t).await;
        c.send(json!({"type": "join", "display_name": format!("Person {i}")})).await;
        let w = c.recv().await;
        c.pid = w["participant_id"].as_str().map(String::from);
        clients.push(c);
    }
    // Some meeting life: hands, chat, a support request, a rename, a mute, a leave.
    let fac_pid = clients[0].pid.clone().unwrap();
    let p2 = clients[2].pid.clone().unwrap();
    clients[1].request(json!({"type": "raise_hand"})).await;
    clients[2].request(json!({"type": "chat", "text": "hello all"})).await;
    clients[3].request(json!({"type": "support_request", "text": "rough day"})).await;
    clients[0].request(json!({"type": "rename", "participant_id": p2, "display_name": "Person Two"})).await;
    clients[0].request(json!({"type": "mute", "participant_id": p2})).await;
    let p1 = clients[1].pid.clone().unwrap();
    clients[0].request(json!({"type": "give_floor", "participant_id": p1})).await;
    clients[3].send(json!({"type": "leave"})).await;
    assert_eq!(clients[3].closed().await, Some(1000));
    // Barrier: everyone still connected makes a request, so they hold everything sent before it.
    for c in clients.iter_mut().take(3) {
        c.request(json!({"type": "ping"})).await;
        c.request(json!({"type": "lower_hand"})).await;
    }
    let _ = fac_pid;
    for (i, c) in clients.iter().enumerate() {
        let all = c.seen.join("\n");
        assert!(!all.is_empty());
        for (j, (r, _)) in refs.iter().enumerate() {
            assert!(!all.contains(r), "client {i} saw member reference of {j}");
            for part in tokens[j].split('.') {
                assert!(!all.contains(part), "client {i} saw part of {j}'s token");
            }
        }
        for p in [ALPHA, BETA] {
            assert!(!all.contains(p), "client {i} saw a program id");
        }
        // The relay URLs in `ice_servers` carry the server's own address, nobody's.
        let addressed: Vec<&str> =
            c.seen.iter().map(String::as_str).filter(|f| !f.contains("\"type\":\"ice_servers\"")).collect();
        assert!(!addressed.join("\n").contains("127.0.0.1"), "client {i} saw an address");
        assert!(!all.contains("name\":\"prog"), "client {i} saw a program name");
    }
}
