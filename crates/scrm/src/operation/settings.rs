//! A tenant's operation settings over the API: how group sends look at WeCom's results and
//! remind staff (the mass-send [`Settings`](super::mass::Settings)), and how often customer
//! transfers are polled. `GET /api/v1/operation/settings` shows every value (defaults where
//! nothing is stored); `PUT` changes any subset, each value checked against its range, all or
//! nothing, audited.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, Tx, query};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Reply, ok};
use crate::http::error::FieldError;
use crate::http::extract::ApiJson;
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One setting: its API name, its stored key, its default and its allowed range.
struct Spec {
    field: &'static str,
    key: &'static str,
    default: i64,
    min: i64,
    max: i64,
    what: &'static str,
}

/// Every setting. The stored keys are the ones the jobs read.
const SPECS: &[Spec] = &[
    Spec {
        field: "firstPollMs",
        key: "mass.first_poll_ms",
        default: 5_000,
        min: 100,
        max: DAY_MS,
        what: "first look at WeCom's results after a batch is submitted",
    },
    Spec {
        field: "pollIntervalMs",
        key: "mass.poll_interval_ms",
        default: 60_000,
        min: 100,
        max: DAY_MS,
        what: "between later looks while recipients are unsent",
    },
    Spec {
        field: "remindAfterMs",
        key: "mass.remind_after_ms",
        default: 2 * 3600 * 1000,
        min: 0,
        max: 3 * DAY_MS,
        what: "remind staff who have not confirmed after this long (0 = never)",
    },
    Spec {
        field: "maxReminders",
        key: "mass.max_reminders",
        default: 3,
        min: 0,
        max: 3,
        what: "reminders per batch (WeCom allows 3 in 24 hours)",
    },
    Spec {
        field: "confirmDeadlineMs",
        key: "mass.confirm_deadline_ms",
        default: 3 * DAY_MS,
        min: 1_000,
        max: 30 * DAY_MS,
        what: "recipients still unconfirmed after this long are recorded FAILED",
    },
    Spec {
        field: "batchGapMs",
        key: "mass.batch_gap_ms",
        default: 0,
        min: 0,
        max: 3600 * 1000,
        what: "gap between two batches of one sender",
    },
    Spec {
        field: "batchSize",
        key: "mass.batch_size",
        default: 10_000,
        min: 1,
        max: 10_000,
        what: "most recipients per add_msg_template call (WeCom allows 10,000)",
    },
    Spec {
        field: "monthlyQuota",
        key: "mass.monthly_quota",
        default: 0,
        min: -1,
        max: 31,
        what: "mass messages a customer may receive from the corp per natural month (Asia/Shanghai); \
               0 = WeCom's rule, the number of days of the month; -1 = not checked by scrm",
    },
    Spec {
        field: "transferPollMs",
        key: "customers.transfer_poll_ms",
        default: 600_000,
        min: 100,
        max: DAY_MS,
        what: "how often in-progress customer transfers are looked up in WeCom",
    },
];

/// The settings routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "operation")
        .route(
            Method::GET,
            "/api/v1/operation/settings",
            Access::Permission(perm::OPERATION_SETTINGS_VIEW),
            "Operation settings: result polling, reminders, confirmation deadline, batch gap and size, monthly quota, transfer polling",
            get_settings,
        )
        .route(
            Method::PUT,
            "/api/v1/operation/settings",
            Access::Permission(perm::OPERATION_SETTINGS_MANAGE),
            "Change operation settings (any subset; all or nothing)",
            put_settings,
        )
}

/// Every setting of a tenant with its value (stored, else the default), range and meaning.
pub async fn current(db: &Db, tenant_id: i64) -> scrm_db::DbResult<Value> {
    let rows: Vec<(String, String)> = db
        .fetch_all(
            query("SELECT setting_key, setting_value FROM operation_setting WHERE tenant_id = ?")
                .bind(tenant_id),
        )
        .await?;
    let mut values = serde_json::Map::new();
    let mut about = serde_json::Map::new();
    for s in SPECS {
        let v = rows
            .iter()
            .find(|(k, _)| k == s.key)
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .unwrap_or(s.default);
        values.insert(s.field.into(), json!(v));
        about.insert(
            s.field.into(),
            json!({"default": s.default, "min": s.min, "max": s.max, "description": s.what}),
        );
    }
    values.insert("ranges".into(), Value::Object(about));
    Ok(Value::Object(values))
}

