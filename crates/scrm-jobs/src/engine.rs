//! [`JobEngine`]: the worker runtime. Register a handler per kind, start it with a shutdown
//! token, and it claims due jobs into N concurrent slots, heartbeats their leases, finishes
//! them in batches, reaps expired leases, fires cron schedules and, on shutdown, drains what
//! it runs. Run any number of engines in any number of processes on one database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertSink;
use crate::error::JobsResult;
use crate::job::KindOptions;
use crate::queue::Jobs;
use crate::runner::{self, Msg, Running};
use crate::worker::{self, Handler, WorkerInfo};

/// How an engine runs. The defaults suit one `scrm serve` process.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs run at once by this engine.
    pub concurrency: usize,
    /// Most jobs taken by one claim statement.
    pub claim_batch: usize,
    /// Longest idle wait between looks at the database, when no wake-up arrives (the fallback
    /// for other processes' enqueues on MySQL and SQLite).
    pub poll_interval: Duration,
    /// How long a claim stays valid without a heartbeat: a worker that dies loses its jobs to
    /// another after this.
    pub lease: Duration,
    /// How often leases are extended and cancellations looked up.
    pub heartbeat: Duration,
    /// How often expired leases are reaped (cron schedules wake the loop on their own).
    pub maintenance_interval: Duration,
    /// How long shutdown waits for running jobs before giving them back unrun.
    pub drain_timeout: Duration,
    /// Most results written by one finishing transaction.
    pub finish_batch: usize,
    /// Claim loops run at once (each claims up to `claim_batch`): more than one lets claims
    /// overlap, for throughput when the database round trip dominates.
    pub claimers: usize,
    /// Finishing transactions written at once.
    pub finish_writers: usize,
    /// Record successful attempts in `job_attempt` too (failures always are). Off by default:
    /// the job row already holds the last run's worker and times, and an extra insert per job
    /// would halve throughput.
    pub record_every_attempt: bool,
    /// Register the built-in jobs: pruning (hourly) and alert evaluation (every minute).
    pub builtins: bool,
    /// Finished (done, cancelled) jobs are deleted after this; dead ones stay until replayed
    /// or purged.
    pub retention: Duration,
    /// Listen for PostgreSQL notifications (and Redis, when configured).
    pub listen: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            claim_batch: 64,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            maintenance_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            finish_batch: 512,
            claimers: 1,
            finish_writers: 2,
            record_every_attempt: false,
            builtins: true,
            retention: Duration::from_secs(7 * 86_400),
            listen: true,
        }
    }
}

/// A registered kind.
pub(crate) struct Registered {
    pub handler: Arc<dyn Handler>,
    pub opts: KindOptions,
}

/// Builds a [`JobEngine`].
pub struct EngineBuilder {
    jobs: Jobs,
    handlers: HashMap<String, Registered>,
    config: EngineConfig,
    sinks: Vec<Arc<dyn AlertSink>>,
}

impl EngineBuilder {
    /// Run jobs of `kind` with `handler`, under `opts` (timeout, backoff, attempts).
    pub fn register(mut self, kind: &str, opts: KindOptions, handler: impl Handler) -> Self {
        self.jobs.configure_kind(kind, opts.clone());
        self.handlers.insert(
            kind.to_string(),
            Registered {
                handler: Arc::new(handler),
                opts,
            },
        );
        self
    }

    /// Replace the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Set the number of concurrent slots.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Where alerts go (several sinks may be added).
    pub fn alert_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Finish building.
    pub fn build(mut self) -> JobEngine {
        if self.config.builtins {
            crate::builtin::register(&mut self.handlers, &self.jobs, &self.sinks, &self.config);
        }
        JobEngine {
            jobs: self.jobs,
            handlers: self.handlers,
            config: self.config,
        }
    }
}

/// The worker runtime; see the module doc.
pub struct JobEngine {
    jobs: Jobs,
    handlers: HashMap<String, Registered>,
    config: EngineConfig,
}

