//! Claiming due jobs in batches. One transaction: pick candidates with `SKIP LOCKED` (so
//! concurrent engines never wait on each other's rows), apply the per-key limits, mark the
//! survivors running under this worker's lease.

use scrm_db::{Backend, Db, DbResult, Query, Tx, query};

use super::push_kinds;
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
    /// Skip jobs due before this (the in-order pass only). A dispatcher that just took
    /// everything due up to a moment sets it a little before that moment, so its next claims
    /// do not walk again the index entries its earlier claims left behind (on PostgreSQL every
    /// claimed job leaves a dead entry in the pending-jobs index at its old place until VACUUM; a burst
    /// of 100,000 due jobs made each later claim step over up to 100,000 of them). Jobs below
    /// the floor are found by the dispatcher's regular claims without one (see runner.rs).
    pub floor: Option<i64>,
}

/// Claim up to `limit` due jobs. Jobs with a priority above 0 go first (a small partial index
/// serves that pass); the rest in `run_at` order, which the `(state, run_at, id)` index serves
/// however many future jobs wait behind them.
///
/// On PostgreSQL the common case is one statement (see [`claim_postgres`]); MySQL/MariaDB and
/// SQLite take a short transaction: lock the candidates, apply the per-key limits, mark them.
///
/// A claim whose candidates were cut by their keys' limits claims again for the slots left
/// (the keys it filled are then filtered out in SQL): otherwise a backlog of one key's jobs at
/// the head of the queue fills every batch with candidates of which one can start, and the
/// jobs behind them wait. (Seen: a 100,000-customer workflow whose tag pushes, one at a time
/// per WeCom corp key, sat before 75,000 due workflow steps: eight jobs claimed a second.)
pub(crate) async fn claim(db: &Db, r: &ClaimRequest<'_>) -> DbResult<Vec<ClaimedJob>> {
    let mut out: Vec<ClaimedJob> = Vec::new();
    for _ in 0..RECLAIMS_AFTER_LIMITS + 1 {
        let want = r.limit - out.len();
        if want == 0 || r.kinds.is_empty() {
            break;
        }
        let (jobs, limited) = claim_once(db, &ClaimRequest { limit: want, ..*r }).await?;
        out.extend(jobs);
        if !limited {
            break;
        }
    }
    Ok(out)
}

/// How many times a claim is repeated after per-key limits cut its candidates.
const RECLAIMS_AFTER_LIMITS: usize = 3;

/// One claim; also whether per-key limits turned candidates away.
async fn claim_once(db: &Db, r: &ClaimRequest<'_>) -> DbResult<(Vec<ClaimedJob>, bool)> {
    super::CLAIM_TXS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let b = db.backend();
    if b == Backend::Postgres {
        return claim_postgres(db, r).await;
    }
    let mut tx = db.begin().await?;
    let rows = match tx.backend() {
        // One round trip for both passes: each branch locks its own rows.
        Backend::MySql => {
            let mut q = query("(");
            q.append(&candidates(b, r, true, r.limit));
            q.push_sql(" FOR UPDATE SKIP LOCKED) UNION ALL (");
            q.append(&candidates(b, r, false, r.limit));
            q.push_sql(" FOR UPDATE SKIP LOCKED)");
            let mut rows: Vec<ClaimedJob> = tx.fetch_all(q).await?;
            rows.truncate(r.limit);
            rows
        }
        _ => {
            let mut rows: Vec<ClaimedJob> = tx.fetch_all(candidates(b, r, true, r.limit)).await?;
            if rows.len() < r.limit {
                let more = candidates(b, r, false, r.limit - rows.len());
                rows.extend(tx.fetch_all::<ClaimedJob>(more).await?);
            }
            rows
        }
    };
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok((rows, false));
    }
    let candidates = rows.len();
    let rows = mark_claimed(&mut tx, rows, r).await?;
    tx.commit().await?;
    let limited = rows.len() < candidates;
    Ok((rows, limited))
}

