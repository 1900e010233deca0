//! Meeting ids are per program (issue 12): two programs may each have a meeting `tuesday`; each
//! sees and manages only its own, a partner names a shared meeting `<owner>/<id>`, and nothing a
//! program can do tells it whether another program uses an id. A deleted id stays used by its
//! program. Meetings created before keep their ids.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use reqwest::Method;
use serde_json::{json, Value};

/// Status and JSON body (null when there is none) of an API request.
async fn call(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// What the `/v1/signal` upgrade answers a token: its refusal, or 101 with no body.
async fn upgrade(app: &TestApp, token: &str) -> (u16, Value) {
    match Client::connect(app.addr, token).await {
        Ok(_) => (101, Value::Null),
        Err(refusal) => refusal,
    }
}

async fn on_postgres() -> TestApp {
    let url = crate::store::fresh_postgres().await;
    spawn_with(|c| c.database_url = Some(url)).await
}

fn actions(log: &Value) -> Vec<&str> {
    log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect()
}

/// Waits until `key`'s export for `query` holds final rows only (results are stored at the end).
async fn final_rows(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let wait = async {
        loop {
            let rows = app.get_json(&format!("/v1/attendance?{query}"), Some(key)).await;
            let rows = rows.as_array().unwrap().clone();
            if !rows.is_empty() && rows.iter().all(|r| r["final"] == true) {
                return rows;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("results for {query} become final"))
}

#[tokio::test]
async fn two_programs_use_the_same_meeting_id_each_for_its_own_meeting() {
    same_id_in_two_programs(spawn_app().await).await;
}

#[tokio::test]
async fn two_programs_use_the_same_meeting_id_each_for_its_own_meeting_on_postgres() {
    same_id_in_two_programs(on_postgres().await).await;
}

async fn same_id_in_two_programs(app: TestApp) {
    let open = json!({"waiting_room": false});
    let a = app.create_meeting(ALPHA_KEY, json!({"id": "tuesday", "title": "Alpha Tuesday", "settings": open})).await;
    let b = app.create_meeting(BETA_KEY, json!({"id": "tuesday", "title": "Beta Tuesday", "settings": open})).await;
    assert_eq!((&a["id"], &a["program_id"]), (&json!("tuesday"), &json!(ALPHA)));
    assert_eq!((&b["id"], &b["program_id"]), (&json!("tuesday"), &json!(BETA)));

    // Reads and lists: each program its own.
    for (key, title) in [(ALPHA_KEY, "Alpha Tuesday"), (BETA_KEY, "Beta Tuesday")] {
        assert_eq!(app.get_json("/v1/meetings/tuesday", Some(key)).await["title"], title);
        let list = app.get_json("/v1/meetings", Some(key)).await;
        let tuesdays: Vec<&Value> = list.as_array().unwrap().iter().filter(|m| m["id"] == "tuesday").collect();
        assert_eq!(tuesdays.len(), 1, "{list}");
        assert_eq!(tuesdays[0]["title"], title);
    }
    let beta_list = app.get_json("/v1/meetings", Some(BETA_KEY)).await;
    assert_eq!(beta_list.as_array().unwrap().len(), 1, "beta lists its one meeting: {beta_list}");

    // Join tokens: each program's joins its own meeting, in its own room.
    let (mut af, aw) = app.join(ALPHA, "tuesday", "a-fac", Facilitator, "Ann").await;
    let (mut bf, bw) = app.join(BETA, "tuesday", "b-fac", Facilitator, "Bea").await;
    assert_eq!((&aw["meeting"]["title"], &aw["meeting"]["id"]), (&json!("Alpha Tuesday"), &json!("tuesday")));
    assert_eq!((&bw["meeting"]["title"], &bw["meeting"]["id"]), (&json!("Beta Tuesday"), &json!("tuesday")));
    assert_eq!(bw["participants"].as_array().unwrap().len(), 1, "beta's room holds beta's facilitator only: {bw}");
    let (am, _) = app.join(ALPHA, "tuesday", "a-mem", Member, "Abe").await;
    let joined = af.recv_type("participant_joined").await;
    assert_eq!(joined["participant"]["participant_id"], am.pid.clone().unwrap().as_str());
    let (_, before) = bf.request(json!({"type": "ping"})).await;
    assert!(before.is_empty(), "beta's facilitator heard nothing of alpha's room: {before:?}");

    // Audit logs: each its own meeting's actions.
    af.request(json!({"type": "lock"})).await;
    bf.request(json!({"type": "set_chat", "enabled": false})).await;
    app.flush_store().await;
    assert_eq!(actions(&app.get_json("/v1/meetings/tuesday/audit", Some(ALPHA_KEY)).await), ["lock"]);
    assert_eq!(actions(&app.get_json("/v1/meetings/tuesday/audit", Some(BETA_KEY)).await), ["chat_off"]);

    // Attendance by meeting id: each program's own meeting.
    for (key, title, members) in
        [(ALPHA_KEY, "Alpha Tuesday", vec!["a-fac", "a-mem"]), (BETA_KEY, "Beta Tuesday", vec!["b-fac"])]
    {
        let rows = app.get_json("/v1/attendance?meeting=tuesday", Some(key)).await;
        let rows = rows.as_array().unwrap();
        let refs: Vec<&str> = rows.iter().map(|r| r["member_ref"].as_str().unwrap()).collect();
        assert_eq!(refs, members);
        assert!(rows.iter().all(|r| r["meeting_id"] == "tuesday" && r["meeting_title"] == title), "{rows:?}");
    }

    // Deleting beta's ends beta's only: alpha's room runs on.
    assert_eq!(call(&app, Method::DELETE, "/v1/meetings/tuesday", BETA_KEY, None).await.0, 204);
    assert_eq!(bf.closed().await, Some(4003));
    assert_eq!(af.request(json!({"type": "ping"})).await.0["type"], "pong");
    assert_eq!(app.get_json("/v1/meetings/tuesday", Some(ALPHA_KEY)).await["status"], "live");
    let (status, body) = call(&app, Method::GET, "/v1/meetings/tuesday", BETA_KEY, None).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("meeting_deleted")));
}

#[tokio::test]
async fn a_join_token_joins_its_own_programs_meeting_and_never_the_others() {
    let app = spawn_app().await;
    // Beta's own `open` beside alpha's (made by the harness), with another title.
    app.create_meeting(BETA_KEY, json!({"id": "open", "title": "Beta open", "settings": {"waiting_room": false}}))
        .await;
    let (mut a, aw) = app.join(ALPHA, "open", "a1", Member, "Ann").await;
    let (mut b, bw) = app.join(BETA, "open", "b1", Member, "Bea").await;
    assert_eq!(aw["meeting"]["title"], "Open group");
    assert_eq!(bw["meeting"]["title"], "Beta open");
    assert_eq!(bw["participants"].as_array().unwrap().len(), 1, "not in alpha's room: {bw}");
    // Resume tokens come back to the same program's room.
    drop(a);
    let token = aw["resume_token"].as_str().unwrap();
    a = app.connect(token).await;
    a.send(json!({"type": "resume", "resume_token": token, "last_seq": 0})).await;
    assert_eq!(a.recv().await["type"], "resumed");
    let (_, before) = b.request(json!({"type": "ping"})).await;
    assert!(before.is_empty(), "beta's member heard nothing of alpha's room: {before:?}");
    // The join check names each program's own meeting.
    for (program, title) in [(ALPHA, "Open group"), (BETA, "Beta open")] {
        let c = app.post_json("/v1/join-check", json!({"token": app.token(program, "open", "x", Member)})).await;
        assert_eq!((&c["joinable"], &c["meeting_title"]), (&json!(true), &json!(title)), "{c}");
    }
    // Alpha's token cannot reach beta's meeting by its full name (it is not shared), nor beta's
    // alpha's: as for a meeting nobody has.
    let nobody = upgrade(&app, &app.token(ALPHA, &format!("{BETA}/nosuch"), "x", Member)).await;
    assert_eq!((nobody.0, nobody.1["code"].as_str()), (404, Some("meeting_not_found")));
    assert_eq!(upgrade(&app, &app.token(ALPHA, &format!("{BETA}/open"), "x", Member)).await, nobody);
    assert_eq!(upgrade(&app, &app.token(BETA, &alphas("open"), "x", Member)).await, nobody);
}

/// Everything beta can do that names meeting `id` (alpha's, or nobody's), with the answers:
/// reads, deletes, audit, attendance, series occurrences, join tokens and join checks, by the
/// id alone and by alpha's full name for it.
async fn beta_probes(app: &TestApp, id: &str) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    let full = alphas(id);
    let requests = [
        ("read", Method::GET, format!("/v1/meetings/{id}"), None),
        ("audit", Method::GET, format!("/v1/meetings/{id}/audit"), None),
        ("attendance", Method::GET, format!("/v1/attendance?meeting={id}"), None),
        ("attendance by full name", Method::GET, format!("/v1/attendance?meeting={full}"), None),
        ("attendance csv", Method::GET, format!("/v1/attendance?meeting={full}&format=csv"), None),
        (
            "edit occurrence",
            Method::PATCH,
            format!("/v1/series/beta-weekly/occurrences/{id}"),
            Some(json!({"title": "x"})),
        ),
        ("cancel occurrence", Method::DELETE, format!("/v1/series/beta-weekly/occurrences/{id}"), None),
        ("delete", Method::DELETE, format!("/v1/meetings/{id}"), None),
    ];
    for (what, method, path, body) in requests {
        let (status, answer) = if what == "attendance csv" {
            let r = app.http.get(app.url(&path)).bearer_auth(BETA_KEY).send().await.unwrap();
            (r.status().as_u16(), Value::String(r.text().await.unwrap()))
        } else {
            call(app, method, &path, BETA_KEY, body).await
        };
        out.push((what.to_string(), status, answer));
    }
    for (how, claim) in [("id", id.to_string()), ("full name", full)] {
        for role in [Member, Facilitator] {
            let token = app.token(BETA, &claim, "prober", role);
            let (status, body) = upgrade(app, &token).await;
            out.push((format!("upgrade by {how} as {role:?}"), status, body));
            let check = app.post_json("/v1/join-check", json!({"token": token})).await;
            out.push((format!("join check by {how} as {role:?}"), 200, check));
        }
    }
    out
}

