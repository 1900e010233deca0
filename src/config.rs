//! Configuration: defaults, then a TOML file (`--config`), then `HAVEN_*` environment variables,
//! then command-line flags. Secrets (token keys) are `SecretString`s so they never print.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The algorithm a program signs its join tokens with. One per program: a token in any other
/// algorithm is refused, which rules out HS/RS key confusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlg {
    HS256,
    EdDSA,
    RS256,
}

impl TokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::HS256 => "HS256",
            TokenAlg::EdDSA => "EdDSA",
            TokenAlg::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<TokenAlg> {
        match s {
            "HS256" => Some(TokenAlg::HS256),
            "EdDSA" => Some(TokenAlg::EdDSA),
            "RS256" => Some(TokenAlg::RS256),
            _ => None,
        }
    }
}

/// A program (treatment centre, recovery organisation, court programme) that issues join tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// The program id; join tokens carry it as `iss`.
    pub id: String,
    /// A human name (shown to operators only).
    pub name: String,
    /// `HS256`, `EdDSA` or `RS256`.
    pub token_alg: TokenAlg,
    /// The HS256 shared secret, or the Ed25519/RSA public key in PEM.
    #[serde(serialize_with = "ser_secret")]
    pub token_key: SecretString,
    /// SHA-256 (hex) of the program's API key; the key itself is never stored.
    /// `haven api-key` makes a key and prints its hash.
    pub api_key_sha256: String,
    /// The credit policy of this program's meetings when a meeting does not set one.
    #[serde(default)]
    pub default_credit_policy: Option<crate::attendance::credit::CreditPolicy>,
}

fn ser_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

/// Limits, all configurable (defaults from DESIGN.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message the protocol accepts, in bytes.
    pub max_message_bytes: usize,
    /// Largest `media_offer`/`media_answer` (SDP grows with the tracks of a meeting).
    pub max_sdp_bytes: usize,
    /// Frames above this are not even read: the connection is closed (bounds memory).
    pub max_frame_bytes: usize,
    /// WebSocket read buffer per connection, bytes.
    pub ws_read_buffer_bytes: usize,
    /// WebSocket write buffer per connection, bytes (writes beyond it wait).
    pub ws_write_buffer_bytes: usize,
    /// Outbound messages queued per connection before the client counts as too slow.
    pub outbound_queue: usize,
    /// Default meeting capacity (a meeting can set its own, up to `max_capacity`).
    pub capacity: usize,
    /// Largest capacity a program may give a meeting.
    pub max_capacity: usize,
    /// Seconds a dropped participant keeps their seat, hand and floor.
    pub reconnect_grace_seconds: u64,
    /// Presence heartbeat, seconds: bounds what a crash can lose.
    pub heartbeat_seconds: u64,
    /// Chat message length, characters.
    pub chat_max_chars: usize,
    /// Chat messages a participant may send in a burst, and one more every `chat_refill_ms`.
    pub chat_burst: u32,
    pub chat_refill_ms: u64,
    /// Frames per second a connection may send (burst of twice as many).
    pub messages_per_second: u32,
    /// Seconds a new connection has to send `join` or `resume`.
    pub join_timeout_seconds: u64,
    /// Seconds without any frame from the client before the connection counts as dead.
    pub idle_timeout_seconds: u64,
    /// Events kept per participant for replay on resume.
    pub replay_events: usize,
    /// WebSocket connections the server accepts at once (503 beyond).
    pub max_connections: usize,
    /// Leeway for token `exp`/`nbf`, seconds.
    pub token_leeway_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024,
            max_sdp_bytes: 60 * 1024,
            max_frame_bytes: 64 * 1024,
            // Grows for larger messages; most signaling frames are far smaller.
            ws_read_buffer_bytes: 2 * 1024,
            ws_write_buffer_bytes: 4 * 1024,
            outbound_queue: 256,
            capacity: 50,
            max_capacity: 500,
            reconnect_grace_seconds: 30,
            heartbeat_seconds: 10,
            chat_max_chars: 2000,
            chat_burst: 5,
            chat_refill_ms: 2000,
            messages_per_second: 20,
            join_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            replay_events: 128,
            max_connections: 20_000,
            token_leeway_seconds: 30,
        }
    }
}

/// The media plane (SFU).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Whether the SFU runs.
    pub enabled: bool,
    /// UDP port of the first media engine; engine i uses `udp_port + i` (0: any free ports).
    pub udp_port: u16,
    /// Media engines, each a thread with its own UDP socket; a meeting lives on one. 0: one per
    /// available core.
    pub engines: usize,
    /// The address browsers are told to send media to (behind NAT: the public address). Default:
    /// the listen address, or 127.0.0.1 when listening on all interfaces.
    pub advertise_ip: Option<std::net::IpAddr>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig { enabled: true, udp_port: 0, engines: 0, advertise_ip: None }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder for the SQLite database and generated keys.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; `sqlite://...` for another SQLite file. Default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The address people reach the server at, for printed links (default `http://<listen>`).
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// Programs. When none are configured and none are stored, a demo program is created.
    pub programs: Vec<ProgramConfig>,
    pub limits: Limits,
    /// Attendance older than this many days is purged (hourly). `None` keeps it forever.
    pub attendance_retention_days: Option<u32>,
    pub media: MediaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./haven-data"),
            database_url: None,
            public_url: None,
            log_format: LogFormat::Human,
            programs: Vec::new(),
            limits: Limits::default(),
            attendance_retention_days: None,
            media: MediaConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `HAVEN_*` variables (`HAVEN_LIMITS__CAPACITY=80`),
    /// then `DATABASE_URL`.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(Env::prefixed("HAVEN_").split("__").ignore(&["config"]));
        fig = fig.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()));
        fig.extract().map_err(Box::new)
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) if !u.is_empty() => u.clone(),
            _ => format!("sqlite://{}?mode=rwc", self.data_dir.join("haven.db").display()),
        }
    }

    /// Where people reach this server.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }
}

#[cfg(test)]
// figment's `Jail` fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_then_environment_then_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "haven.toml",
                r#"
                listen = "0.0.0.0:9000"
                [[programs]]
                id = "p1"
                name = "P one"
                token_alg = "HS256"
                token_key = "0123456789abcdef0123456789abcdef"
                api_key_sha256 = "00"
                [limits]
                capacity = 12
                "#,
            )?;
            jail.set_env("HAVEN_LIMITS__CAPACITY", "30");
            jail.set_env("DATABASE_URL", "postgres://x@y/z");
            let c = Config::load(Some(std::path::Path::new("haven.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.limits.capacity, 30, "environment overrides the file");
            assert_eq!(c.limits.outbound_queue, 256, "defaults fill the rest");
            assert_eq!(c.database_url(), "postgres://x@y/z");
            assert_eq!(c.programs[0].token_key.expose_secret(), "0123456789abcdef0123456789abcdef");
            assert!(!format!("{:?}", c.programs[0]).contains("0123456789abcdef"), "secrets never print");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("haven.toml", "lissen = \"0.0.0.0:1\"")?;
            assert!(Config::load(Some(std::path::Path::new("haven.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn example_configuration_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/haven.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.programs[0].token_alg, TokenAlg::EdDSA);
    }
}
