//! Personal WeChat accounts through a device gateway (seed 002's device side, seed 004's
//! account list), end to end against the gateway simulator: group pushes that survive a gateway
//! dropping mid-task, auto group creation with its welcome, group welcomes, friend sync, AI
//! auto-reply against a local chat endpoint, and tasks refused for accounts whose provider
//! cannot do them.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scrm_db::{Backend, query};
use scrm_wecom::device::AccountStatus;
use scrm_wecom_sim::gateway::{Delivery, DropPoint, GatewaySim};
use serde_json::{Value, json};

use crate::helpers::until;
use crate::helpers::{TestApp, quiet_schedules, spawn_app_with};

/// scrm with no gap between pushes of one account (the default is seed 002's 3-8 s).
pub async fn spawn(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, &[("SCRM_DEVICE_SEND_GAP_MS", "0-0")]).await;
    quiet_device_schedules(&app).await;
    app
}

/// The built-in moments collection (every 30 min) and auto-like (every 5 min) would send their
/// own `fetch_moments` to the test phone; the tests run those jobs themselves when they want
/// them.
async fn quiet_device_schedules(app: &TestApp) {
    quiet_schedules(app, &["devices.moments.collect", "devices.auto_like"]).await;
}

/// A gateway registered through the API and the simulator connected as it, holding `wxid_a`
/// ("Alice's phone") with friends f1..f3 and chat rooms r1..r5; returns once scrm lists the
/// account ACTIVE.
pub async fn gateway(app: &TestApp) -> GatewaySim {
    let token = register(app).await;
    connect_sim(app, &token).await
}

