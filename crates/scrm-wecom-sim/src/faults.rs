//! WeCom's limits and the injected faults.
//!
//! Two layers: [`transport`] is an axum middleware for what happens below the JSON (added
//! latency, HTTP 500, connections dropped mid-reply); [`Limiter`] and [`roll`] serve the checks
//! made by each API's gate (45009 rate limits, 45033 concurrency, injected -1/45009/45033/42001,
//! slow processing).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use parking_lot::Mutex;
use rand::Rng;

use crate::config::Limits;
use crate::state::Sim;

/// True with probability `p` (clamped to [0, 1]).
pub fn roll(p: f64) -> bool {
    p > 0.0 && rand::rng().random_bool(p.min(1.0))
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    minute_count: u32,
    hour: i64,
    hour_count: u32,
}

/// Per-API fixed-window rate counters and in-flight counters, plus the per-member app-message
/// budget. Fixed windows match WeCom's "blocked until the window ends" behaviour.
#[derive(Debug)]
pub struct Limiter {
    windows: Vec<Mutex<Window>>,
    inflight: Vec<AtomicU32>,
    app_msgs: Mutex<HashMap<u32, (i64, u32)>>,
}

impl Limiter {
    /// A limiter for `apis` distinct APIs.
    pub fn new(apis: usize) -> Arc<Self> {
        Arc::new(Self {
            windows: (0..apis).map(|_| Mutex::new(Window::default())).collect(),
            inflight: (0..apis).map(|_| AtomicU32::new(0)).collect(),
            app_msgs: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a call; false when the minute or hour budget is spent (45009).
    pub fn allow(&self, api: usize, now: i64, limits: &Limits) -> bool {
        let Some(w) = self.windows.get(api) else {
            return true;
        };
        let mut w = w.lock();
        let (m, h) = (now.div_euclid(60), now.div_euclid(3600));
        if w.minute != m {
            w.minute = m;
            w.minute_count = 0;
        }
        if w.hour != h {
            w.hour = h;
            w.hour_count = 0;
        }
        w.minute_count = w.minute_count.saturating_add(1);
        w.hour_count = w.hour_count.saturating_add(1);
        let over_minute =
            limits.per_api_per_minute > 0 && w.minute_count > limits.per_api_per_minute;
        let over_hour = limits.per_api_per_hour > 0 && w.hour_count > limits.per_api_per_hour;
        !(over_minute || over_hour)
    }

    /// Enters an API call; `None` when `max` (if non-zero) calls are already in flight (45033).
    pub fn enter(self: &Arc<Self>, api: usize, max: u32) -> Option<InflightGuard> {
        let counter = self.inflight.get(api)?;
        let now = counter.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InflightGuard {
            limiter: Arc::clone(self),
            api,
        };
        if max > 0 && now > max {
            return None; // the guard drops here and undoes the increment
        }
        Some(guard)
    }

    /// Whether member `staff` may receive one more app message this minute; excess messages
    /// are silently dropped by WeCom (API-FACTS §2).
    pub fn app_msg_allowed(&self, staff: u32, now: i64, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let mut m = self.app_msgs.lock();
        let e = m.entry(staff).or_insert((now.div_euclid(60), 0));
        if e.0 != now.div_euclid(60) {
            *e = (now.div_euclid(60), 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }

    /// Clears all counters (admin reset).
    pub fn reset(&self) {
        for w in &self.windows {
            *w.lock() = Window::default();
        }
        self.app_msgs.lock().clear();
    }
}

/// Decrements the in-flight counter of an API when the call ends.
#[derive(Debug)]
pub struct InflightGuard {
    limiter: Arc<Limiter>,
    api: usize,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(c) = self.limiter.inflight.get(self.api) {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Middleware for transport-level faults on `/cgi-bin` routes. A dropped connection is decided
/// before the call but applied after it ran, as on a real network: the client cannot tell
/// whether its request took effect (the case idempotent senders must handle).
pub async fn transport(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let f = sim.config().faults;
    let extra = if f.latency_max_ms > f.latency_min_ms {
        rand::rng().random_range(f.latency_min_ms..=f.latency_max_ms)
    } else {
        f.latency_min_ms
    };
    if extra > 0 {
        tokio::time::sleep(Duration::from_millis(extra)).await;
    }
    if roll(f.http_500) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let drop = roll(f.drop_connection);
    let resp = next.run(req).await;
    if !drop {
        return resp;
    }
    // A body that fails on first poll: hyper aborts the connection mid-response.
    let failing = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sim: dropped",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(
            http::header::CONTENT_TYPE,
            "application/json; charset=UTF-8",
        )
        .body(Body::from_stream(failing))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_window_blocks_then_resets() {
        let l = Limiter::new(1);
        let limits = Limits {
            per_api_per_minute: 2,
            ..Limits::default()
        };
        assert!(l.allow(0, 120, &limits));
        assert!(l.allow(0, 121, &limits));
        assert!(!l.allow(0, 150, &limits));
        assert!(l.allow(0, 180, &limits));
    }

    #[test]
    fn inflight_cap() {
        let l = Limiter::new(1);
        let g1 = l.enter(0, 1).unwrap();
        assert!(l.enter(0, 1).is_none());
        drop(g1);
        assert!(l.enter(0, 1).is_some());
    }
}
