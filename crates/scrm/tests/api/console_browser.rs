//! The console in a real browser: headless Chromium driven through chromedriver (WebDriver), the
//! main journeys against scrm and the WeCom simulator in-process — log in, sync, find customers
//! by tag, send to that tag and watch the send complete with per-customer results; edit tags and
//! replay a dead job; a viewer sees no buttons it may not use. SQLite is enough here (the
//! HTTP-level page tests run on every backend). Every wait is on an element or a URL, with a
//! deadline; screenshots of each page go to `target/tmp/console-screenshots/` (kept as CI
//! artifacts).
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them when missing).

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures::StreamExt;
use scrm::operation::mass::Settings;
use scrm_db::Backend;
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_app};
use crate::integration::{connect, sim};

/// How long a page may take to show what the test waits for (a sync, a send).
const PATIENCE: Duration = Duration::from_secs(120);

/// A headless Chromium session with its own chromedriver, ended when dropped.
struct Browser {
    client: Client,
    base: String,
    _driver: tokio::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    async fn start(base: &str) -> Browser {
        let driver = which("chromedriver").expect(
            "chromedriver not found: apt-get install -y chromium chromium-driver (scripts/test.sh does)",
        );
        let port = free_port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": which("chromium").unwrap_or_else(|| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1366,1000", "--lang=zh-CN"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: try to connect until it answers.
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        base: base.to_string(),
                        _driver: child,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer: {last:?}");
    }

    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    /// Wait for an element matching a CSS selector.
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.client.current_url().await.ok();
                let src = self.client.source().await.unwrap_or_default();
                panic!("no {css} on {url:?}: {e}\n{}", &src[..src.len().min(4000)]);
            }
        }
    }

    /// Wait for an element matching an XPath (text content, say).
    async fn wait_for_xpath(&self, xpath: &str) {
        if let Err(e) = self
            .client
            .wait()
            .at_most(PATIENCE)
            .every(Duration::from_millis(100))
            .for_element(Locator::XPath(xpath))
            .await
        {
            let src = self.client.source().await.unwrap_or_default();
            panic!("no {xpath}: {e}\n{}", &src[..src.len().min(4000)]);
        }
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("text")
    }

    async fn present(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    async fn login(&self, username: &str, password: &str) {
        self.open("/console").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("#login-submit").await;
        self.wait_for("#whoami").await;
    }

    /// Keep a screenshot of the page for the CI artifacts.
    async fn shot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    })
}

/// scrm connected to a simulated company of 30 customers, quick to poll send results.
async fn scrm_with_wecom() -> (TestApp, scrm_wecom_sim::SimHandle, i64) {
    let app = spawn_app(Backend::Sqlite).await;
    let sim = sim(30).await;
    connect(&app, &sim).await;
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    for (key, v) in [("mass.first_poll_ms", 100), ("mass.poll_interval_ms", 200)] {
        Settings::set(&app.state.db, tenant, key, v).await.unwrap();
    }
    (app, sim, tenant)
}