/// The engine's shared state, held by its tasks.
pub(crate) struct Core {
    pub jobs: Jobs,
    pub handlers: HashMap<String, Registered>,
    pub kinds: Vec<String>,
    pub config: EngineConfig,
    pub worker_id: Arc<str>,
    /// Wakes the dispatcher: new work, a freed slot, a freed key.
    pub notify: Arc<Notify>,
    /// Jobs claimed and not yet finished in the database.
    pub in_flight: AtomicUsize,
    /// Slots taken: jobs claimed whose handler has not reported yet (at most `concurrency`).
    /// A result waiting to be written frees its slot, so a slow finishing write does not stop
    /// the claims; `in_flight` (at most [`EngineConfig::concurrency`] × 4) bounds that backlog.
    pub busy: AtomicUsize,
    /// Running handlers by job id. Whoever removes an entry reports that job's result.
    pub running: Mutex<HashMap<i64, Running>>,
    pub done_tx: mpsc::UnboundedSender<Msg>,
    /// Stops the background loops (after the drain).
    pub stop_bg: CancellationToken,
    /// Every task of the engine, for [`EngineHandle::abort`].
    pub tasks: Mutex<Vec<AbortHandle>>,
    /// One flag per cross-process listener (LISTEN, Redis): set while it is subscribed.
    pub listeners: Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>,
}

impl JobEngine {
    /// Start building an engine on a client handle.
    pub fn builder(jobs: Jobs) -> EngineBuilder {
        EngineBuilder {
            jobs,
            handlers: HashMap::new(),
            config: EngineConfig::default(),
            sinks: Vec::new(),
        }
    }

    /// Register this worker and start its loops. The engine runs until `shutdown` is
    /// cancelled, then stops claiming, lets running jobs finish (up to `drain_timeout`) and
    /// marks the worker stopped; await [`EngineHandle::wait`] for that.
    pub async fn start(self, shutdown: CancellationToken) -> JobsResult<EngineHandle> {
        let now = self.jobs.now_ms();
        let host = worker::host_name();
        let pid = i64::from(std::process::id());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let worker_id: Arc<str> = format!("{host}-{pid}-{}", &suffix[..8]).into();
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        worker::register(
            self.jobs.db(),
            &WorkerInfo {
                id: worker_id.to_string(),
                host,
                pid,
                started_at: now,
                last_seen_at: now,
                status: "running".into(),
                slots: self.config.concurrency as i64,
                running: 0,
                rss_bytes: worker::rss_bytes(),
                kinds: kinds.join(","),
            },
        )
        .await?;
        if self.config.builtins {
            crate::builtin::ensure_schedules(&self.jobs).await?;
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let notify = Arc::new(Notify::new());
        self.jobs.inner.hub.register(&notify);
        let core = Arc::new(Core {
            jobs: self.jobs,
            handlers: self.handlers,
            kinds,
            config: self.config,
            worker_id: worker_id.clone(),
            notify,
            in_flight: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            running: Mutex::new(HashMap::new()),
            done_tx,
            stop_bg: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            listeners: Mutex::new(Vec::new()),
        });
        // Before the first claim: a queue filled since its last ANALYZE would otherwise be
        // claimed from with a plan made for an empty table.
        if let Err(e) = crate::store::refresh_statistics(core.jobs.db()).await {
            tracing::warn!(error = %e, "jobs: refreshing the job table's statistics failed");
        }
        let completer = tokio::spawn(runner::completer(core.clone(), done_rx));
        let mut handles = vec![
            completer.abort_handle(),
            tokio::spawn(runner::heartbeat(core.clone())).abort_handle(),
            tokio::spawn(runner::maintenance(core.clone())).abort_handle(),
        ];
        if core.jobs.db().backend() == scrm_db::Backend::Postgres {
            handles.push(tokio::spawn(runner::statistics(core.clone())).abort_handle());
        }
        if core.config.listen {
            handles.extend(spawn_listeners(&core));
        }
        let mut dispatchers = Vec::new();
        for _ in 0..core.config.claimers.max(1) {
            let d = tokio::spawn(runner::dispatcher(core.clone(), shutdown.clone()));
            handles.push(d.abort_handle());
            dispatchers.push(d);
        }
        let supervisor = tokio::spawn(supervise(core.clone(), shutdown, dispatchers, completer));
        handles.push(supervisor.abort_handle());
        if let Ok(mut t) = core.tasks.lock() {
            t.extend(handles);
        }
        Ok(EngineHandle {
            worker_id,
            core,
            supervisor,
        })
    }
}

/// Cross-process wake-up listeners: PostgreSQL LISTEN, and Redis when configured.
fn spawn_listeners(core: &Arc<Core>) -> Vec<AbortHandle> {
    let mut out = Vec::new();
    let ready = || {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Ok(mut l) = core.listeners.lock() {
            l.push(flag.clone());
        }
        flag
    };
    if let scrm_db::Db::Postgres(pool) = core.jobs.db() {
        let t = tokio::spawn(crate::wake::listen_postgres(
            pool.clone(),
            core.jobs.inner.hub.clone(),
            core.stop_bg.clone(),
            ready(),
        ));
        out.push(t.abort_handle());
    }
    #[cfg(feature = "redis")]
    if let Some(url) = core.jobs.options().redis_url.clone() {
        let t = tokio::spawn(crate::wake::listen_redis(
            url,
            core.jobs.inner.hub.clone(),
            core.stop_bg.clone(),
            ready(),
        ));
        out.push(t.abort_handle());
    }
    out
}

/// A started engine.
pub struct EngineHandle {
    worker_id: Arc<str>,
    core: Arc<Core>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl EngineHandle {
    /// This worker's id (as in the workers list and `job.worker_id`).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Whether every cross-process wake-up listener this engine runs (PostgreSQL LISTEN,
    /// Redis pub/sub) is subscribed right now: from then on, other processes' enqueues wake
    /// it at once rather than at its next poll. True when it runs none.
    pub fn listening(&self) -> bool {
        self.core
            .listeners
            .lock()
            .map(|l| l.iter().all(|f| f.load(Ordering::Acquire)))
            .unwrap_or(false)
    }

    /// Jobs claimed and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.core.in_flight.load(Ordering::Acquire)
    }

