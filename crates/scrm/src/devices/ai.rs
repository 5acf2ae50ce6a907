//! AI auto-reply (seed 002: a new message → AI reply): a customer's message to a device account
//! whose AI reply is on gets an answer from an OpenAI-compatible chat endpoint
//! (`POST {endpoint}/chat/completions`), built from the account's system prompt and the recent
//! conversation — within working hours (Asia/Shanghai), under a rate limit per conversation, and
//! never again in a conversation where the customer said the hand-over keyword (a person takes
//! over). Every decision is logged (`device_ai_reply`): replied, skipped (why), handover, failed.
//! The reply is a `send_text` command like any other, recorded with the log row, once.

use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use chrono::Timelike;
use scrm_db::{Backend, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::device::command;
use serde::Deserialize;
use serde_json::{Value, json};

use super::commands::{NewCommand, insert_ignore, record};
use super::provider::{Capability, resolve};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::automation::shanghai;
use crate::http::envelope::{Reply, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::integration::secrets::MasterKey;
use crate::state::{AppState, iso, now_ms};

/// Job kind: decide on and write the reply to one message.
pub const REPLY: &str = "devices.ai_reply";

/// The AI routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "devices")
        .route(
            Method::PUT,
            "/api/v1/devices/accounts/{accountId}/ai-reply",
            Access::Permission(perm::DEVICE_MANAGE),
            "Configure an account's AI auto-reply (endpoint, key, prompt, rate limit, working hours, hand-over keyword)",
            put_config,
        )
        .route(
            Method::GET,
            "/api/v1/devices/accounts/{accountId}/ai-reply",
            Access::Permission(perm::DEVICE_VIEW),
            "An account's AI auto-reply configuration (the key masked)",
            get_config,
        )
        .route(
            Method::GET,
            "/api/v1/devices/ai-replies",
            Access::Permission(perm::DEVICE_VIEW),
            "Every AI decision: replied, skipped, handover, failed (accountId, peer)",
            list_replies,
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigBody {
    enabled: Option<bool>,
    endpoint: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    history_size: Option<i64>,
    max_replies_per_hour: Option<i64>,
    work_start: Option<String>,
    work_end: Option<String>,
    handover_keyword: Option<String>,
}

/// `HH:MM` as minutes of the day.
fn minutes(field: &str, v: &str) -> ApiResult<i64> {
    let bad = || ApiError::field(field, "HH:MM (00:00-24:00)");
    let (h, m) = v.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h.clamp(0, 24) != h || m.clamp(0, 59) != m || h * 60 + m > 24 * 60 || v.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ConfigRow {
    enabled: i64,
    endpoint: String,
    api_key: Option<String>,
    model: String,
    system_prompt: String,
    history_size: i64,
    max_per_hour: i64,
    work_start: String,
    work_end: String,
    handover_keyword: String,
    updated_at: i64,
}

const CONFIG_COLUMNS: &str = "enabled, endpoint, api_key, model, system_prompt, history_size, max_per_hour, work_start, work_end, handover_keyword, updated_at";

async fn config(
    db: &scrm_db::Db,
    tenant_id: i64,
    account: &str,
) -> scrm_db::DbResult<Option<ConfigRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {CONFIG_COLUMNS} FROM device_ai_config WHERE tenant_id = ? AND account_wxid = ?"
        ))
        .bind(tenant_id)
        .bind(account),
    )
    .await
}

fn config_view(account: &str, c: &ConfigRow) -> Value {
    json!({
        "accountId": account,
        "enabled": c.enabled == 1,
        "endpoint": c.endpoint,
        "apiKeySet": c.api_key.is_some(),
        "model": c.model,
        "systemPrompt": c.system_prompt,
        "historySize": c.history_size,
        "maxRepliesPerHour": c.max_per_hour,
        "workStart": c.work_start,
        "workEnd": c.work_end,
        "handoverKeyword": c.handover_keyword,
        "updateTime": iso(c.updated_at),
    })
}

