//! `POST /v1/join-check`: the upgrade's verdict before anyone types a name, with the program's
//! crisis resources; and the crisis resources and attendance flag over the socket.

use crate::support::*;
use haven::auth::join_token::{
    self,
    TokenRole::{Facilitator, Member, Observer},
};
use haven::protocol::CrisisResource;
use serde_json::{json, Value};

fn lifeline() -> CrisisResource {
    CrisisResource {
        name: "988 Suicide & Crisis Lifeline".into(),
        contact: "tel:988".into(),
        note: Some("call or text, 24/7".into()),
    }
}

/// The test programs, with crisis resources for alpha only.
async fn app_with_resources() -> TestApp {
    spawn_with(|c| c.programs[0].crisis_resources = vec![lifeline()]).await
}

async fn check(app: &TestApp, token: &str) -> Value {
    let r = app.http.post(app.url("/v1/join-check")).json(&json!({"token": token})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The join-check's code for `token`, asserted equal to the code the upgrade refuses it with.
async fn refusal(app: &TestApp, token: &str) -> String {
    let c = check(app, token).await;
    assert_eq!(c["joinable"], false, "{c}");
    let code = c["code"].as_str().unwrap().to_string();
    assert!(c["message"].is_string(), "{c}");
    let (_, body) = Client::connect(app.addr, token).await.err().expect("the upgrade refuses too");
    assert_eq!(body["code"].as_str(), Some(code.as_str()), "the upgrade gives the same code");
    code
}

/// Alpha's claims signed with beta's secret: well formed, wrong signature.
fn forged(meeting: &str) -> String {
    let claims = join_token::claims_for(ALPHA, meeting, "m", Member, 3600);
    let key = jsonwebtoken::EncodingKey::from_secret(BETA_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

fn token_at(program: &str, meeting: &str, member: &str, exp_from_now: i64, nbf_from_now: i64) -> String {
    let mut c = join_token::claims_for(program, meeting, member, Member, 3600);
    let now = jsonwebtoken::get_current_timestamp() as i64;
    c.exp = (now + exp_from_now) as u64;
    c.nbf = Some((now + nbf_from_now) as u64);
    sign_hs(program, &c)
}

#[tokio::test]
async fn join_check_says_joinable_and_takes_no_slot() {
    let app = spawn_with(|c| c.limits.max_connections = 1).await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "tiny", "title": "Tiny group", "capacity": 1, "settings": {"waiting_room": false}}),
    )
    .await;
    let token = app.token(ALPHA, "tiny", "m1", Member);
    for _ in 0..3 {
        let c = check(&app, &token).await;
        assert_eq!(c["joinable"], true, "{c}");
        assert_eq!(c["code"], Value::Null);
        assert_eq!(c["meeting_title"], "Tiny group");
        assert_eq!(c["role"], "member");
        assert_eq!(c["crisis_resources"], json!([]), "nothing configured, nothing shown");
    }
    assert_eq!(app.metrics().connections.get(), 0, "no connection slot taken");
    // The one seat and the one connection are still free: the member gets in.
    let (_m, welcome) = app.join(ALPHA, "tiny", "m1", Member, "Sam").await;
    assert_eq!(welcome["type"], "welcome");
    // Positive control: now the check does see a full server.
    assert_eq!(refusal(&app, &app.token(ALPHA, "tiny", "m2", Member)).await, "server_busy");
}

#[tokio::test]
async fn join_check_gives_the_upgrades_refusal_codes() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "tiny", "title": "Tiny group", "capacity": 1, "settings": {"waiting_room": false}}),
    )
    .await;
    let (_t, _) = app.join(ALPHA, "tiny", "first", Member, "First").await;
    assert_eq!(refusal(&app, &app.token(ALPHA, "tiny", "second", Member)).await, "meeting_full");

    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "troll", Member, "Troll").await;
    f.request(json!({"type": "ban", "participant_id": m.pid.clone().unwrap()})).await;
    m.closed().await;
    assert_eq!(refusal(&app, &app.token(ALPHA, "open", "troll", Member)).await, "banned");
    f.request(json!({"type": "lock"})).await;
    assert_eq!(refusal(&app, &app.token(ALPHA, "open", "late", Member)).await, "meeting_locked");
    f.request(json!({"type": "end_meeting"})).await;
    f.closed().await;
    let ended = refusal(&app, &app.token(ALPHA, "open", "late", Member)).await;
    assert_eq!(ended, "meeting_ended");
    assert_eq!(check(&app, &app.token(ALPHA, "open", "late", Member)).await["meeting_title"], "Open group");

    assert_eq!(refusal(&app, &token_at(ALPHA, "lobby", "m", -3600, -7200)).await, "token_expired");
    assert_eq!(refusal(&app, &token_at(ALPHA, "lobby", "m", 7200, 3600)).await, "token_not_yet_valid");
    assert_eq!(refusal(&app, &app.token(ALPHA, "nosuch", "m", Member)).await, "meeting_not_found");
    assert_eq!(refusal(&app, &app.token(BETA, "lobby", "m", Member)).await, "meeting_not_found");
    let good = app.token(ALPHA, "lobby", "m", Member);
    assert_eq!(refusal(&app, &forged("lobby")).await, "token_bad_signature");
    assert_eq!(refusal(&app, "not-a-token").await, "token_malformed");
    assert_eq!(refusal(&app, "hvr.bG9iYnk.AAAAAAAAAAAAAAAAAAAAAA").await, "invalid_resume_token");
    // Positive control: the same meeting with a good token is joinable.
    assert_eq!(check(&app, &good).await["joinable"], true);
}

