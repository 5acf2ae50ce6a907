//! `scrm bench …`: the benchmarks whose figures BENCHMARKS.md reports, runnable by anyone.
//! Each runs against the database `--database-url` names (default: `DATABASE_URL`); use a
//! scratch database — they write and delete their own rows.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The job engine: enqueue and drain N no-op jobs, lateness of delayed jobs, memory while
    /// holding scheduled jobs.
    Jobs(JobsBench),
    /// Customer search at scale: generates a tenant of N customers, tags and tag relations,
    /// then measures the search API's queries under concurrency.
    Customers(CustomersBench),
    /// Operations at scale: one group send to N customers (time to every result final, WeCom
    /// calls, peak RSS) and N three-step SOP executions (steps/s, lateness), against the WeCom
    /// simulator started as a child process at a realistic latency.
    MassSend(MassSendBench),
    /// WeCom sync at scale: a full sync of N simulated customers under 10 % injected transient
    /// faults and a token that expires mid-run, checked against the simulator; then an
    /// incremental sync after --changed-pct % of the customers changed, which must write only
    /// those. Reports duration, WeCom calls, rows/s, peak RSS and the calls × latency /
    /// concurrency bound.
    Sync(SyncBench),
    /// The event relay: write N outbox events, then time the relay publishing them to each
    /// broker (confirmed), into a fresh exchange/queue and stream of its own.
    Relay(RelayBench),
}

#[derive(Args)]
pub struct RelayBench {
    /// Database to run on (default: DATABASE_URL / the configured database).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per relay round (SCRM_EVENTS_RELAY_BATCH).
    #[arg(long, default_value_t = 500)]
    batch: i64,
    /// RabbitMQ (`none` skips it).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// NATS with JetStream (`none` skips it).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

#[derive(Args)]
pub struct SyncBench {
    /// Database to run on (default: DATABASE_URL / the configured database).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    customers: u32,
    /// No injected faults (default: 10 % of WeCom calls fail transiently).
    #[arg(long)]
    no_faults: bool,
    /// WeCom latency added by the simulator to every call, uniform between min and max.
    #[arg(long, default_value_t = 5)]
    latency_min_ms: u64,
    #[arg(long, default_value_t = 15)]
    latency_max_ms: u64,
    /// Customers changed before the incremental sync, in percent.
    #[arg(long, default_value_t = 1.0)]
    changed_pct: f64,
    /// Lifetime of the simulator's access tokens in seconds (short: they expire mid-run).
    #[arg(long, default_value_t = 20)]
    token_lifetime_secs: u64,
    /// Call the simulator at this rate per API, as scrm calls WeCom (its default is 40,
    /// SCRM_WECOM_CALLS_PER_SECOND; WeCom allows 166 = 10,000/min); default: unlimited.
    #[arg(long)]
    calls_per_second: Option<f64>,
    /// Calls that may go out back to back under --calls-per-second (SCRM_WECOM_CALL_BURST).
    #[arg(long, default_value_t = 200)]
    call_burst: u32,
}

#[derive(Args)]
pub struct MassSendBench {
    /// Database to run on (default: DATABASE_URL / the configured database).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    customers: u32,
    /// Staff in the simulated company (senders: recipients per sender ≈ customers / staff).
    #[arg(long, default_value_t = 8)]
    staff: u32,
    /// WeCom latency added by the simulator to every call, uniform between min and max.
    #[arg(long, default_value_t = 30)]
    latency_min_ms: u64,
    #[arg(long, default_value_t = 100)]
    latency_max_ms: u64,
    /// SOP executions of three steps (0 skips).
    #[arg(long, default_value_t = 100_000)]
    sop: i64,
    /// Customers entering a five-step workflow (send, wait 1 min, condition, tag, remind; 0 skips).
    #[arg(long, default_value_t = 0)]
    workflow: i64,
    /// Job engine slots (SQLite has one writer: 32 suits it better).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Database connections.
    #[arg(long, default_value_t = 32)]
    db_connections: u32,
    /// Give up on a part after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

#[derive(Args)]
pub struct JobsBench {
    /// Database to run on (default: DATABASE_URL / the configured database).
    #[arg(long)]
    database_url: Option<String>,
    /// Jobs to enqueue and drain (0 skips).
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Delayed jobs due over `--spread-secs` (0 skips).
    #[arg(long, default_value_t = 100_000)]
    delayed: usize,
    #[arg(long, default_value_t = 10)]
    spread_secs: u64,
    /// Scheduled jobs to hold while measuring memory (0 skips).
    #[arg(long, default_value_t = 0)]
    hold: usize,
    /// Engine slots (default: 512 on PostgreSQL, 256 elsewhere).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Jobs per claim (default: 256 on PostgreSQL, 128 elsewhere).
    #[arg(long)]
    claim_batch: Option<usize>,
}

#[derive(Args)]
pub struct CustomersBench {
    /// Database to run on (default: DATABASE_URL / the configured database).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    customers: i64,
    #[arg(long, default_value_t = 200)]
    tags: i64,
    #[arg(long, default_value_t = 3_000_000)]
    relations: i64,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 800)]
    requests: usize,
}

