//! `join-storm` (N joins as fast as possible, or at a set rate) and `resume-storm` (N connected
//! participants drop at once and come back with their resume tokens).

use super::{
    close_all, create_meetings, join_haven, ping_period, run_id, spawn_participant, Cmd, Counters, MeetingShared,
    ResumeState, OP_TIMEOUT,
};
use crate::net::{Net, Ws};
use crate::procfs;
use crate::stats::{Hist, Summary};
use crate::target::{Target, TargetKind};
use crate::token::Minter;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Parameters of `join-storm`.
#[derive(Debug, Clone)]
pub struct JoinStormParams {
    pub joins: usize,
    /// Participants per meeting (meetings are created beforehand, not timed).
    pub per_meeting: usize,
    /// Joins in flight at once.
    pub concurrency: usize,
    /// Joins started per second; 0 for as fast as possible.
    pub rate: f64,
    pub source_ips: Option<u32>,
}

/// What `join-storm` reports.
#[derive(Debug, Clone, Serialize)]
pub struct JoinStormReport {
    pub scenario: &'static str,
    pub server: String,
    pub joins: usize,
    pub per_meeting: usize,
    pub concurrency: usize,
    pub offered_rate: Option<f64>,
    pub ok: usize,
    pub failed: usize,
    pub wall_s: f64,
    pub joins_per_s: f64,
    pub latency: Summary,
    pub errors: BTreeMap<String, u64>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_per_join_ms: Option<f64>,
    pub server_rss_after_kib: Option<u64>,
}

fn meetings_for(n: usize, per: usize) -> usize {
    n.div_ceil(per.max(1)).max(1)
}

/// Runs `join-storm` against a Haven target.
pub async fn join_storm(target: &Target, p: &JoinStormParams) -> anyhow::Result<JoinStormReport> {
    anyhow::ensure!(target.kind == TargetKind::Haven, "join-storm needs a Haven target");
    let net = Arc::new(Net::new(target.addr, p.source_ips.unwrap_or_else(|| Net::auto_source_ips(p.joins))));
    let run = run_id();
    let nm = meetings_for(p.joins, p.per_meeting);
    let ids: Vec<String> = (0..nm).map(|r| format!("js{run}-{r}")).collect();
    create_meetings(target, &ids, p.per_meeting + 5).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let tokens = (0..p.joins)
        .map(|i| minter.mint(&ids[i / p.per_meeting.max(1)], &format!("j{run}-{i}"), "member", 3600))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(MeetingShared::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.server_pid.and_then(procfs::sample);
    let sem = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let ping = ping_period(target);
    let start = Instant::now();
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(p.joins);
    for (i, token) in tokens.into_iter().enumerate() {
        if p.rate > 0.0 {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / p.rate)).await;
        }
        let permit = sem.clone().acquire_owned().await?;
        let (net, counters, shared) = (net.clone(), counters.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let r = join_haven(&net, &token).await;
            drop(permit);
            r.map(|j| (j.latency, spawn_participant(usize::MAX, j, shared, counters, ping)))
        }));
    }
    let mut hist = Hist::default();
    let mut senders = Vec::new();
    for t in tasks {
        match t.await? {
            Ok((lat, tx)) => {
                hist.record(lat);
                senders.push(tx);
            }
            Err(key) => counters.errors.add(key),
        }
    }
    // Tasks are awaited in order, so this is when the last of them finished.
    let wall = start.elapsed().as_secs_f64();
    let after = target.server_pid.and_then(procfs::sample);
    let ok = senders.len();
    close_all(senders).await;
    let cpu = before.zip(after).map(|(b, a)| a.cpu_seconds - b.cpu_seconds);
    Ok(JoinStormReport {
        scenario: "join-storm",
        server: target.description.clone(),
        joins: p.joins,
        per_meeting: p.per_meeting,
        concurrency: p.concurrency,
        offered_rate: (p.rate > 0.0).then_some(p.rate),
        ok,
        failed: p.joins - ok,
        wall_s: wall,
        joins_per_s: ok as f64 / wall.max(1e-9),
        latency: hist.summary(),
        errors: counters.errors.snapshot(),
        server_cpu_s: cpu,
        server_cpu_per_join_ms: cpu.map(|c| c * 1000.0 / ok.max(1) as f64),
        server_rss_after_kib: after.map(|a| a.rss_kib),
    })
}

/// Parameters of `resume-storm`.
#[derive(Debug, Clone)]
pub struct ResumeStormParams {
    pub participants: usize,
    pub per_meeting: usize,
    /// Joins in flight at once while filling the meetings.
    pub join_concurrency: usize,
    /// Wait between the drop and the resumes, ms (the server notices the drops meanwhile).
    pub reconnect_delay_ms: u64,
    pub source_ips: Option<u32>,
}

/// What `resume-storm` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeStormReport {
    pub scenario: &'static str,
    pub server: String,
    pub participants: usize,
    pub per_meeting: usize,
    pub joined: usize,
    pub dropped: usize,
    /// `resumed` with the same participant id.
    pub kept_seat: usize,
    /// `resumed` with another participant id.
    pub new_seat: usize,
    pub failed: usize,
    /// `resumed` with `replayed: true` (missed events replayed rather than a fresh `welcome`).
    pub replayed: usize,
    pub wall_s: f64,
    pub resumes_per_s: f64,
    pub latency: Summary,
    pub errors: BTreeMap<String, u64>,
    pub server_cpu_s: Option<f64>,
}