#[tokio::test]
async fn probing_another_programs_meeting_ids_answers_as_for_ids_nobody_uses() {
    probing(spawn_app().await).await;
}

#[tokio::test]
async fn probing_another_programs_meeting_ids_answers_as_for_ids_nobody_uses_on_postgres() {
    probing(on_postgres().await).await;
}

async fn probing(app: TestApp) {
    // Alpha's: a live meeting, an idle one, a deleted one, a series and one of its occurrences.
    app.create_meeting(ALPHA_KEY, json!({"id": "secret-live", "title": "Alpha live"})).await;
    app.create_meeting(ALPHA_KEY, json!({"id": "secret-idle", "title": "Alpha idle"})).await;
    app.create_meeting(ALPHA_KEY, json!({"id": "secret-gone", "title": "Alpha gone"})).await;
    assert_eq!(call(&app, Method::DELETE, "/v1/meetings/secret-gone", ALPHA_KEY, None).await.0, 204);
    let (mut fac, _) = app.join(ALPHA, "secret-live", "a-fac", Facilitator, "Ann").await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%dT19:00:00").to_string();
    let series = json!({"title": "Weekly", "time_zone": "UTC", "dtstart": tomorrow, "rrule": "FREQ=WEEKLY",
        "duration_minutes": 60});
    let mut alpha_series = series.clone();
    alpha_series["id"] = json!("secret-series");
    let (status, s) = call(&app, Method::POST, "/v1/series", ALPHA_KEY, Some(alpha_series)).await;
    assert_eq!(status, 201, "{s}");
    let occurrence = s["occurrences"][0]["meeting_id"].as_str().unwrap().to_string();
    assert_eq!(app.get_json(&format!("/v1/meetings/{occurrence}"), Some(ALPHA_KEY)).await["title"], "Weekly");
    // Beta's own series, for the occurrence paths.
    let mut beta_series = series;
    beta_series["id"] = json!("beta-weekly");
    assert_eq!(call(&app, Method::POST, "/v1/series", BETA_KEY, Some(beta_series)).await.0, 201);

    let nobody = beta_probes(&app, "never-used").await;
    assert_eq!(nobody[0].1, 404, "{nobody:?}");
    for id in ["secret-live", "secret-idle", "secret-gone", "open", occurrence.as_str()] {
        assert_eq!(beta_probes(&app, id).await, nobody, "beta learns something about alpha's `{id}`");
    }
    // A series link, likewise.
    let series_link = |s: &str| app.token(BETA, &format!("series:{s}"), "prober", Member);
    assert_eq!(upgrade(&app, &series_link("secret-series")).await, upgrade(&app, &series_link("never-used")).await);

    // Creating: beta may use every one of those ids for its own meetings, as it may a new one.
    for id in ["never-used", "secret-live", "secret-idle", "secret-gone", occurrence.as_str()] {
        let (status, m) =
            call(&app, Method::POST, "/v1/meetings", BETA_KEY, Some(json!({"id": id, "title": "Beta's"}))).await;
        assert_eq!((status, &m["id"], &m["program_id"]), (201, &json!(id), &json!(BETA)), "{m}");
    }
    // Nothing beta did touched alpha's meetings.
    assert_eq!(app.get_json("/v1/meetings/secret-idle", Some(ALPHA_KEY)).await["title"], "Alpha idle");
    assert_eq!(app.get_json("/v1/meetings/secret-live", Some(ALPHA_KEY)).await["status"], "live");
    assert_eq!(fac.request(json!({"type": "ping"})).await.0["type"], "pong");
    let (status, _) = call(&app, Method::GET, "/v1/meetings/secret-gone", ALPHA_KEY, None).await;
    assert_eq!(status, 410, "alpha's deleted meeting stays alpha's deleted meeting");
}

