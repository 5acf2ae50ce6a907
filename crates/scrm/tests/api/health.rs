//! Health, readiness, metrics and docs.

use crate::helpers::TestApp;
use reqwest::Method;

async fn health_answers_up_with_a_request_id(app: TestApp) {
    let r = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["code"], 0);
    assert_eq!(r.data()["status"], "UP");
    assert!(
        r.headers.get("x-request-id").is_some(),
        "every response carries a request id"
    );
}

async fn readiness_reports_the_database(app: TestApp) {
    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["database"]["status"], "UP");
    assert_eq!(
        r.data()["database"]["backend"],
        app.state.db.backend().name()
    );
    assert_eq!(r.data()["redis"]["status"], "NOT_CONFIGURED");
}

async fn readiness_checks_redis_when_configured(app: TestApp) {
    let r = app.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["redis"]["status"], "UP");
}

pub async fn spawn_app_with_redis(backend: scrm_db::Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, &[("REDIS_URL", "redis://127.0.0.1:6379/0")]).await
}

async fn metrics_count_requests_per_route(app: TestApp) {
    app.call(Method::GET, "/health", None, None).await;
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/health\""), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

async fn docs_are_served_from_the_binary(app: TestApp) {
    let page = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/docs/swagger-ui-bundle.js") && !html.contains("https://"),
        "no CDN: {html}"
    );
    let js = app
        .client
        .get(format!("{}/docs/swagger-ui-bundle.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    let doc = app
        .call(Method::GET, "/docs/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["paths"]["/api/v1/auth/login"]["post"].is_object());
    let users = &doc.body["paths"]["/api/v1/system/users"]["post"];
    assert!(
        users["description"]
            .as_str()
            .unwrap()
            .contains("system:user:manage"),
        "{users}"
    );
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    health_answers_up_with_a_request_id,
    readiness_reports_the_database,
    metrics_count_requests_per_route,
    docs_are_served_from_the_binary,
);

scrm_db::db_tests!(crate::health::spawn_app_with_redis; readiness_checks_redis_when_configured);
