//! The same store behaviour on SQLite and on PostgreSQL.

use crate::support::*;
use haven::journal::{AuditRecord, Entry, Record};
use haven::protocol::{MeetingSettings, ParticipantId};
use haven::room::MemberKey;
use haven::store::{MeetingRow, ProgramRow, Store, StoreError};

/// A fresh PostgreSQL database on the local server (`HAVEN_TEST_PG` overrides the admin URL).
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let admin = std::env::var("HAVEN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("haven_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut conn =
        sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL must be running on 127.0.0.1:5432 (see README)");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

async fn exercise(store: Store) {
    let p = ProgramRow {
        id: "p1".into(),
        name: "Program one".into(),
        token_alg: "HS256".into(),
        token_key: "k".repeat(32),
        api_key_sha256: "ab".repeat(32),
    };
    store.upsert_program(&p, 1).await.unwrap();
    store.upsert_program(&ProgramRow { name: "Renamed".into(), ..p.clone() }, 2).await.unwrap();
    let programs = store.programs().await.unwrap();
    assert_eq!(programs.len(), 1);
    assert_eq!(programs[0].name, "Renamed");

    let m = MeetingRow {
        title: "Group".into(),
        scheduled_start: Some(1000),
        settings: MeetingSettings { floor_control: true, ..Default::default() },
        shared_with: vec!["p2".into()],
        created_at: 5,
        credit_policy: Some(haven::attendance::credit::CreditPolicy {
            min_minutes: Some(30),
            min_share_percent: None,
            max_gap_seconds: 60,
        }),
        ..meeting_row("p1", "m1")
    };
    store.create_meeting(&m).await.unwrap();
    assert!(matches!(store.create_meeting(&m).await, Err(StoreError::Conflict)));
    assert_eq!(store.meeting("m1").await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.meetings_of("p1", 10).await.unwrap().len(), 1);
    assert!(store.meetings_of("p2", 10).await.unwrap().is_empty());

    let member = MemberKey { program: "p1".into(), member_ref: "ref-1".into() };
    store.add_ban("m1", &member, 7).await.unwrap();
    store.add_ban("m1", &member, 8).await.unwrap();
    assert_eq!(store.bans("m1").await.unwrap(), vec![member]);

    let entry = |lsn: u64, action: &str| Entry {
        lsn,
        rec: Record::Audit(AuditRecord {
            meeting: "m1".into(),
            at: 9,
            actor: ParticipantId::from_random(1).to_string(),
            actor_name: "Facil".into(),
            action: action.into(),
            target: Some(ParticipantId::from_random(2).to_string()),
            target_name: Some("Sam".into()),
            detail: None,
        }),
        fence: None,
    };
    let audits = [entry(1, "mute"), entry(2, "remove")];
    store.apply_journal("j1", &audits).await.unwrap();
    // A replayed batch (after a crash or an outage) stores nothing twice.
    store.apply_journal("j1", &audits).await.unwrap();
    let log = store.audit_log("m1").await.unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["mute", "remove"]);

    // The attendance ledger, results and keys.
    use haven::attendance::credit::Kind;
    use haven::store::{PresenceRow, ResultRow};
    let rec = |member: &str, program: &str, kind: Kind, at: i64| PresenceRow {
        meeting_id: "m1".into(),
        program_id: program.into(),
        member_ref: member.into(),
        participant_id: "p000000000001".into(),
        kind,
        reason: None,
        at,
        role: None,
    };
    let batch: Vec<Entry> = [
        Record::Presence(rec("ref-1", "p1", Kind::Admitted, 100)),
        Record::Presence(rec("ref-1", "p1", Kind::Left, 900)),
        Record::Presence(rec("ref-2", "p2", Kind::Admitted, 200)),
        Record::Heartbeat { at: 2000, meetings: vec!["m1".into(), "m2".into()] },
        Record::Heartbeat { at: 1000, meetings: vec!["m1".into()] },
    ]
    .into_iter()
    .zip(10..)
    .map(|(rec, lsn)| Entry { lsn, rec, fence: None })
    .collect();
    store.apply_journal("j1", &batch).await.unwrap();
    store.apply_journal("j1", &batch).await.unwrap();
    // Another journal's records with the same numbers are different records.
    store.apply_journal("j2", &batch[2..3]).await.unwrap();
    assert_eq!(store.presence_of("m1", "p2", "ref-2").await.unwrap().len(), 2);
    // A heartbeat never moves back.
    assert_eq!(store.last_alive("m2").await.unwrap(), Some(2000));
    assert_eq!(store.last_alive("m1").await.unwrap(), Some(2000));
    assert_eq!(
        store.attendance_pairs("p1", None, None, None, 0, i64::MAX).await.unwrap(),
        vec![("m1".into(), "ref-1".into())]
    );
    assert!(store.attendance_pairs("p1", Some("other"), None, None, 0, i64::MAX).await.unwrap().is_empty());
    assert!(store.attendance_pairs("p1", None, None, None, 1000, 2000).await.unwrap().is_empty());
    assert_eq!(store.meeting_members("m1").await.unwrap().len(), 2);
    assert_eq!(store.presence_of("m1", "p1", "ref-1").await.unwrap().len(), 2);
    let result = ResultRow {
        id: "att_1".into(),
        meeting_id: "m1".into(),
        program_id: "p1".into(),
        member_ref: "ref-1".into(),
        computed_at: 3000,
        result: "{}".into(),
    };
    store.insert_result(&result).await.unwrap();
    store.insert_result(&ResultRow { id: "att_2".into(), result: "{\"x\":1}".into(), ..result.clone() }).await.unwrap();
    assert_eq!(
        store.result_for("m1", "p1", "ref-1").await.unwrap(),
        Some(result.clone()),
        "a stored result is never rewritten"
    );
    assert_eq!(store.result_by_id("att_1").await.unwrap(), Some(result));
    let k1 = haven::attendance::certificate::generate_key(1);
    let k2 = haven::attendance::certificate::generate_key(2);
    store.rotate_key(&k1).await.unwrap();
    store.rotate_key(&k2).await.unwrap();
    let keys = store.server_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].kid.as_str(), keys[0].retired_at), (k2.kid.as_str(), None));
    assert_eq!(keys[1].retired_at, Some(2));
    assert_eq!(store.purge_attendance(150).await.unwrap(), 1);
    assert_eq!(store.purge_attendance(5000).await.unwrap(), 4);

    store.end_meeting("m1", 50).await.unwrap();
    store.end_meeting("m1", 60).await.unwrap();
    assert_eq!(store.meeting("m1").await.unwrap().unwrap().ended_at, Some(50), "the first end wins");
    assert_eq!(store.delete_meeting("p2", "m1", 70).await.unwrap(), None, "only the owner deletes");
    assert_eq!(store.delete_meeting("p1", "m1", 70).await.unwrap().as_deref(), Some("m1"), "its key");
    assert_eq!(store.delete_meeting("p1", "m1", 71).await.unwrap(), None, "once");
    assert_eq!(store.meeting("m1").await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn named(store: &Store, program: &str, name: &str) -> Option<String> {
    store.meeting_named(program, name).await.unwrap().map(|m| m.id)
}

/// Meeting ids are per program: the same id in two programs, each found by its own program; a
/// partner finds a shared one by `<owner>/<id>`; an id is never used twice by one program.
async fn exercise_ids(store: Store) {
    use haven::store::meeting_key;
    for p in ["p1", "p2", "p3"] {
        store.upsert_program(&program_row(p), 1).await.unwrap();
    }
    let row = |program: &str, id: &str, shared: &[&str]| MeetingRow {
        id: meeting_key(program, id),
        title: format!("{program} {id}"),
        shared_with: shared.iter().map(|s| s.to_string()).collect(),
        created_at: 5,
        ..meeting_row(program, id)
    };
    let a = row("p1", "tuesday", &["p3"]);
    let b = row("p2", "tuesday", &[]);
    store.create_meeting(&a).await.unwrap();
    store.create_meeting(&b).await.unwrap();
    assert_ne!(a.id, b.id, "one key each");
    assert!(matches!(store.create_meeting(&row("p1", "tuesday", &[])).await, Err(StoreError::Conflict)));
    // A meeting from before ids were per program: its key is its id, and its program holds the id.
    let legacy = MeetingRow { id: "wednesday".into(), local_id: "wednesday".into(), ..row("p1", "wednesday", &["p3"]) };
    store.create_meeting(&legacy).await.unwrap();
    assert!(matches!(store.create_meeting(&row("p1", "wednesday", &[])).await, Err(StoreError::Conflict)));
    store.create_meeting(&row("p2", "wednesday", &[])).await.unwrap();

    assert_eq!(store.program_meeting("p1", "tuesday").await.unwrap(), Some((a.clone(), false)));
    assert_eq!(store.program_meeting("p2", "tuesday").await.unwrap(), Some((b.clone(), false)));
    assert_eq!(store.program_meeting("p3", "tuesday").await.unwrap(), None);
    assert_eq!(named(&store, "p1", "tuesday").await, Some(a.id.clone()));
    assert_eq!(named(&store, "p2", "tuesday").await, Some(b.id.clone()));
    assert_eq!(named(&store, "p3", "tuesday").await, None, "p3 has no `tuesday` of its own");
    assert_eq!(named(&store, "p3", "p1/tuesday").await, Some(a.id.clone()), "shared with p3");
    assert_eq!(named(&store, "p1", "p1/tuesday").await, Some(a.id.clone()), "the owner's full name for its own");
    assert_eq!(named(&store, "p2", "p1/tuesday").await, None, "not shared with p2");
    assert_eq!(named(&store, "p3", "p2/tuesday").await, None);
    // The older shared meeting: by its bare id from the program it is shared with (links made
    // before), unless that program has its own of that id.
    assert_eq!(named(&store, "p3", "wednesday").await, Some("wednesday".into()));
    assert_eq!(named(&store, "p3", "p1/wednesday").await, Some("wednesday".into()));
    assert_eq!(named(&store, "p2", "wednesday").await, Some(meeting_key("p2", "wednesday")));
    assert_eq!(named(&store, "p1", "m.nothing").await, None);
    assert_eq!(named(&store, "p1", &a.id).await, None, "a key is not a name");
    let ids = |rows: Vec<MeetingRow>| rows.into_iter().map(|m| (m.local_id, m.program_id)).collect::<Vec<_>>();
    assert_eq!(ids(store.meetings_of("p2", 10).await.unwrap()).len(), 2);
    assert!(ids(store.meetings_of("p1", 10).await.unwrap()).iter().all(|(_, p)| p == "p1"));

    // Deleting p2's `tuesday` leaves p1's; the id stays p2's, deleted.
    assert_eq!(store.delete_meeting("p2", "tuesday", 9).await.unwrap(), Some(b.id.clone()));
    assert_eq!(store.program_meeting("p2", "tuesday").await.unwrap(), Some((b.clone(), true)));
    assert_eq!(named(&store, "p2", "tuesday").await, None);
    assert_eq!(named(&store, "p1", "tuesday").await, Some(a.id.clone()));
    assert!(matches!(store.create_meeting(&row("p2", "tuesday", &[])).await, Err(StoreError::Conflict)));
    assert_eq!(store.resolve_meeting_name("p2", "tuesday").await.unwrap(), Some((b, true)), "for its attendance");
}

#[tokio::test]
async fn meeting_ids_are_per_program_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    exercise_ids(Store::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn meeting_ids_are_per_program_on_postgres() {
    exercise_ids(Store::connect(&fresh_postgres().await).await.unwrap()).await;
}

#[tokio::test]
async fn store_behaves_the_same_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert!(!store.is_postgres());
    exercise(store).await;
}

#[tokio::test]
async fn store_behaves_the_same_on_postgres() {
    let store = Store::connect(&fresh_postgres().await).await.unwrap();
    assert!(store.is_postgres());
    exercise(store).await;
}

#[tokio::test]
async fn a_whole_meeting_runs_on_postgres() {
    let url = fresh_postgres().await;
    let app = spawn_with(|c| c.database_url = Some(url)).await;
    let (mut f, _) = app.join(ALPHA, "open", "fac", haven::auth::join_token::TokenRole::Facilitator, "Facil").await;
    f.request(serde_json::json!({"type": "lock"})).await;
    app.server.as_ref().unwrap().app.flush_store().await;
    let log: Vec<serde_json::Value> =
        serde_json::from_value(app.get_json("/v1/meetings/open/audit", Some(ALPHA_KEY)).await).unwrap();
    assert_eq!(log[0]["action"], "lock");
}

/// The raw stored secrets of a SQLite data directory: (server keys' private PEMs, alpha's token key).
async fn stored_secrets(dir: &std::path::Path) -> (Vec<String>, String) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("haven.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT private_pem FROM server_keys").fetch_all(&mut conn).await.unwrap();
    let alpha: String = sqlx::query_scalar("SELECT token_key FROM programs WHERE id = $1")
        .bind(crate::support::ALPHA)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (keys, alpha)
}

