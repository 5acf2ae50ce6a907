//! The chaos harness behind `scrm chaos` and the scale-out tests (`tests/scale.rs`): scrm as
//! it is deployed — several `scrm serve --role api` and `--role worker` processes on one
//! PostgreSQL or MySQL database, with Redis — against the WeCom simulator, and then proof that
//! every intended message was delivered exactly once.
//!
//! A run:
//! 1. starts the simulator in this process (a company generated from a seed), migrates the
//!    database and writes the same company into the default tenant (staff, customers with their
//!    owners, a tag on everyone, a tag WeCom knows);
//! 2. starts the API and worker processes (`scrm serve --role …` of the binary `exe`, each on a
//!    free loopback port, logs in `log_dir`) and waits until each answers `/health`;
//! 3. through the first API process: logs in, starts a mass send to everyone
//!    (`POST /v1/workbench/mass-send`, each customer's owner sends); through the last: creates
//!    an SOP template (send a message, then tag) and starts it for the first `sop` customers
//!    (`POST /api/sop/execute`);
//! 4. while the work runs — when the simulator's delivery log passes randomly drawn fractions of
//!    the intended messages — SIGKILLs a random worker process and starts it again after a
//!    random pause (`kills` times), and cuts every database connection of the scrm processes
//!    once (`pg_terminate_backend` / `KILL`); the simulator injects `fault_rate` faults into
//!    WeCom calls (system busy, HTTP 500, connections dropped after the call took effect,
//!    tokens expired early);
//! 5. waits until the task and every SOP step are final and no job of theirs is pending or
//!    running, reading the task through the *other* API process;
//! 6. checks the simulator's delivery log against the database: each intended message exactly
//!    once (duplicates, losses, unexpected deliveries), every result final and agreeing with
//!    the log, no job dead or stuck.
//!
//! Without kills, faults and the cut it is the scale-out test: the same deployment, the same
//! checks.
//!
//! Two optional phases: sustained API load while the sends run ([`load`], `load_secs` > 0) and,
//! after the checks, a burst of WeCom callbacks with duplicates while workers are killed
//! ([`storm`], `callbacks` > 0), each event checked to be processed exactly once.

pub mod load;
pub mod storm;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use scrm_db::{Backend, Db, PoolSettings, query};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::operation::mass::{Settings, status};
use crate::startup::DEFAULT_TENANT;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosArgs {
    /// The `scrm` binary to start the processes from.
    pub exe: PathBuf,
    /// A scratch PostgreSQL or MySQL database (its tenant `default` is overwritten).
    pub database_url: String,
    /// Redis shared by the processes (token cache, rate limits, wake-ups); `None` runs without.
    pub redis_url: Option<String>,
    pub workers: usize,
    pub apis: usize,
    /// Customers in the simulated company (every one with an owner gets the mass send).
    pub customers: u32,
    pub staff: u32,
    /// SOP executions (the first customers with an owner; 0 skips the SOP part).
    pub sop: usize,
    /// Worker processes SIGKILLed (and restarted) during the run.
    pub kills: usize,
    /// Share of WeCom calls that fail (spread over busy, HTTP 500, dropped connection, expired
    /// token).
    pub fault_rate: f64,
    /// Cut every database connection of the scrm processes once, mid-run.
    pub cut_db: bool,
    /// `SCRM_JOB_LEASE_SECS` of the processes: how soon a killed worker's jobs are taken over.
    pub lease_secs: u64,
    /// `SCRM_WECOM_RETRY_SECS` of the processes: the delays before a failed send is retried.
    pub retry_secs: String,
    /// `SCRM_WORKER_CONCURRENCY` and `SCRM_DB_MAX_CONNECTIONS` of each process.
    pub worker_concurrency: usize,
    pub db_connections: u32,
    /// Where the processes' logs go (one file per process, restarts appended).
    pub log_dir: PathBuf,
    /// Seed of the simulated company.
    pub seed: u64,
    /// Give up after this long.
    pub timeout: Duration,
    /// Seconds of sustained API load while the sends run (0: none), and its clients.
    pub load_secs: u64,
    pub load_concurrency: usize,
    /// Distinct events in the callback storm after the checks (0: none).
    pub callbacks: usize,
}

