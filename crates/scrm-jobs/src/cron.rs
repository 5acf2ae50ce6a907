//! Cron schedules stored in `job_schedule`, each with its own time zone (Asia/Shanghai by
//! default), fired exactly once per tick however many engines run.
//!
//! Exactly once: an engine fires a due schedule by moving its `next_fire_at` forward with a
//! conditional `UPDATE … WHERE name = ? AND next_fire_at = <the value it read>` and enqueues
//! the job in the same transaction; only the engine whose UPDATE changed the row enqueues, and
//! the job's unique key `cron:<name>:<tick>` guards even against a clock-skewed repeat.
//!
//! Missed ticks: when engines were down across several ticks, the schedule fires **once**, for
//! the latest missed tick, and the older ones are skipped (a report run three times in a row
//! after an outage helps nobody). The job's `run_at` is that tick.
//!
//! Expressions are croner's: 5 fields, or 6 with seconds first (`*/10 * * * * *`).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use scrm_db::{Backend, Db, DbResult, query};
use serde::{Deserialize, Serialize};

use crate::error::{JobsError, JobsResult};
use crate::job::NewJob;
use crate::queue::Jobs;

/// A schedule to create or replace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name (the key).
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// IANA zone the expression is read in.
    pub timezone: String,
    /// The kind of job each tick enqueues.
    pub kind: String,
    /// The payload of each job.
    pub payload: serde_json::Value,
    /// The tenant the jobs belong to (None: system).
    pub tenant_id: Option<i64>,
    /// Priority of each job.
    pub priority: i64,
    /// Attempts of each job (None: the kind's default).
    pub max_attempts: Option<i64>,
    /// A disabled schedule does not fire.
    pub enabled: bool,
}

impl Schedule {
    /// A schedule in Asia/Shanghai with an empty payload.
    pub fn new(name: &str, cron: &str, kind: &str) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            timezone: "Asia/Shanghai".into(),
            kind: kind.into(),
            payload: serde_json::json!({}),
            tenant_id: None,
            priority: 0,
            max_attempts: None,
            enabled: true,
        }
    }
}

/// A schedule as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub payload: String,
    pub tenant_id: Option<i64>,
    pub priority: i64,
    pub max_attempts: Option<i64>,
    pub enabled: i64,
    pub next_fire_at: i64,
    pub last_fire_at: Option<i64>,
    pub last_job_id: Option<i64>,
}

fn parse(expr: &str, tz: &str) -> JobsResult<(Cron, Tz)> {
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| JobsError::Invalid(format!("cron {expr:?}: {e}")))?;
    let tz = Tz::from_str(tz).map_err(|e| JobsError::Invalid(format!("time zone {tz:?}: {e}")))?;
    Ok((cron, tz))
}

fn at(tz: &Tz, ms: i64) -> JobsResult<DateTime<Tz>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.with_timezone(tz))
        .ok_or_else(|| JobsError::Invalid(format!("time {ms} out of range")))
}

/// The first tick strictly after `after_ms`.
pub fn next_after(expr: &str, tz: &str, after_ms: i64) -> JobsResult<i64> {
    let (cron, tz) = parse(expr, tz)?;
    let t = cron
        .find_next_occurrence(&at(&tz, after_ms)?, false)
        .map_err(|e| JobsError::Invalid(format!("cron {expr:?} never fires: {e}")))?;
    Ok(t.timestamp_millis())
}

/// The last tick at or before `now_ms`, not earlier than `floor_ms`.
fn latest_tick(cron: &Cron, tz: &Tz, floor_ms: i64, now_ms: i64) -> JobsResult<i64> {
    let prev = cron
        .find_previous_occurrence(&at(tz, now_ms)?, true)
        .map(|t| t.timestamp_millis())
        .unwrap_or(floor_ms);
    Ok(prev.max(floor_ms))
}

