//! `cluster`: several Haven nodes on one Redis and one PostgreSQL database. N participants join M
//! meetings through the nodes in turn (so some reach the meeting's owner directly and some through
//! a node that proxies them to it); then the node owning the most meetings is killed (SIGKILL),
//! and everyone it took down (the participants of its meetings, and everyone whose socket went
//! through it) comes back by resume through a live node, retrying as the web client does.
//!
//! Measures join latency through the owner and through another node, how long after the kill
//! each of them was back, and whether they kept their seats (the same participant id).

use super::{create_meetings, join_haven, run_id, seq_of, Counters, Joined, OP_TIMEOUT};
use crate::launch::{self, Launched};
use crate::net::{Net, Ws};
use crate::procfs;
use crate::stats::{Hist, Summary};
use crate::target::{Target, TargetKind};
use crate::token::Minter;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The web client's pauses between reconnect attempts (web-client/src/connection.js
/// `BACKOFF_MS`; the first attempt goes at once, the last pause repeats, each with up to 30 %
/// jitter).
pub const WEB_CLIENT_BACKOFF_MS: [u64; 6] = [400, 1000, 2000, 4000, 7000, 10_000];

/// One node of the cluster under load.
#[derive(Debug, Clone)]
pub struct Node {
    pub addr: SocketAddr,
    /// Its process id: needed to kill it (and for nothing else).
    pub pid: Option<u32>,
}

/// A cluster to load: its nodes, the program's credentials (the same on every node), and where
/// the leases are (to tell which node owns which meeting).
#[derive(Debug, Clone)]
pub struct ClusterTarget {
    pub nodes: Vec<Node>,
    pub program_id: String,
    pub api_key: String,
    pub secret: String,
    pub redis_url: String,
    /// The cluster's Redis key prefix (`cluster.name`).
    pub name: String,
    pub description: String,
}

impl ClusterTarget {
    fn target(&self, i: usize) -> Target {
        Target {
            kind: TargetKind::Haven,
            addr: self.nodes[i].addr,
            program_id: self.program_id.clone(),
            api_key: self.api_key.clone(),
            secret: self.secret.clone(),
            server_pid: self.nodes[i].pid,
            description: self.description.clone(),
        }
    }
}

/// How a participant paces its attempts to come back.
#[derive(Debug, Clone, Copy)]
pub enum Backoff {
    /// As the web client does ([`WEB_CLIENT_BACKOFF_MS`]).
    WebClient,
    /// The same pause after every failed attempt.
    Fixed(Duration),
}

impl Backoff {
    /// The pause before attempt `attempt` (0 is the first, which goes at once).
    fn pause(&self, attempt: usize) -> Duration {
        match self {
            _ if attempt == 0 => Duration::ZERO,
            Backoff::WebClient => {
                let base = WEB_CLIENT_BACKOFF_MS[attempt.min(WEB_CLIENT_BACKOFF_MS.len() - 1)];
                Duration::from_millis(base + rand::thread_rng().gen_range(0..=base * 3 / 10))
            }
            Backoff::Fixed(d) => *d,
        }
    }

    fn describe(&self) -> String {
        match self {
            Backoff::WebClient => "as the web client: at once, then 1, 2, 4, 7, 10 s (+0–30 % jitter)".into(),
            Backoff::Fixed(d) => format!("every {} ms", d.as_millis()),
        }
    }
}

/// Parameters of the `cluster` scenario.
#[derive(Debug, Clone)]
pub struct ClusterParams {
    pub participants: usize,
    pub meetings: usize,
    /// Joins in flight at once.
    pub join_concurrency: usize,
    pub backoff: Backoff,
    /// Probe joins (one at a time) once everyone is in, half through owners, half through others.
    pub probes: usize,
    /// How long after the kill a participant keeps trying to come back.
    pub back_within: Duration,
    pub source_ips: Option<u32>,
}

