//! Bad input gets the envelope with a stable name and the right status, and changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

async fn malformed_json_is_a_validation_error(app: TestApp) {
    let r = app
        .call_raw(
            Method::POST,
            "/api/v1/auth/login",
            None,
            "application/json",
            b"{\"username\": ".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "VALIDATION_FAILED");
    assert_eq!(r.body["code"], 400);
    assert!(r.body["data"].is_null());
}

async fn wrong_types_missing_and_unknown_fields_are_named(app: TestApp) {
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": 5, "password": "x"})),
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    assert!(
        r.body["message"].as_str().unwrap().contains("username"),
        "{:?}",
        r.body
    );

    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin"})),
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    assert!(
        r.body["message"].as_str().unwrap().contains("password"),
        "{:?}",
        r.body
    );

    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": "x", "admin": true})),
        )
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    assert!(
        r.body["message"].as_str().unwrap().contains("admin"),
        "{:?}",
        r.body
    );
}

async fn a_wrong_content_type_is_415(app: TestApp) {
    let r = app
        .call_raw(
            Method::POST,
            "/api/v1/auth/login",
            None,
            "text/plain",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!((r.status, r.error()), (415, "UNSUPPORTED_MEDIA_TYPE"));
}

async fn an_oversized_body_is_413_and_creates_nothing(app: TestApp) {
    let big = "x".repeat(3 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({"username": "huge", "password": "password-123", "role": "viewer", "displayName": big})).unwrap();
    let r = app
        .call_raw(
            Method::POST,
            "/api/v1/system/users",
            Some(&app.admin_token),
            "application/json",
            body,
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (413, "PAYLOAD_TOO_LARGE"),
        "{:?}",
        r.body
    );
    let users = app.get("/api/v1/system/users", &app.admin_token).await;
    assert_eq!(users.data()["total"], 1, "nothing was created");
}

async fn bad_and_missing_tokens_are_401(app: TestApp) {
    let r = app.call(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!((r.status, r.error()), (401, "UNAUTHORIZED"));
    let r = app
        .call(
            Method::GET,
            "/api/v1/auth/me",
            Some("scrm_not-a-real-token"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error()), (401, "UNAUTHORIZED"));
    let r = app
        .client
        .get(format!("{}/api/v1/auth/me", app.base))
        .header("authorization", "Basic YWRtaW46eA==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn unknown_routes_and_methods_get_the_envelope(app: TestApp) {
    let r = app
        .call(Method::GET, "/api/v1/nothing-here", None, None)
        .await;
    assert_eq!((r.status, r.error()), (404, "NOT_FOUND"));
    let r = app.call(Method::DELETE, "/health", None, None).await;
    assert_eq!((r.status, r.error()), (405, "METHOD_NOT_ALLOWED"));
}

async fn a_bad_path_parameter_is_400(app: TestApp) {
    let r = app
        .get("/api/v1/system/users/not-a-number", &app.admin_token)
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
}

async fn a_bad_query_parameter_is_400(app: TestApp) {
    let r = app
        .get("/api/v1/system/users?page=abc", &app.admin_token)
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    let r = app
        .get("/api/v1/system/users?page=0", &app.admin_token)
        .await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    assert_eq!(r.body["fields"][0]["field"], "page");
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    malformed_json_is_a_validation_error,
    wrong_types_missing_and_unknown_fields_are_named,
    a_wrong_content_type_is_415,
    an_oversized_body_is_413_and_creates_nothing,
    bad_and_missing_tokens_are_401,
    unknown_routes_and_methods_get_the_envelope,
    a_bad_path_parameter_is_400,
    a_bad_query_parameter_is_400,
);