#[tokio::test]
async fn signing_keys_and_hs256_secrets_are_sealed_at_rest() {
    use crate::support::*;
    use base64::Engine;
    let kek = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    // Positive control: without a key-encryption key the secrets are stored as they are, and the
    // scan below sees them.
    let mut plain = spawn_app().await;
    let (keys, alpha) = stored_secrets(plain._dir.path()).await;
    assert!(keys.iter().all(|k| k.contains("PRIVATE KEY")));
    assert_eq!(alpha, ALPHA_SECRET);
    // With one, the same database is sealed in place at the next start...
    let first = plain.server.take().unwrap();
    let mut config = first.app.config.clone();
    first.shutdown().await;
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.key_encryption_key = Some(kek.clone().into());
    let server = haven::Server::start(config.clone()).await.expect("starts with the KEK");
    let (keys, alpha) = stored_secrets(plain._dir.path()).await;
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k.starts_with("enc:v1:") && !k.contains("PRIVATE"), "a signing key is stored in plain text");
    }
    assert!(alpha.starts_with("enc:v1:") && !alpha.contains(ALPHA_SECRET));
    // ...and everything still works: a join token signed with the secret, a certificate key.
    let app = TestApp {
        addr: server.addr,
        server: Some(server),
        _dir: tempfile::tempdir().unwrap(),
        http: reqwest::Client::new(),
    };
    let (_c, w) = app.join(ALPHA, "open", "m-1", haven::auth::join_token::TokenRole::Member, "Sam").await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(app.get_json("/.well-known/jwks.json", None).await["keys"].as_array().unwrap().len(), keys.len());
    // A sealed database does not start without its key, nor with another.
    let mut without = config.clone();
    without.key_encryption_key = None;
    let e = haven::Server::start(without).await.err().expect("refused without the KEK").to_string();
    assert!(e.contains("HAVEN_KEY_ENCRYPTION_KEY"), "{e}");
    let mut wrong = config;
    wrong.key_encryption_key = Some(base64::engine::general_purpose::STANDARD.encode([9u8; 32]).into());
    assert!(haven::Server::start(wrong).await.is_err(), "refused with the wrong KEK");
    // Debug output of the rows never carries the secrets.
    let store = app.server.as_ref().unwrap().app.store.clone();
    let rows = format!("{:?} {:?}", store.programs().await.unwrap(), store.server_keys().await.unwrap());
    assert!(!rows.contains(ALPHA_SECRET) && !rows.contains("PRIVATE KEY"), "{rows}");
}