/// Join latency by route.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRoutes {
    pub attempted: usize,
    pub ok: usize,
    pub failed: usize,
    pub wall_s: f64,
    /// The first join of each meeting (it places the meeting on a node), whichever node it reached.
    pub first: Summary,
    /// Later joins that reached the meeting's owner directly.
    pub direct: Summary,
    /// Later joins that reached another node, which proxied them to the owner.
    pub proxied: Summary,
    /// Probes once everyone is in: one join at a time (then a polite leave), alternately through
    /// the owner and through another node, so the figures hold no queueing.
    pub probe_direct: Summary,
    pub probe_proxied: Summary,
}

/// A node before and after the kill.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFigures {
    pub url: String,
    pub pid: Option<u32>,
    /// Meetings it held when the kill came.
    pub meetings_before: usize,
    /// Participants whose socket reached it.
    pub entered: usize,
    pub killed: bool,
    /// Meetings it held once everyone was back (`/readyz`), for a live node.
    pub meetings_after: Option<u64>,
    /// CPU seconds while everyone joined, and from the kill until everyone was back (`/proc`,
    /// when the pid is known and the node is on this machine).
    pub cpu_join_s: Option<f64>,
    pub cpu_recovery_s: Option<f64>,
    /// Resident memory once everyone had joined, KiB.
    pub rss_joined_kib: Option<u64>,
}

/// What `cluster` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub scenario: &'static str,
    pub server: String,
    pub participants: usize,
    pub meetings: usize,
    pub nodes: Vec<NodeFigures>,
    pub join: JoinRoutes,
    pub killed_node: usize,
    /// Meetings the killed node owned (they move).
    pub meetings_moved: usize,
    /// Participants of those meetings.
    pub in_moved_meetings: usize,
    /// Participants of other meetings whose socket went through the killed node.
    pub through_killed_node: usize,
    /// Both, the participants who had to come back.
    pub affected: usize,
    /// Back with the same participant id.
    pub kept_seat: usize,
    pub kept_seat_pct: f64,
    /// Back with another participant id.
    pub new_seat: usize,
    /// Not back within the deadline, or refused for good.
    pub not_back: usize,
    /// From the kill to `resumed`, every affected participant.
    pub back: Summary,
    /// The same, for the participants of the moved meetings only.
    pub back_moved: Summary,
    /// The same, for those whose meeting stayed where it was (only their entry node died).
    pub back_through_killed: Summary,
    /// From the kill to the first `resumed` in a moved meeting (the takeover).
    pub first_back_ms: Option<f64>,
    pub backoff: String,
    /// Attempts to come back, and why those that failed did.
    pub resume_attempts: u64,
    pub resume_refusals: BTreeMap<String, u64>,
    /// Participants the kill should not have touched whose socket dropped anyway.
    pub unexpected_drops: usize,
    /// Why sockets dropped (the affected participants' drops are expected).
    pub drops: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    /// The load generator's CPU seconds while everyone joined and from the kill until everyone
    /// was back, and the wall time of the latter (is the generator the limit?).
    pub generator_cpu_join_s: f64,
    pub generator_cpu_recovery_s: f64,
    pub recovery_wall_s: f64,
}

/// A cluster the harness started: nodes of the binary, a fresh PostgreSQL database, a fresh
/// Redis key prefix. [`LaunchedCluster::stop`] stops the nodes, drops the database and deletes
/// the keys.
pub struct LaunchedCluster {
    pub target: ClusterTarget,
    pub nodes: Vec<Launched>,
    admin_url: String,
    database: String,
}

