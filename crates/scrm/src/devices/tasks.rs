//! Seed 002's device jobs: group push (群消息推送, chat-room messages with a random gap per
//! account), auto group create (自动建群, with the welcome after creation, and seed 002's
//! `POST /v1/workbench/auto-group`), group welcome (入群欢迎语, `{nickname}` and `{date}`),
//! friend sync and auto-like of friends' moments.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use scrm_db::{Backend, Tx, query};
use scrm_wecom::device::{Chatroom, command};
use serde::Deserialize;
use serde_json::{Value, json};

use super::commands::{CommandRow, NewCommand, record};
use super::provider::{Capability, resolve, resolve_for};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::automation::{day_of, json_col, traffic};
use crate::http::envelope::{Paging, RecordsPage, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso, now_ms};

/// The task routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "devices")
        .route(
            Method::POST,
            "/api/v1/devices/group-pushes",
            Access::Permission(perm::GROUP_PUSH_CREATE),
            "Push a message into chat rooms of a device account (random gap per account)",
            create_push,
        )
        .route(
            Method::GET,
            "/api/v1/devices/group-pushes",
            Access::Permission(perm::GROUP_PUSH_VIEW),
            "Group pushes, newest first, with their counts (filter by accountId, status, taskName)",
            list_pushes,
        )
        .route(
            Method::GET,
            "/api/v1/devices/group-pushes/{id}",
            Access::Permission(perm::GROUP_PUSH_VIEW),
            "A group push with its result per chat room",
            get_push,
        )
        .route(
            Method::POST,
            "/v1/workbench/auto-group",
            Access::Permission(perm::WORKBENCH_AUTO_GROUP_CREATE),
            "Create a group chat on a device account now, with a welcome after creation (seed 002)",
            create_auto_group,
        )
        .route(
            Method::GET,
            "/api/v1/devices/auto-groups/{id}",
            Access::Permission(perm::DEVICE_VIEW),
            "An auto group creation and its chat room",
            get_auto_group,
        )
        .route(
            Method::PUT,
            "/api/v1/devices/group-welcomes",
            Access::Permission(perm::WELCOME_MANAGE),
            "Set the welcome for members joining a chat room of a device account ({nickname}, {date})",
            put_welcome,
        )
        .route(
            Method::GET,
            "/api/v1/devices/group-welcomes",
            Access::Permission(perm::WELCOME_VIEW),
            "Every group welcome",
            list_welcomes,
        )
}

fn field(name: &str, message: &str) -> ApiError {
    ApiError::field(name, message)
}

/// A task names one device account (`accountId`) or a traffic pool of them (`poolId`), not
/// both: the account, or empty for a pool (the pool picks when the task is recorded).
fn account_or_pool(account: &Option<String>, pool: Option<i64>) -> ApiResult<String> {
    match pool {
        None => account_field(account),
        Some(_) if account.as_deref().is_some_and(|a| !a.trim().is_empty()) => {
            Err(field("poolId", "give accountId or poolId, not both"))
        }
        Some(_) => Ok(String::new()),
    }
}

fn account_field(v: &Option<String>) -> ApiResult<String> {
    let a = v.as_deref().map(str::trim).unwrap_or_default();
    if a.is_empty() || a.len() > 64 {
        return Err(field("accountId", "is required (at most 64 characters)"));
    }
    Ok(a.to_string())
}

