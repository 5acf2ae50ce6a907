//! How many calls per second the simulator serves over loopback at concurrency 32, for
//! token-cached `externalcontact/get` and `externalcontact/batch/get_by_user` (limit 100).
//!
//! `cargo run -p scrm-wecom-sim --release --example sim_bench -- [customers] [seconds]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scrm_wecom_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let customers: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);

    let mut cfg = SimConfig::default();
    cfg.size.customers = customers;
    cfg.size.staff = (customers / 200).clamp(30, 5000);
    // Rate limits would cap the benchmark at 10,000/min; we measure the server, not WeCom's budget.
    cfg.limits.per_api_per_minute = 0;
    cfg.limits.per_api_per_hour = 0;
    let started = Instant::now();
    let sim = Simulator::start(cfg.clone()).await?;
    println!(
        "generated {customers} customers ({} follows) and started in {:?}",
        sim.company().follow_count(),
        started.elapsed()
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let base = sim.base_url();
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
    let (ids, users): (Vec<String>, Vec<String>) = {
        let c = sim.company();
        let ids = (0..c.customers.len().min(10_000) as u32)
            .map(|i| c.external_userid(i))
            .collect();
        let users = c
            .staff
            .iter()
            .filter(|s| !s.customers.is_empty())
            .map(|s| s.userid.clone())
            .collect();
        (ids, users)
    };

    for name in ["externalcontact/get", "externalcontact/batch/get_by_user"] {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..CONCURRENCY {
            let (http, base, token, ids, users) = (
                http.clone(),
                base.clone(),
                token.clone(),
                ids.clone(),
                users.clone(),
            );
            let (done, errors) = (Arc::clone(&done), Arc::clone(&errors));
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < deadline {
                    i = i.wrapping_add(CONCURRENCY);
                    let req = if name == "externalcontact/get" {
                        http.get(format!("{base}/cgi-bin/externalcontact/get"))
                            .query(&[
                                ("access_token", token.as_str()),
                                ("external_userid", ids[i % ids.len()].as_str()),
                            ])
                    } else {
                        http.post(format!("{base}/cgi-bin/externalcontact/batch/get_by_user"))
                            .query(&[("access_token", token.as_str())])
                            .json(&json!({"userid_list": [users[i % users.len()]], "limit": 100}))
                    };
                    let ok = match req.send().await {
                        Ok(r) => r
                            .json::<Value>()
                            .await
                            .map(|v| v["errcode"] == 0)
                            .unwrap_or(false),
                        Err(_) => false,
                    };
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let n = done.load(Ordering::Relaxed);
        println!(
            "{name:<36} concurrency {CONCURRENCY}: {:>8.0} calls/s ({n} ok, {} errors in {secs} s)",
            n as f64 / secs as f64,
            errors.load(Ordering::Relaxed)
        );
    }
    sim.shutdown().await;
    Ok(())
}
