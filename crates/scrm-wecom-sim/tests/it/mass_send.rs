use std::time::Duration;

use scrm_wecom_sim::DeliveryKind;
use scrm_wecom_sim::scenarios::{AddContact, Pair};
use serde_json::{Value, json};

use crate::helpers::*;

async fn send_result(t: &T, msgid: &str, userid: &str) -> Vec<Value> {
    let v = t
        .post(
            "/cgi-bin/externalcontact/get_groupmsg_send_result",
            json!({"msgid": msgid, "userid": userid, "limit": 1000}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    v["send_list"].as_array().unwrap().clone()
}

#[tokio::test]
async fn unknown_and_non_friend_customers_land_in_fail_list() {
    let t = T::start().await;
    let uid = t.staff_with(2);
    let friends = t.customers_of(&uid);
    let stranger = t.stranger_of(&uid);
    let bogus = "wmAAAAAAAAAAAAAAAAAAAAAA00000001".to_string();
    let v = t
        .post("/cgi-bin/externalcontact/add_msg_template", json!({"sender": uid, "external_userid": [friends[0], friends[1], stranger, bogus], "text": text("hi")}))
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let fail: Vec<&str> = v["fail_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(fail, vec![stranger.as_str(), bogus.as_str()]);
    let msgid = v["msgid"].as_str().unwrap();
    let results = send_result(&t, msgid, &uid).await;
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["status"] == 1 && r["send_time"].is_i64())
    );
    assert_eq!(
        t.sim
            .query_deliveries(&scrm_wecom_sim::DeliveryQuery {
                msgid: Some(msgid.into()),
                ..Default::default()
            })
            .len(),
        2
    );

    let none = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "external_userid": [stranger], "text": text("hi")}),
        )
        .await;
    assert_eq!(none["errcode"], 41048);
    assert_eq!(none["fail_list"], json!([]));
    let all_bogus = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"external_userid": [bogus], "text": text("hi")}),
        )
        .await;
    assert_eq!(all_bogus["errcode"], 40096);
}

#[tokio::test]
async fn sender_only_sends_to_all_their_customers_and_tag_filters_narrow_it() {
    let t = T::start().await;
    let uid = t.staff_with(3);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "text": text("全员")}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(
        send_result(&t, v["msgid"].as_str().unwrap(), &uid)
            .await
            .len(),
        t.customers_of(&uid).len()
    );
    let v = t
        .post("/cgi-bin/externalcontact/add_msg_template", json!({"sender": uid, "text": text("无"), "tag_filter": {"group_list": [{"tag_list": ["etnothing"]}]}}))
        .await;
    assert_eq!(v["errcode"], 41048);
}

#[tokio::test]
async fn the_monthly_receive_quota_fails_extra_sends_with_status_3() {
    let mut cfg = cfg();
    cfg.mass_send.receive_quota_per_month = 2;
    let t = T::with(cfg).await;
    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let v = t
            .post(
                "/cgi-bin/externalcontact/add_msg_template",
                json!({"sender": uid, "external_userid": [ext], "text": text(&format!("第{i}条"))}),
            )
            .await;
        statuses
            .push(send_result(&t, v["msgid"].as_str().unwrap(), &uid).await[0]["status"].clone());
    }
    assert_eq!(statuses, vec![json!(1), json!(1), json!(3)]);
    assert_eq!(t.sim.deliveries_per_recipient()[&ext], 2);
}

