//! Meeting id to room actor. A `DashMap`, so lookups from many connections never contend on one
//! lock; an actor is spawned on first use and removes itself when it stops.

use super::actor::{error_event, event_body, render_frame, Actor, ActorConfig, ActorMsg, Clock, JoinFailure};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::protocol::ProtocolError;
use crate::room::{MemberKey, Room, RoomLimits};
use crate::store::MeetingRow;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Commands queued per meeting before senders wait. Readers are rate-limited, so this is a burst
/// buffer, not a backlog.
const ACTOR_QUEUE: usize = 1024;

/// A live meeting's mailbox.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    pub actor_id: u64,
    pub tx: mpsc::Sender<ActorMsg>,
    /// How many are present; kept by the actor, read by the node's heartbeat.
    pub present: Arc<AtomicUsize>,
    /// The meeting as it was when the actor started: joins to a live meeting are authorised
    /// from it, so they never wait on the database.
    pub meeting: Arc<MeetingRow>,
}

/// What every actor needs from the server.
#[derive(Debug, Clone)]
pub struct RoomDeps {
    pub metrics: Arc<Metrics>,
    pub journal: Journal,
    pub store: crate::store::Store,
    pub limits: RoomLimits,
    pub actor: ActorConfig,
    pub sfu: Option<crate::sfu::SfuHandle>,
    /// Cluster mode: leases and snapshots.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The registry of live meetings.
#[derive(Debug)]
pub struct Rooms {
    map: DashMap<String, RoomHandle>,
    next_actor: AtomicU64,
    deps: RoomDeps,
}

impl Rooms {
    pub fn new(deps: RoomDeps) -> Arc<Rooms> {
        Arc::new(Rooms { map: DashMap::new(), next_actor: AtomicU64::new(1), deps })
    }

    /// The live meeting, if its actor runs.
    pub fn get(&self, id: &str) -> Option<RoomHandle> {
        self.map.get(id).map(|h| h.clone())
    }

    /// The live meeting `owner` calls `local_id`, if its actor runs. No database: joins to a live
    /// meeting never wait on it.
    pub fn find(&self, owner: &str, local_id: &str) -> Option<RoomHandle> {
        let mine = |h: &RoomHandle| h.meeting.program_id == owner && h.meeting.local_id == local_id;
        self.get(&crate::store::meeting_key(owner, local_id))
            // A meeting created before ids were per program is keyed by its bare id.
            .or_else(|| self.get(local_id))
            .filter(mine)
    }

    /// The meeting a program names `name` (its own `<id>`, or `<owner>/<id>` for one shared with
    /// it; see `store::split_meeting_name`), live or stored, when it is not deleted and the
    /// program may join it. Anything else is `None`, so nothing tells whether another program
    /// uses an id.
    pub async fn named(&self, program: &str, name: &str) -> Result<Option<MeetingRow>, crate::store::StoreError> {
        let (owner, id) = crate::store::split_meeting_name(program, name);
        match self.find(owner, id) {
            Some(live) => Ok(Some((*live.meeting).clone()).filter(|m| m.admits_program(program))),
            // Not live (or a partner's bare id for an older shared meeting, which only the
            // database can tell from the partner's own meeting of that id).
            None => self.deps.store.meeting_named(program, name).await,
        }
    }

    /// How many meetings are live.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no meeting is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Live meetings with someone present (for the node's heartbeat).
    pub fn alive(&self) -> Vec<String> {
        self.map.iter().filter(|e| e.value().present.load(Ordering::Relaxed) > 0).map(|e| e.key().clone()).collect()
    }

