//! [`Jobs`]: the handle every part of the app holds to enqueue jobs inside its own transaction,
//! and (through [`crate::api`]) to list, cancel, pause and replay them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono_tz::Tz;
use scrm_db::{Backend, Db, Query, Tx, query};

use crate::clock::{Clock, SystemClock};
use crate::error::{JobsError, JobsResult};
use crate::job::{JobId, KeyLimit, KindOptions, NewJob, ms};
use crate::wake::WakeHub;

/// Settings shared by the client handle and the engines built on it.
#[derive(Debug, Clone)]
pub struct JobsOptions {
    /// The zone that defines "today" for the statistics (seed 002's "completed today").
    pub time_zone: Tz,
    /// Jobs due within this horizon wake idle engines at enqueue; later ones are found by the
    /// engines' regular look at the next due time, so a mass enqueue of future steps sends no
    /// notifications at all. Keep it at least the engines' poll interval.
    pub notify_horizon: Duration,
    /// Redis URL for cross-process wake-ups (feature `redis`); PostgreSQL needs none.
    pub redis_url: Option<String>,
}

impl Default for JobsOptions {
    fn default() -> Self {
        Self {
            time_zone: chrono_tz::Asia::Shanghai,
            notify_horizon: Duration::from_secs(1),
            redis_url: None,
        }
    }
}

/// The client side of the engine: cheap to clone, holds the pool, the clock, the per-kind
/// options and the in-process wake-up hub.
#[derive(Clone, Debug)]
pub struct Jobs {
    pub(crate) inner: Arc<JobsInner>,
}

#[derive(Debug)]
pub(crate) struct JobsInner {
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hub: Arc<WakeHub>,
    pub(crate) kinds: RwLock<HashMap<String, KindOptions>>,
    pub(crate) opts: JobsOptions,
}

/// The result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id (the existing job's, when a unique key matched).
    pub id: JobId,
    /// False when a job with the same unique key already existed.
    pub created: bool,
}

const COLUMNS: &str = "(tenant_id, kind, payload, state, priority, run_at, max_attempts, \
     unique_key, group_key, concurrency_key, created_at, updated_at)";
const PLACEHOLDERS: &str = "(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)";

impl Jobs {
    /// A handle on the system clock with default options.
    pub fn new(db: Db) -> Self {
        Self::with_options(db, Arc::new(SystemClock), JobsOptions::default())
    }

    /// A handle on another clock (a [`crate::ManualClock`] in tests).
    pub fn with_clock(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self::with_options(db, clock, JobsOptions::default())
    }

    /// A handle with every setting chosen.
    pub fn with_options(db: Db, clock: Arc<dyn Clock>, opts: JobsOptions) -> Self {
        Self {
            inner: Arc::new(JobsInner {
                db,
                clock,
                hub: Arc::new(WakeHub::default()),
                kinds: RwLock::new(HashMap::new()),
                opts,
            }),
        }
    }

    /// The pool.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Epoch ms now, by this handle's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The options.
    pub fn options(&self) -> &JobsOptions {
        &self.inner.opts
    }

    /// Set a kind's timeout, backoff and default attempts (engines do this for the kinds they
    /// register; an API-only process may do it so enqueues pick up `max_attempts`).
    pub fn configure_kind(&self, kind: &str, opts: KindOptions) {
        if let Ok(mut k) = self.inner.kinds.write() {
            k.insert(kind.to_string(), opts);
        }
    }

    /// A kind's options (the defaults when unconfigured).
    pub fn kind_options(&self, kind: &str) -> KindOptions {
        self.inner
            .kinds
            .read()
            .ok()
            .and_then(|k| k.get(kind).cloned())
            .unwrap_or_default()
    }

