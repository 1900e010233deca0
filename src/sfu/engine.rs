//! The engine loop: UDP in, str0m in the middle, UDP out; forwarding by the rooms' rules.
//!
//! Per packet the forwarding path is: the sender's rule (a field of its peer), the meeting's
//! member list, per subscriber a comparison of the two rules' rooms (`MediaRule::location`: a side
//! room hears only itself) and one hash lookup (origin, mid) to the outgoing mid, then one
//! write that shares the payload (`Arc<[u8]>`): no lock, and no allocation of ours.

use super::batch::SendBatch;
use super::demux::{Demux, Route};
use super::forward::OutStream;
use super::outbox::Outbox;
use super::speakers::Speakers;
use super::timers::Timers;
use super::{PeerKey, SfuCmd, SfuEvent, SfuStats};
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Event, ParticipantId};
use crate::room::{MediaRule, VideoAudience};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event as RtcEvent, Input, Output, Reason, Rtc};
use tokio::sync::mpsc;

/// How often keyframe requests may reach one publisher's track.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// A renegotiation offer unanswered this long (the answer was refused before it reached the
/// engine, e.g. over the size limit, or never sent) restarts the session.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Stopped m-lines stay in a session's SDP (str0m does not recycle them): past this many, the
/// server restarts the session instead of renegotiating, so SDP stays bounded under churn.
const MAX_STOPPED_MLINES: usize = 16;
/// `recvmmsg` calls per wake-up (of up to `recv::BATCH` datagrams each) before the engine sends
/// what they produced.
const RECV_ROUNDS: usize = 2;
/// Rounds of kicks per turn (`kick_dirty`): the packets' subscribers, then what kicking them asked.
const KICK_ROUNDS: usize = 4;
/// Commands taken before each turn's packets (the rest wait for the next turn, so a burst of
/// offers cannot stall media).
const COMMANDS_PER_TURN: usize = 256;
/// How late a session is seen to when only its pacer asked (see `drive`).
const PACER_LAG: Duration = Duration::from_millis(50);
/// How often the engine retries backlogged events and checks unanswered offers.
const SWEEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

#[derive(Debug)]
struct TrackOut {
    origin: ParticipantId,
    origin_mid: Mid,
    kind: MediaKind,
    state: OutState,
}

impl TrackOut {
    /// Stops this outgoing track. One not yet offered just goes (false: drop it); one offered or
    /// open is marked for the renegotiation that stops it (true: keep it until then).
    fn stop(&mut self) -> bool {
        match self.state {
            OutState::ToOpen => false,
            OutState::Negotiating(m) | OutState::Open(m) => {
                self.state = OutState::ToStop(m);
                true
            }
            OutState::ToStop(_) | OutState::NegotiatingStop(_) => true,
        }
    }
}

/// A track a client sends.
#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// The SSRC seen on it (learnt from str0m on the first packet).
    ssrc: Option<Ssrc>,
    last_keyframe_request: Option<Instant>,
    /// Moves each time a rule starts dropping this track, so subscribers' numbering resyncs.
    epoch: u32,
    dropping: bool,
}

struct Peer {
    key: PeerKey,
    /// The room's rule, kept here so the forwarding path reads a field, not a map.
    rule: MediaRule,
    rtc: Rtc,
    /// Tracks the client sends.
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    /// Open outgoing streams by their origin: the per-packet lookup, and the numbering state.
    out_by_origin: FxHashMap<(ParticipantId, Mid), OutStream>,
    pending: Option<SdpPendingOffer>,
    /// When the pending offer was sent.
    pending_since: Option<Instant>,
    /// M-lines stopped in this session (they stay in its SDP).
    stopped_mlines: usize,
    /// A `media_restart` was sent: no renegotiation until the client's fresh offer.
    restarting: bool,
    /// Connection state and figures (reach).
    quality: super::quality::Quality,
    /// The client's DTLS fingerprint: a later offer with the same one renegotiates this session.
    fingerprint: Option<String>,
}

/// Whether `sub` gets a track for `origin`'s media of this kind at all. Tracks that no rule lets
/// through are not negotiated: a waiting member learns nobody's presence from SDP, and nobody
/// learns theirs.
fn wanted(origin: &MediaRule, sub: &MediaRule, kind: MediaKind) -> bool {
    origin.publishes
        && sub.receives
        && match kind {
            MediaKind::Audio => true,
            MediaKind::Video => match origin.video {
                VideoAudience::Everyone => true,
                VideoAudience::Facilitators => sub.receives_private_video,
                VideoAudience::Nobody => false,
            },
        }
}

/// The parts of a rule that decide which tracks exist (not mute, which only gates packets).
fn shape(r: &MediaRule) -> (bool, bool, VideoAudience, bool) {
    (r.publishes, r.receives, r.video, r.receives_private_video)
}

