//! Cross-process wake-ups through Redis pub/sub: two engines in two "processes" (each its own
//! client handle and wake-up hub) on one database, with a poll interval of an hour and a clock
//! that never moves by itself, so nothing but a wake-up from the other process can make an
//! idle engine look at the database again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scrm_jobs::{
    EngineConfig, JobContext, JobEngine, JobFilter, JobOutcome, Jobs, JobsOptions, NewJob, Scope,
};
use serde_json::{Value, json};

use crate::support::*;

fn redis_url() -> String {
    std::env::var("SCRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// True when Redis answers. Outside CI a missing Redis skips the test with a notice; in CI it
/// is a failure.
async fn redis_available() -> bool {
    let ok = async {
        let client = redis::Client::open(redis_url()).ok()?;
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
                panic!("Redis at {} is required in CI", redis_url());
            }
            eprintln!("NOTICE: Redis unreachable; skipping this Redis wake-up test");
            false
        }
    }
}

/// A client handle as another process would have it: its own wake-up hub, Redis configured.
fn process_with_redis(fx: &Fx) -> Jobs {
    Jobs::with_options(
        fx.db.clone(),
        Arc::new(fx.clock.clone()),
        JobsOptions {
            redis_url: Some(redis_url()),
            ..Default::default()
        },
    )
}

/// Polling practically off: an idle engine looks again only when woken.
fn no_polling() -> EngineConfig {
    EngineConfig {
        poll_interval: Duration::from_secs(3600),
        ..test_config()
    }
}

async fn engines_in_two_processes_wake_each_other_through_redis(fx: Fx) {
    if !redis_available().await {
        return;
    }
    let a_jobs = process_with_redis(&fx);
    let b_jobs = process_with_redis(&fx);

    // A runs "ping"; B runs "pong", and each pong enqueues a ping through B's own handle.
    let pings = Arc::new(AtomicUsize::new(0));
    let p = pings.clone();
    let a_shutdown = scrm_jobs::CancellationToken::new();
    let a = JobEngine::builder(a_jobs.clone())
        .config(no_polling())
        .register("ping", exact(), move |_c: JobContext, _p: Value| {
            let p = p.clone();
            async move {
                p.fetch_add(1, Ordering::SeqCst);
                Ok(JobOutcome::Done)
            }
        })
        .build()
        .start(a_shutdown.clone())
        .await
        .expect("A starts");
    let b_shutdown = scrm_jobs::CancellationToken::new();
    let b = JobEngine::builder(b_jobs.clone())
        .config(no_polling())
        .register("pong", exact(), |ctx: JobContext, p: Value| async move {
            let n = p["n"].as_i64().unwrap_or(0);
            let ping = NewJob::new("ping", &json!({ "n": n })).expect("payload");
            ctx.jobs()
                .enqueue_now(ping)
                .await
                .map_err(|e| scrm_jobs::JobError::retryable(e.to_string()))?;
            Ok(JobOutcome::Done)
        })
        .build()
        .start(b_shutdown.clone())
        .await
        .expect("B starts");
    eventually("both engines subscribed", || async {
        a.listening() && b.listening()
    })
    .await;
    // Let both dispatchers finish their first (empty) look and go idle: from here on only a
    // wake-up moves them.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for round in 1..=3 {
        // A's process enqueues a pong: only B runs pongs, and only a message from A's process
        // can wake it (different hubs, no polling, the clock stands still).
        let pong = NewJob::new("pong", &json!({ "n": round })).expect("payload");
        a_jobs.enqueue_now(pong).await.expect("enqueue pong");
        eventually("B ran the pong and A the ping it enqueued", || async {
            pings.load(Ordering::SeqCst) == round
        })
        .await;
        // Idle again before the next round.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("every job done", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await == 6
    })
    .await;
    let page = a_jobs
        .list_jobs(Scope::System, &JobFilter::default(), 1, 100)
        .await
        .expect("list");
    assert_eq!(page.total, 6);
    assert!(page.items.iter().all(|j| j.attempts == 1), "each ran once");

    a_shutdown.cancel();
    b_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), a.wait())
        .await
        .expect("A drained");
    tokio::time::timeout(Duration::from_secs(20), b.wait())
        .await
        .expect("B drained");
}

scrm_db::db_tests!(crate::support::setup;
    engines_in_two_processes_wake_each_other_through_redis,
);
