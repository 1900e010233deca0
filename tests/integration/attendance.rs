//! Attendance over the whole path: joins, drops, resumes, removals; exports in JSON and CSV;
//! program isolation; certificates that verify independently, survive key rotation and refuse tampering.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

async fn export(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let r = app.http.get(app.url(&format!("/v1/attendance?{query}"))).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Alpha's rows for a meeting once its results are final (they are stored as the meeting ends).
async fn final_rows(app: &TestApp, meeting: &str) -> Vec<Value> {
    let wait = async {
        loop {
            let rows = export(app, ALPHA_KEY, &format!("meeting={meeting}")).await;
            if !rows.is_empty() && rows.iter().all(|r| r["final"] == true) {
                return rows;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("results become final")
}

fn by_member<'a>(rows: &'a [Value], member: &str) -> &'a Value {
    rows.iter().find(|r| r["member_ref"] == member).unwrap_or_else(|| panic!("no row for {member}"))
}

/// A meeting scheduled for the next two seconds, credited at 75% of that, no gap tolerance, and a
/// timed share of two seconds: its `share_ended` marks the end of the scheduled window.
async fn two_second_meeting(app: &TestApp) {
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::milliseconds(2000);
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "att", "title": "Evening group, \"step 4\"", "shared_with": [BETA],
               "scheduled_start": now.to_rfc3339(), "scheduled_end": end.to_rfc3339(),
               "settings": {"waiting_room": false, "share_seconds": 2, "share_warning_seconds": 1, "share_end": "hard"},
               "credit_policy": {"min_share_percent": 75, "max_gap_seconds": 0}}),
    )
    .await;
}

#[tokio::test]
async fn export_shows_intervals_and_verdicts_and_only_the_programs_own_members() {
    export_scenario(spawn_app().await).await;
}

#[tokio::test]
async fn export_shows_intervals_and_verdicts_on_postgres() {
    let url = crate::store::fresh_postgres().await;
    export_scenario(spawn_with(|c| c.database_url = Some(url)).await).await;
}

async fn export_scenario(app: TestApp) {
    two_second_meeting(&app).await;
    let (mut f, _) = app.join(ALPHA, "att", "fac-ref", Facilitator, "Facil").await;
    let (a, welcome_a) = app.join(ALPHA, "att", "alice-ref", Member, "Alice").await;
    let (mut brief, _) = app.join(ALPHA, "att", "brief-ref", Member, "Brief").await;
    let (c, _) = app.join(ALPHA, "att", "carol-ref", Member, "Carol").await;
    let (mut beta, _) = app.join(BETA, &alphas("att"), "beta-ref", Member, "Bea").await;
    let a_pid = a.pid.clone().unwrap();
    // Brief leaves at once; Carol is removed; Alice drops and comes back.
    brief.send(json!({"type": "leave"})).await;
    brief.closed().await;
    f.request(json!({"type": "remove", "participant_id": c.pid.clone().unwrap()})).await;
    drop(a);
    f.recv_until(|v| v["type"] == "participant_updated" && v["participant"]["participant_id"] == a_pid.as_str()).await;
    let token = welcome_a["resume_token"].as_str().unwrap();
    let mut a = app.connect(token).await;
    a.send(json!({"type": "resume", "resume_token": token, "last_seq": 0})).await;
    assert_eq!(a.recv().await["type"], "resumed");
    // The scheduled window passes (the two-second share ends), then the meeting ends.
    f.request(json!({"type": "give_floor", "participant_id": a_pid})).await;
    f.recv_type("share_ended").await;
    f.request(json!({"type": "end_meeting"})).await;
    beta.closed().await;

    // Alpha sees its four members, final, and not Beta's.
    let rows = final_rows(&app, "att").await;
    assert_eq!(rows.len(), 4, "fac, alice, brief, carol: {rows:?}");
    assert!(rows.iter().all(|r| r["member_ref"] != "beta-ref"));
    let alice = by_member(&rows, "alice-ref");
    assert_eq!(alice["interruptions"], 1, "the drop is a gap with no tolerance");
    assert_eq!(alice["intervals"].as_array().unwrap().len(), 2);
    // The verdict follows from the intervals the export states, whatever the machine's speed
    // made them: 75% of the scheduled window, counted within it.
    let credited = share_within_window(alice) >= 75.0;
    assert_eq!(alice["credited"], credited, "{alice}");
    assert!(alice["rule"].as_str().unwrap().starts_with(if credited { "met:" } else { "not met:" }));
    assert_eq!(alice["policy"]["min_share_percent"], 75);
    for m in ["brief-ref", "carol-ref"] {
        let r = by_member(&rows, m);
        assert_eq!(r["credited"], false, "{r}");
        assert_eq!(r["intervals"].as_array().unwrap().len(), 1);
        assert!(r["rule"].as_str().unwrap().starts_with("not met"));
    }
    // Beta sees only its own member.
    let rows = export(&app, BETA_KEY, "").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["member_ref"], "beta-ref");
    // Filters: one member; a date range that excludes the meeting.
    assert_eq!(export(&app, ALPHA_KEY, "member=alice-ref").await.len(), 1);
    assert!(export(&app, ALPHA_KEY, "from=2000-01-01&to=2000-12-31").await.is_empty());

    // CSV: a header and one row per member, RFC 4180 quoting of the title.
    let csv =
        app.http.get(app.url("/v1/attendance?meeting=att&format=csv")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut reader = csv_reader(&text);
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[4], "member_ref");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 4);
    let alice_csv = records.iter().find(|r| &r[4] == "alice-ref").unwrap();
    assert_eq!(&alice_csv[3], "Evening group, \"step 4\"");
    assert_eq!(&alice_csv[12], if credited { "true" } else { "false" });
    assert_eq!(&alice_csv[11], "1");
}

