//! Output: a human table, or JSON (`--json`) for machines.

use crate::scenarios::rooms::RoomsReport;
use crate::scenarios::storms::{JoinStormReport, ResumeStormReport};
use crate::stats::Summary;
use serde::Serialize;
use std::fmt::Write;

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub date: String,
    pub pinning: String,
}

impl Machine {
    pub fn describe(pinning: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            // Online CPUs of the machine (not of this process, which may be pinned to one).
            // SAFETY: sysconf has no preconditions.
            cpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
            cpu_model,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            pinning,
        }
    }
}

/// Haven against the reference, same clients, same pattern.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub haven: RoomsReport,
    pub reference: RoomsReport,
    /// Haven ÷ reference, completed events per second (fan-out throughput; meaningful with --saturate).
    pub throughput_ratio: f64,
    /// Haven ÷ reference, deliveries per second.
    pub deliveries_ratio: f64,
    /// Haven ÷ reference, fan-out latency p50 and p99 (above 1: Haven is slower).
    pub latency_p50_ratio: f64,
    pub latency_p99_ratio: f64,
    /// With `--rounds N`: every pair's figures, in the order run (the reports above are the
    /// last pair's), and the medians over the pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<Round>,
}

/// One Haven-then-reference pair's ratios.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Round {
    /// Haven ÷ reference, completed events per second.
    pub throughput_ratio: f64,
    /// Haven ÷ reference, deliveries per second.
    pub deliveries_ratio: f64,
    /// Reference ÷ Haven, server CPU per completed event (above 1: Haven spends less), when both
    /// servers' CPU was read.
    pub cpu_per_event_ratio: Option<f64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Round {
    fn of(haven: &RoomsReport, reference: &RoomsReport) -> Round {
        let cpu = |r: &RoomsReport| r.server_proc.as_ref().map(|p| p.cpu_us_per_event).filter(|c| *c > 0.0);
        Round {
            throughput_ratio: ratio(haven.events_per_s, reference.events_per_s),
            deliveries_ratio: ratio(haven.deliveries_per_s, reference.deliveries_per_s),
            cpu_per_event_ratio: cpu(reference).zip(cpu(haven)).map(|(r, h)| r / h),
        }
    }
}

impl Comparison {
    pub fn new(haven: RoomsReport, reference: RoomsReport) -> Comparison {
        let round = Round::of(&haven, &reference);
        Comparison {
            throughput_ratio: round.throughput_ratio,
            deliveries_ratio: round.deliveries_ratio,
            latency_p50_ratio: ratio(haven.fanout.p50_ms, reference.fanout.p50_ms),
            latency_p99_ratio: ratio(haven.fanout.p99_ms, reference.fanout.p99_ms),
            haven,
            reference,
            rounds: Vec::new(),
            median: None,
        }
    }

    /// Several pairs: the last pair's reports and ratios, every pair's ratios, and their
    /// medians (one pair: the same as `new`).
    pub fn of_rounds(pairs: Vec<(RoomsReport, RoomsReport)>) -> anyhow::Result<Comparison> {
        let rounds: Vec<Round> = pairs.iter().map(|(h, r)| Round::of(h, r)).collect();
        let n = rounds.len();
        let Some((haven, reference)) = pairs.into_iter().last() else { anyhow::bail!("no rounds were run") };
        let mut c = Comparison::new(haven, reference);
        if n > 1 {
            let cpu: Vec<f64> = rounds.iter().filter_map(|r| r.cpu_per_event_ratio).collect();
            c.median = Some(Round {
                throughput_ratio: median(rounds.iter().map(|r| r.throughput_ratio).collect()),
                deliveries_ratio: median(rounds.iter().map(|r| r.deliveries_ratio).collect()),
                cpu_per_event_ratio: (!cpu.is_empty()).then(|| median(cpu)),
            });
            c.rounds = rounds;
        }
        Ok(c)
    }
}

/// Everything one invocation prints.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    Rooms(Box<RoomsReport>),
    Compare(Box<Comparison>),
    JoinStorm(JoinStormReport),
    ResumeStorm(ResumeStormReport),
    Audio(crate::scenarios::audio::AudioReport),
    Webhooks(crate::scenarios::webhooks::WebhooksReport),
    Cluster(Box<crate::scenarios::cluster::ClusterReport>),
}

#[derive(Serialize)]
struct Envelope<'a> {
    machine: &'a Machine,
    #[serde(flatten)]
    output: &'a Output,
}

pub fn json(machine: &Machine, output: &Output) -> String {
    serde_json::to_string_pretty(&Envelope { machine, output }).unwrap_or_default()
}

