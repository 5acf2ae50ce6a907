//! `/api/v1/system/users`: a tenant's users and their roles.

use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use crate::audit;
use crate::auth::permissions as perm;
use crate::auth::users::{self, UserView};
use crate::auth::{CurrentUser, Role, password};
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "system")
        .route(
            Method::GET,
            "/api/v1/system/users",
            Access::Permission(perm::USER_VIEW),
            "List the tenant's users",
            list,
        )
        .route(
            Method::POST,
            "/api/v1/system/users",
            Access::Permission(perm::USER_MANAGE),
            "Create a user",
            create,
        )
        .route(
            Method::GET,
            "/api/v1/system/users/{id}",
            Access::Permission(perm::USER_VIEW),
            "One user",
            get,
        )
        .route(
            Method::PUT,
            "/api/v1/system/users/{id}",
            Access::Permission(perm::USER_MANAGE),
            "Change a user's name, role or status",
            update,
        )
        .route(
            Method::POST,
            "/api/v1/system/users/{id}/reset-password",
            Access::Permission(perm::USER_MANAGE),
            "Set a new password and sign the user out",
            reset_password,
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<UserView>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let (rows, total) =
        users::list(&state.db, user.tenant_id, paging.offset(), paging.size).await?;
    Ok(ok(ListPage {
        list: rows.into_iter().map(UserView::from).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<UserView>> {
    let row = users::get(&state.db, user.tenant_id, id)
        .await
        .map_err(not_found)?;
    Ok(ok(row.into()))
}

fn not_found(e: scrm_db::DbError) -> ApiError {
    if e.is_not_found() {
        ApiError::NotFound("user")
    } else {
        e.into()
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    password: String,
    display_name: Option<String>,
    role: Role,
}

/// A user name: 3-64 characters of letters, digits, `.`, `_`, `-`, `@`.
fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    actor: CurrentUser,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<Reply<UserView>> {
    if !valid_username(&body.username) {
        return Err(ApiError::field(
            "username",
            "3-64 characters: letters, digits, . _ - @",
        ));
    }
    if let Some(why) = password::check_strength(&body.password) {
        return Err(ApiError::field("password", why));
    }
    let display_name = body.display_name.unwrap_or_else(|| body.username.clone());
    if display_name.chars().count() > 100 {
        return Err(ApiError::field(
            "displayName",
            "must be at most 100 characters",
        ));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&body.password))
        .await
        .map_err(anyhow::Error::from)??;
    let mut tx = state.db.begin().await?;
    let id = users::create(
        &mut tx,
        actor.tenant_id,
        &body.username,
        &display_name,
        &hash,
        body.role,
    )
    .await
    .map_err(|e| {
        if e.is_conflict() {
            ApiError::domain(
                axum::http::StatusCode::CONFLICT,
                "USERNAME_TAKEN",
                "user name already taken",
            )
        } else {
            e.into()
        }
    })?;
    audit::record(
        &mut tx,
        &actor,
        "user.create",
        "user",
        id,
        json!({"username": body.username, "role": body.role}),
    )
    .await?;
    tx.commit().await?;
    let row = users::get(&state.db, actor.tenant_id, id).await?;
    Ok(created(row.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    display_name: Option<String>,
    role: Option<Role>,
    status: Option<i64>,
}

pub(crate) async fn update(
    State(state): State<AppState>,
    actor: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Reply<UserView>> {
    let current = users::get(&state.db, actor.tenant_id, id)
        .await
        .map_err(not_found)?;
    if let Some(s) = body.status
        && !matches!(s, 0 | 1)
    {
        return Err(ApiError::field(
            "status",
            "must be 0 (disabled) or 1 (active)",
        ));
    }
    if let Some(n) = &body.display_name
        && (n.trim().is_empty() || n.chars().count() > 100)
    {
        return Err(ApiError::field("displayName", "must be 1-100 characters"));
    }
    if id == actor.id && (body.role.is_some_and(|r| r != Role::Admin) || body.status == Some(0)) {
        return Err(ApiError::invalid("you cannot demote or disable yourself"));
    }
    let mut tx = state.db.begin().await?;
    tx.execute(
        scrm_db::query("UPDATE app_user SET display_name = ?, role = ?, status = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(body.display_name.clone().unwrap_or(current.display_name))
            .bind(body.role.map(Role::as_str).unwrap_or(current.role.as_str()))
            .bind(body.status.unwrap_or(current.status))
            .bind(now_ms())
            .bind(actor.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &actor,
        "user.update",
        "user",
        id,
        json!({"displayName": body.display_name, "role": body.role, "status": body.status}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(users::get(&state.db, actor.tenant_id, id).await?.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    password: String,
}

pub(crate) async fn reset_password(
    State(state): State<AppState>,
    actor: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResetPassword>,
) -> ApiResult<Reply<serde_json::Value>> {
    if let Some(why) = password::check_strength(&body.password) {
        return Err(ApiError::field("password", why));
    }
    users::get(&state.db, actor.tenant_id, id)
        .await
        .map_err(not_found)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&body.password))
        .await
        .map_err(anyhow::Error::from)??;
    let mut tx = state.db.begin().await?;
    users::set_password(&mut tx, actor.tenant_id, id, &hash).await?;
    audit::record(
        &mut tx,
        &actor,
        "user.reset_password",
        "user",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({ "reset": true })))
}
