//! The `haven` command line: `serve` (the default), `token`, `api-key`, `schema`.

use crate::app::{open_store, Server, DEMO_ID};
use crate::auth::join_token::{self, TokenRole};
use crate::auth::{self, Programs};
use crate::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Haven: moderated online peer-support meetings.
///
/// With no command, `haven` runs the server (`haven serve`). On a first start with no programs
/// configured it creates a demo program and meeting and prints links to try them.
#[derive(Debug, Parser)]
#[command(name = "haven", version)]
pub struct Cli {
    /// TOML configuration file (see README); `HAVEN_*` variables override it.
    #[arg(long, global = true, env = "HAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory for the SQLite database [default: ./haven-data].
    #[arg(long, global = true, env = "HAVEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server (the default).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "HAVEN_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Mint a join token for a program's member (prints the token).
    Token {
        /// Program id (the token's `iss`).
        #[arg(long, default_value = DEMO_ID)]
        program: String,
        /// Meeting id.
        #[arg(long, default_value = DEMO_ID)]
        meeting: String,
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
    },
    /// Generate a program API key and print it with the hash to put in the configuration.
    ApiKey,
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
    /// Make a new certificate signing key; older keys keep verifying (restart the server to use it).
    RotateKey,
    /// Print the protocol's JSON Schema (the content of proto/schema.json).
    Schema,
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // A client sending malformed media makes the media library warn per packet: budgeted.
    let budget = tracing_subscriber::filter::filter_fn(crate::signal::log_budget::allow);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
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
        None => serve(&cli, None).await,
        Some(Cmd::Serve { listen }) => serve(&cli, *listen).await,
        Some(Cmd::Token { program, meeting, member, role, ttl, signing_key }) => {
            token(&cli, program, meeting, member, *role, ttl.as_secs(), signing_key.as_deref()).await
        }
        Some(Cmd::ApiKey) => {
            let key = auth::new_api_key();
            println!("api key:        {key}\napi_key_sha256: {}", auth::hash_api_key(&key));
            println!("Give the key to the program; put only the hash in the configuration.");
            Ok(())
        }
        Some(Cmd::Export { program, from, to, format, out }) => {
            export(&cli, program, from.as_deref(), to.as_deref(), *format, out.as_deref()).await
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

async fn serve(cli: &Cli, listen: Option<SocketAddr>) -> Result<(), String> {
    let mut config = load_config(cli)?;
    if let Some(l) = listen {
        config.listen = l;
    }
    init_logging(config.log_format);
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
    let app = &server.app;
    let base = app.config.public_url(server.addr);
    println!("Haven is running at {base}");
    let Some(demo_program) = app.programs.get(DEMO_ID) else {
        println!("Mint join tokens with `haven token --program ID --meeting ID --member REF`.");
        return;
    };
    let ws = base.replacen("http", "ws", 1);
    let mint = |member: &str, role| {
        let claims = join_token::claims_for(DEMO_ID, DEMO_ID, member, role, 12 * 3600);
        join_token::mint(demo_program, &claims, None).ok()
    };
    if let (Some(fac), Some(mem)) =
        (mint("demo-facilitator", TokenRole::Facilitator), mint("demo-member-1", TokenRole::Member))
    {
        println!();
        println!("Demo meeting `demo` (join tokens valid for 12 hours):");
        println!("  facilitator link: {base}/#token={fac}");
        println!("  member link:      {base}/#token={mem}");
        println!();
        println!("  WebSocket clients: connect to {ws}/v1/signal?token=<token> and send {{\"type\":\"join\",\"display_name\":\"Sam\"}}");
        println!("  More members: haven token --member <any-reference>");
    }
    if let Some(demo) = &server.demo {
        println!();
        println!("Demo program API key (shown only now; only its hash is stored):");
        println!("  {}", demo.api_key);
        println!("  curl -H 'Authorization: Bearer {}' {base}/v1/meetings", demo.api_key);
    }
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

async fn token(
    cli: &Cli,
    program: &str,
    meeting: &str,
    member: &str,
    role: TokenRole,
    ttl: u64,
    signing_key: Option<&std::path::Path>,
) -> Result<(), String> {
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    let programs =
        Programs::from_rows(&store.programs().await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let p = programs.get(program).ok_or_else(|| format!("unknown program `{program}`"))?;
    let pem = match signing_key {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?),
        None => None,
    };
    let claims = join_token::claims_for(program, meeting, member, role, ttl);
    let token = join_token::mint(p, &claims, pem.as_deref()).map_err(|e| e.to_string())?;
    println!("{token}");
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
    let parse = |s: Option<&str>, end: bool, default: i64| match s {
        Some(s) => attendance::parse_time(s, end).ok_or_else(|| format!("`{s}`: use YYYY-MM-DD or RFC 3339")),
        None => Ok(default),
    };
    let f = Filter { meeting: None, member: None, from: parse(from, false, 0)?, to: parse(to, true, i64::MAX)? };
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

async fn rotate_key(cli: &Cli) -> Result<(), String> {
    let config = load_config(cli)?;
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    let key = crate::attendance::certificate::generate_key(chrono::Utc::now().timestamp_millis());
    store.rotate_key(&key).await.map_err(|e| e.to_string())?;
    println!("new signing key {}; earlier keys stay published and keep verifying", key.kid);
    Ok(())
}
