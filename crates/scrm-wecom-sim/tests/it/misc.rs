use serde_json::{Value, json};

use crate::helpers::*;

async fn upload(t: &T, path: &str, query: &[(&str, &str)], bytes: Vec<u8>) -> Value {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("a.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("media", part);
    let mut q = query.to_vec();
    q.push(("access_token", &t.token));
    t.http
        .post(t.url(path))
        .query(&q)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn uploaded_media_can_be_attached_to_mass_sends() {
    let t = T::start().await;
    let v = upload(
        &t,
        "/cgi-bin/media/upload",
        &[("type", "image")],
        vec![7; 1024],
    )
    .await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert!(
        v["created_at"].is_string(),
        "created_at is a string in media/upload"
    );
    assert_eq!(v["errmsg"], "");
    let media_id = v["media_id"].as_str().unwrap();
    let a = upload(
        &t,
        "/cgi-bin/media/upload_attachment",
        &[("media_type", "image"), ("attachment_type", "1")],
        vec![7; 1024],
    )
    .await;
    assert!(
        a["created_at"].is_i64(),
        "and an integer in upload_attachment"
    );
    let f = upload(
        &t,
        "/cgi-bin/media/upload_attachment",
        &[("media_type", "file"), ("attachment_type", "1")],
        vec![7; 1024],
    )
    .await;
    assert_eq!(f["errcode"], 41072);
    assert_eq!(
        upload(
            &t,
            "/cgi-bin/media/upload",
            &[("type", "image")],
            vec![1; 3]
        )
        .await["errcode"],
        40006
    );
    assert_eq!(
        upload(&t, "/cgi-bin/media/upload", &[("type", "gif")], vec![1; 30]).await["errcode"],
        40004
    );
    let uid = t.staff_with(1);
    let v = t
        .post("/cgi-bin/externalcontact/add_msg_template", json!({"sender": uid, "attachments": [{"msgtype": "image", "image": {"media_id": media_id}}]}))
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
}

#[tokio::test]
async fn an_on_job_transfer_waits_24_hours_then_moves_the_customer() {
    let t = T::start().await;
    let from = t.staff_with(1);
    let to = {
        let c = t.sim.company();
        c.staff
            .iter()
            .find(|s| s.status == 1 && s.contact_enabled && s.userid != from)
            .unwrap()
            .userid
            .clone()
    };
    let ext = t
        .customers_of(&from)
        .into_iter()
        .find(|e| !t.customers_of(&to).contains(e))
        .unwrap();
    let v = t.post("/cgi-bin/externalcontact/transfer_customer", json!({"handover_userid": from, "takeover_userid": to, "external_userid": [ext, t.stranger_of(&from)]})).await;
    assert_eq!(v["customer"][0]["errcode"], 0, "{v}");
    assert_eq!(v["customer"][1]["errcode"], 84061);
    let again = t
        .post(
            "/cgi-bin/externalcontact/transfer_customer",
            json!({"handover_userid": from, "takeover_userid": to, "external_userid": [ext]}),
        )
        .await;
    assert_eq!(again["customer"][0]["errcode"], 40129);
    let r = t
        .post(
            "/cgi-bin/externalcontact/transfer_result",
            json!({"handover_userid": from, "takeover_userid": to}),
        )
        .await;
    assert_eq!(r["customer"][0]["status"], 2);
    assert!(r["customer"][0]["takeover_time"].as_i64().unwrap() > t.sim.now());
    t.admin_post("/sim/admin/clock/advance", json!({"secs": 86_401}))
        .await;
    // A day later the old token has expired too.
    assert_eq!(
        t.post("/cgi-bin/externalcontact/transfer_result", json!({}))
            .await["errcode"],
        42001
    );
    let token = t.token_for(&t.sim.config().creds.app_secret).await;
    let r = t
        .post_with(
            &token,
            "/cgi-bin/externalcontact/transfer_result",
            json!({"handover_userid": from, "takeover_userid": to}),
        )
        .await;
    assert_eq!(r["customer"][0]["status"], 1);
    assert!(t.customers_of(&to).contains(&ext));
    assert!(!t.customers_of(&from).contains(&ext));
    let same = t
        .post_with(
            &token,
            "/cgi-bin/externalcontact/transfer_customer",
            json!({"handover_userid": from, "takeover_userid": from, "external_userid": [ext]}),
        )
        .await;
    assert_eq!(same["errcode"], 40130);
}

#[tokio::test]
async fn customers_of_members_who_left_are_unassigned_until_reassigned() {
    let t = T::start().await;
    let gone = t.staff_with(2);
    let to = {
        let c = t.sim.company();
        c.staff
            .iter()
            .find(|s| s.status == 1 && s.contact_enabled && s.userid != gone)
            .unwrap()
            .userid
            .clone()
    };
    let v = t.post("/cgi-bin/externalcontact/resigned/transfer_customer", json!({"handover_userid": gone, "takeover_userid": to, "external_userid": [t.customers_of(&gone)[0]]})).await;
    assert_eq!(v["errcode"], 40097, "handover has not left");
    let before = t
        .post(
            "/cgi-bin/externalcontact/get_unassigned_list",
            json!({"page_size": 1000}),
        )
        .await;
    let n_before = before["info"].as_array().unwrap().len();
    t.admin_post("/sim/admin/scenario/staff_resigns", json!({"userid": gone}))
        .await;
    let mut cursor = String::new();
    let mut mine = Vec::new();
    loop {
        let v = t
            .post(
                "/cgi-bin/externalcontact/get_unassigned_list",
                json!({"cursor": cursor, "page_size": 3}),
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        for i in v["info"].as_array().unwrap() {
            if i["handover_userid"] == gone.as_str() {
                mine.push(i["external_userid"].as_str().unwrap().to_string());
            }
        }
        if v["is_last"] == true {
            break;
        }
        cursor = v["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(mine.len(), t.customers_of(&gone).len());
    let first = mine[0].clone();
    let v = t
        .post(
            "/cgi-bin/externalcontact/resigned/transfer_customer",
            json!({"handover_userid": gone, "takeover_userid": to, "external_userid": [first]}),
        )
        .await;
    assert_eq!(v["customer"][0]["errcode"], 0, "{v}");
    let after = t
        .post("/cgi-bin/externalcontact/get_unassigned_list", json!({}))
        .await;
    assert_eq!(
        after["info"].as_array().unwrap().len(),
        n_before + mine.len() - 1
    );
    let r = t
        .post(
            "/cgi-bin/externalcontact/resigned/transfer_result",
            json!({"handover_userid": gone, "takeover_userid": to}),
        )
        .await;
    assert_eq!(r["customer"][0]["status"], 2);
}

#[tokio::test]
async fn contact_ways_can_be_added_read_and_deleted() {
    let t = T::start().await;
    let uid = t.staff_with(0);
    let v = t
        .post(
            "/cgi-bin/externalcontact/add_contact_way",
            json!({"type": 1, "scene": 2, "state": "door_1", "user": [uid]}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let id = v["config_id"].as_str().unwrap();
    assert!(v["qr_code"].as_str().unwrap().starts_with("https://"));
    let g = t
        .post(
            "/cgi-bin/externalcontact/get_contact_way",
            json!({"config_id": id}),
        )
        .await;
    assert_eq!(g["contact_way"]["state"], "door_1");
    assert_eq!(g["contact_way"]["user"][0], uid.as_str());
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/update_contact_way",
            json!({"config_id": id, "remark": "门店"})
        )
        .await["errcode"],
        0
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/del_contact_way",
            json!({"config_id": id})
        )
        .await["errcode"],
        0
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/get_contact_way",
            json!({"config_id": id})
        )
        .await["errcode"],
        40058
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/add_contact_way",
            json!({"type": 1, "scene": 2, "user": ["ghost"]})
        )
        .await["errcode"],
        40003
    );
}

#[tokio::test]
async fn reset_regenerates_the_company_and_forgets_history() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    t.post(
        "/cgi-bin/externalcontact/add_msg_template",
        json!({"sender": uid, "text": text("x")}),
    )
    .await;
    assert!(t.sim.delivery_count() > 0);
    let company: Value = t
        .http
        .get(t.url("/sim/admin/company"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(company["customer_count"], 120);
    t.admin_post("/sim/admin/reset", json!({})).await;
    assert_eq!(t.sim.delivery_count(), 0);
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        40014,
        "tokens are forgotten"
    );
    let calls: Value = t
        .http
        .get(t.url("/sim/admin/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["/cgi-bin/externalcontact/get_follow_user_list"], 1);
}
