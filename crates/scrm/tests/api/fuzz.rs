//! Bad input over the whole route table: generated JSON bodies for every route that takes one,
//! and generated query filters for every list route. Whatever arrives, the answer is a clear
//! error or a success — never a 500, never a panic (the panic layer would answer 500).
//!
//! The values come from proptest strategies run with a fixed seed (`TestRunner::deterministic`),
//! so every run sends the same requests: a failure reproduces, and a pass is not luck. The
//! field names are drawn mostly from the API's own vocabulary, so bodies reach the validation
//! of real fields with wrong types, boundary numbers, odd strings and nesting.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use scrm::http::routes::Access;
use serde_json::{Map, Value};

use crate::helpers::TestApp;

/// Field names the API's bodies and filters use.
const FIELDS: &[&str] = &[
    "name",
    "tags",
    "tagIds",
    "targetIds",
    "target",
    "customerIds",
    "messageContent",
    "type",
    "data",
    "text",
    "templateId",
    "steps",
    "stepType",
    "stepName",
    "delayTime",
    "delayUnit",
    "actionContent",
    "content",
    "taskName",
    "taskType",
    "targetType",
    "scheduledTime",
    "senderAccountId",
    "staff",
    "userid",
    "state",
    "username",
    "password",
    "role",
    "displayName",
    "materialType",
    "title",
    "url",
    "page",
    "size",
    "pageSize",
    "current",
    "status",
    "externalUserid",
    "followUserId",
    "ruleType",
    "days",
    "stages",
    "code",
    "isFinal",
    "corpId",
    "corpSecret",
    "agentId",
    "expiresInDays",
    "ids",
    "id",
    "action",
    "staffId",
    "fileName",
    "fileData",
    "keyword",
    "startTime",
    "endTime",
    "mobile",
    "gender",
    "remark",
    "stage",
    "reason",
    "staffUserids",
    "executionIds",
    "enabled",
    "threshold",
    "window",
    "groupId",
    "tagId",
    "customerId",
    "sort",
    "order",
    "limit",
    "triggerType",
    "templateType",
];

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        Just(String::new()),
        Just("2099-11-11T00:00:00".to_string()),
        Just("'; DROP TABLE customer; --".to_string()),
        Just("<script>alert(1)</script>".to_string()),
        Just("\u{0}\u{ffff}%00".to_string()),
        Just("x".repeat(5_000)),
        Just("-1".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(u32::MAX as i64 + 1)
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Bodies: mostly objects (as the routes expect), some anything-at-all.
fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::btree_map(field(), json(), 0..10)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        1 => json(),
    ]
}

fn query_string() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((field(), text()), 0..6)
}

fn sample<T: std::fmt::Debug>(s: impl Strategy<Value = T>, runner: &mut TestRunner) -> T {
    s.new_tree(runner).expect("a value").current()
}

/// A path with every `{param}` set to an id no row has (so nothing that exists is changed; a
/// handler still parses and checks the body first).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "987654" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Routes left out: signing ourselves out would turn every later answer into a 401.
fn skipped(path: &str) -> bool {
    path.ends_with("/logout")
}

async fn generated_bodies_never_get_a_500(app: TestApp) {
    let mut runner = TestRunner::deterministic();
    let mut sent = 0;
    for r in app.routes.iter().filter(|r| {
        !r.page
            && r.access != Access::Public
            && [Method::POST, Method::PUT, Method::DELETE, Method::PATCH].contains(&r.method)
            && !skipped(r.path)
    }) {
        let path = concrete(r.path);
        for _ in 0..12 {
            let b = sample(body(), &mut runner);
            let resp = app
                .call(
                    r.method.clone(),
                    &path,
                    Some(&app.admin_token),
                    Some(b.clone()),
                )
                .await;
            sent += 1;
            assert!(
                resp.status != 500,
                "{} {path} answered {} to {b}: {:?}",
                r.method,
                resp.status,
                resp.body
            );
            if resp.status >= 400 {
                assert!(
                    resp.body["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{} {path} answered {} without an error name: {:?}",
                    r.method,
                    resp.status,
                    resp.body
                );
            }
        }
    }
    // The admin's session survived everything: nothing generated touched it.
    assert_eq!(
        app.get("/api/v1/auth/me", &app.admin_token).await.status,
        200
    );
    assert!(sent > 300, "{sent} requests");
}

async fn generated_query_filters_never_get_a_500(app: TestApp) {
    let mut runner = TestRunner::deterministic();
    let mut sent = 0;
    for r in app.routes.iter().filter(|r| {
        !r.page && r.access != Access::Public && r.method == Method::GET && !r.path.contains('{')
    }) {
        for _ in 0..10 {
            let q = sample(query_string(), &mut runner);
            let resp = app
                .client
                .get(format!("{}{}", app.base, r.path))
                .query(&q)
                .bearer_auth(&app.admin_token)
                .send()
                .await
                .unwrap();
            sent += 1;
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            assert_ne!(status, 500, "GET {} with {q:?}: {body}", r.path);
        }
    }
    assert!(sent > 200, "{sent} requests");
}

scrm_db::db_tests!(crate::helpers::spawn_app;
    generated_bodies_never_get_a_500,
    generated_query_filters_never_get_a_500,
);
