//! The attendance ledger: journalled records stored in batches, presence read back per member,
//! final results, retention.

use super::{record_key, Entry, JournalRecord, Kind, Record, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// One presence record for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct PresenceRow {
    pub meeting_id: String,
    pub program_id: String,
    pub member_ref: String,
    pub participant_id: String,
    pub kind: Kind,
    pub reason: Option<String>,
    pub at: i64,
    /// The role the participant holds (`facilitator`, `member`, ...), on `admitted` records.
    /// Absent in journal entries written before roles were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A stored attendance result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub id: String,
    pub meeting_id: String,
    pub program_id: String,
    pub member_ref: String,
    pub computed_at: i64,
    /// JSON of `attendance::StoredResult`.
    pub result: String,
}

impl Store {
    // ---- attendance ledger ----

    /// Stores a batch of journalled records in one transaction. Idempotent: presence and audit
    /// records carry their journal key, bans and heartbeats are upserts, so a replay of a batch
    /// that was already stored changes nothing. Heartbeats of many meetings go in one statement.
    /// Returns how many records were set aside as written by an owner that had lost the meeting.
    pub async fn apply_journal(&self, journal: &str, entries: &[Entry]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut heartbeats: Vec<(&str, i64)> = Vec::new();
        // Meetings with a first admission in this batch (webhooks: `meeting.started`).
        let mut admitted: Vec<(&str, i64)> = Vec::new();
        let mut events = false;
        // Cluster mode: each meeting's current fencing token, read once per batch.
        let mut fences: Vec<(&str, Option<i64>)> = Vec::new();
        let mut fenced = 0;
        for e in entries {
            if let (Some(fence), Some(meeting)) = (e.fence, e.rec.meeting()) {
                let current = match fences.iter().find(|(m, _)| *m == meeting) {
                    Some((_, f)) => *f,
                    None => {
                        let f = current_fence(&mut tx, meeting, self.postgres).await?;
                        fences.push((meeting, f));
                        f
                    }
                };
                if current.is_some_and(|c| fence < c) {
                    // Written by an owner after another node took the meeting over: the new
                    // owner's records are the meeting's record from then on.
                    fenced += 1;
                    continue;
                }
            }
            let key = record_key(journal, e.lsn);
            match &e.rec {
                JournalRecord::Presence(r) => {
                    sqlx::query(
                        "INSERT INTO presence (meeting_id, program_id, member_ref, participant_id, kind, reason, at, record_key, role) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (record_key) DO NOTHING",
                    )
                    .bind(&r.meeting_id)
                    .bind(&r.program_id)
                    .bind(&r.member_ref)
                    .bind(&r.participant_id)
                    .bind(r.kind.as_str())
                    .bind(&r.reason)
                    .bind(r.at)
                    .bind(key)
                    .bind(&r.role)
                    .execute(&mut *tx)
                    .await?;
                    if r.kind == Kind::Admitted && !admitted.iter().any(|(m, _)| *m == r.meeting_id) {
                        admitted.push((&r.meeting_id, r.at));
                    }
                }
                JournalRecord::Audit(a) => {
                    sqlx::query(
                        "INSERT INTO audit_log (meeting_id, at, actor, actor_name, action, target, target_name, detail, record_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (record_key) DO NOTHING",
                    )
                    .bind(&a.meeting)
                    .bind(a.at)
                    .bind(&a.actor)
                    .bind(&a.actor_name)
                    .bind(&a.action)
                    .bind(&a.target)
                    .bind(&a.target_name)
                    .bind(&a.detail)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalRecord::Ban { meeting, program, member_ref, at } => {
                    let new = sqlx::query(
                        "INSERT INTO bans (meeting_id, program_id, member_ref, created_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (meeting_id, program_id, member_ref) DO NOTHING",
                    )
                    .bind(meeting)
                    .bind(program)
                    .bind(member_ref)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if new > 0 {
                        events |= self.note_banned(&mut tx, meeting, program, member_ref, *at).await?;
                    }
                }
                JournalRecord::Heartbeat { at, meetings } => {
                    for m in meetings {
                        match heartbeats.iter_mut().find(|(id, _)| *id == m.as_str()) {
                            Some(h) => h.1 = h.1.max(*at),
                            None => heartbeats.push((m, *at)),
                        }
                    }
                }
                // Finalisation runs outside a batch (see `journal::drain`).
                JournalRecord::MeetingEnded { .. } => {}
            }
        }
        for chunk in heartbeats.chunks(500) {
            let mut sql = String::from("INSERT INTO meeting_heartbeats (meeting_id, at) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            }
            sql.push_str(
                " ON CONFLICT (meeting_id) DO UPDATE SET at = \
                 CASE WHEN excluded.at > meeting_heartbeats.at THEN excluded.at ELSE meeting_heartbeats.at END",
            );
            let mut q = sqlx::query(&sql);
            for (m, at) in chunk {
                q = q.bind(*m).bind(*at);
            }
            q.execute(&mut *tx).await?;
        }
        for (meeting, at) in admitted {
            events |= self.note_meeting_started(&mut tx, meeting, at).await?;
        }
        tx.commit().await?;
        if events {
            self.outbox_wake.notify_one();
        }
        Ok(fenced)
    }

    /// Cluster mode: raises the meeting's fencing token to `fence` (a node took it over) and
    /// returns the token now current (higher than `fence` when a later owner already claimed it).
    pub async fn claim_fence(&self, meeting: &str, fence: i64) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            // A batch of the old owner may hold the row (share lock): wait for it, but not for
            // ever (a stalled one is ended by `idle_in_transaction_session_timeout`); past this
            // the takeover fails and the client's next attempt tries again.
            sqlx::query("SET LOCAL lock_timeout = '10s'").execute(&mut *tx).await?;
        }
        let row = sqlx::query(
            "INSERT INTO meeting_fences (meeting_id, fence) VALUES ($1, $2) ON CONFLICT (meeting_id) DO UPDATE SET \
             fence = CASE WHEN excluded.fence > meeting_fences.fence THEN excluded.fence ELSE meeting_fences.fence END \
             RETURNING fence",
        )
        .bind(meeting)
        .bind(fence)
        .fetch_one(&mut *tx)
        .await?;
        let current = row.try_get(0)?;
        tx.commit().await?;
        Ok(current)
    }

