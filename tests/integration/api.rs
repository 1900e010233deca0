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
    let got: Value = app
        .http
        .get(app.url(&format!("/v1/meetings/{id}")))
        .bearer_auth(BETA_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], "Thursday IOP");
    let list: Vec<Value> =
        app.http.get(app.url("/v1/meetings")).bearer_auth(BETA_KEY).send().await.unwrap().json().await.unwrap();
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
    let list: Vec<Value> =
        app.http.get(app.url("/v1/meetings")).bearer_auth(BETA_KEY).send().await.unwrap().json().await.unwrap();
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
}
