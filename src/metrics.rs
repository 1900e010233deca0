//! Prometheus metrics, one registry per server (so tests can run servers side by side).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label for errors by stable code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

/// Label for per-engine media figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabel {
    pub engine: String,
}

/// Label for media sessions by connection state, or by transport: counts only, never a person.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

/// The server's metrics. Cheap to update: atomics, no locks on the hot path (the error family
/// takes a read lock only to find an existing series).
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Gauge,
    pub live_meetings: Gauge,
    pub participants: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub slow_client_disconnects: Counter,
    pub errors: Family<CodeLabel, Counter>,
    pub media_participants: Gauge,
    pub media_packets_forwarded: Counter,
    pub media_packets_dropped: Counter,
    pub media_bytes_forwarded: Counter,
    /// Records in the local journal that the database has not confirmed.
    pub journal_backlog_records: Gauge,
    pub journal_backlog_bytes: Gauge,
    pub journal_backlog_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Failed attempts to write journalled records to the database (each is retried).
    pub store_write_failures: Counter,
    /// Journalled records the database refused for good (set aside, logged).
    pub journal_records_rejected: Counter,
    pub media_restarts: Counter,
    /// Client-initiated renegotiations of a live session (ICE restarts after a network change).
    pub media_ice_restarts: Counter,
    pub media_send_calls: Counter,
    pub media_engine_meetings: Family<EngineLabel, Gauge>,
    pub media_engine_forwarded: Family<EngineLabel, Counter>,
    /// Media sessions by ICE state (checking, connected, failed).
    pub media_connections: Family<StateLabel, Gauge>,
    /// Connected media sessions by transport (udp, tcp: ICE-TCP or TURN over TCP/TLS seen as TCP
    /// only when ICE-TCP; a relayed session is UDP from the relay).
    pub media_transports: Family<TransportLabel, Gauge>,
    /// Open TURN allocations, and requests to relay anywhere but this server's media (refused).
    pub turn_allocations: Gauge,
    pub turn_refused_peers: Counter,
    /// Cluster mode: records set aside because their node had lost the meeting (fencing).
    pub journal_records_fenced: Counter,
    /// Cluster mode: meetings this node owns (holds the lease of).
    pub cluster_owned_meetings: Gauge,
    /// Cluster mode: lease renewal rounds that reached Redis.
    pub cluster_lease_renewals: Counter,
    /// Cluster mode: leases this node found taken over (its meetings moved elsewhere).
    pub cluster_leases_lost: Counter,
    /// Cluster mode: signaling sockets passed on to the meeting's owner, open now.
    pub cluster_proxied_connections: Gauge,
    /// Cluster mode: room snapshots written to Redis.
    pub cluster_snapshots_written: Counter,
    /// Cluster mode: room snapshots taken (serialised and sealed) by meeting actors.
    pub cluster_snapshots_taken: Counter,
    /// Webhook delivery attempts answered 2xx.
    pub webhook_attempts_succeeded: Counter,
    /// Webhook delivery attempts that failed (status, timeout, refused address); retried.
    pub webhook_attempts_failed: Counter,
    /// Webhook events given up after the retry window.
    pub webhook_events_given_up: Counter,
    /// Webhook endpoints disabled after a run of failures.
    pub webhook_endpoints_disabled: Counter,
    registry: Registry,
}

