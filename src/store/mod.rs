//! Persistence: programs, meetings, bans and the audit log, on SQLite or PostgreSQL.
//!
//! One set of queries runs on both through sqlx's `Any` driver; only the migrations differ (the
//! two dialects disagree on auto-increment). Parameters are always numbered in order of appearance
//! (`$1, $2, ...`, none reused), which both engines read the same way. Times are Unix milliseconds.

use crate::attendance::credit::{CreditPolicy, Kind, Record};
use crate::journal::{record_key, Entry, Record as JournalRecord};
use crate::protocol::MeetingSettings;
use crate::room::MemberKey;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

pub mod sealed;

/// A store failure. The variants say whose fault it is, so the API can answer 409 or 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Sealed(#[from] sealed::SealError),
}

/// A program as stored. `Debug` leaves out the token key (an HS256 secret).
#[derive(Clone)]
pub struct ProgramRow {
    pub id: String,
    pub name: String,
    pub token_alg: String,
    pub token_key: String,
    pub api_key_sha256: String,
}

/// A meeting as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingRow {
    pub id: String,
    pub program_id: String,
    pub title: String,
    pub scheduled_start: Option<i64>,
    pub scheduled_end: Option<i64>,
    pub capacity: i64,
    pub settings: MeetingSettings,
    /// Other programs whose members (and observers) may join.
    pub shared_with: Vec<String>,
    /// Whether facilitators of the `shared_with` programs may join as facilitators.
    pub partner_facilitators: bool,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// How attendance earns credit; `None` means the default policy.
    pub credit_policy: Option<CreditPolicy>,
}

impl MeetingRow {
    /// Whether members of `program` may join this meeting.
    pub fn admits_program(&self, program: &str) -> bool {
        self.program_id == program || self.shared_with.iter().any(|p| p == program)
    }

    /// Whether a facilitator token of `program` may run this meeting: the owner's always, a
    /// partner's only when the owner said so (`partner_facilitators`).
    pub fn admits_facilitator(&self, program: &str) -> bool {
        self.program_id == program || (self.partner_facilitators && self.admits_program(program))
    }
}

/// An audit log entry as programs read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    /// When (RFC 3339, UTC), like every time in the API.
    #[serde(serialize_with = "ser_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// The actor's per-meeting participant id.
    pub actor: String,
    pub actor_name: String,
    /// The actor's member reference, when the actor belongs to the program that owns the meeting
    /// (a shared meeting never reveals another program's members). Never sent to participants.
    pub actor_member_ref: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub target_name: Option<String>,
    /// The target's member reference, on the same terms as `actor_member_ref`.
    pub target_member_ref: Option<String>,
    pub detail: Option<String>,
}

fn ser_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::attendance::rfc3339(*ms))
}

