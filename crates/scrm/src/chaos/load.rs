//! Sustained API load during a chaos run (`scrm chaos --load-secs 60 --load-concurrency 64`):
//! `concurrency` clients, each sending one request after the other for `duration`, spread over
//! the API processes, on three routes in turn:
//!
//! - `search`: `GET /api/v1/customers?keyword=…&page=…&size=20` (a customer's name fragment);
//! - `create-task`: `POST /v1/workbench/mass-send` to one customer (a real task: its send jobs
//!   run on the workers like the run's own mass send);
//! - `callback`: `POST /api/wework/callback/{configId}`, a freshly signed and encrypted
//!   `edit_external_contact` event for a customer (stored, enqueued, processed by a worker,
//!   which reads the customer back from WeCom).
//!
//! Every answer is counted by route and status class; a transport error (no answer) is counted
//! apart. Latency percentiles are over all answered requests of a route.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use scrm_wecom::crypto::CallbackCrypto;
use serde::Serialize;
use serde_json::json;

/// What the load needs to know about the deployment.
pub struct Target {
    pub ports: Vec<u16>,
    pub token: String,
    pub crypto: CallbackCrypto,
    pub corp_id: String,
    pub config_id: i64,
    /// Customers with an owner: (id, external_userid, owner's userid, name).
    pub customers: Vec<(i64, String, String, String)>,
    /// Marks the load's own messages (they are not the run's intended messages).
    pub run_id: String,
}

/// One route's figures.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub requests: u64,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub transport_errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Up to three bodies of non-2xx answers, for the report.
    pub sample_errors: Vec<String>,
}

/// The whole load phase.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub seconds: f64,
    pub concurrency: usize,
    pub requests: u64,
    pub requests_per_second: f64,
    pub server_errors: u64,
    pub transport_errors: u64,
    pub routes: BTreeMap<String, RouteStats>,
    /// `/proc/loadavg` when the load ended (1, 5, 15 minutes).
    pub load_average: String,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "load: {:.1} s at concurrency {}: {} requests ({:.0}/s), {} 5xx, {} without answer; load average {}",
            self.seconds,
            self.concurrency,
            self.requests,
            self.requests_per_second,
            self.server_errors,
            self.transport_errors,
            self.load_average
        )?;
        for (route, s) in &self.routes {
            writeln!(
                f,
                "  {route}: {} requests, {} 2xx, {} 4xx, {} 5xx, {} no answer; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
                s.requests,
                s.ok,
                s.client_errors,
                s.server_errors,
                s.transport_errors,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms,
                if s.sample_errors.is_empty() {
                    String::new()
                } else {
                    format!("; e.g. {:?}", s.sample_errors)
                }
            )?;
        }
        Ok(())
    }
}

pub const ROUTES: [&str; 3] = ["search", "create-task", "callback"];

