//! Customer group chats (filled by sync and callbacks), their members (join time, join scene,
//! member type) and group tags. Joins and leaves emit `group.member.joined` / `.left` and write
//! the customer's timeline, in the same transaction.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Backend, DbResult, Tx, query};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{check_ids, store, tags, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "groups")
        .route(
            M::GET,
            "/api/v1/groups",
            Access::Permission(perm::GROUP_CHAT_VIEW),
            "Customer group chats (page, size, keyword, ownerUserid)",
            list,
        )
        .route(
            M::GET,
            "/api/v1/groups/{id}",
            Access::Permission(perm::GROUP_CHAT_VIEW),
            "One group chat with its tags",
            get,
        )
        .route(
            M::GET,
            "/api/v1/groups/{id}/members",
            Access::Permission(perm::GROUP_CHAT_VIEW),
            "A group chat's members (memberType 1 staff, 2 customer)",
            members,
        )
        .route(
            M::POST,
            "/api/v1/groups/{id}/tags",
            Access::Permission(perm::GROUP_CHAT_MANAGE),
            "Tag a group chat",
            add_tags,
        )
        .route(
            M::DELETE,
            "/api/v1/groups/{id}/tags",
            Access::Permission(perm::GROUP_CHAT_MANAGE),
            "Untag a group chat",
            remove_tags,
        )
}

/// A group chat from WeCom, inserted or updated by chat id; returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_group(
    tx: &mut Tx,
    tenant_id: i64,
    chat_id: &str,
    name: Option<&str>,
    owner_userid: Option<&str>,
    notice: Option<&str>,
    create_time: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO group_chat (tenant_id, chat_id, name, owner_userid, notice, status, member_count, create_time, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE name = VALUES(name), owner_userid = VALUES(owner_userid), notice = VALUES(notice), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO group_chat (tenant_id, chat_id, name, owner_userid, notice, status, member_count, create_time, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?) \
             ON CONFLICT (tenant_id, chat_id) DO UPDATE SET name = excluded.name, owner_userid = excluded.owner_userid, notice = excluded.notice, updated_at = excluded.updated_at"
        }
    };
    tx.execute(
        query(sql)
            .bind(tenant_id)
            .bind(chat_id)
            .bind(name)
            .bind(owner_userid)
            .bind(notice)
            .bind(create_time)
            .bind(now)
            .bind(now),
    )
    .await?;
    tx.fetch_i64(
        query("SELECT id FROM group_chat WHERE tenant_id = ? AND chat_id = ?")
            .bind(tenant_id)
            .bind(chat_id),
    )
    .await
}

/// A member joining (or re-joining). `customer_id` links an external member to a customer.
#[allow(clippy::too_many_arguments)]
pub async fn member_joined(
    tx: &mut Tx,
    tenant_id: i64,
    group_id: i64,
    member_userid: &str,
    member_type: i64,
    customer_id: Option<i64>,
    name: Option<&str>,
    join_time: i64,
    join_scene: i64,
) -> DbResult<()> {
    let now = now_ms();
    let existing: Option<(i64, i64)> = tx.fetch_optional(query("SELECT id, status FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND member_userid = ?").bind(tenant_id).bind(group_id).bind(member_userid)).await?;
    match existing {
        Some((_, 1)) => return Ok(()),
        Some((mid, _)) => {
            tx.execute(query("UPDATE group_chat_member SET status = 1, left_at = NULL, join_time = ?, join_scene = ?, customer_id = ?, updated_at = ? WHERE id = ?").bind(join_time).bind(join_scene).bind(customer_id).bind(now).bind(mid)).await?;
        }
        None => {
            tx.execute(
                query("INSERT INTO group_chat_member (tenant_id, group_id, member_userid, member_type, customer_id, name, join_time, join_scene, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)")
                    .bind(tenant_id).bind(group_id).bind(member_userid).bind(member_type).bind(customer_id).bind(name).bind(join_time).bind(join_scene).bind(now).bind(now),
            )
            .await?;
        }
    }
    tx.execute(query("UPDATE group_chat SET member_count = member_count + 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(now).bind(tenant_id).bind(group_id)).await?;
    if let Some(cid) = customer_id {
        store::touch(tx, tenant_id, cid, now).await?;
        timeline::record(
            tx,
            tenant_id,
            cid,
            timeline::kind::GROUP_JOIN,
            "joined a group chat",
            json!({"groupId": group_id, "joinScene": join_scene}),
        )
        .await?;
    }
    events::emit(tx, tenant_id, events::kind::GROUP_MEMBER_JOINED, group_id, json!({"groupId": group_id, "memberUserid": member_userid, "memberType": member_type, "customerId": customer_id, "joinScene": join_scene})).await
}

/// A member of a chat as WeCom lists it.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub userid: String,
    pub member_type: i64,
    pub customer_id: Option<i64>,
    pub name: Option<String>,
    pub join_time: i64,
    pub join_scene: i64,
}

/// Members already in a chat before scrm knew it (a sync's first import), inserted many a
/// statement, quietly: no timeline, no `group.member.joined` (which would start "joined a group"
/// SOPs for people who joined long ago). A member already there is left as it is. The chat's
/// member count is set from its rows.
pub async fn members_joined_quietly(
    tx: &mut Tx,
    tenant_id: i64,
    group_id: i64,
    members: &[NewMember],
) -> DbResult<()> {
    let now = now_ms();
    for chunk in members.chunks(500) {
        let mut q = query(
            "INSERT INTO group_chat_member (tenant_id, group_id, member_userid, member_type, customer_id, name, join_time, join_scene, status, created_at, updated_at) VALUES ",
        );
        for (i, m) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(group_id)
                .push_bind(m.userid.as_str())
                .push_bind(m.member_type)
                .push_bind(m.customer_id)
                .push_bind(m.name.clone())
                .push_bind(m.join_time)
                .push_bind(m.join_scene)
                .push_bind(now)
                .push_bind(now);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => " ON DUPLICATE KEY UPDATE id = id",
            _ => " ON CONFLICT (tenant_id, group_id, member_userid) DO NOTHING",
        });
        tx.execute(q).await?;
    }
    tx.execute(
        query("UPDATE group_chat SET member_count = (SELECT COUNT(*) FROM group_chat_member m WHERE m.tenant_id = ? AND m.group_id = ? AND m.status = 1), updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id)
            .bind(group_id)
            .bind(now)
            .bind(tenant_id)
            .bind(group_id),
    )
    .await
    .map(|_| ())
}

