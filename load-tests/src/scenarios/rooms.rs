//! `rooms`: R meetings of P participants join, hold, raise and lower hands, toggle mute, take
//! the floor and chat at a set rate. Measures join latency, event fan-out latency (from the
//! sender's write to the last recipient's receipt, per event), message rates, errors, and the
//! server's memory and CPU per participant.
//!
//! Against the reference server the same clients send a small message per event and every other
//! client in the room receives it, measured the same way.

use super::{
    close_all, create_meetings, join_haven, join_reference, ping_period, run_id, spawn_participant, Cmd, Counters,
    FanOut, Matcher, MeetingShared, OP_TIMEOUT,
};
use crate::net::Net;
use crate::procfs::{self, ProcSample};
use crate::stats::{Hist, Summary};
use crate::target::{Target, TargetKind};
use crate::token::Minter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Parameters of the `rooms` scenario.
#[derive(Debug, Clone)]
pub struct RoomsParams {
    pub rooms: usize,
    pub participants: usize,
    /// Joins in flight at once while filling the rooms.
    pub join_concurrency: usize,
    /// Seconds to wait after everyone joined before reading the idle RSS.
    pub idle_secs: f64,
    /// Seconds of activity.
    pub duration_secs: f64,
    /// Hand, mute and floor events per participant per minute (paced mode).
    pub events_per_min: f64,
    /// Chat messages per participant per minute (paced mode).
    pub chat_per_min: f64,
    /// Share of the non-chat events that are mute toggles.
    pub mute_share: f64,
    /// Every n-th non-chat event is a floor event (facilitator `next_speaker`, then the speaker's
    /// `yield_floor`); 0 for none.
    pub floor_every: u64,
    /// Closed loop: each meeting sends its next event as soon as the previous one reached
    /// everyone (hand raise/lower only): the fan-out throughput.
    pub saturate: bool,
    /// Loopback source addresses; `None` picks by connection count.
    pub source_ips: Option<u32>,
}

impl Default for RoomsParams {
    fn default() -> Self {
        RoomsParams {
            rooms: 500,
            participants: 20,
            join_concurrency: 200,
            idle_secs: 5.0,
            duration_secs: 60.0,
            events_per_min: 1.0,
            chat_per_min: 0.2,
            mute_share: 0.2,
            floor_every: 10,
            saturate: false,
            source_ips: None,
        }
    }
}

/// Joins during the fill.
#[derive(Debug, Clone, Serialize)]
pub struct JoinFigures {
    pub attempted: usize,
    pub ok: usize,
    pub failed: usize,
    pub wall_s: f64,
    pub per_s: f64,
    pub latency: Summary,
}

/// Server process figures (from /proc), when its pid is known.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_end_kib: u64,
    pub peak_rss_kib: u64,
    pub threads: u64,
    /// (RSS idle − RSS before) / participants.
    pub rss_per_idle_participant_bytes: f64,
    pub cpu_join_s: f64,
    /// Server CPU during the join phase per join, ms.
    pub cpu_per_join_ms: f64,
    pub cpu_idle_pct: f64,
    pub cpu_active_s: f64,
    /// Share of one core during the active phase.
    pub cpu_active_pct: f64,
    /// Share of the active-phase CPU spent in the kernel (stime).
    pub cpu_active_kernel_share_pct: f64,
    /// Server CPU per participant per second of activity, µs.
    pub cpu_us_per_participant_s: f64,
    /// Server CPU per completed event (all its deliveries), µs.
    pub cpu_us_per_event: f64,
}

/// The load generator's own figures (is it the bottleneck?).
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorFigures {
    pub cpu_active_pct: f64,
    pub rss_kib: u64,
}