pub(super) struct Engine {
    socket: tokio::net::UdpSocket,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_key: HashMap<PeerKey, usize>,
    demux: Demux,
    outbox: Outbox,
    meetings: HashMap<Arc<str>, Vec<usize>>,
    /// Rules by participant: they may arrive before the participant's first offer.
    rules: HashMap<PeerKey, MediaRule>,
    timers: Timers,
    speakers: HashMap<Arc<str>, Speakers>,
    /// This engine's forwarded-packets counter, and this turn's figures (added once per turn).
    forwarded: prometheus_client::metrics::counter::Counter,
    forwarded_turn: u64,
    bytes_turn: u64,
    /// Datagrams of this turn, sent together at its end.
    batch: SendBatch,
    /// RTP packets received this turn, with the session they came from, forwarded at its end
    /// (`forward_turn`).
    rtp: Vec<(usize, RtpPacket)>,
    /// Sessions to kick and poll until they have nothing more to do (`kick_dirty`).
    dirty: Vec<usize>,
    /// Sessions RTP was written to since their last kick, once per packet (`kick_dirty`).
    written: Vec<usize>,
    /// ICE over TCP (reach): connections and their sessions.
    tcp: super::tcp::TcpSide,
    /// The TURN relay's sockets: sessions through them count as `relay`.
    relays: super::RelayAddrs,
}

/// An SRTP packet rather than SRTCP, STUN or DTLS (RFC 7983 and RFC 5761: version 2, and a
/// second byte outside RTCP's packet types 192–223).
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [b0, b1, ..] if (128..192).contains(b0) && !(192..224).contains(b1))
}

fn send_event(outbox: &mut Outbox, key: &PeerKey, event: Event, request_id: Option<Arc<str>>) {
    outbox
        .send(&key.meeting, SfuEvent::Media { participant_id: key.participant_id, event: Box::new(event), request_id });
}

fn media_error(message: String) -> Event {
    Event::Error { code: ErrorCode::InvalidMedia, message, suggestion: None }
}