    /// Enqueue one job inside the caller's transaction: it exists if and only if the
    /// transaction commits. With a unique key, a second enqueue returns the first job's id.
    ///
    /// Commit with [`Jobs::commit`] to wake local engines the moment the job is visible;
    /// committing the `Tx` directly works too (PostgreSQL's NOTIFY fires at commit, and local
    /// engines re-check shortly after an enqueue).
    pub async fn enqueue(&self, tx: &mut Tx, job: NewJob) -> JobsResult<Enqueued> {
        job.validate()?;
        let now = self.now_ms();
        let run_at = job.run_at.unwrap_or(now);
        if let (Some(key), Some(limit)) = (&job.concurrency_key, &job.key_limit) {
            upsert_key_limit(tx, key, limit, now).await?;
        }
        // MySQL: INSERT IGNORE skips a duplicate unique key and reports 0 rows (an
        // ON DUPLICATE KEY no-op may report 1 under CLIENT_FOUND_ROWS); the length checks in
        // `validate` keep IGNORE from hiding truncation.
        let ignore = job.unique_key.is_some() && tx.backend() == Backend::MySql;
        let mut q = query(if ignore {
            "INSERT IGNORE INTO job "
        } else {
            "INSERT INTO job "
        });
        q.push_sql(COLUMNS);
        q.push_sql(" VALUES ");
        q.push_sql(PLACEHOLDERS);
        self.bind_row(&mut q, &job, run_at, now);
        let out = match (&job.unique_key, tx.backend()) {
            (None, _) => Enqueued {
                id: tx.insert_id(q).await?,
                created: true,
            },
            (Some(key), Backend::MySql) => {
                let r = tx.execute(q).await?;
                match (r.rows_affected, r.last_insert_id) {
                    (1, Some(id)) => Enqueued { id, created: true },
                    _ => Enqueued {
                        id: tx
                            .fetch_i64(query("SELECT id FROM job WHERE unique_key = ?").bind(key))
                            .await?,
                        created: false,
                    },
                }
            }
            (Some(key), _) => {
                // A failed INSERT would abort a PostgreSQL transaction, so never let it fail.
                q.push_sql(on_unique_key_conflict(tx.backend()));
                q.push_sql(" RETURNING id");
                match tx.fetch_optional::<(i64,)>(q).await? {
                    Some((id,)) => Enqueued { id, created: true },
                    None => Enqueued {
                        id: tx
                            .fetch_i64(query("SELECT id FROM job WHERE unique_key = ?").bind(key))
                            .await?,
                        created: false,
                    },
                }
            }
        };
        if out.created {
            self.announce(tx, run_at, now).await?;
        }
        Ok(out)
    }

    /// Enqueue many jobs with multi-row INSERTs (1,000 rows a statement) in the caller's
    /// transaction: a mass send of 100,000 messages is 100 statements. Jobs whose unique key
    /// is taken are skipped. Returns how many were created.
    pub async fn enqueue_many(&self, tx: &mut Tx, jobs: Vec<NewJob>) -> JobsResult<u64> {
        let now = self.now_ms();
        let mut created = 0;
        let mut earliest = i64::MAX;
        for chunk in jobs.chunks(1000) {
            let unique = chunk.iter().any(|j| j.unique_key.is_some());
            let mut q = query(if unique && tx.backend() == Backend::MySql {
                "INSERT IGNORE INTO job "
            } else {
                "INSERT INTO job "
            });
            q.push_sql(COLUMNS);
            q.push_sql(" VALUES ");
            for (i, job) in chunk.iter().enumerate() {
                job.validate()?;
                if let (Some(key), Some(limit)) = (&job.concurrency_key, &job.key_limit) {
                    upsert_key_limit(tx, key, limit, now).await?;
                }
                if i > 0 {
                    q.push_sql(", ");
                }
                q.push_sql(PLACEHOLDERS);
                let run_at = job.run_at.unwrap_or(now);
                earliest = earliest.min(run_at);
                self.bind_row(&mut q, job, run_at, now);
            }
            if unique && tx.backend() != Backend::MySql {
                q.push_sql(on_unique_key_conflict(tx.backend()));
            }
            created += tx.execute(q).await?.rows_affected;
        }
        if created > 0 {
            self.announce(tx, earliest, now).await?;
        }
        Ok(created)
    }

    /// Commit a transaction that enqueued jobs, then wake local engines (and Redis listeners).
    pub async fn commit(&self, tx: Tx) -> JobsResult<()> {
        tx.commit().await?;
        self.wake().await;
        Ok(())
    }