#[tokio::test]
async fn a_deleted_meeting_id_stays_used_by_its_program_and_every_answer_says_so() {
    deleted_id(spawn_app().await).await;
}

#[tokio::test]
async fn a_deleted_meeting_id_stays_used_by_its_program_on_postgres() {
    deleted_id(on_postgres().await).await;
}

async fn deleted_id(app: TestApp) {
    app.create_meeting(ALPHA_KEY, json!({"id": "once", "title": "Once", "settings": {"waiting_room": false}})).await;
    let (mut m, _) = app.join(ALPHA, "once", "m-once", Member, "Sam").await;
    assert_eq!(call(&app, Method::DELETE, "/v1/meetings/once", ALPHA_KEY, None).await.0, 204);
    assert_eq!(m.closed().await, Some(4003), "a live meeting ends when deleted");
    // Read, audit and delete again: 410 meeting_deleted, the same body each time.
    let gone = call(&app, Method::GET, "/v1/meetings/once", ALPHA_KEY, None).await;
    assert_eq!((gone.0, gone.1["code"].as_str()), (410, Some("meeting_deleted")));
    assert_eq!(call(&app, Method::GET, "/v1/meetings/once/audit", ALPHA_KEY, None).await, gone);
    assert_eq!(call(&app, Method::DELETE, "/v1/meetings/once", ALPHA_KEY, None).await, gone);
    // Creating it again is refused with the same code (409: the id stays used), not 201.
    let again =
        call(&app, Method::POST, "/v1/meetings", ALPHA_KEY, Some(json!({"id": "once", "title": "Again"}))).await;
    assert_eq!((again.0, &again.1), (409, &gone.1), "the same code and message as a read");
    // An id in use is refused with its own code.
    let taken =
        call(&app, Method::POST, "/v1/meetings", ALPHA_KEY, Some(json!({"id": "open", "title": "Again"}))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("meeting_exists")));
    // Its links no longer join; its attendance stays, under its id.
    let refused = upgrade(&app, &app.token(ALPHA, "once", "late", Member)).await;
    assert_eq!((refused.0, refused.1["code"].as_str()), (404, Some("meeting_not_found")));
    let rows = final_rows(&app, ALPHA_KEY, "meeting=once").await;
    assert_eq!((&rows[0]["meeting_id"], &rows[0]["member_ref"]), (&json!("once"), &json!("m-once")));
    // Another program's ids are its own: beta's `once` is a new meeting.
    let (status, b) =
        call(&app, Method::POST, "/v1/meetings", BETA_KEY, Some(json!({"id": "once", "title": "Beta once"}))).await;
    assert_eq!((status, &b["program_id"]), (201, &json!(BETA)));
    assert_eq!(app.get_json("/v1/meetings/once", Some(BETA_KEY)).await["status"], "scheduled");
    assert_eq!(call(&app, Method::GET, "/v1/meetings/once", ALPHA_KEY, None).await, gone, "alpha's stays deleted");
}