/// What `rooms` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsReport {
    pub scenario: &'static str,
    pub server_kind: TargetKind,
    pub server: String,
    pub rooms: usize,
    pub participants_per_room: usize,
    pub participants: usize,
    pub mode: &'static str,
    /// Events per second offered (paced mode).
    pub offered_events_per_s: Option<f64>,
    pub duration_s: f64,
    pub join: JoinFigures,
    /// Per event, the slowest recipient: all event kinds.
    pub fanout: Summary,
    /// Per kind: `hand` (raise/lower → queue_updated), `mute` (participant_updated), `floor`
    /// (floor_changed), `chat`, `relay` (reference).
    pub fanout_by_kind: BTreeMap<String, Summary>,
    /// Every single delivery (not only the slowest).
    pub per_recipient: Summary,
    pub events_completed: u64,
    pub events_timed_out: u64,
    pub events_per_s: f64,
    /// Measured deliveries per second (event × recipient).
    pub deliveries_per_s: f64,
    /// All frames received by the clients per second (including pongs and secondary events).
    pub frames_in_per_s: f64,
    pub frames_out_per_s: f64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub server_proc: Option<ServerFigures>,
    pub generator: GeneratorFigures,
}

struct Member {
    tx: mpsc::Sender<Cmd>,
    pid: String,
    muted: bool,
}

#[derive(Default)]
struct DriverOut {
    all: Hist,
    by_kind: BTreeMap<&'static str, Hist>,
    per_recipient: Hist,
    completed: u64,
    timed_out: u64,
    deliveries: u64,
}

impl DriverOut {
    fn record(&mut self, kind: &'static str, f: Option<FanOut>) {
        match f {
            Some(f) => {
                self.all.record_us(f.max_us);
                self.by_kind.entry(kind).or_default().record_us(f.max_us);
                for us in &f.per_recipient {
                    self.per_recipient.record_us(*us);
                }
                self.deliveries += f.per_recipient.len() as u64;
                self.completed += 1;
            }
            None => self.timed_out += 1,
        }
    }

    fn merge(&mut self, o: DriverOut) {
        self.all.add(&o.all);
        for (k, h) in o.by_kind {
            self.by_kind.entry(k).or_default().add(&h);
        }
        self.per_recipient.add(&o.per_recipient);
        self.completed += o.completed;
        self.timed_out += o.timed_out;
        self.deliveries += o.deliveries;
    }
}

const QUEUE: &str = "\"type\":\"queue_updated\"";
const PUPDATE: &str = "\"type\":\"participant_updated\"";
const FLOOR: &str = "\"type\":\"floor_changed\"";
const CHAT: &str = "\"type\":\"chat\"";

/// One meeting's sequence of events.
struct Driver {
    kind: TargetKind,
    members: Vec<Option<Member>>,
    shared: Arc<MeetingShared>,
    counters: Arc<Counters>,
    /// The speaking queue as the server holds it (indexes, in order of raising).
    queue: Vec<usize>,
    floor: Option<usize>,
    non_chat: u64,
    nonce: u64,
    rotate: usize,
    rng: StdRng,
    out: DriverOut,
    tag: String,
}

impl Driver {
    fn recipients(&self, except: Option<usize>) -> Vec<bool> {
        self.members.iter().enumerate().map(|(i, m)| m.is_some() && Some(i) != except).collect()
    }

