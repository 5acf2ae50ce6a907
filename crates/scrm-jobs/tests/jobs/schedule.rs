//! Cron schedules: exactly once per tick across engines, latest missed tick only.

use std::sync::{Arc, Mutex};

use scrm_jobs::{JobContext, JobOutcome, Schedule};
use serde_json::Value;

use crate::support::*;

type Runs = Arc<Mutex<Vec<(i64, Arc<str>)>>>;

async fn a_cron_tick_fires_exactly_once_across_two_engines(fx: Fx) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let handler = |runs: Runs| {
        move |ctx: JobContext, _p: Value| {
            let runs = runs.clone();
            async move {
                runs.lock()
                    .unwrap()
                    .push((ctx.run_at, ctx.worker_id.clone()));
                Ok(JobOutcome::Done)
            }
        }
    };
    let mut s = Schedule::new("daily-report", "* * * * *", "report");
    s.timezone = "UTC".into();
    fx.jobs.upsert_schedule(&s).await.unwrap();
    let a = start_one(&fx.jobs, "report", exact(), handler(runs.clone())).await;
    let other = fx.other_process();
    let b = start_one(&other, "report", exact(), handler(runs.clone())).await;

    // T0 is hh:00:30; the first tick is at hh:01:00.
    fx.advance(30);
    eventually("first tick ran", || async {
        runs.lock().unwrap().len() == 1
    })
    .await;
    fx.advance(60);
    eventually("second tick ran", || async {
        runs.lock().unwrap().len() == 2
    })
    .await;
    // An outage of five minutes: one run, for the latest missed tick.
    fx.advance(5 * 60 + 10);
    eventually("catch-up tick ran", || async {
        runs.lock().unwrap().len() == 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let runs = runs.lock().unwrap().clone();
    let ticks: Vec<i64> = runs.iter().map(|r| r.0).collect();
    assert_eq!(
        ticks,
        vec![T0 + 30_000, T0 + 90_000, T0 + 390_000],
        "{runs:?}"
    );
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM job WHERE kind = 'report'")
            .await,
        3
    );
    let rows = fx.jobs.schedules().await.unwrap();
    assert_eq!(rows[0].next_fire_at, T0 + 450_000);
    a.stop().await;
    b.stop().await;
}

scrm_db::db_tests!(crate::support::setup;
    a_cron_tick_fires_exactly_once_across_two_engines,
);