/// One stored setting of a tenant (`customers.transfer_poll_ms` …), if set and numeric.
pub async fn stored(db: &Db, tenant_id: i64, key: &str) -> scrm_db::DbResult<Option<i64>> {
    Ok(db
        .fetch_optional::<(String,)>(
            query("SELECT setting_value FROM operation_setting WHERE tenant_id = ? AND setting_key = ?")
                .bind(tenant_id)
                .bind(key),
        )
        .await?
        .and_then(|(v,)| v.parse().ok()))
}

async fn get_settings(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Reply<Value>> {
    Ok(ok(current(&state.db, user.tenant_id).await?))
}

#[derive(Deserialize)]
#[serde(transparent)]
struct SettingsBody(serde_json::Map<String, Value>);

async fn put_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<SettingsBody>,
) -> ApiResult<Reply<Value>> {
    let mut errors = Vec::new();
    let mut changes: Vec<(&Spec, i64)> = Vec::new();
    for (name, v) in &body.0 {
        let Some(spec) = SPECS.iter().find(|s| s.field == name) else {
            errors.push(FieldError {
                field: name.clone(),
                message: "unknown setting".into(),
            });
            continue;
        };
        match v.as_i64() {
            Some(n) if (spec.min..=spec.max).contains(&n) => changes.push((spec, n)),
            _ => errors.push(FieldError {
                field: name.clone(),
                message: format!("must be an integer from {} to {}", spec.min, spec.max),
            }),
        }
    }
    if body.0.is_empty() {
        return Err(ApiError::invalid("name at least one setting to change"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation {
            message: errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            fields: errors,
        });
    }
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    for (spec, v) in &changes {
        store(&mut tx, user.tenant_id, spec.key, *v, now).await?;
    }
    let detail: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(s, v)| (s.field.to_string(), json!(v)))
        .collect();
    audit::record(
        &mut tx,
        &user,
        "operation.settings.update",
        "operation_setting",
        user.tenant_id,
        Value::Object(detail),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(current(&state.db, user.tenant_id).await?))
}

/// Replace one stored setting inside a transaction.
pub(crate) async fn store(
    tx: &mut Tx,
    tenant_id: i64,
    key: &str,
    value: i64,
    now: i64,
) -> scrm_db::DbResult<()> {
    tx.execute(
        query("DELETE FROM operation_setting WHERE tenant_id = ? AND setting_key = ?")
            .bind(tenant_id)
            .bind(key),
    )
    .await?;
    tx.execute(
        query(
            "INSERT INTO operation_setting (tenant_id, setting_key, setting_value, updated_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(value.to_string())
        .bind(now),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_ones_the_jobs_use() {
        let m = crate::operation::mass::Settings::default();
        let d = |f: &str| SPECS.iter().find(|s| s.field == f).unwrap().default;
        assert_eq!(d("firstPollMs"), m.first_poll_ms);
        assert_eq!(d("pollIntervalMs"), m.poll_interval_ms);
        assert_eq!(d("remindAfterMs"), m.remind_after_ms);
        assert_eq!(d("maxReminders"), m.max_reminders);
        assert_eq!(d("confirmDeadlineMs"), m.confirm_deadline_ms);
        assert_eq!(d("batchGapMs"), m.batch_gap_ms);
        assert_eq!(d("batchSize"), m.batch_size);
        assert_eq!(d("monthlyQuota"), m.monthly_quota);
        assert_eq!(
            d("transferPollMs"),
            crate::customers::transfer_jobs::POLL_MS
        );
        for s in SPECS {
            assert!(s.min <= s.default && s.default <= s.max, "{}", s.field);
        }
    }
}
