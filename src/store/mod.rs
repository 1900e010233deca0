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

mod engagement;
mod formats;
mod keys;
mod ledger;
pub mod sealed;
mod webhooks;

pub use formats::{FormatRow, SeriesRow};
pub use keys::KeyRow;
pub use ledger::{PresenceRow, ResultRow};
pub use webhooks::{AttemptOutcome, AttemptView, Claimed, DeliveryView, EndpointRow};

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
    /// The server's key for the meeting, unique across the server: what rooms, the journal, the
    /// ledger, bans, leases, snapshots and resume tokens name it by. [`meeting_key`] of the
    /// program and `local_id` for meetings created since ids are per program; the bare id for
    /// meetings created before (the migration kept them, so their ledger, journal and links go on
    /// working). Never shown to programs or participants: they see `local_id` (see [`Self::id_for`]).
    pub id: String,
    /// The meeting's id as its program gave it: unique within the program and never reused.
    pub local_id: String,
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
    /// The format the meeting was created with (its id as the meeting's program named it, which
    /// is the format's program: [`FormatRow::local_id`]; and the format as it was then).
    pub format_id: Option<String>,
    pub format: Option<crate::protocol::FormatSpec>,
    /// The key of the series this meeting is an occurrence of ([`SeriesRow::id`]; programs see its
    /// `local_id`), and which occurrence (`{generation}:{start}`).
    pub series_id: Option<String>,
    pub occurrence_key: Option<String>,
}

/// The server's key of the meeting `program` calls `local_id` (see [`MeetingRow::id`]). Opaque
/// (no program id in resume tokens or logs), and made from the pair, so a live meeting is found by
/// its program's id without a lookup table.
pub fn meeting_key(program: &str, local_id: &str) -> String {
    scoped_key(b"haven meeting key v1", "m.", program, local_id)
}

/// The server's key of the series `program` calls `local_id` (see [`SeriesRow::id`]).
pub fn series_key(program: &str, local_id: &str) -> String {
    scoped_key(b"haven series key v1", "s.", program, local_id)
}

/// The server's key of the format `program` calls `local_id` (see [`FormatRow::id`]).
pub fn format_key(program: &str, local_id: &str) -> String {
    scoped_key(b"haven format key v1", "f.", program, local_id)
}

/// A key unique across the server for what `program` calls `local_id`: `prefix` and the hex of
/// SHA-256 over (`domain`, program, id). `.` never appears in an id a program chose, so no key is
/// ever an older row's bare id (those kept their id as their key).
fn scoped_key(domain: &[u8], prefix: &str, program: &str, local_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(domain);
    h.update((program.len() as u64).to_be_bytes());
    h.update(program.as_bytes());
    h.update(local_id.as_bytes());
    format!("{prefix}{}", hex::encode(&h.finalize()[..16]))
}

/// How a program names a meeting (a join token's `meeting` claim, the attendance filter): `<id>`
/// is one of its own; `<owner>/<id>` is program `owner`'s meeting `<id>` (one shared with it).
/// Ids never contain `/`, so the last one separates them. Returns (owner, id).
pub fn split_meeting_name<'a>(program: &'a str, name: &'a str) -> (&'a str, &'a str) {
    name.rsplit_once('/').unwrap_or((program, name))
}

impl MeetingRow {
    /// The meeting's id as `program` names it: its own id for the owner, `<owner>/<id>` for a
    /// program it is shared with (see [`split_meeting_name`]).
    pub fn id_for(&self, program: &str) -> String {
        if program == self.program_id {
            self.local_id.clone()
        } else {
            format!("{}/{}", self.program_id, self.local_id)
        }
    }

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
    /// Woken when this process writes webhook events (the dispatcher waits on it).
    outbox_wake: std::sync::Arc<tokio::sync::Notify>,
}

