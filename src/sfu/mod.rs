//! The media plane: a selective forwarding unit built on str0m (sans-IO WebRTC).
//!
//! One engine thread owns every participant's `Rtc` and one UDP socket shared by all of them
//! (ICE-lite, host candidate). Room actors send it SDP and ICE from their participants and,
//! above all, the forwarding rules their rooms compute (`room::MediaRule`): a muted member's audio,
//! or a member without the floor in a floor-controlled meeting, is dropped here, whatever their
//! client sends. The engine sends SDP answers, renegotiation offers and active-speaker changes back
//! to the actors, which deliver them like any other event.

mod batch;
mod demux;
mod engine;
mod forward;
mod outbox;
mod quality;
mod recv;
mod sdp;
mod speakers;
mod tcp;
mod timers;

use crate::metrics::Metrics;
use crate::protocol::Event;
use crate::protocol::ParticipantId;
use crate::room::MediaRule;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A participant of a meeting, as the engine knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub meeting: Arc<str>,
    pub participant_id: ParticipantId,
}

/// What actors ask of the engine.
#[derive(Debug)]
pub enum SfuCmd {
    /// A client's offer: starts a fresh media session (replacing any earlier one).
    Offer { key: PeerKey, sdp: String, request_id: Option<Arc<str>>, events: mpsc::Sender<SfuEvent> },
    /// The client's answer to the engine's renegotiation offer.
    Answer { key: PeerKey, sdp: String },
    /// A trickled remote ICE candidate.
    Candidate { key: PeerKey, candidate: String },
    /// The room's current rule for this participant (sent on every change, and before any offer).
    Rule { key: PeerKey, rule: MediaRule },
    /// The participant left: release everything of theirs.
    Close { key: PeerKey },
    /// Counts of what the engine holds (tests, diagnostics).
    Stats(oneshot::Sender<SfuStats>),
}

/// What the engine tells a meeting's actor, on the actor's own bounded channel for SFU traffic.
/// The engine never drops one (see `outbox`): offers and answers are session state.
#[derive(Debug)]
pub enum SfuEvent {
    /// An event for one participant (SDP answer or offer, restart, media errors).
    Media { participant_id: ParticipantId, event: Box<Event>, request_id: Option<Arc<str>> },
    /// Who is speaking now.
    ActiveSpeaker { participant_id: Option<ParticipantId> },
    /// A participant's media connection changed (for the participant and facilitators only).
    Quality {
        participant_id: ParticipantId,
        state: crate::protocol::MediaState,
        loss_percent: Option<f32>,
        rtt_ms: Option<u32>,
    },
}

/// Capacity of an actor's channel for SFU events (beyond it, events wait in the engine).
pub const EVENTS_QUEUE: usize = 256;

/// What the engine holds, for tests that check media state is released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub peers: usize,
    pub rules: usize,
    pub meetings: usize,
    pub addresses: usize,
    /// Open ICE-TCP connections.
    pub tcp_connections: usize,
    pub tracks_in: usize,
    pub tracks_out: usize,
    /// Events waiting for room in an actor's channel.
    pub backlog: usize,
}

/// Media configuration.
/// The source addresses of this server's TURN relay sockets, as the media engines see them: a
/// session whose selected pair's remote address is one of them is counted as `relay` in
/// `haven_media_transports` (written by the relay per allocation, read per session stats event).
pub type RelayAddrs = Arc<dashmap::DashSet<SocketAddr>>;

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the first engine's UDP socket binds (port 0: any free port for every engine; port P:
    /// engine i binds P + i).
    pub bind: SocketAddr,
    /// The address given to browsers as the host candidate.
    pub advertise: IpAddr,
    /// Engines (threads, each with its own socket); 0: one per available core.
    pub engines: usize,
    /// Where the first engine's ICE-TCP listener binds (same numbering as `bind`); `None`: no
    /// ICE over TCP.
    pub tcp_bind: Option<SocketAddr>,
    /// The TURN relay's socket addresses (see [`RelayAddrs`]).
    pub relays: RelayAddrs,
}

/// Commands queued to the engine before actors wait. Actors send rules in order and wait rather
/// than drop one, since a dropped rule would be a broken promise.
const QUEUE: usize = 8192;

/// Socket buffer size asked of the kernel (it may grant less: net.core.wmem_max/rmem_max).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// One engine: its mailbox, its UDP address, the meetings placed on it.
#[derive(Debug)]
struct EngineRef {
    tx: mpsc::Sender<SfuCmd>,
    addr: SocketAddr,
    /// The address the UDP socket is bound to (what a co-located relay sends to).
    local: SocketAddr,
    /// The advertised ICE-TCP address.
    tcp_addr: Option<SocketAddr>,
    meetings: AtomicUsize,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

/// A meeting's place on an engine: counted until every clone of its handle is gone.
#[derive(Debug)]
struct Placement {
    engines: Arc<[EngineRef]>,
    index: usize,
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(e) = self.engines.get(self.index) {
            e.meetings.fetch_sub(1, Ordering::Relaxed);
            e.gauge.dec();
        }
    }
}