impl Metrics {
    /// Registers every metric under the `haven_` prefix.
    pub fn new() -> Metrics {
        let mut m = Metrics::default();
        let mut reg = Registry::with_prefix("haven");
        reg.register("connections", "Open WebSocket connections", m.connections.clone());
        reg.register("live_meetings", "Meetings with a running room actor", m.live_meetings.clone());
        reg.register("participants", "Participants present in meetings (admitted)", m.participants.clone());
        reg.register("messages_in", "Signaling messages received", m.messages_in.clone());
        reg.register("messages_out", "Signaling messages sent", m.messages_out.clone());
        reg.register(
            "slow_client_disconnects",
            "Connections cut because their outbound queue was full",
            m.slow_client_disconnects.clone(),
        );
        reg.register("errors", "Errors sent to clients and API callers, by code", m.errors.clone());
        reg.register("media_participants", "Participants with a media session", m.media_participants.clone());
        reg.register(
            "media_packets_forwarded",
            "Media packets forwarded (per subscriber)",
            m.media_packets_forwarded.clone(),
        );
        reg.register(
            "media_packets_dropped",
            "Media packets dropped by rule (muted, no floor, not allowed)",
            m.media_packets_dropped.clone(),
        );
        reg.register(
            "media_bytes_forwarded",
            "Media payload bytes forwarded (per subscriber)",
            m.media_bytes_forwarded.clone(),
        );
        reg.register(
            "journal_backlog_records",
            "Records in the local journal not yet confirmed by the database",
            m.journal_backlog_records.clone(),
        );
        reg.register(
            "journal_backlog_bytes",
            "Bytes in the local journal not yet confirmed by the database",
            m.journal_backlog_bytes.clone(),
        );
        reg.register(
            "journal_backlog_age_seconds",
            "Age of the oldest record not yet confirmed by the database",
            m.journal_backlog_age_seconds.clone(),
        );
        reg.register(
            "store_write_failures",
            "Failed attempts to write journalled records to the database (retried, never dropped)",
            m.store_write_failures.clone(),
        );
        reg.register(
            "journal_records_rejected",
            "Journalled records the database refused for good (each logged as an error)",
            m.journal_records_rejected.clone(),
        );
        reg.register(
            "media_restarts",
            "Media sessions the server asked the client to restart (refused or missing answer, SDP growth)",
            m.media_restarts.clone(),
        );
        reg.register(
            "media_send_calls",
            "System calls the SFU made to send datagrams (sendmmsg batches)",
            m.media_send_calls.clone(),
        );
        reg.register("media_engine_meetings", "Meetings placed on each media engine", m.media_engine_meetings.clone());
        reg.register(
            "media_engine_packets_forwarded",
            "Media packets forwarded by each media engine",
            m.media_engine_forwarded.clone(),
        );
        reg.register(
            "media_ice_restarts",
            "Media sessions renegotiated by their client (ICE restart), keeping their tracks",
            m.media_ice_restarts.clone(),
        );
        reg.register("media_connections", "Media sessions by connection state", m.media_connections.clone());
        reg.register("media_transports", "Media sessions by transport", m.media_transports.clone());
        reg.register("turn_allocations", "Open TURN relay allocations", m.turn_allocations.clone());
        reg.register(
            "turn_refused_peers",
            "TURN requests refused for naming a peer other than this server's media",
            m.turn_refused_peers.clone(),
        );
        reg.register(
            "journal_records_fenced",
            "Records set aside because the node that wrote them had lost the meeting to another (cluster)",
            m.journal_records_fenced.clone(),
        );
        reg.register(
            "cluster_owned_meetings",
            "Meetings whose lease this node holds",
            m.cluster_owned_meetings.clone(),
        );
        reg.register(
            "cluster_lease_renewals",
            "Lease renewal rounds that reached Redis",
            m.cluster_lease_renewals.clone(),
        );
        reg.register(
            "cluster_leases_lost",
            "Leases this node found taken over by another node",
            m.cluster_leases_lost.clone(),
        );
        reg.register(
            "cluster_proxied_connections",
            "Signaling sockets this node passes on to the meeting's owner",
            m.cluster_proxied_connections.clone(),
        );
        reg.register(
            "cluster_snapshots_written",
            "Room snapshots written to Redis",
            m.cluster_snapshots_written.clone(),
        );
        reg.register(
            "cluster_snapshots_taken",
            "Room snapshots taken by meeting actors (at most one per meeting per 50 ms)",
            m.cluster_snapshots_taken.clone(),
        );
        reg.register(
            "webhook_attempts_succeeded",
            "Webhook delivery attempts the receiver answered with 2xx",
            m.webhook_attempts_succeeded.clone(),
        );
        reg.register(
            "webhook_attempts_failed",
            "Webhook delivery attempts that failed (an error status, a timeout, a refused address)",
            m.webhook_attempts_failed.clone(),
        );
        reg.register(
            "webhook_events_given_up",
            "Webhook events given up after the retry window",
            m.webhook_events_given_up.clone(),
        );
        reg.register(
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled after a run of failed attempts",
            m.webhook_endpoints_disabled.clone(),
        );
        m.registry = reg;
        m
    }

    /// The gauge of media sessions in `state`.
    pub fn media_connection_state(&self, state: &'static str) -> Gauge {
        self.media_connections.get_or_create(&StateLabel { state }).clone()
    }

    /// The gauge of media sessions over `transport`.
    pub fn media_transport(&self, transport: &'static str) -> Gauge {
        self.media_transports.get_or_create(&TransportLabel { transport }).clone()
    }

    /// Counts an error by its stable code.
    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&CodeLabel { code }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
