use std::collections::HashSet;

use scrm_wecom_sim::scenarios::{AddContact, Pair};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn follow_user_list_names_active_members_with_customer_contact() {
    let t = T::start().await;
    let v = t
        .get("/cgi-bin/externalcontact/get_follow_user_list", &[])
        .await;
    let got: HashSet<String> = v["follow_user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = t
        .sim
        .company()
        .staff
        .iter()
        .filter(|s| s.contact_enabled && s.status == 1)
        .map(|s| s.userid.clone())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn list_returns_a_members_customers_and_84061_when_there_are_none() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let v = t
        .get("/cgi-bin/externalcontact/list", &[("userid", &uid)])
        .await;
    assert_eq!(
        v["external_userid"].as_array().unwrap().len(),
        t.customers_of(&uid).len()
    );
    let lonely = {
        let c = t.sim.company();
        c.staff
            .iter()
            .find(|s| s.customers.is_empty() && s.status == 1)
            .map(|s| s.userid.clone())
    };
    if let Some(lonely) = lonely {
        assert_eq!(
            t.get("/cgi-bin/externalcontact/list", &[("userid", &lonely)])
                .await["errcode"],
            84061
        );
    }
}

#[tokio::test]
async fn get_has_wecoms_shape_and_errors() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    let v = t
        .get("/cgi-bin/externalcontact/get", &[("external_userid", &ext)])
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let c = &v["external_contact"];
    assert_eq!(c["external_userid"], ext.as_str());
    assert!(c["name"].as_str().unwrap().chars().count() >= 2);
    assert!(matches!(c["type"].as_u64(), Some(1 | 2)));
    let f = &v["follow_user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["userid"] == uid.as_str())
        .cloned()
        .unwrap();
    for k in [
        "remark",
        "description",
        "createtime",
        "tags",
        "oper_userid",
        "add_way",
    ] {
        assert!(f.get(k).is_some(), "follow_user lacks {k}");
    }
    assert!(
        v.get("next_cursor").is_none(),
        "no cursor under 500 follow users"
    );
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get", &[]).await["errcode"],
        41035
    );
    assert_eq!(
        t.get(
            "/cgi-bin/externalcontact/get",
            &[("external_userid", "wmFAKE")]
        )
        .await["errcode"],
        40096
    );
    // Once every member deleted the customer the relation is gone.
    let owners: Vec<String> = v["follow_user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["userid"].as_str().unwrap().to_string())
        .collect();
    for o in owners {
        t.sim
            .staff_deletes_customer(Pair {
                userid: o,
                external_userid: ext.clone(),
            })
            .unwrap();
    }
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get", &[("external_userid", &ext)])
            .await["errcode"],
        84061
    );
}

#[tokio::test]
async fn get_pages_follow_users_beyond_500() {
    let mut cfg = cfg();
    cfg.size.staff = 800;
    cfg.size.customers = 10;
    let t = T::with(cfg).await;
    let members: Vec<String> = t
        .sim
        .company()
        .staff
        .iter()
        .filter(|s| s.status == 1 && s.contact_enabled)
        .map(|s| s.userid.clone())
        .collect();
    assert!(
        members.len() > 500,
        "need over 500 members, have {}",
        members.len()
    );
    let first = t
        .sim
        .customer_adds_staff(AddContact {
            userid: members[0].clone(),
            ..Default::default()
        })
        .unwrap();
    for m in &members[1..] {
        t.sim
            .customer_adds_staff(AddContact {
                userid: m.clone(),
                external_userid: Some(first.external_userid.clone()),
                no_welcome_code: true,
                ..Default::default()
            })
            .unwrap();
    }
    let p1 = t
        .get(
            "/cgi-bin/externalcontact/get",
            &[("external_userid", &first.external_userid)],
        )
        .await;
    assert_eq!(p1["follow_user"].as_array().unwrap().len(), 500);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = t
        .get(
            "/cgi-bin/externalcontact/get",
            &[
                ("external_userid", &first.external_userid),
                ("cursor", &cursor),
            ],
        )
        .await;
    assert_eq!(
        p2["follow_user"].as_array().unwrap().len(),
        members.len() - 500
    );
    assert!(p2.get("next_cursor").is_none());
}

#[tokio::test]
async fn batch_get_by_user_walks_every_pair_with_the_cursor() {
    let t = T::start().await;
    let users: Vec<String> = t
        .sim
        .company()
        .staff
        .iter()
        .take(6)
        .map(|s| s.userid.clone())
        .collect();
    let expected: usize = users.iter().map(|u| t.customers_of(u).len()).sum();
    let mut cursor = String::new();
    let mut pairs = HashSet::new();
    let mut pages = 0;
    loop {
        let v = t
            .post(
                "/cgi-bin/externalcontact/batch/get_by_user",
                json!({"userid_list": users, "cursor": cursor, "limit": 7}),
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        let list = v["external_contact_list"].as_array().unwrap();
        assert!(list.len() <= 7);
        for item in list {
            assert!(item["follow_info"]["tag_id"].is_array());
            let pair = (
                item["external_contact"]["external_userid"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                item["follow_info"]["userid"].as_str().unwrap().to_string(),
            );
            assert!(pairs.insert(pair), "pair repeated across pages");
        }
        pages += 1;
        cursor = v["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pairs.len(), expected);
    assert!(pages >= expected / 7);
}

#[tokio::test]
async fn batch_get_by_user_clamps_limit_and_rejects_long_lists() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let v = t
        .post(
            "/cgi-bin/externalcontact/batch/get_by_user",
            json!({"userid_list": [uid], "limit": 1000}),
        )
        .await;
    assert_eq!(v["errcode"], 0);
    assert!(v["external_contact_list"].as_array().unwrap().len() <= 100);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let v = t
        .post(
            "/cgi-bin/externalcontact/batch/get_by_user",
            json!({"userid_list": many}),
        )
        .await;
    assert_eq!(v["errcode"], 40058);
    assert_eq!(v["external_contact_list"], json!([]));
}

#[tokio::test]
async fn remark_edits_the_follow_without_a_callback() {
    let t = T::start().await;
    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    let v = t
        .post(
            "/cgi-bin/externalcontact/remark",
            json!({"userid": uid, "external_userid": ext, "remark": "大客户", "description": "d"}),
        )
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let g = t
        .get("/cgi-bin/externalcontact/get", &[("external_userid", &ext)])
        .await;
    let f = g["follow_user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["userid"] == uid.as_str())
        .cloned()
        .unwrap();
    assert_eq!(f["remark"], "大客户");
    assert!(t.sim.callbacks().is_empty());
    let stranger = t.stranger_of(&uid);
    let v = t
        .post(
            "/cgi-bin/externalcontact/remark",
            json!({"userid": uid, "external_userid": stranger, "remark": "x"}),
        )
        .await;
    assert_eq!(v["errcode"], 84061);
}
