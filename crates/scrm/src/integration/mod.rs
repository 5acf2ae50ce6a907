//! Integration (seed 003): the tenant's WeCom configuration, sync from WeCom, and WeCom's
//! callbacks.
//!
//! - [`config`]: the configuration with secrets encrypted at rest ([`secrets`]: AES-256-GCM under
//!   the process master key) and masked in every response; [`test`]: `config/test`, which tells
//!   per capability what works and what to do about what does not.
//! - [`client`]: the WeCom client per API base, with Redis token cache and rate limits when Redis
//!   is configured.
//! - [`sync`]: runs as jobs: fetch everything, then apply only the changes in one transaction;
//!   logs, status, metrics, repair, scheduled reconciliation.
//! - [`callbacks`]: URL verification, the deduplicating inbox, processing as jobs, the event list
//!   and replay.
//! - [`jobs`]: the job kinds; [`routes`]: the route table.
//!
//! Sync and callbacks own the WeCom-mirrored data (staff, departments, customers, follows, corp
//! tags, group chats) and write it through the customers module's store functions.

pub mod bench;
pub mod callbacks;
pub mod cli;
pub mod client;
pub mod config;
pub mod jobs;
mod routes;
pub mod secrets;
pub mod sync;
pub mod test;

pub use routes::routes;

use anyhow::Context;
use scrm_jobs::Schedule;

use crate::auth::users;
use crate::startup::DEFAULT_TENANT;
use crate::state::AppState;

/// Startup: the default tenant's configuration from `WEWORK_*` when it has none, and the
/// reconciliation schedules as configured.
pub async fn on_startup(state: &AppState) -> anyhow::Result<()> {
    if let Some(env) = &state.config.integration.wework {
        let tenant = users::ensure_tenant(&state.db, DEFAULT_TENANT).await?;
        if config::for_tenant(state, tenant).await?.is_none() {
            let checked = config::Checked {
                corp_id: Some(env.corp_id.clone()),
                corp_secret: Some(env.corp_secret.expose().to_string()),
                agent_id: Some(env.agent_id),
                contact_secret: Some(env.contact_secret.as_ref().map(|s| s.expose().to_string())),
                contacts_secret: Some(env.contacts_secret.as_ref().map(|s| s.expose().to_string())),
                token: Some(env.token.as_ref().map(|s| s.expose().to_string())),
                aes_key: Some(
                    env.encoding_aes_key
                        .as_ref()
                        .map(|s| s.expose().to_string()),
                ),
                api_base: Some(env.api_base.clone()),
                enabled: Some(true),
            };
            let key = secrets::MasterKey::load(&state.config)?;
            let mut tx = state.db.begin().await?;
            match config::insert(&mut tx, &key, tenant, &checked).await {
                Ok(id) => {
                    crate::audit::record_raw(
                        &mut tx,
                        tenant,
                        None,
                        "wework.config.create",
                        "wework_config",
                        &id.to_string(),
                        serde_json::json!({"via": "WEWORK_CORP_ID"}),
                        None,
                    )
                    .await?;
                    tx.commit().await?;
                    tracing::info!(corp_id = %env.corp_id, "created the default tenant's WeCom configuration from WEWORK_*");
                }
                // Another process got there first.
                Err(crate::http::ApiError::Conflict(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("WEWORK_* configuration: {e}")),
            }
        }
    }
    schedules(state).await.context("sync schedules")
}

async fn schedules(state: &AppState) -> anyhow::Result<()> {
    let ic = &state.config.integration;
    let existing = state.jobs.schedules().await?;
    for (name, cron, force) in [
        ("wework.sync.incremental", &ic.incremental_cron, false),
        ("wework.sync.full", &ic.full_cron, true),
    ] {
        match cron {
            None => {
                state.jobs.delete_schedule(name).await?;
            }
            Some(expr) => {
                let same = existing.iter().any(|s| s.name == name && &s.cron == expr);
                if !same {
                    let mut s = Schedule::new(name, expr, jobs::RECONCILE_KIND);
                    s.payload = serde_json::json!({"force": force});
                    state.jobs.upsert_schedule(&s).await?;
                }
            }
        }
    }
    Ok(())
}