impl ChaosArgs {
    /// A run at `customers` customers with the harness's defaults: 3 workers, 2 API processes,
    /// an SOP for a tenth of the customers, no kills, faults or cut (the scale-out case).
    pub fn new(exe: PathBuf, database_url: String, customers: u32, log_dir: PathBuf) -> Self {
        ChaosArgs {
            exe,
            database_url,
            redis_url: None,
            workers: 3,
            apis: 2,
            customers,
            staff: 8,
            sop: (customers / 10) as usize,
            kills: 0,
            fault_rate: 0.0,
            cut_db: false,
            lease_secs: 5,
            retry_secs: "5,60,300,900".into(),
            worker_concurrency: 32,
            db_connections: 8,
            log_dir,
            seed: 42,
            timeout: Duration::from_secs(600),
            load_secs: 0,
            load_concurrency: 64,
            callbacks: 0,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub backend: String,
    pub workers: usize,
    pub apis: usize,
    pub customers: u32,
    /// Messages that should reach a customer: the mass send's recipients plus the SOP sends.
    pub intended_messages: usize,
    pub mass_recipients: usize,
    pub sop_executions: usize,
    /// Deliveries of this run's messages in the simulator's log.
    pub delivered: usize,
    /// Extra copies of an intended message (each copy beyond the first).
    pub duplicates: usize,
    /// Intended messages never delivered.
    pub losses: usize,
    /// This run's messages delivered to someone they were not meant for.
    pub unexpected: usize,
    /// Results that disagree with the delivery log (SUCCESS but not delivered, or delivered but
    /// not SUCCESS).
    pub result_mismatches: usize,
    pub task_status: String,
    pub results_success: i64,
    pub results_failed: i64,
    pub results_open: i64,
    pub sop_steps_done: i64,
    pub sop_steps_failed: i64,
    pub sop_steps_open: i64,
    pub sop_executions_open: i64,
    /// Jobs of the send and the SOP still pending, running or paused at the end.
    pub stuck_jobs: i64,
    /// Dead jobs of any kind.
    pub dead_jobs: i64,
    /// Jobs that needed more than one attempt, and attempts ended by an expired lease (a
    /// killed worker's jobs taken over).
    pub retried_jobs: i64,
    pub lease_takeovers: i64,
    /// Worker processes that ran at least one of the run's jobs.
    pub workers_that_ran_jobs: i64,
    pub kills: usize,
    /// Database connections cut (0 when no cut was asked for).
    pub db_connections_cut: usize,
    pub fault_rate: f64,
    /// WeCom API calls by path during the run.
    pub wecom_calls: std::collections::BTreeMap<String, u64>,
    /// From the first create to everything final.
    pub seconds: f64,
    /// Where the processes' logs are.
    pub log_dir: PathBuf,
    /// The load phase's figures, when there was one.
    pub load: Option<load::LoadReport>,
    /// The callback storm's figures, when there was one.
    pub storm: Option<storm::StormReport>,
    /// The secrets the run handled — admin password, master key, WeCom app secret, the API
    /// session token, every WeCom access_token issued — for checking the logs; never printed.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

impl Report {
    /// What is wrong, if anything (empty: every intended message exactly once, all final).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                p.push(what);
            }
        };
        check(
            self.duplicates > 0,
            format!("{} duplicate deliveries", self.duplicates),
        );
        check(self.losses > 0, format!("{} messages lost", self.losses));
        check(
            self.unexpected > 0,
            format!("{} unexpected deliveries", self.unexpected),
        );
        check(
            self.result_mismatches > 0,
            format!(
                "{} results disagree with the delivery log",
                self.result_mismatches
            ),
        );
        check(
            !status::is_final(&self.task_status),
            format!("task not final: {}", self.task_status),
        );
        check(
            self.results_open > 0,
            format!("{} results not final", self.results_open),
        );
        check(
            self.sop_steps_open > 0 || self.sop_executions_open > 0,
            format!(
                "{} SOP steps / {} executions not final",
                self.sop_steps_open, self.sop_executions_open
            ),
        );
        check(
            self.stuck_jobs > 0,
            format!("{} jobs stuck", self.stuck_jobs),
        );
        check(self.dead_jobs > 0, format!("{} dead jobs", self.dead_jobs));
        if let Some(l) = &self.load {
            check(
                l.server_errors > 0 || l.transport_errors > 0,
                format!(
                    "load: {} answers 5xx, {} requests without answer",
                    l.server_errors, l.transport_errors
                ),
            );
        }
        if let Some(st) = &self.storm {
            p.extend(st.problems());
        }
        p
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} API + {} worker processes, {} customers; {:.1} s from create to all final",
            self.backend, self.apis, self.workers, self.customers, self.seconds
        )?;
        writeln!(
            f,
            "messages: {} intended ({} mass send, {} SOP), {} delivered; duplicates {}, losses {}, unexpected {}",
            self.intended_messages,
            self.mass_recipients,
            self.sop_executions,
            self.delivered,
            self.duplicates,
            self.losses,
            self.unexpected
        )?;
        writeln!(
            f,
            "chaos: {} workers SIGKILLed and restarted, {} database connections cut, {:.0} % WeCom faults",
            self.kills,
            self.db_connections_cut,
            self.fault_rate * 100.0
        )?;
        writeln!(
            f,
            "task {}: {} success, {} failed, {} open; SOP steps {} done, {} failed, {} open",
            self.task_status,
            self.results_success,
            self.results_failed,
            self.results_open,
            self.sop_steps_done,
            self.sop_steps_failed,
            self.sop_steps_open
        )?;
        writeln!(
            f,
            "jobs: {} retried, {} lease takeovers, {} stuck, {} dead; {} worker processes ran jobs; results vs log mismatches {}",
            self.retried_jobs,
            self.lease_takeovers,
            self.stuck_jobs,
            self.dead_jobs,
            self.workers_that_ran_jobs,
            self.result_mismatches
        )?;
        writeln!(f, "WeCom calls: {:?}", self.wecom_calls)?;
        if let Some(l) = &self.load {
            write!(f, "{l}")?;
        }
        if let Some(st) = &self.storm {
            write!(f, "{st}")?;
        }
        Ok(())
    }
}

