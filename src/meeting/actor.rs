//! The room actor: one tokio task per live meeting.
//!
//! It owns the meeting's [`Room`], receives commands on a bounded channel and carries out the
//! effects: events to each participant's bounded outbound queue (with a per-participant `seq` and
//! a replay buffer for resume), timers, closes, records for the store. There are no locks around
//! room state: only this task touches it. A participant whose queue is full is cut off (their seat
//! is held for the grace period like any dropped connection), so a slow client never stalls a room.

pub use super::conn::{event_body, render_frame, CloseReason, ConnHandle, ConnId, Outbound};
use super::registry::Rooms;
use crate::attendance::credit::Kind;
use crate::journal::{AuditRecord, Journal, Record};
use crate::metrics::Metrics;
use crate::protocol::{Command, ErrorCode, Event, ParticipantId, ProtocolError, Role};
use crate::room::{Audience, Effect, Input, MemberKey, Millis, Outcome, Presence, Room, Timer};
use crate::store::PresenceRow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Why a join or resume did not attach the connection.
#[derive(Debug)]
pub enum JoinFailure {
    /// Refused; the error was already sent to the connection.
    Refused,
    /// The actor stopped meanwhile; resolve the meeting again and retry.
    Retry,
    /// Cluster mode: the meeting moved to another node meanwhile; the client tries again (its
    /// next connection reaches the new owner).
    Moved,
}

/// Messages to a room actor.
#[derive(Debug)]
pub enum ActorMsg {
    /// Before a WebSocket upgrade: would this member be let in?
    Precheck {
        member: MemberKey,
        role: Role,
        reply: oneshot::Sender<Option<ProtocolError>>,
    },
    Join {
        conn: ConnHandle,
        member: MemberKey,
        role: Role,
        display_name: Option<String>,
        request_id: Option<Arc<str>>,
        reply: oneshot::Sender<Result<ParticipantId, JoinFailure>>,
    },
    Resume {
        conn: ConnHandle,
        resume_token: String,
        last_seq: u64,
        request_id: Option<Arc<str>>,
        reply: oneshot::Sender<Result<ParticipantId, JoinFailure>>,
    },
    Command {
        conn_id: ConnId,
        from: ParticipantId,
        command: Command,
        request_id: Option<Arc<str>>,
    },
    ConnectionClosed {
        conn_id: ConnId,
        participant_id: ParticipantId,
    },
    /// The program deleted the meeting: end it for everyone.
    End,
    /// The server is stopping.
    Shutdown {
        done: oneshot::Sender<()>,
    },
    /// Cluster mode: another node took this meeting's lease. Close every connection (clients
    /// resume, and reach the new owner) and stop without writing anything more.
    LeaseLost,
    /// Cluster mode, draining: write a final snapshot, give the lease up, move everyone on.
    Handover {
        done: oneshot::Sender<()>,
    },
    /// Replies with a copy of the room (tests and diagnostics).
    #[cfg(test)]
    Inspect(oneshot::Sender<Room>),
}

/// One participant's outbound state: it outlives connections, for resume.
#[derive(Debug, Default)]
struct Session {
    conn: Option<ConnHandle>,
    next_seq: u64,
    /// Recent frames: (seq, event body, request id), for replay on resume.
    replay: VecDeque<(u64, Arc<str>, Option<Arc<str>>)>,
}

/// Settings the actor needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct ActorConfig {
    pub replay_events: usize,
    /// How long an empty meeting keeps its actor.
    pub idle_stop_ms: u64,
    /// The TURN relay whose credentials each participant is given (after `welcome`/`resumed`).
    pub turn: Option<Arc<crate::turn::TurnHandle>>,
}

/// The wall clock as the actor sees it: Unix milliseconds derived from tokio's clock, so tests
/// that pause tokio's time move the room's time too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_ms: Millis,
}