    /// Enqueue one job in a transaction of its own (for jobs caused by no other write).
    pub async fn enqueue_now(&self, job: NewJob) -> JobsResult<Enqueued> {
        let mut tx = self.db().begin().await?;
        let e = self.enqueue(&mut tx, job).await?;
        self.commit(tx).await?;
        Ok(e)
    }

    /// Set (or change) the limit of a concurrency key.
    pub async fn set_key_limit(&self, key: &str, limit: KeyLimit) -> JobsResult<()> {
        let mut tx = self.db().begin().await?;
        upsert_key_limit(&mut tx, key, &limit, self.now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remove a key's limit (its jobs then run unlimited).
    pub async fn remove_key_limit(&self, key: &str) -> JobsResult<()> {
        self.db()
            .execute(query("DELETE FROM job_key WHERE ckey = ?").bind(key))
            .await?;
        Ok(())
    }

    /// Wake engines after committed work became due (resume, replay, commit).
    pub async fn wake(&self) {
        self.inner.hub.wake();
        #[cfg(feature = "redis")]
        if let Some(url) = &self.inner.opts.redis_url {
            crate::wake::publish_redis(url).await;
        }
    }

    fn bind_row(&self, q: &mut Query, job: &NewJob, run_at: i64, now: i64) {
        let max_attempts = job
            .max_attempts
            .unwrap_or_else(|| self.kind_options(&job.kind).max_attempts);
        q.push_bind(job.tenant_id)
            .push_bind(job.kind.as_str())
            .push_bind(job.payload.as_str())
            .push_bind(job.priority)
            .push_bind(run_at)
            .push_bind(max_attempts)
            .push_bind(job.unique_key.clone())
            .push_bind(job.group_key.clone())
            .push_bind(job.concurrency_key.clone())
            .push_bind(now)
            .push_bind(now);
    }

    /// Tell engines about a job due soon: NOTIFY inside the transaction on PostgreSQL
    /// (delivered at commit), and a local wake-up with re-checks.
    async fn announce(&self, tx: &mut Tx, run_at: i64, now: i64) -> JobsResult<()> {
        if run_at > now + ms(self.inner.opts.notify_horizon) {
            return Ok(());
        }
        if tx.backend() == Backend::Postgres {
            tx.execute(query("SELECT pg_notify(?, '')").bind(crate::wake::CHANNEL))
                .await?;
        }
        self.inner.hub.wake_soon();
        Ok(())
    }
}

pub(crate) async fn upsert_key_limit(
    tx: &mut Tx,
    key: &str,
    limit: &KeyLimit,
    now: i64,
) -> JobsResult<()> {
    if key.len() > 191 {
        return Err(JobsError::Invalid(
            "concurrency key longer than 191 bytes".into(),
        ));
    }
    let tail = match tx.backend() {
        Backend::MySql => {
            " ON DUPLICATE KEY UPDATE max_running = VALUES(max_running), \
             min_gap_ms = VALUES(min_gap_ms), max_gap_ms = VALUES(max_gap_ms), \
             updated_at = VALUES(updated_at)"
        }
        _ => {
            " ON CONFLICT (ckey) DO UPDATE SET max_running = excluded.max_running, \
             min_gap_ms = excluded.min_gap_ms, max_gap_ms = excluded.max_gap_ms, \
             updated_at = excluded.updated_at"
        }
    };
    let mut q = query(
        "INSERT INTO job_key (ckey, max_running, running, min_gap_ms, max_gap_ms, \
         next_allowed_at, updated_at) VALUES (?, ?, 0, ?, ?, 0, ?)",
    )
    .bind(key)
    .bind(limit.max_running)
    .bind(limit.min_gap_ms)
    .bind(limit.max_gap_ms)
    .bind(now);
    q.push_sql(tail);
    tx.execute(q).await?;
    Ok(())
}

/// The conflict clause of an enqueue with a unique key. PostgreSQL's `uk_job_unique` is partial
/// (`WHERE unique_key IS NOT NULL`, so keyless jobs add no entry to it on each of their three
/// writes), and `ON CONFLICT` infers a partial index only when it repeats the predicate.
fn on_unique_key_conflict(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
        _ => " ON CONFLICT (unique_key) DO NOTHING",
    }
}
