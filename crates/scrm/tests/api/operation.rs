//! Operations against the WeCom simulator: group sends (seed 004), mass tasks (seed 000), SOPs,
//! materials; exactly-once under a killed worker; validation, permissions, tenant isolation.

use std::time::Duration;

use scrm::operation::mass::Settings;
use scrm::operation::mass::engine::chaos;
use scrm_db::query;
use scrm_jobs::{Scope, Target};
use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::helpers::{TestApp, crash_worker, wait_hung};

/// A company in the simulator mirrored into scrm: staff, customers (owner = first follow).
struct World {
    sim: SimHandle,
    tenant: i64,
    /// (staff row id, userid)
    staff: Vec<(i64, String)>,
    /// (customer id, external_userid, owner userid)
    customers: Vec<(i64, String, String)>,
}

async fn tenant_of(app: &TestApp) -> i64 {
    app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap()
}

async fn world(app: &TestApp, customers: u32, tune: impl FnOnce(&mut SimConfig)) -> World {
    let mut cfg = SimConfig::default();
    cfg.size.customers = customers;
    cfg.size.staff = 4;
    cfg.size.avg_follows = 1.0;
    tune(&mut cfg);
    let sim = Simulator::start(cfg).await.unwrap();
    let tenant = tenant_of(app).await;
    let appc = scrm::operation::wecom::simulator_app(
        &sim.base_url(),
        "wwsim00000000000001",
        "sim-app-secret",
    )
    .unwrap();
    scrm::operation::wecom::register(tenant, appc, 1000002);
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    let (staff_rows, cust_rows) = {
        let c = sim.company();
        let staff: Vec<(String, String)> = c
            .staff
            .iter()
            .filter(|s| s.status == 1)
            .map(|s| (s.userid.clone(), s.name.clone()))
            .collect();
        let mut cust = Vec::new();
        for i in 0..c.customers.len() as u32 {
            let owner = c
                .follows_of(i)
                .next()
                .map(|(_, f)| &c.staff[f.staff as usize])
                .filter(|s| s.status == 1)
                .map(|s| s.userid.clone());
            if let Some(owner) = owner {
                cust.push((c.external_userid(i), c.customer_name(i), owner));
            }
        }
        (staff, cust)
    };
    let mut staff = Vec::new();
    for (userid, name) in staff_rows {
        let id = db
            .insert_id(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)").bind(tenant).bind(&userid).bind(name).bind(now).bind(now))
            .await
            .unwrap();
        staff.push((id, userid));
    }
    let mut customers = Vec::new();
    for (ext, name, owner) in cust_rows {
        let owner_id = staff.iter().find(|s| s.1 == owner).map(|s| s.0);
        let id = db
            .insert_id(query("INSERT INTO customer (tenant_id, external_userid, name, follow_user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(tenant).bind(&ext).bind(name).bind(owner_id).bind(now).bind(now))
            .await
            .unwrap();
        customers.push((id, ext, owner));
    }
    for (key, v) in [("mass.first_poll_ms", 100), ("mass.poll_interval_ms", 200)] {
        Settings::set(db, tenant, key, v).await.unwrap();
    }
    World {
        sim,
        tenant,
        staff,
        customers,
    }
}

async fn tag(app: &TestApp, w: &World, name: &str, customer_ids: &[i64]) -> i64 {
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    let g = db.insert_id(query("INSERT INTO tag_group (tenant_id, name, created_at, updated_at) VALUES (?, ?, ?, ?)").bind(w.tenant).bind(format!("g-{name}")).bind(now).bind(now)).await.unwrap();
    let t = db.insert_id(query("INSERT INTO tag (tenant_id, group_id, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)").bind(w.tenant).bind(g).bind(name).bind(now).bind(now)).await.unwrap();
    for c in customer_ids {
        db.execute(query("INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_at) VALUES (?, ?, ?, ?)").bind(w.tenant).bind(t).bind(*c).bind(now)).await.unwrap();
    }
    t
}

async fn wait_final(app: &TestApp, id: i64) -> Value {
    for _ in 0..900 {
        let r = app
            .get(
                &format!("/api/v1/workbench/group-send/tasks/{id}?resultSize=1000"),
                &app.admin_token,
            )
            .await;
        let st = r.data()["status"].as_str().unwrap_or("").to_string();
        if ["COMPLETED", "PARTIAL_SUCCESS", "FAILED", "CANCELLED"].contains(&st.as_str()) {
            return r.data().clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} did not finish");
}

/// Start mass task `id` now (seed 000's execute, immediate) and wait until it is final.
async fn execute_now(app: &TestApp, id: i64) -> Value {
    let e = app
        .post(
            "/api/mass-task/execute",
            &app.admin_token,
            json!({"taskId": id, "immediate": true}),
        )
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    wait_final(app, id).await
}

fn text(s: &str) -> Value {
    json!({"type": "TEXT", "data": {"text": s}})
}

async fn a_group_send_to_a_tag_reaches_each_customer_exactly_once(app: TestApp) {
    let w = world(&app, 40, |_| {}).await;
    let sender = w.staff[0].1.clone();
    let mine: Vec<i64> = w
        .customers
        .iter()
        .filter(|c| c.2 == sender)
        .map(|c| c.0)
        .collect();
    // Customers the sender does not follow: WeCom leaves them out (fail_list).
    let others: Vec<i64> = {
        let c = w.sim.company();
        let s = c.staff_by_userid(&sender).unwrap();
        w.customers
            .iter()
            .filter(|x| {
                c.customer_by_id(&x.1)
                    .is_some_and(|i| c.follow_of(i, s).is_none())
            })
            .take(2)
            .map(|x| x.0)
            .collect()
    };
    let blacklisted = mine[0];
    app.state
        .db
        .execute(query("UPDATE customer SET blacklisted = 1 WHERE id = ?").bind(blacklisted))
        .await
        .unwrap();
    let all: Vec<i64> = mine.iter().chain(others.iter()).copied().collect();
    let t = tag(&app, &w, "vip", &all).await;

    let r = app
        .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"tagIds": [t]}, "messageContent": text("双十一快乐"), "taskName": "问候"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["status"], "PENDING");
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let d = wait_final(&app, id).await;

    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    assert_eq!(d["targetCount"], all.len());
    assert_eq!(d["successCount"], mine.len() - 1);
    assert_eq!(d["failedCount"], others.len() + 1);
    let results = d["results"].as_array().unwrap();
    let by = |cid: i64| {
        results
            .iter()
            .find(|r| r["customerId"] == cid)
            .unwrap()
            .clone()
    };
    assert_eq!(by(blacklisted)["errorMessage"], "customer is blacklisted");
    assert!(
        by(others[0])["errorMessage"]
            .as_str()
            .unwrap()
            .contains("fail_list")
    );
    // The simulator's delivery log: each sendable target once, nobody else, no duplicates.
    let per = w.sim.deliveries_per_recipient();
    for (cid, ext, _) in &w.customers {
        let want = usize::from(mine.contains(cid) && *cid != blacklisted);
        assert_eq!(per.get(ext).copied().unwrap_or(0), want, "customer {cid}");
    }
    let calls: i64 = app
        .state
        .db
        .fetch_i64(query("SELECT MAX(calls) FROM group_send_batch WHERE task_id = ?").bind(id))
        .await
        .unwrap();
    let batches = app
        .state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM group_send_batch WHERE task_id = ?").bind(id))
        .await
        .unwrap();
    assert_eq!(batches, 1);
    assert_eq!(calls, 1, "one add_msg_template for one sender");

    // Quota: with one message a month allowed, a second send fails with the reason.
    w.sim
        .update_config(|c| c.mass_send.receive_quota_per_month = 1);
    let r = app
        .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"customerIds": [mine[1]]}, "messageContent": text("again")}))
        .await;
    let d = wait_final(&app, r.data()["groupSendTaskId"].as_i64().unwrap()).await;
    assert_eq!(d["status"], "FAILED");
    assert!(
        d["results"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "{d}"
    );

    let list = app.get("/api/v1/workbench/group-send/tasks?status=PARTIAL_SUCCESS&taskName=问候&page=1&size=10", &app.admin_token).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.data()["total"], 1);
    assert_eq!(list.data()["records"][0]["groupSendTaskId"], id);
    assert_eq!(list.data()["pages"], 1);
}

