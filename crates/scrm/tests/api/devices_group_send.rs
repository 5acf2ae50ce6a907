//! Seed 004's group send with a device account beside a WeCom member, end to end against the
//! WeCom simulator and the gateway simulator in one task: per-customer results of both
//! providers, a gateway that drops mid-task (nothing lost, nothing sent twice), the per-account
//! gap as scheduling, refusals at creation; and commands of an account that was offline going
//! out one gap apart when it returns.

use std::collections::HashMap;

use scrm::operation::mass::Settings;
use scrm_db::{Backend, query};
use scrm_wecom::device::AccountStatus;
use scrm_wecom_sim::gateway::{DropPoint, GatewaySim};
use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::helpers::until;
use crate::helpers::{TestApp, spawn_app_with};

/// The per-account gap in these tests (the default is seed 002's 3000-8000 ms).
const GAP_MIN_MS: i64 = 200;

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("SCRM_DEVICE_SEND_GAP_MS", "200-300")]).await
}

/// A WeCom company in the simulator mirrored into scrm: (customer id, external_userid, owner).
async fn wecom_world(app: &TestApp) -> (SimHandle, Vec<String>, Vec<(i64, String, String)>) {
    let mut cfg = SimConfig::default();
    cfg.size.customers = 30;
    cfg.size.staff = 3;
    cfg.size.avg_follows = 1.0;
    let sim = Simulator::start(cfg).await.unwrap();
    let tenant = 1;
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
    let mut ids = HashMap::new();
    for (userid, name) in staff_rows {
        let id = db
            .insert_id(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)").bind(tenant).bind(&userid).bind(name).bind(now).bind(now))
            .await
            .unwrap();
        ids.insert(userid.clone(), id);
        staff.push(userid);
    }
    let mut customers = Vec::new();
    for (ext, name, owner) in cust_rows {
        let id = db
            .insert_id(query("INSERT INTO customer (tenant_id, external_userid, name, follow_user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(tenant).bind(&ext).bind(name).bind(ids.get(&owner).copied()).bind(now).bind(now))
            .await
            .unwrap();
        customers.push((id, ext, owner));
    }
    for (key, v) in [("mass.first_poll_ms", 100), ("mass.poll_interval_ms", 200)] {
        Settings::set(db, tenant, key, v).await.unwrap();
    }
    (sim, staff, customers)
}

/// A gateway registered through the API with the simulator connected as it, holding `wxid_a`
/// with friends f1..f4 and rooms r1..r4; returns once scrm has the four friends.
async fn gateway(app: &TestApp) -> GatewaySim {
    let token = crate::gateway::register(app).await;
    let sim = GatewaySim::new();
    sim.add_device("wxid_a", "Alice's phone");
    for i in 1..=4 {
        sim.add_friend("wxid_a", &format!("f{i}"), &format!("friend {i}"));
        sim.add_room(
            "wxid_a",
            &format!("r{i}@chatroom"),
            &format!("room {i}"),
            &["wxid_a", "f1"],
        );
    }
    crate::gateway::connect(app, &sim, &token);
    until("the first friend sync", || async {
        let r = app
            .get("/api/v1/devices/accounts/wxid_a/friends", &app.admin_token)
            .await;
        (r.data().as_array().map(Vec::len) == Some(4)).then_some(())
    })
    .await;
    sim
}

async fn wait_final(app: &TestApp, id: i64) -> Value {
    until(&format!("group send {id} to finish"), || async {
        let r = app
            .get(
                &format!("/api/v1/workbench/group-send/tasks/{id}?resultSize=1000"),
                &app.admin_token,
            )
            .await;
        let st = r.data()["status"].as_str().unwrap_or("").to_string();
        ["COMPLETED", "PARTIAL_SUCCESS", "FAILED", "CANCELLED"]
            .contains(&st.as_str())
            .then(|| r.data().clone())
    })
    .await
}

/// Release times of an account's commands from `source`, in order.
async fn released(app: &TestApp, source: &str) -> Vec<i64> {
    let rows: Vec<(Option<i64>,)> = app
        .state
        .db
        .fetch_all(
            query("SELECT released_at FROM device_command WHERE account_wxid = 'wxid_a' AND source = ? ORDER BY released_at")
                .bind(source),
        )
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0.expect("released")).collect()
}

fn assert_spaced(times: &[i64]) {
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= GAP_MIN_MS,
            "commands of one account released {} ms apart: {times:?}",
            w[1] - w[0]
        );
    }
}

