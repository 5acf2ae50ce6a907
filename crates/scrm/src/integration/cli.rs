//! `scrm sync --type customer`: a sync from the command line, run in this process (not as a
//! job) with a progress bar, for first imports and for operators repairing data.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use scrm_db::query;

use super::sync::{self, RunEnd, SyncType};
use super::{config, on_startup};
use crate::config::Config;
use crate::startup::{self, DEFAULT_TENANT};
use crate::state::AppState;

#[derive(Args)]
pub struct SyncArgs {
    /// What to sync: department, user, tag, customer, groupchat or full.
    #[arg(long = "type", default_value = "full")]
    sync_type: String,
    /// Rewrite everything instead of only what changed.
    #[arg(long)]
    force: bool,
    /// Tenant (company) name.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
}

/// The state a command-line run needs (no HTTP, no workers).
pub async fn state(config: Config) -> anyhow::Result<AppState> {
    let db = startup::connect_and_migrate(&config).await?;
    let redis = startup::connect_redis(&config).await?;
    let jobs = crate::jobs::client(&db, config.redis_url.as_ref().map(|u| u.expose()));
    Ok(AppState {
        db,
        config: Arc::new(config),
        redis,
        metrics: crate::http::observe::recorder(),
        jobs,
        devices: Default::default(),
    })
}

fn bar(phase: &str, done: i64, total: i64) {
    let width = 30usize;
    let filled = if total > 0 {
        (done.min(total) as usize * width) / total as usize
    } else {
        0
    };
    let pct = if total > 0 { done * 100 / total } else { 0 };
    print!(
        "\r  [{}{}] {pct:>3}%  {phase:<18} {done}/{total}   ",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let _ = std::io::stdout().flush();
}

/// Run the sync and print its result.
pub async fn run(args: SyncArgs, config: Config) -> anyhow::Result<()> {
    let t = SyncType::parse(&args.sync_type)
        .context("--type must be department, user, tag, customer, groupchat or full")?;
    let state = state(config).await?;
    on_startup(&state).await?;
    let tenant: (i64,) = state
        .db
        .fetch_optional(query("SELECT id FROM tenant WHERE name = ?").bind(args.tenant.as_str()))
        .await?
        .with_context(|| format!("no tenant {:?}", args.tenant))?;
    let c = config::for_tenant(&state, tenant.0)
        .await?
        .with_context(|| format!("tenant {:?} has no WeCom configuration: set WEWORK_CORP_ID/WEWORK_CORP_SECRET/WEWORK_AGENT_ID or POST /api/wework/config", args.tenant))?;
    // A log without a job: this process runs it, so no worker elsewhere picks it up as well.
    let mut tx = state.db.begin().await?;
    if let Some(active) = sync::log::active(&mut tx, c.tenant_id, t.as_str()).await? {
        anyhow::bail!(
            "a {} sync is already {} (log {})",
            t.as_str(),
            active.status,
            active.id
        );
    }
    let id = sync::log::create(&mut tx, c.tenant_id, c.id, t.as_str(), args.force, "cli").await?;
    tx.commit().await?;
    println!(
        "sync {} (log {id}){}",
        t.as_str(),
        if args.force { ", forced" } else { "" }
    );
    let end = sync::run(&state, id, false, Some(Arc::new(bar))).await?;
    println!();
    let RunEnd::Finished(log) = end else {
        anyhow::bail!("the sync did not finish");
    };
    println!(
        "{}: fetched {}, created {}, updated {}, deleted {}, unchanged {}, failed {} in {} ms ({} WeCom calls)",
        log.status,
        log.fetched,
        log.created,
        log.updated,
        log.deleted,
        log.unchanged,
        log.failed,
        log.duration_ms.unwrap_or(0),
        log.api_calls
    );
    if let Some(m) = &log.message {
        println!("{m}");
    }
    state.db.close().await;
    anyhow::ensure!(log.status != sync::log::status::FAILED, "sync failed");
    Ok(())
}

/// `scrm demo`: point the default tenant's configuration at the demo's simulator (creating it
/// with the simulator's credentials), aim the simulator's callbacks at scrm, and queue a full
/// sync that the workers run as soon as scrm serves.
pub async fn demo_setup(
    state: &AppState,
    sim: &scrm_wecom_sim::SimHandle,
    scrm_base: &str,
) -> anyhow::Result<i64> {
    let tenant = crate::auth::users::ensure_tenant(&state.db, DEFAULT_TENANT).await?;
    let sc = sim.config();
    let existing = config::for_tenant(state, tenant).await?;
    let id = match existing {
        Some(c) => {
            state
                .db
                .execute(
                    query("UPDATE wework_config SET api_base = ? WHERE id = ?")
                        .bind(sim.base_url())
                        .bind(c.id),
                )
                .await?;
            c.id
        }
        None => {
            let checked = config::Checked {
                corp_id: Some(sc.creds.corp_id.clone()),
                corp_secret: Some(sc.creds.app_secret.clone()),
                agent_id: Some(sc.creds.agent_id),
                contacts_secret: Some(Some(sc.creds.contact_secret.clone())),
                token: Some(Some(sc.callback.token.clone())),
                aes_key: Some(Some(sc.callback.encoding_aes_key.clone())),
                api_base: Some(Some(sim.base_url())),
                enabled: Some(true),
                ..Default::default()
            };
            let key = super::secrets::MasterKey::load(&state.config)?;
            let mut tx = state.db.begin().await?;
            let id = config::insert(&mut tx, &key, tenant, &checked)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tx.commit().await?;
            id
        }
    };
    let url = format!("{scrm_base}/api/wework/callback/{id}");
    sim.update_config(|c| c.callback.url = Some(url));
    let c = config::for_tenant(state, tenant)
        .await?
        .context("demo configuration")?;
    sync::trigger(state, &c, SyncType::Full, false, "demo").await?;
    Ok(id)
}
