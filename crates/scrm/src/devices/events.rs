//! What comes back from devices: events (new friend, friend deleted, message, member joined a
//! chat room, moment posted), recorded once each, and what a completed command leads to. Both
//! run inside the transaction that records them, so an effect happens exactly when the event or
//! the acknowledgement is first stored.

use scrm_db::{Backend, Tx, query};
use scrm_wecom::device::{Friend, Moment, command, event};
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

/// Store moments not seen before; with auto-like on, like each new one (a `like_moment`
/// command, spaced like pushes). Returns how many were new.
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
    for m in moments {
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