async fn a_worker_killed_after_the_wecom_call_never_sends_twice(app: TestApp) {
    let w = world(&app, 60, |_| {}).await;
    let first = crash_worker(&app).await;
    chaos::hang_after_next_call();
    let ids: Vec<i64> = w.customers.iter().map(|c| c.0).collect();
    let r = app
        .post(
            "/v1/workbench/mass-send",
            &app.admin_token,
            json!({"target": {"customerIds": ids}, "messageContent": text("限时优惠")}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    wait_hung("a batch hung after its WeCom call").await;
    first.abort(); // the process dies: the msgid was never recorded
    let _second = crash_worker(&app).await;
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(d["successCount"], w.customers.len());
    assert!(
        w.sim.duplicate_deliveries().is_empty(),
        "duplicates: {:?}",
        w.sim.duplicate_deliveries().len()
    );
    let per = w.sim.deliveries_per_recipient();
    for (_, ext, _) in &w.customers {
        assert_eq!(per.get(ext).copied(), Some(1), "{ext}");
    }
    // A batch killed before its request left may call again; none may call more than that.
    let most = app
        .state
        .db
        .fetch_i64(query("SELECT MAX(calls) FROM group_send_batch WHERE task_id = ?").bind(id))
        .await
        .unwrap();
    assert!(most <= 2, "{most}");
}

/// A worker killed right after WeCom accepted an SOP send, before the answer was recorded: the
/// step's next attempt (another worker's, after the lease) finds the send in WeCom's records
/// instead of sending again. For a customer ...
async fn an_sop_send_killed_after_its_wecom_call_reaches_the_customer_once(app: TestApp) {
    sop_send_killed_after_its_call(app, false).await;
}

/// ... and for a customer group chat (group SOPs send with chat_type group).
async fn an_sop_send_killed_after_its_wecom_call_reaches_the_group_once(app: TestApp) {
    sop_send_killed_after_its_call(app, true).await;
}

/// Wait until the (first) execution of SOP template `tid` has completed (status 1).
async fn sop_execution_completed(app: &TestApp, tid: i64) {
    let mut done = Value::Null;
    for _ in 0..900 {
        let l = app
            .get(
                &format!("/api/sop/executions?templateId={tid}"),
                &app.admin_token,
            )
            .await;
        if l.data()["list"][0]["status"] == 1 {
            done = l.data()["list"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], 1, "completed: {done}");
}

async fn sop_send_killed_after_its_call(app: TestApp, group: bool) {
    let w = world(&app, 10, |c| c.size.group_chats = 6).await;
    let (template_type, target, recipient) = if group {
        let (chat_id, name, owner) = {
            let c = w.sim.company();
            let i = (0..c.chats.len())
                .find(|&i| !c.chats[i].dismissed && c.staff[c.chats[i].owner as usize].status == 1)
                .expect("a live chat with an active owner");
            let owner = c.staff[c.chats[i].owner as usize].userid.clone();
            (c.chat_id(i as u32), c.chats[i].name.clone(), owner)
        };
        let now = scrm::state::now_ms();
        let gid = app
            .state
            .db
            .insert_id(query("INSERT INTO group_chat (tenant_id, chat_id, name, owner_userid, status, member_count, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)").bind(w.tenant).bind(&chat_id).bind(name).bind(owner).bind(now).bind(now))
            .await
            .unwrap();
        (2, gid, chat_id)
    } else {
        (1, w.customers[0].0, w.customers[0].1.clone())
    };
    let body = json!({"templateName": "崩溃", "templateType": template_type, "triggerType": 4, "steps": [
        {"stepName": "通知", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": "本周活动"}}]});
    let r = app.post("/api/sop/template", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tid = r.data()["templateId"].as_i64().unwrap();
    let first = crash_worker(&app).await;
    chaos::hang_after_next_call();
    let r = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": template_type, "targetIds": [target]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_hung("the send step hung after its WeCom call").await;
    first.abort(); // the process dies: the msgid was never recorded
    let _second = crash_worker(&app).await;
    sop_execution_completed(&app, tid).await;
    let per = w.sim.deliveries_per_recipient();
    assert_eq!(per.get(&recipient).copied(), Some(1), "{per:?}");
    assert!(w.sim.duplicate_deliveries().is_empty());
    assert_eq!(
        w.sim
            .call_counts()
            .get("/cgi-bin/externalcontact/add_msg_template")
            .copied(),
        Some(1),
        "the retry found the send instead of sending again"
    );
}

async fn group_send_validates_and_stays_in_its_tenant(app: TestApp) {
    let w = world(&app, 10, |_| {}).await;
    let sender = w.staff[0].1.clone();
    let c = w.customers[0].0;
    let post = |b: Value| app.post("/api/v1/workbench/group-send/tasks", &app.admin_token, b);
    let r = post(json!({"senderAccountId": "nobody", "target": {"customerIds": [c]}, "messageContent": text("x")})).await;
    assert_eq!((r.status, r.error()), (404, "SENDER_ACCOUNT_NOT_FOUND"));
    let r = post(json!({"senderAccountId": sender, "target": {"customerIds": [999999]}, "messageContent": text("x")})).await;
    assert_eq!((r.status, r.error()), (422, "TARGET_CUSTOMERS_EMPTY"));
    let r =
        post(json!({"senderAccountId": sender, "target": {}, "messageContent": text("x")})).await;
    assert_eq!((r.status, r.error()), (422, "TARGET_CUSTOMERS_EMPTY"));
    let r = post(json!({"senderAccountId": sender, "target": {"customerIds": [c]}, "messageContent": {"type": "VOICE", "data": {}}})).await;
    assert_eq!((r.status, r.error()), (400, "MESSAGE_CONTENT_INVALID"));
    let r = post(json!({"senderAccountId": sender, "target": {"customerIds": [c]}, "messageContent": text(&"长".repeat(2000))})).await;
    assert_eq!((r.status, r.error()), (422, "MESSAGE_CONTENT_INVALID"));
    let r = post(json!({"target": {"customerIds": [c]}, "messageContent": text("x")})).await;
    assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"));
    let r = post(json!({"senderAccountId": sender, "target": {"customerIds": [c]}, "messageContent": text("x"), "scheduledTime": "tomorrow"})).await;
    assert_eq!(r.status, 400);

    let accounts = app
        .get(
            "/api/v1/workbench/wechat/group-send/accounts",
            &app.admin_token,
        )
        .await;
    assert_eq!(accounts.status, 200);
    assert_eq!(accounts.data().as_array().unwrap().len(), w.staff.len());
    assert_eq!(accounts.data()[0]["accountType"], "WEWORK");
    assert_eq!(accounts.data()[0]["status"], "ACTIVE");

    // Scheduled in the future: stays PENDING, then cancel.
    let r = post(json!({"senderAccountId": sender, "target": {"customerIds": [c]}, "messageContent": text("later"), "scheduledTime": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(r.status, 201);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let (_, theirs) = app.other_tenant_admin("other co", "boss.o").await;
    assert_eq!(
        app.get(&format!("/api/v1/workbench/group-send/tasks/{id}"), &theirs)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/workbench/group-send/tasks", &theirs)
            .await
            .data()["total"],
        0
    );
    assert_eq!(
        app.post(&format!("/api/mass-task/{id}/cancel"), &theirs, json!({}))
            .await
            .status,
        404
    );
    let (_, viewer) = app.user_with_role("viewer.o", "viewer").await;
    assert_eq!(
        app.post("/api/v1/workbench/group-send/tasks", &viewer, json!({}))
            .await
            .status,
        403
    );
    let c1 = app
        .post(
            &format!("/api/mass-task/{id}/cancel"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(c1.status, 200, "{:?}", c1.body);
    assert_eq!(c1.data()["status"], 4);
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "CANCELLED");
    assert_eq!(w.sim.delivery_count(), 0);
    let again = app
        .post(
            &format!("/api/mass-task/{id}/cancel"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!((again.status, again.error()), (409, "TASK_STATE_CONFLICT"));
}

/// A group send naming a sender that cannot send now is refused when it is created, naming the
/// field, and nothing is stored: a member who left is EXPIRED, a disabled or not activated one
/// OFFLINE (seed 004's account states) — as the seed's `senderAccountId`, in
/// `senderAccountIds`, and in seed 002's mass send. A mass task (seed 000) names no sender: the
/// customers of an owner who left are recorded FAILED with the reason, the others are sent.
async fn a_send_from_an_offline_or_expired_member_is_refused_at_creation(app: TestApp) {
    let w = world(&app, 12, |_| {}).await;
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    for (userid, status) in [("m-disabled", 2), ("m-inactive", 4), ("m-left", 5)] {
        db.execute(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(w.tenant).bind(userid).bind(format!("name-{userid}")).bind(status).bind(now).bind(now))
            .await
            .unwrap();
    }
    let active = w.staff[0].1.clone();
    let c = w.customers[0].0;
    let tasks = || db.fetch_i64(query("SELECT COUNT(*) FROM t_group_send_task"));
    for (body, path, status, error, field) in [
        (
            json!({"senderAccountId": "m-disabled"}),
            "/api/v1/workbench/group-send/tasks",
            422,
            "SENDER_ACCOUNT_OFFLINE",
            "senderAccountId",
        ),
        (
            json!({"senderAccountId": "m-inactive"}),
            "/api/v1/workbench/group-send/tasks",
            422,
            "SENDER_ACCOUNT_OFFLINE",
            "senderAccountId",
        ),
        (
            json!({"senderAccountId": "m-left"}),
            "/api/v1/workbench/group-send/tasks",
            422,
            "SENDER_ACCOUNT_EXPIRED",
            "senderAccountId",
        ),
        (
            json!({"senderAccountIds": [active, "m-left"]}),
            "/api/v1/workbench/group-send/tasks",
            422,
            "SENDER_ACCOUNT_EXPIRED",
            "senderAccountIds[1]",
        ),
        (
            json!({"senderAccountId": "m-disabled"}),
            "/v1/workbench/mass-send",
            422,
            "SENDER_ACCOUNT_OFFLINE",
            "senderAccountId",
        ),
    ] {
        let mut b = body.clone();
        b["target"] = json!({"customerIds": [c]});
        b["messageContent"] = text("本周活动");
        let r = app.post(path, &app.admin_token, b).await;
        assert_eq!(
            (r.status, r.error()),
            (status, error),
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.body["fields"][0]["field"], field, "{:?}", r.body);
        let state = if error.ends_with("EXPIRED") {
            "EXPIRED"
        } else {
            "OFFLINE"
        };
        assert!(
            r.body["message"].as_str().unwrap().contains(state),
            "{:?}",
            r.body
        );
    }
    assert_eq!(tasks().await.unwrap(), 0, "nothing was created");
    assert_eq!(calls(&w, "add_msg_template"), 0);

    // Seed 000's mass task: each customer's owner sends; one owner left the company since.
    let gone = w.customers[0].2.clone();
    let theirs = customers_of(&w, &gone);
    let others: Vec<i64> = w
        .customers
        .iter()
        .filter(|c| c.2 != gone)
        .map(|c| c.0)
        .take(2)
        .collect();
    assert!(!theirs.is_empty() && others.len() == 2);
    db.execute(query("UPDATE staff SET status = 5 WHERE userid = ?").bind(&gone))
        .await
        .unwrap();
    let ids: Vec<i64> = theirs.iter().chain(&others).copied().collect();
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "老客回访", "taskType": 1, "targetType": 1, "targetIds": ids, "messageContent": "回访", "messageType": 1})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let d = execute_now(&app, id).await;
    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    for r in d["results"].as_array().unwrap() {
        let cid = r["customerId"].as_i64().unwrap();
        if theirs.contains(&cid) {
            assert_eq!(r["status"], "FAILED", "{r}");
            assert!(
                r["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("not an active WeCom member"),
                "{r}"
            );
        } else {
            assert_eq!(r["status"], "SUCCESS", "{r}");
        }
    }
    let per = w.sim.deliveries_per_recipient();
    for (cid, ext, _) in &w.customers {
        let want = usize::from(others.contains(cid));
        assert_eq!(per.get(ext).copied().unwrap_or(0), want, "customer {cid}");
    }
}

async fn mass_tasks_are_created_executed_and_listed(app: TestApp) {
    let w = world(&app, 12, |_| {}).await;
    let ids: Vec<i64> = w.customers.iter().take(5).map(|c| c.0).collect();
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "双十一", "taskType": 1, "targetType": 1, "targetIds": ids, "messageContent": "双十一活动开始啦！", "messageType": 1, "scheduledTime": "2099-11-11T00:00:00"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["status"], 0);
    let id = r.data()["id"].as_i64().unwrap();
    assert_eq!(
        app.get("/api/mass-task/list?status=0", &app.admin_token)
            .await
            .data()["total"],
        1
    );
    let d = execute_now(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(w.sim.delivery_count(), 5);
    assert_eq!(
        app.get("/api/mass-task/list?status=2", &app.admin_token)
            .await
            .data()["list"][0]["successCount"],
        5
    );
    let again = app
        .post(
            "/api/mass-task/execute",
            &app.admin_token,
            json!({"taskId": id, "immediate": true}),
        )
        .await;
    assert_eq!(again.status, 409);
    // Tag task: local tags (no WeCom id) are added to each customer.
    let t = tag(&app, &w, "new", &[]).await;
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "打标签", "taskType": 2, "targetType": 1, "targetIds": ids, "tagIds": [t]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tid = r.data()["id"].as_i64().unwrap();
    app.post(
        "/api/mass-task/execute",
        &app.admin_token,
        json!({"taskId": tid, "immediate": true}),
    )
    .await;
    let d = wait_final(&app, tid).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    let n = app
        .state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM customer_tag WHERE tag_id = ?").bind(t))
        .await
        .unwrap();
    assert_eq!(n, 5);
    for bad in [
        json!({"taskName": "x", "taskType": 9, "targetType": 1, "targetIds": [1]}),
        json!({"taskName": "x", "taskType": 1, "targetType": 7, "targetIds": [1]}),
        json!({"taskType": 1}),
    ] {
        assert_eq!(
            app.post("/api/mass-task", &app.admin_token, bad)
                .await
                .status,
            400
        );
    }
    assert_eq!(
        app.get("/api/mass-task/list?status=9", &app.admin_token)
            .await
            .status,
        400
    );
}

async fn an_sop_runs_its_steps_on_schedule_pauses_and_cancels(app: TestApp) {
    let w = world(&app, 6, |_| {}).await;
    let t = tag(&app, &w, "sop-tag", &[]).await;
    let body = json!({"templateName": "新客户欢迎SOP", "templateType": 1, "triggerType": 4, "description": "d", "steps": [
        {"stepName": "欢迎", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": "欢迎加入！"}},
        {"stepName": "打标签", "stepType": 2, "delayTime": 1, "delayUnit": "hour", "actionContent": {"tagIds": [t]}},
        {"stepName": "提醒", "stepType": 5, "delayTime": 1, "delayUnit": "day", "actionContent": {"content": "跟进一下"}}]});
    let r = app
        .post("/api/sop/template", &app.admin_token, body.clone())
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tid = r.data()["templateId"].as_i64().unwrap();
    assert_eq!(r.data()["steps"].as_array().unwrap().len(), 3);
    let bad = app.post("/api/sop/template", &app.admin_token, json!({"templateName": "x", "triggerType": 1, "steps": [{"stepType": 2, "actionContent": {}}]})).await;
    assert_eq!(bad.status, 400);
    let bad = app.post("/api/sop/template", &app.admin_token, json!({"templateName": "x", "triggerType": 1, "steps": [{"stepType": 1, "delayUnit": "week", "actionContent": {"content": "a"}}]})).await;
    assert_eq!(bad.status, 400);
    let list = app
        .get("/api/sop/templates?page=1&pageSize=20", &app.admin_token)
        .await;
    assert_eq!(list.data()["total"], 1);

    let (c1, c2) = (w.customers[0].0, w.customers[1].0);
    let r = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": 1, "targetIds": [c1, c2]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let execs: Vec<i64> = r.data()["executionIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(execs.len(), 2);
    let again = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetIds": [c1]}),
        )
        .await;
    assert_eq!(
        again.data()["skippedTargetIds"],
        json!([c1]),
        "not started twice"
    );

    // Step 1 (no delay) runs now and logs WeCom's answer; steps 2-3 wait.
    let mut step1 = Value::Null;
    for _ in 0..900 {
        let l = app
            .get(
                &format!("/api/sop/executions?templateId={tid}&status=0"),
                &app.admin_token,
            )
            .await;
        let e = l.data()["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == execs[0])
            .cloned();
        if let Some(e) = e
            && e["steps"][0]["status"] == 2
        {
            step1 = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(step1["steps"][0]["result"]["errcode"], 0, "{step1}");
    assert_eq!(step1["steps"][1]["status"], 0);
    for _ in 0..900 {
        if w.sim.delivery_count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.sim.delivery_count(), 2, "one welcome per execution");

    // Pause shifts what is left by the pause.
    let due_before = app
        .state
        .db
        .fetch_i64(
            query(
                "SELECT due_at FROM sop_execution_step WHERE execution_id = ? AND step_order = 2",
            )
            .bind(execs[0]),
        )
        .await
        .unwrap();
    let p = app
        .post(
            "/api/sop/execution/control",
            &app.admin_token,
            json!({"executionIds": [execs[0]], "action": "pause"}),
        )
        .await;
    assert_eq!(p.data()["affected"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.post(
        "/api/sop/execution/control",
        &app.admin_token,
        json!({"executionIds": [execs[0]], "action": "resume"}),
    )
    .await;
    let due_after = app
        .state
        .db
        .fetch_i64(
            query(
                "SELECT due_at FROM sop_execution_step WHERE execution_id = ? AND step_order = 2",
            )
            .bind(execs[0]),
        )
        .await
        .unwrap();
    assert!(due_after >= due_before + 250, "{due_before} → {due_after}");
    let jobs = app
        .state
        .jobs
        .list_jobs(
            Scope::System,
            &scrm_jobs::JobFilter {
                group_key: Some(format!("sop:{}", execs[0])),
                ..Default::default()
            },
            1,
            10,
        )
        .await
        .unwrap();
    let job_due: Vec<i64> = jobs
        .items
        .iter()
        .filter(|j| j.state == 0)
        .map(|j| j.run_at)
        .collect();
    assert!(
        job_due.iter().all(|d| *d >= due_before + 250),
        "{job_due:?}"
    );

    // The rest run when due: bring them forward and watch the execution finish.
    let ids: Vec<i64> = jobs
        .items
        .iter()
        .filter(|j| j.state == 0)
        .map(|j| j.id)
        .collect();
    app.state
        .jobs
        .retry(Scope::System, &Target::Ids(ids))
        .await
        .unwrap();
    // Up to 90 s: the steps run on the app's own workers, which a loaded CI machine slows.
    for _ in 0..900 {
        let l = app
            .get("/api/sop/executions?status=1", &app.admin_token)
            .await;
        if l.data()["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = app
        .get("/api/sop/executions?status=1", &app.admin_token)
        .await;
    assert_eq!(
        done.data()["list"][0]["steps"][2]["status"],
        2,
        "{:?}",
        done.body
    );
    assert_eq!(
        app.state
            .db
            .fetch_i64(query("SELECT COUNT(*) FROM customer_tag WHERE tag_id = ?").bind(t))
            .await
            .unwrap(),
        1
    );

    // Cancel stops the other one.
    let c = app
        .post(
            "/api/sop/execution/control",
            &app.admin_token,
            json!({"executionIds": [execs[1]], "action": "cancel"}),
        )
        .await;
    assert_eq!(c.data()["affected"], 1);
    let l = app
        .get("/api/sop/executions?status=4", &app.admin_token)
        .await;
    assert_eq!(l.data()["list"][0]["steps"][1]["status"], 4);
    let bad = app
        .post(
            "/api/sop/execution/control",
            &app.admin_token,
            json!({"executionIds": [1], "action": "explode"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let (_, theirs) = app.other_tenant_admin("other sop", "boss.s").await;
    assert_eq!(
        app.get("/api/sop/executions", &theirs).await.data()["total"],
        0
    );
    let r = app
        .put(&format!("/api/sop/template/{tid}"), &theirs, body.clone())
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(
        app.put(&format!("/api/sop/template/{tid}"), &app.admin_token, body)
            .await
            .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/sop/template/{tid}"), &app.admin_token)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get("/api/sop/templates", &app.admin_token).await.data()["total"],
        0
    );
}

async fn materials_are_managed_and_uploaded_once(app: TestApp) {
    let w = world(&app, 5, |_| {}).await;
    let png = base64_of(&[137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13]);
    let r = app
        .post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "image", "title": "海报", "fileName": "a.png", "fileData": png}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mid = r.data()["materialId"].as_i64().unwrap();
    assert_eq!(
        app.post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "gif", "title": "x"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        app.post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "link", "title": "x", "content": {}})
        )
        .await
        .status,
        400
    );
    let list = app
        .get("/api/materials?materialType=image", &app.admin_token)
        .await;
    assert_eq!(list.data()["total"], 1);
    let c = w.customers[0].0;
    for _ in 0..2 {
        let r = app.post("/v1/workbench/mass-send", &app.admin_token, json!({"target": {"customerIds": [c]}, "messageContent": {"type": "MATERIAL", "data": {"materialId": mid}}})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        wait_final(&app, r.data()["groupSendTaskId"].as_i64().unwrap()).await;
    }
    let m = app
        .get(&format!("/api/material/{mid}"), &app.admin_token)
        .await;
    let media = m.data()["mediaId"].as_str().unwrap().to_string();
    assert!(!media.is_empty());
    let deliveries = w.sim.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert!(
        deliveries
            .iter()
            .all(|d| d.content.to_string().contains(&media)),
        "one upload, reused"
    );
    // WeCom keeps an upload 3 days: a media id within a day of its end is uploaded again
    // before the next send, and the new id replaces it.
    app.state
        .db
        .execute(
            scrm_db::query("UPDATE material SET media_expires_at = ? WHERE id = ?")
                .bind(scrm::state::now_ms() + 3_600_000)
                .bind(mid),
        )
        .await
        .unwrap();
    let r = app.post("/v1/workbench/mass-send", &app.admin_token, json!({"target": {"customerIds": [c]}, "messageContent": {"type": "MATERIAL", "data": {"materialId": mid}}})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    wait_final(&app, r.data()["groupSendTaskId"].as_i64().unwrap()).await;
    let renewed = app
        .get(&format!("/api/material/{mid}"), &app.admin_token)
        .await
        .data()["mediaId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(renewed, media, "renewed before it expired");
    let deliveries = w.sim.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries[2].content.to_string().contains(&renewed));
    assert!(!deliveries[2].content.to_string().contains(&media));
    let (_, theirs) = app.other_tenant_admin("other mat", "boss.m").await;
    assert_eq!(
        app.get(&format!("/api/material/{mid}"), &theirs)
            .await
            .status,
        404
    );
    assert_eq!(
        app.put(
            &format!("/api/material/{mid}"),
            &app.admin_token,
            json!({"materialType": "image", "title": "新海报"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/material/{mid}"), &app.admin_token)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/material/{mid}"), &app.admin_token)
            .await
            .status,
        404
    );
}

async fn assign_tasks_and_sop_steps_change_the_local_owner(app: TestApp) {
    let w = world(&app, 16, |_| {}).await;
    // The takeover: a member who already follows customers (so WeCom lets them take more).
    let (c1, _, owner1) = w.customers[0].clone();
    let to = w
        .staff
        .iter()
        .find(|s| s.1 != owner1 && w.customers.iter().any(|c| c.2 == s.1))
        .expect("a second member with customers")
        .clone();
    let (c2, _, _) = w
        .customers
        .iter()
        .find(|c| c.0 != c1 && c.2 != to.1)
        .expect("a second customer of someone else")
        .clone();

    // Mass task type 3.
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "分配客户", "taskType": 3, "targetType": 1, "targetIds": [c1], "staffId": to.0})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let e = app
        .post(
            "/api/mass-task/execute",
            &app.admin_token,
            json!({"taskId": id, "immediate": true}),
        )
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    let c = app
        .get(&format!("/api/v1/customers/{c1}"), &app.admin_token)
        .await;
    assert_eq!(c.data()["followUserId"], to.0, "{:?}", c.body);
    let tr = app
        .get(
            &format!("/api/v1/customers/transfers?customerId={c1}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(tr.status, 200, "{:?}", tr.body);
    assert_eq!(tr.data()["list"][0]["toStaffId"], to.0, "{:?}", tr.body);
    assert_eq!(tr.data()["list"][0]["status"], "done");
    assert_eq!(
        w.sim
            .call_counts()
            .get("/cgi-bin/externalcontact/transfer_customer")
            .copied(),
        Some(1),
        "WeCom was asked to transfer"
    );

    // SOP step type 4.
    let body = json!({"templateName": "分配SOP", "templateType": 1, "triggerType": 4, "steps": [
        {"stepName": "分配", "stepType": 4, "delayTime": 0, "delayUnit": "minute", "actionContent": {"staffId": to.0}}]});
    let r = app.post("/api/sop/template", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tid = r.data()["templateId"].as_i64().unwrap();
    let done = execute_one(&app, tid, c2).await;
    assert_eq!(done["steps"][0]["status"], 2, "{done}");
    let c = app
        .get(&format!("/api/v1/customers/{c2}"), &app.admin_token)
        .await;
    assert_eq!(c.data()["followUserId"], to.0, "{:?}", c.body);
}

/// Execute template `tid` for one customer and wait (up to 90 s) for the execution to be done
/// (status 1); returns it, or `null` if it never finished.
async fn execute_one(app: &TestApp, tid: i64, customer: i64) -> Value {
    let r = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": 1, "targetIds": [customer]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for _ in 0..900 {
        let l = app
            .get(
                &format!("/api/sop/executions?templateId={tid}&status=1"),
                &app.admin_token,
            )
            .await;
        if l.data()["total"] == 1 {
            return l.data()["list"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Value::Null
}

/// Executions of a template (all statuses).
async fn executions(app: &TestApp, template: i64) -> Vec<Value> {
    app.get(
        &format!("/api/sop/executions?templateId={template}&pageSize=100"),
        &app.admin_token,
    )
    .await
    .data()["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Generous: callbacks pass through the event relay and the job engine, which a loaded CI
/// machine can delay by tens of seconds.
const WAIT: Duration = Duration::from_secs(90);

async fn wait_until(app: &TestApp, what: &str, sql: String, at_least: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if app
            .state
            .db
            .fetch_i64(query(sql.clone()))
            .await
            .unwrap_or(0)
            >= at_least
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: `{sql}` did not reach {at_least}");
}

async fn wait_executions(app: &TestApp, template: i64, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let l = executions(app, template).await;
        if l.len() >= n {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("template {template} did not start {n} execution(s)");
}

async fn sop_triggers_start_from_wecom_callbacks_once_per_customer(app: TestApp) {
    use scrm_wecom_sim::scenarios::{
        AddContact, ConsoleAddTags, EditContact, JoinGroup, LeaveGroup,
    };
    let sim = crate::integration::sim(30).await;
    crate::integration::connect(&app, &sim).await;
    assert_eq!(
        crate::integration_sync::sync(&app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    let staff = sim
        .company()
        .staff
        .iter()
        .find(|s| s.contact_enabled && s.visible() && s.status == 1)
        .unwrap()
        .userid
        .clone();
    // Two tags WeCom knows (created in the console; the callback brings them to scrm), and a
    // group chat: the templates name them.
    let wecom_tags = sim
        .console_add_tags(ConsoleAddTags {
            group_name: Some("活动".into()),
            tags: vec!["展会".into(), "直播".into()],
            ..Default::default()
        })
        .unwrap();
    let in_list = wecom_tags
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    wait_until(
        &app,
        "tags",
        format!("SELECT COUNT(*) FROM tag WHERE wecom_tag_id IN ({in_list})"),
        2,
    )
    .await;
    let tag_of = |wecom: String| {
        let db = app.state.db.clone();
        async move {
            db.fetch_i64(query("SELECT id FROM tag WHERE wecom_tag_id = ?").bind(wecom))
                .await
                .unwrap()
        }
    };
    let tag_a = tag_of(wecom_tags[0].clone()).await;
    let tag_b = tag_of(wecom_tags[1].clone()).await;
    let chat = sim.company().chat_id(0);
    let group = app
        .state
        .db
        .fetch_i64(query("SELECT id FROM group_chat WHERE chat_id = ?").bind(&chat))
        .await
        .unwrap();
    let template = |name: &str, trigger: i64, config: Value, welcome: &str| {
        // A welcome now, a reminder tomorrow: the run stays active while the test goes on.
        json!({"templateName": name, "templateType": 1, "triggerType": trigger, "triggerConfig": config, "status": 1, "steps": [
            {"stepName": "欢迎", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": welcome}},
            {"stepName": "提醒", "stepType": 5, "delayTime": 1, "delayUnit": "day", "actionContent": {"content": "跟进"}}]})
    };
    let mut ids = Vec::new();
    for body in [
        template("加好友欢迎", 1, json!({}), "欢迎添加！"),
        template("标签跟进", 2, json!({"tagIds": [tag_a, tag_b]}), "展会见！"),
        template("入群欢迎", 3, json!({"groupIds": [group]}), "欢迎入群！"),
    ] {
        let r = app.post("/api/sop/template", &app.admin_token, body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.data()["templateId"].as_i64().unwrap());
    }
    let (t_add, t_tag, t_group) = (ids[0], ids[1], ids[2]);

    // Add friend: WeCom's add_external_contact callback → customer.created → the SOP.
    let ext = sim
        .customer_adds_staff(AddContact {
            userid: staff.clone(),
            name: Some("韩梅梅".into()),
            ..Default::default()
        })
        .unwrap()
        .external_userid;
    let l = wait_executions(&app, t_add, 1).await;
    let cid = app
        .state
        .db
        .fetch_i64(query("SELECT id FROM customer WHERE external_userid = ?").bind(&ext))
        .await
        .unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["targetId"], cid);
    assert_eq!(l[0]["triggerType"], 1);
    for _ in 0..900 {
        if sim.deliveries_per_recipient().get(&ext).copied() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sim.deliveries_per_recipient().get(&ext).copied(),
        Some(1),
        "the welcome step reached the new customer"
    );

    // Tag added (a staff member tags the customer in WeCom) → customer.tag.added → the SOP;
    // a second matching tag while that run is active starts nothing.
    sim.staff_edits_contact(EditContact {
        userid: staff.clone(),
        external_userid: ext.clone(),
        add_tag: vec![wecom_tags[0].clone()],
        ..Default::default()
    })
    .unwrap();
    let l = wait_executions(&app, t_tag, 1).await;
    assert_eq!((l.len(), &l[0]["targetId"]), (1, &json!(cid)), "{l:?}");
    assert_eq!(l[0]["triggerType"], 2);
    sim.staff_edits_contact(EditContact {
        userid: staff.clone(),
        external_userid: ext.clone(),
        add_tag: vec![wecom_tags[1].clone()],
        ..Default::default()
    })
    .unwrap();
    wait_until(
        &app,
        "second tag event published",
        format!("SELECT COUNT(*) FROM event_outbox WHERE event_type = 'customer.tag.added' AND aggregate_id = '{cid}' AND published_at IS NOT NULL"),
        2,
    )
    .await;
    assert_eq!(
        executions(&app, t_tag).await.len(),
        1,
        "not started twice for a running customer"
    );

    // Joined group → group.member.joined → the SOP; leaving and joining again while it runs
    // starts nothing.
    sim.member_joins_group(JoinGroup {
        chat_id: chat.clone(),
        member: Some(ext.clone()),
        join_scene: 3,
    })
    .unwrap();
    let l = wait_executions(&app, t_group, 1).await;
    assert_eq!((l.len(), &l[0]["targetId"]), (1, &json!(cid)), "{l:?}");
    assert_eq!(l[0]["triggerType"], 3);
    sim.member_leaves_group(LeaveGroup {
        chat_id: chat.clone(),
        member: ext.clone(),
        quit_scene: 0,
    })
    .unwrap();
    wait_until(
        &app,
        "left the group",
        format!("SELECT COUNT(*) FROM group_chat_member WHERE group_id = {group} AND customer_id = {cid} AND status = 0"),
        1,
    )
    .await;
    sim.member_joins_group(JoinGroup {
        chat_id: chat.clone(),
        member: Some(ext.clone()),
        join_scene: 3,
    })
    .unwrap();
    wait_until(
        &app,
        "second join event published",
        format!("SELECT COUNT(*) FROM event_outbox WHERE event_type = 'group.member.joined' AND payload LIKE '%\"customerId\":{cid},%' AND published_at IS NOT NULL"),
        2,
    )
    .await;
    assert_eq!(executions(&app, t_group).await.len(), 1);
    // The add-friend template did not start again on these events either.
    assert_eq!(executions(&app, t_add).await.len(), 1);
    sim.shutdown().await;
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn spawn_api_only(backend: scrm_db::Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, &[("SCRM_ROLE", "api")]).await
}

async fn operation_settings_are_shown_changed_and_checked(app: TestApp) {
    let r = app
        .get("/api/v1/operation/settings", &app.admin_token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["firstPollMs"], 5_000, "{:?}", r.body);
    assert_eq!(r.data()["maxReminders"], 3);
    assert_eq!(r.data()["transferPollMs"], 600_000);
    assert_eq!(r.data()["ranges"]["maxReminders"]["max"], 3);

    let r = app
        .put(
            "/api/v1/operation/settings",
            &app.admin_token,
            json!({"pollIntervalMs": 30_000, "maxReminders": 1, "transferPollMs": 120_000}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["pollIntervalMs"], 30_000);
    assert_eq!(
        r.data()["firstPollMs"],
        5_000,
        "untouched settings keep their value"
    );
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let s = scrm::operation::mass::Settings::load(&app.state.db, tenant)
        .await
        .unwrap();
    assert_eq!(
        (s.poll_interval_ms, s.max_reminders),
        (30_000, 1),
        "the jobs read it"
    );

    // Bad values: each named, nothing changed (the good one in the same body included).
    let r = app
        .put(
            "/api/v1/operation/settings",
            &app.admin_token,
            json!({"maxReminders": 4, "firstPollMs": "soon", "batchGapMs": 10, "colour": 1}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error(), "VALIDATION_FAILED");
    let named: Vec<&str> = r.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["maxReminders", "firstPollMs", "colour"] {
        assert!(named.contains(&f), "{f} in {named:?}");
    }
    assert!(!named.contains(&"batchGapMs"), "{named:?}");
    let r = app
        .get("/api/v1/operation/settings", &app.admin_token)
        .await;
    assert_eq!(r.data()["batchGapMs"], 0, "nothing written: {:?}", r.body);
    assert_eq!(r.data()["maxReminders"], 1);
    let r = app
        .put("/api/v1/operation/settings", &app.admin_token, json!({}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // A viewer reads but may not change; another tenant has its own.
    let (_, viewer) = app.user_with_role("settings-viewer", "viewer").await;
    assert_eq!(
        app.get("/api/v1/operation/settings", &viewer).await.status,
        200
    );
    let r = app
        .put(
            "/api/v1/operation/settings",
            &viewer,
            json!({"maxReminders": 2}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let (_, theirs) = app.other_tenant_admin("other-co", "other-admin").await;
    let r = app.get("/api/v1/operation/settings", &theirs).await;
    assert_eq!(r.data()["pollIntervalMs"], 60_000, "{:?}", r.body);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    a_group_send_to_a_tag_reaches_each_customer_exactly_once,
    operation_settings_are_shown_changed_and_checked,
    group_send_validates_and_stays_in_its_tenant,
    a_send_from_an_offline_or_expired_member_is_refused_at_creation,
    mass_tasks_are_created_executed_and_listed,
    an_sop_runs_its_steps_on_schedule_pauses_and_cancels,
    materials_are_managed_and_uploaded_once,
    assign_tasks_and_sop_steps_change_the_local_owner,
    sop_triggers_start_from_wecom_callbacks_once_per_customer,
);

async fn spawn_fast_retries(backend: scrm_db::Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, &[("SCRM_WECOM_RETRY_SECS", "1")]).await
}

/// A send step whose eight attempts all meet transient WeCom errors is not recorded FAILED (the
/// message would be lost): it keeps trying, and goes out exactly once when WeCom recovers.
async fn an_sop_send_out_of_attempts_keeps_trying_and_sends_once(app: TestApp) {
    sop_send_survives_a_wecom_outage(app, |f, on| f.http_500 = if on { 1.0 } else { 0.0 }).await;
}

/// The same when every call is refused with 42001 (access_token expired) even right after the
/// client fetched a new token — WeCom invalidating tokens early, or another process refreshing
/// meanwhile: not the message's fault, so it is not failed (the 20k chaos run once lost a
/// message this way).
async fn an_sop_send_refused_42001_after_a_token_refresh_keeps_trying(app: TestApp) {
    sop_send_survives_a_wecom_outage(app, |f, on| f.token_expired = if on { 1.0 } else { 0.0 })
        .await;
}

/// An SOP send step to one customer while `fault` is on, until its attempts are used up;
/// then `fault` off: the execution completes and the customer got the message exactly once.
async fn sop_send_survives_a_wecom_outage(
    app: TestApp,
    fault: impl Fn(&mut scrm_wecom_sim::config::FaultConfig, bool),
) {
    let w = world(&app, 4, |_| {}).await;
    let body = json!({"templateName": "重试", "templateType": 1, "triggerType": 4, "steps": [
        {"stepName": "欢迎", "stepType": 1, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": "你好"}}]});
    let r = app.post("/api/sop/template", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tid = r.data()["templateId"].as_i64().unwrap();
    w.sim.state().update_config(|c| fault(&mut c.faults, true));
    let (c1, ext1) = (w.customers[0].0, w.customers[0].1.clone());
    let r = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": 1, "targetIds": [c1]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Wait until the step's job has used all its attempts (and more tries have been made).
    let attempts = || async {
        app.state
            .db
            .fetch_i64(scrm_db::query(
                "SELECT COALESCE(MAX(attempts), 0) FROM job WHERE kind = 'sop.step'",
            ))
            .await
            .unwrap()
    };
    let mut seen = 0;
    for _ in 0..1800 {
        seen = attempts().await;
        if seen >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen >= 8, "attempts used: {seen}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = app
        .get(
            &format!("/api/sop/executions?templateId={tid}"),
            &app.admin_token,
        )
        .await;
    let e = &l.data()["list"][0];
    assert_ne!(e["status"], 3, "not failed while WeCom is down: {e}");
    assert_eq!(w.sim.delivery_count(), 0);

    // WeCom recovers: the message goes out once and the execution completes.
    w.sim.state().update_config(|c| fault(&mut c.faults, false));
    sop_execution_completed(&app, tid).await;
    let per = w.sim.deliveries_per_recipient();
    assert_eq!(per.get(&ext1).copied(), Some(1), "{per:?}");
    assert!(w.sim.duplicate_deliveries().is_empty());
}

scrm_db::db_tests!(crate::operation::spawn_api_only;
    a_worker_killed_after_the_wecom_call_never_sends_twice,
    an_sop_send_killed_after_its_wecom_call_reaches_the_customer_once,
    an_sop_send_killed_after_its_wecom_call_reaches_the_group_once,
);

scrm_db::db_tests!(crate::operation::spawn_fast_retries;
    an_sop_send_out_of_attempts_keeps_trying_and_sends_once,
    an_sop_send_refused_42001_after_a_token_refresh_keeps_trying,
);

/// The customers of `w` whose owner is `sender`.
fn customers_of(w: &World, sender: &str) -> Vec<i64> {
    w.customers
        .iter()
        .filter(|c| c.2 == sender)
        .map(|c| c.0)
        .collect()
}

/// How often the simulator served `api` (`remind_groupmsg_send` …).
fn calls(w: &World, api: &str) -> u64 {
    w.sim
        .call_counts()
        .get(format!("/cgi-bin/externalcontact/{api}").as_str())
        .copied()
        .unwrap_or(0)
}

/// Wait until `what` holds (checked every 50 ms, for at most 60 s).
async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Change operation settings through the API.
async fn settings(app: &TestApp, body: Value) {
    let r = app
        .put("/api/v1/operation/settings", &app.admin_token, body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A member who never confirms a send in the WeCom client is reminded (remind_groupmsg_send)
/// once `remindAfterMs` has passed, at most `maxReminders` times however often the results are
/// looked at; the customers stay unsent until the member confirms, then each gets it once.
async fn unconfirmed_staff_are_reminded_up_to_the_setting(app: TestApp) {
    let w = world(&app, 16, |c| c.mass_send.confirm_delay_ms = -1).await;
    settings(&app, json!({"remindAfterMs": 300, "maxReminders": 2})).await;
    let sender = w.staff[0].1.clone();
    let mine = customers_of(&w, &sender);
    let r = app
        .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"customerIds": mine}, "messageContent": text("请确认")}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    eventually("two reminders", || calls(&w, "remind_groupmsg_send") >= 2).await;
    // Many more looks at the results (each a chance to remind): no third reminder.
    let looks = calls(&w, "get_groupmsg_send_result");
    eventually("six more looks", || {
        calls(&w, "get_groupmsg_send_result") >= looks + 6
    })
    .await;
    assert_eq!(
        calls(&w, "remind_groupmsg_send"),
        2,
        "capped at maxReminders"
    );
    let sends = w.sim.mass_sends();
    assert_eq!(sends.as_array().unwrap().len(), 1);
    assert_eq!(sends[0]["reminders"], 2, "{sends}");
    assert_eq!(w.sim.delivery_count(), 0);
    let d = app
        .get(
            &format!("/api/v1/workbench/group-send/tasks/{id}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(d.data()["status"], "PROCESSING", "{:?}", d.body);
    assert_eq!(d.data()["results"][0]["stage"], "SUBMITTED");

    // The member confirms: every customer gets the message once, and no reminder follows.
    let msgid = sends[0]["msgid"].as_str().unwrap().to_string();
    w.sim.confirm_mass_send(&msgid, None).unwrap();
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(d["successCount"], mine.len());
    assert_eq!(w.sim.delivery_count(), mine.len());
    assert_eq!(calls(&w, "remind_groupmsg_send"), 2);

    // maxReminders 0: nobody is reminded.
    settings(&app, json!({"maxReminders": 0})).await;
    let r = app
        .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"customerIds": [mine[0]]}, "messageContent": text("不提醒")}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let looks = calls(&w, "get_groupmsg_send_result");
    eventually("six looks at the second send", || {
        calls(&w, "get_groupmsg_send_result") >= looks + 6
    })
    .await;
    assert_eq!(calls(&w, "remind_groupmsg_send"), 2, "no reminder with 0");
}

/// Cancelling a task (seed 000's cancel) whose senders each have one batch submitted and more
/// waiting for the batch gap: the waiting batches are never sent, the submitted ones are
/// withdrawn in WeCom (cancel_groupmsg_send), every result is FAILED "cancelled", and nobody
/// receives the message even when the members later try to confirm.
async fn cancel_withdraws_submitted_batches_and_stops_the_rest(app: TestApp) {
    let w = world(&app, 40, |c| c.mass_send.confirm_delay_ms = -1).await;
    settings(&app, json!({"batchSize": 2, "batchGapMs": 600_000})).await;
    let mut senders: Vec<String> = w.staff.iter().map(|s| s.1.clone()).collect();
    senders.retain(|s| customers_of(&w, s).len() >= 4);
    assert!(senders.len() >= 2, "two owners with four customers");
    let targets: Vec<i64> = senders[..2]
        .iter()
        .flat_map(|s| customers_of(&w, s).into_iter().take(4))
        .collect();
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "撤回", "taskType": 1, "targetType": 1, "targetIds": targets, "messageContent": "将被撤回"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let e = app
        .post(
            "/api/mass-task/execute",
            &app.admin_token,
            json!({"taskId": id, "immediate": true}),
        )
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    let db = &app.state.db;
    let submitted = || async {
        db.fetch_i64(
            query("SELECT COUNT(*) FROM group_send_batch WHERE task_id = ? AND state = 2").bind(id),
        )
        .await
        .unwrap()
    };
    for _ in 0..1200 {
        if submitted().await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(submitted().await, 2, "one batch per sender submitted");
    let batches = db
        .fetch_i64(query("SELECT COUNT(*) FROM group_send_batch WHERE task_id = ?").bind(id))
        .await
        .unwrap();
    assert_eq!(batches, 4, "two batches of two for each of two senders");
    assert_eq!(calls(&w, "add_msg_template"), 2);

    let c = app
        .post(
            &format!("/api/mass-task/{id}/cancel"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    eventually("both sends withdrawn", || {
        calls(&w, "cancel_groupmsg_send") >= 2
    })
    .await;
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "CANCELLED", "{d}");
    for _ in 0..1200 {
        let open = db
            .fetch_i64(
                query("SELECT COUNT(*) FROM t_group_send_result WHERE task_id = ? AND status <> 'FAILED'")
                    .bind(id),
            )
            .await
            .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = app
        .get(
            &format!("/api/v1/workbench/group-send/tasks/{id}?resultSize=100"),
            &app.admin_token,
        )
        .await;
    let results = d.data()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 8);
    for r in &results {
        assert_eq!(r["status"], "FAILED", "{r}");
        assert_eq!(r["errorMessage"], "cancelled", "{r}");
    }
    assert_eq!(d.data()["failedCount"], 8);
    let list = app
        .get("/api/mass-task/list?status=4", &app.admin_token)
        .await;
    assert_eq!(list.data()["list"][0]["id"], id, "{:?}", list.body);
    // WeCom: the two submitted sends are cancelled, no other send was made, nobody received it.
    let sends = w.sim.mass_sends();
    let sends = sends.as_array().unwrap();
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|s| s["cancelled"] == true), "{sends:?}");
    for s in sends {
        w.sim
            .confirm_mass_send(s["msgid"].as_str().unwrap(), None)
            .ok();
    }
    assert_eq!(w.sim.delivery_count(), 0);
    assert_eq!(
        calls(&w, "add_msg_template"),
        2,
        "waiting batches never sent"
    );
    assert_eq!(calls(&w, "cancel_groupmsg_send"), 2);
}

/// A mass task scheduled a few seconds ahead stays PENDING (seed 000 status 0) with nothing sent
/// until its time, then starts by itself and completes.
async fn a_scheduled_task_starts_on_time(app: TestApp) {
    let w = world(&app, 8, |_| {}).await;
    let ids: Vec<i64> = w.customers.iter().take(3).map(|c| c.0).collect();
    // Ten seconds ahead: the "still waiting" look below must come before it is due, on a
    // loaded machine too.
    let at = scrm::state::now_ms() + 10_000;
    let when = chrono::DateTime::from_timestamp_millis(at)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = app.post("/api/mass-task", &app.admin_token, json!({"taskName": "定时", "taskType": 1, "targetType": 1, "targetIds": ids, "messageContent": "准时到", "scheduledTime": when})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let e = app
        .post(
            "/api/mass-task/execute",
            &app.admin_token,
            json!({"taskId": id, "immediate": false}),
        )
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = app
        .get("/api/mass-task/list?status=0", &app.admin_token)
        .await;
    let (delivered, submitted) = (w.sim.delivery_count(), calls(&w, "add_msg_template"));
    // What was read before `at` must show the task waiting (it cannot start earlier: see
    // `started_at` below); a machine so loaded that the look came later proves nothing.
    if scrm::state::now_ms() < at {
        assert_eq!(
            list.data()["list"][0]["id"],
            id,
            "still waiting: {:?}",
            list.body
        );
        assert_eq!(delivered, 0);
        assert_eq!(submitted, 0);
    } else {
        eprintln!("the waiting look came after the task was due; not checked");
    }
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(w.sim.delivery_count(), 3);
    let started = app
        .state
        .db
        .fetch_i64(query("SELECT started_at FROM t_group_send_task WHERE id = ?").bind(id))
        .await
        .unwrap();
    assert!(started >= at, "started {started} before {at}");
}

/// The per-customer monthly quota is enforced by scrm: with `monthlyQuota` 1, customers who
/// already received a mass message this month are recorded FAILED with the quota reason and
/// left out of the WeCom call (WeCom itself would still have allowed it); -1 turns the check off.
async fn the_monthly_quota_holds_back_customers_over_it(app: TestApp) {
    let w = world(&app, 16, |_| {}).await;
    let sender = w.staff[0].1.clone();
    let mine = customers_of(&w, &sender);
    assert!(mine.len() >= 3);
    let ext = |cid: i64| w.customers.iter().find(|c| c.0 == cid).unwrap().1.clone();
    let r = app
        .get("/api/v1/operation/settings", &app.admin_token)
        .await;
    assert_eq!(r.data()["monthlyQuota"], 0, "WeCom's rule by default");
    settings(&app, json!({"monthlyQuota": 1})).await;
    let send = |ids: Vec<i64>, body: &'static str| {
        let sender = sender.clone();
        let app = &app;
        async move {
            let r = app
                .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"customerIds": ids}, "messageContent": text(body)}))
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            wait_final(app, r.data()["groupSendTaskId"].as_i64().unwrap()).await
        }
    };
    let d = send(vec![mine[0], mine[1]], "第一条").await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    let d = send(vec![mine[0], mine[1], mine[2]], "第二条").await;
    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    assert_eq!(
        (d["successCount"].as_i64(), d["failedCount"].as_i64()),
        (Some(1), Some(2))
    );
    for r in d["results"].as_array().unwrap() {
        if r["customerId"] == mine[2] {
            assert_eq!(r["status"], "SUCCESS", "{r}");
        } else {
            assert_eq!(r["status"], "FAILED", "{r}");
            assert!(r["errorMessage"].as_str().unwrap().contains("quota"), "{r}");
        }
    }
    let per = w.sim.deliveries_per_recipient();
    for (cid, n) in [(mine[0], 1), (mine[1], 1), (mine[2], 1)] {
        assert_eq!(per.get(&ext(cid)).copied(), Some(n), "customer {cid}");
    }
    settings(&app, json!({"monthlyQuota": -1})).await;
    let d = send(vec![mine[0]], "第三条").await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(
        w.sim.deliveries_per_recipient().get(&ext(mine[0])).copied(),
        Some(2)
    );
}

/// `batchSize` cuts one sender's recipients into several add_msg_template calls, and
/// `batchGapMs` spaces their starts; every customer still gets the message once.
async fn batches_of_one_sender_are_cut_and_spaced(app: TestApp) {
    let w = world(&app, 24, |_| {}).await;
    settings(&app, json!({"batchSize": 2, "batchGapMs": 1_000})).await;
    let sender = w
        .staff
        .iter()
        .map(|s| s.1.clone())
        .find(|s| customers_of(&w, s).len() >= 5)
        .expect("an owner of five customers");
    let ids: Vec<i64> = customers_of(&w, &sender).into_iter().take(5).collect();
    let r = app
        .post("/api/v1/workbench/group-send/tasks", &app.admin_token, json!({"senderAccountId": sender, "target": {"customerIds": ids}, "messageContent": text("分批")}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    assert_eq!(
        calls(&w, "add_msg_template"),
        3,
        "5 recipients in batches of 2"
    );
    let starts: Vec<(i64,)> = app
        .state
        .db
        .fetch_all(
            query("SELECT attempt_started_at FROM group_send_batch WHERE task_id = ? ORDER BY attempt_started_at")
                .bind(id),
        )
        .await
        .unwrap();
    assert_eq!(starts.len(), 3);
    // The job engine spaces the claims of the sender's batch jobs by the gap; each handler
    // records its start a few milliseconds after its claim, so allow that much jitter.
    for pair in starts.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 900, "spaced: {starts:?}");
    }
    let per = w.sim.deliveries_per_recipient();
    for cid in &ids {
        let ext = &w.customers.iter().find(|c| c.0 == *cid).unwrap().1;
        assert_eq!(per.get(ext).copied(), Some(1), "customer {cid}");
    }
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    unconfirmed_staff_are_reminded_up_to_the_setting,
    cancel_withdraws_submitted_batches_and_stops_the_rest,
    a_scheduled_task_starts_on_time,
    the_monthly_quota_holds_back_customers_over_it,
    batches_of_one_sender_are_cut_and_spaced,
);

/// Seed 000's target types 3 (group chats: the customers in them now) and 2 (tags): each
/// selected customer once; a deleted customer is recorded FAILED with the reason and not sent;
/// a member who left the group and the group's staff are not targets.
async fn mass_tasks_target_group_chats_and_tags_and_skip_deleted_customers(app: TestApp) {
    let w = world(&app, 12, |_| {}).await;
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    let c = |i: usize| w.customers[i].clone();
    let (a, left, tagged, deleted) = (c(0), c(1), c(2), c(3));
    let g = db
        .insert_id(query("INSERT INTO group_chat (tenant_id, chat_id, name, owner_userid, status, member_count, created_at, updated_at) VALUES (?, 'wrchat-ops', '福利群', ?, 0, 3, ?, ?)").bind(w.tenant).bind(&w.staff[0].1).bind(now).bind(now))
        .await
        .unwrap();
    for (userid, kind, customer, status) in [
        (a.1.clone(), 2, Some(a.0), 1),
        (left.1.clone(), 2, Some(left.0), 0),
        (w.staff[0].1.clone(), 1, None, 1),
    ] {
        db.execute(query("INSERT INTO group_chat_member (tenant_id, group_id, member_userid, member_type, customer_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").bind(w.tenant).bind(g).bind(userid).bind(kind).bind(customer).bind(status).bind(now).bind(now))
            .await
            .unwrap();
    }
    let t = tag(&app, &w, "老客", &[tagged.0, deleted.0, a.0]).await;
    db.execute(query("UPDATE customer SET status = 0 WHERE id = ?").bind(deleted.0))
        .await
        .unwrap();

    let run = |body: Value| {
        let app = &app;
        async move {
            let r = app.post("/api/mass-task", &app.admin_token, body).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            execute_now(app, r.data()["id"].as_i64().unwrap()).await
        }
    };
    let d = run(json!({"taskName": "群成员", "taskType": 1, "targetType": 3, "targetIds": [g], "messageContent": "群里的客户"})).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    let ids: Vec<i64> = d["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customerId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a.0], "only the customer still in the group");

    let d = run(json!({"taskName": "标签", "taskType": 1, "targetType": 2, "targetIds": [t], "messageContent": "标签客户"})).await;
    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    assert_eq!(d["targetCount"], 3);
    let results = d["results"].as_array().unwrap();
    let of = |cid: i64| results.iter().find(|r| r["customerId"] == cid).unwrap();
    assert_eq!(of(tagged.0)["status"], "SUCCESS");
    assert_eq!(of(a.0)["status"], "SUCCESS");
    assert_eq!(of(deleted.0)["status"], "FAILED");
    assert_eq!(of(deleted.0)["errorMessage"], "customer was deleted");

    let per = w.sim.deliveries_per_recipient();
    for (who, n) in [(&a, 2), (&left, 0), (&tagged, 1), (&deleted, 0)] {
        assert_eq!(per.get(&who.1).copied().unwrap_or(0), n, "{}", who.1);
    }
    assert_eq!(per.get(&w.staff[0].1), None, "staff are not sent to");
}

/// Seed 004's accounts: each WeCom member with its status mapped (1 → ACTIVE, 5 left the
/// company → EXPIRED, 2 disabled / 4 not activated → OFFLINE), only the caller's tenant.
async fn group_send_accounts_map_member_status(app: TestApp) {
    let tenant = tenant_of(&app).await;
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    for (userid, status) in [
        ("m-active", 1),
        ("m-disabled", 2),
        ("m-inactive", 4),
        ("m-left", 5),
    ] {
        db.execute(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(tenant).bind(userid).bind(format!("name-{userid}")).bind(status).bind(now).bind(now))
            .await
            .unwrap();
    }
    let (_, theirs) = app.other_tenant_admin("acc-co", "acc-admin").await;
    let other = app.get("/api/v1/auth/me", &theirs).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    db.execute(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, 'm-theirs', 'x', 1, ?, ?)").bind(other).bind(now).bind(now))
        .await
        .unwrap();
    let r = app
        .get(
            "/api/v1/workbench/wechat/group-send/accounts",
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let list = r.data().as_array().unwrap().clone();
    let of = |id: &str| list.iter().find(|a| a["accountId"] == id).cloned();
    for (id, want) in [
        ("m-active", "ACTIVE"),
        ("m-disabled", "OFFLINE"),
        ("m-inactive", "OFFLINE"),
        ("m-left", "EXPIRED"),
    ] {
        let a = of(id).unwrap_or_else(|| panic!("{id} listed: {list:?}"));
        assert_eq!(a["status"], want, "{a}");
        assert_eq!(a["accountType"], "WEWORK");
        assert_eq!(a["accountName"], format!("name-{id}"));
    }
    assert!(
        of("m-theirs").is_none(),
        "another tenant's member: {list:?}"
    );
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    mass_tasks_target_group_chats_and_tags_and_skip_deleted_customers,
    group_send_accounts_map_member_status,
);

/// SOP step 3 pushes a library material to the customer from the owner (a link card in WeCom's
/// mass send), and step 5 reminds the owner with an app message (message/send) carrying the
/// step's text; both log WeCom's answer.
async fn sop_pushes_materials_and_reminds_the_owner(app: TestApp) {
    let w = world(&app, 4, |_| {}).await;
    let r = app
        .post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "link", "title": "新品手册", "content": {"url": "https://example.com/handbook", "desc": "看看"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mid = r.data()["materialId"].as_i64().unwrap();
    let body = json!({"templateName": "推送与提醒", "templateType": 1, "triggerType": 4, "steps": [
        {"stepName": "推送资料", "stepType": 3, "delayTime": 0, "delayUnit": "minute", "actionContent": {"materialId": mid}},
        {"stepName": "提醒跟进", "stepType": 5, "delayTime": 0, "delayUnit": "minute", "actionContent": {"content": "请跟进新品手册"}}]});
    let r = app.post("/api/sop/template", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tid = r.data()["templateId"].as_i64().unwrap();
    let bad = app.post("/api/sop/template", &app.admin_token, json!({"templateName": "x", "triggerType": 4, "steps": [{"stepType": 3, "actionContent": {}}]})).await;
    assert_eq!(bad.status, 400, "push material needs materialId");
    let (cid, ext, owner) = w.customers[0].clone();
    let done = execute_one(&app, tid, cid).await;
    assert_eq!(done["steps"][0]["status"], 2, "{done}");
    assert_eq!(done["steps"][0]["result"]["errcode"], 0, "{done}");
    assert_eq!(done["steps"][1]["status"], 2, "{done}");
    assert_eq!(done["steps"][1]["result"]["errcode"], 0, "{done}");

    let all = w.sim.query_deliveries(&Default::default());
    let pushed: Vec<_> = all
        .iter()
        .filter(|d| d.kind == scrm_wecom_sim::DeliveryKind::MassSend)
        .collect();
    assert_eq!(pushed.len(), 1, "{all:?}");
    assert_eq!(
        (pushed[0].recipient.as_str(), pushed[0].sender.as_str()),
        (ext.as_str(), owner.as_str())
    );
    let card = pushed[0].content.to_string();
    assert!(
        card.contains("https://example.com/handbook") && card.contains("新品手册"),
        "{card}"
    );
    let reminded: Vec<_> = all
        .iter()
        .filter(|d| d.kind == scrm_wecom_sim::DeliveryKind::AppMessage)
        .collect();
    assert_eq!(reminded.len(), 1, "{all:?}");
    assert_eq!(reminded[0].recipient, owner);
    assert!(
        reminded[0].content.to_string().contains("请跟进新品手册"),
        "{:?}",
        reminded[0].content
    );
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    sop_pushes_materials_and_reminds_the_owner,
);
