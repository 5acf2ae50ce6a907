//! A scriptable fake WeCom for the client's fault-path tests: real HTTP on port 0, a
//! gettoken that counts calls, token checking, and per-path queues of canned replies.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const CORP: &str = "wwtestcorp0000001";
pub const SECRET: &str = "s3cret-value-never-logged";

/// A canned reply.
#[derive(Clone, Debug)]
pub enum Reply {
    Json(Value),
    Err(i64),
    Delay(Duration, Value),
    Status(u16),
}

/// One received request: path, query, body, content type.
pub type Recorded = (String, HashMap<String, String>, Vec<u8>, String);

#[derive(Default)]
pub struct FakeState {
    pub gettoken_calls: AtomicU64,
    pub gettoken_delay_ms: AtomicU64,
    pub expires_in: AtomicU64,
    pub valid_token: Mutex<String>,
    pub calls: Mutex<HashMap<String, u64>>,
    pub scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    pub requests: Mutex<Vec<Recorded>>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<FakeState>,
    pub base_url: String,
}

impl Fake {
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        state.expires_in.store(7200, Ordering::SeqCst);
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            state,
            base_url: format!("http://{addr}"),
        }
    }

    /// Queues replies for `path` (e.g. "/cgi-bin/user/get"), served before the defaults.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn calls(&self, path: &str) -> u64 {
        self.state.calls.lock().get(path).copied().unwrap_or(0)
    }

    pub fn gettoken_calls(&self) -> u64 {
        self.state.gettoken_calls.load(Ordering::SeqCst)
    }

    /// Makes the current token invalid, as WeCom does when it expires a token early.
    pub fn expire_token(&self) {
        self.state.valid_token.lock().clear();
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    *state.calls.lock().entry(path.clone()).or_default() += 1;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state
        .requests
        .lock()
        .push((path.clone(), query.clone(), body.to_vec(), content_type));

    if path == "/cgi-bin/gettoken" {
        state.gettoken_calls.fetch_add(1, Ordering::SeqCst);
        let delay = state.gettoken_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if query.get("corpid").map(String::as_str) != Some(CORP)
            || query.get("corpsecret").map(String::as_str) != Some(SECRET)
        {
            return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
                .into_response();
        }
        let n = state.gettoken_calls.load(Ordering::SeqCst);
        let token = format!("token-{n}-abcdefghijklmnopqrstuvwxyz");
        *state.valid_token.lock() = token.clone();
        let expires_in = state.expires_in.load(Ordering::SeqCst);
        return axum::Json(
            json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}),
        )
        .into_response();
    }

    let valid = state.valid_token.lock().clone();
    match query.get("access_token") {
        None => {
            return axum::Json(json!({"errcode": 41001, "errmsg": "access_token missing"}))
                .into_response();
        }
        Some(t) if valid.is_empty() || *t != valid => {
            return axum::Json(json!({"errcode": 42001, "errmsg": "access_token expired, hint: [x], more info at https://open.work.weixin.qq.com/devtool/query?e=42001"})).into_response();
        }
        Some(_) => {}
    }

    let scripted = state
        .scripts
        .lock()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    match scripted {
        Some(Reply::Json(v)) => axum::Json(v).into_response(),
        Some(Reply::Err(code)) => {
            axum::Json(json!({"errcode": code, "errmsg": format!("scripted error {code}")}))
                .into_response()
        }
        Some(Reply::Delay(d, v)) => {
            tokio::time::sleep(d).await;
            axum::Json(v).into_response()
        }
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        None => axum::Json(default_reply(&path, &query)).into_response(),
    }
}

fn default_reply(path: &str, query: &HashMap<String, String>) -> Value {
    match path {
        "/cgi-bin/user/get" => {
            json!({"errcode": 0, "errmsg": "ok", "userid": query.get("userid"), "name": "Name", "gender": "1", "department": [1], "status": 1})
        }
        _ => json!({"errcode": 0, "errmsg": "ok"}),
    }
}

/// True when Redis answers at 127.0.0.1:6379. Tests needing Redis skip with a notice only when
/// it is unreachable and `CI` is unset; in CI a missing Redis is a failure.
pub async fn redis_available() -> bool {
    let ok = async {
        let client = redis::Client::open("redis://127.0.0.1:6379").ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(10), ok).await {
        Ok(Some(_)) => true,
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("Redis at 127.0.0.1:6379 is required in CI");
            }
            eprintln!("NOTICE: Redis at 127.0.0.1:6379 unreachable; skipping this Redis test");
            false
        }
    }
}
