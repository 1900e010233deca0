//! Webhooks (issue 16): signed per Standard Webhooks, delivered at least once with stable ids,
//! retried with backoff, never lost to a crash, never held up by a receiver that does not answer,
//! never sent to private addresses, and delivered by exactly one node of a cluster.
//!
//! The receiver is a real HTTP server on loopback; it verifies every signature with the algorithm
//! of the specification, implemented here independently of the server's code.

use crate::support::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// 500 the first time an id is seen, 200 after.
    FailFirst,
    /// Never answers (holds the request open).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
    pub json: Value,
    pub at: Instant,
    /// What it answered (0: never answered).
    pub answered: u16,
}

struct ReceiverState {
    answer: watch::Sender<Answer>,
    log: Mutex<Vec<Received>>,
    seen: Mutex<HashMap<String, usize>>,
    changed: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A webhook receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(State(s): State<Arc<ReceiverState>>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = h("webhook-id");
    let n = {
        let mut seen = s.seen.lock().unwrap();
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let answer = *s.answer.borrow();
    let status = match answer {
        Answer::Status(c) => c,
        Answer::FailFirst if n == 1 => 500,
        Answer::FailFirst => 200,
        Answer::Hang => 0,
    };
    let r = Received {
        timestamp: h("webhook-timestamp").parse().unwrap_or(0),
        signature: h("webhook-signature"),
        json: serde_json::from_str(&body).unwrap_or(Value::Null),
        body,
        id,
        at: Instant::now(),
        answered: status,
    };
    s.log.lock().unwrap().push(r);
    if status == 0 {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        s.changed.notify_waiters();
        std::future::pending::<()>().await;
    }
    s.changed.notify_waiters();
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            answer: watch::channel(answer).0,
            log: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url: format!("http://{addr}/hook"), state }
    }

    pub fn set(&self, a: Answer) {
        self.state.answer.send_replace(a);
    }

    pub fn log(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds over everything received (a guard of 60 s, not a pause).
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let wait = async {
            loop {
                let changed = self.state.changed.notified();
                let log = self.log();
                if pred(&log) {
                    return log;
                }
                changed.await;
            }
        };
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(log) => log,
            Err(_) => panic!("receiver never saw {what}: {:#?}", summary(&self.log())),
        }
    }
}

fn summary(log: &[Received]) -> Vec<String> {
    log.iter().map(|r| format!("{} {} -> {}", r.id, r.json["type"], r.answered)).collect()
}

/// Standard Webhooks verification, from the specification: the key is the base64 after
/// `whsec_`; the signed content is `{id}.{timestamp}.{body}`; the header holds space-separated
/// `v1,<base64 HMAC-SHA256>` entries, any of which may match; the timestamp must be recent.
pub fn verify(secret: &str, r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let recent = (chrono::Utc::now().timestamp() - r.timestamp).abs() <= 300;
    recent && r.signature.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// Registers an endpoint; returns its id and secret.
pub async fn register(http: &reqwest::Client, base: &str, key: &str, url: &str, events: &[&str]) -> (String, String) {
    let r = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "register {url}");
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

const ALL: [&str; 5] =
    ["meeting.started", "meeting.ended", "attendance.finalized", "participant.banned", "certificate.issued"];

fn fast(c: &mut haven::Config) {
    c.webhooks.allow_http_loopback = true;
    c.webhooks.retry_base = Duration::from_millis(200);
    c.webhooks.poll_interval = Duration::from_millis(100);
}

fn of_type<'a>(log: &'a [Received], ty: &str) -> Vec<&'a Received> {
    log.iter().filter(|r| r.json["type"] == ty).collect()
}

/// Whether every event of type `ty` about `members` was answered 2xx at least once.
fn delivered_for(log: &[Received], ty: &str, members: &[&str]) -> bool {
    members.iter().all(|m| of_type(log, ty).iter().any(|r| r.json["data"]["member_ref"] == *m && r.answered == 200))
}