impl Engine {
    pub(super) fn new(
        socket: tokio::net::UdpSocket,
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        forwarded: prometheus_client::metrics::counter::Counter,
        tcp: super::tcp::TcpSide,
        relays: super::RelayAddrs,
    ) -> Engine {
        Engine {
            tcp,
            relays,
            forwarded,
            forwarded_turn: 0,
            bytes_turn: 0,
            socket,
            addr,
            metrics,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            peers: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            demux: Demux::default(),
            outbox: Outbox::default(),
            meetings: HashMap::new(),
            rules: HashMap::new(),
            timers: Timers::default(),
            speakers: HashMap::new(),
            rtp: Vec::new(),
            batch: SendBatch::default(),
            dirty: Vec::new(),
            written: Vec::new(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<SfuCmd>) {
        let mut inbox = super::recv::RecvBatch::default();
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + if self.outbox.has_backlog() { SWEEP } else { Duration::from_secs(1) };
                self.outbox.flush();
                self.unanswered(now);
                self.quality_sweep(now);
            }
            // Rules (and every other command) already sent apply before more packets are read: a
            // mute or a move to a side room holds from the next packet on, not a few turns later.
            for _ in 0..COMMANDS_PER_TURN {
                match rx.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let deadline = self.next_deadline().min(next_sweep);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                r = self.socket.readable() => {
                    if r.is_ok() {
                        // Whatever is already waiting, in the same turn (one send batch for all).
                        for _ in 0..RECV_ROUNDS {
                            let n = inbox.recv(&self.socket);
                            for i in 0..n {
                                if let Some((d, from)) = inbox.get(i) {
                                    self.packet(d, from);
                                }
                            }
                            if n < super::recv::BATCH {
                                break;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => self.timeouts(),
                m = self.tcp.recv() => self.tcp_input(m),
            }
            self.forward_turn();
            if !self.batch.is_empty() {
                let (_, calls) = self.batch.flush(&self.socket);
                self.metrics.media_send_calls.inc_by(calls as u64);
            }
            if self.forwarded_turn > 0 {
                self.metrics.media_packets_forwarded.inc_by(self.forwarded_turn);
                self.metrics.media_bytes_forwarded.inc_by(self.bytes_turn);
                self.forwarded.inc_by(self.forwarded_turn);
                (self.forwarded_turn, self.bytes_turn) = (0, 0);
            }
        }
    }

    fn next_deadline(&mut self) -> Instant {
        self.timers.next().unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        while let Some(idx) = self.timers.pop_due(now) {
            self.kick(idx, now);
        }
    }

    /// Offers unanswered for too long: restart those sessions.
    fn unanswered(&mut self, now: Instant) {
        let stale: Vec<usize> = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let p = p.as_ref()?;
                (!p.restarting && p.pending_since.is_some_and(|t| now.duration_since(t) >= ANSWER_TIMEOUT)).then_some(i)
            })
            .collect();
        for i in stale {
            self.restart(i);
        }
    }

    /// Asks the client for a fresh session (`media_restart`); renegotiation waits for its offer.
    fn restart(&mut self, idx: usize) {
        let Some(p) = self.peers[idx].as_mut() else { return };
        if p.restarting {
            return;
        }
        p.restarting = true;
        p.pending = None;
        p.pending_since = None;
        self.metrics.media_restarts.inc();
        send_event(&mut self.outbox, &p.key, Event::MediaRestart {}, None);
    }

    fn packet(&mut self, data: &[u8], source: SocketAddr) {
        let Some(route) = self.demux.route(data, source) else { return };
        self.receive(data, source, Protocol::Udp, self.addr, route);
    }

    /// ICE-TCP (reach): a connection's frame is routed like a datagram, by its connection's
    /// remote address, else by the STUN USERNAME.
    fn tcp_input(&mut self, m: super::tcp::TcpIn) {
        use super::tcp::TcpIn;
        match m {
            TcpIn::Open { source, tx } => self.tcp.opened(source, tx),
            TcpIn::Closed { source } => self.tcp.closed(source),
            TcpIn::Frame { source, data } => {
                let Some(destination) = self.tcp.addr else { return };
                let route = match self.tcp.session(source) {
                    Some(i) => Route::Known(i),
                    None => match self.demux.route_by_ufrag(&data) {
                        Some(i) => Route::New(i),
                        None => return,
                    },
                };
                self.receive(&data, source, Protocol::Tcp, destination, route);
            }
        }
        self.forward_turn();
        if !self.batch.is_empty() {
            let (_, calls) = self.batch.flush(&self.socket);
            self.metrics.media_send_calls.inc_by(calls as u64);
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr, proto: Protocol, destination: SocketAddr, route: Route) {
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(Instant::now(), Receive { proto, source, destination, contents });
        let idx = match route {
            Route::Known(i) | Route::New(i) => i,
        };
        if !self.peers.get(idx).and_then(Option::as_ref).is_some_and(|p| p.rtc.accepts(&input)) {
            return;
        }
        if let Route::New(i) = route {
            match proto {
                Protocol::Udp => self.demux.learn(source, i),
                _ => self.tcp.learn(source, i),
            }
        }
        if let Some(p) = self.peers[idx].as_mut() {
            if p.rtc.handle_input(input).is_err() {
                p.rtc.disconnect();
            }
        }
        self.drive(idx);
    }

    /// Polls a peer until it has nothing more to do now; the RTP it received is forwarded at the
    /// end of the turn (`forward_turn`).
    fn drive(&mut self, idx: usize) {
        self.drive_until(idx, usize::MAX);
    }

    /// Polls a peer until it has nothing more to do now, or until it has sent `rtp` RTP packets:
    /// a subscriber kicked for the packets just written to it stops there, without the last
    /// poll that would only say when it next wants time (the most expensive poll: it asks every
    /// part of the session). Its timer keeps the deadline of its last full poll; writing RTP does
    /// not make a session's own deadlines earlier (the pacer's are pushed back anyway, above), and
    /// anything else it queued goes out at its next kick or timer.
    fn drive_until(&mut self, idx: usize, mut rtp: usize) {
        let mut new_tracks: Vec<(Mid, MediaKind)> = Vec::new();
        let mut keyframes: Vec<(Mid, KeyframeRequestKind)> = Vec::new();
        let mut reports: Vec<super::quality::Report> = Vec::new();
        if let Some(p) = self.peers.get_mut(idx).and_then(Option::as_mut) {
            loop {
                if !p.rtc.is_alive() {
                    break;
                }
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        // Told apart only when counting (a kicked subscriber).
                        let counted = rtp != usize::MAX && is_rtp(&t.contents);
                        match t.proto {
                            Protocol::Udp => self.batch.push(t.destination, t.contents.into()),
                            _ => self.tcp.send(t.destination, &t.contents),
                        }
                        if counted {
                            rtp -= 1;
                            if rtp == 0 {
                                break;
                            }
                        }
                    }
                    Ok(Output::Timeout(t)) => {
                        // After each send str0m's pacer asks for `handle_timeout` at once (a time
                        // already past) before it polls its queues again. Every packet written to
                        // a session brings one anyway (`kick`), so a session only its pacer wants
                        // is seen to a little later, not once more per packet sent.
                        let t = if matches!(p.rtc.last_timeout_reason(), Reason::Pacer(_)) {
                            t.max(Instant::now() + PACER_LAG)
                        } else {
                            t
                        };
                        self.timers.set(idx, t);
                        break;
                    }
                    Ok(Output::Event(e)) => match e {
                        RtcEvent::MediaAdded(m) => {
                            if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) {
                                p.tracks_in.push(TrackIn {
                                    mid: m.mid,
                                    kind: m.kind,
                                    ssrc: None,
                                    last_keyframe_request: None,
                                    epoch: 0,
                                    dropping: false,
                                });
                                new_tracks.push((m.mid, m.kind));
                            }
                        }
                        RtcEvent::RtpPacket(d) => self.rtp.push((idx, d)),
                        RtcEvent::KeyframeRequest(r) => keyframes.push((r.mid, r.kind)),
                        RtcEvent::IceConnectionStateChange(s) => {
                            reports.extend(p.quality.ice(s, Instant::now(), &self.metrics))
                        }
                        RtcEvent::PeerStats(s) => {
                            let relayed = s
                                .selected_candidate_pair
                                .as_ref()
                                .is_some_and(|c| self.relays.contains(&c.remote.addr));
                            reports.extend(p.quality.stats(&s, relayed, &self.metrics))
                        }
                        _ => {}
                    },
                    Err(_) => {
                        p.rtc.disconnect();
                        break;
                    }
                }
            }
        }
        self.report_quality(idx, reports);
        for (mid, kind) in new_tracks {
            self.announce_track(idx, mid, kind);
        }
        for (mid, kind) in keyframes {
            self.relay_keyframe_request(idx, mid, kind);
        }
    }

