//! Meeting formats (issue 15): `/v1/formats`, meetings that run one, segment changes over the
//! socket, and the SFU enforcing a segment's rules.

use crate::media::{assert_not_forwarded, MediaPeer};
use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::{json, Value};

/// Readings by the chair, then open discussion, then a check-in round.
pub(crate) fn group_format(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Tuesday group",
        "segments": [
            {"title": "Open discussion", "rules": {"unmute": "anyone"}},
            {"title": "Readings", "planned_minutes": 5, "rules": {"unmute": "facilitators", "hands": false, "chat": false}},
            {"title": "Check-in round", "planned_minutes": 15,
             "rules": {"unmute": "floor_holder", "go_around": "members", "share_seconds": 120, "share_end": "hard"}}
        ]
    })
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = app.http.post(app.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A server with alpha's `tuesday` format and a meeting `id` (no waiting room) that runs it.
async fn app_with_group_meeting(id: &str) -> TestApp {
    let app = spawn_app().await;
    let (status, f) = post(&app, ALPHA_KEY, "/v1/formats", group_format("tuesday")).await;
    assert_eq!(status, 201, "{f}");
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": id, "title": "G", "format": "tuesday", "settings": {"waiting_room": false}}),
    )
    .await;
    app
}

#[tokio::test]
async fn formats_are_the_programs_own_validated_and_copied_into_a_meeting() {
    let app = spawn_app().await;
    let (status, f) = post(&app, ALPHA_KEY, "/v1/formats", group_format("tuesday")).await;
    assert_eq!(status, 201, "{f}");
    assert_eq!(f["planned_minutes"], 20);
    assert_eq!(f["segments"][1]["rules"]["hands"], false);
    assert_eq!(f["segments"][0]["rules"]["chat"], true, "absent rules take their defaults");
    assert_eq!(app.get_json("/v1/formats", Some(ALPHA_KEY)).await.as_array().unwrap().len(), 1);
    // Another program neither sees it nor can use it.
    let r = app.http.get(app.url("/v1/formats/tuesday")).bearer_auth(BETA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, e) =
        post(&app, BETA_KEY, "/v1/meetings", json!({"id": "b1", "title": "B", "format": "tuesday"})).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("format_not_found")), "{e}");
    // A format that cannot work is refused with the segment named.
    let mut bad = group_format("bad");
    bad["segments"][2]["rules"]["share_warning_seconds"] = json!(200);
    let (status, e) = post(&app, ALPHA_KEY, "/v1/formats", bad).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("invalid_request")), "{e}");
    assert!(e["message"].as_str().unwrap().starts_with("segments[2].rules"), "{e}");
    let (status, _) =
        post(&app, ALPHA_KEY, "/v1/formats", json!({"name": "x", "segments": [{"title": "a", "rulez": {}}]})).await;
    assert_eq!(status, 422, "unknown fields are refused");

    // A meeting made with it runs it; a later edit of the format does not change that meeting.
    let m = app
        .create_meeting(
            ALPHA_KEY,
            json!({"id": "g1", "title": "G", "format": "tuesday", "settings": {"waiting_room": false}}),
        )
        .await;
    assert_eq!(m["format_id"], "tuesday");
    let mut edited = group_format("tuesday");
    edited["segments"][0]["title"] = json!("Welcome");
    let r = app.http.put(app.url("/v1/formats/tuesday")).bearer_auth(ALPHA_KEY).json(&edited).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, welcome) = app.join(ALPHA, "g1", "m1", Member, "Sam").await;
    let agenda = &welcome["agenda"];
    assert_eq!(agenda["segments"].as_array().unwrap().len(), 3);
    assert_eq!(agenda["segments"][0]["title"], "Open discussion");
    assert_eq!(agenda["current"]["index"], 0);
    // A meeting without a format has no agenda.
    let (_, plain) = app.join(ALPHA, "open", "m2", Member, "Kim").await;
    assert!(plain.get("agenda").is_none(), "{plain}");
    let r = app.http.delete(app.url("/v1/formats/tuesday")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_json("/v1/formats", Some(ALPHA_KEY)).await.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_facilitator_moves_the_agenda_and_everyone_gets_one_segment_changed() {
    let app = app_with_group_meeting("g1").await;
    let (mut f, _) = app.join(ALPHA, "g1", "fac", Facilitator, "Chair").await;
    let (mut m, _) = app.join(ALPHA, "g1", "m1", Member, "Sam").await;
    m.expect_error(json!({"type": "next_segment"}), "forbidden").await;
    f.expect_error(json!({"type": "previous_segment"}), "no_such_segment").await;
    f.request(json!({"type": "next_segment"})).await;
    let changed = m.recv_type("segment_changed").await;
    let seg = &changed["segment"];
    assert_eq!((seg["index"].as_u64(), seg["title"].as_str()), (Some(1), Some("Readings")));
    assert_eq!(seg["rules"]["unmute"], "facilitators");
    assert_eq!(seg["planned_end"].as_u64(), Some(seg["started_at"].as_u64().unwrap() + 5 * 60_000));
    m.expect_error(json!({"type": "set_muted", "muted": false}), "segment_rules").await;
    m.expect_error(json!({"type": "raise_hand"}), "segment_rules").await;
    m.expect_error(json!({"type": "chat", "text": "hi"}), "chat_disabled").await;
    // The check-in round starts with the segment.
    f.request(json!({"type": "next_segment"})).await;
    let round = m.recv_type("go_around").await;
    assert_eq!(round["go_around"]["current"].as_str(), m.pid.as_deref());
    f.expect_error(json!({"type": "next_segment"}), "no_such_segment").await;
}

#[tokio::test]
async fn a_member_heard_in_one_segment_is_refused_segment_rules_in_the_next_and_not_forwarded() {
    let app = app_with_group_meeting("g1").await;
    let f = MediaPeer::join(&app, "g1", "fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "g1", "a", Member, false).await;
    let mut b = MediaPeer::join(&app, "g1", "b", Member, false).await;
    // Open discussion: a unmutes and is heard.
    a.send(json!({"type": "set_muted", "muted": false})).await;
    b.wait_received(&a.pid, "audio", 20).await;
    // Readings: a's client goes on sending; the server forwards nothing of it.
    f.send(json!({"type": "next_segment"})).await;
    a.event("segment_changed").await;
    assert_not_forwarded(&mut a, &b, "audio").await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    let refused = a.event("error").await;
    assert_eq!(refused["code"], "segment_rules", "{refused}");
    assert_not_forwarded(&mut a, &b, "audio").await;
    // The chair is heard meanwhile.
    f.send(json!({"type": "set_muted", "muted": false})).await;
    b.wait_received(&f.pid, "audio", 10).await;
}
