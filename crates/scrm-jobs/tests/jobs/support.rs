//! Fixtures: a fresh database, a manual clock, engines with test settings, and waiting helpers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scrm_db::testing::fresh;
use scrm_db::{Backend, Db, query};
use scrm_jobs::{
    CancellationToken, EngineConfig, EngineHandle, Handler, JobEngine, Jobs, KindOptions,
    ManualClock,
};

/// 2026-11-22 00:00:30 UTC.
pub const T0: i64 = 1_795_305_630_000;

pub struct Fx {
    pub db: Db,
    pub clock: ManualClock,
    pub jobs: Jobs,
}

pub async fn setup(backend: Backend) -> Fx {
    let t = fresh(backend).await.expect("fresh test database");
    let clock = ManualClock::new(T0);
    let jobs = Jobs::with_clock(t.db.clone(), Arc::new(clock.clone()));
    Fx {
        db: t.db,
        clock,
        jobs,
    }
}

impl Fx {
    /// Another client on the same database, as a second process would have (its own wake-up
    /// hub, the same clock).
    pub fn other_process(&self) -> Jobs {
        Jobs::with_clock(self.db.clone(), Arc::new(self.clock.clone()))
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.db.fetch_i64(query(sql)).await.expect("count")
    }

    pub async fn state_of(&self, id: i64) -> i64 {
        self.db
            .fetch_i64(query("SELECT state FROM job WHERE id = ?").bind(id))
            .await
            .expect("state")
    }
}

pub fn test_config() -> EngineConfig {
    EngineConfig {
        concurrency: 8,
        claim_batch: 8,
        builtins: false,
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Exact retry times: no jitter.
pub fn exact() -> KindOptions {
    KindOptions::default().jitter(0.0)
}

pub struct Started {
    pub handle: EngineHandle,
    pub shutdown: CancellationToken,
}

impl Started {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle.wait())
            .await
            .expect("engine drained");
    }
}

/// Start an engine with one handler.
pub async fn start_one(jobs: &Jobs, kind: &str, opts: KindOptions, h: impl Handler) -> Started {
    start_config(jobs, test_config(), kind, opts, h).await
}

pub async fn start_config(
    jobs: &Jobs,
    config: EngineConfig,
    kind: &str,
    opts: KindOptions,
    h: impl Handler,
) -> Started {
    let shutdown = CancellationToken::new();
    let handle = JobEngine::builder(jobs.clone())
        .config(config)
        .register(kind, opts, h)
        .build()
        .start(shutdown.clone())
        .await
        .expect("engine starts");
    Started { handle, shutdown }
}

/// Wait (real time, up to 20 s) until `cond` holds.
pub async fn eventually<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(20), cond).await
}

/// Wait (real time, up to `limit`) until `cond` holds: for tests that move thousands of jobs,
/// whose time depends on the machine (a debug build beside other builds), not on the engine.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
