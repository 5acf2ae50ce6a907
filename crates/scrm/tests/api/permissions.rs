//! Every route has an access decision, and it holds — the JSON API's and the console's pages
//! alike: pages are in the same route table with the same access rules, checked by the same
//! function; only what a refusal looks like differs (a page sends a visitor without a session
//! to the login page, and answers a role without the permission with a 403 page).

use reqwest::Method;
use scrm::http::routes::Access;
use serde_json::json;

use crate::helpers::TestApp;

/// Routes that are public on purpose. Anything else public is a mistake.
const PUBLIC: &[&str] = &[
    "/health",
    "/health/ready",
    "/metrics",
    "/api/v1/auth/login",
    "/docs",
    "/docs/openapi.json",
    "/docs/swagger-ui.css",
    "/docs/swagger-ui-bundle.js",
    // WeCom's callbacks: signed with the callback token (msg_signature), not a user token.
    "/api/wework/callback/{configId}",
    // Device gateways: authenticated by the gateway's own token.
    "/api/v1/devices/gateway/ws",
    // The console: its entry, login, language switch and embedded assets.
    "/",
    "/console/login",
    "/console/lang",
    "/console/assets/{file}",
];

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_route_has_a_permission_unless_public_on_purpose(app: TestApp) {
    assert!(app.routes.len() > 10);
    for r in &app.routes {
        if r.access == Access::Public {
            assert!(
                PUBLIC.contains(&r.path),
                "{} {} is public but not on the list of public routes",
                r.method,
                r.path
            );
        }
    }
}

async fn every_guarded_route_refuses_a_caller_without_a_token(app: TestApp) {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for r in app.routes.iter().filter(|r| r.access != Access::Public) {
        let method = Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
        if r.page {
            let resp = no_redirects
                .request(method, format!("{}{}", app.base, concrete(r.path)))
                .send()
                .await
                .unwrap();
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                resp.status() == 303 && to.starts_with("/console/login"),
                "{} {} answered {} ({to}) without a session",
                r.method,
                r.path,
                resp.status()
            );
            continue;
        }
        let resp = app
            .call(method, &concrete(r.path), None, Some(json!({})))
            .await;
        assert_eq!(
            resp.status, 401,
            "{} {} answered {} without a token",
            r.method, r.path, resp.status
        );
    }
}

async fn every_permission_route_refuses_a_role_without_it(app: TestApp) {
    let (_, viewer) = app.user_with_role("vera", "viewer").await;
    let (_, operator) = app.user_with_role("otto", "operator").await;
    for r in &app.routes {
        let Access::Permission(p) = r.access else {
            continue;
        };
        let method = Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
        for (role, token) in [
            (scrm::auth::Role::Viewer, &viewer),
            (scrm::auth::Role::Operator, &operator),
        ] {
            let resp = app
                .call(
                    method.clone(),
                    &concrete(r.path),
                    Some(token),
                    Some(json!({})),
                )
                .await;
            if role.allows(p) {
                assert_ne!(resp.status, 403, "{} {} refused {role:?}", r.method, r.path);
            } else if r.page {
                assert_eq!(
                    resp.status, 403,
                    "{} {} let {role:?} through",
                    r.method, r.path
                );
            } else {
                assert_eq!(
                    (resp.status, resp.error()),
                    (403, "FORBIDDEN"),
                    "{} {} let {role:?} through",
                    r.method,
                    r.path
                );
            }
        }
    }
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    every_route_has_a_permission_unless_public_on_purpose,
    every_guarded_route_refuses_a_caller_without_a_token,
    every_permission_route_refuses_a_role_without_it,
);
