//! Wiring: store, programs, registry, metrics, router; start and graceful stop.
//!
//! Tests start the whole server in-process with [`Server::start`] on port 0.

use crate::auth::{self, Programs};
use crate::config::Config;
use crate::meeting::actor::ActorConfig;
use crate::meeting::registry::RoomDeps;
use crate::meeting::store_writer::{self, StoreWrite};
use crate::meeting::Rooms;
use crate::metrics::Metrics;
use crate::protocol::MeetingSettings;
use crate::room::RoomLimits;
use crate::store::{MeetingRow, ProgramRow, Store};
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything a request handler or connection needs.
pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub programs: Programs,
    pub rooms: Arc<Rooms>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub store_tx: mpsc::Sender<StoreWrite>,
    /// The server's certificate keys.
    pub keyring: crate::attendance::certificate::Keyring,
    /// The media engine, when enabled.
    pub sfu: Option<crate::sfu::SfuHandle>,
    next_conn: AtomicU64,
}

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

    /// Waits until every store write queued so far is committed.
    pub async fn flush_store(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.store_tx.send(StoreWrite::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("configuration: {0}")]
    Program(#[from] auth::ProgramError),
    #[error("server keys: {0}")]
    Keyring(#[from] crate::attendance::certificate::KeyringError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
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
    serve: tokio::task::JoinHandle<()>,
    writer_done: tokio::sync::oneshot::Receiver<()>,
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
    let meeting = MeetingRow {
        id: DEMO_ID.into(),
        program_id: DEMO_ID.into(),
        title: "Demo meeting".into(),
        scheduled_start: None,
        scheduled_end: None,
        capacity: 50,
        settings: MeetingSettings::default(),
        shared_with: Vec::new(),
        created_at: now_ms(),
        ended_at: None,
        // One minute present earns the demo's certificate, so it can be tried in a short visit.
        credit_policy: Some(crate::attendance::credit::CreditPolicy {
            min_minutes: Some(1),
            min_share_percent: None,
            max_gap_seconds: 120,
        }),
    };
    match store.create_meeting(&meeting).await {
        Ok(()) | Err(crate::store::StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Some(Demo { api_key }))
}

/// Opens the store and applies configured programs (creating the demo program when there are none).
pub async fn open_store(config: &Config) -> Result<(Store, Option<Demo>), StartError> {
    if config.database_url.as_deref().is_none_or(str::is_empty) {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    }
    let store = Store::connect(&config.database_url()).await?;
    for p in &config.programs {
        let row = ProgramRow {
            id: p.id.clone(),
            name: p.name.clone(),
            token_alg: p.token_alg.as_str().into(),
            token_key: p.token_key.expose_secret().to_string(),
            api_key_sha256: p.api_key_sha256.trim().to_lowercase(),
        };
        store.upsert_program(&row, now_ms()).await?;
    }
    let demo = if config.programs.is_empty() { bootstrap_demo(&store).await? } else { None };
    Ok((store, demo))
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
        let (store, demo) = open_store(&config).await?;
        let programs = Programs::from_rows(&store.programs().await?)?;
        let keyring = crate::attendance::certificate::Keyring::load_or_create(&store, now_ms()).await?;
        let metrics = Arc::new(Metrics::new());
        let store_tx = store_writer::spawn(store.clone());
        let sfu = if config.media.enabled {
            let ip = config.listen.ip();
            let advertise = config.media.advertise_ip.unwrap_or(if ip.is_unspecified() {
                tracing::warn!("listening on all interfaces: set media.advertise_ip to the address browsers can reach");
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            });
            let bind = std::net::SocketAddr::new(ip, config.media.udp_port);
            let handle = crate::sfu::start(
                crate::sfu::SfuConfig { bind, advertise, engines: config.media.engines },
                metrics.clone(),
            )
            .map_err(|e| StartError::Listen(bind, e))?;
            tracing::info!(addrs = ?handle.addrs(), "media (UDP), one port per engine");
            Some(handle)
        } else {
            None
        };
        let limits = &config.limits;
        let rooms = Rooms::new(RoomDeps {
            metrics: metrics.clone(),
            store_tx: store_tx.clone(),
            store: store.clone(),
            limits: RoomLimits {
                capacity: limits.capacity,
                grace_ms: limits.reconnect_grace_seconds * 1000,
                chat_max_chars: limits.chat_max_chars,
                chat_burst: limits.chat_burst,
                chat_refill_ms: limits.chat_refill_ms,
                support_max_chars: 500,
            },
            actor: ActorConfig {
                replay_events: limits.replay_events,
                idle_stop_ms: 60_000,
                heartbeat_ms: limits.heartbeat_seconds.max(1) * 1000,
            },
            sfu: sfu.clone(),
        });
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|e| StartError::Listen(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| StartError::Listen(config.listen, e))?;
        let shutdown = CancellationToken::new();
        let app = AppState(Arc::new(AppInner {
            config,
            store,
            programs,
            rooms,
            metrics,
            shutdown: shutdown.clone(),
            store_tx,
            keyring,
            sfu,
            next_conn: AtomicU64::new(1),
        }));
        if let Some(days) = app.config.attendance_retention_days {
            tokio::spawn(retention(app.clone(), days));
        }
        let router = crate::api::router(app.clone()).layer(
            tower_http::trace::TraceLayer::new_for_http()
                // The path only: the query may hold a join token, which never goes into a log.
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                }),
        );
        let (writer_done_tx, writer_done) = tokio::sync::oneshot::channel();
        let serve = tokio::spawn(async move {
            let result = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
            if let Err(e) = result {
                tracing::error!(error = %e, "server stopped with an error");
            }
            let _ = writer_done_tx.send(());
        });
        tracing::info!(%addr, "listening");
        Ok(Server { addr, app, demo, serve, writer_done })
    }

    /// Stops gracefully: no new connections, every meeting tells its participants and closes,
    /// pending records are written.
    pub async fn shutdown(self) {
        self.app.shutdown.cancel();
        self.app.rooms.shutdown_all().await;
        let _ = self.writer_done.await;
        let _ = self.serve.await;
        self.app.flush_store().await;
    }
}
