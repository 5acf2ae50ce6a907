//! Running jobs: exactly once across engines, crash takeover, retries, dead letters, timeouts,
//! limits, spacing, priorities, drain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scrm_db::query;
use scrm_jobs::{JobContext, JobError, JobOutcome, KeyLimit, NewJob, Scope, Target};
use serde_json::{Value, json};

use crate::support::*;

fn job(kind: &str, n: i64) -> NewJob {
    NewJob::new(kind, &json!({ "n": n })).expect("payload")
}

async fn two_engines_never_run_a_job_twice(fx: Fx) {
    let mut tx = fx.db.begin().await.unwrap();
    let batch: Vec<NewJob> = (0..2000).map(|n| job("noop", n)).collect();
    assert_eq!(fx.jobs.enqueue_many(&mut tx, batch).await.unwrap(), 2000);
    fx.jobs.commit(tx).await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = |seen: Arc<Mutex<Vec<i64>>>| {
        move |ctx: JobContext, _p: Value| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(ctx.id);
                Ok(JobOutcome::Done)
            }
        }
    };
    let a = start_one(&fx.jobs, "noop", exact(), record(seen.clone())).await;
    let other = fx.other_process();
    let b = start_one(&other, "noop", exact(), record(seen.clone())).await;
    eventually("all 2,000 done", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await == 2000
    })
    .await;
    a.stop().await;
    b.stop().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2000, "every job ran exactly once");
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for id in seen {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 2000);
    assert!(counts.values().all(|&c| c == 1));
}

async fn a_crashed_workers_job_is_finished_by_another_after_its_lease_expires(fx: Fx) {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let hang = move |_ctx: JobContext, _p: Value| {
        let s = s.clone();
        async move {
            s.store(true, Ordering::SeqCst);
            futures::future::pending::<()>().await;
            Ok(JobOutcome::Done)
        }
    };
    let a = start_one(&fx.jobs, "send", exact(), hang).await;
    let id = fx.jobs.enqueue_now(job("send", 1)).await.unwrap().id;
    eventually("A started the job", || async {
        started.load(Ordering::SeqCst)
    })
    .await;
    a.handle.abort(); // the process dies mid-run

    let other = fx.other_process();
    let b = start_one(&other, "send", exact(), |_c: JobContext, _p: Value| async {
        Ok(JobOutcome::Done)
    })
    .await;
    fx.advance(31); // past the 30 s lease
    eventually("lease reaped", || async { fx.state_of(id).await == 0 }).await;
    let outcome: (String, Option<String>) = fx
        .db
        .fetch_one(query("SELECT outcome, error FROM job_attempt WHERE job_id = ?").bind(id))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ("lease_expired".into(), Some("lease expired".into()))
    );
    fx.advance(60); // the first retry's backoff
    eventually("B finished it", || async { fx.state_of(id).await == 2 }).await;
    let d = fx.jobs.get_job(Scope::System, id).await.unwrap();
    assert_eq!(d.job.attempts, 2);
    assert_eq!(d.job.worker_id.as_deref(), Some(b.handle.worker_id()));
    b.stop().await;
}

async fn failures_retry_on_the_backoff_schedule_then_go_dead_and_replay(fx: Fx) {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let flaky = move |_ctx: JobContext, _p: Value| {
        let h = h.clone();
        async move {
            if h.load(Ordering::SeqCst) {
                Ok(JobOutcome::Done)
            } else {
                Err(JobError::retryable("WeCom -1 system busy"))
            }
        }
    };
    let e = start_one(&fx.jobs, "sync", exact(), flaky).await;
    let id = fx.jobs.enqueue_now(job("sync", 1)).await.unwrap().id;
    let attempts_then = |n: i64, state: i64| {
        let fx = &fx;
        async move {
            eventually(&format!("attempt {n} recorded"), || async {
                fx.db
                    .fetch_i64(query("SELECT COUNT(*) FROM job_attempt WHERE job_id = ?").bind(id))
                    .await
                    .unwrap()
                    == n
                    && fx.state_of(id).await == state
            })
            .await;
        }
    };
    let run_at = |fx: &Fx| {
        let db = fx.db.clone();
        async move {
            db.fetch_i64(query("SELECT run_at FROM job WHERE id = ?").bind(id))
                .await
                .unwrap()
        }
    };
    attempts_then(1, 0).await;
    assert_eq!(run_at(&fx).await - fx.jobs.now_ms(), 60_000);
    fx.advance(60);
    attempts_then(2, 0).await;
    assert_eq!(run_at(&fx).await - fx.jobs.now_ms(), 300_000);
    fx.advance(300);
    attempts_then(3, 0).await;
    assert_eq!(run_at(&fx).await - fx.jobs.now_ms(), 900_000);
    fx.advance(900);
    attempts_then(4, 3).await; // dead letter after the 4th attempt

    let d = fx.jobs.get_job(Scope::System, id).await.unwrap();
    assert_eq!(d.attempts.len(), 4);
    assert!(
        d.attempts
            .iter()
            .all(|a| a.error.as_deref() == Some("WeCom -1 system busy"))
    );
    assert_eq!(d.job.last_error.as_deref(), Some("WeCom -1 system busy"));

    healthy.store(true, Ordering::SeqCst);
    let n = fx
        .jobs
        .replay(Scope::System, &Target::Ids(vec![id]))
        .await
        .unwrap();
    assert_eq!(n, 1);
    eventually("replayed job done", || async { fx.state_of(id).await == 2 }).await;
    let d = fx.jobs.get_job(Scope::System, id).await.unwrap();
    assert_eq!(d.attempts.last().map(|a| a.outcome.as_str()), Some("done"));
    e.stop().await;
}

