use std::collections::HashSet;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn corp_tags_can_be_listed_added_edited_marked_and_deleted_without_callbacks() {
    let t = T::start().await;
    let all = t
        .post("/cgi-bin/externalcontact/get_corp_tag_list", json!({}))
        .await;
    let groups = all["tag_group"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    assert!(
        groups[0]["tag"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("et")
    );
    assert!(groups[0].get("deleted").is_none());

    let added = t
        .post("/cgi-bin/externalcontact/add_corp_tag", json!({"group_name": "活动", "order": 3, "tag": [{"name": "双11"}, {"name": "双12", "order": 2}, {"name": "双11"}]}))
        .await;
    assert_eq!(added["errcode"], 0, "{added}");
    let group_id = added["tag_group"]["group_id"].as_str().unwrap().to_string();
    let tags = added["tag_group"]["tag"].as_array().unwrap().clone();
    assert_eq!(tags.len(), 2, "duplicates in one call create one tag");
    let tag_id = tags[0]["id"].as_str().unwrap().to_string();
    let dup = t
        .post(
            "/cgi-bin/externalcontact/add_corp_tag",
            json!({"group_id": group_id, "tag": [{"name": "双11"}]}),
        )
        .await;
    assert_eq!(dup["errcode"], 40071);

    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/edit_corp_tag",
            json!({"id": tag_id, "name": "双十一"})
        )
        .await["errcode"],
        0
    );
    let console_tag = groups[0]["tag"][0]["id"].as_str().unwrap();
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/edit_corp_tag",
            json!({"id": console_tag, "name": "x"})
        )
        .await["errcode"],
        40068
    );

    let uid = t.staff_with(1);
    let ext = t.customers_of(&uid)[0].clone();
    let v = t
        .post(
            "/cgi-bin/externalcontact/mark_tag",
            json!({"userid": uid, "external_userid": ext, "add_tag": [tag_id]}),
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
    assert!(
        f["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["tag_id"] == tag_id.as_str() && x["tag_name"] == "双十一" && x["type"] == 1)
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/mark_tag",
            json!({"userid": uid, "external_userid": ext, "add_tag": ["etnope"]})
        )
        .await["errcode"],
        40068
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/mark_tag",
            json!({"userid": uid, "external_userid": ext})
        )
        .await["errcode"],
        40058
    );

    let by_id = t
        .post(
            "/cgi-bin/externalcontact/get_corp_tag_list",
            json!({"tag_id": [tag_id]}),
        )
        .await;
    assert_eq!(by_id["tag_group"][0]["tag"][0]["deleted"], false);
    let all_ids: Vec<String> = tags
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/del_corp_tag",
            json!({"tag_id": all_ids})
        )
        .await["errcode"],
        0
    );
    let by_group = t
        .post(
            "/cgi-bin/externalcontact/get_corp_tag_list",
            json!({"tag_id": [tag_id]}),
        )
        .await;
    assert_eq!(
        by_group["tag_group"][0]["deleted"], true,
        "a group is deleted with its last tag"
    );
    assert_eq!(
        t.post("/cgi-bin/externalcontact/del_corp_tag", json!({}))
            .await["errcode"],
        40058
    );
    assert!(
        t.sim.callbacks().is_empty(),
        "API actions send no callbacks"
    );
}

#[tokio::test]
async fn groupchat_list_pages_with_a_cursor_and_get_shows_members() {
    let mut cfg = cfg();
    cfg.size.group_chats = 23;
    let t = T::with(cfg).await;
    let mut cursor = String::new();
    let mut ids = HashSet::new();
    loop {
        let v = t
            .post(
                "/cgi-bin/externalcontact/groupchat/list",
                json!({"cursor": cursor, "limit": 5}),
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        for g in v["group_chat_list"].as_array().unwrap() {
            assert_eq!(g["status"], 0);
            assert!(ids.insert(g["chat_id"].as_str().unwrap().to_string()));
        }
        cursor = v["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(ids.len(), 23);
    assert_eq!(
        t.post("/cgi-bin/externalcontact/groupchat/list", json!({}))
            .await["errcode"],
        40058,
        "limit is required"
    );

    let chat = ids.iter().next().unwrap().clone();
    let v = t
        .post(
            "/cgi-bin/externalcontact/groupchat/get",
            json!({"chat_id": chat, "need_name": 1}),
        )
        .await;
    let g = &v["group_chat"];
    assert_eq!(g["chat_id"], chat.as_str());
    assert_eq!(g["member_version"].as_str().unwrap().len(), 32);
    let members = g["member_list"].as_array().unwrap();
    assert!(
        members
            .iter()
            .any(|m| m["userid"] == g["owner"] && m["type"] == 1)
    );
    assert!(members.iter().all(|m| m.get("name").is_some()
        && m.get("join_time").is_some()
        && m.get("join_scene").is_some()));
    let v = t
        .post(
            "/cgi-bin/externalcontact/groupchat/get",
            json!({"chat_id": chat}),
        )
        .await;
    assert!(
        v["group_chat"]["member_list"][0].get("name").is_none(),
        "name only with need_name=1"
    );
    assert_eq!(
        t.post(
            "/cgi-bin/externalcontact/groupchat/get",
            json!({"chat_id": "wrnope"})
        )
        .await["errcode"],
        40050
    );

    let owner = t.sim.company().staff[0].userid.clone();
    let owner_chats = t
        .post(
            "/cgi-bin/externalcontact/groupchat/list",
            json!({"owner_filter": {"userid_list": [owner]}, "limit": 100}),
        )
        .await;
    let n = t
        .sim
        .company()
        .chats
        .iter()
        .filter(|c| c.owner == 0)
        .count();
    assert_eq!(owner_chats["group_chat_list"].as_array().unwrap().len(), n);
}

#[tokio::test]
async fn resigned_group_chats_can_be_handed_to_a_new_owner() {
    let t = T::start().await;
    let c0 = t.sim.company().chat_id(0);
    let owner = {
        let c = t.sim.company();
        c.staff[c.chats[0].owner as usize].userid.clone()
    };
    let other = {
        let c = t.sim.company();
        c.staff
            .iter()
            .find(|s| s.status == 1 && s.userid != owner)
            .unwrap()
            .userid
            .clone()
    };
    let v = t
        .post(
            "/cgi-bin/externalcontact/groupchat/transfer",
            json!({"chat_id_list": [c0], "new_owner": other}),
        )
        .await;
    assert_eq!(
        v["failed_chat_list"][0]["errcode"], 90500,
        "owner has not resigned"
    );
    t.sim.staff_resigns(&owner).unwrap();
    let v = t
        .post(
            "/cgi-bin/externalcontact/groupchat/transfer",
            json!({"chat_id_list": [c0], "new_owner": other}),
        )
        .await;
    assert_eq!(v["failed_chat_list"], json!([]));
    let g = t
        .post(
            "/cgi-bin/externalcontact/groupchat/get",
            json!({"chat_id": c0}),
        )
        .await;
    assert_eq!(g["group_chat"]["owner"], other.as_str());
}
