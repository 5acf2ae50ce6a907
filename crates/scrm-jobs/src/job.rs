//! The job model: states (seed 002's codes), a job to enqueue ([`NewJob`]), per-kind options
//! (timeout, backoff, attempts) and what a handler returns ([`JobOutcome`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{JobsError, JobsResult};

/// A job's id (the `job.id` primary key).
pub type JobId = i64;

/// A job's state. The stored codes are seed 002's task states, so the HTTP layer can show them
/// unchanged: a retry waiting for its backoff is `Pending` with `attempts > 0`, and the
/// dead-letter state is seed 002's "failed" (3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// 0 待执行: waiting for its `run_at` (new, scheduled, or waiting to retry).
    Pending,
    /// 1 执行中: claimed by a worker that holds its lease.
    Running,
    /// 2 已完成: finished successfully.
    Done,
    /// 3 失败: out of attempts or failed permanently; kept until replayed or purged.
    Dead,
    /// 4 已取消: cancelled before or while running.
    Cancelled,
    /// 5 暂停中: paused; not claimed until resumed.
    Paused,
}

impl JobState {
    /// Every state, in code order.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Paused,
    ];

    /// Seed 002's status code (also the stored value).
    pub fn code(self) -> i64 {
        match self {
            JobState::Pending => 0,
            JobState::Running => 1,
            JobState::Done => 2,
            JobState::Dead => 3,
            JobState::Cancelled => 4,
            JobState::Paused => 5,
        }
    }

    /// The state of a stored code.
    pub fn from_code(code: i64) -> Option<JobState> {
        JobState::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// A stable lowercase name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Paused => "paused",
        }
    }

    /// The label seed 002 uses.
    pub fn label_zh(self) -> &'static str {
        match self {
            JobState::Pending => "待执行",
            JobState::Running => "执行中",
            JobState::Done => "已完成",
            JobState::Dead => "失败",
            JobState::Cancelled => "已取消",
            JobState::Paused => "暂停中",
        }
    }
}

/// A limit on the jobs sharing one concurrency key (for example one WeCom sender account):
/// at most `max_running` at once, and between two starts a random gap in `min_gap..=max_gap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimit {
    /// Jobs of this key running at the same time, across all workers.
    pub max_running: i64,
    /// Shortest gap between two starts.
    pub min_gap_ms: i64,
    /// Longest gap between two starts (the gap is drawn uniformly between the two).
    pub max_gap_ms: i64,
}

impl KeyLimit {
    /// At most `n` running at once, no spacing.
    pub fn concurrency(n: i64) -> Self {
        Self {
            max_running: n.max(1),
            min_gap_ms: 0,
            max_gap_ms: 0,
        }
    }

    /// Add a random gap between starts (seed 002's "sleep(rand(3, 8))" as scheduling).
    pub fn with_spacing(mut self, min: Duration, max: Duration) -> Self {
        self.min_gap_ms = ms(min);
        self.max_gap_ms = ms(max).max(self.min_gap_ms);
        self
    }
}

/// A job to enqueue. Build with [`NewJob::new`] and the `with_*`/setter methods.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub(crate) kind: String,
    pub(crate) payload: String,
    pub(crate) run_at: Option<i64>,
    pub(crate) priority: i64,
    pub(crate) max_attempts: Option<i64>,
    pub(crate) unique_key: Option<String>,
    pub(crate) group_key: Option<String>,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) key_limit: Option<KeyLimit>,
    pub(crate) tenant_id: Option<i64>,
}

impl NewJob {
    /// A job of `kind` with a JSON payload, due now, priority 0.
    pub fn new(kind: impl Into<String>, payload: &impl Serialize) -> JobsResult<Self> {
        Ok(Self::from_json(kind, serde_json::to_string(payload)?))
    }

    /// A job whose payload is already JSON text.
    pub fn from_json(kind: impl Into<String>, payload: String) -> Self {
        Self {
            kind: kind.into(),
            payload,
            run_at: None,
            priority: 0,
            max_attempts: None,
            unique_key: None,
            group_key: None,
            concurrency_key: None,
            key_limit: None,
            tenant_id: None,
        }
    }

    /// Run at an epoch-millisecond time (a delayed job).
    pub fn run_at(mut self, at_ms: i64) -> Self {
        self.run_at = Some(at_ms);
        self
    }

