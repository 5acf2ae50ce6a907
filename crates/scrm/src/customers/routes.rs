//! Routes for customers themselves: seed 001's create, list, detail, update, delete; the
//! portrait and timeline; seed 004's search (GET and POST).

use axum::extract::{RawQuery, State};
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::{CustomerBody, CustomerDetail, CustomerView, external_userid};
use super::search::{Filter, Keyword};
use super::{cache, customer_not_found, followups, search, staff, stats, store, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, RecordsPage, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/api/v1/customers",
            Access::Permission(perm::CUSTOMER_CREATE),
            "Create a customer",
            create,
        )
        .route(
            M::GET,
            "/api/v1/customers",
            Access::Permission(perm::CUSTOMER_VIEW),
            "List customers (page, size, keyword, channel, status, followUserId)",
            list,
        )
        .route(
            M::GET,
            "/api/v1/customers/{id}",
            Access::Permission(perm::CUSTOMER_VIEW),
            "One customer with tags, follow users and groups",
            get,
        )
        .route(
            M::PUT,
            "/api/v1/customers/{id}",
            Access::Permission(perm::CUSTOMER_UPDATE),
            "Change a customer",
            update,
        )
        .route(
            M::DELETE,
            "/api/v1/customers/{id}",
            Access::Permission(perm::CUSTOMER_DELETE),
            "Delete a customer",
            delete,
        )
        .route(
            M::GET,
            "/api/v1/customers/{id}/portrait",
            Access::Permission(perm::CUSTOMER_VIEW),
            "The customer's portrait: profile, tags, groups, staff, stage, recent follow-ups",
            portrait,
        )
        .route(
            M::GET,
            "/api/v1/customers/{id}/timeline",
            Access::Permission(perm::CUSTOMER_VIEW),
            "Everything that happened to the customer, newest first",
            timeline_page,
        )
        .route(
            M::GET,
            "/api/v1/workbench/customer/search",
            Access::Permission(perm::WORKBENCH_CUSTOMER_VIEW),
            "Seed 004: customers by tags, groups and keyword",
            search_get,
        )
        .route(
            M::POST,
            "/api/v1/workbench/customer/search",
            Access::Permission(perm::WORKBENCH_CUSTOMER_VIEW),
            "Seed 004: customers by tags, groups and keyword",
            search_post,
        )
}

