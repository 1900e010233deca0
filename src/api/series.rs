//! `/v1/series`: recurring meetings. A series has a rule (RRULE in a time zone), a length, a
//! format, a credit policy and a capacity; its occurrences are meetings with their own ids,
//! created ahead for `series.horizon_days`. One join link serves the whole series: a join token
//! whose `meeting` claim is `series:<id>` joins whichever occurrence is open (from
//! `series.open_minutes_before` its start to its end) and is refused in between
//! (`series_not_open`).
//!
//! Edits and cancellations reach only occurrences that have not opened yet: an occurrence that
//! opened, and the attendance recorded in it, never change.
//!
//! Series ids are per program, as meeting ids are: inside the server a series is named by its key
//! ([`SeriesRow::id`]), and programs by the id they gave it. An id another program uses is
//! answered exactly as an id nobody uses. A cancelled series keeps its id.

use super::error::{ApiError, ErrorBody};
use super::ProgramAuth;
use crate::app::AppState;
use crate::attendance::credit::CreditPolicy;
use crate::meeting::ActorMsg;
use crate::protocol::MeetingSettings;
use crate::series::{occurrence_key, Occurrence, SeriesSpec};
use crate::store::{FormatRow, MeetingRow, SeriesRow, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The prefix of a join token's `meeting` claim that names a series instead of a meeting.
pub const SERIES_CLAIM_PREFIX: &str = "series:";

/// A new series.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSeries {
    /// Optional id (letters, digits, `-`, `_`; at most 64); generated when absent. Ids are the
    /// program's own: another program may use the same id for its own series. An id is never used
    /// twice by one program (`409 series_exists`; `409 series_cancelled` for one it cancelled).
    pub id: Option<String>,
    /// Each occurrence's title; 1 to 200 characters.
    pub title: String,
    /// IANA time zone, e.g. `America/Chicago`.
    pub time_zone: String,
    /// The first occurrence's local start, e.g. `2026-12-01T19:00:00`.
    #[schema(value_type = String)]
    pub dtstart: NaiveDateTime,
    /// RFC 5545 recurrence rule, e.g. `FREQ=WEEKLY;BYDAY=TU`.
    pub rrule: String,
    pub duration_minutes: u32,
    /// One of the program's formats (`/v1/formats`).
    pub format: Option<String>,
    pub capacity: Option<u32>,
    pub settings: Option<MeetingSettings>,
    pub credit_policy: Option<CreditPolicy>,
}

/// A change to every occurrence that has not opened yet (absent fields stay as they are).
/// Changing the time zone, start, rule or length replaces those occurrences with new ones
/// (new ids); other changes apply to them in place.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditSeries {
    pub title: Option<String>,
    pub time_zone: Option<String>,
    #[schema(value_type = Option<String>)]
    pub dtstart: Option<NaiveDateTime>,
    pub rrule: Option<String>,
    pub duration_minutes: Option<u32>,
    pub format: Option<String>,
    pub capacity: Option<u32>,
    pub settings: Option<MeetingSettings>,
    pub credit_policy: Option<CreditPolicy>,
}

/// A change to one occurrence that has not opened yet.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditOccurrence {
    pub title: Option<String>,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    pub capacity: Option<u32>,
}

/// One occurrence of a series.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OccurrenceView {
    /// The occurrence's meeting id (for `/v1/meetings/{id}` and attendance).
    pub meeting_id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    /// The start as local time in the series' zone, with its offset.
    pub local_start: Option<String>,
    /// `scheduled`, `open` (the series link joins it now), `live`, `ended` or `cancelled`.
    pub status: String,
}

/// A series as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesResponse {
    /// The id the program gave the series (its own namespace).
    pub id: String,
    pub title: String,
    #[serde(flatten)]
    pub spec: SeriesSpec,
    /// What a join token's `meeting` claim says to join this series: `series:<id>`.
    pub join_claim: String,
    pub cancelled: bool,
    pub created_at: DateTime<Utc>,
    pub occurrences: Vec<OccurrenceView>,
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn open_ms(app: &AppState) -> i64 {
    i64::from(app.config.series.open_minutes_before) * 60_000
}

fn title_ok(t: &str) -> Result<String, ApiError> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(ApiError::bad_request("title: 1 to 200 characters"));
    }
    Ok(t.to_string())
}