#[derive(Default)]
struct Tally {
    micros: Vec<Vec<u64>>,
    stats: Vec<RouteStats>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            micros: vec![Vec::new(); ROUTES.len()],
            stats: vec![RouteStats::default(); ROUTES.len()],
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// `/proc/loadavg`'s first three fields (empty where there is none).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Run the load for `duration` with `concurrency` clients.
pub async fn run(target: Arc<Target>, concurrency: usize, duration: Duration) -> LoadReport {
    let started = Instant::now();
    let deadline = started + duration;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("an HTTP client");
    // Distinct CreateTimes: every callback is a new event, not WeCom retrying an old one.
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..concurrency {
        let (t, http, seq) = (target.clone(), http.clone(), seq.clone());
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut n = c;
            while Instant::now() < deadline {
                let route = n % ROUTES.len();
                n += 1;
                let port = t.ports[n % t.ports.len()];
                let at = Instant::now();
                let answer = send(&t, &http, &seq, route, port).await;
                let us = at.elapsed().as_micros() as u64;
                let s = &mut tally.stats[route];
                s.requests += 1;
                match answer {
                    Ok((code, body)) => {
                        tally.micros[route].push(us);
                        match code {
                            200..=299 => s.ok += 1,
                            400..=499 => s.client_errors += 1,
                            _ => s.server_errors += 1,
                        }
                        if !(200..=299).contains(&code) && s.sample_errors.len() < 3 {
                            s.sample_errors.push(format!(
                                "{code} {}",
                                body.chars().take(200).collect::<String>()
                            ));
                        }
                    }
                    Err(e) => {
                        s.transport_errors += 1;
                        if s.sample_errors.len() < 3 {
                            s.sample_errors.push(format!("no answer: {e}"));
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::new();
    for c in clients {
        if let Ok(t) = c.await {
            for r in 0..ROUTES.len() {
                all.micros[r].extend_from_slice(&t.micros[r]);
                let (a, b) = (&mut all.stats[r], &t.stats[r]);
                a.requests += b.requests;
                a.ok += b.ok;
                a.client_errors += b.client_errors;
                a.server_errors += b.server_errors;
                a.transport_errors += b.transport_errors;
                for e in &b.sample_errors {
                    if a.sample_errors.len() < 3 {
                        a.sample_errors.push(e.clone());
                    }
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut report = LoadReport {
        seconds,
        concurrency,
        load_average: load_average(),
        ..Default::default()
    };
    for (r, name) in ROUTES.iter().enumerate() {
        let mut s = all.stats[r].clone();
        let m = &mut all.micros[r];
        m.sort_unstable();
        s.p50_ms = percentile(m, 0.50);
        s.p90_ms = percentile(m, 0.90);
        s.p99_ms = percentile(m, 0.99);
        s.max_ms = m.last().map_or(0.0, |&v| v as f64 / 1000.0);
        report.requests += s.requests;
        report.server_errors += s.server_errors;
        report.transport_errors += s.transport_errors;
        report.routes.insert((*name).to_string(), s);
    }
    report.requests_per_second = report.requests as f64 / seconds.max(0.001);
    report
}

async fn send(
    t: &Target,
    http: &reqwest::Client,
    seq: &std::sync::atomic::AtomicU64,
    route: usize,
    port: u16,
) -> reqwest::Result<(u16, String)> {
    let base = format!("http://127.0.0.1:{port}");
    let (id, ext, owner, name) = {
        let mut rng = rand::rng();
        t.customers[rng.random_range(0..t.customers.len())].clone()
    };
    let req = match ROUTES[route] {
        "search" => {
            // A fragment of a real name: one to two characters, so that many match.
            let chars: Vec<char> = name.chars().collect();
            let (from, len) = {
                let mut rng = rand::rng();
                let len = rng.random_range(1..=2.min(chars.len().max(1)));
                (rng.random_range(0..=chars.len().saturating_sub(len)), len)
            };
            let keyword: String = chars.iter().skip(from).take(len).collect();
            let page = 1 + id % 3;
            http.get(format!("{base}/api/v1/customers"))
                .query(&[
                    ("keyword", keyword.as_str()),
                    ("page", &page.to_string()),
                    ("size", "20"),
                ])
                .bearer_auth(&t.token)
        }
        "create-task" => {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            http.post(format!("{base}/v1/workbench/mass-send"))
                .bearer_auth(&t.token)
                .json(&json!({
                    "taskName": format!("load {} {n}", t.run_id),
                    "target": {"customerIds": [id]},
                    "messageContent": {"type": "TEXT", "data": {"text": format!("load-{}: {n}", t.run_id)}},
                }))
        }
        _ => {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let create_time = 1_700_000_000 + n;
            let xml = format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[edit_external_contact]]></ChangeType><UserID><![CDATA[{owner}]]></UserID><ExternalUserID><![CDATA[{ext}]]></ExternalUserID></xml>",
                t.corp_id
            );
            let sealed =
                t.crypto
                    .seal_callback(&xml, &create_time.to_string(), &format!("load{n}"), None);
            http.post(format!(
                "{base}/api/wework/callback/{}?{}",
                t.config_id,
                sealed.query()
            ))
            .body(sealed.body_xml)
        }
    };
    let r = req.send().await?;
    let code = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Ok((code, body))
}