pub async fn put_config(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
    ApiJson(b): ApiJson<ConfigBody>,
) -> ApiResult<Reply<Value>> {
    let endpoint = b
        .endpoint
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    match url::Url::parse(&endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(ApiError::field(
                "endpoint",
                "an http(s) URL, e.g. https://api.openai.com/v1",
            ));
        }
    }
    // Not a private, loopback or metadata address (crate::outbound; a name is checked again
    // each time it is called, by the guarded client's resolver).
    crate::outbound::check_stored(state.config.allow_private_urls, "endpoint", &endpoint)?;
    let model = b
        .model
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if model.is_empty() || model.len() > 100 {
        return Err(ApiError::field("model", "1-100 characters"));
    }
    let prompt = b.system_prompt.unwrap_or_default();
    if prompt.chars().count() > 4000 {
        return Err(ApiError::field("systemPrompt", "at most 4000 characters"));
    }
    let history = b.history_size.unwrap_or(10);
    if !(1..=50).contains(&history) {
        return Err(ApiError::field("historySize", "1-50"));
    }
    let max = b.max_replies_per_hour.unwrap_or(20);
    if !(1..=1000).contains(&max) {
        return Err(ApiError::field("maxRepliesPerHour", "1-1000"));
    }
    let start = b.work_start.unwrap_or_else(|| "00:00".into());
    let end = b.work_end.unwrap_or_else(|| "24:00".into());
    minutes("workStart", &start)?;
    minutes("workEnd", &end)?;
    let keyword = b.handover_keyword.unwrap_or_default().trim().to_string();
    if keyword.chars().count() > 64 {
        return Err(ApiError::field("handoverKeyword", "at most 64 characters"));
    }
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    acc.require(Capability::ReplyToMessages, "accountId")?;
    let existing = config(&state.db, user.tenant_id, &account).await?;
    // No key in the body keeps the stored one; an empty string removes it.
    let api_key = match b.api_key {
        Some(k) if k.is_empty() => None,
        Some(k) => Some(MasterKey::load(&state.config)?.encrypt(&k)?),
        None => existing.and_then(|e| e.api_key),
    };
    let sql = match state.db.backend() {
        Backend::MySql => {
            "INSERT INTO device_ai_config (tenant_id, account_wxid, enabled, endpoint, api_key, model, system_prompt, history_size, max_per_hour, work_start, work_end, handover_keyword, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE enabled = VALUES(enabled), endpoint = VALUES(endpoint), api_key = VALUES(api_key), \
             model = VALUES(model), system_prompt = VALUES(system_prompt), history_size = VALUES(history_size), max_per_hour = VALUES(max_per_hour), \
             work_start = VALUES(work_start), work_end = VALUES(work_end), handover_keyword = VALUES(handover_keyword), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO device_ai_config (tenant_id, account_wxid, enabled, endpoint, api_key, model, system_prompt, history_size, max_per_hour, work_start, work_end, handover_keyword, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, account_wxid) DO UPDATE SET enabled = excluded.enabled, endpoint = excluded.endpoint, \
             api_key = excluded.api_key, model = excluded.model, system_prompt = excluded.system_prompt, history_size = excluded.history_size, \
             max_per_hour = excluded.max_per_hour, work_start = excluded.work_start, work_end = excluded.work_end, handover_keyword = excluded.handover_keyword, updated_at = excluded.updated_at"
        }
    };
    let mut tx = state.db.begin().await?;
    tx.execute(
        query(sql)
            .bind(user.tenant_id)
            .bind(&account)
            .bind(b.enabled.unwrap_or(true) as i64)
            .bind(&endpoint)
            .bind(api_key)
            .bind(&model)
            .bind(&prompt)
            .bind(history)
            .bind(max)
            .bind(&start)
            .bind(&end)
            .bind(&keyword)
            .bind(now_ms()),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "device.ai_reply.configure",
        "device_account",
        &account,
        json!({"endpoint": endpoint, "model": model}),
    )
    .await?;
    tx.commit().await?;
    let row = config(&state.db, user.tenant_id, &account)
        .await?
        .ok_or(ApiError::NotFound("AI reply configuration"))?;
    Ok(ok(config_view(&account, &row)))
}

