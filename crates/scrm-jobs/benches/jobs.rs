//! `cargo bench -p scrm-jobs --bench jobs`: throughput, lateness and memory of the job engine
//! on each database in `BENCH_DB_URLS` (comma-separated; default: a SQLite file in /tmp).
//! Sizes: `N` (100000), `DELAYED_N` (100000), `SPREAD_MS` (10000), `HOLD_N` (1000000),
//! `CONCURRENCY` and `CLAIM_BATCH` (512 and 256 on PostgreSQL, 256 and 128 elsewhere:
//! `BenchOptions::for_backend`), `CLAIMERS` (2), `FINISH_WRITERS` (2); 0 skips a run. One JSON
//! line per database.

use std::time::Duration;

use scrm_db::{Db, PoolSettings};
use scrm_jobs::bench::{BenchOptions, run};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls = std::env::var("BENCH_DB_URLS")
        .unwrap_or_else(|_| "sqlite:///tmp/scrm-jobs-bench.db".into());
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let db = Db::connect(url, &PoolSettings::default()).await?;
        db.migrate().await?;
        let d = BenchOptions::for_backend(db.backend());
        let opts = BenchOptions {
            throughput_n: env_usize("N", d.throughput_n),
            delayed_n: env_usize("DELAYED_N", d.delayed_n),
            spread: Duration::from_millis(env_usize("SPREAD_MS", 10_000) as u64),
            hold_n: env_usize("HOLD_N", d.hold_n),
            concurrency: env_usize("CONCURRENCY", d.concurrency),
            claim_batch: env_usize("CLAIM_BATCH", d.claim_batch),
            claimers: env_usize("CLAIMERS", d.claimers),
            finish_writers: env_usize("FINISH_WRITERS", d.finish_writers),
        };
        let report = run(&db, &opts).await?;
        println!("{}", serde_json::to_string(&report)?);
        db.close().await;
    }
    Ok(())
}