#[tokio::test]
async fn join_check_refuses_while_shutting_down() {
    let app = spawn_app().await;
    let token = app.token(ALPHA, "lobby", "m", Member);
    let state = app.server.as_ref().unwrap().app.clone();
    let (_, before) = haven::signal::join_check(&state, &token).await;
    assert!(before.is_ok(), "positive control");
    state.shutdown.cancel();
    let (_, after) = haven::signal::join_check(&state, &token).await;
    assert_eq!(after.unwrap_err().code, "shutting_down");
}

#[tokio::test]
async fn join_check_answers_400_to_a_body_it_cannot_read() {
    let app = spawn_app().await;
    for body in [json!({}), json!({"token": 5}), json!({"token": "t", "extra": 1})] {
        let r = app.http.post(app.url("/v1/join-check")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_request");
    }
}

#[tokio::test]
async fn crisis_resources_reach_the_configured_programs_members_only() {
    let app = app_with_resources().await;
    let expected =
        json!([{"name": "988 Suicide & Crisis Lifeline", "contact": "tel:988", "note": "call or text, 24/7"}]);
    // Join-check: alpha's link shows alpha's resources, even when it can no longer get in.
    assert_eq!(check(&app, &app.token(ALPHA, "shared", "a", Member)).await["crisis_resources"], expected);
    let expired = check(&app, &token_at(ALPHA, "shared", "a", -3600, -7200)).await;
    assert_eq!(expired["code"], "token_expired");
    assert_eq!(expired["crisis_resources"], expected);
    assert_eq!(expired["meeting_title"], "Shared group");
    // Beta configured none: nothing, in the same shared meeting.
    assert_eq!(check(&app, &app.token(BETA, &alphas("shared"), "b", Member)).await["crisis_resources"], json!([]));
    // A forged token learns nothing.
    let forged = check(&app, &forged("shared")).await;
    assert_eq!(forged["code"], "token_bad_signature");
    assert_eq!(forged["crisis_resources"], json!([]));
    assert_eq!(forged["meeting_title"], Value::Null);
    // Welcome: each member gets their own program's list.
    let (_a, wa) = app.join(ALPHA, "shared", "a", Member, "Alex").await;
    assert_eq!(wa["crisis_resources"], expected);
    let (_b, wb) = app.join(BETA, &alphas("shared"), "b", Member, "Bea").await;
    assert_eq!(wb["crisis_resources"], json!([]));
}

#[tokio::test]
async fn crisis_resources_with_an_unusable_contact_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = haven::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.programs = vec![haven::config::ProgramConfig {
        id: "p".into(),
        name: "P".into(),
        token_alg: haven::config::TokenAlg::HS256,
        token_key: ALPHA_SECRET.to_string().into(),
        api_key_sha256: haven::auth::hash_api_key("k"),
        default_credit_policy: None,
        facilitation_earns_credit: true,
        crisis_resources: vec![CrisisResource { contact: "javascript:alert(1)".into(), ..lifeline() }],
    }];
    let e = haven::Server::start(config).await.err().expect("refused");
    assert!(e.to_string().contains("crisis_resources[0]"), "{e}");
}

#[tokio::test]
async fn meeting_ended_says_whose_attendance_was_recorded() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut m, _) = app.join(ALPHA, "open", "m", Member, "Sam").await;
    let (mut o, _) = app.join(ALPHA, "open", "o", Observer, "Watcher").await;
    let (reply, before) = f.request(json!({"type": "end_meeting"})).await;
    let ended = before.iter().chain([&reply]).find(|v| v["type"] == "meeting_ended").cloned();
    assert_eq!(ended.expect("the facilitator is told")["attendance_recorded"], true);
    assert_eq!(m.recv_type("meeting_ended").await["attendance_recorded"], true);
    assert_eq!(o.recv_type("meeting_ended").await["attendance_recorded"], false);
}

#[tokio::test]
async fn join_check_starts_no_room_and_still_sees_a_stored_ban() {
    let app = spawn_app().await;
    let state = app.server.as_ref().unwrap().app.clone();
    let c = check(&app, &app.token(ALPHA, "lobby", "m", Member)).await;
    assert_eq!(c["joinable"], true);
    assert!(state.rooms.get(&key(ALPHA, "lobby")).is_none(), "no room started by a check");
    assert_eq!(app.get_json("/v1/meetings/lobby", Some(ALPHA_KEY)).await["status"], "scheduled");
    let banned = haven::room::MemberKey { program: ALPHA.into(), member_ref: "troll".into() };
    state.store.add_ban(&key(ALPHA, "lobby"), &banned, 1).await.unwrap();
    assert_eq!(refusal(&app, &app.token(ALPHA, "lobby", "troll", Member)).await, "banned");
}
