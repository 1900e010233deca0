//! Facilitated meetings over real sockets: waiting room, controls, queue, support signal, audit.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member, Observer};
use serde_json::{json, Value};

fn pid(c: &Client) -> String {
    c.pid.clone().unwrap()
}

#[tokio::test]
async fn waiting_room_admit_and_deny() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "lobby", "fac", Facilitator, "Facil").await;
    let (mut a, waiting) = app.join(ALPHA, "lobby", "a", Member, "Alex").await;
    assert_eq!(waiting["type"], "waiting");
    assert_eq!(waiting["meeting_title"], "Lobby group");
    let list = f.recv_type("waiting_list").await;
    assert_eq!(list["waiting"][0]["display_name"], "Alex");
    assert_eq!(list["waiting"].as_array().unwrap()[0].as_object().unwrap().len(), 3, "names only: id, name, since");
    a.expect_error(json!({"type": "raise_hand"}), "not_admitted").await;
    f.request(json!({"type": "admit", "participant_id": pid(&a)})).await;
    assert_eq!(a.recv().await["type"], "admitted");
    let welcome = a.recv_type("welcome").await;
    assert_eq!(welcome["participants"].as_array().unwrap().len(), 2);

    let (mut b, _) = app.join(ALPHA, "lobby", "b", Member, "Blake").await;
    f.recv_type("waiting_list").await;
    f.request(json!({"type": "deny", "participant_id": pid(&b), "message": "This group is full tonight"})).await;
    let denied = b.recv_type("denied").await;
    assert_eq!(denied["message"], "This group is full tonight");
    assert_eq!(b.closed().await, Some(4002));
}

#[tokio::test]
async fn members_are_refused_every_facilitator_control() {
    let app = spawn_app().await;
    let (_f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Sam").await;
    let (o, _) = app.join(ALPHA, "open", "o", Member, "Other").await;
    let other = pid(&o);
    for cmd in [
        json!({"type": "admit_all"}),
        json!({"type": "mute", "participant_id": other}),
        json!({"type": "mute_all"}),
        json!({"type": "allow_unmute", "participant_id": other}),
        json!({"type": "remove", "participant_id": other}),
        json!({"type": "ban", "participant_id": other}),
        json!({"type": "rename", "participant_id": other, "display_name": "X"}),
        json!({"type": "lock"}),
        json!({"type": "unlock"}),
        json!({"type": "set_chat", "enabled": false}),
        json!({"type": "delete_chat", "message_id": 1}),
        json!({"type": "end_meeting"}),
        json!({"type": "update_settings", "floor_control": true}),
        json!({"type": "promote", "participant_id": other, "role": "co_facilitator"}),
        json!({"type": "ack_support", "request_id": 1}),
        json!({"type": "next_speaker"}),
        json!({"type": "give_floor", "participant_id": other}),
        json!({"type": "extend_share"}),
        json!({"type": "move_hand", "participant_id": other, "position": 0}),
        json!({"type": "start_go_around"}),
        json!({"type": "end_go_around"}),
    ] {
        m.expect_error(cmd, "forbidden").await;
    }
}

#[tokio::test]
async fn mute_is_sticky_until_allowed_and_unmuting_is_the_members_choice() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Sam").await;
    let (reply, _) = m.request(json!({"type": "set_muted", "muted": false})).await;
    assert_eq!(reply["participant"]["muted"], false);
    f.request(json!({"type": "mute", "participant_id": pid(&m)})).await;
    let upd = m.recv_type("participant_updated").await;
    assert_eq!(upd["participant"]["muted"], true);
    assert_eq!(upd["participant"]["can_unmute"], false);
    m.expect_error(json!({"type": "set_muted", "muted": false}), "mute_locked").await;
    f.request(json!({"type": "allow_unmute", "participant_id": pid(&m)})).await;
    let upd = m.recv_type("participant_updated").await;
    assert_eq!(upd["participant"]["muted"], true, "still muted until they choose");
    assert_eq!(upd["participant"]["can_unmute"], true);
    let (reply, _) = m.request(json!({"type": "set_muted", "muted": false})).await;
    assert_eq!(reply["participant"]["muted"], false);
    // mute_all then the floor lifts the lock for the speaker only.
    f.request(json!({"type": "mute_all"})).await;
    m.expect_error(json!({"type": "set_muted", "muted": false}), "mute_locked").await;
    f.request(json!({"type": "give_floor", "participant_id": pid(&m)})).await;
    m.recv_type("floor_changed").await;
    m.request(json!({"type": "set_muted", "muted": false})).await;
}