/// A member leaving.
pub async fn member_left(
    tx: &mut Tx,
    tenant_id: i64,
    group_id: i64,
    member_userid: &str,
) -> DbResult<()> {
    let now = now_ms();
    let row: Option<(i64, Option<i64>)> = tx.fetch_optional(query("SELECT id, customer_id FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND member_userid = ? AND status = 1").bind(tenant_id).bind(group_id).bind(member_userid)).await?;
    let Some((mid, customer_id)) = row else {
        return Ok(());
    };
    tx.execute(
        query("UPDATE group_chat_member SET status = 0, left_at = ?, updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(now)
            .bind(mid),
    )
    .await?;
    tx.execute(query("UPDATE group_chat SET member_count = member_count - 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(now).bind(tenant_id).bind(group_id)).await?;
    if let Some(cid) = customer_id {
        store::touch(tx, tenant_id, cid, now).await?;
        timeline::record(
            tx,
            tenant_id,
            cid,
            timeline::kind::GROUP_LEAVE,
            "left a group chat",
            json!({"groupId": group_id}),
        )
        .await?;
    }
    events::emit(
        tx,
        tenant_id,
        events::kind::GROUP_MEMBER_LEFT,
        group_id,
        json!({"groupId": group_id, "memberUserid": member_userid, "customerId": customer_id}),
    )
    .await
}

/// A group chat as shown.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    pub id: i64,
    pub chat_id: String,
    pub name: Option<String>,
    pub owner_userid: Option<String>,
    pub notice: Option<String>,
    pub status: i64,
    pub member_count: i64,
    pub create_time: Option<i64>,
}

const GROUP_COLS: &str =
    "id, chat_id, name, owner_userid, notice, status, member_count, create_time";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    keyword: Option<String>,
    owner_userid: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<GroupRow>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(k) = q
        .keyword
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        w.push_sql(" AND name LIKE ?").push_bind(format!("%{k}%"));
    }
    if let Some(o) = q.owner_userid.as_deref().filter(|o| !o.is_empty()) {
        w.push_sql(" AND owner_userid = ?").push_bind(o);
    }
    let mut c = query("SELECT COUNT(*) FROM group_chat");
    c.append(&w);
    let total = state.db.fetch_i64(c).await?;
    let mut p = query(format!("SELECT {GROUP_COLS} FROM group_chat"));
    p.append(&w);
    p.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    Ok(ok(ListPage {
        list: state.db.fetch_all(p).await?,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub(crate) async fn one(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<GroupRow> {
    state
        .db
        .fetch_optional(
            query(format!(
                "SELECT {GROUP_COLS} FROM group_chat WHERE tenant_id = ? AND id = ?"
            ))
            .bind(tenant_id)
            .bind(id),
        )
        .await?
        .ok_or(ApiError::NotFound("group chat"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupDetail {
    #[serde(flatten)]
    group: GroupRow,
    tags: Vec<super::model::TagRef>,
}

pub(crate) async fn group_tags(
    state: &AppState,
    tenant_id: i64,
    id: i64,
) -> ApiResult<Vec<super::model::TagRef>> {
    Ok(state
        .db
        .fetch_all(query("SELECT t.id, t.name, t.group_id FROM group_chat_tag gt JOIN tag t ON t.id = gt.tag_id AND t.tenant_id = gt.tenant_id WHERE gt.tenant_id = ? AND gt.group_id = ? ORDER BY t.id").bind(tenant_id).bind(id))
        .await?)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<GroupDetail>> {
    let group = one(&state, user.tenant_id, id).await?;
    let tags = group_tags(&state, user.tenant_id, id).await?;
    Ok(ok(GroupDetail { group, tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MembersQuery {
    page: Option<i64>,
    size: Option<i64>,
    member_type: Option<i64>,
    /// Include members who left (default: only current members).
    include_left: Option<bool>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberRow {
    id: i64,
    member_userid: String,
    member_type: i64,
    customer_id: Option<i64>,
    name: Option<String>,
    join_time: Option<i64>,
    join_scene: i64,
    status: i64,
    left_at: Option<i64>,
}

pub(crate) async fn members(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> ApiResult<Reply<ListPage<MemberRow>>> {
    let paging = Paging::new(q.page, q.size, 50, 500)?;
    one(&state, user.tenant_id, id).await?;
    let mut w = query(" WHERE tenant_id = ? AND group_id = ?")
        .bind(user.tenant_id)
        .bind(id);
    if let Some(t) = q.member_type {
        if !(1..=2).contains(&t) {
            return Err(ApiError::field("memberType", "1 (staff) or 2 (customer)"));
        }
        w.push_sql(" AND member_type = ?").push_bind(t);
    }
    if !q.include_left.unwrap_or(false) {
        w.push_sql(" AND status = 1");
    }
    let mut c = query("SELECT COUNT(*) FROM group_chat_member");
    c.append(&w);
    let total = state.db.fetch_i64(c).await?;
    let mut p = query(
        "SELECT id, member_userid, member_type, customer_id, name, join_time, join_scene, status, left_at FROM group_chat_member",
    );
    p.append(&w);
    p.push_sql(" ORDER BY id LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    Ok(ok(ListPage {
        list: state.db.fetch_all(p).await?,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TagIdsBody {
    tag_ids: Option<Vec<i64>>,
}

pub(crate) async fn change_tags(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
    ids: Option<Vec<i64>>,
    add: bool,
) -> ApiResult<Reply<GroupDetail>> {
    one(state, user.tenant_id, id).await?;
    let ids = check_ids("tagIds", ids, 100)?;
    let mut tx = state.db.begin().await?;
    let unknown = tags::unknown_tags(&mut tx, user.tenant_id, &ids).await?;
    if !unknown.is_empty() {
        return Err(ApiError::field(
            "tagIds",
            format!("no such tags: {unknown:?}"),
        ));
    }
    let now = now_ms();
    for t in &ids {
        let sql = match (add, tx.backend()) {
            (true, Backend::MySql) => {
                "INSERT IGNORE INTO group_chat_tag (tenant_id, group_id, tag_id, tagged_at) VALUES (?, ?, ?, ?)"
            }
            (true, _) => {
                "INSERT INTO group_chat_tag (tenant_id, group_id, tag_id, tagged_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
            }
            (false, _) => {
                "DELETE FROM group_chat_tag WHERE tenant_id = ? AND group_id = ? AND tag_id = ? AND tagged_at <= ?"
            }
        };
        tx.execute(query(sql).bind(user.tenant_id).bind(id).bind(*t).bind(now))
            .await?;
    }
    audit::record(
        &mut tx,
        user,
        if add {
            "group.tag.add"
        } else {
            "group.tag.remove"
        },
        "group_chat",
        id,
        json!({"tagIds": ids}),
    )
    .await?;
    tx.commit().await?;
    let group = one(state, user.tenant_id, id).await?;
    let tags = group_tags(state, user.tenant_id, id).await?;
    Ok(ok(GroupDetail { group, tags }))
}

pub(crate) async fn add_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TagIdsBody>,
) -> ApiResult<Reply<GroupDetail>> {
    change_tags(&state, &user, id, b.tag_ids, true).await
}

pub(crate) async fn remove_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TagIdsBody>,
) -> ApiResult<Reply<GroupDetail>> {
    change_tags(&state, &user, id, b.tag_ids, false).await
}
