//! Webhook endpoints and the outbox (see `crate::webhooks`).
//!
//! Events are written inside the transaction that stores their fact (`emit`), and only when the
//! program has an enabled endpoint subscribed, with one delivery row per such endpoint. A fact is
//! reported once: the statement storing it says whether it was new (a replayed journal batch or a
//! second finalisation stores nothing, and so emits nothing). Delivery rows are claimed with a
//! lease (`claimed_until`, `claim_token`); on PostgreSQL the claim also locks the endpoint row and
//! skips locked deliveries, so nodes never wait on each other and never exceed an endpoint's
//! limit of requests in flight.

use super::{sealed, MeetingRow, ResultRow, Store, StoreError};
use crate::attendance::AttendanceRow;
use crate::webhooks::{self, EventType};
use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// An endpoint as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: String,
    pub program_id: String,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// `manual` (the program) or `failures` (a run of failed attempts).
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i64,
}

/// A delivery claimed by this node, with what it takes to send it.
#[derive(Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub event_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secrets: Vec<String>,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub event_created_at: i64,
    pub claim_token: String,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("delivery_id", &self.delivery_id)
            .field("event_id", &self.event_id)
            .field("endpoint_id", &self.endpoint_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl AttemptOutcome {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// One attempt, as the program's administrator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    #[serde(serialize_with = "super::ser_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// The HTTP status the endpoint answered; null when there was no answer.
    pub status_code: Option<u16>,
    /// Why there was no usable answer (timeout, connection refused, refused address...).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The event id (`webhook-id`), the same in every attempt.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (given up after the retry window).
    pub status: String,
    pub attempts: i64,
    #[serde(serialize_with = "super::ser_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// When the next attempt is due (pending deliveries).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<String>,
    /// Every attempt, oldest first.
    pub history: Vec<AttemptView>,
}

const ENDPOINT_COLUMNS: &str = "e.id, e.program_id, e.url, e.description, e.created_at, e.disabled_at, \
     e.disabled_reason, e.consecutive_failures";

/// The endpoints of a program subscribed to an event type (SQL, parameters $A, $B): enabled
/// ones, and ones disabled after a run of failures (their events wait until they are enabled
/// again, so a broken receiver loses nothing); not the ones the program disabled or deleted.
fn subscribed(program: usize, ty: usize) -> String {
    format!(
        "SELECT e.id FROM webhook_endpoints e JOIN webhook_subscriptions s ON s.endpoint_id = e.id \
         WHERE e.program_id = ${program} AND s.event_type = ${ty} AND e.deleted_at IS NULL \
         AND (e.disabled_at IS NULL OR e.disabled_reason = 'failures')"
    )
}

/// Writes an event for `program` inside the caller's transaction, with a delivery row for each
/// subscribed endpoint. Writes nothing when no endpoint wants it. Returns whether it was written.
pub(super) async fn emit(
    conn: &mut AnyConnection,
    program: &str,
    ty: EventType,
    data: serde_json::Value,
    at: i64,
) -> Result<bool, StoreError> {
    let id = webhooks::new_event_id();
    let sql = format!(
        "INSERT INTO webhook_events (id, program_id, event_type, payload, created_at) \
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS ({})",
        subscribed(6, 7)
    );
    let written = sqlx::query(&sql)
        .bind(&id)
        .bind(program)
        .bind(ty.as_str())
        .bind(webhooks::payload(ty, at, data))
        .bind(at)
        .bind(program)
        .bind(ty.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if written == 0 {
        return Ok(false);
    }
    let sql = format!(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, created_at) \
         SELECT $1, sub.id, 'pending', 0, $2, $3 FROM ({}) sub",
        subscribed(4, 5)
    );
    sqlx::query(&sql).bind(&id).bind(at).bind(at).bind(program).bind(ty.as_str()).execute(&mut *conn).await?;
    Ok(true)
}

/// Whether any endpoint of `program` takes `ty` (see `subscribed`; inside the caller's transaction).
async fn has_subscribers(conn: &mut AnyConnection, program: &str, ty: EventType) -> Result<bool, StoreError> {
    let sql = format!("SELECT EXISTS ({})", subscribed(1, 2));
    let row = sqlx::query(&sql).bind(program).bind(ty.as_str()).fetch_one(&mut *conn).await?;
    // SQLite answers an integer, PostgreSQL a boolean.
    Ok(row.try_get::<bool, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|v| v != 0))?)
}