#[tokio::test]
async fn console_journey_sync_find_by_tag_send_to_the_tag_and_watch_it_finish() {
    let (app, _sim, tenant) = scrm_with_wecom().await;
    let b = Browser::start(&app.base).await;

    // Log in: the login page first, then the workbench.
    b.open("/console/customers").await;
    b.wait_for("#login-submit").await;
    b.shot("login").await;
    b.login("admin", ADMIN_PASSWORD).await;
    b.shot("workbench-empty").await;

    // Sync from WeCom and watch the status until the full sync has finished.
    b.open("/console/integration").await;
    b.click("#start-sync").await;
    let done = b
        .wait_for(r#"tr.sync-type[data-type="full"] [data-status]"#)
        .await
        .attr("data-status")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(done, "success");
    b.shot("integration").await;

    // Find customers by tag: the tag with most customers, as the list filter.
    let tenant_tags = app
        .get("/api/v1/workbench/customer/tags", &app.admin_token)
        .await;
    let top = tenant_tags
        .data()
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|t| t["customerCount"].as_i64().unwrap())
        .cloned()
        .expect("the sync brought tags");
    let (tag_id, tag_name) = (
        top["tagId"].as_i64().unwrap(),
        top["tagName"].as_str().unwrap().to_string(),
    );
    let tagged = app
        .get(
            &format!("/api/v1/customers?tagIds={tag_id}"),
            &app.admin_token,
        )
        .await
        .data()["total"]
        .as_i64()
        .unwrap();
    assert!(tagged > 0);
    b.open("/console/customers").await;
    b.wait_for("#tag-filter")
        .await
        .select_by_value(&tag_id.to_string())
        .await
        .unwrap();
    b.click("#search").await;
    b.wait_for(&format!(
        "select#tag-filter option[value=\"{tag_id}\"][selected]"
    ))
    .await;
    assert_eq!(b.text("#customer-total").await, tagged.to_string());
    let rows = b
        .client
        .find_all(Locator::Css("tr.customer-row"))
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, tagged.min(20));
    for r in &rows {
        assert!(
            r.text().await.unwrap().contains(&tag_name),
            "every row has the tag"
        );
    }
    b.shot("customers-by-tag").await;

    // Paging: "next" and "previous" carry keyset cursors (the 30 synced customers: two pages).
    b.open("/console/customers").await;
    let total: i64 = b.text("#customer-total").await.parse().unwrap();
    assert!(total > 20, "{total} customers: two pages");
    let first = b
        .wait_for("tr.customer-row")
        .await
        .attr("data-id")
        .await
        .unwrap();
    b.click("#next-page").await;
    b.wait_for_xpath("//span[@id='page-of'][starts-with(normalize-space(.), '2 /')]")
        .await;
    let url = b.client.current_url().await.unwrap().to_string();
    assert!(url.contains("before="), "{url}");
    b.shot("customers-page-2").await;
    b.click("#prev-page").await;
    b.wait_for_xpath("//span[@id='page-of'][starts-with(normalize-space(.), '1 /')]")
        .await;
    let again = b
        .wait_for("tr.customer-row")
        .await
        .attr("data-id")
        .await
        .unwrap();
    assert_eq!(again, first);

    // A group send to the tag: the live count shows who it reaches.
    let target = scrm::operation::mass::store::Target {
        tag_ids: vec![tag_id],
        ..Default::default()
    };
    let reach = scrm::operation::mass::store::count_sendable(&app.state.db, tenant, &target)
        .await
        .unwrap();
    // The sender: the member who follows most of the tagged customers (WeCom sends only to a
    // member's own customers; the others come back failed, with the reason).
    let (sender,): (String,) = app
        .state
        .db
        .fetch_one(
            scrm_db::query(
                "SELECT s.userid FROM staff s JOIN customer_follow f ON f.staff_id = s.id AND f.status = 1 \
                 JOIN customer_tag ct ON ct.customer_id = f.customer_id AND ct.tag_id = ? \
                 WHERE s.status = 1 GROUP BY s.userid ORDER BY COUNT(*) DESC, s.userid LIMIT 1",
            )
            .bind(tag_id),
        )
        .await
        .unwrap();
    b.open("/console/group-send/new").await;
    b.wait_for("#sender")
        .await
        .select_by_value(&sender)
        .await
        .unwrap();
    b.fill("#task-name", "浏览器群发").await;
    b.click(&format!("input[name=tagIds][value=\"{tag_id}\"]"))
        .await;
    // htmx swaps the count in after the tick.
    let want = reach.to_string();
    b.wait_for_xpath(&format!(
        "//span[@id='target-count-value' and text()='{want}']"
    ))
    .await;
    assert_eq!(b.text("#target-count-value").await, want);
    b.fill("#text", "您好，这是来自控制台的群发").await;
    b.shot("group-send-new").await;
    b.click("#create-send").await;

    // The task page refreshes itself until the send is final.
    b.wait_for("#task-status").await;
    let status = b
        .wait_for(
            r#"#task-status[data-status="COMPLETED"], #task-status[data-status="PARTIAL_SUCCESS"], #task-status[data-status="FAILED"]"#,
        )
        .await
        .attr("data-status")
        .await
        .unwrap()
        .unwrap();
    b.shot("group-send-done").await;
    let target: i64 = b.text("#task-target").await.parse().unwrap();
    let sent: i64 = b.text("#task-success").await.parse().unwrap();
    let failed: i64 = b.text("#task-failed").await.parse().unwrap();
    assert_eq!(target, reach);
    assert_eq!(sent + failed, target, "every customer has a result");
    assert_eq!(
        status,
        if failed == 0 {
            "COMPLETED"
        } else if sent == 0 {
            "FAILED"
        } else {
            "PARTIAL_SUCCESS"
        }
    );
    assert_eq!(b.text("#result-total").await, target.to_string());

    // Filter the results by status: failures carry their reason.
    if failed > 0 {
        b.click("#filter-failed").await;
        b.wait_for("#filter-failed.status").await;
        let rows = b
            .client
            .find_all(Locator::Css("tr.result-row"))
            .await
            .unwrap();
        assert_eq!(rows.len() as i64, failed.min(50));
        for r in &rows {
            assert_eq!(
                r.attr("data-status").await.unwrap().as_deref(),
                Some("FAILED")
            );
            let reason = r
                .find(Locator::Css(".reason"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(!reason.trim().is_empty(), "a failure names its reason");
        }
        b.shot("group-send-failures").await;
    }
    if sent > 0 {
        b.click("#filter-success").await;
        b.wait_for("#filter-success.status").await;
        let rows = b
            .client
            .find_all(Locator::Css("tr.result-row"))
            .await
            .unwrap();
        assert_eq!(rows.len() as i64, sent.min(50));
        // A customer's page, from the results: profile and timeline.
        rows[0]
            .find(Locator::Css("a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait_for("#customer-name").await;
        b.wait_for("#timeline li").await;
        b.shot("customer").await;
    }

    // The workbench and the job monitor render with the data.
    b.open("/console").await;
    b.wait_for("#growth-chart").await;
    b.shot("workbench").await;
    b.open("/console/jobs").await;
    b.wait_for("#dead-jobs").await;
    b.shot("jobs").await;

    // Every other page renders with the synced data (and is kept as a screenshot).
    for (path, css, name) in [
        ("/console/tags", ".tag-group", "tags"),
        ("/console/group-chats", "tr.group-row", "group-chats"),
        ("/console/staff", "tr.staff-row", "staff"),
        ("/console/channel-codes", "#channel-codes", "channel-codes"),
        (
            "/console/channel-codes/new",
            "#code-form",
            "channel-code-new",
        ),
        ("/console/welcome", "#welcome-form", "welcome"),
        ("/console/integration/sync-logs", "tr.log-row", "sync-logs"),
        ("/console/integration/callbacks", "#events", "callbacks"),
        (
            "/console/integration/config",
            "#config-form",
            "wecom-config",
        ),
        ("/console/users", "#new-user-form", "users"),
        ("/console/tokens", "#new-token-form", "tokens"),
        ("/console/sop", "#sop-templates", "sop"),
        ("/console/materials", "#material-form", "materials"),
    ] {
        b.open(path).await;
        b.wait_for(css).await;
        b.shot(name).await;
    }
    b.open("/console/group-chats").await;
    b.click("tr.group-row a").await;
    b.wait_for("tr.member-row").await;
    b.shot("group-chat").await;

    // The English switch.
    b.click("#lang-switch").await;
    b.wait_for("html[lang=en]").await;
    assert!(b.text("header.top nav").await.contains("Customers"));
    b.close().await;
}

#[tokio::test]
async fn console_viewer_does_not_see_or_reach_admin_buttons() {
    let (app, _sim, _) = scrm_with_wecom().await;
    app.user_with_role("vera", "viewer").await;
    let b = Browser::start(&app.base).await;
    b.login("vera", "password-123").await;
    assert!(b.text("#whoami").await.contains("只读"));
    assert!(
        !b.present("#new-send").await,
        "no new send on the workbench"
    );

    b.open("/console/customers").await;
    b.wait_for("#customers").await;
    assert!(!b.present("#bulk-actions").await);

    b.open("/console/group-send").await;
    b.wait_for("#tasks").await;
    assert!(!b.present("#new-send").await);

    b.open("/console/integration").await;
    b.wait_for("#sync-status").await;
    assert!(!b.present("#start-sync").await);
    assert!(!b.present("#test-connection").await);

    b.open("/console/jobs").await;
    b.wait_for("#dead-jobs").await;
    assert!(!b.present("button.replay").await);
    b.shot("viewer-jobs").await;

    // Typing the address of a page the role may not use: refused by the server.
    b.open("/console/group-send/new").await;
    assert_eq!(b.text("#error-name").await, "FORBIDDEN");
    b.close().await;
}

#[tokio::test]
async fn console_journey_edit_tags_and_replay_a_dead_job() {
    let (app, _sim, tenant) = scrm_with_wecom().await;
    // A job that dies at once: a payload its handler cannot read is a permanent failure.
    let dead = app
        .state
        .jobs
        .enqueue_now(
            scrm_jobs::NewJob::new(
                scrm::automation::channel_codes::PUSH,
                &json!({"unreadable": true}),
            )
            .unwrap()
            .tenant(tenant),
        )
        .await
        .unwrap();
    let dead_id = dead.id;
    let attempts = async |n: i64| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let done = app
                .state
                .db
                .fetch_i64(
                    scrm_db::query("SELECT COUNT(*) FROM job_attempt WHERE job_id = ?")
                        .bind(dead_id),
                )
                .await
                .unwrap();
            if done >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {dead_id} ran {done} times, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    attempts(1).await;
    let b = Browser::start(&app.base).await;
    b.login("admin", ADMIN_PASSWORD).await;

    // Tags: a new group with two tags, a rename, a move and a delete, each through the page.
    b.open("/console/tags").await;
    b.fill("#new-group-name", "浏览器标签组").await;
    b.fill("#new-group-tags", "甲，乙").await;
    b.click("#new-group").await;
    b.wait_for("#notice").await;
    let groups = app.get("/api/v1/tag-groups", &app.admin_token).await;
    let group = groups
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "浏览器标签组")
        .cloned()
        .expect("the group was created");
    let tag = |name: &str| {
        group["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["id"].as_i64())
            .unwrap()
    };
    let (jia, yi) = (tag("甲"), tag("乙"));
    b.fill(&format!("#tag-form-{jia} input[name=name]"), "丙")
        .await;
    b.click(&format!("#tag-form-{jia} button[value=rename]"))
        .await;
    b.wait_for(&format!("#tag-form-{jia} input[value='丙']"))
        .await;
    b.click(&format!("#tag-form-{yi} button[value=up]")).await;
    b.wait_for(&format!(
        ".tag-group[data-id='{}'] tr.tag-row:first-child #tag-form-{yi}",
        group["id"]
    ))
    .await;
    let order: Vec<String> = b
        .client
        .find_all(Locator::Css(&format!(
            ".tag-group[data-id='{}'] tr.tag-row input[name=name]",
            group["id"]
        )))
        .await
        .unwrap()
        .into_iter()
        .map(|e| async move { e.prop("value").await.unwrap().unwrap_or_default() })
        .collect::<futures::stream::FuturesOrdered<_>>()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(order, ["乙", "丙"]);
    b.shot("tags-edit").await;
    // An empty name is refused next to the form, nothing changes.
    b.fill(&format!("#tag-form-{yi} input[name=name]"), " ")
        .await;
    b.click(&format!("#tag-form-{yi} button[value=rename]"))
        .await;
    b.wait_for(&format!("#error-tag-{yi}")).await;
    b.open("/console/tags").await;
    b.click(&format!("#tag-form-{jia} button[value=delete]"))
        .await;
    b.client.accept_alert().await.unwrap();
    b.wait_for("#notice").await;
    assert!(!b.present(&format!("#tag-form-{jia}")).await);
    assert!(b.present(&format!("#tag-form-{yi}")).await);

    // Jobs: the dead letter is listed and replayed from the page.
    b.open("/console/jobs").await;
    b.wait_for(&format!("tr.dead-job[data-id='{dead_id}']"))
        .await;
    b.shot("jobs-dead-letter").await;
    b.click(&format!("tr.dead-job[data-id='{dead_id}'] button.replay"))
        .await;
    assert!(b.text("#notice").await.contains(&dead_id.to_string()));
    // The replay ran the job again (it dies again: its payload is still unreadable).
    attempts(2).await;
    b.close().await;
}

#[tokio::test]
async fn console_journey_build_and_run_an_sop() {
    let (app, _sim, _tenant) = scrm_with_wecom().await;
    let log = crate::integration_sync::sync(&app, json!({"syncType": "full"})).await;
    assert_eq!(log["status"], "success", "{log:?}");
    let customer = app
        .get("/api/v1/customers?size=1", &app.admin_token)
        .await
        .data()["list"][0]["id"]
        .as_i64()
        .expect("the sync brought customers");
    let b = Browser::start(&app.base).await;
    b.login("admin", ADMIN_PASSWORD).await;

    // Build: a welcome message right away, then a reminder for the staff a day later.
    b.open("/console/sop").await;
    b.click("#new-template").await;
    b.fill("#template-name", "浏览器SOP").await;
    b.fill("#step-0-name", "欢迎").await;
    b.fill("#step-0-content", "您好，欢迎关注！").await;
    b.click("#add-step").await;
    b.wait_for("#step-1").await;
    // Choosing the step's type shows that type's fields (htmx re-renders the form).
    b.wait_for("#step-1-type")
        .await
        .select_by_value("5")
        .await
        .unwrap();
    b.wait_for("#step-1[data-type='5'] #step-1-content").await;
    b.fill("#step-1-content", "回访这位客户").await;
    assert_eq!(
        b.wait_for("#step-0-content")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("您好，欢迎关注！"),
        "what was typed stays"
    );
    b.shot("sop-builder").await;
    b.click("#save-template").await;
    b.wait_for("#notice").await;
    b.wait_for("#run-form").await;
    let templates = app.get("/api/sop/templates", &app.admin_token).await;
    let t = &templates.data()["list"][0];
    assert_eq!(t["templateName"], "浏览器SOP");
    assert_eq!(
        t["steps"][0]["actionContent"],
        json!({"content": "您好，欢迎关注！"})
    );
    assert_eq!(t["steps"][1]["stepType"], 5);
    assert_eq!(t["steps"][1]["delayUnit"], "day");
    b.shot("sop-template").await;

    // Run it for a customer: the execution's page refreshes until the first step is logged.
    b.fill("#target-ids", &customer.to_string()).await;
    b.click("#run-sop").await;
    b.wait_for("#step-log").await;
    let first = b
        .wait_for(r#"tr.step-log[data-order="1"][data-status="2"], tr.step-log[data-order="1"][data-status="3"]"#)
        .await;
    let result = first.text().await.unwrap();
    assert_eq!(
        first.attr("data-status").await.unwrap().as_deref(),
        Some("2"),
        "the message was sent: {result}"
    );
    assert!(
        b.present(r#"tr.step-log[data-order="2"][data-status="0"]"#)
            .await
    );
    assert_eq!(
        b.wait_for("#execution-status")
            .await
            .attr("data-status")
            .await
            .unwrap()
            .as_deref(),
        Some("0"),
        "running until the second step"
    );
    b.shot("sop-execution").await;

    // The executions list: pause it there.
    b.open("/console/sop/executions").await;
    b.click("#sop-executions input[name=ids]").await;
    b.click("#pause").await;
    b.wait_for("#notice").await;
    b.wait_for("tr.sop-execution[data-status='2']").await;
    b.shot("sop-executions").await;
    b.close().await;
}

#[tokio::test]
async fn console_journey_register_a_gateway_push_to_its_rooms_and_switch_a_cron_task() {
    let app = crate::gateway::spawn(Backend::Sqlite).await;
    let b = Browser::start(&app.base).await;
    b.login("admin", ADMIN_PASSWORD).await;

    // Devices: register a gateway from the navigation; its token is on the page this once.
    b.click("nav a[href='/console/devices']").await;
    b.fill("#gateway-name", "浏览器网关").await;
    b.click("#create-gateway").await;
    let token = b.text("#fresh-gateway-token").await;
    assert!(token.starts_with("gw_"), "{token}");
    let sim = crate::gateway::connect_sim(&app, &token).await;
    b.open("/console/devices").await;
    b.wait_for("tr.account-row[data-id='wxid_a'][data-status='ACTIVE']")
        .await;
    b.wait_for("tr.gateway-row[data-connected='true']").await;
    b.shot("devices").await;
    b.click("tr.account-row[data-id='wxid_a'] a").await;
    b.wait_for("#health-history").await;

    // Group push: a refusal next to the field, then a push that reaches both rooms.
    b.open("/console/group-pushes").await;
    b.click("#new-push").await;
    b.fill("#push-text", "浏览器早安").await;
    b.click("#create-push").await;
    b.wait_for("#error-accountId").await;
    let select = b.wait_for("#push-account").await;
    select.select_by_value("wxid_a").await.expect("select");
    b.fill("#push-rooms", "r1@chatroom\nr2@chatroom").await;
    b.click("#create-push").await;
    b.wait_for("#notice").await;
    b.wait_for("#push-status").await;
    // The page shows the push as the API has it; reload until both rooms are sent.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !b.present("#push-status[data-status='COMPLETED']").await {
        assert!(std::time::Instant::now() < deadline, "the push completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.client.refresh().await.expect("refresh");
    }
    assert_eq!(
        b.client
            .find_all(Locator::Css("tr.result-row[data-status='SUCCESS']"))
            .await
            .unwrap()
            .len(),
        2
    );
    b.shot("group-push").await;

    // Cron tasks: switch the nightly health score off and on again.
    b.click("nav a[href='/console/schedules']").await;
    let row = "tr.schedule-row[data-name='devices.health.score']";
    b.click(&format!("{row} button[value=disable]")).await;
    b.wait_for(&format!("{row}[data-enabled='false']")).await;
    b.click(&format!("{row} button[value=enable]")).await;
    b.wait_for(&format!("{row}[data-enabled='true']")).await;
    b.close().await;
    sim.stop();
}

#[tokio::test]
async fn console_journey_pick_staff_by_search_and_upload_a_material() {
    let app = spawn_app(Backend::Sqlite).await;
    let tenant = app.get("/api/v1/auth/me", &app.admin_token).await.data()["tenantId"]
        .as_i64()
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let mut ids = std::collections::HashMap::new();
    for i in 1..=120 {
        let userid = format!("u{i:04}");
        let id = scrm::customers::staff::upsert_staff(
            &mut tx,
            tenant,
            &userid,
            &format!("员工{i:04}"),
            &[1],
            1,
            1_700_000_000_000,
        )
        .await
        .unwrap();
        ids.insert(userid, id);
    }
    tx.commit().await.unwrap();
    let b = Browser::start(&app.base).await;
    b.login("admin", ADMIN_PASSWORD).await;

    // Welcome members: a search finds a member far down the list; a second search keeps the
    // first one chosen (htmx swaps the rows, the server puts the chosen ones first).
    b.open("/console/welcome").await;
    b.fill("#welcome-staff-search", "0107").await;
    b.click("#welcome-staff-rows input[value='u0107']").await;
    b.fill("#welcome-staff-search", "0042").await;
    b.click("#welcome-staff-rows input[value='u0042']").await;
    let kept = b
        .wait_for("#welcome-staff-rows input[value='u0107']")
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("true"),
        "the first choice stays chosen"
    );
    b.shot("welcome-staff-picker").await;
    b.fill("#welcome-name", "两位成员的欢迎语").await;
    b.fill("#welcome-text", "您好").await;
    b.click("#save-welcome").await;
    b.wait_for("#notice").await;
    let list = app
        .get("/api/v1/automation/welcome-messages", &app.admin_token)
        .await;
    assert_eq!(
        list.data()["list"][0]["staffUserids"],
        json!(["u0042", "u0107"]),
        "both members, as the API orders them"
    );

    // The customer list's staff filter: search, choose, filter.
    b.open("/console/customers").await;
    b.fill("#staff-filter-search", "员工0099").await;
    b.click(&format!(
        "#staff-filter-rows input[value='{}']",
        ids["u0099"]
    ))
    .await;
    b.click("#search").await;
    b.wait_for(&format!(
        "#staff-filter-rows input[value='{}'][checked]",
        ids["u0099"]
    ))
    .await;
    assert!(
        b.client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&format!("staff={}", ids["u0099"]))
    );
    b.shot("customers-staff-filter").await;

    // A material with its file: the form's file input, a refusal next to it, then a save.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-picture.png");
    std::fs::write(&bad, b"GIF89a this is no png").unwrap();
    let good = dir.path().join("poster.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(4096, 1);
    std::fs::write(&good, png).unwrap();
    b.open("/console/materials").await;
    b.click("#mt-image").await;
    b.fill("#material-title", "海报").await;
    b.wait_for("#material-file")
        .await
        .send_keys(&bad.to_string_lossy())
        .await
        .unwrap();
    b.click("#create-material").await;
    b.wait_for("#error-file").await;
    b.shot("material-upload-refused").await;
    b.wait_for("#material-file")
        .await
        .send_keys(&good.to_string_lossy())
        .await
        .unwrap();
    b.click("#create-material").await;
    b.wait_for("#notice").await;
    b.wait_for_xpath("//td[contains(., 'poster.png')]").await;
    b.shot("material-uploaded").await;
    let m = app.get("/api/materials", &app.admin_token).await;
    assert_eq!(m.data()["total"], 1);
    assert_eq!(m.data()["list"][0]["fileName"], "poster.png");

    // A channel code's members, through the same picker with its limit and backup columns: a
    // member found by search with a daily limit, then a backup found by a second search; the
    // member and its limit survive the swap.
    b.open("/console/channel-codes/new").await;
    b.fill("#code-name", "展会码").await;
    b.fill("#code-staff-search", "0111").await;
    b.click("#code-staff-rows input[name='staff'][value='u0111']")
        .await;
    b.fill("#code-staff-rows input[name='limit.u0111']", "6")
        .await;
    b.fill("#code-staff-search", "0005").await;
    b.click("#code-staff-rows input[name='backup'][value='u0005']")
        .await;
    let member = b
        .wait_for("#code-staff-rows input[name='staff'][value='u0111']")
        .await;
    assert_eq!(
        member.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    let limit = b
        .wait_for("#code-staff-rows input[name='limit.u0111']")
        .await;
    assert_eq!(limit.prop("value").await.unwrap().as_deref(), Some("6"));
    b.shot("channel-code-staff-picker").await;
    b.click("#save-code").await;
    b.wait_for("#notice").await;
    let codes = app.get("/api/v1/channel-codes", &app.admin_token).await;
    let code = &codes.data()["list"][0];
    assert_eq!(code["staff"].as_array().map(Vec::len), Some(1), "{code}");
    assert_eq!(code["staff"][0]["userid"], "u0111");
    assert_eq!(code["staff"][0]["dailyLimit"], 6);
    assert_eq!(code["backupStaff"], json!(["u0005"]));

    // A traffic pool's member rows pick WeCom members by search, one per row.
    b.open("/console/traffic-pools/new").await;
    b.fill("#pool-name", "售前池").await;
    b.fill("#member-0-staff-search", "0077").await;
    b.click("#member-0-staff-rows input[value='u0077']").await;
    b.click("#add-member").await;
    b.wait_for("#member-1-staff-search").await;
    let kept = b
        .wait_for("#member-0-staff-rows input[value='u0077']")
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("true"), "row 0 keeps its member");
    b.fill("#member-1-staff-search", "员工0078").await;
    b.click("#member-1-staff-rows input[value='u0078']").await;
    b.shot("traffic-pool-member-picker").await;
    b.click("#save-pool").await;
    b.wait_for("#notice").await;
    let pools = app
        .get("/api/v1/automation/traffic-pools", &app.admin_token)
        .await;
    let members: Vec<&str> = pools.data()["list"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["accountId"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["u0077", "u0078"]);
    b.close().await;
}
