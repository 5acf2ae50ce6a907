//! Errors: [`JobsError`] for the engine and its API (storage, bad input, not found), and
//! [`JobError`] for what a handler reports (retry later, or give up now).

use scrm_db::DbError;

/// The result of an engine or API call.
pub type JobsResult<T> = Result<T, JobsError>;

/// What can go wrong calling the engine.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The database failed (kept apart so the HTTP edge can map NotFound/Conflict).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The job (or schedule, rule) does not exist or is not visible to the caller's tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid (bad cron expression, unknown time zone, bad payload).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A payload could not be encoded or decoded.
    #[error("payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// A handler's failure. `Retryable` follows the kind's backoff schedule until the attempts run
/// out; `Permanent` sends the job to the dead letters at once (a bad payload will not get
/// better by waiting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again later (network error, rate limit, WeCom -1).
    #[error("{0}")]
    Retryable(String),
    /// Do not try again.
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    /// A failure worth retrying.
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        JobError::Retryable(e.to_string())
    }

    /// A failure not worth retrying.
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        JobError::Permanent(e.to_string())
    }

    /// The message, whichever the variant.
    pub fn message(&self) -> &str {
        match self {
            JobError::Retryable(m) | JobError::Permanent(m) => m,
        }
    }
}

/// A payload that does not decode will not decode next time either.
impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError::Permanent(format!("payload: {e}"))
    }
}

/// Storage trouble inside a handler is usually transient.
impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Retryable(e.to_string())
    }
}

impl From<JobsError> for JobError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::Db(_) => JobError::Retryable(e.to_string()),
            _ => JobError::Permanent(e.to_string()),
        }
    }
}
