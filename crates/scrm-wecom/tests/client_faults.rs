//! The client's fault paths against a scriptable fake WeCom (tests/support).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scrm_wecom::client::{
    ClientConfig, MediaFile, MediaType, MsgTemplate, NoRateLimit, Rate, RateLimitConfig,
    RateLimiter, RedisRateLimiter, RedisTokenCache, Text, WeComClient, WeComError,
};
use serde_json::json;
use support::{CORP, Fake, Reply, SECRET};

/// A timeout far above the local fake's answers, so a stalled machine does not turn an answer
/// into a timeout and a retry (and the exact call counts wrong); the timeout test sets its own.
fn config(fake: &Fake) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        ..ClientConfig::for_simulator(&fake.base_url)
    }
}

fn client(fake: &Fake) -> WeComClient {
    WeComClient::in_memory(config(fake)).unwrap()
}

#[tokio::test]
async fn a_call_fetches_a_token_once_and_reuses_it() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    for _ in 0..3 {
        let user = app.user_get("zhangsan").await.unwrap();
        assert_eq!(
            (user.userid.as_str(), user.gender.as_str()),
            ("zhangsan", "1")
        );
    }
    assert_eq!(fake.gettoken_calls(), 1);
    assert_eq!(fake.calls("/cgi-bin/user/get"), 3);
}

#[tokio::test]
async fn an_expired_token_is_dropped_refreshed_and_the_call_retried_once() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    app.user_get("a").await.unwrap();
    fake.expire_token();
    app.user_get("b").await.unwrap();
    assert_eq!(fake.gettoken_calls(), 2);
    assert_eq!(
        fake.calls("/cgi-bin/user/get"),
        3,
        "one rejected call, one retry"
    );
}

#[tokio::test]
async fn a_token_that_stays_invalid_is_retried_only_once() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/user/get", [Reply::Err(40014), Reply::Err(40014)]);
    let err = app.user_get("a").await.unwrap_err();
    assert_eq!(err.errcode(), Some(40014));
    assert!(err.is_token_invalid());
    assert_eq!(fake.calls("/cgi-bin/user/get"), 2);
    assert_eq!(fake.gettoken_calls(), 2);
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_before_it_fails() {
    let fake = Fake::start().await;
    fake.state.expires_in.store(2, Ordering::SeqCst);
    let app = client(&fake).app(CORP, SECRET);
    app.user_get("a").await.unwrap();
    // Half of a 2 s lifetime: refreshed proactively after 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.user_get("a").await.unwrap();
    assert_eq!(fake.gettoken_calls(), 2);
    assert_eq!(fake.calls("/cgi-bin/user/get"), 2, "no call was rejected");
}