fn millis(v: &Value) -> f64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis() as f64
}

/// The percentage of the row's scheduled window covered by its intervals.
fn share_within_window(row: &Value) -> f64 {
    let (s, e) = (millis(&row["scheduled_start"]), millis(&row["scheduled_end"]));
    let within: f64 = row["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (millis(&i[1]).min(e) - millis(&i[0]).max(s)).max(0.0))
        .sum();
    within * 100.0 / (e - s)
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::Reader::from_reader(text.as_bytes())
}

#[tokio::test]
async fn certificates_verify_with_the_published_key_and_refuse_tampering() {
    let mut app = spawn_app().await;
    two_second_meeting(&app).await;
    let (mut f, _) = app.join(ALPHA, "att", "fac-ref", Facilitator, "Facil").await;
    let (mut a, _) = app.join(ALPHA, "att", "alice-ref", Member, "Alice").await;
    let (mut brief, _) = app.join(ALPHA, "att", "brief-ref", Member, "Brief").await;
    brief.send(json!({"type": "leave"})).await;
    brief.closed().await;
    f.request(json!({"type": "give_floor", "participant_id": a.pid.clone().unwrap()})).await;
    f.recv_type("share_ended").await;
    f.request(json!({"type": "end_meeting"})).await;
    a.closed().await;
    let rows = final_rows(&app, "att").await;
    let alice_id = by_member(&rows, "alice-ref")["attendance_id"].as_str().unwrap().to_string();
    let brief_id = by_member(&rows, "brief-ref")["attendance_id"].as_str().unwrap().to_string();

    let r = app
        .http
        .get(app.url(&format!("/v1/attendance/{alice_id}/certificate")))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cert = r.json::<Value>().await.unwrap()["certificate"].as_str().unwrap().to_string();

    // Verified offline with the JWKS key, through jsonwebtoken's own decoder.
    let jwks = app.get_json("/.well-known/jwks.json", None).await;
    let check = |cert: &str, jwks: &Value| -> Result<Value, jsonwebtoken::errors::Error> {
        let kid = jsonwebtoken::decode_header(cert)?.kid.unwrap();
        let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("kid is published");
        let key = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap())?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        Ok(jsonwebtoken::decode::<Value>(cert, &key, &v)?.claims)
    };
    let claims = check(&cert, &jwks).unwrap();
    assert_eq!(claims["sub"], "alice-ref");
    assert_eq!(claims["program"], ALPHA);
    assert_eq!(claims["meeting"]["id"], "att");
    assert_eq!(claims["verdict"]["credited"], true);
    assert!(claims["policy"].is_object() && claims["minutes_present"].is_number());

    // One changed byte anywhere in the payload is refused, offline and by the server.
    let tampered = {
        let mut parts: Vec<String> = cert.split('.').map(String::from).collect();
        let mut b = parts[1].clone().into_bytes();
        b[5] = if b[5] == b'x' { b'y' } else { b'x' };
        parts[1] = String::from_utf8(b).unwrap();
        parts.join(".")
    };
    assert!(check(&tampered, &jwks).is_err());
    let v = app.post_json("/v1/certificates/verify", json!({"certificate": tampered})).await;
    assert_eq!(v["valid"], false);
    let v = app.post_json("/v1/certificates/verify", json!({"certificate": cert})).await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"]["sub"], "alice-ref");

    // No certificate for an uncredited attendance, nor for another program.
    let r = app
        .http
        .get(app.url(&format!("/v1/attendance/{brief_id}/certificate")))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .http
        .get(app.url(&format!("/v1/attendance/{alice_id}/certificate")))
        .bearer_auth(BETA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The member asks for their own certificate over the signaling connection after the end.
    let url_token = app.token(ALPHA, "att", "alice-ref", Member);
    let mut c = Client::connect(app.addr, &format!("{url_token}&certificate=1")).await.unwrap();
    let (reply, _) = c.request(json!({"type": "certificate_request"})).await;
    assert_eq!(reply["type"], "certificate");
    assert_eq!(check(reply["certificate"].as_str().unwrap(), &jwks).unwrap()["sub"], "alice-ref");
    let mut c = Client::connect(app.addr, &format!("{}&certificate=1", app.token(ALPHA, "att", "brief-ref", Member)))
        .await
        .unwrap();
    c.expect_error(json!({"type": "certificate_request"}), "certificate_unavailable").await;

    // Rotate the key and restart: the old certificate still verifies; new ones use the new key.
    let server = app.server.take().unwrap();
    let store = server.app.store.clone();
    let config = server.app.config.clone();
    server.shutdown().await;
    store
        .rotate_key(&haven::attendance::certificate::generate_key(chrono::Utc::now().timestamp_millis()))
        .await
        .unwrap();
    let mut config = config;
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = haven::Server::start(config).await.unwrap();
    app.addr = server.addr;
    app.server = Some(server);
    let jwks2 = app.get_json("/.well-known/jwks.json", None).await;
    assert_eq!(jwks2["keys"].as_array().unwrap().len(), 2);
    assert!(check(&cert, &jwks2).is_ok());
    let v = app.post_json("/v1/certificates/verify", json!({"certificate": cert})).await;
    assert_eq!(v["valid"], true);
    let r: Value = app.get_json(&format!("/v1/attendance/{alice_id}/certificate"), Some(ALPHA_KEY)).await;
    let new_kid = jsonwebtoken::decode_header(r["certificate"].as_str().unwrap()).unwrap().kid.unwrap();
    assert_ne!(new_kid, jsonwebtoken::decode_header(&cert).unwrap().kid.unwrap());
}

#[tokio::test]
async fn exports_show_roles_and_facilitation_earns_credit_only_where_the_program_says() {
    let app = spawn_with(|c| {
        c.programs[0].facilitation_earns_credit = false;
        c.public_url = Some("https://meet.example.org".into());
    })
    .await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "roles", "title": "Roles", "shared_with": [BETA], "partner_facilitators": true, "settings": {"waiting_room": false},
               "credit_policy": {"min_minutes": 0}}),
    )
    .await;
    let (mut f, _) = app.join(ALPHA, "roles", "fac-ref", Facilitator, "Facil").await;
    let (_m, _) = app.join(ALPHA, "roles", "mem-ref", Member, "Sam").await;
    let (_o, _) = app.join(ALPHA, "roles", "obs-ref", haven::auth::join_token::TokenRole::Observer, "Watcher").await;
    let (_b, _) = app.join(BETA, &alphas("roles"), "bfac-ref", Facilitator, "Bea").await;
    f.request(json!({"type": "end_meeting"})).await;
    let rows = final_rows(&app, "roles").await;
    assert_eq!(rows.len(), 3);
    let (fac, mem, obs) = (by_member(&rows, "fac-ref"), by_member(&rows, "mem-ref"), by_member(&rows, "obs-ref"));
    assert_eq!(
        (fac["role"].as_str(), mem["role"].as_str(), obs["role"].as_str()),
        (Some("facilitator"), Some("member"), Some("observer"))
    );
    assert_eq!(mem["credited"], true, "positive control: presence earns credit here");
    assert_eq!(fac["credited"], false, "{fac}");
    assert!(fac["rule"].as_str().unwrap().contains("facilitation does not earn credit"), "{fac}");
    assert_eq!(obs["credited"], false, "{obs}");
    // Beta lets facilitation earn credit: its facilitator in the same meeting is credited.
    let beta = export(&app, BETA_KEY, &format!("meeting={}", alphas("roles"))).await;
    assert_eq!((beta[0]["role"].as_str(), beta[0]["credited"].as_bool()), (Some("facilitator"), Some(true)));
    // CSV: the role comes after the columns consumers already read (later columns after it).
    let text = app.get_text("/v1/attendance?meeting=roles&format=csv", Some(ALPHA_KEY)).await;
    let mut reader = csv_reader(&text);
    let header = reader.headers().unwrap().clone();
    let role_at = header.iter().position(|h| h == "role").unwrap();
    assert_eq!((role_at, header.iter().skip(role_at + 1).collect::<Vec<_>>()), (15, vec!["series_id", "occurrence"]));
    let roles: Vec<(String, String)> =
        reader.records().map(|r| r.unwrap()).map(|r| (r[4].to_string(), r[role_at].to_string())).collect();
    assert!(roles.contains(&("fac-ref".into(), "facilitator".into())), "{roles:?}");
    assert!(roles.contains(&("mem-ref".into(), "member".into())), "{roles:?}");

    // The certificate's issuer is the server's public URL.
    let id = mem["attendance_id"].as_str().unwrap();
    let cert: Value = app.get_json(&format!("/v1/attendance/{id}/certificate"), Some(ALPHA_KEY)).await;
    assert_eq!(cert["claims"]["iss"], "https://meet.example.org");
    let v = app.post_json("/v1/certificates/verify", json!({"certificate": cert["certificate"]})).await;
    assert_eq!((v["valid"].as_bool(), v["claims"]["iss"].as_str()), (Some(true), Some("https://meet.example.org")));
}