/// The media plane as a meeting's actor sees it: `tx` and `addr` are its engine's. The handle the
/// server holds points at engine 0 until [`SfuHandle::place`] picks one for a meeting.
#[derive(Debug, Clone)]
pub struct SfuHandle {
    pub tx: mpsc::Sender<SfuCmd>,
    pub addr: SocketAddr,
    engines: Arc<[EngineRef]>,
    /// Held only for its drop: the engine's count of meetings.
    _placement: Option<Arc<Placement>>,
}

impl SfuHandle {
    /// A handle for a new meeting, on the engine with the fewest meetings. A meeting stays on its
    /// engine for its whole life: its sessions forward to each other without crossing threads.
    pub fn place(&self) -> SfuHandle {
        let (index, e) = self
            .engines
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.meetings.load(Ordering::Relaxed))
            .unwrap_or((0, &self.engines[0]));
        e.meetings.fetch_add(1, Ordering::Relaxed);
        e.gauge.inc();
        SfuHandle {
            tx: e.tx.clone(),
            addr: e.addr,
            engines: self.engines.clone(),
            _placement: Some(Arc::new(Placement { engines: self.engines.clone(), index })),
        }
    }

    /// How many engines run.
    pub fn engines(&self) -> usize {
        self.engines.len()
    }

    /// The UDP address of each engine.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.engines.iter().map(|e| e.addr).collect()
    }

    /// Each engine's advertised UDP address with the address its socket is bound to.
    pub fn media_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.engines.iter().map(|e| (e.addr, e.local)).collect()
    }

    /// The advertised ICE-TCP address of each engine (empty when ICE-TCP is off).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.engines.iter().filter_map(|e| e.tcp_addr).collect()
    }

    /// Counts of the state of every engine, summed.
    pub async fn stats(&self) -> Option<SfuStats> {
        let mut total = SfuStats::default();
        for e in self.engines.iter() {
            let (tx, rx) = oneshot::channel();
            e.tx.send(SfuCmd::Stats(tx)).await.ok()?;
            let s = rx.await.ok()?;
            total.peers += s.peers;
            total.rules += s.rules;
            total.meetings += s.meetings;
            total.addresses += s.addresses;
            total.tcp_connections += s.tcp_connections;
            total.tracks_in += s.tracks_in;
            total.tracks_out += s.tracks_out;
            total.backlog += s.backlog;
        }
        Some(total)
    }
}

/// Binds one UDP socket per engine and starts each engine on its own thread (media work never
/// competes with signaling tasks for a runtime worker, nor engines with each other).
pub fn start(config: SfuConfig, metrics: Arc<Metrics>) -> std::io::Result<SfuHandle> {
    let n = match config.engines {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let mut engines = Vec::with_capacity(n);
    let nth = |mut bind: SocketAddr, i: usize| -> std::io::Result<SocketAddr> {
        if bind.port() != 0 {
            let port = u16::try_from(usize::from(bind.port()) + i)
                .map_err(|_| std::io::Error::other("media port range passes 65535"))?;
            bind.set_port(port);
        }
        Ok(bind)
    };
    for i in 0..n {
        let bind = nth(config.bind, i)?;
        let tcp = match config.tcp_bind {
            Some(b) => {
                let l = std::net::TcpListener::bind(nth(b, i)?)?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let tcp_addr = match &tcp {
            Some(l) => Some(SocketAddr::new(config.advertise, l.local_addr()?.port())),
            None => None,
        };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Large buffers: one speaker's packet fans out to every listener at once, and a datagram
        // that does not fit is lost.
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        socket.bind(&bind.into())?;
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        let local = socket.local_addr()?;
        let addr = SocketAddr::new(config.advertise, local.port());
        let (tx, rx) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let label = crate::metrics::EngineLabel { engine: i.to_string() };
        let gauge = metrics.media_engine_meetings.get_or_create(&label).clone();
        let forwarded = metrics.media_engine_forwarded.get_or_create(&label).clone();
        let m = metrics.clone();
        let relays = config.relays.clone();
        std::thread::Builder::new().name(format!("haven-sfu-{i}")).spawn(move || {
            runtime.block_on(async move {
                let tcp = match (tcp.map(tokio::net::TcpListener::from_std), tcp_addr) {
                    (Some(Ok(l)), Some(a)) => tcp::listen(l, a),
                    (Some(Err(e)), _) => {
                        tracing::error!(error = %e, "ICE-TCP listener unusable; media over UDP only");
                        tcp::TcpSide::off()
                    }
                    _ => tcp::TcpSide::off(),
                };
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => engine::Engine::new(socket, addr, m, forwarded, tcp, relays).run(rx).await,
                    Err(e) => tracing::error!(error = %e, "media socket unusable; media disabled"),
                }
            })
        })?;
        engines.push(EngineRef { tx, addr, local, tcp_addr, meetings: AtomicUsize::new(0), gauge });
    }
    let engines: Arc<[EngineRef]> = engines.into();
    Ok(SfuHandle { tx: engines[0].tx.clone(), addr: engines[0].addr, engines, _placement: None })
}
