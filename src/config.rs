//! Configuration: defaults, then a TOML file (`--config`), then `HAVEN_*` environment variables,
//! then command-line flags. Secrets (token keys) are `SecretString`s so they never print.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
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
    /// Whether facilitating a meeting earns the facilitator credit like attending it (default:
    /// true, since peer facilitators are often members who need the attendance themselves).
    #[serde(default = "yes")]
    pub facilitation_earns_credit: bool,
    /// Where this program's members can find help outside a meeting (shown on the join page, after
    /// a support request and when a meeting ends). Empty: nothing is shown.
    #[serde(default)]
    pub crisis_resources: Vec<crate::protocol::CrisisResource>,
}

fn yes() -> bool {
    true
}

fn ser_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn ser_opt_secret<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
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
    /// Frames the writer sends with one flush at most, from what is already queued: the frames
    /// one room input causes (a hand raise sends two) go out in one write. 1 flushes every frame.
    pub ws_write_batch_frames: usize,
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
    /// Bytes the local journal may hold that the database has not confirmed (a database outage
    /// fills it). Past it, new joins are refused with `storage_backlog`; people already in
    /// meetings are never dropped and their records are still kept.
    pub journal_max_bytes: u64,
    /// WebSocket upgrades one client address may make in a burst (IPv6: per /64). Members
    /// behind one NAT (a treatment centre, a library) share an address: size it for a whole
    /// group arriving at once. 0 switches the per-address limits off (e.g. behind a proxy).
    pub upgrade_burst_per_address: u32,
    /// Upgrades per minute one address regains after its burst.
    pub upgrades_per_address_per_minute: u32,
    /// Connections from one address that have not yet joined (or resumed), at once.
    pub max_unjoined_per_address: usize,
    /// Frames over the rate limit, since the limit was last reached, after which the connection
    /// counts as a flood and is closed (1008 `flood`).
    pub flood_frames: u32,
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
            ws_write_batch_frames: 64,
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
            journal_max_bytes: 256 * 1024 * 1024,
            upgrade_burst_per_address: 200,
            upgrades_per_address_per_minute: 120,
            max_unjoined_per_address: 100,
            flood_frames: 200,
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
    /// TCP port of the first engine's ICE-TCP listener (RFC 6544 passive candidate, offered beside
    /// the UDP one); engine i uses `tcp_port + i` (0: any free ports).
    pub tcp_port: u16,
    /// Whether ICE over TCP is offered at all.
    pub ice_tcp: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig { enabled: true, udp_port: 0, engines: 0, advertise_ip: None, tcp_port: 0, ice_tcp: true }
    }
}

/// The built-in TURN relay, for members whose network blocks UDP or allows only TCP 443. It
/// relays only to this server's own media addresses (not an open relay), and accepts only the
/// short-lived credentials the server hands each participant over the signaling socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Whether the relay runs (needs `media.enabled`).
    pub enabled: bool,
    /// UDP port (usually 3478; 0: any free port).
    pub udp_port: u16,
    /// TCP port (usually 3478; 0: any free port).
    pub tcp_port: u16,
    /// TLS port (usually 443 or 5349); TURN over TLS runs only with `tls_cert` and `tls_key`.
    pub tls_port: u16,
    /// The certificate chain (PEM) for TURN over TLS; its name should be `tls_host`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The host name browsers use in `turns:` URLs (it must match the certificate). Default: the
    /// advertised IP.
    pub tls_host: Option<String>,
    /// The key the credentials are signed with (TURN REST style). Default: a random key made at
    /// start (enough for one node; give every node the same key behind one name).
    #[serde(serialize_with = "ser_opt_secret")]
    pub secret: Option<SecretString>,
    /// How long a credential is valid, in seconds (the server hands out a fresh one on every
    /// join, resume and ICE restart).
    pub credential_ttl_seconds: u64,
    /// The TURN realm.
    pub realm: String,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: true,
            udp_port: 0,
            tcp_port: 0,
            tls_port: 0,
            tls_cert: None,
            tls_key: None,
            tls_host: None,
            secret: None,
            credential_ttl_seconds: 4 * 3600,
            realm: "haven".into(),
        }
    }
}

/// Recurring series (`/v1/series`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeriesConfig {
    /// How far ahead occurrences are created, in days (checked hourly).
    pub horizon_days: u32,
    /// How many minutes before its start an occurrence opens to the series' join link.
    pub open_minutes_before: u32,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig { horizon_days: 28, open_minutes_before: 15 }
    }
}