/// An optional value stored as JSON text.
fn json_opt<T: Serialize>(v: Option<&T>) -> Result<Option<String>, StoreError> {
    v.map(serde_json::to_string).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An optional JSON column read back.
fn from_json_opt<T: serde::de::DeserializeOwned>(v: Option<String>) -> Result<Option<T>, StoreError> {
    v.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))
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
            // A process that stalls inside a transaction (a paused cluster node) must not hold its
            // row locks for as long as it is paused: PostgreSQL ends such a transaction after a few
            // seconds (the node retries the batch when it wakes). Haven's transactions never wait
            // on anything but the database, so a healthy node never comes near this.
            opts.max_connections(10).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET idle_in_transaction_session_timeout = 5000").execute(&mut *conn).await?;
                    Ok(())
                })
            })
        } else {
            // SQLite takes one writer at a time; WAL lets readers go on meanwhile.
            opts.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    // The busy timeout first: switching to WAL takes a lock, and another
                    // process (the CLI beside a server, a server still closing) may hold it for
                    // a moment; without the timeout that moment is an immediate "database is locked".
                    sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
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
        Ok(Store { pool, postgres, sealer: None, outbox_wake: Default::default() })
    }

    /// Resolves when this process has written webhook events since the last call (or ever).
    pub async fn outbox_written(&self) {
        self.outbox_wake.notified().await
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

    /// Creates a meeting; `Conflict` when its program already used the id (or the key is taken).
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
        let policy = json_opt(m.credit_policy.as_ref())?;
        let format = json_opt(m.format.as_ref())?;
        sqlx::query(
            "INSERT INTO meetings (id, program_id, title, scheduled_start, scheduled_end, capacity, settings, shared_with, created_at, credit_policy, \
             format_id, format, series_id, occurrence_key, local_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(&m.format_id)
        .bind(format)
        .bind(&m.series_id)
        .bind(&m.occurrence_key)
        .bind(&m.local_id)
        .execute(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
        Ok(())
    }

    const MEETING_COLUMNS: &'static str =
        "id, program_id, title, scheduled_start, scheduled_end, capacity, settings, shared_with, created_at, ended_at, credit_policy, \
         format_id, format, series_id, occurrence_key, local_id";

    /// A meeting selected as `MEETING_COLUMNS, deleted_at`, with whether it was deleted.
    fn meeting_and_deleted(r: &AnyRow) -> Result<(MeetingRow, bool), StoreError> {
        Ok((Self::meeting_from_row(r)?, r.try_get::<Option<i64>, _>(16)?.is_some()))
    }

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
            credit_policy: from_json_opt(r.try_get(10)?)?,
            format_id: r.try_get(11)?,
            format: from_json_opt(r.try_get(12)?)?,
            series_id: r.try_get(13)?,
            occurrence_key: r.try_get(14)?,
            local_id: r.try_get(15)?,
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

    /// One of `program`'s meetings by the id it gave it, deleted or not (`true`: deleted).
    pub async fn program_meeting(
        &self,
        program: &str,
        local_id: &str,
    ) -> Result<Option<(MeetingRow, bool)>, StoreError> {
        let sql = format!(
            "SELECT {}, deleted_at FROM meetings WHERE program_id = $1 AND local_id = $2",
            Self::MEETING_COLUMNS
        );
        let row = sqlx::query(&sql).bind(program).bind(local_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::meeting_and_deleted).transpose()
    }

    /// The meeting a program names `name` (see [`split_meeting_name`]) and may join, with whether
    /// it was deleted. Anything else is `None`: whether another program uses an id is never told.
    /// A meeting created before ids were per program is also found by its bare id from the programs
    /// it is shared with (the links they made before), unless they use that id themselves.
    pub async fn resolve_meeting_name(
        &self,
        program: &str,
        name: &str,
    ) -> Result<Option<(MeetingRow, bool)>, StoreError> {
        let (owner, id) = split_meeting_name(program, name);
        if let Some(found) = self.program_meeting(owner, id).await? {
            return Ok(Some(found).filter(|(m, _)| m.admits_program(program)));
        }
        if name.contains('/') {
            return Ok(None);
        }
        let sql = format!("SELECT {}, deleted_at FROM meetings WHERE id = $1 AND local_id = $2", Self::MEETING_COLUMNS);
        let row = sqlx::query(&sql).bind(name).bind(name).fetch_optional(&self.pool).await?;
        let legacy = row.as_ref().map(Self::meeting_and_deleted).transpose()?;
        Ok(legacy.filter(|(m, _)| m.admits_program(program)))
    }

    /// The meeting a program names `name` and may join, when it is not deleted (see
    /// [`Self::resolve_meeting_name`]).
    pub async fn meeting_named(&self, program: &str, name: &str) -> Result<Option<MeetingRow>, StoreError> {
        let found = self.resolve_meeting_name(program, name).await?;
        Ok(found.filter(|(_, deleted)| !deleted).map(|(m, _)| m))
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

    /// Marks one of `program`'s meetings deleted (it stays in the database for its audit log and
    /// attendance, and its id stays used). Returns its key, or `None` when the program has no such
    /// meeting that is not deleted already.
    pub async fn delete_meeting(&self, program: &str, local_id: &str, now: i64) -> Result<Option<String>, StoreError> {
        let Some((m, false)) = self.program_meeting(program, local_id).await? else { return Ok(None) };
        let r = sqlx::query("UPDATE meetings SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(now)
            .bind(&m.id)
            .execute(&self.pool)
            .await?;
        Ok((r.rows_affected() > 0).then_some(m.id))
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
