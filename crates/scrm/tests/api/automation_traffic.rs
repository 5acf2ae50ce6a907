//! Traffic distribution (流量分发) against the WeCom simulator: a channel code bound to a pool
//! hands its new customers across the pool's WeCom members by round robin under a daily cap
//! (transfer_customer in WeCom, the owner in scrm), weight shares through the API, working
//! hours, a workflow's assign_pool step, validation naming each field, permissions, tenants.

use chrono::Datelike;
use scrm_db::query;
use scrm_wecom_sim::SimHandle;
use scrm_wecom_sim::scenarios::AddContact;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::{n, until};
use crate::integration::{connect, sim};
use crate::integration_sync::sync;

const BASE: &str = "/api/v1/automation/traffic-pools";

/// A simulator mirrored into scrm, and members who can have customers: (staff id, userid).
async fn world(app: &TestApp) -> (SimHandle, Vec<(i64, String)>) {
    let sim = sim(30).await;
    connect(app, &sim).await;
    assert_eq!(
        sync(app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    let members: Vec<String> = sim
        .company()
        .staff
        .iter()
        .filter(|s| s.contact_enabled && s.visible() && s.status == 1)
        .map(|s| s.userid.clone())
        .collect();
    let mut out = Vec::new();
    for u in members {
        let id = n(app, format!("SELECT id FROM staff WHERE userid = '{u}'")).await;
        out.push((id, u));
    }
    assert!(out.len() >= 4, "the simulated company has too few members");
    (sim, out)
}

async fn owner_of(app: &TestApp, customer: i64) -> Value {
    app.get(&format!("/api/v1/customers/{customer}"), &app.admin_token)
        .await
        .data()["followUserId"]
        .clone()
}

fn member_stats<'a>(stats: &'a Value, account: &str) -> &'a Value {
    stats["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["accountId"] == account)
        .unwrap_or_else(|| panic!("{account} in {stats}"))
}

/// Customers arriving through a code bound to a round-robin pool go to its members in turn; a
/// member at its daily cap is passed over. Each hand-over is WeCom's transfer_customer from the
/// code's member, and the owner in scrm.
async fn a_channel_code_hands_its_customers_round_robin_across_the_pool(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (_, reception) = staff[0].clone();
    let (m1_id, m1) = staff[1].clone();
    let (m2_id, m2) = staff[2].clone();
    let r = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({"name": "引流码", "staff": [{"userid": reception, "dailyLimit": 0}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.data()["id"].as_i64().unwrap();
    let state = r.data()["state"].as_str().unwrap().to_string();
    let r = app
        .post(
            BASE,
            &app.admin_token,
            json!({
                "name": "销售池",
                "strategy": "round_robin",
                "channelCodeIds": [code],
                "members": [{"accountId": m1}, {"accountId": m2, "dailyCap": 1}]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();
    assert_eq!(r.data()["members"][0]["accountType"], "WEWORK");
    assert_eq!(r.data()["members"][1]["staffId"], m2_id);
    until("the code in WeCom", || async {
        let c = app
            .get(&format!("/api/v1/channel-codes/{code}"), &app.admin_token)
            .await;
        (c.data()["syncStatus"] == "synced").then_some(())
    })
    .await;

    let mut customers = Vec::new();
    for name in ["甲", "乙", "丙"] {
        let ext = sim
            .customer_adds_staff(AddContact {
                userid: reception.clone(),
                name: Some(name.into()),
                state: Some(state.clone()),
                ..Default::default()
            })
            .unwrap()
            .external_userid;
        let id = until("the customer in scrm", || async {
            let id = n(
                &app,
                format!(
                    "SELECT COALESCE(MAX(id), 0) FROM customer WHERE external_userid = '{ext}'"
                ),
            )
            .await;
            (id > 0).then_some(id)
        })
        .await;
        customers.push(id);
    }
    // Every customer handed on: m1 twice, m2 once (its cap).
    let owners = until("three hand-overs", || async {
        let mut o = Vec::new();
        for c in &customers {
            o.push(owner_of(&app, *c).await);
        }
        o.iter()
            .all(|x| *x == json!(m1_id) || *x == json!(m2_id))
            .then_some(o)
    })
    .await;
    assert_eq!(
        owners.iter().filter(|o| **o == json!(m1_id)).count(),
        2,
        "{owners:?}"
    );
    assert_eq!(
        owners.iter().filter(|o| **o == json!(m2_id)).count(),
        1,
        "{owners:?}"
    );
    assert_eq!(
        sim.call_counts()
            .get("/cgi-bin/externalcontact/transfer_customer")
            .copied(),
        Some(3),
        "each hand-over is a WeCom transfer from the code's member"
    );
    let tr = app
        .get(
            &format!("/api/v1/customers/transfers?customerId={}", customers[0]),
            &app.admin_token,
        )
        .await;
    assert_eq!(tr.data()["list"][0]["kind"], "on_job", "{:?}", tr.body);

    let stats = app
        .get(&format!("{BASE}/{pool}/statistics"), &app.admin_token)
        .await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let s = stats.data();
    assert_eq!(member_stats(s, &m1)["assignedToday"], 2, "{s}");
    assert_eq!(member_stats(s, &m2)["assignedToday"], 1, "{s}");
    assert_eq!(member_stats(s, &m2)["availableNow"], false, "{s}");
    assert_eq!(member_stats(s, &m1)["availableNow"], true, "{s}");
    let a = app
        .get(&format!("{BASE}/{pool}/assignments"), &app.admin_token)
        .await;
    assert_eq!(a.data()["total"], 3, "{:?}", a.body);
    assert!(
        a.data()["list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["source"] == "channel_code" && x["status"] == "done"),
        "{:?}",
        a.body
    );
    sim.shutdown().await;
}

/// Customers with an owner outside `exclude`: ids.
async fn customers_not_of(app: &TestApp, exclude: &[i64], count: usize) -> Vec<i64> {
    let all: Vec<(i64, Option<i64>)> = app
        .state
        .db
        .fetch_all(query(
            "SELECT id, follow_user_id FROM customer WHERE status = 1 AND follow_user_id IS NOT NULL ORDER BY id",
        ))
        .await
        .unwrap();
    let out: Vec<i64> = all
        .into_iter()
        .filter(|(_, o)| o.is_some_and(|o| !exclude.contains(&o)))
        .map(|(id, _)| id)
        .take(count)
        .collect();
    assert_eq!(out.len(), count, "enough customers");
    out
}

/// Weight shares through the API; a member outside its working days takes nobody (and says
/// when it will); bad bodies name their field; viewers read, only managers change; tenants.
async fn pools_assign_by_weight_validate_and_stay_in_their_tenant(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (m1_id, m1) = staff[1].clone();
    let (m2_id, m2) = staff[2].clone();
    let (_, m3) = staff[3].clone();

    // Validation: each problem names its field, nothing is written.
    let cases = vec![
        (
            json!({"strategy": "weight", "members": [{"accountId": m1}]}),
            400,
            "name",
        ),
        (
            json!({"name": "p", "strategy": "random", "members": [{"accountId": m1}]}),
            400,
            "strategy",
        ),
        (json!({"name": "p", "members": []}), 400, "members"),
        (
            json!({"name": "p", "members": [{"accountId": "nobody-here"}]}),
            404,
            "members[0].accountId",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1}, {"accountId": m1}]}),
            400,
            "members[1].accountId",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1, "weight": 0}]}),
            400,
            "members[0].weight",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1, "dailyCap": -1}]}),
            400,
            "members[0].dailyCap",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1, "workStart": "09:00"}]}),
            400,
            "members[0].workEnd",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1, "workStart": "18:00", "workEnd": "09:00"}]}),
            400,
            "members[0].workEnd",
        ),
        (
            json!({"name": "p", "members": [{"accountId": m1, "workDays": [0]}]}),
            400,
            "members[0].workDays",
        ),
        (
            json!({"name": "p", "channelCodeIds": [987654], "members": [{"accountId": m1}]}),
            400,
            "channelCodeIds",
        ),
    ];
    for (body, status, field) in cases {
        let r = app.post(BASE, &app.admin_token, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        let fields = r.body["fields"].to_string() + &r.body.to_string();
        assert!(
            fields.contains(&format!("\"{field}\"")),
            "{body} names {field}: {:?}",
            r.body
        );
    }
    assert_eq!(n(&app, "SELECT COUNT(*) FROM traffic_pool".into()).await, 0);

    let r = app
        .post(
            BASE,
            &app.admin_token,
            json!({"name": "权重池", "strategy": "weight", "members": [{"accountId": m1, "weight": 3}, {"accountId": m2, "weight": 1}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();
    let targets = customers_not_of(&app, &[m1_id, m2_id], 4).await;
    let a = app
        .post(
            &format!("{BASE}/{pool}/assign"),
            &app.admin_token,
            json!({"customerIds": targets}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let results = a.data()["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    let to_m1 = results
        .iter()
        .filter(|r| r["result"]["accountId"] == m1)
        .count();
    assert_eq!((to_m1, results.len() - to_m1), (3, 1), "{results:?}");
    for r in results {
        let c = r["customerId"].as_i64().unwrap();
        let want = if r["result"]["accountId"] == m1 {
            m1_id
        } else {
            m2_id
        };
        assert_eq!(owner_of(&app, c).await, json!(want));
    }
    let missing = app
        .post(
            &format!("{BASE}/{pool}/assign"),
            &app.admin_token,
            json!({"customerIds": [99999999]}),
        )
        .await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);

    // Working hours: a member who works only tomorrow takes nobody today, and says when.
    let tomorrow = (chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .weekday()
        .number_from_monday()
        % 7)
        + 1;
    let r = app
        .post(
            BASE,
            &app.admin_token,
            json!({"name": "明天", "members": [{"accountId": m3, "workDays": [tomorrow], "workStart": "09:00", "workEnd": "18:00"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let off = r.data()["id"].as_i64().unwrap();
    let a = app
        .post(
            &format!("{BASE}/{off}/assign"),
            &app.admin_token,
            json!({"customerIds": [targets[0]]}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let res = &a.data()["results"][0];
    assert_eq!(res["ok"], false, "{res}");
    assert!(res["error"].as_str().unwrap().contains("next at"), "{res}");
    let stats = app
        .get(&format!("{BASE}/{off}/statistics"), &app.admin_token)
        .await;
    assert_eq!(member_stats(stats.data(), &m3)["availableNow"], false);

    // Update keeps a kept member's row; a viewer reads but cannot change or assign.
    let before = app.get(&format!("{BASE}/{pool}"), &app.admin_token).await;
    let m1_row = before.data()["members"][0]["id"].clone();
    let u = app
        .put(
            &format!("{BASE}/{pool}"),
            &app.admin_token,
            json!({"name": "权重池2", "strategy": "least_loaded", "members": [{"accountId": m1, "weight": 2}, {"accountId": m3}]}),
        )
        .await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert_eq!(u.data()["members"][0]["id"], m1_row);
    assert_eq!(u.data()["members"][0]["weight"], 2);
    assert_eq!(u.data()["members"][1]["accountId"], m3);
    assert_eq!(u.data()["strategy"], "least_loaded");
    let (_, viewer) = app.user_with_role("pool-viewer", "viewer").await;
    assert_eq!(app.get(BASE, &viewer).await.status, 200);
    assert_eq!(
        app.get(&format!("{BASE}/{pool}/statistics"), &viewer)
            .await
            .status,
        200
    );
    let denied = app
        .post(
            BASE,
            &viewer,
            json!({"name": "x", "members": [{"accountId": m1}]}),
        )
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    let denied = app
        .post(
            &format!("{BASE}/{pool}/assign"),
            &viewer,
            json!({"customerIds": [targets[0]]}),
        )
        .await;
    assert_eq!(denied.status, 403);

    // Another tenant sees none of it.
    let (_, other) = app
        .other_tenant_admin("pool-other", "pool-other-admin")
        .await;
    assert_eq!(app.get(&format!("{BASE}/{pool}"), &other).await.status, 404);
    assert_eq!(app.get(BASE, &other).await.data()["total"], 0);
    let a = app
        .post(
            &format!("{BASE}/{pool}/assign"),
            &other,
            json!({"customerIds": [targets[0]]}),
        )
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(
        app.delete(&format!("{BASE}/{pool}"), &other).await.status,
        404
    );
    let d = app
        .delete(&format!("{BASE}/{pool}"), &app.admin_token)
        .await;
    assert_eq!(d.status, 200);
    assert_eq!(
        app.get(&format!("{BASE}/{pool}"), &app.admin_token)
            .await
            .status,
        404
    );
    sim.shutdown().await;
}

/// A workflow's assign_pool step hands the customer to the pool's member (once, however often
/// the step runs), and waits — not fails — while no member works.
async fn a_workflow_step_assigns_through_a_pool(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (m1_id, m1) = staff[1].clone();
    let (_, m2) = staff[2].clone();
    let r = app
        .post(
            BASE,
            &app.admin_token,
            json!({"name": "池", "members": [{"accountId": m1}]}),
        )
        .await;
    let pool = r.data()["id"].as_i64().unwrap();
    let tomorrow = (chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .weekday()
        .number_from_monday()
        % 7)
        + 1;
    let r = app
        .post(
            BASE,
            &app.admin_token,
            json!({"name": "明天", "members": [{"accountId": m2, "workDays": [tomorrow]}]}),
        )
        .await;
    let off = r.data()["id"].as_i64().unwrap();
    let bad = app
        .post(
            "/api/v1/automation/workflows",
            &app.admin_token,
            json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "assign_pool", "poolId": 424242}]}),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(
        bad.body.to_string().contains("steps[0].poolId"),
        "{:?}",
        bad.body
    );
    let mut wfs = Vec::new();
    for p in [pool, off] {
        let r = app
            .post(
                "/api/v1/automation/workflows",
                &app.admin_token,
                json!({"name": format!("分配{p}"), "trigger": {"type": "manual"}, "steps": [{"key": "give", "type": "assign_pool", "poolId": p}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.data()["id"].as_i64().unwrap();
        let pb = app
            .post(
                &format!("/api/v1/automation/workflows/{id}/publish"),
                &app.admin_token,
                json!({}),
            )
            .await;
        assert_eq!(pb.status, 200, "{:?}", pb.body);
        wfs.push(id);
    }
    let c = customers_not_of(&app, &[m1_id], 1).await[0];
    for wf in &wfs {
        let r = app
            .post(
                &format!("/api/v1/automation/workflows/{wf}/runs"),
                &app.admin_token,
                json!({"customerIds": [c]}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let run_of = |wf: i64| {
        let app = &app;
        async move {
            let l = app
                .get(
                    &format!("/api/v1/automation/workflow-runs?workflowId={wf}"),
                    &app.admin_token,
                )
                .await;
            let id = l.data()["list"][0]["id"].as_i64()?;
            Some(
                app.get(
                    &format!("/api/v1/automation/workflow-runs/{id}"),
                    &app.admin_token,
                )
                .await
                .data()
                .clone(),
            )
        }
    };
    let done = until("the pool run done", || async {
        run_of(wfs[0]).await.filter(|r| r["status"] == 2)
    })
    .await;
    let step = &done["steps"][0];
    assert_eq!(step["status"], 2, "{done}");
    assert_eq!(step["result"]["accountId"], m1, "{done}");
    assert_eq!(step["result"]["poolId"], pool, "{done}");
    assert_eq!(owner_of(&app, c).await, json!(m1_id));
    // The other run waits for tomorrow's member: its step is due again later, not failed.
    let run_id = until("the waiting run", || async {
        run_of(wfs[1]).await.and_then(|r| r["id"].as_i64())
    })
    .await;
    let later = until("the step to wait", || async {
        let at = n(
            &app,
            format!("SELECT run_at FROM job WHERE unique_key = 'wf:{run_id}:0' AND state = 0"),
        )
        .await;
        (at > chrono::Utc::now().timestamp_millis() + 30_000).then_some(at)
    })
    .await;
    assert!(later > 0);
    let r = run_of(wfs[1]).await.unwrap();
    assert_ne!(r["status"], 3, "{r}");
    assert_eq!(
        n(
            &app,
            format!("SELECT COUNT(*) FROM traffic_assignment WHERE pool_id = {off}")
        )
        .await,
        0
    );
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    a_channel_code_hands_its_customers_round_robin_across_the_pool,
    pools_assign_by_weight_validate_and_stay_in_their_tenant,
    a_workflow_step_assigns_through_a_pool,
);
