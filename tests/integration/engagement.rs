//! The aftercare report (issue 16): streaks across weeks, the not-seen list, and only the asking
//! program's members, even in a meeting shared with another program; on SQLite and PostgreSQL,
//! over the API (JSON, CSV) and from the command line.

use crate::support::*;
use haven::attendance::credit::{CreditPolicy, Kind};
use haven::attendance::engagement::{self, Window};
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use haven::journal::{Entry, Record};
use haven::store::{MeetingRow, PresenceRow, Store};
use serde_json::{json, Value};

fn at(s: &str) -> i64 {
    haven::attendance::parse_time(s, false).unwrap()
}

/// Five weekly meetings of p1 (the last shared with p2), with members who come every week, who
/// stopped coming, who skipped a week; an observer of p1 and a member of p2 in the shared one.
async fn scenario(store: Store) {
    for p in ["p1", "p2"] {
        store.upsert_program(&program_row(p), 1).await.unwrap();
    }
    let days =
        [("w0", "2026-10-20"), ("w1", "2026-11-03"), ("w2", "2026-11-10"), ("w3", "2026-11-17"), ("w4", "2026-11-24")];
    for (id, day) in days {
        let m = MeetingRow {
            title: format!("Group {id}"),
            shared_with: if id == "w4" { vec!["p2".into()] } else { vec![] },
            created_at: at(day),
            credit_policy: Some(CreditPolicy { min_minutes: Some(30), min_share_percent: None, max_gap_seconds: 60 }),
            ..meeting_row("p1", id)
        };
        store.create_meeting(&m).await.unwrap();
    }
    // (meeting, program, member, role, minutes present)
    let visits = [
        ("w0", "p1", "m-lapsed", "member", 60),
        ("w1", "p1", "m-steady", "member", 60),
        ("w1", "p1", "m-gap", "member", 60),
        ("w2", "p1", "m-steady", "member", 10),
        ("w3", "p1", "m-steady", "member", 60),
        ("w3", "p1", "m-gap", "member", 60),
        ("w4", "p1", "m-steady", "facilitator", 60),
        ("w4", "p1", "m-observer", "observer", 60),
        ("w4", "p2", "p2-member", "member", 60),
    ];
    let mut lsn = 0;
    let mut entries = Vec::new();
    for (meeting, program, member, role, minutes) in visits {
        let start = at(days.iter().find(|d| d.0 == meeting).unwrap().1) + 18 * 3_600_000;
        for (kind, t) in [(Kind::Admitted, start), (Kind::Left, start + minutes * 60_000)] {
            lsn += 1;
            entries.push(Entry {
                lsn,
                rec: Record::Presence(PresenceRow {
                    meeting_id: meeting.into(),
                    program_id: program.into(),
                    member_ref: member.into(),
                    participant_id: format!("{member}-{meeting}"),
                    kind,
                    reason: None,
                    at: t,
                    role: (kind == Kind::Admitted).then(|| role.to_string()),
                }),
                fence: None,
            });
        }
    }
    store.apply_journal("j-engagement", &entries).await.unwrap();
    for (id, day) in days {
        haven::attendance::finalize(&store, id, at(day) + 20 * 3_600_000).await.unwrap();
    }

    // The report ends on Wednesday 2026-11-25 (exclusive).
    let w = Window { since: at("2026-11-01"), until: at("2026-11-25"), not_seen_days: 30 };
    let r = engagement::report(&store, "p1", w).await.unwrap();
    let refs: Vec<&str> = r.members.iter().map(|m| m.member_ref.as_str()).collect();
    assert_eq!(refs, ["m-gap", "m-lapsed", "m-steady"], "p1's members only, observers not counted: {r:?}");
    let get = |m: &str| r.members.iter().find(|x| x.member_ref == m).unwrap();
    let steady = get("m-steady");
    assert_eq!(steady.current_streak_weeks, 4, "four consecutive weeks up to this one");
    assert_eq!((steady.meetings_attended, steady.meetings_credited), (4, 3), "the 10-minute visit is not credited");
    assert_eq!(steady.last_attended.as_deref(), Some("2026-11-24T18:00:00.000Z"));
    assert_eq!(steady.days_since_last_attended, Some(0));
    let gap = get("m-gap");
    assert_eq!(gap.current_streak_weeks, 1, "last week only: the week before it was skipped");
    assert_eq!((gap.meetings_attended, gap.meetings_credited), (2, 2));
    let lapsed = get("m-lapsed");
    assert_eq!(lapsed.current_streak_weeks, 0);
    assert_eq!(lapsed.meetings_attended, 0, "before the window");
    assert_eq!(lapsed.days_since_last_attended, Some(35));
    assert!(lapsed.not_seen && !gap.not_seen && !steady.not_seen);
    assert_eq!(r.not_seen, vec!["m-lapsed".to_string()]);
    // A shorter not-seen period lists the member who skipped this week too, longest unseen first.
    let r7 = engagement::report(&store, "p1", Window { not_seen_days: 7, ..w }).await.unwrap();
    assert_eq!(r7.not_seen, vec!["m-lapsed".to_string(), "m-gap".to_string()]);

    // p2 sees its own member of the shared meeting, and nobody of p1's.
    let r2 = engagement::report(&store, "p2", w).await.unwrap();
    assert_eq!(r2.members.len(), 1);
    assert_eq!(r2.members[0].member_ref, "p2-member");
    assert_eq!((r2.members[0].meetings_attended, r2.members[0].current_streak_weeks), (1, 1));
}

