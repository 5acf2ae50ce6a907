//! One error type at the HTTP edge. Every error body is the envelope with a stable name the
//! console can translate: `{"code":<status>,"message":"…","error":"STABLE_NAME","data":null}`.
//! 4xx are explicit variants; everything else is a 500 that is logged with its cause and
//! answered without detail, so no SQL, path or secret leaks to a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Field-level validation problems: which field, and what is wrong with it.
pub type FieldErrors = Vec<FieldError>;

/// One field's problem, shown next to the field in the console.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Marks a response whose body is already the envelope, so the fallback layer leaves it alone.
#[derive(Clone, Copy)]
pub struct Enveloped;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid (400).
    #[error("{message}")]
    Validation {
        message: String,
        fields: FieldErrors,
    },
    /// A domain rule refused the request; the name is the seed's (`TARGET_CUSTOMERS_EMPTY` …).
    #[error("{message}")]
    Domain {
        status: StatusCode,
        name: &'static str,
        message: String,
    },
    /// A domain rule refused a request because of particular fields (a 422 naming the field:
    /// `CAPABILITY_NOT_SUPPORTED` on `accountId`).
    #[error("{message}")]
    Refused {
        status: StatusCode,
        name: &'static str,
        message: String,
        fields: FieldErrors,
    },
    /// No valid credentials (401).
    #[error("authentication required")]
    Unauthorized,
    /// Valid credentials without the permission (403).
    #[error("missing permission {0}")]
    Forbidden(String),
    /// Nothing there, or not this tenant's (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique key would be violated (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// Anything unexpected (500): logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 400 about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        ApiError::Validation {
            message: format!("{field}: {message}"),
            fields: vec![FieldError { field, message }],
        }
    }

    /// A 400 with a general message.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Validation {
            message: message.into(),
            fields: vec![],
        }
    }

    /// A domain error with the seed's stable name.
    pub fn domain(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        ApiError::Domain {
            status,
            name,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::Domain { status, .. } | ApiError::Refused { status, .. } => *status,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "VALIDATION_FAILED",
            ApiError::Domain { name, .. } | ApiError::Refused { name, .. } => name,
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}

impl From<scrm_db::DbError> for ApiError {
    fn from(e: scrm_db::DbError) -> Self {
        match e {
            scrm_db::DbError::NotFound => ApiError::NotFound("resource"),
            scrm_db::DbError::Conflict(c) => ApiError::Conflict(format!("already exists ({c})")),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// The error envelope for a status and name.
pub fn envelope(
    status: StatusCode,
    name: &str,
    message: &str,
    extra: Option<serde_json::Value>,
) -> Response {
    let mut body = json!({
        "code": status.as_u16(),
        "message": message,
        "error": name,
        "data": null,
    });
    if let Some(extra) = extra {
        body["fields"] = extra;
    }
    let mut resp = (status, Json(body)).into_response();
    resp.extensions_mut().insert(Enveloped);
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                envelope(status, self.name(), "internal error", None)
            }
            ApiError::Validation { fields, .. } | ApiError::Refused { fields, .. }
                if !fields.is_empty() =>
            {
                let fields = serde_json::to_value(fields).ok();
                envelope(status, self.name(), &self.to_string(), fields)
            }
            _ => envelope(status, self.name(), &self.to_string(), None),
        }
    }
}
