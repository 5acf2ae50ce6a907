//! The console's assets, compiled into the binary: htmx (vendored from the npm package
//! `htmx.org`, version in `assets/console/HTMX_VERSION`) and the hand-written stylesheet.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::extract::ApiPath;

const HTMX: &[u8] = include_bytes!("../../assets/console/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/console/console.css");

/// `GET /console/assets/{file}`.
pub async fn serve(ApiPath(file): ApiPath<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "htmx.min.js" => ("application/javascript", HTMX),
        "console.css" => ("text/css; charset=utf-8", CSS),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
