//! `/v1/meetings`: a program creates, reads, lists and deletes its own meetings, and reads their
//! audit logs. Meeting ids are per program: each program has its own, so another program's ids
//! are never in the way and never answered (see `MeetingRow::id`).

use super::error::{ApiError, ErrorBody, OwnIds};
use super::ProgramAuth;
use crate::app::AppState;
use crate::attendance::credit::CreditPolicy;
use crate::meeting::ActorMsg;
use crate::protocol::MeetingSettings;
use crate::store::{AuditRow, MeetingRow, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// A new meeting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    /// Optional id (letters, digits, `-`, `_`; at most 64); generated when absent. Ids are the
    /// program's own: another program may use the same id for its own meeting. An id is never
    /// used twice by one program (`409 meeting_exists`; `409 meeting_deleted` for one it deleted).
    pub id: Option<String>,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    /// Participants at most (default from the server's limits).
    pub capacity: Option<u32>,
    pub settings: Option<MeetingSettings>,
    /// Other programs whose members and observers may join (their members stay theirs: each
    /// program sees only its own). Their facilitators may not, unless `partner_facilitators`.
    #[serde(default)]
    pub shared_with: Vec<String>,
    /// How attendance earns credit (default: the program's default, else three quarters of the
    /// scheduled time, or 45 minutes present when the meeting has no schedule). A policy the
    /// meeting cannot satisfy is refused (422 `credit_policy_unsatisfiable`).
    /// Let facilitators of the `shared_with` programs run this meeting (admit, mute, remove, ban
    /// the owner's members too). Off by default.
    #[serde(default)]
    pub partner_facilitators: bool,
    pub credit_policy: Option<CreditPolicy>,
    /// The id of one of the program's formats (`/v1/formats`): the meeting runs its agenda. The
    /// meeting keeps the format as it is now; later edits of the format do not change it.
    pub format: Option<String>,
}

/// A meeting as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeetingResponse {
    /// The id the program gave the meeting (its own namespace).
    pub id: String,
    pub program_id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    pub capacity: u32,
    pub settings: MeetingSettings,
    pub shared_with: Vec<String>,
    pub partner_facilitators: bool,
    /// `scheduled`, `live` or `ended`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub credit_policy: CreditPolicy,
    /// The format the meeting was created with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_id: Option<String>,
    /// The series this meeting is an occurrence of, if any (the id the program gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<String>,
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The meeting as the API shows it. `series`: the ids the program gave its series, by key (see
/// [`series_names`]), so an occurrence names its series as the program does.
pub(crate) fn response(app: &AppState, m: MeetingRow, series: &HashMap<String, String>) -> MeetingResponse {
    let status = if m.ended_at.is_some() {
        "ended"
    } else if app.rooms.get(&m.id).is_some() {
        "live"
    } else {
        "scheduled"
    };
    MeetingResponse {
        status: status.into(),
        scheduled_start: m.scheduled_start.map(ts),
        scheduled_end: m.scheduled_end.map(ts),
        capacity: m.capacity.clamp(0, i64::from(u32::MAX)) as u32,
        created_at: ts(m.created_at),
        ended_at: m.ended_at.map(ts),
        credit_policy: crate::attendance::policy_of(&m),
        id: m.local_id,
        program_id: m.program_id,
        title: m.title,
        settings: m.settings,
        shared_with: m.shared_with,
        partner_facilitators: m.partner_facilitators,
        format_id: m.format_id,
        series_id: m.series_id.and_then(|key| series.get(&key).cloned()),
    }
}

/// The ids `program` gave its series, by key, when one of `rows` is an occurrence (else empty).
async fn series_names(app: &AppState, program: &str, rows: &[MeetingRow]) -> Result<HashMap<String, String>, ApiError> {
    if rows.iter().all(|m| m.series_id.is_none()) {
        return Ok(HashMap::new());
    }
    app.store.series_names(program).await.map_err(|e| ApiError::internal(&e))
}

/// Whether a meeting id is acceptable: it appears in links, so keep it URL-safe.
pub fn valid_meeting_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[utoipa::path(post, path = "/v1/meetings", request_body = CreateMeeting,
    responses((status = 201, body = MeetingResponse), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    body: Result<Json<CreateMeeting>, JsonRejection>,
) -> Result<(StatusCode, Json<MeetingResponse>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = match req.id {
        Some(id) if valid_meeting_id(&id) => id,
        Some(_) => return Err(ApiError::bad_request("id: use 1 to 64 letters, digits, `-` or `_`")),
        None => format!("m_{}", hex::encode(rand::random::<[u8; 10]>())),
    };
    let title = req.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::bad_request("title: 1 to 200 characters"));
    }
    if let (Some(s), Some(e)) = (req.scheduled_start, req.scheduled_end) {
        if e <= s {
            return Err(ApiError::bad_request("scheduled_end must be after scheduled_start"));
        }
    }
    let limits = &app.config.limits;
    let capacity = req.capacity.map(|c| c as usize).unwrap_or(limits.capacity);
    if capacity == 0 || capacity > limits.max_capacity {
        return Err(ApiError::bad_request(format!("capacity: 1 to {}", limits.max_capacity)));
    }
    let settings = req.settings.unwrap_or_default();
    settings.validate().map_err(|m| ApiError::bad_request(format!("settings: {m}")))?;
    if let Some(p) = &req.credit_policy {
        p.validate().map_err(|m| ApiError::bad_request(format!("credit_policy: {m}")))?;
    }
    let scheduled = req.scheduled_start.is_some() && req.scheduled_end.is_some();
    let program_default =
        app.config.programs.iter().find(|p| p.id == program.id).and_then(|p| p.default_credit_policy.clone());
    let from_program = req.credit_policy.is_none() && program_default.is_some();
    let policy = req.credit_policy.or(program_default).unwrap_or_else(|| CreditPolicy::effective(None, scheduled));
    if let Err(m) = policy.satisfiable(scheduled) {
        let whose = if from_program { "the program's default_credit_policy" } else { "credit_policy" };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "credit_policy_unsatisfiable",
            format!("{whose}: {m}"),
        ));
    }
    if req.partner_facilitators && req.shared_with.is_empty() {
        return Err(ApiError::bad_request("partner_facilitators: needs shared_with"));
    }
    for p in &req.shared_with {
        if app.programs.get(p).is_none() {
            return Err(ApiError::bad_request(format!("shared_with: unknown program `{p}`")));
        }
    }
    let format = match &req.format {
        Some(f) => Some(super::formats::own_format(&app, &program.id, f).await?),
        None => None,
    };
    let row = MeetingRow {
        id: crate::store::meeting_key(&program.id, &id),
        local_id: id,
        program_id: program.id.clone(),
        title,
        scheduled_start: req.scheduled_start.map(|d| d.timestamp_millis()),
        scheduled_end: req.scheduled_end.map(|d| d.timestamp_millis()),
        capacity: capacity as i64,
        settings,
        shared_with: req.shared_with,
        partner_facilitators: req.partner_facilitators,
        created_at: now_ms(),
        ended_at: None,
        // Stored as decided now, so a later change of defaults never changes this meeting's credit.
        credit_policy: Some(policy),
        format_id: format.as_ref().map(|f| f.local_id.clone()),
        format: format.map(|f| f.spec),
        series_id: None,
        occurrence_key: None,
    };
    match app.store.create_meeting(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(response(&app, row, &HashMap::new())))),
        // Only this program's own meetings can hold the id: the answer is about them alone.
        Err(StoreError::Conflict) => {
            let own =
                app.store.program_meeting(&program.id, &row.local_id).await.map_err(|e| ApiError::internal(&e))?;
            Err(OwnIds::MEETING.taken(matches!(own, Some((_, true)))))
        }
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// The program's own meeting by its id (see [`OwnIds::found`]).
async fn own_meeting(app: &AppState, program: &str, id: &str) -> Result<MeetingRow, ApiError> {
    OwnIds::MEETING.found(app.store.program_meeting(program, id).await.map_err(|e| ApiError::internal(&e))?)
}