#[tokio::test]
async fn floor_control_refuses_unmute_without_the_floor() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "fc", "title": "FC", "settings": {"waiting_room": false, "floor_control": true}}),
    )
    .await;
    let (mut f, _) = app.join(ALPHA, "fc", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "fc", "m", Member, "Sam").await;
    m.expect_error(json!({"type": "set_muted", "muted": false}), "floor_required").await;
    f.request(json!({"type": "give_floor", "participant_id": pid(&m)})).await;
    m.request(json!({"type": "set_muted", "muted": false})).await;
    m.request(json!({"type": "yield_floor"})).await;
    let upd = m.recv_until(|v| v["type"] == "participant_updated" && v["participant"]["muted"] == true).await;
    assert_eq!(upd["participant"]["can_unmute"], false);
}

#[tokio::test]
async fn everyone_sees_the_same_queue_order() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(app.join(ALPHA, "open", &format!("m{i}"), Member, &format!("Member {i}")).await.0);
    }
    // Hands go up in the order 2, 0, 3, 1; each waits for its reply so the server order is known.
    let order = [2usize, 0, 3, 1];
    for &i in &order {
        members[i].request(json!({"type": "raise_hand"})).await;
    }
    let expected: Vec<String> = order.iter().map(|&i| pid(&members[i])).collect();
    let last_queue = |c: &Client| -> Vec<String> {
        let v: Vec<Value> = c
            .seen
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .filter(|v: &Value| v["type"] == "queue_updated")
            .collect();
        v.last().unwrap()["queue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["participant_id"].as_str().unwrap().to_string())
            .collect()
    };
    // A barrier through the room: each has received everything sent before its reply.
    for c in members.iter_mut().chain(std::iter::once(&mut f)) {
        c.expect_error(json!({"type": "set_muted", "muted": true}), "no_change").await;
        assert_eq!(last_queue(c), expected);
    }
    // next_speaker gives the floor to the head, and everyone sees it.
    f.request(json!({"type": "next_speaker"})).await;
    for c in members.iter_mut() {
        let floor = c.recv_type("floor_changed").await;
        assert_eq!(floor["floor"]["participant_id"], expected[0].as_str());
    }
}

#[tokio::test]
async fn support_request_reaches_facilitators_and_no_member() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Sam").await;
    let (mut other, _) = app.join(ALPHA, "open", "o", Member, "Other").await;
    let (reply, _) = m.request(json!({"type": "support_request", "text": "I need a minute"})).await;
    assert_eq!(reply["type"], "support_request_sent");
    let req = f.recv_type("support_request").await;
    assert_eq!(req["request"]["text"], "I need a minute");
    assert_eq!(req["request"]["participant_id"], pid(&m).as_str());
    // Barrier through the room: anything for `other` sent before it has arrived by now.
    let (_, before) = other.request(json!({"type": "lower_hand"})).await;
    let types: Vec<String> = other
        .seen
        .iter()
        .map(|s| serde_json::from_str::<Value>(s).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert!(types.iter().all(|t| !t.starts_with("support")), "a member saw a support event: {types:?} {before:?}");
    assert!(other.seen.iter().all(|s| !s.contains("I need a minute")));
    f.request(json!({"type": "ack_support", "request_id": req["request"]["request_id"]})).await;
    m.recv_type("support_acknowledged").await;
}

