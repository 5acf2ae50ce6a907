//! Measurements the app runs as `scrm bench jobs` and `cargo bench -p scrm-jobs`:
//!
//! - **throughput**: enqueue N no-op jobs (multi-row INSERTs of 1,000, one transaction each,
//!   one client), then drain them with one engine; jobs/s for both.
//! - **lateness**: an engine runs first; N jobs are enqueued due uniformly over `spread`,
//!   starting `lead` after the run starts (longer than the enqueue takes, as the BullMQ peer
//!   does); lateness = handler start − due time; p50/p99/max.
//! - **hold**: enqueue N jobs due tomorrow while an engine idles; the process's peak RSS
//!   (they live in the database, so it must stay flat).
//!
//! Run it on a scratch database: it deletes jobs of the `bench.*` kinds before and after.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scrm_db::{Db, query};
use serde::Serialize;

use crate::engine::{EngineConfig, JobEngine};
use crate::error::JobsResult;
use crate::job::{JobOutcome, KindOptions, NewJob, ms};
use crate::queue::Jobs;
use crate::worker::{JobContext, peak_rss_bytes, rss_bytes};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Jobs for the throughput run (0 skips it).
    pub throughput_n: usize,
    /// Jobs for the lateness run (0 skips it).
    pub delayed_n: usize,
    /// Due times spread over this long.
    pub spread: Duration,
    /// Jobs held for the memory run (0 skips it).
    pub hold_n: usize,
    /// Engine slots.
    pub concurrency: usize,
    /// Jobs per claim.
    pub claim_batch: usize,
    /// Concurrent claim loops.
    pub claimers: usize,
    /// Concurrent finishing writes.
    pub finish_writers: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            throughput_n: 100_000,
            delayed_n: 100_000,
            spread: Duration::from_secs(10),
            hold_n: 1_000_000,
            concurrency: 256,
            claim_batch: 128,
            claimers: 2,
            finish_writers: 2,
        }
    }
}

impl BenchOptions {
    /// The defaults, with the claim size and slots measured best for `backend` on a 2-core
    /// machine (BENCHMARKS.md, "knob sweep"): on PostgreSQL, claims of 256 into 512 slots drain
    /// 28-29k jobs/s against 20-24k at 128/256 with the same lateness; MariaDB's lateness
    /// worsens with bigger claims (103 vs 60 ms p99) and SQLite has one writer, so both keep
    /// 128/256.
    pub fn for_backend(backend: scrm_db::Backend) -> Self {
        let d = Self::default();
        match backend {
            scrm_db::Backend::Postgres => Self {
                concurrency: 512,
                claim_batch: 256,
                ..d
            },
            _ => d,
        }
    }
}

/// Results; absent figures were skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub throughput_n: usize,
    pub enqueue_per_s: Option<f64>,
    pub drain_per_s: Option<f64>,
    pub delayed_n: usize,
    pub delayed_enqueue_s: Option<f64>,
    pub lateness_p50_ms: Option<i64>,
    pub lateness_p99_ms: Option<i64>,
    pub lateness_max_ms: Option<i64>,
    /// Lateness p99 of the jobs due in each second of the spread (where a tail comes from).
    pub lateness_p99_by_second_ms: Vec<i64>,
    pub hold_n: usize,
    pub hold_enqueue_per_s: Option<f64>,
    pub hold_rss_mib: Option<f64>,
    pub peak_rss_mib: f64,
    /// Claim transactions during the drain.
    pub drain_claims: Option<u64>,
    /// Finishing transactions during the drain.
    pub drain_finishes: Option<u64>,
    /// Claim and finishing transactions during the lateness run.
    pub delayed_claims: Option<u64>,
    pub delayed_finishes: Option<u64>,
}

fn engine_config(o: &BenchOptions) -> EngineConfig {
    EngineConfig {
        concurrency: o.concurrency,
        claim_batch: o.claim_batch,
        builtins: false,
        finish_batch: 1024,
        claimers: o.claimers,
        finish_writers: o.finish_writers,
        ..Default::default()
    }
}

async fn clean(db: &Db) -> JobsResult<()> {
    loop {
        let ids: Vec<(i64,)> = db
            .fetch_all(query(
                "SELECT id FROM job WHERE kind IN ('bench.noop', 'bench.delayed', 'bench.hold') \
                 LIMIT 10000",
            ))
            .await?;
        if ids.is_empty() {
            break;
        }
        let mut q = query("DELETE FROM job WHERE id IN ");
        q.push_in_list(ids.iter().map(|r| r.0));
        db.execute(q).await?;
    }
    db.execute(query("DELETE FROM job_stat WHERE kind LIKE 'bench.%'"))
        .await?;
    if db.backend() == scrm_db::Backend::Postgres {
        // Start every run from a vacuumed table: a previous run's dead tuples would slow the
        // claims of this one (autovacuum may lag or be off on a benchmark box).
        db.execute(query("VACUUM ANALYZE job")).await?;
    }
    Ok(())
}

async fn enqueue_chunked(
    jobs: &Jobs,
    kind: &str,
    n: usize,
    due: impl Fn(usize) -> Option<i64>,
) -> JobsResult<()> {
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let batch: Vec<NewJob> = (i..end)
            .map(|k| {
                let j = NewJob::from_json(kind, format!("{{\"i\":{k}}}"));
                match due(k) {
                    Some(at) => j.run_at(at),
                    None => j,
                }
            })
            .collect();
        let mut tx = jobs.db().begin().await?;
        jobs.enqueue_many(&mut tx, batch).await?;
        jobs.commit(tx).await?;
        i = end;
    }
    Ok(())
}

