//! Traffic pools of device accounts (seed 002's traffic distribution on the device side), end to
//! end against the gateway simulator: group pushes and auto-created groups spread across a
//! pool's phones by its strategy and daily caps, refused at creation when no phone of the pool
//! can take them; new friends counted for the phone that got them; the paged account list.

use scrm_db::query;
use scrm_wecom_sim::gateway::GatewaySim;
use serde_json::{Value, json};

use crate::gateway::push_completed as push;
use crate::helpers::{TestApp, n, until};

/// Three phones on one gateway: `wxid_a` and `wxid_b` in chat rooms r1..r4, `wxid_c` alone in
/// r5; `wxid_a` has friends f1..f3, `wxid_b` f1 and f2. Returns once every friend sync (which
/// also lists the rooms) is done.
pub(crate) async fn phones(app: &TestApp) -> GatewaySim {
    let token = crate::gateway::register(app).await;
    let sim = GatewaySim::new();
    for (w, friends) in [
        ("wxid_a", &["f1", "f2", "f3"][..]),
        ("wxid_b", &["f1", "f2"][..]),
        ("wxid_c", &["f1"][..]),
    ] {
        sim.add_device(w, w);
        for f in friends {
            sim.add_friend(w, f, &format!("friend {f}"));
        }
    }
    for i in 1..=4 {
        let room = format!("r{i}@chatroom");
        for w in ["wxid_a", "wxid_b"] {
            sim.add_room(w, &room, &format!("room {i}"), &[w, "f1"]);
        }
    }
    sim.add_room("wxid_c", "r5@chatroom", "room 5", &["wxid_c", "f1"]);
    crate::gateway::connect(app, &sim, &token);
    until("the three friend syncs", || async {
        let done = n(
            app,
            "SELECT COUNT(*) FROM device_command WHERE command = 'fetch_friends' AND status = 'done'"
                .into(),
        )
        .await;
        (done == 3).then_some(())
    })
    .await;
    sim
}

