//! The one send engine behind seed 004's group sends, seed 000's mass tasks and seed 002's
//! immediate mass send.
//!
//! A task goes: created (PENDING) → `group_send.start` at its scheduled time resolves the targets
//! into `t_group_send_result` (one row per customer; blacklisted, deleted and ownerless customers
//! are recorded FAILED with the reason) and cuts each sender's recipients into batches of at most
//! 10,000 ([`store`]) → one `group_send.batch` job per batch calls add_msg_template
//! ([`engine`]) → `group_send.poll` reads get_groupmsg_send_result until every recipient is
//! final, reminding staff who have not confirmed ([`poll`]) → the task ends COMPLETED,
//! PARTIAL_SUCCESS or FAILED. Tag and assign tasks (seed 000's types 2 and 3) run per customer
//! in [`actions`].
//!
//! Exactly once: before each add_msg_template the batch's intent (state 1, the time) is
//! committed; the msgid is committed with the answer. A batch found in state 1 — its worker died
//! somewhere around the call — is first reconciled with get_groupmsg_list_v2 (the sender, the
//! time window, the content, and then the recipients of each candidate) and only sent when WeCom
//! has no such send. Limits: one running batch per sender with a configurable gap between
//! batches (job concurrency keys); the per-corp rate is the WeCom client's limiter.

pub mod actions;
pub mod engine;
pub mod poll;
pub mod store;

use scrm_db::{Db, query};

/// Largest recipient list of one add_msg_template call (API-FACTS §7).
pub const BATCH_SIZE: i64 = 10_000;

/// Task statuses (seed 004) and their seed 000 codes.
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const PROCESSING: &str = "PROCESSING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const PARTIAL_SUCCESS: &str = "PARTIAL_SUCCESS";
    pub const FAILED: &str = "FAILED";
    /// Not in seed 004's list; seed 000's status 4.
    pub const CANCELLED: &str = "CANCELLED";

    /// Every status.
    pub const ALL: [&str; 6] = [
        PENDING,
        PROCESSING,
        COMPLETED,
        PARTIAL_SUCCESS,
        FAILED,
        CANCELLED,
    ];

    /// Seed 000's code: 0 waiting, 1 running, 2 done, 3 failed, 4 cancelled.
    pub fn code(s: &str) -> i64 {
        match s {
            PENDING => 0,
            PROCESSING => 1,
            COMPLETED | PARTIAL_SUCCESS => 2,
            FAILED => 3,
            _ => 4,
        }
    }

    /// The statuses behind a seed 000 code.
    pub fn from_code(code: i64) -> Option<&'static [&'static str]> {
        Some(match code {
            0 => &[PENDING],
            1 => &[PROCESSING],
            2 => &[COMPLETED, PARTIAL_SUCCESS],
            3 => &[FAILED],
            4 => &[CANCELLED],
            _ => return None,
        })
    }

    /// Whether nothing more will happen to the task.
    pub fn is_final(s: &str) -> bool {
        matches!(s, COMPLETED | PARTIAL_SUCCESS | FAILED | CANCELLED)
    }
}

/// Per-customer result statuses.
pub mod result {
    pub const PENDING: &str = "PENDING";
    pub const SUBMITTED: &str = "SUBMITTED";
    pub const SUCCESS: &str = "SUCCESS";
    pub const FAILED: &str = "FAILED";
}

/// Batch states (the intent record).
pub mod batch {
    pub const PLANNED: i64 = 0;
    pub const CALLING: i64 = 1;
    pub const SUBMITTED: i64 = 2;
    pub const FINAL: i64 = 3;
    pub const CANCELLED: i64 = 4;
    pub const FAILED: i64 = 5;
}

/// A tenant's send settings (`operation_setting` rows `mass.*`; defaults here).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// First look at the results after a batch is submitted.
    pub first_poll_ms: i64,
    /// Between later looks while recipients are still unsent.
    pub poll_interval_ms: i64,
    /// Remind staff who have not confirmed after this long (0 = never).
    pub remind_after_ms: i64,
    /// Reminders per batch (WeCom allows 3 in 24 h).
    pub max_reminders: i64,
    /// Give up on unconfirmed recipients after this long (recorded FAILED).
    pub confirm_deadline_ms: i64,
    /// Gap between two batches of one sender.
    pub batch_gap_ms: i64,
    /// Most recipients per add_msg_template call (WeCom's maximum, [`BATCH_SIZE`], by default).
    pub batch_size: i64,
    /// Mass messages a customer may receive from the corp per natural month (Asia/Shanghai),
    /// enforced before sending: 0 = WeCom's rule, the number of days of the month
    /// (API-FACTS §7); -1 = not checked by scrm (WeCom still answers status 3).
    pub monthly_quota: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            first_poll_ms: 5_000,
            poll_interval_ms: 60_000,
            remind_after_ms: 2 * 3600 * 1000,
            max_reminders: 3,
            confirm_deadline_ms: 3 * 24 * 3600 * 1000,
            batch_gap_ms: 0,
            batch_size: BATCH_SIZE,
            monthly_quota: 0,
        }
    }
}

