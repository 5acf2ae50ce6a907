//! Users and roles over the API, with the audit log.

use serde_json::json;

use crate::helpers::TestApp;

async fn an_admin_creates_users_and_the_change_is_audited(app: TestApp) {
    let r = app.post("/api/v1/system/users", &app.admin_token, json!({"username": "li.si", "password": "password-123", "role": "operator", "displayName": "李四 🌟"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["displayName"], "李四 🌟");
    assert_eq!(r.data()["role"], "operator");
    assert!(r.data().get("passwordHash").is_none() && !r.body.to_string().contains("argon2"));
    let list = app
        .get("/api/v1/system/users?page=1&size=10", &app.admin_token)
        .await;
    assert_eq!(list.data()["total"], 2);
    assert_eq!(list.data()["page"], 1);
    let audit = app
        .get(
            "/api/v1/system/audit-logs?action=user.create",
            &app.admin_token,
        )
        .await;
    assert_eq!(audit.data()["list"][0]["detail"]["username"], "li.si");
    assert_eq!(audit.data()["list"][0]["username"], "admin");
}

async fn a_taken_user_name_is_a_409(app: TestApp) {
    let body = json!({"username": "twin", "password": "password-123", "role": "viewer"});
    assert_eq!(
        app.post("/api/v1/system/users", &app.admin_token, body.clone())
            .await
            .status,
        201
    );
    let r = app
        .post("/api/v1/system/users", &app.admin_token, body)
        .await;
    assert_eq!((r.status, r.error()), (409, "USERNAME_TAKEN"));
}

async fn user_fields_are_validated(app: TestApp) {
    let r = app
        .post(
            "/api/v1/system/users",
            &app.admin_token,
            json!({"username": "ab", "password": "password-123", "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("username"))
    );
    let r = app
        .post(
            "/api/v1/system/users",
            &app.admin_token,
            json!({"username": "abc", "password": "short", "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("password"))
    );
    let r = app
        .post(
            "/api/v1/system/users",
            &app.admin_token,
            json!({"username": "abc", "password": "password-123", "role": "king"}),
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    assert_eq!(
        app.get("/api/v1/system/users", &app.admin_token)
            .await
            .data()["total"],
        1,
        "nothing created"
    );
}

async fn an_admin_cannot_lock_themselves_out(app: TestApp) {
    let me = app.get("/api/v1/auth/me", &app.admin_token).await;
    let id = me.data()["id"].as_i64().unwrap();
    let r = app
        .put(
            &format!("/api/v1/system/users/{id}"),
            &app.admin_token,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    an_admin_creates_users_and_the_change_is_audited,
    a_taken_user_name_is_a_409,
    user_fields_are_validated,
    an_admin_cannot_lock_themselves_out,
);
