//! Customer changes made in scrm reach WeCom (the simulator) through jobs: tags and groups
//! created, renamed and deleted; customers' tags marked; 在职/离职继承 followed to the end by
//! transfer_result. Failed pushes are visible on the record and in the dead letters, and retried.

use std::time::Duration;

use scrm_db::query;
use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const CORP: &str = "wwsim00000000000001";
const SECRET: &str = "sim-app-secret";

/// A simulated company mirrored into scrm: three active staff, customers owned by their one
/// follower.
struct World {
    sim: SimHandle,
    tenant: i64,
    app: scrm_wecom::AppClient,
    /// (staff row id, userid)
    staff: Vec<(i64, String)>,
    /// (customer id, external_userid, owner staff row id)
    customers: Vec<(i64, String, i64)>,
}

async fn world(app: &TestApp) -> World {
    let mut cfg = SimConfig::default();
    cfg.size.customers = 12;
    cfg.size.staff = 3;
    cfg.size.avg_follows = 1.0;
    let sim = Simulator::start(cfg).await.unwrap();
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let client = scrm::operation::wecom::simulator_app(&sim.base_url(), CORP, SECRET).unwrap();
    scrm::operation::wecom::register(tenant, client.clone(), 1000002);
    let (staff_rows, cust_rows) = {
        let c = sim.company();
        let staff: Vec<(String, String)> = c
            .staff
            .iter()
            .map(|s| (s.userid.clone(), s.name.clone()))
            .collect();
        let cust: Vec<(String, String, String)> = (0..c.customers.len() as u32)
            .filter_map(|i| {
                let (_, f) = c.follows_of(i).next()?;
                let owner = c.staff[f.staff as usize].userid.clone();
                Some((c.external_userid(i), c.customer_name(i), owner))
            })
            .collect();
        (staff, cust)
    };
    let db = &app.state.db;
    let now = scrm::state::now_ms();
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
        let owner_id = staff.iter().find(|s| s.1 == owner).unwrap().0;
        let id = db
            .insert_id(query("INSERT INTO customer (tenant_id, external_userid, name, follow_user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)").bind(tenant).bind(&ext).bind(name).bind(owner_id).bind(now).bind(now))
            .await
            .unwrap();
        customers.push((id, ext, owner_id));
    }
    World {
        sim,
        tenant,
        app: client,
        staff,
        customers,
    }
}

impl World {
    fn userid(&self, staff_id: i64) -> &str {
        &self.staff.iter().find(|s| s.0 == staff_id).unwrap().1
    }

    /// The tags (names) the simulator's follow of (customer, staff) carries; None: no follow.
    fn follow_tags(&self, ext: &str, userid: &str) -> Option<Vec<String>> {
        let c = self.sim.company();
        let cu = c.customer_by_id(ext)?;
        let s = c.staff_by_userid(userid)?;
        let f = c.follow_of(cu, s)?;
        Some(
            c.follows[f as usize]
                .tags
                .iter()
                .map(|t| &c.tags[*t as usize])
                .filter(|t| !t.deleted)
                .map(|t| t.id.clone())
                .collect(),
        )
    }

    /// The simulator's live tag with this id: (name, group name).
    fn wecom_tag(&self, id: &str) -> Option<(String, String)> {
        let c = self.sim.company();
        let t = &c.tags[*c.tag_index.get(id)? as usize];
        (!t.deleted).then(|| (t.name.clone(), c.tag_groups[t.group as usize].name.clone()))
    }
}