fn capacity_ok(app: &AppState, c: Option<u32>) -> Result<(), ApiError> {
    let max = app.config.limits.max_capacity;
    match c {
        Some(c) if c == 0 || c as usize > max => Err(ApiError::bad_request(format!("capacity: 1 to {max}"))),
        _ => Ok(()),
    }
}

/// The credit policy of an occurrence: the series', else the program's default, else the one
/// for a scheduled meeting. Checked once, when the series is made or edited.
fn policy(app: &AppState, program: &str, spec: &SeriesSpec) -> Result<CreditPolicy, ApiError> {
    let program_default =
        app.config.programs.iter().find(|p| p.id == program).and_then(|p| p.default_credit_policy.clone());
    let p = spec.credit_policy.clone().or(program_default).unwrap_or_else(|| CreditPolicy::effective(None, true));
    p.satisfiable(true).map_err(|m| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "credit_policy_unsatisfiable", format!("credit_policy: {m}"))
    })?;
    Ok(p)
}

/// The meeting row of one occurrence.
fn occurrence_row(
    app: &AppState,
    s: &SeriesRow,
    o: Occurrence,
    format: Option<&FormatRow>,
    policy: &CreditPolicy,
) -> MeetingRow {
    let local_id = format!("m_{}", hex::encode(rand::random::<[u8; 10]>()));
    MeetingRow {
        id: crate::store::meeting_key(&s.program_id, &local_id),
        local_id,
        program_id: s.program_id.clone(),
        title: s.title.clone(),
        scheduled_start: Some(o.start),
        scheduled_end: Some(o.end),
        capacity: s.spec.capacity.map(|c| c as usize).unwrap_or(app.config.limits.capacity) as i64,
        settings: s.spec.settings.clone().unwrap_or_default(),
        shared_with: Vec::new(),
        partner_facilitators: false,
        created_at: now_ms(),
        ended_at: None,
        credit_policy: Some(policy.clone()),
        format_id: format.map(|f| f.local_id.clone()),
        format: format.map(|f| f.spec.clone()),
        series_id: Some(s.id.clone()),
        occurrence_key: Some(occurrence_key(s.generation, o.start)),
    }
}

/// Creates the occurrences of `s` up to the horizon that do not exist yet. `from`: occurrences
/// that have not ended by then count (creation); with `not_opened`, only those that have not
/// opened yet (the hourly extension and a new schedule, so an occurrence already open is never
/// made twice). Returns how many were created.
pub async fn extend(app: &AppState, s: &SeriesRow, now: i64, not_opened: bool) -> Result<usize, StoreError> {
    if s.cancelled_at.is_some() {
        return Ok(0);
    }
    let until = now + i64::from(app.config.series.horizon_days) * 86_400_000;
    let occurrences = match s.spec.occurrences(now, until) {
        Ok(o) => o,
        Err(m) => return Err(StoreError::Corrupt(format!("series {}: {m}", s.id))),
    };
    let format = match &s.spec.format_id {
        Some(f) => app.store.format(&s.program_id, f).await?,
        None => None,
    };
    let program_default =
        app.config.programs.iter().find(|p| p.id == s.program_id).and_then(|p| p.default_credit_policy.clone());
    let policy =
        s.spec.credit_policy.clone().or(program_default).unwrap_or_else(|| CreditPolicy::effective(None, true));
    let opens_after = now + open_ms(app);
    let mut made = 0;
    for o in occurrences {
        if not_opened && o.start <= opens_after {
            continue;
        }
        if app.store.insert_occurrence(&occurrence_row(app, s, o, format.as_ref(), &policy)).await? {
            made += 1;
        }
    }
    Ok(made)
}

/// Keeps every series' occurrences created up to the horizon (hourly, and once at start).
pub async fn horizon_task(app: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let series = match app.store.active_series().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read series; occurrences not extended this hour");
                continue;
            }
        };
        for s in series {
            if let Err(e) = extend(&app, &s, now_ms(), true).await {
                tracing::warn!(series = %s.id, error = %e, "cannot extend series");
            }
        }
    }
}

