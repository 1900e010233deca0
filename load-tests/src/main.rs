//! `haven-load`: load scenarios for Haven. See load-tests/README.md.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use haven_load::launch::{self, Pinning};
use haven_load::report::{self, Comparison, Machine, Output};
use haven_load::scenarios::cluster::{self, Backoff, ClusterParams, ClusterTarget};
use haven_load::scenarios::rooms::{self, RoomsParams};
use haven_load::scenarios::storms::{self, JoinStormParams, ResumeStormParams};
use haven_load::{target, Target, TargetKind};
use std::path::PathBuf;
use std::process::ExitCode;

/// Load scenarios for the Haven signaling server.
///
/// By default each scenario starts the release binary (target/release/haven) itself, pinned to
/// core 0 with the load generator on core 1, with a config file and data dir in a temp dir.
/// `--target` runs against a server that is already running instead.
#[derive(Parser, Debug)]
#[command(name = "haven-load", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// A running Haven server (http://HOST:PORT) instead of starting one.
    #[arg(long, global = true)]
    target: Option<String>,
    /// Several nodes of one running cluster (http://HOST:PORT,http://HOST:PORT,...), for the
    /// `cluster` scenario instead of starting nodes (with --api-key, --program-secret,
    /// --target-pids, --redis-url and --cluster-name).
    #[arg(long, global = true, value_delimiter = ',')]
    targets: Vec<String>,
    /// The process ids of the --targets nodes, in the same order (the scenario kills one).
    #[arg(long, global = true, value_delimiter = ',')]
    target_pids: Vec<u32>,
    /// The --targets cluster's Redis (default: HAVEN_TEST_REDIS or redis://127.0.0.1:6379/).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// The --targets cluster's `cluster.name` (its Redis key prefix).
    #[arg(long, global = true)]
    cluster_name: Option<String>,
    /// The API key of a program on --target.
    #[arg(long, global = true)]
    api_key: Option<String>,
    /// That program's HS256 join-token secret.
    #[arg(long, global = true)]
    program_secret: Option<String>,
    /// That program's id (`iss` of join tokens).
    #[arg(long, global = true, default_value = "load")]
    program_id: String,
    /// The --target server's process id, for its RSS and CPU time from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// The Haven binary to start (default: target/release/haven beside this binary, or in the workspace).
    #[arg(long, global = true)]
    haven_bin: Option<PathBuf>,
    /// Do not pin the server and the generator to separate cores.
    #[arg(long, global = true)]
    no_pin: bool,
    /// Loopback source addresses for client sockets (127.0.0.1..=N); default by connection count.
    #[arg(long, global = true)]
    source_ips: Option<u32>,
    /// Print JSON instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// Also write the JSON to this file (the table still goes to stdout).
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// R meetings of P participants: join, hold, hands, mutes, floor, chat; fan-out latency, RSS and CPU per participant.
    Rooms(RoomsArgs),
    /// N joins as fast as possible (or at --rate): joins per second and join latency.
    JoinStorm(JoinStormArgs),
    /// N connected participants drop at once and resume with their resume tokens: who kept their seat.
    ResumeStorm(ResumeStormArgs),
    /// One speaker and L listeners (str0m media clients): forwarded packets per second, loss,
    /// and the server's CPU seconds per million forwarded packets.
    Audio(AudioArgs),
    /// M meetings of P end at once, without and then with a webhook endpoint: what the outbox
    /// costs the end, and how fast `attendance.finalized` reaches the endpoint.
    Webhooks(WebhooksArgs),
    /// Nodes of one cluster (Redis, PostgreSQL): N participants join M meetings through all of
    /// them, the node owning the most meetings is killed (SIGKILL), and everyone it took down
    /// comes back by resume through a live node: how fast, and with their seats?
    Cluster(ClusterArgs),
    /// The reference broadcast server (started by `rooms --reference`).
    #[command(hide = true)]
    ReferenceServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(Args, Debug)]
struct AudioArgs {
    /// Listeners.
    #[arg(long, default_value_t = 50)]
    listeners: usize,
    /// Seconds measured once media reaches everyone.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Listeners joining at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Packets the speaker sends back to back every 20 ms (1: a voice; more: packets that arrive
    /// together, as a video frame's do).
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// Meetings, each with its own speaker, the listeners spread over them (with `--no-pin` and
    /// two engines, a meeting per engine).
    #[arg(long, default_value_t = 1)]
    meetings: usize,
    /// Listeners per meeting that also publish a microphone track and stay silent, as most
    /// members of a real group do: every listener's session then holds that many more outgoing
    /// streams (Haven only).
    #[arg(long, default_value_t = 0)]
    publishing: usize,
    /// Also run the same speaker and listeners against a reference SFU: `janus` (VideoRoom,
    /// started by the harness; skipped with a message when not installed).
    #[arg(long)]
    reference: Option<String>,
}