/// Run the selected measurements on `db` (already migrated).
pub async fn run(db: &Db, o: &BenchOptions) -> JobsResult<BenchReport> {
    let jobs = Jobs::new(db.clone());
    let mut r = BenchReport {
        backend: db.backend().to_string(),
        throughput_n: o.throughput_n,
        delayed_n: o.delayed_n,
        hold_n: o.hold_n,
        ..Default::default()
    };
    clean(db).await?;
    if o.throughput_n > 0 {
        throughput(&jobs, o, &mut r).await?;
        clean(db).await?;
    }
    if o.delayed_n > 0 {
        lateness(&jobs, o, &mut r).await?;
        clean(db).await?;
    }
    if o.hold_n > 0 {
        hold(&jobs, o, &mut r).await?;
        clean(db).await?;
    }
    r.peak_rss_mib = mib(peak_rss_bytes());
    Ok(r)
}

fn mib(b: i64) -> f64 {
    (b as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

async fn throughput(jobs: &Jobs, o: &BenchOptions, r: &mut BenchReport) -> JobsResult<()> {
    let n = o.throughput_n;
    let t = Instant::now();
    enqueue_chunked(jobs, "bench.noop", n, |_| None).await?;
    r.enqueue_per_s = Some((n as f64 / t.elapsed().as_secs_f64()).round());

    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let handler = move |_c: JobContext, _p: serde_json::Value| {
        let d = d.clone();
        async move {
            d.fetch_add(1, Ordering::Relaxed);
            Ok(JobOutcome::Done)
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (c0, f0) = (
        crate::store::CLAIM_TXS.load(Ordering::Relaxed),
        crate::store::FINISH_TXS.load(Ordering::Relaxed),
    );
    let t = Instant::now();
    let engine = JobEngine::builder(jobs.clone())
        .config(engine_config(o))
        .register("bench.noop", KindOptions::default(), handler)
        .build()
        .start(stop.clone())
        .await?;
    while done.load(Ordering::Relaxed) < n || engine.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    r.drain_per_s = Some((n as f64 / t.elapsed().as_secs_f64()).round());
    r.drain_claims = Some(crate::store::CLAIM_TXS.load(Ordering::Relaxed) - c0);
    r.drain_finishes = Some(crate::store::FINISH_TXS.load(Ordering::Relaxed) - f0);
    stop.cancel();
    engine.wait().await;
    Ok(())
}

async fn lateness(jobs: &Jobs, o: &BenchOptions, r: &mut BenchReport) -> JobsResult<()> {
    let n = o.delayed_n;
    let late = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let l = late.clone();
    let handler = move |ctx: JobContext, _p: serde_json::Value| {
        let l = l.clone();
        async move {
            let lateness = crate::clock::system_now_ms() - ctx.run_at;
            if let Ok(mut v) = l.lock() {
                v.push((ctx.run_at, lateness));
            }
            Ok(JobOutcome::Done)
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let engine = JobEngine::builder(jobs.clone())
        .config(engine_config(o))
        .register("bench.delayed", KindOptions::default(), handler)
        .build()
        .start(stop.clone())
        .await?;
    let (c0, f0) = (
        crate::store::CLAIM_TXS.load(Ordering::Relaxed),
        crate::store::FINISH_TXS.load(Ordering::Relaxed),
    );
    let lead = 2_000 + (n as i64) / 10;
    let start = jobs.now_ms() + lead;
    let spread = ms(o.spread).max(1);
    let t = Instant::now();
    enqueue_chunked(jobs, "bench.delayed", n, |k| {
        Some(start + (k as i64) * spread / (n as i64))
    })
    .await?;
    r.delayed_enqueue_s = Some((t.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    loop {
        let seen = late.lock().map(|v| v.len()).unwrap_or(0);
        if seen >= n && engine.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.delayed_claims = Some(crate::store::CLAIM_TXS.load(Ordering::Relaxed) - c0);
    r.delayed_finishes = Some(crate::store::FINISH_TXS.load(Ordering::Relaxed) - f0);
    stop.cancel();
    engine.wait().await;
    let pairs = late.lock().map(|v| v.clone()).unwrap_or_default();
    let mut by_second: Vec<Vec<i64>> = Vec::new();
    for &(due, l) in &pairs {
        let s = ((due - start).max(0) / 1000) as usize;
        if by_second.len() <= s {
            by_second.resize(s + 1, Vec::new());
        }
        by_second[s].push(l);
    }
    r.lateness_p99_by_second_ms = by_second
        .into_iter()
        .map(|mut v| {
            v.sort_unstable();
            v.get(((v.len() as f64 * 0.99) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let mut v: Vec<i64> = pairs.into_iter().map(|p| p.1).collect();
    v.sort_unstable();
    let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    r.lateness_p50_ms = Some(pct(0.50));
    r.lateness_p99_ms = Some(pct(0.99));
    r.lateness_max_ms = v.last().copied();
    Ok(())
}

async fn hold(jobs: &Jobs, o: &BenchOptions, r: &mut BenchReport) -> JobsResult<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let handler = |_c: JobContext, _p: serde_json::Value| async { Ok(JobOutcome::Done) };
    let engine = JobEngine::builder(jobs.clone())
        .config(engine_config(o))
        .register("bench.hold", KindOptions::default(), handler)
        .build()
        .start(stop.clone())
        .await?;
    let tomorrow = jobs.now_ms() + 86_400_000;
    let t = Instant::now();
    enqueue_chunked(jobs, "bench.hold", o.hold_n, |k| Some(tomorrow + k as i64)).await?;
    r.hold_enqueue_per_s = Some((o.hold_n as f64 / t.elapsed().as_secs_f64()).round());
    // Let the engine look at its (now full) queue a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.hold_rss_mib = Some(mib(rss_bytes()));
    stop.cancel();
    engine.wait().await;
    Ok(())
}
