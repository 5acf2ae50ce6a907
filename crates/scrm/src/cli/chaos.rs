//! `scrm chaos`: the chaos harness ([`crate::chaos`]) from the command line. Exits non-zero
//! when a message was lost or sent twice, a result is not final or a job is stuck.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::chaos::{self, ChaosArgs};
use crate::config::Config;

#[derive(Args)]
pub struct ChaosCmd {
    /// A scratch PostgreSQL or MySQL database (default: DATABASE_URL). Its default tenant's
    /// data is replaced.
    #[arg(long)]
    database_url: Option<String>,
    /// Redis for the processes (default: REDIS_URL / REDIS_HOST; `none` runs without).
    #[arg(long)]
    redis_url: Option<String>,
    /// Worker processes (`scrm serve --role worker`).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// API processes (`scrm serve --role api`).
    #[arg(long, default_value_t = 2)]
    apis: usize,
    /// Customers in the simulated company; each one with an owner gets the mass send.
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    #[arg(long, default_value_t = 8)]
    staff: u32,
    /// SOP executions (send a message, then tag), on the first customers.
    #[arg(long, default_value_t = 2_000)]
    sop: usize,
    /// Worker processes SIGKILLed and restarted during the run.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Share of WeCom calls failing (busy, HTTP 500, connection dropped after the call, token
    /// expired).
    #[arg(long, default_value_t = 0.10)]
    fault_rate: f64,
    /// Do not cut the database connections mid-run.
    #[arg(long)]
    no_db_cut: bool,
    /// SCRM_JOB_LEASE_SECS of the processes.
    #[arg(long, default_value_t = 5)]
    lease_secs: u64,
    /// SCRM_WECOM_RETRY_SECS of the processes (delays before a failed send is retried).
    #[arg(long, default_value = "5,60,300,900")]
    retry_secs: String,
    #[arg(long, default_value_t = 32)]
    worker_concurrency: usize,
    #[arg(long, default_value_t = 8)]
    db_connections: u32,
    /// Where the processes' logs go (default: ./chaos-logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Seconds of sustained API load (customer search, task creation, signed callbacks) while
    /// the sends run; 0: none.
    #[arg(long, default_value_t = 0)]
    load_secs: u64,
    /// Concurrent clients of the load and of the callback storm.
    #[arg(long, default_value_t = 64)]
    load_concurrency: usize,
    /// Distinct events in the callback storm after the sends (with duplicates and retries,
    /// while workers are killed); 0: none.
    #[arg(long, default_value_t = 0)]
    callbacks: usize,
}

pub async fn run(a: ChaosCmd, config: Config) -> anyhow::Result<()> {
    let database_url = a
        .database_url
        .unwrap_or_else(|| config.database_url.expose().to_string());
    let redis_url = match a.redis_url.as_deref() {
        Some("none") => None,
        Some(u) => Some(u.to_string()),
        None => config.redis_url.as_ref().map(|u| u.expose().to_string()),
    };
    let log_dir = match a.log_dir {
        Some(d) => d,
        None => std::env::current_dir()?.join("chaos-logs"),
    };
    let args = ChaosArgs {
        exe: std::env::current_exe().context("the scrm binary")?,
        database_url,
        redis_url,
        workers: a.workers,
        apis: a.apis,
        customers: a.customers,
        staff: a.staff,
        sop: a.sop,
        kills: a.kills,
        fault_rate: a.fault_rate,
        cut_db: !a.no_db_cut,
        lease_secs: a.lease_secs,
        retry_secs: a.retry_secs,
        worker_concurrency: a.worker_concurrency,
        db_connections: a.db_connections,
        log_dir,
        seed: a.seed,
        timeout: Duration::from_secs(a.timeout_secs),
        load_secs: a.load_secs,
        load_concurrency: a.load_concurrency,
        callbacks: a.callbacks,
    };
    let report = chaos::run(args).await?;
    println!("{report}");
    println!("{}", serde_json::to_string(&report)?);
    let problems = report.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "chaos run failed: {}",
        problems.join("; ")
    );
    println!("ok: every intended message delivered exactly once, every result final, no job stuck");
    Ok(())
}