async fn response(app: &AppState, s: SeriesRow) -> Result<SeriesResponse, ApiError> {
    let now = now_ms();
    let open = app.store.open_occurrence(&s.id, now, open_ms(app)).await.map_err(|e| ApiError::internal(&e))?;
    let occurrences = app.store.occurrences(&s.id).await.map_err(|e| ApiError::internal(&e))?;
    let occurrences = occurrences
        .into_iter()
        .map(|(m, cancelled)| {
            let status = if cancelled {
                "cancelled"
            } else if m.ended_at.is_some() {
                "ended"
            } else if app.rooms.get(&m.id).is_some() {
                "live"
            } else if open.as_ref().is_some_and(|o| o.id == m.id) {
                "open"
            } else {
                "scheduled"
            };
            OccurrenceView {
                local_start: m.scheduled_start.and_then(|t| s.spec.local_label(t)),
                scheduled_start: m.scheduled_start.map(ts),
                scheduled_end: m.scheduled_end.map(ts),
                status: status.into(),
                meeting_id: m.local_id,
                title: m.title,
            }
        })
        .collect();
    Ok(SeriesResponse {
        join_claim: format!("{SERIES_CLAIM_PREFIX}{}", s.local_id),
        id: s.local_id,
        title: s.title,
        spec: s.spec,
        cancelled: s.cancelled_at.is_some(),
        created_at: ts(s.created_at),
        occurrences,
    })
}

/// The program's own series by the id it gave it (cancelled ones too); `404 not_found` for an id
/// the program never used, whoever else uses it.
async fn own_series(app: &AppState, program: &str, id: &str) -> Result<SeriesRow, ApiError> {
    app.store
        .program_series(program, id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("series"))
}

fn cancelled() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "series_cancelled", "this series was cancelled")
}

fn invalid(m: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_series", m)
}

#[utoipa::path(post, path = "/v1/series", request_body = CreateSeries,
    responses((status = 201, body = SeriesResponse), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    body: Result<Json<CreateSeries>, JsonRejection>,
) -> Result<(StatusCode, Json<SeriesResponse>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = match req.id {
        Some(id) if super::meetings::valid_meeting_id(&id) => id,
        Some(_) => return Err(ApiError::bad_request("id: use 1 to 64 letters, digits, `-` or `_`")),
        None => format!("s_{}", hex::encode(rand::random::<[u8; 10]>())),
    };
    let title = title_ok(&req.title)?;
    capacity_ok(&app, req.capacity)?;
    if let Some(f) = &req.format {
        super::formats::own_format(&app, &program.id, f).await?;
    }
    let spec = SeriesSpec {
        time_zone: req.time_zone,
        dtstart: req.dtstart,
        rrule: req.rrule,
        duration_minutes: req.duration_minutes,
        format_id: req.format,
        capacity: req.capacity,
        settings: req.settings,
        credit_policy: req.credit_policy,
    };
    spec.validate().map_err(invalid)?;
    policy(&app, &program.id, &spec)?;
    let now = now_ms();
    let row = SeriesRow {
        id: crate::store::series_key(&program.id, &id),
        local_id: id,
        program_id: program.id.clone(),
        title,
        spec,
        generation: 0,
        created_at: now,
        updated_at: now,
        cancelled_at: None,
    };
    match app.store.create_series(&row).await {
        Ok(()) => {}
        // Only this program's own series can hold the id: the answer is about them alone.
        Err(StoreError::Conflict) => {
            let own = app.store.program_series(&program.id, &row.local_id).await.map_err(|e| ApiError::internal(&e))?;
            return Err(match own {
                // The same answer as an edit of it.
                Some(s) if s.cancelled_at.is_some() => cancelled(),
                _ => ApiError::new(
                    StatusCode::CONFLICT,
                    "series_exists",
                    "the program already has a series with this id; choose another or let the server generate one",
                ),
            });
        }
        Err(e) => return Err(ApiError::internal(&e)),
    }
    extend(&app, &row, now, false).await.map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::CREATED, Json(response(&app, row).await?)))
}

