//! The `haven` command line: `serve` (the default), `token`, `api-key`, `export`, `report`, `schema`.

use crate::app::{open_store, Server, DEMO_ID};
use crate::auth::join_token::{self, TokenRole};
use crate::auth::{self, Programs};
use crate::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Haven: moderated online peer-support meetings.
///
/// With no command, `haven` runs the server (`haven serve`, whose flags work at the top level
/// too: `haven --listen 0.0.0.0:8080`). On a first start with no programs configured it creates
/// a demo program and meeting and prints links to try them.
#[derive(Debug, Parser)]
#[command(name = "haven", version)]
pub struct Cli {
    /// TOML configuration file (see README); `HAVEN_*` variables override it.
    #[arg(long, global = true, env = "HAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory for the SQLite database [default: ./haven-data].
    #[arg(long, global = true, env = "HAVEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `serve`'s flags, for running the server without naming the command.
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// The server's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HAVEN_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a join link for a program's member (`--raw`: the token alone).
    Token {
        /// Program id (the token's `iss`).
        #[arg(long, default_value = DEMO_ID)]
        program: String,
        /// Meeting id (the program's own), `<owner>/<id>` for a meeting another program shares
        /// with it, or `series:<id>` for a series' link [default for the demo program: its
        /// current demo meeting].
        #[arg(long)]
        meeting: Option<String>,
        /// The program's reference for the member (the token's `sub`; never shown to others).
        #[arg(long)]
        member: String,
        #[arg(long, value_enum, default_value = "member")]
        role: TokenRole,
        /// How long the token is valid, e.g. `2h`, `90m`.
        #[arg(long, default_value = "2h")]
        ttl: humantime::Duration,
        /// Private key (PEM) for programs that sign with EdDSA or RS256; HS256 programs use their stored secret.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// Print the token alone instead of a join link.
        #[arg(long)]
        raw: bool,
    },
    /// Generate a program API key and print it with the hash to put in the configuration.
    /// With `--program`, replace a stored program's key (a lost demo key: `--program demo`).
    ApiKey {
        /// A program stored by an earlier start (not one in the configuration file, whose hash
        /// the file sets): its old key stops working; restart the server to use the new one.
        #[arg(long)]
        program: Option<String>,
    },
    /// Export a program's attendance (the same data as GET /v1/attendance).
    Export {
        #[arg(long)]
        program: String,
        /// From this date (YYYY-MM-DD) or RFC 3339 time, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// To this date (inclusive) or RFC 3339 time (exclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reports for programs: `haven report engagement --program ID --since DATE`.
    Report {
        #[command(subcommand)]
        report: ReportCmd,
    },
    /// Make a new certificate signing key; older keys keep verifying (restart the server to use it).
    RotateKey,
    /// Print the protocol's JSON Schema (the content of proto/schema.json).
    Schema,
}

/// The reports.
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// The aftercare report (the same as GET /v1/members/engagement): per member, meetings
    /// attended and credited since DATE, the last attendance, the current streak of weeks with a
    /// meeting, and who has not been seen for --not-seen-days.
    Engagement {
        #[arg(long)]
        program: String,
        /// From this date (YYYY-MM-DD) or RFC 3339 time, inclusive.
        #[arg(long)]
        since: String,
        /// To this date (inclusive) or RFC 3339 time (exclusive) [default: now].
        #[arg(long)]
        until: Option<String>,
        /// List members not seen for this many days.
        #[arg(long, default_value_t = crate::api::engagement::DEFAULT_NOT_SEEN_DAYS)]
        not_seen_days: u32,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| format!("configuration: {e}"))?;
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

/// Writes log lines naming the cluster node they come from: `node=ID ` before a human line,
/// `"node":"ID",` first in a JSON line (the fmt layer writes each event with one call).
#[derive(Clone)]
struct NodeTagged(Option<Arc<str>>);

struct NodeTaggedWriter(Option<Arc<str>>, std::io::Stderr);

impl std::io::Write for NodeTaggedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(node) = &self.0 {
            let mut line = Vec::with_capacity(buf.len() + node.len() + 12);
            match buf.first() {
                Some(b'{') => {
                    line.extend_from_slice(b"{\"node\":");
                    // The id is configuration, not input; still written as a JSON string.
                    line.extend_from_slice(serde_json::to_string(&**node).unwrap_or_default().as_bytes());
                    line.push(b',');
                    line.extend_from_slice(&buf[1..]);
                }
                _ => {
                    line.extend_from_slice(b"node=");
                    line.extend_from_slice(node.as_bytes());
                    line.push(b' ');
                    line.extend_from_slice(buf);
                }
            }
            self.1.write_all(&line)?;
            return Ok(buf.len());
        }
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NodeTagged {
    type Writer = NodeTaggedWriter;
    fn make_writer(&'a self) -> Self::Writer {
        NodeTaggedWriter(self.0.clone(), std::io::stderr())
    }
}

fn init_logging(format: LogFormat, node: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // A client sending malformed media makes the media library warn per packet: budgeted.
    let budget = tracing_subscriber::filter::filter_fn(crate::signal::log_budget::allow);
    let layer = tracing_subscriber::fmt::layer().with_writer(NodeTagged(node.map(Arc::from)));
    let layer = match format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Human => layer.boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer.with_filter(budget).with_filter(filter)).try_init();
}

