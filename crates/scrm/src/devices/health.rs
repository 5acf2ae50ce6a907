//! Account health score (seed 002's `wechat:calculate-score`, daily in the early morning): one
//! computation for both kinds of sender account — WeCom members (#8: per staff member) and
//! device accounts (#9) — from the last [`WINDOW_DAYS`] days:
//!
//! - `adds`: new customers / friends (WeCom: `customer_stats_daily` added for the member;
//!   device: `friend_added` events);
//! - `losses`: customers who deleted the account (WeCom: `customer_deletion`
//!   customer_deleted_staff; device: `friend_deleted` events — the device does not say who
//!   deleted whom, so they count here);
//! - `deletions`: customers the account deleted (WeCom: staff_deleted_customer; device: none
//!   reported, 0);
//! - `sends` / `sendFailures`: messages to customers that ended SUCCESS or FAILED (WeCom: group
//!   send results with the member as sender; device: send commands acknowledged done / failed).
//!
//! score = 60 × (1 − min(1, 2 × churn)) + 40 × (1 − failure rate), rounded, where churn =
//! (losses + deletions) / max(1, relations now + losses + deletions) and the failure rate is
//! sendFailures / sends (0 without sends). An account losing half its relations, or failing
//! every send, loses that part of the score entirely.
//!
//! Each run stores one row per account and day (Asia/Shanghai), replacing that day's row if it
//! ran before, so the history is one score per day.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Backend, Db, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::provider::{Provider, resolve};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::automation::day_of;
use crate::http::envelope::{Reply, ok};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso};

/// Job kind: compute every account's score.
pub const SCORE: &str = "devices.health.score";

/// Days of activity a score looks at.
pub const WINDOW_DAYS: i64 = 30;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What a score is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    pub relations: i64,
    pub adds: i64,
    pub losses: i64,
    pub deletions: i64,
    pub sends: i64,
    pub send_failures: i64,
}

/// The score of [`Inputs`] (0-100).
pub fn score(i: &Inputs) -> i64 {
    let gone = (i.losses + i.deletions) as f64;
    let churn = gone / (i.relations as f64 + gone).max(1.0);
    let failure = if i.sends > 0 {
        i.send_failures as f64 / i.sends as f64
    } else {
        0.0
    };
    let s = 60.0 * (1.0 - (2.0 * churn).min(1.0)) + 40.0 * (1.0 - failure.min(1.0));
    s.round().clamp(0.0, 100.0) as i64
}