#[tokio::test]
async fn webhooks_are_signed_per_the_standard_and_a_500_is_retried_with_the_same_id_after_a_backoff() {
    let app = spawn_with(fast).await;
    let base = app.url("");
    let alpha_rx = Receiver::start(Answer::FailFirst).await;
    let beta_rx = Receiver::start(Answer::Status(200)).await;
    let (alpha_ep, alpha_secret) = register(&app.http, &base, ALPHA_KEY, &alpha_rx.url, &ALL).await;
    let (_, beta_secret) = register(&app.http, &base, BETA_KEY, &beta_rx.url, &ALL).await;
    // The secret is shown once: listing does not show it.
    let list = app.get_json("/v1/webhooks", Some(ALPHA_KEY)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none() && list[0]["enabled"] == true);

    // A shared meeting: alpha's facilitator and two members, one of beta's; chat and a support
    // request that must never reach a webhook; one of alpha's members banned.
    let (mut f, _) = app.join(ALPHA, "shared", "hook-fac", Facilitator, "Facil").await;
    let (mut a1, _) = app.join(ALPHA, "shared", "hook-a1", Member, "Ann").await;
    let (a2, _) = app.join(ALPHA, "shared", "hook-a2", Member, "Abe").await;
    let (mut b1, _) = app.join(BETA, &alphas("shared"), "hook-b1", Member, "Bea").await;
    a1.request(json!({"type": "chat", "text": "chat-text-never-in-a-webhook"})).await;
    b1.request(json!({"type": "support_request", "text": "support-text-never-in-a-webhook"})).await;
    f.request(json!({"type": "ban", "participant_id": a2.pid.clone().unwrap()})).await;
    f.request(json!({"type": "end_meeting"})).await;

    let alpha_members = ["hook-fac", "hook-a1", "hook-a2"];
    let log = alpha_rx
        .wait_until("alpha's events delivered", |log| {
            delivered_for(log, "attendance.finalized", &alpha_members)
                && delivered_for(log, "participant.banned", &["hook-a2"])
                && of_type(log, "meeting.ended").iter().any(|r| r.answered == 200)
                && of_type(log, "meeting.started").iter().any(|r| r.answered == 200)
        })
        .await;
    // Every request verifies with the endpoint's secret, and only with it.
    for r in &log {
        assert!(verify(&alpha_secret, r), "signature of {}", r.id);
        assert!(!verify(&beta_secret, r));
    }
    // Each event: 500 first, then the same id, the same body, after at least the backoff's
    // lower bound (half the 200 ms base).
    let mut by_id: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &log {
        by_id.entry(&r.id).or_default().push(r);
    }
    for (id, attempts) in &by_id {
        assert!(id.starts_with("msg_"), "{id}");
        assert_eq!(attempts[0].answered, 500, "{id}");
        let ok = attempts.iter().find(|r| r.answered == 200).unwrap_or_else(|| panic!("{id} never redelivered"));
        assert_eq!(ok.body, attempts[0].body, "the same event, byte for byte");
        assert!(ok.at - attempts[0].at >= Duration::from_millis(100), "{id} retried without backoff");
    }
    // One attendance.finalized per member, with exactly the export's fields and values.
    let export: Vec<Value> =
        app.get_json("/v1/attendance?meeting=shared", Some(ALPHA_KEY)).await.as_array().unwrap().clone();
    assert_eq!(export.len(), 3);
    let finalized: BTreeMap<String, &Received> = of_type(&log, "attendance.finalized")
        .into_iter()
        .map(|r| (r.json["data"]["member_ref"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(finalized.len(), 3, "one event per member");
    for row in &export {
        let r = finalized[row["member_ref"].as_str().unwrap()];
        assert_eq!(&r.json["data"], row, "the event is the export row");
    }
    let ended = of_type(&log, "meeting.ended")[0];
    assert_eq!(ended.json["data"]["meeting_id"], "shared");
    assert_eq!(ended.json["data"]["attendance_results"], 3);

    // The attempts are visible to the program: 500, then 200.
    let deliveries = app.get_json(&format!("/v1/webhooks/{alpha_ep}/deliveries"), Some(ALPHA_KEY)).await;
    let d = deliveries.as_array().unwrap();
    assert!(d.len() >= 6, "{deliveries}");
    for x in d.iter().filter(|x| x["status"] == "delivered") {
        let codes: Vec<_> = x["history"].as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect();
        assert_eq!(codes, vec![json!(500), json!(200)], "{x}");
    }
    // Operators see the attempts in /metrics: every delivered event failed once, then succeeded.
    let delivered = d.iter().filter(|x| x["status"] == "delivered").count() as u64;
    let metrics = app.get_text("/metrics", None).await;
    let counter = |name: &str| metric_value(&metrics, name);
    assert!(delivered >= 3, "{deliveries}");
    assert!(counter("haven_webhook_attempts_succeeded_total") >= delivered, "{metrics}");
    assert!(counter("haven_webhook_attempts_failed_total") >= delivered, "{metrics}");
    // Beta's endpoint is not alpha's to read.
    let r = app
        .http
        .get(app.url(&format!("/v1/webhooks/{alpha_ep}/deliveries")))
        .bearer_auth(BETA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Beta hears about the shared meeting and its own member only.
    let blog = beta_rx
        .wait_until("beta's events", |log| {
            delivered_for(log, "attendance.finalized", &["hook-b1"]) && !of_type(log, "meeting.ended").is_empty()
        })
        .await;
    assert_eq!(of_type(&blog, "attendance.finalized").len(), 1);
    // Beta names alpha's meeting as its links do, in every event.
    for ty in ["meeting.started", "meeting.ended", "attendance.finalized"] {
        for r in of_type(&blog, ty) {
            assert_eq!(r.json["data"]["meeting_id"], alphas("shared"), "{ty}: {}", r.body);
        }
    }
    assert!(of_type(&blog, "participant.banned").is_empty(), "alpha's member's ban is alpha's");
    for r in blog.iter().chain(log.iter()) {
        assert!(!r.body.contains("never-in-a-webhook"), "chat or support text in {}", r.body);
    }
    for r in &blog {
        assert!(verify(&beta_secret, r));
        for m in alpha_members {
            assert!(!r.body.contains(m), "alpha's member {m} in beta's event {}", r.body);
        }
    }
    for r in &log {
        assert!(!r.body.contains("hook-b1"), "beta's member in alpha's event {}", r.body);
    }
}

#[tokio::test]
async fn certificates_test_events_rotation_and_an_endpoint_disabled_after_a_run_of_failures() {
    let app = spawn_with(|c| {
        fast(c);
        c.webhooks.retry_base = Duration::from_millis(20);
        c.webhooks.disable_after_failures = 3;
    })
    .await;
    let base = app.url("");
    let rx = Receiver::start(Answer::Status(500)).await;
    let (ep, secret) = register(&app.http, &base, ALPHA_KEY, &rx.url, &["certificate.issued"]).await;
    let r = app.http.post(app.url(&format!("/v1/webhooks/{ep}/test"))).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let test_id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string();
    // Three failures in a row disable the endpoint, and the API says why.
    rx.wait_until("three attempts", |log| log.len() >= 3).await;
    let wait = async {
        loop {
            let v = app.get_json(&format!("/v1/webhooks/{ep}"), Some(ALPHA_KEY)).await;
            if v["enabled"] == false {
                return v;
            }
            tokio::task::yield_now().await;
        }
    };
    let v = tokio::time::timeout(WAIT, wait).await.expect("the endpoint is disabled");
    assert_eq!(v["disabled_reason"], "failures");
    assert_eq!(v["consecutive_failures"], 3);
    assert_eq!(rx.log().len(), 3, "nothing is sent to a disabled endpoint");
    assert!(rx.log().iter().all(|r| r.id == test_id && r.json["type"] == "webhook.test"));
    // Operators see it in /metrics: three failed attempts, one endpoint disabled.
    let m = app.metrics();
    assert_eq!((m.webhook_attempts_failed.get(), m.webhook_endpoints_disabled.get()), (3, 1));

    // Rotation: the new secret is shown once; the old one keeps signing beside it for a while.
    let rotated: Value = app
        .http
        .post(app.url(&format!("/v1/webhooks/{ep}/rotate-secret")))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    // Events while it is disabled for failures wait for it: a certificate is issued now.
    app.create_meeting(ALPHA_KEY, json!({"id": "certs", "title": "Certs", "settings": {"waiting_room": false}, "credit_policy": {"min_minutes": 0}})).await;
    let (mut g, _) = app.join(ALPHA, "certs", "cert-member", Facilitator, "Gina").await;
    g.request(json!({"type": "end_meeting"})).await;
    let wait = async {
        loop {
            let rows = app.get_json("/v1/attendance?meeting=certs", Some(ALPHA_KEY)).await;
            if rows[0]["final"] == true {
                return rows;
            }
            tokio::task::yield_now().await;
        }
    };
    let rows = tokio::time::timeout(WAIT, wait).await.expect("the result is final");
    let att = rows[0]["attendance_id"].as_str().unwrap().to_string();
    let r = app
        .http
        .get(app.url(&format!("/v1/attendance/{att}/certificate")))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let queued = app.get_json(&format!("/v1/webhooks/{ep}/deliveries"), Some(ALPHA_KEY)).await;
    assert_eq!(queued[0]["event_type"], "certificate.issued", "queued for the disabled endpoint: {queued}");
    assert_eq!(queued[0]["attempts"], 0);
    assert_eq!(rx.log().len(), 3, "nothing is sent to a disabled endpoint");
    // Repaired and enabled again: the waiting events go, the test event with its first id.
    rx.set(Answer::Status(204));
    let r = app
        .http
        .patch(app.url(&format!("/v1/webhooks/{ep}")))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let delivered = |log: &[Received]| log.iter().any(|r| r.id == test_id && r.answered == 204);
    let log = rx.wait_until("the test event delivered", delivered).await;
    let ok = log.iter().find(|r| r.id == test_id && r.answered == 204).unwrap();
    assert!(verify(&new_secret, ok) && verify(&secret, ok), "both secrets sign during the rotation");

    // certificate.issued, issued while the endpoint was disabled, arrives once it is enabled.
    let log = rx.wait_until("certificate.issued", |log| !of_type(log, "certificate.issued").is_empty()).await;
    let c = of_type(&log, "certificate.issued")[0];
    assert_eq!(c.json["data"]["attendance_id"], att);
    assert_eq!(c.json["data"]["member_ref"], "cert-member");
    assert!(verify(&new_secret, c));
    // Only what it subscribed to (and test events): no meeting or attendance events.
    assert!(log.iter().all(|r| r.json["type"] == "certificate.issued" || r.json["type"] == "webhook.test"));
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_up_no_meeting_and_no_other_programs_deliveries() {
    let app = spawn_with(|c| {
        fast(c);
        // Long enough that a hung request outlives the whole test.
        c.webhooks.request_timeout = Duration::from_secs(300);
        c.webhooks.max_in_flight_per_endpoint = 2;
    })
    .await;
    let base = app.url("");
    let hung = Receiver::start(Answer::Hang).await;
    let fine = Receiver::start(Answer::Status(200)).await;
    register(&app.http, &base, ALPHA_KEY, &hung.url, &ALL).await;
    register(&app.http, &base, BETA_KEY, &fine.url, &ALL).await;

    let (mut f, _) = app.join(ALPHA, "shared", "hang-fac", Facilitator, "Facil").await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(app.join(ALPHA, "shared", &format!("hang-a{i}"), Member, &format!("A{i}")).await.0);
    }
    let (_b, _) = app.join(BETA, &alphas("shared"), "hang-b1", Member, "Bea").await;
    f.request(json!({"type": "end_meeting"})).await;
    // Alpha's receiver holds its requests; beta's events arrive all the same.
    hung.wait_until("two requests held", |log| log.len() >= 2).await;
    fine.wait_until("beta's events", |log| {
        delivered_for(log, "attendance.finalized", &["hang-b1"])
            && of_type(log, "meeting.ended").iter().any(|r| r.answered == 200)
    })
    .await;
    // Meetings go on: another of alpha's meetings runs and ends, and its results are final.
    let (mut g, _) = app.join(ALPHA, "open", "hang-fac", Facilitator, "Facil").await;
    let (_m, _) = app.join(ALPHA, "open", "hang-a0", Member, "A0").await;
    g.request(json!({"type": "end_meeting"})).await;
    let wait = async {
        loop {
            let rows = app.get_json("/v1/attendance?meeting=open", Some(ALPHA_KEY)).await;
            if rows.as_array().unwrap().len() == 2 && rows.as_array().unwrap().iter().all(|r| r["final"] == true) {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("the second meeting's results are final");
    // Beta still hears about a later meeting while alpha's requests hang.
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "later", "title": "Later", "shared_with": [BETA], "settings": {"waiting_room": false}}),
    )
    .await;
    let (mut h, _) = app.join(ALPHA, "later", "hang-fac", Facilitator, "Facil").await;
    let (_b2, _) = app.join(BETA, &alphas("later"), "hang-b2", Member, "Bo").await;
    h.request(json!({"type": "end_meeting"})).await;
    fine.wait_until("beta's later event", |log| delivered_for(log, "attendance.finalized", &["hang-b2"])).await;
    // Alpha's endpoint never had more than its limit in flight, and none of them was answered.
    assert_eq!(hung.max_in_flight(), 2, "the per-endpoint limit");
    assert_eq!(hung.log().len(), 2);
}

#[tokio::test]
async fn webhook_urls_that_resolve_to_private_addresses_are_refused_unless_the_operator_allows_them() {
    let app = spawn_app().await;
    let base = app.url("");
    for url in [
        "https://10.0.0.7/hook",
        "https://192.168.1.20/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd12::1]/hook",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "http://hooks.example.org/hook",
        "http://127.0.0.1:9/hook",
    ] {
        let r = app
            .http
            .post(format!("{base}/v1/webhooks"))
            .bearer_auth(ALPHA_KEY)
            .json(&json!({"url": url, "events": ["meeting.ended"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "webhook_url_refused", "{url}: {body}");
        assert!(
            !body["message"].as_str().unwrap().contains("127.0.0.1") || url.contains("127.0.0.1"),
            "no resolved address in {body}"
        );
    }
    let r = app
        .http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"url": "https://hooks.example.org/x", "events": ["chat.message"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "unknown events are refused");
    assert!(app.get_json("/v1/webhooks", Some(ALPHA_KEY)).await.as_array().unwrap().is_empty());

    // An operator whose programs' systems are on an internal network allows private addresses.
    let internal = spawn_with(|c| c.webhooks.allow_private_addresses = true).await;
    let r = internal
        .http
        .post(internal.url("/v1/webhooks"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"url": "https://10.0.0.7/hook", "events": ["meeting.ended"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Plain http stays refused except to loopback where allowed.
    let r = internal
        .http
        .post(internal.url("/v1/webhooks"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"url": "http://10.0.0.7/hook", "events": ["meeting.ended"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

/// Joins `meeting` of the binary as alpha's `member` with `role`.
async fn join_binary(
    server: &BinaryServer,
    meeting: &str,
    member: &str,
    role: haven::auth::join_token::TokenRole,
) -> Client {
    let claims = haven::auth::join_token::claims_for(ALPHA, meeting, member, role, 600);
    let mut c = Client::connect(server.addr, &sign_hs(ALPHA, &claims)).await.unwrap();
    c.send(json!({"type": "join"})).await;
    assert_eq!(c.recv().await["type"], "welcome");
    c
}

#[tokio::test]
async fn after_sigkill_between_a_meetings_end_and_the_delivery_every_event_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    let hooks = "allow_http_loopback = true\nretry_base = \"100ms\"\npoll_interval = \"100ms\"\nconnect_timeout = \"1s\"\nrequest_timeout = \"2s\"";
    std::fs::write(&config, binary_config(&[("webhooks", hooks), ("media", "enabled = false")])).unwrap();
    let rx = Receiver::start(Answer::Status(503)).await;
    let mut server = BinaryServer::start(dir.path(), &config, &[]);
    let http = reqwest::Client::new();
    let (_, secret) = register(&http, &format!("http://{}", server.addr), ALPHA_KEY, &rx.url, &ALL).await;
    server.create_meeting(json!({"id": "crashhook", "title": "Crash", "settings": {"waiting_room": false}})).await;
    let mut f = join_binary(&server, "crashhook", "crash-fac", Facilitator).await;
    let mut clients = Vec::new();
    for m in ["crash-1", "crash-2", "crash-3"] {
        clients.push(join_binary(&server, "crashhook", m, Member).await);
    }
    f.request(json!({"type": "end_meeting"})).await;
    // The end is stored (its events are being attempted) but nothing is delivered: kill -9.
    let before =
        rx.wait_until("an attendance.finalized attempt", |log| !of_type(log, "attendance.finalized").is_empty()).await;
    server.kill();
    drop((f, clients));
    assert!(before.iter().all(|r| r.answered == 503));
    let ids_before: std::collections::BTreeSet<String> = before.iter().map(|r| r.id.clone()).collect();

    rx.set(Answer::Status(200));
    let _server = BinaryServer::start(dir.path(), &config, &[]);
    let members = ["crash-fac", "crash-1", "crash-2", "crash-3"];
    let log = rx
        .wait_until("every event after the restart", |log| {
            delivered_for(log, "attendance.finalized", &members)
                && of_type(log, "meeting.ended").iter().any(|r| r.answered == 200)
                && of_type(log, "meeting.started").iter().any(|r| r.answered == 200)
        })
        .await;
    for r in &log {
        assert!(verify(&secret, r));
    }
    // The ids attempted before the kill are the ids delivered after it (receivers deduplicate).
    let delivered: std::collections::BTreeSet<String> =
        log.iter().filter(|r| r.answered == 200).map(|r| r.id.clone()).collect();
    assert!(ids_before.is_subset(&delivered), "{ids_before:?} / {delivered:?}");
    assert_eq!(delivered.len(), 6, "started, four results, ended: {:#?}", summary(&log));
}

#[tokio::test]
async fn two_nodes_on_one_postgres_deliver_each_event_exactly_once() {
    let url = crate::store::fresh_postgres().await;
    let a = spawn_with(|c| {
        fast(c);
        c.database_url = Some(url.clone());
    })
    .await;
    let dir_b = tempfile::tempdir().unwrap();
    let mut config_b = a.server.as_ref().unwrap().app.config.clone();
    config_b.data_dir = dir_b.path().to_path_buf();
    config_b.listen = "127.0.0.1:0".parse().unwrap();
    let b = haven::Server::start(config_b).await.expect("the second node starts");
    let rx = Receiver::start(Answer::Status(200)).await;
    let (ep, secret) = register(&a.http, &a.url(""), ALPHA_KEY, &rx.url, &ALL).await;
    // Events queued through both nodes; both nodes deliver.
    let mut ids = Vec::new();
    for i in 0..30 {
        let base = if i % 2 == 0 { a.url("") } else { format!("http://{}", b.addr) };
        let r = a.http.post(format!("{base}/v1/webhooks/{ep}/test")).bearer_auth(ALPHA_KEY).send().await.unwrap();
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string());
    }
    rx.wait_until("all 30 events", |log| ids.iter().all(|id| log.iter().any(|r| &r.id == id))).await;
    // Once both nodes have recorded every delivery, nothing more can be sent: count then.
    let wait = async {
        loop {
            let d = a.get_json(&format!("/v1/webhooks/{ep}/deliveries"), Some(ALPHA_KEY)).await;
            if d.as_array().unwrap().iter().filter(|x| x["status"] == "delivered").count() == 30 {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("every delivery recorded");
    let log = rx.log();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &log {
        assert!(verify(&secret, r));
        *counts.entry(&r.id).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "each event once: {counts:?}");
    assert_eq!(counts.len(), 30);
    b.shutdown().await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_count_as_failed_attempts() {
    let app = spawn_with(fast).await;
    let target = Receiver::start(Answer::Status(200)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let location = target.url.clone();
    let redirect = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, redirect).await.unwrap() });
    let (ep, _) = register(&app.http, &app.url(""), ALPHA_KEY, &format!("http://{addr}/hook"), &ALL).await;
    let r = app.http.post(app.url(&format!("/v1/webhooks/{ep}/test"))).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Once the attempt is recorded, a followed redirect would already have reached the target.
    let wait = async {
        loop {
            let d = app.get_json(&format!("/v1/webhooks/{ep}/deliveries"), Some(ALPHA_KEY)).await;
            if let Some(a) = d[0]["history"].as_array().and_then(|h| h.first().cloned()) {
                return (d[0].clone(), a);
            }
            tokio::task::yield_now().await;
        }
    };
    let (delivery, attempt) = tokio::time::timeout(WAIT, wait).await.expect("an attempt is recorded");
    assert_eq!(attempt["status_code"], 307);
    assert_eq!(delivery["status"], "pending", "a redirect is a failure, retried later: {delivery}");
    assert!(target.log().is_empty(), "the redirect was followed");
}
