//! `/api/v1/system/tokens`: long-lived API tokens for machine clients. The token is shown once,
//! at creation; only its hash and a short prefix are kept.

use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit;
use crate::auth::permissions as perm;
use crate::auth::{CurrentUser, tokens, users};
use crate::http::envelope::{Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, iso_opt, now_ms};

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "system")
        .route(
            Method::GET,
            "/api/v1/system/tokens",
            Access::Permission(perm::TOKEN_MANAGE),
            "List API tokens (never the tokens themselves)",
            list,
        )
        .route(
            Method::POST,
            "/api/v1/system/tokens",
            Access::Permission(perm::TOKEN_MANAGE),
            "Create an API token; it is shown once",
            create,
        )
        .route(
            Method::DELETE,
            "/api/v1/system/tokens/{id}",
            Access::Permission(perm::TOKEN_MANAGE),
            "Revoke an API token",
            revoke,
        )
}

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: i64,
    user_id: i64,
    name: String,
    token_prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    id: i64,
    user_id: i64,
    name: String,
    prefix: String,
    create_time: String,
    expire_time: Option<String>,
    last_used_time: Option<String>,
    revoked: bool,
    /// Present only in the answer to the creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<Row> for TokenView {
    fn from(r: Row) -> Self {
        TokenView {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            prefix: r.token_prefix,
            create_time: iso(r.created_at),
            expire_time: iso_opt(r.expires_at),
            last_used_time: iso_opt(r.last_used_at),
            revoked: r.revoked_at.is_some(),
            token: None,
        }
    }
}

const COLUMNS: &str =
    "id, user_id, name, token_prefix, created_at, expires_at, last_used_at, revoked_at";

pub(crate) async fn list(
    State(state): State<AppState>,
    actor: CurrentUser,
) -> ApiResult<Reply<Vec<TokenView>>> {
    let rows: Vec<Row> = state
        .db
        .fetch_all(scrm_db::query(format!("SELECT {COLUMNS} FROM auth_token WHERE tenant_id = ? AND kind = 'api' ORDER BY id DESC")).bind(actor.tenant_id))
        .await?;
    Ok(ok(rows.into_iter().map(TokenView::from).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for ("CRM sync").
    name: String,
    /// The user the token acts as (its role applies); the caller when absent.
    user_id: Option<i64>,
    /// Days until it expires; never when absent.
    expires_in_days: Option<i64>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    actor: CurrentUser,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<Reply<TokenView>> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field("name", "must be 1-100 characters"));
    }
    if let Some(d) = body.expires_in_days
        && !(1..=3650).contains(&d)
    {
        return Err(ApiError::field(
            "expiresInDays",
            "must be between 1 and 3650",
        ));
    }
    let user_id = body.user_id.unwrap_or(actor.id);
    users::get(&state.db, actor.tenant_id, user_id)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                ApiError::field("userId", "no such user")
            } else {
                e.into()
            }
        })?;
    let now = now_ms();
    let expires_at = body.expires_in_days.map(|d| now + d * 86_400_000);
    let mut tx = state.db.begin().await?;
    let (id, token) = tokens::issue(
        &mut tx,
        actor.tenant_id,
        user_id,
        tokens::Kind::Api,
        name,
        expires_at,
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        &actor,
        "token.create",
        "token",
        id,
        json!({"name": name, "userId": user_id}),
    )
    .await?;
    tx.commit().await?;
    let row: Row = state
        .db
        .fetch_one(
            scrm_db::query(format!("SELECT {COLUMNS} FROM auth_token WHERE id = ?")).bind(id),
        )
        .await?;
    let mut view = TokenView::from(row);
    view.token = Some(token);
    Ok(created(view))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    actor: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let changed = tx
        .execute(
            scrm_db::query("UPDATE auth_token SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND kind = 'api' AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .bind(actor.tenant_id),
        )
        .await?
        .rows_affected;
    if changed == 0 {
        return Err(ApiError::NotFound("token"));
    }
    audit::record(&mut tx, &actor, "token.revoke", "token", id, json!({})).await?;
    tx.commit().await?;
    Ok(ok(json!({ "revoked": true })))
}