/// The inputs of one account over the window ending at `now`.
pub async fn inputs(
    db: &Db,
    tenant_id: i64,
    account_id: &str,
    provider: Provider,
    now: i64,
) -> scrm_db::DbResult<Inputs> {
    let since = now - WINDOW_DAYS * DAY_MS;
    match provider {
        Provider::WeCom => {
            let staff: Option<(i64,)> = db
                .fetch_optional(
                    query("SELECT id FROM staff WHERE tenant_id = ? AND userid = ?")
                        .bind(tenant_id)
                        .bind(account_id),
                )
                .await?;
            let Some((staff_id,)) = staff else {
                return Ok(Inputs::default());
            };
            let relations = db
                .fetch_i64(
                    query("SELECT COUNT(*) FROM customer_follow WHERE tenant_id = ? AND staff_id = ? AND status = 1")
                        .bind(tenant_id)
                        .bind(staff_id),
                )
                .await?;
            // One row per day (≤ 31): summed here, as SUM's type differs per backend.
            let days: Vec<(i64,)> = db
                .fetch_all(
                    query("SELECT added FROM customer_stats_daily WHERE tenant_id = ? AND dim = 'staff' AND dim_value = ? AND day >= ?")
                        .bind(tenant_id)
                        .bind(staff_id.to_string())
                        .bind(day_of(since)),
                )
                .await?;
            let adds = days.iter().map(|d| d.0).sum();
            let deleted = |kind: &'static str| {
                query("SELECT COUNT(*) FROM customer_deletion WHERE tenant_id = ? AND staff_userid = ? AND kind = ? AND occurred_at >= ?")
                    .bind(tenant_id)
                    .bind(account_id.to_string())
                    .bind(kind)
                    .bind(since)
            };
            let losses = db
                .fetch_i64(deleted(crate::customers::risk::CUSTOMER_DELETED_STAFF))
                .await?;
            let deletions = db
                .fetch_i64(deleted(crate::customers::risk::STAFF_DELETED_CUSTOMER))
                .await?;
            let sent = |status: &'static str| {
                query("SELECT COUNT(*) FROM t_group_send_result WHERE tenant_id = ? AND sender_userid = ? AND status = ? AND update_time >= ?")
                    .bind(tenant_id)
                    .bind(account_id.to_string())
                    .bind(status)
                    .bind(since)
            };
            let ok = db.fetch_i64(sent("SUCCESS")).await?;
            let failed = db.fetch_i64(sent("FAILED")).await?;
            Ok(Inputs {
                relations,
                adds,
                losses,
                deletions,
                sends: ok + failed,
                send_failures: failed,
            })
        }
        Provider::Device => {
            let relations = db
                .fetch_i64(
                    query("SELECT COUNT(*) FROM device_friend WHERE tenant_id = ? AND account_wxid = ? AND deleted = 0")
                        .bind(tenant_id)
                        .bind(account_id),
                )
                .await?;
            let events = |event: &'static str| {
                query("SELECT COUNT(*) FROM device_event WHERE tenant_id = ? AND account_wxid = ? AND event = ? AND received_at >= ?")
                    .bind(tenant_id)
                    .bind(account_id.to_string())
                    .bind(event)
                    .bind(since)
            };
            let adds = db
                .fetch_i64(events(scrm_wecom::device::event::FRIEND_ADDED))
                .await?;
            let losses = db
                .fetch_i64(events(scrm_wecom::device::event::FRIEND_DELETED))
                .await?;
            let sent = |status: &'static str| {
                query("SELECT COUNT(*) FROM device_command WHERE tenant_id = ? AND account_wxid = ? AND status = ? AND acked_at >= ? \
                       AND command IN ('send_text', 'send_image', 'send_link')")
                    .bind(tenant_id)
                    .bind(account_id.to_string())
                    .bind(status)
                    .bind(since)
            };
            let ok = db.fetch_i64(sent("done")).await?;
            let failed = db.fetch_i64(sent("failed")).await?;
            Ok(Inputs {
                relations,
                adds,
                losses,
                deletions: 0,
                sends: ok + failed,
                send_failures: failed,
            })
        }
    }
}

/// Compute and store the score of every account of every tenant for the day of `now`; returns
/// how many accounts were scored.
pub async fn compute_all(db: &Db, now: i64) -> anyhow::Result<usize> {
    let mut accounts: Vec<(i64, String, Provider)> = Vec::new();
    let staff: Vec<(i64, String)> = db
        .fetch_all(query(
            "SELECT tenant_id, userid FROM staff WHERE status = 1 ORDER BY tenant_id, id",
        ))
        .await?;
    accounts.extend(staff.into_iter().map(|(t, u)| (t, u, Provider::WeCom)));
    let devices: Vec<(i64, String)> = db
        .fetch_all(query(
            "SELECT tenant_id, wxid FROM device_account ORDER BY tenant_id, id",
        ))
        .await?;
    accounts.extend(devices.into_iter().map(|(t, w)| (t, w, Provider::Device)));
    let day = day_of(now);
    for (tenant_id, account, provider) in &accounts {
        let i = inputs(db, *tenant_id, account, *provider, now).await?;
        store(db, *tenant_id, account, *provider, &day, &i, now).await?;
    }
    Ok(accounts.len())
}