pub async fn run(cmd: BenchCommand, config: crate::config::Config) -> anyhow::Result<()> {
    let configured_url = config.database_url.expose().to_string();
    let configured_url = configured_url.as_str();
    match cmd {
        BenchCommand::Jobs(a) => {
            let url = a.database_url.unwrap_or_else(|| configured_url.to_string());
            let db = scrm_db::Db::connect(
                &url,
                &scrm_db::PoolSettings {
                    max_connections: 16,
                    ..Default::default()
                },
            )
            .await?;
            db.migrate().await?;
            let d = scrm_jobs::bench::BenchOptions::for_backend(db.backend());
            let opts = scrm_jobs::bench::BenchOptions {
                throughput_n: a.n,
                delayed_n: a.delayed,
                spread: std::time::Duration::from_secs(a.spread_secs),
                hold_n: a.hold,
                concurrency: a.concurrency.unwrap_or(d.concurrency),
                claim_batch: a.claim_batch.unwrap_or(d.claim_batch),
                ..d
            };
            let report = scrm_jobs::bench::run(&db, &opts).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            db.close().await;
        }
        BenchCommand::Customers(a) => {
            let args = crate::customers::bench::BenchArgs {
                database_url: a.database_url.unwrap_or_else(|| configured_url.to_string()),
                customers: a.customers,
                tags: a.tags,
                relations: a.relations,
                concurrency: a.concurrency,
                requests: a.requests,
                ..Default::default()
            };
            let report = crate::customers::bench::run(args).await?;
            println!("{report}");
        }
        BenchCommand::MassSend(a) => {
            let args = crate::operation::bench::BenchArgs {
                database_url: a.database_url.unwrap_or_else(|| configured_url.to_string()),
                customers: a.customers,
                staff: a.staff,
                latency_min_ms: a.latency_min_ms,
                latency_max_ms: a.latency_max_ms,
                sop: a.sop,
                workflow: a.workflow,
                concurrency: a.concurrency,
                db_connections: a.db_connections,
                timeout: std::time::Duration::from_secs(a.timeout_secs),
                ..Default::default()
            };
            let report = crate::operation::bench::run(config, args).await?;
            println!("{report}");
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::Relay(a) => {
            let some = |u: String| (u != "none").then_some(u);
            let args = crate::events::relay::bench::BenchArgs {
                database_url: a.database_url.unwrap_or_else(|| configured_url.to_string()),
                events: a.events,
                batch: a.batch,
                amqp_url: some(a.amqp_url),
                nats_url: some(a.nats_url),
            };
            for f in crate::events::relay::bench::run(args).await? {
                println!("{}", serde_json::to_string(&f)?);
            }
        }
        BenchCommand::Sync(a) => {
            let args = crate::integration::bench::BenchArgs {
                database_url: a.database_url.unwrap_or_else(|| configured_url.to_string()),
                customers: a.customers,
                faults: !a.no_faults,
                latency_min_ms: a.latency_min_ms,
                latency_max_ms: a.latency_max_ms,
                changed_pct: a.changed_pct,
                token_lifetime_secs: a.token_lifetime_secs,
                rate: a
                    .calls_per_second
                    .map(|r| scrm_wecom::client::Rate::new(r, a.call_burst)),
            };
            let report = crate::integration::bench::run(config, args).await?;
            println!("{report}");
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
