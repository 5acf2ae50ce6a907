//! `GET /health` (the process is up) and `GET /health/ready` (its dependencies answer), as seed
//! 003 lists them. Readiness is what a load balancer should route by.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::ok;
use super::error::envelope;
use crate::state::AppState;

pub async fn live() -> Response {
    ok(json!({ "status": "UP", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let started = std::time::Instant::now();
    let database = match tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping())
        .await
    {
        Ok(Ok(())) => {
            json!({ "status": "UP", "backend": state.db.backend().name(), "latencyMs": started.elapsed().as_millis() })
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            json!({ "status": "DOWN", "backend": state.db.backend().name() })
        }
        Err(_) => {
            json!({ "status": "DOWN", "backend": state.db.backend().name(), "reason": "timeout" })
        }
    };
    let redis = match state.redis.clone() {
        None => json!({ "status": "NOT_CONFIGURED" }),
        Some(mut conn) => {
            let ping = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await;
            match ping {
                Ok(Ok(_)) => json!({ "status": "UP" }),
                _ => json!({ "status": "DOWN" }),
            }
        }
    };
    let up = database["status"] == "UP" && redis["status"] != "DOWN";
    let details =
        json!({ "status": if up { "UP" } else { "DOWN" }, "database": database, "redis": redis });
    if up {
        ok(details).into_response()
    } else {
        let mut resp = envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_READY",
            "a dependency is down",
            None,
        );
        // Keep the details: an operator needs to know which dependency is down.
        *resp.body_mut() = axum::body::Body::from(
            json!({ "code": 503, "message": "a dependency is down", "error": "NOT_READY", "data": details }).to_string(),
        );
        resp
    }
}