#[derive(Args, Debug)]
struct WebhooksArgs {
    /// Meetings ending at once.
    #[arg(long, default_value_t = 20)]
    meetings: usize,
    /// Participants per meeting.
    #[arg(long, default_value_t = 20)]
    participants: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 50)]
    join_concurrency: usize,
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// Participants, spread over the meetings and, in turn, over the nodes.
    #[arg(long, default_value_t = 10_000)]
    participants: usize,
    /// Meetings.
    #[arg(long, default_value_t = 500)]
    meetings: usize,
    /// Nodes the harness starts (ignored with --targets).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 200)]
    join_concurrency: usize,
    /// Pause between attempts to come back, ms; 0: as the web client (at once, then 1, 2, 4, 7,
    /// 10 s, with jitter).
    #[arg(long, default_value_t = 0)]
    retry_ms: u64,
    /// Joins one at a time once everyone is in (then a polite leave), alternately through the
    /// owner and through another node: join latency without queueing.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Seconds after the kill a participant keeps trying to come back.
    #[arg(long, default_value_t = 60)]
    back_within: u64,
    /// PostgreSQL admin URL for the fresh database (default: HAVEN_TEST_PG or
    /// postgres://postgres@127.0.0.1:5432/test).
    #[arg(long)]
    pg_admin: Option<String>,
}

