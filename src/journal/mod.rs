//! The local journal: the first home of every record meant for the database.
//!
//! Presence records, bans, audit entries, heartbeats and meeting ends are appended here by room
//! actors (a short lock, no I/O, no waiting), written and fsynced in batches by one thread
//! (`file.rs`), and drained to the database in order by one task (`drain.rs`). So a slow or
//! unreachable database never holds up a meeting, and nothing is dropped: while the database is
//! down the journal grows, up to `max_bytes`; past that, new joins are refused with
//! `storage_backlog`, but records of people already in meetings are still taken. A restart replays
//! what the database has not confirmed. Inserts are idempotent: each record carries a key made of
//! the journal's id and its sequence number (`lsn`), so a replay never writes a record twice.

mod drain;
mod file;

use crate::room::MemberKey;
use crate::store::PresenceRow;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

pub use drain::spawn_drain;

/// A journal sequence number: strictly increasing over the journal's whole life.
pub type Lsn = u64;

/// An audit entry as journalled and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub meeting: String,
    pub at: i64,
    /// The acting participant id (per meeting).
    pub actor: String,
    pub actor_name: String,
    pub action: String,
    pub target: Option<String>,
    pub target_name: Option<String>,
    pub detail: Option<String>,
}

/// One record for the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    Presence(PresenceRow),
    Audit(AuditRecord),
    Ban {
        meeting: String,
        program: String,
        member_ref: String,
        at: i64,
    },
    /// Every meeting of this node with someone present was alive at `at`.
    Heartbeat {
        at: i64,
        meetings: Vec<String>,
    },
    /// The meeting ended: once every earlier record is stored, its results are computed.
    MeetingEnded {
        meeting: String,
        at: i64,
    },
}

impl Record {
    /// The meeting the record belongs to (a heartbeat names many).
    pub fn meeting(&self) -> Option<&str> {
        match self {
            Record::Presence(r) => Some(&r.meeting_id),
            Record::Audit(a) => Some(&a.meeting),
            Record::Ban { meeting, .. } | Record::MeetingEnded { meeting, .. } => Some(meeting),
            Record::Heartbeat { .. } => None,
        }
    }

    /// The record's kind, for logs (never its contents: they name members).
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Presence(_) => "presence",
            Record::Audit(_) => "audit",
            Record::Ban { .. } => "ban",
            Record::Heartbeat { .. } => "heartbeat",
            Record::MeetingEnded { .. } => "meeting_ended",
        }
    }
}

/// A record with its place in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub lsn: Lsn,
    pub rec: Record,
    /// Cluster mode: the fencing token under which the meeting's owner wrote it. The database
    /// sets aside a record whose token is older than the meeting's current one (see `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
}

/// What the journal holds that the database has not confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Backlog {
    pub records: usize,
    pub bytes: u64,
    /// Seconds since the oldest unconfirmed record was appended.
    pub oldest_age_seconds: f64,
    /// Past the bound: new joins are refused.
    pub full: bool,
    /// Everything appended is written and fsynced.
    pub durable: bool,
}

#[derive(Debug)]
struct Pending {
    entry: Entry,
    bytes: u64,
    appended: Instant,
}

#[derive(Debug)]
struct State {
    next_lsn: Lsn,
    /// Serialised lines not yet handed to the file.
    unwritten: Vec<u8>,
    unwritten_first: Lsn,
    unwritten_last: Lsn,
    /// Every record the database has not confirmed, oldest first.
    pending: VecDeque<Pending>,
    pending_bytes: u64,
    /// Written and fsynced up to here.
    durable: Lsn,
    /// In the database up to here.
    confirmed: Lsn,
    /// Meetings whose end is journalled but not yet in the database.
    ending: HashMap<String, u32>,
    closing: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the file thread.
    wake_writer: Condvar,
    /// Wakes the drain task when records become durable.
    wake_drain: Notify,
    confirmed_tx: watch::Sender<Lsn>,
    durable_tx: watch::Sender<Lsn>,
    /// Set by the file thread as it ends.
    stopped_tx: watch::Sender<bool>,
    id: String,
    max_bytes: u64,
}

/// The journal's handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

/// Why the journal could not open.
#[derive(Debug, thiserror::Error)]
#[error("journal in {dir}: {source}")]
pub struct JournalError {
    dir: String,
    source: std::io::Error,
}