/// A free loopback port (bound and released; the process binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One `scrm serve` process of the deployment.
struct Proc {
    role: &'static str,
    index: usize,
    port: u16,
    child: Option<Child>,
}

/// The processes, started from one binary with one environment.
struct Cluster {
    exe: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    procs: Vec<Proc>,
    http: reqwest::Client,
}

impl Cluster {
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let port = free_port()?;
        let p = &mut self.procs[i];
        let log_path = self.dir.join(format!("{}-{}.log", p.role, p.index));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(&self.exe)
            .args(["serve", "--role", p.role, "--port", &port.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        p.port = port;
        p.child = Some(child);
        Ok(())
    }

    async fn wait_healthy(&mut self, i: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let url = format!("http://127.0.0.1:{}/health", self.procs[i].port);
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            let p = &mut self.procs[i];
            if let Some(child) = p.child.as_mut()
                && let Some(exit) = child.try_wait()?
            {
                bail!(
                    "{}-{} exited at start ({exit}); see {}",
                    p.role,
                    p.index,
                    self.dir
                        .join(format!("{}-{}.log", p.role, p.index))
                        .display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}-{} did not answer /health in {within:?}",
                p.role,
                p.index
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start process `i` and wait until it answers; a second try on a fresh port if the first
    /// did not come up (the port picked may have been taken meanwhile).
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        if let Err(e) = self.wait_healthy(i, Duration::from_secs(120)).await {
            eprintln!("chaos: {e}; trying once more");
            self.kill(i).await;
            self.spawn(i)?;
            self.wait_healthy(i, Duration::from_secs(120)).await?;
        }
        Ok(())
    }

    /// SIGKILL, as a crash or the OOM killer would end it.
    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    fn port_of(&self, role: &str, index: usize) -> u16 {
        self.procs
            .iter()
            .find(|p| p.role == role && p.index == index)
            .map_or(0, |p| p.port)
    }

    async fn stop_all(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i).await;
        }
    }
}

/// A logged-in client of one API process.
struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        port: u16,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(&self.token);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let code = r.status();
        let v: Value = r
            .json()
            .await
            .with_context(|| format!("{method} {path}: body"))?;
        anyhow::ensure!(code.is_success(), "{method} {path}: {code} {v}");
        Ok(v["data"].clone())
    }

    /// A GET tried again on failure (the database may be cut under it).
    async fn get(&self, port: u16, path: &str) -> anyhow::Result<Value> {
        let mut last = None;
        for _ in 0..20 {
            match self.call(reqwest::Method::GET, port, path, None).await {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("GET {path}")))
    }
}

/// A harness-side read tried again on failure (the database may be cut under it).
async fn retry<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = scrm_db::DbResult<T>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!("chaos: {what}: {e}; again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{what}: {e}")),
        }
    }
}