/// Apply the per-key limits to locked candidates and mark the survivors running.
async fn mark_claimed(
    tx: &mut Tx,
    rows: Vec<ClaimedJob>,
    r: &ClaimRequest<'_>,
) -> DbResult<Vec<ClaimedJob>> {
    let mut rows = limits::allocate(tx, rows, r.now).await?;
    if rows.is_empty() {
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
    super::push_ids(&mut q, &rows.iter().map(|j| j.id).collect::<Vec<_>>());
    tx.execute(q).await?;
    for j in &mut rows {
        j.attempts += 1;
    }
    Ok(rows)
}

/// A row of the PostgreSQL claim: a job now ours (`claimed = 1`), or a candidate with a
/// concurrency key that still has to pass its key's limits (`claimed = 0`).
#[derive(sqlx::FromRow)]
struct PgClaimRow {
    #[sqlx(flatten)]
    job: ClaimedJob,
    claimed: i64,
}

/// PostgreSQL: lock the candidates of both passes with `SKIP LOCKED`, mark those without a
/// concurrency key running and return them, all in one statement (one round trip, no
/// explicit transaction). Candidates with a key come back unmarked and take the locked path
/// through their key's limits; they are rare (sender accounts), and are seen in due order
/// with the others, so a backlog of keyless jobs never starves them.
async fn claim_postgres(db: &Db, r: &ClaimRequest<'_>) -> DbResult<(Vec<ClaimedJob>, bool)> {
    let b = Backend::Postgres;
    let mut q = query("WITH u AS (");
    q.append(&candidates(b, r, true, r.limit));
    q.push_sql(" FOR UPDATE SKIP LOCKED), n AS (");
    q.append(&candidates(b, r, false, r.limit));
    q.push_sql(
        " FOR UPDATE SKIP LOCKED), pick AS (SELECT id, concurrency_key FROM \
         (SELECT id, concurrency_key, 0 AS o FROM u UNION ALL \
         SELECT id, concurrency_key, 1 AS o FROM n) c ORDER BY o LIMIT ?), \
         upd AS (UPDATE job SET state = 1, attempts = job.attempts + 1, worker_id = ?, \
         lease_until = ?, started_at = ?, updated_at = ? FROM pick \
         WHERE job.id = pick.id AND pick.concurrency_key IS NULL \
         RETURNING job.id, job.tenant_id, job.kind, job.payload, job.run_at, job.attempts, \
         job.max_attempts, job.group_key, job.concurrency_key) \
         SELECT id, tenant_id, kind, payload, run_at, attempts, max_attempts, group_key, \
         concurrency_key, CAST(1 AS BIGINT) AS claimed FROM upd UNION ALL \
         SELECT j.id, j.tenant_id, j.kind, j.payload, j.run_at, j.attempts, j.max_attempts, \
         j.group_key, j.concurrency_key, CAST(0 AS BIGINT) AS claimed \
         FROM pick JOIN job j ON j.id = pick.id WHERE pick.concurrency_key IS NOT NULL",
    );
    q.push_bind(r.limit)
        .push_bind(r.worker_id)
        .push_bind(r.lease_until)
        .push_bind(r.now)
        .push_bind(r.now);
    let rows: Vec<PgClaimRow> = db.fetch_all(q).await?;
    let mut mine = Vec::with_capacity(rows.len());
    let mut keyed = Vec::new();
    for row in rows {
        if row.claimed == 1 {
            mine.push(row.job);
        } else {
            keyed.push(row.job.id);
        }
    }
    if keyed.is_empty() {
        return Ok((mine, false));
    }
    // The keyed candidates: lock again (another engine may have taken some meanwhile), apply
    // the limits, mark.
    let mut tx = db.begin().await?;
    let mut q = query(
        "SELECT id, tenant_id, kind, payload, run_at, attempts, max_attempts, group_key, \
         concurrency_key FROM job WHERE state = 0 AND id IN ",
    );
    super::push_ids(&mut q, &keyed);
    q.push_sql(" ORDER BY run_at, id FOR UPDATE SKIP LOCKED");
    let rows: Vec<ClaimedJob> = tx.fetch_all(q).await?;
    let rows = mark_claimed(&mut tx, rows, r).await?;
    tx.commit().await?;
    let limited = rows.len() < keyed.len();
    mine.extend(rows);
    Ok((mine, limited))
}

/// The candidate scan of one pass, without its lock clause.
fn candidates(backend: Backend, r: &ClaimRequest<'_>, urgent: bool, limit: usize) -> Query {
    // `state = 0` and `priority > 0` are literals so PostgreSQL and SQLite match the partial
    // index `idx_job_urgent`.
    let mut q = query(
        "SELECT id, tenant_id, kind, payload, run_at, attempts, max_attempts, group_key, \
         concurrency_key FROM job WHERE state = 0 AND run_at <= ?",
    )
    .bind(r.now);
    q.push_sql(match (urgent, backend) {
        // MySQL: the virtual column of idx_job_urgent (set only on pending urgent jobs).
        (true, Backend::MySql) => " AND urgent_priority > 0",
        (true, _) => " AND priority > 0",
        (false, _) => " AND priority <= 0",
    });
    if let (false, Some(floor)) = (urgent, r.floor) {
        q.push_sql(" AND run_at >= ?");
        q.push_bind(floor);
    }
    push_kinds(&mut q, backend, r.kinds);
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
    q
}
