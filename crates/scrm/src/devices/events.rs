//! What comes back from devices: events (new friend, friend deleted, message, member joined a
//! chat room, moment posted), recorded once each, and what a completed command leads to. Both
//! run inside the transaction that records them, so an effect happens exactly when the event or
//! the acknowledgement is first stored.

use scrm_db::{Backend, Tx, query};
use scrm_wecom::device::{Chatroom, Friend, Moment, command, event};
use serde_json::{Value, json};

use super::commands::{CommandRow, NewCommand, insert_ignore, record};
use super::{ai, tasks};
use crate::state::{AppState, now_ms};

/// Record an event from gateway `gateway_id` once (by its id) and act on it. Returns `false`
/// for an event seen before.
pub async fn handle(
    state: &AppState,
    tenant_id: i64,
    gateway_id: i64,
    event_id: &str,
    account: &str,
    name: &str,
    data: &Value,
) -> anyhow::Result<bool> {
    let mut tx = state.db.begin().await?;
    // Only events of accounts this gateway holds count.
    let holds = tx
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_account WHERE tenant_id = ? AND gateway_id = ? AND wxid = ?")
                .bind(tenant_id)
                .bind(gateway_id)
                .bind(account),
        )
        .await?;
    if holds == 0 {
        anyhow::bail!("event for account {account:?}, which this gateway does not hold");
    }
    let fresh = tx
        .execute(
            query(insert_ignore(
                tx.backend(),
                "device_event (tenant_id, gateway_id, event_id, event, account_wxid, data, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ))
            .bind(tenant_id)
            .bind(gateway_id)
            .bind(event_id)
            .bind(name)
            .bind(account)
            .bind(data.to_string())
            .bind(now_ms()),
        )
        .await?
        .rows_affected
        == 1;
    if fresh {
        apply(state, &mut tx, tenant_id, account, name, data).await?;
    }
    tx.commit().await?;
    if fresh {
        state.devices.wake();
    }
    Ok(fresh)
}

async fn apply(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    name: &str,
    data: &Value,
) -> anyhow::Result<()> {
    let text = |k: &str| data[k].as_str().unwrap_or_default().to_string();
    match name {
        event::FRIEND_ADDED => {
            let f: Friend = serde_json::from_value(data.clone())?;
            upsert_friends(tx, tenant_id, account, &[f]).await?;
            // Traffic pools holding the account count the friend as given to it today.
            crate::automation::traffic::count_new_friend(tx, tenant_id, account).await?;
        }
        event::FRIEND_DELETED => {
            tx.execute(
                query("UPDATE device_friend SET deleted = 1, updated_at = ? WHERE tenant_id = ? AND account_wxid = ? AND friend_wxid = ?")
                    .bind(now_ms())
                    .bind(tenant_id)
                    .bind(account)
                    .bind(text("wxid")),
            )
            .await?;
        }
        event::MESSAGE => {
            let room = data["chatroomId"].as_str().filter(|r| !r.is_empty());
            let from = text("from");
            let peer = room.map(str::to_string).unwrap_or_else(|| from.clone());
            let message_id = tx
                .insert_id(
                    query(
                        "INSERT INTO device_message (tenant_id, account_wxid, peer_wxid, sender_wxid, direction, text, at) \
                         VALUES (?, ?, ?, ?, 'in', ?, ?)",
                    )
                    .bind(tenant_id)
                    .bind(account)
                    .bind(&peer)
                    .bind(&from)
                    .bind(text("text"))
                    .bind(now_ms()),
                )
                .await?;
            // The AI answers customers one to one, not chat rooms.
            if room.is_none() {
                ai::on_message(state, tx, tenant_id, account, &peer, message_id).await?;
            }
        }
        event::MEMBER_JOINED => {
            // The account is in that room (a room it did not list before, e.g. joined since).
            let room = Chatroom {
                chatroom_id: text("chatroomId"),
                name: String::new(),
            };
            upsert_rooms(tx, tenant_id, account, &[room]).await?;
            tasks::welcome_member(
                state,
                tx,
                tenant_id,
                account,
                &text("chatroomId"),
                &text("wxid"),
                &text("nickname"),
            )
            .await?;
        }
        event::MOMENT_POSTED => {
            let m: Moment = serde_json::from_value(data.clone())?;
            store_moments(state, tx, tenant_id, account, &[m]).await?;
        }
        other => tracing::info!(event = other, "device event of an unknown kind ignored"),
    }
    Ok(())
}

/// What follows from a command completed for the first time.
pub async fn after_command(
    state: &AppState,
    tx: &mut Tx,
    c: &CommandRow,
    ok: bool,
    result: &Value,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&c.data).unwrap_or_default();
    if ok
        && matches!(
            c.command.as_str(),
            command::SEND_TEXT | command::SEND_IMAGE | command::SEND_LINK
        )
    {
        let text = match c.command.as_str() {
            command::SEND_TEXT => data["text"].as_str().unwrap_or_default().to_string(),
            command::SEND_IMAGE => format!("[image] {}", data["url"].as_str().unwrap_or_default()),
            _ => format!("[link] {}", data["title"].as_str().unwrap_or_default()),
        };
        tx.execute(
            query(
                "INSERT INTO device_message (tenant_id, account_wxid, peer_wxid, sender_wxid, direction, text, at) \
                 VALUES (?, ?, ?, ?, 'out', ?, ?)",
            )
            .bind(c.tenant_id)
            .bind(&c.account_wxid)
            .bind(data["to"].as_str().unwrap_or_default())
            .bind(&c.account_wxid)
            .bind(text)
            .bind(now_ms()),
        )
        .await?;
    }
    match (c.source.as_str(), c.command.as_str()) {
        ("group_push", _) => tasks::push_progress(tx, c.tenant_id, c.source_id).await?,
        (super::group_send::SOURCE, _) => {
            super::group_send::on_command_final(state, tx, c, ok, error).await?
        }
        ("auto_group", command::CREATE_CHATROOM) => {
            tasks::group_created(state, tx, c, ok, result).await?
        }
        (_, command::FETCH_FRIENDS) if ok => {
            let friends: Vec<Friend> =
                serde_json::from_value(result["friends"].clone()).unwrap_or_default();
            upsert_friends(tx, c.tenant_id, &c.account_wxid, &friends).await?;
            // Friends the device no longer lists were deleted.
            let mut q = query(
                "UPDATE device_friend SET deleted = 1, updated_at = ? WHERE tenant_id = ? AND account_wxid = ? AND deleted = 0",
            )
            .bind(now_ms())
            .bind(c.tenant_id)
            .bind(c.account_wxid.as_str());
            if !friends.is_empty() {
                q.push_sql(" AND friend_wxid NOT IN ");
                q.push_in_list(friends.iter().map(|f| f.wxid.clone()));
            }
            tx.execute(q).await?;
            // The chat rooms, when the gateway lists them: the rooms a pool push can use.
            if let Some(list) = result.get("chatrooms").filter(|v| v.is_array()) {
                let rooms: Vec<Chatroom> = serde_json::from_value(list.clone()).unwrap_or_default();
                upsert_rooms(tx, c.tenant_id, &c.account_wxid, &rooms).await?;
                let mut q = query(
                    "UPDATE device_chatroom SET left_room = 1, updated_at = ? WHERE tenant_id = ? AND account_wxid = ? AND left_room = 0",
                )
                .bind(now_ms())
                .bind(c.tenant_id)
                .bind(c.account_wxid.as_str());
                if !rooms.is_empty() {
                    q.push_sql(" AND chatroom_id NOT IN ");
                    q.push_in_list(rooms.iter().map(|r| r.chatroom_id.clone()));
                }
                tx.execute(q).await?;
            }
        }
        (_, command::FETCH_MOMENTS) if ok => {
            let moments: Vec<Moment> =
                serde_json::from_value(result["moments"].clone()).unwrap_or_default();
            let new = store_moments(state, tx, c.tenant_id, &c.account_wxid, &moments).await?;
            // Pages come newest first: a page with nothing new means the older ones were
            // collected before, so collection stops there instead of walking the whole history.
            if let Some(cursor) = result["cursor"].as_str().filter(|c| !c.is_empty())
                && new > 0
            {
                record(
                    state,
                    tx,
                    c.tenant_id,
                    NewCommand::new(
                        &c.account_wxid,
                        command::FETCH_MOMENTS,
                        json!({"cursor": cursor}),
                        if c.source == "auto_like" {
                            "auto_like"
                        } else {
                            "collect"
                        },
                        c.source_id,
                    ),
                )
                .await?;
            }
        }
        (_, command::LIKE_MOMENT) if ok => {
            tx.execute(
                query("UPDATE device_moment SET liked = 1 WHERE tenant_id = ? AND account_wxid = ? AND moment_id = ?")
                    .bind(c.tenant_id)
                    .bind(c.account_wxid.as_str())
                    .bind(data["momentId"].as_str().unwrap_or_default()),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Insert or refresh friends (and undelete them).
pub async fn upsert_friends(
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    friends: &[Friend],
) -> anyhow::Result<()> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO device_friend (tenant_id, account_wxid, friend_wxid, nickname, deleted, updated_at) VALUES (?, ?, ?, ?, 0, ?) \
             ON DUPLICATE KEY UPDATE nickname = VALUES(nickname), deleted = 0, updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO device_friend (tenant_id, account_wxid, friend_wxid, nickname, deleted, updated_at) VALUES (?, ?, ?, ?, 0, ?) \
             ON CONFLICT (tenant_id, account_wxid, friend_wxid) DO UPDATE SET nickname = excluded.nickname, deleted = 0, updated_at = excluded.updated_at"
        }
    };
    for f in friends {
        tx.execute(
            query(sql)
                .bind(tenant_id)
                .bind(account)
                .bind(f.wxid.as_str())
                .bind(f.nickname.as_str())
                .bind(now_ms()),
        )
        .await?;
    }
    Ok(())
}

/// Chat rooms `account` is in (a friend sync's `chatrooms`, a group it created, a member
/// joining): inserted or refreshed, a known name kept when the new one is empty.
pub async fn upsert_rooms(
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    rooms: &[Chatroom],
) -> anyhow::Result<()> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO device_chatroom (tenant_id, account_wxid, chatroom_id, name, left_room, updated_at) VALUES (?, ?, ?, ?, 0, ?) \
             ON DUPLICATE KEY UPDATE name = IF(VALUES(name) = '', name, VALUES(name)), left_room = 0, updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO device_chatroom (tenant_id, account_wxid, chatroom_id, name, left_room, updated_at) VALUES (?, ?, ?, ?, 0, ?) \
             ON CONFLICT (tenant_id, account_wxid, chatroom_id) DO UPDATE SET name = CASE WHEN excluded.name = '' \
             THEN device_chatroom.name ELSE excluded.name END, left_room = 0, updated_at = excluded.updated_at"
        }
    };
    for r in rooms.iter().filter(|r| !r.chatroom_id.is_empty()) {
        tx.execute(
            query(sql)
                .bind(tenant_id)
                .bind(account)
                .bind(r.chatroom_id.as_str())
                .bind(r.name.as_str())
                .bind(now_ms()),
        )
        .await?;
    }
    Ok(())
}

