//! Finishing jobs: one transaction per batch of results, updates grouped by outcome and keyed
//! by primary key, failed attempts recorded, limit keys released and the per-minute statistics
//! bumped, so a drain of 100,000 jobs costs a few hundred statements, not 100,000.

use std::collections::{BTreeMap, HashMap};

use scrm_db::{Backend, Db, DbResult, Tx, query};

use super::for_update;

/// How a run ended, as the store applies it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Finished successfully.
    Done,
    /// Failed; back to pending at `at`.
    Retry { at: i64, error: String },
    /// Failed for the last time (or permanently).
    Dead { error: String },
    /// Not a failure: run again at `at` without using an attempt, maybe with a new payload.
    Reschedule { at: i64, payload: Option<String> },
    /// Given back unrun (shutdown drain timed out): pending again, attempt not counted.
    Release,
}

/// One run's result.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub id: i64,
    pub kind: String,
    pub attempt: i64,
    pub worker_id: Option<String>,
    pub concurrency_key: Option<String>,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: Outcome,
    /// How the failure happened ("error", "timeout", "panic", "lease_expired").
    pub failure: &'static str,
}

/// What a batch changed, per kind, for the metrics.
#[derive(Debug, Default, Clone)]
pub(crate) struct FinishSummary {
    pub per_kind: BTreeMap<String, KindDelta>,
    /// A limit key was released: jobs waiting on it may start now.
    pub freed_key: bool,
    /// Rows actually written (others were no longer ours).
    pub applied: usize,
}

/// Counters of one kind in one batch.
#[derive(Debug, Default, Clone)]
pub(crate) struct KindDelta {
    pub completed: i64,
    pub failed: i64,
    pub dead: i64,
    pub cancelled: i64,
    pub duration_ms: i64,
    pub durations: Vec<i64>,
}