impl Jobs {
    /// Create or replace a schedule; its next tick is computed from now.
    pub async fn upsert_schedule(&self, s: &Schedule) -> JobsResult<()> {
        let now = self.now_ms();
        let next = next_after(&s.cron, &s.timezone, now)?;
        let payload = s.payload.to_string();
        let mut q = query(
            "INSERT INTO job_schedule (name, cron, timezone, kind, payload, tenant_id, priority, \
             max_attempts, enabled, next_fire_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.name.as_str())
        .bind(s.cron.as_str())
        .bind(s.timezone.as_str())
        .bind(s.kind.as_str())
        .bind(payload)
        .bind(s.tenant_id)
        .bind(s.priority)
        .bind(s.max_attempts)
        .bind(s.enabled)
        .bind(next)
        .bind(now)
        .bind(now);
        q.push_sql(match self.db().backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE cron = VALUES(cron), timezone = VALUES(timezone), \
                 kind = VALUES(kind), payload = VALUES(payload), tenant_id = VALUES(tenant_id), \
                 priority = VALUES(priority), max_attempts = VALUES(max_attempts), \
                 enabled = VALUES(enabled), next_fire_at = VALUES(next_fire_at), \
                 updated_at = VALUES(updated_at)"
            }
            _ => {
                " ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, \
                 timezone = excluded.timezone, kind = excluded.kind, payload = excluded.payload, \
                 tenant_id = excluded.tenant_id, priority = excluded.priority, \
                 max_attempts = excluded.max_attempts, enabled = excluded.enabled, \
                 next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at"
            }
        });
        self.db().execute(q).await?;
        self.wake().await;
        Ok(())
    }

    /// Create a schedule only if no schedule of that name exists (built-ins, at startup:
    /// restarting an engine must not move a schedule's next tick).
    pub async fn ensure_schedule(&self, s: &Schedule) -> JobsResult<()> {
        let exists = self
            .db()
            .fetch_i64(query("SELECT COUNT(*) FROM job_schedule WHERE name = ?").bind(&s.name))
            .await?;
        if exists == 0 {
            match self.upsert_schedule(s).await {
                Err(JobsError::Db(e)) if e.is_conflict() => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Delete a schedule (jobs it already enqueued stay).
    pub async fn delete_schedule(&self, name: &str) -> JobsResult<bool> {
        let r = self
            .db()
            .execute(query("DELETE FROM job_schedule WHERE name = ?").bind(name))
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> JobsResult<Vec<ScheduleRow>> {
        Ok(self
            .db()
            .fetch_all(query(
                "SELECT name, cron, timezone, kind, payload, tenant_id, priority, max_attempts, \
                 enabled, next_fire_at, last_fire_at, last_job_id FROM job_schedule ORDER BY name",
            ))
            .await?)
    }
}

/// The earliest pending tick of any enabled schedule.
pub(crate) async fn next_fire_at(db: &Db) -> DbResult<Option<i64>> {
    Ok(db
        .fetch_one::<(Option<i64>,)>(query(
            "SELECT MIN(next_fire_at) FROM job_schedule WHERE enabled = 1",
        ))
        .await?
        .0)
}

/// Fire every schedule due at `now`; returns how many this engine fired.
pub(crate) async fn fire_due(jobs: &Jobs, now: i64) -> JobsResult<usize> {
    let due: Vec<ScheduleRow> = jobs
        .db()
        .fetch_all(
            query(
                "SELECT name, cron, timezone, kind, payload, tenant_id, priority, max_attempts, \
                 enabled, next_fire_at, last_fire_at, last_job_id FROM job_schedule \
                 WHERE enabled = 1 AND next_fire_at <= ? ORDER BY next_fire_at",
            )
            .bind(now),
        )
        .await?;
    let mut fired = 0;
    for s in due {
        match fire_one(jobs, &s, now).await {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(schedule = %s.name, error = %e, "jobs: cron fire failed"),
        }
    }
    Ok(fired)
}

async fn fire_one(jobs: &Jobs, s: &ScheduleRow, now: i64) -> JobsResult<bool> {
    let (cron, tz) = parse(&s.cron, &s.timezone)?;
    let tick = latest_tick(&cron, &tz, s.next_fire_at, now)?;
    let next = cron
        .find_next_occurrence(&at(&tz, now)?, false)
        .map(|t| t.timestamp_millis())
        .map_err(|e| JobsError::Invalid(format!("cron {:?}: {e}", s.cron)))?;
    let mut tx = jobs.db().begin().await?;
    let won = tx
        .execute(
            query(
                "UPDATE job_schedule SET next_fire_at = ?, last_fire_at = ?, updated_at = ? \
                 WHERE name = ? AND next_fire_at = ? AND enabled = 1",
            )
            .bind(next)
            .bind(tick)
            .bind(now)
            .bind(s.name.as_str())
            .bind(s.next_fire_at),
        )
        .await?
        .rows_affected
        == 1;
    if !won {
        return Ok(false);
    }
    let mut job = NewJob::from_json(s.kind.clone(), s.payload.clone())
        .run_at(tick)
        .priority(s.priority)
        .tenant(s.tenant_id)
        .unique_key(format!("cron:{}:{tick}", s.name));
    if let Some(n) = s.max_attempts {
        job = job.max_attempts(n);
    }
    let e = jobs.enqueue(&mut tx, job).await?;
    tx.execute(
        query("UPDATE job_schedule SET last_job_id = ? WHERE name = ?")
            .bind(e.id)
            .bind(s.name.as_str()),
    )
    .await?;
    jobs.commit(tx).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_in_the_schedules_time_zone() {
        // 2026-11-22 00:00:00 UTC = 08:00 in Shanghai; "0 9 * * *" there is 01:00 UTC.
        let midnight_utc = 1_795_305_600_000;
        let next = next_after("0 9 * * *", "Asia/Shanghai", midnight_utc).unwrap();
        assert_eq!(next - midnight_utc, 3_600_000);
        assert!(next_after("0 9 * * *", "Mars/Base", 0).is_err());
        assert!(next_after("not cron", "UTC", 0).is_err());
    }

    #[test]
    fn after_an_outage_only_the_latest_missed_tick_fires() {
        let (cron, tz) = parse("* * * * *", "UTC").unwrap();
        let floor = 60_000 * 10;
        let now = 60_000 * 15 + 30_000;
        assert_eq!(latest_tick(&cron, &tz, floor, now).unwrap(), 60_000 * 15);
    }
}