/// The stored form of `shared_with`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SharedWith {
    List(Vec<String>),
    Detailed { programs: Vec<String>, partner_facilitators: bool },
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    /// Seals signing keys and HS256 secrets at rest (see `sealed`); `None`: stored as they are.
    sealer: Option<std::sync::Arc<sealed::Sealer>>,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Connects and runs the embedded migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        opts = if postgres {
            opts.max_connections(10)
        } else {
            // SQLite takes one writer at a time; WAL lets readers go on meanwhile.
            opts.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    Ok(())
                })
            })
        };
        let pool = opts.connect(url).await?;
        if postgres {
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        } else {
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        }
        Ok(Store { pool, postgres, sealer: None })
    }

    /// Whether this store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- programs ----

    /// Inserts or replaces a program (configured programs are re-applied at every start).
    pub async fn upsert_program(&self, p: &ProgramRow, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO programs (id, name, token_alg, token_key, api_key_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, token_alg = excluded.token_alg, \
             token_key = excluded.token_key, api_key_sha256 = excluded.api_key_sha256",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.token_alg)
        .bind(self.seal_program_key(p))
        .bind(&p.api_key_sha256)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
        Ok(())
    }

    /// Every program.
    pub async fn programs(&self) -> Result<Vec<ProgramRow>, StoreError> {
        let rows = sqlx::query("SELECT id, name, token_alg, token_key, api_key_sha256 FROM programs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let stored: String = r.try_get(3)?;
                Ok(ProgramRow {
                    token_key: sealed::open(self.sealer.as_deref(), &stored, &id)?,
                    id,
                    name: r.try_get(1)?,
                    token_alg: r.try_get(2)?,
                    api_key_sha256: r.try_get(4)?,
                })
            })
            .collect()
    }

    // ---- meetings ----

    /// Creates a meeting; `Conflict` when the id is taken.
    pub async fn create_meeting(&self, m: &MeetingRow) -> Result<(), StoreError> {
        let settings = serde_json::to_string(&m.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The `shared_with` column holds the list, or (when partner facilitators are allowed) an
        // object with the list: no schema change, and rows written before read the same.
        let shared = if m.partner_facilitators {
            serde_json::to_string(&SharedWith::Detailed { programs: m.shared_with.clone(), partner_facilitators: true })
        } else {
            serde_json::to_string(&m.shared_with)
        }
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let policy = m
            .credit_policy
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO meetings (id, program_id, title, scheduled_start, scheduled_end, capacity, settings, shared_with, created_at, credit_policy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&m.id)
        .bind(&m.program_id)
        .bind(&m.title)
        .bind(m.scheduled_start)
        .bind(m.scheduled_end)
        .bind(m.capacity)
        .bind(settings)
        .bind(shared)
        .bind(m.created_at)
        .bind(policy)
        .execute(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
        Ok(())
    }

    const MEETING_COLUMNS: &'static str =
        "id, program_id, title, scheduled_start, scheduled_end, capacity, settings, shared_with, created_at, ended_at, credit_policy";

    fn meeting_from_row(r: &AnyRow) -> Result<MeetingRow, StoreError> {
        let settings: String = r.try_get(6)?;
        let shared: String = r.try_get(7)?;
        let (shared_with, partner_facilitators) =
            match serde_json::from_str(&shared).map_err(|e| StoreError::Corrupt(e.to_string()))? {
                SharedWith::List(l) => (l, false),
                SharedWith::Detailed { programs, partner_facilitators } => (programs, partner_facilitators),
            };
        Ok(MeetingRow {
            id: r.try_get(0)?,
            program_id: r.try_get(1)?,
            title: r.try_get(2)?,
            scheduled_start: r.try_get(3)?,
            scheduled_end: r.try_get(4)?,
            capacity: r.try_get(5)?,
            settings: serde_json::from_str(&settings).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            shared_with,
            partner_facilitators,
            created_at: r.try_get(8)?,
            ended_at: r.try_get(9)?,
            credit_policy: r
                .try_get::<Option<String>, _>(10)?
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }

    /// A meeting that has not been deleted.
    pub async fn meeting(&self, id: &str) -> Result<Option<MeetingRow>, StoreError> {
        let sql = format!("SELECT {} FROM meetings WHERE id = $1 AND deleted_at IS NULL", Self::MEETING_COLUMNS);
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::meeting_from_row).transpose()
    }

    /// A meeting, deleted or not (attendance outlives a meeting's deletion).
    pub async fn meeting_any(&self, id: &str) -> Result<Option<MeetingRow>, StoreError> {
        let sql = format!("SELECT {} FROM meetings WHERE id = $1", Self::MEETING_COLUMNS);
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::meeting_from_row).transpose()
    }

    /// Who owns a meeting id and whether it was deleted, for any id ever used.
    pub async fn meeting_owner(&self, id: &str) -> Result<Option<(String, bool)>, StoreError> {
        let row = sqlx::query("SELECT program_id, deleted_at FROM meetings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get::<Option<i64>, _>(1)?.is_some()))).transpose()
    }

    /// A program's own meetings, newest first.
    pub async fn meetings_of(&self, program: &str, limit: i64) -> Result<Vec<MeetingRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM meetings WHERE program_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id LIMIT $2",
            Self::MEETING_COLUMNS
        );
        let rows = sqlx::query(&sql).bind(program).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(Self::meeting_from_row).collect()
    }

    /// Marks a meeting deleted (it stays in the database for its audit log). False if not found.
    pub async fn delete_meeting(&self, program: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let r =
            sqlx::query("UPDATE meetings SET deleted_at = $1 WHERE id = $2 AND program_id = $3 AND deleted_at IS NULL")
                .bind(now)
                .bind(id)
                .bind(program)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the end of a meeting (first end wins).
    pub async fn end_meeting(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE meetings SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- bans ----

    /// Bans a member reference from a meeting.
    pub async fn add_ban(&self, meeting: &str, member: &MemberKey, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bans (meeting_id, program_id, member_ref, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (meeting_id, program_id, member_ref) DO NOTHING",
        )
        .bind(meeting)
        .bind(&member.program)
        .bind(&member.member_ref)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The member references banned from a meeting.
    pub async fn bans(&self, meeting: &str) -> Result<Vec<MemberKey>, StoreError> {
        let rows = sqlx::query("SELECT program_id, member_ref FROM bans WHERE meeting_id = $1")
            .bind(meeting)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(MemberKey { program: r.try_get(0)?, member_ref: r.try_get(1)? })).collect()
    }

    // ---- audit log ----

    /// A meeting's audit log, oldest first. Member references come from the ledger (a participant
    /// id is per meeting), and only for members of the program that owns the meeting.
    pub async fn audit_log(&self, meeting: &str) -> Result<Vec<AuditRow>, StoreError> {
        const MEMBER_REF: &str = "(SELECT p.member_ref FROM presence p JOIN meetings m ON m.id = p.meeting_id \
             WHERE p.meeting_id = a.meeting_id AND p.participant_id = a.{col} AND p.program_id = m.program_id LIMIT 1)";
        let sql = format!(
            "SELECT a.at, a.actor, a.actor_name, a.action, a.target, a.target_name, a.detail, {}, {} \
             FROM audit_log a WHERE a.meeting_id = $1 ORDER BY a.id",
            MEMBER_REF.replace("{col}", "actor"),
            MEMBER_REF.replace("{col}", "target"),
        );
        let rows = sqlx::query(&sql).bind(meeting).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    actor_name: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    target_name: r.try_get(5)?,
                    detail: r.try_get(6)?,
                    actor_member_ref: r.try_get(7)?,
                    target_member_ref: r.try_get(8)?,
                })
            })
            .collect()
    }
}

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

