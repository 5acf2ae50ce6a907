//! `scrm bench sync`: a full sync of a large simulated company under injected transient faults
//! with a token that expires mid-run, checked row by row against what the simulator's WeCom API
//! shows; then an incremental sync after a share of the customers changed, which must write only
//! those. Reports duration, WeCom calls, rows/s, peak RSS, and the bound the goal compares
//! against: calls × mean latency / allowed concurrency (the time the WeCom calls alone need).
//!
//! The simulator runs in this process (its company is edited directly), so the peak RSS
//! includes it. Each run uses a new tenant of the bench database (use a scratch database).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use scrm_db::query;
use scrm_wecom::WeComClient;
use scrm_wecom::client::{ClientConfig, Rate};
use scrm_wecom_sim::scenarios::EditContact;
use scrm_wecom_sim::{SimConfig, SimHandle, Simulator};
use serde::Serialize;

use super::config::{self, WeworkConfig};
use super::sync::{self, RunEnd, SyncType, fetch::FETCH_CONCURRENCY};
use crate::config::{Config, Secret};
use crate::operation::bench::{reset_peak_rss, rss_mib};
use crate::state::{AppState, now_ms};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub database_url: String,
    pub customers: u32,
    /// 10 % of WeCom calls fail transiently (-1, 45009, 45033, HTTP 500, 42001) unless false.
    pub faults: bool,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Customers changed in the simulator before the incremental sync, in percent.
    pub changed_pct: f64,
    /// Lifetime of the simulator's access tokens: short, so tokens expire during the run.
    pub token_lifetime_secs: u64,
    /// Call the simulator at this rate per API (as WeCom is called); None: unlimited.
    pub rate: Option<Rate>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            customers: 100_000,
            faults: true,
            latency_min_ms: 5,
            latency_max_ms: 15,
            changed_pct: 1.0,
            token_lifetime_secs: 20,
            rate: None,
        }
    }
}

/// One sync run's figures.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFigures {
    pub sync_type: String,
    pub status: String,
    pub seconds: f64,
    /// Calls the simulator answered during the run (retries and token fetches included).
    pub wecom_calls: u64,
    /// The calls the sync log counted for itself (`apiCalls`).
    pub logged_api_calls: i64,
    pub fetched: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub failed: i64,
    /// Customers fetched per second of the whole run.
    pub customers_per_s: f64,
    /// Rows written (created + updated + deleted) per second.
    pub written_per_s: f64,
    /// The time WeCom's calls alone need, seconds: the larger of the latency bound and the
    /// rate bound.
    pub bound_seconds: f64,
    /// calls × mean latency / allowed concurrency, for the busier of the two lanes fetched at
    /// the same time (the group chats; everything else), each with its own calls in flight.
    pub latency_bound_seconds: f64,
    /// Under a rate per API (`--calls-per-second`): the busiest API's calls beyond the burst
    /// divided by the rate; 0 without one.
    pub rate_bound_seconds: f64,
    /// seconds / bound_seconds (the goal: ≤ 1.2).
    pub ratio: f64,
    /// Attempts of the run (a transient failure that survives the client's retries retries
    /// the run, as the job would).
    pub attempts: u32,
    /// The log's message: fetch and apply times.
    pub message: Option<String>,
}

