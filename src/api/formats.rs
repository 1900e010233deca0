//! `/v1/formats`: a program's meeting formats (agendas). A meeting or series refers to one by id;
//! a meeting keeps a copy of the format as it was when the meeting was made. Format ids are per
//! program, as meeting ids are: another program's ids are never in the way and never answered
//! (an id another program uses is answered as an id nobody uses). A deleted format's id stays
//! used by its program.

use super::error::{ApiError, ErrorBody, OwnIds};
use super::ProgramAuth;
use crate::app::AppState;
use crate::protocol::FormatSpec;
use crate::store::{FormatRow, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A new format, or the whole of an edited one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatRequest {
    /// Optional id (letters, digits, `-`, `_`; at most 64); generated when absent. Ignored on edit.
    /// Ids are the program's own: another program may use the same id for its own format. An id
    /// is never used twice by one program (`409 format_exists`; `409 format_deleted` for one it
    /// deleted).
    pub id: Option<String>,
    /// What the program calls it, e.g. "Open share, 60 minutes"; 1 to 200 characters.
    pub name: String,
    /// 1 to 30 segments, in order.
    pub segments: Vec<crate::protocol::Segment>,
    /// How long before a segment's planned end the facilitators are warned (default 120 s).
    pub segment_warning_seconds: Option<u32>,
}

impl FormatRequest {
    fn spec(&self) -> FormatSpec {
        FormatSpec {
            segments: self.segments.clone(),
            segment_warning_seconds: self.segment_warning_seconds.unwrap_or(120),
        }
    }
}

/// A format as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FormatResponse {
    /// The id the program gave the format (its own namespace).
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub spec: FormatSpec,
    /// The sum of the segments' planned lengths.
    pub planned_minutes: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn response(f: FormatRow) -> FormatResponse {
    FormatResponse {
        planned_minutes: f.spec.planned_minutes(),
        id: f.local_id,
        name: f.name,
        spec: f.spec,
        created_at: ts(f.created_at),
        updated_at: ts(f.updated_at),
    }
}

fn checked(req: &FormatRequest) -> Result<String, ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request("name: 1 to 200 characters"));
    }
    req.spec().validate().map_err(ApiError::bad_request)?;
    Ok(name)
}

/// The program's own format, for a meeting or series that names it.
pub async fn own_format(app: &AppState, program: &str, id: &str) -> Result<FormatRow, ApiError> {
    app.store.format(program, id).await.map_err(|e| ApiError::internal(&e))?.ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "format_not_found", format!("format: no format `{id}`"))
    })
}

#[utoipa::path(post, path = "/v1/formats", request_body = FormatRequest,
    responses((status = 201, body = FormatResponse), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    body: Result<Json<FormatRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<FormatResponse>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = checked(&req)?;
    let spec = req.spec();
    let id = match req.id {
        Some(id) if super::meetings::valid_meeting_id(&id) => id,
        Some(_) => return Err(ApiError::bad_request("id: use 1 to 64 letters, digits, `-` or `_`")),
        None => format!("f_{}", hex::encode(rand::random::<[u8; 10]>())),
    };
    let now = Utc::now().timestamp_millis();
    let row = FormatRow {
        id: crate::store::format_key(&program.id, &id),
        local_id: id,
        program_id: program.id.clone(),
        name,
        spec,
        created_at: now,
        updated_at: now,
    };
    match app.store.create_format(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(response(row)))),
        // Only this program's own formats can hold the id: the answer is about them alone.
        Err(StoreError::Conflict) => {
            let own = app.store.program_format(&program.id, &row.local_id).await.map_err(|e| ApiError::internal(&e))?;
            Err(OwnIds::FORMAT.taken(matches!(own, Some((_, true)))))
        }
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// The program's own format by its id (see [`OwnIds::found`]).
async fn own(app: &AppState, program: &str, id: &str) -> Result<FormatRow, ApiError> {
    OwnIds::FORMAT.found(app.store.program_format(program, id).await.map_err(|e| ApiError::internal(&e))?)
}

fn deleted() -> ApiError {
    OwnIds::FORMAT.gone()
}

#[utoipa::path(get, path = "/v1/formats",
    responses((status = 200, body = [FormatResponse]), (status = 401, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
) -> Result<Json<Vec<FormatResponse>>, ApiError> {
    let rows = app.store.formats_of(&program.id).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows.into_iter().map(response).collect()))
}

#[utoipa::path(get, path = "/v1/formats/{id}", params(("id" = String, Path)),
    responses((status = 200, body = FormatResponse), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<FormatResponse>, ApiError> {
    Ok(Json(response(own(&app, &program.id, &id).await?)))
}

#[utoipa::path(put, path = "/v1/formats/{id}", params(("id" = String, Path)), request_body = FormatRequest,
    responses((status = 200, body = FormatResponse), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
    body: Result<Json<FormatRequest>, JsonRejection>,
) -> Result<Json<FormatResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = checked(&req)?;
    let old = own(&app, &program.id, &id).await?;
    let row = FormatRow { name, spec: req.spec(), updated_at: Utc::now().timestamp_millis(), ..old };
    if !app.store.update_format(&row).await.map_err(|e| ApiError::internal(&e))? {
        // Deleted meanwhile: the same answer as a read.
        return Err(own(&app, &program.id, &id).await.err().unwrap_or_else(deleted));
    }
    Ok(Json(response(row)))
}

#[utoipa::path(delete, path = "/v1/formats/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = Utc::now().timestamp_millis();
    if app.store.delete_format(&program.id, &id, now).await.map_err(|e| ApiError::internal(&e))? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        // Not found, or deleted already: the same answer as a read.
        Err(own(&app, &program.id, &id).await.err().unwrap_or_else(deleted))
    }
}