/// A server signing key. `Debug` leaves out the private key.
#[derive(Clone)]
pub struct KeyRow {
    pub kid: String,
    pub private_pem: String,
    pub public_x: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl Store {
    // ---- attendance ledger ----

    /// Stores a batch of journalled records in one transaction. Idempotent: presence and audit
    /// records carry their journal key, bans and heartbeats are upserts, so a replay of a batch
    /// that was already stored changes nothing. Heartbeats of many meetings go in one statement.
    pub async fn apply_journal(&self, journal: &str, entries: &[Entry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut heartbeats: Vec<(&str, i64)> = Vec::new();
        for e in entries {
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
                    sqlx::query(
                        "INSERT INTO bans (meeting_id, program_id, member_ref, created_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (meeting_id, program_id, member_ref) DO NOTHING",
                    )
                    .bind(meeting)
                    .bind(program)
                    .bind(member_ref)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
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
        tx.commit().await?;
        Ok(())
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
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT meeting_id, member_ref FROM presence WHERE program_id = $1 AND at >= $2 AND at < $3 \
             AND ($4 = '' OR meeting_id = $5) AND ($6 = '' OR member_ref = $7) ORDER BY meeting_id, member_ref",
        )
        .bind(program)
        .bind(from)
        .bind(to)
        .bind(meeting.unwrap_or(""))
        .bind(meeting.unwrap_or(""))
        .bind(member.unwrap_or(""))
        .bind(member.unwrap_or(""))
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

    // ---- server keys ----

    /// Every signing key, newest first.
    pub async fn server_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, private_pem, public_x, created_at, retired_at FROM server_keys ORDER BY created_at DESC, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kid: String = r.try_get(0)?;
                let stored: String = r.try_get(1)?;
                Ok(KeyRow {
                    private_pem: sealed::open(self.sealer.as_deref(), &stored, &kid)?,
                    kid,
                    public_x: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    retired_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Uses `sealer` for secrets from now on, and seals every secret still stored in plain text
    /// (a database from before a KEK was configured). Fails when a sealed secret does not open
    /// with it (the wrong KEK): better than starting with keys that cannot sign.
    pub async fn use_sealer(&mut self, sealer: sealed::Sealer) -> Result<(), StoreError> {
        self.sealer = Some(std::sync::Arc::new(sealer));
        for k in self.server_keys().await? {
            let stored: String = sqlx::query("SELECT private_pem FROM server_keys WHERE kid = $1")
                .bind(&k.kid)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            if !sealed::is_sealed(&stored) {
                sqlx::query("UPDATE server_keys SET private_pem = $1 WHERE kid = $2")
                    .bind(sealed::seal(self.sealer.as_deref(), &k.private_pem, &k.kid))
                    .bind(&k.kid)
                    .execute(&self.pool)
                    .await?;
            }
        }
        for p in self.programs().await? {
            let sealed_key = self.seal_program_key(&p);
            if sealed_key != p.token_key {
                sqlx::query("UPDATE programs SET token_key = $1 WHERE id = $2 AND token_key = $3")
                    .bind(sealed_key)
                    .bind(&p.id)
                    .bind(&p.token_key)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// What is stored for a program's token key: an HS256 secret is sealed; a public key is not
    /// a secret.
    fn seal_program_key(&self, p: &ProgramRow) -> String {
        if p.token_alg == "HS256" {
            sealed::seal(self.sealer.as_deref(), &p.token_key, &p.id)
        } else {
            p.token_key.clone()
        }
    }

    /// Adds a key and retires every other (retired keys still verify; only the new one signs).
    pub async fn rotate_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE server_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO server_keys (kid, private_pem, public_x, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&k.kid)
            .bind(sealed::seal(self.sealer.as_deref(), &k.private_pem, &k.kid))
            .bind(&k.public_x)
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl std::fmt::Debug for ProgramRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("token_alg", &self.token_alg)
            .field("token_key", &"[redacted]")
            .field("api_key_sha256", &self.api_key_sha256)
            .finish()
    }
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("private_pem", &"[redacted]")
            .field("public_x", &self.public_x)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}
