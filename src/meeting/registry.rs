//! Meeting id to room actor. A `DashMap`, so lookups from many connections never contend on one
//! lock; an actor is spawned on first use and removes itself when it stops.

use super::actor::{Actor, ActorConfig, ActorMsg, Clock};
use super::store_writer::StoreWrite;
use crate::metrics::Metrics;
use crate::room::{MemberKey, Room, RoomLimits};
use crate::store::MeetingRow;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// What every actor needs from the server.
#[derive(Debug, Clone)]
pub struct RoomDeps {
    pub metrics: Arc<Metrics>,
    pub store_tx: mpsc::Sender<StoreWrite>,
    pub store: crate::store::Store,
    pub limits: RoomLimits,
    pub actor: ActorConfig,
    pub sfu: Option<crate::sfu::SfuHandle>,
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

    /// How many meetings are live.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no meeting is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live meeting, starting its actor if needed.
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
                let deps = self.deps.clone();
                let meeting = meeting.clone();
                tokio::spawn(async move {
                    // Bans outlive actors; an unreadable ban list must not let banned members in,
                    // so the actor does not start without it.
                    let bans: Vec<MemberKey> = match deps.store.bans(&meeting.id).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(meeting = %meeting.id, error = %e, "cannot load bans; meeting unavailable");
                            rooms.remove_actor(&meeting.id, actor_id);
                            return;
                        }
                    };
                    let room =
                        Room::new(meeting.id.clone(), meeting.title.clone(), meeting.settings.clone(), limits, bans);
                    let actor = Actor::new(
                        room,
                        rx,
                        rooms,
                        actor_id,
                        deps.metrics,
                        deps.store_tx,
                        deps.store,
                        // Each meeting on one engine, the least loaded when it starts.
                        deps.sfu.as_ref().map(|s| s.place()),
                        self_tx,
                        deps.actor,
                        Clock::new(),
                    );
                    actor.run().await;
                });
                RoomHandle { actor_id, tx }
            })
            .clone()
    }

    /// Called by an actor as it stops; removes only its own entry.
    pub(super) fn remove_actor(&self, id: &str, actor_id: u64) {
        self.map.remove_if(id, |_, h| h.actor_id == actor_id);
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