#[tokio::test]
async fn a_partner_names_a_shared_meeting_by_its_owner_and_id_everywhere() {
    let app = spawn_app().await;
    // Alpha's `shared` (shared with beta, made by the harness) earns credit at once; beta has a
    // `shared` of its own.
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "credited", "title": "Credited group", "shared_with": [BETA],
               "settings": {"waiting_room": false}, "credit_policy": {"min_minutes": 0}}),
    )
    .await;
    app.create_meeting(BETA_KEY, json!({"id": "credited", "title": "Beta's own", "settings": {"waiting_room": false}}))
        .await;
    let (mut f, _) = app.join(ALPHA, "credited", "a-fac", Facilitator, "Ann").await;
    let (mut partner, pw) = app.join(BETA, &alphas("credited"), "b-mem", Member, "Bea").await;
    assert_eq!((&pw["meeting"]["title"], &pw["meeting"]["id"]), (&json!("Credited group"), &json!("credited")));
    f.recv_type("participant_joined").await;
    let (_own, ow) = app.join(BETA, "credited", "b-own", Member, "Bo").await;
    assert_eq!(ow["meeting"]["title"], "Beta's own", "the bare id is beta's own meeting");
    let check =
        app.post_json("/v1/join-check", json!({"token": app.token(BETA, &alphas("credited"), "b", Member)})).await;
    assert_eq!(check["meeting_title"], "Credited group");
    // A partner may name only what is shared with it; alpha's unshared `open` is nobody's to beta.
    let open = upgrade(&app, &app.token(BETA, &alphas("open"), "b", Member)).await;
    assert_eq!((open.0, open.1["code"].as_str()), (404, Some("meeting_not_found")));

    f.request(json!({"type": "end_meeting"})).await;
    partner.closed().await;
    // Beta's export names the meeting as beta's links do, and takes that name as a filter.
    let rows = final_rows(&app, BETA_KEY, &format!("meeting={}", alphas("credited"))).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((&rows[0]["member_ref"], &rows[0]["meeting_id"]), (&json!("b-mem"), &json!(alphas("credited"))));
    let own = app.get_json("/v1/attendance?meeting=credited", Some(BETA_KEY)).await;
    assert!(own.as_array().unwrap().iter().all(|r| r["member_ref"] == "b-own"), "beta's own `credited`: {own}");
    // Alpha's names it by its own id.
    let alpha_rows = final_rows(&app, ALPHA_KEY, "meeting=credited").await;
    assert_eq!((&alpha_rows[0]["member_ref"], &alpha_rows[0]["meeting_id"]), (&json!("a-fac"), &json!("credited")));
    // The partner member's certificate names the meeting the same way.
    let id = rows[0]["attendance_id"].as_str().unwrap();
    let cert = app.get_json(&format!("/v1/attendance/{id}/certificate"), Some(BETA_KEY)).await;
    assert_eq!(cert["claims"]["meeting"]["id"], alphas("credited"), "{cert}");
    assert_eq!(cert["claims"]["program"], BETA);
    let id = alpha_rows[0]["attendance_id"].as_str().unwrap();
    let cert = app.get_json(&format!("/v1/attendance/{id}/certificate"), Some(ALPHA_KEY)).await;
    assert_eq!(cert["claims"]["meeting"]["id"], "credited", "{cert}");
}

/// A database as it was before migration `version` (every earlier one run), with programs
/// alpha and beta in it.
async fn database_before(url: &str, version: i64) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let dialect = if url.starts_with("postgres") { "postgres" } else { "sqlite" };
    let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(&dir)).await.unwrap();
    let before: Vec<_> = migrator.migrations.iter().filter(|m| m.version < version).cloned().collect();
    assert!(before.len() < migrator.migrations.len(), "the per-program migration exists");
    migrator.migrations = before.into();
    migrator.run(&pool).await.unwrap();
    for (id, key) in [(ALPHA, ALPHA_KEY), (BETA, BETA_KEY)] {
        sqlx::query(
            "INSERT INTO programs (id, name, token_alg, token_key, api_key_sha256, created_at) VALUES ($1, $2, 'HS256', $3, $4, 1)",
        )
        .bind(id)
        .bind(id)
        .bind("old-secret")
        .bind(haven::auth::hash_api_key(key))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool
}