#[tokio::test]
async fn nothing_is_delivered_before_the_sender_confirms() {
    let mut cfg = cfg();
    cfg.mass_send.confirm_delay_ms = 300;
    let t = T::with(cfg).await;
    let uid = t.staff_with(2);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "text": text("稍后")}),
        )
        .await;
    let msgid = v["msgid"].as_str().unwrap().to_string();
    let task = t
        .post(
            "/cgi-bin/externalcontact/get_groupmsg_task",
            json!({"msgid": msgid}),
        )
        .await;
    assert_eq!(task["task_list"][0]["status"], 0);
    assert!(task["task_list"][0].get("send_time").is_none());
    assert!(
        send_result(&t, &msgid, &uid)
            .await
            .iter()
            .all(|r| r["status"] == 0)
    );
    assert_eq!(t.sim.delivery_count(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = t
        .post(
            "/cgi-bin/externalcontact/get_groupmsg_task",
            json!({"msgid": msgid}),
        )
        .await;
    assert_eq!(task["task_list"][0]["status"], 2);
    assert_eq!(t.sim.delivery_count(), t.customers_of(&uid).len());
}

#[tokio::test]
async fn a_cancelled_unconfirmed_send_never_delivers_and_reminders_are_counted() {
    let mut cfg = cfg();
    cfg.mass_send.confirm_delay_ms = -1;
    let t = T::with(cfg).await;
    let uid = t.staff_with(1);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "text": text("取消我")}),
        )
        .await;
    let msgid = v["msgid"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(
            t.post(
                "/cgi-bin/externalcontact/remind_groupmsg_send",
                json!({"msgid": msgid})
            )
            .await["errcode"],
            0
        );
    }
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/remind_groupmsg_send",
            json!({"msgid": msgid})
        )
        .await["errcode"],
        41094
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/cancel_groupmsg_send",
            json!({"msgid": msgid})
        )
        .await["errcode"],
        0
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/remind_groupmsg_send",
            json!({"msgid": msgid})
        )
        .await["errcode"],
        41093
    );
    assert!(t.sim.confirm_mass_send(&msgid, None).is_err());
    let r = t
        .admin_post(&format!("/sim/admin/mass_sends/{msgid}/confirm"), json!({}))
        .await;
    assert!(r["error"].as_str().unwrap().contains("cancelled"));
    assert_eq!(t.sim.delivery_count(), 0);
    assert!(
        send_result(&t, &msgid, &uid)
            .await
            .iter()
            .all(|r| r["status"] == 0)
    );
}

#[tokio::test]
async fn a_customer_who_left_before_confirmation_gets_status_2() {
    let mut cfg = cfg();
    cfg.mass_send.confirm_delay_ms = -1;
    let t = T::with(cfg).await;
    let uid = t.staff_with(2);
    let custs = t.customers_of(&uid);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "external_userid": [custs[0], custs[1]], "text": text("x")}),
        )
        .await;
    let msgid = v["msgid"].as_str().unwrap().to_string();
    t.sim
        .customer_deletes_staff(Pair {
            userid: uid.clone(),
            external_userid: custs[1].clone(),
        })
        .unwrap();
    let r = t
        .admin_post(
            &format!("/sim/admin/mass_sends/{msgid}/confirm"),
            json!({"userid": uid}),
        )
        .await;
    assert_eq!(r["result"]["delivered"], 1);
    let res = send_result(&t, &msgid, &uid).await;
    let status =
        |e: &str| res.iter().find(|r| r["external_userid"] == e).unwrap()["status"].clone();
    assert_eq!(status(&custs[0]), 1);
    assert_eq!(status(&custs[1]), 2);
}

#[tokio::test]
async fn list_v2_finds_sends_by_time_and_sender() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "text": text("对账")}),
        )
        .await;
    let msgid = v["msgid"].as_str().unwrap();
    let now = t.sim.now();
    let l = t.post("/cgi-bin/externalcontact/get_groupmsg_list_v2", json!({"chat_type": "single", "start_time": now - 60, "end_time": now + 60, "creator": uid})).await;
    assert_eq!(l["errcode"], 0, "{l}");
    let item = &l["group_msg_list"][0];
    assert_eq!(item["msgid"], msgid);
    assert_eq!(item["create_type"], 0);
    assert_eq!(item["text"]["content"], "对账");
    assert!(
        item.get("creator").is_none(),
        "API-created sends carry no creator"
    );
    let other = t
        .post(
            "/cgi-bin/externalcontact/get_groupmsg_list_v2",
            json!({"start_time": now - 60, "end_time": now + 60, "creator": "nobody"}),
        )
        .await;
    assert_eq!(other["group_msg_list"], json!([]));
    let wide = t
        .post(
            "/cgi-bin/externalcontact/get_groupmsg_list_v2",
            json!({"start_time": now - 40 * 86400, "end_time": now}),
        )
        .await;
    assert_eq!(wide["errcode"], 40058);
}

#[tokio::test]
async fn group_mass_sends_reach_the_senders_chats() {
    let t = T::start().await;
    let (owner, chats) = {
        let c = t.sim.company();
        let o = c.chats[0].owner;
        (
            c.staff[o as usize].userid.clone(),
            c.chats
                .iter()
                .enumerate()
                .filter(|(_, g)| g.owner == o)
                .map(|(i, _)| c.chat_id(i as u32))
                .collect::<Vec<_>>(),
        )
    };
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"chat_type": "group", "sender": owner, "text": text("群发")}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let res = send_result(&t, v["msgid"].as_str().unwrap(), &owner).await;
    assert_eq!(res.len(), chats.len());
    assert!(
        res.iter()
            .all(|r| r.get("chat_id").is_some() && r.get("external_userid").is_none())
    );
    let no_sender = t
        .post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"chat_type": "group", "text": text("x")}),
        )
        .await;
    assert_eq!(no_sender["errcode"], 40058);
    assert_eq!(
        t.sim
            .query_deliveries(&scrm_wecom_sim::DeliveryQuery {
                kind: Some(DeliveryKind::GroupMassSend),
                ..Default::default()
            })
            .len(),
        chats.len()
    );
}

