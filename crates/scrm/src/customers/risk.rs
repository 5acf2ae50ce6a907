//! Risk: the blacklist (a blacklisted customer is left out of every send, SOP and workflow —
//! they check [`store::blacklisted_among`] or `customer.blacklisted`), deletion records (staff
//! deleted customer / customer deleted staff, from WeCom callbacks), churn rules and warnings.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{DbResult, Tx, query};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{cache, customer_not_found, stats, store, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/api/v1/customers/{id}/blacklist",
            Access::Permission(perm::CUSTOMER_BLACKLIST),
            "Blacklist a customer",
            blacklist_add,
        )
        .route(
            M::DELETE,
            "/api/v1/customers/{id}/blacklist",
            Access::Permission(perm::CUSTOMER_BLACKLIST),
            "Lift a customer's blacklisting",
            blacklist_remove,
        )
        .route(
            M::GET,
            "/api/v1/customers/blacklist",
            Access::Permission(perm::CUSTOMER_RISK_VIEW),
            "Blacklisted customers",
            blacklist_list,
        )
        .route(
            M::GET,
            "/api/v1/customers/deletions",
            Access::Permission(perm::CUSTOMER_RISK_VIEW),
            "Deletion records (staff deleted customer, customer deleted staff)",
            deletions,
        )
        .route(
            M::GET,
            "/api/v1/customers/churn-rules",
            Access::Permission(perm::CUSTOMER_RISK_VIEW),
            "Churn warning rules",
            rules,
        )
        .route(
            M::POST,
            "/api/v1/customers/churn-rules",
            Access::Permission(perm::CUSTOMER_RISK_MANAGE),
            "Create a churn warning rule",
            create_rule,
        )
        .route(
            M::PUT,
            "/api/v1/customers/churn-rules/{id}",
            Access::Permission(perm::CUSTOMER_RISK_MANAGE),
            "Change a churn warning rule",
            update_rule,
        )
        .route(
            M::DELETE,
            "/api/v1/customers/churn-rules/{id}",
            Access::Permission(perm::CUSTOMER_RISK_MANAGE),
            "Delete a churn warning rule",
            delete_rule,
        )
        .route(
            M::GET,
            "/api/v1/customers/churn-warnings",
            Access::Permission(perm::CUSTOMER_RISK_VIEW),
            "Churn warnings (status 0 open, 1 handled)",
            warnings,
        )
        .route(
            M::POST,
            "/api/v1/customers/churn-warnings/scan",
            Access::Permission(perm::CUSTOMER_RISK_MANAGE),
            "Evaluate the inactivity rules now",
            scan,
        )
        .route(
            M::POST,
            "/api/v1/customers/churn-warnings/{id}/handle",
            Access::Permission(perm::CUSTOMER_RISK_MANAGE),
            "Mark a churn warning handled",
            handle,
        )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

