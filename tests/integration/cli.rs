//! The `haven` command line, run as the real binary: join links, refusals of what cannot work,
//! serve's flags at the top level, replacing a lost API key.

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

/// A data directory and configuration with alpha (HS256) and ed (EdDSA), meetings `weekly`
/// (alpha's, and ed's own of the same id), `ed-group` (ed's), `done` (alpha's, ended) and
/// `partnered` (alpha's, shared with ed), alpha's series `tuesdays` and `fridays`, and ed's own
/// series `tuesdays`, made by an in-process server.
struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    let ed_key = fixture("ed25519_public.pem");
    std::fs::write(
        &config,
        format!(
            "public_url = \"https://meet.example.org/\"\n[media]\nenabled = false\n\n\
             [[programs]]\nid = \"{ALPHA}\"\nname = \"Alpha\"\ntoken_alg = \"HS256\"\ntoken_key = \"{ALPHA_SECRET}\"\napi_key_sha256 = \"{}\"\n\n\
             [[programs]]\nid = \"{ED}\"\nname = \"Ed\"\ntoken_alg = \"EdDSA\"\ntoken_key = \"\"\"\n{ed_key}\"\"\"\napi_key_sha256 = \"{}\"\n",
            haven::auth::hash_api_key(ALPHA_KEY),
            haven::auth::hash_api_key(ED_KEY),
        ),
    )
    .unwrap();
    let mut c = haven::Config::load(Some(&config)).unwrap();
    c.data_dir = dir.path().to_path_buf();
    c.listen = "127.0.0.1:0".parse().unwrap();
    let server = haven::Server::start(c).await.unwrap();
    let store = server.app.store.clone();
    let http = reqwest::Client::new();
    for (key, id, shared) in [
        (ALPHA_KEY, "weekly", vec![]),
        (ED_KEY, "ed-group", vec![]),
        (ALPHA_KEY, "done", vec![]),
        (ED_KEY, "weekly", vec![]),
        (ALPHA_KEY, "partnered", vec![ED]),
    ] {
        let r = http
            .post(format!("http://{}/v1/meetings", server.addr))
            .bearer_auth(key)
            .json(&json!({"id": id, "title": id, "shared_with": shared}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{id}");
    }
    store.end_meeting(&key(ALPHA, "done"), 1).await.unwrap();
    for (key, id) in [(ALPHA_KEY, "tuesdays"), (ALPHA_KEY, "fridays"), (ED_KEY, "tuesdays")] {
        let r = http
            .post(format!("http://{}/v1/series", server.addr))
            .bearer_auth(key)
            .json(&json!({"id": id, "title": id, "time_zone": "America/Chicago",
                "dtstart": "2030-01-01T19:00:00", "rrule": "FREQ=WEEKLY", "duration_minutes": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{id}");
    }
    server.shutdown().await;
    Setup { dir, config }
}

impl Setup {
    fn haven(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", self.config.to_str().unwrap(), "--data-dir", self.dir.path().to_str().unwrap()];
        all.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_haven")).args(all).env("RUST_LOG", "warn").output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn alpha_claims(token: &str) -> serde_json::Value {
    let key = jsonwebtoken::DecodingKey::from_secret(ALPHA_SECRET.as_bytes());
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["haven"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).expect("the token verifies").claims
}

#[tokio::test]
async fn haven_token_prints_a_join_link_and_the_bare_token_with_raw() {
    let s = setup().await;
    let o = s.haven(&["token", "--program", ALPHA, "--meeting", "weekly", "--member", "ref-1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let link = stdout(&o);
    let token =
        link.trim().strip_prefix("https://meet.example.org/#token=").unwrap_or_else(|| panic!("a link: {link}"));
    assert_eq!(alpha_claims(token)["meeting"], "weekly");
    let o = s.haven(&["token", "--program", ALPHA, "--meeting", "weekly", "--member", "ref-1", "--raw"]);
    assert!(o.status.success());
    let raw = stdout(&o);
    assert_eq!(raw.trim().split('.').count(), 3, "the token alone: {raw}");
    assert_eq!(alpha_claims(raw.trim())["sub"], "ref-1");
}

#[tokio::test]
async fn haven_token_refuses_meetings_that_cannot_be_joined() {
    let s = setup().await;
    for (meeting, says) in
        [("nosuch", "no meeting `nosuch`"), ("done", "has ended"), ("ed-group", "no meeting `ed-group`")]
    {
        let o = s.haven(&["token", "--program", ALPHA, "--meeting", meeting, "--member", "r"]);
        assert!(!o.status.success(), "{meeting}: {}", stdout(&o));
        assert!(stderr(&o).contains(says), "{meeting}: {}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    let o = s.haven(&["token", "--program", "nosuch", "--meeting", "weekly", "--member", "r"]);
    assert!(!o.status.success() && stderr(&o).contains("unknown program"));
}

#[tokio::test]
async fn haven_token_names_meetings_as_the_program_does() {
    let s = setup().await;
    let own = format!("{}/tests/fixtures/ed25519_private.pem", env!("CARGO_MANIFEST_DIR"));
    let ed_claims = |o: &Output| {
        let token = stdout(o);
        let payload = token.trim().split('.').nth(1).unwrap().to_string();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let mint = |meeting: &str| {
        s.haven(&["token", "--program", ED, "--meeting", meeting, "--member", "r", "--signing-key", &own, "--raw"])
    };
    // Ed's own `weekly` (alpha has one too), and alpha's meeting shared with ed, by its full name.
    let o = mint("weekly");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ed_claims(&o)["meeting"], "weekly");
    let o = mint(&format!("{ALPHA}/partnered"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ed_claims(&o)["meeting"], format!("{ALPHA}/partnered"));
    // Alpha's `weekly` is not shared with ed: as for a meeting nobody has.
    for meeting in [format!("{ALPHA}/weekly"), format!("{ALPHA}/nosuch")] {
        let o = mint(&meeting);
        assert!(!o.status.success(), "{meeting}: {}", stdout(&o));
        assert!(stderr(&o).contains(&format!("has no meeting `{meeting}`")), "{meeting}: {}", stderr(&o));
    }
}

#[tokio::test]
async fn haven_token_mints_a_series_link_for_the_programs_own_series() {
    let s = setup().await;
    let o = s.haven(&["token", "--program", ALPHA, "--meeting", "series:tuesdays", "--member", "ref-1", "--raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(alpha_claims(stdout(&o).trim())["meeting"], "series:tuesdays");
    let o = s.haven(&["token", "--program", ALPHA, "--meeting", "series:nosuch", "--member", "r"]);
    assert!(!o.status.success() && stderr(&o).contains("no series `nosuch`"), "{}", stderr(&o));
    // Series ids are per program: ed's own `tuesdays` (alpha has one too) is ed's link; alpha's
    // `fridays` is answered as a series nobody has.
    let own = format!("{}/tests/fixtures/ed25519_private.pem", env!("CARGO_MANIFEST_DIR"));
    let o =
        s.haven(&["token", "--program", ED, "--meeting", "series:tuesdays", "--member", "r", "--signing-key", &own]);
    assert!(o.status.success(), "{}", stderr(&o));
    let refusal = |series: &str| {
        let o = s.haven(&["token", "--program", ED, "--meeting", &format!("series:{series}"), "--member", "r"]);
        assert!(!o.status.success() && stdout(&o).is_empty(), "{series}: {}", stdout(&o));
        stderr(&o).replace(series, "{id}")
    };
    assert!(refusal("fridays").contains("no series `{id}`"), "{}", refusal("fridays"));
    assert_eq!(refusal("fridays"), refusal("nosuch"));
}

#[tokio::test]
async fn haven_token_refuses_a_signing_key_that_is_not_the_programs() {
    let s = setup().await;
    let other = s.dir.path().join("other.pem");
    std::fs::write(&other, haven::attendance::certificate::generate_key(0).private_pem).unwrap();
    let o = s.haven(&[
        "token",
        "--program",
        ED,
        "--meeting",
        "ed-group",
        "--member",
        "r",
        "--signing-key",
        other.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    // Positive control: the program's own private key works.
    let own = format!("{}/tests/fixtures/ed25519_private.pem", env!("CARGO_MANIFEST_DIR"));
    let o =
        s.haven(&["token", "--program", ED, "--meeting", "ed-group", "--member", "r", "--signing-key", &own, "--raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test]
async fn haven_export_refuses_an_unknown_program() {
    let s = setup().await;
    let o = s.haven(&["export", "--program", "nosuch"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown program `nosuch`"), "{}", stderr(&o));
    let o = s.haven(&["export", "--program", ALPHA]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("attendance_id,"), "the CSV header for a known program");
}

#[tokio::test]
async fn haven_listen_works_without_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the server prints where it runs").unwrap();
    let addr = first.strip_prefix("Haven is running at http://").map(|a| a.trim().to_string());
    let health = match &addr {
        Some(a) => reqwest::get(format!("http://{a}/healthz")).await.map(|r| r.status().as_u16()).ok(),
        None => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(addr.is_some_and(|a| !a.ends_with(":0")), "{first}");
    assert_eq!(health, Some(200), "it listens where it says");
}

/// A server with no programs configured (so the demo program is made) and no media.
fn demo_config(dir: &std::path::Path) -> haven::Config {
    haven::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        media: haven::config::MediaConfig { enabled: false, ..Default::default() },
        ..Default::default()
    }
}

#[tokio::test]
async fn haven_api_key_replaces_a_lost_demo_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let server = haven::Server::start(config.clone()).await.unwrap();
    let old_key = server.demo.clone().expect("a first start makes the demo program").api_key;
    server.shutdown().await;
    let o = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "api-key", "--program", "demo"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let new_key = stdout(&o).lines().find_map(|l| l.strip_prefix("api key: ")).expect("the new key").trim().to_string();
    let server = haven::Server::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/meetings", server.addr);
    assert_eq!(http.get(&url).bearer_auth(&new_key).send().await.unwrap().status(), 200);
    assert_eq!(http.get(&url).bearer_auth(&old_key).send().await.unwrap().status(), 401);
    server.shutdown().await;
    // A program that does not exist is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "api-key", "--program", "nosuch"])
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("unknown program"), "{}", stderr(&o));
}

#[tokio::test]
async fn after_a_restart_the_printed_links_lead_to_a_joinable_demo_meeting() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let server = haven::Server::start(config.clone()).await.unwrap();
    assert_eq!(server.demo_meeting.as_deref(), Some("demo"));
    assert!(haven::cli::welcome_text(&server).contains("Demo meeting `demo`"));
    server.app.store.end_meeting(&key("demo", "demo"), 1).await.unwrap();
    server.shutdown().await;

    let server = haven::Server::start(config.clone()).await.unwrap();
    let fresh = server.demo_meeting.clone().unwrap();
    assert_ne!(fresh, "demo", "the ended meeting is not offered again");
    let text = haven::cli::welcome_text(&server);
    assert!(text.contains(&format!("Demo meeting `{fresh}`")), "{text}");
    let http = reqwest::Client::new();
    for line in text.lines().filter(|l| l.contains("#token=")) {
        let token = line.split("#token=").nth(1).unwrap().trim();
        let check: serde_json::Value = http
            .post(format!("http://{}/v1/join-check", server.addr))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(check["joinable"], true, "{line}: {check}");
    }
    assert_eq!(text.lines().filter(|l| l.contains("#token=")).count(), 2, "{text}");
    server.shutdown().await;
    // A third start keeps the fresh meeting: it has not ended.
    let server = haven::Server::start(config).await.unwrap();
    assert_eq!(server.demo_meeting.as_deref(), Some(fresh.as_str()));
    // `haven token` without --meeting follows the demo meeting too.
    let o = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "token", "--member", "x", "--raw"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    server.shutdown().await;
}
