//! Customers (seed 001): create, list, detail, update, delete, validation, the detail cache,
//! tenant isolation, follow-ups, stages, blacklist, transfers, risk and statistics.

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A staff member of the admin's tenant, straight through the store (staff come from sync).
pub async fn staff(app: &TestApp, userid: &str) -> i64 {
    let mut tx = app.state.db.begin().await.unwrap();
    let id = scrm::customers::staff::upsert_staff(&mut tx, 1, userid, userid, &[1], 1, 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Create a customer as admin and return its id.
pub async fn customer(app: &TestApp, body: Value) -> i64 {
    let r = app.post("/api/v1/customers", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.data()["id"].as_i64().unwrap()
}

/// Create a tag group with tags; returns the tag ids in order.
pub async fn tags(app: &TestApp, group: &str, names: &[&str]) -> Vec<i64> {
    let r = app
        .post(
            "/api/v1/tag-groups",
            &app.admin_token,
            json!({"name": group, "tags": names}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.data()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

async fn creates_lists_and_reads_a_customer(app: TestApp) {
    let owner = staff(&app, "zhangwei").await;
    let r = app
        .post(
            "/api/v1/customers",
            &app.admin_token,
            json!({"externalUserid": "wmABC", "name": "张三", "mobile": "138-0013-8000",
                   "gender": 1, "channel": "qrcode", "followUserId": owner, "corpName": "某公司"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    assert_eq!(r.data()["mobile"], "13800138000");
    assert_eq!(r.data()["stage"], "new");
    assert_eq!(r.data()["status"], 1);
    assert_eq!(r.data()["followUsers"][0]["userid"], "zhangwei");

    let list = app
        .get("/api/v1/customers?page=1&size=10", &app.admin_token)
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.data()["total"], 1);
    assert_eq!(list.data()["page"], 1);
    assert_eq!(list.data()["size"], 10);
    assert_eq!(list.data()["list"][0]["externalUserid"], "wmABC");

    for q in [
        "channel=qrcode",
        "status=1",
        &format!("followUserId={owner}"),
        "keyword=张三",
        "keyword=8000",
    ] {
        let r = app
            .get(&format!("/api/v1/customers?{q}"), &app.admin_token)
            .await;
        assert_eq!(r.data()["total"], 1, "{q}: {:?}", r.body);
    }
    for q in [
        "channel=other",
        "status=2",
        "followUserId=999",
        "keyword=李四",
    ] {
        let r = app
            .get(&format!("/api/v1/customers?{q}"), &app.admin_token)
            .await;
        assert_eq!(r.data()["total"], 0, "{q}");
        assert_eq!(r.data()["list"].as_array().unwrap().len(), 0, "{q}");
    }

    let d = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(d.status, 200);
    assert_eq!(d.data()["name"], "张三");

    let events = scrm::events::recent(&app.state.db, 1, 10).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "customer.created"));
    let audit = app
        .get(
            "/api/v1/system/audit-logs?action=customer.create",
            &app.admin_token,
        )
        .await;
    assert_eq!(audit.data()["total"], 1);
}

async fn validation_errors_name_the_field(app: TestApp) {
    let cases = [
        (json!({}), "name"),
        (json!({"name": "a", "mobile": "12ab"}), "mobile"),
        (json!({"name": "a", "gender": 7}), "gender"),
        (json!({"name": "a", "type": 3}), "type"),
        (json!({"name": "a", "status": 9}), "status"),
        (json!({"name": "a", "followUserId": 999}), "followUserId"),
        (json!({"name": "a", "stage": "nowhere"}), "stage"),
        (json!({"name": "a", "addTime": "yesterday"}), "addTime"),
        (json!({"name": "x".repeat(101)}), "name"),
        (
            json!({"name": "a", "externalUserid": "has space"}),
            "externalUserid",
        ),
    ];
    for (body, field) in cases {
        let r = app
            .post("/api/v1/customers", &app.admin_token, body.clone())
            .await;
        assert_eq!((r.status, r.error()), (400, "VALIDATION_FAILED"), "{body}");
        assert_eq!(r.body["fields"][0]["field"], field, "{body}: {:?}", r.body);
    }
    let r = app
        .post(
            "/api/v1/customers",
            &app.admin_token,
            json!({"name": "a", "nonsense": 1}),
        )
        .await;
    assert_eq!(r.status, 400);
    customer(&app, json!({"name": "a", "externalUserid": "wm1"})).await;
    let r = app
        .post(
            "/api/v1/customers",
            &app.admin_token,
            json!({"name": "b", "externalUserid": "wm1"}),
        )
        .await;
    assert_eq!((r.status, r.error()), (409, "CONFLICT"));
    for q in ["page=0", "size=1000", "status=7", "followUserId=x"] {
        let r = app
            .get(&format!("/api/v1/customers?{q}"), &app.admin_token)
            .await;
        assert_eq!(r.status, 400, "{q}");
    }
    let r = app.get("/api/v1/customers/abc", &app.admin_token).await;
    assert_eq!(r.status, 400);
    let r = app.get("/api/v1/customers/424242", &app.admin_token).await;
    assert_eq!((r.status, r.error()), (404, "NOT_FOUND"));
}

async fn updates_and_deletes_a_customer(app: TestApp) {
    let id = customer(&app, json!({"name": "王五", "channel": "web"})).await;
    let r = app
        .put(
            &format!("/api/v1/customers/{id}"),
            &app.admin_token,
            json!({"name": "王小五", "remark": "VIP", "status": 2, "stage": "active"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["name"], "王小五");
    assert_eq!(r.data()["stage"], "active");
    let r = app
        .get("/api/v1/customers?keyword=小五", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 1, "grams follow the new name");
    let r = app
        .get("/api/v1/customers?keyword=王五", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 0, "old grams are gone");
    let r = app
        .put(
            &format!("/api/v1/customers/{id}"),
            &app.admin_token,
            json!({"externalUserid": "other"}),
        )
        .await;
    assert_eq!(r.body["fields"][0]["field"], "externalUserid");
    let r = app
        .delete(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .delete(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.status, 404);
    let kinds: Vec<String> = scrm::events::recent(&app.state.db, 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(kinds.contains(&"customer.updated".to_string()));
    assert!(kinds.contains(&"customer.deleted".to_string()));
}

async fn the_cache_never_hides_a_change(app: TestApp) {
    use scrm::customers::cache::{Source, detail};
    let id = customer(&app, json!({"name": "缓存"})).await;
    let first = detail(&app.state, 1, id).await.unwrap().unwrap();
    let second = detail(&app.state, 1, id).await.unwrap().unwrap();
    assert_eq!(
        second.1,
        Source::Cache,
        "an unchanged customer is served from the cache"
    );
    assert_eq!(first.0.customer.name, second.0.customer.name);

    // A change made elsewhere (another process, a sync job) that drops nothing from this
    // process's cache must still show at once.
    let mut tx = app.state.db.begin().await.unwrap();
    let fields = scrm::customers::model::CustomerBody {
        name: Some("改名".into()),
        ..Default::default()
    }
    .into_fields()
    .unwrap();
    scrm::customers::store::update(&mut tx, 1, id, &fields, 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let r = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.data()["name"], "改名");

    // Tags added through the API show at once too.
    let t = tags(&app, "等级", &["金卡"]).await;
    app.get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    app.post(
        &format!("/api/v1/customers/{id}/tags"),
        &app.admin_token,
        json!({"tagIds": t}),
    )
    .await;
    let r = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.data()["tags"][0]["name"], "金卡");
    // Renaming the tag changes what the customer shows.
    app.put(
        &format!("/api/v1/tags/{}", t[0]),
        &app.admin_token,
        json!({"name": "白金卡"}),
    )
    .await;
    let r = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.data()["tags"][0]["name"], "白金卡");
}

async fn another_tenant_sees_none_of_our_customers(app: TestApp) {
    let id = customer(&app, json!({"name": "张三", "mobile": "13800138000"})).await;
    let t = tags(&app, "g", &["t1"]).await;
    app.post(
        &format!("/api/v1/customers/{id}/tags"),
        &app.admin_token,
        json!({"tagIds": t}),
    )
    .await;
    let (_, theirs) = app.other_tenant_admin("other company", "boss.x").await;
    for path in [
        format!("/api/v1/customers/{id}"),
        format!("/api/v1/customers/{id}/portrait"),
        format!("/api/v1/customers/{id}/timeline"),
        format!("/api/v1/customers/{id}/follow-ups"),
    ] {
        let r = app.get(&path, &theirs).await;
        assert_eq!((r.status, r.error()), (404, "NOT_FOUND"), "{path}");
    }
    for (path, body) in [
        (format!("/api/v1/customers/{id}/tags"), json!({"tagIds": t})),
        (
            format!("/api/v1/customers/{id}/tags/remove"),
            json!({"tagIds": t}),
        ),
        (
            format!("/api/v1/customers/{id}/follow-ups"),
            json!({"content": "x"}),
        ),
        (format!("/api/v1/customers/{id}/blacklist"), json!({})),
        (
            format!("/api/v1/customers/{id}/transfer"),
            json!({"toStaffId": 1}),
        ),
    ] {
        let r = app.post(&path, &theirs, body).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
    }
    let r = app
        .put(
            &format!("/api/v1/customers/{id}"),
            &theirs,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .put(
            &format!("/api/v1/customers/{id}/stage"),
            &theirs,
            json!({"stage": "won"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        app.delete(&format!("/api/v1/customers/{id}"), &theirs)
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tags/{}", t[0]), &theirs)
            .await
            .status,
        404
    );
    for path in [
        "/api/v1/customers",
        "/api/v1/customers?keyword=张三",
        "/api/v1/customers/transfers",
        "/api/v1/customers/blacklist",
        "/api/v1/customers/deletions",
        "/api/v1/customers/churn-warnings",
        "/api/v1/groups",
        "/api/v1/staff",
    ] {
        let r = app.get(path, &theirs).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.data()["total"], 0, "{path}");
    }
    let r = app
        .get(
            &format!("/api/v1/workbench/customer/search?tagIds={}", t[0]),
            &theirs,
        )
        .await;
    assert_eq!(r.data()["total"], 0);
    let r = app.get("/api/v1/workbench/customer/tags", &theirs).await;
    assert_eq!(r.data().as_array().unwrap().len(), 0);
    let r = app.get("/api/v1/tag-groups", &theirs).await;
    assert_eq!(r.data().as_array().unwrap().len(), 0);
    let r = app
        .post("/api/v1/customers/export", &theirs, json!({}))
        .await;
    assert_eq!(r.status, 200);
    // Unchanged for us.
    let r = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(r.data()["name"], "张三");
    assert_eq!(r.data()["tags"].as_array().unwrap().len(), 1);
}

async fn follow_ups_stages_blacklist_and_transfers(app: TestApp) {
    let a = staff(&app, "a").await;
    let b = staff(&app, "b").await;
    let id = customer(&app, json!({"name": "客户", "followUserId": a})).await;
    let path = format!("/api/v1/customers/{id}/follow-ups");
    let r = app
        .post(
            &path,
            &app.admin_token,
            json!({"content": "电话沟通", "type": "call", "nextFollowTime": "2026-11-30T02:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["nextFollowTime"], "2026-11-30T02:00:00Z");
    for (body, field) in [
        (json!({}), "content"),
        (json!({"content": "x", "type": "fax"}), "type"),
        (
            json!({"content": "x", "nextFollowTime": "soon"}),
            "nextFollowTime",
        ),
    ] {
        let r = app.post(&path, &app.admin_token, body).await;
        assert_eq!(r.body["fields"][0]["field"], field);
    }
    let r = app.get(&path, &app.admin_token).await;
    assert_eq!(r.data()["total"], 1);

    let stage = format!("/api/v1/customers/{id}/stage");
    let r = app
        .put(&stage, &app.admin_token, json!({"stage": "won"}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .put(&stage, &app.admin_token, json!({"stage": "mars"}))
        .await;
    assert_eq!(r.body["fields"][0]["field"], "stage");
    let r = app
        .put(
            "/api/v1/customer-stages",
            &app.admin_token,
            json!({"stages": [{"code": "new", "name": "新"}, {"code": "vip", "name": "贵宾", "isFinal": true}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .put(&stage, &app.admin_token, json!({"stage": "vip"}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .put(
            "/api/v1/customer-stages",
            &app.admin_token,
            json!({"stages": [{"code": "x", "name": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "the stage new is required");

    let bl = format!("/api/v1/customers/{id}/blacklist");
    let r = app
        .post(&bl, &app.admin_token, json!({"reason": "spam"}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .get("/api/v1/customers/blacklist", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 1);
    let r = app
        .get("/api/v1/customers?blacklisted=true", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 1);
    let ids = scrm::customers::store::blacklisted_among(&app.state.db, 1, &[id])
        .await
        .unwrap();
    assert_eq!(ids, vec![id]);
    assert_eq!(app.delete(&bl, &app.admin_token).await.status, 200);
    let r = app
        .get("/api/v1/customers/blacklist", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 0);

    let tr = format!("/api/v1/customers/{id}/transfer");
    let r = app
        .post(&tr, &app.admin_token, json!({"toStaffId": b}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["status"], "done");
    let d = app
        .get(&format!("/api/v1/customers/{id}"), &app.admin_token)
        .await;
    assert_eq!(d.data()["followUserId"], b);
    let r = app
        .post(
            &tr,
            &app.admin_token,
            json!({"toStaffId": a, "kind": "on_job"}),
        )
        .await;
    assert_eq!(r.data()["status"], "waiting");
    for (body, field) in [
        (json!({}), "toStaffId"),
        (json!({"toStaffId": 999}), "toStaffId"),
        (json!({"toStaffId": a, "kind": "steal"}), "kind"),
    ] {
        let r = app.post(&tr, &app.admin_token, body).await;
        assert_eq!(r.body["fields"][0]["field"], field);
    }
    // Without a WeCom app the WeCom transfer cannot start: it fails, saying why.
    let mut failed = Value::Null;
    for _ in 0..100 {
        let r = app
            .get(
                "/api/v1/customers/transfers?status=failed",
                &app.admin_token,
            )
            .await;
        if r.data()["total"] == 1 {
            failed = r.data()["list"][0].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(failed["kind"], "on_job", "{failed:?}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no WeCom configuration"),
        "{failed:?}"
    );
    let r = app
        .post(
            "/api/v1/customers/transfer",
            &app.admin_token,
            json!({"customerIds": [id, 999], "toStaffId": a}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.data()["notFound"], json!([999]));

    let tl = app
        .get(
            &format!("/api/v1/customers/{id}/timeline"),
            &app.admin_token,
        )
        .await;
    let kinds: Vec<&str> = tl.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["added", "follow_up", "stage", "blacklist", "transfer"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let p = app
        .get(
            &format!("/api/v1/customers/{id}/portrait"),
            &app.admin_token,
        )
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.data()["followUpCount"], 1);
    assert_eq!(p.data()["stage"]["code"], "vip");
}

async fn risk_records_rules_and_warnings(app: TestApp) {
    let id = customer(&app, json!({"name": "流失", "channel": "ads"})).await;
    let r = app
        .post(
            "/api/v1/customers/churn-rules",
            &app.admin_token,
            json!({"name": "删除员工", "ruleType": "deleted_staff"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let rule = r.data()["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"ruleType": "deleted_staff"}), "name"),
        (json!({"name": "x", "ruleType": "moon"}), "ruleType"),
        (json!({"name": "x", "ruleType": "no_interaction"}), "days"),
    ] {
        let r = app
            .post("/api/v1/customers/churn-rules", &app.admin_token, body)
            .await;
        assert_eq!(r.body["fields"][0]["field"], field);
    }
    let mut tx = app.state.db.begin().await.unwrap();
    scrm::customers::risk::record_deletion(
        &mut tx,
        1,
        Some(id),
        "wm-x",
        Some("流失"),
        Some("a"),
        scrm::customers::risk::CUSTOMER_DELETED_STAFF,
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let r = app
        .get("/api/v1/customers/deletions", &app.admin_token)
        .await;
    assert_eq!(r.data()["total"], 1);
    let r = app
        .get(
            "/api/v1/customers/churn-warnings?status=0",
            &app.admin_token,
        )
        .await;
    assert_eq!(r.data()["total"], 1, "{:?}", r.body);
    let w = r.data()["list"][0]["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/customers/churn-warnings/{w}/handle"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .get(
            "/api/v1/customers/churn-warnings?status=0",
            &app.admin_token,
        )
        .await;
    assert_eq!(r.data()["total"], 0);
    let r = app
        .put(
            &format!("/api/v1/customers/churn-rules/{rule}"),
            &app.admin_token,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.data()["enabled"], 0);
    let r = app
        .post(
            "/api/v1/customers/churn-rules",
            &app.admin_token,
            json!({"name": "沉默", "ruleType": "no_interaction", "days": 1}),
        )
        .await;
    assert_eq!(r.status, 201);
    // The customer was added now: not yet inactive.
    let r = app
        .post(
            "/api/v1/customers/churn-warnings/scan",
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.data()["raised"], 0);
    assert_eq!(
        app.delete(
            &format!("/api/v1/customers/churn-rules/{rule}"),
            &app.admin_token
        )
        .await
        .status,
        200
    );
    let s = app
        .get("/api/v1/customers/statistics", &app.admin_token)
        .await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert_eq!(s.data()["totals"]["total"], 1);
    assert_eq!(s.data()["period"]["added"], 1);
    assert_eq!(s.data()["period"]["lost"], 1);
    assert_eq!(s.data()["byChannel"][0]["key"], "ads");
    let r = app
        .get(
            "/api/v1/customers/statistics?startDate=2026-13-01",
            &app.admin_token,
        )
        .await;
    assert_eq!(r.body["fields"][0]["field"], "startDate");
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    creates_lists_and_reads_a_customer,
    validation_errors_name_the_field,
    updates_and_deletes_a_customer,
    the_cache_never_hides_a_change,
    another_tenant_sees_none_of_our_customers,
    follow_ups_stages_blacklist_and_transfers,
    risk_records_rules_and_warnings,
);