/// Register a gateway ("phones") through the API: its token, shown this once.
pub(crate) async fn register(app: &TestApp) -> String {
    let r = app
        .post(
            "/api/v1/devices/gateways",
            &app.admin_token,
            json!({"name": "phones"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.data()["token"].as_str().unwrap().to_string()
}

/// Connect `sim` to `app` as the gateway holding `token` (reconnecting 100 ms after a drop).
pub(crate) fn connect(app: &TestApp, sim: &GatewaySim, token: &str) {
    sim.connect(&ws_url(app), token, Duration::from_millis(100));
}

/// Post a group push (201) and wait until it is COMPLETED: the push with its results.
pub(crate) async fn push_completed(app: &TestApp, body: Value) -> Value {
    let r = app
        .post("/api/v1/devices/group-pushes", &app.admin_token, body)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    push_done(app, r.data()["groupPushId"].as_i64().unwrap()).await
}

/// Wait until group push `id` is COMPLETED: the push with its results.
pub(crate) async fn push_done(app: &TestApp, id: i64) -> Value {
    until("the push to finish", || async {
        let r = app
            .get(
                &format!("/api/v1/devices/group-pushes/{id}"),
                &app.admin_token,
            )
            .await;
        (r.data()["status"] == "COMPLETED").then(|| r.data().clone())
    })
    .await
}

/// The simulator connected as the gateway holding `token`, with `wxid_a`'s friends and rooms
/// (as [`gateway`]); returns once the account is ACTIVE and its first friend sync done.
pub async fn connect_sim(app: &TestApp, token: &str) -> GatewaySim {
    let sim = GatewaySim::new();
    sim.add_device("wxid_a", "Alice's phone");
    for (w, n) in [("f1", "Fay"), ("f2", "Gus"), ("f3", "Hal")] {
        sim.add_friend("wxid_a", w, n);
    }
    for i in 1..=5 {
        sim.add_room(
            "wxid_a",
            &format!("r{i}@chatroom"),
            &format!("room {i}"),
            &["wxid_a", "f1"],
        );
    }
    connect(app, &sim, token);
    account_status(app, "wxid_a", "ACTIVE").await;
    // The hello's friend sync is done (so the tests' commands are the next ones).
    until("the first friend sync", || async {
        let r = app
            .get("/api/v1/devices/accounts/wxid_a/friends", &app.admin_token)
            .await;
        (r.data().as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    sim
}

/// Wait until scrm lists device account `wxid` with status `want` (ACTIVE / OFFLINE / EXPIRED).
pub(crate) async fn account_status(app: &TestApp, wxid: &str, want: &str) {
    until(&format!("{wxid} {want}"), || async {
        let r = app
            .get(
                "/api/v1/devices/accounts?accountType=WECHAT",
                &app.admin_token,
            )
            .await;
        let found = r
            .data()
            .as_array()?
            .iter()
            .any(|a| a["accountId"] == wxid && a["status"] == want);
        found.then_some(())
    })
    .await
}

fn sends_to(d: &[Delivery], to: &str) -> Vec<Delivery> {
    d.iter().filter(|x| x.to == to).cloned().collect()
}

async fn group_push_reaches_every_room_once_across_gateway_drops(app: TestApp) {
    let sim = gateway(&app).await;
    // The gateway drops twice mid-task: once after running a command without acknowledging it
    // (scrm must send it again, the device must not run it twice), once on receiving one.
    sim.drop_at_command(2, DropPoint::BeforeAck);
    let rooms: Vec<String> = (1..=5).map(|i| format!("r{i}@chatroom")).collect();
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            &app.admin_token,
            json!({"accountId": "wxid_a", "chatroomIds": rooms, "taskName": "morning",
                   "messageContent": {"type": "TEXT", "data": {"text": "早上好"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupPushId"].as_i64().unwrap();
    let done = push_done(&app, id).await;
    assert_eq!(done["targetCount"], 5);
    assert_eq!(done["successCount"], 5);
    let deliveries = sim.deliveries();
    for room in &rooms {
        let got = sends_to(&deliveries, room);
        assert_eq!(got.len(), 1, "{room}: {got:?}");
        assert_eq!(got[0].data["text"], "早上好");
    }
    assert!(sim.connections() >= 2, "the gateway reconnected");
    assert!(
        sim.duplicates() >= 1,
        "a command was sent again after the drop and answered once"
    );
    // The resent command shows it was sent twice and still succeeded once.
    assert!(
        done["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sends"].as_i64() >= Some(2)),
        "{done}"
    );

    // A second push while the gateway drops on receiving a command: still one per room.
    sim.drop_at_command(1, DropPoint::BeforeRun);
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            &app.admin_token,
            json!({"accountId": "wxid_a", "chatroomIds": ["r1@chatroom", "r2@chatroom", "nope@chatroom"],
                   "messageContent": {"type": "LINK", "data": {"title": "新品", "url": "https://example.com/p"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.data()["groupPushId"].as_i64().unwrap();
    let done = until("the second push to finish", || async {
        let r = app
            .get(
                &format!("/api/v1/devices/group-pushes/{id}"),
                &app.admin_token,
            )
            .await;
        (r.data()["status"] == "PARTIAL_SUCCESS").then(|| r.data().clone())
    })
    .await;
    assert_eq!(done["successCount"], 2);
    let failed: Vec<&Value> = done["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "FAILED")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["chatroomId"], "nope@chatroom");
    assert!(
        failed[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("neither a friend nor a chat room")
    );
    let links: Vec<Delivery> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.kind == "send_link")
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    sim.stop();
}

async fn tasks_an_account_cannot_do_are_refused_at_creation(app: TestApp) {
    let now = 1_700_000_000_000i64;
    app.state
        .db
        .execute(
            query("INSERT INTO staff (tenant_id, userid, name, status, created_at, updated_at) VALUES (1, 'zhangsan', '张三', 1, ?, ?)")
                .bind(now)
                .bind(now),
        )
        .await
        .unwrap();
    let t = &app.admin_token;
    // A WeCom member cannot create a group chat, push into one, or like moments.
    let r = app
        .post(
            "/v1/workbench/auto-group",
            t,
            json!({"accountId": "zhangsan", "groupName": "VIP", "memberWxids": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.error(), "CAPABILITY_NOT_SUPPORTED");
    assert_eq!(r.body["fields"][0]["field"], "accountId");
    assert!(
        r.body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CREATE_GROUP")
    );
    let r = app
        .post(
            "/api/v1/devices/group-pushes",
            t,
            json!({"accountId": "zhangsan", "chatroomIds": ["r1@chatroom"], "messageContent": {"type": "TEXT", "data": {"text": "hi"}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "CAPABILITY_NOT_SUPPORTED"),
        "{:?}",
        r.body
    );
    let r = app
        .put(
            "/api/v1/devices/accounts/zhangsan/auto-like",
            t,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "CAPABILITY_NOT_SUPPORTED"),
        "{:?}",
        r.body
    );
    // An unknown account is 404, bad bodies 400 naming the field; nothing was created.
    let r = app
        .post(
            "/v1/workbench/auto-group",
            t,
            json!({"accountId": "ghost", "groupName": "VIP", "memberWxids": ["a", "b"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error()),
        (404, "SENDER_ACCOUNT_NOT_FOUND"),
        "{:?}",
        r.body
    );
    for (body, field) in [
        (
            json!({"groupName": "VIP", "memberWxids": ["a", "b"]}),
            "accountId",
        ),
        (
            json!({"accountId": "zhangsan", "memberWxids": ["a", "b"]}),
            "groupName",
        ),
        (
            json!({"accountId": "zhangsan", "groupName": "VIP", "memberWxids": ["a"]}),
            "memberWxids",
        ),
    ] {
        let r = app.post("/v1/workbench/auto-group", t, body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "VALIDATION_FAILED"),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["fields"][0]["field"], field);
    }
    let r = app
        .post("/api/v1/devices/group-pushes", t, json!({"accountId": "zhangsan", "chatroomIds": ["r1"], "messageContent": {"type": "VOICE"}}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "MESSAGE_CONTENT_INVALID"),
        "{:?}",
        r.body
    );
    let made = app
        .state
        .db
        .fetch_i64(query("SELECT (SELECT COUNT(*) FROM device_auto_group) + (SELECT COUNT(*) FROM device_group_push) + (SELECT COUNT(*) FROM device_command)"))
        .await
        .unwrap();
    assert_eq!(made, 0);
    // The account list shows both providers with what each can do.
    let r = app.get("/api/v1/devices/accounts", t).await;
    let member = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["accountId"] == "zhangsan")
        .unwrap()
        .clone();
    assert_eq!(member["accountType"], "WEWORK");
    assert!(
        !member["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("CREATE_GROUP"))
    );
    // A viewer may look but not push; a gateway without a valid token is refused.
    let (_, viewer) = app.user_with_role("vera", "viewer").await;
    assert_eq!(
        app.get("/api/v1/devices/accounts", &viewer).await.status,
        200
    );
    let r = app
        .post("/api/v1/devices/group-pushes", &viewer, json!({"accountId": "zhangsan", "chatroomIds": ["r1"], "messageContent": {"type": "TEXT", "data": {"text": "x"}}}))
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .call(
            reqwest::Method::GET,
            "/api/v1/devices/gateway/ws",
            Some("gw_wrong"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error()), (401, "UNAUTHORIZED"));
}

async fn auto_group_is_created_and_welcomed_and_members_get_the_group_welcome(app: TestApp) {
    let sim = gateway(&app).await;
    let t = &app.admin_token;
    // The friends come with the friend sync the gateway's hello starts.
    until("friends synced", || async {
        let r = app.get("/api/v1/devices/accounts/wxid_a/friends", t).await;
        (r.data().as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let r = app
        .post(
            "/v1/workbench/auto-group",
            t,
            json!({"accountId": "wxid_a", "groupName": "VIP 1群", "memberWxids": ["f1", "f2"],
                   "welcomeMessage": "欢迎 {nickname}，今天是 {date}"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.data()["status"], "PENDING");
    let id = r.data()["autoGroupId"].as_i64().unwrap();
    let group = until("the group created", || async {
        let r = app
            .get(&format!("/api/v1/devices/auto-groups/{id}"), t)
            .await;
        (r.data()["status"] == "CREATED").then(|| r.data().clone())
    })
    .await;
    let room = group["chatroomId"].as_str().unwrap().to_string();
    let rooms = sim.rooms("wxid_a");
    assert_eq!(rooms[&room].name, "VIP 1群");
    assert_eq!(rooms[&room].members, vec!["wxid_a", "f1", "f2"]);
    let today = scrm::automation::day_of(scrm::state::now_ms());
    let welcome = until("the welcome in the new group", || async {
        sends_to(&sim.deliveries(), &room)
            .into_iter()
            .find(|d| d.kind == "send_text")
    })
    .await;
    assert_eq!(
        welcome.data["text"],
        format!("欢迎 Fay、Gus，今天是 {today}")
    );

    // A member joining r1 gets r1's welcome, one joining another room the account's default.
    for (room, message) in [
        ("r1@chatroom", "{nickname} 欢迎来到一群 ({date})"),
        ("", "欢迎 {nickname}"),
    ] {
        let r = app
            .put("/api/v1/devices/group-welcomes", t, json!({"accountId": "wxid_a", "chatroomId": room, "message": message, "delaySeconds": 0}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    sim.join_room("wxid_a", "r1@chatroom", "n1", "Nina");
    sim.join_room("wxid_a", "r2@chatroom", "n2", "Ned");
    let w1 = until("r1's welcome", || async {
        sends_to(&sim.deliveries(), "r1@chatroom")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(w1.data["text"], format!("Nina 欢迎来到一群 ({today})"));
    let w2 = until("r2's welcome", || async {
        sends_to(&sim.deliveries(), "r2@chatroom")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(w2.data["text"], "欢迎 Ned");
    // Every event was acknowledged and none was applied twice.
    until("events acknowledged", || async {
        (sim.unacknowledged() == 0).then_some(())
    })
    .await;
    assert_eq!(sends_to(&sim.deliveries(), "r1@chatroom").len(), 1);
    sim.stop();
}

async fn friends_follow_the_device_and_accounts_show_their_state(app: TestApp) {
    let sim = gateway(&app).await;
    let t = &app.admin_token;
    let friends = |app: &TestApp| {
        let t = t.clone();
        let app_base = app.base.clone();
        let client = app.client.clone();
        async move {
            let v: Value = client
                .get(format!("{app_base}/api/v1/devices/accounts/wxid_a/friends"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut w: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["wxid"].as_str().unwrap().to_string())
                .collect();
            w.sort();
            w
        }
    };
    until("first sync", || async {
        (friends(&app).await.len() == 3).then_some(())
    })
    .await;
    sim.new_friend("wxid_a", "f4", "Ivy");
    sim.delete_friend("wxid_a", "f1");
    until("events applied", || async {
        (friends(&app).await == ["f2", "f3", "f4"]).then_some(())
    })
    .await;
    // A friend added on the device without an event comes with a sync.
    sim.add_friend("wxid_a", "f5", "Jo");
    let r = app
        .post("/api/v1/devices/accounts/wxid_a/friends/sync", t, json!({}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    until("sync", || async {
        (friends(&app).await == ["f2", "f3", "f4", "f5"]).then_some(())
    })
    .await;
    // Logged out on the device → EXPIRED, and a push to it is refused; the gateway gone → OFFLINE.
    sim.set_status("wxid_a", AccountStatus::Expired);
    account_status(&app, "wxid_a", "EXPIRED").await;
    let r = app
        .post("/api/v1/devices/group-pushes", t, json!({"accountId": "wxid_a", "chatroomIds": ["r1@chatroom"], "messageContent": {"type": "TEXT", "data": {"text": "x"}}}))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (422, "SENDER_ACCOUNT_EXPIRED"),
        "{:?}",
        r.body
    );
    sim.set_status("wxid_a", AccountStatus::Active);
    account_status(&app, "wxid_a", "ACTIVE").await;
    sim.stop();
    sim.drop_connection();
    account_status(&app, "wxid_a", "OFFLINE").await;
    let r = app.get("/api/v1/devices/gateways", t).await;
    assert_eq!(r.data()[0]["connected"], false);
}

/// A local OpenAI-compatible chat endpoint: answers "echo: <last user message>" and keeps every
/// request it got.
pub(crate) async fn fake_chat() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s = seen.clone();
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let s = s.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let last = body["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
                s.lock().push(json!({"auth": auth, "body": body}));
                axum::Json(json!({"choices": [{"message": {"role": "assistant", "content": format!("echo: {}", last.as_str().unwrap_or(""))}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/v1"), seen)
}

async fn ai_replies_with_history_rate_limit_hours_and_handover(app: TestApp) {
    let sim = gateway(&app).await;
    let t = &app.admin_token;
    let (endpoint, seen) = fake_chat().await;
    let config = json!({"enabled": true, "endpoint": endpoint, "apiKey": "sk-test-123", "model": "gpt-4o-mini",
                        "systemPrompt": "你是客服", "historySize": 10, "maxRepliesPerHour": 2,
                        "handoverKeyword": "人工"});
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/ai-reply",
            t,
            config.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.data()["apiKeySet"], true);
    assert!(
        !r.body.to_string().contains("sk-test-123"),
        "the key is never shown"
    );
    // An account that does not exist cannot be configured.
    let r = app
        .put("/api/v1/devices/accounts/ghost/ai-reply", t, config.clone())
        .await;
    assert_eq!(r.status, 404);

    let replies = |peer: &'static str| {
        let (base, client, t) = (app.base.clone(), app.client.clone(), t.clone());
        async move {
            let v: Value = client
                .get(format!(
                    "{base}/api/v1/devices/ai-replies?accountId=wxid_a&peer={peer}"
                ))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["data"].as_array().unwrap().clone()
        }
    };
    sim.receive_message("wxid_a", "f1", None, "你好，价格多少？");
    let sent = until("the first reply", || async {
        sends_to(&sim.deliveries(), "f1").into_iter().next()
    })
    .await;
    assert_eq!(sent.data["text"], "echo: 你好，价格多少？");
    sim.receive_message("wxid_a", "f1", None, "能便宜点吗");
    until("the second reply", || async {
        (sends_to(&sim.deliveries(), "f1").len() == 2).then_some(())
    })
    .await;
    // The second request carried the system prompt and the conversation so far, with the key.
    let req = seen.lock()[1].clone();
    assert_eq!(req["auth"], "Bearer sk-test-123");
    let roles: Vec<&str> = req["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(req["body"]["messages"][0]["content"], "你是客服");
    assert_eq!(req["body"]["model"], "gpt-4o-mini");
    // Third within the hour: rate limited, logged, not sent.
    sim.receive_message("wxid_a", "f1", None, "在吗");
    let log = until("the rate-limit decision", || async {
        let l = replies("f1").await;
        (l.len() == 3).then_some(l)
    })
    .await;
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["reason"].as_str()),
        (Some("skipped"), Some("rate_limited"))
    );
    assert_eq!(log[1]["status"], "replied");
    assert_eq!(log[1]["reply"], "echo: 能便宜点吗");

    // Another customer says the hand-over keyword: no reply, and the bot stays silent after.
    sim.receive_message("wxid_a", "f2", None, "我要人工客服");
    sim.receive_message("wxid_a", "f2", None, "还在吗");
    let log = until("two decisions for f2", || async {
        let l = replies("f2").await;
        (l.len() == 2).then_some(l)
    })
    .await;
    assert_eq!(
        (log[1]["status"].as_str(), log[1]["reason"].as_str()),
        (Some("handover"), Some("keyword"))
    );
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["reason"].as_str()),
        (Some("skipped"), Some("handed_over"))
    );

    // Outside working hours (a window that has already closed today or not opened yet).
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let start = (now + chrono::Duration::hours(2))
        .format("%H:00")
        .to_string();
    let end = (now + chrono::Duration::hours(3))
        .format("%H:00")
        .to_string();
    let mut closed = config.clone();
    closed["workStart"] = json!(start);
    closed["workEnd"] = json!(end);
    assert_eq!(
        app.put("/api/v1/devices/accounts/wxid_a/ai-reply", t, closed)
            .await
            .status,
        200
    );
    sim.receive_message("wxid_a", "f3", None, "hello");
    let log = until("f3's decision", || async {
        replies("f3").await.into_iter().next()
    })
    .await;
    assert_eq!(
        (log["status"].as_str(), log["reason"].as_str()),
        (Some("skipped"), Some("outside_working_hours"))
    );
    // Nothing but the two replies went to customers.
    let to_people: Vec<Delivery> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.kind == "send_text" && !d.to.ends_with("@chatroom"))
        .collect();
    assert_eq!(to_people.len(), 2, "{to_people:?}");
    assert_eq!(seen.lock().len(), 2);
    // Bad configuration names the field.
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/ai-reply",
            t,
            json!({"endpoint": "ftp://x", "model": "m"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("endpoint"))
    );
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/ai-reply",
            t,
            json!({"endpoint": endpoint, "model": "m", "workStart": "25:00"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("workStart"))
    );
    sim.stop();
}

async fn auto_like_likes_new_moments_once(app: TestApp) {
    let sim = gateway(&app).await;
    let t = &app.admin_token;
    let r = app
        .put(
            "/api/v1/devices/accounts/wxid_a/auto-like",
            t,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m1 = sim.post_moment("wxid_a", "f1", "周末去爬山");
    let m2 = sim.post_moment("wxid_a", "f2", "新店开业");
    until("both liked", || async {
        (sim.liked("wxid_a").len() == 2).then_some(())
    })
    .await;
    // The scheduled fetch sees the same moments again: nothing is liked twice.
    app.state
        .jobs
        .enqueue_now(scrm_jobs::NewJob::new("devices.auto_like", &json!({})).unwrap())
        .await
        .unwrap();
    until("the fetch done", || async {
        let n = app
            .state
            .db
            .fetch_i64(query("SELECT COUNT(*) FROM device_command WHERE command = 'fetch_moments' AND status = 'done'"))
            .await
            .unwrap();
        (n >= 1).then_some(())
    })
    .await;
    let mut liked = sim.liked("wxid_a");
    liked.sort();
    let mut want = vec![m1, m2];
    want.sort();
    assert_eq!(liked, want);
    sim.stop();
}

/// Runs the moments collection job now and waits until every `fetch_moments` it caused (the
/// pages it walked) is done; returns the count of done fetches.
async fn collect_moments(app: &TestApp, done_before: i64) -> i64 {
    app.state
        .jobs
        .enqueue_now(scrm_jobs::NewJob::new("devices.moments.collect", &json!({})).unwrap())
        .await
        .unwrap();
    until("the collection done", || async {
        // Both counts from one statement: read apart, the last page could be acknowledged in
        // between and the count of done fetches come out one short.
        let (done, open): (i64, i64) = app
            .state
            .db
            .fetch_one(query(
                "SELECT COUNT(CASE WHEN status = 'done' THEN 1 END), \
                 COUNT(CASE WHEN status <> 'done' THEN 1 END) \
                 FROM device_command WHERE command = 'fetch_moments'",
            ))
            .await
            .unwrap();
        (done > done_before && open == 0).then_some(done)
    })
    .await
}

async fn moments_collection_lists_each_moment_once_newest_first(app: TestApp) {
    let sim = gateway(&app).await;
    // Two moments a page, so a collection walks pages; the device does not announce these
    // moments, so only the collection can bring them.
    sim.set_moments_page_size(2);
    let texts = ["周末去爬山", "新店开业", "早安", "晚安"];
    let mut ids = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let author = if i % 2 == 0 { "f1" } else { "f2" };
        ids.push(sim.post_moment_unannounced("wxid_a", author, t));
    }
    let t = &app.admin_token;
    let r = app.get("/api/v1/devices/moments", t).await;
    assert_eq!(
        (r.status, &r.data()["total"]),
        (200, &json!(0)),
        "{:?}",
        r.body
    );

    let done = collect_moments(&app, 0).await;
    assert_eq!(done, 2, "two pages of two");
    let r = app.get("/api/v1/devices/moments?account=wxid_a", t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed: Vec<&str> = r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["momentId"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(r.data()["total"], 4);
    let first = &r.data()["list"][0];
    assert_eq!(
        (
            &first["text"],
            &first["author"],
            &first["authorNickname"],
            &first["liked"]
        ),
        (&json!("晚安"), &json!("f2"), &json!("Gus"), &json!(false))
    );

    // A new moment: the next collection stores it and stops at the page with nothing new;
    // nothing is stored twice.
    let newest = sim.post_moment_unannounced("wxid_a", "f3", "新的一周");
    collect_moments(&app, done).await;
    let r = app.get("/api/v1/devices/moments?size=2", t).await;
    assert_eq!(r.data()["total"], 5, "{:?}", r.body);
    assert_eq!(r.data()["list"][0]["momentId"], json!(newest));
    assert_eq!(r.data()["list"].as_array().unwrap().len(), 2);
    let stored = crate::helpers::n(&app, "SELECT COUNT(*) FROM device_moment".into()).await;
    assert_eq!(stored, 5);

    // Filters: by author, and a bad account or time named.
    let r = app.get("/api/v1/devices/moments?author=f1", t).await;
    assert_eq!(r.data()["total"], 2, "{:?}", r.body);
    let r = app
        .get("/api/v1/devices/moments?since=2999-01-01T00:00:00Z", t)
        .await;
    assert_eq!(r.data()["total"], 0, "{:?}", r.body);
    let r = app.get("/api/v1/devices/moments?since=yesterday", t).await;
    assert_eq!(
        (r.status, r.body["fields"][0]["field"].as_str()),
        (400, Some("since"))
    );
    let r = app
        .get("/api/v1/devices/moments?account=wxid_nobody", t)
        .await;
    assert_eq!((r.status, r.error()), (404, "SENDER_ACCOUNT_NOT_FOUND"));

    // Another tenant sees none of them.
    let (_, other) = app.other_tenant_admin("other", "otheradmin").await;
    let r = app.get("/api/v1/devices/moments", &other).await;
    assert_eq!(
        (r.status, &r.data()["total"]),
        (200, &json!(0)),
        "{:?}",
        r.body
    );
    sim.stop();
}

/// Moments posted longer ago than the retention (default 90 days) are not collected, and the
/// daily clean-up (`devices.moments.cleanup`, scheduled) deletes stored moments once they are
/// that old, for every tenant, leaving the younger ones listed.
async fn moments_past_the_retention_are_not_kept(app: TestApp) {
    let sim = gateway(&app).await;
    sim.set_moments_page_size(2);
    let day = 86_400_000i64;
    let now = scrm::state::now_ms();
    // Two moments from 100 days ago, then three recent ones (posted in time order).
    sim.post_moment_unannounced_at("wxid_a", "f1", "去年的旅行", now - 100 * day);
    sim.post_moment_unannounced_at("wxid_a", "f2", "旧照片", now - 100 * day + 1);
    let recent: Vec<String> = ["一", "二", "三"]
        .iter()
        .map(|t| sim.post_moment_unannounced("wxid_a", "f1", t))
        .collect();
    // Pages [three, two], [one, old] (one new), [old] (nothing new): the walk stops there.
    let done = collect_moments(&app, 0).await;
    assert_eq!(done, 3);
    let t = &app.admin_token;
    let r = app.get("/api/v1/devices/moments", t).await;
    assert_eq!(r.data()["total"], 3, "{:?}", r.body);
    let listed: Vec<&str> = r.data()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["momentId"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = recent.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);

    // 91 days later for the oldest stored one (and for another tenant's moment): the clean-up
    // deletes exactly those.
    app.state
        .db
        .execute(
            query("UPDATE device_moment SET posted_at = ? WHERE moment_id = ?")
                .bind(now - 91 * day)
                .bind(recent[0].as_str()),
        )
        .await
        .unwrap();
    app.state
        .db
        .execute(
            query("INSERT INTO device_moment (tenant_id, account_wxid, moment_id, author_wxid, text, liked, seen_at, posted_at) \
                   VALUES (2, 'wxid_z', 'm-other', 'fz', 'old', 0, ?, ?)")
                .bind(now - 95 * day)
                .bind(now - 95 * day),
        )
        .await
        .unwrap();
    let scheduled = crate::helpers::n(
        &app,
        "SELECT COUNT(*) FROM job_schedule WHERE name = 'devices.moments.cleanup'".into(),
    )
    .await;
    assert_eq!(scheduled, 1, "the daily clean-up is scheduled");
    app.state
        .jobs
        .enqueue_now(scrm_jobs::NewJob::new("devices.moments.cleanup", &json!({})).unwrap())
        .await
        .unwrap();
    until("the clean-up done", || async {
        let left = crate::helpers::n(&app, "SELECT COUNT(*) FROM device_moment".into()).await;
        (left == 2).then_some(())
    })
    .await;
    let r = app.get("/api/v1/devices/moments", t).await;
    assert_eq!(r.data()["total"], 2, "{:?}", r.body);
    assert_eq!(r.data()["list"][1]["momentId"], json!(recent[1]));
    sim.stop();
}

scrm_db::db_tests!(crate::gateway::spawn;
    moments_past_the_retention_are_not_kept,
    group_push_reaches_every_room_once_across_gateway_drops,
    tasks_an_account_cannot_do_are_refused_at_creation,
    auto_group_is_created_and_welcomed_and_members_get_the_group_welcome,
    friends_follow_the_device_and_accounts_show_their_state,
    ai_replies_with_history_rate_limit_hours_and_handover,
    auto_like_likes_new_moments_once,
    moments_collection_lists_each_moment_once_newest_first,
);

/// scrm whose gateway lease lapses 1.5 s after its holder stops renewing it.
pub async fn spawn_short_lease(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, SHORT_LEASE).await;
    quiet_device_schedules(&app).await;
    app
}

const SHORT_LEASE: &[(&str, &str)] = &[
    ("SCRM_DEVICE_SEND_GAP_MS", "0-0"),
    ("SCRM_GATEWAY_LEASE_MS", "1500"),
];

pub(crate) fn ws_url(app: &TestApp) -> String {
    format!(
        "{}/api/v1/devices/gateway/ws",
        app.base.replace("http://", "ws://")
    )
}

async fn push(app: &TestApp, rooms: &[String]) -> Value {
    push_completed(
        app,
        json!({"accountId": "wxid_a", "chatroomIds": rooms,
               "messageContent": {"type": "TEXT", "data": {"text": "hi"}}}),
    )
    .await
}

async fn lease_owner(app: &TestApp) -> Option<String> {
    app.state
        .db
        .fetch_optional::<(Option<String>,)>(query("SELECT lease_owner FROM device_gateway"))
        .await
        .unwrap()
        .and_then(|(o,)| o)
}

/// A gateway connected to two scrm processes on one database gets each command once, through
/// the session holding its lease; when that process dies the other takes over once the lease
/// lapses and sends the rest, each once.
async fn a_gateway_on_two_processes_gets_each_command_once(app: TestApp) {
    let app2 =
        crate::helpers::spawn_app_on(app.state.config.database_url.expose(), SHORT_LEASE).await;
    let token = register(&app).await;
    let sim = GatewaySim::new();
    sim.add_device("wxid_a", "Alice's phone");
    sim.add_friend("wxid_a", "f1", "Fay");
    let rooms: Vec<String> = (1..=10).map(|i| format!("r{i}@chatroom")).collect();
    for r in &rooms {
        sim.add_room("wxid_a", r, r, &["wxid_a", "f1"]);
    }
    let (url1, url2) = (ws_url(&app), ws_url(&app2));
    sim.connect(&url1, &token, Duration::from_millis(100));
    account_status(&app, "wxid_a", "ACTIVE").await;
    let first = until("process 1 holds the lease", || lease_owner(&app)).await;
    // The same gateway connects to the second process too: it stays on standby.
    sim.connect(&url2, &token, Duration::from_millis(100));
    until("both connected", || async {
        (sim.connections() >= 2).then_some(())
    })
    .await;

    // Pushes created on either process reach every room once, all through process 1.
    let done = push(&app2, &rooms[..3]).await;
    assert_eq!(done["successCount"], 3);
    let done = push(&app, &rooms[3..5]).await;
    assert_eq!(done["successCount"], 2);
    let received = sim.received();
    assert!(
        received.iter().all(|(url, _)| *url == url1),
        "only the lease holder sends: {received:?}"
    );
    let mut ids: Vec<&String> = received.iter().map(|(_, id)| id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no command was sent twice: {received:?}");
    assert_eq!(sim.duplicates(), 0);
    for room in &rooms[..5] {
        assert_eq!(sends_to(&sim.deliveries(), room).len(), 1, "{room}");
    }
    assert_eq!(lease_owner(&app).await, Some(first.clone()));

    // Process 1 dies (no clean close: its lease is left to lapse). Process 2 takes the gateway
    // over and sends the rest, each once.
    let state1 = app.state.clone();
    drop(app);
    state1.devices.halt();
    let done = push(&app2, &rooms[5..]).await;
    assert_eq!(done["successCount"], 5);
    let deliveries = sim.deliveries();
    for room in &rooms {
        assert_eq!(
            sends_to(&deliveries, room).len(),
            1,
            "{room}: {deliveries:?}"
        );
    }
    let second = lease_owner(&app2).await.expect("a holder");
    assert_ne!(second, first);
    let after: Vec<(String, String)> = sim.received().into_iter().skip(n).collect();
    assert!(
        after.iter().all(|(url, _)| *url == url2),
        "process 2 sends after the takeover: {after:?}"
    );
    // Each push command was acknowledged once: one result per room, all successful.
    let acked = crate::helpers::n(
        &app2,
        "SELECT COUNT(*) FROM device_command WHERE source = 'group_push' AND status = 'done'"
            .into(),
    )
    .await;
    assert_eq!(acked, 10);
    account_status(&app2, "wxid_a", "ACTIVE").await;
    let r = app2
        .get("/api/v1/devices/gateways", &app2.admin_token)
        .await;
    assert_eq!(r.data()[0]["connected"], true);
    sim.stop();
}

scrm_db::db_tests!(crate::gateway::spawn_short_lease;
    a_gateway_on_two_processes_gets_each_command_once,
);