/// Cut every connection to this database except the harness's own.
async fn cut_connections(db: &Db) -> anyhow::Result<usize> {
    match db.backend() {
        Backend::Postgres => {
            let cut: Vec<(bool,)> = db
                .fetch_all(query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                ))
                .await?;
            Ok(cut.into_iter().filter(|c| c.0).count())
        }
        Backend::MySql => {
            let ids: Vec<(i64,)> = db
                .fetch_all(query(
                    "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
                ))
                .await?;
            let mut n = 0;
            for (id,) in ids {
                // A connection that closed meanwhile is fine.
                if db.execute(query(format!("KILL {id}"))).await.is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        }
        Backend::Sqlite => Ok(0),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill(&mut b[..]);
    hex::encode(b)
}

/// Run the harness.
pub async fn run(args: ChaosArgs) -> anyhow::Result<Report> {
    let backend = Backend::from_url(&args.database_url).context("DATABASE_URL: unknown scheme")?;
    anyhow::ensure!(
        backend != Backend::Sqlite,
        "the chaos harness runs several processes on one database server: give a PostgreSQL or MySQL URL"
    );
    anyhow::ensure!(
        args.workers >= 1 && args.apis >= 1,
        "at least one worker and one API process"
    );
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let run_id = random_hex(4);

    // The simulator, with WeCom's limits off (they would measure WeCom, not scrm).
    let mut sim_config = scrm_wecom_sim::SimConfig {
        listen: "127.0.0.1:0".into(),
        seed: args.seed,
        ..Default::default()
    };
    sim_config.size.customers = args.customers;
    sim_config.size.staff = args.staff;
    sim_config.limits.per_api_per_minute = 0;
    sim_config.limits.per_api_per_hour = 0;
    sim_config.limits.app_msgs_per_member_per_minute = 0;
    // A corp of its own: runs sharing a Redis do not share tokens or limits.
    sim_config.creds.corp_id = format!("wwchaos{run_id}");
    let creds = sim_config.creds.clone();
    let sim = scrm_wecom_sim::Simulator::start(sim_config)
        .await
        .context("starting the WeCom simulator")?;

    // The database: migrated once here (not by five processes at once), the company written.
    let db = Db::connect(
        &args.database_url,
        &PoolSettings {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await
    .context("connecting to the database")?;
    db.migrate().await?;
    let tenant = crate::auth::users::ensure_tenant(&db, DEFAULT_TENANT).await?;
    let seeded =
        crate::operation::bench::seed(&db, tenant, args.seed, args.customers, args.staff).await?;
    for (key, v) in [
        ("mass.first_poll_ms", 500),
        ("mass.poll_interval_ms", 1_000),
    ] {
        Settings::set(&db, tenant, key, v).await?;
    }
    let customers: Vec<(i64, String, Option<i64>)> = db
        .fetch_all(
            query("SELECT id, external_userid, follow_user_id FROM customer WHERE tenant_id = ? ORDER BY id")
                .bind(tenant),
        )
        .await?;
    let mass_intended: HashSet<String> = customers
        .iter()
        .filter(|c| c.2.is_some())
        .map(|c| c.1.clone())
        .collect();
    let sop_targets: Vec<(i64, String)> = customers
        .iter()
        .filter(|c| c.2.is_some())
        .take(args.sop)
        .map(|c| (c.0, c.1.clone()))
        .collect();
    let sop_intended: HashSet<String> = sop_targets.iter().map(|c| c.1.clone()).collect();

    // The processes.
    let password = format!("chaos-{}", random_hex(8));
    let master_key = random_hex(32);
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), args.database_url.clone()),
        ("SCRM_ADMIN_PASSWORD".into(), password.clone()),
        ("SCRM_MASTER_KEY".into(), master_key.clone()),
        ("WEWORK_CORP_ID".into(), creds.corp_id.clone()),
        ("WEWORK_CORP_SECRET".into(), creds.app_secret.clone()),
        ("WEWORK_AGENT_ID".into(), creds.agent_id.to_string()),
        ("WEWORK_API_BASE".into(), sim.base_url()),
        ("WEWORK_TOKEN".into(), sim.config().callback.token.clone()),
        (
            "WEWORK_ENCODING_AES_KEY".into(),
            sim.config().callback.encoding_aes_key.clone(),
        ),
        ("WEWORK_SYNC_INCREMENTAL_CRON".into(), "off".into()),
        ("WEWORK_SYNC_FULL_CRON".into(), "off".into()),
        ("SCRM_JOB_LEASE_SECS".into(), args.lease_secs.to_string()),
        ("SCRM_WECOM_RETRY_SECS".into(), args.retry_secs.clone()),
        (
            "SCRM_WORKER_CONCURRENCY".into(),
            args.worker_concurrency.to_string(),
        ),
        (
            "SCRM_DB_MAX_CONNECTIONS".into(),
            args.db_connections.to_string(),
        ),
        ("SCRM_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info,sqlx=warn".into()),
    ];
    if let Some(r) = &args.redis_url {
        env.push(("REDIS_URL".into(), r.clone()));
    }
    let mut cluster = Cluster {
        exe: args.exe.clone(),
        env,
        dir: args.log_dir.clone(),
        procs: Vec::new(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    };
    for i in 0..args.apis {
        cluster.procs.push(Proc {
            role: "api",
            index: i + 1,
            port: 0,
            child: None,
        });
    }
    for i in 0..args.workers {
        cluster.procs.push(Proc {
            role: "worker",
            index: i + 1,
            port: 0,
            child: None,
        });
    }
    // The first process creates the admin and the WeCom configuration; the rest find them.
    cluster.start(0).await?;
    for i in 1..cluster.procs.len() {
        cluster.spawn(i)?;
    }
    for i in 1..cluster.procs.len() {
        if cluster
            .wait_healthy(i, Duration::from_secs(120))
            .await
            .is_err()
        {
            cluster.kill(i).await;
            cluster.start(i).await?;
        }
    }
    let result = drive(
        &args,
        &run_id,
        &mut cluster,
        &sim,
        &db,
        tenant,
        &seeded,
        [
            password.as_str(),
            master_key.as_str(),
            creds.app_secret.as_str(),
        ],
        (&mass_intended, &sop_targets, &sop_intended),
    )
    .await;
    cluster.stop_all().await;
    sim.shutdown().await;
    db.close().await;
    result
}

type Intended<'a> = (
    &'a HashSet<String>,
    &'a [(i64, String)],
    &'a HashSet<String>,
);

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &ChaosArgs,
    run_id: &str,
    cluster: &mut Cluster,
    sim: &scrm_wecom_sim::SimHandle,
    db: &Db,
    tenant: i64,
    seeded: &crate::operation::bench::Seeded,
    [password, master_key, app_secret]: [&str; 3],
    (mass_intended, sop_targets, sop_intended): Intended<'_>,
) -> anyhow::Result<Report> {
    let api_a = cluster.port_of("api", 1);
    let api_b = cluster.port_of("api", args.apis);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let login: Value = http
        .post(format!("http://127.0.0.1:{api_a}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["data"]["token"]
        .as_str()
        .with_context(|| format!("login: {login}"))?
        .to_string();
    let api = Api { http, token };

    // For the load and the storm: the callback configuration, customers with their owner.
    let sim_config = sim.config();
    let corp_id = sim_config.creds.corp_id.clone();
    let crypto = scrm_wecom::crypto::CallbackCrypto::new(
        sim_config.callback.token.as_str(),
        &sim_config.callback.encoding_aes_key,
        corp_id.clone(),
    )
    .context("the simulator's callback key")?;
    let config_id = retry("WeCom configuration", || {
        db.fetch_i64(
            query("SELECT COALESCE(MAX(id), 0) FROM wework_config WHERE tenant_id = ?")
                .bind(tenant),
        )
    })
    .await?;
    let owned: Vec<(i64, String, String, String)> = if args.load_secs > 0 || args.callbacks > 0 {
        retry("customers with owners", || {
            db.fetch_all(
                query("SELECT c.id, c.external_userid, s.userid, COALESCE(c.name, '') FROM customer c JOIN staff s ON s.id = c.follow_user_id WHERE c.tenant_id = ? ORDER BY c.id")
                    .bind(tenant),
            )
        })
        .await?
    } else {
        Vec::new()
    };
    anyhow::ensure!(
        (args.load_secs == 0 && args.callbacks == 0) || (config_id > 0 && !owned.is_empty()),
        "the load and the storm need the WeCom configuration and customers with an owner"
    );

    let calls_before = sim.call_counts();
    let f = args.fault_rate;
    sim.update_config(|c| {
        c.faults.busy = f * 0.3;
        c.faults.http_500 = f * 0.3;
        c.faults.drop_connection = f * 0.3;
        c.faults.token_expired = f * 0.1;
    });

    let mass_text = format!("chaos-mass-{run_id}: 双十一大促，全场五折");
    let sop_text = format!("chaos-sop-{run_id}: 欢迎！这是您的专属顾问。");
    let intended = mass_intended.len() + sop_targets.len();
    let started = Instant::now();
    let task = api
        .call(
            reqwest::Method::POST,
            api_a,
            "/v1/workbench/mass-send",
            Some(json!({
                "taskName": format!("chaos {run_id}"),
                "target": {"tagIds": [seeded.all_tag]},
                "messageContent": {"type": "TEXT", "data": {"text": mass_text}},
            })),
        )
        .await?;
    let task_id = task["groupSendTaskId"]
        .as_i64()
        .with_context(|| format!("mass send: {task}"))?;
    if !sop_targets.is_empty() {
        let template = api
            .call(
                reqwest::Method::POST,
                api_b,
                "/api/sop/template",
                Some(json!({
                    "templateName": format!("chaos {run_id}"),
                    "templateType": 1,
                    "triggerType": 4,
                    "steps": [
                        {"stepName": "welcome", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": sop_text}},
                        {"stepName": "tag", "stepType": 2, "delayTime": 0, "delayUnit": "minute", "actionContent": {"tagIds": [seeded.wecom_tag]}},
                    ],
                })),
            )
            .await?;
        let tid = template["templateId"]
            .as_i64()
            .with_context(|| format!("SOP template: {template}"))?;
        for chunk in sop_targets.chunks(5_000) {
            let ids: Vec<i64> = chunk.iter().map(|c| c.0).collect();
            let r = api
                .call(
                    reqwest::Method::POST,
                    api_b,
                    "/api/sop/execute",
                    Some(json!({"templateId": tid, "targetType": 1, "targetIds": ids})),
                )
                .await?;
            let n = r["executionIds"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                n == chunk.len(),
                "SOP execute started {n} of {}: {r}",
                chunk.len()
            );
        }
    }

    // Sustained load on the API processes while the workers send.
    let mut load_phase = (args.load_secs > 0).then(|| {
        let target = std::sync::Arc::new(load::Target {
            ports: (1..=args.apis).map(|i| cluster.port_of("api", i)).collect(),
            token: api.token.clone(),
            crypto: crypto.clone(),
            corp_id: corp_id.clone(),
            config_id,
            customers: owned.clone(),
            run_id: run_id.to_string(),
        });
        let (c, d) = (args.load_concurrency, Duration::from_secs(args.load_secs));
        tokio::spawn(async move { load::run(target, c, d).await })
    });

    // Chaos: kills at random fractions of the intended messages delivered, the cut at another.
    let mut rng = rand::rng();
    let mut kill_at: Vec<f64> = (0..args.kills)
        .map(|_| rng.random_range(0.05..0.95))
        .collect();
    kill_at.sort_by(|a, b| b.total_cmp(a)); // popped from the end, smallest first
    let mut cut_at = args.cut_db.then(|| rng.random_range(0.2..0.8));
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let (mut kills, mut cut) = (0usize, 0usize);
    let workers: Vec<usize> = (args.apis..cluster.procs.len()).collect();
    let mut last_look = Instant::now() - Duration::from_secs(1);
    let mut last_kill = Instant::now() - Duration::from_secs(1);
    loop {
        let delivered = sim.delivery_count();
        let progress = delivered as f64 / intended.max(1) as f64;
        // At least a second apart (a burst of deliveries passes several fractions at once);
        // once everything is delivered the remaining kills come one a second (results are
        // still being polled and finished).
        let due_kill = last_kill.elapsed() >= Duration::from_secs(1)
            && kill_at
                .last()
                .is_some_and(|&at| at <= progress || progress >= 1.0);
        if due_kill {
            kill_at.pop();
            let live: Vec<usize> = workers
                .iter()
                .copied()
                .filter(|&i| cluster.procs[i].child.is_some())
                .collect();
            if let Some(&victim) = live.get(rng.random_range(0..live.len().max(1))) {
                cluster.kill(victim).await;
                kills += 1;
                last_kill = Instant::now();
                eprintln!(
                    "chaos: {:.1} s, {delivered}/{intended} delivered: SIGKILL worker-{}",
                    started.elapsed().as_secs_f64(),
                    cluster.procs[victim].index
                );
                let pause = Duration::from_millis(rng.random_range(100..1_500));
                restarts.push((Instant::now() + pause, victim));
            }
        }
        if cut_at.is_some_and(|at| at <= progress) {
            cut_at = None;
            cut = cut_connections(db).await?;
            eprintln!(
                "chaos: {:.1} s, {delivered}/{intended} delivered: cut {cut} database connections",
                started.elapsed().as_secs_f64()
            );
        }
        // A process that exited on its own (a port taken between picking and binding it, a
        // crash) is started again; the run's checks decide whether anything was harmed.
        for &w in &workers {
            let exited = match cluster.procs[w].child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => false,
            };
            if exited {
                eprintln!(
                    "chaos: worker-{} exited; starting it again",
                    cluster.procs[w].index
                );
                cluster.spawn(w)?;
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < restarts.len() {
            if restarts[i].0 <= now {
                let (_, victim) = restarts.swap_remove(i);
                cluster.spawn(victim)?;
            } else {
                i += 1;
            }
        }
        if kill_at.is_empty()
            && cut_at.is_none()
            && restarts.is_empty()
            && load_phase.as_ref().is_none_or(|h| h.is_finished())
            && last_look.elapsed() >= Duration::from_millis(500)
        {
            last_look = Instant::now();
            if finished(db, tenant, task_id).await? {
                break;
            }
        }
        anyhow::ensure!(
            started.elapsed() < args.timeout,
            "not finished after {:?}: {delivered}/{intended} delivered; see the logs in {}",
            args.timeout,
            args.log_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let load = match load_phase.take() {
        Some(h) => Some(h.await.context("the load phase")?),
        None => None,
    };
    sim.update_config(|c| c.faults = Default::default());
    // The task as a user sees it, through the other API process.
    let seen = api
        .get(
            api_b,
            &format!("/api/v1/workbench/group-send/tasks/{task_id}?resultSize=1"),
        )
        .await?;
    let task_status = seen["status"].as_str().unwrap_or_default().to_string();

    // The delivery log against what was intended and what the database says.
    let mass_marker = format!("chaos-mass-{run_id}");
    let sop_marker = format!("chaos-sop-{run_id}");
    let mut got: HashMap<(bool, String), usize> = HashMap::new();
    let mut delivered = 0;
    for d in sim.deliveries() {
        let text = d.content.to_string();
        let is_mass = text.contains(&mass_marker);
        if !is_mass && !text.contains(&sop_marker) {
            continue;
        }
        delivered += 1;
        *got.entry((is_mass, d.recipient.clone())).or_default() += 1;
    }
    let (mut duplicates, mut losses, mut unexpected) = (0, 0, 0);
    for (set, is_mass) in [(mass_intended, true), (sop_intended, false)] {
        for r in set {
            match got.get(&(is_mass, r.clone())).copied().unwrap_or(0) {
                0 => losses += 1,
                n => duplicates += n - 1,
            }
        }
    }
    for ((is_mass, r), n) in &got {
        let set = if *is_mass {
            mass_intended
        } else {
            sop_intended
        };
        if !set.contains(r) {
            unexpected += n;
        }
    }
    let results: Vec<(String, String)> = retry("results", || {
        db.fetch_all(
            query("SELECT COALESCE(external_userid, ''), status FROM t_group_send_result WHERE task_id = ?")
                .bind(task_id),
        )
    })
    .await?;
    let mut mismatches = 0;
    let (mut success, mut failed, mut open) = (0, 0, 0);
    for (ext, st) in &results {
        let was_delivered = got.contains_key(&(true, ext.clone()));
        match st.as_str() {
            "SUCCESS" => success += 1,
            "FAILED" => failed += 1,
            _ => open += 1,
        }
        if (st == "SUCCESS") != was_delivered {
            mismatches += 1;
        }
    }
    let steps: Vec<(String, i64, i64)> = retry("SOP steps", || {
        db.fetch_all(
            query(
                "SELECT c.external_userid, s.step_order, s.status FROM sop_execution_step s \
                 JOIN sop_execution e ON e.id = s.execution_id JOIN customer c ON c.id = e.target_id \
                 WHERE s.tenant_id = ?",
            )
            .bind(tenant),
        )
    })
    .await?;
    let (mut steps_done, mut steps_failed, mut steps_open) = (0, 0, 0);
    for (ext, order, st) in &steps {
        match *st {
            2 | 5 => steps_done += 1,
            3 | 4 => steps_failed += 1,
            _ => steps_open += 1,
        }
        if *order == 1 && (*st == 2) != got.contains_key(&(false, ext.clone())) {
            mismatches += 1;
        }
    }
    let count = |sql: &'static str| retry(sql, move || db.fetch_i64(query(sql).bind(tenant)));
    let sop_executions_open =
        count("SELECT COUNT(*) FROM sop_execution WHERE tenant_id = ? AND status IN (0, 2)")
            .await?;
    let stuck_jobs = retry("stuck jobs", || {
        db.fetch_i64(query("SELECT COUNT(*) FROM job WHERE state IN (0, 1, 5) AND (kind LIKE 'group_send.%' OR kind LIKE 'sop.%')"))
    })
    .await?;
    let dead_jobs = retry("dead jobs", || {
        db.fetch_i64(query("SELECT COUNT(*) FROM job WHERE state = 3"))
    })
    .await?;
    let retried_jobs =
        count("SELECT COUNT(*) FROM job WHERE tenant_id = ? AND attempts > 1").await?;
    let lease_takeovers = retry("takeovers", || {
        db.fetch_i64(query(
            "SELECT COUNT(*) FROM job_attempt WHERE outcome = 'lease_expired'",
        ))
    })
    .await?;
    let workers_that_ran_jobs = count(
        "SELECT COUNT(DISTINCT worker_id) FROM job WHERE tenant_id = ? AND worker_id IS NOT NULL",
    )
    .await?;
    // The callback storm, once the sends are checked (its deletions end relations).
    let storm = if args.callbacks > 0 {
        let start = owned.len().saturating_sub(args.callbacks);
        let relations: Vec<(String, String)> = owned[start..]
            .iter()
            .map(|c| (c.1.clone(), c.2.clone()))
            .collect();
        if relations.len() < args.callbacks {
            eprintln!(
                "chaos: only {} customers with an owner: the storm has {} events",
                relations.len(),
                relations.len()
            );
        }
        let r = storm::run(
            storm::Storm {
                db,
                tenant,
                crypto: &crypto,
                corp_id: &corp_id,
                config_id,
                relations: &relations,
                concurrency: args.load_concurrency,
                kills: args.kills.min(3),
                timeout: args.timeout,
            },
            cluster,
            &workers,
        )
        .await?;
        eprint!("{r}");
        Some(r)
    } else {
        None
    };
    let mut secrets = vec![
        password.to_string(),
        master_key.to_string(),
        app_secret.to_string(),
        api.token.clone(),
        sim_config.callback.token.clone(),
        sim_config.callback.encoding_aes_key.clone(),
    ];
    secrets.extend(sim.issued_tokens());
    let after = sim.call_counts();
    let wecom_calls = after
        .iter()
        .map(|(k, v)| (k.to_string(), v - calls_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    Ok(Report {
        backend: db.backend().to_string(),
        workers: args.workers,
        apis: args.apis,
        customers: args.customers,
        intended_messages: intended,
        mass_recipients: mass_intended.len(),
        sop_executions: sop_targets.len(),
        delivered,
        duplicates,
        losses,
        unexpected,
        result_mismatches: mismatches,
        task_status,
        results_success: success,
        results_failed: failed,
        results_open: open,
        sop_steps_done: steps_done,
        sop_steps_failed: steps_failed,
        sop_steps_open: steps_open,
        sop_executions_open,
        stuck_jobs,
        dead_jobs,
        retried_jobs,
        lease_takeovers,
        workers_that_ran_jobs,
        kills,
        db_connections_cut: cut,
        fault_rate: args.fault_rate,
        wecom_calls,
        seconds,
        log_dir: args.log_dir.clone(),
        load,
        storm,
        secrets,
    })
}

/// The task final, every SOP step final, no job of theirs waiting or running.
async fn finished(db: &Db, tenant: i64, task_id: i64) -> anyhow::Result<bool> {
    let st: String = retry("task status", || {
        db.fetch_one::<(String,)>(
            query("SELECT status FROM t_group_send_task WHERE id = ?").bind(task_id),
        )
    })
    .await?
    .0;
    if !status::is_final(&st) {
        return Ok(false);
    }
    let open = retry("open work", || {
        db.fetch_i64(
            query(
                "SELECT (SELECT COUNT(*) FROM sop_execution_step WHERE tenant_id = ? AND status IN (0, 1)) \
                 + (SELECT COUNT(*) FROM job WHERE state IN (0, 1, 5) AND (kind LIKE 'group_send.%' OR kind LIKE 'sop.%'))",
            )
            .bind(tenant),
        )
    })
    .await?;
    Ok(open == 0)
}
