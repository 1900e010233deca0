//! Wiring: store, programs, registry, metrics, router; start and graceful stop.
//!
//! Tests start the whole server in-process with [`Server::start`] on port 0.

use crate::auth::{self, Programs};
use crate::config::Config;
use crate::journal::Journal;
use crate::meeting::actor::ActorConfig;
use crate::meeting::registry::RoomDeps;
use crate::meeting::Rooms;
use crate::metrics::Metrics;
use crate::protocol::MeetingSettings;
use crate::room::RoomLimits;
use crate::store::{MeetingRow, ProgramRow, Store};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything a request handler or connection needs.
pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub programs: Programs,
    pub rooms: Arc<Rooms>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Where every record for the database goes first (see `journal`).
    pub journal: Journal,
    /// The server's certificate keys.
    pub keyring: crate::attendance::certificate::LiveKeyring,
    /// The media engine, when enabled.
    pub sfu: Option<crate::sfu::SfuHandle>,
    /// The TURN relay, when enabled (with media).
    pub turn: Option<Arc<crate::turn::TurnHandle>>,
    /// Where people reach this server (configured, or `http://<bound address>`); certificates'
    /// issuer and the base of printed links.
    pub public_url: String,
    /// Each program's crisis resources (configuration).
    pub crisis_resources: CrisisResources,
    /// Per-address limits on WebSocket upgrades.
    pub addresses: Arc<crate::signal::guard::AddressGuard>,
    /// Cluster mode (Redis): leases, placement, snapshots. `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    next_conn: AtomicU64,
}

