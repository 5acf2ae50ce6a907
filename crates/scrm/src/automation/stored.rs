//! What content sources and group welcomes share as a tenant's stored things: one row by id,
//! the paged list, the one-row answer and the delete with its audit entry. Each says its table,
//! columns and view ([`Stored`]); creating and changing one stay its own (the checks and columns
//! differ).

use std::future::Future;

use axum::extract::State;
use scrm_db::{Db, DbResult, query};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::{ApiError, ApiResult};
use crate::state::AppState;

/// A tenant's stored thing with an `id` and a `name`.
pub trait Stored: scrm_db::Row + Sync {
    /// The table; also the audit entries' target type (`<table>.delete`).
    const TABLE: &'static str;
    /// The columns a row is read with.
    const COLUMNS: &'static str;
    /// What a missing row is called in the 404.
    const NOUN: &'static str;
    /// Rows of other tables deleted with a row: (table, the column holding the row's id).
    const CHILDREN: &'static [(&'static str, &'static str)];

    fn name(&self) -> &str;

    /// The API's view of a row; `detail` adds what only the one-row answer shows.
    fn view(&self, db: &Db, detail: bool) -> impl Future<Output = DbResult<Value>> + Send;
}

/// The tenant's row `id`, if there is one.
pub async fn one<R: Stored>(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<R>> {
    db.fetch_optional(
        query(format!(
            "SELECT {} FROM {} WHERE tenant_id = ? AND id = ?",
            R::COLUMNS,
            R::TABLE
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// The tenant's row `id`, or the 404.
pub async fn live<R: Stored>(db: &Db, tenant_id: i64, id: i64) -> ApiResult<R> {
    one(db, tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound(R::NOUN))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

/// `GET` the list: a page (`page`, `size` ≤ 100, default 20) of the tenant's rows, newest first.
pub async fn list<R: Stored>(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let (rows, total): (Vec<R>, i64) = paging
        .fetch(
            &state.db,
            format!("SELECT COUNT(*) FROM {}", R::TABLE),
            format!("SELECT {} FROM {}", R::COLUMNS, R::TABLE),
            &query(" WHERE tenant_id = ?").bind(user.tenant_id),
            "id",
        )
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in &rows {
        list.push(r.view(&state.db, false).await?);
    }
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// `GET` one row, with its detail.
pub async fn get<R: Stored>(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let r: R = live(&state.db, user.tenant_id, id).await?;
    Ok(ok(r.view(&state.db, true).await?))
}

/// `DELETE` one row with its children, audited as `<table>.delete` with its name.
pub async fn delete<R: Stored>(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let r: R = live(&state.db, user.tenant_id, id).await?;
    let mut tx = state.db.begin().await?;
    for (table, column) in R::CHILDREN {
        tx.execute(
            query(format!(
                "DELETE FROM {table} WHERE tenant_id = ? AND {column} = ?"
            ))
            .bind(user.tenant_id)
            .bind(id),
        )
        .await?;
    }
    tx.execute(
        query(format!(
            "DELETE FROM {} WHERE tenant_id = ? AND id = ?",
            R::TABLE
        ))
        .bind(user.tenant_id)
        .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        &format!("{}.delete", R::TABLE),
        R::TABLE,
        id,
        json!({"name": r.name()}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deleted": true})))
}