pub(crate) async fn set_blacklist(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
    on: bool,
    reason: Option<String>,
) -> ApiResult<Reply<serde_json::Value>> {
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err(ApiError::field("reason", "at most 255 characters"));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    tx.execute(
        query("DELETE FROM customer_blacklist WHERE tenant_id = ? AND customer_id = ?")
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    if on {
        tx.execute(query("INSERT INTO customer_blacklist (tenant_id, customer_id, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?)").bind(user.tenant_id).bind(id).bind(reason.as_deref()).bind(user.id).bind(now)).await?;
    }
    tx.execute(query("UPDATE customer SET blacklisted = ?, version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(on).bind(now).bind(user.tenant_id).bind(id)).await?;
    let what = if on {
        "blacklisted"
    } else {
        "blacklist lifted"
    };
    timeline::record(
        &mut tx,
        user.tenant_id,
        id,
        timeline::kind::BLACKLIST,
        what,
        json!({"reason": reason, "by": user.username}),
    )
    .await?;
    let kind = if on {
        events::kind::CUSTOMER_BLACKLISTED
    } else {
        events::kind::CUSTOMER_UNBLACKLISTED
    };
    events::emit(
        &mut tx,
        user.tenant_id,
        kind,
        id,
        json!({"customerId": id, "reason": reason}),
    )
    .await?;
    audit::record(
        &mut tx,
        user,
        if on {
            "customer.blacklist.add"
        } else {
            "customer.blacklist.remove"
        },
        "customer",
        id,
        json!({"reason": reason}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(state, user.tenant_id, &[id]).await;
    Ok(ok(json!({"customerId": id, "blacklisted": on})))
}

async fn blacklist_add(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> ApiResult<Reply<serde_json::Value>> {
    set_blacklist(&state, &user, id, true, b.reason).await
}

async fn blacklist_remove(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    set_blacklist(&state, &user, id, false, None).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct BlacklistRow {
    customer_id: i64,
    name: Option<String>,
    external_userid: String,
    reason: Option<String>,
    created_by: Option<i64>,
    created_at: i64,
}

async fn blacklist_list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<BlacklistRow>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let total = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer_blacklist WHERE tenant_id = ?")
                .bind(user.tenant_id),
        )
        .await?;
    let list = state
        .db
        .fetch_all(
            query("SELECT b.customer_id, c.name, c.external_userid, b.reason, b.created_by, b.created_at FROM customer_blacklist b JOIN customer c ON c.id = b.customer_id AND c.tenant_id = b.tenant_id WHERE b.tenant_id = ? ORDER BY b.id DESC LIMIT ? OFFSET ?")
                .bind(user.tenant_id)
                .bind(paging.size)
                .bind(paging.offset()),
        )
        .await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// Deletion kinds.
pub const STAFF_DELETED_CUSTOMER: &str = "staff_deleted_customer";
pub const CUSTOMER_DELETED_STAFF: &str = "customer_deleted_staff";

/// Record a deletion from a WeCom callback (del_external_contact / del_follow_user). When the
/// customer deleted the staff member, the open churn rules of type `deleted_staff` raise a
/// warning, and the customer counts as lost for the day.
#[allow(clippy::too_many_arguments)]
pub async fn record_deletion(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: Option<i64>,
    external_userid: &str,
    customer_name: Option<&str>,
    staff_userid: Option<&str>,
    kind: &str,
    occurred_at: i64,
) -> DbResult<()> {
    let now = now_ms();
    tx.execute(
        query("INSERT INTO customer_deletion (tenant_id, customer_id, external_userid, customer_name, staff_userid, kind, occurred_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(tenant_id).bind(customer_id).bind(external_userid).bind(customer_name).bind(staff_userid).bind(kind).bind(occurred_at).bind(now),
    )
    .await?;
    let Some(cid) = customer_id else {
        return Ok(());
    };
    if kind == CUSTOMER_DELETED_STAFF {
        let rules: Vec<(i64, String)> = tx.fetch_all(query("SELECT id, name FROM churn_rule WHERE tenant_id = ? AND enabled = 1 AND rule_type = 'deleted_staff'").bind(tenant_id)).await?;
        for (rule, name) in rules {
            tx.execute(
                query("INSERT INTO churn_warning (tenant_id, customer_id, rule_id, reason, status, created_at) VALUES (?, ?, ?, ?, 0, ?)")
                    .bind(tenant_id).bind(cid).bind(rule).bind(format!("{name}: the customer deleted {}", staff_userid.unwrap_or("a staff member"))).bind(now),
            )
            .await?;
        }
        if let Some(row) = store::get_tx(tx, tenant_id, cid).await? {
            stats::record(
                tx,
                tenant_id,
                now,
                row.channel.as_deref(),
                row.follow_user_id,
                stats::Change::Lost,
            )
            .await?;
        }
    }
    store::touch(tx, tenant_id, cid, now).await
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct DeletionRow {
    id: i64,
    customer_id: Option<i64>,
    external_userid: String,
    customer_name: Option<String>,
    staff_userid: Option<String>,
    kind: String,
    occurred_at: i64,
}

async fn deletions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<DeletionRow>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let total = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer_deletion WHERE tenant_id = ?")
                .bind(user.tenant_id),
        )
        .await?;
    let list = state
        .db
        .fetch_all(query("SELECT id, customer_id, external_userid, customer_name, staff_userid, kind, occurred_at FROM customer_deletion WHERE tenant_id = ? ORDER BY id DESC LIMIT ? OFFSET ?").bind(user.tenant_id).bind(paging.size).bind(paging.offset()))
        .await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct RuleRow {
    id: i64,
    name: String,
    rule_type: String,
    days: i64,
    enabled: i64,
}

const RULE_TYPES: &[&str] = &["deleted_staff", "no_interaction"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleBody {
    name: Option<String>,
    rule_type: Option<String>,
    days: Option<i64>,
    enabled: Option<bool>,
}

fn check_rule(b: &RuleBody, creating: bool) -> ApiResult<()> {
    if let Some(n) = &b.name {
        if n.trim().is_empty() || n.chars().count() > 100 {
            return Err(ApiError::field("name", "1-100 characters"));
        }
    } else if creating {
        return Err(ApiError::field("name", "is required"));
    }
    match &b.rule_type {
        Some(t) if !RULE_TYPES.contains(&t.as_str()) => {
            return Err(ApiError::field(
                "ruleType",
                "deleted_staff or no_interaction",
            ));
        }
        None if creating => return Err(ApiError::field("ruleType", "is required")),
        _ => {}
    }
    if let Some(d) = b.days
        && !(1..=3650).contains(&d)
    {
        return Err(ApiError::field("days", "1-3650"));
    }
    if creating && b.rule_type.as_deref() == Some("no_interaction") && b.days.is_none() {
        return Err(ApiError::field("days", "is required for no_interaction"));
    }
    Ok(())
}

async fn rules(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Reply<Vec<RuleRow>>> {
    Ok(ok(state.db.fetch_all(query("SELECT id, name, rule_type, days, enabled FROM churn_rule WHERE tenant_id = ? ORDER BY id").bind(user.tenant_id)).await?))
}

async fn one_rule(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<RuleRow> {
    state.db.fetch_optional(query("SELECT id, name, rule_type, days, enabled FROM churn_rule WHERE tenant_id = ? AND id = ?").bind(tenant_id).bind(id)).await?.ok_or(ApiError::NotFound("churn rule"))
}

async fn create_rule(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<RuleBody>,
) -> ApiResult<Reply<RuleRow>> {
    check_rule(&b, true)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query("INSERT INTO churn_rule (tenant_id, name, rule_type, days, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(user.tenant_id).bind(b.name.as_deref().map(str::trim)).bind(b.rule_type.as_deref()).bind(b.days.unwrap_or(0)).bind(b.enabled.unwrap_or(true)).bind(now).bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "churn_rule.create",
        "churn_rule",
        id,
        json!({"name": b.name, "ruleType": b.rule_type, "days": b.days}),
    )
    .await?;
    tx.commit().await?;
    one_rule(&state, user.tenant_id, id).await.map(created)
}

async fn update_rule(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<RuleBody>,
) -> ApiResult<Reply<RuleRow>> {
    one_rule(&state, user.tenant_id, id).await?;
    check_rule(&b, false)?;
    let mut tx = state.db.begin().await?;
    let mut q = query("UPDATE churn_rule SET updated_at = ?").bind(now_ms());
    if let Some(n) = &b.name {
        q.push_sql(", name = ?").push_bind(n.trim());
    }
    if let Some(t) = &b.rule_type {
        q.push_sql(", rule_type = ?").push_bind(t.as_str());
    }
    if let Some(d) = b.days {
        q.push_sql(", days = ?").push_bind(d);
    }
    if let Some(e) = b.enabled {
        q.push_sql(", enabled = ?").push_bind(e);
    }
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(user.tenant_id)
        .push_bind(id);
    tx.execute(q).await?;
    audit::record(
        &mut tx,
        &user,
        "churn_rule.update",
        "churn_rule",
        id,
        json!({"name": b.name, "ruleType": b.rule_type, "days": b.days, "enabled": b.enabled}),
    )
    .await?;
    tx.commit().await?;
    one_rule(&state, user.tenant_id, id).await.map(ok)
}

async fn delete_rule(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    one_rule(&state, user.tenant_id, id).await?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        query("DELETE FROM churn_rule WHERE tenant_id = ? AND id = ?")
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "churn_rule.delete",
        "churn_rule",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id})))
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct WarningRow {
    id: i64,
    customer_id: i64,
    customer_name: Option<String>,
    rule_id: Option<i64>,
    reason: String,
    status: i64,
    handled_by: Option<i64>,
    created_at: i64,
}

async fn warnings(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<WarningRow>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut w = query(" WHERE w.tenant_id = ?").bind(user.tenant_id);
    if let Some(s) = q.status {
        if !(0..=1).contains(&s) {
            return Err(ApiError::field("status", "0 (open) or 1 (handled)"));
        }
        w.push_sql(" AND w.status = ?").push_bind(s);
    }
    let (list, total) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM churn_warning w",
            "SELECT w.id, w.customer_id, c.name AS customer_name, w.rule_id, w.reason, w.status, w.handled_by, w.created_at FROM churn_warning w LEFT JOIN customer c ON c.id = w.customer_id AND c.tenant_id = w.tenant_id",
            &w,
            "w.id",
        )
        .await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

async fn handle(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    let n = tx.execute(query("UPDATE churn_warning SET status = 1, handled_by = ?, handled_at = ? WHERE tenant_id = ? AND id = ?").bind(user.id).bind(now).bind(user.tenant_id).bind(id)).await?;
    if n.rows_affected == 0 {
        return Err(ApiError::NotFound("churn warning"));
    }
    audit::record(
        &mut tx,
        &user,
        "churn_warning.handle",
        "churn_warning",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "status": 1, "handledAt": iso(now)})))
}

/// Evaluate the tenant's `no_interaction` rules: normal customers with no interaction (follow-up,
/// message) for `days`, and no open warning, get one. Bounded per call; a scheduled job runs it.
pub async fn scan_inactive(tx: &mut Tx, tenant_id: i64, now: i64, limit: i64) -> DbResult<i64> {
    let rules: Vec<(i64, String, i64)> = tx.fetch_all(query("SELECT id, name, days FROM churn_rule WHERE tenant_id = ? AND enabled = 1 AND rule_type = 'no_interaction'").bind(tenant_id)).await?;
    let mut raised = 0;
    for (rule, name, days) in rules {
        let cutoff = now - days * 86_400_000;
        let ids: Vec<(i64,)> = tx
            .fetch_all(
                query("SELECT c.id FROM customer c WHERE c.tenant_id = ? AND c.status = 1 AND COALESCE(c.last_active_at, c.add_time, c.created_at) < ? \
                       AND NOT EXISTS (SELECT 1 FROM churn_warning w WHERE w.tenant_id = c.tenant_id AND w.customer_id = c.id AND w.rule_id = ? AND w.status = 0) ORDER BY c.id LIMIT ?")
                    .bind(tenant_id).bind(cutoff).bind(rule).bind(limit),
            )
            .await?;
        for (cid,) in ids {
            tx.execute(
                query("INSERT INTO churn_warning (tenant_id, customer_id, rule_id, reason, status, created_at) VALUES (?, ?, ?, ?, 0, ?)")
                    .bind(tenant_id).bind(cid).bind(rule).bind(format!("{name}: no interaction for {days} days")).bind(now),
            )
            .await?;
            raised += 1;
        }
    }
    Ok(raised)
}

async fn scan(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let raised = scan_inactive(&mut tx, user.tenant_id, now_ms(), 10_000).await?;
    audit::record(
        &mut tx,
        &user,
        "churn_warning.scan",
        "churn_warning",
        0,
        json!({"raised": raised}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"raised": raised})))
}
