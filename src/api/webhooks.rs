//! `/v1/webhooks`: a program registers endpoints for its events, lists them, disables, enables or
//! deletes them, rotates their secret, sends a test event, and reads recent delivery attempts.
//! Another program's endpoint is answered as not found.

use super::error::{ApiError, ErrorBody};
use super::ProgramAuth;
use crate::app::AppState;
use crate::store::{DeliveryView, EndpointRow};
use crate::webhooks::{self, guard, EventType};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Endpoints a program may have.
const MAX_ENDPOINTS: usize = 20;
/// How long a rotated-out secret keeps signing (a second signature) so receivers can switch.
const OLD_SECRET_GRACE_MS: i64 = 24 * 3600 * 1000;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: `https://` (plain `http://` only to loopback, where the operator
    /// allows it for testing). Refused when it resolves to a private or link-local address.
    pub url: String,
    /// Events to receive: `meeting.started`, `meeting.ended`, `attendance.finalized`,
    /// `participant.banned`, `certificate.issued`.
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// Changes to an endpoint (absent fields stay as they are).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// `false` disables (nothing is sent; new events are not kept for it); `true` enables again
    /// (also after it was disabled for failures: its waiting events are sent).
    pub enabled: Option<bool>,
    pub events: Option<Vec<String>>,
    pub url: Option<String>,
}

/// An endpoint as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it is disabled: `manual` (the program disabled it) or `failures` (a run of failed
    /// deliveries; enable it again once the receiver is repaired).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
    pub created_at: DateTime<Utc>,
    /// The signing secret (`whsec_...`): present only when the endpoint is created and when the
    /// secret is rotated. Keep it; it cannot be shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A test event was queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestEventResponse {
    /// The event's id (`webhook-id`).
    pub event_id: String,
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn response(e: EndpointRow, secret: Option<String>) -> WebhookResponse {
    WebhookResponse {
        enabled: e.disabled_at.is_none(),
        disabled_at: e.disabled_at.map(ts),
        created_at: ts(e.created_at),
        id: e.id,
        url: e.url,
        description: e.description,
        events: e.events,
        disabled_reason: e.disabled_reason,
        consecutive_failures: e.consecutive_failures,
        secret,
    }
}

fn events(list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::bad_request("events: name at least one event"));
    }
    let mut out = Vec::new();
    for e in list {
        let ty = EventType::parse(e).ok_or_else(|| {
            let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|e| e.as_str()).collect();
            ApiError::bad_request(format!("events: unknown event `{e}` (known: {})", known.join(", ")))
        })?;
        if !out.iter().any(|o| o == ty.as_str()) {
            out.push(ty.as_str().to_string());
        }
    }
    Ok(out)
}

/// Checks a URL the way deliveries will: form, scheme, and every address its name resolves to.
async fn checked_url(app: &AppState, url: &str) -> Result<String, ApiError> {
    if url.len() > 2000 {
        return Err(ApiError::bad_request("url: at most 2000 characters"));
    }
    let policy = guard::Policy::from(&app.config.webhooks);
    let refused =
        |e: guard::Refusal| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "webhook_url_refused", format!("url: {e}"));
    let parsed = guard::check_url(url, policy).map_err(refused)?;
    guard::check_resolved(&parsed, policy).await.map_err(refused)?;
    Ok(parsed.to_string())
}

async fn own(app: &AppState, program: &str, id: &str) -> Result<EndpointRow, ApiError> {
    app.store
        .endpoint(program, id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

#[utoipa::path(post, path = "/v1/webhooks", request_body = CreateWebhook,
    responses((status = 201, body = WebhookResponse, description = "The secret is in this answer only"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    body: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<(StatusCode, Json<WebhookResponse>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let events = events(&req.events)?;
    let url = checked_url(&app, &req.url).await?;
    if let Some(d) = &req.description {
        if d.chars().count() > 200 {
            return Err(ApiError::bad_request("description: at most 200 characters"));
        }
    }
    let existing = app.store.endpoints_of(&program.id).await.map_err(|e| ApiError::internal(&e))?;
    if existing.len() >= MAX_ENDPOINTS {
        return Err(ApiError::bad_request(format!("a program may have {MAX_ENDPOINTS} webhook endpoints")));
    }
    let row = EndpointRow {
        id: webhooks::new_endpoint_id(),
        program_id: program.id.clone(),
        url,
        description: req.description,
        events,
        created_at: now_ms(),
        disabled_at: None,
        disabled_reason: None,
        consecutive_failures: 0,
    };
    let secret = webhooks::new_secret();
    app.store.create_endpoint(&row, &secret).await.map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::CREATED, Json(response(row, Some(secret)))))
}

#[utoipa::path(get, path = "/v1/webhooks",
    responses((status = 200, body = [WebhookResponse]), (status = 401, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
) -> Result<Json<Vec<WebhookResponse>>, ApiError> {
    let rows = app.store.endpoints_of(&program.id).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows.into_iter().map(|e| response(e, None)).collect()))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn get_one(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>, ApiError> {
    Ok(Json(response(own(&app, &program.id, &id).await?, None)))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", params(("id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
    body: Result<Json<UpdateWebhook>, JsonRejection>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let events = req.events.as_deref().map(events).transpose()?;
    let url = match &req.url {
        Some(u) => Some(checked_url(&app, u).await?),
        None => None,
    };
    let found = app
        .store
        .update_endpoint(&program.id, &id, req.enabled, events.as_deref(), url.as_deref(), now_ms())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !found {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(Json(response(own(&app, &program.id, &id).await?, None)))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !app.store.delete_endpoint(&program.id, &id, now_ms()).await.map_err(|e| ApiError::internal(&e))? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", params(("id" = String, Path)),
    responses((status = 200, body = WebhookResponse, description = "The new secret; the old one also signs for 24 hours"),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let secret = webhooks::new_secret();
    let found = app
        .store
        .rotate_endpoint_secret(&program.id, &id, &secret, now_ms() + OLD_SECRET_GRACE_MS)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !found {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(Json(response(own(&app, &program.id, &id).await?, Some(secret))))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/test", params(("id" = String, Path)),
    responses((status = 202, body = TestEventResponse), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn test(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TestEventResponse>), ApiError> {
    match app.store.emit_test_event(&program.id, &id, now_ms()).await.map_err(|e| ApiError::internal(&e))? {
        Some(event_id) => Ok((StatusCode::ACCEPTED, Json(TestEventResponse { event_id }))),
        None => Err(ApiError::not_found("webhook")),
    }
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", params(("id" = String, Path)),
    responses((status = 200, body = [DeliveryView], description = "The 100 most recent deliveries, newest first, with every attempt"),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn deliveries(
    State(app): State<AppState>,
    ProgramAuth(program): ProgramAuth,
    Path(id): Path<String>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    own(&app, &program.id, &id).await?;
    let rows = app.store.deliveries_of(&id, 100).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows))
}