    /// Forwards the packets the turn received, publisher by publisher: all of one publisher's
    /// packets (a video frame's, which arrive together in one `recvmmsg` batch) are written to
    /// each subscriber, then each subscriber is kicked once, so a burst costs a subscriber one
    /// `handle_timeout` and one poll, not one per packet. A lone packet is forwarded and its
    /// subscribers kicked right after (each session's state still in cache).
    fn forward_turn(&mut self) {
        // Kicks do not normally release RTP (only a received datagram does); the bound keeps a
        // surprise from looping, leaving anything left for the next turn.
        for _ in 0..KICK_ROUNDS {
            if self.rtp.is_empty() {
                break;
            }
            let mut turn = std::mem::take(&mut self.rtp);
            let mut i = 0;
            while i < turn.len() {
                let from = turn[i].0;
                while i < turn.len() && turn[i].0 == from {
                    self.forward(from, &turn[i].1);
                    i += 1;
                }
                self.kick_dirty();
            }
            // Keep the allocation; kicks may have queued more (rarely: a session driven again).
            turn.clear();
            turn.append(&mut self.rtp);
            self.rtp = turn;
        }
        self.kick_dirty();
    }

    /// Kicks every session something was written to since the last call, once each: a
    /// subscriber is polled until the RTP written to it has gone out, a session that needs more
    /// (a publisher asked for a keyframe, a renegotiation) until it has nothing more to do. A kick
    /// can make more work (a keyframe request relayed to a publisher); that is kicked in the next
    /// round, a few rounds at most, the rest at the end of the turn.
    fn kick_dirty(&mut self) {
        for _ in 0..KICK_ROUNDS {
            if self.dirty.is_empty() && self.written.is_empty() {
                return;
            }
            let now = Instant::now();
            // One entry per packet written: a session's run is the number of packets it got.
            let mut written = std::mem::take(&mut self.written);
            written.sort_unstable();
            for run in written.chunk_by(|a, b| a == b) {
                self.kick_for(run[0], now, run.len());
            }
            written.clear();
            written.append(&mut self.written);
            self.written = written;
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for s in dirty.drain(..) {
                self.kick(s, now);
            }
            // Keep the allocation: `kick` may have pushed to the new `self.dirty`.
            dirty.append(&mut self.dirty);
            self.dirty = dirty;
        }
    }

    /// Moves a peer's clock to `now`, then drives it. str0m sends what `write_rtp` queued only
    /// once its time moves (`handle_timeout` stamps the queued packets and releases them): without
    /// this, every forwarded packet would wait for the subscriber's own timer, a second turn of
    /// the loop, a heap entry and a second full poll per subscriber.
    fn kick(&mut self, idx: usize, now: Instant) {
        self.kick_for(idx, now, usize::MAX);
    }

