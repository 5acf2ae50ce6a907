//! The sync routes: trigger (`POST /api/wework/sync`, `/sync/departments|users|customers`),
//! logs, status with live progress and WeCom call metrics, and repair.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{SyncType, Triggered, log, repair};
use crate::audit;
use crate::auth::CurrentUser;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::integration::config::{self, WeworkConfig};
use crate::integration::test::not_configured;
use crate::integration::{client, test};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    sync_type: Option<String>,
    force: Option<bool>,
}

/// A body that may be absent (seed 003's per-type routes take none).
fn optional_body(bytes: &Bytes) -> ApiResult<SyncBody> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(SyncBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

async fn enabled_config(state: &AppState, user: &CurrentUser) -> ApiResult<WeworkConfig> {
    let c = config::for_tenant(state, user.tenant_id)
        .await?
        .ok_or_else(not_configured)?;
    if !c.enabled {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "WEWORK_CONFIG_DISABLED",
            "the WeCom configuration is disabled",
        ));
    }
    Ok(c)
}

async fn start(
    state: &AppState,
    user: &CurrentUser,
    t: SyncType,
    force: bool,
) -> ApiResult<Reply<Triggered>> {
    let c = enabled_config(state, user).await?;
    let r = super::trigger(state, &c, t, force, "manual").await?;
    if !r.already_running {
        let mut tx = state.db.begin().await?;
        audit::record(
            &mut tx,
            user,
            "wework.sync.start",
            "wework_sync_log",
            r.sync_log_id,
            json!({"syncType": t.as_str(), "force": force}),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(ok(r))
}

/// `POST /api/wework/sync` with `syncType` (department, user, tag, customer, groupchat, full) and `force`.
pub async fn sync(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> ApiResult<Reply<Triggered>> {
    let b = optional_body(&body)?;
    let raw = b
        .sync_type
        .ok_or_else(|| ApiError::field("syncType", "is required"))?;
    let t = SyncType::parse(&raw).ok_or_else(|| {
        ApiError::field(
            "syncType",
            "must be department, user, tag, customer, groupchat or full",
        )
    })?;
    start(&state, &user, t, b.force.unwrap_or(false)).await
}

macro_rules! per_type {
    ($name:ident, $t:expr, $doc:literal) => {
        #[doc = $doc]
        pub async fn $name(
            State(state): State<AppState>,
            user: CurrentUser,
            body: Bytes,
        ) -> ApiResult<Reply<Triggered>> {
            let b = optional_body(&body)?;
            start(&state, &user, $t, b.force.unwrap_or(false)).await
        }
    };
}
per_type!(
    departments,
    SyncType::Department,
    "`POST /api/wework/sync/departments`."
);
per_type!(users, SyncType::User, "`POST /api/wework/sync/users`.");
per_type!(
    customers,
    SyncType::Customer,
    "`POST /api/wework/sync/customers` (customers and their tags)."
);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogQuery {
    sync_type: Option<String>,
    status: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/wework/sync/logs?syncType&status&page&pageSize`.
pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Reply<ListPage<log::LogView>>> {
    let paging = Paging::new(q.page, q.page_size, 20, 200)?;
    if let Some(t) = &q.sync_type
        && SyncType::parse(t).is_none()
    {
        return Err(ApiError::field(
            "syncType",
            "must be department, user, tag, customer, groupchat or full",
        ));
    }
    if let Some(s) = &q.status
        && !log::status::ALL.contains(&s.as_str())
    {
        return Err(ApiError::field(
            "status",
            "must be pending, running, success, failed or partial",
        ));
    }
    let f = log::Filter {
        sync_type: q.sync_type,
        status: q.status,
    };
    let (rows, total) =
        log::list(&state.db, user.tenant_id, &f, paging.offset(), paging.size).await?;
    Ok(ok(ListPage {
        list: rows.into_iter().map(Into::into).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// One type's state on the status route.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus {
    pub sync_type: &'static str,
    pub running: bool,
    /// The run in progress (with live progress), when one is.
    pub current: Option<log::LogView>,
    /// The last finished run.
    pub last: Option<log::LogView>,
}

/// WeCom calls of one API since the process started.
#[derive(Debug, Default, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ApiStat {
    pub api: String,
    pub calls: i64,
    pub errors: i64,
    pub success_rate: f64,
    /// errcode (or http/timeout/decode) → calls.
    pub by_errcode: std::collections::BTreeMap<String, i64>,
    pub avg_latency_ms: f64,
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = labels.find(&key)? + key.len();
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// Per-API WeCom call figures, read from the client's metrics as `/metrics` renders them.
pub fn api_metrics(rendered: &str) -> Vec<ApiStat> {
    let mut by_api: std::collections::BTreeMap<String, ApiStat> = Default::default();
    let mut latency: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in rendered.lines() {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = head.split_once('{') else {
            continue;
        };
        let Some(api) = label(labels, "api") else {
            continue;
        };
        match name {
            "wecom_api_calls_total" => {
                let e = by_api.entry(api.to_string()).or_insert_with(|| ApiStat {
                    api: api.to_string(),
                    ..Default::default()
                });
                let code = label(labels, "errcode").unwrap_or("?").to_string();
                e.calls += v as i64;
                if code != "0" {
                    e.errors += v as i64;
                }
                *e.by_errcode.entry(code).or_default() += v as i64;
            }
            "wecom_api_latency_seconds_sum" => latency.entry(api.to_string()).or_default().0 += v,
            "wecom_api_latency_seconds_count" => latency.entry(api.to_string()).or_default().1 += v,
            _ => {}
        }
    }
    by_api
        .into_values()
        .map(|mut s| {
            s.success_rate = if s.calls > 0 {
                (s.calls - s.errors) as f64 / s.calls as f64
            } else {
                1.0
            };
            if let Some((sum, n)) = latency.get(&s.api)
                && *n > 0.0
            {
                s.avg_latency_ms = sum / n * 1000.0;
            }
            s
        })
        .collect()
}

/// `GET /api/wework/sync/status`: per type the last run, whether one is running and its
/// progress; WeCom call counts, success rate, errors by errcode and latency per API.
pub async fn status(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut types = Vec::new();
    for t in SyncType::ALL {
        let mut tx = state.db.begin().await?;
        let current = log::active(&mut tx, user.tenant_id, t.as_str()).await?;
        tx.commit().await?;
        let last = scrm_db::query("SELECT id FROM wework_sync_log WHERE tenant_id = ? AND sync_type = ? AND status IN ('success', 'failed', 'partial') ORDER BY id DESC LIMIT 1")
            .bind(user.tenant_id)
            .bind(t.as_str());
        let last = match state.db.fetch_optional::<(i64,)>(last).await? {
            Some((id,)) => log::get(&state.db, user.tenant_id, id).await?,
            None => None,
        };
        types.push(TypeStatus {
            sync_type: t.as_str(),
            running: current.is_some(),
            current: current.map(Into::into),
            last: last.map(Into::into),
        });
    }
    let configured = config::for_tenant(&state, user.tenant_id).await?.is_some();
    Ok(ok(
        json!({"configured": configured, "types": types, "api": api_metrics(&state.metrics.render())}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepairBody {
    kind: Option<String>,
    wecom_id: Option<String>,
}

/// `POST /api/wework/sync/repair` `{kind: customer|staff|tag|group, wecomId}`: re-sync one object now.
pub async fn repair_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<RepairBody>,
) -> ApiResult<Reply<repair::Repaired>> {
    let kind = b
        .kind
        .ok_or_else(|| ApiError::field("kind", "is required"))?;
    if !["customer", "staff", "tag", "group"].contains(&kind.as_str()) {
        return Err(ApiError::field(
            "kind",
            "must be customer, staff, tag or group",
        ));
    }
    let id = b
        .wecom_id
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 100)
        .ok_or_else(|| ApiError::field("wecomId", "is required (1-100 characters)"))?;
    let c = enabled_config(&state, &user).await?;
    let conn = client::connect(&state, &c)?;
    let r = super::repair(&state, &conn, user.tenant_id, &kind, &id)
        .await
        .map_err(|e| match e {
            repair::RepairError::WeCom(w) => ApiError::domain(
                StatusCode::BAD_GATEWAY,
                "WEWORK_API_ERROR",
                format!("{w}. {}", test::advice(w.errcode(), "this object")),
            ),
            repair::RepairError::Other(o) => ApiError::Internal(o),
        })?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "wework.sync.repair",
        &kind,
        &id,
        json!({"result": r.result}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(r))
}
