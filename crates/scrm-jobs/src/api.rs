//! The query and control API the HTTP layer calls: list and inspect jobs, cancel, pause,
//! resume, retry/replay, purge, workers and statistics. Every call takes a [`Scope`]: a tenant
//! sees and touches only its own jobs; [`Scope::System`] (operators) sees all.

use scrm_db::{Query, query};
use serde::{Deserialize, Serialize};

use crate::error::{JobsError, JobsResult};
use crate::job::{JobId, JobState};
use crate::queue::Jobs;
use crate::worker::WorkerInfo;

/// Whose jobs a call may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every job (operators, system tasks).
    System,
    /// Only this tenant's jobs.
    Tenant(i64),
}

/// Filters for [`Jobs::list_jobs`] and the bulk operations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub group_key: Option<String>,
    /// Only jobs created at or after (epoch ms).
    pub created_from: Option<i64>,
    /// Only jobs created before (epoch ms).
    pub created_to: Option<i64>,
}

/// Which jobs an operation acts on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// These jobs.
    Ids(Vec<JobId>),
    /// Every job of a group (all steps of one SOP execution).
    Group(String),
    /// Every job matching a filter.
    Filter(JobFilter),
}

/// A job as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct JobRow {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub kind: String,
    /// Seed 002's status code (see [`JobState`]).
    pub state: i64,
    pub priority: i64,
    pub run_at: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub unique_key: Option<String>,
    pub group_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub worker_id: Option<String>,
    pub cancel_requested: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl JobRow {
    /// The state as an enum.
    pub fn job_state(&self) -> Option<JobState> {
        JobState::from_code(self.state)
    }
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRow {
    pub attempt: i64,
    pub worker_id: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
    /// `done`, `error`, `timeout`, `panic`, `lease_expired`, `cancelled`, `rescheduled`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A job with its payload and attempt history.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    pub job: JobRow,
    pub payload: serde_json::Value,
    /// Failed attempts, then the final successful or cancelled one (from the job row).
    pub attempts: Vec<AttemptRow>,
}

/// A page of results.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CancelResult {
    /// Pending or paused jobs cancelled at once.
    pub cancelled: u64,
    /// Running jobs asked to stop (they see it at their worker's next heartbeat).
    pub cancelling: u64,
}

const ROW_COLUMNS: &str = "id, tenant_id, kind, state, priority, run_at, attempts, max_attempts, \
     unique_key, group_key, concurrency_key, worker_id, cancel_requested, last_error, created_at, \
     updated_at, started_at, finished_at";

fn push_scope(q: &mut Query, scope: Scope) {
    if let Scope::Tenant(t) = scope {
        q.push_sql(" AND tenant_id = ?");
        q.push_bind(t);
    }
}

fn push_filter(q: &mut Query, f: &JobFilter) {
    if let Some(s) = f.state {
        q.push_sql(" AND state = ?");
        q.push_bind(s.code());
    }
    if let Some(k) = &f.kind {
        q.push_sql(" AND kind = ?");
        q.push_bind(k.as_str());
    }
    if let Some(g) = &f.group_key {
        q.push_sql(" AND group_key = ?");
        q.push_bind(g.as_str());
    }
    if let Some(t) = f.created_from {
        q.push_sql(" AND created_at >= ?");
        q.push_bind(t);
    }
    if let Some(t) = f.created_to {
        q.push_sql(" AND created_at < ?");
        q.push_bind(t);
    }
}

fn push_target(q: &mut Query, t: &Target) {
    match t {
        Target::Ids(ids) => {
            q.push_sql(" AND id IN ");
            q.push_in_list(ids.iter().copied());
        }
        Target::Group(g) => {
            q.push_sql(" AND group_key = ?");
            q.push_bind(g.as_str());
        }
        Target::Filter(f) => push_filter(q, f),
    }
}

