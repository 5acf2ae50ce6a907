//! The private-address guard (SSRF) on URLs tenants give scrm: content sources and workflow
//! webhook steps, with `SCRM_ALLOW_PRIVATE_URLS` off as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use scrm_db::Backend;
use serde_json::json;

use crate::helpers::{TestApp, n, spawn_app_with};

/// scrm with the guard on (the test helpers turn it off for their local servers).
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("SCRM_ALLOW_PRIVATE_URLS", "false")]).await
}

const SOURCES: &str = "/api/v1/automation/content-sources";

async fn private_addresses_are_refused_when_stored_and_when_fetched(app: TestApp) {
    // A feed on 127.0.0.1 that counts every request it gets.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>x</title><link>https://e.com/x</link></item></channel></rss>"#
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let t = &app.admin_token;

    // A literal private host is refused when the source is stored.
    for url in [
        format!("http://127.0.0.1:{port}/feed.xml"),
        "http://10.1.2.3/feed.xml".to_string(),
        format!("http://[::1]:{port}/feed.xml"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/feed.xml"),
        format!("http://localhost:{port}/feed.xml"),
    ] {
        let r = app
            .post(SOURCES, t, json!({"name": "internal", "url": url}))
            .await;
        assert_eq!(
            (r.status, r.error()),
            (422, "URL_NOT_ALLOWED"),
            "{url}: {:?}",
            r.body
        );
        assert_eq!(r.body["fields"][0]["field"], "url", "{:?}", r.body);
    }
    assert_eq!(
        n(&app, "SELECT COUNT(*) FROM content_source".into()).await,
        0
    );

    // A name is checked when it is resolved, over every address: this machine's own name
    // resolves to a loopback or private address, so the fetch is refused before connecting.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let r = app
        .post(
            SOURCES,
            t,
            json!({"name": "by name", "url": format!("http://{host}:{port}/feed.xml")}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let r = app
        .post(&format!("{SOURCES}/{id}/fetch"), t, json!({}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (502, "CONTENT_SOURCE_UNREADABLE"),
        "{:?}",
        r.body
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("URL_NOT_ALLOWED"),
        "{:?}",
        r.body
    );
    let r = app.get(&format!("{SOURCES}/{id}"), t).await;
    let last = r.data()["lastError"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains("URL_NOT_ALLOWED") && last.contains("resolves to"),
        "{last}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was fetched");

    // A workflow webhook step to a private address is refused when the workflow is stored.
    let r = app
        .post(
            "/api/v1/automation/workflows",
            t,
            json!({"name": "hook", "trigger": {"type": "manual"},
                   "steps": [{"type": "webhook", "url": "http://169.254.169.254/hook"}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "URL_NOT_ALLOWED"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["fields"][0]["field"], "steps[0].url", "{:?}", r.body);
    // A public one is accepted.
    let r = app
        .post(
            "/api/v1/automation/workflows",
            t,
            json!({"name": "hook", "trigger": {"type": "manual"},
                   "steps": [{"type": "webhook", "url": "https://crm.example.com/hook"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

scrm_db::db_tests!(crate::outbound::spawn;
    private_addresses_are_refused_when_stored_and_when_fetched,
);