/// The PostgreSQL admin URL (`HAVEN_TEST_PG`, as the tests use) and Redis (`HAVEN_TEST_REDIS`).
pub fn default_services() -> (String, String) {
    (
        std::env::var("HAVEN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        std::env::var("HAVEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
    )
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

/// Starts `n` nodes of `bin` as one cluster: a fresh database `haven_load_<hex>` through
/// `admin_url`, the key prefix `haven-load-<hex>` on `redis_url`, media off, node ids `n0`, `n1`, ...
pub async fn spawn_cluster(
    bin: &Path,
    n: usize,
    pin: Option<usize>,
    admin_url: &str,
    redis_url: &str,
) -> anyhow::Result<LaunchedCluster> {
    use sqlx::Connection;
    let suffix = random_hex(6);
    let database = format!("haven_load_{suffix}");
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("PostgreSQL at {admin_url} (set HAVEN_TEST_PG to an admin URL)"))?;
    sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut conn).await?;
    let _ = conn.close().await;
    let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_string()).context("admin URL without a database")?;
    let db_url = format!("{base}/{database}");
    let name = format!("haven-load-{suffix}");
    // Redis answers before any node starts, or the nodes' error says less.
    let client = redis::Client::open(redis_url)?;
    let mut con = client.get_multiplexed_async_connection().await.with_context(|| format!("Redis at {redis_url}"))?;
    let _: String = redis::cmd("PING").query_async(&mut con).await?;
    let creds = launch::fresh_credentials();
    let cluster_secret = launch::fresh_credentials().1;
    let mut nodes = Vec::with_capacity(n);
    let mut cluster = LaunchedCluster {
        target: ClusterTarget {
            nodes: Vec::new(),
            program_id: launch::PROGRAM_ID.into(),
            api_key: creds.0.clone(),
            secret: creds.1.clone(),
            redis_url: redis_url.into(),
            name: name.clone(),
            description: String::new(),
        },
        nodes: Vec::new(),
        admin_url: admin_url.into(),
        database,
    };
    for i in 0..n {
        let env = vec![
            ("DATABASE_URL".to_string(), db_url.clone()),
            ("HAVEN_REDIS_URL".to_string(), redis_url.to_string()),
            ("HAVEN_CLUSTER__SECRET".to_string(), cluster_secret.clone()),
            ("HAVEN_CLUSTER__NAME".to_string(), name.clone()),
            ("HAVEN_CLUSTER__NODE_ID".to_string(), format!("n{i}")),
        ];
        match launch::spawn_haven_with(bin, pin, &creds, "\n[media]\nenabled = false\n", &env).await {
            Ok(l) => nodes.push(l),
            Err(e) => {
                cluster.nodes = nodes;
                cluster.stop().await;
                return Err(e);
            }
        }
    }
    cluster.target.nodes = nodes.iter().map(|l| Node { addr: l.target.addr, pid: l.target.server_pid }).collect();
    cluster.target.description = format!(
        "{n} nodes: {}; PostgreSQL database {} (fresh), Redis {redis_url} prefix {name}; media off",
        nodes.first().map(|l| l.target.description.as_str()).unwrap_or_default(),
        cluster.database
    );
    cluster.nodes = nodes;
    Ok(cluster)
}

impl LaunchedCluster {
    /// Stops the nodes, drops the database and deletes the cluster's keys in Redis.
    pub async fn stop(self) {
        for l in self.nodes {
            l.stop().await;
        }
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                .execute(&mut conn)
                .await;
        }
        if let Ok(client) = redis::Client::open(self.target.redis_url.as_str()) {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                let pattern = format!("{}:*", self.target.name);
                let mut cursor = 0u64;
                loop {
                    let r: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut con)
                        .await;
                    let Ok((next, keys)) = r else { break };
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut con).await;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
    }
}