    /// The live meeting, starting its actor if needed. `meeting` may have been read a moment ago:
    /// a meeting that ended or was deleted since is not started again (its actor answers every
    /// join with `meeting_ended` and stops).
    pub fn get_or_spawn(self: &Arc<Self>, meeting: &MeetingRow) -> RoomHandle {
        if let Some(h) = self.get(&meeting.id) {
            return h;
        }
        self.map
            .entry(meeting.id.clone())
            .or_insert_with(|| {
                let actor_id = self.next_actor.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = mpsc::channel(ACTOR_QUEUE);
                let mut limits = self.deps.limits.clone();
                limits.capacity = meeting.capacity.clamp(1, i64::from(u32::MAX)) as usize;
                let rooms = self.clone();
                let self_tx = tx.clone();
                let present = Arc::new(AtomicUsize::new(0));
                let actor_present = present.clone();
                let deps = self.deps.clone();
                let meeting_row = meeting.clone();
                let meeting = meeting.clone();
                tokio::spawn(async move {
                    // The meeting as stored now (it may have ended or been deleted since the caller
                    // read it) and its bans: bans outlive actors, and an unreadable ban list must
                    // not let banned members in, so the actor does not start without it. Bans
                    // still in the journal count too.
                    let current = if deps.journal.is_ending(&meeting.id) {
                        Ok(None)
                    } else {
                        deps.store.meeting(&meeting.id).await
                    };
                    let current = match current {
                        Ok(Some(m)) if m.ended_at.is_none() => m,
                        Ok(_) => {
                            rooms.remove_actor(&meeting.id, actor_id);
                            drop(self_tx);
                            refuse_all(rx, ProtocolError::meeting_ended()).await;
                            return;
                        }
                        Err(e) => {
                            tracing::error!(meeting = %meeting.id, error = %e, "cannot read the meeting; meeting unavailable");
                            rooms.remove_actor(&meeting.id, actor_id);
                            return;
                        }
                    };
                    let mut bans: Vec<MemberKey> = match deps.store.bans(&meeting.id).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(meeting = %meeting.id, error = %e, "cannot load bans; meeting unavailable");
                            rooms.remove_actor(&meeting.id, actor_id);
                            return;
                        }
                    };
                    bans.extend(deps.journal.pending_bans(&meeting.id));
                    let meeting = current;
                    let clock = Clock::new();
                    // Cluster mode: only under this node's lease, carrying on from the last snapshot.
                    let (room, restored, seat) = match &deps.cluster {
                        None => (Room::new(meeting.id.clone(), meeting.title.clone(), meeting.settings.clone(), limits, bans), None, None),
                        Some(cluster) => {
                            let Some(held) = cluster.held(&meeting.id) else {
                                rooms.remove_actor(&meeting.id, actor_id);
                                drop(self_tx);
                                refuse_all(rx, super::actor::unavailable()).await;
                                return;
                            };
                            let seat = Some(super::actor::ClusterSeat { cluster: cluster.clone(), token: held.token });
                            match cluster.load_snapshot(&meeting.id).await {
                                Ok(Some(loaded)) if loaded.snapshot.id == meeting.id && !loaded.snapshot.ended => {
                                    let now = clock.now();
                                    let gap_start = held
                                        .gap_start
                                        .or(loaded.writer_last_seen)
                                        .map(|t| t.max(0) as u64)
                                        .unwrap_or(loaded.snapshot.taken_at)
                                        .max(loaded.snapshot.taken_at);
                                    let mut effects = Vec::new();
                                    let room = Room::restore(loaded.snapshot, limits, bans, gap_start, now, &mut effects);
                                    tracing::info!(meeting = %meeting.id, seats = room.len(), "carrying on a meeting from its snapshot");
                                    (room, Some(effects), seat)
                                }
                                Ok(_) => (Room::new(meeting.id.clone(), meeting.title.clone(), meeting.settings.clone(), limits, bans), None, seat),
                                Err(e) => {
                                    tracing::error!(meeting = %meeting.id, error = %e, "cannot read the meeting's snapshot; meeting unavailable");
                                    rooms.remove_actor(&meeting.id, actor_id);
                                    drop(self_tx);
                                    refuse_all(rx, super::actor::unavailable()).await;
                                    return;
                                }
                            }
                        }
                    };
                    let mut room = room;
                    // Participants see the meeting's id as its program named it, never the key.
                    room.set_public_id(meeting.local_id.clone());
                    let format = meeting.format.clone().map(Arc::new);
                    let mut actor = Actor::new(
                        room,
                        rx,
                        rooms,
                        actor_id,
                        deps.metrics,
                        deps.journal,
                        actor_present,
                        // Each meeting on one engine, the least loaded when it starts.
                        deps.sfu.as_ref().map(|s| s.place()),
                        self_tx,
                        deps.actor,
                        clock,
                        seat,
                    );
                    if let Some(effects) = restored {
                        actor.restored(effects);
                    } else if let Some(spec) = format {
                        // A fresh room starts its format; a restored one carries on where it was.
                        actor.start_format(spec);
                    }
                    actor.run().await;
                });
                RoomHandle { actor_id, tx, present, meeting: Arc::new(meeting_row) }
            })
            .clone()
    }

    /// Called by an actor as it stops; removes only its own entry.
    pub(super) fn remove_actor(&self, id: &str, actor_id: u64) {
        self.map.remove_if(id, |_, h| h.actor_id == actor_id);
    }

    /// Cluster mode, draining: hands every live meeting on (final snapshot, lease given up,
    /// everyone told to resume) and waits for each.
    pub async fn handover_all(&self) {
        let handles: Vec<RoomHandle> = self.map.iter().map(|e| e.value().clone()).collect();
        let mut waits = Vec::new();
        for h in handles {
            let (done, rx) = oneshot::channel();
            if h.tx.send(ActorMsg::Handover { done }).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// Tells every live meeting the server is stopping and waits for each to close its connections.
    pub async fn shutdown_all(&self) {
        let handles: Vec<RoomHandle> = self.map.iter().map(|e| e.value().clone()).collect();
        let mut waits = Vec::new();
        for h in handles {
            let (done, rx) = oneshot::channel();
            if h.tx.send(ActorMsg::Shutdown { done }).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

/// Answers everything sent to a meeting that may not start (ended or deleted) with `error`, until
/// the last sender is gone.
async fn refuse_all(mut rx: mpsc::Receiver<ActorMsg>, error: ProtocolError) {
    let body = event_body(&error_event(error.clone()));
    while let Some(msg) = rx.recv().await {
        match msg {
            ActorMsg::Precheck { reply, .. } => {
                let _ = reply.send(Some(error.clone()));
            }
            ActorMsg::Join { conn, request_id, reply, .. } | ActorMsg::Resume { conn, request_id, reply, .. } => {
                let _ = conn.tx.try_send(super::Outbound::Frame(render_frame(0, request_id.as_deref(), &body).into()));
                let _ = reply.send(Err(JoinFailure::Refused));
            }
            ActorMsg::Shutdown { done } | ActorMsg::Handover { done } => {
                let _ = done.send(());
            }
            _ => {}
        }
    }
}