async fn a_device_account_sends_beside_a_wecom_member_in_one_group_send(app: TestApp) {
    let (wecom, staff, customers) = wecom_world(&app).await;
    let gw = gateway(&app).await;
    let t = &app.admin_token;
    let member = staff[0].clone();
    let mine: Vec<&(i64, String, String)> =
        customers.iter().filter(|c| c.2 == member).take(3).collect();
    let others: Vec<&(i64, String, String)> =
        customers.iter().filter(|c| c.2 != member).take(5).collect();
    assert_eq!((mine.len(), others.len()), (3, 5), "the simulated company");
    // f1..f3 are three of the other customers on Alice's phone; a fourth customer is linked to
    // a friend scrm knows but the phone no longer has; the fifth nobody chosen can reach.
    for (i, c) in others.iter().take(3).enumerate() {
        let r = app
            .put(
                &format!(
                    "/api/v1/devices/accounts/wxid_a/friends/f{}/customer",
                    i + 1
                ),
                t,
                json!({"customerId": c.0}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    app.state
        .db
        .execute(
            query("INSERT INTO device_friend (tenant_id, account_wxid, friend_wxid, nickname, deleted, customer_id, updated_at) VALUES (1, 'wxid_a', 'ghost', 'Ghost', 0, ?, 0)")
                .bind(others[3].0),
        )
        .await
        .unwrap();
    let r = app.get("/api/v1/devices/accounts/wxid_a/friends", t).await;
    let f1 = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["wxid"] == "f1")
        .unwrap()
        .clone();
    assert_eq!(f1["customerId"], others[0].0);
    // Linking is checked: an unknown customer or friend is 404, nothing changed.
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/friends/f4/customer",
            t,
            json!({"customerId": 999_999}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (404, "CUSTOMER_NOT_FOUND"),
        "{:?}",
        r.body
    );
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/friends/nobody/customer",
            t,
            json!({"customerId": others[4].0}),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);

    // The seed's account list offers both kinds of sender.
    let r = app
        .get("/api/v1/workbench/wechat/group-send/accounts", t)
        .await;
    let accounts = r.data().as_array().unwrap();
    assert!(
        accounts.iter().any(|a| a["accountId"] == "wxid_a"
            && a["accountType"] == "WECHAT"
            && a["status"] == "ACTIVE"),
        "{accounts:?}"
    );
    assert!(
        accounts
            .iter()
            .any(|a| a["accountId"] == member.as_str() && a["accountType"] == "WEWORK")
    );

    // The gateway drops after running its second command without acknowledging it: scrm sends
    // it again on the new connection and the device answers from its first run.
    gw.drop_at_command(2, DropPoint::BeforeAck);
    let all: Vec<i64> = mine.iter().chain(others.iter()).map(|c| c.0).collect();
    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountId": member, "senderAccountIds": ["wxid_a"],
                   "target": {"customerIds": all}, "taskName": "双十一",
                   "messageContent": {"type": "TEXT", "data": {"text": "双十一快乐"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "PARTIAL_SUCCESS", "{d}");
    assert_eq!(d["targetCount"], 8);
    assert_eq!(d["successCount"], 6, "{d}");
    assert_eq!(d["failedCount"], 2, "{d}");
    let types: Vec<&Value> = d["senderAccounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["accountType"])
        .collect();
    assert_eq!(types, vec!["WEWORK", "WECHAT"], "{d}");
    let results = d["results"].as_array().unwrap();
    let by = |cid: i64| results.iter().find(|r| r["customerId"] == cid).unwrap();
    for c in &mine {
        assert_eq!(by(c.0)["status"], "SUCCESS", "{d}");
        assert_eq!(by(c.0)["senderUserid"], member.as_str());
    }
    for c in others.iter().take(3) {
        assert_eq!(by(c.0)["status"], "SUCCESS", "{d}");
        assert_eq!(by(c.0)["senderUserid"], "wxid_a");
    }
    assert_eq!(by(others[3].0)["status"], "FAILED");
    assert!(
        by(others[3].0)["errorMessage"]
            .as_str()
            .unwrap()
            .contains("neither a friend"),
        "{d}"
    );
    assert_eq!(
        by(others[4].0)["errorMessage"],
        "not a customer or friend of any chosen sender account"
    );

    // WeCom delivered to the member's customers once each and to nobody else.
    let per = wecom.deliveries_per_recipient();
    for c in &customers {
        let want = usize::from(mine.iter().any(|m| m.0 == c.0));
        assert_eq!(
            per.get(&c.1).copied().unwrap_or(0),
            want,
            "customer {}",
            c.0
        );
    }
    // The phone sent to each linked friend once, though one command went out twice.
    let sent = gw.deliveries();
    for f in ["f1", "f2", "f3"] {
        let n = sent
            .iter()
            .filter(|x| x.to == f && x.kind == "send_text")
            .count();
        assert_eq!(n, 1, "{f}: {sent:?}");
    }
    assert!(sent.iter().all(|x| x.to != "ghost" && x.to != "f4"));
    assert!(gw.connections() >= 2, "the gateway reconnected");
    assert!(
        gw.duplicates() >= 1,
        "a command was sent again and run once"
    );
    // The device commands were released one gap apart (scheduling, not a sleeping worker).
    assert_spaced(&released(&app, "group_send").await);
    // The list shows the task under its first sender.
    let list = app
        .get("/api/v1/workbench/group-send/tasks?taskName=双十一", t)
        .await;
    assert_eq!(list.data()["records"][0]["groupSendTaskId"], id);
    assert_eq!(list.data()["records"][0]["successCount"], 6);

    // A task a device account cannot carry is refused when it is created, naming the account;
    // so are unknown and logged-out accounts; nothing is stored.
    let before = app
        .state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM t_group_send_task"))
        .await
        .unwrap();
    let mini = json!({"type": "MINIPROGRAM", "data": {"title": "店", "pic_media_id": "m", "appid": "wx1", "page": "p"}});
    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountId": member, "senderAccountIds": ["wxid_a"], "target": {"customerIds": all}, "messageContent": mini}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "CAPABILITY_NOT_SUPPORTED"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["fields"][0]["field"], "senderAccountIds[0]");
    let text = json!({"type": "TEXT", "data": {"text": "hi"}});
    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountIds": [member, "nobody"], "target": {"customerIds": all}, "messageContent": text}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (404, "SENDER_ACCOUNT_NOT_FOUND"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["fields"][0]["field"], "senderAccountIds[1]");
    gw.set_status("wxid_a", AccountStatus::Expired);
    crate::gateway::account_status(&app, "wxid_a", "EXPIRED").await;
    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountId": "wxid_a", "target": {"customerIds": all}, "messageContent": text}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "SENDER_ACCOUNT_EXPIRED"),
        "{:?}",
        r.body
    );
    // Logged in again, then the phone's gateway gone: OFFLINE, refused too (a group send is
    // sent now or at its time by the accounts chosen; a group push waits for the device).
    gw.set_status("wxid_a", AccountStatus::Active);
    crate::gateway::account_status(&app, "wxid_a", "ACTIVE").await;
    gw.stop();
    gw.drop_connection();
    crate::gateway::account_status(&app, "wxid_a", "OFFLINE").await;
    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountIds": [member, "wxid_a"], "target": {"customerIds": all}, "messageContent": text}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "SENDER_ACCOUNT_OFFLINE"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["fields"][0]["field"], "senderAccountIds[1]");
    let after = app
        .state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM t_group_send_task"))
        .await
        .unwrap();
    assert_eq!(after, before);
    gw.stop();
    wecom.shutdown().await;
}

async fn commands_held_while_an_account_is_offline_keep_their_gap(app: TestApp) {
    let gw = gateway(&app).await;
    let t = &app.admin_token;
    gw.set_status("wxid_a", AccountStatus::Offline);
    crate::gateway::account_status(&app, "wxid_a", "OFFLINE").await;
    let rooms: Vec<String> = (1..=4).map(|i| format!("r{i}@chatroom")).collect();
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"accountId": "wxid_a", "chatroomIds": rooms, "taskName": "offline",
                   "messageContent": {"type": "TEXT", "data": {"text": "晚上好"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupPushId"].as_i64().unwrap();
    let created = scrm::state::now_ms();
    // While the account is offline its commands wait for it, unreleased: their release jobs
    // put themselves off.
    until("the release jobs to have looked", || async {
        let n = app
            .state
            .db
            .fetch_i64(
                query("SELECT COUNT(*) FROM job WHERE kind = 'devices.command.release' AND state = 0 AND run_at > ?")
                    .bind(created + 2_000),
            )
            .await
            .unwrap();
        (n >= 1).then_some(())
    })
    .await;
    let ready = app
        .state
        .db
        .fetch_i64(query(
            "SELECT COUNT(*) FROM device_command WHERE source = 'group_push' AND status <> 'pending'",
        ))
        .await
        .unwrap();
    assert_eq!(ready, 0, "nothing released to an offline account");
    assert!(gw.deliveries().iter().all(|d| d.kind != "send_text"));
    // Back online: the four go out, one gap apart, once each.
    gw.set_status("wxid_a", AccountStatus::Active);
    let done = until("the push to finish", || async {
        let r = app
            .get(&format!("/api/v1/devices/group-pushes/{id}"), t)
            .await;
        (r.data()["status"] == "COMPLETED").then(|| r.data().clone())
    })
    .await;
    assert_eq!(done["successCount"], 4);
    assert_spaced(&released(&app, "group_push").await);
    for room in &rooms {
        let n = gw.deliveries().iter().filter(|d| &d.to == room).count();
        assert_eq!(n, 1, "{room}");
    }
    // The list of group pushes, with counts and filters.
    let r = app
        .get(
            "/api/v1/devices/group-pushes?accountId=wxid_a&page=1&size=10",
            t,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["total"], 1);
    let rec = &r.data()["records"][0];
    assert_eq!(rec["groupPushId"], id);
    assert_eq!(rec["targetCount"], 4);
    assert_eq!(rec["successCount"], 4);
    assert_eq!(rec["status"], "COMPLETED");
    let r = app
        .get("/api/v1/devices/group-pushes?status=FAILED", t)
        .await;
    assert_eq!(r.data()["total"], 0);
    let r = app.get("/api/v1/devices/group-pushes?status=NOPE", t).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    gw.stop();
}

async fn account_health_is_scored_daily_for_both_kinds_of_sender(app: TestApp) {
    let db = &app.state.db;
    let now = scrm::state::now_ms();
    let day = 24 * 3600 * 1000i64;
    // A WeCom member with 8 customers now; in the window one customer deleted them, they
    // deleted another (and one deletion is older than the window); 4 sends, 1 failed.
    let staff = db
        .insert_id(query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (1, 'lisi', '李四', 1, ?, ?)").bind(now).bind(now))
        .await
        .unwrap();
    for i in 0..8 {
        let c = db
            .insert_id(query("INSERT INTO customer (tenant_id, external_userid, name, follow_user_id, created_at, updated_at) VALUES (1, ?, 'c', ?, ?, ?)").bind(format!("wm{i}")).bind(staff).bind(now).bind(now))
            .await
            .unwrap();
        db.execute(query("INSERT INTO customer_follow (tenant_id, customer_id, staff_id, status, created_at, updated_at) VALUES (1, ?, ?, 1, ?, ?)").bind(c).bind(staff).bind(now).bind(now))
            .await
            .unwrap();
    }
    for (kind, at) in [
        ("customer_deleted_staff", now - day),
        ("staff_deleted_customer", now - 2 * day),
        ("staff_deleted_customer", now - 40 * day),
    ] {
        db.execute(query("INSERT INTO customer_deletion (tenant_id, external_userid, staff_userid, kind, occurred_at, created_at) VALUES (1, 'gone', 'lisi', ?, ?, ?)").bind(kind).bind(at).bind(at))
            .await
            .unwrap();
    }
    for (i, st) in ["SUCCESS", "SUCCESS", "SUCCESS", "FAILED"]
        .iter()
        .enumerate()
    {
        db.execute(query("INSERT INTO t_group_send_result (tenant_id, task_id, customer_id, sender_userid, status, create_time, update_time) VALUES (1, 1, ?, 'lisi', ?, ?, ?)").bind(i as i64 + 1).bind(*st).bind(now).bind(now))
            .await
            .unwrap();
    }
    // A device account with 3 friends, 2 added and 1 deleted in the window, 2 sends both failed.
    db.execute(query("INSERT INTO device_account (tenant_id, gateway_id, wxid, nickname, status, auto_like, created_at, updated_at) VALUES (1, 1, 'wxid_h', 'H', 'ACTIVE', 0, ?, ?)").bind(now).bind(now))
        .await
        .unwrap();
    for f in ["a", "b", "c"] {
        db.execute(query("INSERT INTO device_friend (tenant_id, account_wxid, friend_wxid, nickname, deleted, updated_at) VALUES (1, 'wxid_h', ?, ?, 0, ?)").bind(f).bind(f).bind(now))
            .await
            .unwrap();
    }
    for (i, ev) in ["friend_added", "friend_added", "friend_deleted"]
        .iter()
        .enumerate()
    {
        db.execute(query("INSERT INTO device_event (tenant_id, gateway_id, event_id, event, account_wxid, data, received_at) VALUES (1, 1, ?, ?, 'wxid_h', '{}', ?)").bind(format!("e{i}")).bind(*ev).bind(now - day))
            .await
            .unwrap();
    }
    for i in 0..2 {
        db.execute(query("INSERT INTO device_command (tenant_id, command_id, account_wxid, command, data, status, sends, source, source_id, created_at, acked_at) VALUES (1, ?, 'wxid_h', 'send_text', '{}', 'failed', 1, 'group_send', 0, ?, ?)").bind(format!("c{i}")).bind(now).bind(now))
            .await
            .unwrap();
    }
    // Nothing computed yet: no score.
    let t = &app.admin_token;
    let r = app.get("/api/v1/devices/accounts/lisi/health", t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["score"], Value::Null);
    // The daily job is on the engine's schedule; one run scores both (yesterday, then today).
    let scheduled = db
        .fetch_i64(query("SELECT COUNT(*) FROM job_schedule WHERE name = 'devices.health.score' AND kind = 'devices.health.score'"))
        .await
        .unwrap();
    assert_eq!(scheduled, 1);
    assert!(
        scrm::devices::health::compute_all(db, now - day)
            .await
            .unwrap()
            >= 2
    );
    assert!(scrm::devices::health::compute_all(db, now).await.unwrap() >= 2);
    let r = app.get("/api/v1/devices/accounts/lisi/health", t).await;
    let d = r.data();
    assert_eq!(d["accountType"], "WEWORK");
    let h = &d["history"][0];
    assert_eq!(
        (
            h["relations"].as_i64(),
            h["losses"].as_i64(),
            h["deletions"].as_i64(),
            h["sends"].as_i64(),
            h["sendFailures"].as_i64()
        ),
        (Some(8), Some(1), Some(1), Some(4), Some(1)),
        "{d}"
    );
    // churn 2/10 → 60 × 0.6 = 36; failures 1/4 → 40 × 0.75 = 30.
    assert_eq!(d["score"], 66, "{d}");
    assert_eq!(d["history"].as_array().unwrap().len(), 2, "one row per day");
    let r = app
        .get("/api/v1/devices/accounts/wxid_h/health?days=1", t)
        .await;
    let d = r.data();
    assert_eq!(d["accountType"], "WECHAT");
    let h = &d["history"][0];
    assert_eq!(
        (
            h["relations"].as_i64(),
            h["adds"].as_i64(),
            h["losses"].as_i64(),
            h["sends"].as_i64(),
            h["sendFailures"].as_i64()
        ),
        (Some(3), Some(2), Some(1), Some(2), Some(2)),
        "{d}"
    );
    // churn 1/4 → 60 × 0.5 = 30; every send failed → 0.
    assert_eq!(d["score"], 30, "{d}");
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
    // The account list shows each account's latest score (today's), null where none ran.
    let r = app.get("/api/v1/devices/accounts", t).await;
    let list = r.data().as_array().unwrap();
    let of = |id: &str| list.iter().find(|a| a["accountId"] == id).cloned().unwrap();
    assert_eq!(of("lisi")["healthScore"], 66, "{list:?}");
    assert_eq!(of("wxid_h")["healthScore"], 30, "{list:?}");
    assert_eq!(of("wxid_h")["healthDay"], h["day"], "{list:?}");
    // Checked: days, unknown accounts, other tenants, and a login.
    let r = app
        .get("/api/v1/devices/accounts/wxid_h/health?days=0", t)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = app.get("/api/v1/devices/accounts/nobody/health", t).await;
    assert_eq!((r.status, r.error()), (404, "SENDER_ACCOUNT_NOT_FOUND"));
    let (_, theirs) = app.other_tenant_admin("other co", "boss.o").await;
    let r = app
        .get("/api/v1/devices/accounts/wxid_h/health", &theirs)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = app.get("/api/v1/devices/accounts/wxid_h/health", "").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

/// A traffic pool of two device accounts hands customers across them by its strategy (round
/// robin, one capped at one a day), and a group send naming both sends each customer through the
/// account it was handed to, not the first account that has the customer as a friend.
async fn a_traffic_pool_hands_customers_to_device_accounts_and_group_sends_follow(app: TestApp) {
    let (_wecom, staff, customers) = wecom_world(&app).await;
    let t = &app.admin_token;
    let member = staff[0].clone();
    let targets: Vec<i64> = customers
        .iter()
        .filter(|c| c.2 != member)
        .take(4)
        .map(|c| c.0)
        .collect();
    assert_eq!(targets.len(), 4, "the simulated company");
    let token = crate::gateway::register(&app).await;
    let gw = GatewaySim::new();
    for w in ["wxid_a", "wxid_b"] {
        gw.add_device(w, w);
        for i in 1..=4 {
            gw.add_friend(w, &format!("f{i}"), &format!("friend {i}"));
        }
    }
    crate::gateway::connect(&app, &gw, &token);
    for w in ["wxid_a", "wxid_b"] {
        until("the friend syncs", || async {
            let r = app
                .get(&format!("/api/v1/devices/accounts/{w}/friends"), t)
                .await;
            (r.data().as_array().map(Vec::len) == Some(4)).then_some(())
        })
        .await;
        // The same four customers are friends of both phones.
        for (i, c) in targets.iter().enumerate() {
            let r = app
                .put(
                    &format!("/api/v1/devices/accounts/{w}/friends/f{}/customer", i + 1),
                    t,
                    json!({"customerId": c}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    let r = app
        .post(
            "/api/v1/automation/traffic-pools",
            t,
            json!({"name": "phones", "strategy": "round_robin",
                   "members": [{"accountId": "wxid_a"}, {"accountId": "wxid_b", "dailyCap": 1}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/automation/traffic-pools/{pool}/assign"),
            t,
            json!({"customerIds": targets}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let handed: Vec<String> = r.data()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"]["accountId"].as_str().unwrap_or("?").to_string())
        .collect();
    // Round robin a, b, then b is at its cap of one today: a, a.
    assert_eq!(
        handed,
        ["wxid_a", "wxid_b", "wxid_a", "wxid_a"],
        "{:?}",
        r.body
    );

    let r = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            t,
            json!({"senderAccountId": member, "senderAccountIds": ["wxid_a", "wxid_b"],
                   "target": {"customerIds": targets}, "taskName": "pool",
                   "messageContent": {"type": "TEXT", "data": {"text": "hello"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupSendTaskId"].as_i64().unwrap();
    let d = wait_final(&app, id).await;
    assert_eq!(d["status"], "COMPLETED", "{d}");
    let results = d["results"].as_array().unwrap();
    for (c, want) in targets.iter().zip(&handed) {
        let r = results.iter().find(|r| r["customerId"] == *c).unwrap();
        assert_eq!(r["senderUserid"], want.as_str(), "{d}");
    }
    let sent_by = |w: &str| {
        gw.deliveries()
            .iter()
            .filter(|x| x.account == w && x.kind == "send_text")
            .count()
    };
    assert_eq!((sent_by("wxid_a"), sent_by("wxid_b")), (3, 1));
    gw.stop();
}

scrm_db::db_tests!(crate::devices_group_send::spawn;
    a_traffic_pool_hands_customers_to_device_accounts_and_group_sends_follow,
    account_health_is_scored_daily_for_both_kinds_of_sender,
    a_device_account_sends_beside_a_wecom_member_in_one_group_send,
    commands_held_while_an_account_is_offline_keep_their_gap);
