//! The test harness: scrm on port 0 with a fresh database, and typed request helpers.

use std::collections::BTreeMap;

use reqwest::Method;
use scrm::auth::{Role, password, users};
use scrm::config::Config;
use scrm::http::routes::RouteInfo;
use scrm::startup::Application;
use scrm::state::AppState;
use scrm_db::Backend;
use serde_json::{Value, json};

/// The password of the `admin` user every test app starts with.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// A running scrm and a signed-in admin.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub routes: Vec<RouteInfo>,
    pub admin_token: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// An answer: status, headers and the JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The envelope's `error` name.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    /// The envelope's `data`.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

/// Extra configuration on top of the test defaults.
pub fn config(url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("DATABASE_URL".into(), url.into());
    env.insert("SCRM_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into());
    env.insert("SCRM_LOGIN_MAX_FAILURES".into(), "3".into());
    env.insert("SCRM_DB_MAX_CONNECTIONS".into(), "8".into());
    // Tests serve feeds and webhooks from 127.0.0.1 (the guard's own test turns it off).
    env.insert("SCRM_ALLOW_PRIVATE_URLS".into(), "true".into());
    // No WeCom reconciliation on the clock (hourly and nightly by default): one starting a sync
    // in the middle of a test would change what it observes. The test of the schedule sets its
    // own (`spawn_app_reconciling`).
    env.insert("WEWORK_SYNC_INCREMENTAL_CRON".into(), "off".into());
    env.insert("WEWORK_SYNC_FULL_CRON".into(), "off".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_source(&env).expect("test configuration")
}

/// Start scrm on `backend` with a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Start scrm with extra configuration.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let url = scrm_db::testing::fresh_url(backend)
        .await
        .expect("test database");
    spawn_app_on(&url, extra).await
}

/// Start another scrm process on an existing database (`app.state.config.database_url`): two
/// processes sharing one database, as in production.
pub async fn spawn_app_on(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let app = Application::build_with_listener(config(url, extra), listener)
        .await
        .expect("build app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let routes = app.routes().to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let mut app = TestApp {
        base,
        client,
        state,
        routes,
        admin_token: String::new(),
        _shutdown: tx,
    };
    app.admin_token = app.login("admin", ADMIN_PASSWORD).await;
    app
}

impl TestApp {
    /// Send a request; `token` signs it, `body` is sent as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        // A pooled connection the server closed (after answering a 413, say) fails the next
        // request before it is sent: send it again on a fresh connection.
        for attempt in 0.. {
            let mut req = self
                .client
                .request(method.clone(), format!("{}{}", self.base, path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) => return into_resp(r).await,
                Err(e) if attempt < 2 && e.is_request() => continue,
                Err(e) => panic!("request sent: {e:?}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Send raw bytes with a content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        // A server may answer an oversized body (413) before reading it and close the
        // connection, which the client can see as a broken send: retry so the test sees the answer.
        for attempt in 0.. {
            let mut req = self
                .client
                .request(method.clone(), format!("{}{}", self.base, path))
                .header("content-type", content_type)
                .body(body.clone());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) => return into_resp(r).await,
                Err(e) if attempt < 4 && e.is_request() => continue,
                Err(e) => panic!("request sent: {e:?}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Log in and return the token; panics if the login fails.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self.try_login(username, password).await;
        assert_eq!(r.status, 200, "login of {username} failed: {:?}", r.body);
        r.data()["token"].as_str().expect("token").to_string()
    }

    pub async fn try_login(&self, username: &str, password: &str) -> Resp {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// Create a user with a role through the API (as admin) and return (id, token).
    pub async fn user_with_role(&self, username: &str, role: &str) -> (i64, String) {
        let r = self
            .post(
                "/api/v1/system/users",
                &self.admin_token,
                json!({"username": username, "password": "password-123", "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.data()["id"].as_i64().expect("id");
        (id, self.login(username, "password-123").await)
    }

    /// Create another tenant with its own admin, straight in the database; returns its token.
    pub async fn other_tenant_admin(&self, tenant: &str, username: &str) -> (i64, String) {
        let db = &self.state.db;
        let tenant_id = users::ensure_tenant(db, tenant).await.expect("tenant");
        let hash = password::hash("password-123").expect("hash");
        let mut tx = db.begin().await.expect("tx");
        users::create(&mut tx, tenant_id, username, username, &hash, Role::Admin)
            .await
            .expect("user");
        tx.commit().await.expect("commit");
        (tenant_id, self.login(username, "password-123").await)
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

/// Poll `f` every 50 ms until it returns Some; panic naming `what` after 90 s (a generous bound
/// for a loaded CI machine: a passing test returns as soon as the condition holds).
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Switch off the built-in schedules `names` (say `scrm_jobs.alerts`, every minute) so they
/// cannot act between a test's steps, and wait until no job one of them enqueued is pending or
/// running. The firing that could race the switch commits before the switch returns (it updates
/// the same row, `AND enabled = 1`), so its job is visible to the wait.
pub async fn quiet_schedules(app: &TestApp, names: &[&str]) {
    let db = &app.state.db;
    for name in names {
        let kind = until(&format!("the schedule {name}"), || async {
            db.fetch_optional::<(String,)>(
                scrm_db::query("SELECT kind FROM job_schedule WHERE name = ?").bind(*name),
            )
            .await
            .unwrap()
            .map(|r| r.0)
        })
        .await;
        db.execute(
            scrm_db::query("UPDATE job_schedule SET enabled = 0 WHERE name = ?").bind(*name),
        )
        .await
        .unwrap();
        until(&format!("no {kind} job pending or running"), || async {
            let open = db
                .fetch_i64(
                    scrm_db::query("SELECT COUNT(*) FROM job WHERE kind = ? AND state IN (0, 1)")
                        .bind(kind.as_str()),
                )
                .await
                .unwrap();
            (open == 0).then_some(())
        })
        .await;
    }
}

/// One integer from a SQL statement (counts and ids in assertions).
pub async fn n(app: &TestApp, sql: String) -> i64 {
    app.state.db.fetch_i64(scrm_db::query(sql)).await.unwrap()
}

/// A worker for the crash tests: a job engine on `app`'s database with a short lease (800 ms,
/// heartbeat 200 ms, so a second worker takes a dead one's jobs within a second) and no
/// built-in schedules. `abort()` the handle to kill it mid-job, the way a SIGKILL would.
pub async fn crash_worker(app: &TestApp) -> scrm_jobs::EngineHandle {
    let config = scrm_jobs::EngineConfig {
        lease: std::time::Duration::from_millis(800),
        heartbeat: std::time::Duration::from_millis(200),
        builtins: false,
        poll_interval: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    scrm::jobs::engine(&app.state, config)
        .start(tokio_util::sync::CancellationToken::new())
        .await
        .expect("a crash-test worker")
}

/// Wait until a WeCom send armed with `chaos::hang_after_next_call()` hangs after its call
/// (the answer never recorded), and check that exactly one did.
pub async fn wait_hung(what: &str) {
    use scrm::operation::mass::engine::chaos;
    until(what, || async { (chaos::hung() > 0).then_some(()) }).await;
    assert_eq!(chaos::hung(), 1, "{what}");
}