enum Resumed {
    Kept { replayed: bool },
    NewSeat,
}

/// Connects with the resume token and sends `resume`; the outcome at `resumed`.
async fn resume_one(net: &Net, st: &ResumeState) -> Result<(Ws, Resumed, Duration), String> {
    let start = Instant::now();
    let fut = async {
        let mut ws = net.connect(&format!("/v1/signal?token={}", st.resume_token)).await.map_err(|e| e.key())?;
        let frame = json!({"type": "resume", "resume_token": st.resume_token, "last_seq": st.last_seq});
        ws.send(Message::Text(frame.to_string().into())).await.map_err(|_| "send_failed".to_string())?;
        loop {
            let t = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("closed_{}", f.map(|f| u16::from(f.code)).unwrap_or(0)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err("connection_lost".into()),
            };
            let v: Value = serde_json::from_str(&t).map_err(|_| "bad_json".to_string())?;
            match v["type"].as_str() {
                Some("resumed") => {
                    let outcome = if v["participant_id"].as_str() == Some(st.pid.as_str()) {
                        Resumed::Kept { replayed: v["replayed"].as_bool().unwrap_or(false) }
                    } else {
                        Resumed::NewSeat
                    };
                    return Ok((ws, outcome, start.elapsed()));
                }
                Some("error") => return Err(format!("error_{}", v["code"].as_str().unwrap_or("unknown"))),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or_else(|_| Err("resume_timeout".into()))
}

/// Runs `resume-storm` against a Haven target.
pub async fn resume_storm(target: &Target, p: &ResumeStormParams) -> anyhow::Result<ResumeStormReport> {
    anyhow::ensure!(target.kind == TargetKind::Haven, "resume-storm needs a Haven target");
    let net = Arc::new(Net::new(target.addr, p.source_ips.unwrap_or_else(|| Net::auto_source_ips(p.participants * 2))));
    let run = run_id();
    let nm = meetings_for(p.participants, p.per_meeting);
    let ids: Vec<String> = (0..nm).map(|r| format!("rs{run}-{r}")).collect();
    create_meetings(target, &ids, p.per_meeting + 5).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let counters = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(p.join_concurrency.max(1)));
    let ping = ping_period(target);
    let mut tasks = Vec::new();
    for i in 0..p.participants {
        let m = i / p.per_meeting.max(1);
        let role = if i % p.per_meeting.max(1) == 0 { "facilitator" } else { "member" };
        let token = minter.mint(&ids[m], &format!("r{run}-{i}"), role, 3600)?;
        let (net, sem, counters) = (net.clone(), sem.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            join_haven(&net, &token)
                .await
                .map(|j| spawn_participant(usize::MAX, j, Arc::new(MeetingShared::default()), counters, ping))
        }));
    }
    let mut senders: Vec<mpsc::Sender<Cmd>> = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(tx) => senders.push(tx),
            Err(key) => counters.errors.add(format!("join_{key}")),
        }
    }
    let joined = senders.len();
    // Let the join events settle so everyone's last_seq is current.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Everyone drops at once.
    let mut waits = Vec::with_capacity(joined);
    for s in &senders {
        let (tx, rx) = oneshot::channel();
        if s.send(Cmd::Abort(tx)).await.is_ok() {
            waits.push(rx);
        }
    }
    let mut states = Vec::with_capacity(joined);
    for w in waits {
        if let Ok(st) = w.await {
            states.push(st);
        }
    }
    let dropped = states.len();
    tokio::time::sleep(Duration::from_millis(p.reconnect_delay_ms)).await;

    // Everyone comes back at once.
    let before = target.server_pid.and_then(procfs::sample);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(dropped);
    for st in states {
        let net = net.clone();
        tasks.push(tokio::spawn(async move { resume_one(&net, &st).await }));
    }
    let (mut kept, mut new_seat, mut replayed) = (0, 0, 0);
    let mut hist = Hist::default();
    let mut back = Vec::new();
    for t in tasks {
        match t.await? {
            Ok((ws, outcome, lat)) => {
                hist.record(lat);
                match outcome {
                    Resumed::Kept { replayed: r } => {
                        kept += 1;
                        replayed += usize::from(r);
                    }
                    Resumed::NewSeat => new_seat += 1,
                }
                back.push(ws);
            }
            Err(key) => counters.errors.add(format!("resume_{key}")),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let after = target.server_pid.and_then(procfs::sample);
    for mut ws in back {
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    }
    Ok(ResumeStormReport {
        scenario: "resume-storm",
        server: target.description.clone(),
        participants: p.participants,
        per_meeting: p.per_meeting,
        joined,
        dropped,
        kept_seat: kept,
        new_seat,
        failed: dropped - kept - new_seat,
        replayed,
        wall_s: wall,
        resumes_per_s: (kept + new_seat) as f64 / wall.max(1e-9),
        latency: hist.summary(),
        errors: counters.errors.snapshot(),
        server_cpu_s: before.zip(after).map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
    })
}
