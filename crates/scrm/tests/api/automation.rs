//! Automation (seed 002) against the WeCom simulator: channel codes (contact ways with a state,
//! daily limits moving the code to backup staff, tags, owner, welcome with variables and
//! materials, statistics of adds and losses), member welcome messages, validation, tenants.

use scrm_db::query;
use scrm_wecom::WeComClient;
use scrm_wecom::client::ClientConfig;
use scrm_wecom_sim::SimHandle;
use scrm_wecom_sim::deliveries::{Delivery, DeliveryKind};
use scrm_wecom_sim::scenarios::{AddContact, JoinGroup, Pair};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::{n, until};
use crate::integration::{connect, sim};
use crate::integration_sync::sync;

/// A simulator mirrored into scrm, and members who can have customers: (staff id, userid, name).
async fn world(app: &TestApp) -> (SimHandle, Vec<(i64, String, String)>) {
    let sim = sim(30).await;
    connect(app, &sim).await;
    assert_eq!(
        sync(app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    let members: Vec<(String, String)> = sim
        .company()
        .staff
        .iter()
        .filter(|s| s.contact_enabled && s.visible() && s.status == 1)
        .map(|s| (s.userid.clone(), s.name.clone()))
        .collect();
    let mut out = Vec::new();
    for (u, name) in members {
        let id = n(app, format!("SELECT id FROM staff WHERE userid = '{u}'")).await;
        out.push((id, u, name));
    }
    assert!(out.len() >= 4, "the simulated company has too few members");
    (sim, out)
}

fn wecom(sim: &SimHandle) -> scrm_wecom::AppClient {
    let c = sim.config();
    WeComClient::in_memory(ClientConfig::for_simulator(sim.base_url()))
        .unwrap()
        .app(c.creds.corp_id, c.creds.app_secret)
}

fn welcomes_to(sim: &SimHandle, ext: &str) -> Vec<Delivery> {
    sim.deliveries()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::Welcome && d.recipient == ext)
        .collect()
}

/// A channel code body refused, naming `field`.
async fn refused(app: &TestApp, body: Value, field: &str) {
    let r = app
        .post("/api/v1/channel-codes", &app.admin_token, body.clone())
        .await;
    assert_eq!(
        (r.status, r.error(), r.body["fields"][0]["field"].as_str()),
        (400, "VALIDATION_FAILED", Some(field)),
        "{body}: {:?}",
        r.body
    );
}

async fn code(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/v1/channel-codes/{id}"), &app.admin_token)
        .await
        .data()
        .clone()
}

pub(crate) async fn synced(app: &TestApp, id: i64) -> Value {
    until("the code to reach WeCom", || async {
        let c = code(app, id).await;
        (c["syncStatus"] == "synced").then_some(c)
    })
    .await
}

async fn channel_code_brings_tags_owner_welcome_and_statistics(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (_, u1, u1_name) = staff[0].clone();
    let (owner_id, _, _) = staff[1].clone();
    let (_, backup, _) = staff[2].clone();
    let tag = n(
        &app,
        "SELECT MIN(id) FROM tag WHERE wecom_tag_id IS NOT NULL".into(),
    )
    .await;
    let tag_wecom: String = app
        .state
        .db
        .fetch_one::<(String,)>(query("SELECT wecom_tag_id FROM tag WHERE id = ?").bind(tag))
        .await
        .unwrap()
        .0;
    let material = app
        .post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "link", "title": "新客礼包", "content": {"url": "https://example.com/gift", "desc": "领取"}}),
        )
        .await;
    assert_eq!(material.status, 201, "{:?}", material.body);
    let material_id = material.data()["materialId"].as_i64().unwrap();

    let r = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({
                "name": "展会码",
                "staff": [{"userid": u1, "dailyLimit": 1}],
                "backupStaff": [backup],
                "tagIds": [tag],
                "ownerStaffId": owner_id,
                "welcome": {"text": "您好{nickname}，我是{staff}，{date}见", "materialIds": [material_id]},
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let state = r.data()["state"].as_str().unwrap().to_string();
    assert!(state.starts_with("cc") && state.len() <= 30);
    let c = synced(&app, id).await;
    assert!(
        c["qrCode"]
            .as_str()
            .is_some_and(|q| q.starts_with("https://")),
        "{c}"
    );
    let cfg = c["configId"].as_str().unwrap().to_string();
    let way = wecom(&sim).get_contact_way(&cfg).await.unwrap();
    assert_eq!(
        (way.state.as_str(), way.user.clone()),
        (state.as_str(), vec![u1.clone()])
    );

    // A customer scans the code.
    let added = sim
        .customer_adds_staff(AddContact {
            userid: u1.clone(),
            name: Some("李雷".into()),
            state: Some(state.clone()),
            ..Default::default()
        })
        .unwrap();
    let ext = added.external_userid.clone();
    let welcome = until("the welcome", || async {
        welcomes_to(&sim, &ext).into_iter().next()
    })
    .await;
    let text = welcome.content["text"]["content"].as_str().unwrap_or("");
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        text,
        format!("您好李雷，我是{u1_name}，{today}见"),
        "{}",
        welcome.content
    );
    let attachments = welcome.content["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["link"]["url"], "https://example.com/gift");
    assert_eq!(welcome.sender, u1);

    let customer_id = n(
        &app,
        format!("SELECT id FROM customer WHERE external_userid = '{ext}'"),
    )
    .await;
    let detail = until("tags and owner", || async {
        let d = app
            .get(
                &format!("/api/v1/customers/{customer_id}"),
                &app.admin_token,
            )
            .await;
        let tagged = d.data()["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == tag));
        (tagged && d.data()["followUserId"] == owner_id).then(|| d.data().clone())
    })
    .await;
    assert_eq!(detail["followUserId"], owner_id);
    // The tag is in WeCom too, on the member's relation.
    let wc = wecom(&sim).get_customer(&ext, "").await.unwrap();
    let follow = wc.follow_user.iter().find(|f| f.userid == u1).unwrap();
    assert!(
        follow
            .tags
            .iter()
            .any(|t| t.tag_id.as_deref() == Some(tag_wecom.as_str())),
        "{:?}",
        follow.tags
    );

    // u1 reached the daily limit of 1: the contact way moves to the backup member.
    let c = until("the code to move to the backup member", || async {
        let c = code(&app, id).await;
        (c["activeUsers"] == json!([backup]) && c["syncStatus"] == "synced").then_some(c)
    })
    .await;
    assert_eq!(c["staff"][0]["addsToday"], 1);
    let way = wecom(&sim).get_contact_way(&cfg).await.unwrap();
    assert_eq!(way.user, vec![backup.clone()]);

    // A sync of the customer keeps the owner the code gave.
    assert_eq!(
        sync(&app, json!({"syncType": "customer", "force": true})).await["status"],
        "success"
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/customers/{customer_id}"),
            &app.admin_token
        )
        .await
        .data()["followUserId"],
        owner_id
    );

    // The customer deletes the member: a loss.
    sim.customer_deletes_staff(Pair {
        userid: u1.clone(),
        external_userid: ext.clone(),
    })
    .unwrap();
    let stats = until("the loss", || async {
        let s = app
            .get(
                &format!("/api/v1/channel-codes/{id}/statistics?days=7"),
                &app.admin_token,
            )
            .await;
        // The figures are read one query after another: wait until the daily figures and the
        // totals have both seen the loss.
        let seen = s.data()["totalLosses"] == 1 && s.data()["daily"][6]["losses"] == 1;
        seen.then(|| s.data().clone())
    })
    .await;
    assert_eq!(stats["totalAdds"], 1);
    assert_eq!(stats["netAdds"], 0);
    let daily = stats["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 7);
    assert_eq!(daily[6], json!({"date": today, "adds": 1, "losses": 1}));
    assert_eq!(
        stats["staff"],
        json!([{"userid": u1, "adds": 1, "losses": 1}])
    );

    let sends = app
        .get("/api/v1/automation/welcome-sends", &app.admin_token)
        .await;
    assert_eq!(sends.data()["total"], 1, "{}", sends.body);
    assert_eq!(sends.data()["list"][0]["status"], "sent");
    assert_eq!(sends.data()["list"][0]["source"], "channel_code");
    assert_eq!(sends.data()["list"][0]["sourceId"], id);

    // Deleting the code deletes the contact way; its statistics stay.
    assert_eq!(
        app.delete(&format!("/api/v1/channel-codes/{id}"), &app.admin_token)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/v1/channel-codes/{id}"), &app.admin_token)
            .await
            .status,
        404
    );
    until("the contact way to go", || async {
        let gone = n(
            &app,
            format!(
                "SELECT COUNT(*) FROM channel_code WHERE id = {id} AND sync_status = 'deleted'"
            ),
        )
        .await;
        (gone == 1).then_some(())
    })
    .await;
    assert_eq!(
        wecom(&sim)
            .get_contact_way(&cfg)
            .await
            .unwrap_err()
            .errcode(),
        Some(40058)
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/channel-codes/{id}/statistics"),
            &app.admin_token
        )
        .await
        .data()["totalAdds"],
        1
    );
    sim.shutdown().await;
}

async fn channel_codes_validate_update_and_stay_in_their_tenant(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let u1 = staff[0].1.clone();
    let u2 = staff[1].1.clone();
    let cases = [
        (json!({"name": "x", "staff": []}), "staff"),
        (json!({"staff": [{"userid": u1}]}), "name"),
        (
            json!({"name": "x", "staff": [{"userid": "nobody"}]}),
            "staff",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1, "dailyLimit": -1}]}),
            "staff[0].dailyLimit",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}, {"userid": u1}]}),
            "staff[1].userid",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "backupStaff": [u1]}),
            "backupStaff",
        ),
        (
            json!({"name": "x", "state": "has space", "staff": [{"userid": u1}]}),
            "state",
        ),
        (
            json!({"name": "x", "state": "a".repeat(31), "staff": [{"userid": u1}]}),
            "state",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "tagIds": [999999]}),
            "tagIds",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "ownerStaffId": 999999}),
            "ownerStaffId",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "welcome": {}}),
            "welcome.text",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "welcome": {"text": "hi", "materialIds": [1,2,3,4,5,6,7,8,9,10]}}),
            "welcome.materialIds",
        ),
        (
            json!({"name": "x", "staff": [{"userid": u1}], "welcome": {"materialIds": [424242]}}),
            "welcome.materialIds",
        ),
    ];
    for (body, field) in cases {
        refused(&app, body, field).await;
    }
    assert_eq!(
        n(&app, "SELECT COUNT(*) FROM channel_code".into()).await,
        0,
        "bad input writes nothing"
    );

    let r = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({"name": "门店码", "state": "store-01", "staff": [{"userid": u1}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    let again = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({"name": "另一个", "state": "store-01", "staff": [{"userid": u2}]}),
        )
        .await;
    assert_eq!((again.status, again.error()), (409, "CONFLICT"));
    let cfg = synced(&app, id).await["configId"]
        .as_str()
        .unwrap()
        .to_string();

    // An update keeps the state (printed codes stay valid) and reaches WeCom.
    let up = app
        .put(
            &format!("/api/v1/channel-codes/{id}"),
            &app.admin_token,
            json!({"name": "门店码2", "staff": [{"userid": u1}, {"userid": u2, "dailyLimit": 5}], "skipVerify": false}),
        )
        .await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    assert_eq!(up.data()["state"], "store-01");
    assert_eq!(up.data()["syncStatus"], "pending");
    let c = synced(&app, id).await;
    assert_eq!(c["configId"], cfg.as_str(), "same contact way");
    let way = wecom(&sim).get_contact_way(&cfg).await.unwrap();
    assert_eq!(way.user, vec![u1.clone(), u2.clone()]);
    assert!(!way.skip_verify);
    let bad = app
        .put(
            &format!("/api/v1/channel-codes/{id}"),
            &app.admin_token,
            json!({"name": "x", "staff": []}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        code(&app, id).await["name"],
        "门店码2",
        "a bad update changes nothing"
    );

    let list = app
        .get("/api/v1/channel-codes?keyword=门店", &app.admin_token)
        .await;
    assert_eq!(list.data()["total"], 1);

    let (_, other) = app.other_tenant_admin("acme", "acme-admin").await;
    for path in [
        format!("/api/v1/channel-codes/{id}"),
        format!("/api/v1/channel-codes/{id}/statistics"),
    ] {
        assert_eq!(app.get(&path, &other).await.status, 404, "{path}");
    }
    assert_eq!(
        app.get("/api/v1/channel-codes", &other).await.data()["total"],
        0
    );
    assert_eq!(
        app.delete(&format!("/api/v1/channel-codes/{id}"), &other)
            .await
            .status,
        404
    );
    let (_, viewer) = app.user_with_role("vic", "viewer").await;
    assert_eq!(
        app.get(&format!("/api/v1/channel-codes/{id}"), &viewer)
            .await
            .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/v1/channel-codes/{id}"), &viewer)
            .await
            .status,
        403
    );
    sim.shutdown().await;
}

async fn member_welcome_messages_with_variables_default_and_expiry(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (_, u1, _) = staff[0].clone();
    let (_, u2, u2_name) = staff[1].clone();
    let bad = app
        .post(
            "/api/v1/automation/welcome-messages",
            &app.admin_token,
            json!({"name": "x", "staffUserids": ["nobody"], "text": "hi"}),
        )
        .await;
    assert_eq!(
        bad.body["fields"][0]["field"], "staffUserids",
        "{:?}",
        bad.body
    );
    let bad = app
        .post(
            "/api/v1/automation/welcome-messages",
            &app.admin_token,
            json!({"name": "x", "text": "长".repeat(1400)}),
        )
        .await;
    assert_eq!(bad.body["fields"][0]["field"], "text", "{:?}", bad.body);

    let default = app
        .post(
            "/api/v1/automation/welcome-messages",
            &app.admin_token,
            json!({"name": "默认", "text": "欢迎 {nickname}"}),
        )
        .await;
    assert_eq!(default.status, 201, "{:?}", default.body);
    let own = app
        .post(
            "/api/v1/automation/welcome-messages",
            &app.admin_token,
            json!({"name": "专属", "staffUserids": [u2], "text": "我是{staff}，{nickname}你好"}),
        )
        .await;
    assert_eq!(own.status, 201, "{:?}", own.body);
    let own_id = own.data()["id"].as_i64().unwrap();
    assert_eq!(
        app.get("/api/v1/automation/welcome-messages", &app.admin_token)
            .await
            .data()["total"],
        2
    );

    let a = sim
        .customer_adds_staff(AddContact {
            userid: u2.clone(),
            name: Some("韩梅梅".into()),
            ..Default::default()
        })
        .unwrap();
    let w = until("u2's welcome", || async {
        welcomes_to(&sim, &a.external_userid).into_iter().next()
    })
    .await;
    assert_eq!(
        w.content["text"]["content"],
        format!("我是{u2_name}，韩梅梅你好")
    );

    let b = sim
        .customer_adds_staff(AddContact {
            userid: u1.clone(),
            name: Some("小明".into()),
            ..Default::default()
        })
        .unwrap();
    let w = until("the default welcome", || async {
        welcomes_to(&sim, &b.external_userid).into_iter().next()
    })
    .await;
    assert_eq!(w.content["text"]["content"], "欢迎 小明");

    // No WelcomeCode (a console welcome exists): nothing sent, the reason recorded.
    let c = sim
        .customer_adds_staff(AddContact {
            userid: u1.clone(),
            no_welcome_code: true,
            ..Default::default()
        })
        .unwrap();
    let skipped = until("the skipped welcome", || async {
        let r = app
            .get(
                &format!(
                    "/api/v1/automation/welcome-sends?externalUserid={}",
                    c.external_userid
                ),
                &app.admin_token,
            )
            .await;
        (r.data()["total"] == 1).then(|| r.data()["list"][0].clone())
    })
    .await;
    assert_eq!(skipped["status"], "skipped");
    assert!(welcomes_to(&sim, &c.external_userid).is_empty());

    // A code WeCom no longer accepts (its 20 seconds passed): recorded as failed with 41051.
    sim.update_config(|c| c.limits.welcome_code_ttl_secs = 0);
    let d = sim
        .customer_adds_staff(AddContact {
            userid: u1.clone(),
            ..Default::default()
        })
        .unwrap();
    let failed = until("the failed welcome", || async {
        let r = app
            .get(
                &format!(
                    "/api/v1/automation/welcome-sends?externalUserid={}",
                    d.external_userid
                ),
                &app.admin_token,
            )
            .await;
        (r.data()["total"] == 1).then(|| r.data()["list"][0].clone())
    })
    .await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("41051"),
        "{failed}"
    );
    assert!(welcomes_to(&sim, &d.external_userid).is_empty());

    // Disabled: u2's customers get the default again.
    sim.update_config(|c| c.limits.welcome_code_ttl_secs = 20);
    let up = app
        .put(
            &format!("/api/v1/automation/welcome-messages/{own_id}"),
            &app.admin_token,
            json!({"name": "专属", "staffUserids": [u2], "text": "x", "enabled": false}),
        )
        .await;
    assert_eq!((up.status, &up.data()["enabled"]), (200, &json!(false)));
    let e = sim
        .customer_adds_staff(AddContact {
            userid: u2.clone(),
            name: Some("小红".into()),
            ..Default::default()
        })
        .unwrap();
    let w = until("the default welcome for u2", || async {
        welcomes_to(&sim, &e.external_userid).into_iter().next()
    })
    .await;
    assert_eq!(w.content["text"]["content"], "欢迎 小红");
    assert_eq!(
        sim.duplicate_deliveries().len(),
        0,
        "every customer is welcomed once"
    );

    let (_, other) = app.other_tenant_admin("acme", "acme-admin").await;
    assert_eq!(
        app.get(
            &format!("/api/v1/automation/welcome-messages/{own_id}"),
            &other
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/automation/welcome-sends", &other)
            .await
            .data()["total"],
        0
    );
    assert_eq!(
        app.delete(
            &format!("/api/v1/automation/welcome-messages/{own_id}"),
            &app.admin_token
        )
        .await
        .status,
        200
    );
    sim.shutdown().await;
}

/// Working hours (Asia/Shanghai) now: one member's hours are open now, the other's are not.
/// (start, end) of each. Open is the whole day (an hour-long window could close mid-test when
/// the hour turns); closed starts at least an hour ahead of now.
fn hours_open_and_closed() -> ((String, String), (String, String)) {
    use chrono::Timelike;
    let h = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .hour();
    let open = ("00:00".to_string(), "24:00".to_string());
    let closed = if h < 20 {
        (format!("{:02}:00", h + 2), format!("{:02}:00", h + 3))
    } else {
        ("01:00".to_string(), "02:00".to_string())
    };
    (open, closed)
}

/// A channel code's members have working hours (days, HH:MM): the contact way routes to the
/// members working now; when no member works — as when every one is full — to the backup
/// staff; every minute the code follows the hours (its built-in schedule); bad hours are
/// refused naming the member's field, and nothing is created.
async fn channel_code_members_follow_their_working_hours(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let (u1, u2, backup) = (staff[0].1.clone(), staff[1].1.clone(), staff[2].1.clone());
    let ((open_start, open_end), (closed_start, closed_end)) = hours_open_and_closed();
    let before = n(&app, "SELECT COUNT(*) FROM channel_code".into()).await;
    for (hours, field) in [
        (json!({"workDays": [0]}), "staff[1].workDays"),
        (json!({"workDays": [8]}), "staff[1].workDays"),
        (json!({"workStart": "09:00"}), "staff[1].workEnd"),
        (json!({"workEnd": "18:00"}), "staff[1].workStart"),
        (
            json!({"workStart": "9am", "workEnd": "18:00"}),
            "staff[1].workStart",
        ),
        (
            json!({"workStart": "09:00", "workEnd": "25:00"}),
            "staff[1].workEnd",
        ),
        (
            json!({"workStart": "18:00", "workEnd": "09:00"}),
            "staff[1].workEnd",
        ),
    ] {
        let mut second = json!({"userid": u2});
        for (k, v) in hours.as_object().unwrap() {
            second[k] = v.clone();
        }
        let body = json!({"name": "x", "staff": [{"userid": u1}, second]});
        refused(&app, body, field).await;
    }
    assert_eq!(
        n(&app, "SELECT COUNT(*) FROM channel_code".into()).await,
        before
    );

    let r = app
        .post(
            "/api/v1/channel-codes",
            &app.admin_token,
            json!({
                "name": "值班码",
                "staff": [
                    {"userid": u1, "workStart": closed_start, "workEnd": closed_end},
                    {"userid": u2, "workDays": [7, 1, 2, 3, 4, 5, 6, 1], "workStart": open_start, "workEnd": open_end}
                ],
                "backupStaff": [backup],
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["id"].as_i64().unwrap();
    assert_eq!(
        r.data()["staff"][1]["workDays"],
        json!([1, 2, 3, 4, 5, 6, 7])
    );
    assert_eq!(r.data()["staff"][0]["working"], false, "{:?}", r.body);
    assert_eq!(r.data()["staff"][1]["working"], true, "{:?}", r.body);
    let c = synced(&app, id).await;
    assert_eq!(
        c["activeUsers"],
        json!([u2]),
        "only the member at work: {c}"
    );
    let cfg = c["configId"].as_str().unwrap().to_string();
    assert_eq!(
        wecom(&sim).get_contact_way(&cfg).await.unwrap().user,
        vec![u2.clone()]
    );

    // u2's hours end (as the clock would make them: their stored hours now lie ahead) and no
    // member works: the minute check hands the code to the backup staff, in WeCom too.
    let db = &app.state.db;
    let stored: String = db
        .fetch_one::<(String,)>(query("SELECT staff FROM channel_code WHERE id = ?").bind(id))
        .await
        .unwrap()
        .0;
    // Set member `i`'s hours in the stored code (what the clock would do to them).
    let set_hours = |staff: &str, i: usize, (start, end): &(String, String)| {
        let mut v: Value = serde_json::from_str(staff).unwrap();
        v[i]["workStart"] = json!(start);
        v[i]["workEnd"] = json!(end);
        v.to_string()
    };
    let closed = (closed_start.clone(), closed_end.clone());
    let open = (open_start.clone(), open_end.clone());
    let shifted = set_hours(&stored, 1, &closed);
    db.execute(
        query("UPDATE channel_code SET staff = ? WHERE id = ?")
            .bind(&shifted)
            .bind(id),
    )
    .await
    .unwrap();
    let fire = || async {
        db.execute(
            query("UPDATE job_schedule SET next_fire_at = ? WHERE name = 'automation.channel_codes.working_hours'")
                .bind(scrm::state::now_ms() - 1),
        )
        .await
        .unwrap();
    };
    fire().await;
    until("the code to move to the backup member", || async {
        let c = code(&app, id).await;
        (c["activeUsers"] == json!([backup])).then_some(())
    })
    .await;
    assert_eq!(
        wecom(&sim).get_contact_way(&cfg).await.unwrap().user,
        vec![backup.clone()]
    );
    assert_eq!(code(&app, id).await["staff"][1]["working"], false);

    // u1's hours begin: the code returns to u1 (the backup steps back).
    let back = set_hours(&shifted, 0, &open);
    db.execute(
        query("UPDATE channel_code SET staff = ? WHERE id = ?")
            .bind(&back)
            .bind(id),
    )
    .await
    .unwrap();
    fire().await;
    until("the code to return to u1", || async {
        let c = code(&app, id).await;
        (c["activeUsers"] == json!([u1])).then_some(())
    })
    .await;
    assert_eq!(
        wecom(&sim).get_contact_way(&cfg).await.unwrap().user,
        vec![u1.clone()]
    );
    sim.shutdown().await;
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    channel_code_members_follow_their_working_hours,
    channel_code_brings_tags_owner_welcome_and_statistics,
    channel_codes_validate_update_and_stay_in_their_tenant,
    member_welcome_messages_with_variables_default_and_expiry,
    a_customer_joining_a_group_chat_is_welcomed_in_it_once,
    content_sources_collect_feeds_and_pages_into_materials_once,
);

/// A customer joining a group chat is welcomed in the chat (its owner's group send) with their
/// name and the date, through the events relay; a relayed-again event welcomes once; a member
/// of the company joining, or a chat no welcome covers, gets none.
async fn a_customer_joining_a_group_chat_is_welcomed_in_it_once(app: TestApp) {
    let (sim, staff) = world(&app).await;
    let groups: Vec<(i64, String)> = app
        .state
        .db
        .fetch_all(query(
            "SELECT id, chat_id FROM group_chat WHERE owner_userid IS NOT NULL ORDER BY id",
        ))
        .await
        .unwrap();
    assert!(groups.len() >= 2, "the simulated company has group chats");
    let (g1, chat1) = groups[0].clone();
    let (_, chat2) = groups[1].clone();
    let bad = app
        .post(
            "/api/v1/automation/group-welcomes",
            &app.admin_token,
            json!({"name": "x", "groupIds": [987654], "text": "hi"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["fields"][0]["field"], "groupIds", "{:?}", bad.body);
    let bad = app
        .post(
            "/api/v1/automation/group-welcomes",
            &app.admin_token,
            json!({"name": "x", "groupIds": [g1]}),
        )
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["fields"][0]["field"], "text", "{:?}", bad.body);
    let r = app
        .post(
            "/api/v1/automation/group-welcomes",
            &app.admin_token,
            json!({"name": "入群欢迎", "groupIds": [g1], "text": "欢迎{nickname}入群，{date}"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let wid = r.data()["id"].as_i64().unwrap();

    let group_sends = |chat: &str| -> Vec<Delivery> {
        sim.deliveries()
            .into_iter()
            .filter(|d| d.kind == DeliveryKind::GroupMassSend && d.recipient == chat)
            .collect()
    };
    // A new customer joins chat 1; one joins chat 2 (no welcome there); a member joins chat 1.
    let (ext, _) = sim
        .member_joins_group(JoinGroup {
            chat_id: chat1.clone(),
            member: None,
            join_scene: 3,
        })
        .unwrap();
    sim.member_joins_group(JoinGroup {
        chat_id: chat2.clone(),
        member: None,
        join_scene: 3,
    })
    .unwrap();
    // (A member already in the chat makes the simulator refuse: nothing joined, nothing sent.)
    let member = staff[3].1.clone();
    let _ = sim.member_joins_group(JoinGroup {
        chat_id: chat1.clone(),
        member: Some(member),
        join_scene: 0,
    });
    let sent = until("the welcome in the chat", || async {
        let d = group_sends(&chat1);
        (!d.is_empty()).then_some(d)
    })
    .await;
    let name: (Option<String>,) = app
        .state
        .db
        .fetch_one(
            query("SELECT COALESCE(c.name, m.name) FROM group_chat_member m LEFT JOIN customer c ON c.id = m.customer_id WHERE m.group_id = ? AND m.member_userid = ?")
                .bind(g1)
                .bind(ext.clone()),
        )
        .await
        .unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        sent[0].content["text"]["content"],
        format!("欢迎{}入群，{today}", name.0.unwrap_or_default()),
        "{:?}",
        sent[0].content
    );
    // Every join event relayed (the member's and chat 2's too), then offered again: still one.
    until("every join relayed", || async {
        (n(
            &app,
            "SELECT COUNT(*) FROM event_outbox WHERE event_type = 'group.member.joined' AND published_at IS NULL".into(),
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    app.state
        .db
        .execute(query(
            "UPDATE event_outbox SET published_at = NULL WHERE event_type = 'group.member.joined'",
        ))
        .await
        .unwrap();
    until("the joins relayed again", || async {
        (n(
            &app,
            "SELECT COUNT(*) FROM event_outbox WHERE event_type = 'group.member.joined' AND published_at IS NULL".into(),
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    let d = app
        .get(
            &format!("/api/v1/automation/group-welcomes/{wid}"),
            &app.admin_token,
        )
        .await;
    let sends = d.data()["recentSends"].as_array().unwrap().clone();
    assert_eq!(sends.len(), 1, "one welcome: {sends:?}");
    assert_eq!(sends[0]["status"], "sent", "{sends:?}");
    assert_eq!(group_sends(&chat1).len(), 1);
    assert!(group_sends(&chat2).is_empty());
    // A viewer reads, cannot change; another tenant sees nothing.
    let (_, viewer) = app.user_with_role("gw-viewer", "viewer").await;
    assert_eq!(
        app.get("/api/v1/automation/group-welcomes", &viewer)
            .await
            .status,
        200
    );
    let r = app
        .put(
            &format!("/api/v1/automation/group-welcomes/{wid}"),
            &viewer,
            json!({"name": "y", "text": "hi"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let (_, other) = app.other_tenant_admin("gw-other", "gw-other-admin").await;
    assert_eq!(
        app.get(&format!("/api/v1/automation/group-welcomes/{wid}"), &other)
            .await
            .status,
        404
    );
    sim.shutdown().await;
}

async fn spawn_api_only(backend: scrm_db::Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, &[("SCRM_ROLE", "api")]).await
}

scrm_db::db_tests!(crate::automation::spawn_api_only; a_group_welcome_killed_after_its_wecom_call_welcomes_once);

/// A worker killed right after WeCom accepted a group welcome, before the answer was recorded:
/// the welcome's next attempt (another worker's, after the lease) finds it in WeCom's send
/// records instead of sending again — the chat is welcomed once.
async fn a_group_welcome_killed_after_its_wecom_call_welcomes_once(app: TestApp) {
    use crate::helpers::{crash_worker, wait_hung};
    use scrm::operation::mass::engine::chaos;
    let first = crash_worker(&app).await;
    scrm::jobs::ensure_events_relay(&app.state).await.unwrap();
    let (sim, _) = world(&app).await;
    let (g1, chat1): (i64, String) = app
        .state
        .db
        .fetch_one(query(
            "SELECT id, chat_id FROM group_chat WHERE owner_userid IS NOT NULL ORDER BY id",
        ))
        .await
        .unwrap();
    let r = app
        .post(
            "/api/v1/automation/group-welcomes",
            &app.admin_token,
            json!({"name": "入群欢迎", "groupIds": [g1], "text": "欢迎{nickname}入群"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let wid = r.data()["id"].as_i64().unwrap();
    chaos::hang_after_next_call();
    sim.member_joins_group(JoinGroup {
        chat_id: chat1.clone(),
        member: None,
        join_scene: 3,
    })
    .unwrap();
    wait_hung("the welcome hung after its WeCom call").await;
    first.abort(); // the process dies: the msgid was never recorded
    let _second = crash_worker(&app).await;
    let sends = until("the welcome recorded as sent", || async {
        let d = app
            .get(
                &format!("/api/v1/automation/group-welcomes/{wid}"),
                &app.admin_token,
            )
            .await;
        let s = d.data()["recentSends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (s.first().is_some_and(|x| x["status"] == "sent")).then_some(s)
    })
    .await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    let welcomes: Vec<Delivery> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.kind == DeliveryKind::GroupMassSend && d.recipient == chat1)
        .collect();
    assert_eq!(welcomes.len(), 1, "welcomed once: {welcomes:?}");
    assert_eq!(
        sim.call_counts()
            .get("/cgi-bin/externalcontact/add_msg_template")
            .copied(),
        Some(1),
        "the retry found the welcome instead of sending again"
    );
    sim.shutdown().await;
}

fn rss(items: &[(&str, &str)]) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>行业资讯</title>"#,
    );
    for (guid, title) in items {
        body.push_str(&format!(
            "<item><title>{title}</title><link>https://news.example.com/{guid}</link><guid>{guid}</guid><description>摘要 {title} &amp; more</description></item>"
        ));
    }
    body.push_str("</channel></rss>");
    body
}

/// Content collection: a feed and a page served by a local HTTP server become link materials;
/// fetching again adds only new items (deduplicated by guid / link); the collection job fetches
/// due sources by itself; bad bodies name their field; viewers read only; tenants.
async fn content_sources_collect_feeds_and_pages_into_materials_once(app: TestApp) {
    use std::sync::Arc;
    let feed = Arc::new(parking_lot::Mutex::new(rss(&[
        ("g1", "第一篇"),
        ("g2", "第二篇"),
    ])));
    let served = feed.clone();
    let router = axum::Router::new()
        .route(
            "/feed.xml",
            axum::routing::get(move || {
                let f = served.clone();
                async move { ([("content-type", "application/rss+xml")], f.lock().clone()) }
            }),
        )
        .route(
            "/atom.xml",
            axum::routing::get(|| async {
                r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>urn:x:1</id><title>原子一</title><link href="https://atom.example.com/1"/><summary>s1</summary></entry></feed>"#
            }),
        )
        .route(
            "/page.html",
            axum::routing::get(|| async {
                axum::response::Html("<html><head><title>双十一 活动</title></head><body>x</body></html>")
            }),
        )
        .route("/broken", axum::routing::get(|| async { "not xml" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    const SOURCES: &str = "/api/v1/automation/content-sources";

    for (body, field) in [
        (json!({"url": format!("{base}/feed.xml")}), "name"),
        (json!({"name": "x", "url": "ftp://example.com/feed"}), "url"),
        (
            json!({"name": "x", "url": format!("{base}/feed.xml"), "kind": "video"}),
            "kind",
        ),
        (
            json!({"name": "x", "url": format!("{base}/feed.xml"), "intervalMinutes": 1}),
            "intervalMinutes",
        ),
    ] {
        let r = app.post(SOURCES, &app.admin_token, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["fields"][0]["field"], field, "{body}: {:?}", r.body);
    }
    let r = app
        .post(
            SOURCES,
            &app.admin_token,
            json!({"name": "资讯", "url": format!("{base}/feed.xml"), "kind": "feed", "intervalMinutes": 30}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let feed_id = r.data()["id"].as_i64().unwrap();
    let fetch = |id: i64| {
        let app = &app;
        async move {
            let r = app
                .post(
                    &format!("{SOURCES}/{id}/fetch"),
                    &app.admin_token,
                    json!({}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            (
                r.data()["added"].as_i64().unwrap(),
                r.data()["skipped"].as_i64().unwrap(),
            )
        }
    };
    assert_eq!(fetch(feed_id).await, (2, 0));
    let d = app
        .get(&format!("{SOURCES}/{feed_id}"), &app.admin_token)
        .await;
    let items = d.data()["recentItems"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    let first = items.iter().find(|i| i["key"] == "g1").expect("g1");
    let m = app
        .get(
            &format!("/api/material/{}", first["materialId"]),
            &app.admin_token,
        )
        .await;
    assert_eq!(m.status, 200, "{:?}", m.body);
    assert_eq!(m.data()["materialType"], "link");
    assert_eq!(m.data()["title"], "第一篇");
    assert_eq!(m.data()["content"]["url"], "https://news.example.com/g1");
    assert_eq!(m.data()["content"]["desc"], "摘要 第一篇 & more");
    // Again: nothing new. A new item: only it.
    assert_eq!(fetch(feed_id).await, (0, 2));
    *feed.lock() = rss(&[("g3", "第三篇"), ("g1", "第一篇"), ("g2", "第二篇")]);
    assert_eq!(fetch(feed_id).await, (1, 2));
    assert_eq!(
        n(
            &app,
            "SELECT COUNT(*) FROM material WHERE material_type = 'link'".into()
        )
        .await,
        3
    );

    // A page: one material with its title, once.
    let r = app
        .post(
            SOURCES,
            &app.admin_token,
            json!({"name": "活动页", "url": format!("{base}/page.html"), "kind": "page"}),
        )
        .await;
    let page_id = r.data()["id"].as_i64().unwrap();
    assert_eq!(fetch(page_id).await, (1, 0));
    assert_eq!(fetch(page_id).await, (0, 1));
    assert_eq!(
        n(
            &app,
            "SELECT COUNT(*) FROM material WHERE title = '双十一 活动'".into()
        )
        .await,
        1
    );
    // An unreadable source: a clear error, recorded on the source.
    let r = app
        .post(
            SOURCES,
            &app.admin_token,
            json!({"name": "坏的", "url": format!("{base}/broken")}),
        )
        .await;
    let broken = r.data()["id"].as_i64().unwrap();
    let f = app
        .post(
            &format!("{SOURCES}/{broken}/fetch"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(f.status, 502, "{:?}", f.body);
    assert_eq!(f.body["error"], "CONTENT_SOURCE_UNREADABLE");
    let d = app
        .get(&format!("{SOURCES}/{broken}"), &app.admin_token)
        .await;
    assert!(d.data()["lastError"].as_str().is_some(), "{:?}", d.body);

    // The collection job fetches what is due by itself (a new source is due at once).
    let r = app
        .post(
            SOURCES,
            &app.admin_token,
            json!({"name": "原子", "url": format!("{base}/atom.xml")}),
        )
        .await;
    let atom = r.data()["id"].as_i64().unwrap();
    app.state
        .jobs
        .enqueue_now(scrm_jobs::NewJob::new("automation.content.collect", &json!({})).unwrap())
        .await
        .unwrap();
    until("the atom entry collected", || async {
        (n(
            &app,
            format!("SELECT COUNT(*) FROM content_source_item WHERE source_id = {atom} AND item_key = 'urn:x:1'"),
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        n(
            &app,
            "SELECT COUNT(*) FROM material WHERE title = '原子一'".into()
        )
        .await,
        1
    );

    // Viewers read, only managers add; another tenant sees nothing.
    let (_, viewer) = app.user_with_role("content-viewer", "viewer").await;
    assert_eq!(app.get(SOURCES, &viewer).await.status, 200);
    let r = app
        .post(
            SOURCES,
            &viewer,
            json!({"name": "x", "url": format!("{base}/feed.xml")}),
        )
        .await;
    assert_eq!(r.status, 403);
    let (_, other) = app
        .other_tenant_admin("content-other", "content-other-admin")
        .await;
    assert_eq!(
        app.get(&format!("{SOURCES}/{feed_id}"), &other)
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(&format!("{SOURCES}/{feed_id}/fetch"), &other, json!({}))
            .await
            .status,
        404
    );
}
