//! Logging in and out, tokens, throttling.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_app_with};

async fn login_gives_a_token_that_identifies_the_user(app: TestApp) {
    let r = app.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["tokenType"], "Bearer");
    assert_eq!(r.data()["user"]["role"], "admin");
    let token = r.data()["token"].as_str().unwrap();
    let me = app.get("/api/v1/auth/me", token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.data()["username"], "admin");
    assert!(
        me.data()["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "workbench:group-send:create")
    );
}

async fn a_wrong_password_is_refused(app: TestApp) {
    let r = app.try_login("admin", "not-the-password").await;
    assert_eq!((r.status, r.error()), (401, "INVALID_CREDENTIALS"));
    let r = app.try_login("nobody", "whatever-password").await;
    assert_eq!((r.status, r.error()), (401, "INVALID_CREDENTIALS"));
}

async fn logout_revokes_the_token(app: TestApp) {
    let token = app.login("admin", ADMIN_PASSWORD).await;
    let r = app.post("/api/v1/auth/logout", &token, json!({})).await;
    assert_eq!(r.status, 200);
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.status, 401);
    // Other sessions live on.
    assert_eq!(
        app.get("/api/v1/auth/me", &app.admin_token).await.status,
        200
    );
}

async fn repeated_failures_lock_the_name(app: TestApp) {
    for _ in 0..3 {
        assert_eq!(app.try_login("admin", "wrong-password").await.status, 401);
    }
    let r = app.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        (r.status, r.error()),
        (429, "LOGIN_THROTTLED"),
        "even the right password waits: {:?}",
        r.body
    );
}

async fn api_tokens_are_shown_once_and_can_be_revoked(app: TestApp) {
    let r = app
        .post(
            "/api/v1/system/tokens",
            &app.admin_token,
            json!({"name": "crm sync", "expiresInDays": 30}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = r.data()["token"].as_str().unwrap().to_string();
    let id = r.data()["id"].as_i64().unwrap();
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 200);
    let list = app.get("/api/v1/system/tokens", &app.admin_token).await;
    let listed = &list.data()[0];
    assert_eq!(listed["name"], "crm sync");
    assert!(
        listed.get("token").is_none(),
        "the token is never shown again"
    );
    assert!(!list.body.to_string().contains(&token));
    let r = app
        .delete(&format!("/api/v1/system/tokens/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 401);
    assert_eq!(
        app.delete(&format!("/api/v1/system/tokens/{id}"), &app.admin_token)
            .await
            .status,
        404
    );
}

async fn a_password_reset_signs_the_user_out(app: TestApp) {
    let (id, token) = app.user_with_role("olga", "operator").await;
    let r = app
        .post(
            &format!("/api/v1/system/users/{id}/reset-password"),
            &app.admin_token,
            json!({"password": "brand-new-pass"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 401);
    assert_eq!(app.try_login("olga", "password-123").await.status, 401);
    app.login("olga", "brand-new-pass").await;
}

async fn a_disabled_user_cannot_sign_in(app: TestApp) {
    let (id, token) = app.user_with_role("dora", "viewer").await;
    let r = app
        .put(
            &format!("/api/v1/system/users/{id}"),
            &app.admin_token,
            json!({"status": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 401);
    assert_eq!(app.try_login("dora", "password-123").await.status, 401);
}

async fn logins_are_audited(app: TestApp) {
    let r = app
        .get(
            "/api/v1/system/audit-logs?action=auth.login",
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.data()["total"].as_i64().unwrap() >= 1);
    assert_eq!(r.data()["list"][0]["username"], "admin");
    let _ = Method::GET;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    login_gives_a_token_that_identifies_the_user,
    a_wrong_password_is_refused,
    logout_revokes_the_token,
    repeated_failures_lock_the_name,
    api_tokens_are_shown_once_and_can_be_revoked,
    a_password_reset_signs_the_user_out,
    a_disabled_user_cannot_sign_in,
    logins_are_audited,
);

/// An app whose login sessions last two seconds.
async fn spawn_short_sessions(backend: scrm_db::Backend) -> TestApp {
    spawn_app_with(backend, &[("SCRM_SESSION_TTL_SECS", "2")]).await
}

/// A session token works until its lifetime is over, then is refused (401, never before the
/// lifetime); logging in again gives a new one. An API token is not a session: it outlives it.
async fn a_session_ends_when_its_lifetime_is_over(app: TestApp) {
    let before_login = std::time::Instant::now();
    let r = app.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = r.data()["token"].as_str().unwrap().to_string();
    assert!(
        r.data()["expiresAt"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 200);
    let api_token = app
        .post(
            "/api/v1/system/tokens",
            &token,
            json!({"name": "outlives the session", "expiresInDays": 1}),
        )
        .await;
    assert_eq!(api_token.status, 201, "{:?}", api_token.body);
    let api_token = api_token.data()["token"].as_str().unwrap().to_string();
    let deadline = before_login + std::time::Duration::from_secs(60);
    loop {
        let me = app.get("/api/v1/auth/me", &token).await;
        if me.status == 401 {
            assert_eq!(me.error(), "UNAUTHORIZED", "{:?}", me.body);
            assert!(
                before_login.elapsed() >= std::time::Duration::from_secs(2),
                "refused after {:?}, before its 2 s lifetime",
                before_login.elapsed()
            );
            break;
        }
        assert_eq!(me.status, 200, "{:?}", me.body);
        assert!(
            std::time::Instant::now() < deadline,
            "the session still works a minute later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Expired is expired: writes are refused too.
    let r = app
        .post("/api/v1/system/tokens", &token, json!({"name": "x"}))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(app.get("/api/v1/auth/me", &api_token).await.status, 200);
    let fresh = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(app.get("/api/v1/auth/me", &fresh).await.status, 200);
}

scrm_db::db_tests!(crate::auth::spawn_short_sessions;
    a_session_ends_when_its_lifetime_is_over,
);