/// A database as Haven left it before meeting ids were per program: every migration before that
/// one, and rows written as the server wrote them then (the meeting's id is its key everywhere).
async fn legacy_database(url: &str) {
    use haven::protocol::MeetingSettings;
    let pool = database_before(url, 20261203000100).await;
    let settings = serde_json::to_string(&MeetingSettings { waiting_room: false, ..Default::default() }).unwrap();
    for (id, title, shared, at) in [
        ("legacy", "Legacy group", "[]".to_string(), 1_i64),
        ("legacy-shared", "Legacy shared", format!("[\"{BETA}\"]"), 2),
    ] {
        sqlx::query(
            "INSERT INTO meetings (id, program_id, title, capacity, settings, shared_with, created_at) VALUES ($1, $2, $3, 50, $4, $5, $6)",
        )
        .bind(id)
        .bind(ALPHA)
        .bind(title)
        .bind(&settings)
        .bind(shared)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Attendance recorded then, in the ledger under the bare id: one of alpha's members and one of beta's.
    let mut n = 0;
    for (program, member) in [(ALPHA, "old-a"), (BETA, "old-b")] {
        for (kind, at) in [("admitted", 1_000_i64), ("left", 61_000)] {
            n += 1;
            sqlx::query(
                "INSERT INTO presence (meeting_id, program_id, member_ref, participant_id, kind, at, record_key, role) \
                 VALUES ('legacy-shared', $1, $2, 'p000000000001', $3, $4, $5, 'member')",
            )
            .bind(program)
            .bind(member)
            .bind(kind)
            .bind(at)
            .bind(format!("old:{n}"))
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    pool.close().await;
}

#[tokio::test]
async fn meetings_created_before_ids_were_per_program_keep_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    legacy_database(&url).await;
    older_meetings_keep_working(spawn_with(|c| c.database_url = Some(url)).await).await;
}

#[tokio::test]
async fn meetings_created_before_ids_were_per_program_keep_their_ids_on_postgres() {
    let url = crate::store::fresh_postgres().await;
    legacy_database(&url).await;
    older_meetings_keep_working(spawn_with(|c| c.database_url = Some(url)).await).await;
}

async fn older_meetings_keep_working(app: TestApp) {
    // Alpha's older meetings, by their ids, in every answer.
    let m = app.get_json("/v1/meetings/legacy", Some(ALPHA_KEY)).await;
    assert_eq!((&m["id"], &m["title"]), (&json!("legacy"), &json!("Legacy group")), "{m}");
    let list = app.get_json("/v1/meetings", Some(ALPHA_KEY)).await;
    assert!(list.as_array().unwrap().iter().any(|m| m["id"] == "legacy-shared"), "{list}");
    let (mut f, w) = app.join(ALPHA, "legacy", "a-fac", Facilitator, "Ann").await;
    assert_eq!(w["meeting"]["id"], "legacy");
    f.request(json!({"type": "lock"})).await;
    // The ledger and audit log go on under the meeting's old key.
    app.flush_store().await;
    let store = &app.server.as_ref().unwrap().app.store;
    assert_eq!(store.presence_of("legacy", ALPHA, "a-fac").await.unwrap().len(), 1);
    assert_eq!(actions(&app.get_json("/v1/meetings/legacy/audit", Some(ALPHA_KEY)).await), ["lock"]);
    // The id stays alpha's alone: alpha cannot make it again, beta may make its own.
    let taken = call(&app, Method::POST, "/v1/meetings", ALPHA_KEY, Some(json!({"id": "legacy", "title": "x"}))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("meeting_exists")));
    app.create_meeting(
        BETA_KEY,
        json!({"id": "legacy", "title": "Beta's legacy", "settings": {"waiting_room": false}}),
    )
    .await;
    let (_b, bw) = app.join(BETA, "legacy", "b1", Member, "Bea").await;
    assert_eq!(bw["meeting"]["title"], "Beta's legacy");
    // The partner's links made before (the bare id) still join the shared meeting, and so does
    // its full name; the earlier attendance is exported under the name the program uses.
    for (i, name) in ["legacy-shared".to_string(), alphas("legacy-shared")].into_iter().enumerate() {
        let (_c, cw) = app.join(BETA, &name, &format!("b2-{i}"), Member, &format!("Partner {i}")).await;
        assert_eq!(cw["meeting"]["title"], "Legacy shared", "{name}");
        let rows = app.get_json(&format!("/v1/attendance?meeting={name}&to=1970-01-02"), Some(BETA_KEY)).await;
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        assert_eq!(
            (&rows[0]["member_ref"], &rows[0]["meeting_id"]),
            (&json!("old-b"), &json!(alphas("legacy-shared")))
        );
    }
    let rows = app.get_json("/v1/attendance?meeting=legacy-shared", Some(ALPHA_KEY)).await;
    assert_eq!(rows[0]["meeting_id"], "legacy-shared", "{rows}");
    assert_eq!(rows[0]["member_ref"], "old-a");
    // Alpha's unshared older meeting is nobody's to beta.
    let nobody = upgrade(&app, &app.token(BETA, "never-used", "b", Member)).await;
    assert_eq!(upgrade(&app, &app.token(BETA, &alphas("legacy"), "b", Member)).await, nobody);
}

// ---- series and formats (their ids are per program too) ----

/// A format with `segments` segments of its own titles, named `name`.
fn a_format(id: &str, name: &str, segments: usize) -> Value {
    let segments: Vec<Value> = (0..segments).map(|i| json!({"title": format!("{name} {i}")})).collect();
    json!({"id": id, "name": name, "segments": segments})
}

/// A weekly series in UTC whose first occurrence starts `minutes` from now (open within 15).
fn a_series(id: &str, title: &str, format: Option<&str>, minutes: i64) -> Value {
    let start = (chrono::Utc::now() + chrono::Duration::minutes(minutes)).format("%Y-%m-%dT%H:%M:00").to_string();
    let mut s = json!({"id": id, "title": title, "time_zone": "UTC", "dtstart": start, "rrule": "FREQ=WEEKLY",
        "duration_minutes": 60, "settings": {"waiting_room": false}});
    if let Some(f) = format {
        s["format"] = json!(f);
    }
    s
}

async fn created(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let (status, v) = call(app, Method::POST, path, key, Some(body)).await;
    assert_eq!(status, 201, "{path}: {v}");
    v
}

#[tokio::test]
async fn two_programs_use_the_same_series_and_format_ids_each_for_its_own() {
    same_series_and_format_ids(spawn_app().await).await;
}

#[tokio::test]
async fn two_programs_use_the_same_series_and_format_ids_each_for_its_own_on_postgres() {
    same_series_and_format_ids(on_postgres().await).await;
}

async fn same_series_and_format_ids(app: TestApp) {
    let programs = [(ALPHA, ALPHA_KEY, "Alpha", 2_usize), (BETA, BETA_KEY, "Beta", 3)];
    for (_, key, name, segments) in programs {
        let f = created(&app, key, "/v1/formats", a_format("twelve-step", &format!("{name} steps"), segments)).await;
        assert_eq!(f["id"], "twelve-step");
        let s =
            created(&app, key, "/v1/series", a_series("tuesdays", &format!("{name} Tuesdays"), Some("twelve-step"), 5))
                .await;
        assert_eq!(
            (&s["id"], &s["join_claim"], &s["format_id"]),
            (&json!("tuesdays"), &json!("series:tuesdays"), &json!("twelve-step"))
        );
    }
    for (program, key, name, segments) in programs {
        // Reads and lists: each program its own.
        let f = app.get_json("/v1/formats/twelve-step", Some(key)).await;
        assert_eq!((&f["id"], &f["name"]), (&json!("twelve-step"), &json!(format!("{name} steps"))), "{f}");
        let formats = app.get_json("/v1/formats", Some(key)).await;
        assert_eq!(formats.as_array().unwrap().len(), 1, "{formats}");
        let s = app.get_json("/v1/series/tuesdays", Some(key)).await;
        assert_eq!((&s["id"], &s["title"]), (&json!("tuesdays"), &json!(format!("{name} Tuesdays"))), "{s}");
        let list = app.get_json("/v1/series", Some(key)).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["id"], "tuesdays");
        // Its occurrences are its own meetings, naming the series and format by the program's ids.
        let first = s["occurrences"][0]["meeting_id"].as_str().unwrap().to_string();
        assert_eq!(s["occurrences"][0]["status"], "open", "{s}");
        let m = app.get_json(&format!("/v1/meetings/{first}"), Some(key)).await;
        assert_eq!((&m["series_id"], &m["format_id"]), (&json!("tuesdays"), &json!("twelve-step")), "{m}");
        let meetings = app.get_json("/v1/meetings", Some(key)).await;
        let occurrences: Vec<&Value> =
            meetings.as_array().unwrap().iter().filter(|m| m["series_id"] == "tuesdays").collect();
        assert_eq!(occurrences.len(), s["occurrences"].as_array().unwrap().len(), "{meetings}");
        // The series link joins the program's own open occurrence, with its own format.
        let (_c, w) = app.join(program, "series:tuesdays", &format!("{program}-m"), Member, "Sam").await;
        assert_eq!((&w["meeting"]["id"], &w["meeting"]["title"]), (&json!(first), &json!(format!("{name} Tuesdays"))));
        assert_eq!(w["agenda"]["segments"].as_array().unwrap().len(), segments, "{w}");
        let check =
            app.post_json("/v1/join-check", json!({"token": app.token(program, "series:tuesdays", "x", Member)})).await;
        assert_eq!((&check["joinable"], &check["meeting_title"]), (&json!(true), &json!(format!("{name} Tuesdays"))));
        // Attendance by series: the program's own occurrences, named by its ids.
        app.flush_store().await;
        let rows = app.get_json("/v1/attendance?series=tuesdays", Some(key)).await;
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (&rows[0]["member_ref"], &rows[0]["series_id"], &rows[0]["meeting_id"]),
            (&json!(format!("{program}-m")), &json!("tuesdays"), &json!(first))
        );
    }

    // Beta edits, then cancels its series and deletes its format: alpha's are as they were.
    let (status, s) =
        call(&app, Method::PATCH, "/v1/series/tuesdays", BETA_KEY, Some(json!({"title": "Beta renamed"}))).await;
    assert_eq!((status, &s["title"]), (200, &json!("Beta renamed")), "{s}");
    let (status, f) =
        call(&app, Method::PUT, "/v1/formats/twelve-step", BETA_KEY, Some(a_format("x", "Beta edited", 1))).await;
    assert_eq!((status, &f["name"]), (200, &json!("Beta edited")), "{f}");
    assert_eq!(call(&app, Method::DELETE, "/v1/series/tuesdays", BETA_KEY, None).await.0, 204);
    assert_eq!(call(&app, Method::DELETE, "/v1/formats/twelve-step", BETA_KEY, None).await.0, 204);
    let s = app.get_json("/v1/series/tuesdays", Some(ALPHA_KEY)).await;
    assert_eq!((&s["title"], &s["cancelled"]), (&json!("Alpha Tuesdays"), &json!(false)), "{s}");
    assert_eq!(app.get_json("/v1/formats/twelve-step", Some(ALPHA_KEY)).await["name"], "Alpha steps");
    let (_c, w) = app.join(ALPHA, "series:tuesdays", "a-late", Member, "Kim").await;
    assert_eq!(w["meeting"]["title"], "Alpha Tuesdays");
    let refused = upgrade(&app, &app.token(BETA, "series:tuesdays", "b-late", Member)).await;
    assert_eq!((refused.0, refused.1["code"].as_str()), (410, Some("series_cancelled")));
}