    /// Whether a record written under `fence` still speaks for the meeting (no fence: single node).
    pub async fn fence_holds(&self, meeting: &str, fence: Option<i64>) -> Result<bool, StoreError> {
        let Some(fence) = fence else { return Ok(true) };
        let mut conn = self.pool.acquire().await?;
        let current = current_fence(&mut conn, meeting, false).await?;
        Ok(current.is_none_or(|c| fence >= c))
    }

    /// The latest moment a meeting is known to have been alive: its last heartbeat or record.
    pub async fn last_alive(&self, meeting: &str) -> Result<Option<i64>, StoreError> {
        let hb: Option<i64> = sqlx::query("SELECT at FROM meeting_heartbeats WHERE meeting_id = $1")
            .bind(meeting)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let rec: Option<i64> = sqlx::query("SELECT MAX(at) FROM presence WHERE meeting_id = $1")
            .bind(meeting)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(match (hb, rec) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }

    /// The (meeting, member) pairs of a program with presence in `[from, to)`, optionally filtered.
    pub async fn attendance_pairs(
        &self,
        program: &str,
        meeting: Option<&str>,
        member: Option<&str>,
        series: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT meeting_id, member_ref FROM presence WHERE program_id = $1 AND at >= $2 AND at < $3 \
             AND ($4 = '' OR meeting_id = $5) AND ($6 = '' OR member_ref = $7) \
             AND ($8 = '' OR meeting_id IN (SELECT id FROM meetings WHERE series_id = $9)) ORDER BY meeting_id, member_ref",
        )
        .bind(program)
        .bind(from)
        .bind(to)
        .bind(meeting.unwrap_or(""))
        .bind(meeting.unwrap_or(""))
        .bind(member.unwrap_or(""))
        .bind(member.unwrap_or(""))
        .bind(series.unwrap_or(""))
        .bind(series.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Every member of every program present in a meeting.
    pub async fn meeting_members(&self, meeting: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT program_id, member_ref FROM presence WHERE meeting_id = $1 ORDER BY program_id, member_ref")
            .bind(meeting)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// One member's presence records in one meeting.
    pub async fn presence_of(&self, meeting: &str, program: &str, member: &str) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT participant_id, kind, at, id FROM presence WHERE meeting_id = $1 AND program_id = $2 AND member_ref = $3 ORDER BY id",
        )
        .bind(meeting)
        .bind(program)
        .bind(member)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(1)?;
                Ok(Record {
                    seat: r.try_get(0)?,
                    kind: Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("presence kind `{kind}`")))?,
                    at: r.try_get(2)?,
                    order: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The roles a member was admitted to a meeting with (empty for records older than roles).
    pub async fn admitted_roles(&self, meeting: &str, program: &str, member: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT role FROM presence WHERE meeting_id = $1 AND program_id = $2 AND member_ref = $3 \
             AND role IS NOT NULL ORDER BY role",
        )
        .bind(meeting)
        .bind(program)
        .bind(member)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Replaces a program's API-key hash (a lost key); false when there is no such program.
    pub async fn set_api_key_hash(&self, program: &str, hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE programs SET api_key_sha256 = $1 WHERE id = $2")
            .bind(hash)
            .bind(program)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records whether facilitation earns a program's facilitators credit (configuration).
    pub async fn set_facilitation_credit(&self, program: &str, earns: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE programs SET facilitation_credit = $1 WHERE id = $2")
            .bind(i64::from(earns))
            .bind(program)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether facilitation earns a program's facilitators credit (true for unknown programs).
    pub async fn facilitation_credit(&self, program: &str) -> Result<bool, StoreError> {
        let v: Option<i64> = sqlx::query("SELECT facilitation_credit FROM programs WHERE id = $1")
            .bind(program)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(v != Some(0))
    }

    /// Stores a final result; the first one stored for a member and meeting stays.
    pub async fn insert_result(&self, r: &ResultRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO attendance_results (id, meeting_id, program_id, member_ref, computed_at, result) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (meeting_id, program_id, member_ref) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.meeting_id)
        .bind(&r.program_id)
        .bind(&r.member_ref)
        .bind(r.computed_at)
        .bind(&r.result)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn result_from_row(r: &AnyRow) -> Result<ResultRow, StoreError> {
        Ok(ResultRow {
            id: r.try_get(0)?,
            meeting_id: r.try_get(1)?,
            program_id: r.try_get(2)?,
            member_ref: r.try_get(3)?,
            computed_at: r.try_get(4)?,
            result: r.try_get(5)?,
        })
    }

    /// The final result for a member in a meeting.
    pub async fn result_for(
        &self,
        meeting: &str,
        program: &str,
        member: &str,
    ) -> Result<Option<ResultRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, meeting_id, program_id, member_ref, computed_at, result FROM attendance_results \
             WHERE meeting_id = $1 AND program_id = $2 AND member_ref = $3",
        )
        .bind(meeting)
        .bind(program)
        .bind(member)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::result_from_row).transpose()
    }

    /// A final result by id.
    pub async fn result_by_id(&self, id: &str) -> Result<Option<ResultRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, meeting_id, program_id, member_ref, computed_at, result FROM attendance_results WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::result_from_row).transpose()
    }

    /// Deletes ledger records and results older than `before`; returns how many rows went.
    pub async fn purge_attendance(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let a = sqlx::query("DELETE FROM presence WHERE at < $1").bind(before).execute(&mut *tx).await?.rows_affected();
        let b = sqlx::query("DELETE FROM attendance_results WHERE computed_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(a + b)
    }
}

/// A meeting's current fencing token. On PostgreSQL the row is share-locked until the batch
/// commits, so a takeover that raises it waits for the batch, never interleaves with it.
async fn current_fence(conn: &mut sqlx::AnyConnection, meeting: &str, lock: bool) -> Result<Option<i64>, StoreError> {
    let sql = if lock {
        "SELECT fence FROM meeting_fences WHERE meeting_id = $1 FOR SHARE"
    } else {
        "SELECT fence FROM meeting_fences WHERE meeting_id = $1"
    };
    let row = sqlx::query(sql).bind(meeting).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}
