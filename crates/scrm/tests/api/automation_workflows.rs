//! Automated workflows (seed 002) against the WeCom simulator: an add-friend callback starts a
//! run whose delay, condition, tag and message steps happen in order (the message reaches the
//! simulator's delivery log once), time windows wait for their opening, runs keep their version,
//! YAML round trips, templates, validation naming each field, tenants, pause/resume/cancel.
//!
//! Later steps are due later (a delay, a window): the tests bring a waiting step forward through
//! the job API (`POST /api/jobs/{id}/retry` runs a delayed job now) instead of sleeping.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike};
use scrm_db::query;
use scrm_wecom_sim::SimHandle;
use scrm_wecom_sim::deliveries::{Delivery, DeliveryKind};
use scrm_wecom_sim::scenarios::{AddContact, JoinGroup};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::{n, until};
use crate::integration::{connect, sim};
use crate::integration_sync::sync;

const BASE: &str = "/api/v1/automation/workflows";

/// A simulator mirrored into scrm.
pub(crate) async fn world(app: &TestApp) -> SimHandle {
    let sim = sim(12).await;
    connect(app, &sim).await;
    assert_eq!(
        sync(app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    sim
}

fn sends_to(sim: &SimHandle, ext: &str) -> Vec<Delivery> {
    sim.deliveries()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::MassSend && d.recipient == ext)
        .collect()
}

/// Create and publish a workflow; its id.
pub(crate) async fn published(app: &TestApp, token: &str, body: Value) -> i64 {
    let r = app.post(BASE, token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let p = app
        .post(&format!("{BASE}/{id}/publish"), token, json!({}))
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.data()["status"], "published");
    id
}

async fn run(app: &TestApp, id: i64) -> Value {
    let r = app
        .get(
            &format!("/api/v1/automation/workflow-runs/{id}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.data().clone()
}

async fn runs_of(app: &TestApp, workflow: i64) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/automation/workflow-runs?workflowId={workflow}&size=100"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.data()["list"].as_array().unwrap().clone()
}

/// Wait until step `index` of a run has been logged with `status` (2 done …).
async fn step_logged(app: &TestApp, run_id: i64, index: usize, status: i64) -> Value {
    until(
        &format!("run {run_id} step {index} status {status}"),
        || async {
            let r = run(app, run_id).await;
            (r["steps"][index]["status"] == status).then_some(r)
        },
    )
    .await
}

pub(crate) async fn run_status(app: &TestApp, run_id: i64, status: i64) -> Value {
    until(&format!("run {run_id} status {status}"), || async {
        let r = run(app, run_id).await;
        (r["status"] == status).then_some(r)
    })
    .await
}

/// Bring the waiting step `index` of a run forward: its job runs now (the controlled clock).
async fn advance(app: &TestApp, run_id: i64, index: i64) {
    let job = n(
        app,
        format!("SELECT id FROM job WHERE unique_key = 'wf:{run_id}:{index}'"),
    )
    .await;
    let r = app
        .post(
            &format!("/api/jobs/{job}/retry"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Customers of the synced company that have an owner: (id, external_userid).
pub(crate) async fn owned_customers(app: &TestApp) -> Vec<(i64, String)> {
    app.state
        .db
        .fetch_all(query(
            "SELECT id, external_userid FROM customer WHERE follow_user_id IS NOT NULL AND status = 1 ORDER BY id",
        ))
        .await
        .unwrap()
}

async fn a_new_customer_runs_delay_condition_tag_and_message_once(app: TestApp) {
    let sim = world(&app).await;
    let tag = n(
        &app,
        "SELECT MIN(id) FROM tag WHERE wecom_tag_id IS NOT NULL".into(),
    )
    .await;
    let stop_tag = n(
        &app,
        "SELECT MAX(id) FROM tag WHERE wecom_tag_id IS NOT NULL".into(),
    )
    .await;
    assert_ne!(tag, stop_tag);
    let tag_wecom: String = app
        .state
        .db
        .fetch_one::<(String,)>(query("SELECT wecom_tag_id FROM tag WHERE id = ?").bind(tag))
        .await
        .unwrap()
        .0;
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "新客欢迎",
            "trigger": {"type": "customer_added"},
            "steps": [
                {"key": "wait", "type": "delay", "duration": "1h"},
                {"key": "check", "type": "condition", "when": [{"lacksTags": [stop_tag]}], "otherwise": "stop"},
                {"key": "tag", "type": "add_tag", "tagIds": [tag]},
                {"key": "hello", "type": "send_message", "text": "您好{nickname}，欢迎！"}
            ]
        }),
    )
    .await;
    let staff = a_member(&sim);
    // Two customers add the member (WeCom's add_external_contact callbacks).
    let mut exts = Vec::new();
    for name in ["李雷", "韩梅梅"] {
        let ext = sim
            .customer_adds_staff(AddContact {
                userid: staff.clone(),
                name: Some(name.into()),
                ..Default::default()
            })
            .unwrap()
            .external_userid;
        exts.push(ext);
    }
    let runs = until("two runs", || async {
        let l = runs_of(&app, wf).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let mut ids = Vec::new();
    for ext in &exts {
        let cid = n(
            &app,
            format!("SELECT id FROM customer WHERE external_userid = '{ext}'"),
        )
        .await;
        let r = runs
            .iter()
            .find(|r| r["customerId"] == cid)
            .unwrap_or_else(|| panic!("a run for {cid}: {runs:?}"));
        assert_eq!(r["triggerType"], "customer_added");
        assert_eq!(r["version"], 1);
        ids.push((cid, r["id"].as_i64().unwrap()));
    }
    let ((c1, r1), (c2, r2)) = (ids[0], ids[1]);

    // The delay is logged and the condition waits an hour: nothing sent yet.
    for r in [r1, r2] {
        let d = step_logged(&app, r, 0, 2).await;
        assert_eq!(d["status"], 1, "running: {d}");
        assert_eq!(d["steps"][0]["result"]["waitMs"], 3_600_000, "{d}");
        assert_eq!(d["steps"][1]["status"], 0, "{d}");
        assert_eq!(d["steps"][1]["key"], "check");
        assert_eq!(d["nextStepAt"], d["steps"][1]["dueAt"]);
    }
    assert!(sends_to(&sim, &exts[0]).is_empty());

    // The second customer gets the stop tag meanwhile: its condition stops the run.
    let t = app
        .post(
            &format!("/api/v1/customers/{c2}/tags"),
            &app.admin_token,
            json!({"tagIds": [stop_tag]}),
        )
        .await;
    assert_eq!(t.status, 200, "{:?}", t.body);

    for r in [r1, r2] {
        advance(&app, r, 1).await;
    }
    let done = run_status(&app, r1, 2).await;
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{done}");
    assert_eq!(steps[1]["result"]["matched"], true);
    assert_eq!(steps[2]["result"]["added"], json!([tag]));
    assert_eq!(steps[3]["result"]["errcode"], 0, "{done}");
    let stopped = run_status(&app, r2, 2).await;
    assert_eq!(stopped["steps"].as_array().unwrap().len(), 2, "{stopped}");
    assert_eq!(
        stopped["steps"][1]["result"],
        json!({"matched": false, "then": "stop"})
    );

    // The message reached the customer once, with its variables; the stopped one got none.
    let sent = until("the message in the delivery log", || async {
        let s = sends_to(&sim, &exts[0]);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content["text"]["content"], "您好李雷，欢迎！");
    assert!(sends_to(&sim, &exts[1]).is_empty());

    // The tag is in scrm and, pushed by the customers module, in WeCom.
    let d = app
        .get(&format!("/api/v1/customers/{c1}"), &app.admin_token)
        .await;
    assert!(
        d.data()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == tag),
        "{:?}",
        d.body
    );
    until("the tag in WeCom", || async {
        let c = sim.config();
        let wc = scrm_wecom::WeComClient::in_memory(
            scrm_wecom::client::ClientConfig::for_simulator(sim.base_url()),
        )
        .unwrap()
        .app(c.creds.corp_id, c.creds.app_secret)
        .get_customer(&exts[0], "")
        .await
        .unwrap();
        wc.follow_user
            .iter()
            .any(|f| {
                f.userid == staff
                    && f.tags
                        .iter()
                        .any(|t| t.tag_id.as_deref() == Some(tag_wecom.as_str()))
            })
            .then_some(())
    })
    .await;

    // The same event delivered again (the relay is at-least-once) and a manual start for the
    // same customer start nothing: one run per customer per version.
    app.state
        .db
        .execute(query(
            "UPDATE event_outbox SET published_at = NULL WHERE event_type = 'customer.created'",
        ))
        .await
        .unwrap();
    until("events published again", || async {
        let left = n(&app, "SELECT COUNT(*) FROM event_outbox WHERE event_type = 'customer.created' AND published_at IS NULL".into()).await;
        (left == 0).then_some(())
    })
    .await;
    let m = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [c1]}),
        )
        .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    assert_eq!(m.data()["skippedCustomerIds"], json!([c1]));
    assert_eq!(runs_of(&app, wf).await.len(), 2);
    // Per-customer history.
    let h = app
        .get(
            &format!("/api/v1/automation/workflow-runs?customerId={c1}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(h.data()["total"], 1);
    assert_eq!(sends_to(&sim, &exts[0]).len(), 1, "still exactly once");
    let w = app.get(&format!("{BASE}/{wf}"), &app.admin_token).await;
    assert_eq!(w.data()["runs"]["done"], 2, "{:?}", w.body);
    sim.shutdown().await;
}

/// A window that is closed now (Asia/Shanghai) and when it opens next.
fn closed_window() -> (String, String, i64) {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let now = chrono::Utc::now().with_timezone(&tz);
    let h = now.hour();
    let (start, day) = if h < 20 { (h + 2, 0) } else { (1, 1) };
    let date = now.date_naive() + chrono::Days::new(day);
    let opens = tz
        .from_local_datetime(&date.and_hms_opt(start, 0, 0).unwrap())
        .unwrap()
        .timestamp_millis();
    (
        format!("{start:02}:00"),
        format!("{:02}:00", start + 1),
        opens,
    )
}

async fn a_time_window_waits_for_its_opening(app: TestApp) {
    let sim = world(&app).await;
    let (start, end, opens) = closed_window();
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "窗口",
            "trigger": {"type": "manual"},
            "steps": [
                {"type": "window", "start": start, "end": end},
                {"type": "send_message", "text": "窗口内的消息"}
            ]
        }),
    )
    .await;
    let (cid, ext) = owned_customers(&app).await[0].clone();
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [cid]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let run_id = r.data()["runIds"][0].as_i64().unwrap();
    let d = step_logged(&app, run_id, 0, 2).await;
    assert_eq!(d["steps"][0]["result"]["inWindow"], false, "{d}");
    let at = scrm::state::iso(opens);
    assert_eq!(d["steps"][0]["result"]["actsAt"], at, "{d}");
    assert_eq!(d["steps"][1]["dueAt"], at);
    assert_eq!(d["nextStepAt"], at);
    assert_eq!(d["status"], 1);
    let job_run_at = n(
        &app,
        format!("SELECT run_at FROM job WHERE unique_key = 'wf:{run_id}:1'"),
    )
    .await;
    assert_eq!(
        job_run_at, opens,
        "the send waits for the window as its job's run_at"
    );
    assert!(sends_to(&sim, &ext).is_empty());

    // The window opens.
    advance(&app, run_id, 1).await;
    run_status(&app, run_id, 2).await;
    let sent = until("the message", || async {
        let s = sends_to(&sim, &ext);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content["text"]["content"], "窗口内的消息");
    sim.shutdown().await;
}

async fn a_version_edit_leaves_running_runs_on_their_version(app: TestApp) {
    let sim = world(&app).await;
    let def = |text: &str| {
        json!({
            "name": "培育",
            "trigger": {"type": "manual"},
            "steps": [
                {"key": "wait", "type": "delay", "duration": "2h"},
                {"key": "say", "type": "send_message", "text": text}
            ]
        })
    };
    // A draft is edited in place.
    let r = app.post(BASE, &app.admin_token, def("草稿")).await;
    assert_eq!(r.status, 201);
    let wf = r.data()["id"].as_i64().unwrap();
    let u = app
        .put(&format!("{BASE}/{wf}"), &app.admin_token, def("第一版"))
        .await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert_eq!(u.data()["currentVersion"], 1);
    assert_eq!(u.data()["status"], "draft");
    // A draft starts nothing.
    let customers = owned_customers(&app).await;
    let (a, ext_a) = customers[0].clone();
    let (b, ext_b) = customers[1].clone();
    let m = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [a]}),
        )
        .await;
    assert_eq!((m.status, m.error()), (409, "WORKFLOW_NOT_PUBLISHED"));
    app.post(&format!("{BASE}/{wf}/publish"), &app.admin_token, json!({}))
        .await;
    let m = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [a]}),
        )
        .await;
    let run_a = m.data()["runIds"][0].as_i64().unwrap();
    assert_eq!(m.data()["version"], 1);

    // Editing the published workflow makes version 2; the published one stays 1 until publish.
    let u = app
        .put(&format!("{BASE}/{wf}"), &app.admin_token, def("第二版"))
        .await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert_eq!(u.data()["currentVersion"], 2);
    assert_eq!(u.data()["publishedVersion"], 1);
    assert_eq!(u.data()["definition"]["steps"][1]["text"], "第二版");
    let p = app
        .post(&format!("{BASE}/{wf}/publish"), &app.admin_token, json!({}))
        .await;
    assert_eq!(p.data()["publishedVersion"], 2);
    let m = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [b]}),
        )
        .await;
    let run_b = m.data()["runIds"][0].as_i64().unwrap();
    assert_eq!(m.data()["version"], 2);

    let v = app
        .get(&format!("{BASE}/{wf}/versions"), &app.admin_token)
        .await;
    let list = v.data()["list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["published"], true);
    assert_eq!(list[1]["published"], false);
    let v1 = app
        .get(&format!("{BASE}/{wf}/versions/1"), &app.admin_token)
        .await;
    assert_eq!(v1.data()["definition"]["steps"][1]["text"], "第一版");

    // Each run sends its own version's text.
    for r in [run_a, run_b] {
        step_logged(&app, r, 0, 2).await;
        advance(&app, r, 1).await;
        run_status(&app, r, 2).await;
    }
    assert_eq!(run(&app, run_a).await["version"], 1);
    for (ext, text) in [(&ext_a, "第一版"), (&ext_b, "第二版")] {
        let s = until("the message", || async {
            let s = sends_to(&sim, ext);
            (!s.is_empty()).then_some(s)
        })
        .await;
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].content["text"]["content"], text);
    }
    sim.shutdown().await;
}

