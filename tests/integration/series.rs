//! Recurring series (issue 15): occurrences in the series' time zone, the one join link,
//! editing and cancelling, and attendance per occurrence. Schedules are set relative to the
//! real clock (the server's), so each test knows which occurrence is open.

use crate::support::*;
use chrono::{Duration as ChronoDuration, NaiveDateTime, Timelike, Utc};
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::{json, Value};

const ZONE: chrono_tz::Tz = chrono_tz::America::Chicago;

/// Local time in the test zone `minutes` from now, to the minute.
fn local_in(minutes: i64) -> NaiveDateTime {
    let t = (Utc::now() + ChronoDuration::minutes(minutes)).with_timezone(&ZONE).naive_local();
    t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap()
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(ALPHA_KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn create_series(app: &TestApp, body: Value) -> Value {
    let (status, s) = send(app, reqwest::Method::POST, "/v1/series", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

fn weekly(id: &str, start: NaiveDateTime) -> Value {
    json!({
        "id": id,
        "title": "Tuesday group",
        "time_zone": "America/Chicago",
        "dtstart": start.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "rrule": "FREQ=WEEKLY",
        "duration_minutes": 60,
    })
}

fn occurrences(s: &Value) -> Vec<Value> {
    s["occurrences"].as_array().unwrap().clone()
}

/// The series link: a join token whose `meeting` claim names the series.
fn link(app: &TestApp, series: &str, member: &str, role: haven::auth::join_token::TokenRole) -> String {
    app.token(ALPHA, &format!("series:{series}"), member, role)
}

async fn refusal(app: &TestApp, token: &str) -> (u16, Value) {
    match Client::connect(app.addr, token).await {
        Ok(_) => panic!("the series link was accepted"),
        Err(r) => r,
    }
}

#[tokio::test]
async fn weekly_occurrences_across_a_daylight_saving_change_land_at_the_same_local_time() {
    // A horizon long enough to cross the next change of US daylight saving time, whenever this runs.
    let app = &spawn_with(|c| c.series.horizon_days = 250).await;
    let start = local_in(24 * 60).with_hour(19).unwrap().with_minute(0).unwrap();
    let s = create_series(app, weekly("tue", start)).await;
    let occ = occurrences(&s);
    assert!(occ.len() >= 27, "{}", occ.len());
    let mut offsets = std::collections::BTreeSet::new();
    for o in &occ {
        let local = o["local_start"].as_str().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(local).unwrap();
        assert_eq!((t.hour(), t.minute()), (19, 0), "{local}");
        let utc: chrono::DateTime<Utc> = o["scheduled_start"].as_str().unwrap().parse().unwrap();
        assert_eq!(utc, t.with_timezone(&Utc), "stored in UTC");
        offsets.insert(t.offset().local_minus_utc());
    }
    assert_eq!(offsets.len(), 2, "both sides of a daylight-saving change: {offsets:?}");
    let ids: std::collections::HashSet<&str> = occ.iter().map(|o| o["meeting_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), occ.len());
    // Each occurrence is a meeting of the program's own.
    let m = app.get_json(&format!("/v1/meetings/{}", occ[3]["meeting_id"].as_str().unwrap()), Some(ALPHA_KEY)).await;
    assert_eq!((m["series_id"].as_str(), m["title"].as_str()), (Some("tue"), Some("Tuesday group")));
}

#[tokio::test]
async fn cancelling_one_occurrence_leaves_the_others() {
    cancelling_one(&spawn_app().await).await;
}

async fn cancelling_one(app: &TestApp) {
    let s = create_series(app, weekly("tue", local_in(3 * 60))).await;
    let occ = occurrences(&s);
    assert_eq!(occ.len(), 4, "four weeks ahead by default");
    let second = occ[1]["meeting_id"].as_str().unwrap().to_string();
    let (status, _) = send(app, reqwest::Method::DELETE, &format!("/v1/series/tue/occurrences/{second}"), None).await;
    assert_eq!(status, 204);
    let s = app.get_json("/v1/series/tue", Some(ALPHA_KEY)).await;
    let status: Vec<&str> =
        s["occurrences"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["scheduled", "cancelled", "scheduled", "scheduled"]);
    // The cancelled one is gone as a meeting; the others are there, and it is never made again.
    let r = app.http.get(app.url(&format!("/v1/meetings/{second}"))).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 410);
    for o in [&occ[0], &occ[2], &occ[3]] {
        let m = app.get_json(&format!("/v1/meetings/{}", o["meeting_id"].as_str().unwrap()), Some(ALPHA_KEY)).await;
        assert_eq!(m["status"], "scheduled", "{m}");
    }
    let meeting_token = app.token(ALPHA, &second, "m1", Member);
    let (code, body) = refusal(app, &meeting_token).await;
    assert_eq!(code, 404, "{body}");
    // Another program cannot touch it.
    let r = app
        .http
        .delete(app.url(&format!("/v1/series/tue/occurrences/{}", occ[2]["meeting_id"].as_str().unwrap())))
        .bearer_auth(BETA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_series_link_joins_the_open_occurrence_and_is_refused_between_occurrences() {
    series_link(&spawn_app().await).await;
}

async fn series_link(app: &TestApp) {
    // Starts in five minutes: open now (occurrences open 15 minutes before their start).
    let s = create_series(app, weekly("soon", local_in(5))).await;
    let first = occurrences(&s)[0]["meeting_id"].as_str().unwrap().to_string();
    assert_eq!(occurrences(&s)[0]["status"], "open");
    let mut c = app.connect(&link(app, "soon", "m1", Member)).await;
    c.send(json!({"type": "join", "display_name": "Sam"})).await;
    let w = c.recv_type("waiting").await;
    assert_eq!(w["meeting_title"], "Tuesday group");
    let (_, fw) = app.join(ALPHA, &format!("series:{}", "soon"), "fac", Facilitator, "Chair").await;
    assert_eq!(fw["meeting"]["id"].as_str(), Some(first.as_str()), "the link joined the open occurrence");
    // The join-check explains the same answer without a socket.
    let ok = app.post_json("/v1/join-check", json!({"token": link(app, "soon", "m2", Member)})).await;
    assert_eq!(ok["joinable"], true, "{ok}");

    // Between occurrences: the next one starts in two hours.
    create_series(app, weekly("later", local_in(120))).await;
    let (status, body) = refusal(app, &link(app, "later", "m1", Member)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("series_not_open")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("next opens at"), "{body}");
    let check = app.post_json("/v1/join-check", json!({"token": link(app, "later", "m1", Member)})).await;
    assert_eq!(check["code"], "series_not_open", "{check}");
    assert_eq!(check["meeting_title"], "Tuesday group", "the join page can name the group");
    // Another program's token for the series is answered as for a series nobody has.
    let beta = sign_hs(BETA, &haven::auth::join_token::claims_for(BETA, "series:later", "b1", Member, 3600));
    let (status, body) = refusal(app, &beta).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("series_not_found")), "{body}");
    assert_eq!(refusal(app, &beta).await, refusal(app, &link(app, "nope", "m1", Member)).await);
    // A cancelled series refuses its link.
    let (status, _) = send(app, reqwest::Method::DELETE, "/v1/series/later", None).await;
    assert_eq!(status, 204);
    let (status, body) = refusal(app, &link(app, "later", "m1", Member)).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("series_cancelled")), "{body}");
}

/// Alpha's export filtered by series once every row is final.
async fn final_series_rows(app: &TestApp, series: &str) -> Vec<Value> {
    let wait = async {
        loop {
            let rows = app.get_json(&format!("/v1/attendance?series={series}"), Some(ALPHA_KEY)).await;
            let rows = rows.as_array().cloned().unwrap_or_default();
            if !rows.is_empty() && rows.iter().all(|r| r["final"] == true) {
                return rows;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("results become final")
}

#[tokio::test]
async fn editing_the_future_leaves_past_occurrences_and_their_attendance_untouched() {
    editing_the_future(&spawn_app().await).await;
}

/// The same on PostgreSQL (the queries are shared; the migrations are per dialect).
#[tokio::test]
async fn series_on_postgresql_cancel_join_and_edit_the_same_way() {
    let url = crate::store::fresh_postgres().await;
    let app = &spawn_with(|c| c.database_url = Some(url)).await;
    cancelling_one(app).await;
    series_link(app).await;
    let (status, _) = send(app, reqwest::Method::DELETE, "/v1/series/tue", None).await;
    assert_eq!(status, 204);
    let (status, f) =
        send(app, reqwest::Method::POST, "/v1/formats", Some(crate::formats::group_format("tuesday"))).await;
    assert_eq!(status, 201, "{f}");
    let (status, f) = send(app, reqwest::Method::GET, "/v1/formats/tuesday", None).await;
    assert_eq!((status, f["segments"][2]["rules"]["go_around"].as_str()), (200, Some("members")));
    editing_the_future_of(app, "tue2").await;
}

async fn editing_the_future(app: &TestApp) {
    editing_the_future_of(app, "tue").await;
}

async fn editing_the_future_of(app: &TestApp, id: &str) {
    let s = create_series(app, weekly(id, local_in(5))).await;
    let before = occurrences(&s);
    let first = before[0]["meeting_id"].as_str().unwrap().to_string();
    // The first occurrence takes place: a member attends through the series link; it ends.
    let (mut f, _) = app.join(ALPHA, &format!("series:{id}"), "fac", Facilitator, "Chair").await;
    let mut m = app.connect(&link(app, id, "member-1", Member)).await;
    m.send(json!({"type": "join", "display_name": "Sam"})).await;
    let waiting = m.recv_type("waiting").await;
    f.request(json!({"type": "admit", "participant_id": waiting["participant_id"]})).await;
    m.recv_type("welcome").await;
    f.request(json!({"type": "end_meeting"})).await;
    let rows = final_series_rows(app, id).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = rows.iter().find(|r| r["member_ref"] == "member-1").unwrap().clone();
    assert_eq!((row["meeting_id"].as_str(), row["series_id"].as_str()), (Some(first.as_str()), Some(id)));
    assert_eq!(row["occurrence"], before[0]["local_start"], "the row says which occurrence");
    assert_eq!(row["meeting_title"], "Tuesday group");

    // All future occurrences: a new title, then a new time (the schedule is made afresh).
    let (status, s) =
        send(app, reqwest::Method::PATCH, &format!("/v1/series/{id}"), Some(json!({"title": "Tuesday evening group"})))
            .await;
    assert_eq!(status, 200, "{s}");
    let new_start = local_in(5 + 90);
    let (status, s) = send(
        app,
        reqwest::Method::PATCH,
        &format!("/v1/series/{id}"),
        Some(json!({"dtstart": new_start.format("%Y-%m-%dT%H:%M:%S").to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let after = occurrences(&s);
    let past = after.iter().find(|o| o["meeting_id"] == first.as_str()).expect("the past occurrence stays");
    assert_eq!((past["status"].as_str(), past["title"].as_str()), (Some("ended"), Some("Tuesday group")));
    assert_eq!(past["scheduled_start"], before[0]["scheduled_start"]);
    let live: Vec<&Value> =
        after.iter().filter(|o| o["status"] != "cancelled" && o["meeting_id"] != first.as_str()).collect();
    assert_eq!(live.len(), 4, "{after:?}");
    for o in &live {
        assert_eq!(o["title"], "Tuesday evening group");
        assert!(!before.iter().any(|b| b["meeting_id"] == o["meeting_id"]), "new occurrences, new ids");
    }
    // One occurrence by hand, then the past again: attendance is as it was.
    let one = live[1]["meeting_id"].as_str().unwrap();
    let (status, o) = send(
        app,
        reqwest::Method::PATCH,
        &format!("/v1/series/{id}/occurrences/{one}"),
        Some(json!({"title": "Holiday special"})),
    )
    .await;
    assert_eq!((status, o["title"].as_str()), (200, Some("Holiday special")), "{o}");
    let (status, e) = send(
        app,
        reqwest::Method::PATCH,
        &format!("/v1/series/{id}/occurrences/{first}"),
        Some(json!({"title": "Rewritten"})),
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (409, Some("occurrence_started")), "{e}");
    let (status, _) = send(app, reqwest::Method::DELETE, &format!("/v1/series/{id}/occurrences/{first}"), None).await;
    assert_eq!(status, 409);
    assert_eq!(final_series_rows(app, id).await, rows, "past attendance untouched");
    // The export filter keeps other meetings out.
    let other = app.get_json("/v1/attendance?series=none", Some(ALPHA_KEY)).await;
    assert_eq!(other.as_array().unwrap().len(), 0);
    let csv = app.get_text(&format!("/v1/attendance?series={id}&format=csv"), Some(ALPHA_KEY)).await;
    assert!(csv.lines().next().unwrap().ends_with(",role,series_id,occurrence"), "{csv}");
}

#[tokio::test]
async fn series_are_validated_and_the_programs_own() {
    let app = &spawn_app().await;
    let mut bad = weekly("x", local_in(60));
    bad["rrule"] = json!("FREQ=SECONDLY");
    let (status, e) = send(app, reqwest::Method::POST, "/v1/series", Some(bad)).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("invalid_series")), "{e}");
    let mut bad = weekly("x", local_in(60));
    bad["time_zone"] = json!("Atlantis/Capital");
    let (status, e) = send(app, reqwest::Method::POST, "/v1/series", Some(bad)).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("invalid_series")), "{e}");
    let mut bad = weekly("x", local_in(60));
    bad["format"] = json!("no-such-format");
    let (status, e) = send(app, reqwest::Method::POST, "/v1/series", Some(bad)).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("format_not_found")), "{e}");
    // With a format: every occurrence runs it.
    let (status, _) =
        send(app, reqwest::Method::POST, "/v1/formats", Some(crate::formats::group_format("tuesday"))).await;
    assert_eq!(status, 201);
    let mut body = weekly("fmt", local_in(5));
    body["format"] = json!("tuesday");
    body["settings"] = json!({"waiting_room": false});
    create_series(app, body).await;
    let (_, w) = app.join(ALPHA, "series:fmt", "m1", Member, "Sam").await;
    assert_eq!(w["agenda"]["segments"].as_array().unwrap().len(), 3, "{w}");
    let r = app.http.get(app.url("/v1/series/fmt")).bearer_auth(BETA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let list = app.http.get(app.url("/v1/series")).bearer_auth(BETA_KEY).send().await.unwrap();
    assert_eq!(list.json::<Value>().await.unwrap().as_array().unwrap().len(), 0);
}