    /// `kick`, polling only until `rtp` RTP packets went out (`drive_until`).
    fn kick_for(&mut self, idx: usize, now: Instant, rtp: usize) {
        if let Some(p) = self.peers.get_mut(idx).and_then(Option::as_mut) {
            if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                p.rtc.disconnect();
            }
        }
        self.drive_until(idx, rtp);
    }

    /// The forwarding path: one incoming RTP packet to every subscriber the rule allows, without
    /// depacketising; per subscriber a hash lookup, the numbering rewrite and one `write_rtp`
    /// that shares the payload (`Arc<[u8]>`).
    fn forward(&mut self, from: usize, d: &RtpPacket) {
        let Some(p) = self.peers[from].as_mut() else { return };
        let ssrc = d.header.ssrc;
        let ti = match p.tracks_in.iter().position(|t| t.ssrc == Some(ssrc)) {
            Some(i) => i,
            None => {
                // First packet of this SSRC: str0m knows its m-line.
                let Some(mid) = p.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else { return };
                let Some(i) = p.tracks_in.iter().position(|t| t.mid == mid) else { return };
                p.tracks_in[i].ssrc = Some(ssrc);
                i
            }
        };
        let rule = p.rule;
        let origin = p.key.participant_id;
        let track = &mut p.tracks_in[ti];
        let (mid, kind) = (track.mid, track.kind);
        let allowed = match kind {
            MediaKind::Audio => rule.audio,
            MediaKind::Video => rule.video != VideoAudience::Nobody,
        };
        if !allowed {
            if !track.dropping {
                track.dropping = true;
                track.epoch = track.epoch.wrapping_add(1);
            }
            self.metrics.media_packets_dropped.inc();
            // Dropped by rule: whoever is muted is not the active speaker any more.
            if kind == MediaKind::Audio {
                if let Some(change) = self.speakers.get_mut(&p.key.meeting).and_then(|s| s.silenced(origin)) {
                    self.outbox.send(&p.key.meeting, SfuEvent::ActiveSpeaker { participant_id: change });
                }
            }
            return;
        }
        track.dropping = false;
        let epoch = track.epoch;
        let in_pt = d.header.payload_type;
        let Some(params) = p.rtc.codec_config().find(|c| c.pt() == in_pt).copied() else { return };
        let clock = params.spec().clock_rate.get();
        let Some(members) = self.meetings.get(&p.key.meeting) else { return };
        let level = d.header.ext_vals.audio_level;
        // The active speaker is the main room's: a side room's voices are its own.
        if kind == MediaKind::Audio && rule.location == crate::room::MAIN {
            if let Some(level) = level {
                self.speakers.entry(p.key.meeting.clone()).or_default().heard(origin, level);
            }
        }
        let ext = ExtensionValues {
            audio_level: level,
            voice_activity: d.header.ext_vals.voice_activity,
            ..Default::default()
        };
        let now = Instant::now();
        for &s in members {
            if s == from {
                continue;
            }
            let Some(sub) = self.peers[s].as_mut() else { continue };
            let sub_rule = sub.rule;
            // One comparison per subscriber: media stays within a room of the meeting.
            if !sub_rule.receives
                || sub_rule.location != rule.location
                || (kind == MediaKind::Video
                    && rule.video == VideoAudience::Facilitators
                    && !sub_rule.receives_private_video)
            {
                continue;
            }
            let Some(out) = sub.out_by_origin.get_mut(&(origin, mid)) else { continue };
            let pt = match out.pts.iter().find(|(i, _)| *i == in_pt) {
                Some(&(_, o)) => o,
                None => {
                    let Some(o) = sub.rtc.codec_config().match_params(params).map(|p| p.pt()) else { continue };
                    out.pts.push((in_pt, o));
                    o
                }
            };
            let (seq, ts) = out.map(epoch, *d.seq_no, d.header.timestamp, clock, now);
            let mut api = sub.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out.mid, None) else { continue };
            let w = RtpWrite::new(pt, SeqNo::from(seq), ts, d.timestamp, d.payload.clone())
                .marker(d.header.marker)
                .ext_vals(ext.clone())
                .nackable(kind == MediaKind::Video);
            tx.write_rtp(w);
            self.forwarded_turn += 1;
            self.bytes_turn += d.payload.len() as u64;
            self.written.push(s);
        }
        self.announce_speaker(from);
    }

    fn announce_speaker(&mut self, from: usize) {
        let Some(p) = self.peers[from].as_ref() else { return };
        let Some(s) = self.speakers.get_mut(&p.key.meeting) else { return };
        if let Some(change) = s.tick(Instant::now()) {
            self.outbox.send(&p.key.meeting, SfuEvent::ActiveSpeaker { participant_id: change });
        }
    }

    fn relay_keyframe_request(&mut self, sub: usize, out_mid: Mid, kind: KeyframeRequestKind) {
        let Some(s) = self.peers[sub].as_ref() else { return };
        let Some(t) = s.tracks_out.iter().find(|t| matches!(t.state, OutState::Open(m) if m == out_mid)) else {
            return;
        };
        let (origin, origin_mid) = (t.origin, t.origin_mid);
        let key = PeerKey { meeting: s.key.meeting.clone(), participant_id: origin };
        let Some(&o) = self.by_key.get(&key) else { return };
        let Some(pub_peer) = self.peers[o].as_mut() else { return };
        let Some(track) = pub_peer.tracks_in.iter_mut().find(|t| t.mid == origin_mid) else { return };
        let now = Instant::now();
        if track.last_keyframe_request.is_some_and(|last| now.duration_since(last) < KEYFRAME_INTERVAL) {
            return;
        }
        track.last_keyframe_request = Some(now);
        if let Some(rx) = pub_peer.rtc.direct_api().stream_rx_by_mid(origin_mid, None) {
            rx.request_keyframe(kind);
        }
        self.dirty.push(o);
    }

    /// A new incoming track at `idx`: every other peer of the meeting whose rule allows it gets
    /// an outgoing one.
    fn announce_track(&mut self, idx: usize, mid: Mid, kind: MediaKind) {
        let Some(p) = self.peers[idx].as_ref() else { return };
        let (origin, origin_rule) = (p.key.participant_id, p.rule);
        let members = self.meetings.get(&p.key.meeting).cloned().unwrap_or_default();
        for s in members {
            if s == idx {
                continue;
            }
            if let Some(sub) = self.peers[s].as_mut() {
                if wanted(&origin_rule, &sub.rule, kind) {
                    sub.tracks_out.push(TrackOut { origin, origin_mid: mid, kind, state: OutState::ToOpen });
                }
            }
            self.negotiate(s);
        }
    }

    /// Brings `sub`'s outgoing tracks in line with the rules: opens what is now allowed, stops
    /// what is not.
    fn sync_tracks(&mut self, sub: usize) {
        let Some(sp) = self.peers[sub].as_ref() else { return };
        let members = self.meetings.get(&sp.key.meeting).cloned().unwrap_or_default();
        let mut want: Vec<(ParticipantId, Mid, MediaKind)> = Vec::new();
        for &o in &members {
            if o == sub {
                continue;
            }
            let Some(op) = self.peers[o].as_ref() else { continue };
            for t in &op.tracks_in {
                if wanted(&op.rule, &sp.rule, t.kind) {
                    want.push((op.key.participant_id, t.mid, t.kind));
                }
            }
        }
        let Some(sp) = self.peers[sub].as_mut() else { return };
        let live = |t: &TrackOut| matches!(t.state, OutState::ToOpen | OutState::Negotiating(_) | OutState::Open(_));
        sp.tracks_out.retain_mut(|t| {
            if !live(t) || want.iter().any(|w| (w.0, w.1) == (t.origin, t.origin_mid)) {
                return true;
            }
            t.stop()
        });
        let stopping: Vec<(ParticipantId, Mid)> =
            sp.tracks_out.iter().filter(|t| !live(t)).map(|t| (t.origin, t.origin_mid)).collect();
        sp.out_by_origin.retain(|k, _| !stopping.contains(k));
        for (origin, origin_mid, kind) in want {
            if !sp.tracks_out.iter().any(|t| live(t) && (t.origin, t.origin_mid) == (origin, origin_mid)) {
                sp.tracks_out.push(TrackOut { origin, origin_mid, kind, state: OutState::ToOpen });
            }
        }
        self.negotiate(sub);
    }

    /// Sends a renegotiation offer for queued track changes, unless one is already pending. A
    /// session whose SDP would keep growing is restarted instead.
    fn negotiate(&mut self, idx: usize) {
        let Some(p) = self.peers[idx].as_mut() else { return };
        if p.pending.is_some() || p.restarting {
            return;
        }
        let stopping = p.tracks_out.iter().filter(|t| matches!(t.state, OutState::ToStop(_))).count();
        if stopping > 0 && p.stopped_mlines + stopping > MAX_STOPPED_MLINES {
            return self.restart(idx);
        }
        let mut change = p.rtc.sdp_api();
        for t in &mut p.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let mid = change.add_media(
                        t.kind,
                        Direction::SendOnly,
                        Some(t.origin.to_string()),
                        Some(format!("{}-{}", t.origin, t.origin_mid)),
                        None,
                    );
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else { return };
        p.pending = Some(pending);
        p.pending_since = Some(Instant::now());
        let sdp = super::sdp::candidates_in_every_section(&offer.to_sdp_string());
        send_event(&mut self.outbox, &p.key, Event::MediaOffer { sdp }, None);
        self.dirty.push(idx);
    }

    fn command(&mut self, cmd: SfuCmd) {
        match cmd {
            SfuCmd::Offer { key, sdp, request_id, events } => self.offer(key, &sdp, request_id, events),
            SfuCmd::Answer { key, sdp } => self.answer(&key, &sdp),
            SfuCmd::Candidate { key, candidate } => {
                let Some(&idx) = self.by_key.get(&key) else { return };
                let line = candidate.trim().trim_start_matches("a=");
                match Candidate::from_sdp_string(line) {
                    Ok(c) => {
                        if let Some(p) = self.peers[idx].as_mut() {
                            p.rtc.add_remote_candidate(c);
                        }
                        self.drive(idx);
                    }
                    Err(e) => {
                        let e = media_error(format!("ICE candidate not understood: {e}"));
                        send_event(&mut self.outbox, &key, e, None);
                    }
                }
            }
            SfuCmd::Rule { key, rule } => {
                self.rules.insert(key.clone(), rule);
                let Some(&idx) = self.by_key.get(&key) else { return };
                let Some(p) = self.peers[idx].as_mut() else { return };
                let reshaped = shape(&p.rule) != shape(&rule);
                if p.rule.location != rule.location {
                    // Moved to another room of the meeting: packets were (and will be) skipped
                    // between it and others, so every stream it sends or gets continues its
                    // numbering without a gap when it is heard again.
                    for t in &mut p.tracks_in {
                        t.epoch = t.epoch.wrapping_add(1);
                    }
                    for o in p.out_by_origin.values_mut() {
                        o.resync();
                    }
                }
                p.rule = rule;
                if reshaped {
                    // Who may get whose tracks changed: every member of the meeting re-checks.
                    let members = self.meetings.get(&key.meeting).cloned().unwrap_or_default();
                    for s in members {
                        self.sync_tracks(s);
                        self.drive(s);
                    }
                }
            }
            SfuCmd::Close { key } => {
                self.remove_peer(&key);
                self.rules.remove(&key);
            }
            SfuCmd::Stats(reply) => {
                let live = self.peers.iter().flatten();
                let (mut tracks_in, mut tracks_out) = (0, 0);
                for p in live {
                    tracks_in += p.tracks_in.len();
                    tracks_out += p.tracks_out.len();
                }
                let _ = reply.send(SfuStats {
                    peers: self.by_key.len(),
                    rules: self.rules.len(),
                    meetings: self.meetings.len(),
                    addresses: self.demux.addresses(),
                    tcp_connections: self.tcp.connections(),
                    tracks_in,
                    tracks_out,
                    backlog: self.outbox.backlog_len(),
                });
            }
        }
    }

    fn offer(&mut self, key: PeerKey, sdp: &str, request_id: Option<Arc<str>>, events: mpsc::Sender<SfuEvent>) {
        // An offer from the session's own peer connection (an ICE restart) keeps the session.
        if self.client_renegotiation(&key, sdp, &request_id) {
            return;
        }
        // Any other offer starts a fresh session: a resumed or reloaded client brings new ICE and
        // DTLS. (Released first: the meeting's channel is forgotten when its last session goes.)
        self.remove_peer(&key);
        let client_fingerprint = fingerprint(sdp);
        self.outbox.register(&key.meeting, events);
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                let e = media_error(format!("SDP offer not understood: {e}"));
                return send_event(&mut self.outbox, &key, e, request_id);
            }
        };
        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            // RTP mode: packets are forwarded as they came, not reassembled into frames.
            .set_rtp_mode(true)
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_stats_interval(Some(super::quality::STATS_INTERVAL))
            .build(Instant::now());
        let Ok(candidate) = Candidate::host(self.addr, "udp") else { return };
        rtc.add_local_candidate(candidate);
        if let Some(c) = self.tcp.addr.and_then(super::tcp::passive_candidate) {
            rtc.add_local_candidate(c);
        }
        let answer: SdpAnswer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                let e = media_error(format!("SDP offer refused: {e}"));
                return send_event(&mut self.outbox, &key, e, request_id);
            }
        };
        let sdp = super::sdp::candidates_in_every_section(&answer.to_sdp_string());
        send_event(&mut self.outbox, &key, Event::MediaAnswer { sdp }, request_id);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.peers.push(None);
                self.peers.len() - 1
            }
        };
        self.demux.add_session(&rtc.direct_api().local_ice_credentials().ufrag, idx);
        self.meetings.entry(key.meeting.clone()).or_default().push(idx);
        self.by_key.insert(key.clone(), idx);
        let rule = self.rules.get(&key).copied().unwrap_or_default();
        self.peers[idx] = Some(Peer {
            rule,
            key,
            rtc,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            out_by_origin: FxHashMap::default(),
            pending: None,
            pending_since: None,
            stopped_mlines: 0,
            restarting: false,
            quality: super::quality::Quality::new(Instant::now(), &self.metrics),
            fingerprint: client_fingerprint,
        });
        self.metrics.media_participants.inc();
        self.drive(idx);
        // Outgoing tracks for everything the meeting's others send that the rule lets through.
        self.sync_tracks(idx);
        self.drive(idx);
    }

    fn answer(&mut self, key: &PeerKey, sdp: &str) {
        let Some(&idx) = self.by_key.get(key) else { return };
        let Some(p) = self.peers[idx].as_mut() else { return };
        let Some(pending) = p.pending.take() else { return };
        p.pending_since = None;
        let refused = match SdpAnswer::from_sdp_string(sdp) {
            Ok(answer) => match p.rtc.sdp_api().accept_answer(pending, answer) {
                Ok(()) => None,
                Err(e) => Some(format!("SDP answer refused: {e}")),
            },
            Err(e) => Some(format!("SDP answer not understood: {e}")),
        };
        if let Some(message) = refused {
            // The offer is gone with the refused answer; only a fresh session can bring the
            // client back in step, so say so rather than stall.
            send_event(&mut self.outbox, key, media_error(message), None);
            return self.restart(idx);
        }
        let mut stopped = 0;
        for t in &mut p.tracks_out {
            match t.state {
                OutState::Negotiating(m) => {
                    t.state = OutState::Open(m);
                    p.out_by_origin.insert((t.origin, t.origin_mid), OutStream::new(m));
                }
                OutState::NegotiatingStop(_) => stopped += 1,
                _ => {}
            }
        }
        p.stopped_mlines += stopped;
        p.tracks_out.retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        self.negotiate(idx);
        self.drive(idx);
    }

    /// Releases a participant's session: its slot, addresses, and its tracks at everyone else.
    fn remove_peer(&mut self, key: &PeerKey) {
        let Some(idx) = self.by_key.remove(key) else { return };
        let Some(mut p) = self.peers[idx].take() else { return };
        p.rtc.disconnect();
        p.quality.release(&self.metrics);
        self.free.push(idx);
        self.timers.clear(idx);
        self.demux.remove_session(idx);
        self.tcp.forget_session(idx);
        self.metrics.media_participants.dec();
        let origin = key.participant_id;
        let members = match self.meetings.get_mut(&key.meeting) {
            Some(m) => {
                m.retain(|&i| i != idx);
                m.clone()
            }
            None => Vec::new(),
        };
        if members.is_empty() {
            self.meetings.remove(&key.meeting);
            self.speakers.remove(&key.meeting);
            self.outbox.release(&key.meeting);
        }
        for s in members {
            let Some(sub) = self.peers[s].as_mut() else { continue };
            sub.out_by_origin.retain(|(o, _), _| *o != origin);
            sub.tracks_out.retain_mut(|t| t.origin != origin || t.stop());
            self.negotiate(s);
            self.drive(s);
        }
    }
}