#[tokio::test]
async fn content_is_validated_like_wecom() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let send = |body: Value| t.post("/cgi-bin/externalcontact/add_msg_template", body);
    assert_eq!(send(json!({"sender": uid})).await["errcode"], 44004);
    assert_eq!(
        send(json!({"sender": uid, "text": text(&"字".repeat(1400))})).await["errcode"],
        45002
    );
    let ten: Vec<Value> = (0..10)
        .map(|_| json!({"msgtype": "link", "link": {"title": "t", "url": "https://x"}}))
        .collect();
    assert_eq!(
        send(json!({"sender": uid, "attachments": ten})).await["errcode"],
        41064
    );
    assert_eq!(
        send(json!({"sender": uid, "attachments": [{"msgtype": "voice", "voice": {}}]})).await["errcode"],
        41065
    );
    assert_eq!(send(json!({"sender": uid, "attachments": [{"msgtype": "image", "image": {"media_id": "nope"}}]})).await["errcode"], 40007);
}

#[tokio::test]
async fn welcome_codes_work_once_within_their_lifetime() {
    let mut cfg = cfg();
    cfg.limits.welcome_code_ttl_secs = 1;
    let t = T::with(cfg).await;
    let uid = t.staff_with(0);
    let added = t
        .sim
        .customer_adds_staff(AddContact {
            userid: uid.clone(),
            name: Some("新客🎉".into()),
            state: Some("qr1".into()),
            ..Default::default()
        })
        .unwrap();
    let code = added.welcome_code.clone().unwrap();
    let v = t
        .post(
            "/cgi-bin/externalcontact/send_welcome_msg",
            json!({"welcome_code": code, "text": text("欢迎")}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/send_welcome_msg",
            json!({"welcome_code": code, "text": text("欢迎")})
        )
        .await["errcode"],
        41051
    );
    let d = t.sim.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].kind, DeliveryKind::Welcome);
    assert_eq!(d[0].recipient, added.external_userid);
    let late = t
        .sim
        .customer_adds_staff(AddContact {
            userid: uid,
            ..Default::default()
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = t
        .post(
            "/cgi-bin/externalcontact/send_welcome_msg",
            json!({"welcome_code": late.welcome_code, "text": text("迟到")}),
        )
        .await;
    assert_eq!(v["errcode"], 41051);
}

#[tokio::test]
async fn app_messages_reach_members_and_report_invalid_ones() {
    let t = T::start().await;
    let agent = t.sim.config().creds.agent_id;
    let uid = t.staff_with(0);
    let v = t.post("/cgi-bin/message/send", json!({"touser": format!("{uid}|ghost"), "msgtype": "text", "agentid": agent, "text": text("提醒")})).await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(v["invaliduser"], "ghost");
    assert_eq!(t.sim.deliveries_per_recipient()[&uid], 1);
    assert_eq!(
        t.post(
            "/cgi-bin/message/send",
            json!({"touser": "ghost", "msgtype": "text", "agentid": agent, "text": text("x")})
        )
        .await["errcode"],
        82001
    );
    assert_eq!(
        t.post(
            "/cgi-bin/message/send",
            json!({"touser": uid, "msgtype": "text", "agentid": 1, "text": text("x")})
        )
        .await["errcode"],
        301002
    );
}

#[tokio::test]
async fn duplicate_sends_show_up_in_the_delivery_summary() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    for _ in 0..2 {
        t.post(
            "/cgi-bin/externalcontact/add_msg_template",
            json!({"sender": uid, "external_userid": [ext], "text": text("同一条")}),
        )
        .await;
    }
    let s: Value = t
        .http
        .get(t.url("/sim/admin/deliveries/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["total"], 2);
    assert_eq!(s["duplicates"][0]["recipient"], ext.as_str());
    assert_eq!(s["duplicates"][0]["count"], 2);
    let d: Value = t
        .http
        .get(t.url("/sim/admin/deliveries"))
        .query(&[("recipient", &ext)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d.as_array().unwrap().len(), 2);
}
