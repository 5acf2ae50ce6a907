//! The web console over plain HTTP, on every backend: login and the session cookie, the
//! language switch, what each role sees and may post, the customer list with its filters and
//! bulk actions, the workbench figures, and the group-send form showing the API's validation.
//! (The browser journeys are in `console_browser.rs`.)

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::customers::{customer, tags};
use crate::helpers::{ADMIN_PASSWORD, TestApp, until};

/// A browser without a browser: keeps the session cookie, follows no redirects.
struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

/// An answer: status, where it redirects to, the page.
struct Page {
    status: u16,
    location: String,
    set_cookie: Vec<String>,
    body: String,
}

async fn page_of(r: reqwest::Response) -> Page {
    Page {
        status: r.status().as_u16(),
        location: r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        set_cookie: r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
        body: r.text().await.unwrap(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn post_login(app: &TestApp, username: &str, password: &str) -> Page {
    let r = client()
        .post(format!("{}/console/login", app.base))
        .form(&[
            ("username", username),
            ("password", password),
            ("next", "/console/customers"),
        ])
        .send()
        .await
        .unwrap();
    page_of(r).await
}

impl Session {
    async fn login(app: &TestApp, username: &str, password: &str) -> Session {
        let p = post_login(app, username, password).await;
        assert_eq!(p.status, 303, "{}", p.body);
        let cookie = p
            .set_cookie
            .iter()
            .find(|c| c.starts_with("scrm_session="))
            .expect("session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        Session {
            client: client(),
            base: app.base.clone(),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        page_of(r).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        page_of(r).await
    }
}

async fn console_login_keeps_the_token_in_an_httponly_strict_cookie(app: TestApp) {
    let p = post_login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!((p.status, p.location.as_str()), (303, "/console/customers"));
    let cookie = p
        .set_cookie
        .iter()
        .find(|c| c.starts_with("scrm_session=scrm_"))
        .expect("the session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");

    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let home = s.get("/console").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("工作台"), "Chinese by default");
    assert!(home.body.contains("/console/assets/htmx.min.js"));
    let en = s.get("/console?lang=en").await;
    assert!(en.body.contains("Workbench"));
    assert!(
        en.set_cookie.iter().any(|c| c.starts_with("scrm_lang=en")),
        "?lang=en is remembered"
    );

    // Logging out revokes the token: the old cookie opens nothing.
    let out = s.post("/console/logout", &[]).await;
    assert_eq!((out.status, out.location.as_str()), (303, "/console/login"));
    let after = s.get("/console").await;
    assert_eq!(after.status, 303);
    assert!(after.location.starts_with("/console/login"));
}

async fn console_login_refuses_a_wrong_password_on_the_page(app: TestApp) {
    let p = post_login(&app, "admin", "not-the-password").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("用户名或密码错误"), "{}", p.body);
    assert!(p.set_cookie.iter().all(|c| !c.starts_with("scrm_session")));
}

async fn console_serves_its_assets_from_the_binary(app: TestApp) {
    let c = client();
    let js = c
        .get(format!("{}/console/assets/htmx.min.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("htmx"));
    let css = c
        .get(format!("{}/console/assets/console.css", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    let root = c.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(root.headers()[LOCATION], "/console");
}

async fn console_customer_list_filters_by_tag_and_tags_in_bulk(app: TestApp) {
    let t = tags(&app, "等级", &["VIP", "新客"]).await;
    let (vip, fresh) = (t[0], t[1]);
    let a = customer(&app, json!({"externalUserid": "wmA", "name": "甲客户"})).await;
    let b = customer(&app, json!({"externalUserid": "wmB", "name": "乙客户"})).await;
    let _c = customer(&app, json!({"externalUserid": "wmC", "name": "丙客户"})).await;
    let r = app
        .post(
            &format!("/api/v1/customers/{a}/tags"),
            &app.admin_token,
            json!({"tagIds": [vip]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let list = s.get(&format!("/console/customers?tagIds={vip}")).await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("甲客户"));
    assert!(!list.body.contains("乙客户"));
    let all = s.get("/console/customers?keyword=客户").await;
    assert_eq!(all.body.matches("class=\"customer-row\"").count(), 3);

    let back = "/console/customers?page=1";
    let (a_s, b_s, fresh_s) = (a.to_string(), b.to_string(), fresh.to_string());
    let done = s
        .post(
            "/console/customers/tags",
            &[
                ("ids", a_s.as_str()),
                ("ids", b_s.as_str()),
                ("tagId", fresh_s.as_str()),
                ("action", "add"),
                ("back", back),
            ],
        )
        .await;
    assert_eq!(done.status, 303);
    assert!(done.location.contains("done=tagged"), "{}", done.location);
    let tagged = app
        .get(
            &format!("/api/v1/customers?tagIds={fresh}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(tagged.data()["total"], 2);

    // Nothing ticked: back to the list with the field named, nothing changed.
    let none = s
        .post(
            "/console/customers/tags",
            &[
                ("tagId", fresh_s.as_str()),
                ("action", "remove"),
                ("back", back),
            ],
        )
        .await;
    assert!(
        none.location.contains("error=customerIds"),
        "{}",
        none.location
    );
    let shown = s.get(&none.location).await;
    assert!(shown.body.contains("请先勾选客户"));

    let bl = s
        .post(
            "/console/customers/blacklist",
            &[("ids", b_s.as_str()), ("back", back)],
        )
        .await;
    assert!(bl.location.contains("done=blacklisted"), "{}", bl.location);
    let b_now = app
        .get(&format!("/api/v1/customers/{b}"), &app.admin_token)
        .await;
    assert_eq!(b_now.data()["blacklisted"], true);
    let page = s.get(&format!("/console/customers/{b}")).await;
    assert!(page.body.contains("乙客户"));
    assert!(page.body.contains("id=\"timeline\""));
}

/// The tenant's customers as the database counts them.
async fn real_count(app: &TestApp) -> i64 {
    crate::helpers::n(
        app,
        "SELECT COUNT(*) FROM customer WHERE tenant_id = (SELECT tenant_id FROM app_user WHERE username = 'admin')".into(),
    )
    .await
}

/// The unfiltered list's total as the console shows it and as the API answers it, both equal
/// to the database's count; returns it.
async fn totals_agree(app: &TestApp, s: &Session, after: &str) -> i64 {
    let real = real_count(app).await;
    let page = s.get("/console/customers").await;
    assert_eq!(page.status, 200);
    let shown = format!("id=\"customer-total\">{real}<");
    assert!(
        page.body.contains(&shown),
        "after {after}: the console shows a total other than {real}"
    );
    let api = app.get("/api/v1/customers?size=1", &app.admin_token).await;
    assert_eq!(api.data()["total"], real, "after {after}");
    real
}

async fn console_customer_total_is_the_real_count_after_every_kind_of_write(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(totals_agree(&app, &s, "nothing").await, 0);

    // A full sync from WeCom (the first: an import of the company), then callbacks.
    let sim = crate::integration::sim(40).await;
    crate::integration::connect(&app, &sim).await;
    let log = crate::integration_sync::sync(&app, json!({"syncType": "full"})).await;
    assert_eq!(log["status"], "success", "{log}");
    let synced = totals_agree(&app, &s, "a full sync").await;
    assert!(synced > 0);
    let staff = sim
        .company()
        .staff
        .iter()
        .find(|m| m.contact_enabled && m.visible())
        .map(|m| m.userid.clone())
        .unwrap();
    let added = sim
        .customer_adds_staff(scrm_wecom_sim::scenarios::AddContact {
            userid: staff.clone(),
            name: Some("回调客户".into()),
            ..Default::default()
        })
        .unwrap();
    let ext = added.external_userid.clone();
    until("the callback's customer", || async {
        let n = crate::helpers::n(
            &app,
            format!("SELECT COUNT(*) FROM customer WHERE external_userid = '{ext}'"),
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(totals_agree(&app, &s, "a callback").await, synced + 1);

    // API creates and a delete; a blacklist changes no count.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            customer(
                &app,
                json!({"externalUserid": format!("wm-count-{i}"), "name": format!("计数{i}")}),
            )
            .await,
        );
    }
    assert_eq!(totals_agree(&app, &s, "3 creates").await, synced + 4);
    let r = app
        .delete(&format!("/api/v1/customers/{}", ids[0]), &app.admin_token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(totals_agree(&app, &s, "a delete").await, synced + 3);
    // A refused create (duplicate externalUserid) counts nothing.
    let dup = app
        .post(
            "/api/v1/customers",
            &app.admin_token,
            json!({"externalUserid": "wm-count-1", "name": "重复"}),
        )
        .await;
    assert_eq!(dup.status, 409, "{:?}", dup.body);
    let bl = s
        .post(
            "/console/customers/blacklist",
            &[
                ("ids", &ids[1].to_string()),
                ("back", "/console/customers?page=1"),
            ],
        )
        .await;
    assert!(bl.location.contains("done=blacklisted"), "{}", bl.location);
    assert_eq!(totals_agree(&app, &s, "a blacklist").await, synced + 3);

    // An import: one new row, one update of an existing customer, one refused row.
    let csv = "externalUserid,name,mobile\nwm-count-new,导入新,\nwm-count-2,导入改,\nwm-count-bad,坏,12ab\n";
    let r = crate::customers_search::import(&app, "text/csv", csv.as_bytes().to_vec()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["created"], 1, "{:?}", r.body);
    assert_eq!(totals_agree(&app, &s, "an import").await, synced + 4);

    // An incremental sync that finds a new customer (its callback lost) and a vanished one
    // (kept, status 0): one more.
    sim.update_config(|c| c.callback.url = None);
    sim.customer_adds_staff(scrm_wecom_sim::scenarios::AddContact {
        userid: staff,
        name: Some("同步新客户".into()),
        ..Default::default()
    })
    .unwrap();
    let log = crate::integration_sync::sync(&app, json!({"syncType": "customer"})).await;
    assert_eq!(log["status"], "success", "{log}");
    assert_eq!(log["created"], 1, "{log}");
    assert_eq!(
        totals_agree(&app, &s, "an incremental sync").await,
        synced + 5
    );
    // A filter still counts its own matches (the counter is only the unfiltered total).
    let filtered = s.get("/console/customers?keyword=计数").await;
    assert!(
        filtered.body.contains("id=\"customer-total\">1<"),
        "计数1 is left (计数0 deleted, 计数2 renamed by the import)"
    );
    sim.shutdown().await;
}

/// The customer ids a console list page shows, in order.
fn shown_ids(body: &str) -> Vec<i64> {
    body.split("class=\"customer-row\" data-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The `href` of the link with this id on a page.
fn link(body: &str, id: &str) -> Option<String> {
    let start = format!("id=\"{id}\" href=\"");
    let rest = &body[body.find(&start)? + start.len()..];
    Some(
        rest.split('"')
            .next()?
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

async fn console_customer_list_pages_by_cursor_both_ways(app: TestApp) {
    let t = tags(&app, "翻页", &["偶数"]).await;
    let mut ids = Vec::new();
    for i in 0..47 {
        let id = customer(
            &app,
            json!({"externalUserid": format!("wm-page-{i}"), "name": format!("翻页客户{i:02}"), "channel": if i % 3 == 0 { "ads" } else { "web" }}),
        )
        .await;
        if i % 2 == 0 {
            let r = app
                .post(
                    &format!("/api/v1/customers/{id}/tags"),
                    &app.admin_token,
                    json!({"tagIds": [t[0]]}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        ids.push(id);
    }
    ids.reverse(); // newest first, as the list shows them
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    for (query, want) in [
        ("", ids.clone()),
        (
            &format!("tagIds={}&", t[0]) as &str,
            ids.iter()
                .copied()
                .filter(|id| (id - ids[46]) % 2 == 0)
                .collect::<Vec<_>>(),
        ),
        ("keyword=翻页&", ids.clone()),
        (
            "channel=web&",
            ids.iter()
                .copied()
                .filter(|id| (id - ids[46]) % 3 != 0)
                .collect(),
        ),
    ] {
        // Forward with "next" (keyset: before=<last id>), then back with "previous".
        let mut seen: Vec<i64> = Vec::new();
        let mut pages = Vec::new();
        let mut at = format!("/console/customers?{query}page=1");
        loop {
            let p = s.get(&at).await;
            assert_eq!(p.status, 200, "{at}");
            let shown = shown_ids(&p.body);
            assert!(shown.len() <= 20);
            assert!(
                p.body
                    .contains(&format!("id=\"customer-total\">{}<", want.len())),
                "{at}"
            );
            seen.extend(&shown);
            pages.push((at.clone(), shown));
            match link(&p.body, "next-page") {
                Some(next) => {
                    assert!(next.contains("before="), "{next}");
                    at = next;
                }
                None => break,
            }
        }
        assert_eq!(seen, want, "{query}: every customer once, newest first");
        assert_eq!(pages.len(), want.len().div_ceil(20));
        // Back from the last page: each "previous" shows the page seen before it.
        for i in (1..pages.len()).rev() {
            let p = s.get(&pages[i].0).await;
            let prev = link(&p.body, "prev-page").unwrap_or_else(|| {
                panic!(
                    "a previous link on {}: {}",
                    pages[i].0,
                    &p.body[p.body.find("class=\"pager\"").unwrap_or(0)..]
                )
            });
            let back = s.get(&prev).await;
            assert_eq!(
                shown_ids(&back.body),
                pages[i - 1].1,
                "{query}: previous of page {}",
                i + 1
            );
        }
    }
    // An old "previous" link past the newest customers shows the first page.
    let p = s
        .get(&format!("/console/customers?after={}&page=3", ids[0]))
        .await;
    assert_eq!(shown_ids(&p.body), ids[..20].to_vec());
    assert!(p.body.contains("id=\"page-of\">1 / 3<"));
}

async fn console_customer_list_filters_by_group_and_channel_assigns_and_exports(app: TestApp) {
    let a = customer(
        &app,
        json!({"externalUserid": "wmA", "name": "甲客户", "channel": "ads"}),
    )
    .await;
    let b = customer(
        &app,
        json!({"externalUserid": "wmB", "name": "乙客户", "channel": "web"}),
    )
    .await;
    let tenant = our_tenant(&app).await;
    let staff = add_staff(&app, tenant, [("amy".to_string(), "艾米".to_string())]).await[0];
    let mut tx = app.state.db.begin().await.unwrap();
    let group = scrm::customers::groups::upsert_group(
        &mut tx,
        tenant,
        "wrChat1",
        Some("客户群一"),
        None,
        None,
        None,
        1,
    )
    .await
    .unwrap();
    scrm::customers::groups::member_joined(&mut tx, tenant, group, "wmA", 2, Some(a), None, 1, 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let list = s.get("/console/customers").await;
    assert!(
        list.body.contains("客户群一"),
        "the group filter offers the chat"
    );
    assert!(list.body.contains("id=\"bulk-assign\""));
    assert!(list.body.contains("id=\"export-list\""));
    let by_group = s.get(&format!("/console/customers?groupIds={group}")).await;
    assert_eq!(shown_ids(&by_group.body), vec![a]);
    let by_channel = s.get("/console/customers?channel=web").await;
    assert_eq!(shown_ids(&by_channel.body), vec![b]);

    // Assign: the picked member becomes the owner; no member picked is named on the list.
    let back = "/console/customers?channel=web&page=1";
    let none = s
        .post(
            "/console/customers/assign",
            &[("ids", &b.to_string()), ("back", back)],
        )
        .await;
    assert_eq!(none.status, 303);
    assert!(
        none.location.contains("error=toStaffId"),
        "{}",
        none.location
    );
    assert!(
        s.get(&none.location)
            .await
            .body
            .contains("请选择要分配给的员工")
    );
    let done = s
        .post(
            "/console/customers/assign",
            &[
                ("ids", &b.to_string()),
                ("toStaffId", &staff.to_string()),
                ("back", back),
            ],
        )
        .await;
    assert!(done.location.contains("done=assigned"), "{}", done.location);
    assert!(done.location.starts_with(back), "{}", done.location);
    let now = app
        .get(&format!("/api/v1/customers/{b}"), &app.admin_token)
        .await;
    assert_eq!(now.data()["followUserId"], staff, "{:?}", now.body);

    // Export this list: the list's filters go to the export job.
    let started = s
        .post(
            "/console/customers/exports",
            &[
                ("channel", "web"),
                ("staff", &staff.to_string()),
                ("keyword", ""),
            ],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert!(
        started.location.contains("started="),
        "{}",
        started.location
    );
    let export = until("the export", || async {
        let l = app.get("/api/v1/customers/exports", &app.admin_token).await;
        let e = l.data()["list"][0].clone();
        (e["status"] == "done").then_some(e)
    })
    .await;
    assert_eq!(export["rows"], 1, "{export}");

    // A viewer sees neither assign nor export, and may not post them.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let seen = v.get("/console/customers").await;
    assert!(!seen.body.contains("id=\"bulk-assign\""));
    assert!(!seen.body.contains("id=\"export-list\""));
    let refused = v
        .post(
            "/console/customers/assign",
            &[("ids", &a.to_string()), ("toStaffId", &staff.to_string())],
        )
        .await;
    assert_eq!(refused.status, 403);
}

async fn console_viewer_sees_no_write_buttons_and_cannot_post_them(app: TestApp) {
    let t = tags(&app, "等级", &["VIP"]).await;
    let a = customer(&app, json!({"externalUserid": "wmA", "name": "甲客户"})).await;
    app.user_with_role("vera", "viewer").await;
    let s = Session::login(&app, "vera", "password-123").await;
    let list = s.get("/console/customers").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("甲客户"));
    assert!(!list.body.contains("id=\"bulk-actions\""));
    let sends = s.get("/console/group-send").await;
    assert!(!sends.body.contains("id=\"new-send\""));
    let integration = s.get("/console/integration").await;
    assert!(!integration.body.contains("id=\"start-sync\""));
    assert!(!integration.body.contains("id=\"test-connection\""));

    let refused = s
        .post(
            "/console/customers/tags",
            &[
                ("ids", &a.to_string()),
                ("tagId", &t[0].to_string()),
                ("action", "add"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("FORBIDDEN"));
    let after = app
        .get(&format!("/api/v1/customers/{a}"), &app.admin_token)
        .await;
    assert_eq!(after.data()["tags"], json!([]));
    assert_eq!(s.get("/console/group-send/new").await.status, 403);
}

async fn console_workbench_shows_todays_figures_and_the_growth_chart(app: TestApp) {
    for i in 0..3 {
        customer(
            &app,
            json!({"externalUserid": format!("wm{i}"), "name": format!("客户{i}")}),
        )
        .await;
    }
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let home = s.get("/console").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("id=\"fig-added\">3<"),
        "three new customers today"
    );
    assert!(home.body.contains("<svg id=\"growth-chart\""));
    assert_eq!(
        home.body.matches("<rect").count(),
        60,
        "30 days, two bars each"
    );
    assert!(home.body.contains("id=\"fig-sync\""));
}

async fn console_group_send_form_shows_the_api_errors_next_to_the_fields(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let form = s.get("/console/group-send/new").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"send-form\""));
    let refused = s
        .post(
            "/console/group-send",
            &[
                ("taskName", "问候"),
                ("senderAccountId", ""),
                ("text", "您好"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-sender\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"问候\""), "the draft is kept");
    let tasks = app
        .get("/api/v1/workbench/group-send/tasks", &app.admin_token)
        .await;
    assert_eq!(tasks.data()["total"], 0, "nothing was created");
    let count = s.get("/console/group-send/count?customerIds=999").await;
    assert!(count.body.contains(">0<"));
}

/// A sender that cannot send now (a WeCom member who is disabled: OFFLINE) is refused by the
/// API with its stable name, and the form shows why next to the sender select.
async fn console_group_send_form_shows_an_offline_sender_next_to_the_sender(app: TestApp) {
    let c = customer(&app, json!({"externalUserid": "wmOff", "name": "离线客户"})).await;
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let now = scrm::state::now_ms();
    app.state
        .db
        .execute(scrm_db::query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, 'm-off', '停用成员', 2, ?, ?)").bind(tenant).bind(now).bind(now))
        .await
        .unwrap();
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let refused = s
        .post(
            "/console/group-send",
            &[
                ("taskName", "问候"),
                ("senderAccountId", "m-off"),
                ("customerIds", &c.to_string()),
                ("text", "您好"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let at = refused
        .body
        .find("id=\"error-sender\"")
        .unwrap_or_else(|| panic!("the sender's error: {}", refused.body));
    let shown: String = refused.body[at..].chars().take(200).collect();
    assert!(shown.contains("m-off is OFFLINE"), "{shown}");
    let api = app
        .post(
            "/api/v1/workbench/group-send/tasks",
            &app.admin_token,
            json!({"senderAccountId": "m-off", "target": {"customerIds": [c]}, "messageContent": {"type": "TEXT", "data": {"text": "您好"}}}),
        )
        .await;
    assert_eq!((api.status, api.error()), (422, "SENDER_ACCOUNT_OFFLINE"));
    let tasks = app
        .get("/api/v1/workbench/group-send/tasks", &app.admin_token)
        .await;
    assert_eq!(tasks.data()["total"], 0, "nothing was created");
}

async fn console_tags_sop_and_users_pages_list_and_sop_executions_pause(app: TestApp) {
    tags(&app, "来源", &["展会", "官网"]).await;
    let c = customer(&app, json!({"externalUserid": "wmS", "name": "SOP客户"})).await;
    // An SOP whose only step is a day away: its execution stays running until paused.
    let t = app
        .post(
            "/api/sop/template",
            &app.admin_token,
            json!({"templateName": "回访SOP", "templateType": 1, "triggerType": 4, "steps": [
                {"stepName": "提醒", "stepType": 5, "delayTime": 1, "delayUnit": "day", "actionContent": {"content": "跟进一下"}}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let tid = t.data()["templateId"].as_i64().unwrap();
    let r = app
        .post(
            "/api/sop/execute",
            &app.admin_token,
            json!({"templateId": tid, "targetType": 1, "targetIds": [c]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let exec = r.data()["executionIds"][0].as_i64().unwrap();

    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let tags_page = s.get("/console/tags").await;
    assert_eq!(tags_page.status, 200);
    assert!(tags_page.body.contains("来源") && tags_page.body.contains("官网"));
    let users = s.get("/console/users").await;
    assert!(users.body.contains("class=\"user-row\""));
    assert!(users.body.contains("admin"));
    let sop = s.get("/console/sop").await;
    assert!(sop.body.contains("回访SOP"));
    let execs = s.get("/console/sop/executions").await;
    assert!(execs.body.contains("id=\"sop-actions\""));
    assert!(
        execs.body.contains("回访SOP"),
        "each execution names its template"
    );

    let paused = s
        .post(
            "/console/sop/control",
            &[("ids", exec.to_string().as_str()), ("action", "pause")],
        )
        .await;
    assert_eq!(paused.location, "/console/sop/executions?done=1");
    let list = app
        .get(
            &format!("/api/sop/executions?templateId={tid}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(list.data()["list"][0]["status"], 2, "paused");
    let shown = s.get("/console/sop/executions?status=2").await;
    assert!(shown.body.contains("data-status=\"2\""));

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let sop = v.get("/console/sop/executions").await;
    assert_eq!(sop.status, 200);
    assert!(!sop.body.contains("id=\"sop-actions\""));
    let refused = v
        .post(
            "/console/sop/control",
            &[("ids", exec.to_string().as_str()), ("action", "resume")],
        )
        .await;
    assert_eq!(refused.status, 403);
}

/// The names of a tag group's tags in their order, from the API.
async fn group_tags(app: &TestApp, group: i64) -> Vec<String> {
    let r = app.get("/api/v1/tag-groups", &app.admin_token).await;
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == group)
        .map(|g| {
            g["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (id, name) of the tag groups in their order, from the API.
async fn tag_groups(app: &TestApp) -> Vec<(i64, String)> {
    let r = app.get("/api/v1/tag-groups", &app.admin_token).await;
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_i64().unwrap(),
                g["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tag_id(app_groups: &serde_json::Value, name: &str) -> i64 {
    app_groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tags"].as_array().unwrap().iter())
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no tag {name}"))
}

async fn console_tags_are_created_renamed_reordered_and_deleted(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let page = s.get("/console/tags").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"new-group-form\""));

    let refused = s.post("/console/tag-groups", &[("name", " ")]).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-group-new\""),
        "{}",
        refused.body
    );
    assert!(tag_groups(&app).await.is_empty(), "nothing was created");

    let made = s
        .post(
            "/console/tag-groups",
            &[("name", "等级"), ("tags", "VIP， 普通")],
        )
        .await;
    assert_eq!(
        (made.status, made.location.as_str()),
        (303, "/console/tags?done=created")
    );
    let g = tag_groups(&app).await[0].0;
    assert_eq!(group_tags(&app, g).await, ["VIP", "普通"]);
    let shown = s.get("/console/tags?done=created").await;
    assert!(shown.body.contains("id=\"notice\""));
    assert!(shown.body.contains("value=\"VIP\""));

    let gid = g.to_string();
    let refused = s
        .post("/console/tags", &[("groupId", &gid), ("name", "")])
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains(&format!("id=\"error-newtag-{g}\"")));
    let added = s
        .post("/console/tags", &[("groupId", &gid), ("name", "黑卡")])
        .await;
    assert_eq!(added.status, 303);
    assert_eq!(group_tags(&app, g).await, ["VIP", "普通", "黑卡"]);

    let all = app.get("/api/v1/tag-groups", &app.admin_token).await;
    let (vip, plain, black) = (
        tag_id(all.data(), "VIP"),
        tag_id(all.data(), "普通"),
        tag_id(all.data(), "黑卡"),
    );
    let renamed = s
        .post(
            &format!("/console/tags/{vip}"),
            &[("action", "rename"), ("name", "钻石")],
        )
        .await;
    assert_eq!(renamed.status, 303);
    // A name the group already has: 409 next to that tag, nothing changed.
    let clash = s
        .post(
            &format!("/console/tags/{plain}"),
            &[("action", "rename"), ("name", "钻石")],
        )
        .await;
    assert_eq!(clash.status, 409);
    assert!(
        clash.body.contains(&format!("id=\"error-tag-{plain}\"")),
        "{}",
        clash.body
    );
    let up = s
        .post(&format!("/console/tags/{black}"), &[("action", "up")])
        .await;
    assert_eq!(up.status, 303);
    assert_eq!(group_tags(&app, g).await, ["钻石", "黑卡", "普通"]);
    let gone = s
        .post(&format!("/console/tags/{plain}"), &[("action", "delete")])
        .await;
    assert_eq!(gone.location, "/console/tags?done=deleted");
    assert_eq!(group_tags(&app, g).await, ["钻石", "黑卡"]);

    s.post("/console/tag-groups", &[("name", "来源")]).await;
    let g2 = tag_groups(&app).await[1].0;
    let moved = s
        .post(&format!("/console/tag-groups/{g2}"), &[("action", "up")])
        .await;
    assert_eq!(moved.status, 303);
    let names: Vec<String> = tag_groups(&app).await.into_iter().map(|g| g.1).collect();
    assert_eq!(names, ["来源", "等级"]);
    s.post(
        &format!("/console/tag-groups/{g2}"),
        &[("action", "rename"), ("name", "渠道")],
    )
    .await;
    assert_eq!(tag_groups(&app).await[0].1, "渠道");
    let deleted = s
        .post(
            &format!("/console/tag-groups/{g2}"),
            &[("action", "delete")],
        )
        .await;
    assert_eq!(deleted.status, 303);
    assert_eq!(tag_groups(&app).await.len(), 1);

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let page = v.get("/console/tags").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("钻石"));
    assert!(!page.body.contains("id=\"new-group-form\""));
    assert_eq!(
        v.post("/console/tag-groups", &[("name", "X")]).await.status,
        403
    );
    assert_eq!(
        v.post(&format!("/console/tags/{vip}"), &[("action", "delete")])
            .await
            .status,
        403
    );
    assert_eq!(group_tags(&app, g).await, ["钻石", "黑卡"]);
}

/// The `id` in a `/console/<what>/{id}?…` redirect.
fn id_in(location: &str) -> i64 {
    location
        .rsplit('/')
        .next()
        .and_then(|t| t.split('?').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no id in {location}"))
}

async fn console_group_chats_staff_channel_codes_welcome_and_materials(app: TestApp) {
    let sim = crate::integration::sim(30).await;
    crate::integration::connect(&app, &sim).await;
    assert_eq!(
        crate::integration_sync::sync(&app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;

    // Group chats and their members.
    let chats = s.get("/console/group-chats").await;
    assert_eq!(chats.status, 200);
    assert!(chats.body.contains("class=\"group-row\""));
    let groups = app.get("/api/v1/groups?size=1", &app.admin_token).await;
    let chat = groups.data()["list"][0]["id"].as_i64().unwrap();
    let members = app
        .get(&format!("/api/v1/groups/{chat}/members"), &app.admin_token)
        .await;
    let chat_page = s.get(&format!("/console/group-chats/{chat}")).await;
    assert_eq!(chat_page.status, 200);
    assert!(
        chat_page
            .body
            .contains(&format!("id=\"member-total\">{}<", members.data()["total"]))
    );
    assert!(chat_page.body.contains("class=\"member-row\""));
    let refused = s
        .post(
            &format!("/console/group-chats/{chat}/tags"),
            &[("tagId", ""), ("action", "add")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-tags\""),
        "{}",
        refused.body
    );
    let t = tags(&app, "群类型", &["福利群"]).await[0];
    let tagged = s
        .post(
            &format!("/console/group-chats/{chat}/tags"),
            &[("tagId", &t.to_string()), ("action", "add")],
        )
        .await;
    assert_eq!(tagged.status, 303);
    let g = app
        .get(&format!("/api/v1/groups/{chat}"), &app.admin_token)
        .await;
    assert_eq!(g.data()["tags"][0]["name"], "福利群");

    // Staff and departments.
    let staff = s.get("/console/staff").await;
    assert_eq!(staff.status, 200);
    assert!(staff.body.contains("class=\"staff-row\""));
    assert!(staff.body.contains("class=\"department-row\""));
    let members = app.get("/api/v1/staff?size=500", &app.admin_token).await;
    let userid = members.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["status"] == 1)
        .map(|m| m["userid"].as_str().unwrap().to_string())
        .unwrap();
    assert!(staff.body.contains(&userid));

    // Channel codes: refused form, create, page with statistics, edit, delete.
    let form = s.get("/console/channel-codes/new").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(&format!("value=\"{userid}\"")));
    let refused = s
        .post(
            "/console/channel-codes",
            &[("name", ""), ("remark", "展会")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-name\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"展会\""), "the draft is kept");
    let limit = format!("limit.{userid}");
    let made = s
        .post(
            "/console/channel-codes",
            &[
                ("name", "展会码"),
                ("staff", &userid),
                (&limit, "5"),
                ("tagIds", &t.to_string()),
                ("welcomeText", "您好 {nickname}"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let code = id_in(&made.location);
    let api = app
        .get(&format!("/api/v1/channel-codes/{code}"), &app.admin_token)
        .await;
    assert_eq!(api.data()["staff"][0]["dailyLimit"], 5);
    assert_eq!(api.data()["tagIds"], json!([t]));
    assert_eq!(api.data()["welcome"]["text"], "您好 {nickname}");
    let page = s.get(&format!("/console/channel-codes/{code}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"code-stats\""));
    assert!(page.body.contains("id=\"stat-adds\">0<"));
    assert_eq!(
        page.body.matches("<rect").count(),
        60,
        "30 days, two bars each"
    );
    let list = s.get("/console/channel-codes").await;
    assert!(list.body.contains("展会码"));
    let edit = s.get(&format!("/console/channel-codes/{code}/edit")).await;
    assert!(edit.body.contains(&format!("name=\"{limit}\" value=\"5\"")));
    // Working hours set through the API (the form does not show them) survive a save here.
    app.state
        .db
        .execute(
            scrm_db::query("UPDATE channel_code SET staff = ? WHERE id = ?")
                .bind(json!([{"userid": userid, "dailyLimit": 5, "workDays": [1, 2, 3, 4, 5], "workStart": "09:00", "workEnd": "18:00"}]).to_string())
                .bind(code),
        )
        .await
        .unwrap();
    let saved = s
        .post(
            &format!("/console/channel-codes/{code}"),
            &[
                ("name", "展会码二"),
                ("staff", &userid),
                (&limit, "8"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let api = app
        .get(&format!("/api/v1/channel-codes/{code}"), &app.admin_token)
        .await;
    assert_eq!(api.data()["name"], "展会码二");
    assert_eq!(api.data()["staff"][0]["dailyLimit"], 8);
    assert_eq!(
        api.data()["staff"][0]["workStart"],
        "09:00",
        "{:?}",
        api.body
    );
    assert_eq!(api.data()["staff"][0]["workDays"], json!([1, 2, 3, 4, 5]));
    let bad = s
        .post(
            &format!("/console/channel-codes/{code}"),
            &[("name", "展会码二"), ("action", "save")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("id=\"error-staff\""), "{}", bad.body);

    // Welcome messages.
    let refused = s
        .post(
            "/console/welcome",
            &[("name", "默认欢迎语"), ("text", " "), ("enabled", "1")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-text\""),
        "{}",
        refused.body
    );
    let made = s
        .post(
            "/console/welcome",
            &[
                ("name", "默认欢迎语"),
                ("text", "欢迎 {nickname}"),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(made.location, "/console/welcome?done=created");
    let list = app
        .get("/api/v1/automation/welcome-messages", &app.admin_token)
        .await;
    assert_eq!(list.data()["list"][0]["text"], "欢迎 {nickname}");
    let wid = list.data()["list"][0]["id"].as_i64().unwrap();
    let page = s.get(&format!("/console/welcome?edit={wid}")).await;
    assert!(page.body.contains("欢迎 {nickname}</textarea>"));

    // The group-send form offers the material library; the task carries the material.
    let m = app
        .post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "link", "title": "活动页", "content": {"url": "https://example.com/a"}}),
        )
        .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let mid = m.data()["materialId"].as_i64().unwrap().to_string();
    let form = s.get("/console/group-send/new").await;
    assert!(form.body.contains("活动页"));
    let accounts = app
        .get(
            "/api/v1/workbench/wechat/group-send/accounts",
            &app.admin_token,
        )
        .await;
    let sender = accounts.data()[0]["accountId"]
        .as_str()
        .unwrap()
        .to_string();
    let customers = app.get("/api/v1/customers?size=3", &app.admin_token).await;
    let cids: Vec<i64> = customers.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let cid = cids[0].to_string();
    let refused = s
        .post(
            "/console/group-send",
            &[
                ("senderAccountId", &sender),
                ("customerIds", &cid),
                ("msgType", "MATERIAL"),
                ("text", "看看"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-message\""),
        "{}",
        refused.body
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(8))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let made = s
        .post(
            "/console/group-send",
            &[
                ("taskName", "素材群发"),
                ("senderAccountId", &sender),
                ("customerIds", &cid),
                ("msgType", "MATERIAL"),
                ("materialId", &mid),
                ("text", "看看"),
                ("scheduledTime", &tomorrow),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let task = id_in(&made.location);
    let d = app
        .get(
            &format!("/api/v1/workbench/group-send/tasks/{task}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(d.data()["messageContent"]["type"], "MATERIAL");
    let shown = s.get(&format!("/console/group-send/{task}")).await;
    assert!(
        shown
            .body
            .contains(&format!("id=\"task-attachment\">素材 #{mid}<")),
        "{}",
        shown.body
    );
    assert_eq!(
        d.data()["messageContent"]["data"]["materialId"].to_string(),
        mid
    );

    // Results waiting in WeCom (SUBMITTED) are shown under "pending".
    let now = chrono::Utc::now().timestamp_millis();
    for (i, status) in ["SUBMITTED", "PENDING", "SUCCESS"].into_iter().enumerate() {
        app.state
            .db
            .execute(
                scrm_db::query("INSERT INTO t_group_send_result (tenant_id, task_id, customer_id, external_userid, sender_userid, status, create_time, update_time) SELECT tenant_id, ?, ?, ?, ?, ?, ?, ? FROM t_group_send_task WHERE id = ?")
                    .bind(task)
                    .bind(cids[i])
                    .bind(format!("wmResult{i}"))
                    .bind(sender.as_str())
                    .bind(status)
                    .bind(now)
                    .bind(now)
                    .bind(task),
            )
            .await
            .unwrap();
    }
    let pending = s
        .get(&format!("/console/group-send/{task}?status=PENDING"))
        .await;
    assert!(
        pending.body.contains("id=\"result-total\">2<"),
        "{}",
        pending.body
    );
    let api = app
        .get(
            &format!("/api/v1/workbench/group-send/tasks/{task}?resultStatus=PENDING"),
            &app.admin_token,
        )
        .await;
    assert_eq!(api.data()["resultTotal"], 2);

    // A viewer sees the pages without their forms and may post none of them.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let page = v.get(&format!("/console/group-chats/{chat}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"group-tag-form\""));
    let page = v.get(&format!("/console/channel-codes/{code}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"edit-code\""));
    assert_eq!(v.get("/console/channel-codes/new").await.status, 403);
    assert_eq!(
        v.post("/console/channel-codes", &[("name", "x")])
            .await
            .status,
        403
    );
    assert_eq!(
        v.post(
            &format!("/console/channel-codes/{code}"),
            &[("action", "delete")]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        v.post("/console/welcome", &[("name", "x")]).await.status,
        403
    );
    assert!(
        !v.get("/console/welcome")
            .await
            .body
            .contains("id=\"welcome-form\"")
    );

    // Deleting goes through the API too.
    let gone = s
        .post(
            &format!("/console/channel-codes/{code}"),
            &[("action", "delete")],
        )
        .await;
    assert_eq!(gone.location, "/console/channel-codes?done=deleted");
    assert_eq!(
        app.get(&format!("/api/v1/channel-codes/{code}"), &app.admin_token)
            .await
            .status,
        404
    );
    let gone = s
        .post(
            "/console/welcome",
            &[("id", &wid.to_string()), ("action", "delete")],
        )
        .await;
    assert_eq!(gone.location, "/console/welcome?done=deleted");
    sim.shutdown().await;
}

async fn console_wecom_config_sync_logs_and_callback_replay(app: TestApp) {
    let sim = crate::integration::sim(10).await;
    let sc = sim.config();
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let form = s.get("/console/integration/config").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"config-form\""));

    let agent = sc.creds.agent_id.to_string();
    let base = sim.base_url();
    let refused = s
        .post(
            "/console/integration/config",
            &[
                ("corpId", sc.creds.corp_id.as_str()),
                ("agentId", "abc"),
                ("corpSecret", sc.creds.app_secret.as_str()),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-agentId\""),
        "{}",
        refused.body
    );
    assert!(
        !refused.body.contains(sc.creds.app_secret.as_str()),
        "a typed secret is never shown again"
    );
    assert_eq!(
        app.get("/api/wework/config", &app.admin_token).await.data(),
        &serde_json::Value::Null,
        "nothing was saved"
    );
    let saved = s
        .post(
            "/console/integration/config",
            &[
                ("corpId", sc.creds.corp_id.as_str()),
                ("agentId", agent.as_str()),
                ("corpSecret", sc.creds.app_secret.as_str()),
                ("contactsSecret", sc.creds.contact_secret.as_str()),
                ("token", sc.callback.token.as_str()),
                ("encodingAesKey", sc.callback.encoding_aes_key.as_str()),
                ("apiBase", base.as_str()),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let cfg = app.get("/api/wework/config", &app.admin_token).await;
    assert_eq!(cfg.data()["corpId"], sc.creds.corp_id.as_str());
    let masked = cfg.data()["corpSecret"].as_str().unwrap().to_string();
    let form = s.get("/console/integration/config").await;
    assert!(
        form.body.contains(&masked),
        "the stored secret is shown masked"
    );
    assert!(!form.body.contains(sc.creds.app_secret.as_str()));
    // Saving without typing the secrets keeps them: the sync below still reaches WeCom.
    let kept = s
        .post(
            "/console/integration/config",
            &[
                ("corpId", sc.creds.corp_id.as_str()),
                ("agentId", agent.as_str()),
                ("apiBase", base.as_str()),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(kept.status, 303, "{}", kept.body);
    assert_eq!(
        app.get("/api/wework/config", &app.admin_token).await.data()["corpSecret"],
        masked.as_str()
    );
    let cfg_id = cfg.data()["id"].as_i64().unwrap();
    assert_eq!(
        crate::integration_sync::sync(&app, json!({"syncType": "department"})).await["status"],
        "success"
    );
    let logs = s.get("/console/integration/sync-logs").await;
    assert_eq!(logs.status, 200);
    assert!(
        logs.body
            .contains("class=\"log-row\" data-status=\"success\""),
        "{}",
        logs.body
    );
    let none = s.get("/console/integration/sync-logs?status=failed").await;
    assert!(!none.body.contains("class=\"log-row\""));

    // A callback that failed can be replayed from the page.
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    app.state
        .db
        .execute(
            scrm_db::query("INSERT INTO wework_callback_event (tenant_id, config_id, dedupe_key, event, change_type, raw_xml, status, attempts, error, received_at) VALUES (?, ?, 'test-1', 'change_external_contact', 'edit_external_contact', '<xml></xml>', 'failed', 6, 'customer fetch failed', ?)")
                .bind(tenant)
                .bind(cfg_id)
                .bind(chrono::Utc::now().timestamp_millis()),
        )
        .await
        .unwrap();
    let events = app
        .get(
            "/api/wework/callback/events?status=failed",
            &app.admin_token,
        )
        .await;
    let ev = events.data()["list"][0]["id"].as_i64().unwrap();
    let page = s.get("/console/integration/callbacks?status=failed").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("customer fetch failed"));
    assert!(page.body.contains(&format!("id=\"replay-{ev}\"")));
    let replayed = s
        .post(&format!("/console/integration/callbacks/{ev}/replay"), &[])
        .await;
    assert_eq!(
        replayed.location,
        "/console/integration/callbacks?done=replayed"
    );
    let audited = app
        .state
        .db
        .fetch_i64(scrm_db::query(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'wework.callback.replay'",
        ))
        .await
        .unwrap();
    assert_eq!(audited, 1);
    let missing = s
        .post("/console/integration/callbacks/999999/replay", &[])
        .await;
    assert_eq!(missing.status, 404);

    // An operator may view and replay callbacks but not change the configuration.
    app.user_with_role("otto", "operator").await;
    let o = Session::login(&app, "otto", "password-123").await;
    assert_eq!(o.get("/console/integration/config").await.status, 403);
    assert_eq!(
        o.post("/console/integration/config", &[("corpId", "x")])
            .await
            .status,
        403
    );
    assert!(
        !o.get("/console/integration")
            .await
            .body
            .contains("id=\"edit-config\"")
    );
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let page = v.get("/console/integration/callbacks").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"replay-"));
    assert_eq!(
        v.post(&format!("/console/integration/callbacks/{ev}/replay"), &[])
            .await
            .status,
        403
    );
    sim.shutdown().await;
}

async fn console_users_roles_passwords_and_api_tokens(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let page = s.get("/console/users").await;
    assert!(page.body.contains("id=\"new-user-form\""));
    // The roles with their permissions: a viewer only views, an operator may not manage users.
    let role = |code: &str| {
        let at = page
            .body
            .find(&format!("class=\"role-row\" data-role=\"{code}\""))
            .unwrap();
        page.body[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(role("admin").contains("<code class=\"perm\">system:user:manage</code>"));
    assert!(!role("operator").contains("system:user:manage"));
    assert!(role("viewer").contains("customer:view"));
    assert!(!role("viewer").contains("customer:tag<"));
    let refused = s
        .post(
            "/console/users",
            &[
                ("username", "ab"),
                ("password", "password-123"),
                ("role", "operator"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-username\""),
        "{}",
        refused.body
    );
    let refused = s
        .post(
            "/console/users",
            &[
                ("username", "olga"),
                ("password", "password-123"),
                ("role", "boss"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-role\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"olga\""), "the draft is kept");
    let made = s
        .post(
            "/console/users",
            &[
                ("username", "olga"),
                ("displayName", "奥尔加"),
                ("password", "password-123"),
                ("role", "operator"),
            ],
        )
        .await;
    assert_eq!(made.location, "/console/users?done=created");
    let list = app.get("/api/v1/system/users", &app.admin_token).await;
    let olga = list.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "olga")
        .cloned()
        .unwrap();
    assert_eq!(olga["role"], "operator");
    let id = olga["id"].as_i64().unwrap();
    let path = format!("/api/v1/system/users/{id}");
    let user = async |app: &TestApp| app.get(&path, &app.admin_token).await.data().clone();

    let role = s
        .post(
            &format!("/console/users/{id}"),
            &[("action", "role"), ("role", "viewer")],
        )
        .await;
    assert_eq!(role.status, 303);
    assert_eq!(user(&app).await["role"], "viewer");
    let weak = s
        .post(
            &format!("/console/users/{id}"),
            &[("action", "password"), ("password", "x")],
        )
        .await;
    assert_eq!(weak.status, 400);
    assert!(
        weak.body.contains(&format!("id=\"error-user-{id}\"")),
        "{}",
        weak.body
    );
    let reset = s
        .post(
            &format!("/console/users/{id}"),
            &[("action", "password"), ("password", "new-password-456")],
        )
        .await;
    assert_eq!(reset.status, 303);
    Session::login(&app, "olga", "new-password-456").await;
    let off = s
        .post(&format!("/console/users/{id}"), &[("action", "disable")])
        .await;
    assert_eq!(off.status, 303);
    assert_eq!(user(&app).await["status"], 0);
    assert_ne!(
        post_login(&app, "olga", "new-password-456").await.status,
        303
    );
    let on = s
        .post(&format!("/console/users/{id}"), &[("action", "enable")])
        .await;
    assert_eq!(on.status, 303);
    assert_eq!(user(&app).await["status"], 1);

    // The API's own rule: an admin cannot demote themselves.
    let me = app.get("/api/v1/auth/me", &app.admin_token).await.data()["id"]
        .as_i64()
        .unwrap();
    let demote = s
        .post(
            &format!("/console/users/{me}"),
            &[("action", "role"), ("role", "viewer")],
        )
        .await;
    assert_eq!(demote.status, 400);
    assert!(demote.body.contains(&format!("id=\"error-user-{me}\"")));

    // API tokens: shown once, usable, revocable.
    let tokens = s.get("/console/tokens").await;
    assert_eq!(tokens.status, 200);
    let refused = s.post("/console/tokens", &[("name", " ")]).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("id=\"error-name\""));
    let refused = s
        .post(
            "/console/tokens",
            &[("name", "CRM"), ("expiresInDays", "0")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("id=\"error-expiresInDays\""));
    let made = s
        .post(
            "/console/tokens",
            &[("name", "CRM 同步"), ("expiresInDays", "30")],
        )
        .await;
    assert_eq!(made.status, 200);
    let token = made
        .body
        .split("id=\"fresh-token-value\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    assert!(token.starts_with("scrm_"), "{token}");
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 200);
    let again = s.get("/console/tokens").await;
    assert!(again.body.contains("CRM 同步"));
    assert!(!again.body.contains(&token), "the token is shown once");
    let list = app.get("/api/v1/system/tokens", &app.admin_token).await;
    let tid = list.data()[0]["id"].as_i64().unwrap();
    let revoked = s.post(&format!("/console/tokens/{tid}/revoke"), &[]).await;
    assert_eq!(revoked.location, "/console/tokens?done=revoked");
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 401);

    // An operator sees users but cannot change them, and has no tokens page.
    app.user_with_role("otto", "operator").await;
    let o = Session::login(&app, "otto", "password-123").await;
    let page = o.get("/console/users").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"new-user-form\""));
    assert_eq!(
        o.post(
            "/console/users",
            &[
                ("username", "eve"),
                ("password", "password-123"),
                ("role", "admin")
            ]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        o.post(&format!("/console/users/{id}"), &[("action", "disable")])
            .await
            .status,
        403
    );
    assert_eq!(o.get("/console/tokens").await.status, 403);
    assert_eq!(user(&app).await["status"], 1);
}

async fn console_workbench_counts_a_first_syncs_recent_adds_on_their_days(app: TestApp) {
    // The demo's simulator: customers added over the last 30 days, some today.
    let mut c = scrm_wecom_sim::SimConfig::default();
    c.size.customers = 60;
    c.size.staff = 8;
    c.recent_adds_days = 30;
    let sim = scrm_wecom_sim::Simulator::start(c)
        .await
        .expect("simulator");
    crate::integration::connect(&app, &sim).await;
    assert_eq!(
        crate::integration_sync::sync(&app, json!({"syncType": "full"})).await["status"],
        "success"
    );
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let china = 8 * 3_600_000;
    let today_start = (now + china).div_euclid(day) * day - china;
    let today = app
        .state
        .db
        .fetch_i64(
            scrm_db::query("SELECT COUNT(*) FROM customer WHERE add_time >= ?").bind(today_start),
        )
        .await
        .unwrap();
    assert!(today > 0, "the simulator adds some customers today");
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let home = s.get("/console").await;
    assert!(
        home.body.contains(&format!("id=\"fig-added\">{today}<")),
        "{today} added today"
    );
    let stats = app
        .get("/api/v1/customers/statistics", &app.admin_token)
        .await;
    // Every synced customer was added in the last 30 days: all are in the chart's period.
    assert_eq!(
        stats.data()["period"]["added"],
        stats.data()["totals"]["total"],
        "{:?}",
        stats.body
    );
    sim.shutdown().await;
}

impl Session {
    /// A multipart post (a form with a file input).
    async fn post_multipart(&self, path: &str, form: reqwest::multipart::Form) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .multipart(form)
            .send()
            .await
            .unwrap();
        page_of(r).await
    }
}

/// A multipart form of text fields and, if given, a file (name, bytes).
fn multipart(fields: &[(&str, &str)], file: Option<(&str, Vec<u8>)>) -> reqwest::multipart::Form {
    let mut f = reqwest::multipart::Form::new();
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    if let Some((name, bytes)) = file {
        f = f.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
        );
    }
    f
}

/// A PNG's first bytes and some padding: enough for the kind check.
fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.resize(len, 7);
    b
}

async fn console_material_upload_checks_the_file_and_stores_nothing_refused(app: TestApp) {
    let total = async || {
        app.get("/api/materials", &app.admin_token).await.data()["total"]
            .as_i64()
            .unwrap()
    };
    let api = async |form: reqwest::multipart::Form| {
        let r = reqwest::Client::new()
            .post(format!("{}/api/material/upload", app.base))
            .bearer_auth(&app.admin_token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };

    // The API: an image upload is stored with its name; the list says it has a file.
    let (status, body) = api(multipart(
        &[("materialType", "image"), ("title", "海报")],
        Some(("poster.png", png(2048))),
    ))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["fileName"], "poster.png");
    assert_eq!(body["data"]["hasFile"], true);
    let (status, body) = api(multipart(
        &[
            ("materialType", "miniprogram"),
            ("title", "小程序"),
            ("content", r#"{"appid":"wx1","page":"pages/a"}"#),
        ],
        Some(("cover.png", png(64))),
    ))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(total().await, 2);

    // Refusals, each with a stable name, naming the file; nothing stored.
    let (status, body) = api(multipart(
        &[("materialType", "image"), ("title", "不是图片")],
        Some(("poster.png", b"GIF89a-not-a-png".to_vec())),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "FILE_TYPE_NOT_ALLOWED");
    assert_eq!(body["fields"][0]["field"], "file");
    let (status, body) = api(multipart(
        &[("materialType", "video"), ("title", "视频")],
        Some(("clip.mp4", png(64))),
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("FILE_TYPE_NOT_ALLOWED"))
    );
    let (status, body) = api(multipart(
        &[("materialType", "image"), ("title", "太大")],
        Some(("big.png", png((10 << 20) + 1))),
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("FILE_TOO_LARGE"))
    );
    // Over the upload limit (20 MB and the form): the body is not read to its end.
    let (status, body) = api(multipart(
        &[("materialType", "file"), ("title", "超大")],
        Some(("huge.bin", vec![1; 21 << 20])),
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("FILE_TOO_LARGE"))
    );
    let (status, body) = api(multipart(
        &[
            ("materialType", "text"),
            ("title", "文本"),
            ("content", r#"{"text":"hi"}"#),
        ],
        Some(("a.txt", b"hello world".to_vec())),
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("FILE_TYPE_NOT_ALLOWED"))
    );
    let (status, body) = api(multipart(
        &[("materialType", "file"), ("title", "文件")],
        None,
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("VALIDATION_FAILED"))
    );
    assert_eq!(body["fields"][0]["field"], "file");
    assert_eq!(total().await, 2, "nothing refused was stored");

    // The console form: the refusal next to the file input, the draft kept; then an upload.
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let form = s.get("/console/materials").await;
    assert!(form.body.contains("enctype=\"multipart/form-data\""));
    assert!(form.body.contains("id=\"material-file\""));
    let refused = s
        .post_multipart(
            "/console/materials/upload",
            multipart(
                &[("materialType", "image"), ("title", "错的图")],
                Some(("x.png", b"%PDF-1.4 not an image".to_vec())),
            ),
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains("id=\"error-file\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"错的图\""));
    let big = s
        .post_multipart(
            "/console/materials/upload",
            multipart(
                &[("materialType", "video"), ("title", "大视频")],
                Some(("v.mp4", vec![0; (10 << 20) + 1])),
            ),
        )
        .await;
    assert_eq!(big.status, 413);
    assert!(big.body.contains("id=\"error-file\""));
    let missing = s
        .post_multipart(
            "/console/materials/upload",
            multipart(
                &[("materialType", "file"), ("title", "无文件")],
                Some(("", Vec::new())),
            ),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("id=\"error-file\""));
    assert_eq!(total().await, 2);
    let made = s
        .post_multipart(
            "/console/materials/upload",
            multipart(
                &[("materialType", "file"), ("title", "价目表"), ("text", "")],
                Some(("prices.pdf", b"%PDF-1.4 price list".to_vec())),
            ),
        )
        .await;
    assert_eq!(
        made.location, "/console/materials?done=created",
        "{}",
        made.body
    );
    let text = s
        .post_multipart(
            "/console/materials/upload",
            multipart(
                &[
                    ("materialType", "text"),
                    ("title", "问候"),
                    ("text", "你好"),
                ],
                None,
            ),
        )
        .await;
    assert_eq!(text.location, "/console/materials?done=created");
    let list = s.get("/console/materials").await;
    assert!(list.body.contains("prices.pdf"));
    assert_eq!(total().await, 4);
}

async fn material_update_upload_replaces_the_file_and_drops_the_media_id(app: TestApp) {
    let put = async |id: i64, token: &str, form: reqwest::multipart::Form| {
        let r = reqwest::Client::new()
            .put(format!("{}/api/material/{id}/upload", app.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let get = async |id: i64| {
        app.get(&format!("/api/material/{id}"), &app.admin_token)
            .await
            .data()
            .clone()
    };
    // WeCom's media id as a send leaves it.
    let cache_media = async |id: i64| {
        app.state
            .db
            .execute(
                scrm_db::query(
                    "UPDATE material SET media_id = ?, media_expires_at = ? WHERE id = ?",
                )
                .bind("media-old")
                .bind(4_102_444_800_000_i64)
                .bind(id),
            )
            .await
            .unwrap();
    };
    let r = app
        .post(
            "/api/material",
            &app.admin_token,
            json!({"materialType": "image", "title": "海报", "fileName": "a.png",
                   "fileData": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png(64))}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["materialId"].as_i64().unwrap();
    cache_media(id).await;

    // No file: the title changes, the file and its media id stay.
    let (status, body) = put(
        id,
        &app.admin_token,
        multipart(&[("materialType", "image"), ("title", "新海报")], None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["title"], "新海报");
    assert_eq!(body["data"]["fileName"], "a.png");
    assert_eq!(body["data"]["mediaId"], "media-old");

    // Refusals store nothing: the old title, file and media id stay.
    let refusals: [(&str, Vec<u8>, u16, &str); 3] = [
        (
            "b.png",
            b"GIF89a-not-a-png".to_vec(),
            422,
            "FILE_TYPE_NOT_ALLOWED",
        ),
        ("big.png", png((10 << 20) + 1), 413, "FILE_TOO_LARGE"),
        ("huge.png", vec![1; 21 << 20], 413, "FILE_TOO_LARGE"),
    ];
    for (name, bytes, want, error) in refusals {
        let (status, body) = put(
            id,
            &app.admin_token,
            multipart(
                &[("materialType", "image"), ("title", "不该保存")],
                Some((name, bytes)),
            ),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (want, Some(error)),
            "{name}"
        );
        assert_eq!(body["fields"][0]["field"], "file");
    }
    let kept = get(id).await;
    assert_eq!(kept["title"], "新海报");
    assert_eq!(kept["mediaId"], "media-old");

    // A new file replaces the old one and drops the media id, so the next send uploads it.
    let (status, body) = put(
        id,
        &app.admin_token,
        multipart(
            &[("materialType", "image"), ("title", "新海报")],
            Some(("b.png", png(128))),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["fileName"], "b.png");
    assert_eq!(body["data"]["mediaId"], serde_json::Value::Null);
    assert_eq!(body["data"]["mediaExpiresAt"], serde_json::Value::Null);

    // Another tenant's material is not found; a viewer may not change materials.
    let (_, theirs) = app.other_tenant_admin("other upload", "boss.u").await;
    let (status, _) = put(
        id,
        &theirs,
        multipart(
            &[("materialType", "image"), ("title", "x")],
            Some(("c.png", png(64))),
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(get(id).await["fileName"], "b.png");

    // The console's edit form: the stored file is named, a wrong file is refused next to the
    // input, no file keeps it, a new one replaces it and drops the media id.
    cache_media(id).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let list = s.get("/console/materials").await;
    assert!(list.body.contains(&format!("id=\"edit-material-{id}\"")));
    let form = s.get(&format!("/console/materials/{id}/edit")).await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains(&format!("action=\"/console/materials/{id}/upload\""))
    );
    assert!(form.body.contains("id=\"material-kept-file\""));
    assert!(form.body.contains("b.png"));
    assert!(form.body.contains("value=\"新海报\""));
    let refused = s
        .post_multipart(
            &format!("/console/materials/{id}/upload"),
            multipart(
                &[("materialType", "image"), ("title", "错的图")],
                Some(("x.png", b"%PDF-1.4 not an image".to_vec())),
            ),
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains("id=\"error-file\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"错的图\""));
    assert!(
        refused
            .body
            .contains(&format!("action=\"/console/materials/{id}/upload\""))
    );
    let big = s
        .post_multipart(
            &format!("/console/materials/{id}/upload"),
            multipart(
                &[("materialType", "image"), ("title", "大图")],
                Some(("big.png", png((10 << 20) + 1))),
            ),
        )
        .await;
    assert_eq!(big.status, 413);
    assert!(big.body.contains("id=\"error-file\""));
    let renamed = s
        .post_multipart(
            &format!("/console/materials/{id}/upload"),
            multipart(
                &[("materialType", "image"), ("title", "海报三")],
                Some(("", Vec::new())),
            ),
        )
        .await;
    assert_eq!(
        renamed.location, "/console/materials?done=saved",
        "{}",
        renamed.body
    );
    let m = get(id).await;
    assert_eq!(
        (m["title"].as_str(), m["fileName"].as_str()),
        (Some("海报三"), Some("b.png"))
    );
    assert_eq!(m["mediaId"], "media-old");
    let replaced = s
        .post_multipart(
            &format!("/console/materials/{id}/upload"),
            multipart(
                &[("materialType", "image"), ("title", "海报三")],
                Some(("c.jpg", b"\xff\xd8\xff\xe0 a jpeg".to_vec())),
            ),
        )
        .await;
    assert_eq!(
        replaced.location, "/console/materials?done=saved",
        "{}",
        replaced.body
    );
    let m = get(id).await;
    assert_eq!(m["fileName"], "c.jpg");
    assert_eq!(m["mediaId"], serde_json::Value::Null);
    assert_eq!(s.get("/console/materials/999999/edit").await.status, 404);

    let (_, viewer) = app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    assert_eq!(
        v.get(&format!("/console/materials/{id}/edit")).await.status,
        403
    );
    let (status, _) = put(
        id,
        &viewer,
        multipart(&[("materialType", "image"), ("title", "x")], None),
    )
    .await;
    assert_eq!(status, 403);
}

async fn console_material_library_creates_lists_and_deletes(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let total = async || {
        app.get("/api/materials", &app.admin_token).await.data()["total"]
            .as_i64()
            .unwrap()
    };
    let refused = s
        .post(
            "/console/materials",
            &[("materialType", "link"), ("title", "活动页")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-content\""),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("value=\"活动页\""),
        "the draft is kept"
    );
    let refused = s
        .post(
            "/console/materials",
            &[("materialType", "image"), ("title", "海报")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-fileData\""),
        "{}",
        refused.body
    );
    assert_eq!(total().await, 0, "nothing was created");

    let made = s
        .post(
            "/console/materials",
            &[
                ("materialType", "link"),
                ("title", "活动页"),
                ("url", "https://example.com/a"),
                ("desc", "双十一"),
            ],
        )
        .await;
    assert_eq!(made.location, "/console/materials?done=created");
    let list = app.get("/api/materials", &app.admin_token).await;
    assert_eq!(
        list.data()["list"][0]["content"]["url"],
        "https://example.com/a"
    );
    let id = list.data()["list"][0]["materialId"].as_i64().unwrap();
    let page = s.get("/console/materials").await;
    assert!(page.body.contains("class=\"material-row\""));
    assert!(page.body.contains("https://example.com/a"));
    let none = s.get("/console/materials?materialType=text").await;
    assert!(!none.body.contains("class=\"material-row\""));
    let form = s.get("/console/group-send/new").await;
    assert!(
        form.body
            .contains(&format!("<option value=\"{id}\">活动页 (link)</option>"))
    );

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let page = v.get("/console/materials").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"material-form\""));
    assert_eq!(
        v.post(
            "/console/materials",
            &[("id", &id.to_string()), ("action", "delete")]
        )
        .await
        .status,
        403
    );
    assert_eq!(total().await, 1);
    let gone = s
        .post(
            "/console/materials",
            &[("id", &id.to_string()), ("action", "delete")],
        )
        .await;
    assert_eq!(gone.location, "/console/materials?done=deleted");
    assert_eq!(total().await, 0);
}

/// The SOP templates as the API lists them.
async fn sop_templates(app: &TestApp) -> serde_json::Value {
    app.get("/api/sop/templates", &app.admin_token).await.data()["list"].clone()
}

async fn console_sop_builder_saves_runs_and_shows_the_step_log(app: TestApp) {
    let t = tags(&app, "阶段", &["新客", "意向"]).await;
    let c = customer(&app, json!({"externalUserid": "wmB", "name": "建模客户"})).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;

    let new = s.get("/console/sop/new").await;
    assert_eq!(new.status, 200);
    assert!(new.body.contains("id=\"sop-form\""));
    assert!(
        new.body.contains("id=\"step-0-content\""),
        "a message step by default"
    );
    // Adding a step and choosing its type re-shows the form with what was typed; nothing is saved.
    let two = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("triggerType", "4"),
                ("stepCount", "1"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
                ("action", "add-step"),
            ],
        )
        .await;
    assert_eq!(two.status, 200);
    assert!(two.body.contains("id=\"step-1\""));
    assert!(two.body.contains("value=\"新客SOP\""));
    assert!(two.body.contains(">跟进</textarea>"));
    let tagged = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("stepCount", "2"),
                ("step.0.type", "5"),
                ("step.1.type", "2"),
                ("action", "refresh"),
            ],
        )
        .await;
    assert!(
        tagged.body.contains("id=\"step-1-tags\""),
        "a tag step offers the tags"
    );
    assert!(!tagged.body.contains("id=\"step-1-content\""));
    let removed = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("stepCount", "2"),
                ("step.0.type", "5"),
                ("step.0.content", "第一步"),
                ("step.1.type", "5"),
                ("step.1.content", "第二步"),
                ("action", "remove-0"),
            ],
        )
        .await;
    assert!(removed.body.contains(">第二步</textarea>") && !removed.body.contains("第一步"));
    assert!(!removed.body.contains("id=\"step-1\""));
    assert_eq!(sop_templates(&app).await.as_array().unwrap().len(), 0);

    // The API's refusals, each beside its field; nothing stored.
    let unnamed = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", ""),
                ("triggerType", "4"),
                ("stepCount", "1"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
            ],
        )
        .await;
    assert_eq!(unnamed.status, 400, "{}", unnamed.body);
    assert!(unnamed.body.contains("id=\"error-templateName\""));
    let no_tags = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("triggerType", "4"),
                ("stepCount", "2"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
                ("step.1.type", "2"),
                ("step.1.delay", "1"),
                ("step.1.unit", "day"),
            ],
        )
        .await;
    assert_eq!(no_tags.status, 400, "{}", no_tags.body);
    assert!(no_tags.body.contains("id=\"error-step-1-actionContent\""));
    assert!(
        no_tags.body.contains(">跟进</textarea>"),
        "the input is kept"
    );
    let bad_delay = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("triggerType", "4"),
                ("stepCount", "1"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
                ("step.0.delay", "soon"),
            ],
        )
        .await;
    assert_eq!(bad_delay.status, 400);
    assert!(bad_delay.body.contains("id=\"error-step-0-delayTime\""));
    assert_eq!(sop_templates(&app).await.as_array().unwrap().len(), 0);

    // Saved: a remind step a day after the trigger, then a tag step.
    let tag = t[0].to_string();
    let saved = s
        .post(
            "/console/sop/templates",
            &[
                ("templateName", "新客SOP"),
                ("templateType", "1"),
                ("triggerType", "2"),
                ("triggerTagIds", &tag),
                ("enabled", "1"),
                ("stepCount", "2"),
                ("step.0.name", "提醒"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
                ("step.0.delay", "1"),
                ("step.0.unit", "day"),
                ("step.1.type", "2"),
                ("step.1.tagIds", &tag),
                ("step.1.delay", "2"),
                ("step.1.unit", "day"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let list = sop_templates(&app).await;
    let tid = list[0]["templateId"].as_i64().unwrap();
    assert_eq!(
        saved.location,
        format!("/console/sop/templates/{tid}?done=created")
    );
    assert_eq!(list[0]["triggerConfig"], json!({"tagIds": [t[0]]}));
    assert_eq!(
        list[0]["steps"][0]["actionContent"],
        json!({"content": "跟进"})
    );
    assert_eq!(list[0]["steps"][0]["delayUnit"], "day");
    assert_eq!(
        list[0]["steps"][1]["actionContent"],
        json!({"tagIds": [t[0]]})
    );
    let shown = s.get(&saved.location).await;
    assert!(shown.body.contains("value=\"新客SOP\""));
    assert!(
        shown
            .body
            .contains(&format!("name=\"triggerTagIds\" value=\"{tag}\" checked"))
    );
    assert!(
        shown
            .body
            .contains(&format!("name=\"step.1.tagIds\" value=\"{tag}\" checked"))
    );
    let listed = s.get("/console/sop").await;
    assert!(
        listed
            .body
            .contains(&format!("href=\"/console/sop/templates/{tid}\""))
    );

    // Changed: the name; a refusal keeps the stored template as it was.
    let path = format!("/console/sop/templates/{tid}");
    let renamed = s
        .post(
            &path,
            &[
                ("templateName", "新客SOP2"),
                ("triggerType", "4"),
                ("enabled", "1"),
                ("stepCount", "1"),
                ("step.0.type", "5"),
                ("step.0.content", "跟进"),
                ("step.0.delay", "1"),
                ("step.0.unit", "day"),
            ],
        )
        .await;
    assert_eq!(renamed.location, format!("{path}?done=saved"));
    assert_eq!(sop_templates(&app).await[0]["templateName"], "新客SOP2");

    // Run it for a customer: the execution's page shows the step log.
    let missing = s
        .post(&format!("{path}/execute"), &[("targetIds", "987654")])
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("id=\"error-targetIds\""));
    let run = s
        .post(&format!("{path}/execute"), &[("targetIds", &c.to_string())])
        .await;
    assert_eq!(run.status, 303, "{}", run.body);
    let exec = app
        .get(
            &format!("/api/sop/executions?templateId={tid}"),
            &app.admin_token,
        )
        .await
        .data()["list"][0]["executionId"]
        .as_i64()
        .unwrap();
    assert_eq!(run.location, format!("/console/sop/executions/{exec}"));
    let detail = s.get(&run.location).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("新客SOP2"));
    assert!(
        detail
            .body
            .contains("class=\"step-log\" data-order=\"1\" data-status=\"0\"")
    );
    assert!(
        detail
            .body
            .contains(&format!("href=\"/console/customers/{c}\""))
    );
    assert!(detail.body.contains("id=\"pause\""));

    // The executions, by template and by status; paused from the list and back to it.
    let by_template = s
        .get(&format!("/console/sop/executions?templateId={tid}"))
        .await;
    assert!(by_template.body.contains(&format!("data-id=\"{exec}\"")));
    let done_only = s
        .get(&format!(
            "/console/sop/executions?templateId={tid}&status=1"
        ))
        .await;
    assert!(!done_only.body.contains(&format!("data-id=\"{exec}\"")));
    let back = format!("/console/sop/executions?templateId={tid}&page=1");
    let paused = s
        .post(
            "/console/sop/control",
            &[
                ("ids", &exec.to_string()),
                ("action", "pause"),
                ("back", &back),
            ],
        )
        .await;
    assert_eq!(paused.location, format!("{back}&done=1"));
    let detail = s.get(&format!("/console/sop/executions/{exec}")).await;
    assert!(
        detail
            .body
            .contains("id=\"execution-status\" data-status=\"2\"")
    );
    assert!(detail.body.contains("id=\"resume\""));
    // A `back` off the console is ignored.
    let elsewhere = s
        .post(
            "/console/sop/control",
            &[
                ("ids", &exec.to_string()),
                ("action", "resume"),
                ("back", "https://example.com/"),
            ],
        )
        .await;
    assert_eq!(elsewhere.location, "/console/sop/executions?done=1");
    assert_eq!(s.get("/console/sop/executions/987654").await.status, 404);

    // A viewer sees the template but no form to change or run it, and may not post one.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let ro = v.get(&path).await;
    assert_eq!(ro.status, 200);
    assert!(ro.body.contains("disabled"));
    assert!(!ro.body.contains("id=\"save-template\""));
    assert!(!ro.body.contains("id=\"run-form\""));
    assert_eq!(v.post(&path, &[("action", "delete")]).await.status, 403);
    assert_eq!(
        v.post(&format!("{path}/execute"), &[("targetIds", &c.to_string())])
            .await
            .status,
        403
    );

    let gone = s.post(&path, &[("action", "delete")]).await;
    assert_eq!(gone.location, "/console/sop?done=deleted");
    assert_eq!(sop_templates(&app).await.as_array().unwrap().len(), 0);
}

async fn console_channel_code_member_picker_searches_any_number_of_staff(app: TestApp) {
    add_staff(&app, our_tenant(&app).await, numbered("u", "员工", 600)).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;

    // The form shows a page of staff, not all 600, each with its limit and backup columns.
    let form = s.get("/console/channel-codes/new").await;
    assert_eq!(form.status, 200);
    assert_eq!(form.body.matches("class=\"staff-choice\"").count(), 20);
    assert_eq!(form.body.matches("name=\"limit.u00").count(), 20);
    assert!(form.body.contains("id=\"code-staff-search\""));
    // It searches through the general staff picker's route: the 599th is found by name or by
    // userid; the chosen ones come back first with their limits and backups, then matches.
    let search = "/console/staff-picker?field=staff&dom=code-staff&by=userid&multiple=1&columns=limit-backup";
    assert!(
        form.body.contains("staff-picker?field=staff")
            && form.body.contains("columns=limit-backup"),
        "the search box asks the general route"
    );
    let found = s
        .get(&format!("{search}&keyword=%E5%91%98%E5%B7%A50599"))
        .await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body.matches("class=\"staff-choice\"").count(), 1);
    assert!(found.body.contains("name=\"staff\" value=\"u0599\">"));
    assert!(found.body.contains("name=\"limit.u0599\" value=\"0\""));
    assert!(found.body.contains("name=\"backup\" value=\"u0599\">"));
    let by_userid = s.get(&format!("{search}&keyword=u059")).await;
    assert_eq!(by_userid.body.matches("class=\"staff-choice\"").count(), 10);
    let kept = s
        .get(&format!(
            "{search}&keyword=u059&staff=u0599&limit.u0599=7&backup=u0598"
        ))
        .await;
    assert_eq!(kept.body.matches("class=\"staff-choice\"").count(), 10);
    let first = kept.body.find("value=\"u0599\"").unwrap();
    let backup = kept.body.find("value=\"u0598\"").unwrap();
    let other = kept.body.find("value=\"u0590\"").unwrap();
    assert!(first < backup && backup < other, "the chosen rows first");
    assert!(kept.body.contains("name=\"staff\" value=\"u0599\" checked"));
    assert!(kept.body.contains("name=\"limit.u0599\" value=\"7\""));
    assert!(
        kept.body.contains("name=\"staff\" value=\"u0598\">"),
        "a backup only"
    );
    assert!(
        kept.body
            .contains("name=\"backup\" value=\"u0598\" checked")
    );
    let none = s.get(&format!("{search}&keyword=nobody")).await;
    assert!(none.body.contains("class=\"pick-empty\""));
    assert_eq!(
        s.get("/console/channel-codes/staff-search?staffKeyword=u")
            .await
            .status,
        400,
        "the channel code's own route is gone (the path reads as a code id)"
    );
    // A chosen member far down the list stays chosen, with its limit, when the form comes back.
    let refused = s
        .post(
            "/console/channel-codes",
            &[
                ("name", ""),
                ("staff", "u0599"),
                ("limit.u0599", "7"),
                ("backup", "u0598"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .body
            .contains("name=\"staff\" value=\"u0599\" checked")
    );
    assert!(refused.body.contains("name=\"limit.u0599\" value=\"7\""));
    assert!(
        refused
            .body
            .contains("name=\"backup\" value=\"u0598\" checked")
    );
    assert!(refused.body.contains("员工0599"));
    // Saved: the members, their limits and the backups are the API's.
    let made = s
        .post(
            "/console/channel-codes",
            &[
                ("name", "远端码"),
                ("staff", "u0599"),
                ("limit.u0599", "7"),
                ("staff", "u0001"),
                ("limit.u0001", "0"),
                ("backup", "u0598"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let code = id_in(&made.location);
    let api = app
        .get(&format!("/api/v1/channel-codes/{code}"), &app.admin_token)
        .await;
    let members = api.data()["staff"].as_array().unwrap().clone();
    assert_eq!(members.len(), 2);
    let far = members.iter().find(|m| m["userid"] == "u0599").unwrap();
    assert_eq!(far["dailyLimit"], 7);
    assert_eq!(api.data()["backupStaff"], json!(["u0598"]));
    let edit = s.get(&format!("/console/channel-codes/{code}/edit")).await;
    assert!(edit.body.contains("name=\"limit.u0599\" value=\"7\""));
    assert!(
        edit.body
            .contains("name=\"backup\" value=\"u0598\" checked")
    );

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    assert_eq!(v.get("/console/channel-codes/new").await.status, 403);
}

/// 600 staff in our tenant (u0001 / 员工0001 …) and one in another tenant with a clashing userid.
async fn many_staff(app: &TestApp) -> (i64, i64) {
    let (other, _) = app
        .other_tenant_admin("picker-other", "picker-other-admin")
        .await;
    let ours = add_staff(app, our_tenant(app).await, numbered("u", "员工", 600)).await[598];
    let theirs = add_staff(app, other, [("u0599".into(), "别家0599".into())]).await[0];
    (ours, theirs)
}

/// Two WeCom members, amy (艾米) and bob (鲍勃).
fn amy_and_bob() -> [(String, String); 2] {
    [("amy".into(), "艾米".into()), ("bob".into(), "鲍勃".into())]
}

/// The admin's tenant.
async fn our_tenant(app: &TestApp) -> i64 {
    app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap()
}

/// `count` staff named `<prefix>0001` / `<name>0001` … (four digits).
fn numbered(prefix: &str, name: &str, count: usize) -> Vec<(String, String)> {
    (1..=count)
        .map(|i| (format!("{prefix}{i:04}"), format!("{name}{i:04}")))
        .collect()
}

/// Staff (userid, name) of a tenant, as a sync writes them; their ids in order.
async fn add_staff(
    app: &TestApp,
    tenant: i64,
    staff: impl IntoIterator<Item = (String, String)>,
) -> Vec<i64> {
    let mut tx = app.state.db.begin().await.unwrap();
    let mut ids = Vec::new();
    for (userid, name) in staff {
        ids.push(
            scrm::customers::staff::upsert_staff(
                &mut tx,
                tenant,
                &userid,
                &name,
                &[1],
                1,
                1_700_000_000_000,
            )
            .await
            .unwrap(),
        );
    }
    tx.commit().await.unwrap();
    ids
}

fn choices(p: &Page) -> usize {
    p.body.matches("class=\"staff-choice\"").count()
}

async fn console_staff_picker_searches_the_tenants_staff_for_every_staff_form(app: TestApp) {
    let (ours, theirs) = many_staff(&app).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;

    // The search route: by name or userid, a page at most, our tenant only.
    let by_name = s
        .get("/console/staff-picker?field=staff&dom=f&keyword=%E5%91%98%E5%B7%A50599")
        .await;
    assert_eq!(by_name.status, 200);
    assert_eq!(choices(&by_name), 1);
    assert!(
        by_name
            .body
            .contains(&format!("type=\"radio\" name=\"staff\" value=\"{ours}\""))
    );
    let clash = s
        .get("/console/staff-picker?field=staff&dom=f&keyword=0599")
        .await;
    assert_eq!(choices(&clash), 1);
    assert!(!clash.body.contains("别家0599"), "{}", clash.body);
    let wide = s
        .get("/console/staff-picker?field=staff&dom=f&keyword=u")
        .await;
    assert_eq!(choices(&wide), 20, "a search shows a page, not 600");
    // The chosen ones come back checked, first, and are not repeated among the matches.
    let kept = s
        .get("/console/staff-picker?field=staffUserids&dom=w&by=userid&multiple=1&keyword=u059&staffUserids=u0599")
        .await;
    assert_eq!(choices(&kept), 10);
    assert!(
        kept.body
            .contains("type=\"checkbox\" name=\"staffUserids\" value=\"u0599\" checked")
    );
    assert_eq!(kept.body.matches(" checked").count(), 1);
    // Another tenant's staff id chosen by hand is not looked up: shown as the bare id.
    let foreign = s
        .get(&format!(
            "/console/staff-picker?field=staff&dom=f&none=all&staff={theirs}"
        ))
        .await;
    assert_eq!(foreign.status, 200);
    assert!(!foreign.body.contains("别家0599"));
    assert!(foreign.body.contains("class=\"pick-none\""));
    let nobody = s
        .get("/console/staff-picker?field=staff&dom=f&keyword=nobody")
        .await;
    assert!(nobody.body.contains("class=\"pick-empty\""));
    assert_eq!(
        s.get("/console/staff-picker?field=a%22b&dom=f&keyword=u")
            .await
            .status,
        400
    );

    // The customer list's staff filter loads no staff until someone searches; the chosen one shows.
    let list = s.get("/console/customers").await;
    assert_eq!(list.status, 200);
    assert_eq!(choices(&list), 0);
    assert!(list.body.contains("id=\"staff-filter-search\""));
    let filtered = s.get(&format!("/console/customers?staff={ours}")).await;
    assert_eq!(choices(&filtered), 1);
    assert!(
        filtered
            .body
            .contains(&format!("name=\"staff\" value=\"{ours}\" checked"))
    );
    assert!(filtered.body.contains("员工0599"));

    // The welcome form: a page of suggestions; a chosen member far down the list stays chosen
    // when the API refuses the form, and is saved.
    let welcome = s.get("/console/welcome").await;
    assert_eq!(choices(&welcome), 20);
    let refused = s
        .post(
            "/console/welcome",
            &[
                ("name", "成员欢迎语"),
                ("staffUserids", "u0599"),
                ("text", " "),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("id=\"error-text\""));
    assert!(
        refused
            .body
            .contains("name=\"staffUserids\" value=\"u0599\" checked")
    );
    assert!(refused.body.contains("员工0599"));
    let made = s
        .post(
            "/console/welcome",
            &[
                ("name", "成员欢迎语"),
                ("staffUserids", "u0599"),
                ("text", "你好"),
                ("enabled", "1"),
            ],
        )
        .await;
    assert_eq!(made.location, "/console/welcome?done=created");
    let list = app
        .get("/api/v1/automation/welcome-messages", &app.admin_token)
        .await;
    assert_eq!(list.data()["list"][0]["staffUserids"], json!(["u0599"]));

    // The SOP assign step: a picker per assign step, the chosen member checked.
    let assign = s
        .post(
            "/console/sop/templates",
            &[
                ("action", "refresh"),
                ("templateName", "分配"),
                ("stepCount", "2"),
                ("step.0.type", "4"),
                ("step.0.staffId", &ours.to_string()),
                ("step.1.type", "4"),
            ],
        )
        .await;
    assert_eq!(assign.status, 200, "{}", assign.body);
    assert!(assign.body.contains("id=\"step-0-staff-search\""));
    assert!(assign.body.contains("id=\"step-1-staff-search\""));
    assert!(
        assign
            .body
            .contains(&format!("name=\"step.0.staffId\" value=\"{ours}\" checked"))
    );
    assert!(
        assign
            .body
            .contains("name=\"step.1.staffId\" value=\"\" checked")
    );
    assert!(
        choices(&assign) <= 41,
        "two pickers of at most 20 suggestions and one chosen"
    );
}

async fn console_workflows_yaml_editor_publish_and_runs(app: TestApp) {
    let c = customer(&app, json!({"externalUserid": "wmW", "name": "流程客户"})).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let total = async || {
        app.get("/api/v1/automation/workflows", &app.admin_token)
            .await
            .data()["total"]
            .as_i64()
            .unwrap()
    };

    let new = s.get("/console/workflows/new").await;
    assert_eq!(new.status, 200);
    assert!(new.body.contains("trigger:"), "started from an example");
    // The API's problems, by step and field, beside the editor; nothing stored.
    let bad = "name: x\ntrigger:\n  type: manual\nsteps:\n  - type: delay\n    duration: soon\n  - type: set_stage\n    stage: active\n";
    let refused = s.post("/console/workflows", &[("yaml", bad)]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("data-field=\"steps[0].duration\""));
    assert!(refused.body.contains("duration: soon"), "the YAML is kept");
    assert_eq!(total().await, 0);

    let good = "name: 控制台流程\ntrigger:\n  type: manual\nsteps:\n  - type: delay\n    duration: 5m\n  - type: set_stage\n    stage: active\n";
    let made = s.post("/console/workflows", &[("yaml", good)]).await;
    assert_eq!(made.status, 303, "{}", made.body);
    let id: i64 = made.location["/console/workflows/".len()..]
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        made.location,
        format!("/console/workflows/{id}?done=created")
    );
    let path = format!("/console/workflows/{id}");
    let page = s.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("控制台流程"));
    assert!(page.body.contains("data-status=\"draft\""));
    assert!(page.body.contains("set_stage"));
    // Runs need a published version: the refusal shows beside the field.
    let early = s
        .post(&format!("{path}/runs"), &[("customerIds", &c.to_string())])
        .await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(early.body.contains("id=\"error-customerIds\""));

    let published = s.post(&path, &[("action", "publish")]).await;
    assert_eq!(published.location, format!("{path}?done=published"));
    let list = s.get("/console/workflows").await;
    assert!(
        list.body
            .contains(&format!("data-id=\"{id}\" data-status=\"published\""))
    );
    assert!(list.body.contains("class=\"secondary disable\""));

    let started = s
        .post(&format!("{path}/runs"), &[("customerIds", &c.to_string())])
        .await;
    assert_eq!(
        started.location,
        format!("/console/workflow-runs?workflowId={id}&started=1")
    );
    let runs = app
        .get(
            &format!("/api/v1/automation/workflow-runs?workflowId={id}"),
            &app.admin_token,
        )
        .await;
    let run = runs.data()["list"][0]["id"].as_i64().unwrap();
    let by_customer = s
        .get(&format!("/console/workflow-runs?customerId={c}"))
        .await;
    assert!(
        by_customer
            .body
            .contains(&format!("class=\"run-row\" data-id=\"{run}\""))
    );
    let back = format!("/console/workflow-runs?workflowId={id}&page=1");
    let paused = s
        .post(
            "/console/workflow-runs/control",
            &[
                ("ids", &run.to_string()),
                ("action", "pause"),
                ("back", &back),
            ],
        )
        .await;
    assert_eq!(paused.location, format!("{back}&done=1"));
    let one = s.get(&format!("/console/workflow-runs/{run}")).await;
    assert!(
        one.body.contains("id=\"run-status\" data-status=\"5\""),
        "{}",
        one.body
    );
    assert!(one.body.contains("class=\"run-step\""));
    // Pausing a paused run is refused by the API, and the page says why.
    let again = s
        .post(
            "/console/workflow-runs/control",
            &[("ids", &run.to_string()), ("action", "pause")],
        )
        .await;
    assert!(
        again
            .location
            .starts_with("/console/workflow-runs?done=0&error="),
        "{}",
        again.location
    );

    // A new version: refused YAML keeps the stored one; good YAML is saved.
    let r = s.post(&path, &[("action", "save"), ("yaml", bad)]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("class=\"yaml-error\""));
    let saved = s
        .post(
            &path,
            &[("action", "save"), ("yaml", &good.replace("5m", "10m"))],
        )
        .await;
    assert_eq!(saved.location, format!("{path}?done=saved"));
    let w = app
        .get(
            &format!("/api/v1/automation/workflows/{id}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(w.data()["currentVersion"], 2);
    let disabled = s.post(&path, &[("action", "disable")]).await;
    assert_eq!(disabled.location, format!("{path}?done=disabled"));

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let list = v.get("/console/workflows").await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("id=\"new-workflow\""));
    assert!(!v.get(&path).await.body.contains("id=\"save-workflow\""));
    assert_eq!(v.post(&path, &[("action", "publish")]).await.status, 403);
    assert_eq!(
        v.post(
            "/console/workflow-runs/control",
            &[("ids", &run.to_string()), ("action", "cancel")]
        )
        .await
        .status,
        403
    );
    let deleted = s.post(&path, &[("action", "delete")]).await;
    assert_eq!(deleted.location, "/console/workflows?done=deleted");
    assert_eq!(total().await, 0);
}

async fn console_customer_exports_start_list_and_download(app: TestApp) {
    let t = tags(&app, "导出", &["要导出"]).await[0];
    for (ext, name) in [("wmE1", "导出甲"), ("wmE2", "导出乙"), ("wmE3", "不导出")] {
        let id = customer(&app, json!({"externalUserid": ext, "name": name})).await;
        if name != "不导出" {
            let r = app
                .post(
                    &format!("/api/v1/customers/{id}/tags"),
                    &app.admin_token,
                    json!({"tagIds": [t]}),
                )
                .await;
            assert!(r.status < 300, "{:?}", r.body);
        }
    }
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let page = s.get("/console/customers/exports").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"export-form\""));
    assert!(
        s.get("/console/customers")
            .await
            .body
            .contains("id=\"exports-link\"")
    );

    let started = s
        .post(
            "/console/customers/exports",
            &[("tagIds", &t.to_string()), ("format", "csv")],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert!(
        started
            .location
            .starts_with("/console/customers/exports?started="),
        "{}",
        started.location
    );
    let id: i64 = started
        .location
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let shown = loop {
        let p = s.get("/console/customers/exports").await;
        if p.body
            .contains(&format!("data-id=\"{id}\" data-status=\"done\""))
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "export {id} not done: {}",
            p.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let link = format!("/api/v1/customers/exports/{id}/download");
    assert!(shown.body.contains(&format!("href=\"{link}\"")));
    // The link works with the console's session cookie.
    let file = s.get(&link).await;
    assert_eq!(file.status, 200);
    assert!(
        file.body.contains("导出甲") && file.body.contains("导出乙"),
        "{}",
        file.body
    );
    assert!(!file.body.contains("不导出"));

    // A refusal (an unknown format) is shown on the page; nothing starts.
    let bad = s
        .post("/console/customers/exports", &[("format", "pdf")])
        .await;
    assert!(
        bad.location
            .starts_with("/console/customers/exports?error="),
        "{}",
        bad.location
    );
    let list = app.get("/api/v1/customers/exports", &app.admin_token).await;
    assert_eq!(list.data()["total"], 1);

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    assert_eq!(v.get("/console/customers/exports").await.status, 403);
    assert!(
        !v.get("/console/customers")
            .await
            .body
            .contains("id=\"exports-link\"")
    );
}

/// The text of the element with this id (its first text, tags dropped), for values a page shows
/// once.
fn text_of(body: &str, id: &str) -> String {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let open = start + body[start..].find('>').unwrap() + 1;
    let close = open + body[open..].find('<').unwrap();
    body[open..close].trim().to_string()
}

/// Device gateways: registering one shows its token once, the gateway connected with it brings
/// its account ACTIVE with a health score column; a group push made on the console reaches every
/// chat room and shows the result per room; roles without the permission see no forms and are
/// refused; labels in Chinese and English.
async fn console_device_account_ai_reply_form_and_paged_accounts(app: TestApp) {
    let _sim = crate::gateway::gateway(&app).await;
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let path = "/console/devices/accounts/wxid_a";
    let ai = async || {
        app.get("/api/v1/devices/accounts/wxid_a/ai-reply", &app.admin_token)
            .await
    };
    let page = s.get(path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"ai-none\""));
    assert!(page.body.contains("id=\"ai-form\""));
    let fields = |endpoint: &'static str, history: &'static str, end: &'static str| {
        vec![
            ("enabled", "1"),
            ("endpoint", endpoint),
            ("apiKey", "sk-console-secret"),
            ("model", "gpt-4o-mini"),
            ("systemPrompt", "你是客服"),
            ("historySize", history),
            ("maxRepliesPerHour", "30"),
            ("workStart", "09:00"),
            ("workEnd", end),
            ("handoverKeyword", "人工"),
        ]
    };
    let post = format!("{path}/ai-reply");

    // Refusals next to their fields, the draft kept, nothing stored.
    let bad_endpoint = s.post(&post, &fields("ftp://x", "10", "18:00")).await;
    assert_eq!(bad_endpoint.status, 400);
    assert!(
        bad_endpoint.body.contains("id=\"error-endpoint\""),
        "{}",
        bad_endpoint.body
    );
    assert!(bad_endpoint.body.contains("value=\"ftp://x\""));
    assert!(
        !bad_endpoint.body.contains("sk-console-secret"),
        "the key is never shown"
    );
    let bad_history = s
        .post(
            &post,
            &fields("https://llm.example.com/v1", "lots", "18:00"),
        )
        .await;
    assert_eq!(bad_history.status, 400);
    assert!(bad_history.body.contains("id=\"error-historySize\""));
    let big_history = s
        .post(&post, &fields("https://llm.example.com/v1", "99", "18:00"))
        .await;
    assert!(big_history.body.contains("id=\"error-historySize\""));
    let bad_end = s
        .post(&post, &fields("https://llm.example.com/v1", "10", "25:00"))
        .await;
    assert_eq!(bad_end.status, 400);
    assert!(bad_end.body.contains("id=\"error-workEnd\""));
    assert_eq!(ai().await.status, 404, "nothing stored");

    // Saved: the API holds it, the page says a key is set and never shows it.
    let saved = s
        .post(&post, &fields("https://llm.example.com/v1", "10", "18:00"))
        .await;
    assert_eq!(
        saved.location,
        format!("{path}?done=saved"),
        "{}",
        saved.body
    );
    let r = ai().await;
    assert_eq!(r.data()["model"], "gpt-4o-mini");
    assert_eq!(r.data()["historySize"], 10);
    assert_eq!(r.data()["workEnd"], "18:00");
    assert_eq!(r.data()["apiKeySet"], true);
    let shown = s.get(&saved.location).await;
    assert!(shown.body.contains("id=\"notice\""));
    assert!(shown.body.contains("value=\"gpt-4o-mini\""));
    assert!(shown.body.contains("name=\"removeKey\""));
    assert!(!shown.body.contains("sk-console-secret"));
    // A blank key keeps the stored one; "remove" removes it.
    let mut keep = fields("https://llm.example.com/v1", "12", "18:00");
    keep.retain(|(k, _)| *k != "apiKey");
    assert_eq!(s.post(&post, &keep).await.status, 303);
    assert_eq!(ai().await.data()["apiKeySet"], true);
    assert_eq!(ai().await.data()["historySize"], 12);
    keep.push(("removeKey", "1"));
    assert_eq!(s.post(&post, &keep).await.status, 303);
    assert_eq!(ai().await.data()["apiKeySet"], false);

    // A viewer sees the settings but no form, and may not post one.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let ro = v.get(path).await;
    assert_eq!(ro.status, 200);
    assert!(ro.body.contains("id=\"ai-reply\""));
    assert!(!ro.body.contains("id=\"ai-form\""));
    assert_eq!(v.post(&post, &keep).await.status, 403);

    // The account list is paged by the database: 60 WeCom members and the device account.
    let members = (1..=60).map(|i| (format!("m{i:02}"), format!("成员{i:02}")));
    add_staff(&app, our_tenant(&app).await, members).await;
    let rows = |p: &Page| p.body.matches("class=\"account-row\"").count();
    let first = s.get("/console/devices?accountType=WEWORK").await;
    assert_eq!(rows(&first), 50);
    assert!(first.body.contains("data-id=\"m01\""));
    let second = s.get("/console/devices?accountType=WEWORK&page=2").await;
    assert_eq!(rows(&second), 10);
    assert!(second.body.contains("data-id=\"m60\""));
    let all = s.get("/console/devices?accountType=ALL&page=2").await;
    assert_eq!(rows(&all), 11);
    assert!(
        all.body.contains("data-id=\"wxid_a\""),
        "device accounts after the members"
    );
    let devices = s.get("/console/devices").await;
    assert_eq!(rows(&devices), 1);
    // The API's own list is unchanged: everything, members first.
    let api = app.get("/api/v1/devices/accounts", &app.admin_token).await;
    assert_eq!(api.data().as_array().unwrap().len(), 61);
    assert_eq!(api.data()[60]["accountId"], "wxid_a");
}

/// The group-push form offers the tenant's traffic pools beside the account: a push to a pool
/// spreads its rooms over the pool's phones; an account and a pool together, or rooms no phone
/// of the pool is in, come back with the API's problem next to the field.
async fn console_group_push_form_picks_a_traffic_pool(app: TestApp) {
    let sim = crate::devices_pools::phones(&app).await;
    let r = app
        .post(
            "/api/v1/automation/traffic-pools",
            &app.admin_token,
            json!({"name": "群推送池", "strategy": "round_robin",
                   "members": [{"accountId": "wxid_a"}, {"accountId": "wxid_b"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap().to_string();
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let form = s.get("/console/group-pushes/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("id=\"push-pool\""), "{}", form.body);
    assert!(
        form.body
            .contains(&format!("<option value=\"{pool}\">群推送池</option>")),
        "{}",
        form.body
    );

    let made = s
        .post(
            "/console/group-pushes",
            &[
                ("accountId", ""),
                ("poolId", &pool),
                ("taskName", "池推送"),
                ("chatroomIds", "r1@chatroom\nr2@chatroom"),
                ("text", "大家好"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let id: i64 = made
        .location
        .trim_start_matches("/console/group-pushes/")
        .trim_end_matches("?done=created")
        .parse()
        .unwrap_or_else(|_| panic!("{}", made.location));
    let p = crate::gateway::push_done(&app, id).await;
    assert_eq!(p["poolId"].as_i64().unwrap().to_string(), pool, "{p}");
    let mut by: Vec<&str> = p["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accountId"].as_str().unwrap())
        .collect();
    by.sort_unstable();
    assert_eq!(by, ["wxid_a", "wxid_b"], "round robin over the pool: {p}");
    for room in ["r1@chatroom", "r2@chatroom"] {
        let n = sim
            .deliveries()
            .iter()
            .filter(|d| d.to == room && d.kind == "send_text")
            .count();
        assert_eq!(n, 1, "{room}");
    }
    // The push's page names the pool and, for each room, the phone the pool picked.
    let shown = s.get(&format!("/console/group-pushes/{id}")).await;
    assert!(
        shown.body.contains(&format!("pool {pool}")),
        "{}",
        shown.body
    );
    for w in ["wxid_a", "wxid_b"] {
        assert!(
            shown
                .body
                .contains(&format!("<td class=\"result-account\">{w}</td>")),
            "{}",
            shown.body
        );
    }

    let both = s
        .post(
            "/console/group-pushes",
            &[
                ("accountId", "wxid_a"),
                ("poolId", &pool),
                ("chatroomIds", "r1@chatroom"),
                ("text", "hi"),
            ],
        )
        .await;
    assert_eq!(both.status, 400, "{}", both.body);
    assert!(both.body.contains("id=\"error-poolId\""), "{}", both.body);
    assert!(
        both.body
            .contains(&format!("<option value=\"{pool}\" selected>")),
        "the pool stays chosen"
    );
    let nobody = s
        .post(
            "/console/group-pushes",
            &[
                ("poolId", &pool),
                ("chatroomIds", "r5@chatroom"),
                ("text", "hi"),
            ],
        )
        .await;
    assert_eq!(nobody.status, 422, "{}", nobody.body);
    assert!(
        nobody.body.contains("id=\"error-chatroomIds\""),
        "{}",
        nobody.body
    );
    let pushes = app
        .get("/api/v1/devices/group-pushes", &app.admin_token)
        .await;
    assert_eq!(pushes.data()["total"], 1, "nothing more was created");
    sim.stop();
}

async fn console_device_gateways_accounts_and_group_pushes(app: TestApp) {
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let empty = s.get("/console/devices").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("设备网关"), "Chinese by default");
    assert!(
        empty.body.contains("href=\"/console/devices\""),
        "in the navigation"
    );
    assert!(empty.body.contains("id=\"gateway-form\""));
    let refused = s.post("/console/devices/gateways", &[("name", "")]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"error-name\""),
        "{}",
        refused.body
    );

    let made = s
        .post("/console/devices/gateways", &[("name", "phones")])
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let token = text_of(&made.body, "fresh-gateway-token");
    assert!(token.starts_with("gw_"), "{token}");
    let again = s.get("/console/devices").await;
    assert!(!again.body.contains(&token), "the token is shown once");
    assert!(again.body.contains("class=\"gateway-row\""));

    let sim = crate::gateway::connect_sim(&app, &token).await;
    let page = s.get("/console/devices").await;
    assert!(
        page.body.contains("data-connected=\"true\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("class=\"account-row\" data-id=\"wxid_a\" data-status=\"ACTIVE\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Alice&#39;s phone"), "{}", page.body);
    assert!(page.body.contains("健康分"));
    let en = s.get("/console/devices?lang=en").await;
    assert!(en.body.contains("Device gateways"), "English on ?lang=en");
    assert!(en.body.contains("Health"));
    let account = s.get("/console/devices/accounts/wxid_a").await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.body.contains("id=\"account-status\""));
    assert!(
        account.body.contains("id=\"ai-none\""),
        "no AI reply configured"
    );
    let wework = s.get("/console/devices?accountType=WEWORK").await;
    assert!(!wework.body.contains("data-id=\"wxid_a\""));

    // A group push from the form: the API's refusal next to the field, then one that runs.
    let form = s.get("/console/group-pushes/new").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("<option value=\"wxid_a\""),
        "{}",
        form.body
    );
    let refused = s
        .post(
            "/console/group-pushes",
            &[
                ("accountId", "wxid_a"),
                ("chatroomIds", ""),
                ("text", "早安"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"error-chatroomIds\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("早安"), "the draft is kept");
    let pushed = s
        .post(
            "/console/group-pushes",
            &[
                ("accountId", "wxid_a"),
                ("taskName", "早报"),
                ("chatroomIds", "r1@chatroom\nr2@chatroom"),
                ("text", "早安"),
            ],
        )
        .await;
    assert_eq!(pushed.status, 303, "{}", pushed.body);
    assert!(
        pushed.location.starts_with("/console/group-pushes/"),
        "{}",
        pushed.location
    );
    let detail = until("the push completed", || async {
        let p = s.get(&pushed.location).await;
        p.body
            .contains("data-status=\"COMPLETED\"")
            .then_some(p.body)
    })
    .await;
    assert_eq!(detail.matches("class=\"result-row\"").count(), 2);
    assert!(detail.contains("data-room=\"r1@chatroom\" data-status=\"SUCCESS\""));
    assert!(detail.contains("已完成"));
    let list = s.get("/console/group-pushes").await;
    assert!(list.body.contains("class=\"push-row\""));
    assert!(list.body.contains("早报"));
    let done = s.get("/console/group-pushes?status=FAILED").await;
    assert!(!done.body.contains("class=\"push-row\""));

    // An operator may push but not register gateways; a viewer only looks.
    app.user_with_role("olga", "operator").await;
    let o = Session::login(&app, "olga", "password-123").await;
    let page = o.get("/console/devices").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"gateway-form\""));
    assert_eq!(
        o.post("/console/devices/gateways", &[("name", "x")])
            .await
            .status,
        403
    );
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let list = v.get("/console/group-pushes").await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("id=\"new-push\""));
    assert_eq!(v.get("/console/group-pushes/new").await.status, 403);
    assert_eq!(
        v.post(
            "/console/group-pushes",
            &[
                ("accountId", "wxid_a"),
                ("chatroomIds", "r1@chatroom"),
                ("text", "x")
            ]
        )
        .await
        .status,
        403
    );
    sim.stop();
}

/// Traffic pools (members, caps, working hours, today's figures, delete), group welcome
/// messages (refusals by field, create, delete), content sources (add, fetch now, items) and
/// cron tasks (switch off and on), each with what a viewer may not do.
async fn console_traffic_pool_device_accounts_are_searched_not_listed(app: TestApp) {
    let tenant = our_tenant(&app).await;
    // 250 device accounts: more than any select should hold.
    for i in 0..250 {
        app.state
            .db
            .execute(
                scrm_db::query("INSERT INTO device_account (tenant_id, gateway_id, wxid, nickname, status, created_at, updated_at) VALUES (?, 1, ?, ?, 'ACTIVE', 0, 0)")
                    .bind(tenant)
                    .bind(format!("wxid_{i:04}"))
                    .bind(format!("小号{i:04}")),
            )
            .await
            .unwrap();
    }
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let form = s.get("/console/traffic-pools/new").await;
    assert_eq!(form.status, 200);
    // A typed input with 20 suggestions and a search, not a select of every account.
    assert!(!form.body.contains("<select name=\"member.0.accountId\""));
    assert!(form.body.contains("list=\"member-0-devices\""));
    assert!(form.body.contains("hx-get=\"/console/device-accounts\""));
    assert_eq!(form.body.matches("<option value=\"wxid_").count(), 20);
    // The search: by wxid or nickname, at most 20, sent as the input's own field.
    let one = s
        .get("/console/device-accounts?member.0.accountId=0217")
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body.matches("<option ").count(), 1, "{}", one.body);
    assert!(
        one.body
            .contains("<option value=\"wxid_0217\">小号0217 (wxid_0217)</option>")
    );
    let by_name = s
        .get("/console/device-accounts?keyword=%E5%B0%8F%E5%8F%B702")
        .await; // 小号02
    assert_eq!(by_name.body.matches("<option ").count(), 20);
    let late = s.get("/console/device-accounts?keyword=wxid_024").await;
    assert_eq!(
        late.body.matches("<option ").count(),
        10,
        "wxid_0240 … wxid_0249"
    );
    let wild = s.get("/console/device-accounts?keyword=%25").await;
    assert_eq!(
        wild.body.matches("<option ").count(),
        0,
        "% is a character, not a wildcard"
    );
    // Saving takes a searched account past the first 200.
    let saved = s
        .post(
            "/console/traffic-pools",
            &[
                ("action", "save"),
                ("name", "设备池"),
                ("strategy", "round_robin"),
                ("enabled", "1"),
                ("memberCount", "1"),
                ("member.0.accountId", "wxid_0231"),
                ("member.0.weight", "1"),
                ("member.0.dailyCap", "0"),
                ("member.0.enabled", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let pools = app
        .get("/api/v1/automation/traffic-pools", &app.admin_token)
        .await;
    let id = pools.data()["list"][0]["id"].as_i64().unwrap();
    let pool = app
        .get(
            &format!("/api/v1/automation/traffic-pools/{id}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(
        pool.data()["members"][0]["accountId"],
        "wxid_0231",
        "{:?}",
        pool.body
    );
    let edit = s.get(&format!("/console/traffic-pools/{id}/edit")).await;
    assert!(
        edit.body
            .contains("id=\"member-0-accountId\" value=\"wxid_0231\"")
    );
    // Another tenant's accounts are never suggested.
    app.state
        .db
        .execute(
            scrm_db::query("INSERT INTO device_account (tenant_id, gateway_id, wxid, nickname, status, created_at, updated_at) VALUES (?, 1, 'wxid_other', '别家', 'ACTIVE', 0, 0)")
                .bind(tenant + 1000),
        )
        .await
        .unwrap();
    let other = s.get("/console/device-accounts?keyword=other").await;
    assert_eq!(other.body.matches("<option ").count(), 0, "{}", other.body);
}

async fn console_traffic_pool_form_creates_and_edits_with_errors_by_row(app: TestApp) {
    add_staff(&app, our_tenant(&app).await, amy_and_bob()).await;
    let pools = async || {
        app.get("/api/v1/automation/traffic-pools", &app.admin_token)
            .await
            .data()["total"]
            .as_i64()
            .unwrap()
    };
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let list = s.get("/console/traffic-pools").await;
    assert!(list.body.contains("id=\"new-pool\""));
    let form = s.get("/console/traffic-pools/new").await;
    assert_eq!(form.status, 200);
    assert_eq!(form.body.matches("class=\"member-form\"").count(), 1);
    // A row picks a WeCom member by search (no staff listed before one types), or takes a
    // device account.
    assert!(form.body.contains("id=\"member-0-staff-search\""));
    assert_eq!(form.body.matches("class=\"staff-choice\"").count(), 0);
    assert!(form.body.contains("id=\"member-0-accountId\""));
    let found = s
        .get("/console/staff-picker?field=member.0.staff&dom=member-0-staff&by=userid&none=dash&keyword=%E8%89%BE")
        .await;
    assert_eq!(found.body.matches("class=\"staff-choice\"").count(), 1);
    assert!(found.body.contains("name=\"member.0.staff\" value=\"amy\""));

    // Adding a row shows the form again with the draft kept; nothing is stored.
    let two = s
        .post(
            "/console/traffic-pools",
            &[
                ("action", "add-member"),
                ("name", "售前池"),
                ("memberCount", "1"),
                ("member.0.staff", "amy"),
            ],
        )
        .await;
    assert_eq!(two.status, 200);
    assert_eq!(two.body.matches("class=\"member-form\"").count(), 2);
    assert!(two.body.contains("value=\"售前池\""));
    assert!(
        two.body
            .contains("name=\"member.0.staff\" value=\"amy\" checked> 艾米"),
        "{}",
        two.body
    );
    assert!(two.body.contains("id=\"member-1-staff-search\""));

    // The API's refusals, each next to its field or on its member row.
    let fields =
        |name: &'static str, weight: &'static str, end: &'static str, second: &'static str| {
            vec![
                ("action", "save"),
                ("name", name),
                ("strategy", "weight"),
                ("enabled", "1"),
                ("memberCount", "3"),
                ("member.0.staff", "amy"),
                ("member.0.accountId", ""),
                ("member.0.weight", weight),
                ("member.0.dailyCap", "20"),
                ("member.0.workDays", "1"),
                ("member.0.workDays", "2"),
                ("member.0.workStart", "09:00"),
                ("member.0.workEnd", end),
                ("member.0.enabled", "1"),
                // A blank row is not a member.
                ("member.1.accountId", ""),
                ("member.1.weight", "1"),
                ("member.2.accountId", second),
                ("member.2.weight", "2"),
                ("member.2.dailyCap", "0"),
                ("member.2.enabled", "1"),
            ]
        };
    let no_name = s
        .post("/console/traffic-pools", &fields("", "3", "18:00", "bob"))
        .await;
    assert_eq!(no_name.status, 400);
    assert!(
        no_name.body.contains("id=\"error-name\""),
        "{}",
        no_name.body
    );
    let bad_weight = s
        .post(
            "/console/traffic-pools",
            &fields("售前池", "500", "18:00", "bob"),
        )
        .await;
    assert_eq!(bad_weight.status, 400);
    assert!(
        bad_weight.body.contains("id=\"error-member-0\""),
        "{}",
        bad_weight.body
    );
    assert!(
        bad_weight.body.contains("value=\"500\""),
        "the draft is kept"
    );
    let bad_hours = s
        .post(
            "/console/traffic-pools",
            &fields("售前池", "3", "08:00", "bob"),
        )
        .await;
    assert_eq!(bad_hours.status, 400);
    assert!(bad_hours.body.contains("id=\"error-member-0\""));
    assert!(bad_hours.body.contains("workEnd"));
    let unknown = s
        .post(
            "/console/traffic-pools",
            &fields("售前池", "3", "18:00", "nobody"),
        )
        .await;
    assert!(unknown.status >= 400, "{}", unknown.status);
    assert!(
        unknown.body.contains("id=\"error-member-2\""),
        "row 2, though it is the API's second member: {}",
        unknown.body
    );
    // A row with both a WeCom member and a device account is not one account.
    let mut both = fields("售前池", "3", "18:00", "bob");
    both.retain(|(k, _)| *k != "member.0.accountId");
    both.push(("member.0.accountId", "wxid_x"));
    let both = s.post("/console/traffic-pools", &both).await;
    assert_eq!(both.status, 400);
    assert!(both.body.contains("id=\"error-member-0\""), "{}", both.body);
    assert!(both.body.contains("value=\"wxid_x\""), "the draft is kept");
    assert_eq!(pools().await, 0, "nothing refused was stored");

    // Saved: the API holds what the form said.
    let made = s
        .post(
            "/console/traffic-pools",
            &fields("售前池", "3", "18:00", "bob"),
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let id: i64 = made
        .location
        .trim_start_matches("/console/traffic-pools/")
        .trim_end_matches("?done=saved")
        .parse()
        .unwrap();
    let p = app
        .get(
            &format!("/api/v1/automation/traffic-pools/{id}"),
            &app.admin_token,
        )
        .await;
    let d = p.data();
    assert_eq!(d["strategy"], "weight");
    assert_eq!(d["members"].as_array().unwrap().len(), 2);
    assert_eq!(d["members"][0]["accountId"], "amy");
    assert_eq!(d["members"][0]["weight"], 3);
    assert_eq!(d["members"][0]["dailyCap"], 20);
    assert_eq!(d["members"][0]["workDays"], json!([1, 2]));
    assert_eq!(d["members"][0]["workEnd"], "18:00");
    assert_eq!(d["members"][1]["accountId"], "bob");
    let detail = s.get(&made.location).await;
    assert!(detail.body.contains("id=\"notice\""));
    assert!(detail.body.contains("id=\"edit-pool\""));

    // Edit: the form holds the pool; a member removed and a cap changed.
    let edit = s.get(&format!("/console/traffic-pools/{id}/edit")).await;
    assert_eq!(edit.status, 200);
    assert_eq!(edit.body.matches("class=\"member-form\"").count(), 2);
    assert!(
        edit.body
            .contains("name=\"member.0.workDays\" value=\"2\" checked")
    );
    // Both are WeCom members: each row's picker holds its member.
    assert!(
        edit.body
            .contains("name=\"member.0.staff\" value=\"amy\" checked")
    );
    assert!(
        edit.body
            .contains("name=\"member.1.staff\" value=\"bob\" checked")
    );
    let saved = s
        .post(
            &format!("/console/traffic-pools/{id}"),
            &[
                ("action", "save"),
                ("name", "售前池二"),
                ("strategy", "least_loaded"),
                ("enabled", "1"),
                ("memberCount", "1"),
                ("member.0.accountId", "bob"),
                ("member.0.weight", "1"),
                ("member.0.dailyCap", "5"),
                ("member.0.enabled", "1"),
            ],
        )
        .await;
    assert_eq!(
        saved.location,
        format!("/console/traffic-pools/{id}?done=saved")
    );
    let p = app
        .get(
            &format!("/api/v1/automation/traffic-pools/{id}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(p.data()["name"], "售前池二");
    assert_eq!(p.data()["members"][0]["dailyCap"], 5);
    assert_eq!(p.data()["members"].as_array().unwrap().len(), 1);

    // A viewer sees no form and may not post one.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    assert!(
        !v.get("/console/traffic-pools")
            .await
            .body
            .contains("id=\"new-pool\"")
    );
    assert_eq!(v.get("/console/traffic-pools/new").await.status, 403);
    assert_eq!(
        v.post(&format!("/console/traffic-pools/{id}"), &[("name", "x")])
            .await
            .status,
        403
    );
}

async fn console_traffic_pools_group_welcomes_content_sources_and_cron_tasks(app: TestApp) {
    add_staff(&app, our_tenant(&app).await, amy_and_bob()).await;
    let r = app
        .post(
            "/api/v1/automation/traffic-pools",
            &app.admin_token,
            json!({"name": "售前池", "strategy": "round_robin", "members": [
                {"accountId": "amy", "dailyCap": 20, "workDays": [1, 2, 3, 4, 5], "workStart": "09:00", "workEnd": "18:00"},
                {"accountId": "bob", "weight": 2}
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pool = r.data()["id"].as_i64().unwrap();
    let s = Session::login(&app, "admin", ADMIN_PASSWORD).await;
    let list = s.get("/console/traffic-pools").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("售前池"));
    assert!(list.body.contains("轮流分配"));
    assert!(
        list.body.contains("href=\"/console/traffic-pools\""),
        "in the navigation"
    );
    let detail = s.get(&format!("/console/traffic-pools/{pool}")).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body.matches("class=\"member-row\"").count(), 2);
    assert!(
        detail.body.contains("一 二 三 四 五 09:00–18:00"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("class=\"today\">0<"));
    assert!(detail.body.contains("id=\"delete-pool\""));
    let en = s
        .get(&format!("/console/traffic-pools/{pool}?lang=en"))
        .await;
    assert!(
        en.body.contains("Mo Tu We Th Fr 09:00–18:00"),
        "{}",
        en.body
    );
    assert!(en.body.contains("Assignment log"));

    // Group welcomes.
    let refused = s
        .post(
            "/console/group-welcomes",
            &[("name", ""), ("text", "欢迎 {nickname}")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"error-name\""),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("欢迎 {nickname}"),
        "the draft is kept"
    );
    let refused = s
        .post(
            "/console/group-welcomes",
            &[("name", "新人"), ("groupIds", "99999"), ("text", "hi")],
        )
        .await;
    assert!(
        refused.body.contains("id=\"error-groupIds\""),
        "{}",
        refused.body
    );
    let made = s
        .post(
            "/console/group-welcomes",
            &[("name", "新人"), ("text", "欢迎 {nickname}")],
        )
        .await;
    assert_eq!(
        made.location, "/console/group-welcomes?done=created",
        "{}",
        made.body
    );
    let page = s.get("/console/group-welcomes").await;
    assert!(page.body.contains("class=\"group-welcome-row\""));
    assert!(page.body.contains("所有客户群"));
    let gw = app
        .get("/api/v1/automation/group-welcomes", &app.admin_token)
        .await;
    let gw_id = gw.data()["list"][0]["id"].as_i64().unwrap();

    // Content sources from a local feed.
    let router = axum::Router::new().route(
        "/feed.xml",
        axum::routing::get(|| async {
            (
                [("content-type", "application/rss+xml")],
                r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>第一篇</title><link>https://news.example.com/1</link><guid>g1</guid></item></channel></rss>"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let refused = s
        .post(
            "/console/content-sources",
            &[
                ("name", "资讯"),
                ("url", "ftp://x"),
                ("intervalMinutes", "30"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("id=\"error-url\""),
        "{}",
        refused.body
    );
    let added = s
        .post(
            "/console/content-sources",
            &[
                ("name", "资讯"),
                ("url", &format!("{base}/feed.xml")),
                ("kind", "feed"),
                ("intervalMinutes", "30"),
            ],
        )
        .await;
    assert_eq!(
        added.location, "/console/content-sources?done=created",
        "{}",
        added.body
    );
    let sources = app
        .get("/api/v1/automation/content-sources", &app.admin_token)
        .await;
    let source = sources.data()["list"][0]["id"].as_i64().unwrap();
    let fetched = s
        .post(
            "/console/content-sources",
            &[("id", &source.to_string()), ("action", "fetch")],
        )
        .await;
    assert_eq!(
        fetched.location,
        format!("/console/content-sources/{source}?done=saved"),
        "{}",
        fetched.body
    );
    let one = s.get(&fetched.location).await;
    assert!(one.body.contains("class=\"item-row\""), "{}", one.body);
    assert!(one.body.contains("第一篇"));
    assert_eq!(text_of(&one.body, "item-count"), "1");
    let list = s.get("/console/content-sources?lang=en").await;
    assert!(list.body.contains("Content sources"));
    assert!(
        list.body.contains("class=\"item-count\">1<"),
        "{}",
        list.body
    );

    // Cron tasks: switch a built-in one off and on.
    let tasks = s.get("/console/schedules").await;
    assert_eq!(tasks.status, 200);
    assert!(tasks.body.contains("定时任务"));
    let name = "devices.health.score";
    assert!(
        tasks
            .body
            .contains(&format!("data-name=\"{name}\" data-enabled=\"true\"")),
        "{}",
        tasks.body
    );
    let off = s
        .post(
            "/console/schedules",
            &[("name", name), ("action", "disable")],
        )
        .await;
    assert_eq!(
        off.location, "/console/schedules?done=saved",
        "{}",
        off.body
    );
    let tasks = s.get("/console/schedules?enabled=false").await;
    assert!(
        tasks
            .body
            .contains(&format!("data-name=\"{name}\" data-enabled=\"false\""))
    );
    let on = s
        .post(
            "/console/schedules",
            &[("name", name), ("action", "enable")],
        )
        .await;
    assert_eq!(on.status, 303);
    let missing = s
        .post(
            "/console/schedules",
            &[("name", "no.such"), ("action", "enable")],
        )
        .await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("id=\"form-error\""),
        "{}",
        missing.body
    );

    // A viewer sees every page but no forms, and is refused the posts.
    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    for path in [
        "/console/traffic-pools",
        "/console/group-welcomes",
        "/console/content-sources",
        "/console/schedules",
    ] {
        let p = v.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        for form in [
            "group-welcome-form",
            "source-form",
            "delete-pool",
            "fetch-now",
        ] {
            assert!(!p.body.contains(&format!("id=\"{form}\"")), "{path} {form}");
        }
        assert!(
            !p.body.contains("name=\"action\" value=\"disable\""),
            "{path}"
        );
    }
    for (path, form) in [
        (format!("/console/traffic-pools/{pool}/delete"), vec![]),
        (
            "/console/group-welcomes".to_string(),
            vec![("id", gw_id.to_string()), ("action", "delete".to_string())],
        ),
        (
            "/console/content-sources".to_string(),
            vec![("id", source.to_string()), ("action", "fetch".to_string())],
        ),
        (
            "/console/schedules".to_string(),
            vec![
                ("name", name.to_string()),
                ("action", "disable".to_string()),
            ],
        ),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(v.post(&path, &form).await.status, 403, "{path}");
    }

    let gone = s
        .post(&format!("/console/traffic-pools/{pool}/delete"), &[])
        .await;
    assert_eq!(gone.location, "/console/traffic-pools?done=deleted");
    assert!(
        !s.get("/console/traffic-pools")
            .await
            .body
            .contains("售前池")
    );
    let gone = s
        .post(
            "/console/group-welcomes",
            &[("id", &gw_id.to_string()), ("action", "delete")],
        )
        .await;
    assert_eq!(gone.location, "/console/group-welcomes?done=deleted");
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    console_login_keeps_the_token_in_an_httponly_strict_cookie,
    console_login_refuses_a_wrong_password_on_the_page,
    console_serves_its_assets_from_the_binary,
    console_customer_list_filters_by_tag_and_tags_in_bulk,
    console_customer_total_is_the_real_count_after_every_kind_of_write,
    console_customer_list_pages_by_cursor_both_ways,
    console_customer_list_filters_by_group_and_channel_assigns_and_exports,
    console_viewer_sees_no_write_buttons_and_cannot_post_them,
    console_workbench_shows_todays_figures_and_the_growth_chart,
    console_group_send_form_shows_the_api_errors_next_to_the_fields,
    console_group_send_form_shows_an_offline_sender_next_to_the_sender,
    console_tags_sop_and_users_pages_list_and_sop_executions_pause,
    console_tags_are_created_renamed_reordered_and_deleted,
    console_group_chats_staff_channel_codes_welcome_and_materials,
    console_wecom_config_sync_logs_and_callback_replay,
    console_users_roles_passwords_and_api_tokens,
    console_workbench_counts_a_first_syncs_recent_adds_on_their_days,
    console_material_library_creates_lists_and_deletes,
    console_material_upload_checks_the_file_and_stores_nothing_refused,
    material_update_upload_replaces_the_file_and_drops_the_media_id,
    console_sop_builder_saves_runs_and_shows_the_step_log,
    console_channel_code_member_picker_searches_any_number_of_staff,
    console_staff_picker_searches_the_tenants_staff_for_every_staff_form,
    console_workflows_yaml_editor_publish_and_runs,
    console_customer_exports_start_list_and_download,
    console_traffic_pools_group_welcomes_content_sources_and_cron_tasks,
    console_traffic_pool_form_creates_and_edits_with_errors_by_row,
    console_traffic_pool_device_accounts_are_searched_not_listed,
);

scrm_db::db_tests!(crate::gateway::spawn;
    console_device_gateways_accounts_and_group_pushes,
    console_group_push_form_picks_a_traffic_pool,
    console_device_account_ai_reply_form_and_paged_accounts,
);
