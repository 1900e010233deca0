//! Starting servers: the Haven release binary (pinned to a core, many open files, a config file
//! written to a temp dir), the reference server (this binary's hidden `reference-server`
//! subcommand), or either one in-process (the smoke tests).

use crate::target::{Target, TargetKind};
use anyhow::Context;
use rand::Rng;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The program the harness configures on a server it starts.
pub const PROGRAM_ID: &str = "load";

/// Where each side runs.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    /// Core for the server process (`taskset -c`), when pinning.
    pub server_core: Option<usize>,
    /// Core for the load generator (sched_setaffinity), when pinning.
    pub generator_core: Option<usize>,
}

impl Pinning {
    /// Server on core 0 and generator on core 1 when the machine has at least two; else none.
    pub fn auto(enabled: bool) -> Pinning {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if enabled && cores >= 2 {
            Pinning { server_core: Some(0), generator_core: Some(1) }
        } else {
            Pinning { server_core: None, generator_core: None }
        }
    }

    pub fn describe(&self) -> String {
        match (self.server_core, self.generator_core) {
            (Some(s), Some(g)) => {
                format!("server pinned to core {s} (taskset -c {s}), load generator to core {g} (sched_setaffinity)")
            }
            _ => "not pinned (fewer than two cores, or --no-pin)".into(),
        }
    }
}

/// Pins the calling thread (and the threads it starts later) to `core`.
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// A fresh API key and HS256 secret (48 characters) for the load program.
pub fn fresh_credentials() -> (String, String) {
    (format!("hk_load_{}", random_token(32)), random_token(48))
}

/// A server process the harness started; stopped (SIGKILL) on [`Launched::stop`] or drop.
pub struct Launched {
    pub target: Target,
    child: Child,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Launched {
    /// Stops the server: SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// The configuration file for a server the harness starts: one HS256 program, limits opened up
/// (capacity, message rate, chat rate, connection count) so the server, not a limit, is measured.
pub fn config_toml(api_key: &str, secret: &str) -> String {
    format!(
        r#"# Written by haven-load for one run.
listen = "127.0.0.1:0"

[[programs]]
id = "{PROGRAM_ID}"
name = "Load test program"
token_alg = "HS256"
token_key = "{secret}"
api_key_sha256 = "{hash}"

[limits]
capacity = 500
max_capacity = 10000
messages_per_second = 100000
max_connections = 1000000
chat_burst = 1000000
chat_refill_ms = 1
# Every generated client shares one address: no per-address limits.
upgrade_burst_per_address = 0

[webhooks]
# The `webhooks` scenario's receiver runs in the load generator, on loopback.
allow_http_loopback = true
"#,
        hash = haven::auth::hash_api_key(api_key)
    )
}

/// The open-file limit a started server gets: 200,000 where this process may raise its hard
/// limit that far (`prlimit` needs CAP_SYS_RESOURCE for more than the hard limit), otherwise the
/// hard limit.
pub fn server_nofile() -> u64 {
    crate::net::raise_nofile(200_000);
    rlimit::Resource::NOFILE.get().map(|(_, hard)| hard.min(200_000)).unwrap_or(1024)
}

fn wrap(pin: Option<usize>, nofile: u64, program: &Path) -> Command {
    let mut cmd = if let Some(core) = pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core.to_string());
        c.arg("prlimit").arg(format!("--nofile={nofile}:{nofile}")).arg("--");
        c.arg(program);
        c
    } else {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={nofile}:{nofile}")).arg("--").arg(program);
        c
    };
    cmd.kill_on_drop(true);
    cmd
}

async fn read_banner(child: &mut Child, prefix: &str) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return crate::target::parse_addr(rest.trim());
            }
        }
        anyhow::bail!("the server exited before printing `{prefix}`")
    })
    .await
    .context("the server did not start within 60 s")??;
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(addr)
}

