//! `scrm bench mass-send`: one group send to 100,000 customers and 100,000 three-step SOP
//! executions, against the WeCom simulator at a realistic latency, through the same code the
//! API and the workers run.
//!
//! The simulator runs as a child process (`scrm sim …`), so the memory this process reports is
//! scrm's alone. The company is generated here from the same seed and sizes (the simulator's
//! generation is deterministic) and written into the database with multi-row INSERTs — staff,
//! customers (owner = first follow), one tag on every customer — rather than waiting for a sync.
//!
//! Mass send: a task targeting that tag is created as `POST /api/v1/workbench/group-send/tasks`
//! creates one (no fixed sender: each customer's owner sends), the workers run it, and the bench
//! waits until the task is final. Reported: the time from create to every result final, the
//! WeCom calls by API (from the simulator's counters) beside the minimum number of
//! add_msg_template calls (Σ over senders of ⌈recipients / 10,000⌉), the simulator's delivery
//! log (recipients, duplicates), and this process's peak RSS (`VmHWM`, reset after seeding).
//!
//! SOP: a template of three steps — send a message (add_msg_template) now, tag (mark_tag) after
//! one minute, remind the owner (message/send) after two — started for N customers in chunks of
//! 500 as `POST /api/sop/execute` starts them. Reported: the start rate, steps per second, and
//! lateness per step (job start − due, and step logged − due).

use std::time::{Duration, Instant};

use anyhow::Context;
use scrm_db::{Backend, Db, query};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::auth::permissions::Role;
use crate::config::{Config, Secret};
use crate::operation::mass::store::{NewTask, Target};
use crate::operation::mass::{BATCH_SIZE, Settings, status};
use crate::operation::sop::model::{Step, Template};
use crate::state::{AppState, now_ms};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub database_url: String,
    pub customers: u32,
    pub staff: u32,
    pub seed: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// SOP executions (0 skips the SOP part).
    pub sop: i64,
    /// Customers entering a five-step workflow (0 skips the workflow part).
    pub workflow: i64,
    /// Job engine slots.
    pub concurrency: usize,
    pub db_connections: u32,
    /// First look at a batch's results after it is submitted, and between looks.
    pub first_poll_ms: i64,
    pub poll_interval_ms: i64,
    /// Give up after this long per part.
    pub timeout: Duration,
    /// The tenant the generated data belongs to (kept apart from real tenants).
    pub tenant_id: i64,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            database_url: "sqlite://data/bench.db".into(),
            customers: 100_000,
            staff: 8,
            seed: 42,
            latency_min_ms: 30,
            latency_max_ms: 100,
            sop: 100_000,
            workflow: 0,
            concurrency: 256,
            db_connections: 32,
            first_poll_ms: 1_000,
            poll_interval_ms: 1_000,
            timeout: Duration::from_secs(1800),
            tenant_id: 900_002,
        }
    }
}

/// The mass send's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MassReport {
    pub status: String,
    pub targets: i64,
    pub success: i64,
    pub failed: i64,
    /// Senders with at least one recipient, and the recipients the batches hold.
    pub senders: i64,
    pub batched_recipients: i64,
    /// Σ over senders of ⌈recipients / 10,000⌉.
    pub min_add_msg_template_calls: i64,
    pub add_msg_template_calls: u64,
    pub wecom_calls: std::collections::BTreeMap<String, u64>,
    pub delivered_recipients: i64,
    pub duplicate_deliveries: i64,
    pub create_to_final_s: f64,
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
}

/// The SOP part's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SopReport {
    pub executions: i64,
    pub start_s: f64,
    pub steps: i64,
    pub steps_done: i64,
    pub steps_failed: i64,
    pub steps_skipped: i64,
    /// From the first step due to the last step logged.
    pub span_s: f64,
    pub steps_per_s: f64,
    /// The most steps logged in any 10 s window, per second.
    pub peak_steps_per_s: f64,
    /// Per step order: (p50, p99, max) of job start − due, ms.
    pub start_lateness_ms: Vec<(i64, i64, i64)>,
    /// Per step order: (p50, p99, max) of step logged − due, ms (includes the WeCom call).
    pub done_lateness_ms: Vec<(i64, i64, i64)>,
    pub wecom_calls: std::collections::BTreeMap<String, u64>,
    pub peak_rss_mib: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: String,
    pub customers: u32,
    pub staff: u32,
    pub latency_ms: (u64, u64),
    pub concurrency: usize,
    pub seeded_in_s: f64,
    pub mass: MassReport,
    pub sop: Option<SopReport>,
    /// Why the SOP part stopped, when it did (the mass-send figures stand).
    pub sop_error: Option<String>,
    pub workflow: Option<WorkflowReport>,
    pub workflow_error: Option<String>,
}