/// Crisis resources by program id.
pub type CrisisResources = Arc<HashMap<String, Vec<crate::protocol::CrisisResource>>>;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits until every record journalled so far is in the database (tests, shutdown).
    pub async fn flush_store(&self) {
        self.journal.wait_confirmed().await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("configuration: {0}")]
    Program(#[from] auth::ProgramError),
    #[error("{0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("key-encryption key: {0}")]
    Sealing(crate::store::sealed::SealError),
    #[error("server keys: {0}")]
    Keyring(#[from] crate::attendance::certificate::KeyringError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("{0}")]
    Turn(#[from] crate::turn::TurnError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// What a first start created for trying Haven out.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The demo program's API key; only its hash is stored, so this is the one time it is shown.
    pub api_key: String,
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub app: AppState,
    /// Present when this start created the demo program.
    pub demo: Option<Demo>,
    /// The demo meeting people can join now, when the demo program exists (a fresh one is made
    /// at start when the last has ended).
    pub demo_meeting: Option<String>,
    serve: tokio::task::JoinHandle<()>,
    writer_done: tokio::sync::oneshot::Receiver<()>,
    drain: tokio::task::JoinHandle<()>,
    drain_stop: CancellationToken,
    /// Cluster mode: the snapshot writer and its stop.
    snapshot_writer: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    /// Heartbeat, key reload, series horizon, webhooks, retention, cluster beat and inbox.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// The demo program and meeting ids.
pub const DEMO_ID: &str = "demo";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn bootstrap_demo(store: &Store) -> Result<Option<Demo>, StartError> {
    if !store.programs().await?.is_empty() {
        return Ok(None);
    }
    let api_key = auth::new_api_key();
    let program = ProgramRow {
        id: DEMO_ID.into(),
        name: "Demo program".into(),
        token_alg: "HS256".into(),
        token_key: auth::new_hs256_secret(),
        api_key_sha256: auth::hash_api_key(&api_key),
    };
    store.upsert_program(&program, now_ms()).await?;
    create_demo_meeting(store, DEMO_ID).await?;
    Ok(Some(Demo { api_key }))
}

async fn create_demo_meeting(store: &Store, id: &str) -> Result<(), StartError> {
    let meeting = MeetingRow {
        id: crate::store::meeting_key(DEMO_ID, id),
        local_id: id.into(),
        program_id: DEMO_ID.into(),
        title: "Demo meeting".into(),
        scheduled_start: None,
        scheduled_end: None,
        capacity: 50,
        settings: MeetingSettings::default(),
        shared_with: Vec::new(),
        partner_facilitators: false,
        created_at: now_ms(),
        ended_at: None,
        // One minute present earns the demo's certificate, so it can be tried in a short visit.
        credit_policy: Some(crate::attendance::credit::CreditPolicy {
            min_minutes: Some(1),
            min_share_percent: None,
            max_gap_seconds: 120,
        }),
        format_id: None,
        format: None,
        series_id: None,
        occurrence_key: None,
    };
    match store.create_meeting(&meeting).await {
        Ok(()) | Err(crate::store::StoreError::Conflict) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The id (the demo program's own) of the newest demo meeting that has not ended, if any.
pub async fn joinable_demo_meeting(store: &Store) -> Result<Option<String>, crate::store::StoreError> {
    Ok(store.meetings_of(DEMO_ID, 1000).await?.into_iter().find(|m| m.ended_at.is_none()).map(|m| m.local_id))
}

/// Makes sure the demo program has a meeting people can join: after a restart the old one may
/// have ended, and printed links must never lead to an ended meeting.
async fn ensure_demo_meeting(store: &Store) -> Result<String, StartError> {
    if let Some(id) = joinable_demo_meeting(store).await? {
        return Ok(id);
    }
    let id = format!("{DEMO_ID}-{}", hex::encode(rand::random::<[u8; 4]>()));
    create_demo_meeting(store, &id).await?;
    tracing::info!(meeting = %id, "the demo meeting had ended; started a fresh one");
    Ok(id)
}

/// Opens the store and applies configured programs (creating the demo program when there are none).
pub async fn open_store(config: &Config) -> Result<(Store, Option<Demo>), StartError> {
    if config.database_url.as_deref().is_none_or(str::is_empty) {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    }
    let mut store = Store::connect(&config.database_url()).await?;
    match config.sealer().map_err(StartError::Sealing)? {
        Some(sealer) => store.use_sealer(sealer).await?,
        None => tracing::warn!(
            "certificate signing keys and HS256 program secrets are stored unencrypted: set \
             HAVEN_KEY_ENCRYPTION_KEY (32 random bytes, base64) to seal them (see README)"
        ),
    }
    for p in &config.programs {
        let row = ProgramRow {
            id: p.id.clone(),
            name: p.name.clone(),
            token_alg: p.token_alg.as_str().into(),
            token_key: p.token_key.expose_secret().to_string(),
            api_key_sha256: p.api_key_sha256.trim().to_lowercase(),
        };
        store.upsert_program(&row, now_ms()).await?;
        store.set_facilitation_credit(&p.id, p.facilitation_earns_credit).await?;
    }
    let demo = if config.programs.is_empty() { bootstrap_demo(&store).await? } else { None };
    Ok((store, demo))
}

/// How long a stopping server waits for the database to take what the journal holds.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The node's presence heartbeat: one journal record every `seconds` naming every live meeting
/// with someone present (one database statement, however many meetings). It bounds what a crash
/// can lose: an interval still open is closed at the meeting's last heartbeat.
async fn heartbeat(app: AppState, seconds: u64) {
    let clock = crate::meeting::actor::Clock::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let meetings = app.rooms.alive();
        if !meetings.is_empty() {
            app.journal.append(crate::journal::Record::Heartbeat { at: clock.now() as i64, meetings });
        }
    }
}

/// Reloads the certificate keys now and then: a rotation elsewhere reaches this server.
async fn reload_keys(app: AppState) {
    let mut tick = tokio::time::interval(crate::attendance::certificate::RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = app.keyring.reload(&app.store).await {
            tracing::debug!(error = %e, "cannot reload certificate keys; trying again later");
        }
    }
}

/// Purges attendance older than `days`, hourly, and logs how much went.
async fn retention(app: AppState, days: u32) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = now_ms() - i64::from(days) * 86_400_000;
        match app.store.purge_attendance(before).await {
            Ok(n) => tracing::info!(rows = n, days, "attendance retention purge"),
            Err(e) => tracing::error!(error = %e, "attendance retention purge failed"),
        }
    }
}

impl Server {
    /// Starts the server: store, programs, listener. Returns once it accepts connections.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        config.validate().map_err(StartError::Config)?;
        let (store, demo) = open_store(&config).await?;
        let programs = Programs::from_rows(&store.programs().await?)?;
        let demo_meeting =
            if programs.get(DEMO_ID).is_some() { Some(ensure_demo_meeting(&store).await?) } else { None };
        let crisis_resources: CrisisResources = Arc::new(
            config
                .programs
                .iter()
                .filter(|p| !p.crisis_resources.is_empty())
                .map(|p| (p.id.clone(), p.crisis_resources.clone()))
                .collect(),
        );
        let keyring = crate::attendance::certificate::Keyring::load_or_create(&store, now_ms()).await?;
        let metrics = Arc::new(Metrics::new());
        let journal = Journal::open(&config.data_dir.join("journal"), config.limits.journal_max_bytes)?;
        let drain_stop = CancellationToken::new();
        let drain = crate::journal::spawn_drain(journal.clone(), store.clone(), metrics.clone(), drain_stop.clone());
        let relays = crate::sfu::RelayAddrs::default();
        let sfu = if config.media.enabled {
            let ip = config.listen.ip();
            let advertise = config.media.advertise_ip.unwrap_or(if ip.is_unspecified() {
                tracing::warn!("listening on all interfaces: set media.advertise_ip to the address browsers can reach");
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            });
            let bind = std::net::SocketAddr::new(ip, config.media.udp_port);
            let tcp_bind = config.media.ice_tcp.then(|| std::net::SocketAddr::new(ip, config.media.tcp_port));
            let handle = crate::sfu::start(
                crate::sfu::SfuConfig {
                    bind,
                    advertise,
                    engines: config.media.engines,
                    tcp_bind,
                    relays: relays.clone(),
                },
                metrics.clone(),
            )
            .map_err(|e| StartError::Listen(bind, e))?;
            tracing::info!(addrs = ?handle.addrs(), tcp = ?handle.tcp_addrs(), "media (UDP, ICE-TCP), one port per engine");
            Some(handle)
        } else {
            None
        };
        let turn = match &sfu {
            Some(handle) if config.turn.enabled => {
                let advertise = handle.addr.ip();
                let t = crate::turn::start(
                    &config.turn,
                    config.listen.ip(),
                    advertise,
                    &handle.media_addrs(),
                    relays.clone(),
                    metrics.clone(),
                )
                .await?;
                tracing::info!(udp = %t.udp, tcp = %t.tcp, tls = ?t.tls, "TURN relay (to this server's media only)");
                Some(Arc::new(t))
            }
            _ => None,
        };
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|e| StartError::Listen(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| StartError::Listen(config.listen, e))?;
        let public_url = config.public_url(addr).trim_end_matches('/').to_string();
        let cluster = if config.redis_url.as_deref().is_some_and(|u| !u.is_empty()) {
            let node_url = config.cluster.node_url.clone().unwrap_or_else(|| public_url.clone());
            let cluster = crate::cluster::Cluster::connect(&config, node_url, metrics.clone()).await?;
            if !crate::auth::resume::use_shared_key(cluster.resume_key()) {
                return Err(StartError::Config(
                    "this process already minted resume tokens with another key; a cluster node must be its own process".into(),
                ));
            }
            // Visible at once to the other nodes' placement.
            cluster.beat(0, 0).await?;
            tracing::info!(node = %cluster.node, url = %cluster.url, "cluster node: meetings are placed, leased and snapshotted through Redis");
            Some(cluster)
        } else {
            None
        };
        let limits = &config.limits;
        let rooms = Rooms::new(RoomDeps {
            metrics: metrics.clone(),
            journal: journal.clone(),
            store: store.clone(),
            limits: RoomLimits {
                capacity: limits.capacity,
                grace_ms: limits.reconnect_grace_seconds * 1000,
                chat_max_chars: limits.chat_max_chars,
                chat_burst: limits.chat_burst,
                chat_refill_ms: limits.chat_refill_ms,
                support_max_chars: 500,
                crisis_resources: crisis_resources.clone(),
            },
            actor: ActorConfig { replay_events: limits.replay_events, idle_stop_ms: 60_000, turn: turn.clone() },
            sfu: sfu.clone(),
            cluster: cluster.clone(),
        });
        let shutdown = CancellationToken::new();
        let config_limits = config.limits.clone();
        let app = AppState(Arc::new(AppInner {
            config,
            store,
            programs,
            rooms,
            metrics,
            shutdown: shutdown.clone(),
            journal,
            keyring: crate::attendance::certificate::LiveKeyring::new(keyring),
            sfu,
            turn,
            public_url,
            crisis_resources,
            addresses: crate::signal::guard::AddressGuard::new(
                config_limits.upgrade_burst_per_address,
                config_limits.upgrades_per_address_per_minute,
                config_limits.max_unjoined_per_address,
            ),
            cluster: cluster.clone(),
            next_conn: AtomicU64::new(1),
        }));
        // Every background task stops on `app.shutdown` and `shutdown()` waits for all of them:
        // once it returns, nothing of this server holds a database transaction (an embedded
        // SQLite file is free for the CLI or the next start at once).
        let mut background = vec![
            tokio::spawn(heartbeat(app.clone(), app.config.limits.heartbeat_seconds.max(1))),
            tokio::spawn(reload_keys(app.clone())),
            tokio::spawn(crate::api::series::horizon_task(app.clone())),
        ];
        background.extend(crate::webhooks::dispatch::spawn(
            app.store.clone(),
            app.config.webhooks.clone(),
            app.metrics.clone(),
            app.shutdown.clone(),
        ));
        let snapshot_writer = cluster.map(|c| {
            background.push(tokio::spawn(crate::cluster::run_node(app.clone(), c.clone())));
            background.push(tokio::spawn(c.clone().run_inbox(app.clone())));
            let stop = CancellationToken::new();
            (tokio::spawn(c.run_writer(stop.clone())), stop)
        });
        if let Some(days) = app.config.attendance_retention_days {
            background.push(tokio::spawn(retention(app.clone(), days)));
        }
        let router = crate::api::router(app.clone()).layer(
            tower_http::trace::TraceLayer::new_for_http()
                // The path only: the query may hold a join token, which never goes into a log.
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                // A 503 at the upgrade is the client's to retry, not an operator's alarm; real
                // failures are logged where they happen (`ApiError::internal`).
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        );
        let (writer_done_tx, writer_done) = tokio::sync::oneshot::channel();
        let serve = tokio::spawn(async move {
            // TCP_NODELAY on every accepted socket: a meeting's frames are small and each one is
            // news (a hand, a mute, a support request). With Nagle's algorithm a frame written
            // while the previous one is unacknowledged waits for the client's delayed ACK, up to
            // 40 ms on Linux.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
                }
            });
            let result = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "server stopped with an error");
            }
            let _ = writer_done_tx.send(());
        });
        tracing::info!(%addr, "listening");
        Ok(Server { addr, app, demo, demo_meeting, serve, writer_done, drain, drain_stop, snapshot_writer, background })
    }

    /// Stops gracefully: no new connections, every meeting tells its participants and closes,
    /// pending records are written.
    pub async fn shutdown(self) {
        if let Some(cluster) = &self.app.cluster {
            // Drain: no new meetings here, every live one handed on (its people resume on the
            // node that takes it), then leave.
            cluster
                .start_draining(self.app.metrics.participants.get().max(0) as u64, self.app.rooms.len() as u64)
                .await;
            self.app.rooms.handover_all().await;
            tracing::info!(node = %cluster.node, "handed every meeting on; leaving the cluster");
        }
        self.app.shutdown.cancel();
        self.app.rooms.shutdown_all().await;
        let _ = self.writer_done.await;
        let _ = self.serve.await;
        for task in self.background {
            let _ = task.await;
        }
        // Everything is durable in the journal; give the database a few seconds to take it, and
        // leave the rest for the next start to replay.
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, self.app.flush_store()).await;
        self.drain_stop.cancel();
        let _ = self.drain.await;
        if let Some((writer, stop)) = self.snapshot_writer {
            stop.cancel();
            let _ = writer.await;
        }
        if let Some(cluster) = &self.app.cluster {
            cluster.leave().await;
        }
        self.app.journal.close().await;
    }
}
