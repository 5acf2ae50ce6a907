//! WeCom callbacks (API-FACTS §10-12): URL verification, the inbox, the event list and replay.
//!
//! `POST /api/wework/callback/{configId}` verifies the signature and decrypts (a bad signature is
//! a 403 and stores nothing), stores the event in `wework_callback_event` keyed by its dedupe key
//! (WeCom retries up to three times; a retry is stored once), enqueues its processing job in the
//! same transaction and answers at once: WeCom gives up after 5 seconds. [`process`] does the
//! work (calls WeCom back, writes customers and groups).

pub mod process;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scrm_db::{Db, DbResult, query};
use scrm_jobs::NewJob;
use scrm_wecom::{CallbackCrypto, CallbackEvent, CryptoError, Event};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{self, WeworkConfig};
use super::sync::apply::cut;
use crate::audit;
use crate::auth::CurrentUser;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::state::{AppState, iso, iso_opt, now_ms};

/// The job kind that processes one stored event.
pub const JOB_KIND: &str = "wework.callback";

/// Largest callback body accepted: WeCom's envelopes are a few KB.
pub const MAX_BODY: usize = 64 * 1024;

fn forbidden(msg: &str) -> ApiError {
    ApiError::domain(StatusCode::FORBIDDEN, "CALLBACK_SIGNATURE_INVALID", msg)
}

