//! The client's overhead per call: the same `externalcontact/get` calls against the simulator,
//! once through a bare reqwest client and once through `WeComClient` (token cache, rate-limit
//! check, retry policy, typed decoding, metrics), one at a time so the difference is per call.
//!
//! `cargo run -p scrm-wecom --release --example client_overhead -- [calls]`

use std::time::Instant;

use scrm_wecom::{ClientConfig, WeComClient};
use scrm_wecom_sim::{SimConfig, Simulator};
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000);
    let mut cfg = SimConfig::default();
    cfg.size.customers = 10_000;
    cfg.limits.per_api_per_minute = 0;
    cfg.limits.per_api_per_hour = 0;
    let sim = Simulator::start(cfg.clone()).await?;
    let base = sim.base_url();
    let ids: Vec<String> = {
        let c = sim.company();
        (0..1_000u32).map(|i| c.external_userid(i)).collect()
    };

    let http = reqwest::Client::new();
    let token: Value = http
        .get(format!("{base}/cgi-bin/gettoken"))
        .query(&[
            ("corpid", &cfg.creds.corp_id),
            ("corpsecret", &cfg.creds.app_secret),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let client = WeComClient::in_memory(ClientConfig::for_simulator(&base))?;
    let app = client.app(cfg.creds.corp_id.clone(), cfg.creds.app_secret.clone());
    // Warm both paths (connection pools, the client's token).
    for id in ids.iter().take(100) {
        app.get_customer(id, "").await?;
        http.get(format!("{base}/cgi-bin/externalcontact/get"))
            .query(&[("access_token", token.as_str()), ("external_userid", id)])
            .send()
            .await?
            .json::<Value>()
            .await?;
    }

    let mut raw_us = Vec::with_capacity(calls);
    let mut client_us = Vec::with_capacity(calls);
    // Interleave the two so machine noise hits both alike.
    for i in 0..calls {
        let id = &ids[i % ids.len()];
        let t = Instant::now();
        let v: Value = http
            .get(format!("{base}/cgi-bin/externalcontact/get"))
            .query(&[("access_token", token.as_str()), ("external_userid", id)])
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(v["errcode"] == 0, "raw call failed: {v}");
        raw_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        app.get_customer(id, "").await?;
        client_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (raw_mean, raw_p50, raw_p99) = stats(&mut raw_us);
    let (cl_mean, cl_p50, cl_p99) = stats(&mut client_us);
    println!("externalcontact/get, {calls} calls each, one at a time, loopback simulator");
    println!("bare reqwest   mean {raw_mean:7.1} µs  p50 {raw_p50:7.1} µs  p99 {raw_p99:7.1} µs");
    println!("WeComClient    mean {cl_mean:7.1} µs  p50 {cl_p50:7.1} µs  p99 {cl_p99:7.1} µs");
    println!(
        "overhead       mean {:7.1} µs  p50 {:7.1} µs per call",
        cl_mean - raw_mean,
        cl_p50 - raw_p50
    );
    sim.shutdown().await;
    Ok(())
}
