//! Attendance for programs: export (JSON or CSV), certificates, verification, public keys.

use super::error::{ApiError, ErrorBody};
use super::ProgramAuth;
use crate::app::AppState;
use crate::attendance::certificate::CertificateClaims;
use crate::attendance::{self, AttendanceRow, Filter};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Export filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AttendanceQuery {
    /// One meeting: the program's own id, or `<owner program>/<id>` for a meeting another
    /// program shared with it.
    pub meeting: Option<String>,
    /// One member (the program's own reference).
    pub member: Option<String>,
    /// Every occurrence of one series.
    pub series: Option<String>,
    /// From this date (`2026-11-01`) or time (RFC 3339), inclusive.
    pub from: Option<String>,
    /// To this date (inclusive: the whole day) or time (exclusive).
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

fn filter(q: &AttendanceQuery) -> Result<Filter, ApiError> {
    let from = match &q.from {
        Some(s) => {
            attendance::parse_time(s, false).ok_or_else(|| ApiError::bad_request("from: use YYYY-MM-DD or RFC 3339"))?
        }
        None => 0,
    };
    let to = match &q.to {
        Some(s) => {
            attendance::parse_time(s, true).ok_or_else(|| ApiError::bad_request("to: use YYYY-MM-DD or RFC 3339"))?
        }
        None => i64::MAX,
    };
    Ok(Filter { meeting: q.meeting.clone(), member: q.member.clone(), series: q.series.clone(), from, to })
}

#[utoipa::path(get, path = "/v1/attendance", params(AttendanceQuery),
    responses((status = 200, body = [AttendanceRow], description = "JSON, or CSV with format=csv"), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    q: Result<Query<AttendanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let f = filter(&q)?;
    let rows = attendance::export(&app.store, &program.id, &f).await.map_err(|e| ApiError::internal(&e))?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(rows).into_response()),
        "csv" => {
            let text = attendance::to_csv(&rows).map_err(|e| ApiError::internal(&e))?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
        }
        _ => Err(ApiError::bad_request("format: json or csv")),
    }
}

/// A signed certificate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateResponse {
    /// Compact JWS (EdDSA); verify with `/.well-known/jwks.json`.
    pub certificate: String,
    pub claims: CertificateClaims,
}

#[utoipa::path(get, path = "/v1/attendance/{id}/certificate", params(("id" = String, Path)),
    responses((status = 200, body = CertificateResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn certificate(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<CertificateResponse>, ApiError> {
    let r = app.store.result_by_id(&id).await.map_err(|e| ApiError::internal(&e))?;
    let Some(r) = r.filter(|r| r.program_id == program.id) else {
        return Err(ApiError::not_found("attendance"));
    };
    issue(&app, &r, "api").await.map(Json)
}

/// Signs the certificate of a final result, when it was credited, and reports the issue to the
/// program's webhooks (`certificate.issued`; `via` is `api` or `signal`).
pub async fn issue(app: &AppState, r: &crate::store::ResultRow, via: &str) -> Result<CertificateResponse, ApiError> {
    // The meeting as the member's program names it (never its key).
    let meeting = app.store.meeting_any(&r.meeting_id).await.map_err(|e| ApiError::internal(&e))?;
    let meeting_id = meeting.map(|m| m.id_for(&r.program_id)).unwrap_or_else(|| r.meeting_id.clone());
    let claims = CertificateClaims::for_result(r, &meeting_id, &app.public_url, chrono::Utc::now().timestamp())
        .map_err(|e| ApiError::internal(&e))?;
    if !claims.verdict.credited {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_credited",
            format!("this attendance was not credited ({}); there is no certificate", claims.verdict.rule),
        ));
    }
    let certificate = app.keyring.get().sign(&claims).map_err(|e| ApiError::internal(&e))?;
    let kid = jsonwebtoken::decode_header(&certificate).ok().and_then(|h| h.kid).unwrap_or_default();
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(e) = app.store.note_certificate_issued(r, &meeting_id, &kid, via, now).await {
        // The certificate is genuine either way; the program misses only the notice.
        tracing::error!(error = %e, "cannot record certificate.issued for webhooks");
    }
    Ok(CertificateResponse { certificate, claims })
}

/// A certificate to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub certificate: String,
}

/// Whether a certificate is genuine, and what it says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// What the certificate says (when valid).
    pub claims: Option<CertificateClaims>,
    /// Why it is not valid: `certificate_malformed`, `certificate_unknown_key`, `certificate_bad_signature`.
    pub code: Option<String>,
}

#[utoipa::path(post, path = "/v1/certificates/verify", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 422, body = ErrorBody)))]
pub async fn verify(
    State(app): State<AppState>,
    body: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(match app.keyring.verify(&app.store, req.certificate.trim()).await {
        Ok(claims) => VerifyResponse { valid: true, claims: Some(claims), code: None },
        Err(e) => VerifyResponse { valid: false, claims: None, code: Some(e.code().to_string()) },
    }))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "The server's public keys (JWK Set)")))]
pub async fn jwks(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(app.keyring.get().jwks()))
}
