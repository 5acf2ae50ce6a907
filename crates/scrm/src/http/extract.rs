//! Extractors whose rejections are the envelope with a stable name, instead of axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body. Malformed JSON, wrong types, missing fields and unknown fields (on types that
/// `deny_unknown_fields`) are 400 `VALIDATION_FAILED` naming the problem; a wrong content type is
/// 415; an oversized body is 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid(format!("invalid body: {}", inner_message(&e.body_text())))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid(format!("malformed JSON: {}", inner_message(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::domain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::domain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "request body too large",
            )
        }
        other => ApiError::invalid(format!("unreadable body: {}", other.body_text())),
    }
}

/// axum prefixes serde's message with its own; keep serde's part, which names field and line.
fn inner_message(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(text)
        .to_string()
}

/// Query parameters, rejected as 400 `VALIDATION_FAILED` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A NUL character is never meaningful in a filter, and PostgreSQL refuses it in text
        // (a 500 the property tests found): refuse it here, naming the parameter.
        if let Some(q) = parts.uri.query()
            && let Some((k, _)) = url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError::field(
                k.replace('\0', ""),
                "must not contain NUL characters",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::invalid(
                format!("invalid query: {}", inner_message(&e.body_text())),
            )),
            Err(other) => Err(ApiError::invalid(other.body_text())),
        }
    }
}

/// Path parameters, rejected as 400 naming the parameter (a non-numeric id, say).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::invalid(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::invalid(other.body_text())),
        }
    }
}