/// The `a=fingerprint` of an SDP: which DTLS identity (which peer connection) it comes from.
fn fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=fingerprint:")).map(|f| f.trim().to_ascii_lowercase())
}

// ---- reach (issue 14): ICE restart and connection quality -------------------------------------

impl Engine {
    /// An offer from the participant's current peer connection (same DTLS fingerprint): an ICE
    /// restart after a network change, or a renegotiation the client started. The session, its
    /// tracks at everyone else's and its place stay; only ICE (and any new m-line) changes. Our
    /// own unanswered offer, if any, is rolled back (the client's offer wins) and made again.
    /// False: not such an offer; the caller starts a fresh session.
    fn client_renegotiation(&mut self, key: &PeerKey, sdp: &str, request_id: &Option<Arc<str>>) -> bool {
        let Some(&idx) = self.by_key.get(key) else { return false };
        let Some(p) = self.peers[idx].as_mut() else { return false };
        let fp = fingerprint(sdp);
        if p.restarting || fp.is_none() || fp != p.fingerprint {
            return false;
        }
        let Ok(offer) = SdpOffer::from_sdp_string(sdp) else { return false };
        if p.pending.take().is_some() {
            p.pending_since = None;
            for t in &mut p.tracks_out {
                t.state = match t.state {
                    OutState::Negotiating(_) => OutState::ToOpen,
                    OutState::NegotiatingStop(m) => OutState::ToStop(m),
                    s => s,
                };
            }
        }
        match p.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => {
                let sdp = super::sdp::candidates_in_every_section(&answer.to_sdp_string());
                send_event(&mut self.outbox, &p.key, Event::MediaAnswer { sdp }, request_id.clone());
                // After an ICE restart the client's checks name our new ufrag.
                let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag.clone();
                self.demux.add_session(&ufrag, idx);
                self.metrics.media_ice_restarts.inc();
            }
            Err(e) => {
                let e = media_error(format!("SDP offer refused: {e}"));
                send_event(&mut self.outbox, key, e, request_id.clone());
                self.restart(idx);
            }
        }
        self.drive(idx);
        self.negotiate(idx);
        self.drive(idx);
        true
    }

    /// Sends a session's quality reports to its meeting's actor (which tells facilitators and the
    /// participant, nobody else).
    fn report_quality(&mut self, idx: usize, reports: Vec<super::quality::Report>) {
        let Some(p) = self.peers.get(idx).and_then(Option::as_ref) else { return };
        for (state, loss_percent, rtt_ms) in reports {
            let participant_id = p.key.participant_id;
            self.outbox.send(&p.key.meeting, SfuEvent::Quality { participant_id, state, loss_percent, rtt_ms });
        }
    }

    /// Sessions that never connected: reported failed.
    fn quality_sweep(&mut self, now: Instant) {
        for idx in 0..self.peers.len() {
            let Some(p) = self.peers[idx].as_mut() else { continue };
            if let Some(r) = p.quality.sweep(now, &self.metrics) {
                self.report_quality(idx, vec![r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtp;

    #[test]
    fn rtp_is_told_from_rtcp_stun_and_dtls() {
        // Opus (PT 111) with and without the marker bit; VP8 (PT 96) with it.
        assert!(is_rtp(&[0x80, 111, 0, 1]));
        assert!(is_rtp(&[0x80, 111 | 0x80, 0, 1]));
        assert!(is_rtp(&[0x90, 96 | 0x80, 0, 1]));
        // RTCP sender report (200), receiver report (201), transport feedback (205).
        for pt in [200, 201, 205] {
            assert!(!is_rtp(&[0x80, pt, 0, 6]));
        }
        // STUN binding request, DTLS handshake record, too short.
        assert!(!is_rtp(&[0x00, 0x01, 0, 0]));
        assert!(!is_rtp(&[22, 0xfe, 0xfd]));
        assert!(!is_rtp(&[0x80]));
    }
}
