//! The HTTP API: program authentication and isolation, meeting lifecycle, health and docs.

use crate::support::*;
use serde_json::{json, Value};

#[tokio::test]
async fn meetings_are_created_listed_read_and_deleted_by_their_program() {
    let app = spawn_app().await;
    let created = app
        .create_meeting(
            BETA_KEY,
            json!({"title": "Thursday IOP", "scheduled_start": "2026-12-03T18:00:00Z", "scheduled_end": "2026-12-03T19:30:00Z",
                   "capacity": 12, "settings": {"floor_control": true, "share_seconds": 180}}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["program_id"], BETA);
    assert_eq!(created["capacity"], 12);
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["settings"]["share_seconds"], 180);
    let got: Value = app.get_json(&format!("/v1/meetings/{id}"), Some(BETA_KEY)).await;
    assert_eq!(got["title"], "Thursday IOP");
    let list: Vec<serde_json::Value> =
        serde_json::from_value(app.get_json("/v1/meetings", Some(BETA_KEY)).await).unwrap();
    assert_eq!(list.len(), 1, "beta sees only its own meeting");
    let r = app.http.delete(app.url(&format!("/v1/meetings/{id}"))).bearer_auth(BETA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.http.get(app.url(&format!("/v1/meetings/{id}"))).bearer_auth(BETA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 410, "a deleted meeting is gone (its id stays taken)");
}

#[tokio::test]
async fn one_program_cannot_read_or_delete_anothers_meetings() {
    let app = spawn_app().await;
    for req in [
        app.http.get(app.url("/v1/meetings/open")),
        app.http.delete(app.url("/v1/meetings/open")),
        app.http.get(app.url("/v1/meetings/open/audit")),
    ] {
        let r = req.bearer_auth(BETA_KEY).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_value(app.get_json("/v1/meetings", Some(BETA_KEY)).await).unwrap();
    assert!(list.is_empty());
    // Alpha's meeting is untouched.
    let r = app.http.get(app.url("/v1/meetings/open")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_unauthorized() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/v1/meetings")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unauthorized");
    let r = app.http.get(app.url("/v1/meetings")).bearer_auth("hk_wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn invalid_meeting_requests_say_what_is_wrong() {
    let app = spawn_app().await;
    for (body, status) in [
        (json!({"title": ""}), 422),
        (json!({"title": "x", "capacity": 0}), 422),
        (json!({"title": "x", "id": "has space"}), 422),
        (json!({"title": "x", "settings": {"share_seconds": 10, "share_warning_seconds": 30}}), 422),
        (
            json!({"title": "x", "scheduled_start": "2026-12-03T19:00:00Z", "scheduled_end": "2026-12-03T18:00:00Z"}),
            422,
        ),
        (json!({"title": "x", "colour": "blue"}), 422),
        (json!({"title": "x", "shared_with": ["nobody"]}), 422),
        (json!({"title": "x", "id": "open"}), 409),
    ] {
        let r = app.http.post(app.url("/v1/meetings")).bearer_auth(ALPHA_KEY).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    }
}

#[tokio::test]
async fn deleting_a_live_meeting_ends_it_for_everyone() {
    let app = spawn_app().await;
    let (mut m, _) = app.join(ALPHA, "open", "m1", haven::auth::join_token::TokenRole::Member, "Sam").await;
    let r = app.http.delete(app.url("/v1/meetings/open")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let code = m.closed().await;
    assert_eq!(code, Some(4003));
}

#[tokio::test]
async fn health_metrics_and_openapi_respond() {
    let app = spawn_app().await;
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    let (_m, _) = app.join(ALPHA, "open", "m1", haven::auth::join_token::TokenRole::Member, "Sam").await;
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in ["haven_connections 1", "haven_live_meetings 1", "haven_participants 1"] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("haven_messages_in_total"));
    let doc: Value = app.http.get(app.url("/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/meetings"]["post"].is_object());
    assert!(doc["paths"]["/v1/meetings/{id}"]["delete"].is_object());
    assert!(doc["paths"]["/v1/join-check"]["post"].is_object());
}

#[tokio::test]
async fn a_share_policy_without_a_schedule_is_refused_with_a_stable_code() {
    let app = spawn_app().await;
    for body in [
        json!({"title": "x", "credit_policy": {"min_share_percent": 75}}),
        json!({"title": "x", "credit_policy": {"min_minutes": 30, "min_share_percent": 75}}),
        json!({"title": "x", "scheduled_start": "2026-12-03T18:00:00Z", "credit_policy": {"min_share_percent": 75}}),
    ] {
        let r = app.http.post(app.url("/v1/meetings")).bearer_auth(ALPHA_KEY).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "credit_policy_unsatisfiable", "{e}");
    }
    // Positive control: the same policy with a schedule is accepted.
    let ok = app
        .create_meeting(
            ALPHA_KEY,
            json!({"title": "x", "scheduled_start": "2026-12-03T18:00:00Z", "scheduled_end": "2026-12-03T19:00:00Z",
                   "credit_policy": {"min_share_percent": 75}}),
        )
        .await;
    assert_eq!(ok["credit_policy"]["min_share_percent"], 75);
}

#[tokio::test]
async fn a_programs_share_default_is_refused_for_an_unscheduled_meeting() {
    let app = spawn_with(|c| {
        c.programs[1].default_credit_policy = Some(haven::attendance::credit::CreditPolicy {
            min_minutes: None,
            min_share_percent: Some(80),
            max_gap_seconds: 60,
        })
    })
    .await;
    let r =
        app.http.post(app.url("/v1/meetings")).bearer_auth(BETA_KEY).json(&json!({"title": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "credit_policy_unsatisfiable");
    assert!(e["message"].as_str().unwrap().contains("default_credit_policy"), "{e}");
}

#[tokio::test]
async fn unscheduled_meetings_get_a_minutes_default_and_scheduled_ones_a_share() {
    let app = spawn_app().await;
    let m = app.create_meeting(ALPHA_KEY, json!({"title": "Drop-in"})).await;
    assert_eq!(m["credit_policy"], json!({"min_minutes": 45, "min_share_percent": null, "max_gap_seconds": 120}));
    let s = app
        .create_meeting(
            ALPHA_KEY,
            json!({"title": "Weekly", "scheduled_start": "2026-12-03T18:00:00Z", "scheduled_end": "2026-12-03T19:00:00Z"}),
        )
        .await;
    assert_eq!(s["credit_policy"], json!({"min_minutes": null, "min_share_percent": 75, "max_gap_seconds": 120}));
}

#[tokio::test]
async fn api_errors_are_counted_in_metrics_by_code() {
    let app = spawn_app().await;
    let count = |text: &str, code: &str| metric_value(text, &format!("haven_errors_total{{code=\"{code}\"}}"));
    let before = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(count(&before, "unauthorized"), 0);
    for _ in 0..2 {
        assert_eq!(app.http.get(app.url("/v1/meetings")).send().await.unwrap().status(), 401);
    }
    let r = app.http.get(app.url("/v1/meetings/nosuch")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Refusals before the WebSocket upgrade count the same way.
    let err = Client::connect(app.addr, "not-a-token").await.err().unwrap();
    assert_eq!(err.1["code"], "token_malformed");
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(count(&text, "unauthorized"), 2, "{text}");
    assert_eq!(count(&text, "not_found"), 1);
    assert_eq!(count(&text, "token_malformed"), 1, "counted once, not twice");
}

#[tokio::test]
async fn the_audit_log_gives_rfc3339_times_and_the_owning_programs_member_refs() {
    audit_scenario(spawn_app().await).await;
}

#[tokio::test]
async fn the_audit_log_gives_member_refs_on_postgres() {
    let url = crate::store::fresh_postgres().await;
    audit_scenario(spawn_with(|c| c.database_url = Some(url)).await).await;
}

async fn audit_scenario(app: TestApp) {
    use haven::auth::join_token::TokenRole::{Facilitator, Member};
    // Shared with beta, whose facilitators may run it too (`partner_facilitators`).
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "partners", "title": "Partners", "shared_with": [BETA], "partner_facilitators": true,
               "settings": {"waiting_room": false}}),
    )
    .await;
    let (mut f, _) = app.join(ALPHA, "partners", "fac-ref-1", Facilitator, "Facil").await;
    let (mut bf, _) = app.join(BETA, &alphas("partners"), "beta-fac-ref", Facilitator, "Bea").await;
    let (m, _) = app.join(ALPHA, "partners", "member-ref-1", Member, "Sam").await;
    let (b, _) = app.join(BETA, &alphas("partners"), "beta-member-ref", Member, "Bo").await;
    f.request(json!({"type": "mute", "participant_id": m.pid.clone().unwrap()})).await;
    bf.request(json!({"type": "mute", "participant_id": b.pid.clone().unwrap()})).await;
    bf.request(json!({"type": "allow_unmute", "participant_id": m.pid.clone().unwrap()})).await;
    app.server.as_ref().unwrap().app.flush_store().await;
    let log: Vec<Value> =
        serde_json::from_value(app.get_json("/v1/meetings/partners/audit", Some(ALPHA_KEY)).await).unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    for e in &log {
        let at = e["at"].as_str().expect("a string time");
        chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|_| panic!("RFC 3339: {at}"));
    }
    // Alpha owns the meeting: its own members by reference, beta's never.
    assert_eq!(
        (log[0]["actor_member_ref"].as_str(), log[0]["target_member_ref"].as_str()),
        (Some("fac-ref-1"), Some("member-ref-1"))
    );
    assert_eq!((log[1]["actor_member_ref"].clone(), log[1]["target_member_ref"].clone()), (Value::Null, Value::Null));
    assert_eq!(
        (log[2]["actor_member_ref"].clone(), log[2]["target_member_ref"].as_str()),
        (Value::Null, Some("member-ref-1"))
    );
    assert!(!serde_json::to_string(&log).unwrap().contains("beta-"), "no other program's references");
    // Participants never see member references.
    let (_, w) = app.join(ALPHA, "partners", "late-ref", Member, "Late").await;
    assert!(!w.to_string().contains("fac-ref-1") && !w.to_string().contains("member-ref-1"));
}