/// Apply a batch of results. With `owner`, only rows still running under that worker are
/// touched (a job whose lease expired and was taken over is not ours to finish); without it
/// (the reaper), only rows still running with an expired lease at `now`.
pub(crate) async fn finish(
    db: &Db,
    owner: Option<&str>,
    batch: &[Finished],
    now: i64,
    record_every_attempt: bool,
) -> DbResult<FinishSummary> {
    let mut summary = FinishSummary::default();
    if batch.is_empty() {
        return Ok(summary);
    }
    super::FINISH_TXS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = owner
        && batch
            .iter()
            .all(|f| f.outcome == Outcome::Done && f.concurrency_key.is_none())
        && !record_every_attempt
    {
        return finish_all_done(db, w, batch, now).await;
    }
    let mut tx = db.begin().await?;
    let backend = tx.backend();
    let mut q = query("SELECT id, cancel_requested FROM job WHERE state = 1 AND id IN ");
    super::push_ids(&mut q, &batch.iter().map(|f| f.id).collect::<Vec<_>>());
    match owner {
        Some(w) => {
            q.push_sql(" AND worker_id = ?");
            q.push_bind(w);
        }
        None => {
            q.push_sql(" AND lease_until < ?");
            q.push_bind(now);
        }
    }
    q.push_sql(" ORDER BY id");
    q.push_sql(for_update(backend));
    let owned: HashMap<i64, i64> = tx.fetch_all::<(i64, i64)>(q).await?.into_iter().collect();

    let mut done = Vec::new();
    let mut cancelled = Vec::new();
    let mut released = Vec::new();
    let mut attempts_rows = Vec::new();
    let mut keys: BTreeMap<&str, i64> = BTreeMap::new();
    for f in batch {
        let Some(cancel) = owned.get(&f.id) else {
            continue;
        };
        summary.applied += 1;
        if let Some(k) = &f.concurrency_key {
            *keys.entry(k.as_str()).or_default() += 1;
        }
        let d = summary.per_kind.entry(f.kind.clone()).or_default();
        let took = (f.finished_at - f.started_at).max(0);
        // A cancel request wins over anything but success: work that finished stays done.
        let outcome = if *cancel == 1 && f.outcome != Outcome::Done {
            None
        } else {
            Some(&f.outcome)
        };
        match outcome {
            None => {
                d.cancelled += 1;
                cancelled.push(f.id);
                if record_every_attempt {
                    attempts_rows.push((f, "cancelled", None));
                }
            }
            Some(Outcome::Done) => {
                d.completed += 1;
                d.duration_ms += took;
                d.durations.push(took);
                done.push(f.id);
                if record_every_attempt {
                    attempts_rows.push((f, "done", None));
                }
            }
            Some(Outcome::Retry { at, error }) => {
                d.failed += 1;
                tx.execute(
                    query(
                        "UPDATE job SET state = 0, run_at = ?, last_error = ?, lease_until = NULL, \
                         updated_at = ? WHERE id = ?",
                    )
                    .bind(*at)
                    .bind(error.as_str())
                    .bind(now)
                    .bind(f.id),
                )
                .await?;
                attempts_rows.push((f, f.failure, Some(error.as_str())));
            }
            Some(Outcome::Dead { error }) => {
                d.failed += 1;
                d.dead += 1;
                tx.execute(
                    query(
                        "UPDATE job SET state = 3, last_error = ?, lease_until = NULL, \
                         finished_at = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(error.as_str())
                    .bind(now)
                    .bind(now)
                    .bind(f.id),
                )
                .await?;
                attempts_rows.push((f, f.failure, Some(error.as_str())));
            }
            Some(Outcome::Reschedule { at, payload }) => {
                tx.execute(
                    query(
                        "UPDATE job SET state = 0, run_at = ?, attempts = attempts - 1, \
                         payload = COALESCE(?, payload), lease_until = NULL, updated_at = ? \
                         WHERE id = ?",
                    )
                    .bind(*at)
                    .bind(payload.clone())
                    .bind(now)
                    .bind(f.id),
                )
                .await?;
                if record_every_attempt {
                    attempts_rows.push((f, "rescheduled", None));
                }
            }
            Some(Outcome::Release) => released.push(f.id),
        }
    }
    for (ids, state) in [(&done, 2), (&cancelled, 4)] {
        if ids.is_empty() {
            continue;
        }
        let mut q = query(
            "UPDATE job SET state = ?, finished_at = ?, lease_until = NULL, updated_at = ? \
             WHERE id IN ",
        )
        .bind(state as i64)
        .bind(now)
        .bind(now);
        super::push_ids(&mut q, ids);
        tx.execute(q).await?;
    }
    if !released.is_empty() {
        let mut q = query(
            "UPDATE job SET state = 0, attempts = attempts - 1, run_at = ?, lease_until = NULL, \
             updated_at = ? WHERE id IN ",
        )
        .bind(now)
        .bind(now);
        super::push_ids(&mut q, &released);
        tx.execute(q).await?;
    }
    insert_attempts(&mut tx, &attempts_rows).await?;
    for (key, n) in &keys {
        tx.execute(
            query(
                "UPDATE job_key SET running = CASE WHEN running > ? THEN running - ? ELSE 0 END, \
                 updated_at = ? WHERE ckey = ?",
            )
            .bind(*n)
            .bind(*n)
            .bind(now)
            .bind(*key),
        )
        .await?;
    }
    summary.freed_key = !keys.is_empty();
    bump_stats(&mut tx, &summary, now).await?;
    tx.commit().await?;
    Ok(summary)
}

/// The common case, all successes without limit keys: one UPDATE per kind (guarded by owner
/// and state, so a job taken over after a lost lease is left alone) and the statistics, with
/// no locking read first. A success stays a success even if a cancel arrived meanwhile.
async fn finish_all_done(
    db: &Db,
    worker: &str,
    batch: &[Finished],
    now: i64,
) -> DbResult<FinishSummary> {
    let mut by_kind: BTreeMap<&str, Vec<&Finished>> = BTreeMap::new();
    for f in batch {
        by_kind.entry(f.kind.as_str()).or_default().push(f);
    }
    let mut summary = FinishSummary::default();
    if db.backend() == Backend::Postgres {
        // One statement per kind, no explicit transaction: the update and its statistics row
        // commit together.
        for (kind, fs) in by_kind {
            let took: i64 = fs
                .iter()
                .map(|f| (f.finished_at - f.started_at).max(0))
                .sum();
            let mut q = query(
                "WITH d AS (UPDATE job SET state = 2, finished_at = ?, lease_until = NULL, \
                 updated_at = ? WHERE state = 1 AND worker_id = ? AND id IN ",
            )
            .bind(now)
            .bind(now)
            .bind(worker);
            super::push_ids(&mut q, &fs.iter().map(|f| f.id).collect::<Vec<_>>());
            // The duration total counts every job of the batch; if a few were no longer ours
            // (taken over after a lease expiry) it is approximate, fine for statistics.
            q.push_sql(
                " RETURNING id), s AS (INSERT INTO job_stat (kind, bucket, completed, failed, \
                 dead, duration_ms) SELECT ?, ?, COUNT(*), 0, 0, ? FROM d HAVING COUNT(*) > 0 \
                 ON CONFLICT (kind, bucket) DO UPDATE SET \
                 completed = job_stat.completed + excluded.completed, \
                 duration_ms = job_stat.duration_ms + excluded.duration_ms) \
                 SELECT COUNT(*) FROM d",
            );
            q.push_bind(kind).push_bind(minute(now)).push_bind(took);
            let applied = db.fetch_i64(q).await? as usize;
            record_done(&mut summary, kind, &fs, applied);
        }
        return Ok(summary);
    }
    let mut tx = db.begin().await?;
    for (kind, fs) in by_kind {
        let mut q = query(
            "UPDATE job SET state = 2, finished_at = ?, lease_until = NULL, updated_at = ? \
             WHERE state = 1 AND worker_id = ? AND id IN ",
        )
        .bind(now)
        .bind(now)
        .bind(worker);
        super::push_ids(&mut q, &fs.iter().map(|f| f.id).collect::<Vec<_>>());
        let applied = tx.execute(q).await?.rows_affected as usize;
        record_done(&mut summary, kind, &fs, applied);
    }
    bump_stats(&mut tx, &summary, now).await?;
    tx.commit().await?;
    Ok(summary)
}

/// Count `applied` completions of `kind` into the summary. If some rows were no longer ours
/// the durations are approximate; fine for statistics.
fn record_done(summary: &mut FinishSummary, kind: &str, fs: &[&Finished], applied: usize) {
    summary.applied += applied;
    let d = summary.per_kind.entry(kind.to_string()).or_default();
    d.completed = applied as i64;
    for f in fs.iter().take(applied) {
        let took = (f.finished_at - f.started_at).max(0);
        d.duration_ms += took;
        d.durations.push(took);
    }
}

async fn insert_attempts(tx: &mut Tx, rows: &[(&Finished, &str, Option<&str>)]) -> DbResult<()> {
    for chunk in rows.chunks(500) {
        let mut q = query(
            "INSERT INTO job_attempt (job_id, attempt, worker_id, started_at, finished_at, \
             outcome, error) VALUES ",
        );
        for (i, (f, outcome, error)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?, ?)");
            q.push_bind(f.id)
                .push_bind(f.attempt)
                .push_bind(f.worker_id.clone())
                .push_bind(f.started_at)
                .push_bind(f.finished_at)
                .push_bind(*outcome)
                .push_bind(error.map(str::to_string));
        }
        tx.execute(q).await?;
    }
    Ok(())
}