/// The benchmark's report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub backend: String,
    pub customers: u32,
    pub relations: usize,
    pub tags: usize,
    pub groups: usize,
    pub fault_rate: f64,
    pub token_lifetime_secs: u64,
    pub latency_ms: (u64, u64),
    pub allowed_concurrency: usize,
    /// Calls per second per API and burst, when the calls were rate limited.
    pub calls_per_second: Option<(f64, u32)>,
    pub full: RunFigures,
    /// What was compared with the simulator after the full sync.
    pub checked: String,
    pub changed: usize,
    pub incremental: RunFigures,
    pub peak_rss_mib: f64,
    pub load_avg_start: String,
    pub load_avg_end: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sync bench on {}: {} customers, {} follow relations, {} tags, {} group chats; faults {:.0} %, tokens live {} s, latency {}-{} ms, {} calls in flight",
            self.backend,
            self.customers,
            self.relations,
            self.tags,
            self.groups,
            self.fault_rate * 100.0,
            self.token_lifetime_secs,
            self.latency_ms.0,
            self.latency_ms.1,
            self.allowed_concurrency
        )?;
        if let Some((rate, burst)) = self.calls_per_second {
            writeln!(
                f,
                "  calls limited to {rate} per second per API (burst {burst}), as scrm calls WeCom"
            )?;
        }
        for r in [&self.full, &self.incremental] {
            writeln!(
                f,
                "  {} ({}): {:.1} s, {} WeCom calls (log: {}), created {} updated {} deleted {} unchanged {} failed {}, {:.0} customers/s, {:.0} written/s; bound {:.1} s (latency {:.1} s, rate {:.1} s) → {:.2}x; {} attempt(s); {}",
                r.sync_type,
                r.status,
                r.seconds,
                r.wecom_calls,
                r.logged_api_calls,
                r.created,
                r.updated,
                r.deleted,
                r.unchanged,
                r.failed,
                r.customers_per_s,
                r.written_per_s,
                r.bound_seconds,
                r.latency_bound_seconds,
                r.rate_bound_seconds,
                r.ratio,
                r.attempts,
                r.message.as_deref().unwrap_or("")
            )?;
        }
        writeln!(f, "  checked: {}", self.checked)?;
        writeln!(
            f,
            "  changed {} customers before the incremental sync",
            self.changed
        )?;
        write!(
            f,
            "  peak RSS {:.1} MiB (with the in-process simulator); load average {} → {}",
            self.peak_rss_mib, self.load_avg_start, self.load_avg_end
        )
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn sim_config(a: &BenchArgs) -> SimConfig {
    let mut c = SimConfig::default();
    c.size.customers = a.customers;
    c.size.staff = (a.customers / 250).max(20);
    c.size.group_chats = (a.customers / 200).max(10);
    c.size.tags = 60;
    c.size.tag_groups = 8;
    c.creds.token_lifetime_secs = a.token_lifetime_secs;
    c.faults.latency_min_ms = a.latency_min_ms;
    c.faults.latency_max_ms = a.latency_max_ms.max(a.latency_min_ms);
    if a.faults {
        // 10 % of calls in all.
        c.faults.busy = 0.04;
        c.faults.freq_limit = 0.01;
        c.faults.concurrent_limit = 0.02;
        c.faults.http_500 = 0.02;
        c.faults.token_expired = 0.01;
    }
    c.callback.url = None;
    c
}

fn fault_rate(c: &SimConfig) -> f64 {
    let f = &c.faults;
    f.busy + f.freq_limit + f.concurrent_limit + f.http_500 + f.token_expired
}

fn sim_calls(sim: &SimHandle) -> u64 {
    sim.call_counts().values().sum()
}

/// Run the benchmark.
pub async fn run(mut config: Config, args: BenchArgs) -> anyhow::Result<Report> {
    let load_avg_start = load_avg();
    config.database_url = Secret::new(args.database_url.clone());
    let state = super::cli::state(config)
        .await
        .context("connecting to the bench database")?;
    let sim_cfg = sim_config(&args);
    let fault_rate = fault_rate(&sim_cfg);
    let sim = Simulator::start(sim_cfg).await?;
    if let Some(rate) = args.rate {
        super::client::limit_loopback(&state, &sim.base_url(), rate)?;
    }
    let c = setup(&state, &sim).await?;
    let mean_latency =
        (args.latency_min_ms + args.latency_max_ms.max(args.latency_min_ms)) as f64 / 2.0 / 1000.0;
    reset_peak_rss();

    let full = run_sync(&state, &c, &sim, SyncType::Full, mean_latency, args.rate).await?;
    println!("full: {}", serde_json::to_string(&full)?);
    anyhow::ensure!(
        full.status == "success",
        "the full sync ended {}",
        full.status
    );
    let (checked, relations, tags, groups) = check(&state, &c, &sim).await?;
    println!("checked: {checked}");

    let changed = change(&sim, args.changed_pct)?;
    let incremental = run_sync(
        &state,
        &c,
        &sim,
        SyncType::Customer,
        mean_latency,
        args.rate,
    )
    .await?;
    println!("incremental: {}", serde_json::to_string(&incremental)?);
    anyhow::ensure!(
        incremental.status == "success"
            && incremental.updated == changed as i64
            && incremental.created == 0
            && incremental.deleted == 0,
        "the incremental sync must write exactly the {changed} changed customers: {incremental:?}"
    );
    let (_, peak) = rss_mib();
    sim.shutdown().await;
    let backend = state.db.backend().to_string();
    state.db.close().await;
    Ok(Report {
        backend,
        customers: args.customers,
        relations,
        tags,
        groups,
        fault_rate,
        token_lifetime_secs: args.token_lifetime_secs,
        latency_ms: (args.latency_min_ms, args.latency_max_ms),
        allowed_concurrency: FETCH_CONCURRENCY,
        calls_per_second: args.rate.map(|r| (r.per_second, r.burst)),
        full,
        checked,
        changed,
        incremental,
        peak_rss_mib: peak,
        load_avg_start,
        load_avg_end: load_avg(),
    })
}

