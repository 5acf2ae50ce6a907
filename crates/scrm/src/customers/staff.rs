//! Staff (WeCom members) and departments, filled by sync; and follow relations (a staff member
//! following a customer, WeCom's follow_user).

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Backend, DbResult, Tx, query};
use serde::{Deserialize, Serialize};

use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::http::routes::{Access, Routes};
use crate::state::AppState;

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "staff")
        .route(
            Method::GET,
            "/api/v1/staff",
            Access::Permission(perm::STAFF_VIEW),
            "Staff members (filled by sync)",
            list_staff,
        )
        .route(
            Method::GET,
            "/api/v1/departments",
            Access::Permission(perm::STAFF_VIEW),
            "Departments (filled by sync)",
            list_departments,
        )
}

/// A staff member as stored and shown.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StaffRow {
    pub id: i64,
    pub userid: String,
    pub name: String,
    /// JSON array of WeCom department ids.
    pub department_ids: Option<String>,
    pub status: i64,
}

/// Insert or update a staff member by WeCom userid; returns its id.
pub async fn upsert_staff(
    tx: &mut Tx,
    tenant_id: i64,
    userid: &str,
    name: &str,
    department_ids: &[i64],
    status: i64,
    now: i64,
) -> DbResult<i64> {
    let deps = serde_json::to_string(department_ids).unwrap_or_else(|_| "[]".into());
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO staff (tenant_id, userid, name, department_ids, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE name = VALUES(name), department_ids = VALUES(department_ids), status = VALUES(status), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO staff (tenant_id, userid, name, department_ids, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, userid) DO UPDATE SET name = excluded.name, department_ids = excluded.department_ids, status = excluded.status, updated_at = excluded.updated_at"
        }
    };
    tx.execute(
        query(sql)
            .bind(tenant_id)
            .bind(userid)
            .bind(name)
            .bind(deps)
            .bind(status)
            .bind(now)
            .bind(now),
    )
    .await?;
    tx.fetch_i64(
        query("SELECT id FROM staff WHERE tenant_id = ? AND userid = ?")
            .bind(tenant_id)
            .bind(userid),
    )
    .await
}

/// Insert or update a department by WeCom id.
pub async fn upsert_department(
    tx: &mut Tx,
    tenant_id: i64,
    wecom_id: i64,
    name: &str,
    parent_id: i64,
    sort_order: i64,
    now: i64,
) -> DbResult<()> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO department (tenant_id, wecom_id, name, parent_id, sort_order, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE name = VALUES(name), parent_id = VALUES(parent_id), sort_order = VALUES(sort_order), updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO department (tenant_id, wecom_id, name, parent_id, sort_order, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, wecom_id) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id, sort_order = excluded.sort_order, updated_at = excluded.updated_at"
        }
    };
    tx.execute(
        query(sql)
            .bind(tenant_id)
            .bind(wecom_id)
            .bind(name)
            .bind(parent_id)
            .bind(sort_order)
            .bind(now)
            .bind(now),
    )
    .await
    .map(|_| ())
}

/// Make `staff_id` a follower of the customer (the owner always is one).
pub async fn ensure_follow(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    staff_id: i64,
    now: i64,
) -> DbResult<()> {
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT IGNORE INTO customer_follow (tenant_id, customer_id, staff_id, add_time, add_way, status, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 1, ?, ?)"
        }
        _ => {
            "INSERT INTO customer_follow (tenant_id, customer_id, staff_id, add_time, add_way, status, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 1, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    tx.execute(
        query(sql)
            .bind(tenant_id)
            .bind(customer_id)
            .bind(staff_id)
            .bind(now)
            .bind(now)
            .bind(now),
    )
    .await
    .map(|_| ())
}

/// A follow relation as WeCom shows it (get external contact's follow_user).
#[derive(Debug, Clone)]
pub struct FollowRow {
    pub customer_id: i64,
    pub staff_id: i64,
    pub remark: Option<String>,
    pub add_time: Option<i64>,
    pub add_way: i64,
    pub state: Option<String>,
}

/// Follow relations from WeCom inserted or updated (and made active again), many rows a
/// statement. Pairs must be distinct. The customers' versions are the caller's to move (the
/// sync's customer upsert does).
pub async fn upsert_follows(
    tx: &mut Tx,
    tenant_id: i64,
    rows: &[FollowRow],
    now: i64,
) -> DbResult<()> {
    for chunk in rows.chunks(500) {
        let mut q = query(
            "INSERT INTO customer_follow (tenant_id, customer_id, staff_id, remark, add_time, add_way, state, status, created_at, updated_at) VALUES ",
        );
        for (i, f) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?, ?, 1, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(f.customer_id)
                .push_bind(f.staff_id)
                .push_bind(f.remark.clone())
                .push_bind(f.add_time)
                .push_bind(f.add_way)
                .push_bind(f.state.clone())
                .push_bind(now)
                .push_bind(now);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE remark = VALUES(remark), add_time = VALUES(add_time), add_way = VALUES(add_way), state = VALUES(state), status = 1, updated_at = VALUES(updated_at)"
            }
            _ => {
                " ON CONFLICT (tenant_id, customer_id, staff_id) DO UPDATE SET remark = excluded.remark, add_time = excluded.add_time, add_way = excluded.add_way, state = excluded.state, status = 1, updated_at = excluded.updated_at"
            }
        });
        tx.execute(q).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StaffQuery {
    page: Option<i64>,
    size: Option<i64>,
    keyword: Option<String>,
}

pub(crate) async fn list_staff(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<StaffQuery>,
) -> ApiResult<Reply<ListPage<StaffRow>>> {
    let paging = Paging::new(q.page, q.size, 50, 500)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(k) = q
        .keyword
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        w.push_sql(" AND (name LIKE ? OR userid LIKE ?)")
            .push_bind(format!("%{k}%"))
            .push_bind(format!("%{k}%"));
    }
    let mut c = query("SELECT COUNT(*) FROM staff");
    c.append(&w);
    let total = state.db.fetch_i64(c).await?;
    let mut p = query("SELECT id, userid, name, department_ids, status FROM staff");
    p.append(&w);
    p.push_sql(" ORDER BY id LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let list = state.db.fetch_all(p).await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// A department as shown.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentRow {
    pub id: i64,
    pub wecom_id: i64,
    pub name: String,
    pub parent_id: i64,
    pub sort_order: i64,
}

pub(crate) async fn list_departments(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<DepartmentRow>>> {
    let rows = state
        .db
        .fetch_all(query("SELECT id, wecom_id, name, parent_id, sort_order FROM department WHERE tenant_id = ? ORDER BY parent_id, sort_order, id").bind(user.tenant_id))
        .await?;
    Ok(ok(rows))
}
