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
                _ => {}
            }
        }
        Ok(s)
    }

    /// Store one setting (`mass.poll_interval_ms` …) for a tenant.
    pub async fn set(db: &Db, tenant_id: i64, key: &str, value: i64) -> scrm_db::DbResult<()> {
        let mut tx = db.begin().await?;
        crate::operation::settings::store(&mut tx, tenant_id, key, value, crate::state::now_ms())
            .await?;
        tx.commit().await
    }
}
