//! Gateways and their accounts: registering a gateway (its token is shown once, only its hash
//! is kept), the account list with each account's provider capabilities, friends, and the
//! WebSocket session a gateway keeps with scrm (`docs/gateway-protocol.md`).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use scrm_db::{Backend, query};
use scrm_wecom::device::{AccountInfo, AccountStatus, Frame, command};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::commands::{COLUMNS, CommandRow, NewCommand, complete, record};
use super::events;
use super::provider::{Capability, Provider, resolve, resolve_for};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Paging, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso, iso_opt, now_ms};

/// The WebSocket path gateways connect to.
pub const WS_PATH: &str = "/api/v1/devices/gateway/ws";

/// How often a session looks for released commands when nothing woke it (commands released by
/// a worker in another process).
const POLL: Duration = Duration::from_millis(500);

/// A command sent this long ago without an acknowledgement is sent again on the same
/// connection (the device dedupes): covers a command an old session of the gateway marked sent
/// while the new one was taking over.
const ACK_TIMEOUT_MS: i64 = 20_000;

/// How long a new connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway and account routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "devices")
        .route(
            Method::POST,
            "/api/v1/devices/gateways",
            Access::Permission(perm::DEVICE_MANAGE),
            "Register a device gateway; its token is in this answer only",
            create_gateway,
        )
        .route(
            Method::GET,
            "/api/v1/devices/gateways",
            Access::Permission(perm::DEVICE_VIEW),
            "Device gateways and whether they are connected",
            list_gateways,
        )
        .route(
            Method::GET,
            WS_PATH,
            // The gateway's own token (Authorization: Bearer), not a user's.
            Access::Public,
            "A gateway's WebSocket (JSON frames; see docs/gateway-protocol.md)",
            connect,
        )
        .route(
            Method::GET,
            "/api/v1/devices/accounts",
            Access::Permission(perm::DEVICE_VIEW),
            "Sender accounts of both providers (WeCom members and device accounts) with status, capabilities and health; paged with page/pageSize",
            list_accounts,
        )
        .route(
            Method::GET,
            "/api/v1/devices/accounts/{accountId}/friends",
            Access::Permission(perm::DEVICE_VIEW),
            "A device account's friends",
            list_friends,
        )
        .route(
            Method::PUT,
            "/api/v1/devices/accounts/{accountId}/friends/{wxid}/customer",
            Access::Permission(perm::DEVICE_OPERATE),
            "Link a device account's friend to the customer it is (null unlinks): group sends reach the customer through the account",
            link_customer,
        )
        .route(
            Method::POST,
            "/api/v1/devices/accounts/{accountId}/friends/sync",
            Access::Permission(perm::DEVICE_OPERATE),
            "Fetch a device account's friends from its device",
            sync_friends,
        )
        .route(
            Method::PUT,
            "/api/v1/devices/accounts/{accountId}/auto-like",
            Access::Permission(perm::DEVICE_OPERATE),
            "Switch auto-like of friends' moments for an account",
            set_auto_like,
        )
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBody {
    name: Option<String>,
}

pub async fn create_gateway(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<GatewayBody>,
) -> ApiResult<Reply<Value>> {
    let name = b
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field("name", "1-100 characters"));
    }
    let token = format!("gw_{}", hex::encode(rand::random::<[u8; 24]>()));
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query("INSERT INTO device_gateway (tenant_id, name, token_hash, connected, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)")
                .bind(user.tenant_id)
                .bind(&name)
                .bind(token_hash(&token))
                .bind(now)
                .bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "device.gateway.create",
        "device_gateway",
        id,
        json!({"name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(
        json!({"gatewayId": id, "name": name, "token": token, "path": WS_PATH}),
    ))
}

