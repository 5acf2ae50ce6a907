//! Routes for tags: `/api/v1/tag-groups`, `/api/v1/tags`, seed 004's tag list with counts, and
//! adding and removing customers' tags.

use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::push::{self, Pushes};
use super::tags::{self, GroupRow, TagRow};
use super::{cache, check_ids, customer_not_found, store};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "tags")
        .route(
            M::GET,
            "/api/v1/tag-groups",
            Access::Permission(perm::TAG_VIEW),
            "Tag groups with their tags and counts",
            list_groups,
        )
        .route(
            M::POST,
            "/api/v1/tag-groups",
            Access::Permission(perm::TAG_MANAGE),
            "Create a tag group (optionally with tags)",
            create_group,
        )
        .route(
            M::POST,
            "/api/v1/tag-groups/reorder",
            Access::Permission(perm::TAG_MANAGE),
            "Set the order of tag groups",
            reorder_groups,
        )
        .route(
            M::PUT,
            "/api/v1/tag-groups/{id}",
            Access::Permission(perm::TAG_MANAGE),
            "Rename or move a tag group",
            update_group,
        )
        .route(
            M::DELETE,
            "/api/v1/tag-groups/{id}",
            Access::Permission(perm::TAG_MANAGE),
            "Delete a tag group and its tags",
            delete_group,
        )
        .route(
            M::GET,
            "/api/v1/tags",
            Access::Permission(perm::TAG_VIEW),
            "Tags with customer counts",
            list_tags,
        )
        .route(
            M::POST,
            "/api/v1/tags",
            Access::Permission(perm::TAG_MANAGE),
            "Create a tag",
            create_tag,
        )
        .route(
            M::POST,
            "/api/v1/tags/reorder",
            Access::Permission(perm::TAG_MANAGE),
            "Set the order of a group's tags",
            reorder_tags,
        )
        .route(
            M::PUT,
            "/api/v1/tags/{id}",
            Access::Permission(perm::TAG_MANAGE),
            "Rename, move or reorder a tag",
            update_tag,
        )
        .route(
            M::DELETE,
            "/api/v1/tags/{id}",
            Access::Permission(perm::TAG_MANAGE),
            "Delete a tag (from every customer)",
            delete_tag,
        )
        .route(
            M::GET,
            "/api/v1/workbench/customer/tags",
            Access::Permission(perm::CUSTOMER_TAGS_VIEW),
            "Seed 004: tags with customer counts",
            workbench_tags,
        )
        .route(
            M::POST,
            "/api/v1/customers/{id}/tags",
            Access::Permission(perm::CUSTOMER_TAG),
            "Add tags to a customer",
            add_customer_tags,
        )
        .route(
            M::DELETE,
            "/api/v1/customers/{id}/tags",
            Access::Permission(perm::CUSTOMER_TAG),
            "Remove tags from a customer",
            remove_customer_tags,
        )
        .route(
            M::POST,
            "/api/v1/customers/{id}/tags/remove",
            Access::Permission(perm::CUSTOMER_TAG),
            "Remove tags from a customer",
            remove_customer_tags,
        )
        .route(
            M::POST,
            "/api/v1/customers/tags/batch",
            Access::Permission(perm::CUSTOMER_TAG),
            "Add or remove tags on many customers",
            batch_tags,
        )
}

fn tag_name(field: &str, v: &str) -> ApiResult<String> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > 100 {
        return Err(ApiError::field(field, "1-100 characters"));
    }
    Ok(v.to_string())
}

