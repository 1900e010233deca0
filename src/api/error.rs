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

/// A kind of record a program names with its own ids (meetings, formats): an id stays used by
/// the program once deleted, and another program's ids are answered as ids nobody uses. The
/// answers for one kind, in one place.
#[derive(Debug, Clone, Copy)]
pub struct OwnIds {
    what: &'static str,
    deleted_code: &'static str,
    exists_code: &'static str,
}

impl OwnIds {
    pub const MEETING: OwnIds =
        OwnIds { what: "meeting", deleted_code: "meeting_deleted", exists_code: "meeting_exists" };
    pub const FORMAT: OwnIds = OwnIds { what: "format", deleted_code: "format_deleted", exists_code: "format_exists" };

    fn deleted_message(self) -> String {
        format!("this {0} was deleted; its id stays used, so a new {0} needs another id", self.what)
    }

    /// `410 {what}_deleted`: the program's own record, deleted.
    pub fn gone(self) -> ApiError {
        ApiError::new(StatusCode::GONE, self.deleted_code, self.deleted_message())
    }

    /// A lookup of the program's own record (the row, and whether it was deleted): the row, 410
    /// for a deleted one, `404 not_found` for an id the program never used, whoever else uses it.
    pub fn found<T>(self, own: Option<(T, bool)>) -> Result<T, ApiError> {
        match own {
            Some((row, false)) => Ok(row),
            Some((_, true)) => Err(self.gone()),
            None => Err(ApiError::not_found(self.what)),
        }
    }

    /// `409`: creating an id the program already used (`deleted`: that record was deleted).
    pub fn taken(self, deleted: bool) -> ApiError {
        if deleted {
            ApiError::new(StatusCode::CONFLICT, self.deleted_code, self.deleted_message())
        } else {
            ApiError::new(
                StatusCode::CONFLICT,
                self.exists_code,
                format!(
                    "the program already has a {} with this id; choose another or let the server generate one",
                    self.what
                ),
            )
        }
    }
}
