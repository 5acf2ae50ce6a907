//! Job alerts end to end: rules managed over the API, an incident notified once by signed
//! webhook and by WeCom app message (the simulator's delivery log), then resolved.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use scrm_db::Backend;
use scrm_jobs::NewJob;
use scrm_wecom_sim::{DeliveryKind, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::helpers::{TestApp, quiet_schedules, spawn_app_with};

const SECRET: &str = "alert-webhook-secret-0123456789";

/// What the webhook receiver got: (timestamp header, signature header, raw body, body).
type Received = Arc<Mutex<Vec<(String, String, Bytes, Value)>>>;

pub struct AlertWorld {
    app: TestApp,
    sim: SimHandle,
    hooks: Received,
    member: String,
}

async fn receiver() -> (String, Received) {
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                sink.lock().unwrap().push((
                    h("x-scrm-timestamp"),
                    h("x-scrm-signature"),
                    body.clone(),
                    v,
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, got)
}

pub async fn alert_world(backend: Backend) -> AlertWorld {
    let (url, hooks) = receiver().await;
    let mut cfg = SimConfig::default();
    cfg.size.customers = 5;
    cfg.size.staff = 3;
    let sim = Simulator::start(cfg).await.unwrap();
    let member = sim
        .company()
        .staff
        .iter()
        .find(|s| s.status == 1)
        .map(|s| s.userid.clone())
        .unwrap();
    let app = spawn_app_with(
        backend,
        &[
            ("SCRM_ALERT_WEBHOOK_URL", url.as_str()),
            ("SCRM_ALERT_WEBHOOK_SECRET", SECRET),
            ("SCRM_ALERT_WECOM_TO", member.as_str()),
        ],
    )
    .await;
    crate::integration::connect(&app, &sim).await;
    // The built-in every-minute evaluation would otherwise notify between the test's own
    // evaluations (which then report nothing notified).
    quiet_schedules(&app, &["scrm_jobs.alerts"]).await;
    AlertWorld {
        app,
        sim,
        hooks,
        member,
    }
}

fn app_messages_to(sim: &SimHandle, member: &str) -> Vec<String> {
    sim.deliveries()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::AppMessage && d.recipient == member)
        .map(|d| d.content.to_string())
        .collect()
}

async fn an_incident_is_notified_once_and_resolved(w: AlertWorld) {
    let app = &w.app;
    let t = &app.admin_token;
    // A rule: a job of this kind due for more than 0 s and not started.
    let r = app
        .put(
            "/api/jobs/alert-rules/stuck-exports",
            t,
            json!({"kind": "test.alerted", "ruleType": "oldest_queued", "threshold": 0,
                   "windowMinutes": 5, "cooldownMinutes": 30}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rules = app.get("/api/jobs/alert-rules", t).await;
    assert_eq!(rules.data()[0]["name"], "stuck-exports");
    assert_eq!(rules.data()[0]["ruleType"], "oldest_queued");
    assert_eq!(rules.data()[0]["cooldownMinutes"], 30);

    // Nothing queued: evaluating raises nothing.
    let r = app.post("/api/jobs/alerts/evaluate", t, json!({})).await;
    assert_eq!(r.data()["firing"], 0, "{:?}", r.body);

    // A job of a kind no worker runs, due a minute ago: the queue is stuck.
    let tenant = app.get("/api/v1/auth/me", t).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let job = NewJob::new("test.alerted", &json!({}))
        .unwrap()
        .tenant(tenant)
        .run_at(scrm::state::now_ms() - 60_000);
    let id = app.state.jobs.enqueue(&mut tx, job).await.unwrap().id;
    tx.commit().await.unwrap();

    let r = app.post("/api/jobs/alerts/evaluate", t, json!({})).await;
    assert_eq!(
        (r.data()["notified"].as_i64(), r.data()["firing"].as_i64()),
        (Some(1), Some(1))
    );
    let firing = app.get("/api/jobs/alerts?state=firing", t).await;
    assert_eq!(
        firing.data()[0]["ruleName"],
        "stuck-exports",
        "{:?}",
        firing.body
    );

    // The webhook got one signed event …
    {
        let hooks = w.hooks.lock().unwrap();
        assert_eq!(hooks.len(), 1);
        let (ts, sig, raw, body) = &hooks[0];
        assert_eq!(body["state"], "firing");
        assert_eq!(body["alert"]["ruleName"], "stuck-exports");
        let sink = scrm_jobs::WebhookSink::new("http://unused", SECRET).unwrap();
        let expected = sink.sign(ts.parse().unwrap(), raw);
        assert_eq!(sig, &expected, "the signature covers timestamp.body");
    }
    // … and the member one WeCom app message.
    let msgs = app_messages_to(&w.sim, &w.member);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("stuck-exports"), "{msgs:?}");

    // Still stuck: one incident, one notification.
    let r = app.post("/api/jobs/alerts/evaluate", t, json!({})).await;
    assert_eq!(r.data()["notified"], 0);
    assert_eq!(w.hooks.lock().unwrap().len(), 1);
    assert_eq!(app_messages_to(&w.sim, &w.member).len(), 1);

    // Cleared: resolved, and both sinks told.
    let r = app
        .post(&format!("/api/jobs/{id}/cancel"), t, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.post("/api/jobs/alerts/evaluate", t, json!({})).await;
    assert_eq!(
        (r.data()["notified"].as_i64(), r.data()["firing"].as_i64()),
        (Some(1), Some(0))
    );
    let resolved = app.get("/api/jobs/alerts?state=resolved", t).await;
    assert_eq!(resolved.data()[0]["ruleName"], "stuck-exports");
    assert_eq!(w.hooks.lock().unwrap()[1].3["state"], "resolved");
    assert_eq!(app_messages_to(&w.sim, &w.member).len(), 2);

    // Delete the rule; a second delete is a 404.
    assert_eq!(
        app.delete("/api/jobs/alert-rules/stuck-exports", t)
            .await
            .status,
        200
    );
    let again = app.delete("/api/jobs/alert-rules/stuck-exports", t).await;
    assert_eq!((again.status, again.error()), (404, "NOT_FOUND"));
}

async fn alert_rules_are_validated_and_guarded(w: AlertWorld) {
    let app = &w.app;
    let t = &app.admin_token;
    let cases = [
        (
            "bad name!",
            json!({"ruleType": "dead_letters", "threshold": 1}),
            "name",
        ),
        (
            "r1",
            json!({"ruleType": "sometimes", "threshold": 1}),
            "ruleType",
        ),
        (
            "r1",
            json!({"ruleType": "failure_rate", "threshold": 20}),
            "threshold",
        ),
        (
            "r1",
            json!({"ruleType": "dead_letters", "threshold": -1}),
            "threshold",
        ),
        (
            "r1",
            json!({"ruleType": "dead_letters", "threshold": 1, "windowMinutes": 0}),
            "windowMinutes",
        ),
    ];
    for (name, body, field) in cases {
        let path = format!("/api/jobs/alert-rules/{}", name.replace(' ', "%20"));
        let r = app.put(&path, t, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["fields"][0]["field"], field, "{body}: {:?}", r.body);
    }
    assert_eq!(
        app.get("/api/jobs/alert-rules", t).await.data(),
        &json!([]),
        "bad input changed nothing"
    );
    // A viewer reads rules but cannot change them or trigger an evaluation.
    let (_, viewer) = app.user_with_role("watcher", "viewer").await;
    assert_eq!(app.get("/api/jobs/alert-rules", &viewer).await.status, 200);
    let r = app
        .put(
            "/api/jobs/alert-rules/r1",
            &viewer,
            json!({"ruleType": "dead_letters", "threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post("/api/jobs/alerts/evaluate", &viewer, json!({}))
        .await;
    assert_eq!(r.status, 403);
}

scrm_db::db_tests!(crate::jobs_alerts::alert_world;
    an_incident_is_notified_once_and_resolved,
    alert_rules_are_validated_and_guarded,
);