async fn yaml_round_trip_and_templates(app: TestApp) {
    let staff = n(&app, "SELECT COUNT(*) FROM staff".into()).await;
    assert_eq!(staff, 0);
    // Templates: seed 002's three examples.
    let t = app
        .get("/api/v1/automation/workflow-templates", &app.admin_token)
        .await;
    let keys: Vec<&str> = t.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["new_customer", "nurturing", "group_operations"]);
    let mut created = Vec::new();
    for key in &keys {
        let r = app
            .post(
                &format!("/api/v1/automation/workflow-templates/{key}"),
                &app.admin_token,
                json!({"webhookUrl": "https://crm.example.com/hook"}),
            )
            .await;
        assert_eq!(r.status, 201, "{key}: {:?}", r.body);
        assert_eq!(r.data()["status"], "draft");
        created.push(r.data().clone());
    }
    // The new-customer template tags by name: the tag was made (and is pushed to WeCom when
    // the tenant has it).
    let tag = n(&app, "SELECT id FROM tag WHERE name = '新客户'".into()).await;
    let steps = created[0]["definition"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["type"] == "add_tag" && s["tagIds"] == json!([tag]))
    );
    assert!(steps.iter().any(|s| s["type"] == "webhook"));
    assert!(
        !steps.iter().any(|s| s["type"] == "assign_owner"),
        "no staff chosen"
    );
    assert_eq!(created[2]["definition"]["trigger"]["type"], "schedule");

    // A scheduled workflow has an engine schedule while published.
    let g = created[2]["id"].as_i64().unwrap();
    app.post(&format!("{BASE}/{g}/publish"), &app.admin_token, json!({}))
        .await;
    let sched = format!("SELECT COUNT(*) FROM job_schedule WHERE name = 'workflow:{g}'");
    assert_eq!(n(&app, sched.clone()).await, 1);
    let d = app
        .post(&format!("{BASE}/{g}/disable"), &app.admin_token, json!({}))
        .await;
    assert_eq!(d.data()["status"], "disabled");
    assert_eq!(n(&app, sched).await, 0);

    // Export → import: the same definition.
    for w in &created {
        let id = w["id"].as_i64().unwrap();
        let e = app
            .get(&format!("{BASE}/{id}/export"), &app.admin_token)
            .await;
        assert_eq!(e.status, 200, "{:?}", e.body);
        let yaml = e.data()["yaml"].as_str().unwrap().to_string();
        assert!(
            yaml.contains("trigger:") && yaml.contains("steps:"),
            "{yaml}"
        );
        let i = app
            .post(
                &format!("{BASE}/import"),
                &app.admin_token,
                json!({"yaml": yaml}),
            )
            .await;
        assert_eq!(i.status, 201, "{:?}", i.body);
        assert_ne!(i.data()["id"], w["id"]);
        assert_eq!(i.data()["definition"], w["definition"]);
    }
    // Imported into an existing workflow: its next version (the current one is a draft: in place).
    let first = created[0]["id"].as_i64().unwrap();
    let yaml = "name: 改名\ntrigger:\n  type: manual\nsteps:\n  - type: delay\n    duration: 5m\n  - type: set_stage\n    stage: active\n";
    let i = app
        .post(
            &format!("{BASE}/import"),
            &app.admin_token,
            json!({"yaml": yaml, "workflowId": first}),
        )
        .await;
    assert_eq!(i.status, 201, "{:?}", i.body);
    assert_eq!(i.data()["id"], first);
    assert_eq!(i.data()["name"], "改名");
    assert_eq!(i.data()["definition"]["steps"][0]["duration"], "5m");
}

