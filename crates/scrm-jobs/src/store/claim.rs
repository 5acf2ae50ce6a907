//! Claiming due jobs in batches. One transaction: pick candidates with `SKIP LOCKED` (so
//! concurrent engines never wait on each other's rows), apply the per-key limits, mark the
//! survivors running under this worker's lease.

use scrm_db::{Db, DbResult, Tx, query};

use super::{push_kinds, skip_locked};
use crate::limits;

/// A job this worker now holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ClaimedJob {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub run_at: i64,
    /// The attempt now starting (1-based; incremented by the claim).
    pub attempts: i64,
    pub max_attempts: i64,
    pub group_key: Option<String>,
    pub concurrency_key: Option<String>,
}

/// What to claim.
#[derive(Debug)]
pub(crate) struct ClaimRequest<'a> {
    pub worker_id: &'a str,
    pub now: i64,
    pub lease_until: i64,
    pub limit: usize,
    /// The kinds this engine has handlers for.
    pub kinds: &'a [String],
}

/// Claim up to `limit` due jobs. Jobs with a priority above 0 go first (a small partial index
/// serves that pass); the rest in `run_at` order, which the `(state, run_at, id)` index serves
/// however many future jobs wait behind them.
pub(crate) async fn claim(db: &Db, r: &ClaimRequest<'_>) -> DbResult<Vec<ClaimedJob>> {
    if r.limit == 0 || r.kinds.is_empty() {
        return Ok(Vec::new());
    }
    super::CLAIM_TXS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tx = db.begin().await?;
    let mut rows = candidates(&mut tx, r, true, r.limit).await?;
    if rows.len() < r.limit {
        let more = candidates(&mut tx, r, false, r.limit - rows.len()).await?;
        rows.extend(more);
    }
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(rows);
    }
    let mut rows = limits::allocate(&mut tx, rows, r.now).await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(rows);
    }
    let mut q = query(
        "UPDATE job SET state = 1, attempts = attempts + 1, worker_id = ?, lease_until = ?, \
         started_at = ?, updated_at = ? WHERE id IN ",
    )
    .bind(r.worker_id)
    .bind(r.lease_until)
    .bind(r.now)
    .bind(r.now);
    q.push_in_list(rows.iter().map(|j| j.id));
    tx.execute(q).await?;
    tx.commit().await?;
    for j in &mut rows {
        j.attempts += 1;
    }
    Ok(rows)
}

async fn candidates(
    tx: &mut Tx,
    r: &ClaimRequest<'_>,
    urgent: bool,
    limit: usize,
) -> DbResult<Vec<ClaimedJob>> {
    // `state = 0` and `priority > 0` are literals so PostgreSQL and SQLite match the partial
    // index `idx_job_urgent`.
    let mut q = query(
        "SELECT id, tenant_id, kind, payload, run_at, attempts, max_attempts, group_key, \
         concurrency_key FROM job WHERE state = 0 AND run_at <= ?",
    )
    .bind(r.now);
    q.push_sql(if urgent {
        " AND priority > 0"
    } else {
        " AND priority <= 0"
    });
    push_kinds(&mut q, r.kinds);
    // Keys at their limit are filtered in SQL, so a backlog of one busy sender account does
    // not fill every batch with jobs that cannot start.
    q.push_sql(
        " AND (concurrency_key IS NULL OR concurrency_key NOT IN \
         (SELECT ckey FROM job_key WHERE running >= max_running OR next_allowed_at > ?))",
    );
    q.push_bind(r.now);
    q.push_sql(if urgent {
        " ORDER BY priority DESC, run_at, id LIMIT ?"
    } else {
        " ORDER BY run_at, id LIMIT ?"
    });
    q.push_bind(limit);
    q.push_sql(skip_locked(tx.backend()));
    tx.fetch_all(q).await
}
