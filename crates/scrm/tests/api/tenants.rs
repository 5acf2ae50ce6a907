//! A user of one tenant never reads or changes anything of another.

use serde_json::json;

use crate::helpers::TestApp;

async fn another_tenant_sees_none_of_our_users(app: TestApp) {
    let (ours, _) = app.user_with_role("ours", "viewer").await;
    let (_, theirs) = app.other_tenant_admin("other company", "boss.b").await;

    let list = app.get("/api/v1/system/users", &theirs).await;
    assert_eq!(list.status, 200);
    let names: Vec<_> = list.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["boss.b"]);

    let r = app
        .get(&format!("/api/v1/system/users/{ours}"), &theirs)
        .await;
    assert_eq!((r.status, r.error()), (404, "NOT_FOUND"));
    let r = app
        .put(
            &format!("/api/v1/system/users/{ours}"),
            &theirs,
            json!({"displayName": "hacked"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("/api/v1/system/users/{ours}/reset-password"),
            &theirs,
            json!({"password": "hacked-password"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let mine = app
        .get(&format!("/api/v1/system/users/{ours}"), &app.admin_token)
        .await;
    assert_eq!(mine.data()["displayName"], "ours", "unchanged");
    app.login("ours", "password-123").await;

    let audit = app.get("/api/v1/system/audit-logs", &theirs).await;
    assert!(
        audit.data()["list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["username"] == "boss.b"),
        "{:?}",
        audit.body
    );
}

async fn another_tenant_cannot_revoke_our_tokens(app: TestApp) {
    let r = app
        .post(
            "/api/v1/system/tokens",
            &app.admin_token,
            json!({"name": "ours"}),
        )
        .await;
    let id = r.data()["id"].as_i64().unwrap();
    let token = r.data()["token"].as_str().unwrap().to_string();
    let (_, theirs) = app.other_tenant_admin("other company", "boss.c").await;
    assert_eq!(
        app.get("/api/v1/system/tokens", &theirs)
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.delete(&format!("/api/v1/system/tokens/{id}"), &theirs)
            .await
            .status,
        404
    );
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 200);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    another_tenant_sees_none_of_our_users,
    another_tenant_cannot_revoke_our_tokens,
);