/// Everything beta can do that names series `series` and format `format` (alpha's, or nobody's),
/// with the answers. The id beta sent is replaced by `{id}` in each answer (a message may repeat
/// what was asked), so answers about different ids compare.
async fn beta_series_probes(app: &TestApp, series: &str, format: &str) -> Vec<(String, u16, String)> {
    let edit = json!({"title": "x"});
    let format_body = a_format("ignored", "x", 1);
    let mut with_format = a_series("beta-probe", "x", Some(format), 60);
    with_format["id"] = Value::Null;
    let requests = [
        ("read series", Method::GET, format!("/v1/series/{series}"), None, series),
        ("edit series", Method::PATCH, format!("/v1/series/{series}"), Some(edit.clone()), series),
        ("edit series occurrence", Method::PATCH, format!("/v1/series/{series}/occurrences/open"), Some(edit), series),
        ("cancel series occurrence", Method::DELETE, format!("/v1/series/{series}/occurrences/open"), None, series),
        ("attendance by series", Method::GET, format!("/v1/attendance?series={series}"), None, series),
        ("cancel series", Method::DELETE, format!("/v1/series/{series}"), None, series),
        ("read format", Method::GET, format!("/v1/formats/{format}"), None, format),
        ("edit format", Method::PUT, format!("/v1/formats/{format}"), Some(format_body), format),
        (
            "meeting with format",
            Method::POST,
            "/v1/meetings".to_string(),
            Some(json!({"title": "x", "format": format})),
            format,
        ),
        ("series with format", Method::POST, "/v1/series".to_string(), Some(with_format), format),
        ("delete format", Method::DELETE, format!("/v1/formats/{format}"), None, format),
    ];
    let mut out = Vec::new();
    for (what, method, path, body, id) in requests {
        let (status, answer) = call(app, method, &path, BETA_KEY, body).await;
        out.push((what.to_string(), status, answer.to_string().replace(id, "{id}")));
    }
    for role in [Member, Facilitator] {
        let token = app.token(BETA, &format!("series:{series}"), "prober", role);
        let (status, body) = upgrade(app, &token).await;
        out.push((format!("series link as {role:?}"), status, body.to_string().replace(series, "{id}")));
        let check = app.post_json("/v1/join-check", json!({"token": token})).await;
        out.push((format!("join check as {role:?}"), 200, check.to_string().replace(series, "{id}")));
    }
    out
}

#[tokio::test]
async fn probing_another_programs_series_and_format_ids_answers_as_for_ids_nobody_uses() {
    probing_series_and_formats(spawn_app().await).await;
}

#[tokio::test]
async fn probing_another_programs_series_and_format_ids_answers_as_for_ids_nobody_uses_on_postgres() {
    probing_series_and_formats(on_postgres().await).await;
}