/// The workflow part's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowReport {
    pub runs: i64,
    pub start_s: f64,
    pub steps: i64,
    pub steps_done: i64,
    pub steps_failed: i64,
    pub runs_done: i64,
    pub runs_failed: i64,
    /// From the first step due to the last step logged.
    pub span_s: f64,
    pub steps_per_s: f64,
    pub peak_steps_per_s: f64,
    /// (p50, p99, max) of job start − due over every step job, ms.
    pub start_lateness_ms: (i64, i64, i64),
    /// Per step index: (p50, p99, max) of step logged − due, ms.
    pub done_lateness_ms: Vec<(i64, i64, i64)>,
    /// Rows inserted per step, by table (count after − before, over steps).
    pub rows_per_step: std::collections::BTreeMap<String, f64>,
    pub rows_per_step_total: f64,
    pub wecom_calls: std::collections::BTreeMap<String, u64>,
    pub peak_rss_mib: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.mass;
        writeln!(
            f,
            "backend {}: {} customers, {} staff, WeCom latency {}-{} ms, {} job slots; seeded in {:.1} s",
            self.backend,
            self.customers,
            self.staff,
            self.latency_ms.0,
            self.latency_ms.1,
            self.concurrency,
            self.seeded_in_s
        )?;
        writeln!(
            f,
            "mass send: {} in {:.1} s (create → every result final); {} targets, {} success, {} failed",
            m.status, m.create_to_final_s, m.targets, m.success, m.failed
        )?;
        writeln!(
            f,
            "  add_msg_template calls {} (minimum {} = Σ⌈recipients/10,000⌉ over {} senders, {} recipients)",
            m.add_msg_template_calls, m.min_add_msg_template_calls, m.senders, m.batched_recipients
        )?;
        writeln!(f, "  WeCom calls: {:?}", m.wecom_calls)?;
        writeln!(
            f,
            "  simulator delivery log: {} recipients, {} duplicates",
            m.delivered_recipients, m.duplicate_deliveries
        )?;
        writeln!(
            f,
            "  RSS before {:.1} MiB, peak {:.1} MiB",
            m.rss_before_mib, m.peak_rss_mib
        )?;
        if let Some(s) = &self.sop {
            writeln!(
                f,
                "SOP: {} executions started in {:.1} s ({:.0}/s); {} steps ({} done, {} failed, {} skipped) over {:.1} s",
                s.executions,
                s.start_s,
                s.executions as f64 / s.start_s.max(0.001),
                s.steps,
                s.steps_done,
                s.steps_failed,
                s.steps_skipped,
                s.span_s
            )?;
            writeln!(
                f,
                "  {:.0} steps/s overall, {:.0} steps/s peak (10 s window); peak RSS {:.1} MiB",
                s.steps_per_s, s.peak_steps_per_s, s.peak_rss_mib
            )?;
            for (i, ((a50, a99, amax), (b50, b99, bmax))) in s
                .start_lateness_ms
                .iter()
                .zip(&s.done_lateness_ms)
                .enumerate()
            {
                writeln!(
                    f,
                    "  step {}: lateness of the start p50/p99/max {a50}/{a99}/{amax} ms; logged − due {b50}/{b99}/{bmax} ms",
                    i + 1
                )?;
            }
            writeln!(f, "  WeCom calls: {:?}", s.wecom_calls)?;
        }
        if let Some(e) = &self.sop_error {
            writeln!(f, "SOP part failed: {e}")?;
        }
        if let Some(w) = &self.workflow {
            writeln!(
                f,
                "workflow: {} runs started in {:.1} s; {} steps ({} done, {} failed), runs {} done / {} failed, over {:.1} s",
                w.runs,
                w.start_s,
                w.steps,
                w.steps_done,
                w.steps_failed,
                w.runs_done,
                w.runs_failed,
                w.span_s
            )?;
            writeln!(
                f,
                "  {:.0} steps/s overall, {:.0} steps/s peak (10 s window); job start − due p50/p99/max {}/{}/{} ms; peak RSS {:.1} MiB",
                w.steps_per_s,
                w.peak_steps_per_s,
                w.start_lateness_ms.0,
                w.start_lateness_ms.1,
                w.start_lateness_ms.2,
                w.peak_rss_mib
            )?;
            for (i, (a, b, c)) in w.done_lateness_ms.iter().enumerate() {
                writeln!(
                    f,
                    "  step {}: logged − due p50/p99/max {a}/{b}/{c} ms",
                    i + 1
                )?;
            }
            writeln!(
                f,
                "  rows inserted per step {:.2}: {:?}",
                w.rows_per_step_total, w.rows_per_step
            )?;
            writeln!(f, "  WeCom calls: {:?}", w.wecom_calls)?;
        }
        if let Some(e) = &self.workflow_error {
            writeln!(f, "workflow part failed: {e}")?;
        }
        Ok(())
    }
}