impl Jobs {
    /// A page of jobs, newest first (`page` from 1, `page_size` 1-500).
    pub async fn list_jobs(
        &self,
        scope: Scope,
        filter: &JobFilter,
        page: i64,
        page_size: i64,
    ) -> JobsResult<Page<JobRow>> {
        let page = page.max(1);
        let page_size = page_size.clamp(1, 500);
        let mut count = query("SELECT COUNT(*) FROM job WHERE 1 = 1");
        push_scope(&mut count, scope);
        push_filter(&mut count, filter);
        let total = self.db().fetch_i64(count).await?;
        let mut q = query(format!("SELECT {ROW_COLUMNS} FROM job WHERE 1 = 1"));
        push_scope(&mut q, scope);
        push_filter(&mut q, filter);
        q.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?");
        q.push_bind(page_size);
        q.push_bind((page - 1) * page_size);
        Ok(Page {
            items: self.db().fetch_all(q).await?,
            total,
            page,
            page_size,
        })
    }

    /// One job with payload and attempt history.
    pub async fn get_job(&self, scope: Scope, id: JobId) -> JobsResult<JobDetail> {
        let mut q = query(format!(
            "SELECT {ROW_COLUMNS}, payload FROM job WHERE id = ?"
        ))
        .bind(id);
        push_scope(&mut q, scope);
        #[derive(sqlx::FromRow)]
        struct WithPayload {
            #[sqlx(flatten)]
            job: JobRow,
            payload: String,
        }
        let row: WithPayload = self
            .db()
            .fetch_optional(q)
            .await?
            .ok_or_else(|| JobsError::NotFound(format!("job {id}")))?;
        let mut attempts: Vec<AttemptRow> = self
            .db()
            .fetch_all(
                query(
                    "SELECT attempt, worker_id, started_at, finished_at, outcome, error \
                     FROM job_attempt WHERE job_id = ? ORDER BY attempt, id",
                )
                .bind(id),
            )
            .await?;
        let j = &row.job;
        let last = match j.job_state() {
            Some(JobState::Done) => Some("done"),
            Some(JobState::Cancelled) if j.started_at.is_some() => Some("cancelled"),
            _ => None,
        };
        if let (Some(outcome), Some(finished)) = (last, j.finished_at)
            && !attempts.iter().any(|a| a.attempt == j.attempts)
        {
            attempts.push(AttemptRow {
                attempt: j.attempts,
                worker_id: j.worker_id.clone(),
                started_at: j.started_at,
                finished_at: finished,
                outcome: outcome.into(),
                error: None,
            });
        }
        let payload = serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null);
        Ok(JobDetail {
            job: row.job,
            payload,
            attempts,
        })
    }

    /// Cancel: pending and paused jobs at once; running ones cooperatively (their handler's
    /// context reports cancellation at the next heartbeat, and the job ends cancelled).
    pub async fn cancel(&self, scope: Scope, target: &Target) -> JobsResult<CancelResult> {
        let now = self.now_ms();
        let mut q = query(
            "UPDATE job SET state = 4, finished_at = ?, updated_at = ? WHERE state IN (0, 5)",
        )
        .bind(now)
        .bind(now);
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        let cancelled = self.db().execute(q).await?.rows_affected;
        let mut q = query(
            "UPDATE job SET cancel_requested = 1, updated_at = ? \
             WHERE state = 1 AND cancel_requested = 0",
        )
        .bind(now);
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        let cancelling = self.db().execute(q).await?.rows_affected;
        Ok(CancelResult {
            cancelled,
            cancelling,
        })
    }

    /// Pause pending jobs: they are not claimed until resumed. Running jobs finish their run
    /// (pause a group before its next step starts, which is what SOP pausing needs).
    pub async fn pause(&self, scope: Scope, target: &Target) -> JobsResult<u64> {
        let now = self.now_ms();
        let mut q =
            query("UPDATE job SET state = 5, paused_at = ?, updated_at = ? WHERE state = 0")
                .bind(now)
                .bind(now);
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        Ok(self.db().execute(q).await?.rows_affected)
    }

    /// Resume paused jobs. With `shift`, each job's `run_at` moves later by how long it was
    /// paused, so the remaining SOP steps keep their spacing; without, overdue jobs run now.
    pub async fn resume(&self, scope: Scope, target: &Target, shift: bool) -> JobsResult<u64> {
        let now = self.now_ms();
        let mut q = if shift {
            query(
                "UPDATE job SET state = 0, run_at = run_at + (? - COALESCE(paused_at, ?)), \
                 paused_at = NULL, updated_at = ? WHERE state = 5",
            )
            .bind(now)
            .bind(now)
            .bind(now)
        } else {
            query("UPDATE job SET state = 0, paused_at = NULL, updated_at = ? WHERE state = 5")
                .bind(now)
        };
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        let n = self.db().execute(q).await?.rows_affected;
        if n > 0 {
            self.wake().await;
        }
        Ok(n)
    }

    /// Retry: dead jobs are replayed (fresh attempts, due now); with explicit ids, pending
    /// jobs waiting for a retry or a delay run now too. Returns how many were changed.
    pub async fn retry(&self, scope: Scope, target: &Target) -> JobsResult<u64> {
        let mut n = self.replay(scope, target).await?;
        if let Target::Ids(_) = target {
            // Only for explicit ids: a bulk "run every scheduled job now" would be a surprise.
            let now = self.now_ms();
            let mut q =
                query("UPDATE job SET run_at = ?, updated_at = ? WHERE state = 0 AND run_at > ?")
                    .bind(now)
                    .bind(now)
                    .bind(now);
            push_scope(&mut q, scope);
            push_target(&mut q, target);
            let m = self.db().execute(q).await?.rows_affected;
            if m > 0 {
                self.wake().await;
            }
            n += m;
        }
        Ok(n)
    }

    /// Replay dead jobs (the dead-letter queue): due now, with a fresh budget of attempts
    /// (attempt numbers continue, so the history stays readable).
    pub async fn replay(&self, scope: Scope, target: &Target) -> JobsResult<u64> {
        let now = self.now_ms();
        let mut q = query(
            "UPDATE job SET state = 0, max_attempts = attempts + max_attempts, run_at = ?, \
             finished_at = NULL, cancel_requested = 0, updated_at = ? WHERE state = 3",
        )
        .bind(now)
        .bind(now);
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        let n = self.db().execute(q).await?.rows_affected;
        if n > 0 {
            self.wake().await;
        }
        Ok(n)
    }

    /// Delete dead jobs for good (with their attempts).
    pub async fn purge_dead(&self, scope: Scope, target: &Target) -> JobsResult<u64> {
        let mut q = query("SELECT id FROM job WHERE state = 3");
        push_scope(&mut q, scope);
        push_target(&mut q, target);
        let ids: Vec<(i64,)> = self.db().fetch_all(q).await?;
        let mut n = 0;
        for chunk in ids.chunks(1000) {
            let mut tx = self.db().begin().await?;
            let mut q = query("DELETE FROM job_attempt WHERE job_id IN ");
            q.push_in_list(chunk.iter().map(|r| r.0));
            tx.execute(q).await?;
            let mut q = query("DELETE FROM job WHERE state = 3 AND id IN ");
            q.push_in_list(chunk.iter().map(|r| r.0));
            n += tx.execute(q).await?.rows_affected;
            tx.commit().await?;
        }
        Ok(n)
    }

    /// Registered workers (seed 002's worker status).
    pub async fn workers(&self) -> JobsResult<Vec<WorkerInfo>> {
        Ok(crate::worker::list(self.db(), self.now_ms(), 90_000).await?)
    }

    /// Statistics per kind and workers (see [`crate::stats`]).
    pub async fn stats(&self) -> JobsResult<crate::stats::Stats> {
        crate::stats::stats(self).await
    }

    /// Limited keys and their state.
    pub async fn key_limits(&self) -> JobsResult<Vec<crate::limits::KeyState>> {
        Ok(self
            .db()
            .fetch_all(query(
                "SELECT ckey, max_running, running, min_gap_ms, max_gap_ms, next_allowed_at \
                 FROM job_key ORDER BY ckey",
            ))
            .await?)
    }
}
