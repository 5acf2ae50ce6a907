//! Controlling jobs: transactions, unique keys, cancel, pause/resume, listing, stats, alerts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scrm_jobs::alerts::SinkFuture;
use scrm_jobs::{
    AlertEvent, AlertRule, AlertSink, JobContext, JobError, JobFilter, JobOutcome, JobState,
    NewJob, RuleType, Scope, Target,
};
use serde_json::{Value, json};

use crate::support::*;

fn job(kind: &str, n: i64) -> NewJob {
    NewJob::new(kind, &json!({ "n": n })).expect("payload")
}

async fn a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(fx: Fx) {
    let mut tx = fx.db.begin().await.unwrap();
    fx.jobs.enqueue(&mut tx, job("k", 1)).await.unwrap();
    fx.jobs
        .enqueue_many(&mut tx, vec![job("k", 2), job("k", 3)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(fx.count("SELECT COUNT(*) FROM job").await, 0);
}

async fn a_unique_key_makes_enqueue_idempotent(fx: Fx) {
    let first = fx
        .jobs
        .enqueue_now(job("welcome", 1).unique_key("welcome:ext_1"))
        .await
        .unwrap();
    let again = fx
        .jobs
        .enqueue_now(job("welcome", 2).unique_key("welcome:ext_1"))
        .await
        .unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.id, again.id);
    let mut tx = fx.db.begin().await.unwrap();
    let n = fx
        .jobs
        .enqueue_many(
            &mut tx,
            vec![
                job("welcome", 3).unique_key("welcome:ext_1"),
                job("welcome", 4).unique_key("welcome:ext_2"),
                job("welcome", 5).unique_key("welcome:ext_2"),
            ],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(fx.count("SELECT COUNT(*) FROM job").await, 2);
}

async fn cancelling_stops_queued_jobs_and_running_ones_cooperatively(fx: Fx) {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let handler = move |ctx: JobContext, _p: Value| {
        let s = s.clone();
        async move {
            s.store(true, Ordering::SeqCst);
            ctx.cancelled().await;
            assert!(ctx.is_cancelled());
            Err::<JobOutcome, _>(JobError::retryable("stopped: cancelled"))
        }
    };
    let e = start_one(&fx.jobs, "mass", exact(), handler).await;
    let later = fx
        .jobs
        .enqueue_now(job("mass", 1).run_at(T0 + 3_600_000))
        .await
        .unwrap()
        .id;
    let now = fx.jobs.enqueue_now(job("mass", 2)).await.unwrap().id;
    eventually("running", || async { started.load(Ordering::SeqCst) }).await;
    let r = fx
        .jobs
        .cancel(Scope::System, &Target::Ids(vec![later, now]))
        .await
        .unwrap();
    assert_eq!((r.cancelled, r.cancelling), (1, 1));
    assert_eq!(fx.state_of(later).await, JobState::Cancelled.code());
    assert_eq!(fx.state_of(now).await, 1, "still running until it notices");
    fx.advance(10); // the heartbeat reads the cancel request
    eventually("running job cancelled", || async {
        fx.state_of(now).await == 4
    })
    .await;
    e.stop().await;
}

async fn pausing_a_group_holds_its_steps_and_resuming_shifts_them(fx: Fx) {
    let mut tx = fx.db.begin().await.unwrap();
    let mut ids = Vec::new();
    for step in 1..=3 {
        let j = job("sop.step", step)
            .group("sop:7")
            .run_at(T0 + step * 600_000);
        ids.push(fx.jobs.enqueue(&mut tx, j).await.unwrap().id);
    }
    let other = fx
        .jobs
        .enqueue(
            &mut tx,
            job("sop.step", 9).group("sop:8").run_at(T0 + 600_000),
        )
        .await
        .unwrap()
        .id;
    tx.commit().await.unwrap();

    let g7 = Target::Group("sop:7".into());
    let g8 = Target::Group("sop:8".into());
    assert_eq!(fx.jobs.pause(Scope::System, &g7).await.unwrap(), 3);
    assert_eq!(fx.jobs.pause(Scope::System, &g8).await.unwrap(), 1);
    fx.advance(15 * 60);
    assert_eq!(fx.jobs.resume(Scope::System, &g7, true).await.unwrap(), 3);
    assert_eq!(fx.jobs.resume(Scope::System, &g8, false).await.unwrap(), 1);
    for (i, id) in ids.iter().enumerate() {
        let d = fx.jobs.get_job(Scope::System, *id).await.unwrap();
        assert_eq!(d.job.state, 0);
        assert_eq!(d.job.run_at, T0 + (i as i64 + 1) * 600_000 + 15 * 60_000);
    }
    let d = fx.jobs.get_job(Scope::System, other).await.unwrap();
    assert_eq!(d.job.run_at, T0 + 600_000, "no shift asked");
}

async fn paused_jobs_are_not_claimed(fx: Fx) {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let handler = move |_c: JobContext, _p: Value| {
        let r = r.clone();
        async move {
            r.store(true, Ordering::SeqCst);
            Ok(JobOutcome::Done)
        }
    };
    let id = fx
        .jobs
        .enqueue_now(job("k", 1).group("g").run_at(T0 + 1_000))
        .await
        .unwrap()
        .id;
    fx.jobs
        .pause(Scope::System, &Target::Ids(vec![id]))
        .await
        .unwrap();
    let e = start_one(&fx.jobs, "k", exact(), handler).await;
    fx.advance(5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(fx.state_of(id).await, 5);
    fx.jobs
        .resume(Scope::System, &Target::Ids(vec![id]), false)
        .await
        .unwrap();
    eventually("ran after resume", || async { fx.state_of(id).await == 2 }).await;
    e.stop().await;
}

async fn tenants_see_only_their_own_jobs(fx: Fx) {
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..5 {
        fx.jobs
            .enqueue(&mut tx, job("k", n).tenant(1))
            .await
            .unwrap();
    }
    let theirs = fx
        .jobs
        .enqueue(&mut tx, job("k", 9).tenant(2))
        .await
        .unwrap()
        .id;
    fx.jobs.enqueue(&mut tx, job("sys", 0)).await.unwrap();
    tx.commit().await.unwrap();

    let page = fx
        .jobs
        .list_jobs(Scope::Tenant(1), &JobFilter::default(), 1, 2)
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|j| j.tenant_id == Some(1)));
    let all = fx
        .jobs
        .list_jobs(
            Scope::System,
            &JobFilter {
                kind: Some("k".into()),
                state: Some(JobState::Pending),
                ..Default::default()
            },
            1,
            50,
        )
        .await
        .unwrap();
    assert_eq!(all.total, 6);
    assert!(fx.jobs.get_job(Scope::Tenant(1), theirs).await.is_err());
    let r = fx
        .jobs
        .cancel(Scope::Tenant(1), &Target::Ids(vec![theirs]))
        .await
        .unwrap();
    assert_eq!(r.cancelled, 0, "another tenant's job is untouchable");
}

async fn stats_count_queue_processing_completed_and_failed(fx: Fx) {
    let handler = |_c: JobContext, p: Value| async move {
        if p["n"].as_i64() == Some(3) {
            Err(JobError::permanent("boom"))
        } else {
            Ok(JobOutcome::Done)
        }
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..4 {
        fx.jobs.enqueue(&mut tx, job("send", n)).await.unwrap();
    }
    for n in 0..2 {
        fx.jobs
            .enqueue(&mut tx, job("send", 10 + n).run_at(T0 + 3_600_000))
            .await
            .unwrap();
    }
    fx.jobs.enqueue(&mut tx, job("other", 0)).await.unwrap();
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "send", exact(), handler).await;
    eventually("4 finished", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state IN (2, 3)")
            .await
            == 4
    })
    .await;
    fx.advance(90);
    let s = fx.jobs.stats().await.unwrap();
    let send = s.kinds.iter().find(|k| k.kind == "send").unwrap();
    assert_eq!(send.completed_today, 3);
    assert_eq!(send.failed_today, 1);
    assert_eq!(send.dead_today, 1);
    assert_eq!(send.dead, 1);
    assert_eq!(send.queued, 0);
    assert_eq!(send.scheduled, 2);
    let other = s.kinds.iter().find(|k| k.kind == "other").unwrap();
    assert_eq!(other.queued, 1);
    assert_eq!(other.oldest_queued_ms, 90_000);
    assert_eq!(s.total.completed_today, 3);
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.workers[0].status, "running");
    e.stop().await;
}

