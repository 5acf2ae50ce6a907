use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_per_minute_rate_limit_answers_45009_with_list_fields() {
    let mut cfg = cfg();
    cfg.limits.per_api_per_minute = 5;
    let t = T::with(cfg).await;
    let uid = t.staff_with(1);
    let mut codes = Vec::new();
    for _ in 0..7 {
        let v = t
            .post(
                "/cgi-bin/externalcontact/batch/get_by_user",
                json!({"userid_list": [uid]}),
            )
            .await;
        if v["errcode"] == 45009 {
            assert_eq!(v["external_contact_list"], json!([]));
            assert!(
                v["errmsg"]
                    .as_str()
                    .unwrap()
                    .contains("api freq out of limit")
            );
        }
        codes.push(v["errcode"].as_i64().unwrap());
    }
    // The window may roll over mid-test; at least the budget must hold within a minute.
    assert!(
        codes.iter().filter(|&&c| c == 45009).count() >= 1,
        "{codes:?}"
    );
    assert!(codes.iter().filter(|&&c| c == 0).count() <= 10);
    // Other APIs have their own budget.
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        0
    );
}

#[tokio::test]
async fn injected_error_rates_are_roughly_honoured() {
    let t = T::start().await;
    t.sim.update_config(|c| c.faults.busy = 0.3);
    let mut busy = 0;
    let n = 400;
    for _ in 0..n {
        let v = t
            .get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await;
        match v["errcode"].as_i64().unwrap() {
            -1 => busy += 1,
            0 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let rate = f64::from(busy) / f64::from(n);
    assert!((0.2..0.4).contains(&rate), "busy rate {rate}");
}

#[tokio::test]
async fn faults_can_be_changed_at_runtime_through_the_admin_api() {
    let t = T::start().await;
    let r = t
        .http
        .put(t.url("/sim/admin/config"))
        .json(&json!({"faults": {"token_expired": 1.0}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        42001
    );
    t.http
        .put(t.url("/sim/admin/config"))
        .json(&json!({"faults": {"token_expired": 0.0, "freq_limit": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        45009
    );
    t.http
        .put(t.url("/sim/admin/config"))
        .json(&json!({"faults": {"freq_limit": 0.0, "concurrent_limit": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
            .await["errcode"],
        45033
    );
}

#[tokio::test]
async fn http_500_and_dropped_connections_are_transport_errors() {
    let t = T::start().await;
    t.sim.update_config(|c| c.faults.http_500 = 1.0);
    let r = t
        .http
        .get(t.url("/cgi-bin/externalcontact/get_follow_user_list"))
        .query(&[("access_token", &t.token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    t.sim.update_config(|c| {
        c.faults.http_500 = 0.0;
        c.faults.drop_connection = 1.0;
    });
    let r = t
        .http
        .get(t.url("/cgi-bin/externalcontact/get_follow_user_list"))
        .query(&[("access_token", &t.token)])
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(
        failed,
        "a dropped connection must not yield a complete body"
    );
}

#[tokio::test]
async fn latency_and_slow_replies_delay_answers() {
    let t = T::start().await;
    t.sim.update_config(|c| {
        c.faults.latency_min_ms = 150;
        c.faults.latency_max_ms = 150;
    });
    let start = Instant::now();
    t.get("/cgi-bin/externalcontact/get_follow_user_list", &[])
        .await;
    assert!(start.elapsed() >= Duration::from_millis(150));
    t.sim.update_config(|c| {
        c.faults.latency_max_ms = 0;
        c.faults.latency_min_ms = 0;
        c.faults.slow = 1.0;
        c.faults.slow_ms = 400;
    });
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let r = quick
        .get(t.url("/cgi-bin/externalcontact/get_follow_user_list"))
        .query(&[("access_token", &t.token)])
        .send()
        .await;
    assert!(r.is_err(), "client timeout trips on a slow reply");
}

#[tokio::test]
async fn too_many_concurrent_calls_get_45033() {
    let mut cfg = cfg();
    cfg.limits.max_concurrent_per_api = 1;
    cfg.faults.slow = 1.0;
    cfg.faults.slow_ms = 300;
    let t = T::with(cfg).await;
    let futs: Vec<_> = (0..4)
        .map(|_| t.get("/cgi-bin/externalcontact/get_follow_user_list", &[]))
        .collect();
    let results = futures::future::join_all(futs).await;
    let limited = results.iter().filter(|v| v["errcode"] == 45033).count();
    let okay = results.iter().filter(|v| v["errcode"] == 0).count();
    assert_eq!(limited + okay, 4);
    assert_eq!(okay, 1, "one slot, held by the slow call");
}
