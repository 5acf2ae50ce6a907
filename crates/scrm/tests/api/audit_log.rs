//! Audit-log completeness over the route table: every write that succeeds leaves an audit row
//! carrying its request id.

use std::collections::BTreeSet;

use reqwest::Method;
use scrm::http::routes::Access;
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, TestApp};
use crate::tenants::{MARK, mark_everything, our_view, with_id};

/// POST routes that change nothing stored: signing out (the session's own revocation), a
/// connectivity check against WeCom, a search whose filter is a body.
const NOT_AUDITED: &[&str] = &[
    "/api/v1/auth/logout",
    "/api/wework/config/test",
    "/api/v1/workbench/customer/search",
];

/// With marked data of every kind in place, our admin sends every POST, PUT, PATCH and DELETE
/// route — every `{id}` from 1 to 12 — with the body of our own record at that path (changed)
/// and with an empty body. Whatever succeeded (2xx) must have written an audit row with the
/// request's id in the same transaction; routes that succeeded without one are listed.
async fn every_successful_write_is_audited(app: TestApp) {
    mark_everything(&app).await;
    let view = our_view(&app).await;
    let admin_id: i64 = app.get("/api/v1/auth/me", &app.admin_token).await.data()["id"]
        .as_i64()
        .unwrap();
    let mut token = app.admin_token.clone();
    let (mut succeeded, mut unaudited) = (0, BTreeSet::new());
    let mut n = 0;
    for r in app.routes.iter().filter(|r| {
        matches!(
            r.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) && r.access != Access::Public
            && !r.page
            && !NOT_AUDITED.contains(&r.path)
    }) {
        let ids: Vec<i64> = if r.path.contains('{') {
            (1..=12).collect()
        } else {
            vec![0]
        };
        for id in ids {
            // Not ourselves: disabling or deleting the admin would end the test, not audit it.
            if r.path.starts_with("/api/v1/system/users/") && id == admin_id {
                continue;
            }
            let path = with_id(r.path, id);
            let ours = view
                .get(&path)
                .and_then(|b| b.split_once(' '))
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
                .map(|v| v["data"].clone())
                .filter(|d| d.is_object());
            let mut bodies = vec![json!({})];
            if let Some(d) = ours {
                bodies.insert(
                    0,
                    serde_json::from_str(&d.to_string().replace(MARK, "changed")).unwrap(),
                );
            }
            for body in bodies {
                n += 1;
                let rid = format!("audit-check-{n}");
                let send = |token: String| {
                    app.client
                        .request(r.method.clone(), format!("{}{path}", app.base))
                        .bearer_auth(token)
                        .header("x-request-id", rid.clone())
                        .json(&body)
                        .send()
                };
                let mut resp = send(token.clone()).await.unwrap();
                if resp.status() == 401 {
                    // An earlier write signed us out (a password reset, a revoked token).
                    token = app.login("admin", ADMIN_PASSWORD).await;
                    resp = send(token.clone()).await.unwrap();
                }
                let status = resp.status().as_u16();
                assert_ne!(
                    status,
                    500,
                    "{} {path}: {}",
                    r.method,
                    resp.text().await.unwrap()
                );
                if !(200..300).contains(&status) {
                    continue;
                }
                succeeded += 1;
                let rows = app
                    .state
                    .db
                    .fetch_i64(
                        scrm_db::query("SELECT COUNT(*) FROM audit_log WHERE request_id = ?")
                            .bind(rid.as_str()),
                    )
                    .await
                    .unwrap();
                if rows == 0 {
                    unaudited.insert(format!("{} {} ({status})", r.method, r.path));
                }
            }
        }
    }
    assert!(
        unaudited.is_empty(),
        "writes that succeeded without an audit row: {unaudited:#?}"
    );
    assert!(succeeded >= 20, "only {succeeded} writes succeeded");
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    every_successful_write_is_audited,
);