/// Runs the command line; the exit code says whether it worked.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => serve(&cli, &cli.serve).await,
        Some(Cmd::Serve(args)) => serve(&cli, args).await,
        Some(Cmd::Token { program, meeting, member, role, ttl, signing_key, raw }) => {
            let t = TokenRequest {
                program,
                meeting: meeting.as_deref(),
                member,
                role: *role,
                ttl: ttl.as_secs(),
                signing_key: signing_key.as_deref(),
                raw: *raw,
            };
            token(&cli, t).await
        }
        Some(Cmd::ApiKey { program }) => api_key(&cli, program.as_deref()).await,
        Some(Cmd::Export { program, from, to, format, out }) => {
            export(&cli, program, from.as_deref(), to.as_deref(), *format, out.as_deref()).await
        }
        Some(Cmd::Report { report: ReportCmd::Engagement { program, since, until, not_seen_days, format, out } }) => {
            let r = EngagementRequest {
                program,
                since,
                until: until.as_deref(),
                not_seen_days: *not_seen_days,
                format: *format,
                out: out.as_deref(),
            };
            engagement(&cli, r).await
        }
        Some(Cmd::RotateKey) => rotate_key(&cli).await,
        Some(Cmd::Schema) => {
            print!("{}", crate::protocol::schema::protocol_schema_text());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haven: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), String> {
    let mut config = load_config(cli)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    // A cluster node's log lines name it: its id is settled here, before the first line.
    if config.redis_url.as_deref().is_some_and(|u| !u.is_empty()) && config.cluster.node_id.is_none() {
        config.cluster.node_id = Some(hex::encode(rand::random::<[u8; 6]>()));
    }
    let node = config.redis_url.as_ref().and(config.cluster.node_id.clone());
    init_logging(config.log_format, node.as_deref());
    // Every participant holds a socket: take the open-file limit as high as the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let server = Server::start(config).await.map_err(|e| e.to_string())?;
    print_welcome(&server);
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn print_welcome(server: &Server) {
    print!("{}", welcome_text(server));
}

/// What the server prints at start: where it runs and, for the demo program, links to a meeting
/// that can be joined now (never to one that has ended).
pub fn welcome_text(server: &Server) -> String {
    use std::fmt::Write;
    let app = &server.app;
    let base = &app.public_url;
    let mut out = String::new();
    let _ = writeln!(out, "Haven is running at {base}");
    let (Some(demo_program), Some(meeting)) = (app.programs.get(DEMO_ID), server.demo_meeting.as_deref()) else {
        let _ = writeln!(out, "Mint join links with `haven token --program ID --meeting ID --member REF`.");
        return out;
    };
    let ws = base.replacen("http", "ws", 1);
    let mint = |member: &str, role| {
        let claims = join_token::claims_for(DEMO_ID, meeting, member, role, 12 * 3600);
        join_token::mint(demo_program, &claims, None).ok()
    };
    if let (Some(fac), Some(mem)) =
        (mint("demo-facilitator", TokenRole::Facilitator), mint("demo-member-1", TokenRole::Member))
    {
        let _ = writeln!(out);
        let _ = writeln!(out, "Demo meeting `{meeting}` (join links valid for 12 hours):");
        let _ = writeln!(out, "  facilitator link: {base}/#token={fac}");
        let _ = writeln!(out, "  member link:      {base}/#token={mem}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  WebSocket clients: connect to {ws}/v1/signal?token=<token> and send {{\"type\":\"join\",\"display_name\":\"Sam\"}}"
        );
        let _ = writeln!(out, "  More members: haven token --member <any-reference>");
        let _ = writeln!(out, "  When this meeting ends, restart Haven for a fresh demo meeting.");
    }
    if let Some(demo) = &server.demo {
        let _ = writeln!(out);
        let _ = writeln!(out, "Demo program API key (shown only now; only its hash is stored):");
        let _ = writeln!(out, "  {}", demo.api_key);
        let _ = writeln!(out, "  curl -H 'Authorization: Bearer {}' {base}/v1/meetings", demo.api_key);
        let _ = writeln!(out, "  Lost it? `haven api-key` makes a new one (see the README).");
    }
    out
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// What `haven token` was asked for.
struct TokenRequest<'a> {
    program: &'a str,
    meeting: Option<&'a str>,
    member: &'a str,
    role: TokenRole,
    ttl: u64,
    signing_key: Option<&'a std::path::Path>,
    raw: bool,
}

async fn token(cli: &Cli, t: TokenRequest<'_>) -> Result<(), String> {
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    let programs =
        Programs::from_rows(&store.programs().await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let p = programs.get(t.program).ok_or_else(|| format!("unknown program `{}`", t.program))?;
    let meeting_id = match t.meeting {
        Some(m) => m.to_string(),
        None if t.program == DEMO_ID => crate::app::joinable_demo_meeting(&store)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the demo meeting has ended; start the server for a fresh one, or give --meeting")?,
        None => return Err("give the meeting with --meeting".into()),
    };
    // A link that cannot work is refused here rather than at the door.
    if let Some(series) = meeting_id.strip_prefix(crate::api::series::SERIES_CLAIM_PREFIX) {
        // A series link: it works for whichever occurrence is open when it is used.
        // The program's own series, by the id it gave it (series ids are per program).
        let s = store.program_series(&p.id, series).await.map_err(|e| e.to_string())?;
        match s {
            Some(s) if s.cancelled_at.is_none() => {}
            Some(_) => return Err(format!("series `{series}` was cancelled")),
            None => return Err(format!("no series `{series}` of program `{}`", p.id)),
        }
    } else {
        // As the server reads the claim: the program's own id, or `<owner>/<id>` for a meeting
        // another program shares with it.
        let meeting = store.meeting_named(&p.id, &meeting_id).await.map_err(|e| e.to_string())?.ok_or_else(|| {
            format!(
                "program `{}` has no meeting `{meeting_id}` (a meeting another program shares with it is named `<owner>/<id>`)",
                p.id
            )
        })?;
        if meeting.ended_at.is_some() {
            return Err(format!("meeting `{meeting_id}` has ended"));
        }
    }
    let pem = match t.signing_key {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?),
        None => None,
    };
    let claims = join_token::claims_for(t.program, &meeting_id, t.member, t.role, t.ttl);
    let token = join_token::mint(p, &claims, pem.as_deref()).map_err(|e| e.to_string())?;
    // Check it as the server will: a private key that is not the program's would sign tokens
    // nobody can use.
    join_token::verify(&programs, &token, config.limits.token_leeway_seconds).map_err(|e| match e {
        join_token::TokenError::BadSignature => {
            format!("the signing key does not match program `{}`'s configured token key", p.id)
        }
        e => format!("the minted token does not verify: {e}"),
    })?;
    if t.raw {
        println!("{token}");
    } else {
        println!("{}/#token={token}", config.public_url(config.listen).trim_end_matches('/'));
    }
    Ok(())
}

async fn export(
    cli: &Cli,
    program: &str,
    from: Option<&str>,
    to: Option<&str>,
    format: ExportFormat,
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    use crate::attendance::{self, Filter};
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    if !store.programs().await.map_err(|e| e.to_string())?.iter().any(|p| p.id == program) {
        return Err(format!("unknown program `{program}`"));
    }
    let parse = |s: Option<&str>, end: bool, default: i64| match s {
        Some(s) => attendance::parse_time(s, end).ok_or_else(|| format!("`{s}`: use YYYY-MM-DD or RFC 3339")),
        None => Ok(default),
    };
    let f = Filter {
        meeting: None,
        member: None,
        series: None,
        from: parse(from, false, 0)?,
        to: parse(to, true, i64::MAX)?,
    };
    let rows = attendance::export(&store, program, &f).await.map_err(|e| e.to_string())?;
    let text = match format {
        ExportFormat::Csv => attendance::to_csv(&rows).map_err(|e| e.to_string())?,
        ExportFormat::Json => serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())? + "\n",
    };
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// What `haven report engagement` was asked for.
struct EngagementRequest<'a> {
    program: &'a str,
    since: &'a str,
    until: Option<&'a str>,
    not_seen_days: u32,
    format: ExportFormat,
    out: Option<&'a std::path::Path>,
}