/// Which node owns each meeting, from the leases in Redis (`{name}:lease:{meeting key}` holds
/// `{token}:{node}`, `{name}:node:{node}` the node's URL; the key is the server's for the
/// program's meeting id, `haven::store::meeting_key`). `None` for a meeting without a lease or
/// whose owner is not one of `nodes`.
async fn owners(t: &ClusterTarget, ids: &[String]) -> anyhow::Result<Vec<Option<usize>>> {
    let client = redis::Client::open(t.redis_url.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let node_ids: Vec<String> = redis::cmd("SMEMBERS").arg(format!("{}:nodes", t.name)).query_async(&mut con).await?;
    let mut index_of: HashMap<String, usize> = HashMap::new();
    if !node_ids.is_empty() {
        let keys: Vec<String> = node_ids.iter().map(|id| format!("{}:node:{id}", t.name)).collect();
        let infos: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        for (id, info) in node_ids.iter().zip(infos) {
            let url = info
                .and_then(|i| serde_json::from_str::<Value>(&i).ok())
                .and_then(|v| v["url"].as_str().map(String::from));
            let addr = url.and_then(|u| crate::target::parse_addr(&u).ok());
            if let Some(i) = addr.and_then(|a| t.nodes.iter().position(|n| n.addr == a)) {
                index_of.insert(id.clone(), i);
            }
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let keys: Vec<String> =
            chunk.iter().map(|m| format!("{}:lease:{}", t.name, haven::store::meeting_key(&t.program_id, m))).collect();
        let leases: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        for l in leases {
            out.push(l.and_then(|l| l.split_once(':').and_then(|(_, node)| index_of.get(node).copied())));
        }
    }
    Ok(out)
}

/// GET `/readyz` of a node.
async fn readyz(http: &reqwest::Client, addr: SocketAddr) -> Option<Value> {
    http.get(format!("http://{addr}/readyz")).send().await.ok()?.json().await.ok()
}

/// Waits until every node has written the snapshots it took (so the kill loses no decision).
async fn snapshots_written(http: &reqwest::Client, nodes: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        while Instant::now() < deadline {
            match readyz(http, n.addr).await {
                Some(r) if r["cluster"]["unwritten_snapshots"] == 0 => break,
                // Polling a node's counter; bounded by the deadline.
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Shared by every participant task.
struct Ctx {
    nets: Vec<Net>,
    backoff: Backoff,
    counters: Counters,
    /// When the node was killed.
    killed_at: OnceLock<Instant>,
    /// The deadline to be back by.
    back_by: OnceLock<Instant>,
    /// Participants who came back (or gave up) since the kill.
    settled: AtomicUsize,
    settled_notify: Notify,
    attempts: AtomicUsize,
    refusals: super::Errors,
    stop: CancellationToken,
    /// Why sockets dropped (expected for the participants the kill took down).
    drops: super::Errors,
}

/// How one participant fared.
#[derive(Debug, Default, Clone)]
struct Fate {
    /// Socket drops.
    drops: usize,
    /// Each time it came back: since the kill (or the drop, before any kill), and whether with the same id.
    backs: Vec<(Duration, bool)>,
    /// It gave up (deadline, or a refusal that is final).
    gave_up: Option<String>,
}

/// What a participant needs to come back.
struct Seat {
    entry: usize,
    /// Whether the kill should take this participant down (only they count towards "everyone back").
    affected: bool,
    pid: String,
    resume_token: String,
    last_seq: u64,
}

enum Attempt {
    Back(Box<Ws>, bool),
    /// Worth another try (the meeting is moving, the node is gone).
    Retry(String),
    /// Final (e.g. the resume token is refused).
    Fatal(String),
}

/// One attempt to come back: the first node from `start` that takes a TCP connection (a node
/// that refuses it is dead: a load balancer's health check would skip it too) gets the resume.
async fn attempt(ctx: &Ctx, seat: &Seat, start: usize) -> Attempt {
    let n = ctx.nets.len();
    let mut last = String::from("no_node");
    for k in 0..n {
        let net = &ctx.nets[(start + k) % n];
        let mut ws = match net.connect(&format!("/v1/signal?token={}", seat.resume_token)).await {
            Ok(ws) => ws,
            Err(e) => {
                let key = e.key();
                if key == "connect_refused" {
                    last = key;
                    continue;
                }
                // An HTTP refusal other than 503 (the meeting is moving, the node is busy) is final.
                return if key.starts_with("http_") && !key.starts_with("http_503") {
                    Attempt::Fatal(key)
                } else {
                    Attempt::Retry(key)
                };
            }
        };
        let frame = json!({"type": "resume", "resume_token": seat.resume_token, "last_seq": seat.last_seq});
        if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
            return Attempt::Retry("send_failed".into());
        }
        let first = tokio::time::timeout(OP_TIMEOUT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                    Some(Ok(Message::Close(f))) => {
                        return Err(format!("closed_{}", f.map(|f| u16::from(f.code)).unwrap_or(0)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Err("connection_lost".to_string()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("resume_timeout".into()));
        let t = match first {
            Ok(t) => t,
            Err(key) => return Attempt::Retry(key),
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        return match v["type"].as_str() {
            Some("resumed") => Attempt::Back(Box::new(ws), v["participant_id"].as_str() == Some(seat.pid.as_str())),
            Some("error") if v["code"] == "unavailable" => Attempt::Retry("error_unavailable".into()),
            Some("error") => Attempt::Fatal(format!("error_{}", v["code"].as_str().unwrap_or("unknown"))),
            _ => Attempt::Fatal(format!("unexpected_{}", v["type"].as_str().unwrap_or("frame"))),
        };
    }
    Attempt::Retry(last)
}

/// Runs one participant: reads everything (keeping `last_seq` and the resume token current),
/// pings, and when the socket drops comes back by resume through the nodes, pausing between
/// attempts as `ctx.backoff` says, until the deadline.
async fn participant(mut ws: Ws, mut seat: Seat, ctx: Arc<Ctx>) -> Fate {
    let mut fate = Fate::default();
    let period = Duration::from_secs(20);
    let offset = Duration::from_millis(rand::thread_rng().gen_range(0..20_000));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    loop {
        // Connected.
        let dropped = loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        ctx.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                        let t = t.as_str();
                        let s = seq_of(t);
                        if s > 0 {
                            seat.last_seq = s;
                        }
                        if t.contains("\"resume_token\"") {
                            if let Ok(v) = serde_json::from_str::<Value>(t) {
                                if let Some(r) = v["resume_token"].as_str() {
                                    seat.resume_token = r.to_string();
                                }
                            }
                        }
                        if t.contains("\"type\":\"error\"") {
                            ctx.counters.errors.add(super::error_code(t));
                        }
                    }
                    Some(Ok(Message::Close(f))) => break format!("closed_{}", f.map(|f| u16::from(f.code)).unwrap_or(0)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break "connection_lost".to_string(),
                },
                _ = ping.tick() => {
                    if ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await.is_err() {
                        break "send_failed".to_string();
                    }
                }
                _ = ctx.stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
                    return fate;
                }
            }
        };
        fate.drops += 1;
        ctx.drops.add(dropped);
        // The dead socket's descriptor goes now: the new attempts need descriptors too.
        drop(ws);
        // Come back.
        let dropped_at = Instant::now();
        let deadline = ctx.back_by.get().copied().unwrap_or(dropped_at + Duration::from_secs(60));
        let mut n = 0usize;
        let outcome = loop {
            let pause = ctx.backoff.pause(n);
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = ctx.stop.cancelled() => return fate,
                }
            }
            if Instant::now() >= deadline {
                break Err("not_back_by_deadline".to_string());
            }
            ctx.attempts.fetch_add(1, Ordering::Relaxed);
            match attempt(&ctx, &seat, seat.entry + n).await {
                Attempt::Back(new_ws, kept) => break Ok((*new_ws, kept)),
                Attempt::Retry(key) => ctx.refusals.add(key),
                Attempt::Fatal(key) => {
                    ctx.refusals.add(key.clone());
                    break Err(key);
                }
            }
            n += 1;
        };
        let since = ctx.killed_at.get().copied().unwrap_or(dropped_at);
        if seat.affected && fate.drops == 1 {
            ctx.settled.fetch_add(1, Ordering::SeqCst);
            ctx.settled_notify.notify_waiters();
        }
        match outcome {
            Ok((new_ws, kept)) => {
                fate.backs.push((since.elapsed(), kept));
                ws = new_ws;
            }
            Err(why) => {
                fate.gave_up = Some(why);
                ctx.stop.cancelled().await;
                return fate;
            }
        }
    }
}

/// Runs `cluster` against the nodes of `t`; kills one of them.
pub async fn run(t: &ClusterTarget, p: &ClusterParams) -> anyhow::Result<ClusterReport> {
    anyhow::ensure!(t.nodes.len() >= 2, "the cluster scenario needs at least two nodes");
    anyhow::ensure!(p.meetings >= 1 && p.participants >= p.meetings, "at least one participant per meeting");
    let n_nodes = t.nodes.len();
    let source_ips = p.source_ips.unwrap_or_else(|| Net::auto_source_ips(p.participants * 2));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let run = run_id();
    let ids: Vec<String> = (0..p.meetings).map(|m| format!("cl{run}-{m}")).collect();
    let per = p.participants.div_ceil(p.meetings);
    create_meetings(&t.target(0), &ids, per + 5).await?;
    let minter = Minter::new(&t.program_id, &t.secret);
    // Participant i: meeting i % M, its j-th member (j = i / M; 0 is the facilitator), entering
    // through node (m + j) % nodes, so each meeting is reached through every node.
    let who = |i: usize| (i % p.meetings, i / p.meetings);
    let entry = |i: usize| {
        let (m, j) = who(i);
        (m + j) % n_nodes
    };
    let ctx = Arc::new(Ctx {
        nets: t.nodes.iter().map(|n| Net::new(n.addr, source_ips)).collect(),
        backoff: p.backoff,
        counters: Counters::default(),
        killed_at: OnceLock::new(),
        back_by: OnceLock::new(),
        settled: AtomicUsize::new(0),
        settled_notify: Notify::new(),
        attempts: AtomicUsize::new(0),
        refusals: super::Errors::default(),
        stop: CancellationToken::new(),
        drops: super::Errors::default(),
    });

    let cpu = |pid: Option<u32>| pid.and_then(procfs::sample);
    let nodes_before: Vec<_> = t.nodes.iter().map(|n| cpu(n.pid)).collect();
    let gen_before = procfs::self_sample();
    // Joins: the first participant of every meeting (they place the meetings), then the rest.
    let sem = Arc::new(Semaphore::new(p.join_concurrency.max(1)));
    let started = Instant::now();
    let mut joined: Vec<Option<Joined>> = (0..p.participants).map(|_| None).collect();
    for phase in [0..p.meetings, p.meetings..p.participants] {
        let mut tasks = Vec::with_capacity(phase.len());
        for i in phase {
            let (m, j) = who(i);
            let role = if j == 0 { "facilitator" } else { "member" };
            let token = minter.mint(&ids[m], &format!("c{run}-{i}"), role, 3600)?;
            let (ctx, sem) = (ctx.clone(), sem.clone());
            let e = entry(i);
            tasks.push((
                i,
                tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    join_haven(&ctx.nets[e], &token).await
                }),
            ));
        }
        for (i, task) in tasks {
            match task.await? {
                Ok(j) => joined[i] = Some(j),
                Err(key) => ctx.counters.errors.add(format!("join_{key}")),
            }
        }
    }
    let join_wall = started.elapsed().as_secs_f64();
    let nodes_joined: Vec<_> = t.nodes.iter().map(|n| cpu(n.pid)).collect();
    let gen_joined = procfs::self_sample();
    let owner = owners(t, &ids).await?;
    let (mut first, mut direct, mut proxied) = (Hist::default(), Hist::default(), Hist::default());
    for (i, j) in joined.iter().enumerate() {
        let Some(j) = j else { continue };
        let (m, _) = who(i);
        if i < p.meetings {
            first.record(j.latency);
        } else if owner[m] == Some(entry(i)) {
            direct.record(j.latency);
        } else {
            proxied.record(j.latency);
        }
    }
    let ok = joined.iter().filter(|j| j.is_some()).count();

    // The victim: the node owning the most meetings, and whom its death takes down.
    let mut owned = vec![0usize; n_nodes];
    for o in owner.iter().flatten() {
        owned[*o] += 1;
    }
    let victim = (0..n_nodes).max_by_key(|i| (owned[*i], std::cmp::Reverse(*i))).unwrap_or(0);
    let pid = t.nodes[victim].pid.context("the node to kill has no known pid (--target-pids)")?;
    let affected: Vec<bool> =
        (0..p.participants).map(|i| owner[who(i).0] == Some(victim) || entry(i) == victim).collect();

    // Everyone settles in: the last join's events arrive, every snapshot is written.
    let mut tasks = Vec::with_capacity(ok);
    for (i, j) in joined.into_iter().enumerate() {
        let Some(j) = j else { continue };
        let seat = Seat {
            entry: entry(i),
            affected: affected[i],
            pid: j.pid,
            resume_token: j.resume_token,
            last_seq: j.last_seq,
        };
        tasks.push((i, tokio::spawn(participant(j.ws, seat, ctx.clone()))));
    }
    // Probes: one join at a time, through the owner, then through another node, in turn.
    let (mut probe_direct, mut probe_proxied) = (Hist::default(), Hist::default());
    for k in 0..p.probes {
        let m = (k / 2) % p.meetings;
        let Some(o) = owner[m] else { continue };
        let via = if k % 2 == 0 { o } else { (o + 1 + (k / 2) % (n_nodes - 1)) % n_nodes };
        let token = minter.mint(&ids[m], &format!("c{run}-probe{k}"), "member", 3600)?;
        match join_haven(&ctx.nets[via], &token).await {
            Ok(mut j) => {
                if via == o { &mut probe_direct } else { &mut probe_proxied }.record(j.latency);
                let _ = tokio::time::timeout(Duration::from_secs(2), j.ws.close(None)).await;
            }
            Err(key) => ctx.counters.errors.add(format!("probe_{key}")),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    snapshots_written(&http, &t.nodes).await;
    let in_moved = (0..p.participants).filter(|i| owner[who(*i).0] == Some(victim)).count();
    let through = (0..p.participants).filter(|i| owner[who(*i).0] != Some(victim) && entry(*i) == victim).count();
    let expected: usize = tasks.iter().filter(|(i, _)| affected[*i]).count();

    let _ = ctx.back_by.set(Instant::now() + p.back_within);
    let _ = ctx.killed_at.set(Instant::now());
    // SAFETY: kill(2) with SIGKILL on the node process.
    if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
        anyhow::bail!("cannot kill node {victim} (pid {pid}): {}", std::io::Error::last_os_error());
    }
    // Until every affected participant is back or gave up (each settles once; an unexpected drop
    // settles too, so count only up to the deadline and a little beyond).
    let hard_stop = Instant::now() + p.back_within + Duration::from_secs(5);
    loop {
        let n = ctx.settled_notify.notified();
        if ctx.settled.load(Ordering::SeqCst) >= expected || Instant::now() >= hard_stop {
            break;
        }
        let _ = tokio::time::timeout_at(hard_stop.into(), n).await;
    }
    let recovery_wall = ctx.killed_at.get().map(|k| k.elapsed().as_secs_f64()).unwrap_or(0.0);
    let nodes_back: Vec<_> = t.nodes.iter().map(|n| cpu(n.pid)).collect();
    let gen_back = procfs::self_sample();
    // A moment for drops that should not happen to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut meetings_after = vec![None; n_nodes];
    for (k, n) in t.nodes.iter().enumerate() {
        if k != victim {
            meetings_after[k] = readyz(&http, n.addr).await.and_then(|r| r["cluster"]["owned_meetings"].as_u64());
        }
    }
    ctx.stop.cancel();
    let (mut back, mut back_moved, mut back_through) = (Hist::default(), Hist::default(), Hist::default());
    let (mut kept, mut new_seat, mut not_back, mut unexpected) = (0, 0, 0, 0);
    let mut first_back: Option<Duration> = None;
    for (i, task) in tasks {
        let fate = task.await?;
        if !affected[i] {
            unexpected += usize::from(fate.drops > 0);
            continue;
        }
        match fate.backs.first() {
            Some((d, same)) => {
                back.record(*d);
                if owner[who(i).0] == Some(victim) {
                    back_moved.record(*d);
                    first_back = Some(first_back.map_or(*d, |f| f.min(*d)));
                } else {
                    back_through.record(*d);
                }
                if *same {
                    kept += 1;
                } else {
                    new_seat += 1;
                }
            }
            None => not_back += 1,
        }
    }
    let join = JoinRoutes {
        attempted: p.participants,
        ok,
        failed: p.participants - ok,
        wall_s: join_wall,
        first: first.summary(),
        direct: direct.summary(),
        proxied: proxied.summary(),
        probe_direct: probe_direct.summary(),
        probe_proxied: probe_proxied.summary(),
    };
    let mut nodes = Vec::with_capacity(n_nodes);
    for (k, n) in t.nodes.iter().enumerate() {
        nodes.push(NodeFigures {
            url: format!("http://{}", n.addr),
            pid: n.pid,
            meetings_before: owned[k],
            entered: (0..p.participants).filter(|i| entry(*i) == k).count(),
            killed: k == victim,
            meetings_after: meetings_after[k],
            cpu_join_s: nodes_before[k].zip(nodes_joined[k]).map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
            cpu_recovery_s: nodes_joined[k]
                .zip(nodes_back[k])
                .filter(|_| k != victim)
                .map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
            rss_joined_kib: nodes_joined[k].map(|s| s.rss_kib),
        });
    }
    let errors = ctx.counters.errors.snapshot();
    let affected_n = in_moved + through;
    Ok(ClusterReport {
        scenario: "cluster",
        server: t.description.clone(),
        participants: p.participants,
        meetings: p.meetings,
        nodes,
        join,
        killed_node: victim,
        meetings_moved: owned[victim],
        in_moved_meetings: in_moved,
        through_killed_node: through,
        affected: affected_n,
        kept_seat: kept,
        kept_seat_pct: if affected_n > 0 { kept as f64 * 100.0 / affected_n as f64 } else { 0.0 },
        new_seat,
        not_back: not_back + (affected_n - expected),
        back: back.summary(),
        back_moved: back_moved.summary(),
        back_through_killed: back_through.summary(),
        first_back_ms: first_back.map(|d| d.as_secs_f64() * 1000.0),
        backoff: p.backoff.describe(),
        resume_attempts: ctx.attempts.load(Ordering::Relaxed) as u64,
        resume_refusals: ctx.refusals.snapshot(),
        unexpected_drops: unexpected,
        drops: ctx.drops.snapshot(),
        generator_cpu_join_s: gen_before.zip(gen_joined).map(|(b, a)| a.cpu_seconds - b.cpu_seconds).unwrap_or(0.0),
        generator_cpu_recovery_s: gen_joined.zip(gen_back).map(|(b, a)| a.cpu_seconds - b.cpu_seconds).unwrap_or(0.0),
        recovery_wall_s: recovery_wall,
        errors_total: errors.values().sum(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_client_backoff_goes_at_once_then_waits_longer() {
        let b = Backoff::WebClient;
        assert_eq!(b.pause(0), Duration::ZERO);
        let p1 = b.pause(1);
        assert!(p1 >= Duration::from_millis(1000) && p1 <= Duration::from_millis(1300), "{p1:?}");
        let late = b.pause(40);
        assert!(late >= Duration::from_secs(10) && late <= Duration::from_secs(13), "{late:?}");
        assert_eq!(Backoff::Fixed(Duration::from_millis(250)).pause(3), Duration::from_millis(250));
    }
}
