//! The web console over plain HTTP, on every backend: login and the session cookie, the
//! language switch, what each role sees and may post, the customer list with its filters and
//! bulk actions, the workbench figures, and the group-send form showing the API's validation.
//! (The browser journeys are in `console_browser.rs`.)

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::customers::{customer, tags};
use crate::helpers::{ADMIN_PASSWORD, TestApp};

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
    assert!(sop.body.contains("id=\"sop-actions\""));

    let paused = s
        .post(
            "/console/sop/control",
            &[("ids", exec.to_string().as_str()), ("action", "pause")],
        )
        .await;
    assert_eq!(paused.location, "/console/sop?done=1");
    let list = app
        .get(
            &format!("/api/sop/executions?templateId={tid}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(list.data()["list"][0]["status"], 2, "paused");
    let shown = s.get("/console/sop?status=2").await;
    assert!(shown.body.contains("data-status=\"2\""));

    app.user_with_role("vera", "viewer").await;
    let v = Session::login(&app, "vera", "password-123").await;
    let sop = v.get("/console/sop").await;
    assert!(!sop.body.contains("id=\"sop-actions\""));
    let refused = v
        .post(
            "/console/sop/control",
            &[("ids", exec.to_string().as_str()), ("action", "resume")],
        )
        .await;
    assert_eq!(refused.status, 403);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    console_login_keeps_the_token_in_an_httponly_strict_cookie,
    console_login_refuses_a_wrong_password_on_the_page,
    console_serves_its_assets_from_the_binary,
    console_customer_list_filters_by_tag_and_tags_in_bulk,
    console_viewer_sees_no_write_buttons_and_cannot_post_them,
    console_workbench_shows_todays_figures_and_the_growth_chart,
    console_group_send_form_shows_the_api_errors_next_to_the_fields,
    console_tags_sop_and_users_pages_list_and_sop_executions_pause,
);
