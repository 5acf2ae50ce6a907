//! `POST /api/v1/auth/login`, `GET /api/v1/auth/me`, `POST /api/v1/auth/logout`.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{CurrentUser, Role, password, throttle, tokens, users};
use crate::audit;
use crate::http::envelope::{Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "auth")
        .route(
            Method::POST,
            "/api/v1/auth/login",
            Access::Public,
            "Log in with a user name and password; returns a bearer token",
            login,
        )
        .route(
            Method::GET,
            "/api/v1/auth/me",
            Access::Authenticated,
            "The signed-in user, their role and permissions",
            me,
        )
        .route(
            Method::POST,
            "/api/v1/auth/logout",
            Access::Authenticated,
            "Revoke the token this request carries",
            logout,
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: String,
    pub user: Me,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: i64,
    pub tenant_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub permissions: Vec<&'static str>,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Reply<LoginResponse>> {
    let username = body.username.trim();
    if username.is_empty() {
        return Err(ApiError::field("username", "is required"));
    }
    if body.password.is_empty() {
        return Err(ApiError::field("password", "is required"));
    }
    let now = now_ms();
    let key = format!("user:{}", username.to_lowercase());
    if let Some(secs) = throttle::locked_for(&state.db, &key, now).await? {
        return Err(ApiError::domain(
            StatusCode::TOO_MANY_REQUESTS,
            "LOGIN_THROTTLED",
            format!("too many failed logins; try again in {secs} s"),
        ));
    }
    let found = users::find_for_login(&state.db, username).await?;
    let hash = found
        .as_ref()
        .map(|(_, h)| h.as_str())
        .unwrap_or(password::dummy_hash())
        .to_string();
    let password_ok = {
        let pw = body.password.clone();
        // argon2 is deliberately slow; keep it off the async threads.
        tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
            .await
            .unwrap_or(false)
    };
    let user = match found {
        Some((user, _)) if password_ok && user.status == 1 => user,
        _ => {
            let window = i64::try_from(state.config.login_window.as_millis()).unwrap_or(i64::MAX);
            throttle::record_failure(
                &state.db,
                &key,
                now,
                state.config.login_max_failures,
                window,
            )
            .await?;
            return Err(ApiError::domain(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "wrong user name or password",
            ));
        }
    };
    throttle::clear(&state.db, &key).await?;
    let role = Role::parse(&user.role)
        .ok_or_else(|| anyhow::anyhow!("user {} has unknown role {}", user.id, user.role))?;
    let expires_at =
        now + i64::try_from(state.config.session_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let mut tx = state.db.begin().await?;
    let (_, token) = tokens::issue(
        &mut tx,
        user.tenant_id,
        user.id,
        tokens::Kind::Session,
        "login",
        Some(expires_at),
        now,
    )
    .await?;
    tx.execute(
        scrm_db::query("UPDATE app_user SET last_login_at = ? WHERE id = ?")
            .bind(now)
            .bind(user.id),
    )
    .await?;
    audit::record_raw(
        &mut tx,
        user.tenant_id,
        Some((user.id, &user.username)),
        "auth.login",
        "user",
        &user.id.to_string(),
        json!({}),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(ok(LoginResponse {
        token,
        token_type: "Bearer",
        expires_at: iso(expires_at),
        user: Me {
            id: user.id,
            tenant_id: user.tenant_id,
            username: user.username,
            display_name: user.display_name,
            role,
            permissions: role.permissions(),
        },
    }))
}

async fn me(user: CurrentUser) -> ApiResult<Reply<Me>> {
    Ok(ok(Me {
        id: user.id,
        tenant_id: user.tenant_id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        permissions: user.role.permissions(),
    }))
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    tx.execute(
        scrm_db::query("UPDATE auth_token SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(user.token_id)
            .bind(user.tenant_id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "auth.logout",
        "token",
        user.token_id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({ "loggedOut": true })))
}