fn row(s: &mut String, k: &str, v: impl std::fmt::Display) {
    let _ = writeln!(s, "  {k:<34} {v}");
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn rooms_table(s: &mut String, r: &RoomsReport) {
    let _ = writeln!(s, "rooms ({:?}, {}): {}", r.server_kind, r.mode, r.server);
    row(s, "meetings x participants", format!("{} x {} ({} joined)", r.rooms, r.participants_per_room, r.participants));
    row(
        s,
        "joins",
        format!("{} ok, {} failed, {:.0}/s over {:.1} s", r.join.ok, r.join.failed, r.join.per_s, r.join.wall_s),
    );
    row(s, "join latency", r.join.latency);
    if let Some(o) = r.offered_events_per_s {
        row(s, "events offered", format!("{o:.1}/s"));
    }
    row(
        s,
        "events completed",
        format!(
            "{} ({:.1}/s over {:.1} s), {} timed out",
            r.events_completed, r.events_per_s, r.duration_s, r.events_timed_out
        ),
    );
    row(s, "fan-out latency (all, max/event)", r.fanout);
    for (k, v) in &r.fanout_by_kind {
        row(s, &format!("  {k}"), v);
    }
    row(s, "per-recipient delivery", r.per_recipient);
    row(
        s,
        "messages",
        format!(
            "{:.0} deliveries/s, {:.0} frames in/s, {:.0} frames out/s",
            r.deliveries_per_s, r.frames_in_per_s, r.frames_out_per_s
        ),
    );
    row(s, "errors", format!("{} {:?}", r.errors_total, r.errors));
    if let Some(p) = &r.server_proc {
        row(
            s,
            "server RSS before / idle / end",
            format!(
                "{} / {} / {} (peak {})",
                kib(p.rss_before_kib),
                kib(p.rss_idle_kib),
                kib(p.rss_end_kib),
                kib(p.peak_rss_kib)
            ),
        );
        row(
            s,
            "server RSS per idle participant",
            format!(
                "{:.0} bytes ({:.1} KiB)",
                p.rss_per_idle_participant_bytes,
                p.rss_per_idle_participant_bytes / 1024.0
            ),
        );
        row(s, "server CPU joining", format!("{:.2} s ({:.3} ms per join)", p.cpu_join_s, p.cpu_per_join_ms));
        row(s, "server CPU idle", format!("{:.1}% of a core", p.cpu_idle_pct));
        row(
            s,
            "server CPU active",
            format!(
                "{:.2} s, {:.1}% of a core ({:.0}% in the kernel), {:.2} µs per participant-second, {:.1} µs per event",
                p.cpu_active_s,
                p.cpu_active_pct,
                p.cpu_active_kernel_share_pct,
                p.cpu_us_per_participant_s,
                p.cpu_us_per_event
            ),
        );
        row(s, "server threads", p.threads);
    } else {
        row(s, "server /proc figures", "n/a (pid unknown; pass --server-pid)");
    }
    row(
        s,
        "load generator CPU active",
        format!("{:.1}% of a core, RSS {}", r.generator.cpu_active_pct, kib(r.generator.rss_kib)),
    );
}

fn summary_ratio(a: &Summary, b: &Summary) -> String {
    if b.count == 0 || a.count == 0 {
        return "n/a".into();
    }
    format!("p50 {:.2}x  p99 {:.2}x", a.p50_ms / b.p50_ms.max(1e-9), a.p99_ms / b.p99_ms.max(1e-9))
}

/// The human table.
pub fn human(machine: &Machine, output: &Output) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "machine: {} CPUs ({}), {} GiB, Linux {}, {}",
        machine.cpus, machine.cpu_model, machine.memory_gib, machine.kernel, machine.date
    );
    let _ = writeln!(s, "pinning: {}", machine.pinning);
    match output {
        Output::Rooms(r) => rooms_table(&mut s, r),
        Output::Compare(c) => {
            rooms_table(&mut s, &c.haven);
            let _ = writeln!(s);
            rooms_table(&mut s, &c.reference);
            let _ = writeln!(s);
            let _ = writeln!(s, "Haven / reference:");
            row(&mut s, "fan-out throughput (events/s)", format!("{:.2}", c.throughput_ratio));
            row(&mut s, "deliveries/s", format!("{:.2}", c.deliveries_ratio));
            row(&mut s, "fan-out latency", summary_ratio(&c.haven.fanout, &c.reference.fanout));
            if let Some(m) = &c.median {
                let cpu = |r: &Round| r.cpu_per_event_ratio.map_or("-".to_string(), |x| format!("{x:.2}"));
                let _ = writeln!(s);
                let _ = writeln!(s, "rounds (Haven / reference; CPU: reference ÷ Haven per event):");
                for (i, r) in c.rounds.iter().enumerate() {
                    row(
                        &mut s,
                        &format!("  pair {}", i + 1),
                        format!(
                            "throughput {:.2}, deliveries {:.2}, CPU per event {}",
                            r.throughput_ratio,
                            r.deliveries_ratio,
                            cpu(r)
                        ),
                    );
                }
                row(
                    &mut s,
                    "median",
                    format!(
                        "throughput {:.2}, deliveries {:.2}, CPU per event {}",
                        m.throughput_ratio,
                        m.deliveries_ratio,
                        cpu(m)
                    ),
                );
            }
        }
        Output::JoinStorm(j) => {
            let _ = writeln!(s, "join-storm: {}", j.server);
            row(
                &mut s,
                "joins",
                format!(
                    "{} attempted in meetings of {}, concurrency {}{}",
                    j.joins,
                    j.per_meeting,
                    j.concurrency,
                    j.offered_rate.map(|r| format!(", offered {r:.0}/s")).unwrap_or_default()
                ),
            );
            row(&mut s, "result", format!("{} ok, {} failed in {:.2} s", j.ok, j.failed, j.wall_s));
            row(&mut s, "joins per second", format!("{:.0}", j.joins_per_s));
            row(&mut s, "join latency", j.latency);
            row(&mut s, "errors", format!("{:?}", j.errors));
            if let (Some(c), Some(pj)) = (j.server_cpu_s, j.server_cpu_per_join_ms) {
                row(&mut s, "server CPU", format!("{c:.2} s ({pj:.3} ms per join)"));
            }
            if let Some(r) = j.server_rss_after_kib {
                row(&mut s, "server RSS after", kib(r));
            }
        }
        Output::ResumeStorm(r) => {
            let _ = writeln!(s, "resume-storm: {}", r.server);
            row(
                &mut s,
                "participants",
                format!(
                    "{} in meetings of {}, {} joined, {} dropped",
                    r.participants, r.per_meeting, r.joined, r.dropped
                ),
            );
            row(&mut s, "kept their seats", format!("{} of {} ({} replayed)", r.kept_seat, r.dropped, r.replayed));
            row(&mut s, "new seat / failed", format!("{} / {}", r.new_seat, r.failed));
            row(&mut s, "resumes", format!("{:.0}/s over {:.2} s", r.resumes_per_s, r.wall_s));
            row(&mut s, "resume latency", r.latency);
            row(&mut s, "errors", format!("{:?}", r.errors));
            if let Some(c) = r.server_cpu_s {
                row(&mut s, "server CPU during resumes", format!("{c:.2} s"));
            }
        }
        Output::Cluster(c) => cluster_table(&mut s, c),
        Output::Audio(a) => {
            let _ = writeln!(s, "audio: one speaker, {} listeners", a.listeners);
            row(&mut s, "listeners receiving", format!("{} of {}", a.listeners_receiving, a.listeners));
            row(&mut s, "window", format!("{:.1} s", a.window_seconds));
            row(
                &mut s,
                "sent / forwarded / received",
                format!("{} / {} / {}", a.packets_sent, a.packets_forwarded, a.packets_received),
            );
            row(&mut s, "forwarded per second", format!("{:.0}", a.forwarded_per_second));
            row(&mut s, "loss", format!("{:.3}%", a.loss * 100.0));
            if let Some(c) = a.server_cpu_seconds_per_million_forwarded {
                row(&mut s, "server CPU per million forwarded", format!("{c:.2} s"));
            }
            if let Some(c) = a.received_per_server_core_second {
                row(&mut s, "received per server core-second", format!("{c:.0}"));
            }
            if let Some(r) = a.server_rss_kib {
                row(&mut s, "server RSS", kib(r));
            }
            row(&mut s, "errors", format!("{:?}", a.errors));
            if let Some(r) = &a.reference {
                let _ = writeln!(s, "reference (janus VideoRoom), same speaker and listeners");
                row(&mut s, "listeners receiving", format!("{} of {}", r.listeners_receiving, r.listeners));
                row(&mut s, "sent / received", format!("{} / {}", r.packets_sent, r.packets_received));
                row(&mut s, "loss", format!("{:.3}%", r.loss * 100.0));
                if let Some(c) = r.received_per_server_core_second {
                    row(&mut s, "received per server core-second", format!("{c:.0}"));
                }
                row(&mut s, "errors", format!("{:?}", r.errors));
            }
            if let Some(why) = &a.reference_skipped {
                row(&mut s, "reference", why.clone());
            }
            if let Some(x) = a.haven_over_reference {
                row(&mut s, "Haven ÷ Janus (per core-second)", format!("{x:.2}"));
            }
        }
        Output::Webhooks(w) => {
            let _ = writeln!(
                s,
                "webhooks: {} meetings of {} end at once: {}",
                w.meetings, w.participants_per_meeting, w.server
            );
            for ph in [&w.without_endpoint, &w.with_endpoint] {
                let _ = writeln!(
                    s,
                    "{}",
                    if ph.endpoint { "with one endpoint (every event)" } else { "without an endpoint" }
                );
                row(
                    &mut s,
                    "end to every result final",
                    format!("{:.1} ms ({} results)", ph.end_to_final_ms, ph.results),
                );
                if let Some(c) = ph.server_cpu_s {
                    row(&mut s, "server CPU", format!("{c:.2} s"));
                }
                if let (Some(d), Some(all)) = (ph.delivery, ph.end_to_all_delivered_ms) {
                    row(&mut s, "end to attendance.finalized", d);
                    row(&mut s, "end to the last one", format!("{all:.1} ms"));
                    row(&mut s, "received, duplicates", format!("{}, {}", ph.events_received, ph.duplicates));
                }
            }
        }
    }
    s
}

