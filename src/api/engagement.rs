//! `GET /v1/members/engagement`: the aftercare report for the asking program's own members.

use super::error::{ApiError, ErrorBody};
use super::ProgramAuth;
use crate::app::AppState;
use crate::attendance::engagement::{self, EngagementReport, Window};
use crate::attendance::parse_time;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

/// The window when none is given: the last 90 days.
const DEFAULT_DAYS: i64 = 90;
/// Members not seen for this many days are listed for outreach, unless asked otherwise.
pub const DEFAULT_NOT_SEEN_DAYS: u32 = 30;

/// Report parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EngagementQuery {
    /// From this date (`2026-11-01`) or time (RFC 3339), inclusive [default: 90 days before `until`].
    pub since: Option<String>,
    /// To this date (inclusive: the whole day) or time (exclusive) [default: now].
    pub until: Option<String>,
    /// List members not seen for this many days [default: 30].
    pub not_seen_days: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Parses the window (shared with the command line).
pub fn window(
    since: Option<&str>,
    until: Option<&str>,
    not_seen_days: Option<u32>,
    now: i64,
) -> Result<Window, String> {
    let until = match until {
        Some(s) => parse_time(s, true).ok_or("until: use YYYY-MM-DD or RFC 3339")?,
        None => now,
    };
    let since = match since {
        Some(s) => parse_time(s, false).ok_or("since: use YYYY-MM-DD or RFC 3339")?,
        None => until.saturating_sub(DEFAULT_DAYS * 86_400_000),
    };
    if since >= until {
        return Err("since must be before until".into());
    }
    let not_seen_days = not_seen_days.unwrap_or(DEFAULT_NOT_SEEN_DAYS);
    if not_seen_days > 3650 {
        return Err("not_seen_days: at most 3650".into());
    }
    Ok(Window { since, until, not_seen_days })
}

#[utoipa::path(get, path = "/v1/members/engagement", params(EngagementQuery),
    responses((status = 200, body = EngagementReport, description = "JSON, or CSV (one row per member) with format=csv"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn report(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    q: Result<Query<EngagementQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let w = window(q.since.as_deref(), q.until.as_deref(), q.not_seen_days, now).map_err(ApiError::bad_request)?;
    let format = q.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return Err(ApiError::bad_request("format: json or csv"));
    }
    let r = engagement::report(&app.store, &program.id, w).await.map_err(|e| ApiError::internal(&e))?;
    if format == "csv" {
        let text = engagement::to_csv(&r).map_err(|e| ApiError::internal(&e))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(r).into_response())
}