async fn invalid_definitions_each_name_their_field(app: TestApp) {
    let ok_steps =
        json!([{"type": "delay", "duration": "1m"}, {"type": "set_stage", "stage": "active"}]);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"trigger": {"type": "manual"}, "steps": ok_steps}),
            "name",
        ),
        (json!({"name": "x", "steps": ok_steps}), "trigger"),
        (
            json!({"name": "x", "trigger": {"type": "sometimes"}, "steps": ok_steps}),
            "trigger.type",
        ),
        (
            json!({"name": "x", "trigger": {"type": "schedule"}, "steps": ok_steps}),
            "trigger.cron",
        ),
        (
            json!({"name": "x", "trigger": {"type": "schedule", "cron": "every day"}, "steps": ok_steps}),
            "trigger.cron",
        ),
        (
            json!({"name": "x", "trigger": {"type": "tag_added", "tagIds": [999999]}, "steps": ok_steps}),
            "trigger.tagIds",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": []}),
            "steps",
        ),
        (
            json!({"name": "x", "trigger": {"type": "customer_deleted", "deletedBy": "robot"}, "steps": ok_steps}),
            "trigger.deletedBy",
        ),
        (
            json!({"name": "x", "trigger": {"type": "tag_added", "deletedBy": "staff"}, "steps": ok_steps}),
            "trigger.deletedBy",
        ),
        (
            json!({"name": "x", "trigger": {"type": "stage_changed", "stages": ["nowhere"]}, "steps": ok_steps}),
            "trigger.stages",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual", "stages": ["won"]}, "steps": ok_steps}),
            "trigger.stages",
        ),
        (
            json!({"name": "x", "trigger": {"type": "condition"}, "steps": ok_steps}),
            "trigger.addedDaysAgo",
        ),
        (
            json!({"name": "x", "trigger": {"type": "condition", "addedDaysAgo": 0}, "steps": ok_steps}),
            "trigger.addedDaysAgo",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual", "addedDaysAgo": 3}, "steps": ok_steps}),
            "trigger.addedDaysAgo",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "teleport"}]}),
            "steps[0].type",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay"}]}),
            "steps[0].duration",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "3 weeks"}]}),
            "steps[0].duration",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "5m", "maxDuration": "1m"}]}),
            "steps[0].maxDuration",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "1m", "text": "hi"}, {"type": "set_stage", "stage": "active"}]}),
            "steps[0].text",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "window", "start": "25:00", "end": "12:00"}]}),
            "steps[0].start",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "window", "start": "12:00", "end": "10:00"}]}),
            "steps[0].end",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "window", "days": [8], "start": "10:00", "end": "12:00"}]}),
            "steps[0].days",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "condition", "when": [{"field": "age", "op": "eq", "value": 1}]}]}),
            "steps[0].when[0].field",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "condition", "when": [{"field": "gender", "op": "like", "value": 1}]}]}),
            "steps[0].when[0].op",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "condition", "when": [{"stageIn": ["vip"]}]}]}),
            "steps[0].when[0].stageIn",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "condition", "when": [{"noInteractionDays": 3}], "otherwise": "goto:nowhere"}]}),
            "steps[0].otherwise",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "send_message"}]}),
            "steps[0].text",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "add_tag", "tagIds": [424242]}]}),
            "steps[0].tagIds",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "assign_owner", "staffId": 424242}]}),
            "steps[0].staffId",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "set_stage", "stage": "gold"}]}),
            "steps[0].stage",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "webhook", "url": "ftp://x"}]}),
            "steps[0].url",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"key": "a", "type": "delay", "duration": "1m"}, {"key": "a", "type": "set_stage", "stage": "active"}]}),
            "steps[1].key",
        ),
        (
            json!({"name": "x", "trigger": {"type": "schedule", "cron": "0 8 * * *", "subject": "group"}, "steps": [{"type": "add_tag", "tagIds": [1]}]}),
            "steps[0].type",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "1m", "colour": "red"}]}),
            "steps[0].colour",
        ),
        (
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "set_stage", "stage": "active"}, {"type": "delay", "duration": "1m"}]}),
            "steps[1].type",
        ),
    ];
    for (body, field) in cases {
        let r = app.post(BASE, &app.admin_token, body.clone()).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "VALIDATION_FAILED"),
            "{body}: {:?}",
            r.body
        );
        let fields: Vec<&str> = r.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected {field}, got {fields:?}"
        );
    }
    // YAML: not YAML, and a bad field inside valid YAML.
    for (yaml, field) in [
        ("name: [unclosed", "yaml"),
        ("- just a list", "yaml"),
        (
            "name: x\ntrigger:\n  type: manual\nsteps:\n  - type: delay\n    duration: soon\n  - type: set_stage\n    stage: active\n",
            "steps[0].duration",
        ),
    ] {
        let r = app
            .post(
                &format!("{BASE}/import"),
                &app.admin_token,
                json!({"yaml": yaml}),
            )
            .await;
        assert_eq!(r.status, 400, "{yaml}: {:?}", r.body);
        assert_eq!(r.body["fields"][0]["field"], field, "{yaml}: {:?}", r.body);
    }
    let l = app.get(BASE, &app.admin_token).await;
    assert_eq!(l.data()["total"], 0, "nothing was stored");
}

