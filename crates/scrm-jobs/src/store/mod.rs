//! The SQL of the hot path: claiming due jobs ([`claim`]), finishing them in batches by
//! primary key ([`finish`]), leases (heartbeat and expiry) and the next due time. Dialect
//! differences stay here: `FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL/MariaDB, the
//! `BEGIN IMMEDIATE` write lock on SQLite, and the upsert syntax.

pub(crate) mod claim;
pub(crate) mod finish;

use scrm_db::{Backend, Db, DbResult, Query, query};

use std::sync::atomic::AtomicU64;

/// Claim transactions run by this process (the benchmark reports jobs per claim).
pub(crate) static CLAIM_TXS: AtomicU64 = AtomicU64::new(0);
/// Finishing transactions run by this process.
pub(crate) static FINISH_TXS: AtomicU64 = AtomicU64::new(0);

pub(crate) use claim::{ClaimRequest, ClaimedJob, claim};
pub(crate) use finish::{FinishSummary, Finished, Outcome, finish};

/// The row-lock suffix that waits (for rows we must not skip, like limit keys).
pub(crate) fn for_update(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "",
        _ => " FOR UPDATE",
    }
}

/// `SUM(expr)` as a BIGINT on every backend (PostgreSQL sums BIGINT to NUMERIC, MySQL to
/// DECIMAL, which would not decode as `i64`), 0 for no rows.
pub(crate) fn sum_i64(b: Backend, expr: &str) -> String {
    match b {
        Backend::Postgres => format!("COALESCE(CAST(SUM({expr}) AS BIGINT), 0)"),
        Backend::MySql => format!("COALESCE(CAST(SUM({expr}) AS SIGNED), 0)"),
        Backend::Sqlite => format!("COALESCE(SUM({expr}), 0)"),
    }
}

/// Append ` AND kind IN (…)` unless every kind is wanted.
///
/// The kind is compared as an expression (`kind || ''`, MySQL `CONCAT(kind, '')`) so that no
/// index on `kind` can serve it: the due scans must go through the pending-jobs index
/// (`idx_job_pending` on PostgreSQL, `idx_job_due` elsewhere), which reaches the due jobs directly however many wait in the future. (On PostgreSQL
/// the expression has statistics of its own, migration 20261126300001: without them the
/// planner guessed it keeps 0.5 % of the rows and sorted the whole queue instead.) Without this, a
/// planner whose statistics predate a burst of enqueues (PostgreSQL before autovacuum's next
/// ANALYZE) picked `idx_job_kind` and read every pending job of the kind on each claim: 51 ms
/// instead of 0.5 ms a claim with 100,000 delayed jobs, and seconds of lateness.
pub(crate) fn push_kinds(q: &mut Query, backend: Backend, kinds: &[String]) {
    if !kinds.is_empty() {
        q.push_sql(match backend {
            Backend::MySql => " AND CONCAT(kind, '') IN ",
            _ => " AND (kind || '') IN ",
        });
        q.push_in_list(kinds.iter().map(String::as_str));
    }
}

/// Append `(?, ?, …)` for a list of job ids, padded with copies of the last id to a power of
/// two (at least 8). The hot statements (claim marks, finishes) then come in a handful of
/// shapes instead of one per batch size: each distinct SQL text is a server-side prepare (a
/// round trip, and on MySQL a statement to close when it falls out of the connection's
/// statement cache), and batch sizes vary from 1 to the claim batch with every claim.
/// A repeated id in `IN (…)` changes nothing.
pub(crate) fn push_ids(q: &mut Query, ids: &[i64]) {
    let Some(&last) = ids.last() else {
        q.push_in_list(std::iter::empty::<i64>());
        return;
    };
    let n = ids.len().max(8).next_power_of_two();
    q.push_in_list(
        ids.iter()
            .copied()
            .chain(std::iter::repeat_n(last, n - ids.len())),
    );
}