    fn present(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|i| self.members[*i].is_some()).collect()
    }

    /// Sends `text` from `from` and waits for the fan-out.
    async fn event(&mut self, kind: &'static str, from: usize, text: String, measure: Matcher, done: Matcher) {
        let except = (self.kind == TargetKind::Reference).then_some(from);
        let recipients = self.recipients(except);
        if !recipients.iter().any(|r| *r) {
            return;
        }
        self.shared.begin(&recipients, measure, done);
        let Some(m) = self.members[from].as_ref() else { return };
        if m.tx.send(Cmd::Send { text, stamp: true }).await.is_err() {
            // The participant's connection is gone; leave them out from now on.
            self.counters.errors.add("participant_gone");
            self.members[from] = None;
            let _ = self.shared.wait(Duration::ZERO).await;
            return;
        }
        let f = self.shared.wait(OP_TIMEOUT).await;
        if f.is_none() {
            self.counters.errors.add("fanout_timeout");
        }
        self.out.record(kind, f);
    }

    fn pick_member(&mut self) -> Option<usize> {
        // Members other than the facilitator (index 0) act; the facilitator runs the floor.
        let ms: Vec<usize> = self.present().into_iter().filter(|i| *i != 0 || self.members.len() == 1).collect();
        if ms.is_empty() {
            return None;
        }
        Some(ms[self.rng.gen_range(0..ms.len())])
    }

    async fn hand(&mut self, who: usize) {
        let pid = self.members[who].as_ref().map(|m| m.pid.clone()).unwrap_or_default();
        if let Some(pos) = self.queue.iter().position(|q| *q == who) {
            self.queue.remove(pos);
            // One frame per recipient: `queue_updated` is the hand's only event.
            let measure = Matcher::without(QUEUE, &pid);
            self.event("hand", who, r#"{"type":"lower_hand"}"#.into(), measure.clone(), measure).await;
        } else {
            self.queue.push(who);
            let measure = Matcher::new(QUEUE, &pid);
            self.event("hand", who, r#"{"type":"raise_hand"}"#.into(), measure.clone(), measure).await;
        }
    }

    async fn mute(&mut self, who: usize) {
        let Some(m) = self.members[who].as_mut() else { return };
        m.muted = !m.muted;
        let (muted, pid) = (m.muted, m.pid.clone());
        let extra = if muted { "\"muted\":true" } else { "\"muted\":false" };
        let text = format!(r#"{{"type":"set_muted","muted":{muted}}}"#);
        let matcher = Matcher::new(PUPDATE, &pid).and(extra);
        self.event("mute", who, text, matcher.clone(), matcher).await;
    }

    /// Yields the floor if someone holds it, else the facilitator calls the next speaker.
    async fn floor(&mut self) -> bool {
        if let Some(holder) = self.floor.take() {
            if self.members[holder].is_some() {
                let m = Matcher::new(FLOOR, "\"floor\":null");
                self.event("floor", holder, r#"{"type":"yield_floor"}"#.into(), m.clone(), m).await;
                return true;
            }
        }
        if self.members[0].is_none() || self.queue.is_empty() {
            return false;
        }
        let head = self.queue.remove(0);
        let pid = self.members[head].as_ref().map(|m| m.pid.clone()).unwrap_or_default();
        self.floor = Some(head);
        let measure = Matcher::new(FLOOR, &pid);
        let done = Matcher::new(PUPDATE, &pid);
        self.event("floor", 0, r#"{"type":"next_speaker"}"#.into(), measure, done).await;
        true
    }

    async fn chat(&mut self) {
        let present = self.present();
        if present.is_empty() {
            return;
        }
        let who = present[self.rng.gen_range(0..present.len())];
        self.nonce += 1;
        let nonce = format!("c{}x{}", self.tag, self.nonce);
        let m = Matcher::new(CHAT, &nonce);
        self.event("chat", who, format!(r#"{{"type":"chat","text":"{nonce}"}}"#), m.clone(), m).await;
    }

    async fn relay(&mut self, who: usize) {
        self.nonce += 1;
        let nonce = format!("r{}x{}", self.tag, self.nonce);
        // About the size of a queue_updated frame.
        let text = format!(r#"{{"n":"{nonce}","pad":"{}"}}"#, "x".repeat(64));
        let m = Matcher::new("", &nonce);
        self.event("relay", who, text, m.clone(), m).await;
    }

    /// One paced tick.
    async fn tick(&mut self, chat_share: f64, mute_share: f64, floor_every: u64) {
        if self.kind == TargetKind::Reference {
            let present = self.present();
            if !present.is_empty() {
                let who = present[self.rng.gen_range(0..present.len())];
                self.relay(who).await;
            }
            return;
        }
        if self.rng.gen_bool(chat_share.clamp(0.0, 1.0)) {
            return self.chat().await;
        }
        self.non_chat += 1;
        if floor_every > 0 && self.non_chat.is_multiple_of(floor_every) && self.floor().await {
            return;
        }
        let Some(who) = self.pick_member() else { return };
        if self.rng.gen_bool(mute_share.clamp(0.0, 1.0)) {
            self.mute(who).await;
        } else {
            self.hand(who).await;
        }
    }

    /// One closed-loop step: the next member raises, then lowers, a hand (or relays twice).
    async fn saturate_step(&mut self) {
        let ms: Vec<usize> = self.present().into_iter().filter(|i| *i != 0 || self.members.len() == 1).collect();
        if ms.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        self.rotate = (self.rotate + 1) % ms.len();
        let who = ms[self.rotate];
        if self.kind == TargetKind::Reference {
            self.relay(who).await;
            self.relay(who).await;
        } else {
            self.hand(who).await;
            self.hand(who).await;
        }
    }
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(procfs::sample)
}

/// Runs the scenario against `target`.
pub async fn run(target: &Target, p: &RoomsParams) -> anyhow::Result<RoomsReport> {
    anyhow::ensure!(p.rooms > 0 && p.participants > 0, "rooms and participants must be positive");
    let total = p.rooms * p.participants;
    let net = Arc::new(Net::new(target.addr, p.source_ips.unwrap_or_else(|| Net::auto_source_ips(total))));
    let run = run_id();
    let ids: Vec<String> = (0..p.rooms).map(|r| format!("ld{run}-{r}")).collect();
    create_meetings(target, &ids, p.participants + 5).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let counters = Arc::new(Counters::default());
    let shared: Vec<Arc<MeetingShared>> = (0..p.rooms).map(|_| Arc::default()).collect();

    // Let the server settle after creating meetings, then the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sample(target.server_pid);

    // Fill the rooms.
    let sem = Arc::new(Semaphore::new(p.join_concurrency.max(1)));
    let ping = ping_period(target);
    let join_start = Instant::now();
    let mut joins = Vec::with_capacity(total);
    for (r, id) in ids.iter().enumerate() {
        for i in 0..p.participants {
            let token = if target.kind == TargetKind::Haven {
                let role = if i == 0 { "facilitator" } else { "member" };
                minter.mint(id, &format!("m{run}-{r}-{i}"), role, 4 * 3600)?
            } else {
                String::new()
            };
            let (net, sem, id, kind) = (net.clone(), sem.clone(), id.clone(), target.kind);
            let (meeting, counters) = (shared[r].clone(), counters.clone());
            joins.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let res = match kind {
                    TargetKind::Haven => join_haven(&net, &token).await,
                    TargetKind::Reference => join_reference(&net, &id, i).await,
                };
                res.map(|j| {
                    let latency = j.latency;
                    let (pid, muted) = (j.pid.clone(), j.muted);
                    let tx = spawn_participant(i, j, meeting, counters, ping);
                    (r, i, Member { tx, pid, muted }, latency)
                })
            }));
        }
    }
    let mut members: Vec<Vec<Option<Member>>> =
        (0..p.rooms).map(|_| (0..p.participants).map(|_| None).collect()).collect();
    let mut join_hist = Hist::default();
    let mut joined = 0usize;
    for j in joins {
        match j.await? {
            Ok((r, i, m, lat)) => {
                join_hist.record(lat);
                members[r][i] = Some(m);
                joined += 1;
            }
            Err(key) => counters.errors.add(key),
        }
    }
    let join_wall = join_start.elapsed().as_secs_f64();
    let after_join = sample(target.server_pid);

    // Idle: everyone connected, nothing happening (pings only).
    tokio::time::sleep(Duration::from_secs_f64(p.idle_secs)).await;
    let idle = sample(target.server_pid);

    // Activity.
    let rate_per_room = p.participants as f64 * (p.events_per_min + p.chat_per_min) / 60.0;
    let chat_share = if p.events_per_min + p.chat_per_min > 0.0 {
        p.chat_per_min / (p.events_per_min + p.chat_per_min)
    } else {
        0.0
    };
    let gen_before = procfs::self_sample();
    let (in0, out0) = (counters.frames_in.load(Ordering::Relaxed), counters.frames_out.load(Ordering::Relaxed));
    let active_start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(p.duration_secs);
    let mut drivers = Vec::new();
    let all_senders: Vec<mpsc::Sender<Cmd>> = members.iter().flatten().flatten().map(|m| m.tx.clone()).collect();
    for (r, ms) in members.into_iter().enumerate() {
        let mut d = Driver {
            kind: target.kind,
            members: ms,
            shared: shared[r].clone(),
            counters: counters.clone(),
            queue: Vec::new(),
            floor: None,
            non_chat: 0,
            nonce: 0,
            rotate: r,
            rng: StdRng::from_entropy(),
            out: DriverOut::default(),
            tag: format!("{run}{r}"),
        };
        let (saturate, mute_share, floor_every) = (p.saturate, p.mute_share, p.floor_every);
        drivers.push(tokio::spawn(async move {
            if saturate {
                while tokio::time::Instant::now() < deadline {
                    d.saturate_step().await;
                }
            } else if rate_per_room > 0.0 {
                let period = Duration::from_secs_f64(1.0 / rate_per_room);
                let offset = period.mul_f64(d.rng.gen::<f64>());
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = tick.tick() => {}
                    }
                    d.tick(chat_share, mute_share, floor_every).await;
                }
            } else {
                tokio::time::sleep_until(deadline).await;
            }
            d.out
        }));
    }
    let mut out = DriverOut::default();
    for d in drivers {
        out.merge(d.await?);
    }
    let active = active_start.elapsed().as_secs_f64();
    let (in1, out1) = (counters.frames_in.load(Ordering::Relaxed), counters.frames_out.load(Ordering::Relaxed));
    let gen_after = procfs::self_sample();
    let end = sample(target.server_pid);
    close_all(all_senders).await;

    let server_proc = match (before, after_join, idle, end) {
        (Some(b), Some(j), Some(i), Some(e)) => Some(ServerFigures {
            rss_before_kib: b.rss_kib,
            rss_idle_kib: i.rss_kib,
            rss_end_kib: e.rss_kib,
            peak_rss_kib: e.hwm_kib,
            threads: e.threads,
            rss_per_idle_participant_bytes: (i.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / joined.max(1) as f64,
            cpu_join_s: j.cpu_seconds - b.cpu_seconds,
            cpu_per_join_ms: (j.cpu_seconds - b.cpu_seconds) * 1000.0 / joined.max(1) as f64,
            cpu_idle_pct: (i.cpu_seconds - j.cpu_seconds) * 100.0 / p.idle_secs.max(1e-9),
            cpu_active_s: e.cpu_seconds - i.cpu_seconds,
            cpu_active_pct: (e.cpu_seconds - i.cpu_seconds) * 100.0 / active,
            cpu_active_kernel_share_pct: (e.cpu_system_seconds - i.cpu_system_seconds) * 100.0
                / (e.cpu_seconds - i.cpu_seconds).max(1e-9),
            cpu_us_per_participant_s: (e.cpu_seconds - i.cpu_seconds) * 1e6 / active / joined.max(1) as f64,
            cpu_us_per_event: (e.cpu_seconds - i.cpu_seconds) * 1e6 / out.completed.max(1) as f64,
        }),
        _ => None,
    };
    let generator = GeneratorFigures {
        cpu_active_pct: match (gen_before, gen_after) {
            (Some(b), Some(a)) => (a.cpu_seconds - b.cpu_seconds) * 100.0 / active,
            _ => 0.0,
        },
        rss_kib: gen_after.map(|g| g.rss_kib).unwrap_or(0),
    };
    let errors = counters.errors.snapshot();
    Ok(RoomsReport {
        scenario: "rooms",
        server_kind: target.kind,
        server: target.description.clone(),
        rooms: p.rooms,
        participants_per_room: p.participants,
        participants: joined,
        mode: if p.saturate { "saturate" } else { "paced" },
        offered_events_per_s: (!p.saturate).then_some(rate_per_room * p.rooms as f64),
        duration_s: active,
        join: JoinFigures {
            attempted: total,
            ok: joined,
            failed: total - joined,
            wall_s: join_wall,
            per_s: joined as f64 / join_wall.max(1e-9),
            latency: join_hist.summary(),
        },
        fanout: out.all.summary(),
        fanout_by_kind: out.by_kind.iter().map(|(k, h)| (k.to_string(), h.summary())).collect(),
        per_recipient: out.per_recipient.summary(),
        events_completed: out.completed,
        events_timed_out: out.timed_out,
        events_per_s: out.completed as f64 / active,
        deliveries_per_s: out.deliveries as f64 / active,
        frames_in_per_s: (in1 - in0) as f64 / active,
        frames_out_per_s: (out1 - out0) as f64 / active,
        errors_total: errors.values().sum(),
        errors,
        server_proc,
        generator,
    })
}