#[tokio::test]
async fn engagement_report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display())).await.unwrap();
    scenario(store).await;
}

#[tokio::test]
async fn engagement_report_on_postgres() {
    let store = Store::connect(&crate::store::fresh_postgres().await).await.unwrap();
    scenario(store).await;
}

#[tokio::test]
async fn engagement_report_over_the_api_in_json_and_csv_holds_only_the_programs_members() {
    let app = spawn_app().await;
    let (mut f, _) = app.join(ALPHA, "shared", "eng-fac", Facilitator, "Facil").await;
    let (_a, _) = app.join(ALPHA, "shared", "eng-a1", Member, "Ann").await;
    let (_b, _) = app.join(BETA, &alphas("shared"), "eng-b1", Member, "Bea").await;
    f.request(json!({"type": "end_meeting"})).await;
    app.flush_store().await;

    let r = app.get_json("/v1/members/engagement?not_seen_days=10", Some(ALPHA_KEY)).await;
    let members = r["members"].as_array().unwrap();
    let refs: Vec<&str> = members.iter().map(|m| m["member_ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["eng-a1", "eng-fac"], "{r}");
    for m in members {
        assert_eq!(m["meetings_attended"], 1);
        assert_eq!(m["current_streak_weeks"], 1);
        assert_eq!(m["not_seen"], false);
    }
    assert_eq!(r["not_seen"], json!([]));
    assert_eq!(r["not_seen_days"], 10);
    let csv = app.http.get(app.url("/v1/members/engagement?format=csv")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(&reader.headers().unwrap()[0], "member_ref");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(!text.contains("eng-b1"));

    let r = app.get_json("/v1/members/engagement", Some(BETA_KEY)).await;
    assert_eq!(r["members"].as_array().unwrap().len(), 1);
    assert_eq!(r["members"][0]["member_ref"], "eng-b1");
    // Bad parameters are refused with the API's usual error.
    let bad =
        app.http.get(app.url("/v1/members/engagement?since=yesterday")).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let none = app.http.get(app.url("/v1/members/engagement")).send().await.unwrap();
    assert_eq!(none.status(), 401);
}

#[tokio::test]
async fn haven_report_engagement_prints_the_report_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(&config, binary_config(&[("media", "enabled = false")])).unwrap();
    let mut c = haven::Config::load(Some(&config)).unwrap();
    c.data_dir = dir.path().to_path_buf();
    c.listen = "127.0.0.1:0".parse().unwrap();
    let server = haven::Server::start(c).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/v1/meetings", server.addr))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"id": "cli-eng", "title": "CLI", "settings": {"waiting_room": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let claims = haven::auth::join_token::claims_for(ALPHA, "cli-eng", "cli-fac", Facilitator, 600);
    let mut f = Client::connect(server.addr, &sign_hs(ALPHA, &claims)).await.unwrap();
    f.send(json!({"type": "join"})).await;
    assert_eq!(f.recv().await["type"], "welcome");
    f.request(json!({"type": "end_meeting"})).await;
    server.app.flush_store().await;
    server.shutdown().await;

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()];
        all.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_haven")).args(all).env("RUST_LOG", "warn").output().unwrap()
    };
    let out = run(&["report", "engagement", "--program", ALPHA, "--since", &today]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("member_ref,meetings_attended,meetings_credited"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("cli-fac,1,"), "{row}");
    let out = run(&["report", "engagement", "--program", ALPHA, "--since", &today, "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["members"][0]["member_ref"], "cli-fac");
    let out = run(&["report", "engagement", "--program", "nobody", "--since", &today]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown program"));
}