async fn workflows_and_runs_stay_in_their_tenant(app: TestApp) {
    let sim = world(&app).await;
    let wf = published(
        &app,
        &app.admin_token,
        json!({"name": "A", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "1d"}, {"type": "set_stage", "stage": "active"}]}),
    )
    .await;
    let (cid, _) = owned_customers(&app).await[0].clone();
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [cid]}),
        )
        .await;
    let run_id = r.data()["runIds"][0].as_i64().unwrap();
    let (_, other) = app.other_tenant_admin("other-co", "other-admin").await;
    assert_eq!(app.get(&format!("{BASE}/{wf}"), &other).await.status, 404);
    assert_eq!(app.get(BASE, &other).await.data()["total"], 0);
    assert_eq!(
        app.put(&format!("{BASE}/{wf}"), &other, json!({"name": "B", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "1d"}, {"type": "set_stage", "stage": "active"}]}))
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(&format!("{BASE}/{wf}/publish"), &other, json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("{BASE}/{wf}/export"), &other).await.status,
        404
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/automation/workflow-runs/{run_id}"),
            &other
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/automation/workflow-runs", &other)
            .await
            .data()["total"],
        0
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/automation/workflow-runs/{run_id}/cancel"),
            &other,
            json!({})
        )
        .await
        .status,
        404
    );
    // The other tenant's workflow cannot start this tenant's customer.
    let theirs = published(
        &app,
        &other,
        json!({"name": "B", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "1d"}, {"type": "set_stage", "stage": "active"}]}),
    )
    .await;
    let r = app
        .post(
            &format!("{BASE}/{theirs}/runs"),
            &other,
            json!({"customerIds": [cid]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["fields"][0]["field"], "customerIds");
    assert_eq!(
        app.delete(&format!("{BASE}/{wf}"), &other).await.status,
        404
    );
    let r = run(&app, run_id).await;
    assert!(r["status"] == 0 || r["status"] == 1, "untouched: {r}");
    sim.shutdown().await;
}

async fn runs_pause_resume_and_cancel(app: TestApp) {
    let sim = world(&app).await;
    let wf = published(
        &app,
        &app.admin_token,
        json!({"name": "暂停", "trigger": {"type": "manual"}, "steps": [
            {"type": "delay", "duration": "1h"},
            {"type": "send_message", "text": "不该发出"}
        ]}),
    )
    .await;
    let customers = owned_customers(&app).await;
    let ids: Vec<i64> = customers[..2].iter().map(|c| c.0).collect();
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": ids}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let runs: Vec<i64> = r.data()["runIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let (r1, r2) = (runs[0], runs[1]);
    for r in [r1, r2] {
        step_logged(&app, r, 0, 2).await;
    }
    let path = |id: i64, a: &str| format!("/api/v1/automation/workflow-runs/{id}/{a}");
    let p = app
        .post(&path(r1, "pause"), &app.admin_token, json!({}))
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(
        (p.data()["status"].clone(), p.data()["statusText"].clone()),
        (json!(5), json!("暂停中"))
    );
    let job_state = format!("SELECT state FROM job WHERE unique_key = 'wf:{r1}:1'");
    assert_eq!(
        n(&app, job_state.clone()).await,
        5,
        "the waiting step's job is paused"
    );
    let again = app
        .post(&path(r1, "pause"), &app.admin_token, json!({}))
        .await;
    assert_eq!((again.status, again.error()), (409, "WORKFLOW_RUN_STATE"));
    let l = app
        .get(
            &format!("/api/v1/automation/workflow-runs?workflowId={wf}&status=5"),
            &app.admin_token,
        )
        .await;
    assert_eq!(l.data()["total"], 1);
    let p = app
        .post(&path(r1, "resume"), &app.admin_token, json!({}))
        .await;
    assert_eq!(p.data()["status"], 1);
    assert_eq!(n(&app, job_state.clone()).await, 0);

    // Cancel: the run and its waiting step; its job will not run.
    let c = app
        .post(&path(r1, "cancel"), &app.admin_token, json!({}))
        .await;
    assert_eq!(c.data()["status"], 4);
    assert_eq!(c.data()["steps"][1]["status"], 4);
    assert_eq!(n(&app, job_state).await, 4);
    let c = app
        .post(&path(r1, "resume"), &app.admin_token, json!({}))
        .await;
    assert_eq!((c.status, c.error()), (409, "WORKFLOW_RUN_STATE"));

    // A paused run's step does not run even when due; after resume it does.
    app.post(&path(r2, "pause"), &app.admin_token, json!({}))
        .await;
    app.state
        .db
        .execute(query(format!(
            "UPDATE job SET run_at = 0 WHERE unique_key = 'wf:{r2}:1'"
        )))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run(&app, r2).await["steps"][1]["status"], 0);
    app.post(&path(r2, "resume"), &app.admin_token, json!({}))
        .await;
    run_status(&app, r2, 2).await;
    let ext2 = &customers[1].1;
    let s = until("the resumed run's message", || async {
        let s = sends_to(&sim, ext2);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(s.len(), 1);
    assert!(
        sends_to(&sim, &customers[0].1).is_empty(),
        "the cancelled run sent nothing"
    );
    // Deleting the workflow cancels what is still active; it is gone from the list.
    let d = app.delete(&format!("{BASE}/{wf}"), &app.admin_token).await;
    assert_eq!(d.status, 200);
    assert_eq!(
        app.get(&format!("{BASE}/{wf}"), &app.admin_token)
            .await
            .status,
        404
    );
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    cron_tasks_are_listed_and_switchable,
    a_condition_trigger_starts_each_customer_on_their_day_once,
    a_deletion_starts_the_workflow_of_who_deleted_whom,
    a_stage_change_starts_its_workflow_each_time,
    an_assign_step_transfers_the_customer_in_wecom,
    a_new_customer_runs_delay_condition_tag_and_message_once,
    a_time_window_waits_for_its_opening,
    a_version_edit_leaves_running_runs_on_their_version,
    yaml_round_trip_and_templates,
    invalid_definitions_each_name_their_field,
    workflows_and_runs_stay_in_their_tenant,
    runs_pause_resume_and_cancel,
);

async fn spawn_fast_retries(backend: scrm_db::Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, &[("SCRM_WECOM_RETRY_SECS", "1")]).await
}

scrm_db::db_tests!(crate::automation_workflows::spawn_fast_retries; a_send_step_out_of_attempts_keeps_trying_and_sends_once);

/// Owned customers with their owner: (customer id, external_userid, owner userid, name).
async fn owned_with_owner(app: &TestApp) -> Vec<(i64, String, String, String)> {
    app.state
        .db
        .fetch_all(query(
            "SELECT c.id, c.external_userid, s.userid, COALESCE(c.name, '') FROM customer c \
             JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
             WHERE c.status = 1 ORDER BY c.id",
        ))
        .await
        .unwrap()
}

async fn tag_ids(app: &TestApp) -> Vec<i64> {
    app.state
        .db
        .fetch_all::<(i64,)>(query(
            "SELECT id FROM tag WHERE wecom_tag_id IS NOT NULL ORDER BY id",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect()
}

async fn has_tag(app: &TestApp, customer: i64, tag: i64) -> bool {
    n(
        app,
        format!(
            "SELECT COUNT(*) FROM customer_tag WHERE customer_id = {customer} AND tag_id = {tag}"
        ),
    )
    .await
        > 0
}

/// WeCom's deletion callbacks start the workflows of their kind: the customer deleting the
/// member starts `deletedBy: customer` (tag + reminder to the member, with the customer's
/// name), the member deleting the customer starts `deletedBy: staff` (stage lost); neither
/// starts the other, and a redelivered callback starts nothing new.
async fn a_deletion_starts_the_workflow_of_who_deleted_whom(app: TestApp) {
    let sim = world(&app).await;
    let tags = tag_ids(&app).await;
    let lost_tag = tags[0];
    let by_customer = published(
        &app,
        &app.admin_token,
        json!({
            "name": "客户删除员工",
            "trigger": {"type": "customer_deleted", "deletedBy": "customer"},
            "steps": [
                {"key": "mark", "type": "add_tag", "tagIds": [lost_tag]},
                {"key": "tell", "type": "remind_staff", "text": "客户{nickname}删除了你"}
            ]
        }),
    )
    .await;
    let by_staff = published(
        &app,
        &app.admin_token,
        json!({
            "name": "员工删除客户",
            "trigger": {"type": "customer_deleted", "deletedBy": "staff"},
            "steps": [{"key": "lost", "type": "set_stage", "stage": "lost"}]
        }),
    )
    .await;
    let owned = owned_with_owner(&app).await;
    let (c1, ext1, owner1, name1) = owned[0].clone();
    let (c2, ext2, owner2, _) = owned
        .iter()
        .find(|c| c.2 != owner1)
        .or(owned.get(1))
        .cloned()
        .unwrap();
    assert!(!has_tag(&app, c1, lost_tag).await);
    sim.customer_deletes_staff(scrm_wecom_sim::scenarios::Pair {
        userid: owner1.clone(),
        external_userid: ext1.clone(),
    })
    .unwrap();
    sim.staff_deletes_customer(scrm_wecom_sim::scenarios::Pair {
        userid: owner2.clone(),
        external_userid: ext2.clone(),
    })
    .unwrap();

    let r1 = until("the customer-deleted run", || async {
        let l = runs_of(&app, by_customer).await;
        l.first().cloned()
    })
    .await;
    assert_eq!(r1["customerId"], c1, "{r1}");
    assert_eq!(r1["triggerType"], "customer_deleted");
    let done = run_status(&app, r1["id"].as_i64().unwrap(), 2).await;
    assert_eq!(
        done["steps"][0]["result"]["added"],
        json!([lost_tag]),
        "{done}"
    );
    assert!(has_tag(&app, c1, lost_tag).await);
    // The member was told, with the customer's name.
    let told: Vec<Delivery> = until("the reminder", || async {
        let d: Vec<Delivery> = sim
            .deliveries()
            .into_iter()
            .filter(|d| d.kind == DeliveryKind::AppMessage && d.recipient == owner1)
            .collect();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0]
            .content
            .to_string()
            .contains(&format!("客户{name1}删除了你")),
        "{:?}",
        told[0].content
    );

    let r2 = until("the staff-deleted run", || async {
        let l = runs_of(&app, by_staff).await;
        l.first().cloned()
    })
    .await;
    assert_eq!(r2["customerId"], c2, "{r2}");
    run_status(&app, r2["id"].as_i64().unwrap(), 2).await;
    let c = app
        .get(&format!("/api/v1/customers/{c2}"), &app.admin_token)
        .await;
    assert_eq!(c.data()["stage"], "lost", "{:?}", c.body);
    // Neither started the other's workflow.
    assert_eq!(runs_of(&app, by_customer).await.len(), 1);
    assert_eq!(runs_of(&app, by_staff).await.len(), 1);

    // The relay offers the same events again: nothing new starts.
    let events: Vec<(i64,)> = app
        .state
        .db
        .fetch_all(query(
            "SELECT id FROM event_outbox WHERE event_type = 'customer.deleted' AND payload LIKE '%deletedBy%'",
        ))
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "one event per deletion: {events:?}");
    app.state
        .db
        .execute(query(
            "UPDATE event_outbox SET published_at = NULL WHERE event_type = 'customer.deleted'",
        ))
        .await
        .unwrap();
    until("the events relayed again", || async {
        (n(
            &app,
            "SELECT COUNT(*) FROM event_outbox WHERE event_type = 'customer.deleted' AND published_at IS NULL".into(),
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(runs_of(&app, by_customer).await.len(), 1);
    assert_eq!(runs_of(&app, by_staff).await.len(), 1);
    sim.shutdown().await;
}

/// A stage change into one of the trigger's stages starts a run — each time it happens — and a
/// change into another stage starts none.
async fn a_stage_change_starts_its_workflow_each_time(app: TestApp) {
    let sim = world(&app).await;
    let tag = tag_ids(&app).await[0];
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "进入活跃",
            "trigger": {"type": "stage_changed", "stages": ["active"]},
            "steps": [{"key": "mark", "type": "add_tag", "tagIds": [tag]}]
        }),
    )
    .await;
    let c1 = owned_customers(&app).await[0].0;
    let stage = |to: &'static str| {
        let app = &app;
        async move {
            let r = app
                .put(
                    &format!("/api/v1/customers/{c1}/stage"),
                    &app.admin_token,
                    json!({"stage": to}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    stage("nurturing").await;
    stage("active").await;
    let first = until("a run", || async {
        let l = runs_of(&app, wf).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(first.len(), 1, "only the change into active: {first:?}");
    assert_eq!(first[0]["triggerType"], "stage_changed");
    assert_eq!(first[0]["customerId"], c1);
    run_status(&app, first[0]["id"].as_i64().unwrap(), 2).await;
    assert!(has_tag(&app, c1, tag).await);
    // Out and back in: a second run.
    stage("won").await;
    stage("active").await;
    let both = until("a second run", || async {
        let l = runs_of(&app, wf).await;
        (l.len() >= 2).then_some(l)
    })
    .await;
    // Let the relay pass the "won" change too: still two.
    all_relayed(&app).await;
    assert_eq!(runs_of(&app, wf).await.len(), 2, "{both:?}");
    sim.shutdown().await;
}

/// An assign_owner step hands the customer over in WeCom (transfer_customer from its owner),
/// then changes the owner in scrm with an on_job transfer record.
async fn an_assign_step_transfers_the_customer_in_wecom(app: TestApp) {
    let sim = world(&app).await;
    let owned = owned_with_owner(&app).await;
    let (c1, ext1, owner1, _) = owned[0].clone();
    // Another member who can have customers.
    let to_userid = sim
        .company()
        .staff
        .iter()
        .find(|s| s.contact_enabled && s.visible() && s.status == 1 && s.userid != owner1)
        .unwrap()
        .userid
        .clone();
    let to_id = n(
        &app,
        format!("SELECT id FROM staff WHERE userid = '{to_userid}'"),
    )
    .await;
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "转交",
            "trigger": {"type": "manual"},
            "steps": [{"key": "give", "type": "assign_owner", "staffId": to_id}]
        }),
    )
    .await;
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [c1]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let run_id = until("a run", || async {
        runs_of(&app, wf)
            .await
            .first()
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    let done = run_status(&app, run_id, 2).await;
    let result = &done["steps"][0]["result"];
    assert_eq!(result["handover"], owner1, "{done}");
    assert_eq!(result["takeover"], to_userid, "{done}");
    assert_eq!(result["changed"], true, "{done}");
    assert_eq!(
        sim.call_counts()
            .get("/cgi-bin/externalcontact/transfer_customer")
            .copied(),
        Some(1),
        "WeCom was asked to transfer {ext1}"
    );
    let c = app
        .get(&format!("/api/v1/customers/{c1}"), &app.admin_token)
        .await;
    assert_eq!(c.data()["followUserId"], to_id, "{:?}", c.body);
    let tr = app
        .get(
            &format!("/api/v1/customers/transfers?customerId={c1}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(tr.data()["list"][0]["kind"], "on_job", "{:?}", tr.body);
    assert_eq!(tr.data()["list"][0]["toStaffId"], to_id);
    sim.shutdown().await;
}

/// A send step whose attempts all meet transient WeCom errors is not recorded FAILED (the
/// message would be lost): it keeps trying, and goes out exactly once when WeCom recovers.
async fn a_send_step_out_of_attempts_keeps_trying_and_sends_once(app: TestApp) {
    let sim = world(&app).await;
    let (c1, ext1) = owned_customers(&app).await[0].clone();
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "重试",
            "trigger": {"type": "manual"},
            "steps": [{"key": "hello", "type": "send_message", "text": "你好"}]
        }),
    )
    .await;
    sim.state().update_config(|c| c.faults.http_500 = 1.0);
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [c1]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let run_id = until("a run", || async {
        runs_of(&app, wf)
            .await
            .first()
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    // Five attempts failed (recorded), the sixth and last used …
    let job = format!("j.unique_key = 'wf:{run_id}:0'");
    until("five failed attempts", || async {
        (n(
            &app,
            format!("SELECT COUNT(*) FROM job_attempt a JOIN job j ON j.id = a.job_id WHERE {job}"),
        )
        .await
            >= 5)
            .then_some(())
    })
    .await;
    // … and the step keeps trying after it: the job is due again and again (each try moves its
    // run_at without using an attempt).
    let run_at = || n(&app, format!("SELECT j.run_at FROM job j WHERE {job}"));
    let mut seen = vec![run_at().await];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "more tries after the last attempt: {seen:?}"
        );
        let at = run_at().await;
        if !seen.contains(&at) {
            seen.push(at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = run(&app, run_id).await;
    assert_ne!(r["status"], 3, "not failed while WeCom is down: {r}");
    assert_ne!(r["steps"][0]["status"], 3, "{r}");
    assert!(sends_to(&sim, &ext1).is_empty());

    sim.state().update_config(|c| c.faults.http_500 = 0.0);
    let done = run_status(&app, run_id, 2).await;
    assert_eq!(done["steps"][0]["status"], 2, "{done}");
    let sent = until("the message", || async {
        let s = sends_to(&sim, &ext1);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sim.duplicate_deliveries().is_empty());
    sim.shutdown().await;
}

/// Seed 002's cron tasks through the API: the built-in schedules and the tenant's scheduled
/// workflows, switched off and on (a workflow's own schedule follows its workflow); viewers
/// read, only managers switch; another tenant sees the built-in ones only.
async fn cron_tasks_are_listed_and_switchable(app: TestApp) {
    const TASKS: &str = "/api/v1/automation/tasks/schedules";
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "每日群发",
            "trigger": {"type": "schedule", "cron": "0 9 * * *", "subject": "group"},
            "steps": [{"type": "send_message", "text": "早上好"}]
        }),
    )
    .await;
    let l = app.get(TASKS, &app.admin_token).await;
    assert_eq!(l.status, 200, "{:?}", l.body);
    let list = l.data()["list"].as_array().unwrap().clone();
    let find = |list: &[Value], name: &str| list.iter().find(|s| s["name"] == name).cloned();
    let reset = find(&list, "automation.channel_codes.daily_reset").expect("the built-in reset");
    assert_eq!(reset["scope"], "system");
    assert_eq!(reset["enabled"], true);
    assert_eq!(reset["cron"], "0 0 * * *");
    assert!(reset["nextFireAt"].is_string(), "{reset}");
    assert!(
        find(&list, "automation.content.collect").is_some(),
        "content collection is a cron task"
    );
    let own = find(&list, &format!("workflow:{wf}")).expect("the workflow's schedule");
    assert_eq!(own["scope"], "tenant");
    assert_eq!(own["workflowId"], wf);
    assert_eq!(own["kind"], "automation.workflow.tick");

    // Off: it no longer fires and is listed as off; on again from the next tick.
    let off = app
        .post(
            &format!("{TASKS}/automation.channel_codes.daily_reset/disable"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.data()["enabled"], false);
    assert_eq!(
        n(
            &app,
            "SELECT enabled FROM job_schedule WHERE name = 'automation.channel_codes.daily_reset'"
                .into()
        )
        .await,
        0
    );
    let offs = app
        .get(&format!("{TASKS}?enabled=false"), &app.admin_token)
        .await;
    let offs = offs.data()["list"].as_array().unwrap().clone();
    assert!(find(&offs, "automation.channel_codes.daily_reset").is_some());
    assert!(find(&offs, &format!("workflow:{wf}")).is_none());
    let on = app
        .post(
            &format!("{TASKS}/automation.channel_codes.daily_reset/enable"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(on.status, 200, "{:?}", on.body);
    assert_eq!(on.data()["enabled"], true);
    let next = chrono::DateTime::parse_from_rfc3339(on.data()["nextFireAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        next > chrono::Utc::now().timestamp_millis(),
        "{:?}",
        on.body
    );

    // A workflow's schedule follows the workflow.
    let r = app
        .post(
            &format!("{TASKS}/workflow:{wf}/disable"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(
        r.body["error"], "SCHEDULE_OWNED_BY_WORKFLOW",
        "{:?}",
        r.body
    );
    let r = app
        .post(
            &format!("{TASKS}/no.such.schedule/disable"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);

    // Viewers read, cannot switch; another tenant sees only the built-in ones.
    let (_, viewer) = app.user_with_role("task-viewer", "viewer").await;
    assert_eq!(app.get(TASKS, &viewer).await.status, 200);
    let r = app
        .post(
            &format!("{TASKS}/automation.channel_codes.daily_reset/disable"),
            &viewer,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let (_, other) = app
        .other_tenant_admin("tasks-other", "tasks-other-admin")
        .await;
    let theirs = app.get(TASKS, &other).await;
    let theirs = theirs.data()["list"].as_array().unwrap().clone();
    assert!(find(&theirs, "automation.channel_codes.daily_reset").is_some());
    assert!(find(&theirs, &format!("workflow:{wf}")).is_none());
    let r = app
        .post(&format!("{TASKS}/workflow:{wf}/disable"), &other, json!({}))
        .await;
    assert_eq!(r.status, 404);
}

/// "Added 3 days ago": each check (the workflow's schedule) starts the customers whose third day
/// since being added came after the last check, once each; a customer whose day came before the
/// workflow went live, or has not come yet, is not started; a check repeated over the same
/// window starts nobody twice.
async fn a_condition_trigger_starts_each_customer_on_their_day_once(app: TestApp) {
    let _sim = world(&app).await;
    let customers = owned_customers(&app).await;
    let (a, b, c) = (customers[0].0, customers[1].0, customers[2].0);
    let mut tag = 0;
    for t in tag_ids(&app).await {
        if !has_tag(&app, a, t).await {
            tag = t;
            break;
        }
    }
    assert_ne!(tag, 0, "a tag A does not have");
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "第三天回访",
            "trigger": {"type": "condition", "addedDaysAgo": 3},
            "steps": [{"key": "tag", "type": "add_tag", "tagIds": [tag]}]
        }),
    )
    .await;
    let d = app.get(&format!("{BASE}/{wf}"), &app.admin_token).await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    let db = &app.state.db;
    let schedule = format!("workflow:{wf}");
    assert_eq!(
        n(
            &app,
            format!("SELECT COUNT(*) FROM job_schedule WHERE name = '{schedule}' AND enabled = 1")
        )
        .await,
        1,
        "a condition is checked on a schedule"
    );
    let mark = n(
        &app,
        format!("SELECT condition_checked_until FROM workflow WHERE id = {wf}"),
    )
    .await;
    let now = scrm::state::now_ms();
    assert!(
        (now - 60_000..=now).contains(&mark),
        "going live sets the mark: {mark}"
    );

    let day = 86_400_000;
    // As if the workflow went live 10 minutes ago: A's third day came 9 minutes ago, B's an
    // hour ago (before it went live), C's comes tomorrow; everyone else was added long ago.
    db.execute(query("UPDATE customer SET add_time = ?").bind(now - 30 * day))
        .await
        .unwrap();
    for (id, at) in [
        (a, now - 9 * 60_000 - 3 * day),
        (b, now - 3_600_000 - 3 * day),
        (c, now + day - 3 * day),
    ] {
        db.execute(
            query("UPDATE customer SET add_time = ? WHERE id = ?")
                .bind(at)
                .bind(id),
        )
        .await
        .unwrap();
    }
    set_mark(&app, wf, now - 10 * 60_000).await;
    let after_first = check_condition(&app, wf, now - 10 * 60_000).await;
    let runs = until("A's run", || async {
        let l = runs_of(&app, wf).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["customerId"], a);
    assert_eq!(runs[0]["triggerType"], "condition");
    run_status(&app, runs[0]["id"].as_i64().unwrap(), 2).await;
    assert!(has_tag(&app, a, tag).await);

    // Time passes: C's day comes (it is now 20 minutes later than the last check, as far as
    // the marks go); the window covers A's day again.
    let later = after_first - 20 * 60_000;
    db.execute(
        query("UPDATE customer SET add_time = ? WHERE id = ?")
            .bind(later + 60_000 - 3 * day)
            .bind(c),
    )
    .await
    .unwrap();
    db.execute(
        query("UPDATE customer SET add_time = ? WHERE id = ?")
            .bind(later + 120_000 - 3 * day)
            .bind(a),
    )
    .await
    .unwrap();
    set_mark(&app, wf, later).await;
    check_condition(&app, wf, later).await;
    let runs = until("C's run", || async {
        let l = runs_of(&app, wf).await;
        (l.len() >= 2).then_some(l)
    })
    .await;
    let mut started: Vec<i64> = runs
        .iter()
        .map(|r| r["customerId"].as_i64().unwrap())
        .collect();
    started.sort_unstable();
    let mut want = vec![a, c];
    want.sort_unstable();
    assert_eq!(started, want, "A once, C now, B never: {runs:?}");
    assert!(!runs.iter().any(|r| r["customerId"] == b));
}

/// Set a condition workflow's mark (where its next check's window starts).
async fn set_mark(app: &TestApp, wf: i64, at: i64) {
    app.state
        .db
        .execute(
            query("UPDATE workflow SET condition_checked_until = ? WHERE id = ?")
                .bind(at)
                .bind(wf),
        )
        .await
        .unwrap();
}

/// Make a condition workflow's check due now (the engine fires its schedule's latest tick) and
/// wait until it has moved the mark past `mark`; the new mark.
async fn check_condition(app: &TestApp, wf: i64, mark: i64) -> i64 {
    app.state
        .db
        .execute(
            query("UPDATE job_schedule SET next_fire_at = ? WHERE name = ?")
                .bind(scrm::state::now_ms() - 1)
                .bind(format!("workflow:{wf}")),
        )
        .await
        .unwrap();
    until("the check moved the mark", || async {
        let m = n(
            app,
            format!("SELECT condition_checked_until FROM workflow WHERE id = {wf}"),
        )
        .await;
        (m > mark).then_some(m)
    })
    .await
}

/// Wait until the events relay has published every event.
async fn all_relayed(app: &TestApp) {
    until("every event relayed", || async {
        (n(
            app,
            "SELECT COUNT(*) FROM event_outbox WHERE published_at IS NULL".into(),
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
}

/// A member of the simulated company who can have customers (userid).
fn a_member(sim: &SimHandle) -> String {
    sim.company()
        .staff
        .iter()
        .find(|s| s.contact_enabled && s.visible() && s.status == 1)
        .unwrap()
        .userid
        .clone()
}

/// A local CRM the webhook steps post to: its base URL and the bodies it received.
async fn crm() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/crm",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let h = h.clone();
            async move {
                h.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, hits)
}

/// Make a scheduled workflow's tick due now (the engine fires its schedule's latest tick).
async fn fire_schedule(app: &TestApp, wf: i64) {
    app.state
        .db
        .execute(
            query("UPDATE job_schedule SET next_fire_at = ? WHERE name = ?")
                .bind(scrm::state::now_ms() - 1)
                .bind(format!("workflow:{wf}")),
        )
        .await
        .unwrap();
}

/// A group chat of the synced company the customer is not in: (id, chat_id).
async fn group_without(app: &TestApp, customer: i64, except: i64) -> (i64, String) {
    app.state
        .db
        .fetch_one(
            query(
                "SELECT g.id, g.chat_id FROM group_chat g WHERE g.owner_userid IS NOT NULL AND g.id <> ? \
                 AND NOT EXISTS (SELECT 1 FROM group_chat_member m WHERE m.group_id = g.id AND m.customer_id = ? AND m.status = 1) \
                 ORDER BY g.id",
            )
            .bind(except)
            .bind(customer),
        )
        .await
        .unwrap()
}

/// Seed 002's tag trigger (tagIds) and group trigger (groupIds) start runs only for their tags
/// and chats. The tag workflow: a random delay (duration…maxDuration), a condition of every
/// clause kind but lacksTags (hasTags, stageIn, a field comparison, noInteractionDays) that one
/// customer passes and one — active today — fails, a random message of a content set (texts)
/// that reaches the delivery log once, an untag (remove_tag) and a webhook to a local CRM.
async fn tag_and_group_triggers_run_conditions_random_messages_untag_and_webhook(app: TestApp) {
    let sim = world(&app).await;
    let (base, hits) = crm().await;
    let tags = tag_ids(&app).await;
    let (t1, t2) = (tags[0], tags[1]);
    let owned = owned_with_owner(&app).await;
    let (a, ext_a, _, name_a) = owned[0].clone();
    let (b, _, _, _) = owned[1].clone();
    let (c, ext_c, _, _) = owned[2].clone();
    assert!(!name_a.is_empty());
    // Take t1 and t2 off the three so that tagging them is an addition.
    let db = &app.state.db;
    for cid in [a, b, c] {
        db.execute(
            query("DELETE FROM customer_tag WHERE customer_id = ? AND tag_id IN (?, ?)")
                .bind(cid)
                .bind(t1)
                .bind(t2),
        )
        .await
        .unwrap();
    }
    let stage: String = db
        .fetch_one::<(String,)>(query("SELECT stage FROM customer WHERE id = ?").bind(a))
        .await
        .unwrap()
        .0;
    let day = 86_400_000;
    let now = scrm::state::now_ms();
    db.execute(
        query("UPDATE customer SET stage = ?, add_time = ? WHERE id IN (?, ?, ?)")
            .bind(&stage)
            .bind(now - 30 * day)
            .bind(a)
            .bind(b)
            .bind(c),
    )
    .await
    .unwrap();
    let texts = ["早上好{nickname}", "您好{nickname}", "嗨{nickname}"];
    let tagged = published(
        &app,
        &app.admin_token,
        json!({
            "name": "打标后跟进",
            "trigger": {"type": "tag_added", "tagIds": [t1]},
            "steps": [
                {"key": "wait", "type": "delay", "duration": "1h", "maxDuration": "3h"},
                {"key": "check", "type": "condition", "when": [
                    {"hasTags": [t1]},
                    {"stageIn": [stage]},
                    {"field": "addTime", "op": "lt", "value": now - day},
                    {"noInteractionDays": 3}
                ], "otherwise": "stop"},
                {"key": "hello", "type": "send_message", "texts": texts},
                {"key": "untag", "type": "remove_tag", "tagIds": [t1]},
                {"key": "crm", "type": "webhook", "url": format!("{base}/crm")}
            ]
        }),
    )
    .await;
    let (g1, chat1) = group_without(&app, a, 0).await;
    let (_, chat2) = group_without(&app, b, g1).await;
    let joined = published(
        &app,
        &app.admin_token,
        json!({
            "name": "入群打标",
            "trigger": {"type": "joined_group", "groupIds": [g1]},
            "steps": [{"key": "tag", "type": "add_tag", "tagIds": [t2]}]
        }),
    )
    .await;

    // A and C get t1; B gets t2 (not the trigger's tag).
    for (cid, tag) in [(a, t1), (c, t1), (b, t2)] {
        let r = app
            .post(
                &format!("/api/v1/customers/{cid}/tags"),
                &app.admin_token,
                json!({"tagIds": [tag]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let runs = until("runs for A and C", || async {
        let l = runs_of(&app, tagged).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let run_of = |cid: i64| {
        runs.iter()
            .find(|r| r["customerId"] == cid)
            .unwrap_or_else(|| panic!("a run for {cid}: {runs:?}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (ra, rc) = (run_of(a), run_of(c));
    assert_eq!(runs[0]["triggerType"], "tag_added");
    // The random delay lies between duration and maxDuration, and the next step waits for it.
    for r in [ra, rc] {
        let d = step_logged(&app, r, 0, 2).await;
        let wait = d["steps"][0]["result"]["waitMs"].as_i64().unwrap();
        assert!((3_600_000..=3 * 3_600_000).contains(&wait), "{d}");
        assert_eq!(
            d["steps"][1]["dueAt"], d["steps"][0]["result"]["until"],
            "{d}"
        );
        assert_eq!(d["nextStepAt"], d["steps"][1]["dueAt"]);
    }
    // Meanwhile A stays quiet (last seen 10 days ago); C was active today.
    for (cid, at) in [(a, now - 10 * day), (c, now)] {
        db.execute(
            query("UPDATE customer SET last_active_at = ? WHERE id = ?")
                .bind(at)
                .bind(cid),
        )
        .await
        .unwrap();
    }
    for r in [ra, rc] {
        advance(&app, r, 1).await;
    }
    let done = run_status(&app, ra, 2).await;
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{done}");
    assert_eq!(steps[1]["result"]["matched"], true, "{done}");
    assert_eq!(steps[2]["result"]["errcode"], 0, "{done}");
    assert_eq!(steps[3]["result"]["removed"], json!([t1]), "{done}");
    assert_eq!(steps[4]["result"]["status"], 200, "{done}");
    let stopped = run_status(&app, rc, 2).await;
    assert_eq!(stopped["steps"].as_array().unwrap().len(), 2, "{stopped}");
    assert_eq!(
        stopped["steps"][1]["result"],
        json!({"matched": false, "then": "stop"})
    );

    // One of the content set, with its variable, once; none to C.
    let sent = until("the message", || async {
        let s = sends_to(&sim, &ext_a);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1);
    let text = sent[0].content["text"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let options: Vec<String> = texts
        .iter()
        .map(|t| t.replace("{nickname}", &name_a))
        .collect();
    assert!(options.contains(&text), "{text} not in {options:?}");
    assert!(sends_to(&sim, &ext_c).is_empty());
    // Untagged in scrm; C keeps its tag.
    assert!(!has_tag(&app, a, t1).await);
    assert!(has_tag(&app, c, t1).await);
    // The CRM got the run and its customer.
    let hit = hits.lock().unwrap().clone();
    assert_eq!(hit.len(), 1, "{hit:?}");
    assert_eq!(hit[0]["runId"], ra);
    assert_eq!(hit[0]["stepKey"], "crm");
    assert_eq!(hit[0]["workflowId"], tagged);
    assert_eq!(hit[0]["subject"]["id"], a);
    assert_eq!(hit[0]["subject"]["externalId"], ext_a);

    // A joins group chat 1 (the trigger's) and B chat 2: only A's run, and A gets t2.
    sim.member_joins_group(JoinGroup {
        chat_id: chat1,
        member: Some(ext_a.clone()),
        join_scene: 3,
    })
    .unwrap();
    let (_, ext_b, _, _) = owned[1].clone();
    sim.member_joins_group(JoinGroup {
        chat_id: chat2,
        member: Some(ext_b),
        join_scene: 3,
    })
    .unwrap();
    let runs = until("A's group run", || async {
        let l = runs_of(&app, joined).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(runs[0]["customerId"], a, "{runs:?}");
    assert_eq!(runs[0]["triggerType"], "joined_group");
    run_status(&app, runs[0]["id"].as_i64().unwrap(), 2).await;
    assert!(has_tag(&app, a, t2).await);
    all_relayed(&app).await;
    assert_eq!(
        runs_of(&app, joined).await.len(),
        1,
        "B's chat starts nothing"
    );
    sim.shutdown().await;
}

/// A schedule trigger fires on its cron: per customer, every customer with one of its tags
/// (tagIds) gets a run; per group chat (subject group), the chats of groupIds get a group_stats
/// run that records the chat's members.
async fn schedules_fire_for_tagged_customers_and_group_chats(app: TestApp) {
    let sim = world(&app).await;
    let tags = tag_ids(&app).await;
    let (audience, mark) = (tags[0], tags[1]);
    let owned = owned_customers(&app).await;
    let db = &app.state.db;
    db.execute(query("DELETE FROM customer_tag WHERE tag_id = ?").bind(mark))
        .await
        .unwrap();
    for (cid, _) in &owned[..2] {
        let r = app
            .post(
                &format!("/api/v1/customers/{cid}/tags"),
                &app.admin_token,
                json!({"tagIds": [audience]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let mut want: Vec<i64> = db
        .fetch_all::<(i64,)>(
            query("SELECT DISTINCT t.customer_id FROM customer_tag t JOIN customer c ON c.id = t.customer_id WHERE t.tag_id = ? AND c.status = 1 AND c.blacklisted = 0")
                .bind(audience),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    want.sort_unstable();
    assert!(want.len() >= 2);
    let per_customer = published(
        &app,
        &app.admin_token,
        json!({
            "name": "每日打标",
            "trigger": {"type": "schedule", "cron": "0 9 * * *", "tagIds": [audience]},
            "steps": [{"key": "mark", "type": "add_tag", "tagIds": [mark]}]
        }),
    )
    .await;
    let (g1, _) = group_without(&app, 0, 0).await;
    let members = n(
        &app,
        format!("SELECT COUNT(*) FROM group_chat_member WHERE group_id = {g1} AND status = 1"),
    )
    .await;
    let per_group = published(
        &app,
        &app.admin_token,
        json!({
            "name": "群日报",
            "trigger": {"type": "schedule", "cron": "0 22 * * *", "subject": "group", "groupIds": [g1]},
            "steps": [{"key": "stats", "type": "group_stats"}]
        }),
    )
    .await;
    // Nothing before the cron fires.
    assert!(runs_of(&app, per_customer).await.is_empty());
    fire_schedule(&app, per_customer).await;
    fire_schedule(&app, per_group).await;

    let runs = until("a run per tagged customer", || async {
        let l = runs_of(&app, per_customer).await;
        (l.len() >= want.len()).then_some(l)
    })
    .await;
    let mut got: Vec<i64> = runs
        .iter()
        .map(|r| r["customerId"].as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, want, "{runs:?}");
    assert!(runs.iter().all(|r| r["triggerType"] == "schedule"));
    for r in &runs {
        run_status(&app, r["id"].as_i64().unwrap(), 2).await;
    }
    for cid in &want {
        assert!(has_tag(&app, *cid, mark).await, "{cid} marked");
    }
    let untagged = owned
        .iter()
        .map(|(id, _)| *id)
        .find(|id| !want.contains(id));
    if let Some(other) = untagged {
        assert!(
            !has_tag(&app, other, mark).await,
            "{other} is not in the audience"
        );
    }

    let runs = until("the chat's run", || async {
        let l = runs_of(&app, per_group).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["subjectType"], "group");
    assert_eq!(runs[0]["groupId"], g1);
    let done = run_status(&app, runs[0]["id"].as_i64().unwrap(), 2).await;
    let stats = &done["steps"][0]["result"];
    assert_eq!(stats["members"], members, "{done}");
    assert!(stats["joinedToday"].is_i64(), "{done}");
    assert!(stats["leftToday"].is_i64(), "{done}");
    sim.shutdown().await;
}

/// Issue #8's scenario: a customer adds a member through a channel code; the code's welcome
/// reaches the delivery log, its tags and owner are set, and a customer_added workflow's later
/// steps are due at their times (a day, then two more) and run when brought forward.
async fn a_customer_through_a_channel_code_is_welcomed_tagged_owned_and_nurtured_on_time(
    app: TestApp,
) {
    let sim = world(&app).await;
    let tags = tag_ids(&app).await;
    let (code_tag, later_tag) = (tags[0], tags[1]);
    let member = a_member(&sim);
    let owner = n(
        &app,
        format!("SELECT id FROM staff WHERE userid = '{member}'"),
    )
    .await;
    let r = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({
                "name": "门店活码",
                "staff": [{"userid": member}],
                "tagIds": [code_tag],
                "ownerStaffId": owner,
                "welcome": {"text": "欢迎{nickname}"},
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.data()["id"].as_i64().unwrap();
    let state = r.data()["state"].as_str().unwrap().to_string();
    crate::automation::synced(&app, code).await;
    let wf = published(
        &app,
        &app.admin_token,
        json!({
            "name": "新客培育",
            "trigger": {"type": "customer_added"},
            "steps": [
                {"key": "day1", "type": "delay", "duration": "1d"},
                {"key": "hello", "type": "send_message", "text": "第一天，{nickname}"},
                {"key": "day3", "type": "delay", "duration": "2d"},
                {"key": "tag", "type": "add_tag", "tagIds": [later_tag]}
            ]
        }),
    )
    .await;

    let ext = sim
        .customer_adds_staff(AddContact {
            userid: member.clone(),
            name: Some("王芳".into()),
            state: Some(state),
            ..Default::default()
        })
        .unwrap()
        .external_userid;
    let welcome = until("the welcome", || async {
        sim.deliveries()
            .into_iter()
            .find(|d| d.kind == DeliveryKind::Welcome && d.recipient == ext)
    })
    .await;
    assert_eq!(welcome.content["text"]["content"], "欢迎王芳");
    assert_eq!(welcome.sender, member);
    let cid = n(
        &app,
        format!("SELECT id FROM customer WHERE external_userid = '{ext}'"),
    )
    .await;
    until("the code's tags and owner", || async {
        let d = app
            .get(&format!("/api/v1/customers/{cid}"), &app.admin_token)
            .await;
        let tagged = d.data()["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == code_tag));
        (tagged && d.data()["followUserId"] == owner).then_some(())
    })
    .await;

    // The workflow's run: the message is due a day after the add, nothing sent before.
    let run_id = until("the run", || async {
        runs_of(&app, wf)
            .await
            .iter()
            .find(|r| r["customerId"] == cid)
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    let due_ms = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let d = step_logged(&app, run_id, 0, 2).await;
    assert_eq!(d["steps"][0]["result"]["waitMs"], 86_400_000, "{d}");
    let first = due_ms(&d["steps"][1]["dueAt"]);
    let job_at = n(
        &app,
        format!("SELECT run_at FROM job WHERE unique_key = 'wf:{run_id}:1'"),
    )
    .await;
    // (The API shows times to the second.)
    assert_eq!(job_at / 1000, first / 1000, "the message's job waits a day");
    let added = due_ms(&d["startedAt"]);
    assert!((first - added - 86_400_000).abs() < 60_000, "{d}");
    assert!(sends_to(&sim, &ext).is_empty());

    // Day one comes: the message goes out once; the tag is due two days later.
    advance(&app, run_id, 1).await;
    let d = step_logged(&app, run_id, 2, 2).await;
    assert_eq!(d["steps"][1]["status"], 2, "{d}");
    assert_eq!(d["steps"][2]["result"]["waitMs"], 2 * 86_400_000, "{d}");
    let sent = until("the message", || async {
        let s = sends_to(&sim, &ext);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content["text"]["content"], "第一天，王芳");
    let third = due_ms(&d["steps"][3]["dueAt"]);
    assert_eq!(
        n(
            &app,
            format!("SELECT run_at FROM job WHERE unique_key = 'wf:{run_id}:3'")
        )
        .await
            / 1000,
        third / 1000,
        "the tag's job waits two more days"
    );
    assert!(!has_tag(&app, cid, later_tag).await);

    // Day three comes: tagged, done.
    advance(&app, run_id, 3).await;
    run_status(&app, run_id, 2).await;
    assert!(has_tag(&app, cid, later_tag).await);
    assert_eq!(sends_to(&sim, &ext).len(), 1, "still once");
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    tag_and_group_triggers_run_conditions_random_messages_untag_and_webhook,
    schedules_fire_for_tagged_customers_and_group_chats,
    a_customer_through_a_channel_code_is_welcomed_tagged_owned_and_nurtured_on_time,
);

/// The executions of SOP template `tid` once `n` of them have finished (done or failed).
async fn sop_finished(app: &TestApp, tid: i64, n: usize) -> Vec<Value> {
    until(
        &format!("{n} executions of template {tid} finished"),
        || async {
            let l = app
                .get(
                    &format!("/api/sop/executions?templateId={tid}&pageSize=100"),
                    &app.admin_token,
                )
                .await;
            let list = l.data()["list"].as_array().cloned().unwrap_or_default();
            (list.len() == n && list.iter().all(|e| e["status"] == 1 || e["status"] == 3))
                .then_some(list)
        },
    )
    .await
}

/// `monthlyQuota` is the number of mass messages a customer may get from the company in a
/// month, and WeCom counts every add_msg_template message: SOP and workflow messages to a
/// customer count beside group sends, and one over the quota is not sent — its step (or result)
/// says why, per customer.
async fn the_monthly_quota_counts_sop_and_workflow_messages(app: TestApp) {
    let sim = world(&app).await;
    // Customers whose owner is an active member (WeCom takes sends from those only).
    let owned: Vec<(i64, String)> = app
        .state
        .db
        .fetch_all(query(
            "SELECT c.id, c.external_userid FROM customer c JOIN staff s ON s.tenant_id = c.tenant_id \
             AND s.id = c.follow_user_id WHERE c.status = 1 AND s.status = 1 ORDER BY c.id",
        ))
        .await
        .unwrap();
    assert!(owned.len() >= 3, "{owned:?}");
    let (c1, e1) = owned[0].clone();
    let (c2, e2) = owned[1].clone();
    let (c3, e3) = owned[2].clone();
    let r = app
        .put(
            "/api/v1/operation/settings",
            &app.admin_token,
            json!({"monthlyQuota": 1, "firstPollMs": 100, "pollIntervalMs": 200}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // An SOP message to c1: its one message this month.
    let t = app
        .post(
            "/api/sop/template",
            &app.admin_token,
            json!({"templateName": "月度问候", "templateType": 1, "triggerType": 4, "steps": [
                {"stepName": "问候", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": "本月活动"}}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let tid = t.data()["templateId"].as_i64().unwrap();
    let execute = |c: i64| {
        app.post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": 1, "targetIds": [c]}),
        )
    };
    assert_eq!(execute(c1).await.status, 200);
    let done = sop_finished(&app, tid, 1).await;
    assert_eq!(done[0]["status"], 1, "{done:?}");

    // A workflow's message to c1 and c2: c1 is over the quota, c2 is not.
    let wf = published(
        &app,
        &app.admin_token,
        json!({"name": "配额", "trigger": {"type": "manual"},
               "steps": [{"type": "send_message", "text": "你好"}]}),
    )
    .await;
    let r = app
        .post(
            &format!("{BASE}/{wf}/runs"),
            &app.admin_token,
            json!({"customerIds": [c1, c2]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let runs = until("both runs finished", || async {
        let rs = runs_of(&app, wf).await;
        (rs.len() == 2 && rs.iter().all(|r| r["status"] == 2 || r["status"] == 3)).then_some(rs)
    })
    .await;
    let of = |c: i64| runs.iter().find(|r| r["customerId"] == c).unwrap().clone();
    let r1 = run(&app, of(c1)["id"].as_i64().unwrap()).await;
    assert_eq!(r1["status"], 3, "{r1}");
    let why = r1["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("monthly mass-message quota reached (1"),
        "{r1}"
    );
    assert_eq!(of(c2)["status"], 2, "{:?}", of(c2));

    // A mass send (each customer's owner sends) to all three: only c3 has had nothing.
    let r = app
        .post(
            "/v1/workbench/mass-send",
            &app.admin_token,
            json!({"target": {"customerIds": [c1, c2, c3]}, "messageContent": {"type": "TEXT", "data": {"text": "双十一"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let d = until("the mass send finished", || async {
        let d = app
            .get(
                &format!("/api/v1/workbench/group-send/tasks/{id}"),
                &app.admin_token,
            )
            .await;
        (d.data()["status"] == "PARTIAL_SUCCESS" || d.data()["status"] == "COMPLETED")
            .then(|| d.data().clone())
    })
    .await;
    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    for r in d["results"].as_array().unwrap() {
        if r["customerId"] == c3 {
            assert_eq!(r["status"], "SUCCESS", "{r}");
        } else {
            assert_eq!(r["status"], "FAILED", "{r}");
            assert!(r["errorMessage"].as_str().unwrap().contains("quota"), "{r}");
        }
    }

    // And an SOP message to c3 now is over it too: the step says why.
    assert_eq!(execute(c3).await.status, 200);
    let list = sop_finished(&app, tid, 2).await;
    let e = list.iter().find(|e| e["targetId"] == c3).unwrap();
    assert_eq!(e["status"], 3, "{e}");
    let err = e["steps"][0]["result"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("monthly mass-message quota reached"), "{e}");

    // WeCom got one message for each of them, never a second.
    let per = sim.deliveries_per_recipient();
    for ext in [&e1, &e2, &e3] {
        assert_eq!(per.get(ext.as_str()).copied(), Some(1), "{ext}: {per:?}");
    }
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    the_monthly_quota_counts_sop_and_workflow_messages,
);