fn endpoint_from_row(r: &AnyRow, events: Vec<String>) -> Result<EndpointRow, StoreError> {
    Ok(EndpointRow {
        id: r.try_get(0)?,
        program_id: r.try_get(1)?,
        url: r.try_get(2)?,
        description: r.try_get(3)?,
        created_at: r.try_get(4)?,
        disabled_at: r.try_get(5)?,
        disabled_reason: r.try_get(6)?,
        consecutive_failures: r.try_get(7)?,
        events,
    })
}

impl Store {
    /// A transaction that writes: on SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a read before the first write cannot fail when another connection commits meanwhile.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(if self.postgres { self.pool.begin().await? } else { self.pool.begin_with("BEGIN IMMEDIATE").await? })
    }

    // ---- facts and their events ----

    /// A meeting's first admission (called in `apply_journal`'s transaction for each meeting with
    /// an `admitted` record in the batch): records when it started and, the first time only,
    /// emits `meeting.started` to the owner and the programs it is shared with.
    pub(super) async fn note_meeting_started(
        &self,
        conn: &mut AnyConnection,
        meeting: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let first = sqlx::query("UPDATE meetings SET started_at = $1 WHERE id = $2 AND started_at IS NULL")
            .bind(at)
            .bind(meeting)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if first == 0 {
            return Ok(false);
        }
        let Some(m) = meeting_in(conn, meeting).await? else { return Ok(false) };
        let mut any = false;
        for program in std::iter::once(&m.program_id).chain(m.shared_with.iter()) {
            let data = json!({"meeting_id": m.id_for(program), "meeting_title": m.title, "started_at": crate::attendance::rfc3339(at),
                "scheduled_start": m.scheduled_start.map(crate::attendance::rfc3339),
                "scheduled_end": m.scheduled_end.map(crate::attendance::rfc3339)});
            any |= emit(conn, program, EventType::MeetingStarted, data, at).await?;
        }
        Ok(any)
    }

    /// A ban newly stored (in `apply_journal`'s transaction): `participant.banned` to the banned
    /// member's program, the only one that may know their reference.
    pub(super) async fn note_banned(
        &self,
        conn: &mut AnyConnection,
        meeting: &str,
        program: &str,
        member_ref: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        // The meeting as the member's program names it, never its key.
        let name = meeting_in(conn, meeting).await?.map(|m| m.id_for(program)).unwrap_or_else(|| meeting.to_string());
        let data = json!({"meeting_id": name, "member_ref": member_ref, "banned_at": crate::attendance::rfc3339(at)});
        emit(conn, program, EventType::ParticipantBanned, data, at).await
    }

    /// Stores a meeting's final results and its end in one transaction, with their events: one
    /// `attendance.finalized` per result stored now (each to the member's own program) and
    /// `meeting.ended` (to the owner and the programs it is shared with) when the end is new.
    /// Idempotent: results already stored and an end already recorded emit nothing again.
    pub async fn finalize_meeting(
        &self,
        meeting: &MeetingRow,
        at: i64,
        results: &[(ResultRow, AttendanceRow)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let mut emitted = false;
        let mut per_program: std::collections::BTreeMap<&str, usize> = Default::default();
        // Whether each program wants `attendance.finalized`, asked once per program: most
        // programs have no endpoint, and their results then cost nothing more.
        let mut wants: std::collections::HashMap<&str, bool> = Default::default();
        for (r, row) in results {
            let new = sqlx::query(
                "INSERT INTO attendance_results (id, meeting_id, program_id, member_ref, computed_at, result) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, program_id, member_ref) DO NOTHING",
            )
            .bind(&r.id)
            .bind(&r.meeting_id)
            .bind(&r.program_id)
            .bind(&r.member_ref)
            .bind(r.computed_at)
            .bind(&r.result)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            *per_program.entry(r.program_id.as_str()).or_default() += 1;
            let wanted = match wants.get(r.program_id.as_str()) {
                Some(w) => *w,
                None => {
                    let w = has_subscribers(&mut tx, &r.program_id, EventType::AttendanceFinalized).await?;
                    wants.insert(&r.program_id, w);
                    w
                }
            };
            if new > 0 && wanted {
                let data = serde_json::to_value(row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                emitted |= emit(&mut tx, &r.program_id, EventType::AttendanceFinalized, data, at).await?;
            }
        }
        let ended = sqlx::query("UPDATE meetings SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(at)
            .bind(&meeting.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if ended > 0 {
            let started: Option<i64> = sqlx::query("SELECT started_at FROM meetings WHERE id = $1")
                .bind(&meeting.id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .flatten();
            for program in std::iter::once(&meeting.program_id).chain(meeting.shared_with.iter()) {
                let data = json!({"meeting_id": meeting.id_for(program), "meeting_title": meeting.title,
                    "started_at": started.map(crate::attendance::rfc3339),
                    "ended_at": crate::attendance::rfc3339(at),
                    "attendance_results": per_program.get(program.as_str()).copied().unwrap_or(0)});
                emitted |= emit(&mut tx, program, EventType::MeetingEnded, data, at).await?;
            }
        }
        tx.commit().await?;
        if emitted {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// A certificate was issued: `certificate.issued` to the member's program.
    /// `meeting_id`: the meeting as the member's program names it.
    pub async fn note_certificate_issued(
        &self,
        r: &ResultRow,
        meeting_id: &str,
        kid: &str,
        via: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let data = json!({"attendance_id": r.id, "meeting_id": meeting_id, "member_ref": r.member_ref,
            "kid": kid, "issued_at": crate::attendance::rfc3339(now), "via": via});
        let mut tx = self.begin_write().await?;
        let emitted = emit(&mut tx, &r.program_id, EventType::CertificateIssued, data, now).await?;
        tx.commit().await?;
        if emitted {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    // ---- endpoints ----

    /// Registers an endpoint with its subscriptions.
    pub async fn create_endpoint(&self, e: &EndpointRow, secret: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, program_id, url, description, secret, created_at, consecutive_failures) \
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
        )
        .bind(&e.id)
        .bind(&e.program_id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(sealed::seal(self.sealer.as_deref(), secret, &e.id))
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        set_subscriptions(&mut tx, &e.id, &e.events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_of(&self, endpoint: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT event_type FROM webhook_subscriptions WHERE endpoint_id = $1 ORDER BY event_type")
                .bind(endpoint)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// A program's endpoints (not deleted), oldest first.
    pub async fn endpoints_of(&self, program: &str) -> Result<Vec<EndpointRow>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.program_id = $1 AND e.deleted_at IS NULL \
             ORDER BY e.created_at, e.id"
        );
        let rows = sqlx::query(&sql).bind(program).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            out.push(endpoint_from_row(r, self.events_of(&id).await?)?);
        }
        Ok(out)
    }

    /// One of a program's endpoints.
    pub async fn endpoint(&self, program: &str, id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.id = $1 AND e.program_id = $2 AND e.deleted_at IS NULL"
        );
        let Some(r) = sqlx::query(&sql).bind(id).bind(program).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some(endpoint_from_row(&r, self.events_of(id).await?)?))
    }

    /// Changes an endpoint: enabled or disabled (by the program), its events, its URL. Enabling
    /// clears the failure count. False when there is no such endpoint.
    pub async fn update_endpoint(
        &self,
        program: &str,
        id: &str,
        enabled: Option<bool>,
        events: Option<&[String]>,
        url: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(
            "UPDATE webhook_endpoints SET url = COALESCE($1, url) WHERE id = $2 AND program_id = $3 AND deleted_at IS NULL",
        )
        .bind(url)
        .bind(id)
        .bind(program)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Ok(false);
        }
        match enabled {
            Some(true) => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0 WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            Some(false) => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = 'manual' WHERE id = $2 AND disabled_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            None => {}
        }
        if let Some(events) = events {
            set_subscriptions(&mut tx, id, events).await?;
        }
        tx.commit().await?;
        if enabled == Some(true) {
            self.outbox_wake.notify_one();
        }
        Ok(true)
    }

    /// Deletes an endpoint: nothing more is sent to it (what waited for it is given up, so the
    /// purge can take it). False when there is no such endpoint.
    pub async fn delete_endpoint(&self, program: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $1, disabled_at = COALESCE(disabled_at, $2), \
             disabled_reason = COALESCE(disabled_reason, 'deleted') WHERE id = $3 AND program_id = $4 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(program)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint deleted', claimed_until = NULL, claim_token = NULL \
             WHERE endpoint_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A new secret for an endpoint; the old one keeps signing too (a second signature in
    /// `webhook-signature`) until `old_valid_until`, so receivers can switch without losing events.
    pub async fn rotate_endpoint_secret(
        &self,
        program: &str,
        id: &str,
        secret: &str,
        old_valid_until: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $1, secret = $2 \
             WHERE id = $3 AND program_id = $4 AND deleted_at IS NULL",
        )
        .bind(old_valid_until)
        .bind(sealed::seal(self.sealer.as_deref(), secret, id))
        .bind(id)
        .bind(program)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A `webhook.test` event for one endpoint, whatever it subscribes to (queued also while it is
    /// disabled, and sent once it is enabled). Its id.
    pub async fn emit_test_event(&self, program: &str, endpoint: &str, now: i64) -> Result<Option<String>, StoreError> {
        let Some(e) = self.endpoint(program, endpoint).await? else { return Ok(None) };
        let id = webhooks::new_event_id();
        let data = json!({"endpoint_id": e.id, "program_id": program});
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhook_events (id, program_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(program)
        .bind(EventType::Test.as_str())
        .bind(webhooks::payload(EventType::Test, now, data))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, 'pending', 0, $3, $4)",
        )
        .bind(&id)
        .bind(&e.id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.outbox_wake.notify_one();
        Ok(Some(id))
    }

    /// An endpoint's most recent deliveries (newest first) with their attempts.
    pub async fn deliveries_of(&self, endpoint: &str, limit: i64) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.event_id, v.event_type, d.status, d.attempts, d.created_at, d.next_attempt_at, d.delivered_at \
             FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
             WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
        )
        .bind(endpoint)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let status: String = r.try_get(3)?;
            let attempts = sqlx::query(
                "SELECT at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            let history = attempts
                .iter()
                .map(|a| {
                    Ok(AttemptView {
                        at: a.try_get(0)?,
                        status_code: a.try_get::<Option<i64>, _>(1)?.and_then(|c| u16::try_from(c).ok()),
                        error: a.try_get(2)?,
                        duration_ms: a.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next: i64 = r.try_get(6)?;
            out.push(DeliveryView {
                event_id: r.try_get(1)?,
                event_type: r.try_get(2)?,
                attempts: r.try_get(4)?,
                created_at: r.try_get(5)?,
                next_attempt_at: (status == "pending").then(|| crate::attendance::rfc3339(next)),
                delivered_at: r.try_get::<Option<i64>, _>(7)?.map(crate::attendance::rfc3339),
                status,
                history,
            });
        }
        Ok(out)
    }

    // ---- the dispatcher's side ----

    /// Endpoints with a delivery due now and not claimed (enabled ones only), up to `limit`.
    pub async fn endpoints_with_due_work(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT d.endpoint_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until < $2) \
             AND e.disabled_at IS NULL LIMIT $3",
        )
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// When the next delivery falls due (a retry, or a claim whose lease runs out), if any.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query(
            "SELECT MIN(CASE WHEN d.claimed_until IS NOT NULL AND d.claimed_until > d.next_attempt_at \
             THEN d.claimed_until ELSE d.next_attempt_at END) \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND e.disabled_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get(0)?)
    }

    /// Claims up to `max_in_flight` minus what is already in flight (on any node) of an endpoint's
    /// due deliveries, for `lease_ms`. On PostgreSQL the endpoint row is locked for the claim
    /// (`SKIP LOCKED`: another node claiming for it means nothing to do here now).
    pub async fn claim_deliveries(
        &self,
        endpoint: &str,
        max_in_flight: i64,
        now: i64,
        lease_ms: i64,
        token: &str,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.begin_write().await?;
        let lock = if self.postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let ep = sqlx::query(&format!(
            "SELECT url, secret, previous_secret, previous_secret_until FROM webhook_endpoints \
             WHERE id = $1 AND disabled_at IS NULL{lock}"
        ))
        .bind(endpoint)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ep) = ep else { return Ok(Vec::new()) };
        // The secrets first: one that does not open claims nothing.
        let url: String = ep.try_get(0)?;
        let mut secrets = vec![sealed::open(self.sealer.as_deref(), &ep.try_get::<String, _>(1)?, endpoint)?];
        let previous: Option<String> = ep.try_get(2)?;
        let until: Option<i64> = ep.try_get(3)?;
        if let (Some(p), Some(until)) = (previous, until) {
            if until > now {
                secrets.push(sealed::open(self.sealer.as_deref(), &p, endpoint)?);
            }
        }
        let in_flight: i64 = sqlx::query(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' AND claimed_until >= $2",
        )
        .bind(endpoint)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let free = max_in_flight - in_flight;
        if free <= 0 {
            return Ok(Vec::new());
        }
        let skip = if self.postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        // The lease condition is repeated on the outer statement so that PostgreSQL re-checks it
        // against the row as another transaction may have just left it.
        let claimed = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_until = $1, claim_token = $2 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = $3 AND status = 'pending' \
               AND next_attempt_at <= $4 AND (claimed_until IS NULL OR claimed_until < $5) \
               ORDER BY next_attempt_at, id LIMIT $6{skip}) \
             AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $7) \
             RETURNING id, event_id, attempts"
        ))
        .bind(now + lease_ms)
        .bind(token)
        .bind(endpoint)
        .bind(now)
        .bind(now)
        .bind(free)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(claimed.len());
        for c in &claimed {
            let event_id: String = c.try_get(1)?;
            let ev = sqlx::query("SELECT payload, created_at FROM webhook_events WHERE id = $1")
                .bind(&event_id)
                .fetch_one(&mut *tx)
                .await?;
            out.push((c.try_get::<i64, _>(0)?, event_id, c.try_get::<i64, _>(2)?, ev.try_get(0)?, ev.try_get(1)?));
        }
        tx.commit().await?;
        Ok(out
            .into_iter()
            .map(|(delivery_id, event_id, attempts, payload, event_created_at)| Claimed {
                delivery_id,
                event_id,
                endpoint_id: endpoint.to_string(),
                url: url.clone(),
                secrets: secrets.clone(),
                payload,
                attempts,
                event_created_at,
                claim_token: token.to_string(),
            })
            .collect())
    }

    /// Records an attempt: delivered, or scheduled again at `retry_at`, or given up (`retry_at`
    /// `None`); counts the endpoint's run of failures and disables it at `disable_after`. Only the
    /// holder of the claim records (a node whose lease ran out and was overtaken changes nothing
    /// but the attempt log). Returns whether the endpoint was disabled now.
    pub async fn finish_delivery(
        &self,
        c: &Claimed,
        outcome: &AttemptOutcome,
        now: i64,
        retry_at: Option<i64>,
        disable_after: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let ok = outcome.succeeded();
        let (status, next) = match (ok, retry_at) {
            (true, _) => ("delivered", now),
            (false, Some(at)) => ("pending", at),
            (false, None) => ("failed", now),
        };
        let held = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             claimed_until = NULL, claim_token = NULL, last_attempt_at = $3, last_status_code = $4, last_error = $5, \
             delivered_at = $6 WHERE id = $7 AND claim_token = $8",
        )
        .bind(status)
        .bind(next)
        .bind(now)
        .bind(outcome.status_code.map(i64::from))
        .bind(&outcome.error)
        .bind(ok.then_some(now))
        .bind(c.delivery_id)
        .bind(&c.claim_token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, endpoint_id, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.delivery_id)
        .bind(&c.endpoint_id)
        .bind(now)
        .bind(outcome.status_code.map(i64::from))
        .bind(&outcome.error)
        .bind(outcome.duration_ms)
        .execute(&mut *tx)
        .await?;
        let mut disabled = false;
        if ok {
            sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1")
                .bind(&c.endpoint_id)
                .execute(&mut *tx)
                .await?;
        } else if held > 0 {
            sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 WHERE id = $1")
                .bind(&c.endpoint_id)
                .execute(&mut *tx)
                .await?;
            disabled = sqlx::query(
                "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = 'failures' \
                 WHERE id = $2 AND disabled_at IS NULL AND consecutive_failures >= $3",
            )
            .bind(now)
            .bind(&c.endpoint_id)
            .bind(disable_after)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// Deletes delivered and given-up events older than `before` with their deliveries and
    /// attempts; returns how many events went.
    pub async fn purge_webhook_events(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        const DONE: &str = "SELECT id FROM webhook_events v WHERE v.created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = v.id AND d.status = 'pending')";
        sqlx::query(&format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE event_id IN ({DONE}))"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DELETE FROM webhook_deliveries WHERE event_id IN ({DONE})"))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query(&format!("DELETE FROM webhook_events WHERE id IN ({DONE})"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Seals webhook secrets stored before a key-encryption key was configured.
    pub(super) async fn seal_webhook_secrets(&self) -> Result<(), StoreError> {
        let rows =
            sqlx::query("SELECT id, secret, previous_secret FROM webhook_endpoints").fetch_all(&self.pool).await?;
        for r in &rows {
            let id: String = r.try_get(0)?;
            let secret: String = r.try_get(1)?;
            let previous: Option<String> = r.try_get(2)?;
            // Opening checks that sealed ones open with this key.
            sealed::open(self.sealer.as_deref(), &secret, &id)?;
            if let Some(p) = &previous {
                sealed::open(self.sealer.as_deref(), p, &id)?;
            }
            let seal = |s: &str| {
                if sealed::is_sealed(s) {
                    s.to_string()
                } else {
                    sealed::seal(self.sealer.as_deref(), s, &id)
                }
            };
            if !sealed::is_sealed(&secret) || previous.as_deref().is_some_and(|p| !sealed::is_sealed(p)) {
                sqlx::query("UPDATE webhook_endpoints SET secret = $1, previous_secret = $2 WHERE id = $3")
                    .bind(seal(&secret))
                    .bind(previous.as_deref().map(seal))
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }
}

async fn set_subscriptions(conn: &mut AnyConnection, endpoint: &str, events: &[String]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(endpoint).execute(&mut *conn).await?;
    for ev in events {
        sqlx::query(
            "INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES ($1, $2) ON CONFLICT (endpoint_id, event_type) DO NOTHING",
        )
        .bind(endpoint)
        .bind(ev)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A meeting read inside a transaction.
async fn meeting_in(conn: &mut AnyConnection, id: &str) -> Result<Option<MeetingRow>, StoreError> {
    let sql = format!("SELECT {} FROM meetings WHERE id = $1", Store::MEETING_COLUMNS);
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref().map(Store::meeting_from_row).transpose()
}
