//! The job monitoring and control API.

use scrm_jobs::NewJob;
use serde_json::json;

use crate::helpers::TestApp;

/// Enqueue a job of a kind no worker handles, so it stays where the test puts it.
async fn enqueue(app: &TestApp, tenant_id: i64, group: &str) -> i64 {
    let mut tx = app.state.db.begin().await.unwrap();
    let job = NewJob::new("test.parked", &json!({"n": 1}))
        .unwrap()
        .tenant(tenant_id)
        .group(group);
    let id = app.state.jobs.enqueue(&mut tx, job).await.unwrap().id;
    tx.commit().await.unwrap();
    id
}

async fn jobs_are_listed_inspected_and_controlled(app: TestApp) {
    let me = app.get("/api/v1/auth/me", &app.admin_token).await;
    let tenant = me.data()["tenantId"].as_i64().unwrap();
    let id = enqueue(&app, tenant, "sop:1").await;

    let list = app
        .get("/api/jobs?state=0&kind=test.parked", &app.admin_token)
        .await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.data()["total"], 1);
    assert_eq!(list.data()["list"][0]["id"], id);

    let detail = app.get(&format!("/api/jobs/{id}"), &app.admin_token).await;
    assert_eq!(detail.data()["payload"]["n"], 1);

    let paused = app
        .post(
            &format!("/api/jobs/{id}/pause"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}"), &app.admin_token)
            .await
            .data()["job"]["state"],
        5
    );
    app.post(
        &format!("/api/jobs/{id}/resume"),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/jobs/{id}"), &app.admin_token)
            .await
            .data()["job"]["state"],
        0
    );

    let cancelled = app
        .post(
            "/api/jobs/control",
            &app.admin_token,
            json!({"action": "cancel", "group": "sop:1"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}"), &app.admin_token)
            .await
            .data()["job"]["state"],
        4
    );
    let again = app
        .post(
            &format!("/api/jobs/{id}/pause"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((again.status, again.error()), (409, "JOB_STATE_CONFLICT"));

    let audit = app
        .get(
            "/api/v1/system/audit-logs?action=job.cancel",
            &app.admin_token,
        )
        .await;
    assert_eq!(audit.data()["total"], 1);
}

async fn stats_show_the_queue_per_kind(app: TestApp) {
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    enqueue(&app, tenant, "g").await;
    enqueue(&app, tenant, "g").await;
    let stats = app.get("/api/jobs/stats", &app.admin_token).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let kinds = stats.data()["kinds"].as_array().unwrap();
    let parked = kinds
        .iter()
        .find(|k| k["kind"] == "test.parked")
        .expect("kind listed");
    assert_eq!(parked["queued"], 2, "{parked}");
    // Seed 002's own monitoring structure, at the top.
    let d = stats.data();
    assert!(d["queue_length"].as_i64().unwrap() >= 2, "{d}");
    for key in ["processing", "completed_today", "failed_today"] {
        assert!(d[key].is_i64(), "{key}: {d}");
    }
    assert!(d["avg_process_time"].is_f64(), "{d}");
    let ws = d["worker_status"].as_array().unwrap();
    assert!(!ws.is_empty(), "{d}");
    assert_eq!(ws[0]["status"], "running", "{d}");
    assert!(ws[0]["memory"].as_str().unwrap().ends_with("MB"), "{d}");
    let workers = app.get("/api/jobs/workers", &app.admin_token).await;
    assert!(
        !workers.data().as_array().unwrap().is_empty(),
        "the app's own worker is registered"
    );
    assert!(
        workers.data()[0]["lastSeenAt"].is_i64(),
        "{:?}",
        workers.body
    );
}

async fn another_tenant_cannot_see_or_touch_our_jobs(app: TestApp) {
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let id = enqueue(&app, tenant, "ours").await;
    let (_, theirs) = app.other_tenant_admin("other company", "boss.j").await;
    assert_eq!(app.get("/api/jobs", &theirs).await.data()["total"], 0);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}"), &theirs).await.status,
        404
    );
    assert_eq!(
        app.post(&format!("/api/jobs/{id}/cancel"), &theirs, json!({}))
            .await
            .status,
        404
    );
    let r = app
        .post(
            "/api/jobs/control",
            &theirs,
            json!({"action": "cancel", "group": "ours"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get(&format!("/api/jobs/{id}"), &app.admin_token)
            .await
            .data()["job"]["state"],
        0,
        "untouched"
    );
}

async fn control_validates_its_input(app: TestApp) {
    let r = app
        .post(
            "/api/jobs/control",
            &app.admin_token,
            json!({"action": "explode", "ids": [1]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("action"))
    );
    let r = app
        .post(
            "/api/jobs/control",
            &app.admin_token,
            json!({"action": "cancel"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app.get("/api/jobs?state=9", &app.admin_token).await;
    assert_eq!(r.status, 400);
}

async fn domain_events_are_relayed_by_the_workers(app: TestApp) {
    let r = app
        .post(
            "/api/v1/customers",
            &app.admin_token,
            json!({"externalUserid": "wmRelay", "name": "王五"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let unpublished =
        || scrm_db::query("SELECT COUNT(*) FROM event_outbox WHERE published_at IS NULL");
    // The relay runs every second; the limit is for a loaded CI machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = app.state.db.fetch_i64(unpublished()).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} events never relayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let relay = app
        .get("/api/jobs?kind=events.relay", &app.admin_token)
        .await;
    assert_eq!(
        relay.data()["total"],
        0,
        "the relay is a system job, invisible to tenants"
    );
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    domain_events_are_relayed_by_the_workers,
    jobs_are_listed_inspected_and_controlled,
    stats_show_the_queue_per_kind,
    another_tenant_cannot_see_or_touch_our_jobs,
    control_validates_its_input,
);