/// Device message content: `{type: TEXT|IMAGE|LINK, data}` → the command and its data (without
/// `to`).
pub fn device_content(v: Option<&Value>) -> ApiResult<(&'static str, Value)> {
    const F: &str = "messageContent";
    let v = v.ok_or_else(|| field(F, "is required"))?;
    let data = &v["data"];
    let s = |k: &str| data[k].as_str().map(str::trim).filter(|s| !s.is_empty());
    match v["type"].as_str() {
        Some("TEXT") => {
            let text = s("text").ok_or_else(|| field("messageContent.data.text", "is required"))?;
            if text.chars().count() > 2000 {
                return Err(field("messageContent.data.text", "at most 2000 characters"));
            }
            Ok((command::SEND_TEXT, json!({"text": text})))
        }
        Some("IMAGE") => {
            let url = s("url").ok_or_else(|| field("messageContent.data.url", "is required"))?;
            Ok((command::SEND_IMAGE, json!({"url": url})))
        }
        Some("LINK") => {
            let title =
                s("title").ok_or_else(|| field("messageContent.data.title", "is required"))?;
            let url = s("url").ok_or_else(|| field("messageContent.data.url", "is required"))?;
            Ok((
                command::SEND_LINK,
                json!({"title": title, "url": url, "desc": s("desc").unwrap_or_default(),
                       "picUrl": s("picUrl").or(s("pic_url")).unwrap_or_default()}),
            ))
        }
        _ => Err(ApiError::Refused {
            status: StatusCode::BAD_REQUEST,
            name: "MESSAGE_CONTENT_INVALID",
            message: "messageContent.type: TEXT, IMAGE or LINK".into(),
            fields: vec![crate::http::error::FieldError {
                field: "messageContent.type".into(),
                message: "TEXT, IMAGE or LINK".into(),
            }],
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushBody {
    account_id: Option<String>,
    /// A traffic pool of device accounts instead of one account: each chat room is pushed by
    /// one of the pool's accounts in that room, picked by the pool.
    pool_id: Option<i64>,
    chatroom_ids: Option<Vec<String>>,
    message_content: Option<Value>,
    task_name: Option<String>,
}

pub async fn create_push(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<PushBody>,
) -> ApiResult<Reply<Value>> {
    let account = account_or_pool(&b.account_id, b.pool_id)?;
    let mut rooms: Vec<String> = Vec::new();
    // Each room's index in the request, for errors naming it.
    let mut given_at: Vec<usize> = Vec::new();
    for (i, r) in b.chatroom_ids.unwrap_or_default().into_iter().enumerate() {
        let r = r.trim().to_string();
        if r.is_empty() || r.len() > 64 {
            return Err(field(&format!("chatroomIds[{i}]"), "1-64 characters"));
        }
        if !rooms.contains(&r) {
            rooms.push(r);
            given_at.push(i);
        }
    }
    if rooms.is_empty() || rooms.len() > 500 {
        return Err(field("chatroomIds", "1-500 chat rooms"));
    }
    let (cmd, data) = device_content(b.message_content.as_ref())?;
    if b.task_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 100)
    {
        return Err(field("taskName", "at most 100 characters"));
    }
    if b.pool_id.is_none() {
        resolve_for(
            &state.db,
            user.tenant_id,
            &account,
            Capability::SendToGroup,
            "accountId",
        )
        .await?;
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO device_group_push (tenant_id, account_wxid, pool_id, task_name, chatroom_ids, content, status, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(&account)
            .bind(b.pool_id)
            .bind(b.task_name.clone())
            .bind(json!(rooms).to_string())
            .bind(b.message_content.clone().unwrap_or_default().to_string())
            .bind(user.id)
            .bind(now)
            .bind(now),
        )
        .await?;
    // Who pushes each room: the account, or the pool's pick among its accounts in the room.
    let senders = match b.pool_id {
        None => vec![account.clone(); rooms.len()],
        Some(pool) => {
            let work = room_work(&mut tx, user.tenant_id, id, &rooms, &given_at).await?;
            match traffic::give_work(&mut tx, user.tenant_id, pool, "group_push", &work).await {
                Ok(s) => s,
                Err(e) => {
                    tx.rollback().await?;
                    return Err(e);
                }
            }
        }
    };
    for (room, sender) in rooms.iter().zip(&senders) {
        let mut d = data.clone();
        d["to"] = json!(room);
        let mut c = NewCommand::new(sender, cmd, d, "group_push", id);
        c.spaced = true;
        record(&state, &mut tx, user.tenant_id, c).await?;
    }
    audit::record(
        &mut tx,
        &user,
        "device.group_push.create",
        "device_group_push",
        id,
        json!({"accountId": account, "poolId": b.pool_id, "chatrooms": rooms.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(push_view(&state, user.tenant_id, id).await?))
}

/// A pool push's chat rooms as pool work: each can be pushed by the device accounts that are in
/// it (as their last friend sync, a group they created or a member joining showed) and are not
/// logged out.
async fn room_work(
    tx: &mut Tx,
    tenant_id: i64,
    push_id: i64,
    rooms: &[String],
    given_at: &[usize],
) -> ApiResult<Vec<traffic::Work>> {
    let mut q = query(
        "SELECT r.chatroom_id, r.account_wxid FROM device_chatroom r JOIN device_account a \
         ON a.tenant_id = r.tenant_id AND a.wxid = r.account_wxid \
         WHERE r.tenant_id = ? AND r.left_room = 0 AND a.status <> 'EXPIRED' AND r.chatroom_id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(rooms.iter().cloned());
    let inside: Vec<(String, String)> = tx.fetch_all(q).await?;
    Ok(rooms
        .iter()
        .zip(given_at)
        .map(|(room, i)| traffic::Work {
            key: format!("gp:{push_id}:{room}"),
            able: inside
                .iter()
                .filter(|(r, _)| r == room)
                .map(|(_, a)| a.clone())
                .collect(),
            field: format!("chatroomIds[{i}]"),
        })
        .collect())
}

/// Recompute a push's status from its commands.
pub async fn push_progress(tx: &mut Tx, tenant_id: i64, push_id: i64) -> anyhow::Result<()> {
    let counts: Vec<(String, i64)> = tx
        .fetch_all(
            query("SELECT status, COUNT(*) FROM device_command WHERE tenant_id = ? AND source = 'group_push' AND source_id = ? GROUP BY status")
                .bind(tenant_id)
                .bind(push_id),
        )
        .await?;
    let n = |s: &str| {
        counts
            .iter()
            .filter(|(k, _)| k == s)
            .map(|(_, c)| *c)
            .sum::<i64>()
    };
    let total: i64 = counts.iter().map(|(_, c)| c).sum();
    let (done, failed) = (n("done"), n("failed"));
    let status = if done + failed < total {
        "PROCESSING"
    } else if failed == 0 {
        "COMPLETED"
    } else if done == 0 {
        "FAILED"
    } else {
        "PARTIAL_SUCCESS"
    };
    tx.execute(
        query("UPDATE device_group_push SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(status)
            .bind(now_ms())
            .bind(tenant_id)
            .bind(push_id),
    )
    .await?;
    Ok(())
}

async fn push_view(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    type Row = (
        String,
        Option<i64>,
        Option<String>,
        String,
        String,
        i64,
        i64,
    );
    let row: Option<Row> = state
        .db
        .fetch_optional(
            query("SELECT account_wxid, pool_id, task_name, content, status, created_at, updated_at FROM device_group_push WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let (account, pool, name, content, status, created, updated) =
        row.ok_or(ApiError::NotFound("group push"))?;
    let results: Vec<(String, String, String, Option<String>, i64)> = state
        .db
        .fetch_all(
            query("SELECT account_wxid, data, status, error, sends FROM device_command WHERE tenant_id = ? AND source = 'group_push' AND source_id = ? ORDER BY id")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let results: Vec<Value> = results
        .into_iter()
        .map(|(by, data, st, error, sends)| {
            let d: Value = serde_json::from_str(&data).unwrap_or_default();
            json!({"chatroomId": d["to"], "accountId": by, "status": result_status(&st), "errorMessage": error, "sends": sends})
        })
        .collect();
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    Ok(json!({
        "groupPushId": id,
        "taskName": name,
        "accountId": Some(account).filter(|a| !a.is_empty()),
        "poolId": pool,
        "messageContent": serde_json::from_str::<Value>(&content).unwrap_or_default(),
        "status": status,
        "targetCount": results.len(),
        "successCount": count("SUCCESS"),
        "failedCount": count("FAILED"),
        "createTime": iso(created),
        "updateTime": iso(updated),
        "results": results,
    }))
}

/// A command's status as a result: PENDING (not yet released or sent), SENT (waiting for the
/// device's acknowledgement), SUCCESS, FAILED.
pub fn result_status(s: &str) -> &'static str {
    match s {
        "done" => "SUCCESS",
        "failed" => "FAILED",
        "sent" => "SENT",
        _ => "PENDING",
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushListQuery {
    account_id: Option<String>,
    pool_id: Option<i64>,
    status: Option<String>,
    task_name: Option<String>,
    page: Option<i64>,
    size: Option<i64>,
}

/// Statuses a group push can have.
const PUSH_STATUSES: [&str; 5] = [
    "PENDING",
    "PROCESSING",
    "COMPLETED",
    "PARTIAL_SUCCESS",
    "FAILED",
];

pub async fn list_pushes(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PushListQuery>,
) -> ApiResult<Reply<RecordsPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 10, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(a) = q.account_id.filter(|s| !s.is_empty()) {
        // The account's own pushes and pool pushes it pushed rooms of.
        cond.push_sql(
            " AND (account_wxid = ? OR id IN (SELECT source_id FROM device_command WHERE tenant_id = ? \
             AND source = 'group_push' AND account_wxid = ?))",
        )
        .push_bind(a.clone())
        .push_bind(user.tenant_id)
        .push_bind(a);
    }
    if let Some(p) = q.pool_id {
        cond.push_sql(" AND pool_id = ?").push_bind(p);
    }
    if let Some(st) = q.status.filter(|s| !s.is_empty()) {
        if !PUSH_STATUSES.contains(&st.as_str()) {
            return Err(field(
                "status",
                "PENDING, PROCESSING, COMPLETED, PARTIAL_SUCCESS or FAILED",
            ));
        }
        cond.push_sql(" AND status = ?").push_bind(st);
    }
    if let Some(n) = q.task_name.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND task_name LIKE ?")
            .push_bind(format!("%{n}%"));
    }
    let mut count = query("SELECT COUNT(*) FROM device_group_push");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(
        "SELECT id, account_wxid, pool_id, task_name, status, created_at, updated_at FROM device_group_push",
    );
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    type Row = (i64, String, Option<i64>, Option<String>, String, i64, i64);
    let rows: Vec<Row> = state.db.fetch_all(page).await?;
    // The page's counts in one statement.
    let mut counts: Vec<(i64, String, i64)> = Vec::new();
    if !rows.is_empty() {
        let mut cq = query(
            "SELECT source_id, status, COUNT(*) FROM device_command WHERE tenant_id = ? AND source = 'group_push' AND source_id IN ",
        )
        .bind(user.tenant_id);
        cq.push_in_list(rows.iter().map(|r| r.0));
        cq.push_sql(" GROUP BY source_id, status");
        counts = state.db.fetch_all(cq).await?;
    }
    let records = rows
        .into_iter()
        .map(|(id, account, pool, name, status, created, updated)| {
            let n = |want: Option<&str>| {
                counts
                    .iter()
                    .filter(|(p, st, _)| *p == id && want.is_none_or(|w| w == st))
                    .map(|c| c.2)
                    .sum::<i64>()
            };
            json!({
                "groupPushId": id,
                "taskName": name,
                "accountId": Some(account).filter(|a| !a.is_empty()),
                "poolId": pool,
                "status": status,
                "targetCount": n(None),
                "successCount": n(Some("done")),
                "failedCount": n(Some("failed")),
                "createTime": iso(created),
                "updateTime": iso(updated),
            })
        })
        .collect();
    Ok(ok(RecordsPage::new(
        records,
        total,
        paging.page,
        paging.size,
    )))
}

pub async fn get_push(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(push_view(&state, user.tenant_id, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoGroupBody {
    account_id: Option<String>,
    /// A traffic pool of device accounts instead of one account: the pool picks one of its
    /// accounts that has every member as a friend.
    pool_id: Option<i64>,
    group_name: Option<String>,
    member_wxids: Option<Vec<String>>,
    welcome_message: Option<String>,
}

async fn create_auto_group(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<AutoGroupBody>,
) -> ApiResult<Reply<Value>> {
    let account = account_or_pool(&b.account_id, b.pool_id)?;
    let name = b
        .group_name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || name.chars().count() > 30 {
        return Err(field("groupName", "1-30 characters"));
    }
    let mut members: Vec<String> = Vec::new();
    for (i, m) in b.member_wxids.unwrap_or_default().into_iter().enumerate() {
        let m = m.trim().to_string();
        if m.is_empty() || m.len() > 64 {
            return Err(field(&format!("memberWxids[{i}]"), "1-64 characters"));
        }
        if m != account && !members.contains(&m) {
            members.push(m);
        }
    }
    // WeChat needs two others to make a group chat; 500 is a chat room's size.
    if members.len() < 2 || members.len() > 499 {
        return Err(field("memberWxids", "2-499 friends of the account"));
    }
    let welcome = b
        .welcome_message
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty());
    if welcome.as_ref().is_some_and(|w| w.chars().count() > 2000) {
        return Err(field("welcomeMessage", "at most 2000 characters"));
    }
    if b.pool_id.is_none() {
        resolve_for(
            &state.db,
            user.tenant_id,
            &account,
            Capability::CreateGroup,
            "accountId",
        )
        .await?;
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO device_auto_group (tenant_id, account_wxid, group_name, member_wxids, welcome_message, status, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'PENDING', ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(&account)
            .bind(&name)
            .bind(json!(members).to_string())
            .bind(welcome.clone())
            .bind(user.id)
            .bind(now)
            .bind(now),
        )
        .await?;
    // Through a pool: the pool's pick among its accounts with every member as a friend.
    let account =
        match b.pool_id {
            None => account,
            Some(pool) => {
                let work = traffic::Work {
                    key: format!("ag:{id}"),
                    able: friends_of_all(&mut tx, user.tenant_id, &members).await?,
                    field: "memberWxids".into(),
                };
                let picked =
                    match traffic::give_work(&mut tx, user.tenant_id, pool, "auto_group", &[work])
                        .await
                    {
                        Ok(mut s) => s.remove(0),
                        Err(e) => {
                            tx.rollback().await?;
                            return Err(e);
                        }
                    };
                tx.execute(
                    query("UPDATE device_auto_group SET account_wxid = ? WHERE id = ?")
                        .bind(&picked)
                        .bind(id),
                )
                .await?;
                picked
            }
        };
    let c = NewCommand::new(
        &account,
        command::CREATE_CHATROOM,
        json!({"name": name, "members": members}),
        "auto_group",
        id,
    );
    record(&state, &mut tx, user.tenant_id, c).await?;
    audit::record(
        &mut tx,
        &user,
        "device.auto_group.create",
        "device_auto_group",
        id,
        json!({"accountId": account, "poolId": b.pool_id, "groupName": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(auto_group_view(&state, user.tenant_id, id).await?))
}

/// The device accounts (not logged out) that have every one of `members` as a friend.
async fn friends_of_all(tx: &mut Tx, tenant_id: i64, members: &[String]) -> ApiResult<Vec<String>> {
    let mut q = query(
        "SELECT f.account_wxid FROM device_friend f JOIN device_account a ON a.tenant_id = f.tenant_id \
         AND a.wxid = f.account_wxid WHERE f.tenant_id = ? AND f.deleted = 0 AND a.status <> 'EXPIRED' \
         AND f.friend_wxid IN ",
    )
    .bind(tenant_id);
    q.push_in_list(members.iter().cloned());
    q.push_sql(" GROUP BY f.account_wxid HAVING COUNT(*) = ?")
        .push_bind(members.len() as i64);
    let rows: Vec<(String,)> = tx.fetch_all(q).await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// The chat room was created (or not): store it, and send the welcome into it.
pub async fn group_created(
    state: &AppState,
    tx: &mut Tx,
    c: &CommandRow,
    ok: bool,
    result: &Value,
) -> anyhow::Result<()> {
    let room = result["chatroomId"]
        .as_str()
        .filter(|r| ok && !r.is_empty());
    let error = if room.is_none() {
        let e: Option<(Option<String>,)> = tx
            .fetch_optional(query("SELECT error FROM device_command WHERE id = ?").bind(c.id))
            .await?;
        let e = e.and_then(|(e,)| e);
        Some(e.unwrap_or_else(|| "the device returned no chat room".into()))
    } else {
        None
    };
    tx.execute(
        query("UPDATE device_auto_group SET status = ?, chatroom_id = ?, error = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(if room.is_some() { "CREATED" } else { "FAILED" })
            .bind(room)
            .bind(error)
            .bind(now_ms())
            .bind(c.tenant_id)
            .bind(c.source_id),
    )
    .await?;
    let Some(room) = room else { return Ok(()) };
    let group_name = data_name(c);
    super::events::upsert_rooms(
        tx,
        c.tenant_id,
        &c.account_wxid,
        &[Chatroom {
            chatroom_id: room.to_string(),
            name: group_name,
        }],
    )
    .await?;
    let row: Option<(Option<String>, String)> = tx
        .fetch_optional(
            query("SELECT welcome_message, member_wxids FROM device_auto_group WHERE tenant_id = ? AND id = ?")
                .bind(c.tenant_id)
                .bind(c.source_id),
        )
        .await?;
    let Some((Some(welcome), members)) = row else {
        return Ok(());
    };
    let members: Vec<String> = json_col(Some(&members));
    let mut names = Vec::with_capacity(members.len());
    for m in &members {
        names.push(nickname(tx, c.tenant_id, &c.account_wxid, m).await?);
    }
    let text = render(&welcome, &names.join("、"), now_ms());
    let cmd = NewCommand::new(
        &c.account_wxid,
        command::SEND_TEXT,
        json!({"to": room, "text": text}),
        "auto_group_welcome",
        c.source_id,
    );
    record(state, tx, c.tenant_id, cmd).await?;
    Ok(())
}

/// The name a `create_chatroom` command asked for.
fn data_name(c: &CommandRow) -> String {
    serde_json::from_str::<Value>(&c.data)
        .ok()
        .and_then(|d| d["name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn nickname(
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    wxid: &str,
) -> anyhow::Result<String> {
    let n: Option<(String,)> = tx
        .fetch_optional(
            query("SELECT nickname FROM device_friend WHERE tenant_id = ? AND account_wxid = ? AND friend_wxid = ?")
                .bind(tenant_id)
                .bind(account)
                .bind(wxid),
        )
        .await?;
    Ok(n.map(|(n,)| n).unwrap_or_else(|| wxid.to_string()))
}

/// Seed 002's variables: `{nickname}` and `{date}` (Asia/Shanghai, YYYY-MM-DD).
pub fn render(template: &str, nickname: &str, now: i64) -> String {
    template
        .replace("{nickname}", nickname)
        .replace("{date}", &day_of(now))
}

async fn auto_group_view(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
    );
    let row: Option<Row> = state
        .db
        .fetch_optional(
            query("SELECT account_wxid, group_name, member_wxids, welcome_message, status, chatroom_id, error, created_at, updated_at \
                   FROM device_auto_group WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let (account, name, members, welcome, status, room, error, created, updated) =
        row.ok_or(ApiError::NotFound("auto group"))?;
    Ok(json!({
        "autoGroupId": id,
        "accountId": account,
        "groupName": name,
        "memberWxids": json_col::<Vec<String>>(Some(&members)),
        "welcomeMessage": welcome,
        "status": status,
        "chatroomId": room,
        "errorMessage": error,
        "createTime": iso(created),
        "updateTime": iso(updated),
    }))
}

async fn get_auto_group(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(auto_group_view(&state, user.tenant_id, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WelcomeBody {
    account_id: Option<String>,
    chatroom_id: Option<String>,
    message: Option<String>,
    delay_seconds: Option<i64>,
    enabled: Option<bool>,
}

async fn put_welcome(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<WelcomeBody>,
) -> ApiResult<Reply<Value>> {
    let account = account_field(&b.account_id)?;
    let room = b
        .chatroom_id
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if room.len() > 64 {
        return Err(field("chatroomId", "at most 64 characters"));
    }
    let message = b
        .message
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if message.is_empty() || message.chars().count() > 2000 {
        return Err(field("message", "1-2000 characters"));
    }
    let delay = b.delay_seconds.unwrap_or(3);
    if !(0..=300).contains(&delay) {
        return Err(field("delaySeconds", "0-300"));
    }
    let acc = resolve(&state.db, user.tenant_id, &account, "accountId").await?;
    acc.require(Capability::SendToGroup, "accountId")?;
    let now = now_ms();
    let enabled = b.enabled.unwrap_or(true) as i64;
    let sql = match state.db.backend() {
        Backend::MySql => {
            "INSERT INTO device_group_welcome (tenant_id, account_wxid, chatroom_id, message, delay_secs, enabled, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE message = VALUES(message), delay_secs = VALUES(delay_secs), \
             enabled = VALUES(enabled), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO device_group_welcome (tenant_id, account_wxid, chatroom_id, message, delay_secs, enabled, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, account_wxid, chatroom_id) DO UPDATE SET message = excluded.message, \
             delay_secs = excluded.delay_secs, enabled = excluded.enabled, updated_at = excluded.updated_at"
        }
    };
    let mut tx = state.db.begin().await?;
    tx.execute(
        query(sql)
            .bind(user.tenant_id)
            .bind(&account)
            .bind(&room)
            .bind(&message)
            .bind(delay)
            .bind(enabled)
            .bind(now)
            .bind(now),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "device.group_welcome.set",
        "device_group_welcome",
        0,
        json!({"accountId": account, "chatroomId": room}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(
        json!({"accountId": account, "chatroomId": room, "message": message, "delaySeconds": delay, "enabled": enabled == 1}),
    ))
}

async fn list_welcomes(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<Value>>> {
    let rows: Vec<(String, String, String, i64, i64)> = state
        .db
        .fetch_all(
            query("SELECT account_wxid, chatroom_id, message, delay_secs, enabled FROM device_group_welcome WHERE tenant_id = ? ORDER BY id")
                .bind(user.tenant_id),
        )
        .await?;
    Ok(ok(rows
        .into_iter()
        .map(|(a, r, m, d, e)| json!({"accountId": a, "chatroomId": r, "message": m, "delaySeconds": d, "enabled": e == 1}))
        .collect()))
}

/// A member joined a chat room of `account`: the room's welcome (else the account's default),
/// after its delay.
pub async fn welcome_member(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    room: &str,
    member: &str,
    nickname: &str,
) -> anyhow::Result<()> {
    if member == account || room.is_empty() {
        return Ok(());
    }
    let configs: Vec<(String, String, i64)> = tx
        .fetch_all(
            query("SELECT chatroom_id, message, delay_secs FROM device_group_welcome WHERE tenant_id = ? AND account_wxid = ? \
                   AND chatroom_id IN (?, '') AND enabled = 1")
                .bind(tenant_id)
                .bind(account)
                .bind(room),
        )
        .await?;
    let Some((_, message, delay)) = configs
        .iter()
        .find(|(r, _, _)| r == room)
        .or_else(|| configs.first())
        .cloned()
    else {
        return Ok(());
    };
    let now = now_ms();
    let name = if nickname.is_empty() {
        member
    } else {
        nickname
    };
    let mut c = NewCommand::new(
        account,
        command::SEND_TEXT,
        json!({"to": room, "text": render(&message, name, now)}),
        "welcome",
        0,
    );
    c.run_at = Some(now + delay * 1000);
    record(state, tx, tenant_id, c).await?;
    Ok(())
}
