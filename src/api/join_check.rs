//! `POST /v1/join-check`: tells a person, before they type a name, whether their link will let
//! them in, and if not why, with their program's crisis resources either way.
//!
//! It runs the `/v1/signal` upgrade's own checks (`signal::join_check`), opens no socket and takes
//! no connection slot. The token travels in the body, so it never lands in a URL or a log.

use super::error::ApiError;
use crate::app::AppState;
use crate::cluster::proxy::NODE_HEADER;
use crate::protocol::{CrisisResource, Role};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The link to check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinCheckRequest {
    /// A join token or a resume token.
    pub token: String,
}

/// Whether the link would get in now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JoinCheckResponse {
    pub joinable: bool,
    /// Null when joinable; otherwise the code the `/v1/signal` upgrade would refuse with.
    pub code: Option<String>,
    /// Stable English; clients translate by `code`.
    pub message: Option<String>,
    /// Null when the token did not identify a meeting of its program.
    pub meeting_title: Option<String>,
    /// The role the token grants; null when unknown.
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    /// The token's program's crisis resources (empty when none are configured or the token's
    /// program is unknown).
    pub crisis_resources: Vec<CrisisResource>,
}

#[utoipa::path(post, path = "/v1/join-check", request_body = JoinCheckRequest,
    responses((status = 200, body = JoinCheckResponse), (status = 400, body = super::error::ErrorBody)))]
pub async fn join_check(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<JoinCheckRequest>, JsonRejection>,
) -> Result<Json<JoinCheckResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    // Cluster mode: a meeting live on another node is checked there (its room knows its lock,
    // its seats, a resume token's seat). A check another node passed on is answered here, never
    // passed on again; when the owner cannot be asked, this node answers from what it knows.
    if let Some(cluster) = &app.cluster {
        let from_node = headers.get(NODE_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| cluster.is_node(v));
        if !from_node {
            if let Some(url) = crate::signal::owner_elsewhere(&app, req.token.trim()).await {
                if let Some(answer) = ask_owner(&cluster.http, &url, cluster.node_credential(), &req.token).await {
                    return Ok(Json(answer));
                }
            }
        }
    }
    let (found, verdict) = crate::signal::join_check(&app, req.token.trim()).await;
    let crisis_resources =
        found.program.as_deref().and_then(|p| app.crisis_resources.get(p)).cloned().unwrap_or_default();
    let (code, message) = match verdict {
        Ok(()) => (None, None),
        Err(e) => (Some(e.code.to_string()), Some(e.message)),
    };
    Ok(Json(JoinCheckResponse {
        joinable: code.is_none(),
        code,
        message,
        meeting_title: found.meeting_title,
        role: found.role,
        crisis_resources,
    }))
}

/// Cluster mode: the owner's answer to the same check (None when it cannot be had in time).
async fn ask_owner(
    client: &reqwest::Client,
    owner_url: &str,
    credential: &str,
    token: &str,
) -> Option<JoinCheckResponse> {
    let url = format!("{}/v1/join-check", owner_url.trim_end_matches('/'));
    let r = client
        .post(url)
        .header(NODE_HEADER, credential)
        .json(&JoinCheckRequest { token: token.to_string() })
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}