/// The statistics bucket (start of the minute) of a time.
pub(crate) fn minute(now: i64) -> i64 {
    now - now.rem_euclid(60_000)
}

async fn bump_stats(tx: &mut Tx, s: &FinishSummary, now: i64) -> DbResult<()> {
    let bucket = minute(now);
    // Kinds in sorted order (BTreeMap) so two engines never lock stat rows in opposite order.
    for (kind, d) in &s.per_kind {
        if d.completed + d.failed + d.dead == 0 {
            continue;
        }
        let mut q = query(
            "INSERT INTO job_stat (kind, bucket, completed, failed, dead, duration_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(kind.as_str())
        .bind(bucket)
        .bind(d.completed)
        .bind(d.failed)
        .bind(d.dead)
        .bind(d.duration_ms);
        q.push_sql(match tx.backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE completed = completed + VALUES(completed), \
                 failed = failed + VALUES(failed), dead = dead + VALUES(dead), \
                 duration_ms = duration_ms + VALUES(duration_ms)"
            }
            _ => {
                " ON CONFLICT (kind, bucket) DO UPDATE SET \
                 completed = job_stat.completed + excluded.completed, \
                 failed = job_stat.failed + excluded.failed, dead = job_stat.dead + excluded.dead, \
                 duration_ms = job_stat.duration_ms + excluded.duration_ms"
            }
        });
        tx.execute(q).await?;
    }
    Ok(())
}