#[derive(Default)]
struct Capture(Mutex<Vec<AlertEvent>>);

impl AlertSink for Capture {
    fn notify<'a>(&'a self, event: &'a AlertEvent) -> SinkFuture<'a> {
        self.0.lock().unwrap().push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

async fn a_failure_rate_alert_fires_once_and_resolves(fx: Fx) {
    let handler = |_c: JobContext, _p: Value| async move {
        Err::<JobOutcome, _>(JobError::permanent("WeCom 45009 api freq out of limit"))
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..5 {
        fx.jobs.enqueue(&mut tx, job("send", n)).await.unwrap();
    }
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "send", exact(), handler).await;
    eventually("5 dead", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state = 3").await == 5
    })
    .await;
    e.stop().await;
    fx.jobs
        .upsert_alert_rule(&AlertRule {
            name: "send failures".into(),
            kind: Some("send".into()),
            rule_type: RuleType::FailureRate,
            threshold: 0.5,
            window_ms: 600_000,
            min_samples: 3,
            cooldown_ms: 3_600_000,
            enabled: true,
        })
        .await
        .unwrap();
    let sink = Arc::new(Capture::default());
    let sinks: Vec<Arc<dyn AlertSink>> = vec![sink.clone()];
    assert_eq!(fx.jobs.evaluate_alerts(&sinks).await.unwrap(), 1);
    assert_eq!(
        fx.jobs.evaluate_alerts(&sinks).await.unwrap(),
        0,
        "one incident, one alert"
    );
    let firing = fx.jobs.alerts(Some("firing"), 10).await.unwrap();
    assert_eq!(firing.len(), 1);
    assert!(
        firing[0].message.contains("100.0% of 5 runs"),
        "{}",
        firing[0].message
    );
    fx.advance(15 * 60); // the failures leave the window
    assert_eq!(fx.jobs.evaluate_alerts(&sinks).await.unwrap(), 1);
    let states: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.state.clone())
        .collect();
    assert_eq!(states, vec!["firing", "resolved"]);
    assert_eq!(fx.jobs.alerts(Some("resolved"), 10).await.unwrap().len(), 1);
}

