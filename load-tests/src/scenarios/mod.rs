//! The scenarios and what they share: creating meetings, joining, the participant task, and the
//! per-meeting bookkeeping that turns receipts into fan-out latencies.

pub mod audio;
pub mod janus;
pub mod rooms;
pub mod storms;
pub mod webhooks;

use crate::net::{ConnectError, Net, Ws};
use crate::target::{Target, TargetKind};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;

/// How long a join, a resume or an event's fan-out may take before it counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// Error tallies by a short key (`http_409_meeting_full`, `error_rate_limited`, `fanout_timeout`, ...).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub fn add(&self, key: impl Into<String>) {
        *self.0.lock().unwrap().entry(key.into()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// Frame counters shared by every participant task.
#[derive(Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub errors: Errors,
}

/// A random id prefix so runs against a long-lived server never collide.
pub fn run_id() -> String {
    let mut rng = rand::thread_rng();
    (0..6).map(|_| (b'a' + rng.gen_range(0..26)) as char).collect()
}

/// Creates meetings over the HTTP API (no waiting room), eight requests at a time.
pub async fn create_meetings(target: &Target, ids: &[String], capacity: usize) -> anyhow::Result<()> {
    if target.kind == TargetKind::Reference {
        return Ok(());
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for id in ids {
        let (http, sem, url, key) =
            (http.clone(), sem.clone(), target.http_url("/v1/meetings"), target.api_key.clone());
        let body = json!({"id": id, "title": format!("Load {id}"), "capacity": capacity,
                          "settings": {"waiting_room": false}});
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let r = http.post(url).bearer_auth(key).json(&body).send().await?;
            let status = r.status();
            if status.as_u16() != 201 {
                anyhow::bail!("creating meeting: HTTP {status}: {}", r.text().await.unwrap_or_default());
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// A participant who got in.
pub struct Joined {
    pub ws: Ws,
    pub pid: String,
    pub resume_token: String,
    pub last_seq: u64,
    pub muted: bool,
    /// From the start of the TCP connect to the `welcome` frame (or the upgrade, for the reference).
    pub latency: Duration,
}

/// `seq` of a server frame (render_frame puts it first); 0 when absent.
pub fn seq_of(text: &str) -> u64 {
    let Some(i) = text.find("\"seq\":") else { return 0 };
    text[i + 6..].bytes().take_while(u8::is_ascii_digit).fold(0u64, |a, b| a * 10 + u64::from(b - b'0'))
}

fn error_code(text: &str) -> String {
    let code = text.find("\"code\":\"").map(|i| &text[i + 8..]).and_then(|r| r.split('"').next()).unwrap_or("unknown");
    format!("error_{code}")
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(f))) => return Err(format!("closed_{}", f.map(|f| u16::from(f.code)).unwrap_or(0))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err("connection_lost".into()),
        }
    }
}

/// Connects with a join token and sends `join`; Ok at `welcome`.
pub async fn join_haven(net: &Net, token: &str) -> Result<Joined, String> {
    let start = Instant::now();
    let fut = async {
        let mut ws = net.connect(&format!("/v1/signal?token={token}")).await.map_err(|e: ConnectError| e.key())?;
        ws.send(Message::Text(r#"{"type":"join"}"#.into())).await.map_err(|_| "send_failed".to_string())?;
        loop {
            let t = next_text(&mut ws).await?;
            let v: Value = serde_json::from_str(&t).map_err(|_| "bad_json".to_string())?;
            match v["type"].as_str() {
                Some("welcome") => {
                    let pid = v["participant_id"].as_str().unwrap_or_default().to_string();
                    let muted = v["participants"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["participant_id"] == pid.as_str()))
                        .and_then(|p| p["muted"].as_bool())
                        .unwrap_or(true);
                    return Ok(Joined {
                        resume_token: v["resume_token"].as_str().unwrap_or_default().to_string(),
                        last_seq: v["seq"].as_u64().unwrap_or(0),
                        pid,
                        muted,
                        latency: start.elapsed(),
                        ws,
                    });
                }
                Some("waiting") => return Err("waiting_room".into()),
                Some("error") => return Err(error_code(&t)),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or_else(|_| Err("join_timeout".into()))
}

/// Connects to the reference server's room (its "join" is the upgrade).
pub async fn join_reference(net: &Net, meeting: &str, index: usize) -> Result<Joined, String> {
    let start = Instant::now();
    let ws = net.connect(&format!("/room/{meeting}")).await.map_err(|e| e.key())?;
    Ok(Joined {
        ws,
        pid: format!("c{index}"),
        resume_token: String::new(),
        last_seq: 0,
        muted: true,
        latency: start.elapsed(),
    })
}

/// Recognises a frame by substrings: its type tag, a needle that must (or must not) be in it,
/// and an extra fragment.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// E.g. `"type":"queue_updated"`; empty matches any frame.
    pub ty: &'static str,
    pub needle: String,
    pub needle_present: bool,
    pub extra: &'static str,
}

impl Matcher {
    pub fn new(ty: &'static str, needle: &str) -> Matcher {
        Matcher { ty, needle: needle.to_string(), needle_present: true, extra: "" }
    }

    pub fn without(ty: &'static str, needle: &str) -> Matcher {
        Matcher { ty, needle: needle.to_string(), needle_present: false, extra: "" }
    }

    pub fn and(mut self, extra: &'static str) -> Matcher {
        self.extra = extra;
        self
    }

    pub fn matches(&self, t: &str) -> bool {
        t.contains(self.ty) && t.contains(self.needle.as_str()) == self.needle_present && t.contains(self.extra)
    }
}

/// The fan-out of one event in flight in a meeting: when it was sent, who has received the
/// measured frame (and when), who has received the action's last frame.
struct Pending {
    measure: Matcher,
    done: Matcher,
    sent_at: Instant,
    measured: Vec<bool>,
    finished: Vec<bool>,
    remaining: usize,
    max_us: u64,
    per_recipient: Vec<u64>,
}

/// Per meeting: the event in flight (one at a time, so receipts are unambiguous).
#[derive(Default)]
pub struct MeetingShared {
    pending: Mutex<Option<Pending>>,
    done: Notify,
}

/// A finished fan-out: the slowest recipient and each recipient's latency, in µs.
pub struct FanOut {
    pub max_us: u64,
    pub per_recipient: Vec<u64>,
}

impl MeetingShared {
    /// Starts tracking an event whose recipients are the `true` entries of `recipients`.
    pub fn begin(&self, recipients: &[bool], measure: Matcher, done: Matcher) {
        let finished: Vec<bool> = recipients.iter().map(|r| !r).collect();
        let remaining = recipients.iter().filter(|r| **r).count();
        *self.pending.lock().unwrap() = Some(Pending {
            measure,
            done,
            sent_at: Instant::now(),
            measured: finished.clone(),
            finished,
            remaining,
            max_us: 0,
            per_recipient: Vec::with_capacity(remaining),
        });
    }

    /// The sender stamps the time just before writing the frame.
    fn stamp(&self) {
        if let Some(p) = self.pending.lock().unwrap().as_mut() {
            p.sent_at = Instant::now();
        }
    }

    /// A participant received `text` at `at`.
    fn on_frame(&self, index: usize, text: &str, at: Instant) {
        let mut g = self.pending.lock().unwrap();
        let Some(p) = g.as_mut() else { return };
        if index >= p.finished.len() || p.finished[index] {
            return;
        }
        if !p.measured[index] && p.measure.matches(text) {
            p.measured[index] = true;
            let us = at.saturating_duration_since(p.sent_at).as_micros() as u64;
            p.max_us = p.max_us.max(us);
            p.per_recipient.push(us);
        }
        if p.measured[index] && p.done.matches(text) {
            p.finished[index] = true;
            p.remaining -= 1;
            if p.remaining == 0 {
                self.done.notify_one();
            }
        }
    }

    /// Waits until every recipient has the event; `None` after `timeout` (the event is dropped).
    pub async fn wait(&self, timeout: Duration) -> Option<FanOut> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut g = self.pending.lock().unwrap();
                if g.as_ref().is_some_and(|p| p.remaining == 0) {
                    let p = g.take().unwrap();
                    return Some(FanOut { max_us: p.max_us, per_recipient: p.per_recipient });
                }
            }
            if tokio::time::timeout_at(deadline, self.done.notified()).await.is_err() {
                self.pending.lock().unwrap().take();
                return None;
            }
        }
    }
}

/// What a participant task is told to do.
pub enum Cmd {
    /// Send a frame; `stamp` marks the meeting's pending event as sent now.
    Send { text: String, stamp: bool },
    /// Drop the connection abruptly (RST) and hand back what a resume needs.
    Abort(oneshot::Sender<ResumeState>),
    /// Close politely.
    Close,
}

/// What a participant needs to resume.
#[derive(Debug, Clone)]
pub struct ResumeState {
    pub pid: String,
    pub resume_token: String,
    pub last_seq: u64,
}

/// Runs one connected participant: reads every frame (counting it, noting errors, feeding the
/// meeting's fan-out bookkeeping), sends what it is told, pings every `ping_every` (Haven closes
/// silent connections).
pub fn spawn_participant(
    index: usize,
    joined: Joined,
    meeting: Arc<MeetingShared>,
    counters: Arc<Counters>,
    ping_every: Option<Duration>,
) -> mpsc::Sender<Cmd> {
    let (tx, mut rx) = mpsc::channel::<Cmd>(8);
    tokio::spawn(async move {
        let Joined { mut ws, pid, mut resume_token, mut last_seq, .. } = joined;
        let period = ping_every.unwrap_or(Duration::from_secs(3600));
        let offset = Duration::from_millis(rand::thread_rng().gen_range(0..period.as_millis().max(1) as u64));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        loop {
            tokio::select! {
                m = ws.next() => {
                    let at = Instant::now();
                    match m {
                        Some(Ok(Message::Text(t))) => {
                            counters.frames_in.fetch_add(1, Ordering::Relaxed);
                            let t = t.as_str();
                            if t.contains("\"type\":\"error\"") {
                                counters.errors.add(error_code(t));
                            }
                            let s = seq_of(t);
                            if s > last_seq {
                                last_seq = s;
                            }
                            if t.contains("\"type\":\"resumed\"") {
                                if let Ok(v) = serde_json::from_str::<Value>(t) {
                                    if let Some(r) = v["resume_token"].as_str() {
                                        resume_token = r.to_string();
                                    }
                                }
                            }
                            meeting.on_frame(index, t, at);
                        }
                        Some(Ok(Message::Close(f))) => {
                            counters.errors.add(format!("closed_{}", f.map(|f| u16::from(f.code)).unwrap_or(0)));
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            counters.errors.add("connection_lost");
                            return;
                        }
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Send { text, stamp }) => {
                        if stamp {
                            meeting.stamp();
                        }
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            counters.errors.add("send_failed");
                            return;
                        }
                        counters.frames_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Cmd::Abort(reply)) => {
                        crate::net::abort(ws);
                        let _ = reply.send(ResumeState { pid, resume_token, last_seq });
                        return;
                    }
                    Some(Cmd::Close) | None => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                        return;
                    }
                },
                _ = ping.tick(), if ping_every.is_some() => {
                    if ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await.is_err() {
                        counters.errors.add("send_failed");
                        return;
                    }
                    counters.frames_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    tx
}

/// Tells every participant to close and waits a little for them.
pub async fn close_all(senders: Vec<mpsc::Sender<Cmd>>) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for s in &senders {
            let _ = s.send(Cmd::Close).await;
        }
    })
    .await;
    // Give the close frames a moment to leave.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// How often participants ping: Haven closes a connection silent for 60 s.
pub fn ping_period(target: &Target) -> Option<Duration> {
    (target.kind == TargetKind::Haven).then_some(Duration::from_secs(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_and_matchers() {
        let f = r#"{"seq":12,"type":"queue_updated","queue":[{"participant_id":"p1","raised_at":5}]}"#;
        assert_eq!(seq_of(f), 12);
        assert_eq!(seq_of(r#"{"type":"pong"}"#), 0);
        assert!(Matcher::new("\"type\":\"queue_updated\"", "p1").matches(f));
        assert!(!Matcher::without("\"type\":\"queue_updated\"", "p1").matches(f));
        assert!(Matcher::without("\"type\":\"queue_updated\"", "p2").matches(f));
        assert!(!Matcher::new("\"type\":\"queue_updated\"", "p1").and("\"muted\":true").matches(f));
        assert_eq!(error_code(r#"{"seq":0,"type":"error","code":"rate_limited","message":"x"}"#), "error_rate_limited");
    }

    #[tokio::test]
    async fn fan_out_completes_when_every_recipient_has_the_last_frame() {
        let m = MeetingShared::default();
        m.begin(&[true, true, false], Matcher::new("A", ""), Matcher::new("B", ""));
        let t0 = Instant::now();
        m.on_frame(0, "A B", t0);
        m.on_frame(1, "A", t0);
        m.on_frame(2, "A B", t0); // not a recipient
        assert!(m.pending.lock().unwrap().as_ref().unwrap().remaining == 1);
        m.on_frame(1, "B", t0);
        let f = m.wait(Duration::from_secs(1)).await.expect("complete");
        assert_eq!(f.per_recipient.len(), 2);
        m.begin(&[true], Matcher::new("A", ""), Matcher::new("A", ""));
        assert!(m.wait(Duration::from_millis(20)).await.is_none(), "times out");
    }
}