impl Clock {
    pub fn new() -> Clock {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock { base: Instant::now(), base_ms }
    }
    pub fn now(&self) -> Millis {
        self.base_ms + self.base.elapsed().as_millis() as u64
    }
    pub fn instant_at(&self, at: Millis) -> Instant {
        self.base + std::time::Duration::from_millis(at.saturating_sub(self.base_ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

pub(super) struct Actor {
    pub room: Room,
    pub rx: mpsc::Receiver<ActorMsg>,
    pub rooms: Arc<Rooms>,
    pub actor_id: u64,
    pub metrics: Arc<Metrics>,
    pub journal: Journal,
    /// How many are present (admitted, connected or within their grace): the node's heartbeat
    /// reads it to know which meetings are alive.
    pub present: Arc<std::sync::atomic::AtomicUsize>,
    pub sfu: Option<crate::sfu::SfuHandle>,
    /// Keeps the actor's own channel open while it runs.
    _self_tx: mpsc::Sender<ActorMsg>,
    /// The SFU's channel to this actor (its own bounded queue, not `ActorMsg`).
    sfu_events: mpsc::Receiver<crate::sfu::SfuEvent>,
    sfu_events_tx: mpsc::Sender<crate::sfu::SfuEvent>,
    pub config: ActorConfig,
    pub clock: Clock,
    /// Looked up once per recipient per event: FxHash (keys are the room's own ids, not input).
    sessions: rustc_hash::FxHashMap<ParticipantId, Session>,
    timers: BinaryHeap<Reverse<(Millis, u64, TimerKey)>>,
    timer_seq: u64,
    effects: Vec<Effect>,
    writes: Vec<Record>,
    sfu_cmds: Vec<crate::sfu::SfuCmd>,
    /// Reused for each fan-out.
    recipients: Vec<ParticipantId>,
    slow: Vec<ParticipantId>,
    /// Frames queued since the `messages_out` counter was last told (once per input, not once
    /// per recipient: the counter is shared by every meeting on every thread).
    sent: u64,
    ended: bool,
    /// Cluster mode: the lease this actor works under.
    seat: Option<ClusterSeat>,
    /// The room version last handed to the snapshot writer.
    snap_version: u64,
    /// Cluster mode: when the snapshot of changes since `snap_version` is to be taken.
    snap_due: Option<Millis>,
    /// The meeting moved to another node (lease lost or handed over): nothing more is written.
    moved: bool,
}

/// Cluster mode: the cluster and the fencing token of this node's lease on the meeting.
#[derive(Debug, Clone)]
pub struct ClusterSeat {
    pub cluster: Arc<crate::cluster::Cluster>,
    pub token: i64,
}

/// `Timer` with an ordering, for the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimerKey(Timer);

impl PartialOrd for TimerKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerKey {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        // Heap entries are ordered by (deadline, insertion sequence) before this is consulted.
        std::cmp::Ordering::Equal
    }
}

/// A fresh resume token for `meeting` (see [`crate::auth::resume`]).
pub fn new_resume_token(meeting: &str) -> String {
    crate::auth::resume::mint(meeting)
}

/// The meeting id inside a resume token this server minted; `None` for a forged one.
pub fn resume_token_meeting(token: &str) -> Option<String> {
    crate::auth::resume::verify(token)
}

impl Actor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        room: Room,
        rx: mpsc::Receiver<ActorMsg>,
        rooms: Arc<Rooms>,
        actor_id: u64,
        metrics: Arc<Metrics>,
        journal: Journal,
        present: Arc<std::sync::atomic::AtomicUsize>,
        sfu: Option<crate::sfu::SfuHandle>,
        self_tx: mpsc::Sender<ActorMsg>,
        config: ActorConfig,
        clock: Clock,
        seat: Option<ClusterSeat>,
    ) -> Actor {
        let (sfu_events_tx, sfu_events) = mpsc::channel(crate::sfu::EVENTS_QUEUE);
        Actor {
            sfu_events,
            sfu_events_tx,
            room,
            rx,
            rooms,
            actor_id,
            metrics,
            journal,
            present,
            sfu,
            _self_tx: self_tx,
            config,
            clock,
            sessions: rustc_hash::FxHashMap::default(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            effects: Vec::with_capacity(64),
            writes: Vec::new(),
            sfu_cmds: Vec::new(),
            recipients: Vec::new(),
            slow: Vec::new(),
            sent: 0,
            ended: false,
            seat,
            snap_version: 0,
            snap_due: None,
            moved: false,
        }
    }

    /// Carries out what a restored room asks for before anyone is connected (timers, the
    /// outage in the ledger); the state it came from is already in the snapshot.
    pub(super) fn restored(&mut self, mut effects: Vec<Effect>) {
        // Media rules go to the SFU when each participant's new session starts (`media_command`).
        effects.retain(|e| !matches!(e, Effect::MediaRule { .. }));
        // Seats held here count as present on this node (the outage records are not arrivals).
        let present = self.room.participants().iter().filter(|p| p.admitted).count();
        self.present.fetch_add(present, std::sync::atomic::Ordering::Relaxed);
        self.metrics.participants.inc_by(present as i64);
        self.dispatch(&mut effects, None);
        self.snap_version = self.room.version();
    }

    pub(super) async fn run(mut self) {
        self.metrics.live_meetings.inc();
        let mut empty_since: Option<Millis> = None;
        // One sleep for the actor's life, re-armed only when the next wake-up moves: a new sleep
        // per input would register with (and drop from) tokio's timer wheel, under its lock, for
        // every message. `armed` is what the sleep is set to; None once it fired.
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let idle_deadline = empty_since.map(|t| t + self.config.idle_stop_ms);
            let wake = [next_timer, idle_deadline, self.snap_due].into_iter().flatten().min();
            // With nothing due, whatever is armed stays (a wake-up for nothing finds nothing due).
            let target = match (wake, armed) {
                (Some(w), _) => self.clock.instant_at(w),
                (None, Some(a)) => a,
                (None, None) => Instant::now() + std::time::Duration::from_secs(3600),
            };
            if armed != Some(target) {
                sleep.as_mut().reset(target);
                armed = Some(target);
            }
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(ActorMsg::Shutdown { done }) => {
                        self.input(Input::Shutdown, None);
                        self.finish_writes().await;
                        let _ = done.send(());
                        break;
                    }
                    Some(ActorMsg::LeaseLost) => {
                        self.move_everyone(false).await;
                        break;
                    }
                    Some(ActorMsg::Handover { done }) => {
                        self.move_everyone(true).await;
                        let _ = done.send(());
                        break;
                    }
                    Some(msg) => self.on_msg(msg),
                    None => break,
                },
                Some(ev) = self.sfu_events.recv() => self.on_sfu_event(ev),
                _ = &mut sleep => {
                    armed = None;
                    let now = self.clock.now();
                    while let Some(Reverse((at, _, TimerKey(timer)))) = self.timers.peek().copied() {
                        if at > now { break; }
                        self.timers.pop();
                        self.input(Input::Timer(timer), None);
                    }
                    if self.snap_due.is_some_and(|at| at <= now) {
                        self.take_snapshot();
                    }
                    if empty_since.is_some_and(|t| now >= t + self.config.idle_stop_ms) && self.room.is_empty() {
                        break;
                    }
                }
            }
            self.finish_writes().await;
            if self.ended {
                break;
            }
            empty_since = match (self.room.is_empty(), empty_since) {
                (true, None) => Some(self.clock.now()),
                (true, since) => since,
                (false, _) => None,
            };
        }
        self.stop().await;
    }

    /// Cluster mode: the meeting continues on another node. Everyone's connection is closed with
    /// `server_shutdown` (they resume, and their resume reaches the new owner) and their media
    /// released here. A hand-over (`handover`: this node is draining and still holds the lease)
    /// first records everyone's disconnection, writes the final snapshot and gives the lease up;
    /// a lost lease writes nothing at all (the new owner's records are the meeting's record now).
    async fn move_everyone(&mut self, handover: bool) {
        let now = self.clock.now();
        if handover {
            if let Some(seat) = self.seat.clone() {
                // Recorded as the room records any drop, through `dispatch`.
                let mut gone: Vec<Effect> = self
                    .room
                    .participants()
                    .iter()
                    .filter(|p| p.admitted && p.connected)
                    .map(|p| Effect::Presence {
                        participant_id: p.id,
                        member: p.member.clone(),
                        change: crate::room::Presence::Disconnected,
                        at: now,
                    })
                    .collect();
                self.dispatch(&mut gone, None);
                self.finish_writes().await;
                let mut snap = self.room.to_snapshot(now);
                snap.handed_over = true;
                // After every snapshot the writer may still hold (their versions are 2 × room version).
                let version = self.room.version() * 2 + 1;
                if !seat.cluster.write_snapshot_now(self.room.id(), seat.token, version, &snap).await {
                    tracing::warn!(meeting = %self.room.id(), "could not write the final snapshot; the next owner starts from the last one");
                }
                seat.cluster.release(self.room.id(), seat.token, false).await;
            }
        } else if let Some(seat) = &self.seat {
            seat.cluster.forget(self.room.id());
        }
        self.moved = true;
        self.drop_due_snapshot();
        self.writes.clear();
        for (pid, s) in self.sessions.drain() {
            if let Some(conn) = s.conn {
                conn.close(CloseReason::SHUTDOWN);
            }
            if let Some(sfu) = &self.sfu {
                let _ = sfu
                    .tx
                    .send(crate::sfu::SfuCmd::Close {
                        key: crate::sfu::PeerKey { meeting: Arc::from(self.room.id()), participant_id: pid },
                    })
                    .await;
            }
        }
        let present = self.present.swap(0, std::sync::atomic::Ordering::Relaxed);
        self.metrics.participants.dec_by(present as i64);
    }

    /// Leaves the registry, then answers whatever arrived meanwhile with "retry". A meeting that
    /// moved to another node writes nothing more.
    async fn stop(mut self) {
        if !self.moved {
            self.finish_writes().await;
            if self.ended {
                // Journalled after every record of the meeting and before the actor leaves the
                // registry: the drain computes results only once all of them are stored, and the
                // registry refuses to start the meeting again meanwhile (`Journal::is_ending`).
                self.journal.append_fenced(
                    [Record::MeetingEnded { meeting: self.room.id().to_string(), at: self.clock.now() as i64 }],
                    self.seat.as_ref().map(|s| s.token),
                );
            }
            if let Some(seat) = &self.seat {
                // Ended, or empty for a while: nobody is left to come back, so the snapshot goes too.
                seat.cluster.release(self.room.id(), seat.token, true).await;
            }
        }
        self.rooms.remove_actor(self.room.id(), self.actor_id);
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                ActorMsg::Join { reply, .. } | ActorMsg::Resume { reply, .. } => {
                    let _ = reply.send(Err(if self.moved { JoinFailure::Moved } else { JoinFailure::Retry }));
                }
                ActorMsg::Precheck { member, role, reply } => {
                    // An ended meeting refuses; an idle one that stopped lets the caller start a
                    // new actor; one that moved is asked again where it lives now.
                    let refusal = if self.moved { Some(unavailable()) } else { self.room.join_refusal(&member, role) };
                    let _ = reply.send(refusal);
                }
                ActorMsg::Shutdown { done } | ActorMsg::Handover { done } => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
        self.finish_writes().await;
        self.drop_due_snapshot();
        self.metrics.live_meetings.dec();
    }

    /// Media rules first (a facilitator's mute takes effect before anything is written), then the
    /// records, into the journal: an append that never waits for the database.
    async fn finish_writes(&mut self) {
        if self.sent > 0 {
            self.metrics.messages_out.inc_by(std::mem::take(&mut self.sent));
        }
        if let Some(sfu) = &self.sfu {
            for c in self.sfu_cmds.drain(..) {
                // Rules are never dropped: the actor waits if the media engine is behind.
                let _ = sfu.tx.send(c).await;
            }
        } else {
            self.sfu_cmds.clear();
        }
        if self.moved {
            self.writes.clear();
            return;
        }
        if !self.writes.is_empty() {
            self.journal.append_fenced(self.writes.drain(..), self.seat.as_ref().map(|s| s.token));
        }
        if let Some(seat) = &self.seat {
            if self.snap_due.is_none() && self.room.version() != self.snap_version && !self.room.is_ended() {
                self.snap_due = Some(self.clock.now() + crate::cluster::SNAPSHOT_DEBOUNCE_MS);
                seat.cluster.snapshot_due();
            }
        }
    }

    /// Cluster mode: hands the room as it is now to the snapshot writer (the changes of the last
    /// [`crate::cluster::SNAPSHOT_DEBOUNCE_MS`], however many inputs made them, in one snapshot).
    fn take_snapshot(&mut self) {
        let Some(seat) = &self.seat else { return };
        let version = self.room.version();
        if version != self.snap_version && !self.room.is_ended() && !self.moved {
            self.snap_version = version;
            seat.cluster.put_snapshot(
                self.room.id(),
                seat.token,
                version * 2,
                &self.room.to_snapshot(self.clock.now()),
            );
        }
        // Settled only once the snapshot is queued for the writer: `/readyz` never counts it as
        // neither due nor unwritten (a test that waits for 0 and then kills the node relies on it).
        if self.snap_due.take().is_some() {
            seat.cluster.snapshot_settled();
        }
    }

    /// Cluster mode: a snapshot said to be due is no longer needed (the actor stops or moved).
    fn drop_due_snapshot(&mut self) {
        if let (Some(seat), Some(_)) = (&self.seat, self.snap_due.take()) {
            seat.cluster.snapshot_settled();
        }
    }

    /// A new join is refused while the journal is past its bound (the database has been away a
    /// long time); someone who already has a seat (a reload, a second device) still gets it back.
    fn storage_refusal(&self, member: &MemberKey) -> Option<ProtocolError> {
        if !self.journal.is_full() || self.room.participants().iter().any(|p| &p.member == member) {
            return None;
        }
        Some(ProtocolError::storage_backlog())
    }

    fn peer_key(&self, participant_id: ParticipantId) -> crate::sfu::PeerKey {
        crate::sfu::PeerKey { meeting: Arc::from(self.room.id()), participant_id }
    }

    /// Media signaling goes to the SFU with the sender's identity; the room is not involved.
    fn media_command(&mut self, from: ParticipantId, command: Command, request_id: Option<Arc<str>>) {
        use crate::sfu::SfuCmd;
        let key = self.peer_key(from);
        if self.sfu.is_none() {
            let e = ProtocolError::new(ErrorCode::Unavailable, "media is not available on this server");
            self.deliver(from, &event_body(&error_event(e)), request_id.as_ref());
            return;
        }
        match command {
            Command::MediaOffer { sdp } => {
                // The current rule first, so the new session starts under it.
                if let Some(p) = self.room.participants().iter().find(|p| p.id == from) {
                    self.sfu_cmds.push(SfuCmd::Rule { key: key.clone(), rule: p.media });
                }
                self.sfu_cmds.push(SfuCmd::Offer { key, sdp, request_id, events: self.sfu_events_tx.clone() });
            }
            Command::MediaAnswer { sdp } => self.sfu_cmds.push(SfuCmd::Answer { key, sdp }),
            Command::IceCandidate { candidate } => self.sfu_cmds.push(SfuCmd::Candidate { key, candidate }),
            _ => {}
        }
    }

    fn on_msg(&mut self, msg: ActorMsg) {
        match msg {
            ActorMsg::Precheck { member, role, reply } => {
                let _ = reply.send(self.storage_refusal(&member).or_else(|| self.room.join_refusal(&member, role)));
            }
            ActorMsg::Join { conn, member, role, display_name, request_id, reply } => {
                if let Some(e) = self.storage_refusal(&member) {
                    self.metrics.error(e.code.as_str());
                    let _ = conn.try_frame(render_frame(0, request_id.as_deref(), &event_body(&error_event(e))));
                    let _ = reply.send(Err(JoinFailure::Refused));
                    return;
                }
                let participant_id = ParticipantId::from_random(rand::random());
                let input = Input::Join {
                    participant_id,
                    member,
                    role,
                    display_name,
                    resume_token: new_resume_token(self.room.id()),
                    random: rand::random(),
                };
                self.attach_input(input, conn, 0, request_id, reply);
            }
            ActorMsg::Resume { conn, resume_token, last_seq, request_id, reply } => {
                let input = Input::Resume { resume_token, new_resume_token: new_resume_token(self.room.id()) };
                self.attach_input(input, conn, last_seq, request_id, reply);
            }
            ActorMsg::Command { conn_id, from, command, request_id } => {
                let current = self.sessions.get(&from).and_then(|s| s.conn.as_ref()).map(|c| c.id);
                if current != Some(conn_id) {
                    return; // a replaced or cut-off connection; it is closing
                }
                if matches!(
                    command,
                    Command::MediaOffer { .. } | Command::MediaAnswer { .. } | Command::IceCandidate { .. }
                ) {
                    self.media_command(from, command, request_id);
                    return;
                }
                self.input(Input::Command { from, command }, Some((from, request_id)));
            }
            ActorMsg::ConnectionClosed { conn_id, participant_id } => {
                let Some(s) = self.sessions.get_mut(&participant_id) else {
                    return;
                };
                if s.conn.as_ref().map(|c| c.id) != Some(conn_id) {
                    return;
                }
                s.conn = None;
                self.input(Input::Disconnected { participant_id }, None);
            }
            ActorMsg::End => self.input(Input::End, None),
            ActorMsg::Shutdown { .. } | ActorMsg::LeaseLost | ActorMsg::Handover { .. } => {}
            #[cfg(test)]
            ActorMsg::Inspect(reply) => {
                let _ = reply.send(self.room.clone());
            }
        }
    }

    fn on_sfu_event(&mut self, ev: crate::sfu::SfuEvent) {
        use crate::sfu::SfuEvent;
        match ev {
            SfuEvent::Media { participant_id, event, request_id } => {
                self.deliver(participant_id, &event_body(&event), request_id.as_ref());
            }
            SfuEvent::Quality { participant_id, state, loss_percent, rtt_ms } => {
                // The participant's own figures, and facilitators: never another member.
                let body = event_body(&Event::MediaQuality { participant_id, state, loss_percent, rtt_ms });
                let ids: Vec<ParticipantId> = self
                    .room
                    .participants()
                    .iter()
                    .filter(|p| p.id == participant_id || (p.admitted && p.role.is_facilitator()))
                    .map(|p| p.id)
                    .collect();
                for id in ids {
                    self.deliver(id, &body, None);
                }
            }
            SfuEvent::ActiveSpeaker { participant_id } => {
                let body = event_body(&Event::ActiveSpeaker { participant_id });
                // The engine hears only the main room for this (a side room's voices are its own).
                let ids: Vec<ParticipantId> = self
                    .room
                    .participants()
                    .iter()
                    .filter(|p| p.admitted && p.location == crate::room::MAIN)
                    .map(|p| p.id)
                    .collect();
                for id in ids {
                    self.deliver(id, &body, None);
                }
            }
        }
    }

    /// A join or resume: on success the connection is attached to the participant before any
    /// effect is carried out, so the snapshot reaches the new connection.
    fn attach_input(
        &mut self,
        input: Input,
        conn: ConnHandle,
        last_seq: u64,
        request_id: Option<Arc<str>>,
        reply: oneshot::Sender<Result<ParticipantId, JoinFailure>>,
    ) {
        let now = self.clock.now();
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        match self.room.handle(input, now, &mut effects) {
            Ok(Outcome::Attached { participant_id, resumed }) => {
                let session = self.sessions.entry(participant_id).or_default();
                if let Some(old) = session.conn.replace(conn.clone()) {
                    if old.id != conn.id {
                        old.close(CloseReason::REPLACED);
                    }
                }
                let _ = reply.send(Ok(participant_id));
                if resumed {
                    self.replay_or_snapshot(participant_id, last_seq, request_id.clone());
                }
                self.dispatch(&mut effects, Some((participant_id, request_id)));
                self.send_ice_servers(participant_id, &conn);
            }
            Ok(Outcome::Done) => {
                let _ = reply.send(Err(JoinFailure::Refused));
            }
            Err(e) => {
                self.metrics.error(e.code.as_str());
                let body = event_body(&error_event(e));
                let _ = conn.try_frame(render_frame(0, request_id.as_deref(), &body));
                let _ = reply.send(Err(JoinFailure::Refused));
            }
        }
        self.effects = effects;
        self.after_dispatch();
    }

    /// Fresh TURN credentials for a participant who just joined or resumed: connection-level,
    /// straight after their `welcome`/`waiting` (or `resumed` and its replay).
    fn send_ice_servers(&self, participant_id: ParticipantId, conn: &ConnHandle) {
        let Some(turn) = &self.config.turn else { return };
        let now_s = self.clock.now() / 1000;
        let c = turn.credentials(&participant_id.to_string(), now_s);
        let server = crate::protocol::IceServer { urls: c.urls, username: c.username, credential: c.credential };
        let body = event_body(&Event::IceServers { ice_servers: vec![server] });
        let _ = conn.try_frame(render_frame(0, None, &body));
    }

    /// After a resume: `resumed` (connection-level, seq 0), then the missed events when the
    /// buffer still holds all of them, else a fresh snapshot.
    fn replay_or_snapshot(&mut self, pid: ParticipantId, last_seq: u64, request_id: Option<Arc<str>>) {
        let token = match self.room.snapshot(pid) {
            Some(Event::Welcome { resume_token, .. }) | Some(Event::Waiting { resume_token, .. }) => resume_token,
            _ => return,
        };
        let Some(s) = self.sessions.get_mut(&pid) else {
            return;
        };
        let oldest = s.replay.front().map(|(seq, _, _)| *seq).unwrap_or(s.next_seq + 1);
        let replayable = last_seq <= s.next_seq && last_seq + 1 >= oldest;
        let resumed = Event::Resumed { participant_id: pid, resume_token: token, replayed: replayable };
        let Some(conn) = s.conn.clone() else { return };
        let mut ok = conn.try_frame(render_frame(0, request_id.as_deref(), &event_body(&resumed))).is_ok();
        if replayable {
            for (seq, body, rid) in s.replay.iter().filter(|(seq, _, _)| *seq > last_seq) {
                ok &= conn.try_frame(render_frame(*seq, rid.as_deref(), body)).is_ok();
            }
        } else if let Some(snap) = self.room.snapshot(pid) {
            // The client drops frames numbered at or below what it has seen: the fresh snapshot
            // and everything after it continue above the client's `last_seq`.
            s.next_seq = s.next_seq.max(last_seq);
            let body = event_body(&snap);
            self.deliver(pid, &body, None);
        }
        if !ok {
            self.slow.push(pid);
        }
    }

    /// Starts the meeting's format (its first segment's rules and timers), before any join.
    pub(super) fn start_format(&mut self, spec: Arc<crate::protocol::FormatSpec>) {
        self.input(Input::StartFormat(spec), None);
    }

    /// Runs one input through the room and carries out the effects. `requester` gets errors and
    /// has its request id echoed on the events this input sends it.
    fn input(&mut self, input: Input, requester: Option<(ParticipantId, Option<Arc<str>>)>) {
        let now = self.clock.now();
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        match self.room.handle(input, now, &mut effects) {
            Ok(_) => {
                let delivered = self.dispatch(&mut effects, requester.clone());
                if let Some((pid, Some(rid))) = requester {
                    if !delivered && self.sessions.contains_key(&pid) {
                        self.deliver(pid, &event_body(&Event::Ack), Some(&rid));
                    }
                }
            }
            Err(e) => {
                self.metrics.error(e.code.as_str());
                if let Some((pid, rid)) = requester {
                    self.deliver(pid, &event_body(&error_event(e)), rid.as_ref());
                }
            }
        }
        self.effects = effects;
        self.after_dispatch();
    }

    /// Cuts off connections found too slow during dispatch; their seats enter the grace period.
    fn after_dispatch(&mut self) {
        while let Some(pid) = self.slow.pop() {
            let Some(s) = self.sessions.get_mut(&pid) else {
                continue;
            };
            let Some(conn) = s.conn.take() else { continue };
            if conn.cut(CloseReason::SLOW_CONSUMER) {
                self.metrics.slow_client_disconnects.inc();
            }
            self.input(Input::Disconnected { participant_id: pid }, None);
        }
    }

    /// Carries out effects; returns whether any event reached the requester.
    fn dispatch(&mut self, effects: &mut Vec<Effect>, requester: Option<(ParticipantId, Option<Arc<str>>)>) -> bool {
        let (req_pid, req_id) = match requester {
            Some((p, r)) => (Some(p), r),
            None => (None, None),
        };
        let mut reached = false;
        let mut recipients = std::mem::take(&mut self.recipients);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, event } => {
                    let body = event_body(&event);
                    recipients.clear();
                    match to {
                        Audience::One(p) => recipients.push(p),
                        Audience::Admitted => {
                            recipients.extend(self.room.participants().iter().filter(|p| p.admitted).map(|p| p.id))
                        }
                        Audience::AdmittedExcept(x) => recipients
                            .extend(self.room.participants().iter().filter(|p| p.admitted && p.id != x).map(|p| p.id)),
                        Audience::Facilitators => recipients.extend(
                            self.room
                                .participants()
                                .iter()
                                .filter(|p| p.admitted && p.role.is_facilitator())
                                .map(|p| p.id),
                        ),
                        Audience::Location(l) => recipients.extend(
                            self.room.participants().iter().filter(|p| p.admitted && p.location == l).map(|p| p.id),
                        ),
                        Audience::Outside(l) => recipients.extend(
                            self.room.participants().iter().filter(|p| p.admitted && p.location != l).map(|p| p.id),
                        ),
                    }
                    for &pid in &recipients {
                        let rid = if Some(pid) == req_pid {
                            reached = true;
                            req_id.as_ref()
                        } else {
                            None
                        };
                        self.deliver(pid, &body, rid);
                    }
                }
                Effect::SetTimer { at, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(Reverse((at, self.timer_seq, TimerKey(timer))));
                }
                Effect::Close { participant_id, reason } => {
                    if let Some(s) = self.sessions.remove(&participant_id) {
                        if let Some(conn) = s.conn {
                            conn.close(CloseReason::for_leave(reason));
                        }
                    }
                }
                Effect::Presence { participant_id, member, change, at } => {
                    let (kind, reason) = match change {
                        Presence::Admitted => {
                            self.metrics.participants.inc();
                            self.present.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            (Kind::Admitted, None)
                        }
                        Presence::Left(r) => {
                            self.metrics.participants.dec();
                            self.present.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            (Kind::Left, Some(r.as_str().to_string()))
                        }
                        Presence::Disconnected => (Kind::Disconnected, None),
                        Presence::Resumed => (Kind::Resumed, None),
                    };
                    self.writes.push(Record::Presence(PresenceRow {
                        meeting_id: self.room.id().to_string(),
                        program_id: member.program,
                        member_ref: member.member_ref,
                        participant_id: participant_id.to_string(),
                        kind,
                        reason,
                        at: at as i64,
                        // Exports show the role a member was admitted with.
                        role: (kind == Kind::Admitted)
                            .then(|| self.room.participants().iter().find(|p| p.id == participant_id))
                            .flatten()
                            .map(|p| crate::attendance::role_name(p.role).to_string()),
                    }));
                }
                Effect::Audit(entry) => {
                    self.writes.push(Record::Audit(AuditRecord {
                        meeting: self.room.id().to_string(),
                        at: entry.at as i64,
                        actor: entry.actor.to_string(),
                        actor_name: entry.actor_name,
                        action: entry.action.to_string(),
                        target: entry.target.map(|t| t.to_string()),
                        target_name: entry.target_name,
                        detail: entry.detail,
                    }));
                }
                Effect::Banned { member } => {
                    self.writes.push(Record::Ban {
                        meeting: self.room.id().to_string(),
                        program: member.program,
                        member_ref: member.member_ref,
                        at: self.clock.now() as i64,
                    });
                }
                Effect::MediaRule { participant_id, rule } => {
                    self.sfu_cmds.push(crate::sfu::SfuCmd::Rule { key: self.peer_key(participant_id), rule });
                }
                Effect::MediaClosed { participant_id } => {
                    self.sfu_cmds.push(crate::sfu::SfuCmd::Close { key: self.peer_key(participant_id) });
                }
                Effect::Ended => self.ended = true,
            }
        }
        self.recipients = recipients;
        reached
    }

    /// Numbers a frame for one participant, keeps it for replay, and queues it if connected.
    fn deliver(&mut self, pid: ParticipantId, body: &Arc<str>, request_id: Option<&Arc<str>>) {
        let cap = self.config.replay_events;
        let Some(s) = self.sessions.get_mut(&pid) else {
            return;
        };
        s.next_seq += 1;
        let seq = s.next_seq;
        if cap > 0 {
            if s.replay.len() >= cap {
                s.replay.pop_front();
            }
            s.replay.push_back((seq, body.clone(), request_id.cloned()));
        }
        if let Some(conn) = &s.conn {
            match conn.try_frame(render_frame(seq, request_id.map(|r| &**r), body)) {
                Ok(()) => self.sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !self.slow.contains(&pid) {
                        self.slow.push(pid);
                    }
                }
                // The connection is gone; its reader reports the close.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// An error as the event that carries it.
pub fn error_event(e: ProtocolError) -> Event {
    Event::Error { code: e.code, message: e.message, suggestion: e.suggestion }
}

/// The error for a meeting that cannot be reached right now.
pub fn unavailable() -> ProtocolError {
    ProtocolError::new(ErrorCode::Unavailable, "the meeting is not available right now; try again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_token_names_its_meeting() {
        let t = new_resume_token("demo-1");
        assert_eq!(resume_token_meeting(&t).as_deref(), Some("demo-1"));
        assert_eq!(resume_token_meeting("hvr.x.y"), None);
        assert_eq!(resume_token_meeting("eyJhbGciOi.x.y"), None);
    }
}
