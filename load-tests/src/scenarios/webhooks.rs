//! `webhooks`: what the outbox costs a meeting's end, and how fast events reach an endpoint.
//!
//! Two phases against the same server, in the same run: M meetings of P participants end at once,
//! first with no webhook endpoint, then with one endpoint (a receiver in this process, answering
//! 204 at once) subscribed to every event. Each phase measures the time from the end commands to
//! the journal being drained (every result final: the drain computes results and, in the second
//! phase, writes their events in the same transaction); the second also the time from the end to
//! each `attendance.finalized` arriving, and duplicates.

use super::{create_meetings, join_haven, run_id};
use crate::net::Net;
use crate::procfs;
use crate::stats::{Hist, Summary};
use crate::target::{Target, TargetKind};
use crate::token::Minter;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Parameters of `webhooks`.
#[derive(Debug, Clone)]
pub struct WebhooksParams {
    pub meetings: usize,
    /// Participants per meeting (the first is the facilitator who ends it).
    pub participants: usize,
    pub join_concurrency: usize,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksPhase {
    pub endpoint: bool,
    pub results: usize,
    /// From the end commands to the journal drained (every result final), milliseconds.
    pub end_to_final_ms: f64,
    /// From the end commands to the last `attendance.finalized` received.
    pub end_to_all_delivered_ms: Option<f64>,
    /// Per event: from the end commands to its arrival.
    pub delivery: Option<Summary>,
    pub events_received: usize,
    pub duplicates: usize,
    pub server_cpu_s: Option<f64>,
}

/// What `webhooks` reports.
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksReport {
    pub scenario: &'static str,
    pub server: String,
    pub meetings: usize,
    pub participants_per_meeting: usize,
    pub without_endpoint: WebhooksPhase,
    pub with_endpoint: WebhooksPhase,
}

#[derive(Default)]
struct Inbox {
    /// Arrival time of each `attendance.finalized` by event id, and how often it came.
    finalized: Mutex<HashMap<String, (Instant, usize)>>,
    other: Mutex<usize>,
    changed: Notify,
}

async fn receive(
    axum::extract::State(inbox): axum::extract::State<Arc<Inbox>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if v["type"] == "attendance.finalized" {
        let mut f = inbox.finalized.lock().unwrap_or_else(|e| e.into_inner());
        f.entry(id).or_insert((Instant::now(), 0)).1 += 1;
    } else if let Ok(mut o) = inbox.other.lock() {
        *o += 1;
    }
    inbox.changed.notify_waiters();
    axum::http::StatusCode::NO_CONTENT
}

async fn start_receiver() -> anyhow::Result<(String, Arc<Inbox>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let inbox = Arc::new(Inbox::default());
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(inbox.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/hook"), inbox))
}

/// The journal is empty (every record, meeting ends included, is in the database).
async fn drained(http: &reqwest::Client, target: &Target) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let r: Value = http.get(target.http_url("/readyz")).send().await?.json().await?;
            if r["journal"]["records"] == 0 {
                return Ok::<(), anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the journal did not drain within 300 s"))?
}

async fn phase(
    target: &Target,
    p: &WebhooksParams,
    inbox: Option<&Arc<Inbox>>,
    tag: &str,
) -> anyhow::Result<WebhooksPhase> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let net = Arc::new(Net::new(target.addr, Net::auto_source_ips(p.meetings * p.participants)));
    let run = run_id();
    let ids: Vec<String> = (0..p.meetings).map(|i| format!("wh{run}{tag}-{i}")).collect();
    create_meetings(target, &ids, p.participants + 5).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let sem = Arc::new(Semaphore::new(p.join_concurrency.max(1)));
    let mut tasks = Vec::new();
    for (m, id) in ids.iter().enumerate() {
        for i in 0..p.participants {
            let role = if i == 0 { "facilitator" } else { "member" };
            let token = minter.mint(id, &format!("wh{run}-{m}-{i}"), role, 3600)?;
            let (net, sem) = (net.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await;
                join_haven(&net, &token).await
            }));
        }
    }
    let mut joined = Vec::with_capacity(tasks.len());
    for t in tasks {
        joined.push(t.await?.map_err(|e| anyhow::anyhow!("join failed: {e}"))?);
    }
    // Everyone's admission in the database before the clock starts.
    drained(&http, target).await?;
    let before = target.server_pid.and_then(procfs::sample);
    let start = Instant::now();
    for j in joined.iter_mut().step_by(p.participants.max(1)) {
        j.ws.send(Message::Text(json!({"type": "end_meeting"}).to_string().into())).await?;
    }
    // Each facilitator is told the meeting ended once its actor handled the end (and journalled
    // it, within the same step); then the drain must take every record. The export confirms.
    for j in joined.iter_mut().step_by(p.participants.max(1)) {
        let told = async {
            while let Some(Ok(m)) = j.ws.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"meeting_ended\"") {
                        return true;
                    }
                }
            }
            false
        };
        anyhow::ensure!(
            tokio::time::timeout(Duration::from_secs(60), told).await.unwrap_or(false),
            "a facilitator was not told the meeting ended"
        );
    }
    loop {
        drained(&http, target).await?;
        let rows: Value = http
            .get(target.http_url(&format!("/v1/attendance?from={}", chrono::Utc::now().format("%Y-%m-%d"))))
            .bearer_auth(&target.api_key)
            .send()
            .await?
            .json()
            .await?;
        let done = rows
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|x| x["final"] == true && x["meeting_id"].as_str().is_some_and(|m| m.contains(&run)))
                    .count()
            })
            .unwrap_or(0);
        if done == p.meetings * p.participants {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "results never final");
    }
    let end_to_final = start.elapsed();
    let (mut delivery, mut all_delivered, mut received, mut duplicates) = (None, None, 0, 0);
    if let Some(inbox) = inbox {
        let want = p.meetings * p.participants;
        tokio::time::timeout(Duration::from_secs(300), async {
            loop {
                let changed = inbox.changed.notified();
                if inbox.finalized.lock().map(|f| f.len()).unwrap_or(0) >= want {
                    return;
                }
                changed.await;
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("not every attendance.finalized arrived within 300 s"))?;
        let f = inbox.finalized.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = Hist::default();
        let mut last = Duration::ZERO;
        for (at, n) in f.values() {
            let d = at.saturating_duration_since(start);
            h.record(d);
            last = last.max(d);
            duplicates += n - 1;
        }
        received = f.len();
        delivery = Some(h.summary());
        all_delivered = Some(last.as_secs_f64() * 1000.0);
    }
    let after = target.server_pid.and_then(procfs::sample);
    drop(joined);
    Ok(WebhooksPhase {
        endpoint: inbox.is_some(),
        results: p.meetings * p.participants,
        end_to_final_ms: end_to_final.as_secs_f64() * 1000.0,
        end_to_all_delivered_ms: all_delivered,
        delivery,
        events_received: received,
        duplicates,
        server_cpu_s: before.zip(after).map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
    })
}

/// Runs `webhooks` against a Haven target that allows `http://` webhooks to loopback (the
/// servers the harness starts do).
pub async fn run(target: &Target, p: &WebhooksParams) -> anyhow::Result<WebhooksReport> {
    anyhow::ensure!(target.kind == TargetKind::Haven, "webhooks needs a Haven target");
    let without = phase(target, p, None, "a").await?;
    let (url, inbox) = start_receiver().await?;
    let http = reqwest::Client::new();
    let r = http
        .post(target.http_url("/v1/webhooks"))
        .bearer_auth(&target.api_key)
        .json(&json!({"url": url, "events": ["meeting.started", "meeting.ended", "attendance.finalized"]}))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "registering the endpoint: HTTP {}", r.status());
    let with = phase(target, p, Some(&inbox), "b").await?;
    Ok(WebhooksReport {
        scenario: "webhooks",
        server: target.description.clone(),
        meetings: p.meetings,
        participants_per_meeting: p.participants,
        without_endpoint: without,
        with_endpoint: with,
    })
}
