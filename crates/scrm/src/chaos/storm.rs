//! The callback storm of a chaos run (`scrm chaos --callbacks N`): after the sends are checked,
//! `N` distinct WeCom events arrive in one burst — `del_follow_user` for `N` different
//! (customer, owner) relations, signed and encrypted as WeCom does — with duplicates: a quarter
//! of them are replayed byte for byte, a quarter are re-sent as WeCom retries them (same event,
//! new timestamp and nonce), some both; a delivery that gets no `success` is sent again, as
//! WeCom would. They go to every API process at once while worker processes are SIGKILLed.
//!
//! Each event writes records when processed (the relation ended, a deletion record, a churn
//! statistic), so "processed exactly once" is checkable: afterwards every event is stored once
//! and done, has exactly one processing job, and left exactly one deletion record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use rand::seq::SliceRandom;
use scrm_db::{Db, query};
use scrm_wecom::crypto::CallbackCrypto;
use serde::Serialize;

use super::{Cluster, retry};
use crate::customers::risk;
use crate::integration::callbacks::JOB_KIND;

/// What the storm found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StormReport {
    /// Distinct events.
    pub events: usize,
    /// Requests sent: events, duplicates and re-sends after an error.
    pub deliveries: usize,
    pub exact_replays: usize,
    pub wecom_retries: usize,
    /// Deliveries sent again because the first answer was not `success`.
    pub resent_after_error: usize,
    pub server_errors: u64,
    pub transport_errors: u64,
    /// From the first delivery to the last answer.
    pub send_seconds: f64,
    /// From the first delivery to every event processed.
    pub process_seconds: f64,
    pub stored: usize,
    pub done: usize,
    pub failed: usize,
    pub open: usize,
    /// Processing jobs of the storm's events, and events with more than one.
    pub jobs: usize,
    pub events_with_several_jobs: usize,
    /// Processing attempts (the event's `attempts`): above `events` when a killed worker's job
    /// was taken over.
    pub attempts: i64,
    pub deletion_records: usize,
    pub relations_recorded_twice: usize,
    pub relations_not_recorded: usize,
    pub kills: usize,
    pub load_average: String,
}

impl StormReport {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let n = self.events;
        if self.stored != n {
            p.push(format!("storm: {} of {n} events stored", self.stored));
        }
        if self.done != n {
            p.push(format!(
                "storm: {} of {n} events done ({} failed, {} open)",
                self.done, self.failed, self.open
            ));
        }
        if self.jobs != n || self.events_with_several_jobs > 0 {
            p.push(format!(
                "storm: {} processing jobs for {n} events ({} events with several)",
                self.jobs, self.events_with_several_jobs
            ));
        }
        if self.deletion_records != n
            || self.relations_recorded_twice > 0
            || self.relations_not_recorded > 0
        {
            p.push(format!(
                "storm: {} deletion records for {n} events ({} relations twice, {} never)",
                self.deletion_records, self.relations_recorded_twice, self.relations_not_recorded
            ));
        }
        if self.server_errors > 0 {
            p.push(format!("storm: {} answers were 5xx", self.server_errors));
        }
        p
    }
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "callback storm: {} events in {} deliveries ({} byte-for-byte replays, {} WeCom-style retries, {} re-sent after an error; {} 5xx, {} without answer) sent in {:.1} s, all processed after {:.1} s; {} workers SIGKILLed; load average {}",
            self.events,
            self.deliveries,
            self.exact_replays,
            self.wecom_retries,
            self.resent_after_error,
            self.server_errors,
            self.transport_errors,
            self.send_seconds,
            self.process_seconds,
            self.kills,
            self.load_average
        )?;
        writeln!(
            f,
            "  stored {}, done {}, failed {}, open {}; {} jobs ({} events with several), {} attempts; {} deletion records ({} relations twice, {} never)",
            self.stored,
            self.done,
            self.failed,
            self.open,
            self.jobs,
            self.events_with_several_jobs,
            self.attempts,
            self.deletion_records,
            self.relations_recorded_twice,
            self.relations_not_recorded
        )
    }
}

/// One request WeCom would send.
#[derive(Clone)]
struct Delivery {
    query: String,
    body: String,
}

pub struct Storm<'a> {
    pub db: &'a Db,
    pub tenant: i64,
    pub crypto: &'a CallbackCrypto,
    pub corp_id: &'a str,
    pub config_id: i64,
    /// (external_userid, owner's userid) of distinct relations; one event each.
    pub relations: &'a [(String, String)],
    pub concurrency: usize,
    pub kills: usize,
    pub timeout: Duration,
}