/// The detail, through the cache; 404 when not the tenant's.
pub(crate) async fn detail_of(
    state: &AppState,
    tenant_id: i64,
    id: i64,
) -> ApiResult<CustomerDetail> {
    cache::detail(state, tenant_id, id)
        .await?
        .map(|d| d.0)
        .ok_or_else(customer_not_found)
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CustomerBody>,
) -> ApiResult<Reply<CustomerDetail>> {
    let ext = external_userid(body.external_userid.clone())?;
    let f = body.into_fields()?;
    if f.name.clone().flatten().is_none() {
        return Err(ApiError::field("name", "is required"));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    if let Some(Some(staff_id)) = f.follow_user_id
        && !store::staff_exists(&mut tx, user.tenant_id, staff_id).await?
    {
        return Err(ApiError::field("followUserId", "no such staff member"));
    }
    if let Some(s) = &f.stage {
        followups::check_stage(&mut tx, user.tenant_id, s).await?;
    }
    let id = store::insert(&mut tx, user.tenant_id, &ext, &f, now)
        .await
        .map_err(|e| {
            if e.is_conflict() {
                ApiError::Conflict("a customer with this externalUserid already exists".into())
            } else {
                e.into()
            }
        })?;
    if let Some(Some(staff_id)) = f.follow_user_id {
        staff::ensure_follow(&mut tx, user.tenant_id, id, staff_id, now).await?;
    }
    let channel = f.channel.clone().flatten();
    stats::record(
        &mut tx,
        user.tenant_id,
        now,
        channel.as_deref(),
        f.follow_user_id.flatten(),
        stats::Change::Added,
    )
    .await?;
    timeline::record(
        &mut tx,
        user.tenant_id,
        id,
        timeline::kind::ADDED,
        "customer added",
        json!({"by": user.username, "channel": channel}),
    )
    .await?;
    let row = store::get_tx(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let view = CustomerView::new(row, vec![]);
    events::emit(
        &mut tx,
        user.tenant_id,
        events::kind::CUSTOMER_CREATED,
        id,
        serde_json::to_value(&view).unwrap_or_default(),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.create",
        "customer",
        id,
        json!({"externalUserid": ext, "name": view.name}),
    )
    .await?;
    store::count_customers(&mut tx, user.tenant_id, 1).await?;
    tx.commit().await?;
    detail_of(&state, user.tenant_id, id).await.map(created)
}

/// Seed 001's list query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    keyword: Option<String>,
    channel: Option<String>,
    status: Option<i64>,
    follow_user_id: Option<i64>,
    stage: Option<String>,
    blacklisted: Option<bool>,
    /// Comma-separated tag ids (any of them).
    tag_ids: Option<String>,
}

/// Parse a comma list of ids.
fn id_list(field: &str, raw: &str) -> ApiResult<Vec<i64>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::field(field, "comma-separated positive ids"))
        })
        .collect()
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<CustomerView>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    if let Some(s) = q.status
        && !(0..=2).contains(&s)
    {
        return Err(ApiError::field("status", "must be 0, 1 or 2"));
    }
    let filter = Filter {
        tag_ids: q
            .tag_ids
            .as_deref()
            .map(|t| id_list("tagIds", t))
            .transpose()?
            .unwrap_or_default(),
        keyword: q.keyword.as_deref().and_then(Keyword::parse),
        channel: q.channel.filter(|c| !c.is_empty()),
        status: q.status,
        follow_user_id: q.follow_user_id,
        stage: q.stage.filter(|s| !s.is_empty()),
        blacklisted: q.blacklisted,
        ..Default::default()
    };
    let (rows, total) = search::page_with_total(
        &state.db,
        user.tenant_id,
        &filter,
        paging.offset(),
        paging.size,
    )
    .await?;
    Ok(ok(ListPage {
        list: store::views(&state.db, user.tenant_id, rows).await?,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<CustomerDetail>> {
    detail_of(&state, user.tenant_id, id).await.map(ok)
}

async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CustomerBody>,
) -> ApiResult<Reply<CustomerDetail>> {
    if body.external_userid.is_some() {
        return Err(ApiError::field("externalUserid", "cannot be changed"));
    }
    let f = body.into_fields()?;
    if matches!(f.name, Some(None)) {
        return Err(ApiError::field("name", "cannot be empty"));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let before = store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    if let Some(Some(staff_id)) = f.follow_user_id
        && !store::staff_exists(&mut tx, user.tenant_id, staff_id).await?
    {
        return Err(ApiError::field("followUserId", "no such staff member"));
    }
    if let Some(s) = &f.stage {
        followups::check_stage(&mut tx, user.tenant_id, s).await?;
    }
    store::update(&mut tx, user.tenant_id, id, &f, now).await?;
    if let Some(Some(staff_id)) = f.follow_user_id {
        staff::ensure_follow(&mut tx, user.tenant_id, id, staff_id, now).await?;
    }
    if f.status == Some(2) && before.status != 2 {
        stats::record(
            &mut tx,
            user.tenant_id,
            now,
            before.channel.as_deref(),
            before.follow_user_id,
            stats::Change::Lost,
        )
        .await?;
    }
    if let Some(s) = &f.stage
        && *s != before.stage
    {
        followups::stage_changed(&mut tx, user.tenant_id, id, &before.stage, s).await?;
    }
    let changed = changed_fields(&f);
    timeline::record(
        &mut tx,
        user.tenant_id,
        id,
        timeline::kind::UPDATED,
        &format!("updated {}", changed.join(", ")),
        json!({"by": user.username}),
    )
    .await?;
    events::emit(
        &mut tx,
        user.tenant_id,
        events::kind::CUSTOMER_UPDATED,
        id,
        json!({"customerId": id, "fields": changed}),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.update",
        "customer",
        id,
        json!({"fields": changed}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    detail_of(&state, user.tenant_id, id).await.map(ok)
}

fn changed_fields(f: &super::model::CustomerFields) -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! c {
        ($($field:ident => $name:literal),*) => {$( if f.$field.is_some() { v.push($name); } )*};
    }
    c!(name => "name", avatar => "avatar", kind => "type", gender => "gender", unionid => "unionid",
       province => "province", city => "city", mobile => "mobile", remark => "remark",
       description => "description", corp_name => "corpName", follow_user_id => "followUserId",
       add_time => "addTime", channel => "channel", stage => "stage", status => "status");
    v
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let row = store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let tags = store::delete(&mut tx, user.tenant_id, id).await?;
    events::emit(
        &mut tx,
        user.tenant_id,
        events::kind::CUSTOMER_DELETED,
        id,
        json!({"customerId": id, "externalUserid": row.external_userid, "tagIds": tags}),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.delete",
        "customer",
        id,
        json!({"externalUserid": row.external_userid, "name": row.name}),
    )
    .await?;
    store::count_customers(&mut tx, user.tenant_id, -1).await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    Ok(ok(json!({"id": id})))
}

/// The portrait: one view of a customer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Portrait {
    profile: CustomerDetail,
    stage: followups::Stage,
    recent_follow_ups: Vec<followups::FollowUpView>,
    follow_up_count: i64,
    tag_count: usize,
    group_count: usize,
    staff_count: usize,
}

async fn portrait(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Portrait>> {
    let profile = detail_of(&state, user.tenant_id, id).await?;
    let stages = followups::stages(&state.db, user.tenant_id).await?;
    let stage = stages
        .into_iter()
        .find(|s| s.code == profile.customer.stage)
        .unwrap_or_else(|| followups::Stage {
            code: profile.customer.stage.clone(),
            name: profile.customer.stage.clone(),
            sort_order: 0,
            is_final: false,
        });
    let (recent, total) = followups::list(&state.db, user.tenant_id, id, 0, 5).await?;
    Ok(ok(Portrait {
        tag_count: profile.customer.tags.len(),
        group_count: profile.groups.len(),
        staff_count: profile.follow_users.len(),
        profile,
        stage,
        recent_follow_ups: recent,
        follow_up_count: total,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

async fn timeline_page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<timeline::Entry>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    store::version(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let (list, total) =
        timeline::list(&state.db, user.tenant_id, id, paging.offset(), paging.size).await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// Seed 004's search body (and query).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchBody {
    tag_ids: Option<Vec<i64>>,
    group_ids: Option<Vec<i64>>,
    keyword: Option<String>,
    page: Option<i64>,
    size: Option<i64>,
    /// `any` (default) or `all` of the tags.
    tag_mode: Option<String>,
}

/// Seed 004's search record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRecord {
    pub customer_id: i64,
    pub name: Option<String>,
    /// The WeCom external contact id (WeCom shows no WeChat id to companies).
    pub wechat_id: String,
    pub phone: Option<String>,
}

async fn search_post(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<SearchBody>,
) -> ApiResult<Reply<RecordsPage<SearchRecord>>> {
    run_search(&state, &user, b).await.map(ok)
}

/// GET takes the same fields as query parameters; lists as `tagIds=1,2` or repeated.
async fn search_get(
    State(state): State<AppState>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> ApiResult<Reply<RecordsPage<SearchRecord>>> {
    let mut b = SearchBody::default();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let key = k.trim_end_matches("[]");
        let int = |field: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::field(field, "must be an integer"))
        };
        match key {
            "tagIds" => b
                .tag_ids
                .get_or_insert_with(Vec::new)
                .extend(id_list("tagIds", &v)?),
            "groupIds" => b
                .group_ids
                .get_or_insert_with(Vec::new)
                .extend(id_list("groupIds", &v)?),
            "keyword" => b.keyword = Some(v.into_owned()),
            "page" => b.page = Some(int("page")?),
            "size" => b.size = Some(int("size")?),
            "tagMode" => b.tag_mode = Some(v.into_owned()),
            other => {
                return Err(ApiError::invalid(format!(
                    "invalid query: unknown parameter `{other}`"
                )));
            }
        }
    }
    run_search(&state, &user, b).await.map(ok)
}

async fn run_search(
    state: &AppState,
    user: &CurrentUser,
    b: SearchBody,
) -> ApiResult<RecordsPage<SearchRecord>> {
    let paging = Paging::new(b.page, b.size, 10, 200)?;
    let tag_all = match b.tag_mode.as_deref() {
        None | Some("any") => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::field("tagMode", "must be any or all")),
    };
    for (field, ids) in [("tagIds", &b.tag_ids), ("groupIds", &b.group_ids)] {
        if let Some(ids) = ids {
            if ids.iter().any(|i| *i <= 0) {
                return Err(ApiError::field(field, "ids are positive integers"));
            }
            if ids.len() > 100 {
                return Err(ApiError::field(field, "at most 100 ids"));
            }
        }
    }
    if b.keyword.as_ref().is_some_and(|k| k.chars().count() > 50) {
        return Err(ApiError::field("keyword", "at most 50 characters"));
    }
    let filter = Filter {
        tag_ids: b.tag_ids.unwrap_or_default(),
        tag_all,
        group_ids: b.group_ids.unwrap_or_default(),
        keyword: b.keyword.as_deref().and_then(Keyword::parse),
        ..Default::default()
    };
    let (rows, total) = search::page_with_total(
        &state.db,
        user.tenant_id,
        &filter,
        paging.offset(),
        paging.size,
    )
    .await?;
    let records = rows
        .into_iter()
        .map(|r| SearchRecord {
            customer_id: r.id,
            name: r.name,
            wechat_id: r.external_userid,
            phone: r.mobile,
        })
        .collect();
    Ok(RecordsPage::new(records, total, paging.page, paging.size))
}