#[derive(Args, Debug)]
struct RoomsArgs {
    /// Meetings.
    #[arg(long, default_value_t = 500)]
    rooms: usize,
    /// Participants per meeting (the first is the facilitator).
    #[arg(long, default_value_t = 20)]
    participants: usize,
    /// Joins in flight at once while filling the meetings.
    #[arg(long, default_value_t = 200)]
    join_concurrency: usize,
    /// Seconds everyone stays idle before the idle RSS is read.
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// Seconds of activity.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Hand, mute and floor events per participant per minute.
    #[arg(long, default_value_t = 1.0)]
    events_per_min: f64,
    /// Chat messages per participant per minute.
    #[arg(long, default_value_t = 0.2)]
    chat_per_min: f64,
    /// Share of the non-chat events that are mute toggles.
    #[arg(long, default_value_t = 0.2)]
    mute_share: f64,
    /// Every n-th non-chat event is a floor event (next_speaker / yield_floor); 0 for none.
    #[arg(long, default_value_t = 10)]
    floor_every: u64,
    /// Closed loop (hands only): each meeting's next event goes as soon as the last reached everyone.
    #[arg(long)]
    saturate: bool,
    /// Also run the same clients against the reference broadcast server and report the ratios.
    #[arg(long)]
    reference: bool,
    /// With --reference: this many Haven-then-reference pairs, alternating, each with fresh
    /// servers; the ratios are reported per pair and as medians (one closed-loop pair on a small
    /// VM moves by ±20 % from run to run, a median of several does not).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Args, Debug)]
struct JoinStormArgs {
    #[arg(long, default_value_t = 1000)]
    joins: usize,
    /// Participants per meeting.
    #[arg(long, default_value_t = 20)]
    per_meeting: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Joins started per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

#[derive(Args, Debug)]
struct ResumeStormArgs {
    #[arg(long, default_value_t = 1000)]
    participants: usize,
    #[arg(long, default_value_t = 20)]
    per_meeting: usize,
    #[arg(long, default_value_t = 200)]
    join_concurrency: usize,
    /// Milliseconds between the drop and the resumes.
    #[arg(long, default_value_t = 100)]
    reconnect_delay_ms: u64,
}

fn haven_bin(g: &Global) -> PathBuf {
    if let Some(b) = &g.haven_bin {
        return b.clone();
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let beside = dir.join("haven");
            if beside.exists() && dir.ends_with("release") {
                return beside;
            }
        }
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/haven"))
}

/// The server to load: the one given, or a release binary started now.
async fn haven_target(g: &Global, pin: &Pinning) -> anyhow::Result<(Target, Option<launch::Launched>)> {
    if let Some(url) = &g.target {
        let target = Target {
            kind: TargetKind::Haven,
            addr: target::parse_addr(url)?,
            program_id: g.program_id.clone(),
            api_key: g.api_key.clone().context("--target needs --api-key")?,
            secret: g.program_secret.clone().context("--target needs --program-secret")?,
            server_pid: g.server_pid,
            description: format!("running server at {url}"),
        };
        return Ok((target, None));
    }
    let l = launch::spawn_haven(&haven_bin(g), pin.server_core).await?;
    Ok((l.target.clone(), Some(l)))
}

async fn stop(l: Option<launch::Launched>) {
    if let Some(l) = l {
        l.stop().await;
    }
}

fn rooms_params(a: &RoomsArgs, g: &Global) -> RoomsParams {
    RoomsParams {
        rooms: a.rooms,
        participants: a.participants,
        join_concurrency: a.join_concurrency,
        idle_secs: a.idle_secs,
        duration_secs: a.duration,
        events_per_min: a.events_per_min,
        chat_per_min: a.chat_per_min,
        mute_share: a.mute_share,
        floor_every: a.floor_every,
        saturate: a.saturate,
        source_ips: g.source_ips,
    }
}

/// The cluster to load: the --targets nodes, or nodes started now.
async fn cluster_target(
    g: &Global,
    a: &ClusterArgs,
    pin: &Pinning,
) -> anyhow::Result<(ClusterTarget, Option<cluster::LaunchedCluster>)> {
    let (pg, redis) = cluster::default_services();
    if !g.targets.is_empty() {
        let nodes = g
            .targets
            .iter()
            .enumerate()
            .map(|(i, url)| Ok(cluster::Node { addr: target::parse_addr(url)?, pid: g.target_pids.get(i).copied() }))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let target = ClusterTarget {
            description: format!("running cluster at {}", g.targets.join(", ")),
            nodes,
            program_id: g.program_id.clone(),
            api_key: g.api_key.clone().context("--targets needs --api-key")?,
            secret: g.program_secret.clone().context("--targets needs --program-secret")?,
            redis_url: g.redis_url.clone().unwrap_or(redis),
            name: g.cluster_name.clone().context("--targets needs --cluster-name (its Redis key prefix)")?,
        };
        return Ok((target, None));
    }
    let admin = a.pg_admin.clone().unwrap_or(pg);
    let l = cluster::spawn_cluster(&haven_bin(g), a.nodes, pin.server_core, &admin, &redis).await?;
    Ok((l.target.clone(), Some(l)))
}

async fn run(cli: Cli, pin: Pinning) -> anyhow::Result<Output> {
    let g = &cli.global;
    if !g.targets.is_empty() && !matches!(cli.command, Command::Cluster(_)) {
        anyhow::bail!("--targets is for the cluster scenario; use --target for one server");
    }
    match &cli.command {
        Command::Cluster(a) => {
            let p = ClusterParams {
                participants: a.participants,
                meetings: a.meetings,
                join_concurrency: a.join_concurrency,
                backoff: if a.retry_ms == 0 {
                    Backoff::WebClient
                } else {
                    Backoff::Fixed(std::time::Duration::from_millis(a.retry_ms))
                },
                back_within: std::time::Duration::from_secs(a.back_within),
                probes: a.probes,
                source_ips: g.source_ips,
            };
            let (target, launched) = cluster_target(g, a, &pin).await?;
            let r = cluster::run(&target, &p).await;
            if let Some(l) = launched {
                l.stop().await;
            }
            Ok(Output::Cluster(Box::new(r?)))
        }
        Command::Rooms(a) => {
            let p = rooms_params(a, g);
            let haven = || async {
                let (target, launched) = haven_target(g, &pin).await?;
                let r = rooms::run(&target, &p).await;
                stop(launched).await;
                r
            };
            if !a.reference {
                return Ok(Output::Rooms(Box::new(haven().await?)));
            }
            let mut pairs = Vec::new();
            for _ in 0..a.rounds.max(1) {
                let h = haven().await?;
                let l = launch::spawn_reference(&std::env::current_exe()?, pin.server_core).await?;
                let reference = rooms::run(&l.target, &p).await;
                l.stop().await;
                pairs.push((h, reference?));
            }
            Ok(Output::Compare(Box::new(Comparison::of_rounds(pairs)?)))
        }
        Command::JoinStorm(a) => {
            let p = JoinStormParams {
                joins: a.joins,
                per_meeting: a.per_meeting,
                concurrency: a.concurrency,
                rate: a.rate,
                source_ips: g.source_ips,
            };
            let (target, launched) = haven_target(g, &pin).await?;
            let r = storms::join_storm(&target, &p).await;
            stop(launched).await;
            Ok(Output::JoinStorm(r?))
        }
        Command::ResumeStorm(a) => {
            let p = ResumeStormParams {
                participants: a.participants,
                per_meeting: a.per_meeting,
                join_concurrency: a.join_concurrency,
                reconnect_delay_ms: a.reconnect_delay_ms,
                source_ips: g.source_ips,
            };
            let (target, launched) = haven_target(g, &pin).await?;
            let r = storms::resume_storm(&target, &p).await;
            stop(launched).await;
            Ok(Output::ResumeStorm(r?))
        }
        Command::Audio(a) => {
            // The Janus reference runs one room.
            anyhow::ensure!(a.reference.is_none() || a.meetings <= 1, "--reference runs one meeting: drop --meetings");
            anyhow::ensure!(
                a.reference.is_none() || a.publishing == 0,
                "--reference runs one voice: drop --publishing"
            );
            let p = haven_load::scenarios::audio::AudioParams {
                listeners: a.listeners,
                duration: std::time::Duration::from_secs(a.duration),
                concurrency: a.concurrency,
                burst: a.burst,
                meetings: a.meetings,
                publishing: a.publishing,
            };
            let (target, launched) = haven_target(g, &pin).await?;
            let r = haven_load::scenarios::audio::run(&target, &p).await;
            stop(launched).await;
            let mut r = r?;
            match a.reference.as_deref() {
                None => {}
                Some("janus") => match haven_load::scenarios::janus::unavailable() {
                    Some(why) => r.reference_skipped = Some(why),
                    None => {
                        let janus = haven_load::scenarios::janus::start(pin.server_core).await?;
                        let j = haven_load::scenarios::janus::run(&janus, &p).await?;
                        r.haven_over_reference = r
                            .received_per_server_core_second
                            .zip(j.received_per_server_core_second)
                            .map(|(h, j)| h / j);
                        r.reference = Some(Box::new(j));
                    }
                },
                Some(other) => anyhow::bail!("unknown reference `{other}` (known: janus)"),
            }
            Ok(Output::Audio(r))
        }
        Command::Webhooks(a) => {
            let p = haven_load::scenarios::webhooks::WebhooksParams {
                meetings: a.meetings,
                participants: a.participants,
                join_concurrency: a.join_concurrency,
            };
            let (target, launched) = haven_target(g, &pin).await?;
            let r = haven_load::scenarios::webhooks::run(&target, &p).await;
            stop(launched).await;
            Ok(Output::Webhooks(r?))
        }
        Command::ReferenceServer { .. } => unreachable!("handled in main"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ReferenceServer { listen } = &cli.command {
        {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            return rt.block_on(async {
                let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("reference-server: cannot listen on {listen}: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let addr = listener.local_addr().expect("bound address");
                println!("{} ws://{addr}", haven_load::reference::BANNER);
                haven_load::reference::serve(listener).await;
                ExitCode::SUCCESS
            });
        }
    }
    // Pin only when this run starts the server itself (then both sides are ours).
    let pin = Pinning::auto(!cli.global.no_pin && cli.global.target.is_none() && cli.global.targets.is_empty());
    let pinning = if let Some(core) = pin.generator_core {
        match launch::pin_current_thread(core) {
            Ok(()) => pin.describe(),
            Err(e) => format!("pinning failed ({e}); not pinned"),
        }
    } else {
        pin.describe()
    };
    let nofile = haven_load::net::raise_nofile(200_000);
    if nofile < 20_000 {
        eprintln!("haven-load: open-file limit is {nofile}; large scenarios may fail");
    }
    // One generator core: a current-thread runtime; otherwise a multi-threaded one.
    let rt = if pin.generator_core.is_some() {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("tokio runtime");
    let json = cli.global.json;
    let json_out = cli.global.json_out.clone();
    let machine = Machine::describe(pinning);
    match rt.block_on(run(cli, pin)) {
        Ok(out) => {
            if let Some(path) = json_out {
                if let Err(e) = std::fs::write(&path, report::json(&machine, &out)) {
                    eprintln!("haven-load: cannot write {}: {e}", path.display());
                }
            }
            if json {
                println!("{}", report::json(&machine, &out));
            } else {
                print!("{}", report::human(&machine, &out));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("haven-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
