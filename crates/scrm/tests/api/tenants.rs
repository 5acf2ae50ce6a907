//! A user of one tenant never reads or changes anything of another.

use reqwest::Method;
use scrm::http::routes::Access;
use serde_json::json;

use crate::helpers::TestApp;

async fn another_tenant_sees_none_of_our_users(app: TestApp) {
    let (ours, _) = app.user_with_role("ours", "viewer").await;
    let (_, theirs) = app.other_tenant_admin("other company", "boss.b").await;

    let list = app.get("/api/v1/system/users", &theirs).await;
    assert_eq!(list.status, 200);
    let names: Vec<_> = list.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["boss.b"]);

    let r = app
        .get(&format!("/api/v1/system/users/{ours}"), &theirs)
        .await;
    assert_eq!((r.status, r.error()), (404, "NOT_FOUND"));
    let r = app
        .put(
            &format!("/api/v1/system/users/{ours}"),
            &theirs,
            json!({"displayName": "hacked"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("/api/v1/system/users/{ours}/reset-password"),
            &theirs,
            json!({"password": "hacked-password"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let mine = app
        .get(&format!("/api/v1/system/users/{ours}"), &app.admin_token)
        .await;
    assert_eq!(mine.data()["displayName"], "ours", "unchanged");
    app.login("ours", "password-123").await;

    let audit = app.get("/api/v1/system/audit-logs", &theirs).await;
    assert!(
        audit.data()["list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["username"] == "boss.b"),
        "{:?}",
        audit.body
    );
}

async fn another_tenant_cannot_revoke_our_tokens(app: TestApp) {
    let r = app
        .post(
            "/api/v1/system/tokens",
            &app.admin_token,
            json!({"name": "ours"}),
        )
        .await;
    let id = r.data()["id"].as_i64().unwrap();
    let token = r.data()["token"].as_str().unwrap().to_string();
    let (_, theirs) = app.other_tenant_admin("other company", "boss.c").await;
    assert_eq!(
        app.get("/api/v1/system/tokens", &theirs)
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.delete(&format!("/api/v1/system/tokens/{id}"), &theirs)
            .await
            .status,
        404
    );
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status, 200);
}

/// In every name, text and title the default tenant's data carries.
pub(crate) const MARK: &str = "zzmarkofa";

/// A route's path with each `{param}` set to `id`.
pub(crate) fn with_id(path: &str, id: i64) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                id.to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Our tenant's marked data of every kind the API can make.
pub(crate) async fn mark_everything(app: &TestApp) {
    let t = &app.admin_token;
    let db = &app.state.db;
    let tenant = scrm::auth::users::ensure_tenant(db, scrm::startup::DEFAULT_TENANT)
        .await
        .unwrap();
    let now = scrm::state::now_ms();
    let staff = db
        .insert_id(
            scrm_db::query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)")
                .bind(tenant)
                .bind(format!("{MARK}-staff"))
                .bind(format!("{MARK} staff"))
                .bind(now)
                .bind(now),
        )
        .await
        .unwrap();
    let made = |path: &'static str, r: crate::helpers::Resp| {
        assert!(r.status < 300, "{path}: {} {:?}", r.status, r.body);
        r.data().clone()
    };
    let text = |s: &str| json!({"type": "TEXT", "data": {"text": s}});
    made(
        "tag-groups",
        app.post(
            "/api/v1/tag-groups",
            t,
            json!({"name": format!("{MARK} group"), "tags": [format!("{MARK} tag")]}),
        )
        .await,
    );
    let customer = made(
        "customers",
        app.post("/api/v1/customers", t, json!({"externalUserid": format!("{MARK}-ext"), "name": format!("{MARK} customer"), "followUserId": staff}))
            .await,
    )["id"]
        .as_i64()
        .unwrap();
    made(
        "follow-ups",
        app.post(
            &format!("/api/v1/customers/{customer}/follow-ups"),
            t,
            json!({"content": format!("{MARK} follow-up")}),
        )
        .await,
    );
    made(
        "material",
        app.post("/api/material", t, json!({"materialType": "link", "title": format!("{MARK} material"), "content": {"url": "https://example.com/a", "desc": MARK}}))
            .await,
    );
    let template = made(
        "sop template",
        app.post("/api/sop/template", t, json!({"templateName": format!("{MARK} sop"), "templateType": 1, "triggerType": 4, "steps": [
            {"stepName": format!("{MARK} step"), "stepType": 1, "delayTime": 1, "delayUnit": "day", "actionContent": {"content": MARK}}]}))
            .await,
    )["templateId"]
        .as_i64()
        .unwrap();
    made(
        "sop execute",
        app.post(
            "/api/sop/execute",
            t,
            json!({"templateId": template, "targetType": 1, "targetIds": [customer]}),
        )
        .await,
    );
    made(
        "mass-task",
        app.post("/api/mass-task", t, json!({"taskName": format!("{MARK} mass"), "taskType": 1, "targetType": 1, "targetIds": [customer], "messageContent": MARK, "messageType": 1, "scheduledTime": "2099-11-11T00:00:00"}))
            .await,
    );
    made(
        "group-send",
        app.post("/api/v1/workbench/group-send/tasks", t, json!({"senderAccountId": format!("{MARK}-staff"), "target": {"customerIds": [customer]}, "messageContent": text(MARK), "taskName": format!("{MARK} send"), "scheduledTime": "2099-01-01T00:00:00Z"}))
            .await,
    );
    made(
        "channel code",
        app.post("/api/v1/channel-codes", t, json!({"name": format!("{MARK} code"), "state": format!("{MARK}-state"), "staff": [{"userid": format!("{MARK}-staff")}]}))
            .await,
    );
    made(
        "welcome",
        app.post(
            "/api/v1/automation/welcome-messages",
            t,
            json!({"name": format!("{MARK} welcome"), "text": MARK}),
        )
        .await,
    );
    made(
        "churn rule",
        app.post(
            "/api/v1/customers/churn-rules",
            t,
            json!({"name": format!("{MARK} churn"), "ruleType": "no_interaction", "days": 1}),
        )
        .await,
    );
    made(
        "user",
        app.post("/api/v1/system/users", t, json!({"username": format!("{MARK}-user"), "displayName": MARK, "password": "password-123", "role": "viewer"}))
            .await,
    );
    made(
        "token",
        app.post(
            "/api/v1/system/tokens",
            t,
            json!({"name": format!("{MARK} token")}),
        )
        .await,
    );
}

/// Table-driven over the route table: our tenant holds marked data of every kind the API can
/// make (customers, follow-ups, tags, staff, materials, SOPs and executions, mass tasks, group
/// sends, channel codes, welcome messages, churn rules, users, API tokens); the admin of another
/// tenant then reads every list, detail and console page — every `{id}` from 1 to 12 — and no
/// answer carries the mark, nor is any a 500.
async fn another_tenant_sees_nothing_of_ours_on_any_route(app: TestApp) {
    mark_everything(&app).await;
    let t = &app.admin_token;
    let (_, theirs) = app.other_tenant_admin("other company", "boss.d").await;

    let (mut seen_by_us, mut asked) = (0, 0);
    for r in app
        .routes
        .iter()
        .filter(|r| r.method == Method::GET && r.access != Access::Public)
    {
        let ids: Vec<i64> = if r.path.contains('{') {
            (1..=12).collect()
        } else {
            vec![0]
        };
        let mut ours_marked = false;
        for id in ids {
            let path = with_id(r.path, id);
            for (who, token) in [("another tenant", theirs.as_str()), ("us", t.as_str())] {
                let resp = app
                    .client
                    .get(format!("{}{path}", app.base))
                    .bearer_auth(token)
                    .header("cookie", format!("scrm_session={token}"))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                assert_ne!(status, 500, "GET {path} as {who}: {body}");
                if who == "us" {
                    ours_marked |= body.contains(MARK);
                } else {
                    asked += 1;
                    assert!(
                        !body.contains(MARK),
                        "GET {path} shows another tenant our data: {body}"
                    );
                }
            }
        }
        if ours_marked {
            seen_by_us += 1;
        }
    }
    // The check means something: our own data shows on many of the same routes.
    assert!(
        seen_by_us >= 15 && asked > 100,
        "our data showed on {seen_by_us} routes ({asked} requests)"
    );
}

/// What we see of our own data: the body of every GET route (every `{id}` from 1 to 12) that
/// reads the same twice in a row (pages with clocks or live counters are left out).
pub(crate) async fn our_view(app: &TestApp) -> std::collections::BTreeMap<String, String> {
    let read = || async {
        let mut seen = std::collections::BTreeMap::new();
        // The job list moves by itself (retries of background jobs).
        for r in app.routes.iter().filter(|r| {
            r.method == Method::GET
                && r.access != Access::Public
                && !r.page
                && !r.path.starts_with("/api/jobs")
        }) {
            let ids: Vec<i64> = if r.path.contains('{') {
                (1..=12).collect()
            } else {
                vec![0]
            };
            for id in ids {
                let path = with_id(r.path, id);
                let resp = app
                    .client
                    .get(format!("{}{path}", app.base))
                    .bearer_auth(&app.admin_token)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap();
                seen.insert(path, format!("{status} {}", without_clock(&body)));
            }
        }
        seen
    };
    let (a, b) = (read().await, read().await);
    a.into_iter().filter(|(k, v)| b.get(k) == Some(v)).collect()
}

/// A page's body without the fields the clock moves by itself: the system cron schedules fire
/// every minute, so their last and next fire times change between two reads a few seconds apart
/// whenever a minute turns (CI once failed on exactly that).
fn without_clock(body: &[u8]) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for key in ["lastFireAt", "nextFireAt", "lastJob"] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            strip(&mut v);
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Table-driven over the route table, the writing side: with our marked data in place, the
/// admin of another tenant sends every POST, PUT, PATCH and DELETE route that names an `{id}`,
/// for every id from 1 to 12, with an empty body and with the body of our own record at that
/// path (the mark replaced) — a valid update in most cases. Every answer is a refusal (404 when
/// the route got as far as looking the id up, never a success, never a 500), and afterwards
/// every page of ours reads exactly as before.
async fn another_tenant_changes_nothing_of_ours_on_any_route(app: TestApp) {
    mark_everything(&app).await;
    let (their_tenant, theirs) = app.other_tenant_admin("other company", "boss.e").await;
    let their_ids: Vec<(i64,)> = app
        .state
        .db
        .fetch_all(scrm_db::query("SELECT id FROM app_user WHERE tenant_id = ?").bind(their_tenant))
        .await
        .unwrap();
    let their_ids: Vec<i64> = their_ids.into_iter().map(|r| r.0).collect();
    let before = our_view(&app).await;
    assert!(before.len() > 100, "{} stable pages", before.len());

    let (mut asked, mut not_found) = (0, 0);
    for r in app.routes.iter().filter(|r| {
        matches!(
            r.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) && r.path.contains('{')
            && r.access != Access::Public
            && !r.page
    }) {
        for id in 1..=12 {
            // The other tenant's own user: acting on it is acting on their own data.
            if r.path.starts_with("/api/v1/system/users/") && their_ids.contains(&id) {
                continue;
            }
            let path = with_id(r.path, id);
            let ours = before
                .get(&path)
                .or_else(|| before.get(path.trim_end_matches(|c| c != '/').trim_end_matches('/')))
                .and_then(|b| b.split_once(' '))
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
                .map(|v| v["data"].clone())
                .filter(|d| d.is_object());
            let mut bodies = vec![json!({})];
            if let Some(d) = ours {
                let text = d.to_string().replace(MARK, "hacked");
                bodies.push(serde_json::from_str(&text).unwrap());
            }
            for body in bodies {
                let resp = app
                    .client
                    .request(r.method.clone(), format!("{}{path}", app.base))
                    .bearer_auth(&theirs)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                asked += 1;
                assert!(
                    status != 500 && !(200..300).contains(&status),
                    "{} {path} by another tenant answered {status}: {text}",
                    r.method
                );
                assert_ne!(
                    status, 401,
                    "{} {path}: the other tenant lost its session",
                    r.method
                );
                if status == 404 {
                    not_found += 1;
                }
            }
        }
    }
    let after = our_view(&app).await;
    for (path, was) in &before {
        assert_eq!(
            after.get(path),
            Some(was),
            "GET {path} changed after another tenant's writes"
        );
    }
    // The check means something: many writes reached the id lookup.
    assert!(
        asked > 200 && not_found > 100,
        "{asked} writes, {not_found} answered 404"
    );
    assert_eq!(app.get("/api/v1/auth/me", &theirs).await.status, 200);
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    another_tenant_changes_nothing_of_ours_on_any_route,
    another_tenant_sees_none_of_our_users,
    another_tenant_cannot_revoke_our_tokens,
    another_tenant_sees_nothing_of_ours_on_any_route,
);