    /// Wait until the engine has drained and stopped (after its shutdown token fired).
    pub async fn wait(self) {
        let _ = self.supervisor.await;
    }

    /// Kill the engine on the spot, as a crashed process would die: every task and running
    /// handler is aborted and nothing more is written. Its jobs are taken over by other
    /// engines once their leases expire. For tests and chaos drills.
    pub fn abort(self) {
        self.core.stop_bg.cancel();
        if let Ok(mut t) = self.core.tasks.lock() {
            for h in t.drain(..) {
                h.abort();
            }
        }
        if let Ok(mut r) = self.core.running.lock() {
            for (_, job) in r.drain() {
                if let Some(a) = job.abort {
                    a.abort();
                }
            }
        }
    }
}

/// Wait for shutdown, then drain: stop claiming, let running jobs finish, give back the ones
/// that overrun the drain timeout, flush results, mark the worker stopped.
async fn supervise(
    core: Arc<Core>,
    shutdown: CancellationToken,
    dispatchers: Vec<tokio::task::JoinHandle<()>>,
    completer: tokio::task::JoinHandle<()>,
) {
    shutdown.cancelled().await;
    for d in dispatchers {
        let _ = d.await;
    }
    let db = core.jobs.db().clone();
    let now = core.jobs.now_ms();
    let n = core.in_flight.load(Ordering::Acquire);
    let _ = worker::beat(&db, &core.worker_id, "draining", n, now).await;
    let deadline = tokio::time::Instant::now() + core.config.drain_timeout;
    while core.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner::release_all(&core);
    while core.in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = core.done_tx.send(Msg::Stop);
    let _ = completer.await;
    core.stop_bg.cancel();
    let now = core.jobs.now_ms();
    let _ = worker::beat(&db, &core.worker_id, "stopped", 0, now).await;
}
