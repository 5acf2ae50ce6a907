//! Who is calling and what they may do: users with argon2 passwords, bearer tokens (login
//! sessions and long-lived API tokens, both stored hashed), the built-in roles and their
//! permissions, login throttling, and the guard every non-public route passes through.

pub mod password;
pub mod permissions;
pub mod routes;
pub mod throttle;
pub mod tokens;
pub mod users;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scrm_db::query;

use crate::http::error::ApiError;
use crate::http::routes::Access;
use crate::state::{AppState, now_ms};
pub use permissions::Role;

/// The authenticated caller of a request. Only the guard creates it, after checking the token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub tenant_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// The token this request came with (logout revokes it).
    pub token_id: i64,
    /// The request id, for the audit log.
    pub request_id: Option<String>,
}

impl CurrentUser {
    /// Whether the caller's role holds a permission.
    pub fn can(&self, permission: &str) -> bool {
        self.role.allows(permission)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: i64,
    user_id: i64,
    tenant_id: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    username: String,
    display_name: String,
    role: String,
    status: i64,
}

/// Find the user a bearer token belongs to; 401 when the token is missing, unknown, expired or
/// revoked, or its user is disabled.
pub async fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<CurrentUser, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let hash = tokens::hash(token);
    let row: Option<TokenRow> = state
        .db
        .fetch_optional(
            query(
                "SELECT t.id AS token_id, t.user_id, t.tenant_id, t.expires_at, t.last_used_at, \
                 u.username, u.display_name, u.role, u.status \
                 FROM auth_token t JOIN app_user u ON u.id = t.user_id AND u.tenant_id = t.tenant_id \
                 WHERE t.token_hash = ? AND t.revoked_at IS NULL",
            )
            .bind(hash),
        )
        .await?;
    let row = row.ok_or(ApiError::Unauthorized)?;
    let now = now_ms();
    if row.status != 1 || row.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::Unauthorized);
    }
    // Record use at most once a minute: a write per request would cost more than it tells.
    if row.last_used_at.is_none_or(|t| now - t > 60_000) {
        state
            .db
            .execute(
                query("UPDATE auth_token SET last_used_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(row.token_id),
            )
            .await?;
    }
    let role = Role::parse(&row.role).ok_or(ApiError::Unauthorized)?;
    Ok(CurrentUser {
        id: row.user_id,
        tenant_id: row.tenant_id,
        username: row.username,
        display_name: row.display_name,
        role,
        token_id: row.token_id,
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    })
}

/// The token of `Authorization: Bearer …`, or of the console's session cookie.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
            .filter(|t| !t.is_empty());
    }
    let cookies = headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == tokens::SESSION_COOKIE)
        .map(|(_, v)| v)
        .filter(|t| !t.is_empty())
}

/// The one access check: authenticate the caller and check the route's permission. The API's
/// guard and the console's page guard both use it, so a page and an API route with the same
/// [`Access`] admit exactly the same callers.
pub async fn check(
    state: &AppState,
    access: Access,
    headers: &axum::http::HeaderMap,
) -> Result<CurrentUser, ApiError> {
    let user = authenticate(state, headers).await?;
    if let Access::Permission(permission) = access
        && !user.can(permission)
    {
        return Err(ApiError::Forbidden(permission.to_string()));
    }
    Ok(user)
}

/// The guard layered on every non-public API route: authenticate, check the permission, and
/// hand the caller to the handler.
pub async fn guard(
    State(state): State<AppState>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    match check(&state, access, req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