async fn engagement(cli: &Cli, r: EngagementRequest<'_>) -> Result<(), String> {
    use crate::attendance::engagement;
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    if !store.programs().await.map_err(|e| e.to_string())?.iter().any(|p| p.id == r.program) {
        return Err(format!("unknown program `{}`", r.program));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let w = crate::api::engagement::window(Some(r.since), r.until, Some(r.not_seen_days), now)?;
    let report = engagement::report(&store, r.program, w).await.map_err(|e| e.to_string())?;
    let text = match r.format {
        ExportFormat::Csv => engagement::to_csv(&report).map_err(|e| e.to_string())?,
        ExportFormat::Json => serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n",
    };
    match r.out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

async fn api_key(cli: &Cli, program: Option<&str>) -> Result<(), String> {
    let key = auth::new_api_key();
    let hash = auth::hash_api_key(&key);
    let Some(program) = program else {
        println!("api key:        {key}\napi_key_sha256: {hash}");
        println!("Give the key to the program; put only the hash in the configuration.");
        return Ok(());
    };
    let config = load_config(cli)?;
    if config.programs.iter().any(|p| p.id == program) {
        return Err(format!(
            "program `{program}` is configured in the file: put this hash there as its api_key_sha256\n\
             api key:        {key}\napi_key_sha256: {hash}"
        ));
    }
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    if !store.set_api_key_hash(program, &hash).await.map_err(|e| e.to_string())? {
        return Err(format!("unknown program `{program}`"));
    }
    println!("api key: {key}");
    println!("Program `{program}` now answers to this key only; restart the server to use it.");
    Ok(())
}

async fn rotate_key(cli: &Cli) -> Result<(), String> {
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    let key = crate::attendance::certificate::generate_key(chrono::Utc::now().timestamp_millis());
    store.rotate_key(&key).await.map_err(|e| e.to_string())?;
    println!(
        "new signing key {}; earlier keys stay published and keep verifying; running servers take it within {} seconds",
        key.kid,
        crate::attendance::certificate::RELOAD_EVERY.as_secs()
    );
    Ok(())
}
