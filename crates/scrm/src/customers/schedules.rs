//! The customers module's scheduled work, as cron schedules on the job engine:
//!
//! - `customers.churn.scan` (every 30 minutes): every tenant's enabled `no_interaction` churn
//!   rules are evaluated ([`risk::scan_inactive`]); a customer gets at most one open warning per
//!   rule. (`deleted_staff` rules fire at once, from the deletion callback.)
//! - `customers.followups.remind` (every minute): follow-ups whose next follow-up time has come
//!   remind the staff member — the follow-up's staff member, else the customer's owner — with a
//!   WeCom app message (`message/send`). Each follow-up is reminded once: `reminded` goes 0 →
//!   1 (sent) or 2 (cannot be sent: no staff member, or WeCom refused the recipient), with the
//!   time and the reason on the row. A WeCom outage leaves it at 0 for the next run.
//!
//! Both are bounded per run (the next run continues) and safe to run twice at once: the
//! reminder claims each row with a conditional update before calling WeCom.

use scrm_db::query;
use scrm_jobs::{JobContext, JobError, JobOutcome};
use scrm_wecom::client::{AppMessage, AppMessageContent, Text};
use serde_json::Value;

use super::risk;
use crate::state::{AppState, iso, now_ms};

pub const CHURN_SCAN: &str = "customers.churn.scan";
pub const FOLLOWUP_REMIND: &str = "customers.followups.remind";

/// Customers flagged per tenant per run (the next run continues where this one stopped).
const CHURN_BATCH: i64 = 5_000;
/// Reminders sent per run.
const REMIND_BATCH: i64 = 200;

/// Reminder states of `follow_up.reminded`.
pub mod reminded {
    pub const PENDING: i64 = 0;
    pub const SENT: i64 = 1;
    pub const FAILED: i64 = 2;
    /// Claimed by a run that is calling WeCom.
    pub const SENDING: i64 = 3;
}

/// Evaluate every tenant's inactivity rules.
pub async fn run_churn_scan(
    state: AppState,
    _ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let tenants: Vec<(i64,)> = state
        .db
        .fetch_all(query(
            "SELECT DISTINCT tenant_id FROM churn_rule WHERE enabled = 1 AND rule_type = 'no_interaction' ORDER BY tenant_id",
        ))
        .await?;
    let now = now_ms();
    for (tenant,) in tenants {
        let mut tx = state.db.begin().await?;
        let raised = risk::scan_inactive(&mut tx, tenant, now, CHURN_BATCH).await?;
        tx.commit().await?;
        if raised > 0 {
            tracing::info!(tenant, raised, "churn warnings raised");
        }
    }
    Ok(JobOutcome::Done)
}

#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    tenant_id: i64,
    customer_id: i64,
    content: String,
    next_follow_at: i64,
    customer_name: Option<String>,
    userid: Option<String>,
}

/// The reminder text a staff member gets.
pub fn reminder_text(customer: &str, content: &str, at: i64) -> String {
    let summary: String = content.chars().take(200).collect();
    format!(
        "跟进提醒 / Follow-up reminder\n客户 Customer: {customer}\n时间 Due: {}\n上次跟进 Last follow-up: {summary}",
        iso(at)
    )
}

/// Remind the staff members of every follow-up that has come due.
pub async fn run_followup_remind(
    state: AppState,
    _ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let now = now_ms();
    // A claim older than 10 minutes belongs to a run that died mid-call: WeCom's duplicate
    // check (30 minutes) keeps the retry from reminding twice.
    state
        .db
        .execute(
            query("UPDATE follow_up SET reminded = ? WHERE reminded = ? AND reminded_at < ?")
                .bind(reminded::PENDING)
                .bind(reminded::SENDING)
                .bind(now - 600_000),
        )
        .await?;
    let due: Vec<Due> = state
        .db
        .fetch_all(
            query(
                "SELECT f.id, f.tenant_id, f.customer_id, f.content, f.next_follow_at, c.name AS customer_name, s.userid \
                 FROM follow_up f \
                 LEFT JOIN customer c ON c.tenant_id = f.tenant_id AND c.id = f.customer_id \
                 LEFT JOIN staff s ON s.tenant_id = f.tenant_id AND s.id = COALESCE(f.staff_id, c.follow_user_id) AND s.status = 1 \
                 WHERE f.reminded = ? AND f.next_follow_at <= ? ORDER BY f.next_follow_at, f.id LIMIT ?",
            )
            .bind(reminded::PENDING)
            .bind(now)
            .bind(REMIND_BATCH),
        )
        .await?;
    for d in due {
        let claimed = state
            .db
            .execute(
                query("UPDATE follow_up SET reminded = ?, reminded_at = ? WHERE id = ? AND reminded = ?")
                    .bind(reminded::SENDING)
                    .bind(now)
                    .bind(d.id)
                    .bind(reminded::PENDING),
            )
            .await?
            .rows_affected;
        if claimed == 0 {
            continue;
        }
        let (state_after, error) = remind_one(&state, &d).await;
        state
            .db
            .execute(
                query("UPDATE follow_up SET reminded = ?, reminded_at = ?, remind_error = ? WHERE id = ?")
                    .bind(state_after)
                    .bind(now_ms())
                    .bind(error.map(|e| e.chars().take(250).collect::<String>()))
                    .bind(d.id),
            )
            .await?;
    }
    Ok(JobOutcome::Done)
}

/// Send one reminder: the state it ends in and why it failed.
async fn remind_one(state: &AppState, d: &Due) -> (i64, Option<String>) {
    let Some(userid) = d.userid.clone() else {
        return (
            reminded::FAILED,
            Some("no active staff member to remind (no owner)".into()),
        );
    };
    let wecom = match crate::operation::wecom::client_for(state, d.tenant_id).await {
        Ok(w) => w,
        Err(e) => {
            return (
                reminded::FAILED,
                Some(format!("no WeCom app for the tenant: {e}")),
            );
        }
    };
    let text = reminder_text(
        d.customer_name
            .as_deref()
            .unwrap_or(&format!("#{}", d.customer_id)),
        &d.content,
        d.next_follow_at,
    );
    let r = wecom
        .agent
        .message_send(&AppMessage {
            touser: userid.clone(),
            toparty: String::new(),
            totag: String::new(),
            agentid: wecom.agent_id,
            content: AppMessageContent::Text {
                text: Text { content: text },
            },
            safe: None,
            enable_id_trans: None,
            enable_duplicate_check: Some(1),
            duplicate_check_interval: Some(1800),
        })
        .await;
    match r {
        Ok(r) if !r.invaliduser.is_empty() => (
            reminded::FAILED,
            Some(format!("WeCom refused the recipient {userid}")),
        ),
        Ok(_) => (reminded::SENT, None),
        // Transient (busy, network): back to pending for the next run.
        Err(e) if e.is_transient() => (reminded::PENDING, Some(e.to_string())),
        Err(e) => (reminded::FAILED, Some(e.to_string())),
    }
}