#[tokio::test]
async fn remove_ban_lock_rename_chat_and_end() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut a, _) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let (mut b, _) = app.join(ALPHA, "open", "b", Member, "Blake").await;
    let (mut obs, _) = app.join(ALPHA, "open", "obs", Observer, "Watcher").await;
    obs.expect_error(json!({"type": "chat", "text": "hi"}), "chat_disabled").await;
    obs.expect_error(json!({"type": "raise_hand"}), "observer_cannot_speak").await;

    // Rename.
    f.request(json!({"type": "rename", "participant_id": pid(&a), "display_name": "Member A"})).await;
    let upd = b.recv_type("participant_updated").await;
    assert_eq!(upd["participant"]["display_name"], "Member A");

    // Chat, delete, switch off.
    let (chat, _) = a.request(json!({"type": "chat", "text": "hello"})).await;
    let message_id = chat["message_id"].clone();
    f.request(json!({"type": "delete_chat", "message_id": message_id})).await;
    assert_eq!(b.recv_type("chat_deleted").await["message_id"], message_id);
    f.request(json!({"type": "set_chat", "enabled": false})).await;
    a.expect_error(json!({"type": "chat", "text": "again"}), "chat_disabled").await;

    // Remove: told, closed, others see them leave.
    f.request(json!({"type": "remove", "participant_id": pid(&b), "reason": "disruptive"})).await;
    let removed = b.recv_type("removed").await;
    assert_eq!(removed["banned"], false);
    assert_eq!(b.closed().await, Some(4000));

    // Ban: the same member reference is refused before the upgrade, with any token.
    f.request(json!({"type": "ban", "participant_id": pid(&a)})).await;
    assert_eq!(a.closed().await, Some(4001));
    let err = Client::connect(app.addr, &app.token(ALPHA, "open", "a", Facilitator)).await.err().unwrap();
    assert_eq!((err.0, err.1["code"].as_str().unwrap()), (403, "banned"));

    // Lock: new members refused, facilitators welcome.
    f.request(json!({"type": "lock"})).await;
    let err = Client::connect(app.addr, &app.token(ALPHA, "open", "new", Member)).await.err().unwrap();
    assert_eq!((err.0, err.1["code"].as_str().unwrap()), (409, "meeting_locked"));
    let (_f2, w) = app.join(ALPHA, "open", "fac2", Facilitator, "Co").await;
    assert_eq!(w["meeting"]["locked"], true);

    // End: everyone told and closed; the meeting refuses joins afterwards.
    f.request(json!({"type": "end_meeting"})).await;
    obs.recv_type("meeting_ended").await;
    assert_eq!(obs.closed().await, Some(4003));
    let err = Client::connect(app.addr, &app.token(ALPHA, "open", "late", Member)).await.err().unwrap();
    assert_eq!((err.0, err.1["code"].as_str().unwrap()), (410, "meeting_ended"));

    // Every action is in the audit log the program can read.
    app.server.as_ref().unwrap().app.flush_store().await;
    let log: Vec<Value> =
        serde_json::from_value(app.get_json("/v1/meetings/open/audit", Some(ALPHA_KEY)).await).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["rename", "delete_chat", "chat_off", "remove", "ban", "lock", "end_meeting"]);
    assert_eq!(log[3]["detail"], "disruptive");
    assert_eq!(log[3]["actor_name"], "Facil");
    assert!(log.iter().all(|e| !e.to_string().contains(ALPHA)), "the audit log shows names and per-meeting ids only");
}

#[tokio::test]
async fn timed_share_warning_and_end_arrive_over_the_socket() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "timed", "title": "Timed", "settings": {"waiting_room": false, "share_seconds": 2, "share_warning_seconds": 1, "share_end": "hard"}}),
    )
    .await;
    let (mut f, _) = app.join(ALPHA, "timed", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "timed", "m", Member, "Sam").await;
    f.request(json!({"type": "give_floor", "participant_id": pid(&m)})).await;
    let warn = m.recv_type("share_warning").await;
    assert_eq!(warn["remaining_seconds"], 1);
    let ended = m.recv_type("share_ended").await;
    assert_eq!(ended["reason"], "time_up");
    f.expect_error(json!({"type": "extend_share"}), "no_share_running").await;
}

#[tokio::test]
async fn go_around_over_the_socket() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut a, _) = app.join(ALPHA, "open", "a", Member, "Alex").await;
    let (mut b, _) = app.join(ALPHA, "open", "b", Member, "Blake").await;
    f.request(json!({"type": "start_go_around"})).await;
    let g = a.recv_type("go_around").await;
    assert_eq!(g["go_around"]["current"], pid(&a).as_str());
    a.request(json!({"type": "pass"})).await;
    let b_pid = pid(&b);
    let g = b.recv_until(|v| v["type"] == "go_around" && v["go_around"]["current"] == b_pid.as_str()).await;
    assert_eq!(g["go_around"]["passed"][0], pid(&a).as_str());
    b.request(json!({"type": "yield_floor"})).await;
    f.recv_until(|v| v["type"] == "go_around" && v["go_around"]["active"] == false).await;
}