/// A new tenant whose WeCom configuration points at the simulator.
async fn setup(state: &AppState, sim: &SimHandle) -> anyhow::Result<WeworkConfig> {
    let name = format!("sync-bench-{}", now_ms());
    let tenant = crate::auth::users::ensure_tenant(&state.db, &name).await?;
    let sc = sim.config();
    let checked = config::Checked {
        corp_id: Some(sc.creds.corp_id.clone()),
        corp_secret: Some(sc.creds.app_secret.clone()),
        agent_id: Some(sc.creds.agent_id),
        contacts_secret: Some(Some(sc.creds.contact_secret.clone())),
        api_base: Some(Some(sim.base_url())),
        enabled: Some(true),
        ..Default::default()
    };
    let key = super::secrets::MasterKey::load(&state.config)?;
    let mut tx = state.db.begin().await?;
    config::insert(&mut tx, &key, tenant, &checked)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    config::for_tenant(state, tenant)
        .await?
        .context("the bench configuration")
}

/// One run, retried as the job would retry it after a transient failure.
async fn run_sync(
    state: &AppState,
    c: &WeworkConfig,
    sim: &SimHandle,
    t: SyncType,
    mean_latency: f64,
    rate: Option<Rate>,
) -> anyhow::Result<RunFigures> {
    let before = sim_calls(sim);
    let per_api_before = sim.call_counts();
    let started = Instant::now();
    let mut tx = state.db.begin().await?;
    let id = sync::log::create(&mut tx, c.tenant_id, c.id, t.as_str(), false, "bench").await?;
    tx.commit().await?;
    let mut attempts = 0;
    let log = loop {
        attempts += 1;
        match sync::run(state, id, attempts < 5, None).await? {
            RunEnd::Finished(log) => break log,
            RunEnd::Retry(why) => {
                eprintln!("attempt {attempts} failed transiently ({why}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let calls = sim_calls(sim) - before;
    let customers: i64 = state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM customer WHERE tenant_id = ?").bind(c.tenant_id))
        .await?;
    // The group chats are fetched beside the rest with their own slots (WeCom limits
    // concurrency per API): two lanes of FETCH_CONCURRENCY calls in flight.
    let made = |api: &str, n: u64| n - per_api_before.get(api).copied().unwrap_or(0);
    let chats: u64 = sim
        .call_counts()
        .iter()
        .filter(|(api, _)| api.contains("groupchat"))
        .map(|(api, n)| made(api, *n))
        .sum();
    let lane = chats.max(calls.saturating_sub(chats));
    let latency_bound = lane as f64 * mean_latency / FETCH_CONCURRENCY as f64;
    let rate_bound = rate.map_or(0.0, |r| {
        sim.call_counts()
            .iter()
            .map(|(api, n)| made(api, *n).saturating_sub(u64::from(r.burst)) as f64 / r.per_second)
            .fold(0.0, f64::max)
    });
    let bound = latency_bound.max(rate_bound);
    Ok(RunFigures {
        sync_type: t.as_str().into(),
        status: log.status.clone(),
        seconds,
        wecom_calls: calls,
        logged_api_calls: log.api_calls,
        fetched: log.fetched,
        created: log.created,
        updated: log.updated,
        deleted: log.deleted,
        unchanged: log.unchanged,
        failed: log.failed,
        customers_per_s: customers as f64 / seconds,
        written_per_s: (log.created + log.updated + log.deleted) as f64 / seconds,
        bound_seconds: bound,
        latency_bound_seconds: latency_bound,
        rate_bound_seconds: rate_bound,
        ratio: if bound > 0.0 { seconds / bound } else { 0.0 },
        attempts,
        message: log.message.clone(),
    })
}

/// Compare the tenant's mirror with what the simulator's WeCom API shows (read without faults):
/// every customer and its name, every follow relation and its remark, every customer's tags,
/// the tags, the group chats and each chat's members, and the per-tag counters.
async fn check(
    state: &AppState,
    c: &WeworkConfig,
    sim: &SimHandle,
) -> anyhow::Result<(String, usize, usize, usize)> {
    let t = c.tenant_id;
    let saved = sim.config().faults;
    sim.update_config(|c| {
        c.faults = Default::default();
    });
    let sc = sim.config();
    let wc = WeComClient::in_memory(ClientConfig::for_simulator(sim.base_url()))?;
    let api = wc.app(sc.creds.corp_id.clone(), sc.creds.app_secret.clone());
    let read = async {
        let pairs = api
            .list_all_customers_by_user(api.get_follow_user_list().await?)
            .await?;
        let tags = api.get_corp_tag_list(&Default::default()).await?;
        let list = api.groupchat_list_all(0, None).await?;
        let chats: Vec<_> = futures::stream::iter(list)
            .map(|g| {
                let api = api.clone();
                async move { api.groupchat_get(&g.chat_id, false).await }
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, scrm_wecom::WeComError>((pairs, tags, chats))
    }
    .await;
    sim.update_config(|c| c.faults = saved);
    let (pairs, tags, chats) = read?;

    let mut problems: Vec<String> = Vec::new();
    let mut problem = |p: String| {
        if problems.len() < 10 {
            problems.push(p);
        }
    };
    // Customers and names.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for p in &pairs {
        names.insert(
            &p.external_contact.external_userid,
            &p.external_contact.name,
        );
    }
    let stored: Vec<(String, Option<String>)> = state
        .db
        .fetch_all(
            query("SELECT external_userid, name FROM customer WHERE tenant_id = ? AND status = 1")
                .bind(t),
        )
        .await?;
    if stored.len() != names.len() {
        problem(format!(
            "{} customers stored, WeCom has {}",
            stored.len(),
            names.len()
        ));
    }
    for (ext, name) in &stored {
        match names.get(ext.as_str()) {
            None => problem(format!("customer {ext} is not WeCom's")),
            Some(n) if *n != name.as_deref().unwrap_or("") => {
                problem(format!("customer {ext} named {name:?}, WeCom says {n:?}"))
            }
            _ => {}
        }
    }
    // Follow relations and their remarks.
    let follows: Vec<(String, String, Option<String>)> = state
        .db
        .fetch_all(query("SELECT c.external_userid, s.userid, f.remark FROM customer_follow f JOIN customer c ON c.id = f.customer_id JOIN staff s ON s.id = f.staff_id WHERE f.tenant_id = ? AND f.status = 1").bind(t))
        .await?;
    let follows: HashMap<(String, String), Option<String>> =
        follows.into_iter().map(|(e, u, r)| ((e, u), r)).collect();
    if follows.len() != pairs.len() {
        problem(format!(
            "{} follow relations stored, WeCom has {}",
            follows.len(),
            pairs.len()
        ));
    }
    let mut wanted_tags: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in &pairs {
        let key = (
            p.external_contact.external_userid.clone(),
            p.follow_info.userid.clone(),
        );
        match follows.get(&key) {
            None => problem(format!("missing relation {key:?}")),
            Some(r) if r.as_deref().unwrap_or("") != p.follow_info.remark => {
                problem(format!("relation {key:?} has remark {r:?}"))
            }
            _ => {}
        }
        wanted_tags
            .entry(&p.external_contact.external_userid)
            .or_default()
            .extend(p.follow_info.tag_id.iter().map(String::as_str));
    }
    // Every customer's tags.
    let tag_rows: Vec<(String, String)> = state
        .db
        .fetch_all(query("SELECT c.external_userid, g.wecom_tag_id FROM customer_tag ct JOIN customer c ON c.id = ct.customer_id JOIN tag g ON g.id = ct.tag_id WHERE ct.tenant_id = ? AND g.wecom_tag_id IS NOT NULL").bind(t))
        .await?;
    let mut stored_tags: HashMap<String, HashSet<String>> = HashMap::new();
    let customer_tags = tag_rows.len();
    for (e, g) in tag_rows {
        stored_tags.entry(e).or_default().insert(g);
    }
    for (ext, wanted) in &wanted_tags {
        let got: HashSet<&str> = stored_tags
            .get(*ext)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if &got != wanted {
            problem(format!("tags of {ext}: {got:?}, WeCom has {wanted:?}"));
        }
    }
    let tag_count: usize = tags.iter().map(|g| g.tag.len()).sum();
    let stored_tag_count = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM tag WHERE tenant_id = ? AND wecom_tag_id IS NOT NULL")
                .bind(t),
        )
        .await?;
    if stored_tag_count != tag_count as i64 {
        problem(format!(
            "{stored_tag_count} tags stored, WeCom has {tag_count}"
        ));
    }
    let drift = state
        .db
        .fetch_i64(query("SELECT COUNT(*) FROM tag_count n WHERE n.tenant_id = ? AND n.customer_count <> (SELECT COUNT(*) FROM customer_tag ct WHERE ct.tenant_id = n.tenant_id AND ct.tag_id = n.tag_id)").bind(t))
        .await?;
    if drift != 0 {
        problem(format!("{drift} tag counters differ from their rows"));
    }
    // Group chats and members.
    let members: Vec<(String, String)> = state
        .db
        .fetch_all(query("SELECT g.chat_id, m.member_userid FROM group_chat_member m JOIN group_chat g ON g.id = m.group_id WHERE m.tenant_id = ? AND m.status = 1 AND g.status <> 4").bind(t))
        .await?;
    let mut stored_members: HashMap<String, HashSet<String>> = HashMap::new();
    let member_rows = members.len();
    for (chat, m) in members {
        stored_members.entry(chat).or_default().insert(m);
    }
    let stored_chats = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM group_chat WHERE tenant_id = ? AND status <> 4").bind(t),
        )
        .await?;
    if stored_chats != chats.len() as i64 {
        problem(format!(
            "{stored_chats} group chats stored, WeCom has {}",
            chats.len()
        ));
    }
    for chat in &chats {
        let wanted: HashSet<&str> = chat.member_list.iter().map(|m| m.userid.as_str()).collect();
        let got: HashSet<&str> = stored_members
            .get(&chat.chat_id)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if got != wanted {
            problem(format!(
                "members of {}: {} stored, WeCom has {}",
                chat.chat_id,
                got.len(),
                wanted.len()
            ));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "the mirror differs from WeCom: {}",
        problems.join("; ")
    );
    Ok((
        format!(
            "all match: {} customers with names, {} follow relations with remarks, {} customer tags, {} tags, tag counters, {} group chats with {} members",
            stored.len(),
            follows.len(),
            customer_tags,
            tag_count,
            chats.len(),
            member_rows
        ),
        pairs.len(),
        tag_count,
        chats.len(),
    ))
}

/// Change `pct` % of the customers in the simulator (a follow relation's remark, as a member
/// editing the customer in WeCom would); the number changed.
fn change(sim: &SimHandle, pct: f64) -> anyhow::Result<usize> {
    let targets: Vec<(String, String)> = {
        let co = sim.company();
        let n = co.customers.len();
        let step = if pct <= 0.0 {
            usize::MAX
        } else {
            ((100.0 / pct).round() as usize).max(1)
        };
        let mut out = Vec::new();
        for idx in (0..n).step_by(step.min(n.max(1))) {
            let idx = idx as u32;
            if let Some((_, f)) = co.follows_of(idx).find(|(_, f)| {
                co.staff[f.staff as usize].contact_enabled && co.staff[f.staff as usize].visible()
            }) {
                out.push((
                    co.external_userid(idx),
                    co.staff[f.staff as usize].userid.clone(),
                ));
            }
            if pct <= 0.0 {
                break;
            }
        }
        if pct <= 0.0 {
            out.clear();
        }
        out
    };
    for (ext, userid) in &targets {
        sim.staff_edits_contact(EditContact {
            userid: userid.clone(),
            external_userid: ext.clone(),
            remark: Some(format!("bench {}", now_ms())),
            ..Default::default()
        })?;
    }
    Ok(targets.len())
}
