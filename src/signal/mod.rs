//! `GET /v1/signal`: authentication before the upgrade, then one connection task pair.
//!
//! Failed authentication is answered before the upgrade with an HTTP error and a JSON body, so a
//! browser never opens a socket it cannot use. A full, locked or ended meeting is refused the same way.

pub mod connection;

use crate::api::error::ApiError;
use crate::app::AppState;
use crate::auth::join_token;
use crate::meeting::actor::resume_token_meeting;
use crate::meeting::ActorMsg;
use crate::protocol::ErrorCode;
use crate::room::MemberKey;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use connection::Credential;
use serde::Deserialize;
use tokio::sync::oneshot;

/// Query parameters of the upgrade request. Browsers cannot set headers on a WebSocket, so the
/// token may come here; it is never logged (the request span records the path only).
#[derive(Debug, Deserialize)]
pub struct SignalQuery {
    token: Option<String>,
    /// `certificate=1`: after the meeting's end, a connection only for `certificate_request`.
    #[serde(default)]
    certificate: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The upgrade handler.
pub async fn upgrade(
    State(app): State<AppState>,
    Query(q): Query<SignalQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let certificate = q.certificate.as_deref().is_some_and(|v| v == "1" || v == "true");
    match authorize(&app, q.token.as_deref().or(bearer(&headers)), certificate).await {
        Ok(cred) => {
            let limits = &app.config.limits;
            ws.read_buffer_size(limits.ws_read_buffer_bytes)
                .write_buffer_size(limits.ws_write_buffer_bytes)
                .max_write_buffer_size(limits.ws_write_buffer_bytes.max(limits.max_frame_bytes) * 2)
                .max_message_size(limits.max_frame_bytes)
                .max_frame_size(limits.max_frame_bytes)
                .on_upgrade(move |socket| connection::run(socket, app, cred))
        }
        Err(e) => {
            app.metrics.error(e.code);
            e.into_response()
        }
    }
}

async fn authorize(app: &AppState, token: Option<&str>, certificate: bool) -> Result<Credential, ApiError> {
    if app.metrics.connections.get() >= app.config.limits.max_connections as i64 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the server is at capacity; try again shortly",
        ));
    }
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is restarting; try again shortly",
        ));
    }
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| token_error(join_token::TokenError::Missing))?;
    if let Some(meeting) = resume_token_meeting(token) {
        // A resume token: the live room checks it; here we only find the room.
        return match app.rooms.get(&meeting) {
            Some(_) => Ok(Credential::Resume { meeting }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidResumeToken.as_str(),
                "that resume token is no longer valid; join again with your join link",
            )),
        };
    }
    let (program, claims) =
        join_token::verify(&app.programs, token, app.config.limits.token_leeway_seconds).map_err(token_error)?;
    // A live meeting is authorised from what its actor holds, so joins never wait on the database.
    let meeting = match app.rooms.get(&claims.meeting) {
        Some(live) => (*live.meeting).clone(),
        None => app
            .store
            .meeting(&claims.meeting)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "meeting_not_found", "no such meeting"))?,
    };
    if !meeting.admits_program(&program.id) {
        return Err(token_error(join_token::TokenError::WrongMeeting));
    }
    let member = MemberKey { program: program.id.clone(), member_ref: claims.sub };
    if meeting.ended_at.is_some() {
        if certificate {
            return Ok(Credential::Certificate { meeting: meeting.id, member });
        }
        return Err(ApiError::new(StatusCode::GONE, ErrorCode::MeetingEnded.as_str(), "the meeting has ended"));
    }
    let role = claims.role.into();
    // Ask the meeting whether it would take this member now (capacity, lock, ban).
    for _ in 0..2 {
        let handle = app.rooms.get_or_spawn(&meeting);
        let (reply, rx) = oneshot::channel();
        if handle.tx.send(ActorMsg::Precheck { member: member.clone(), role, reply }).await.is_err() {
            continue; // the actor stopped just now; a fresh one is spawned on the next turn
        }
        match rx.await {
            Ok(None) => return Ok(Credential::Join { meeting: Box::new(meeting), member, role }),
            Ok(Some(refusal)) => {
                let status = match refusal.code {
                    ErrorCode::Banned => StatusCode::FORBIDDEN,
                    ErrorCode::MeetingEnded => StatusCode::GONE,
                    ErrorCode::StorageBacklog => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::CONFLICT,
                };
                return Err(ApiError::new(status, refusal.code.as_str(), refusal.message));
            }
            Err(_) => continue,
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the meeting is restarting; try again"))
}

fn token_error(e: join_token::TokenError) -> ApiError {
    let status =
        if e == join_token::TokenError::WrongMeeting { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    ApiError::new(status, e.code(), e.to_string())
}