/// This process's resident set and its peak, MiB (`/proc/self/status`).
pub(crate) fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reset the peak RSS to the current RSS (Linux: `5` to `clear_refs`).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The simulator child process; killed when dropped.
struct SimChild {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl SimChild {
    async fn start(args: &BenchArgs) -> anyhow::Result<SimChild> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .arg("sim")
            .args(["--sim-listen", &format!("127.0.0.1:{port}")])
            .args(["--sim-seed", &args.seed.to_string()])
            .args(["--sim-customers", &args.customers.to_string()])
            .args(["--sim-staff", &args.staff.to_string()])
            .args(["--sim-latency-min-ms", &args.latency_min_ms.to_string()])
            .args(["--sim-latency-max-ms", &args.latency_max_ms.to_string()])
            // WeCom's per-API limits (10,000 calls a minute) would make the SOP part measure
            // them; the mass send stays far below them anyway.
            .args(["--sim-rate-per-minute", "0", "--sim-rate-per-hour", "0"])
            .args(["--sim-app-msgs-per-member-minute", "0"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulator (scrm sim)")?;
        let sim = SimChild {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if sim.admin("/sim/admin/config").await.is_ok() {
                return Ok(sim);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the simulator did not answer in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn admin(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn calls(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        Ok(serde_json::from_value(
            self.admin("/sim/admin/calls").await?,
        )?)
    }
}

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn diff(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Run the benchmark.
pub async fn run(mut config: Config, args: BenchArgs) -> anyhow::Result<Report> {
    config.database_url = Secret::new(args.database_url.clone());
    config.database_max_connections = args.db_connections;
    let state = crate::integration::cli::state(config)
        .await
        .context("connecting to the bench database")?;
    let t = args.tenant_id;
    let sim = SimChild::start(&args).await?;

    let seeded = Instant::now();
    let seed = seed(
        &state.db,
        args.tenant_id,
        args.seed,
        args.customers,
        args.staff,
    )
    .await?;
    let seeded_in_s = seeded.elapsed().as_secs_f64();
    for (key, v) in [
        ("mass.first_poll_ms", args.first_poll_ms),
        ("mass.poll_interval_ms", args.poll_interval_ms),
    ] {
        Settings::set(&state.db, t, key, v).await?;
    }
    let app = super::wecom::simulator_app(&sim.base, "wwsim00000000000001", "sim-app-secret")?;
    super::wecom::register(t, app, 1000002);

    let shutdown = CancellationToken::new();
    let engine = crate::jobs::engine(
        &state,
        scrm_jobs::EngineConfig {
            concurrency: args.concurrency,
            builtins: false,
            ..Default::default()
        },
    )
    .start(shutdown.clone())
    .await?;

    let mass = mass_send(&state, &sim, &args, seed.all_tag).await;
    if let Ok(m) = &mass {
        // Printed at once: the SOP part takes minutes.
        println!("mass send: {}", serde_json::to_string(m)?);
    }
    let (sop, sop_error) = match &mass {
        Ok(_) if args.sop > 0 => match sop(&state, &sim, &args, seed.wecom_tag).await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
        _ => (None, None),
    };
    let (workflow, workflow_error) = match &mass {
        Ok(_) if args.workflow > 0 => {
            match workflow(&state, &sim, &args, seed.all_tag, seed.wecom_tag).await {
                Ok(w) => (Some(w), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        }
        _ => (None, None),
    };
    shutdown.cancel();
    engine.wait().await;
    state.db.close().await;
    Ok(Report {
        backend: state.db.backend().to_string(),
        customers: args.customers,
        staff: args.staff,
        latency_ms: (args.latency_min_ms, args.latency_max_ms),
        concurrency: args.concurrency,
        seeded_in_s,
        mass: mass?,
        sop,
        sop_error,
        workflow,
        workflow_error,
    })
}

/// The tags [`seed`] made: one on every customer, and one WeCom knows (for mark_tag).
pub(crate) struct Seeded {
    pub all_tag: i64,
    pub wecom_tag: i64,
}

/// Rows per INSERT statement.
const ROWS: usize = 1000;

/// Write the simulator's company (generated from `seed` at these sizes, as the simulator
/// generates it) into tenant `t`, replacing what the tenant had: staff, customers (owner = the
/// first active follower), a tag on everyone and a tag WeCom knows (for mark_tag). Also used by
/// the chaos harness.
pub(crate) async fn seed(
    db: &Db,
    t: i64,
    seed: u64,
    customers: u32,
    staff: u32,
) -> anyhow::Result<Seeded> {
    for table in [
        "customer",
        "customer_tag",
        "tag_count",
        "tag",
        "tag_group",
        "staff",
        "t_group_send_task",
        "t_group_send_result",
        "group_send_batch",
        "sop_template",
        "sop_step",
        "sop_execution",
        "sop_execution_step",
        "workflow",
        "workflow_version",
        "workflow_run",
        "workflow_run_step",
        "operation_setting",
        "job",
    ] {
        db.execute(query(format!("DELETE FROM {table} WHERE tenant_id = ?")).bind(t))
            .await?;
    }
    db.execute(query("DELETE FROM job_key WHERE ckey LIKE ?").bind(format!("wecom:sender:{t}:%")))
        .await?;
    let now = now_ms();
    let company = scrm_wecom_sim::company::generate(
        seed,
        &scrm_wecom_sim::config::CompanySize {
            customers,
            staff,
            ..Default::default()
        },
    );
    let mut staff_ids = std::collections::HashMap::new();
    for (i, s) in company.staff.iter().enumerate() {
        if s.status != 1 {
            continue;
        }
        let id = db
            .insert_id(
                query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)")
                    .bind(t)
                    .bind(&s.userid)
                    .bind(&s.name)
                    .bind(now)
                    .bind(now),
            )
            .await?;
        staff_ids.insert(i as u32, id);
    }
    let group = db.insert_id(query("INSERT INTO tag_group (tenant_id, name, created_at, updated_at) VALUES (?, 'bench', ?, ?)").bind(t).bind(now).bind(now)).await?;
    let all_tag = db.insert_id(query("INSERT INTO tag (tenant_id, group_id, name, created_at, updated_at) VALUES (?, ?, 'everyone', ?, ?)").bind(t).bind(group).bind(now).bind(now)).await?;
    let sim_tag = company
        .tags
        .iter()
        .find(|x| !x.deleted)
        .map(|x| x.id.clone())
        .context("the simulated company has no tag")?;
    let wecom_tag = db.insert_id(query("INSERT INTO tag (tenant_id, group_id, name, wecom_tag_id, created_at, updated_at) VALUES (?, ?, 'sop', ?, ?, ?)").bind(t).bind(group).bind(sim_tag).bind(now).bind(now)).await?;
    let first_id = db
        .fetch_i64(query("SELECT COALESCE(MAX(id), 0) + 1 FROM customer"))
        .await?;
    let n = company.customers.len() as u32;
    let mut start = 0u32;
    while start < n {
        let end = (start + ROWS as u32).min(n);
        let mut c = query(
            "INSERT INTO customer (id, tenant_id, external_userid, name, type, follow_user_id, add_time, stage, blacklisted, status, version, created_at, updated_at) VALUES ",
        );
        let mut ct =
            query("INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_at) VALUES ");
        for i in start..end {
            let id = first_id + i64::from(i);
            // The owner: the first follower still active (as a sync would pick).
            let owner = company
                .follows_of(i)
                .find_map(|(_, f)| staff_ids.get(&f.staff).copied());
            if i > start {
                c.push_sql(", ");
                ct.push_sql(", ");
            }
            c.push_sql("(?, ?, ?, ?, 1, ?, ?, 'new', 0, 1, 1, ?, ?)")
                .push_bind(id)
                .push_bind(t)
                .push_bind(company.external_userid(i))
                .push_bind(company.customer_name(i))
                .push_bind(owner)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
            ct.push_sql("(?, ?, ?, ?)")
                .push_bind(t)
                .push_bind(all_tag)
                .push_bind(id)
                .push_bind(now);
        }
        db.execute(c).await?;
        db.execute(ct).await?;
        start = end;
    }
    db.execute(
        query("INSERT INTO tag_count (tenant_id, tag_id, customer_count) VALUES (?, ?, ?)")
            .bind(t)
            .bind(all_tag)
            .bind(i64::from(n)),
    )
    .await?;
    drop(company);
    // The rows went in directly: the tenant's customer counter is set from them.
    crate::customers::store::recount_customers(db, t).await?;
    match db.backend() {
        Backend::Postgres => {
            db.execute(query("SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT MAX(id) FROM customer))")).await?;
            for table in ["customer", "customer_tag", "staff"] {
                db.execute(query(format!("VACUUM ANALYZE {table}"))).await?;
            }
        }
        Backend::MySql => {
            for table in ["customer", "customer_tag", "staff"] {
                db.execute(query(format!("ANALYZE TABLE {table}"))).await?;
            }
        }
        Backend::Sqlite => {
            db.execute(query("ANALYZE")).await?;
        }
    }
    Ok(Seeded { all_tag, wecom_tag })
}

fn bench_user(tenant_id: i64) -> CurrentUser {
    CurrentUser {
        id: 0,
        tenant_id,
        username: "bench".into(),
        display_name: "bench".into(),
        role: Role::Admin,
        token_id: 0,
        request_id: None,
    }
}

async fn mass_send(
    state: &AppState,
    sim: &SimChild,
    args: &BenchArgs,
    tag: i64,
) -> anyhow::Result<MassReport> {
    let t = args.tenant_id;
    let calls_before = sim.calls().await?;
    reset_peak_rss();
    let (rss_before_mib, _) = rss_mib();
    let started = Instant::now();
    let task = super::tasks::create(
        state,
        &bench_user(t),
        NewTask {
            source: "group_send",
            task_type: 1,
            sender: None,
            senders: None,
            task_name: Some("bench".into()),
            target: Target {
                tag_ids: vec![tag],
                ..Default::default()
            },
            message_type: None,
            message_content: Some(
                json!({"type": "TEXT", "data": {"text": "双十一大促：全场五折，仅限今日！"}}),
            ),
            action: None,
            scheduled_time: None,
        },
        Some(now_ms()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the task: {e:?}"))?;
    let row = loop {
        let row = super::mass::store::task_by_id(&state.db, task.id)
            .await?
            .context("task vanished")?;
        if status::is_final(&row.status) {
            break row;
        }
        anyhow::ensure!(
            started.elapsed() < args.timeout,
            "the task was not final after {:?} ({})",
            args.timeout,
            row.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let create_to_final_s = started.elapsed().as_secs_f64();
    let (_, peak_rss_mib) = rss_mib();
    let wecom_calls = diff(&sim.calls().await?, &calls_before);
    let per_sender: Vec<(String, i64)> = state
        .db
        .fetch_all(
            query(
                "SELECT sender_userid, COUNT(*) FROM t_group_send_result WHERE task_id = ? AND batch_id IS NOT NULL GROUP BY sender_userid",
            )
            .bind(task.id),
        )
        .await?;
    let summary = sim.admin("/sim/admin/deliveries/summary").await?;
    Ok(MassReport {
        status: row.status,
        targets: row.target_count,
        success: row.success_count,
        failed: row.failed_count,
        senders: per_sender.len() as i64,
        batched_recipients: per_sender.iter().map(|s| s.1).sum(),
        min_add_msg_template_calls: per_sender
            .iter()
            .map(|s| (s.1 + BATCH_SIZE - 1) / BATCH_SIZE)
            .sum(),
        add_msg_template_calls: wecom_calls
            .get("/cgi-bin/externalcontact/add_msg_template")
            .copied()
            .unwrap_or(0),
        wecom_calls,
        delivered_recipients: summary["recipients"].as_i64().unwrap_or(-1),
        duplicate_deliveries: summary["duplicates"]
            .as_array()
            .map_or(-1, |d| d.len() as i64),
        create_to_final_s,
        rss_before_mib,
        peak_rss_mib,
    })
}

fn percentiles(mut v: Vec<i64>) -> (i64, i64, i64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

async fn sop(
    state: &AppState,
    sim: &SimChild,
    args: &BenchArgs,
    wecom_tag: i64,
) -> anyhow::Result<SopReport> {
    use super::sop::store;
    let t = args.tenant_id;
    let calls_before = sim.calls().await?;
    reset_peak_rss();
    let step = |name: &str, step_type: i64, delay: i64, action: Value| Step {
        name: name.into(),
        step_type,
        delay_time: delay,
        delay_unit: "minute".into(),
        action_content: action,
    };
    let template = Template {
        name: "bench: welcome, tag, remind".into(),
        template_type: 1,
        trigger_type: 4,
        description: None,
        trigger_config: json!({}),
        status: 1,
        steps: vec![
            step(
                "welcome",
                1,
                0,
                json!({"content": "欢迎！这是您的专属顾问。"}),
            ),
            step("tag", 2, 1, json!({"tagIds": [wecom_tag]})),
            step("remind", 5, 2, json!({"content": "新客户跟进提醒"})),
        ],
    };
    let mut tx = state.db.begin().await?;
    let tid = store::insert_template(&mut tx, t, 0, &template, now_ms()).await?;
    tx.commit().await?;
    let trow = store::get_template(&state.db, t, tid)
        .await?
        .context("template")?;
    let steps = store::steps_of(&state.db, t, &[tid]).await?;

    // Targets: customers with an owner, 500 at a time (as POST /api/sop/execute starts them).
    let started = Instant::now();
    let mut executions = 0i64;
    let mut after = 0i64;
    while executions < args.sop {
        let ids: Vec<(i64,)> = state
            .db
            .fetch_all(
                query("SELECT id FROM customer WHERE tenant_id = ? AND follow_user_id IS NOT NULL AND id > ? ORDER BY id LIMIT ?")
                    .bind(t)
                    .bind(after)
                    .bind((args.sop - executions).min(500)),
            )
            .await?;
        let Some(last) = ids.last() else { break };
        after = last.0;
        let ids: Vec<i64> = ids.into_iter().map(|r| r.0).collect();
        // A busy SQLite may refuse a chunk (the workers write too): starting is idempotent
        // per customer, so try the chunk again.
        let mut tries = 0;
        let s = loop {
            match store::start_executions(
                &state.db,
                &state.jobs,
                &trow,
                &steps,
                1,
                &ids,
                4,
                now_ms(),
            )
            .await
            {
                Ok(s) => break s,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!("starting SOP executions: {e}; again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        executions += s.execution_ids.len() as i64;
    }
    let start_s = started.elapsed().as_secs_f64();
    let total = executions * steps.len() as i64;
    loop {
        let open = state
            .db
            .fetch_i64(
                query("SELECT COUNT(*) FROM sop_execution_step WHERE tenant_id = ? AND status IN (0, 1)")
                    .bind(t),
            )
            .await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < args.timeout + Duration::from_secs(180),
            "{open} SOP steps still open after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, peak_rss_mib) = rss_mib();
    let wecom_calls = diff(&sim.calls().await?, &calls_before);
    let count = |st: i64| {
        state.db.fetch_i64(
            query("SELECT COUNT(*) FROM sop_execution_step WHERE tenant_id = ? AND status = ?")
                .bind(t)
                .bind(st),
        )
    };
    let steps_done = count(2).await?;
    let steps_failed = count(3).await?;
    let steps_skipped = count(5).await?;
    // Lateness per step order, read a step order at a time.
    let mut start_lateness_ms = Vec::new();
    let mut done_lateness_ms = Vec::new();
    let (mut first_due, mut last_done) = (i64::MAX, 0i64);
    let mut per_10s: std::collections::HashMap<i64, i64> = Default::default();
    for s in &steps {
        let rows: Vec<(i64, i64)> = state
            .db
            .fetch_all(
                query("SELECT due_at, COALESCE(executed_at, due_at) FROM sop_execution_step WHERE tenant_id = ? AND step_order = ?")
                    .bind(t)
                    .bind(s.step_order),
            )
            .await?;
        for (due, done) in &rows {
            first_due = first_due.min(*due);
            last_done = last_done.max(*done);
            *per_10s.entry(done / 10_000).or_default() += 1;
        }
        done_lateness_ms.push(percentiles(rows.iter().map(|(d, e)| e - d).collect()));
        let jobs: Vec<(i64,)> = state
            .db
            .fetch_all(
                query("SELECT started_at - run_at FROM job WHERE tenant_id = ? AND kind = 'sop.step' AND started_at IS NOT NULL AND payload LIKE ?")
                    .bind(t)
                    .bind(format!("%\"stepOrder\":{}%", s.step_order)),
            )
            .await?;
        start_lateness_ms.push(percentiles(jobs.into_iter().map(|r| r.0).collect()));
    }
    let span_s = (last_done - first_due).max(1) as f64 / 1000.0;
    Ok(SopReport {
        executions,
        start_s,
        steps: total,
        steps_done,
        steps_failed,
        steps_skipped,
        span_s,
        steps_per_s: total as f64 / span_s,
        peak_steps_per_s: per_10s.values().copied().max().unwrap_or(0) as f64 / 10.0,
        start_lateness_ms,
        done_lateness_ms,
        wecom_calls,
        peak_rss_mib,
    })
}

/// Tables a workflow step writes rows into (directly or through what it calls).
const WORKFLOW_TABLES: &[&str] = &[
    "workflow_run",
    "workflow_run_step",
    "job",
    "job_attempt",
    "customer_tag",
    "customer_timeline",
    "event_outbox",
    "wecom_push",
];

async fn table_counts(db: &Db) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
    let mut out = std::collections::BTreeMap::new();
    for t in WORKFLOW_TABLES {
        out.insert(
            t.to_string(),
            db.fetch_i64(query(format!("SELECT COUNT(*) FROM {t}")))
                .await?,
        );
    }
    Ok(out)
}

/// N customers enter a five-step workflow: send a message now, wait a minute, check a tag,
/// tag, remind the owner.
async fn workflow(
    state: &AppState,
    sim: &SimChild,
    args: &BenchArgs,
    all_tag: i64,
    wecom_tag: i64,
) -> anyhow::Result<WorkflowReport> {
    use crate::automation::workflows::{model, store};
    let t = args.tenant_id;
    let calls_before = sim.calls().await?;
    let rows_before = table_counts(&state.db).await?;
    reset_peak_rss();
    let def = model::parse(json!({
        "name": "bench: welcome, wait, check, tag, remind",
        "trigger": {"type": "manual"},
        "steps": [
            {"type": "send_message", "text": "欢迎 {nickname}！这是您的专属顾问。"},
            {"type": "delay", "duration": "1m"},
            {"type": "condition", "when": [{"hasTags": [all_tag]}], "otherwise": "stop"},
            {"type": "add_tag", "tagIds": [wecom_tag]},
            {"type": "remind_staff", "text": "新客户跟进提醒：{nickname}"}
        ]
    }))
    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    anyhow::ensure!(model::check(&def).is_empty(), "{:?}", model::check(&def));
    let mut tx = state.db.begin().await?;
    let wid = store::insert_workflow(&mut tx, t, None, &def, now_ms()).await?;
    let w = store::workflow_tx(&mut tx, t, wid)
        .await?
        .context("workflow")?;
    let version = store::publish(&mut tx, &w, now_ms()).await?;
    tx.commit().await?;

    let started = Instant::now();
    let mut runs = 0i64;
    let mut after = 0i64;
    while runs < args.workflow {
        let ids: Vec<(i64,)> = state
            .db
            .fetch_all(
                query("SELECT id FROM customer WHERE tenant_id = ? AND follow_user_id IS NOT NULL AND id > ? ORDER BY id LIMIT ?")
                    .bind(t)
                    .bind(after)
                    .bind((args.workflow - runs).min(500)),
            )
            .await?;
        let Some(last) = ids.last() else { break };
        after = last.0;
        let ids: Vec<i64> = ids.into_iter().map(|r| r.0).collect();
        let start = store::Start {
            version: &version,
            definition: &def,
            trigger_type: "manual",
            trigger_ref: Some("bench".into()),
            occasion: None,
            at: now_ms(),
        };
        let mut tries = 0;
        let s = loop {
            match store::start_runs(&state.db, &state.jobs, &start, &ids).await {
                Ok(s) => break s,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!("starting workflow runs: {e}; again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        runs += (s.run_ids.len() + s.skipped_ids.len()) as i64;
    }
    let start_s = started.elapsed().as_secs_f64();
    loop {
        let open = state
            .db
            .fetch_i64(
                query("SELECT COUNT(*) FROM workflow_run WHERE tenant_id = ? AND status IN (0, 1)")
                    .bind(t),
            )
            .await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < args.timeout + Duration::from_secs(120),
            "{open} workflow runs still open after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, peak_rss_mib) = rss_mib();
    let wecom_calls = diff(&sim.calls().await?, &calls_before);
    let rows_after = table_counts(&state.db).await?;
    let count = |sql: &'static str, st: i64| state.db.fetch_i64(query(sql).bind(t).bind(st));
    let step_sql = "SELECT COUNT(*) FROM workflow_run_step WHERE tenant_id = ? AND status = ?";
    let run_sql = "SELECT COUNT(*) FROM workflow_run WHERE tenant_id = ? AND status = ?";
    let steps_done = count(step_sql, 2).await?;
    let steps_failed = count(step_sql, 3).await?;
    let runs_done = count(run_sql, 2).await?;
    let runs_failed = count(run_sql, 3).await?;
    let steps = state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM workflow_run_step WHERE tenant_id = ?").bind(t))
        .await?;
    let mut done_lateness_ms = Vec::new();
    let (mut first_due, mut last_done) = (i64::MAX, 0i64);
    let mut per_10s: std::collections::HashMap<i64, i64> = Default::default();
    for i in 0..def.steps.len() as i64 {
        let rows: Vec<(i64, i64)> = state
            .db
            .fetch_all(
                query("SELECT due_at, COALESCE(finished_at, due_at) FROM workflow_run_step WHERE tenant_id = ? AND step_index = ?")
                    .bind(t)
                    .bind(i),
            )
            .await?;
        for (due, done) in &rows {
            first_due = first_due.min(*due);
            last_done = last_done.max(*done);
            *per_10s.entry(done / 10_000).or_default() += 1;
        }
        done_lateness_ms.push(percentiles(rows.iter().map(|(d, e)| e - d).collect()));
    }
    let jobs: Vec<(i64,)> = state
        .db
        .fetch_all(
            query("SELECT started_at - run_at FROM job WHERE tenant_id = ? AND kind = ? AND started_at IS NOT NULL")
                .bind(t)
                .bind(store::STEP),
        )
        .await?;
    let start_lateness_ms = percentiles(jobs.into_iter().map(|r| r.0).collect());
    let rows_per_step: std::collections::BTreeMap<String, f64> = rows_after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - rows_before.get(k).copied().unwrap_or(0)) as f64 / steps.max(1) as f64,
            )
        })
        .collect();
    let span_s = (last_done - first_due).max(1) as f64 / 1000.0;
    Ok(WorkflowReport {
        runs,
        start_s,
        steps,
        steps_done,
        steps_failed,
        runs_done,
        runs_failed,
        span_s,
        steps_per_s: steps as f64 / span_s,
        peak_steps_per_s: per_10s.values().copied().max().unwrap_or(0) as f64 / 10.0,
        start_lateness_ms,
        done_lateness_ms,
        rows_per_step_total: rows_per_step.values().sum(),
        rows_per_step,
        wecom_calls,
        peak_rss_mib,
    })
}
