//! From the journal to the database, in order, idempotently, whatever the database does.
//!
//! One task takes durable records in batches and commits each batch in one transaction. When the
//! database fails it retries the same batch with backoff, for as long as it takes: records are
//! never dropped, and the operator gets one warning per outage (and one line when it is over),
//! not one per record. A meeting's end is a batch of its own: every earlier record of the meeting
//! is stored before its results are computed.

use super::{Journal, Record};
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records per transaction.
const BATCH: usize = 512;
/// Longest pause between attempts while the database is down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts the drain task; it runs until `stop` is cancelled and the journal holds nothing durable
/// (or, after `stop`, until the database stops answering: what is left replays at the next start).
pub fn spawn_drain(
    journal: Journal,
    store: Store,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut outage: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        // Failures of the same batch that were the database refusing it, not failing to answer.
        let mut refusals = 0u32;
        loop {
            publish(&journal, &metrics);
            let batch = journal.batch(BATCH);
            if batch.is_empty() {
                if stop.is_cancelled() {
                    return;
                }
                // Woken by the file thread when records become durable; the tick keeps the
                // backlog's age fresh in /metrics.
                tokio::select! {
                    _ = journal.shared.wake_drain.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            let last = batch.last().map(|e| e.lsn).unwrap_or(0);
            match apply(&store, journal.id(), &batch).await {
                Ok(fenced) => {
                    metrics.journal_records_fenced.inc_by(fenced);
                    journal.confirm(last);
                    backoff = Duration::from_millis(50);
                    refusals = 0;
                    if let Some(since) = outage.take() {
                        tracing::warn!(
                            after_seconds = since.elapsed().as_secs(),
                            "database writes succeed again; the journal is draining"
                        );
                    }
                }
                Err(e) if !is_transient(&e) && refusals + 1 >= REFUSALS_BEFORE_ONE_BY_ONE => {
                    // The database answers but refuses this batch, again and again: one record in
                    // it can never be stored (a constraint it breaks, data it cannot read). Store
                    // the rest one by one and set aside only what is refused, so one bad record
                    // cannot hold every later one back.
                    refusals = 0;
                    for entry in &batch {
                        match apply(&store, journal.id(), std::slice::from_ref(entry)).await {
                            Ok(fenced) => {
                                metrics.journal_records_fenced.inc_by(fenced);
                                journal.confirm(entry.lsn)
                            }
                            Err(e) if !is_transient(&e) => {
                                metrics.journal_records_rejected.inc();
                                tracing::error!(lsn = entry.lsn, kind = entry.rec.kind(), error = %e, "the database refuses a journalled record; it is set aside");
                                journal.confirm(entry.lsn);
                            }
                            Err(_) => break, // the database went away meanwhile: retry later
                        }
                    }
                }
                Err(e) => {
                    metrics.store_write_failures.inc();
                    if !is_transient(&e) {
                        refusals += 1;
                    }
                    if outage.is_none() {
                        outage = Some(Instant::now());
                        tracing::warn!(error = %e, "database writes fail: records wait in the journal (logged once per outage)");
                    }
                    if stop.is_cancelled() {
                        // Shutting down: what is left is durable and replays at the next start.
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    })
}

/// Attempts at a batch the database refuses (rather than fails to answer) before its records are
/// tried one by one.
const REFUSALS_BEFORE_ONE_BY_ONE: u32 = 3;

/// Whether a failure is the database being away or slow (retry as long as it takes), rather than
/// the database refusing what it was given.
fn is_transient(e: &crate::store::StoreError) -> bool {
    use crate::store::StoreError;
    match e {
        // Only a broken constraint is the database refusing a record; anything else it says (shut
        // down, starting up, busy, out of connections) is it being away, and records wait.
        StoreError::Database(sqlx::Error::Database(db)) => matches!(db.kind(), sqlx::error::ErrorKind::Other),
        StoreError::Database(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => false,
        StoreError::Database(_) => true,
        StoreError::Corrupt(_) | StoreError::Conflict | StoreError::Sealed(_) => false,
        _ => true,
    }
}

fn publish(journal: &Journal, metrics: &Metrics) {
    let b = journal.backlog();
    metrics.journal_backlog_records.set(b.records as i64);
    metrics.journal_backlog_bytes.set(b.bytes as i64);
    metrics.journal_backlog_age_seconds.set(b.oldest_age_seconds);
}

/// Stores one batch. A meeting's end comes alone (see `Journal::batch`): its results are
/// computed from the ledger, then stored with the end (and their webhook events) in one
/// transaction (idempotent).
/// Returns how many records were set aside as written by an owner that had lost the meeting.
async fn apply(store: &Store, journal: &str, batch: &[super::Entry]) -> Result<u64, crate::store::StoreError> {
    if let [super::Entry { rec: Record::MeetingEnded { meeting, at }, fence, .. }] = batch {
        // An owner that lost its lease (cluster) does not end the meeting for the new one.
        if !store.fence_holds(meeting, *fence).await? {
            tracing::warn!(meeting = %meeting, "a meeting end from a node that lost the meeting was set aside");
            return Ok(1);
        }
        crate::attendance::finalize(store, meeting, *at).await?;
        return Ok(0);
    }
    store.apply_journal(journal, batch).await
}
