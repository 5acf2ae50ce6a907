//! The HTTP edge: the router and its layers (request id, tracing, metrics, timeout, body limit,
//! panic catching, the error envelope), health, metrics and the API docs.

pub mod docs;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod health;
pub mod observe;
pub mod routes;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use error::{ApiError, ApiResult};
use routes::{Access, RouteInfo, Routes};

use crate::state::AppState;

/// Every module's routes, in one table; a worker-only process serves health and metrics alone.
pub fn all_routes(state: &AppState) -> Routes {
    if !state.config.role.runs_api() {
        return health_routes(state);
    }
    health_routes(state)
        .merge(crate::auth::routes::routes(state))
        .merge(crate::system::routes(state))
        .merge(crate::customers::routes(state))
        .merge(crate::jobs::routes(state))
        .merge(crate::operation::routes(state))
        .merge(crate::integration::routes(state))
        .merge(crate::console::routes(state))
        .merge(crate::automation::routes(state))
        .merge(crate::devices::routes(state))
}

/// Health and metrics: every process answers these, workers too.
fn health_routes(state: &AppState) -> Routes {
    Routes::new(state, "health")
        .route(
            Method::GET,
            "/health",
            Access::Public,
            "The process is up",
            health::live,
        )
        .route(
            Method::GET,
            "/health/ready",
            Access::Public,
            "The database (and Redis, when configured) answer",
            health::ready,
        )
        .route(
            Method::GET,
            "/metrics",
            Access::Public,
            "Prometheus metrics",
            observe::metrics,
        )
}

/// The whole application router with its layers, and the route table behind it.
pub fn router(state: AppState) -> (Router, Vec<RouteInfo>) {
    let (api, mut table) = all_routes(&state).into_parts();
    let openapi = docs::openapi(&table);
    table.extend(docs::routes_info());
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.config.request_timeout;
    let body_limit = state.config.body_limit_bytes;
    let router = api
        .merge(docs::router(openapi))
        .fallback(fallback)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(observe::make_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn(observe::track))
                .layer(axum::middleware::from_fn(observe::envelope_errors))
                .layer(CatchPanicLayer::custom(observe::panic_response))
                .layer(CompressionLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                // axum's limit, enforced where a body is read (JSON, bytes, multipart): over it is
                // 413 PAYLOAD_TOO_LARGE. tower-http's RequestBodyLimitLayer would change the body
                // type every route sees.
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state);
    (router, table)
}

async fn fallback() -> ApiError {
    ApiError::NotFound("route")
}

/// How long shutdown waits for in-flight requests before giving up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