pub async fn list_gateways(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<Value>>> {
    let rows: Vec<(i64, String, i64, Option<i64>, i64)> = state
        .db
        .fetch_all(
            query("SELECT id, name, connected, last_seen_at, created_at FROM device_gateway WHERE tenant_id = ? ORDER BY id")
                .bind(user.tenant_id),
        )
        .await?;
    Ok(ok(rows
        .into_iter()
        .map(|(id, name, c, seen, created)| {
            json!({"gatewayId": id, "name": name, "connected": c == 1, "lastSeenTime": iso_opt(seen), "createTime": iso(created)})
        })
        .collect()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsQuery {
    account_type: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v1/devices/accounts?accountType&page&pageSize`: without `page` and `pageSize`
/// every account as a list (as seed 004's account list); with either, one page
/// `{list, total, page, pageSize}` (pageSize 1-500, default 50) read from the database.
pub async fn list_accounts(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<AccountsQuery>,
) -> ApiResult<Reply<Value>> {
    let want = q.account_type.as_deref().filter(|t| !t.is_empty());
    if let Some(t) = want
        && t != "WEWORK"
        && t != "WECHAT"
    {
        return Err(ApiError::field("accountType", "WEWORK or WECHAT"));
    }
    if q.page.is_none() && q.page_size.is_none() {
        let (out, _) = accounts_page(&state.db, user.tenant_id, want, None, 0, None).await?;
        return Ok(ok(Value::Array(out)));
    }
    if q.page_size.is_some_and(|n| !(1..=500).contains(&n)) {
        return Err(ApiError::field("pageSize", "must be between 1 and 500"));
    }
    let paging = Paging::new(q.page, q.page_size, 50, 500)?;
    let (list, total) = accounts_page(
        &state.db,
        user.tenant_id,
        want,
        None,
        paging.offset(),
        Some(paging.size),
    )
    .await?;
    Ok(ok(
        json!({"list": list, "total": total, "page": paging.page, "pageSize": paging.size}),
    ))
}

/// The tenant's sender accounts (`want`: WEWORK, WECHAT or both; `only`: one account id):
/// WeCom members first, then device accounts, each in id order with its latest daily health
/// score (devices/health.rs, null before the first run); `limit` rows from `offset` (None: all),
/// and how many there are. A page reads its own rows and their scores only.
pub async fn accounts_page(
    db: &scrm_db::Db,
    tenant_id: i64,
    want: Option<&str>,
    only: Option<&str>,
    offset: i64,
    limit: Option<i64>,
) -> ApiResult<(Vec<Value>, i64)> {
    // (id, name, provider, status, gateway)
    let mut rows: Vec<(String, String, Provider, String, Option<i64>)> = Vec::new();
    let mut total = 0;
    let mut offset = offset.max(0);
    let mut room = limit;
    let parts: [(Provider, &str, &str); 2] = [
        (
            Provider::WeCom,
            "FROM staff WHERE tenant_id = ?",
            " AND userid = ?",
        ),
        (
            Provider::Device,
            "FROM device_account WHERE tenant_id = ?",
            " AND wxid = ?",
        ),
    ];
    for (p, from, one) in parts {
        let skip = match p {
            Provider::WeCom => want == Some("WECHAT"),
            Provider::Device => want == Some("WEWORK"),
        };
        if skip {
            continue;
        }
        let filtered = |sql: String| {
            let mut q = query(sql).bind(tenant_id);
            if let Some(id) = only {
                q.push_sql(one).push_bind(id.to_string());
            }
            q
        };
        let n = db
            .fetch_i64(filtered(format!("SELECT COUNT(*) {from}")))
            .await?;
        total += n;
        if room == Some(0) || offset >= n {
            offset = (offset - n).max(0);
            continue;
        }
        let cols = match p {
            Provider::WeCom => "SELECT userid, name, status",
            Provider::Device => "SELECT wxid, nickname, status, gateway_id",
        };
        let mut q = filtered(format!("{cols} {from}"));
        q.push_sql(" ORDER BY id");
        if let Some(r) = room {
            q.push_sql(" LIMIT ? OFFSET ?")
                .push_bind(r)
                .push_bind(offset);
        }
        match p {
            Provider::WeCom => {
                let got: Vec<(String, String, i64)> = db.fetch_all(q).await?;
                for (u, name, st) in got {
                    let st = super::provider::staff_status(st).to_string();
                    rows.push((u, name, p, st, None));
                }
            }
            Provider::Device => {
                let got: Vec<(String, String, String, i64)> = db.fetch_all(q).await?;
                for (w, name, st, g) in got {
                    rows.push((w, name, p, st, Some(g)));
                }
            }
        }
        room = room.map(|r| (r - (n - offset)).max(0));
        offset = 0;
    }
    let scores = latest_scores(db, tenant_id, &rows).await?;
    let out = rows
        .into_iter()
        .map(|(id, name, p, status, gateway)| {
            let health = scores.get(&(p.as_str().to_string(), id.clone()));
            json!({"accountId": id, "accountName": name, "accountType": p.as_str(), "status": status,
                   "gatewayId": gateway, "capabilities": p.capabilities(),
                   "healthScore": health.map(|h| h.0), "healthDay": health.map(|h| h.1.clone())})
        })
        .collect();
    Ok((out, total))
}

/// The latest daily health score of each of these accounts, by (type, account id).
async fn latest_scores(
    db: &scrm_db::Db,
    tenant_id: i64,
    rows: &[(String, String, Provider, String, Option<i64>)],
) -> ApiResult<std::collections::HashMap<(String, String), (i64, String)>> {
    let mut scores: Vec<(String, String, i64, String)> = Vec::new();
    for chunk in rows.chunks(500) {
        let mut q = query(
            "SELECT h.account_type, h.account_id, h.score, h.day FROM sender_account_health h \
             WHERE h.tenant_id = ? AND h.day = (SELECT MAX(h2.day) FROM sender_account_health h2 \
             WHERE h2.tenant_id = h.tenant_id AND h2.account_id = h.account_id AND h2.account_type = h.account_type) \
             AND h.account_id IN ",
        )
        .bind(tenant_id);
        q.push_in_list(chunk.iter().map(|r| r.0.clone()));
        scores.extend(db.fetch_all(q).await?);
    }
    Ok(scores
        .into_iter()
        .map(|(t, a, s, d)| ((t, a), (s, d)))
        .collect())
}

async fn list_friends(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
) -> ApiResult<Reply<Vec<Value>>> {
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    acc.require(Capability::FetchFriends, "accountId")?;
    if acc.provider != Provider::Device {
        // A WeCom member's friends are the customers (GET /api/v1/customers?followUserId=…).
        return Err(ApiError::Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            name: "CAPABILITY_NOT_SUPPORTED",
            message: "accountId: a WeCom member's friends are its customers: GET /api/v1/customers"
                .into(),
            fields: vec![crate::http::error::FieldError {
                field: "accountId".into(),
                message: "not a device account".into(),
            }],
        });
    }
    let rows: Vec<(String, String, Option<i64>, i64)> = state
        .db
        .fetch_all(
            query("SELECT friend_wxid, nickname, customer_id, updated_at FROM device_friend WHERE tenant_id = ? AND account_wxid = ? AND deleted = 0 ORDER BY friend_wxid")
                .bind(user.tenant_id)
                .bind(&account),
        )
        .await?;
    Ok(ok(rows
        .into_iter()
        .map(|(w, n, c, at)| json!({"wxid": w, "nickname": n, "customerId": c, "updateTime": iso(at)}))
        .collect()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkBody {
    /// The customer; `null` removes the link.
    customer_id: Option<i64>,
}

async fn link_customer(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((account, wxid)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<LinkBody>,
) -> ApiResult<Reply<Value>> {
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    if acc.provider != Provider::Device {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CAPABILITY_NOT_SUPPORTED",
            "accountId: a WeCom member's customers are linked by WeCom itself",
        ));
    }
    if let Some(c) = b.customer_id {
        let found = state
            .db
            .fetch_i64(
                query("SELECT COUNT(*) FROM customer WHERE tenant_id = ? AND id = ?")
                    .bind(user.tenant_id)
                    .bind(c),
            )
            .await?;
        if found == 0 {
            return Err(ApiError::Refused {
                status: StatusCode::NOT_FOUND,
                name: "CUSTOMER_NOT_FOUND",
                message: format!("customerId: no customer {c}"),
                fields: vec![crate::http::error::FieldError {
                    field: "customerId".into(),
                    message: "no such customer".into(),
                }],
            });
        }
    }
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query("UPDATE device_friend SET customer_id = ?, updated_at = ? WHERE tenant_id = ? AND account_wxid = ? AND friend_wxid = ? AND deleted = 0")
                .bind(b.customer_id)
                .bind(now_ms())
                .bind(user.tenant_id)
                .bind(&account)
                .bind(&wxid),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("friend"));
    }
    let id: i64 = tx
        .fetch_i64(
            query("SELECT id FROM device_friend WHERE tenant_id = ? AND account_wxid = ? AND friend_wxid = ?")
                .bind(user.tenant_id)
                .bind(&account)
                .bind(&wxid),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "device.friend.link_customer",
        "device_friend",
        id,
        json!({"accountId": account, "wxid": wxid, "customerId": b.customer_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(
        json!({"accountId": account, "wxid": wxid, "customerId": b.customer_id}),
    ))
}

async fn sync_friends(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
) -> ApiResult<Reply<Value>> {
    let acc = resolve_for(
        &state.db,
        user.tenant_id,
        &account,
        Capability::FetchFriends,
        "accountId",
    )
    .await?;
    if acc.provider != Provider::Device {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CAPABILITY_NOT_SUPPORTED",
            "accountId: a WeCom member's customers come with the customer sync (POST /api/wework/sync/customers)",
        ));
    }
    let mut tx = state.db.begin().await?;
    let id = record(
        &state,
        &mut tx,
        user.tenant_id,
        NewCommand::new(&account, command::FETCH_FRIENDS, json!({}), "sync", 0),
    )
    .await?;
    tx.commit().await?;
    Ok(Reply(
        StatusCode::ACCEPTED,
        json!({"commandId": id, "status": "PENDING"}),
    ))
}

#[derive(Debug, Deserialize)]
struct AutoLikeBody {
    enabled: Option<bool>,
}

async fn set_auto_like(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(account): ApiPath<String>,
    ApiJson(b): ApiJson<AutoLikeBody>,
) -> ApiResult<Reply<Value>> {
    let enabled = b
        .enabled
        .ok_or_else(|| ApiError::field("enabled", "is required"))?;
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    acc.require(Capability::LikeMoments, "accountId")?;
    state
        .db
        .execute(
            query("UPDATE device_account SET auto_like = ?, updated_at = ? WHERE tenant_id = ? AND wxid = ?")
                .bind(enabled as i64)
                .bind(now_ms())
                .bind(user.tenant_id)
                .bind(&account),
        )
        .await?;
    Ok(ok(json!({"accountId": account, "autoLike": enabled})))
}

/// A gateway as its session knows it.
#[derive(Debug, Clone)]
struct Gateway {
    id: i64,
    tenant_id: i64,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = bearer.or(q.token).filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized.into_response();
    };
    let found: Result<Option<(i64, i64)>, _> = state
        .db
        .fetch_optional(
            query("SELECT id, tenant_id FROM device_gateway WHERE token_hash = ?")
                .bind(token_hash(&token)),
        )
        .await;
    let gw = match found {
        Ok(Some((id, tenant_id))) => Gateway { id, tenant_id },
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| async move {
            if let Err(e) = session(state, gw.clone(), socket).await {
                tracing::warn!(gateway = gw.id, error = %e, "gateway session ended with an error");
            }
        }),
        Err(e) => {
            ApiError::invalid(format!("a WebSocket upgrade is expected: {e}")).into_response()
        }
    }
}

/// WebSocket close code: this session's lease was taken over by another session (its renewal
/// found another owner, e.g. after this process stalled past the lease).
pub const CLOSE_LEASE_LOST: u16 = 4001;
/// WebSocket close code: a newer connection of the same gateway reached this process.
pub const CLOSE_REPLACED: u16 = 4002;
/// WebSocket close code: nothing (not even a pong) came from the gateway for [`IDLE_TIMEOUT`].
pub const CLOSE_IDLE: u16 = 4003;

/// A session pings its gateway this often …
const PING_EVERY: Duration = Duration::from_secs(10);
/// … and ends when nothing came from it for this long (a half-open connection must not keep
/// the lease).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Take the gateway's lease for session `lease` if nobody holds it or it lapsed.
async fn acquire(state: &AppState, gw: &Gateway, lease: &str) -> anyhow::Result<bool> {
    let now = now_ms();
    let n = state
        .db
        .execute(
            query(
                "UPDATE device_gateway SET lease_owner = ?, lease_until = ? WHERE id = ? \
                   AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < ?)",
            )
            .bind(lease)
            .bind(now + state.config.gateway_lease_ms)
            .bind(gw.id)
            .bind(now),
        )
        .await?
        .rows_affected;
    Ok(n == 1)
}

/// Renew the lease `lease` holds; `false` when another session holds it now.
async fn renew(state: &AppState, gw: &Gateway, lease: &str) -> anyhow::Result<bool> {
    let now = now_ms();
    let n = state
        .db
        .execute(
            query("UPDATE device_gateway SET lease_until = ?, last_seen_at = ? WHERE id = ? AND lease_owner = ?")
                .bind(now + state.config.gateway_lease_ms)
                .bind(now)
                .bind(gw.id)
                .bind(lease),
        )
        .await?
        .rows_affected;
    if n == 1 {
        return Ok(true);
    }
    // MySQL counts a row whose values did not change as unaffected: look.
    let owner: Option<(Option<String>,)> = state
        .db
        .fetch_optional(query("SELECT lease_owner FROM device_gateway WHERE id = ?").bind(gw.id))
        .await?;
    Ok(owner.and_then(|(o,)| o).as_deref() == Some(lease))
}

/// Close the socket with a code and a reason the gateway can log.
async fn close_with<S>(out: &mut S, code: u16, reason: &str)
where
    S: futures::Sink<Message> + Unpin,
{
    let frame = axum::extract::ws::CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = out.send(Message::Close(Some(frame))).await;
}

/// One connection of a gateway: hello, then frames both ways until it closes.
///
/// A gateway may be connected to several scrm processes (or reconnect to another one while the
/// old connection is not seen closed yet). Only the session holding the gateway's lease
/// (`device_gateway.lease_owner`, renewed while it lives) sends commands; the others are on
/// standby: they store the accounts, events and acknowledgements that come in, and take the
/// lease over when its holder closes cleanly (it clears the lease) or dies (the lease lapses
/// after `SCRM_GATEWAY_LEASE_MS`).
async fn session(state: AppState, gw: Gateway, socket: WebSocket) -> anyhow::Result<()> {
    if state.devices.halted().is_cancelled() {
        anyhow::bail!("this process halted its gateway sessions");
    }
    let (mut out, mut incoming) = socket.split();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, incoming.next()).await;
    let Ok(Some(Ok(Message::Text(text)))) = hello else {
        anyhow::bail!("no hello");
    };
    let Ok(Frame::Hello { id, mut accounts }) = serde_json::from_str::<Frame>(&text) else {
        anyhow::bail!("the first frame was not a hello");
    };
    let (sid, cancel) = state.devices.register(gw.id);
    let lease = uuid::Uuid::now_v7().simple().to_string();
    let mut holder = acquire(&state, &gw, &lease).await?;
    if holder {
        take_over(&state, &gw, &accounts).await?;
    } else {
        store_accounts(&state, &gw, &accounts).await?;
    }
    let ack = Frame::Ack {
        id,
        ok: true,
        result: json!({"session": lease, "holder": holder}),
        error: None,
    };
    out.send(Message::Text(ack.to_text().into())).await?;
    tracing::info!(
        gateway = gw.id,
        accounts = accounts.len(),
        holder,
        "gateway connected"
    );
    let renew_every = Duration::from_millis((state.config.gateway_lease_ms / 3).max(100) as u64);
    let mut last_renew = tokio::time::Instant::now();
    let mut last_heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    let halted = state.devices.halted();
    let result: anyhow::Result<()> = async {
        let mut tick = tokio::time::interval(POLL);
        loop {
            if holder {
                if last_renew.elapsed() >= renew_every {
                    if !renew(&state, &gw, &lease).await? {
                        holder = false;
                        tracing::warn!(gateway = gw.id, "gateway lease lost to another session");
                        close_with(&mut out, CLOSE_LEASE_LOST, "lease lost: another session of this gateway sends its commands now; reconnect").await;
                        return Ok(());
                    }
                    last_renew = tokio::time::Instant::now();
                }
                flush(&state, &gw, &mut out).await?;
            } else if acquire(&state, &gw, &lease).await? {
                holder = true;
                last_renew = tokio::time::Instant::now();
                tracing::info!(gateway = gw.id, "gateway lease taken over");
                take_over(&state, &gw, &accounts).await?;
                flush(&state, &gw, &mut out).await?;
            }
            tokio::select! {
                _ = halted.cancelled() => return Ok(()),
                _ = cancel.cancelled() => {
                    close_with(&mut out, CLOSE_REPLACED, "replaced by a newer connection of this gateway").await;
                    return Ok(());
                }
                _ = state.devices.woken() => {}
                _ = tick.tick() => {}
                _ = ping.tick() => {
                    if last_heard.elapsed() >= IDLE_TIMEOUT {
                        close_with(&mut out, CLOSE_IDLE, "nothing received for 30 s").await;
                        return Ok(());
                    }
                    out.send(Message::Ping(Vec::new().into())).await?;
                }
                msg = incoming.next() => {
                    last_heard = tokio::time::Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(reply) = on_frame(&state, &gw, &text, &mut accounts, holder).await? {
                                out.send(Message::Text(reply.to_text().into())).await?;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.into()),
                    }
                },
            }
        }
    }
    .await;
    state.devices.unregister(gw.id, sid);
    if halted.is_cancelled() {
        // As a crashed process would: nothing released, the lease lapses by itself.
        return result;
    }
    // The holder clears the lease in the transaction that takes the accounts OFFLINE (nobody sees
    // them OFFLINE with the gateway still connected); a standby that takes over sets them again.
    let mut tx = state.db.begin().await?;
    let released = tx
        .execute(
            query("UPDATE device_gateway SET lease_owner = NULL, lease_until = NULL, connected = 0, last_seen_at = ? WHERE id = ? AND lease_owner = ?")
                .bind(now_ms())
                .bind(gw.id)
                .bind(&lease),
        )
        .await?
        .rows_affected;
    if released == 1 {
        tx.execute(
            query("UPDATE device_account SET status = 'OFFLINE', updated_at = ? WHERE tenant_id = ? AND gateway_id = ? AND status = 'ACTIVE'")
                .bind(now_ms())
                .bind(gw.tenant_id)
                .bind(gw.id),
        )
        .await?;
    }
    tx.commit().await?;
    if released == 1 {
        // A standby session of this process takes over at once.
        state.devices.wake();
    }
    tracing::info!(
        gateway = gw.id,
        holder = released == 1,
        "gateway disconnected"
    );
    result
}

/// The accounts a connection reported (a standby session's hello).
async fn store_accounts(
    state: &AppState,
    gw: &Gateway,
    accounts: &[AccountInfo],
) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    for a in accounts {
        upsert_account(&mut tx, gw, a).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The session now holds the lease: the accounts it knows are stored, what was sent before and
/// not acknowledged is sent again, and each ACTIVE account's friends are fetched (seed 002: a
/// device online → data sync).
async fn take_over(state: &AppState, gw: &Gateway, accounts: &[AccountInfo]) -> anyhow::Result<()> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    for a in accounts {
        upsert_account(&mut tx, gw, a).await?;
        if a.status == AccountStatus::Active {
            record(
                state,
                &mut tx,
                gw.tenant_id,
                NewCommand::new(&a.wxid, command::FETCH_FRIENDS, json!({}), "sync", 0),
            )
            .await?;
        }
    }
    tx.execute(
        query("UPDATE device_command SET status = 'ready' WHERE status = 'sent' AND tenant_id = ? AND account_wxid IN \
               (SELECT wxid FROM device_account WHERE tenant_id = ? AND gateway_id = ?)")
            .bind(gw.tenant_id)
            .bind(gw.tenant_id)
            .bind(gw.id),
    )
    .await?;
    tx.execute(query("UPDATE device_gateway SET connected = 1, last_seen_at = ?, updated_at = ? WHERE id = ?").bind(now).bind(now).bind(gw.id))
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn upsert_account(tx: &mut scrm_db::Tx, gw: &Gateway, a: &AccountInfo) -> anyhow::Result<()> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO device_account (tenant_id, gateway_id, wxid, nickname, status, auto_like, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) \
             ON DUPLICATE KEY UPDATE gateway_id = VALUES(gateway_id), nickname = VALUES(nickname), status = VALUES(status), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO device_account (tenant_id, gateway_id, wxid, nickname, status, auto_like, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) \
             ON CONFLICT (tenant_id, wxid) DO UPDATE SET gateway_id = excluded.gateway_id, nickname = excluded.nickname, status = excluded.status, updated_at = excluded.updated_at"
        }
    };
    let now = now_ms();
    tx.execute(
        query(sql)
            .bind(gw.tenant_id)
            .bind(gw.id)
            .bind(a.wxid.as_str())
            .bind(a.nickname.as_str())
            .bind(a.status.as_str())
            .bind(now)
            .bind(now),
    )
    .await?;
    Ok(())
}

/// Handle one frame from the gateway; the answer to send, if any.
async fn on_frame(
    state: &AppState,
    gw: &Gateway,
    text: &str,
    known: &mut Vec<AccountInfo>,
    holder: bool,
) -> anyhow::Result<Option<Frame>> {
    let frame = match serde_json::from_str::<Frame>(text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(gateway = gw.id, error = %e, "unreadable frame from a gateway");
            return Ok(None);
        }
    };
    match frame {
        Frame::Ack {
            id,
            ok,
            result,
            error,
        } => {
            complete(state, gw.tenant_id, &id, ok, &result, error.as_deref()).await?;
            Ok(None)
        }
        Frame::Event {
            id,
            account,
            event,
            data,
        } => {
            match events::handle(state, gw.tenant_id, gw.id, &id, &account, &event, &data).await {
                Ok(_) => Ok(Some(Frame::ack(id))),
                // Acknowledge it anyway: an event that can never be applied would come back forever.
                Err(e) => {
                    tracing::warn!(gateway = gw.id, event = %event, error = %e, "device event refused");
                    Ok(Some(Frame::Ack {
                        id,
                        ok: false,
                        result: Value::Null,
                        error: Some(e.to_string()),
                    }))
                }
            }
        }
        Frame::Account { id, account } => {
            let mut tx = state.db.begin().await?;
            upsert_account(&mut tx, gw, &account).await?;
            tx.commit().await?;
            match known.iter_mut().find(|a| a.wxid == account.wxid) {
                Some(a) => *a = account,
                None => known.push(account),
            }
            state.devices.wake();
            Ok(Some(Frame::ack(id)))
        }
        Frame::Hello { id, accounts } => {
            if holder {
                take_over(state, gw, &accounts).await?;
            } else {
                store_accounts(state, gw, &accounts).await?;
            }
            *known = accounts;
            Ok(Some(Frame::ack(id)))
        }
        Frame::Command { id, .. } => Ok(Some(Frame::Ack {
            id,
            ok: false,
            result: Value::Null,
            error: Some("gateways do not send commands".into()),
        })),
    }
}

/// Send the released commands of this gateway's ACTIVE accounts, oldest first, each marked
/// `sent` before it goes out (a failed write leaves it `sent`: the next hello sends it again),
/// and again those unacknowledged for [`ACK_TIMEOUT_MS`].
async fn flush<S>(state: &AppState, gw: &Gateway, out: &mut S) -> anyhow::Result<()>
where
    S: futures::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    state
        .db
        .execute(
            query("UPDATE device_command SET status = 'ready' WHERE status = 'sent' AND sent_at < ? AND tenant_id = ? AND account_wxid IN \
                   (SELECT wxid FROM device_account WHERE tenant_id = ? AND gateway_id = ?)")
                .bind(now_ms() - ACK_TIMEOUT_MS)
                .bind(gw.tenant_id)
                .bind(gw.tenant_id)
                .bind(gw.id),
        )
        .await?;
    loop {
        let rows: Vec<CommandRow> = state
            .db
            .fetch_all(
                query(format!(
                    "SELECT {COLUMNS} FROM device_command WHERE status = 'ready' AND tenant_id = ? AND account_wxid IN \
                     (SELECT wxid FROM device_account WHERE tenant_id = ? AND gateway_id = ? AND status = 'ACTIVE') ORDER BY id LIMIT 100"
                ))
                .bind(gw.tenant_id)
                .bind(gw.tenant_id)
                .bind(gw.id),
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for c in rows {
            let claimed = state
                .db
                .execute(
                    query("UPDATE device_command SET status = 'sent', sends = sends + 1, sent_at = ? WHERE id = ? AND status = 'ready'")
                        .bind(now_ms())
                        .bind(c.id),
                )
                .await?
                .rows_affected;
            if claimed == 0 {
                continue;
            }
            let frame = Frame::Command {
                id: c.command_id,
                account: c.account_wxid,
                command: c.command,
                data: serde_json::from_str(&c.data).unwrap_or_default(),
            };
            out.send(Message::Text(frame.to_text().into())).await?;
        }
    }
}

/// The tenant's device accounts (personal WeChat) whose wxid or nickname contains `keyword`
/// (all when it is empty), at most `limit`, oldest first: (wxid, nickname). For the forms that
/// pick one account without listing every account of the company.
pub async fn search_device_accounts(
    db: &scrm_db::Db,
    tenant_id: i64,
    keyword: &str,
    limit: i64,
) -> scrm_db::DbResult<Vec<(String, String)>> {
    let mut q =
        query("SELECT wxid, nickname FROM device_account WHERE tenant_id = ?").bind(tenant_id);
    let kw = keyword.trim().to_lowercase();
    if !kw.is_empty() {
        let p = crate::customers::search::like_pattern(&kw);
        q.push_sql(" AND (LOWER(wxid) LIKE ? ESCAPE '!' OR LOWER(nickname) LIKE ? ESCAPE '!')")
            .push_bind(p.clone())
            .push_bind(p);
    }
    q.push_sql(" ORDER BY id LIMIT ?").push_bind(limit);
    db.fetch_all(q).await
}
