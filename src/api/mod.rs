//! The HTTP API: meetings for programs (by API key), health, metrics, OpenAPI, and the router.

pub mod attendance;
pub mod engagement;
pub mod error;
pub mod formats;
pub mod join_check;
pub mod meetings;
pub mod series;
pub mod webhooks;

use crate::app::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use std::sync::Arc;
use utoipa::OpenApi;

/// The program a request is made for, from its API key (`Authorization: Bearer <key>`).
pub struct ProgramAuth(pub Arc<crate::auth::Program>);

impl FromRequestParts<AppState> for ProgramAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send the program's API key as `Authorization: Bearer <key>`",
                )
            })?;
        app.programs
            .by_api_key(key)
            .cloned()
            .map(ProgramAuth)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Haven API", description = "Meetings for programs. Authenticate with the program's API key as a bearer token."),
    paths(meetings::create, meetings::list, meetings::get_one, meetings::delete, meetings::audit,
        attendance::export, attendance::certificate, attendance::verify, attendance::jwks, join_check::join_check,
        webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete, webhooks::rotate_secret,
        webhooks::test, webhooks::deliveries, engagement::report,
        formats::create, formats::list, formats::get_one, formats::update, formats::delete,
        series::create, series::list, series::get_one, series::edit, series::cancel, series::edit_occurrence,
        series::cancel_occurrence),
    components(schemas(meetings::CreateMeeting, meetings::MeetingResponse, error::ErrorBody, crate::store::AuditRow,
        crate::protocol::MeetingSettings, crate::attendance::AttendanceRow, crate::attendance::credit::CreditPolicy,
        attendance::CertificateResponse, attendance::VerifyRequest, attendance::VerifyResponse,
        join_check::JoinCheckRequest, join_check::JoinCheckResponse, crate::protocol::CrisisResource,
        webhooks::CreateWebhook, webhooks::UpdateWebhook, webhooks::WebhookResponse, webhooks::TestEventResponse,
        crate::store::DeliveryView, crate::store::AttemptView, crate::attendance::engagement::EngagementReport,
        crate::attendance::engagement::MemberEngagement,
        formats::FormatRequest, formats::FormatResponse, crate::protocol::FormatSpec, crate::protocol::Segment,
        crate::protocol::SegmentRules, crate::protocol::WhoMayUnmute, crate::protocol::GoAroundWho,
        series::CreateSeries, series::EditSeries, series::EditOccurrence, series::OccurrenceView,
        series::SeriesResponse, crate::series::SeriesSpec)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready to take new participants: not shutting down, the database answers, and the journal is
/// not past its bound. Live meetings go on either way; the body says what is wrong.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let journal = app.journal.backlog();
    let database = match tokio::time::timeout(std::time::Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readyz: the database does not answer");
            "unreachable"
        }
        Err(_) => "unreachable",
    };
    let redis = match &app.cluster {
        None => None,
        Some(c) => Some(match tokio::time::timeout(std::time::Duration::from_secs(2), c.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "unreachable",
        }),
    };
    let draining = app.cluster.as_ref().is_some_and(|c| c.is_draining());
    let status = if app.shutdown.is_cancelled() || draining {
        "shutting_down"
    } else if journal.full {
        "storage_backlog"
    } else if database != "ok" {
        "database_unreachable"
    } else if redis.is_some_and(|r| r != "ok") {
        "redis_unreachable"
    } else {
        "ready"
    };
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({"status": status, "database": database, "journal": journal});
    if let (Some(c), Some(r)) = (&app.cluster, redis) {
        body["cluster"] = serde_json::json!({
            "node": c.node,
            "redis": r,
            "owned_meetings": c.held_count(),
            "unwritten_snapshots": c.unwritten_snapshots(),
            "draining": draining,
        });
    }
    (code, Json(body))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render())
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// Counts every API error response by its code (`haven_errors_total{code=...}`).
async fn count_errors(
    State(app): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let res = next.run(req).await;
    if let Some(error::ErrorCodeTag(code)) = res.extensions().get::<error::ErrorCodeTag>() {
        app.metrics.error(code);
    }
    res
}

/// Every route of the server.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/meetings", get(meetings::list).post(meetings::create))
        .route("/v1/meetings/{id}", get(meetings::get_one).delete(meetings::delete))
        .route("/v1/meetings/{id}/audit", get(meetings::audit))
        .route("/v1/formats", get(formats::list).post(formats::create))
        .route("/v1/formats/{id}", get(formats::get_one).put(formats::update).delete(formats::delete))
        .route("/v1/series", get(series::list).post(series::create))
        .route("/v1/series/{id}", get(series::get_one).patch(series::edit).delete(series::cancel))
        .route(
            "/v1/series/{id}/occurrences/{meeting_id}",
            axum::routing::patch(series::edit_occurrence).delete(series::cancel_occurrence),
        )
        .route("/v1/attendance", get(attendance::export))
        .route("/v1/attendance/{id}/certificate", get(attendance::certificate))
        .route("/v1/certificates/verify", axum::routing::post(attendance::verify))
        .route("/.well-known/jwks.json", get(attendance::jwks))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", get(webhooks::get_one).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/rotate-secret", axum::routing::post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/test", axum::routing::post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/members/engagement", get(engagement::report))
        .route("/v1/join-check", axum::routing::post(join_check::join_check))
        .route("/v1/signal", get(crate::signal::upgrade))
        .fallback(crate::web::serve)
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_errors))
        .with_state(app)
}