#[tokio::test]
async fn results_stored_before_roles_keep_their_verdict() {
    use haven::attendance::credit::Kind;
    use haven::journal::{Entry, Record};
    use haven::store::{PresenceRow, ResultRow};
    let app = spawn_with(|c| c.programs[0].facilitation_earns_credit = false).await;
    let store = app.server.as_ref().unwrap().app.store.clone();
    let row = PresenceRow {
        meeting_id: key(ALPHA, "open"),
        program_id: ALPHA.into(),
        member_ref: "old-fac".into(),
        participant_id: "p000000000009".into(),
        kind: Kind::Admitted,
        reason: None,
        at: 1_000,
        role: Some("facilitator".into()),
    };
    store.apply_journal("test", &[Entry { lsn: 1, rec: Record::Presence(row), fence: None }]).await.unwrap();
    // A result as stored before roles existed: no `role` field, credited.
    let legacy = json!({"meeting_title": "Open group", "scheduled_start": null, "scheduled_end": null,
        "policy": {"min_minutes": 1, "min_share_percent": null, "max_gap_seconds": 120},
        "outcome": {"seconds_present": 3600, "first_admitted": 1000, "last_left": 3601000, "interruptions": 0,
                    "intervals": [[1000, 3601000]], "credited": true, "rule": "met: present 60 of 1 minutes required"}});
    store
        .insert_result(&ResultRow {
            id: "att_legacy".into(),
            meeting_id: key(ALPHA, "open"),
            program_id: ALPHA.into(),
            member_ref: "old-fac".into(),
            computed_at: 3_601_000,
            result: legacy.to_string(),
        })
        .await
        .unwrap();
    let rows = export(&app, ALPHA_KEY, "meeting=open").await;
    let r = by_member(&rows, "old-fac");
    assert_eq!(r["final"], true);
    assert_eq!(r["credited"], true, "a stored verdict is never rewritten: {r}");
    assert_eq!(r["rule"], "met: present 60 of 1 minutes required");
    assert_eq!(r["role"], "facilitator", "the ledger still tells the role");
}
