//! The HTTP API's error: a status, a stable snake_case code and a message, as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An API refusal. Body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON body of every API error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// A server-side failure: logged in full, reported without detail.
    pub fn internal(e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on the server")
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }
}

/// The code of an error response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeTag(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r =
            (self.status, Json(ErrorBody { code: self.code.to_string(), message: self.message })).into_response();
        r.extensions_mut().insert(ErrorCodeTag(self.code));
        r
    }
}