async fn a_permanent_error_goes_dead_at_once(fx: Fx) {
    let e = start_one(
        &fx.jobs,
        "parse",
        exact(),
        |_c: JobContext, _p: Value| async {
            Err::<JobOutcome, _>(JobError::permanent("bad template"))
        },
    )
    .await;
    let id = fx.jobs.enqueue_now(job("parse", 1)).await.unwrap().id;
    eventually("dead", || async { fx.state_of(id).await == 3 }).await;
    e.stop().await;
}

async fn a_job_running_past_its_timeout_is_aborted_and_retried(fx: Fx) {
    let opts = exact().timeout(Duration::from_secs(25));
    let e = start_one(&fx.jobs, "slow", opts, |_c: JobContext, _p: Value| async {
        futures::future::pending::<()>().await;
        Ok(JobOutcome::Done)
    })
    .await;
    let id = fx.jobs.enqueue_now(job("slow", 1)).await.unwrap().id;
    eventually("running", || async { fx.state_of(id).await == 1 }).await;
    for _ in 0..3 {
        fx.advance(10); // heartbeats at +10, +20, +30 s; the third sees the timeout
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("timed out, waiting to retry", || async {
        fx.state_of(id).await == 0
    })
    .await;
    let (outcome, error): (String, Option<String>) = fx
        .db
        .fetch_one(query("SELECT outcome, error FROM job_attempt WHERE job_id = ?").bind(id))
        .await
        .unwrap();
    assert_eq!(outcome, "timeout");
    assert_eq!(error.as_deref(), Some("timed out after 25 s"));
    e.stop().await;
}

async fn a_key_never_runs_more_than_its_limit(fx: Fx) {
    let keyed_now = Arc::new(AtomicUsize::new(0));
    let keyed_peak = Arc::new(AtomicUsize::new(0));
    let (nr, pk) = (keyed_now.clone(), keyed_peak.clone());
    let handler = move |_c: JobContext, p: Value| {
        let (nr, pk) = (nr.clone(), pk.clone());
        async move {
            let keyed = p["n"].as_i64().unwrap_or(0) < 100;
            if keyed {
                let n = nr.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(n, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            if keyed {
                nr.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(JobOutcome::Done)
        }
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..10 {
        let j = job("send", n).limited_by("sender:alice", KeyLimit::concurrency(2));
        fx.jobs.enqueue(&mut tx, j).await.unwrap();
    }
    for n in 0..4 {
        fx.jobs
            .enqueue(&mut tx, job("send", 100 + n))
            .await
            .unwrap();
    }
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "send", exact(), handler).await;
    eventually("all 14 done", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await == 14
    })
    .await;
    assert_eq!(
        keyed_peak.load(Ordering::SeqCst),
        2,
        "two at a time, never more"
    );
    let keys = fx.jobs.key_limits().await.unwrap();
    assert_eq!(keys[0].running, 0, "every slot given back");
    e.stop().await;
}

async fn a_key_with_spacing_starts_its_jobs_3_to_8_seconds_apart(fx: Fx) {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let handler = move |ctx: JobContext, _p: Value| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(ctx.now_ms());
            Ok(JobOutcome::Done)
        }
    };
    let limit =
        KeyLimit::concurrency(1).with_spacing(Duration::from_secs(3), Duration::from_secs(8));
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..4 {
        fx.jobs
            .enqueue(&mut tx, job("send", n).limited_by("sender:bob", limit))
            .await
            .unwrap();
    }
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "send", exact(), handler).await;
    eventually("first started", || async {
        starts.lock().unwrap().len() == 1
    })
    .await;
    for _ in 0..40 {
        if starts.lock().unwrap().len() == 4 {
            break;
        }
        let before = starts.lock().unwrap().len();
        fx.advance(1);
        // Give the engine a moment to react to the tick (nothing to do most ticks).
        let deadline = tokio::time::Instant::now() + Duration::from_millis(150);
        while tokio::time::Instant::now() < deadline && starts.lock().unwrap().len() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 4, "{starts:?}");
    for w in starts.windows(2) {
        let gap = w[1] - w[0];
        assert!((3_000..=9_000).contains(&gap), "gap {gap} ms in {starts:?}");
    }
    e.stop().await;
}