async fn store(
    db: &Db,
    tenant_id: i64,
    account: &str,
    provider: Provider,
    day: &str,
    i: &Inputs,
    now: i64,
) -> scrm_db::DbResult<()> {
    let cols = "sender_account_health (tenant_id, account_id, account_type, day, score, relations, adds, losses, deletions, sends, send_failures, computed_at) \
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let sql = match db.backend() {
        Backend::MySql => format!(
            "INSERT INTO {cols} ON DUPLICATE KEY UPDATE score = VALUES(score), relations = VALUES(relations), adds = VALUES(adds), \
             losses = VALUES(losses), deletions = VALUES(deletions), sends = VALUES(sends), send_failures = VALUES(send_failures), computed_at = VALUES(computed_at)"
        ),
        _ => format!(
            "INSERT INTO {cols} ON CONFLICT (tenant_id, account_id, day) DO UPDATE SET score = excluded.score, relations = excluded.relations, \
             adds = excluded.adds, losses = excluded.losses, deletions = excluded.deletions, sends = excluded.sends, \
             send_failures = excluded.send_failures, computed_at = excluded.computed_at"
        ),
    };
    db.execute(
        query(sql)
            .bind(tenant_id)
            .bind(account)
            .bind(provider.as_str())
            .bind(day)
            .bind(score(i))
            .bind(i.relations)
            .bind(i.adds)
            .bind(i.losses)
            .bind(i.deletions)
            .bind(i.sends)
            .bind(i.send_failures)
            .bind(now),
    )
    .await?;
    Ok(())
}

/// `devices.health.score`.
pub async fn run_score(
    state: AppState,
    ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let n = compute_all(&state.db, ctx.now_ms())
        .await
        .map_err(JobError::retryable)?;
    tracing::info!(accounts = n, "account health scores computed");
    Ok(JobOutcome::Done)
}

/// The daily schedule: 03:00 Asia/Shanghai (seed 002: 每天凌晨).
pub fn schedule() -> Schedule {
    Schedule::new("devices.health.score", "0 3 * * *", SCORE)
}

/// The route.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "devices").route(
        Method::GET,
        "/api/v1/devices/accounts/{accountId}/health",
        Access::Permission(perm::DEVICE_VIEW),
        "An account's health score (WeCom member or device account) and its daily history",
        get_health,
    )
}

#[derive(Debug, Deserialize)]
pub struct HealthQuery {
    days: Option<i64>,
}

pub async fn get_health(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> ApiResult<Reply<Value>> {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::field("days", "1-366"));
    }
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    type Row = (String, i64, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = state
        .db
        .fetch_all(
            query(
                "SELECT day, score, relations, adds, losses, deletions, sends, send_failures, computed_at \
                 FROM sender_account_health WHERE tenant_id = ? AND account_id = ? ORDER BY day DESC LIMIT ?",
            )
            .bind(user.tenant_id)
            .bind(&account)
            .bind(days),
        )
        .await?;
    let history: Vec<Value> = rows
        .into_iter()
        .map(|(day, score, relations, adds, losses, deletions, sends, failures, at)| {
            json!({"day": day, "score": score, "relations": relations, "adds": adds, "losses": losses,
                   "deletions": deletions, "sends": sends, "sendFailures": failures, "computeTime": iso(at)})
        })
        .collect();
    Ok(ok(json!({
        "accountId": acc.account_id,
        "accountName": acc.account_name,
        "accountType": acc.provider.as_str(),
        "score": history.first().map(|h| h["score"].clone()),
        "history": history,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_weighs_churn_and_failures() {
        let quiet = Inputs {
            relations: 10,
            ..Inputs::default()
        };
        assert_eq!(score(&quiet), 100);
        let churned = Inputs {
            relations: 8,
            losses: 1,
            deletions: 1,
            ..Inputs::default()
        };
        // 2 of 10 gone: churn 0.2 → 60 × 0.6 = 36, + 40.
        assert_eq!(score(&churned), 76);
        let failing = Inputs {
            relations: 10,
            sends: 4,
            send_failures: 1,
            ..Inputs::default()
        };
        assert_eq!(score(&failing), 90);
        let lost = Inputs {
            relations: 1,
            losses: 5,
            sends: 2,
            send_failures: 2,
            ..Inputs::default()
        };
        assert_eq!(score(&lost), 0);
    }
}