impl Settings {
    /// The tenant's settings.
    pub async fn load(db: &Db, tenant_id: i64) -> scrm_db::DbResult<Settings> {
        let rows: Vec<(String, String)> = db
            .fetch_all(
                query(
                    "SELECT setting_key, setting_value FROM operation_setting \
                     WHERE tenant_id = ? AND setting_key LIKE 'mass.%'",
                )
                .bind(tenant_id),
            )
            .await?;
        let mut s = Settings::default();
        for (k, v) in rows {
            let Ok(v) = v.parse::<i64>() else { continue };
            match k.as_str() {
                "mass.first_poll_ms" => s.first_poll_ms = v,
                "mass.poll_interval_ms" => s.poll_interval_ms = v,
                "mass.remind_after_ms" => s.remind_after_ms = v,
                "mass.max_reminders" => s.max_reminders = v,
                "mass.confirm_deadline_ms" => s.confirm_deadline_ms = v,
                "mass.batch_gap_ms" => s.batch_gap_ms = v,
                "mass.batch_size" => s.batch_size = v,
                "mass.monthly_quota" => s.monthly_quota = v,
                _ => {}
            }
        }
        Ok(s)
    }

    /// The quota in force for the month of `ms`, if scrm checks one.
    pub fn quota_for(&self, ms: i64) -> Option<i64> {
        match self.monthly_quota {
            q if q < 0 => None,
            0 => Some(month_of(ms).2),
            q => Some(q),
        }
    }

    /// Store one setting (`mass.poll_interval_ms` …) for a tenant.
    pub async fn set(db: &Db, tenant_id: i64, key: &str, value: i64) -> scrm_db::DbResult<()> {
        let mut tx = db.begin().await?;
        crate::operation::settings::store(&mut tx, tenant_id, key, value, crate::state::now_ms())
            .await?;
        tx.commit().await
    }
}

/// Why a mass message to `customer_id` at `now` (an SOP or workflow send step) would exceed the
/// tenant's monthly quota — the quota reason recorded on the step — or None when it may go.
pub async fn over_quota(
    db: &Db,
    tenant_id: i64,
    customer_id: i64,
    now: i64,
) -> scrm_db::DbResult<Option<String>> {
    let Some(quota) = Settings::load(db, tenant_id).await?.quota_for(now) else {
        return Ok(None);
    };
    let had = store::month_count(db, tenant_id, customer_id, month_of(now).0).await?;
    Ok((had >= quota).then(|| store::quota_reason(quota)))
}

/// The natural month (Asia/Shanghai) of `ms`: its first instant, the first instant of the next
/// month (epoch milliseconds), and its number of days.
pub fn month_of(ms: i64) -> (i64, i64, i64) {
    use chrono::{Datelike, NaiveDate, TimeZone};
    let tz = crate::automation::shanghai();
    let local = tz
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| chrono::Utc::now().naive_utc(), |t| t.naive_local());
    let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or_default();
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let at = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .single()
            .map_or(ms, |t| t.timestamp_millis())
    };
    (at(first), at(next), (next - first).num_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_counted_in_shanghai() {
        // 2026-11-30 17:00 UTC is 2026-12-01 01:00 in Shanghai: December, 31 days.
        let ms = chrono::DateTime::parse_from_rfc3339("2026-11-30T17:00:00Z")
            .unwrap()
            .timestamp_millis();
        let (start, end, days) = month_of(ms);
        let iso = |t: i64| {
            chrono::DateTime::from_timestamp_millis(t)
                .unwrap()
                .to_rfc3339()
        };
        assert_eq!(iso(start), "2026-11-30T16:00:00+00:00");
        assert_eq!(iso(end), "2026-12-31T16:00:00+00:00");
        assert_eq!(days, 31);
        let s = Settings::default();
        assert_eq!(s.quota_for(ms), Some(31));
        assert_eq!(
            Settings {
                monthly_quota: -1,
                ..s.clone()
            }
            .quota_for(ms),
            None
        );
        assert_eq!(
            Settings {
                monthly_quota: 4,
                ..s
            }
            .quota_for(ms),
            Some(4)
        );
    }
}