fn deleted() -> ApiError {
    OwnIds::MEETING.gone()
}

#[utoipa::path(get, path = "/v1/meetings",
    responses((status = 200, body = [MeetingResponse]), (status = 401, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
) -> Result<Json<Vec<MeetingResponse>>, ApiError> {
    let rows = app.store.meetings_of(&program.id, 1000).await.map_err(|e| ApiError::internal(&e))?;
    let series = series_names(&app, &program.id, &rows).await?;
    Ok(Json(rows.into_iter().map(|m| response(&app, m, &series)).collect()))
}

#[utoipa::path(get, path = "/v1/meetings/{id}", params(("id" = String, Path)),
    responses((status = 200, body = MeetingResponse), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<MeetingResponse>, ApiError> {
    let m = own_meeting(&app, &program.id, &id).await?;
    let series = series_names(&app, &program.id, std::slice::from_ref(&m)).await?;
    Ok(Json(response(&app, m, &series)))
}

#[utoipa::path(delete, path = "/v1/meetings/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(key) = app.store.delete_meeting(&program.id, &id, now_ms()).await.map_err(|e| ApiError::internal(&e))?
    else {
        // Not found, or deleted already: the same answer as a read.
        return Err(own_meeting(&app, &program.id, &id).await.err().unwrap_or_else(deleted));
    };
    // A live meeting ends for everyone in it, wherever it runs (cluster: its owner is told).
    if let Some(h) = app.rooms.get(&key) {
        let _ = h.tx.send(ActorMsg::End).await;
    } else if let Some(cluster) = &app.cluster {
        cluster.tell_owner_to_end(&key).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/meetings/{id}/audit", params(("id" = String, Path)),
    responses((status = 200, body = [AuditRow]), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("api_key" = [])))]
pub async fn audit(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let m = own_meeting(&app, &program.id, &id).await?;
    let rows = app.store.audit_log(&m.id).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows))
}