async fn pruning_deletes_old_finished_jobs_but_keeps_dead_ones(fx: Fx) {
    let handler = |_c: JobContext, p: Value| async move {
        if p["n"].as_i64() == Some(0) {
            Err(JobError::permanent("no"))
        } else {
            Ok(JobOutcome::Done)
        }
    };
    let mut tx = fx.db.begin().await.unwrap();
    for n in 0..3 {
        fx.jobs.enqueue(&mut tx, job("k", n)).await.unwrap();
    }
    fx.jobs.commit(tx).await.unwrap();
    let e = start_one(&fx.jobs, "k", exact(), handler).await;
    eventually("3 finished", || async {
        fx.count("SELECT COUNT(*) FROM job WHERE state IN (2, 3)")
            .await
            == 3
    })
    .await;
    e.stop().await;
    fx.advance(8 * 86_400);
    let n = scrm_jobs::builtin::prune_finished(&fx.jobs, fx.jobs.now_ms() - 7 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM job WHERE state = 3").await,
        1
    );
    let purged = fx
        .jobs
        .purge_dead(Scope::System, &Target::Filter(JobFilter::default()))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(fx.count("SELECT COUNT(*) FROM job").await, 0);
}

scrm_db::db_tests!(crate::support::setup;
    a_job_enqueued_in_a_rolled_back_transaction_does_not_exist,
    a_unique_key_makes_enqueue_idempotent,
    cancelling_stops_queued_jobs_and_running_ones_cooperatively,
    pausing_a_group_holds_its_steps_and_resuming_shifts_them,
    paused_jobs_are_not_claimed,
    tenants_see_only_their_own_jobs,
    stats_count_queue_processing_completed_and_failed,
    a_failure_rate_alert_fires_once_and_resolves,
    pruning_deletes_old_finished_jobs_but_keeps_dead_ones,
);