/// Wait until no push is pending; returns every push, newest first.
async fn settled(app: &TestApp) -> Vec<Value> {
    for _ in 0..300 {
        let r = app
            .get("/api/v1/wecom-pushes?size=200", &app.admin_token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let list = r.data()["list"].as_array().unwrap().clone();
        // A push is marked done or failed by its job, which is finished (done or dead) just
        // after; settled means both.
        let running = app
            .state
            .db
            .fetch_i64(query(
                "SELECT COUNT(*) FROM job WHERE kind = 'customers.wecom_push' AND state = 1",
            ))
            .await
            .unwrap();
        if running == 0 && list.iter().all(|p| p["status"] != "pending") {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pushes still pending");
}

async fn tag_row(app: &TestApp, id: i64) -> Value {
    let r = app.get("/api/v1/tags", &app.admin_token).await;
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn tag_changes_reach_wecom_and_failed_pushes_are_retried(app: TestApp) {
    let w = world(&app).await;
    let r = app
        .post(
            "/api/v1/tag-groups",
            &app.admin_token,
            json!({"name": "意向", "tags": ["高"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let group = r.data()["id"].as_i64().unwrap();
    let tag = r.data()["tags"][0]["id"].as_i64().unwrap();
    let pushes = settled(&app).await;
    assert!(pushes.iter().all(|p| p["status"] == "done"), "{pushes:?}");
    let wecom_id = tag_row(&app, tag).await["wecomTagId"]
        .as_str()
        .expect("the tag got WeCom's id")
        .to_string();
    assert_eq!(w.wecom_tag(&wecom_id), Some(("高".into(), "意向".into())));

    // A second tag goes into the same WeCom group.
    let r = app
        .post(
            "/api/v1/tags",
            &app.admin_token,
            json!({"groupId": group, "name": "低"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let low = r.data()["id"].as_i64().unwrap();
    settled(&app).await;
    let low_wecom = tag_row(&app, low).await["wecomTagId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.wecom_tag(&low_wecom), Some(("低".into(), "意向".into())));

    // Renames.
    let r = app
        .put(
            &format!("/api/v1/tags/{tag}"),
            &app.admin_token,
            json!({"name": "很高"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .put(
            &format!("/api/v1/tag-groups/{group}"),
            &app.admin_token,
            json!({"name": "意向度"}),
        )
        .await;
    assert_eq!(r.status, 200);
    settled(&app).await;
    assert_eq!(
        w.wecom_tag(&wecom_id),
        Some(("很高".into(), "意向度".into()))
    );

    // A customer's tags, marked as its owner.
    let (cid, ext, owner) = w.customers[0].clone();
    let r = app
        .post(
            &format!("/api/v1/customers/{cid}/tags"),
            &app.admin_token,
            json!({"tagIds": [tag, low]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    settled(&app).await;
    let on = w.follow_tags(&ext, w.userid(owner)).unwrap();
    assert!(on.contains(&wecom_id) && on.contains(&low_wecom), "{on:?}");
    let r = app
        .post(
            &format!("/api/v1/customers/{cid}/tags/remove"),
            &app.admin_token,
            json!({"tagIds": [low]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let pushes = settled(&app).await;
    let on = w.follow_tags(&ext, w.userid(owner)).unwrap();
    assert!(on.contains(&wecom_id) && !on.contains(&low_wecom), "{on:?}");
    let marks: Vec<&Value> = pushes
        .iter()
        .filter(|p| p["target"] == "customer" && p["targetId"] == cid)
        .collect();
    assert_eq!(marks.len(), 2, "{pushes:?}");
    assert!(marks.iter().all(|p| p["status"] == "done"));

    // A customer whose owner in scrm does not follow them in WeCom: WeCom refuses (84061), the
    // push is failed with the reason and its job is a dead letter; fixed, a retry goes through.
    let (cid2, ext2, owner2) = w.customers[1].clone();
    let stranger = w.staff.iter().find(|s| s.0 != owner2).unwrap().0;
    let set_owner = |staff: i64| {
        query("UPDATE customer SET follow_user_id = ? WHERE tenant_id = ? AND id = ?")
            .bind(staff)
            .bind(w.tenant)
            .bind(cid2)
    };
    app.state.db.execute(set_owner(stranger)).await.unwrap();
    let r = app
        .post(
            &format!("/api/v1/customers/{cid2}/tags"),
            &app.admin_token,
            json!({"tagIds": [tag]}),
        )
        .await;
    assert_eq!(r.status, 200);
    settled(&app).await;
    let r = app
        .get(
            &format!("/api/v1/wecom-pushes?status=failed&target=customer&targetId={cid2}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.data()["total"], 1, "{:?}", r.body);
    let failed = r.data()["list"][0].clone();
    assert!(
        failed["error"].as_str().unwrap().contains("84061"),
        "{failed:?}"
    );
    let job = failed["jobId"].as_i64().unwrap();
    let j = app.get(&format!("/api/jobs/{job}"), &app.admin_token).await;
    assert_eq!(j.data()["job"]["state"], 3, "a dead letter: {:?}", j.body);
    assert!(
        j.data()["job"]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("84061"),
        "{:?}",
        j.body
    );
    // A pending or done push is not retried.
    let done_id = marks[0]["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/wecom-pushes/{done_id}/retry"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "PUSH_NOT_FAILED");
    app.state.db.execute(set_owner(owner2)).await.unwrap();
    let pid = failed["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/wecom-pushes/{pid}/retry"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    settled(&app).await;
    let r = app
        .get(
            &format!("/api/v1/wecom-pushes?target=customer&targetId={cid2}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.data()["list"][0]["status"], "done", "{:?}", r.body);
    assert!(
        w.follow_tags(&ext2, w.userid(owner2))
            .unwrap()
            .contains(&wecom_id)
    );

    // Deletes: the tag, then the group (with the tag left in it).
    assert_eq!(
        app.delete(&format!("/api/v1/tags/{tag}"), &app.admin_token)
            .await
            .status,
        200
    );
    settled(&app).await;
    assert_eq!(w.wecom_tag(&wecom_id), None);
    assert!(
        !w.follow_tags(&ext, w.userid(owner))
            .unwrap()
            .contains(&wecom_id)
    );
    assert!(w.wecom_tag(&low_wecom).is_some());
    assert_eq!(
        app.delete(&format!("/api/v1/tag-groups/{group}"), &app.admin_token)
            .await
            .status,
        200
    );
    settled(&app).await;
    assert_eq!(w.wecom_tag(&low_wecom), None);

    // Validation of the list; another tenant sees none of it.
    let r = app
        .get("/api/v1/wecom-pushes?status=stuck", &app.admin_token)
        .await;
    assert_eq!(r.body["fields"][0]["field"], "status");
    let (_, other) = app.other_tenant_admin("other", "other-admin").await;
    let r = app.get("/api/v1/wecom-pushes", &other).await;
    assert_eq!(r.data()["total"], 0);
    let r = app
        .post(
            &format!("/api/v1/wecom-pushes/{pid}/retry"),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
}

async fn transfer_status(app: &TestApp, id: i64) -> Value {
    let r = app
        .get("/api/v1/customers/transfers?size=200", &app.admin_token)
        .await;
    r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap()
}

/// Wait until the transfer's status is one of `want`.
async fn transfer_reaches(app: &TestApp, id: i64, want: &[&str]) -> Value {
    for _ in 0..300 {
        let t = transfer_status(app, id).await;
        if want.contains(&t["status"].as_str().unwrap()) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "transfer {id} never reached {want:?}: {:?}",
        transfer_status(app, id).await
    );
}

async fn start_transfer(app: &TestApp, customer: i64, to: i64, kind: &str) -> i64 {
    let r = app
        .post(
            &format!("/api/v1/customers/{customer}/transfer"),
            &app.admin_token,
            json!({"toStaffId": to, "kind": kind}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["status"], "waiting");
    r.data()["transferId"].as_i64().unwrap()
}

async fn transfers_run_in_wecom_and_follow_transfer_result(app: TestApp) {
    let w = world(&app).await;
    scrm::operation::mass::Settings::set(
        &app.state.db,
        w.tenant,
        "customers.transfer_poll_ms",
        200,
    )
    .await
    .unwrap();
    let (a, b, c) = (w.staff[0].0, w.staff[1].0, w.staff[2].0);
    let of = |s: i64| -> Vec<(i64, String)> {
        w.customers
            .iter()
            .filter(|x| x.2 == s)
            .map(|x| (x.0, x.1.clone()))
            .collect()
    };
    let (from_a, from_c) = (of(a), of(c));
    assert!(
        !from_a.is_empty() && !from_c.is_empty(),
        "the company has customers for A and C"
    );

    // 在职继承 A → B: started in WeCom, waiting 24 h there.
    let (cust, ext) = from_a[0].clone();
    let on_job = start_transfer(&app, cust, b, "on_job").await;
    transfer_reaches(&app, on_job, &["in_progress"]).await;
    let waiting = w
        .app
        .transfer_result_all(w.userid(a), w.userid(b))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].external_userid.as_str(), waiting[0].status),
        (ext.as_str(), 2)
    );
    let d = app
        .get(&format!("/api/v1/customers/{cust}"), &app.admin_token)
        .await;
    assert_eq!(
        d.data()["followUserId"],
        a,
        "the owner changes only when WeCom is done"
    );

    // WeCom refuses a transfer to the same member (40130), and a resigned transfer from a
    // member who has not left (40097): failed with the reason.
    let same = start_transfer(&app, from_a[from_a.len() - 1].0, a, "on_job").await;
    let t = transfer_reaches(&app, same, &["failed"]).await;
    assert!(t["reason"].as_str().unwrap().contains("40130"), "{t:?}");
    let not_left = start_transfer(&app, from_c[0].0, a, "resigned").await;
    let t = transfer_reaches(&app, not_left, &["failed"]).await;
    assert!(t["reason"].as_str().unwrap().contains("40097"), "{t:?}");

    // 离职继承 C → A after C leaves.
    w.sim.staff_resigns(w.userid(c)).unwrap();
    let (cust_c, ext_c) = from_c[0].clone();
    let resigned = start_transfer(&app, cust_c, a, "resigned").await;
    transfer_reaches(&app, resigned, &["in_progress"]).await;

    // A day later WeCom has taken over: transfer_result says 1, the records are done, the owner
    // changed in scrm and the follow moved in WeCom.
    w.sim.advance_clock(86_400 + 60);
    for (id, cust, ext, from, to) in [(on_job, cust, &ext, a, b), (resigned, cust_c, &ext_c, c, a)]
    {
        transfer_reaches(&app, id, &["done"]).await;
        let d = app
            .get(&format!("/api/v1/customers/{cust}"), &app.admin_token)
            .await;
        assert_eq!(d.data()["followUserId"], to);
        assert!(w.follow_tags(ext, w.userid(to)).is_some());
        assert!(w.follow_tags(ext, w.userid(from)).is_none());
    }
    let r = app
        .get("/api/v1/customers/transfers?status=done", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 2);
}

/// Run one job of `kind` now (what its cron schedule does) and wait until no job of the kind is
/// queued or running.
async fn run_scheduled(app: &TestApp, kind: &str) {
    app.state
        .jobs
        .enqueue_now(scrm_jobs::NewJob::new(kind, &json!({})).unwrap())
        .await
        .unwrap();
    let sql = format!("SELECT COUNT(*) FROM job WHERE kind = '{kind}' AND state IN (0, 1)");
    for _ in 0..600 {
        if app.state.db.fetch_i64(query(sql.clone())).await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{kind} did not finish within 60 s");
}

/// Follow-up reminders reach the staff member once by WeCom app message; a customer without an
/// owner gets a failed reminder with the reason; churn scans flag inactive customers once; each
/// follow-up counts its customer active for the day; both run as built-in cron schedules.
async fn reminders_churn_scans_and_activity_run_on_schedules(app: TestApp) {
    let w = world(&app).await;
    let t = &app.admin_token;
    let db = &app.state.db;
    for name in ["customers.churn.scan", "customers.followups.remind"] {
        let n = db
            .fetch_i64(
                query("SELECT COUNT(*) FROM job_schedule WHERE name = ? AND enabled = 1")
                    .bind(name),
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "schedule {name}");
    }
    let (c0, _, owner0) = w.customers[0].clone();
    let (c1, _, _) = w.customers[1].clone();
    let orphan = app
        .post("/api/v1/customers", t, json!({"name": "无主"}))
        .await;
    assert_eq!(orphan.status, 201, "{:?}", orphan.body);
    let orphan = orphan.data()["id"].as_i64().unwrap();
    let now = scrm::state::now_ms();
    let follow = |cid: i64, text: &'static str, at: i64| {
        let app = &app;
        async move {
            let r = app
                .post(
                    &format!("/api/v1/customers/{cid}/follow-ups"),
                    &app.admin_token,
                    json!({"content": text, "type": "call", "nextFollowTime": at}),
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            assert_eq!(r.data()["reminder"], "pending");
            r.data()["id"].as_i64().unwrap()
        }
    };
    let due = follow(c0, "报价已发", now - 60_000).await;
    let later = follow(c0, "下周回访", now + 7 * 86_400_000).await;
    let lost = follow(orphan, "没人跟", now - 60_000).await;
    run_scheduled(&app, scrm::customers::schedules::FOLLOWUP_REMIND).await;
    let r = app.get("/api/v1/customers/follow-up-reminders", t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let state_of = |id: i64| {
        r.data()["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(state_of(due)["reminder"], "sent", "{:?}", r.body);
    assert_eq!(state_of(later)["reminder"], "pending");
    assert_eq!(state_of(lost)["reminder"], "failed");
    assert!(
        state_of(lost)["remindError"]
            .as_str()
            .unwrap()
            .contains("no active staff member")
    );
    let to_owner = |sim: &SimHandle| -> Vec<String> {
        sim.deliveries()
            .into_iter()
            .filter(|d| {
                d.kind == scrm_wecom_sim::DeliveryKind::AppMessage
                    && d.recipient == w.userid(owner0)
            })
            .map(|d| d.content.to_string())
            .collect()
    };
    let sent = to_owner(&w.sim);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("报价已发"), "{sent:?}");
    // Filters, and a bad one named.
    let r = app
        .get("/api/v1/customers/follow-up-reminders?status=failed", t)
        .await;
    assert_eq!(r.data()["total"], 1);
    let r = app
        .get("/api/v1/customers/follow-up-reminders?status=late", t)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["fields"][0]["field"], "status");
    // Another run reminds nobody again.
    run_scheduled(&app, scrm::customers::schedules::FOLLOWUP_REMIND).await;
    assert_eq!(to_owner(&w.sim).len(), 1);

    // Churn: c1 has had no interaction for 3 days; c0 just had a follow-up.
    let r = app
        .post(
            "/api/v1/customers/churn-rules",
            t,
            json!({"name": "两天未互动", "ruleType": "no_interaction", "days": 2}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    db.execute(
        query("UPDATE customer SET created_at = ?, add_time = ? WHERE tenant_id = ?")
            .bind(now - 3 * 86_400_000)
            .bind(now - 3 * 86_400_000)
            .bind(w.tenant),
    )
    .await
    .unwrap();
    run_scheduled(&app, scrm::customers::schedules::CHURN_SCAN).await;
    run_scheduled(&app, scrm::customers::schedules::CHURN_SCAN).await;
    let r = app
        .get("/api/v1/customers/churn-warnings?size=200", t)
        .await;
    let flagged: Vec<i64> = r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["customerId"].as_i64().unwrap())
        .collect();
    assert!(flagged.contains(&c1), "{flagged:?}");
    assert!(!flagged.contains(&c0), "c0 had a follow-up today");
    assert!(
        !flagged.contains(&orphan),
        "the orphan had a follow-up today"
    );
    assert_eq!(
        flagged.len(),
        w.customers.len() - 1,
        "one warning per inactive customer, not one per run: {flagged:?}"
    );

    // Activity: c0 (twice) and the orphan had follow-ups today.
    let r = app.get("/api/v1/customers/statistics", t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let today = r.data()["daily"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(today["active"], 2, "{:?}", r.body);
}

/// Wait until every group chat transfer of the tenant is settled; returns them by id.
async fn group_transfers_settled(app: &TestApp) -> Vec<Value> {
    for _ in 0..600 {
        let r = app
            .get("/api/v1/groups/transfers?size=200", &app.admin_token)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let list = r.data()["list"].as_array().unwrap().clone();
        if list
            .iter()
            .all(|t| t["status"] == "done" || t["status"] == "failed")
        {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("group chat transfers still open");
}

/// 在职继承 and 离职继承 of group chats run in WeCom (the simulator) with a record per chat: done
/// chats change owner in WeCom and in scrm, refused ones show WeCom's per-chat code.
async fn group_chat_transfers_run_in_wecom_with_records(app: TestApp) {
    let w = world(&app).await;
    let t = &app.admin_token;
    let db = &app.state.db;
    // The company's chats mirrored into scrm (what sync does).
    let chats: Vec<(String, String)> = {
        let c = w.sim.company();
        (0..c.chats.len() as u32)
            .filter(|i| !c.chats[*i as usize].dismissed)
            .map(|i| {
                (
                    c.chat_id(i),
                    c.staff[c.chats[i as usize].owner as usize].userid.clone(),
                )
            })
            .collect()
    };
    let now = scrm::state::now_ms();
    let mut groups = Vec::new();
    for (chat_id, owner) in &chats {
        let id = db
            .insert_id(query("INSERT INTO group_chat (tenant_id, chat_id, name, owner_userid, status, member_count, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)").bind(w.tenant).bind(chat_id).bind(format!("群{chat_id}")).bind(owner).bind(now).bind(now))
            .await
            .unwrap();
        groups.push((id, chat_id.clone(), owner.clone()));
    }
    let owner_in_wecom = |chat_id: &str| {
        let c = w.sim.company();
        let i = c.chat_by_id(chat_id).unwrap();
        c.staff[c.chats[i as usize].owner as usize].userid.clone()
    };
    let staff_id = |userid: &str| w.staff.iter().find(|s| s.1 == userid).unwrap().0;
    // Two chats of different owners: x moves to y's owner; y already has that owner (90504).
    let x = groups[0].clone();
    let y = groups
        .iter()
        .find(|g| g.2 != x.2)
        .cloned()
        .expect("chats of two owners");
    let to = staff_id(&y.2);

    // Bad requests are named and change nothing.
    for (body, field) in [
        (json!({"groupIds": [x.0], "toStaffId": to}), "kind"),
        (
            json!({"groupIds": [x.0], "toStaffId": to, "kind": "both"}),
            "kind",
        ),
        (
            json!({"groupIds": [424242], "toStaffId": to, "kind": "on_job"}),
            "groupIds",
        ),
        (
            json!({"groupIds": [], "toStaffId": to, "kind": "on_job"}),
            "groupIds",
        ),
        (
            json!({"groupIds": [x.0], "toStaffId": 424242, "kind": "on_job"}),
            "toStaffId",
        ),
    ] {
        let r = app.post("/api/v1/groups/transfer", t, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["fields"][0]["field"], field, "{body}");
    }
    let (_, viewer) = app.user_with_role("group-viewer", "viewer").await;
    let r = app
        .post(
            "/api/v1/groups/transfer",
            &viewer,
            json!({"groupIds": [x.0], "toStaffId": to, "kind": "on_job"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.get("/api/v1/groups/transfers", t).await.data()["total"],
        0
    );

    // 在职继承 of both.
    let r = app
        .post(
            "/api/v1/groups/transfer",
            t,
            json!({"groupIds": [x.0, y.0], "toStaffId": to, "kind": "on_job"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["list"][0]["status"], "waiting");
    let list = group_transfers_settled(&app).await;
    let of = |gid: i64| list.iter().find(|r| r["groupId"] == gid).cloned().unwrap();
    assert_eq!(of(x.0)["status"], "done", "{list:?}");
    assert_eq!(of(x.0)["fromUserid"], x.2.as_str());
    assert_eq!(of(y.0)["status"], "failed");
    assert_eq!(of(y.0)["errcode"], 90504);
    assert_eq!(owner_in_wecom(&x.1), y.2, "WeCom has the new owner");
    let r = app.get(&format!("/api/v1/groups/{}", x.0), t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let shown = r.body.to_string();
    assert!(shown.contains(&y.2), "scrm shows the new owner: {shown}");

    // 离职继承: a chat whose owner is still employed is refused (90500); after the owner
    // resigns, it goes through.
    let z = groups
        .iter()
        .find(|g| g.2 != y.2 && g.0 != x.0)
        .cloned()
        .expect("a chat of a third owner");
    let resigned = || {
        let app = &app;
        let body = json!({"groupIds": [z.0], "toStaffId": to, "kind": "resigned"});
        async move {
            let r = app
                .post("/api/v1/groups/transfer", &app.admin_token, body)
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.data()["list"][0]["id"].as_i64().unwrap()
        }
    };
    let early = resigned().await;
    let list = group_transfers_settled(&app).await;
    let early = list.iter().find(|r| r["id"] == early).unwrap();
    assert_eq!(early["status"], "failed");
    assert_eq!(early["errcode"], 90500);
    assert!(early["reason"].as_str().unwrap().contains("群主并未离职"));
    w.sim.staff_resigns(&z.2).unwrap();
    let later = resigned().await;
    let list = group_transfers_settled(&app).await;
    assert_eq!(
        list.iter().find(|r| r["id"] == later).unwrap()["status"],
        "done"
    );
    assert_eq!(owner_in_wecom(&z.1), y.2);
    let r = app
        .get(&format!("/api/v1/groups/transfers?groupId={}", z.0), t)
        .await;
    assert_eq!(r.data()["total"], 2);
    let r = app.get("/api/v1/groups/transfers?status=failed", t).await;
    assert_eq!(r.data()["total"], 2);
    let r = app.get("/api/v1/groups/transfers?status=lost", t).await;
    assert_eq!(r.body["fields"][0]["field"], "status");
    // Another tenant sees none of it and cannot transfer our chats.
    let (_, other) = app.other_tenant_admin("other-groups", "other-admin").await;
    assert_eq!(
        app.get("/api/v1/groups/transfers", &other).await.data()["total"],
        0
    );
    let r = app
        .post(
            "/api/v1/groups/transfer",
            &other,
            json!({"groupIds": [x.0], "toStaffId": to, "kind": "on_job"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    group_chat_transfers_run_in_wecom_with_records,
    reminders_churn_scans_and_activity_run_on_schedules,
    tag_changes_reach_wecom_and_failed_pushes_are_retried,
    transfers_run_in_wecom_and_follow_transfer_result,
);