async fn urgent_jobs_jump_the_queue(fx: Fx) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let handler = move |_c: JobContext, p: Value| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(p["n"].as_i64().unwrap_or(-1));
            Ok(JobOutcome::Done)
        }
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..3 {
        fx.jobs.enqueue(&mut tx, job("k", n)).await.unwrap();
    }
    fx.jobs
        .enqueue(&mut tx, job("k", 99).priority(5))
        .await
        .unwrap();
    fx.jobs.commit(tx).await.unwrap();
    let mut cfg = test_config();
    cfg.concurrency = 1;
    cfg.claim_batch = 1;
    let e = start_config(&fx.jobs, cfg, "k", exact(), handler).await;
    eventually("4 done", || async { order.lock().unwrap().len() == 4 }).await;
    assert_eq!(*order.lock().unwrap(), vec![99, 0, 1, 2]);
    e.stop().await;
}

async fn a_polling_job_reschedules_without_using_attempts(fx: Fx) {
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let handler = move |ctx: JobContext, p: Value| {
        let polls = p2.clone();
        async move {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                let cursor = p["cursor"].as_i64().unwrap_or(0) + 1;
                return Ok(JobOutcome::Reschedule {
                    at: ctx.now_ms() + 30_000,
                    payload: json!({ "cursor": cursor }),
                });
            }
            Ok(JobOutcome::Done)
        }
    };
    let e = start_one(&fx.jobs, "poll", exact(), handler).await;
    let id = fx
        .jobs
        .enqueue_now(
            NewJob::new("poll", &json!({ "cursor": 0 }))
                .unwrap()
                .max_attempts(1),
        )
        .await
        .unwrap()
        .id;
    for _ in 0..2 {
        let before = polls.load(Ordering::SeqCst);
        eventually("polled", || async { polls.load(Ordering::SeqCst) > before }).await;
        eventually("rescheduled", || async { fx.state_of(id).await == 0 }).await;
        fx.advance(30);
    }
    eventually("done", || async { fx.state_of(id).await == 2 }).await;
    let d = fx.jobs.get_job(Scope::System, id).await.unwrap();
    assert_eq!(d.payload, json!({ "cursor": 2 }));
    assert_eq!(d.job.attempts, 1, "reschedules are not attempts");
    e.stop().await;
}

async fn shutdown_drains_running_jobs(fx: Fx) {
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicBool::new(false));
    let (r, s) = (release.clone(), started.clone());
    let handler = move |_c: JobContext, _p: Value| {
        let (r, s) = (r.clone(), s.clone());
        async move {
            s.store(true, Ordering::SeqCst);
            r.notified().await;
            Ok(JobOutcome::Done)
        }
    };
    let e = start_one(&fx.jobs, "k", exact(), handler).await;
    let id = fx.jobs.enqueue_now(job("k", 1)).await.unwrap().id;
    eventually("started", || async { started.load(Ordering::SeqCst) }).await;
    e.shutdown.cancel();
    let later = fx.jobs.enqueue_now(job("k", 2)).await.unwrap().id;
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(20), e.handle.wait())
        .await
        .expect("drained");
    assert_eq!(fx.state_of(id).await, 2, "the running job finished");
    assert_eq!(fx.state_of(later).await, 0, "nothing new was claimed");
    let w = fx.jobs.workers().await.unwrap();
    assert_eq!(w[0].status, "stopped");
}

