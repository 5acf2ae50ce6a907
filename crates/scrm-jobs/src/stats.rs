//! Monitoring, seed 002's list per kind: queue length, processing, completed today, failed
//! today, average process time, worker status. Live counts come from the job table by state
//! (index `(kind, state)`); completed/failed/durations from `job_stat`, a per-kind per-minute
//! table the finishing transaction bumps, so "today" is a sum of at most 1,440 rows per kind,
//! never a scan of finished jobs. The same figures go to the `metrics` crate.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use scrm_db::query;
use serde::Serialize;

use crate::error::JobsResult;
use crate::queue::Jobs;
use crate::store::{FinishSummary, sum_i64};
use crate::worker::WorkerInfo;

/// Figures of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindStats {
    /// The kind.
    pub kind: String,
    /// Pending jobs due now (the queue length).
    pub queued: i64,
    /// Pending jobs due later (delayed steps, retries waiting for their backoff).
    pub scheduled: i64,
    /// Running now (seed 002's "processing").
    pub processing: i64,
    /// Paused.
    pub paused: i64,
    /// Dead letters waiting for replay or purge.
    pub dead: i64,
    /// Completed since midnight in the configured time zone.
    pub completed_today: i64,
    /// Failed attempts since midnight (each retry counts).
    pub failed_today: i64,
    /// Jobs that went dead since midnight.
    pub dead_today: i64,
    /// Average run time of today's completed jobs, seconds.
    pub avg_process_time: f64,
    /// Pending due job waiting longest: its age in ms (0 when none).
    pub oldest_queued_ms: i64,
}

/// Everything seed 002's monitor shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Per kind, by name.
    pub kinds: Vec<KindStats>,
    /// All kinds together.
    pub total: KindStats,
    /// Registered workers.
    pub workers: Vec<WorkerInfo>,
}

/// Midnight today in the zone, epoch ms.
fn start_of_day(jobs: &Jobs, now: i64) -> i64 {
    let tz = jobs.options().time_zone;
    Utc.timestamp_millis_opt(now)
        .single()
        .map(|t| t.with_timezone(&tz).date_naive())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| tz.from_local_datetime(&d).earliest())
        .map(|d| d.timestamp_millis())
        .unwrap_or(now - now.rem_euclid(86_400_000))
}

/// Compute the figures.
pub async fn stats(jobs: &Jobs) -> JobsResult<Stats> {
    let db = jobs.db();
    let now = jobs.now_ms();
    let mut by_kind: BTreeMap<String, KindStats> = BTreeMap::new();
    let rows: Vec<(String, i64, i64, i64, Option<i64>)> = db
        .fetch_all(
            query(
                "SELECT kind, state, COUNT(*), COUNT(CASE WHEN run_at <= ? THEN 1 END), \
                 MIN(CASE WHEN run_at <= ? THEN run_at END) \
                 FROM job WHERE state IN (0, 1, 3, 5) GROUP BY kind, state",
            )
            .bind(now)
            .bind(now),
        )
        .await?;
    for (kind, state, n, due, oldest) in rows {
        let k = by_kind.entry(kind.clone()).or_insert_with(|| KindStats {
            kind,
            ..Default::default()
        });
        match state {
            0 => {
                k.queued = due;
                k.scheduled = n - due;
                k.oldest_queued_ms = oldest.map(|o| now - o).unwrap_or(0);
            }
            1 => k.processing = n,
            3 => k.dead = n,
            _ => k.paused = n,
        }
    }
    let b = db.backend();
    let sql = format!(
        "SELECT kind, {}, {}, {}, {} FROM job_stat WHERE bucket >= ? GROUP BY kind",
        sum_i64(b, "completed"),
        sum_i64(b, "failed"),
        sum_i64(b, "dead"),
        sum_i64(b, "duration_ms"),
    );
    let day: Vec<(String, i64, i64, i64, i64)> = db
        .fetch_all(query(sql).bind(start_of_day(jobs, now)))
        .await?;
    for (kind, completed, failed, dead, dur) in day {
        let k = by_kind.entry(kind.clone()).or_insert_with(|| KindStats {
            kind,
            ..Default::default()
        });
        k.completed_today = completed;
        k.failed_today = failed;
        k.dead_today = dead;
        k.avg_process_time = if completed > 0 {
            dur as f64 / completed as f64 / 1000.0
        } else {
            0.0
        };
    }
    let mut total = KindStats {
        kind: "*".into(),
        ..Default::default()
    };
    let mut dur_total = 0.0;
    for k in by_kind.values() {
        total.queued += k.queued;
        total.scheduled += k.scheduled;
        total.processing += k.processing;
        total.paused += k.paused;
        total.dead += k.dead;
        total.completed_today += k.completed_today;
        total.failed_today += k.failed_today;
        total.dead_today += k.dead_today;
        total.oldest_queued_ms = total.oldest_queued_ms.max(k.oldest_queued_ms);
        dur_total += k.avg_process_time * k.completed_today as f64;
    }
    if total.completed_today > 0 {
        total.avg_process_time = dur_total / total.completed_today as f64;
    }
    let workers = crate::worker::list(db, now, 90_000).await?;
    Ok(Stats {
        kinds: by_kind.into_values().collect(),
        total,
        workers,
    })
}

/// Set the gauges from a [`Stats`] snapshot.
pub fn export(s: &Stats) {
    for k in &s.kinds {
        let kind = k.kind.clone();
        metrics::gauge!("jobs_queue_length", "kind" => kind.clone()).set(k.queued as f64);
        metrics::gauge!("jobs_scheduled", "kind" => kind.clone()).set(k.scheduled as f64);
        metrics::gauge!("jobs_processing", "kind" => kind.clone()).set(k.processing as f64);
        metrics::gauge!("jobs_paused", "kind" => kind.clone()).set(k.paused as f64);
        metrics::gauge!("jobs_dead", "kind" => kind.clone()).set(k.dead as f64);
        metrics::gauge!("jobs_completed_today", "kind" => kind.clone())
            .set(k.completed_today as f64);
        metrics::gauge!("jobs_failed_today", "kind" => kind.clone()).set(k.failed_today as f64);
        metrics::gauge!("jobs_oldest_queued_seconds", "kind" => kind)
            .set(k.oldest_queued_ms as f64 / 1000.0);
    }
    let live = s
        .workers
        .iter()
        .filter(|w| w.status == "running" || w.status == "draining")
        .count();
    metrics::gauge!("jobs_workers").set(live as f64);
}

/// Count a finished batch into the process's counters and histogram.
pub(crate) fn record(s: &FinishSummary) {
    for (kind, d) in &s.per_kind {
        if d.completed > 0 {
            metrics::counter!("jobs_completed_total", "kind" => kind.clone())
                .increment(d.completed as u64);
        }
        if d.failed > 0 {
            metrics::counter!("jobs_failed_total", "kind" => kind.clone())
                .increment(d.failed as u64);
        }
        if d.dead > 0 {
            metrics::counter!("jobs_dead_total", "kind" => kind.clone()).increment(d.dead as u64);
        }
        if d.cancelled > 0 {
            metrics::counter!("jobs_cancelled_total", "kind" => kind.clone())
                .increment(d.cancelled as u64);
        }
        if !d.durations.is_empty() {
            let h = metrics::histogram!("jobs_duration_seconds", "kind" => kind.clone());
            for ms in &d.durations {
                h.record(*ms as f64 / 1000.0);
            }
        }
    }
}