#[tokio::test]
async fn fifty_concurrent_callers_make_exactly_one_gettoken() {
    let fake = Fake::start().await;
    fake.state.gettoken_delay_ms.store(150, Ordering::SeqCst);
    let app = client(&fake).app(CORP, SECRET);
    let calls = (0..50).map(|i| {
        let app = app.clone();
        tokio::spawn(async move { app.user_get(&format!("u{i}")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert_eq!(fake.gettoken_calls(), 1);
}

#[tokio::test]
async fn system_busy_is_retried_with_backoff_at_most_three_tries() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/user/get", [Reply::Err(-1), Reply::Err(-1)]);
    app.user_get("a").await.unwrap();
    assert_eq!(fake.calls("/cgi-bin/user/get"), 3);

    fake.script(
        "/cgi-bin/user/get",
        [Reply::Err(-1), Reply::Err(-1), Reply::Err(-1)],
    );
    let err = app.user_get("a").await.unwrap_err();
    assert_eq!(err.errcode(), Some(-1));
    assert!(err.is_transient());
    assert_eq!(fake.calls("/cgi-bin/user/get"), 6);
}

#[tokio::test]
async fn frequency_limit_blocks_for_the_configured_window_then_retries() {
    let fake = Fake::start().await;
    let mut cfg = config(&fake);
    cfg.retry.freq_limit_block = Duration::from_millis(300);
    let app = WeComClient::in_memory(cfg).unwrap().app(CORP, SECRET);
    app.user_get("warm-up").await.unwrap();
    fake.script("/cgi-bin/user/get", [Reply::Err(45009)]);
    let started = Instant::now();
    app.user_get("a").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Other calls to that API for that corp wait out the block too.
    fake.script("/cgi-bin/user/get", [Reply::Err(45009), Reply::Err(45009)]);
    let err = app.user_get("a").await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
}

#[tokio::test]
async fn concurrency_limit_backs_off_and_retries() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/user/get", [Reply::Err(45033), Reply::Err(45033)]);
    app.user_get("a").await.unwrap();
    assert_eq!(fake.calls("/cgi-bin/user/get"), 3);
}

#[tokio::test]
async fn a_timed_out_write_is_not_repeated_but_a_read_is() {
    let fake = Fake::start().await;
    let cfg = ClientConfig {
        timeout: Duration::from_millis(500),
        ..config(&fake)
    };
    let app = WeComClient::in_memory(cfg).unwrap().app(CORP, SECRET);
    let slow = Reply::Delay(
        Duration::from_millis(900),
        json!({"errcode": 0, "errmsg": "ok", "msgid": "m"}),
    );
    fake.script("/cgi-bin/externalcontact/add_msg_template", [slow.clone()]);
    let template = MsgTemplate {
        sender: "zhangsan".into(),
        text: Some(Text {
            content: "hello".into(),
        }),
        ..MsgTemplate::default()
    };
    let err = app.add_msg_template(&template).await.unwrap_err();
    assert!(matches!(err, WeComError::Timeout { .. }), "{err:?}");
    assert_eq!(fake.calls("/cgi-bin/externalcontact/add_msg_template"), 1);

    fake.script("/cgi-bin/user/get", [slow.clone(), Reply::Status(502)]);
    app.user_get("a").await.unwrap();
    assert_eq!(fake.calls("/cgi-bin/user/get"), 3);
}

#[tokio::test]
async fn errors_never_carry_the_token_or_the_secret() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/user/get", [Reply::Status(404)]);
    let err = app.user_get("a").await.unwrap_err();
    let token = fake.state.valid_token.lock().clone();
    for text in [err.to_string(), format!("{err:?}"), format!("{app:?}")] {
        assert!(!text.contains(&token) && !text.contains(SECRET), "{text}");
    }
    // A refused connection (reqwest would print the URL, token included).
    let dead = WeComClient::in_memory(ClientConfig::for_simulator("http://127.0.0.1:9")).unwrap();
    let err = dead.app(CORP, SECRET).user_get("a").await.unwrap_err();
    assert!(matches!(err, WeComError::Http { .. }), "{err:?}");
    assert!(
        !err.to_string().contains(SECRET) && !format!("{err:?}").contains(SECRET),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_without_retry_loops() {
    let fake = Fake::start().await;
    let err = client(&fake)
        .app(CORP, "wrong")
        .user_get("a")
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(40001));
    assert_eq!(fake.gettoken_calls(), 1);
    assert_eq!(fake.calls("/cgi-bin/user/get"), 0);
}

#[tokio::test]
async fn a_member_without_customers_lists_empty() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/externalcontact/list", [Reply::Err(84061)]);
    assert!(app.list_customers("lonely").await.unwrap().is_empty());
}

#[tokio::test]
async fn cursors_are_followed_across_pages() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    let page = |ids: &[&str], next: &str| {
        Reply::Json(json!({"errcode": 0, "errmsg": "ok", "next_cursor": next,
            "group_chat_list": ids.iter().map(|id| json!({"chat_id": id, "status": 0})).collect::<Vec<_>>()}))
    };
    fake.script(
        "/cgi-bin/externalcontact/groupchat/list",
        [
            page(&["a", "b"], "c1"),
            page(&["c"], "c2"),
            page(&["d"], ""),
        ],
    );
    let all = app.groupchat_list_all(0, None).await.unwrap();
    let ids: Vec<_> = all.iter().map(|c| c.chat_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    let requests = fake.state.requests.lock().clone();
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .filter(|r| r.0 == "/cgi-bin/externalcontact/groupchat/list")
        .map(|r| serde_json::from_slice(&r.2).unwrap())
        .collect();
    assert_eq!(bodies[0].get("cursor"), None);
    assert_eq!(bodies[1]["cursor"], "c1");
    assert_eq!(bodies[2]["limit"], 1000);
}

#[tokio::test]
async fn batch_get_by_user_chunks_userids_and_follows_cursors() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    let row = |id: &str, user: &str| {
        json!({"external_contact": {"external_userid": id, "name": id, "type": 1, "gender": 0},
        "follow_info": {"userid": user, "createtime": 1, "tag_id": ["et1"], "oper_userid": user, "add_way": 1}})
    };
    let page = |rows: Vec<serde_json::Value>, next: &str| {
        Reply::Json(
            json!({"errcode": 0, "errmsg": "ok", "external_contact_list": rows, "next_cursor": next}),
        )
    };
    fake.script(
        "/cgi-bin/externalcontact/batch/get_by_user",
        [
            page(vec![row("wm1", "u1")], "k"),
            page(vec![row("wm2", "u2")], ""),
            page(vec![row("wm3", "u150")], ""),
        ],
    );
    let userids: Vec<String> = (0..150).map(|i| format!("u{i}")).collect();
    let all = app.list_all_customers_by_user(userids).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].follow_info.tag_id, ["et1"]);
    let requests = fake.state.requests.lock().clone();
    let sizes: Vec<usize> = requests
        .iter()
        .filter(|r| r.0.ends_with("batch/get_by_user"))
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.2).unwrap()["userid_list"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[tokio::test]
async fn media_is_uploaded_as_multipart_part_media() {
    let fake = Fake::start().await;
    let app = client(&fake).app(CORP, SECRET);
    fake.script("/cgi-bin/media/upload", [Reply::Json(json!({"errcode": 0, "errmsg": "", "type": "image", "media_id": "MID", "created_at": "1380000000"}))]);
    let file = MediaFile {
        filename: "a.png".into(),
        content_type: "image/png".into(),
        bytes: b"\x89PNG-not-really".to_vec(),
    };
    let r = app.upload_media(MediaType::Image, file).await.unwrap();
    assert_eq!((r.media_id.as_str(), r.created_at), ("MID", 1_380_000_000));
    let requests = fake.state.requests.lock().clone();
    let (_, query, body, content_type) = requests
        .iter()
        .find(|r| r.0 == "/cgi-bin/media/upload")
        .unwrap();
    assert_eq!(query["type"], "image");
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(body);
    assert!(
        body.contains("name=\"media\"") && body.contains("filename=\"a.png\""),
        "{body}"
    );
}

#[tokio::test]
async fn the_rate_limiter_paces_calls() {
    let fake = Fake::start().await;
    let mut cfg = config(&fake);
    cfg.rate_limits = RateLimitConfig::unlimited();
    cfg.rate_limits
        .per_api
        .insert("user/get".into(), Rate::new(20.0, 1));
    let app = WeComClient::in_memory(cfg).unwrap().app(CORP, SECRET);
    let started = Instant::now();
    for _ in 0..6 {
        app.user_get("a").await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn two_processes_sharing_redis_fetch_one_token() {
    if !support::redis_available().await {
        return;
    }
    let fake = Fake::start().await;
    fake.state.gettoken_delay_ms.store(200, Ordering::SeqCst);
    let prefix = format!("scrm-wecom-test:{}", uuid_like());
    let mut apps = Vec::new();
    for _ in 0..2 {
        let cache = Arc::new(
            RedisTokenCache::connect("redis://127.0.0.1:6379", prefix.clone())
                .await
                .unwrap(),
        );
        let client = WeComClient::new(config(&fake), cache, Arc::new(NoRateLimit)).unwrap();
        apps.push(client.app(CORP, SECRET));
    }
    let calls = (0..40).map(|i| {
        let app = apps[i % 2].clone();
        tokio::spawn(async move { app.user_get("a").await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert_eq!(fake.gettoken_calls(), 1);

    // Invalidation is compare-and-delete: an old token cannot evict a new one.
    fake.expire_token();
    apps[0].user_get("a").await.unwrap();
    apps[1].user_get("a").await.unwrap();
    assert_eq!(fake.gettoken_calls(), 2);
}

#[tokio::test]
async fn the_redis_rate_limiter_is_shared_between_processes() {
    if !support::redis_available().await {
        return;
    }
    let prefix = format!("scrm-wecom-test:{}", uuid_like());
    let mut limits = RateLimitConfig::unlimited();
    limits.per_api.insert("x".into(), Rate::new(20.0, 2));
    let a = RedisRateLimiter::connect("redis://127.0.0.1:6379", prefix.clone(), limits.clone())
        .await
        .unwrap();
    let b = RedisRateLimiter::connect("redis://127.0.0.1:6379", prefix.clone(), limits)
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..12 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        limiter.acquire(CORP, "x").await.unwrap();
    }
    // 2 at once, then 10 more at 20/s: about 500 ms.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    a.penalize(CORP, "x", Duration::from_millis(300))
        .await
        .unwrap();
    let started = Instant::now();
    b.acquire(CORP, "x").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

/// A fresh Redis key prefix per test, so runs never see each other's state.
fn uuid_like() -> String {
    format!("{:x}-{:x}", std::process::id(), rand::random::<u64>())
}
