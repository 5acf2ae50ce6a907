use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn department_list_returns_the_tree_or_a_subtree() {
    let t = T::start().await;
    let all = t.get("/cgi-bin/department/list", &[]).await;
    assert_eq!(all["errcode"], 0);
    let depts = all["department"].as_array().unwrap();
    assert_eq!(depts.len(), t.sim.company().departments.len());
    assert_eq!(depts[0]["id"], 1);
    assert_eq!(depts[0]["parentid"], 0);
    for f in ["name", "name_en", "department_leader", "order"] {
        assert!(depts[0].get(f).is_some(), "missing {f}");
    }
    let sub = t.get("/cgi-bin/department/list", &[("id", "2")]).await;
    assert_eq!(sub["department"][0]["id"], 2);
    assert_eq!(
        t.get("/cgi-bin/department/list", &[("id", "999")]).await["errcode"],
        60123
    );
    let simple = t.get("/cgi-bin/department/simplelist", &[]).await;
    assert_eq!(
        simple["department_id"].as_array().unwrap().len(),
        depts.len()
    );
}

#[tokio::test]
async fn user_list_and_get_show_members_but_not_those_who_left() {
    let t = T::start().await;
    let list = t
        .get(
            "/cgi-bin/user/list",
            &[("department_id", "1"), ("fetch_child", "1")],
        )
        .await;
    let users = list["userlist"].as_array().unwrap();
    let visible = t
        .sim
        .company()
        .staff
        .iter()
        .filter(|s| s.status != 5)
        .count();
    assert_eq!(users.len(), visible);
    let u = &users[0];
    for f in [
        "userid",
        "name",
        "department",
        "position",
        "mobile",
        "gender",
        "status",
        "main_department",
        "avatar",
    ] {
        assert!(u.get(f).is_some(), "missing {f}");
    }
    assert!(u["gender"].is_string(), "gender is a string in WeCom");
    let uid = u["userid"].as_str().unwrap();
    let one = t.get("/cgi-bin/user/get", &[("userid", uid)]).await;
    assert_eq!(one["errcode"], 0);
    assert_eq!(one["userid"], uid);
    assert_eq!(
        t.get("/cgi-bin/user/get", &[("userid", "nobody")]).await["errcode"],
        60111
    );
    assert_eq!(
        t.get("/cgi-bin/user/get", &[("userid", "bad id!")]).await["errcode"],
        40003
    );
    assert_eq!(t.get("/cgi-bin/user/list", &[]).await["errcode"], 60123);
    let simple = t
        .get(
            "/cgi-bin/user/simplelist",
            &[("department_id", "1"), ("fetch_child", "1")],
        )
        .await;
    assert_eq!(simple["userlist"].as_array().unwrap().len(), visible);
}

#[tokio::test]
async fn user_list_id_pages_one_row_per_member_and_department() {
    let t = T::start().await;
    let contact = t.token_for(&t.sim.config().creds.contact_secret).await;
    let expected: usize = t
        .sim
        .company()
        .staff
        .iter()
        .filter(|s| s.status != 5)
        .map(|s| s.departments.len())
        .sum();
    let mut cursor = String::new();
    let mut rows = 0;
    loop {
        let v = t
            .post_with(
                &contact,
                "/cgi-bin/user/list_id",
                json!({"cursor": cursor, "limit": 5}),
            )
            .await;
        assert_eq!(v["errcode"], 0, "{v}");
        let page = v["dept_user"].as_array().unwrap();
        assert!(page.len() <= 5);
        rows += page.len();
        cursor = v["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(rows, expected);
    let v = t
        .post_with(&contact, "/cgi-bin/user/list_id", json!({"limit": 10001}))
        .await;
    assert_eq!(v["errcode"], 40058);
}
