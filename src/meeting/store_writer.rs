//! Writes what room actors record (presence for the attendance ledger, heartbeats, audit entries,
//! bans) without making any actor wait on the database: actors hand records to a bounded queue;
//! one task commits them in batches, each batch as soon as it is taken (well within a second).
//! When the queue is full, actors wait: admission slows down, records are never dropped.

use crate::room::{AuditEntry, MemberKey};
use crate::store::{PresenceRow, Store};
use std::time::Duration;
use tokio::sync::mpsc;

/// One record for the store.
#[derive(Debug)]
pub enum StoreWrite {
    Audit {
        meeting: String,
        entry: AuditEntry,
    },
    Ban {
        meeting: String,
        member: MemberKey,
        at: i64,
    },
    Presence(PresenceRow),
    Heartbeat {
        meeting: String,
        at: i64,
    },
    /// Replies once everything queued before it is written (for shutdown and tests).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Queue depth: a burst of facilitator actions across every meeting fits; beyond it actors wait.
pub const QUEUE: usize = 4096;

/// Starts the writer; it ends when every sender is gone.
pub fn spawn(store: Store) -> mpsc::Sender<StoreWrite> {
    let (tx, mut rx) = mpsc::channel::<StoreWrite>(QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(128);
        while rx.recv_many(&mut batch, 128).await > 0 {
            let mut audits = Vec::new();
            let mut presence = Vec::new();
            let mut heartbeats: Vec<(String, i64)> = Vec::new();
            let mut flushes = Vec::new();
            for w in batch.drain(..) {
                match w {
                    StoreWrite::Audit { meeting, entry } => audits.push((meeting, entry)),
                    StoreWrite::Ban { meeting, member, at } => {
                        retry("ban", || store.add_ban(&meeting, &member, at)).await;
                    }
                    StoreWrite::Presence(row) => presence.push(row),
                    StoreWrite::Heartbeat { meeting, at } => match heartbeats.iter_mut().find(|(m, _)| *m == meeting) {
                        Some(h) => h.1 = h.1.max(at),
                        None => heartbeats.push((meeting, at)),
                    },
                    StoreWrite::Flush(done) => flushes.push(done),
                }
            }
            if !presence.is_empty() {
                retry("attendance ledger", || store.append_presence(&presence)).await;
            }
            for (meeting, at) in &heartbeats {
                retry("heartbeat", || store.heartbeat(meeting, *at)).await;
            }
            if !audits.is_empty() {
                retry("audit log", || store.append_audit(&audits)).await;
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    });
    tx
}

async fn retry<F, Fut>(what: &str, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    for attempt in 1..=5u32 {
        match op().await {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                tracing::warn!(what, attempt, error = %e, "store write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
            Err(e) => tracing::error!(what, error = %e, "store write failed; record dropped"),
        }
    }
}