/// Store moments not seen before and posted within the retention; with auto-like on, like each
/// new one (a `like_moment` command, spaced like pushes). Returns how many were new.
async fn store_moments(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    account: &str,
    moments: &[Moment],
) -> anyhow::Result<usize> {
    let auto_like = tx
        .fetch_i64(
            query("SELECT COUNT(*) FROM device_account WHERE tenant_id = ? AND wxid = ? AND auto_like = 1")
                .bind(tenant_id)
                .bind(account),
        )
        .await?
        > 0;
    let sql = insert_ignore(
        tx.backend(),
        "device_moment (tenant_id, account_wxid, moment_id, author_wxid, text, liked, seen_at, posted_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
    );
    let mut stored = 0;
    // Moments past the retention are not kept (the daily clean-up would delete them), and
    // count as nothing new, so a collection stops at them.
    let oldest = now_ms() - state.config.moment_retention_days * 86_400_000;
    for m in moments
        .iter()
        .filter(|m| m.posted_at.is_none_or(|at| at >= oldest))
    {
        let now = now_ms();
        let new = tx
            .execute(
                query(sql.clone())
                    .bind(tenant_id)
                    .bind(account)
                    .bind(m.moment_id.as_str())
                    .bind(m.author.as_str())
                    .bind(m.text.as_str())
                    .bind(now)
                    .bind(m.posted_at.unwrap_or(now)),
            )
            .await?
            .rows_affected
            == 1;
        stored += usize::from(new);
        if new && auto_like {
            let mut c = NewCommand::new(
                account,
                command::LIKE_MOMENT,
                json!({"momentId": m.moment_id}),
                "auto_like",
                0,
            );
            c.spaced = true;
            record(state, tx, tenant_id, c).await?;
        }
    }
    Ok(stored)
}