/// (chat room, account) of each result of a push, in the request's order.
fn pushed_by(p: &Value) -> Vec<(String, String)> {
    p["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["chatroomId"].as_str().unwrap().to_string(),
                r["accountId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn text(room: &str) -> Value {
    json!({"type": "TEXT", "data": {"text": format!("hello {room}")}})
}

fn rooms(ids: &[u32]) -> Vec<String> {
    ids.iter().map(|i| format!("r{i}@chatroom")).collect()
}

async fn auto_group(app: &TestApp, body: Value) -> Value {
    let r = app
        .post("/v1/workbench/auto-group", &app.admin_token, body)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["autoGroupId"].as_i64().unwrap();
    until("the group created", || async {
        let r = app
            .get(
                &format!("/api/v1/devices/auto-groups/{id}"),
                &app.admin_token,
            )
            .await;
        (r.data()["status"] == "CREATED").then(|| r.data().clone())
    })
    .await
}

/// A pool of two phones (round robin; `wxid_a` at most 3 a day) spreads a group push's chat rooms
/// and auto-created groups across the phones able to do each, caps included; what no phone of
/// the pool can take is refused at creation, naming the field, and nothing is created.
async fn a_pool_spreads_group_pushes_and_groups_across_its_phones(app: TestApp) {
    let sim = phones(&app).await;
    let t = &app.admin_token;
    let r = app
        .post(
            "/api/v1/automation/traffic-pools",
            t,
            json!({"name": "phones", "strategy": "round_robin",
                   "members": [{"accountId": "wxid_a", "dailyCap": 3}, {"accountId": "wxid_b"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();

    // Four rooms both phones are in: a, b, a, b; each room pushed once, by its phone.
    let p1 = push(
        &app,
        json!({"poolId": pool, "chatroomIds": rooms(&[1, 2, 3, 4]), "taskName": "spread",
               "messageContent": text("all")}),
    )
    .await;
    assert_eq!(p1["poolId"], pool, "{p1}");
    assert_eq!(p1["accountId"], Value::Null, "{p1}");
    assert_eq!(p1["successCount"], 4, "{p1}");
    let by: Vec<String> = pushed_by(&p1).into_iter().map(|x| x.1).collect();
    assert_eq!(by, ["wxid_a", "wxid_b", "wxid_a", "wxid_b"], "{p1}");
    for (room, account) in pushed_by(&p1) {
        let got: Vec<_> = sim
            .deliveries()
            .into_iter()
            .filter(|d| d.to == room && d.kind == "send_text")
            .collect();
        assert_eq!(got.len(), 1, "{room}: {got:?}");
        assert_eq!(got[0].account, account, "{room}");
    }

    // Each phone's rooms went out one random gap apart (200-300 ms here, seed 002's 3-8 s by
    // default), the two phones side by side.
    let id1 = p1["groupPushId"].as_i64().unwrap();
    for w in ["wxid_a", "wxid_b"] {
        let times: Vec<(Option<i64>,)> = app
            .state
            .db
            .fetch_all(
                query("SELECT released_at FROM device_command WHERE source = 'group_push' AND source_id = ? AND account_wxid = ? ORDER BY released_at")
                    .bind(id1)
                    .bind(w),
            )
            .await
            .unwrap();
        let times: Vec<i64> = times.into_iter().map(|t| t.0.expect("released")).collect();
        assert_eq!(times.len(), 2, "{w}");
        assert!(times[1] - times[0] >= 200, "{w}: {times:?}");
    }

    // A group with f3: only wxid_a has f3 as a friend, so it creates it (its third today),
    // and the welcome goes into the new room.
    let g = auto_group(
        &app,
        json!({"poolId": pool, "groupName": "VIP", "memberWxids": ["f1", "f3"],
               "welcomeMessage": "欢迎 {nickname}"}),
    )
    .await;
    assert_eq!(g["accountId"], "wxid_a", "{g}");
    let room = g["chatroomId"].as_str().unwrap().to_string();
    assert_eq!(sim.rooms("wxid_a")[&room].members, ["wxid_a", "f1", "f3"]);
    until("the welcome in the new group", || async {
        sim.deliveries()
            .into_iter()
            .find(|d| d.to == room && d.account == "wxid_a")
    })
    .await;

    // wxid_a is at its cap of 3: the next rooms and groups go to wxid_b.
    let image = json!({"type": "IMAGE", "data": {"url": "https://example.com/a.png"}});
    let p2 = push(
        &app,
        json!({"poolId": pool, "chatroomIds": rooms(&[1, 2]), "messageContent": image}),
    )
    .await;
    let by: Vec<String> = pushed_by(&p2).into_iter().map(|x| x.1).collect();
    assert_eq!(by, ["wxid_b", "wxid_b"], "{p2}");
    let images: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.kind == "send_image")
        .collect();
    assert_eq!(images.len(), 2, "{images:?}");
    assert!(
        images
            .iter()
            .all(|d| d.account == "wxid_b" && d.data["url"] == "https://example.com/a.png")
    );
    let g2 = auto_group(
        &app,
        json!({"poolId": pool, "groupName": "VIP 2", "memberWxids": ["f1", "f2"]}),
    )
    .await;
    assert_eq!(g2["accountId"], "wxid_b", "{g2}");

    // Refused at creation, naming the field; nothing is created.
    let before = n(
        &app,
        "SELECT (SELECT COUNT(*) FROM device_group_push) + (SELECT COUNT(*) FROM device_auto_group) \
         + (SELECT COUNT(*) FROM device_command) + (SELECT COUNT(*) FROM traffic_assignment)"
            .into(),
    )
    .await;
    let r = app
        .post(
            "/v1/workbench/auto-group",
            t,
            json!({"poolId": pool, "groupName": "VIP 3", "memberWxids": ["f1", "f3"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error(), r.body["fields"][0]["field"].as_str()),
        (422, "TRAFFIC_POOL_FULL", Some("memberWxids")),
        "{:?}",
        r.body
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("next free at"),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": pool, "chatroomIds": ["r1@chatroom", "r1@chatroom", "r5@chatroom"],
                   "messageContent": text("x")}),
        )
        .await;
    assert_eq!(
        (r.status, r.error(), r.body["fields"][0]["field"].as_str()),
        (422, "NO_POOL_ACCOUNT", Some("chatroomIds[2]")),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": pool, "accountId": "wxid_a", "chatroomIds": ["r1@chatroom"],
                   "messageContent": text("x")}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("poolId")),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": 999_999, "chatroomIds": ["r1@chatroom"], "messageContent": text("x")}),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    // Another tenant cannot use the pool.
    let (_, other) = app.other_tenant_admin("other", "otheradmin").await;
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            &other,
            json!({"poolId": pool, "chatroomIds": ["r1@chatroom"], "messageContent": text("x")}),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let after = n(
        &app,
        "SELECT (SELECT COUNT(*) FROM device_group_push) + (SELECT COUNT(*) FROM device_auto_group) \
         + (SELECT COUNT(*) FROM device_command) + (SELECT COUNT(*) FROM traffic_assignment)"
            .into(),
    )
    .await;
    assert_eq!(after, before, "a refusal changes nothing");

    // A new friend on wxid_b counts as given to it today; the pool shows every phone's work.
    sim.new_friend("wxid_b", "f7", "Gil");
    let stats = until("the new friend counted", || async {
        let r = app
            .get(
                &format!("/api/v1/automation/traffic-pools/{pool}/statistics"),
                t,
            )
            .await;
        let m = r.data()["members"].as_array()?.clone();
        (m[1]["assignedToday"] == 6).then_some(m)
    })
    .await;
    assert_eq!(
        (&stats[0]["accountId"], &stats[0]["assignedToday"]),
        (&json!("wxid_a"), &json!(3))
    );
    assert_eq!(stats[0]["availableNow"], false);
    let r = app
        .get(
            &format!("/api/v1/automation/traffic-pools/{pool}/assignments?size=50"),
            t,
        )
        .await;
    assert_eq!(r.data()["total"], 9, "{:?}", r.body);
    let sources: Vec<&str> = r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources[0], "device_friend");
    assert_eq!(
        sources.iter().filter(|s| **s == "group_push").count(),
        6,
        "{sources:?}"
    );
    assert_eq!(sources.iter().filter(|s| **s == "auto_group").count(), 2);
    let first_push = &r.data()["list"][8];
    assert_eq!(first_push["customerId"], Value::Null);
    assert_eq!(
        first_push["sourceRef"],
        json!(format!("gp:{id1}:r1@chatroom"))
    );

    // The push list: by pool, and by a phone that pushed rooms of a pool push.
    let r = app
        .get(&format!("/api/v1/devices/group-pushes?poolId={pool}"), t)
        .await;
    assert_eq!(r.data()["total"], 2, "{:?}", r.body);
    let r = app
        .get("/api/v1/devices/group-pushes?accountId=wxid_a", t)
        .await;
    assert_eq!(r.data()["total"], 1, "{:?}", r.body);
    sim.stop();
}

/// A pool whose only phone is at its cap refuses the next room; a phone that left a room (as
/// its friend sync shows) is no longer picked for it; a disabled pool takes nothing; the account
/// list pages from the database.
async fn a_disabled_or_full_pool_refuses_and_accounts_page(app: TestApp) {
    let sim = phones(&app).await;
    let t = &app.admin_token;
    let r = app
        .post(
            "/api/v1/automation/traffic-pools",
            t,
            json!({"name": "tight", "members": [{"accountId": "wxid_c", "dailyCap": 1}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();
    let p = push(
        &app,
        json!({"poolId": pool, "chatroomIds": ["r5@chatroom"], "messageContent": text("5")}),
    )
    .await;
    assert_eq!(pushed_by(&p), [("r5@chatroom".into(), "wxid_c".into())]);
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": pool, "chatroomIds": ["r5@chatroom"], "messageContent": text("5")}),
        )
        .await;
    assert_eq!(
        (r.status, r.error(), r.body["fields"][0]["field"].as_str()),
        (422, "TRAFFIC_POOL_FULL", Some("chatroomIds[0]")),
        "{:?}",
        r.body
    );
    // wxid_c leaves r5: after its next friend sync (which lists its rooms) no phone of the pool
    // is in r5.
    sim.leave_room("wxid_c", "r5@chatroom");
    let r = app
        .post("/api/v1/devices/accounts/wxid_c/friends/sync", t, json!({}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    until("r5 left", || async {
        let left = n(
            &app,
            "SELECT COUNT(*) FROM device_chatroom WHERE account_wxid = 'wxid_c' AND chatroom_id = 'r5@chatroom' AND left_room = 1"
                .into(),
        )
        .await;
        (left == 1).then_some(())
    })
    .await;
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": pool, "chatroomIds": ["r5@chatroom"], "messageContent": text("5")}),
        )
        .await;
    assert_eq!(
        (r.status, r.error(), r.body["fields"][0]["field"].as_str()),
        (422, "NO_POOL_ACCOUNT", Some("chatroomIds[0]")),
        "{:?}",
        r.body
    );
    // A disabled pool takes nothing.
    let r = app
        .put(
            &format!("/api/v1/automation/traffic-pools/{pool}"),
            t,
            json!({"name": "tight", "enabled": false, "members": [{"accountId": "wxid_c"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"poolId": pool, "chatroomIds": ["r5@chatroom"], "messageContent": text("5")}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (409, "TRAFFIC_POOL_DISABLED"),
        "{:?}",
        r.body
    );
    assert_eq!(
        n(&app, "SELECT COUNT(*) FROM device_group_push".into()).await,
        1
    );

    // The account list: everything without paging parameters, a page with them.
    let r = app
        .get("/api/v1/devices/accounts?accountType=WECHAT", t)
        .await;
    assert_eq!(r.data().as_array().map(Vec::len), Some(3), "{:?}", r.body);
    let r = app
        .get(
            "/api/v1/devices/accounts?accountType=WECHAT&page=2&pageSize=2",
            t,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.data()["total"], &r.data()["page"], &r.data()["pageSize"]),
        (&json!(3), &json!(2), &json!(2))
    );
    let ids: Vec<&str> = r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wxid_c"]);
    for (q, field) in [
        ("pageSize=0", "pageSize"),
        ("page=0", "page"),
        ("pageSize=501", "pageSize"),
    ] {
        let r = app.get(&format!("/api/v1/devices/accounts?{q}"), t).await;
        assert_eq!(
            (r.status, r.body["fields"][0]["field"].as_str()),
            (400, Some(field)),
            "{q}: {:?}",
            r.body
        );
    }
    sim.stop();
}

scrm_db::db_tests!(crate::devices_group_send::spawn;
    a_pool_spreads_group_pushes_and_groups_across_its_phones,
    a_disabled_or_full_pool_refuses_and_accounts_page,
);