async fn probing_series_and_formats(app: TestApp) {
    // Alpha's: a format in use, a deleted one; an open series, a cancelled one.
    created(&app, ALPHA_KEY, "/v1/formats", a_format("secret-format", "Alpha's", 2)).await;
    created(&app, ALPHA_KEY, "/v1/formats", a_format("gone-format", "Alpha's gone", 2)).await;
    assert_eq!(call(&app, Method::DELETE, "/v1/formats/gone-format", ALPHA_KEY, None).await.0, 204);
    created(&app, ALPHA_KEY, "/v1/series", a_series("secret-series", "Alpha open", Some("secret-format"), 5)).await;
    created(&app, ALPHA_KEY, "/v1/series", a_series("gone-series", "Alpha gone", None, 5)).await;
    assert_eq!(call(&app, Method::DELETE, "/v1/series/gone-series", ALPHA_KEY, None).await.0, 204);
    let (_fac, _) = app.join(ALPHA, "series:secret-series", "a-fac", Facilitator, "Ann").await;

    let nobody = beta_series_probes(&app, "never-used", "never-used-format").await;
    assert_eq!((nobody[0].1, nobody[6].1), (404, 404), "{nobody:?}");
    for (series, format) in [("secret-series", "secret-format"), ("gone-series", "gone-format")] {
        assert_eq!(
            beta_series_probes(&app, series, format).await,
            nobody,
            "beta learns something about alpha's `{series}` or `{format}`"
        );
    }

    // Creating: beta may use every one of those ids for its own, as it may a new one.
    for id in ["never-used-format", "secret-format", "gone-format"] {
        let f = created(&app, BETA_KEY, "/v1/formats", a_format(id, "Beta's", 1)).await;
        assert_eq!(f["id"], id);
    }
    for id in ["never-used", "secret-series", "gone-series"] {
        let format = match id {
            "secret-series" => Some("secret-format"),
            "gone-series" => Some("gone-format"),
            _ => None,
        };
        let s = created(&app, BETA_KEY, "/v1/series", a_series(id, "Beta's", format, 120)).await;
        assert_eq!((&s["id"], &s["cancelled"]), (&json!(id), &json!(false)));
    }
    // Nothing beta did touched alpha's.
    assert_eq!(app.get_json("/v1/formats/secret-format", Some(ALPHA_KEY)).await["name"], "Alpha's");
    let (status, _) = call(&app, Method::GET, "/v1/formats/gone-format", ALPHA_KEY, None).await;
    assert_eq!(status, 410, "alpha's deleted format stays alpha's deleted format");
    let s = app.get_json("/v1/series/secret-series", Some(ALPHA_KEY)).await;
    assert_eq!(
        (&s["title"], &s["cancelled"], &s["occurrences"][0]["status"]),
        (&json!("Alpha open"), &json!(false), &json!("live"))
    );
    assert_eq!(app.get_json("/v1/series/gone-series", Some(ALPHA_KEY)).await["cancelled"], true);
}

#[tokio::test]
async fn a_deleted_format_id_and_a_cancelled_series_id_stay_used_by_their_program() {
    let app = spawn_app().await;
    created(&app, ALPHA_KEY, "/v1/formats", a_format("once", "Once", 1)).await;
    assert_eq!(call(&app, Method::DELETE, "/v1/formats/once", ALPHA_KEY, None).await.0, 204);
    // Read, edit and delete again: 410 format_deleted, the same body each time.
    let gone = call(&app, Method::GET, "/v1/formats/once", ALPHA_KEY, None).await;
    assert_eq!((gone.0, gone.1["code"].as_str()), (410, Some("format_deleted")));
    assert_eq!(call(&app, Method::PUT, "/v1/formats/once", ALPHA_KEY, Some(a_format("once", "x", 1))).await, gone);
    assert_eq!(call(&app, Method::DELETE, "/v1/formats/once", ALPHA_KEY, None).await, gone);
    // Creating it again: 409 with the same code and message; a format in use has its own code.
    let again = call(&app, Method::POST, "/v1/formats", ALPHA_KEY, Some(a_format("once", "Again", 1))).await;
    assert_eq!((again.0, &again.1), (409, &gone.1));
    created(&app, ALPHA_KEY, "/v1/formats", a_format("used", "Used", 1)).await;
    let taken = call(&app, Method::POST, "/v1/formats", ALPHA_KEY, Some(a_format("used", "Again", 1))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("format_exists")));
    // A meeting cannot name the deleted one.
    let (status, e) =
        call(&app, Method::POST, "/v1/meetings", ALPHA_KEY, Some(json!({"title": "x", "format": "once"}))).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("format_not_found")), "{e}");

    // A cancelled series stays readable, and its id its own: creating it again answers as an edit.
    created(&app, ALPHA_KEY, "/v1/series", a_series("weekly", "Weekly", None, 120)).await;
    assert_eq!(call(&app, Method::DELETE, "/v1/series/weekly", ALPHA_KEY, None).await.0, 204);
    assert_eq!(app.get_json("/v1/series/weekly", Some(ALPHA_KEY)).await["cancelled"], true);
    let edit = call(&app, Method::PATCH, "/v1/series/weekly", ALPHA_KEY, Some(json!({"title": "x"}))).await;
    assert_eq!((edit.0, edit.1["code"].as_str()), (409, Some("series_cancelled")));
    let again = call(&app, Method::POST, "/v1/series", ALPHA_KEY, Some(a_series("weekly", "Again", None, 120))).await;
    assert_eq!(again, edit, "the same code and message as an edit");
    created(&app, ALPHA_KEY, "/v1/series", a_series("live", "Live", None, 120)).await;
    let taken = call(&app, Method::POST, "/v1/series", ALPHA_KEY, Some(a_series("live", "Again", None, 120))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("series_exists")));

    // Another program's ids are its own: beta's `once` and `weekly` are new.
    assert_eq!(created(&app, BETA_KEY, "/v1/formats", a_format("once", "Beta once", 1)).await["name"], "Beta once");
    let s = created(&app, BETA_KEY, "/v1/series", a_series("weekly", "Beta weekly", Some("once"), 120)).await;
    assert_eq!((&s["cancelled"], &s["format_id"]), (&json!(false), &json!("once")));
    assert_eq!(call(&app, Method::GET, "/v1/formats/once", ALPHA_KEY, None).await, gone, "alpha's stays deleted");
    assert_eq!(app.get_json("/v1/series/weekly", Some(ALPHA_KEY)).await["cancelled"], true);
}