/// Starts the Haven binary `bin` with a fresh config and data dir: `haven --config cfg.toml
/// --data-dir DIR serve --listen 127.0.0.1:0`, under `taskset -c CORE` and `prlimit --nofile`.
pub async fn spawn_haven(bin: &Path, pin: Option<usize>) -> anyhow::Result<Launched> {
    anyhow::ensure!(bin.exists(), "{} not found; build it with `cargo build --release --bin haven`", bin.display());
    let dir = tempfile::tempdir()?;
    let (api_key, secret) = fresh_credentials();
    let cfg = dir.path().join("haven-load.toml");
    std::fs::write(&cfg, config_toml(&api_key, &secret))?;
    let log = dir.path().join("server.log");
    let nofile = server_nofile();
    let mut cmd = wrap(pin, nofile, bin);
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    let mut child = cmd.spawn().context("cannot start the server (are taskset and prlimit installed?)")?;
    let addr = read_banner(&mut child, "Haven is running at").await?;
    let pid = child.id();
    let description = format!(
        "{} (release binary){}, RUST_LOG=warn, nofile {nofile}",
        bin.display(),
        pin.map(|c| format!(", pinned to core {c}")).unwrap_or_default()
    );
    let target = Target {
        kind: TargetKind::Haven,
        addr,
        program_id: PROGRAM_ID.into(),
        api_key,
        secret,
        server_pid: pid,
        description,
    };
    Ok(Launched { target, child, _dir: dir, log })
}

/// Starts the reference server as a separate process: `exe reference-server` (`exe` is the
/// haven-load binary).
pub async fn spawn_reference(exe: &Path, pin: Option<usize>) -> anyhow::Result<Launched> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("reference.log");
    let mut cmd = wrap(pin, server_nofile(), exe);
    cmd.arg("reference-server")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    let mut child = cmd.spawn().context("cannot start the reference server")?;
    let addr = read_banner(&mut child, crate::reference::BANNER).await?;
    let pid = child.id();
    let target = Target {
        kind: TargetKind::Reference,
        addr,
        program_id: String::new(),
        api_key: String::new(),
        secret: String::new(),
        server_pid: pid,
        description: format!(
            "reference broadcast server (haven-load reference-server){}",
            pin.map(|c| format!(", pinned to core {c}")).unwrap_or_default()
        ),
    };
    Ok(Launched { target, child, _dir: dir, log })
}

/// A Haven server in this process (smoke tests): `haven::Server::start` on port 0 with one HS256
/// program and the same opened-up limits as [`config_toml`].
pub struct InProcess {
    pub target: Target,
    pub server: haven::Server,
    _dir: tempfile::TempDir,
}

pub async fn in_process_haven() -> anyhow::Result<InProcess> {
    use haven::config::{Config, ProgramConfig, TokenAlg};
    let dir = tempfile::tempdir()?;
    let (api_key, secret) = fresh_credentials();
    let mut config =
        Config { listen: "127.0.0.1:0".parse()?, data_dir: dir.path().to_path_buf(), ..Default::default() };
    config.programs = vec![ProgramConfig {
        id: PROGRAM_ID.into(),
        name: "Load test program".into(),
        token_alg: TokenAlg::HS256,
        token_key: secret.clone().into(),
        api_key_sha256: haven::auth::hash_api_key(&api_key),
        default_credit_policy: None,
        facilitation_earns_credit: true,
        crisis_resources: Vec::new(),
    }];
    config.limits.max_capacity = 10_000;
    config.limits.messages_per_second = 100_000;
    config.limits.max_connections = 1_000_000;
    config.limits.chat_burst = 1_000_000;
    config.limits.chat_refill_ms = 1;
    config.limits.upgrade_burst_per_address = 0;
    config.webhooks.allow_http_loopback = true;
    let server = haven::Server::start(config).await.map_err(|e| anyhow::anyhow!("server start: {e}"))?;
    let target = Target {
        kind: TargetKind::Haven,
        addr: server.addr,
        program_id: PROGRAM_ID.into(),
        api_key,
        secret,
        server_pid: Some(std::process::id()),
        description: "in-process haven::Server (figures include the load generator)".into(),
    };
    Ok(InProcess { target, server, _dir: dir })
}

/// The reference server in this process (smoke tests).
pub async fn in_process_reference() -> anyhow::Result<(Target, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(crate::reference::serve(listener));
    let target = Target {
        kind: TargetKind::Reference,
        addr,
        program_id: String::new(),
        api_key: String::new(),
        secret: String::new(),
        server_pid: Some(std::process::id()),
        description: "in-process reference server".into(),
    };
    Ok((target, task))
}
