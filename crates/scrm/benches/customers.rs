//! `cargo bench -p scrm --bench customers`: the customer search benchmark
//! ([`scrm::customers::bench`]) until `scrm bench customers` is wired into the CLI.
//! Settings from the environment: `SCRM_BENCH_DATABASE_URL` (required), `SCRM_BENCH_CUSTOMERS`,
//! `SCRM_BENCH_TAGS`, `SCRM_BENCH_RELATIONS`, `SCRM_BENCH_CONCURRENCY`, `SCRM_BENCH_REQUESTS`.

use scrm::customers::bench::{BenchArgs, run};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("SCRM_BENCH_DATABASE_URL") else {
        eprintln!("set SCRM_BENCH_DATABASE_URL to run the customer benchmark; skipped");
        return Ok(());
    };
    let d = BenchArgs::default();
    let args = BenchArgs {
        database_url: url,
        customers: env_or("SCRM_BENCH_CUSTOMERS", d.customers),
        tags: env_or("SCRM_BENCH_TAGS", d.tags),
        relations: env_or("SCRM_BENCH_RELATIONS", d.relations),
        concurrency: env_or("SCRM_BENCH_CONCURRENCY", d.concurrency),
        requests: env_or("SCRM_BENCH_REQUESTS", d.requests),
        tenant_id: d.tenant_id,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(run(args))?;
    println!("{report}");
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