/// A database as Haven left it before series and format ids were per program: every migration
/// before that one, and alpha's format `legacy-format`, series `legacy-series` (running it) and
/// the series' occurrence `m_legacy1`, open now, as the server wrote them then (their ids are
/// their keys; the occurrence names the series by it).
async fn legacy_series_database(url: &str) {
    use haven::protocol::{FormatSpec, MeetingSettings};
    let pool = database_before(url, 20261203000200).await;
    let format: FormatSpec =
        serde_json::from_value(json!({"segments": [{"title": "Old welcome"}, {"title": "Old sharing"}]})).unwrap();
    let format = serde_json::to_string(&format).unwrap();
    sqlx::query(
        "INSERT INTO formats (id, program_id, name, spec, created_at, updated_at) VALUES ('legacy-format', $1, 'Old format', $2, 1, 1)",
    )
    .bind(ALPHA)
    .bind(&format)
    .execute(&pool)
    .await
    .unwrap();
    // Weekly in UTC from five minutes from now (to the minute): its first occurrence is open.
    let start = (chrono::Utc::now().timestamp_millis() / 60_000 + 5) * 60_000;
    let dtstart = chrono::DateTime::from_timestamp_millis(start).unwrap().naive_utc();
    let spec = json!({"time_zone": "UTC", "dtstart": dtstart.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "rrule": "FREQ=WEEKLY", "duration_minutes": 60, "format_id": "legacy-format",
        "settings": {"waiting_room": false}});
    sqlx::query(
        "INSERT INTO series (id, program_id, title, spec, generation, created_at, updated_at) VALUES ('legacy-series', $1, 'Old series', $2, 0, 1, 1)",
    )
    .bind(ALPHA)
    .bind(spec.to_string())
    .execute(&pool)
    .await
    .unwrap();
    let settings = serde_json::to_string(&MeetingSettings { waiting_room: false, ..Default::default() }).unwrap();
    sqlx::query(
        "INSERT INTO meetings (id, local_id, program_id, title, scheduled_start, scheduled_end, capacity, settings, shared_with, \
         created_at, format_id, format, series_id, occurrence_key) \
         VALUES ($1, 'm_legacy1', $2, 'Old series', $3, $4, 50, $5, '[]', 1, 'legacy-format', $6, 'legacy-series', $7)",
    )
    .bind(haven::store::meeting_key(ALPHA, "m_legacy1"))
    .bind(ALPHA)
    .bind(start)
    .bind(start + 3_600_000)
    .bind(&settings)
    .bind(&format)
    .bind(haven::series::occurrence_key(0, start))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn series_and_formats_created_before_ids_were_per_program_keep_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    legacy_series_database(&url).await;
    older_series_and_formats_keep_working(spawn_with(|c| c.database_url = Some(url)).await).await;
}

#[tokio::test]
async fn series_and_formats_created_before_ids_were_per_program_keep_their_ids_on_postgres() {
    let url = crate::store::fresh_postgres().await;
    legacy_series_database(&url).await;
    older_series_and_formats_keep_working(spawn_with(|c| c.database_url = Some(url)).await).await;
}

async fn older_series_and_formats_keep_working(app: TestApp) {
    // Alpha's older format and series, by their ids, in every answer.
    let f = app.get_json("/v1/formats/legacy-format", Some(ALPHA_KEY)).await;
    assert_eq!((&f["id"], &f["name"]), (&json!("legacy-format"), &json!("Old format")), "{f}");
    // The horizon task extends the series at start, beside serving: wait for it.
    let extended = async {
        loop {
            let s = app.get_json("/v1/series/legacy-series", Some(ALPHA_KEY)).await;
            if s["occurrences"].as_array().is_some_and(|o| o.len() > 1) {
                return s;
            }
            tokio::task::yield_now().await;
        }
    };
    let s = tokio::time::timeout(std::time::Duration::from_secs(60), extended)
        .await
        .expect("the horizon goes on with the older series");
    assert_eq!(
        (&s["id"], &s["join_claim"], &s["format_id"]),
        (&json!("legacy-series"), &json!("series:legacy-series"), &json!("legacy-format")),
        "{s}"
    );
    assert_eq!(
        (&s["occurrences"][0]["meeting_id"], &s["occurrences"][0]["status"]),
        (&json!("m_legacy1"), &json!("open"))
    );
    let m = app.get_json("/v1/meetings/m_legacy1", Some(ALPHA_KEY)).await;
    assert_eq!((&m["series_id"], &m["format_id"]), (&json!("legacy-series"), &json!("legacy-format")), "{m}");
    // Its link made before joins the open occurrence, which runs the format.
    let (_c, w) = app.join(ALPHA, "series:legacy-series", "a-old", Member, "Ann").await;
    assert_eq!(w["meeting"]["id"], "m_legacy1");
    assert_eq!(w["agenda"]["segments"][1]["title"], "Old sharing", "{w}");
    app.flush_store().await;
    let rows = app.get_json("/v1/attendance?series=legacy-series", Some(ALPHA_KEY)).await;
    assert_eq!((&rows[0]["member_ref"], &rows[0]["series_id"]), (&json!("a-old"), &json!("legacy-series")), "{rows}");
    // Edits reach the occurrences under the older key.
    let (status, s) =
        call(&app, Method::PATCH, "/v1/series/legacy-series", ALPHA_KEY, Some(json!({"title": "Renamed"}))).await;
    assert_eq!((status, &s["occurrences"][1]["title"]), (200, &json!("Renamed")), "{s}");
    // The ids stay alpha's alone: alpha cannot make them again, beta may make its own.
    let taken = call(&app, Method::POST, "/v1/formats", ALPHA_KEY, Some(a_format("legacy-format", "x", 1))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("format_exists")));
    let taken =
        call(&app, Method::POST, "/v1/series", ALPHA_KEY, Some(a_series("legacy-series", "x", None, 120))).await;
    assert_eq!((taken.0, taken.1["code"].as_str()), (409, Some("series_exists")));
    created(&app, BETA_KEY, "/v1/formats", a_format("legacy-format", "Beta's", 3)).await;
    created(&app, BETA_KEY, "/v1/series", a_series("legacy-series", "Beta's series", Some("legacy-format"), 5)).await;
    let (_b, bw) = app.join(BETA, "series:legacy-series", "b1", Member, "Bea").await;
    assert_eq!(bw["meeting"]["title"], "Beta's series");
    assert_eq!(bw["agenda"]["segments"].as_array().unwrap().len(), 3);
    assert_eq!(app.get_json("/v1/formats/legacy-format", Some(ALPHA_KEY)).await["name"], "Old format");
    assert_eq!(app.get_json("/v1/series/legacy-series", Some(ALPHA_KEY)).await["title"], "Renamed");
}