pub(super) async fn run(
    s: Storm<'_>,
    cluster: &mut Cluster,
    workers: &[usize],
) -> anyhow::Result<StormReport> {
    let mut report = StormReport {
        events: s.relations.len(),
        ..Default::default()
    };
    // Earlier runs on the same scratch database left events and records of their own.
    let since_event = retry("storm start", || {
        s.db.fetch_i64(query(
            "SELECT COALESCE(MAX(id), 0) FROM wework_callback_event",
        ))
    })
    .await?;
    let since_record = retry("storm start", || {
        s.db.fetch_i64(query("SELECT COALESCE(MAX(id), 0) FROM customer_deletion"))
    })
    .await?;
    let mut deliveries = Vec::new();
    {
        let mut rng = rand::rng();
        for (i, (ext, staff)) in s.relations.iter().enumerate() {
            let create_time = 1_750_000_000 + i as u64;
            let xml = format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[del_follow_user]]></ChangeType><UserID><![CDATA[{staff}]]></UserID><ExternalUserID><![CDATA[{ext}]]></ExternalUserID></xml>",
                s.corp_id
            );
            let sealed =
                s.crypto
                    .seal_callback(&xml, &create_time.to_string(), &format!("storm{i}"), None);
            let first = Delivery {
                query: sealed.query(),
                body: sealed.body_xml,
            };
            if rng.random_bool(0.25) {
                deliveries.push(first.clone());
                report.exact_replays += 1;
            }
            if rng.random_bool(0.25) {
                let ts = (create_time + 5).to_string();
                let again = s
                    .crypto
                    .seal_callback(&xml, &ts, &format!("storm{i}r"), None);
                deliveries.push(Delivery {
                    query: again.query(),
                    body: again.body_xml,
                });
                report.wecom_retries += 1;
            }
            deliveries.push(first);
        }
        deliveries.shuffle(&mut rng);
    }
    report.deliveries = deliveries.len();

    let ports: Vec<u16> = (0..cluster.procs.len())
        .filter(|&i| cluster.procs[i].role == "api")
        .map(|i| cluster.procs[i].port)
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(s.concurrency)
        .build()?;
    let config_id = s.config_id;
    let concurrency = s.concurrency;
    let ports = Arc::new(ports);
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let counts = futures::stream::iter(deliveries.into_iter().enumerate())
            .map(|(n, d)| {
                let (http, ports) = (http.clone(), ports.clone());
                async move {
                    let (mut server, mut transport, mut resent) = (0u64, 0u64, 0usize);
                    // WeCom tries a delivery up to three more times when it gets no `success`.
                    for attempt in 0..4 {
                        let port = ports[(n + attempt) % ports.len()];
                        let r = http
                            .post(format!(
                                "http://127.0.0.1:{port}/api/wework/callback/{config_id}?{}",
                                d.query
                            ))
                            .body(d.body.clone())
                            .send()
                            .await;
                        let ok = match r {
                            Ok(r) => {
                                let code = r.status().as_u16();
                                if code >= 500 {
                                    server += 1;
                                }
                                code == 200 && r.text().await.is_ok_and(|t| t == "success")
                            }
                            Err(_) => {
                                transport += 1;
                                false
                            }
                        };
                        if ok {
                            break;
                        }
                        resent += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    (server, transport, resent.min(3))
                }
            })
            .buffer_unordered(concurrency)
            .fold((0u64, 0u64, 0usize), |acc, x| async move {
                (acc.0 + x.0, acc.1 + x.1, acc.2 + x.2)
            })
            .await;
        (counts, started.elapsed().as_secs_f64())
    });

    // Kill workers at random fractions of the events processed.
    let n = report.events;
    let mut kill_at: Vec<f64> = {
        let mut rng = rand::rng();
        (0..s.kills).map(|_| rng.random_range(0.1..0.9)).collect()
    };
    kill_at.sort_by(|a, b| b.total_cmp(a));
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let mut sender = Some(sender);
    loop {
        let settled = retry("storm progress", || {
            s.db.fetch_i64(
                query("SELECT COUNT(*) FROM wework_callback_event WHERE tenant_id = ? AND id > ? AND change_type = 'del_follow_user' AND status IN ('done', 'failed', 'ignored')")
                    .bind(s.tenant)
                    .bind(since_event),
            )
        })
        .await? as usize;
        let progress = settled as f64 / n.max(1) as f64;
        if kill_at.last().is_some_and(|&at| at <= progress) {
            kill_at.pop();
            let live: Vec<usize> = workers
                .iter()
                .copied()
                .filter(|&i| cluster.procs[i].child.is_some())
                .collect();
            if !live.is_empty() {
                let victim = live[rand::rng().random_range(0..live.len())];
                cluster.kill(victim).await;
                report.kills += 1;
                eprintln!(
                    "chaos: storm {:.1} s, {settled}/{n} processed: SIGKILL worker-{}",
                    started.elapsed().as_secs_f64(),
                    cluster.procs[victim].index
                );
                let pause = Duration::from_millis(rand::rng().random_range(100..1_500));
                restarts.push((Instant::now() + pause, victim));
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < restarts.len() {
            if restarts[i].0 <= now {
                let (_, victim) = restarts.swap_remove(i);
                cluster.spawn(victim)?;
            } else {
                i += 1;
            }
        }
        if sender.as_ref().is_some_and(|h| h.is_finished()) {
            let ((server, transport, resent), secs) = sender.take().expect("sender").await?;
            report.server_errors = server;
            report.transport_errors = transport;
            report.resent_after_error = resent;
            report.send_seconds = secs;
        }
        if sender.is_none() && kill_at.is_empty() && restarts.is_empty() {
            let open_jobs = retry("storm jobs", || {
                s.db.fetch_i64(
                    query("SELECT COUNT(*) FROM job WHERE kind = ? AND state IN (0, 1, 5)")
                        .bind(JOB_KIND),
                )
            })
            .await?;
            if open_jobs == 0 && settled >= n {
                break;
            }
            if open_jobs == 0 && started.elapsed() > Duration::from_secs(5) {
                // Nothing left to run: whatever is not settled never will be.
                let stored = s
                    .db
                    .fetch_i64(
                        query("SELECT COUNT(*) FROM wework_callback_event WHERE tenant_id = ? AND id > ? AND change_type = 'del_follow_user'")
                            .bind(s.tenant)
                            .bind(since_event),
                    )
                    .await?;
                if stored as usize >= n || started.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < s.timeout,
            "callback storm not processed after {:?}: {settled}/{n}",
            s.timeout
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.process_seconds = started.elapsed().as_secs_f64();
    report.load_average = super::load::load_average();

    // The storm's events, their jobs and their records.
    let rows: Vec<(i64, String, i64)> = retry("storm events", || {
        s.db.fetch_all(
            query("SELECT id, status, attempts FROM wework_callback_event WHERE tenant_id = ? AND id > ? AND change_type = 'del_follow_user'")
                .bind(s.tenant)
                .bind(since_event),
        )
    })
    .await?;
    report.stored = rows.len();
    let mut jobs_of: HashMap<i64, usize> = HashMap::new();
    for (id, status, attempts) in &rows {
        jobs_of.insert(*id, 0);
        report.attempts += attempts;
        match status.as_str() {
            "done" => report.done += 1,
            "failed" => report.failed += 1,
            _ => report.open += 1,
        }
    }
    let payloads: Vec<(String,)> = retry("storm jobs", || {
        s.db.fetch_all(query("SELECT payload FROM job WHERE kind = ?").bind(JOB_KIND))
    })
    .await?;
    for (p,) in payloads {
        let id = serde_json::from_str::<serde_json::Value>(&p)
            .ok()
            .and_then(|v| v["eventId"].as_i64());
        if let Some(c) = id.and_then(|id| jobs_of.get_mut(&id)) {
            *c += 1;
        }
    }
    report.jobs = jobs_of.values().sum();
    report.events_with_several_jobs = jobs_of.values().filter(|&&c| c > 1).count();
    let records: Vec<(String, Option<String>)> = retry("deletion records", || {
        s.db.fetch_all(
            query("SELECT external_userid, staff_userid FROM customer_deletion WHERE tenant_id = ? AND id > ? AND kind = ?")
                .bind(s.tenant)
                .bind(since_record)
                .bind(risk::CUSTOMER_DELETED_STAFF),
        )
    })
    .await?;
    report.deletion_records = records.len();
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for (ext, staff) in records {
        *per.entry((ext, staff.unwrap_or_default())).or_default() += 1;
    }
    for r in s.relations {
        match per.get(r).copied().unwrap_or(0) {
            0 => report.relations_not_recorded += 1,
            1 => {}
            _ => report.relations_recorded_twice += 1,
        }
    }
    Ok(report)
}