fn cluster_table(s: &mut String, c: &crate::scenarios::cluster::ClusterReport) {
    let _ = writeln!(s, "cluster: {}", c.server);
    row(s, "participants x meetings", format!("{} over {} meetings", c.participants, c.meetings));
    for (i, n) in c.nodes.iter().enumerate() {
        row(
            s,
            &format!("node {i}{}", if n.killed { " (killed)" } else { "" }),
            format!(
                "{}: {} meetings before, {} participants entered here{}{}",
                n.url,
                n.meetings_before,
                n.entered,
                n.meetings_after.map(|m| format!(", {m} meetings after")).unwrap_or_default(),
                match (n.cpu_join_s, n.rss_joined_kib) {
                    (Some(j), Some(m)) => format!(
                        "; CPU {j:.1} s joining{}; RSS {} joined",
                        n.cpu_recovery_s.map(|r| format!(", {r:.1} s recovering")).unwrap_or_default(),
                        kib(m)
                    ),
                    _ => String::new(),
                }
            ),
        );
    }
    let j = &c.join;
    row(s, "joins", format!("{} ok, {} failed in {:.1} s", j.ok, j.failed, j.wall_s));
    row(s, "join latency, first (places it)", j.first);
    row(s, "join latency, through the owner", j.direct);
    row(s, "join latency, through another node", j.proxied);
    row(s, "join latency, other / owner", summary_ratio(&j.proxied, &j.direct));
    row(s, "probe joins, through the owner", j.probe_direct);
    row(s, "probe joins, through another node", j.probe_proxied);
    row(s, "probe joins, other / owner", summary_ratio(&j.probe_proxied, &j.probe_direct));
    row(
        s,
        "taken down by the kill",
        format!(
            "{} ({} in the {} moved meetings, {} more whose socket went through the killed node)",
            c.affected, c.in_moved_meetings, c.meetings_moved, c.through_killed_node
        ),
    );
    row(
        s,
        "back with their seats",
        format!(
            "{} of {} ({:.2} %), {} with a new seat, {} not back",
            c.kept_seat, c.affected, c.kept_seat_pct, c.new_seat, c.not_back
        ),
    );
    row(s, "back after the kill, everyone", c.back);
    row(s, "  in the moved meetings", c.back_moved);
    row(s, "  only their entry node died", c.back_through_killed);
    if let Some(f) = c.first_back_ms {
        row(s, "first back in a moved meeting", format!("{f:.0} ms after the kill"));
    }
    row(s, "retrying", c.backoff.clone());
    row(s, "attempts to come back", format!("{} ({:?} failed)", c.resume_attempts, c.resume_refusals));
    row(s, "drops", format!("{:?}; {} unexpected", c.drops, c.unexpected_drops));
    row(s, "errors", format!("{} {:?}", c.errors_total, c.errors));
    row(
        s,
        "load generator CPU",
        format!(
            "{:.1} s joining ({:.1} s wall), {:.1} s recovering ({:.1} s wall)",
            c.generator_cpu_join_s, c.join.wall_s, c.generator_cpu_recovery_s, c.recovery_wall_s
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_rounds_is_the_middle_one_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![0.64, 1.11, 0.84]), 0.84);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 4.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}
