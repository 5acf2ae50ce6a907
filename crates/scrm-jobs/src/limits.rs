//! Per-key limits as scheduling, never as a sleeping worker: a `job_key` row per limited key
//! (a WeCom sender account, a corp) holds how many of its jobs may run at once, how many run
//! now, and — for spacing — the earliest time the next one may start. The claim transaction
//! reads and updates these rows under lock; finishing a job releases its slot in the same
//! transaction that finishes it. Keys without a row are unlimited.

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use scrm_db::{DbResult, Tx, query};
use serde::Serialize;

use crate::store::{ClaimedJob, for_update};

/// A limited key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct KeyState {
    /// The key.
    pub ckey: String,
    /// Most jobs of the key running at once.
    pub max_running: i64,
    /// Jobs of the key running now.
    pub running: i64,
    /// Shortest gap between starts (ms).
    pub min_gap_ms: i64,
    /// Longest gap between starts (ms).
    pub max_gap_ms: i64,
    /// No job of the key starts before this (epoch ms).
    pub next_allowed_at: i64,
}

/// Keep the candidates their keys allow, in order, and take their slots. The candidates are
/// already row-locked by the claim; the key rows are locked here in key order, the same order
/// [`crate::store::finish`] uses, so claims and finishes cannot deadlock.
pub(crate) async fn allocate(
    tx: &mut Tx,
    rows: Vec<ClaimedJob>,
    now: i64,
) -> DbResult<Vec<ClaimedJob>> {
    let names: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.concurrency_key.as_deref())
        .collect();
    if names.is_empty() {
        return Ok(rows);
    }
    let mut q = query(
        "SELECT ckey, max_running, running, min_gap_ms, max_gap_ms, next_allowed_at \
         FROM job_key WHERE ckey IN ",
    );
    q.push_in_list(names.iter().copied());
    q.push_sql(" ORDER BY ckey");
    q.push_sql(for_update(tx.backend()));
    let mut keys: HashMap<String, (KeyState, bool)> = tx
        .fetch_all::<KeyState>(q)
        .await?
        .into_iter()
        .map(|k| (k.ckey.clone(), (k, false)))
        .collect();
    let mut keep = Vec::with_capacity(rows.len());
    for row in rows {
        let Some((k, dirty)) = row
            .concurrency_key
            .as_deref()
            .and_then(|name| keys.get_mut(name))
        else {
            keep.push(row);
            continue;
        };
        if k.running >= k.max_running || k.next_allowed_at > now {
            continue;
        }
        k.running += 1;
        if k.max_gap_ms > 0 {
            k.next_allowed_at = now + gap(k.min_gap_ms, k.max_gap_ms);
        }
        *dirty = true;
        keep.push(row);
    }
    let mut changed: Vec<&KeyState> = keys.values().filter(|(_, d)| *d).map(|(k, _)| k).collect();
    changed.sort_by(|a, b| a.ckey.cmp(&b.ckey));
    for k in changed {
        tx.execute(
            query(
                "UPDATE job_key SET running = ?, next_allowed_at = ?, updated_at = ? \
                 WHERE ckey = ?",
            )
            .bind(k.running)
            .bind(k.next_allowed_at)
            .bind(now)
            .bind(k.ckey.as_str()),
        )
        .await?;
    }
    Ok(keep)
}

fn gap(min: i64, max: i64) -> i64 {
    if max <= min {
        return min;
    }
    rand::rng().random_range(min..=max)
}

#[cfg(test)]
mod tests {
    use super::gap;

    #[test]
    fn gaps_stay_within_their_range() {
        for _ in 0..1000 {
            let g = gap(3_000, 8_000);
            assert!((3_000..=8_000).contains(&g));
        }
        assert_eq!(gap(5, 5), 5);
    }
}
