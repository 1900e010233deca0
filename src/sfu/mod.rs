//! The media plane: a selective forwarding unit built on str0m (sans-IO WebRTC).
//!
//! One engine thread owns every participant's `Rtc` and one UDP socket shared by all of them
//! (ICE-lite, host candidate). Room actors send it SDP and ICE from their participants and,
//! above all, the forwarding rules their rooms compute (`room::MediaRule`): a muted member's audio,
//! or a member without the floor in a floor-controlled meeting, is dropped here, whatever their
//! client sends. The engine sends SDP answers, renegotiation offers and active-speaker changes back
//! to the actors, which deliver them like any other event.

mod demux;
mod engine;
mod forward;
mod outbox;
mod sdp;
mod speakers;

use crate::metrics::Metrics;
use crate::protocol::Event;
use crate::protocol::ParticipantId;
use crate::room::MediaRule;
use std::net::{IpAddr, SocketAddr};
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
    pub tracks_in: usize,
    pub tracks_out: usize,
    /// Events waiting for room in an actor's channel.
    pub backlog: usize,
}

/// Media configuration.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the UDP socket binds.
    pub bind: SocketAddr,
    /// The address given to browsers as the host candidate.
    pub advertise: IpAddr,
}

/// Commands queued to the engine before actors wait. Actors send rules in order and wait rather
/// than drop one, since a dropped rule would be a broken promise.
const QUEUE: usize = 8192;

/// Socket buffer size asked of the kernel (it may grant less: net.core.wmem_max/rmem_max).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// The engine's mailbox and its UDP address.
#[derive(Debug, Clone)]
pub struct SfuHandle {
    pub tx: mpsc::Sender<SfuCmd>,
    pub addr: SocketAddr,
}

impl SfuHandle {
    /// Counts of the engine's state.
    pub async fn stats(&self) -> Option<SfuStats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(SfuCmd::Stats(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// Binds the UDP socket and starts the engine on its own thread (media work never competes with
/// signaling tasks for a runtime worker).
pub fn start(config: SfuConfig, metrics: Arc<Metrics>) -> std::io::Result<SfuHandle> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(config.bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Large buffers: one speaker's packet fans out to every listener at once, and a datagram that
    // does not fit is lost.
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    socket.bind(&config.bind.into())?;
    socket.set_nonblocking(true)?;
    let socket: std::net::UdpSocket = socket.into();
    let local = socket.local_addr()?;
    let addr = SocketAddr::new(config.advertise, local.port());
    let (tx, rx) = mpsc::channel(QUEUE);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("haven-sfu".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => engine::Engine::new(socket, addr, metrics).run(rx).await,
                Err(e) => tracing::error!(error = %e, "media socket unusable; media disabled"),
            }
        })
    })?;
    Ok(SfuHandle { tx, addr })
}