async fn crypto_for(state: &AppState, config_id: i64) -> ApiResult<(WeworkConfig, CallbackCrypto)> {
    let c = config::by_id(state, config_id)
        .await?
        .ok_or(ApiError::NotFound("callback"))?;
    let (Some(token), Some(key)) = (&c.token, &c.aes_key) else {
        return Err(ApiError::NotFound("callback"));
    };
    let crypto = CallbackCrypto::new(token.clone(), key.expose(), c.corp_id.clone())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored EncodingAESKey unusable: {e}")))?;
    Ok((c, crypto))
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> &'a str {
    q.get(name).map(String::as_str).unwrap_or("")
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /api/wework/callback/{configId}`: WeCom's URL verification; answers the decrypted
/// `echostr` as plain text (no quotes, no newline).
pub async fn verify(
    State(state): State<AppState>,
    ApiPath(config_id): ApiPath<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (c, crypto) = crypto_for(&state, config_id).await?;
    let echo = crypto
        .verify_url(
            param(&q, "msg_signature"),
            param(&q, "timestamp"),
            param(&q, "nonce"),
            param(&q, "echostr"),
        )
        .map_err(|e| {
            tracing::warn!(
                config_id,
                code = e.code(),
                "callback URL verification refused"
            );
            forbidden("signature or echostr invalid")
        })?;
    config::mark_callback(&state.db, c.id, true).await?;
    Ok(plain(StatusCode::OK, echo))
}

/// `POST /api/wework/callback/{configId}`: verify, decrypt, store once, enqueue, answer.
pub async fn receive(
    State(state): State<AppState>,
    ApiPath(config_id): ApiPath<i64>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    if body.len() > MAX_BODY {
        return Err(ApiError::domain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "callback body too large",
        ));
    }
    let (c, crypto) = crypto_for(&state, config_id).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::invalid("body is not UTF-8"))?;
    let plaintext = crypto
        .decrypt_message(
            param(&q, "msg_signature"),
            param(&q, "timestamp"),
            param(&q, "nonce"),
            text,
        )
        .map_err(|e| match e {
            CryptoError::Xml(_) => ApiError::invalid("callback body is not acceptable XML"),
            other => {
                tracing::warn!(config_id, code = other.code(), "callback refused");
                forbidden("callback signature or ciphertext invalid")
            }
        })?;
    let event = CallbackEvent::from_xml(&plaintext)
        .map_err(|_| ApiError::invalid("decrypted event is not acceptable XML"))?;
    let (name, change) = names(&event.event);
    let stored = store(
        &state,
        &c,
        &event.dedupe_key(),
        &name,
        &change,
        &plaintext,
        refetches(&event.event),
    )
    .await?;
    config::mark_callback(&state.db, c.id, false).await?;
    tracing::info!(config_id, event = %name, change = %change, duplicate = stored.is_none(), "callback received");
    Ok(plain(StatusCode::OK, "success".into()))
}

/// The event's name and change type, for the list.
fn names(e: &Event) -> (String, String) {
    match e {
        Event::ExternalContact(x) => ("change_external_contact".into(), x.change.as_str().into()),
        Event::ExternalChat(x) => {
            let change = match &x.change {
                scrm_wecom::events::ChatChange::Update(u) => {
                    format!("update:{}", u.detail.as_str())
                }
                other => format!("{other:?}").to_lowercase(),
            };
            ("change_external_chat".into(), change)
        }
        Event::ExternalTag(x) => ("change_external_tag".into(), x.change.as_str().into()),
        Event::Unknown {
            event,
            change_type,
            msg_type,
            ..
        } => (
            if event.is_empty() {
                msg_type.clone()
            } else {
                event.clone()
            },
            change_type.clone(),
        ),
    }
}

/// Events whose processing reads the current state back from WeCom, so running it again is
/// harmless. Two different changes of one relation in the same second render the same event
/// (WeCom's own dedupe rule is FromUserName + CreateTime): for these, a "duplicate" that
/// arrives after the first was processed is processed again, or the second change would be
/// lost until the next reconciliation. Deletions and transfer failures are never re-run (they
/// write records).
fn refetches(e: &Event) -> bool {
    use scrm_wecom::events::{ChatChange, ExternalContactChange as C};
    match e {
        Event::ExternalContact(x) => matches!(x.change, C::Add | C::AddHalf | C::Edit),
        Event::ExternalChat(x) => !matches!(x.change, ChatChange::Dismiss),
        Event::ExternalTag(_) => true,
        Event::Unknown { .. } => false,
    }
}

/// A second delivery of a stored event: re-run it when it refetches and is not queued already.
async fn again(state: &AppState, c: &WeworkConfig, key: &str, refetches: bool) -> ApiResult<()> {
    if !refetches {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    let row: Option<(i64,)> = tx
        .fetch_optional(query("SELECT id FROM wework_callback_event WHERE config_id = ? AND dedupe_key = ? AND status IN ('done', 'failed', 'ignored')").bind(c.id).bind(cut(key, 191)))
        .await?;
    let Some((id,)) = row else {
        return Ok(());
    };
    tx.execute(query("UPDATE wework_callback_event SET status = 'pending' WHERE id = ?").bind(id))
        .await?;
    enqueue(state, &mut tx, c.tenant_id, id).await?;
    state
        .jobs
        .commit(tx)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

/// Store a new event and enqueue its job; `None` when this event was already stored (a retry).
async fn store(
    state: &AppState,
    c: &WeworkConfig,
    key: &str,
    event: &str,
    change: &str,
    xml: &str,
    refetches: bool,
) -> ApiResult<Option<i64>> {
    let mut tx = state.db.begin().await?;
    let inserted = tx
        .insert_id(
            query("INSERT INTO wework_callback_event (tenant_id, config_id, dedupe_key, event, change_type, raw_xml, status, received_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)")
                .bind(c.tenant_id)
                .bind(c.id)
                .bind(cut(key, 191))
                .bind(cut(event, 64))
                .bind(cut(change, 64))
                .bind(xml)
                .bind(now_ms()),
        )
        .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) if e.is_conflict() => {
            drop(tx);
            return again(state, c, key, refetches).await.map(|_| None);
        }
        Err(e) => return Err(e.into()),
    };
    enqueue(state, &mut tx, c.tenant_id, id).await?;
    state
        .jobs
        .commit(tx)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Some(id))
}

async fn enqueue(state: &AppState, tx: &mut scrm_db::Tx, tenant_id: i64, id: i64) -> ApiResult<()> {
    let mut job = NewJob::new(JOB_KIND, &json!({"eventId": id}))
        .map_err(|e| ApiError::Internal(e.into()))?
        .tenant(tenant_id)
        .priority(1);
    // Events about one object run one at a time: two at once (a tag group and its tag created
    // together, two changes of one chat) write the same rows, and the loser of that race met a
    // unique-key conflict and waited for its retry (the ~2 s delays seen before).
    let xml: Option<(String,)> = tx
        .fetch_optional(query("SELECT raw_xml FROM wework_callback_event WHERE id = ?").bind(id))
        .await?;
    if let Some(key) = xml
        .and_then(|(x,)| CallbackEvent::from_xml(&x).ok())
        .and_then(|e| serial_key(tenant_id, &e.event))
    {
        job = job.limited_by(key, scrm_jobs::KeyLimit::concurrency(1));
    }
    state
        .jobs
        .enqueue(tx, job)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

/// The object an event changes, as a concurrency key: a customer, a chat, or the corp tags,
/// hashed into one of 64 keys per tenant (the jobs table keeps a row per key, so not one per
/// customer; two objects sharing a key only wait for each other).
fn serial_key(tenant_id: i64, e: &Event) -> Option<String> {
    let object = match e {
        Event::ExternalContact(x) => format!("c:{}", x.external_user_id),
        Event::ExternalChat(x) => format!("g:{}", x.chat_id),
        Event::ExternalTag(_) => "tags".to_string(),
        Event::Unknown { .. } => return None,
    };
    // FNV-1a: the same bucket in every process and version.
    let bucket = object.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) % 64;
    Some(format!("wework-cb:{tenant_id}:{bucket}"))
}

/// A received event as listed.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub id: i64,
    pub event: String,
    pub change_type: String,
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub raw_xml: String,
    #[serde(skip)]
    pub received_at: i64,
    #[serde(skip)]
    pub processed_at: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(flatten)]
    pub row: EventRow,
    pub receive_time: String,
    pub process_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventQuery {
    status: Option<String>,
    event: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// The processing states of a stored event.
pub const STATES: &[&str] = &["pending", "processing", "done", "failed", "ignored"];

/// `GET /api/wework/callback/events?status&event&page&pageSize`, newest first.
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Reply<ListPage<EventView>>> {
    let paging = Paging::new(q.page, q.page_size, 20, 200)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(s) = &q.status {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                "must be pending, processing, done, failed or ignored",
            ));
        }
        w.push_sql(" AND status = ?").push_bind(s.as_str());
    }
    if let Some(e) = &q.event {
        w.push_sql(" AND event = ?").push_bind(e.as_str());
    }
    let mut c = query("SELECT COUNT(*) FROM wework_callback_event");
    c.append(&w);
    let total = state.db.fetch_i64(c).await?;
    let mut p = query(
        "SELECT id, event, change_type, status, attempts, error, raw_xml, received_at, processed_at FROM wework_callback_event",
    );
    p.append(&w);
    p.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<EventRow> = state.db.fetch_all(p).await?;
    let list = rows
        .into_iter()
        .map(|row| EventView {
            receive_time: iso(row.received_at),
            process_time: iso_opt(row.processed_at),
            row,
        })
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// `POST /api/wework/callback/events/{id}/replay`: process a failed (or finished) event again.
pub async fn replay(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let row: Option<(String,)> = tx
        .fetch_optional(
            query("SELECT status FROM wework_callback_event WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?;
    let Some((status,)) = row else {
        return Err(ApiError::NotFound("callback event"));
    };
    if status == "pending" || status == "processing" {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "CALLBACK_EVENT_BUSY",
            "the event is being processed",
        ));
    }
    tx.execute(
        query("UPDATE wework_callback_event SET status = 'pending', error = NULL WHERE id = ?")
            .bind(id),
    )
    .await?;
    enqueue(&state, &mut tx, user.tenant_id, id).await?;
    audit::record(
        &mut tx,
        &user,
        "wework.callback.replay",
        "wework_callback_event",
        id,
        json!({"previousStatus": status}),
    )
    .await?;
    state
        .jobs
        .commit(tx)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(ok(json!({"id": id, "status": "pending"})))
}

/// Set an event's processing state.
pub async fn set_status(db: &Db, id: i64, status: &str, error: Option<String>) -> DbResult<()> {
    let done = matches!(status, "done" | "failed" | "ignored").then(now_ms);
    db.execute(
        query("UPDATE wework_callback_event SET status = ?, error = ?, processed_at = COALESCE(?, processed_at) WHERE id = ?")
            .bind(status)
            .bind(error)
            .bind(done)
            .bind(id),
    )
    .await
    .map(|_| ())
}