async fn a_queue_filled_after_its_last_analyze_is_planned_for_what_it_holds(fx: Fx) {
    // The job table analyzed while empty, as after a quiet night: PostgreSQL then plans claims
    // for a dozen rows (a bitmap scan and a sort of every pending job per claim) until its
    // statistics are refreshed. The engine refreshes them when it starts and when they go stale.
    let pg = fx.db.backend() == scrm_db::Backend::Postgres;
    if pg {
        fx.db.execute(query("ANALYZE job")).await.unwrap();
    }
    let mut tx = fx.db.begin().await.unwrap();
    let batch: Vec<NewJob> = (0..12_000).map(|n| job("noop", n)).collect();
    fx.jobs.enqueue_many(&mut tx, batch).await.unwrap();
    fx.jobs.commit(tx).await.unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let e = start_one(
        &fx.jobs,
        "noop",
        exact(),
        move |_c: JobContext, _p: Value| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(JobOutcome::Done)
            }
        },
    )
    .await;
    eventually_within("all 12,000 done", Duration::from_secs(180), || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await == 12_000
    })
    .await;
    if pg {
        eventually("statistics describe the filled queue", || async {
            fx.count("SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = CAST('job' AS regclass)")
                .await
                >= 10_000
        })
        .await;
    }
    e.stop().await;
    assert_eq!(ran.load(Ordering::SeqCst), 12_000, "every job ran once");
}

async fn a_backlog_of_one_key_does_not_hold_back_the_jobs_behind_it(fx: Fx) {
    // 40 jobs of one key (one at a time) due first, 20 unlimited jobs due just after. A claim
    // of 8 sees 8 of the key's jobs and may start one: the claim must go on to the jobs
    // behind them, not leave them until the key's backlog is gone.
    let keyed_done = Arc::new(AtomicUsize::new(0));
    let keyed_done_when_free_finished = Arc::new(AtomicUsize::new(usize::MAX));
    let free_done = Arc::new(AtomicUsize::new(0));
    let (k, w, f) = (
        keyed_done.clone(),
        keyed_done_when_free_finished.clone(),
        free_done.clone(),
    );
    let handler = move |_ctx: JobContext, p: Value| {
        let (k, w, f) = (k.clone(), w.clone(), f.clone());
        async move {
            if p["n"].as_i64().unwrap_or(0) < 100 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                k.fetch_add(1, Ordering::SeqCst);
            } else if f.fetch_add(1, Ordering::SeqCst) + 1 == 20 {
                w.store(k.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            Ok(JobOutcome::Done)
        }
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..40 {
        let j = job("send", n)
            .limited_by("corp:one", KeyLimit::concurrency(1))
            .run_at(T0 - 2_000);
        fx.jobs.enqueue(&mut tx, j).await.unwrap();
    }
    for n in 0..20 {
        let j = job("send", 100 + n).run_at(T0 - 1_000);
        fx.jobs.enqueue(&mut tx, j).await.unwrap();
    }
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "send", exact(), handler).await;
    // The engine polls on its clock: move it a second every 50 ms of real time.
    for _ in 0..400 {
        if fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await == 60 {
            break;
        }
        fx.advance(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM job WHERE state = 2").await,
        60,
        "all 60 done"
    );
    e.stop().await;
    let before = keyed_done_when_free_finished.load(Ordering::SeqCst);
    assert!(
        before < 20,
        "the 20 unlimited jobs finished while the key's backlog ran, not after it ({before} of 40 keyed done by then)"
    );
}

scrm_db::db_tests!(crate::support::setup;
    two_engines_never_run_a_job_twice,
    a_crashed_workers_job_is_finished_by_another_after_its_lease_expires,
    failures_retry_on_the_backoff_schedule_then_go_dead_and_replay,
    a_permanent_error_goes_dead_at_once,
    a_job_running_past_its_timeout_is_aborted_and_retried,
    a_key_never_runs_more_than_its_limit,
    a_key_with_spacing_starts_its_jobs_3_to_8_seconds_apart,
    urgent_jobs_jump_the_queue,
    a_polling_job_reschedules_without_using_attempts,
    shutdown_drains_running_jobs,
    a_queue_filled_after_its_last_analyze_is_planned_for_what_it_holds,
    a_backlog_of_one_key_does_not_hold_back_the_jobs_behind_it,
);