/// Cluster mode (with `redis_url` and a PostgreSQL `database_url`): several nodes, one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster (default: random at each start, so a restarted node
    /// is a new node and never mistakes an old lease for its own).
    pub node_id: Option<String>,
    /// Where other nodes reach this node's HTTP and WebSocket endpoints (default: `public_url`).
    pub node_url: Option<String>,
    /// The secret every node of the cluster shares (at least 32 characters; usually from
    /// `HAVEN_CLUSTER__SECRET`): resume tokens minted by one node are accepted by the others,
    /// room snapshots in Redis are sealed with it, and nodes authenticate each other with it.
    #[serde(serialize_with = "ser_opt_secret")]
    pub secret: Option<SecretString>,
    /// Prefix of every Redis key, so several clusters (or test runs) can share one Redis.
    pub name: String,
    /// How long a meeting's lease lasts without renewal, seconds (a dead node's meetings move
    /// after at most this long).
    pub lease_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { node_id: None, node_url: None, secret: None, name: "haven".into(), lease_seconds: 10 }
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
    pub turn: TurnConfig,
    pub series: SeriesConfig,
    /// The key-encryption key (32 bytes, base64) that seals certificate signing keys and HS256
    /// secrets in the database; usually from `HAVEN_KEY_ENCRYPTION_KEY`. Without one (and without
    /// `key_encryption_key_file`) they are stored unencrypted, and the server says so at start.
    #[serde(serialize_with = "ser_opt_secret")]
    pub key_encryption_key: Option<SecretString>,
    /// A file holding the key-encryption key (its first line), e.g. a mounted secret.
    pub key_encryption_key_file: Option<PathBuf>,
    /// Webhook delivery (retries, limits, which addresses endpoints may have).
    pub webhooks: crate::webhooks::WebhookConfig,
    /// `redis://host:port/db`: this node joins a cluster (with PostgreSQL; see `cluster`).
    pub redis_url: Option<String>,
    pub cluster: ClusterConfig,
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
            turn: TurnConfig::default(),
            series: SeriesConfig::default(),
            key_encryption_key: None,
            key_encryption_key_file: None,
            webhooks: Default::default(),
            redis_url: None,
            cluster: ClusterConfig::default(),
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
        // `HAVEN_TEST_*` belong to the test command (scripts/test), not to the server.
        let env = Env::prefixed("HAVEN_").filter(|k| !k.starts_with("test_"));
        fig = fig.merge(env.split("__").ignore(&["config"]));
        fig = fig.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()));
        fig.extract().map_err(Box::new)
    }

    /// Checks what serde cannot: crisis resources and credit policies. Runs at every start.
    pub fn validate(&self) -> Result<(), String> {
        if self.redis_url.as_deref().is_some_and(|u| !u.is_empty()) {
            if !self.database_url().starts_with("postgres") {
                return Err("redis_url (cluster mode) needs a PostgreSQL database_url shared by every node".into());
            }
            if self.cluster.secret.as_ref().is_none_or(|s| s.expose_secret().len() < 32) {
                return Err("cluster mode needs cluster.secret (HAVEN_CLUSTER__SECRET), at least 32 characters, the same on every node".into());
            }
            if self.cluster.lease_seconds < 2 {
                return Err("cluster.lease_seconds must be at least 2".into());
            }
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.programs {
            if !ids.insert(p.id.as_str()) {
                return Err(format!("program `{}` is configured twice", p.id));
            }
            for (i, r) in p.crisis_resources.iter().enumerate() {
                r.validate().map_err(|e| format!("program `{}`: crisis_resources[{i}]: {e}", p.id))?;
            }
            if let Some(policy) = &p.default_credit_policy {
                policy.validate().map_err(|e| format!("program `{}`: default_credit_policy: {e}", p.id))?;
            }
        }
        if self.turn.tls_cert.is_some() != self.turn.tls_key.is_some() {
            return Err("turn: set both tls_cert and tls_key (or neither)".into());
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) if !u.is_empty() => u.clone(),
            _ => format!("sqlite://{}?mode=rwc", self.data_dir.join("haven.db").display()),
        }
    }

    /// The key-encryption key, from `key_encryption_key` or else `key_encryption_key_file`.
    pub fn sealer(&self) -> Result<Option<crate::store::sealed::Sealer>, crate::store::sealed::SealError> {
        use crate::store::sealed::{SealError, Sealer};
        if let Some(k) = &self.key_encryption_key {
            return Sealer::from_base64(k.expose_secret()).map(Some);
        }
        match &self.key_encryption_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|_| SealError::BadKey)?;
                Sealer::from_base64(text.lines().next().unwrap_or("")).map(Some)
            }
            None => Ok(None),
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

    fn with_resource(contact: &str) -> Config {
        let text = format!(
            r#"
            [[programs]]
            id = "p1"
            name = "P one"
            token_alg = "HS256"
            token_key = "0123456789abcdef0123456789abcdef"
            api_key_sha256 = "00"
            crisis_resources = [{{ name = "988 Suicide & Crisis Lifeline", contact = "{contact}", note = "24/7" }}]
            "#
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn crisis_resources_need_a_phone_or_https_contact() {
        for ok in ["tel:988", "sms:741741", "https://988lifeline.org/chat", "TEL:+1-800-273-8255"] {
            assert_eq!(with_resource(ok).validate(), Ok(()), "{ok}");
        }
        for bad in ["988", "http://example.org", "javascript:alert(1)", "tel:", "tel:98 8", "mailto:a@b"] {
            let e = with_resource(bad).validate().unwrap_err();
            assert!(e.contains("crisis_resources[0]") && e.contains("contact"), "{bad}: {e}");
        }
        let c = with_resource("tel:988");
        assert!(c.programs[0].facilitation_earns_credit, "facilitation earns credit unless a program says not");
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
    fn test_command_variables_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HAVEN_LISSEN", "0.0.0.0:1");
            assert!(Config::load(None).is_err(), "an unknown HAVEN_ variable is refused");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("HAVEN_TEST_PG", "postgres://postgres@127.0.0.1:1/postgres");
            jail.set_env("HAVEN_TEST_REDIS", "redis://127.0.0.1:2/");
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn example_configuration_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/haven.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.programs[0].token_alg, TokenAlg::EdDSA);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.programs[0].crisis_resources.len(), 2);
    }
}