impl Journal {
    /// Opens the journal in `dir` (created if needed), loading every record the database may not
    /// have, and starts the file thread.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        let err = |source| JournalError { dir: dir.display().to_string(), source };
        let (segments, loaded) = file::Segments::open(dir).map_err(err)?;
        let now = Instant::now();
        let mut pending = VecDeque::with_capacity(loaded.entries.len());
        let mut pending_bytes = 0;
        let mut ending: HashMap<String, u32> = HashMap::new();
        let mut last = loaded.checkpoint;
        for (entry, bytes) in loaded.entries {
            last = last.max(entry.lsn);
            if let Record::MeetingEnded { meeting, .. } = &entry.rec {
                *ending.entry(meeting.clone()).or_default() += 1;
            }
            pending_bytes += bytes;
            pending.push_back(Pending { entry, bytes, appended: now });
        }
        if !pending.is_empty() {
            tracing::info!(records = pending.len(), "journal: replaying records the database has not confirmed");
        }
        let (confirmed_tx, _) = watch::channel(loaded.checkpoint);
        let (durable_tx, _) = watch::channel(last);
        let (stopped_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_lsn: last + 1,
                unwritten: Vec::new(),
                unwritten_first: 0,
                unwritten_last: 0,
                pending,
                pending_bytes,
                durable: last,
                confirmed: loaded.checkpoint,
                ending,
                closing: false,
            }),
            wake_writer: Condvar::new(),
            wake_drain: Notify::new(),
            confirmed_tx,
            durable_tx,
            stopped_tx,
            id: segments.id().to_string(),
            max_bytes,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("haven-journal".into())
            .spawn(move || file::run(thread_shared, segments))
            .map_err(err)?;
        Ok(Journal { shared })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug in this module; the data is still consistent
        // (every mutation is a push or pop), so go on with it rather than poison every actor.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This journal's id (part of every record's idempotency key).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Appends records in order. Never blocks on I/O and never refuses: a record of someone
    /// already in a meeting is always taken (the bound applies to new joins, see [`Self::is_full`]).
    pub fn append_all(&self, records: impl IntoIterator<Item = Record>) -> Lsn {
        self.append_fenced(records, None)
    }

    /// Appends records written under a cluster lease's fencing token (`None`: single node).
    pub fn append_fenced(&self, records: impl IntoIterator<Item = Record>, fence: Option<i64>) -> Lsn {
        let mut s = self.lock();
        let now = Instant::now();
        let mut last = s.next_lsn.saturating_sub(1);
        let mut any = false;
        for rec in records {
            let lsn = s.next_lsn;
            s.next_lsn += 1;
            let entry = Entry { lsn, rec, fence };
            let start = s.unwritten.len();
            // Records are plain data: serialising into a Vec cannot fail.
            if serde_json::to_writer(&mut s.unwritten, &entry).is_err() {
                s.unwritten.truncate(start);
                tracing::error!(lsn, "journal: a record could not be serialised");
                continue;
            }
            s.unwritten.push(b'\n');
            let bytes = (s.unwritten.len() - start) as u64;
            if s.unwritten_first == 0 {
                s.unwritten_first = lsn;
            }
            s.unwritten_last = lsn;
            if let Record::MeetingEnded { meeting, .. } = &entry.rec {
                *s.ending.entry(meeting.clone()).or_default() += 1;
            }
            s.pending_bytes += bytes;
            s.pending.push_back(Pending { entry, bytes, appended: now });
            last = lsn;
            any = true;
        }
        drop(s);
        if any {
            self.shared.wake_writer.notify_one();
        }
        last
    }

    /// Appends one record.
    pub fn append(&self, rec: Record) -> Lsn {
        self.append_all(std::iter::once(rec))
    }

    /// Whether the backlog is past its bound (new joins are refused until it drains).
    pub fn is_full(&self) -> bool {
        self.lock().pending_bytes >= self.shared.max_bytes
    }

    /// Whether the meeting's end is journalled and not yet in the database.
    pub fn is_ending(&self, meeting: &str) -> bool {
        self.lock().ending.contains_key(meeting)
    }

    /// Bans journalled for `meeting` that the database may not have yet.
    pub fn pending_bans(&self, meeting: &str) -> Vec<MemberKey> {
        self.lock()
            .pending
            .iter()
            .filter_map(|p| match &p.entry.rec {
                Record::Ban { meeting: m, program, member_ref, .. } if m == meeting => {
                    Some(MemberKey { program: program.clone(), member_ref: member_ref.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// What the database has not confirmed.
    pub fn backlog(&self) -> Backlog {
        let s = self.lock();
        Backlog {
            records: s.pending.len(),
            bytes: s.pending_bytes,
            oldest_age_seconds: s.pending.front().map(|p| p.appended.elapsed().as_secs_f64()).unwrap_or(0.0),
            full: s.pending_bytes >= self.shared.max_bytes,
            durable: s.durable + 1 >= s.next_lsn,
        }
    }

    /// The last lsn appended so far.
    pub fn last_lsn(&self) -> Lsn {
        self.lock().next_lsn - 1
    }

    /// Waits until every record appended so far is in the database.
    pub async fn wait_confirmed(&self) {
        let target = self.last_lsn();
        let mut rx = self.shared.confirmed_tx.subscribe();
        let _ = rx.wait_for(|c| *c >= target).await;
    }

    /// Waits until every record appended so far is fsynced in the journal.
    pub async fn wait_durable(&self) {
        let target = self.last_lsn();
        self.shared.wake_writer.notify_one();
        let mut rx = self.shared.durable_tx.subscribe();
        let _ = rx.wait_for(|d| *d >= target).await;
    }

    /// Durable records the database has not confirmed, oldest first: at most `max`, and never past
    /// a meeting's end (its results are computed after everything before it is stored).
    fn batch(&self, max: usize) -> Vec<Entry> {
        let s = self.lock();
        let mut out = Vec::new();
        for p in s.pending.iter() {
            if p.entry.lsn > s.durable || out.len() >= max {
                break;
            }
            let end = matches!(p.entry.rec, Record::MeetingEnded { .. });
            if end && !out.is_empty() {
                break;
            }
            out.push(p.entry.clone());
            if end {
                break;
            }
        }
        out
    }

    /// The database holds everything up to `lsn`.
    fn confirm(&self, lsn: Lsn) {
        let mut s = self.lock();
        while s.pending.front().is_some_and(|p| p.entry.lsn <= lsn) {
            let Some(p) = s.pending.pop_front() else { break };
            s.pending_bytes -= p.bytes;
            if let Record::MeetingEnded { meeting, .. } = &p.entry.rec {
                if let Some(n) = s.ending.get_mut(meeting) {
                    *n -= 1;
                    if *n == 0 {
                        s.ending.remove(meeting);
                    }
                }
            }
        }
        s.confirmed = s.confirmed.max(lsn);
        drop(s);
        self.shared.confirmed_tx.send_replace(lsn);
    }

    /// Writes what is buffered, records the checkpoint and stops the file thread.
    pub async fn close(&self) {
        let mut stopped = self.shared.stopped_tx.subscribe();
        self.lock().closing = true;
        self.shared.wake_writer.notify_one();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// The idempotency key of a journalled record in the database.
pub fn record_key(journal: &str, lsn: Lsn) -> String {
    format!("{journal}:{lsn}")
}

/// How long the file thread sleeps when idle before it checks for confirmed segments to delete.
const IDLE_TICK: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attendance::credit::Kind;

    fn presence(at: i64) -> Record {
        Record::Presence(PresenceRow {
            meeting_id: "m".into(),
            program_id: "p".into(),
            member_ref: "r".into(),
            participant_id: "x".into(),
            kind: Kind::Admitted,
            reason: None,
            at,
            role: None,
        })
    }

    #[tokio::test]
    async fn records_survive_a_reopen_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append_all((0..5).map(presence));
        j.wait_durable().await;
        let batch = j.batch(3);
        assert_eq!(batch.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![1, 2, 3]);
        j.confirm(3);
        j.close().await;
        drop(j);
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.backlog().records, 2);
        let batch = j.batch(10);
        assert_eq!(batch.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![4, 5]);
        // Numbering continues after the last record, so keys never repeat.
        assert_eq!(j.append(presence(9)), 6);
    }

    #[tokio::test]
    async fn a_batch_stops_at_a_meeting_end() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(presence(1));
        j.append(Record::MeetingEnded { meeting: "m".into(), at: 2 });
        j.append(presence(3));
        j.wait_durable().await;
        assert!(j.is_ending("m"));
        assert_eq!(j.batch(10).len(), 1);
        j.confirm(1);
        let b = j.batch(10);
        assert_eq!(b.len(), 1);
        assert!(matches!(b[0].rec, Record::MeetingEnded { .. }));
        j.confirm(2);
        assert!(!j.is_ending("m"));
        assert_eq!(j.batch(10).len(), 1);
    }

    #[tokio::test]
    async fn the_bound_counts_unconfirmed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 300).unwrap();
        assert!(!j.is_full());
        j.append_all((0..10).map(presence));
        assert!(j.is_full());
        j.wait_durable().await;
        j.confirm(10);
        assert!(!j.is_full());
        assert_eq!(j.backlog().records, 0);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut seg, loaded) = file::Segments::open(dir.path()).unwrap();
            assert!(loaded.entries.is_empty());
            let mut buf = Vec::new();
            for lsn in 1..=2 {
                serde_json::to_writer(&mut buf, &Entry { lsn, rec: presence(lsn as i64), fence: None }).unwrap();
                buf.push(b'\n');
            }
            buf.extend_from_slice(b"{\"lsn\":3,\"rec\":{\"t\":\"pres");
            seg.append(&buf, 1, 3).unwrap();
        }
        let (_, loaded) = file::Segments::open(dir.path()).unwrap();
        assert_eq!(loaded.entries.iter().map(|(e, _)| e.lsn).collect::<Vec<_>>(), vec![1, 2]);
    }
}