    /// Jobs with a priority above 0 are claimed before every other due job, highest first;
    /// jobs at 0 or below run in `run_at` order.
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    /// Attempts before the job goes dead (default: the kind's, else 4 = first run + retries
    /// after 60 s, 300 s, 900 s).
    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// Make the enqueue idempotent: a second enqueue with the same key returns the first job's
    /// id. The key stays taken as long as the job row exists (until pruned).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// A group to pause, resume or cancel together (for example every step of one SOP run).
    pub fn group(mut self, key: impl Into<String>) -> Self {
        self.group_key = Some(key.into());
        self
    }

    /// A key whose limit (set here or with [`crate::Jobs::set_key_limit`]) caps running jobs.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// A key and its limit in one go; the limit is stored (upserted) with the job.
    pub fn limited_by(mut self, key: impl Into<String>, limit: KeyLimit) -> Self {
        self.concurrency_key = Some(key.into());
        self.key_limit = Some(limit);
        self
    }

    /// The tenant (company) the job belongs to; `None` for system jobs.
    pub fn tenant(mut self, tenant_id: impl Into<Option<i64>>) -> Self {
        self.tenant_id = tenant_id.into();
        self
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub(crate) fn validate(&self) -> JobsResult<()> {
        if self.kind.is_empty() || self.kind.len() > 100 {
            return Err(JobsError::Invalid("kind must be 1-100 characters".into()));
        }
        for (name, v) in [
            ("unique key", &self.unique_key),
            ("group key", &self.group_key),
            ("concurrency key", &self.concurrency_key),
        ] {
            if v.as_ref().is_some_and(|k| k.len() > 191) {
                return Err(JobsError::Invalid(format!("{name} longer than 191 bytes")));
            }
        }
        Ok(())
    }
}

/// How a kind runs: how long a run may take and how failures are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct KindOptions {
    /// A run longer than this is aborted and counted as a failed attempt (seed 002: 300 s).
    pub timeout: Duration,
    /// Delay before retry n (the last entry repeats); seed 002: 60 s, 300 s, 900 s.
    pub backoff: Vec<Duration>,
    /// Random extra delay, as a fraction of the backoff (0.1 = up to +10 %), so a burst of
    /// failures does not retry in lockstep.
    pub jitter: f64,
    /// Attempts of a job enqueued without its own `max_attempts`.
    pub max_attempts: i64,
}

impl Default for KindOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            backoff: vec![
                Duration::from_secs(60),
                Duration::from_secs(300),
                Duration::from_secs(900),
            ],
            jitter: 0.1,
            max_attempts: 4,
        }
    }
}

impl KindOptions {
    /// Set the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Set the backoff schedule.
    pub fn backoff(mut self, b: Vec<Duration>) -> Self {
        self.backoff = b;
        self
    }

    /// Set the jitter fraction (0 for exact retry times, as tests want).
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j.max(0.0);
        self
    }

    /// Set the default attempts.
    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based), jitter
    /// included.
    pub fn retry_delay_ms(&self, attempt: i64) -> i64 {
        let idx = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        let base = self
            .backoff
            .get(idx)
            .or(self.backoff.last())
            .map(|d| ms(*d))
            .unwrap_or(60_000);
        if self.jitter <= 0.0 {
            return base;
        }
        let extra = (base as f64 * self.jitter * rand::random::<f64>()) as i64;
        base + extra
    }
}

/// What a handler reports when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Finished.
    Done,
    /// Not finished, not failed: run again at this epoch-ms time without using an attempt
    /// (a polling job waiting for WeCom to confirm a mass send).
    RetryAt(i64),
    /// Like `RetryAt`, and replace the payload (a polling job advancing its cursor).
    Reschedule {
        /// When to run again (epoch ms).
        at: i64,
        /// The new payload.
        payload: serde_json::Value,
    },
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_are_seed_002s() {
        for (code, s) in JobState::ALL.iter().enumerate() {
            assert_eq!(s.code(), code as i64);
            assert_eq!(JobState::from_code(code as i64), Some(*s));
        }
        assert_eq!(JobState::from_code(6), None);
        assert_eq!(JobState::Dead.label_zh(), "失败");
    }

    #[test]
    fn backoff_follows_the_schedule_and_repeats_its_last_step() {
        let o = KindOptions::default().jitter(0.0);
        assert_eq!(o.retry_delay_ms(1), 60_000);
        assert_eq!(o.retry_delay_ms(2), 300_000);
        assert_eq!(o.retry_delay_ms(3), 900_000);
        assert_eq!(o.retry_delay_ms(9), 900_000);
        let j = KindOptions::default();
        let d = j.retry_delay_ms(1);
        assert!((60_000..=66_000).contains(&d), "{d}");
    }
}