/// The earliest moment something may become claimable after `now`: a pending job's `run_at`
/// or a spaced key's `next_allowed_at`. The engine sleeps until then (or its poll interval).
pub(crate) async fn next_wake(db: &Db, now: i64, kinds: &[String]) -> DbResult<Option<i64>> {
    // One round trip for both minima. The job's is the first row of the pending-jobs index
    // after `now` (`ORDER BY run_at LIMIT 1`), not `MIN(run_at)`: with the kind filter
    // MariaDB cannot shortcut MIN and read every pending job due after `now` to find it —
    // 46,600 rows and 110 ms a call with 100,000 delayed jobs queued, measured (session 9),
    // and a dispatcher waits for the answer before it claims again. PostgreSQL's plan for
    // the MIN form was an Aggregate over the same index range too; now a Limit over it.
    let mut q = query("SELECT (SELECT run_at FROM job WHERE state = 0 AND run_at > ?").bind(now);
    push_kinds(&mut q, db.backend(), kinds);
    q.push_sql(
        " ORDER BY run_at LIMIT 1), \
         (SELECT MIN(next_allowed_at) FROM job_key WHERE next_allowed_at > ?)",
    );
    q.push_bind(now);
    let (job, key) = db.fetch_one::<(Option<i64>, Option<i64>)>(q).await?;
    Ok(match (job, key) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Extend the leases of every job this worker runs, and report each one's
/// `cancel_requested` flag. A job missing from the answer is no longer ours (its lease
/// expired and the reaper took it): the caller cancels it locally.
///
/// The update names the jobs by id, in id order, as the result writer locks them (store/finish.rs):
/// an update by `worker_id` locked the rows in the order of whatever index it walked, and
/// met a result write locking the same rows by id in a deadlock (seen on PostgreSQL under load;
/// the writer retried, nothing was lost, but one of the two waited for the deadlock timeout).
pub(crate) async fn heartbeat_leases(
    db: &Db,
    worker_id: &str,
    lease_until: i64,
    now: i64,
) -> DbResult<Vec<(i64, i64)>> {
    let mut ids: Vec<i64> = db
        .fetch_all::<(i64,)>(
            query("SELECT id FROM job WHERE worker_id = ? AND state = 1").bind(worker_id),
        )
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    ids.sort_unstable();
    for chunk in ids.chunks(512) {
        let mut q = query("UPDATE job SET lease_until = ?, updated_at = ? WHERE state = 1 AND worker_id = ? AND id IN ")
            .bind(lease_until)
            .bind(now)
            .bind(worker_id);
        push_ids(&mut q, chunk);
        db.execute(q).await?;
    }
    db.fetch_all(
        query("SELECT id, cancel_requested FROM job WHERE worker_id = ? AND state = 1")
            .bind(worker_id),
    )
    .await
}

/// A running job whose lease ran out (its worker died, hung, or lost the database).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Expired {
    pub id: i64,
    pub kind: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub concurrency_key: Option<String>,
    pub worker_id: Option<String>,
    pub started_at: Option<i64>,
}

pub(crate) async fn expired_leases(db: &Db, now: i64, limit: i64) -> DbResult<Vec<Expired>> {
    db.fetch_all(
        query(
            "SELECT id, kind, attempts, max_attempts, concurrency_key, worker_id, started_at \
             FROM job WHERE state = 1 AND lease_until < ? ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(limit),
    )
    .await
}

/// Rows changed since the job table's last ANALYZE, beyond which its statistics are refreshed
/// (PostgreSQL)…
const STATS_MIN_CHANGES: i64 = 10_000;
/// …when they are also this share of the rows the statistics describe.
const STATS_CHANGED_SHARE: f64 = 0.2;

/// PostgreSQL: ANALYZE the job table when its statistics are stale (more than
/// [`STATS_MIN_CHANGES`] rows changed since the last ANALYZE, and at least a fifth of what it
/// counted); returns whether it did. One process at a time (an advisory lock, skipped when
/// held). Other backends keep their own statistics current and return false.
///
/// Why: the claim's plan depends on them. A queue that was empty (or all finished) at its last
/// ANALYZE and then receives 100,000 jobs is planned as holding a dozen rows: a bitmap scan of
/// every pending job and a sort spilled to disk on EVERY claim of 128 (100–180 ms a claim,
/// measured: 1,700 jobs/s drained instead of thousands) until autovacuum's next ANALYZE —
/// up to a minute away (`autovacuum_naptime`), or never where autovacuum is off.
pub(crate) async fn refresh_statistics(db: &Db) -> DbResult<bool> {
    if db.backend() != Backend::Postgres {
        return Ok(false);
    }
    let (changed, counted): (i64, i64) = db
        .fetch_one(query(
            "SELECT COALESCE(s.n_mod_since_analyze, 0), CAST(GREATEST(c.reltuples, 0) AS BIGINT) \
             FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE c.oid = CAST('job' AS regclass)",
        ))
        .await?;
    if changed < STATS_MIN_CHANGES || (changed as f64) < counted as f64 * STATS_CHANGED_SHARE {
        return Ok(false);
    }
    let mut tx = db.begin().await?;
    // Any number of worker processes may see the same staleness; one ANALYZE is enough.
    let (got,): (bool,) = tx
        .fetch_one(query("SELECT pg_try_advisory_xact_lock(7243500163)"))
        .await?;
    if got {
        tx.execute(query("ANALYZE job")).await?;
    }
    tx.commit().await?;
    Ok(got)
}
