//! Writes what room actors record (audit entries, bans) without making any actor
//! wait on the database: actors hand records to a bounded queue; one task writes them in batches.

use crate::room::{AuditEntry, MemberKey};
use crate::store::Store;
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
            let mut flushes = Vec::new();
            for w in batch.drain(..) {
                match w {
                    StoreWrite::Audit { meeting, entry } => audits.push((meeting, entry)),
                    StoreWrite::Ban { meeting, member, at } => {
                        retry("ban", || store.add_ban(&meeting, &member, at)).await;
                    }
                    StoreWrite::Flush(done) => flushes.push(done),
                }
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