fn conflict(e: scrm_db::DbError, what: &str) -> ApiError {
    if e.is_conflict() {
        ApiError::Conflict(format!("{what} already exists"))
    } else {
        e.into()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupView {
    #[serde(flatten)]
    group: GroupRow,
    tags: Vec<TagRow>,
}

pub(crate) async fn list_groups(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<GroupView>>> {
    let groups = tags::list_groups(&state.db, user.tenant_id).await?;
    let mut all = tags::list_tags(&state.db, user.tenant_id, None).await?;
    Ok(ok(groups
        .into_iter()
        .map(|g| {
            let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|t| t.group_id == g.id);
            all = rest;
            GroupView {
                group: g,
                tags: mine,
            }
        })
        .collect()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GroupBody {
    name: Option<String>,
    sort_order: Option<i64>,
    #[serde(default)]
    tags: Vec<String>,
}

pub(crate) async fn create_group(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<GroupBody>,
) -> ApiResult<Reply<GroupView>> {
    let name = tag_name("name", b.name.as_deref().unwrap_or(""))?;
    let mut tag_names = Vec::new();
    for (i, t) in b.tags.iter().enumerate() {
        tag_names.push(tag_name(&format!("tags[{i}]"), t)?);
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tags::create_group(&mut tx, user.tenant_id, &name, b.sort_order, None, now)
        .await
        .map_err(|e| conflict(e, "a tag group with this name"))?;
    let pushes = Pushes::new(&state.jobs, &mut tx, user.tenant_id).await?;
    for t in &tag_names {
        let tag = tags::create_tag(&mut tx, user.tenant_id, id, t, None, None, now)
            .await
            .map_err(|e| conflict(e, "a tag with this name in the group"))?;
        pushes.tag_saved(&mut tx, tag, "create").await?;
    }
    audit::record(
        &mut tx,
        &user,
        "tag_group.create",
        "tag_group",
        id,
        json!({"name": name, "tags": tag_names}),
    )
    .await?;
    tx.commit().await?;
    let group = tags::list_groups(&state.db, user.tenant_id)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or(ApiError::NotFound("tag group"))?;
    let tags = tags::list_tags(&state.db, user.tenant_id, Some(id)).await?;
    Ok(created(GroupView { group, tags }))
}

pub(crate) async fn group_exists(tx: &mut scrm_db::Tx, tenant_id: i64, id: i64) -> ApiResult<()> {
    let found = tx
        .fetch_optional::<(i64,)>(
            scrm_db::query("SELECT id FROM tag_group WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    found.map(|_| ()).ok_or(ApiError::NotFound("tag group"))
}

pub(crate) async fn update_group(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<GroupBody>,
) -> ApiResult<Reply<GroupRow>> {
    let name = b.name.as_deref().map(|n| tag_name("name", n)).transpose()?;
    if !b.tags.is_empty() {
        return Err(ApiError::field("tags", "add tags with POST /api/v1/tags"));
    }
    let mut tx = state.db.begin().await?;
    group_exists(&mut tx, user.tenant_id, id).await?;
    let mut q = scrm_db::query("UPDATE tag_group SET updated_at = ?").bind(now_ms());
    if let Some(n) = &name {
        q.push_sql(", name = ?").push_bind(n.as_str());
    }
    if let Some(o) = b.sort_order {
        q.push_sql(", sort_order = ?").push_bind(o);
    }
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(user.tenant_id)
        .push_bind(id);
    tx.execute(q)
        .await
        .map_err(|e| conflict(e, "a tag group with this name"))?;
    if name.is_some() {
        Pushes::new(&state.jobs, &mut tx, user.tenant_id)
            .await?
            .group_renamed(&mut tx, id)
            .await?;
    }
    audit::record(
        &mut tx,
        &user,
        "tag_group.update",
        "tag_group",
        id,
        json!({"name": name, "sortOrder": b.sort_order}),
    )
    .await?;
    tx.commit().await?;
    tags::list_groups(&state.db, user.tenant_id)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .map(ok)
        .ok_or(ApiError::NotFound("tag group"))
}

pub(crate) async fn delete_group(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    group_exists(&mut tx, user.tenant_id, id).await?;
    let ids: Vec<(i64,)> = tx
        .fetch_all(
            scrm_db::query("SELECT id FROM tag WHERE tenant_id = ? AND group_id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?;
    let pushes = Pushes::new(&state.jobs, &mut tx, user.tenant_id).await?;
    let wecom_group = push::wecom_id(&mut tx, user.tenant_id, push::target::GROUP, id).await?;
    for (t,) in &ids {
        if wecom_group.is_none() {
            let wecom_tag = push::wecom_id(&mut tx, user.tenant_id, push::target::TAG, *t).await?;
            pushes
                .deleted(&mut tx, push::target::TAG, *t, wecom_tag)
                .await?;
        }
        tags::delete_tag(&mut tx, user.tenant_id, *t, now).await?;
    }
    // Deleting a group in WeCom deletes its tags.
    pushes
        .deleted(&mut tx, push::target::GROUP, id, wecom_group)
        .await?;
    tx.execute(
        scrm_db::query("DELETE FROM tag_group WHERE tenant_id = ? AND id = ?")
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "tag_group.delete",
        "tag_group",
        id,
        json!({"tags": ids.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deletedTags": ids.len()})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReorderBody {
    group_id: Option<i64>,
    ids: Option<Vec<i64>>,
}

pub(crate) async fn reorder(
    state: &AppState,
    user: &CurrentUser,
    table: &'static str,
    group_id: Option<i64>,
    ids: Vec<i64>,
) -> ApiResult<()> {
    if ids.is_empty() {
        return Err(ApiError::field(
            "ids",
            "must list the ids in their new order",
        ));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    for (pos, id) in ids.iter().enumerate() {
        let mut q = scrm_db::query(format!(
            "UPDATE {table} SET sort_order = ?, updated_at = ? WHERE tenant_id = ? AND id = ?"
        ))
        .bind(i64::try_from(pos).unwrap_or(i64::MAX) + 1)
        .bind(now)
        .bind(user.tenant_id)
        .bind(*id);
        if let Some(g) = group_id {
            q.push_sql(" AND group_id = ?").push_bind(g);
        }
        if tx.execute(q).await?.rows_affected == 0 {
            return Err(ApiError::field(
                "ids",
                format!("{id} is not one of the ids to order"),
            ));
        }
    }
    audit::record(
        &mut tx,
        user,
        &format!("{table}.reorder"),
        table,
        group_id.unwrap_or(0),
        json!({"ids": ids}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn reorder_groups(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ReorderBody>,
) -> ApiResult<Reply<Vec<GroupRow>>> {
    reorder(&state, &user, "tag_group", None, b.ids.unwrap_or_default()).await?;
    Ok(ok(tags::list_groups(&state.db, user.tenant_id).await?))
}

pub(crate) async fn reorder_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ReorderBody>,
) -> ApiResult<Reply<Vec<TagRow>>> {
    let group = b
        .group_id
        .ok_or_else(|| ApiError::field("groupId", "is required"))?;
    reorder(&state, &user, "tag", Some(group), b.ids.unwrap_or_default()).await?;
    Ok(ok(
        tags::list_tags(&state.db, user.tenant_id, Some(group)).await?
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TagsQuery {
    group_id: Option<i64>,
}

pub(crate) async fn list_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<TagsQuery>,
) -> ApiResult<Reply<Vec<TagRow>>> {
    Ok(ok(
        tags::list_tags(&state.db, user.tenant_id, q.group_id).await?
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TagBody {
    group_id: Option<i64>,
    name: Option<String>,
    sort_order: Option<i64>,
}

pub(crate) async fn create_tag(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<TagBody>,
) -> ApiResult<Reply<TagRow>> {
    let group = b
        .group_id
        .ok_or_else(|| ApiError::field("groupId", "is required"))?;
    let name = tag_name("name", b.name.as_deref().unwrap_or(""))?;
    let mut tx = state.db.begin().await?;
    group_exists(&mut tx, user.tenant_id, group)
        .await
        .map_err(|_| ApiError::field("groupId", "no such tag group"))?;
    let id = tags::create_tag(
        &mut tx,
        user.tenant_id,
        group,
        &name,
        b.sort_order,
        None,
        now_ms(),
    )
    .await
    .map_err(|e| conflict(e, "a tag with this name in the group"))?;
    Pushes::new(&state.jobs, &mut tx, user.tenant_id)
        .await?
        .tag_saved(&mut tx, id, "create")
        .await?;
    audit::record(
        &mut tx,
        &user,
        "tag.create",
        "tag",
        id,
        json!({"name": name, "groupId": group}),
    )
    .await?;
    tx.commit().await?;
    one_tag(&state, user.tenant_id, id).await.map(created)
}

pub(crate) async fn one_tag(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<TagRow> {
    tags::list_tags(&state.db, tenant_id, None)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or(ApiError::NotFound("tag"))
}

pub(crate) async fn update_tag(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TagBody>,
) -> ApiResult<Reply<TagRow>> {
    let name = b.name.as_deref().map(|n| tag_name("name", n)).transpose()?;
    let mut tx = state.db.begin().await?;
    if !tags::unknown_tags(&mut tx, user.tenant_id, &[id])
        .await?
        .is_empty()
    {
        return Err(ApiError::NotFound("tag"));
    }
    if let Some(g) = b.group_id {
        group_exists(&mut tx, user.tenant_id, g)
            .await
            .map_err(|_| ApiError::field("groupId", "no such tag group"))?;
    }
    let mut q = scrm_db::query("UPDATE tag SET updated_at = ?").bind(now_ms());
    if let Some(n) = &name {
        q.push_sql(", name = ?").push_bind(n.as_str());
    }
    if let Some(g) = b.group_id {
        q.push_sql(", group_id = ?").push_bind(g);
    }
    if let Some(o) = b.sort_order {
        q.push_sql(", sort_order = ?").push_bind(o);
    }
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(user.tenant_id)
        .push_bind(id);
    tx.execute(q)
        .await
        .map_err(|e| conflict(e, "a tag with this name in the group"))?;
    if name.is_some() {
        Pushes::new(&state.jobs, &mut tx, user.tenant_id)
            .await?
            .tag_saved(&mut tx, id, "rename")
            .await?;
    }
    if name.is_some() || b.group_id.is_some() {
        // Customers show the tag's name: their cached details must not keep the old one.
        tx.execute(
            scrm_db::query("UPDATE customer SET version = version + 1 WHERE tenant_id = ? AND id IN (SELECT customer_id FROM customer_tag WHERE tenant_id = ? AND tag_id = ?)")
                .bind(user.tenant_id)
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?;
    }
    audit::record(
        &mut tx,
        &user,
        "tag.update",
        "tag",
        id,
        json!({"name": name, "groupId": b.group_id, "sortOrder": b.sort_order}),
    )
    .await?;
    tx.commit().await?;
    one_tag(&state, user.tenant_id, id).await.map(ok)
}

pub(crate) async fn delete_tag(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    if !tags::unknown_tags(&mut tx, user.tenant_id, &[id])
        .await?
        .is_empty()
    {
        return Err(ApiError::NotFound("tag"));
    }
    let wecom_tag = push::wecom_id(&mut tx, user.tenant_id, push::target::TAG, id).await?;
    Pushes::new(&state.jobs, &mut tx, user.tenant_id)
        .await?
        .deleted(&mut tx, push::target::TAG, id, wecom_tag)
        .await?;
    let carried = tags::delete_tag(&mut tx, user.tenant_id, id, now_ms()).await?;
    audit::record(
        &mut tx,
        &user,
        "tag.delete",
        "tag",
        id,
        json!({"customers": carried}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "customerCount": carried})))
}

/// Seed 004's tag entry.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkbenchTag {
    tag_id: i64,
    tag_name: String,
    customer_count: i64,
}

pub(crate) async fn workbench_tags(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<WorkbenchTag>>> {
    let list = tags::list_tags(&state.db, user.tenant_id, None).await?;
    Ok(ok(list
        .into_iter()
        .map(|t| WorkbenchTag {
            tag_id: t.id,
            tag_name: t.name,
            customer_count: t.customer_count,
        })
        .collect()))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TagIdsBody {
    tag_ids: Option<Vec<i64>>,
}

pub(crate) async fn checked_tags(
    tx: &mut scrm_db::Tx,
    tenant_id: i64,
    ids: Option<Vec<i64>>,
) -> ApiResult<Vec<i64>> {
    let ids = check_ids("tagIds", ids, 100)?;
    let unknown = tags::unknown_tags(tx, tenant_id, &ids).await?;
    if !unknown.is_empty() {
        return Err(ApiError::field(
            "tagIds",
            format!("no such tags: {unknown:?}"),
        ));
    }
    Ok(ids)
}

pub(crate) async fn add_customer_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TagIdsBody>,
) -> ApiResult<Reply<super::model::CustomerDetail>> {
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let ids = checked_tags(&mut tx, user.tenant_id, b.tag_ids).await?;
    let added =
        tags::add_to_customer(&mut tx, user.tenant_id, id, &ids, Some(user.id), now_ms()).await?;
    Pushes::new(&state.jobs, &mut tx, user.tenant_id)
        .await?
        .customer_tags(&mut tx, id, &added)
        .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.tag.add",
        "customer",
        id,
        json!({"tagIds": added}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    super::routes::detail_of(&state, user.tenant_id, id)
        .await
        .map(ok)
}

pub(crate) async fn remove_customer_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TagIdsBody>,
) -> ApiResult<Reply<super::model::CustomerDetail>> {
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let ids = check_ids("tagIds", b.tag_ids, 100)?;
    let removed =
        tags::remove_from_customer(&mut tx, user.tenant_id, id, &ids, Some(user.id), now_ms())
            .await?;
    Pushes::new(&state.jobs, &mut tx, user.tenant_id)
        .await?
        .customer_tags(&mut tx, id, &removed)
        .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.tag.remove",
        "customer",
        id,
        json!({"tagIds": removed}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    super::routes::detail_of(&state, user.tenant_id, id)
        .await
        .map(ok)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchBody {
    customer_ids: Option<Vec<i64>>,
    tag_ids: Option<Vec<i64>>,
    action: Option<String>,
}

/// Tag or untag up to 1,000 customers in one transaction (larger batches are seed 000's mass
/// tasks, run as jobs).
pub(crate) async fn batch_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<BatchBody>,
) -> ApiResult<Reply<serde_json::Value>> {
    let add = match b.action.as_deref() {
        Some("add") => true,
        Some("remove") => false,
        _ => return Err(ApiError::field("action", "must be add or remove")),
    };
    let customers = check_ids("customerIds", b.customer_ids, 1000)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let tag_ids = checked_tags(&mut tx, user.tenant_id, b.tag_ids).await?;
    let found = store::existing_ids(&mut tx, user.tenant_id, &customers).await?;
    let pushes = Pushes::new(&state.jobs, &mut tx, user.tenant_id).await?;
    let mut changed = 0usize;
    for c in &found {
        let n = if add {
            tags::add_to_customer(&mut tx, user.tenant_id, *c, &tag_ids, Some(user.id), now).await?
        } else {
            tags::remove_from_customer(&mut tx, user.tenant_id, *c, &tag_ids, Some(user.id), now)
                .await?
        };
        pushes.customer_tags(&mut tx, *c, &n).await?;
        changed += n.len();
    }
    let missing: Vec<i64> = customers
        .iter()
        .copied()
        .filter(|c| !found.contains(c))
        .collect();
    audit::record(
        &mut tx,
        &user,
        if add {
            "customer.tag.batch_add"
        } else {
            "customer.tag.batch_remove"
        },
        "customer",
        0,
        json!({"customerIds": found, "tagIds": tag_ids}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &found).await;
    Ok(ok(
        json!({"customers": found.len(), "changed": changed, "notFound": missing}),
    ))
}