#[utoipa::path(get, path = "/v1/series",
    responses((status = 200, body = [SeriesResponse]), (status = 401, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
) -> Result<Json<Vec<SeriesResponse>>, ApiError> {
    let rows = app.store.series_of(&program.id).await.map_err(|e| ApiError::internal(&e))?;
    let mut out = Vec::with_capacity(rows.len());
    for s in rows {
        out.push(response(&app, s).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/series/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SeriesResponse), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let s = own_series(&app, &program.id, &id).await?;
    Ok(Json(response(&app, s).await?))
}

#[utoipa::path(patch, path = "/v1/series/{id}", params(("id" = String, Path)), request_body = EditSeries,
    responses((status = 200, body = SeriesResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn edit(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
    body: Result<Json<EditSeries>, JsonRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut s = own_series(&app, &program.id, &id).await?;
    if s.cancelled_at.is_some() {
        return Err(cancelled());
    }
    capacity_ok(&app, req.capacity)?;
    if let Some(f) = &req.format {
        super::formats::own_format(&app, &program.id, f).await?;
    }
    let old = s.spec.clone();
    if let Some(t) = &req.title {
        s.title = title_ok(t)?;
    }
    let spec = &mut s.spec;
    let mut reschedule = false;
    if let Some(v) = req.time_zone {
        reschedule |= v != spec.time_zone;
        spec.time_zone = v;
    }
    if let Some(v) = req.dtstart {
        reschedule |= v != spec.dtstart;
        spec.dtstart = v;
    }
    if let Some(v) = req.rrule {
        reschedule |= v != spec.rrule;
        spec.rrule = v;
    }
    if let Some(v) = req.duration_minutes {
        reschedule |= v != spec.duration_minutes;
        spec.duration_minutes = v;
    }
    if req.format.is_some() {
        spec.format_id = req.format;
    }
    if req.capacity.is_some() {
        spec.capacity = req.capacity;
    }
    if req.settings.is_some() {
        spec.settings = req.settings;
    }
    if req.credit_policy.is_some() {
        spec.credit_policy = req.credit_policy;
    }
    s.spec.validate().map_err(invalid)?;
    let policy = policy(&app, &program.id, &s.spec)?;
    let now = now_ms();
    let opens_after = now + open_ms(&app);
    s.updated_at = now;
    if reschedule {
        // A new schedule: the occurrences that have not opened make way for the new rule's.
        app.store.cancel_future_occurrences(&s.id, opens_after, now).await.map_err(|e| ApiError::internal(&e))?;
        s.generation += 1;
        app.store.update_series(&s).await.map_err(|e| ApiError::internal(&e))?;
        extend(&app, &s, now, true).await.map_err(|e| ApiError::internal(&e))?;
    } else {
        app.store.update_series(&s).await.map_err(|e| ApiError::internal(&e))?;
        let format = match &s.spec.format_id {
            Some(f) => Some(super::formats::own_format(&app, &program.id, f).await?),
            None => None,
        };
        let occurrences = app.store.occurrences(&s.id).await.map_err(|e| ApiError::internal(&e))?;
        for (mut m, cancelled) in occurrences {
            let not_opened = m.scheduled_start.is_some_and(|t| t > opens_after) && m.ended_at.is_none();
            if cancelled || !not_opened {
                continue;
            }
            m.title = s.title.clone();
            m.capacity = s.spec.capacity.map(|c| c as usize).unwrap_or(app.config.limits.capacity) as i64;
            m.settings = s.spec.settings.clone().unwrap_or_default();
            m.credit_policy = Some(policy.clone());
            if old.format_id != s.spec.format_id || format.is_some() {
                m.format_id = format.as_ref().map(|f| f.local_id.clone());
                m.format = format.as_ref().map(|f| f.spec.clone());
            }
            app.store.update_occurrence(&s.id, &m, opens_after).await.map_err(|e| ApiError::internal(&e))?;
        }
    }
    Ok(Json(response(&app, s).await?))
}

#[utoipa::path(delete, path = "/v1/series/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn cancel(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut s = own_series(&app, &program.id, &id).await?;
    let now = now_ms();
    if s.cancelled_at.is_none() {
        s.cancelled_at = Some(now);
        s.updated_at = now;
        app.store.update_series(&s).await.map_err(|e| ApiError::internal(&e))?;
    }
    app.store.cancel_future_occurrences(&s.id, now + open_ms(&app), now).await.map_err(|e| ApiError::internal(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

fn occurrence_started() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "occurrence_started",
        "this occurrence has opened (or was cancelled); it and its attendance can no longer change",
    )
}

/// An occurrence of the series by its meeting id (the program's own), not cancelled.
async fn own_occurrence(app: &AppState, s: &SeriesRow, meeting: &str) -> Result<MeetingRow, ApiError> {
    match app.store.program_meeting(&s.program_id, meeting).await.map_err(|e| ApiError::internal(&e))? {
        Some((m, false)) if m.series_id.as_deref() == Some(s.id.as_str()) => Ok(m),
        _ => Err(ApiError::not_found("occurrence")),
    }
}

#[utoipa::path(patch, path = "/v1/series/{id}/occurrences/{meeting_id}", params(("id" = String, Path), ("meeting_id" = String, Path)),
    request_body = EditOccurrence,
    responses((status = 200, body = OccurrenceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn edit_occurrence(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path((id, meeting)): Path<(String, String)>,
    body: Result<Json<EditOccurrence>, JsonRejection>,
) -> Result<Json<OccurrenceView>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let s = own_series(&app, &program.id, &id).await?;
    let mut m = own_occurrence(&app, &s, &meeting).await?;
    capacity_ok(&app, req.capacity)?;
    if let Some(t) = &req.title {
        m.title = title_ok(t)?;
    }
    if let Some(c) = req.capacity {
        m.capacity = i64::from(c);
    }
    let length = m.scheduled_end.zip(m.scheduled_start).map(|(e, s)| e - s).unwrap_or(0);
    if let Some(start) = req.scheduled_start {
        m.scheduled_start = Some(start.timestamp_millis());
        m.scheduled_end = Some(start.timestamp_millis() + length);
    }
    if let Some(end) = req.scheduled_end {
        m.scheduled_end = Some(end.timestamp_millis());
    }
    if m.scheduled_end <= m.scheduled_start {
        return Err(ApiError::bad_request("scheduled_end must be after scheduled_start"));
    }
    let now = now_ms();
    let opens_after = now + open_ms(&app);
    if m.scheduled_start.is_some_and(|t| t <= opens_after) && req.scheduled_start.is_some() {
        return Err(ApiError::bad_request(
            "scheduled_start: an occurrence can be moved to a time that has not opened yet",
        ));
    }
    if !app.store.update_occurrence(&s.id, &m, opens_after).await.map_err(|e| ApiError::internal(&e))? {
        return Err(occurrence_started());
    }
    Ok(Json(OccurrenceView {
        local_start: m.scheduled_start.and_then(|t| s.spec.local_label(t)),
        scheduled_start: m.scheduled_start.map(ts),
        scheduled_end: m.scheduled_end.map(ts),
        status: "scheduled".into(),
        meeting_id: m.local_id,
        title: m.title,
    }))
}

#[utoipa::path(delete, path = "/v1/series/{id}/occurrences/{meeting_id}", params(("id" = String, Path), ("meeting_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("api_key" = [])))]
pub async fn cancel_occurrence(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path((id, meeting)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let s = own_series(&app, &program.id, &id).await?;
    let m = own_occurrence(&app, &s, &meeting).await?;
    let now = now_ms();
    if !app.store.cancel_occurrence(&s.id, &m.id, now + open_ms(&app), now).await.map_err(|e| ApiError::internal(&e))? {
        return Err(occurrence_started());
    }
    // Nobody can be in it (it has not opened), but a room started by a meeting-id token ends too.
    if let Some(h) = app.rooms.get(&m.id) {
        let _ = h.tx.send(ActorMsg::End).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The occurrence a series join link joins now, or why none (with the series' title when the
/// series is the program's own, for the join page): for the join edge (`signal`).
pub async fn resolve_link(
    app: &AppState,
    program: &str,
    series: &str,
) -> Result<MeetingRow, (ApiError, Option<String>)> {
    // Another program's series is answered like one that does not exist.
    let s = app
        .store
        .program_series(program, series)
        .await
        .map_err(|e| (ApiError::internal(&e), None))?
        .ok_or_else(|| (ApiError::new(StatusCode::NOT_FOUND, "series_not_found", "no such series"), None))?;
    let title = Some(s.title.clone());
    if s.cancelled_at.is_some() {
        return Err((
            ApiError::new(StatusCode::GONE, "series_cancelled", "this series of meetings was cancelled"),
            title,
        ));
    }
    let now = now_ms();
    let open = app.store.open_occurrence(&s.id, now, open_ms(app)).await;
    if let Some(m) = open.map_err(|e| (ApiError::internal(&e), None))? {
        return Ok(m);
    }
    let next = app.store.next_occurrence_start(&s.id, now).await.map_err(|e| (ApiError::internal(&e), None))?;
    let message = match next {
        Some(t) => format!(
            "no meeting of this series is open now; the next opens at {}",
            crate::attendance::rfc3339(t - open_ms(app))
        ),
        None => "no meeting of this series is open now, and none is planned".to_string(),
    };
    Err((ApiError::new(StatusCode::CONFLICT, "series_not_open", message), title))
}