pub async fn get_config(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
) -> ApiResult<Reply<Value>> {
    let row = config(&state.db, user.tenant_id, &account)
        .await?
        .ok_or(ApiError::NotFound("AI reply configuration"))?;
    Ok(ok(config_view(&account, &row)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepliesQuery {
    account_id: Option<String>,
    peer: Option<String>,
}

async fn list_replies(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<RepliesQuery>,
) -> ApiResult<Reply<Vec<Value>>> {
    let mut sql = query(
        "SELECT r.id, r.account_wxid, r.peer_wxid, r.message_id, m.text, r.status, r.reason, r.reply, r.error, r.created_at \
         FROM device_ai_reply r JOIN device_message m ON m.id = r.message_id WHERE r.tenant_id = ?",
    )
    .bind(user.tenant_id);
    if let Some(a) = q.account_id.filter(|a| !a.is_empty()) {
        sql.push_sql(" AND r.account_wxid = ?").push_bind(a);
    }
    if let Some(p) = q.peer.filter(|p| !p.is_empty()) {
        sql.push_sql(" AND r.peer_wxid = ?").push_bind(p);
    }
    sql.push_sql(" ORDER BY r.id DESC LIMIT 200");
    type Row = (
        i64,
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = state.db.fetch_all(sql).await?;
    Ok(ok(rows
        .into_iter()
        .map(|(id, a, p, m, text, st, reason, reply, error, at)| {
            json!({"id": id, "accountId": a, "peer": p, "messageId": m, "message": text, "status": st,
                   "reason": reason, "reply": reply, "errorMessage": error, "createTime": iso(at)})
        })
        .collect()))
}

/// A customer's message arrived (in the event's transaction): queue the decision when the
/// account's AI reply is on.
pub async fn on_message(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    peer: &str,
    message_id: i64,
) -> anyhow::Result<()> {
    let on = tx
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_ai_config WHERE tenant_id = ? AND account_wxid = ? AND enabled = 1")
                .bind(tenant_id)
                .bind(account),
        )
        .await?;
    if on == 0 {
        return Ok(());
    }
    // One conversation at a time, in order, so replies follow the messages they answer.
    let job = NewJob::new(
        REPLY,
        &json!({"tenantId": tenant_id, "messageId": message_id}),
    )?
    .tenant(tenant_id)
    .unique_key(format!("ai-reply:{message_id}"))
    .limited_by(
        format!("ai:{tenant_id}:{account}:{peer}"),
        scrm_jobs::KeyLimit::concurrency(1),
    );
    state.jobs.enqueue(tx, job).await?;
    Ok(())
}

/// Log a decision that is not a reply (idempotent on the message).
async fn log(
    state: &AppState,
    m: &(i64, String, String, String),
    tenant_id: i64,
    status: &str,
    reason: Option<&str>,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    tx.execute(
        query(insert_ignore(
            tx.backend(),
            "device_ai_reply (tenant_id, account_wxid, peer_wxid, message_id, status, reason, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(tenant_id)
        .bind(m.1.as_str())
        .bind(m.2.as_str())
        .bind(m.0)
        .bind(status)
        .bind(reason)
        .bind(error.map(|e| e.chars().take(500).collect::<String>()))
        .bind(now)
        .bind(now),
    )
    .await?;
    if status == "handover" {
        tx.execute(
            query(insert_ignore(
                tx.backend(),
                "device_ai_handover (tenant_id, account_wxid, peer_wxid, at) VALUES (?, ?, ?, ?)",
            ))
            .bind(tenant_id)
            .bind(m.1.as_str())
            .bind(m.2.as_str())
            .bind(now),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether `now` (epoch ms) is within `start..end` (HH:MM, Asia/Shanghai); a window whose end is
/// before its start runs over midnight.
pub fn within_hours(now: i64, start: &str, end: &str) -> bool {
    let (Ok(s), Ok(e)) = (minutes("workStart", start), minutes("workEnd", end)) else {
        return true;
    };
    let t = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .with_timezone(&shanghai());
    let m = (t.hour() * 60 + t.minute()) as i64;
    if s <= e {
        (s..e).contains(&m)
    } else {
        m >= s || m < e
    }
}

/// The reply job.
pub async fn run_reply(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let tenant_id = p["tenantId"].as_i64().unwrap_or_default();
    let message_id = p["messageId"].as_i64().unwrap_or_default();
    reply(&state, &ctx, tenant_id, message_id)
        .await
        .map_err(|e| {
            if ctx.is_last_attempt() {
                JobError::permanent(e)
            } else {
                JobError::retryable(e)
            }
        })?;
    Ok(JobOutcome::Done)
}

async fn reply(
    state: &AppState,
    ctx: &JobContext,
    tenant_id: i64,
    message_id: i64,
) -> anyhow::Result<()> {
    let m: Option<(i64, String, String, String)> = state
        .db
        .fetch_optional(
            query("SELECT id, account_wxid, peer_wxid, text FROM device_message WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(message_id),
        )
        .await?;
    let Some(m) = m else { return Ok(()) };
    let decided = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_ai_reply WHERE tenant_id = ? AND message_id = ?")
                .bind(tenant_id)
                .bind(message_id),
        )
        .await?;
    let Some(cfg) = config(&state.db, tenant_id, &m.1)
        .await?
        .filter(|c| c.enabled == 1)
    else {
        return Ok(());
    };
    if decided > 0 {
        return Ok(());
    }
    let handed = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_ai_handover WHERE tenant_id = ? AND account_wxid = ? AND peer_wxid = ?")
                .bind(tenant_id)
                .bind(m.1.as_str())
                .bind(m.2.as_str()),
        )
        .await?;
    if handed > 0 {
        return log(state, &m, tenant_id, "skipped", Some("handed_over"), None).await;
    }
    if !cfg.handover_keyword.is_empty() && m.3.contains(&cfg.handover_keyword) {
        return log(state, &m, tenant_id, "handover", Some("keyword"), None).await;
    }
    let now = now_ms();
    if !within_hours(now, &cfg.work_start, &cfg.work_end) {
        return log(
            state,
            &m,
            tenant_id,
            "skipped",
            Some("outside_working_hours"),
            None,
        )
        .await;
    }
    let recent = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_ai_reply WHERE tenant_id = ? AND account_wxid = ? AND peer_wxid = ? AND status = 'replied' AND created_at > ?")
                .bind(tenant_id)
                .bind(m.1.as_str())
                .bind(m.2.as_str())
                .bind(now - 3_600_000),
        )
        .await?;
    if recent >= cfg.max_per_hour {
        return log(state, &m, tenant_id, "skipped", Some("rate_limited"), None).await;
    }
    let history: Vec<(String, String)> = state
        .db
        .fetch_all(
            query("SELECT direction, text FROM device_message WHERE tenant_id = ? AND account_wxid = ? AND peer_wxid = ? AND id <= ? ORDER BY id DESC LIMIT ?")
                .bind(tenant_id)
                .bind(m.1.as_str())
                .bind(m.2.as_str())
                .bind(message_id)
                .bind(cfg.history_size),
        )
        .await?;
    let mut messages = vec![json!({"role": "system", "content": cfg.system_prompt})];
    for (dir, text) in history.into_iter().rev() {
        let role = if dir == "out" { "assistant" } else { "user" };
        messages.push(json!({"role": role, "content": text}));
    }
    let key = match &cfg.api_key {
        Some(k) => Some(MasterKey::load(&state.config)?.decrypt(k)?),
        None => None,
    };
    let allow = state.config.allow_private_urls;
    let answer =
        match complete_chat(allow, &cfg.endpoint, key.as_deref(), &cfg.model, messages).await {
            Ok(a) => a,
            // A refused address stays refused: logged at once, not retried.
            Err(e) if ctx.is_last_attempt() || e.is::<crate::outbound::Refused>() => {
                return log(state, &m, tenant_id, "failed", None, Some(&e.to_string())).await;
            }
            Err(e) => return Err(e),
        };
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let inserted = tx
        .execute(
            query(insert_ignore(
                tx.backend(),
                "device_ai_reply (tenant_id, account_wxid, peer_wxid, message_id, status, reply, created_at, updated_at) VALUES (?, ?, ?, ?, 'replied', ?, ?, ?)",
            ))
            .bind(tenant_id)
            .bind(m.1.as_str())
            .bind(m.2.as_str())
            .bind(message_id)
            .bind(answer.as_str())
            .bind(now)
            .bind(now),
        )
        .await?
        .rows_affected;
    if inserted == 1 {
        let c = NewCommand::new(
            &m.1,
            command::SEND_TEXT,
            json!({"to": m.2, "text": answer}),
            "ai_reply",
            message_id,
        );
        record(state, &mut tx, tenant_id, c).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One chat completion: the first choice's content. The endpoint is a tenant's URL, so it goes
/// through the private-address guard (`crate::outbound`) unless `allow_private`; a refused
/// address is an [`crate::outbound::Refused`] error.
async fn complete_chat(
    allow_private: bool,
    endpoint: &str,
    key: Option<&str>,
    model: &str,
    messages: Vec<Value>,
) -> anyhow::Result<String> {
    static OPEN: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static GUARDED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = (if allow_private { &OPEN } else { &GUARDED }).get_or_init(|| {
        crate::outbound::client(
            reqwest::Client::builder().timeout(Duration::from_secs(60)),
            allow_private,
        )
    });
    let url = format!("{endpoint}/chat/completions");
    if let Err(why) = crate::outbound::check_fetch(allow_private, &url) {
        return Err(crate::outbound::Refused(why).into());
    }
    let mut req = client
        .post(&url)
        .json(&json!({"model": model, "messages": messages}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| match crate::outbound::refusal(&e) {
            Some(why) => anyhow::Error::new(crate::outbound::Refused(why)),
            None => e.into(),
        })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the chat endpoint answered {status}: {msg}");
    }
    body["choices"][0]["message"]["content"]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow::anyhow!("the chat endpoint's answer has no choices[0].message.content")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_hours_in_shanghai() {
        // 2026-01-05 02:00 UTC = 10:00 in Shanghai.
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-05T02:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(within_hours(t, "09:00", "18:00"));
        assert!(!within_hours(t, "11:00", "18:00"));
        assert!(within_hours(t, "22:00", "10:30"));
        assert!(within_hours(t, "00:00", "24:00"));
    }
}
