//! The private-address guard (SSRF) on URLs tenants give scrm: content sources, workflow
//! webhook steps and AI reply endpoints, with `SCRM_ALLOW_PRIVATE_URLS` off as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use scrm_db::Backend;
use serde_json::json;

use crate::helpers::{Resp, TestApp, n, spawn_app_with};

/// scrm with the guard on (the test helpers turn it off for their local servers).
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("SCRM_ALLOW_PRIVATE_URLS", "false")]).await
}

const SOURCES: &str = "/api/v1/automation/content-sources";

/// A URL refused when stored: 422 `URL_NOT_ALLOWED` on `field`.
fn refused_on(r: &Resp, field: &str, what: &str) {
    assert_eq!(
        (r.status, r.error()),
        (422, "URL_NOT_ALLOWED"),
        "{what}: {:?}",
        r.body
    );
    assert_eq!(r.body["fields"][0]["field"], field, "{what}: {:?}", r.body);
}

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
        refused_on(&r, "url", &url);
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
    refused_on(&r, "steps[0].url", "a webhook step");
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

/// This machine's own host name: it resolves to a loopback or private address, so a URL with it
/// passes the stored check (a name) and is refused when it is called.
fn own_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

async fn a_webhook_step_whose_name_resolves_privately_fails_with_the_reason(app: TestApp) {
    let sim = crate::automation_workflows::world(&app).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let host = own_host();
    let t = &app.admin_token;
    let wf = crate::automation_workflows::published(
        &app,
        t,
        json!({"name": "hook", "trigger": {"type": "manual"},
               "steps": [{"type": "webhook", "url": format!("http://{host}:{port}/hook")}]}),
    )
    .await;
    let customer = crate::automation_workflows::owned_customers(&app).await[0].0;
    let r = app
        .post(
            &format!("/api/v1/automation/workflows/{wf}/runs"),
            t,
            json!({"customerIds": [customer]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let run = r.data()["runIds"][0].as_i64().unwrap();
    // Failed (3) at once, not retried, with the guard's reason on the run and on the step.
    let r = crate::automation_workflows::run_status(&app, run, 3).await;
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("URL_NOT_ALLOWED") && error.contains(&format!("{host} resolves to")),
        "{r}"
    );
    assert!(
        r["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("URL_NOT_ALLOWED"),
        "{r}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was called");
    sim.shutdown().await;
}

async fn an_ai_reply_endpoint_is_refused_when_stored_and_when_called(app: TestApp) {
    let t = &app.admin_token;
    let sim = crate::gateway::gateway(&app).await;
    let (endpoint, seen) = crate::gateway::fake_chat().await;
    let config = |endpoint: &str| json!({"enabled": true, "endpoint": endpoint, "model": "gpt-4o-mini", "systemPrompt": "你是客服"});
    const AI: &str = "/api/v1/devices/accounts/wxid_a/ai-reply";
    // A literal private address is refused when stored, naming the field.
    for e in [
        endpoint.clone(),
        "http://169.254.169.254/v1".into(),
        "http://localhost:9/v1".into(),
    ] {
        let r = app.put(AI, t, config(&e)).await;
        refused_on(&r, "endpoint", &e);
    }
    assert_eq!(
        n(&app, "SELECT COUNT(*) FROM device_ai_config".into()).await,
        0
    );

    // A name is stored, and refused when the reply calls it: the decision is logged as failed
    // with the reason, at once, and nothing is sent.
    let by_name = endpoint.replace("127.0.0.1", &own_host());
    let r = app.put(AI, t, config(&by_name)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    sim.receive_message("wxid_a", "f1", None, "你好");
    let logged = crate::helpers::until("the failed reply", || async {
        let r = app
            .get("/api/v1/devices/ai-replies?accountId=wxid_a&peer=f1", t)
            .await;
        r.data().as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(logged["status"], "failed", "{logged}");
    let error = logged["errorMessage"].as_str().unwrap_or_default();
    assert!(
        error.contains("URL_NOT_ALLOWED") && error.contains("resolves to"),
        "{logged}"
    );
    assert!(seen.lock().is_empty(), "the endpoint was not called");
    assert!(sim.deliveries().iter().all(|d| d.to != "f1"));
    sim.stop();
}

scrm_db::db_tests!(crate::outbound::spawn;
    private_addresses_are_refused_when_stored_and_when_fetched,
    a_webhook_step_whose_name_resolves_privately_fails_with_the_reason,
    an_ai_reply_endpoint_is_refused_when_stored_and_when_called,
);
