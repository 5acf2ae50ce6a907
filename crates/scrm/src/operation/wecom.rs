//! Where operation code gets a tenant's WeCom app client. In order: a client registered for the
//! tenant in this process ([`register`]: tests and benchmarks), the tenant's WeCom configuration
//! (the integration module's per-tenant factory), or the seeds' environment variables
//! `WEWORK_CORP_ID` / `WEWORK_CORP_SECRET` / `WEWORK_AGENT_ID` (seed 003) with `WEWORK_API_BASE`
//! for a simulator URL, shared by every tenant.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use scrm_wecom::{AppClient, ClientConfig, WeComClient};

use crate::state::AppState;

/// A tenant's WeCom app: the client for its corp and the app's agentid (message/send needs it).
#[derive(Clone)]
pub struct TenantWeCom {
    /// Calls the 客户联系 APIs (the customer-contact secret when configured, else the app's).
    pub app: AppClient,
    /// Calls as the self-built app itself (its own secret): app messages (message/send).
    pub agent: AppClient,
    /// The app's agentid.
    pub agent_id: i64,
}

fn registry() -> &'static RwLock<HashMap<i64, TenantWeCom>> {
    static REG: OnceLock<RwLock<HashMap<i64, TenantWeCom>>> = OnceLock::new();
    REG.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Use `app` for `tenant_id` in this process (tests and benchmarks point it at a simulator).
pub fn register(tenant_id: i64, app: AppClient, agent_id: i64) {
    if let Ok(mut reg) = registry().write() {
        reg.insert(
            tenant_id,
            TenantWeCom {
                agent: app.clone(),
                app,
                agent_id,
            },
        );
    }
}

/// A client for `base_url` (a simulator) with `corp_id` and `secret`, for [`register`].
pub fn simulator_app(base_url: &str, corp_id: &str, secret: &str) -> anyhow::Result<AppClient> {
    let client = WeComClient::in_memory(ClientConfig::for_simulator(base_url))?;
    Ok(client.app(corp_id, secret))
}

/// Whether `tenant_id` has a WeCom app without asking the database: a client registered in
/// this process, or the seeds' environment variables (the tenant's stored configuration is the
/// third way, see [`client_for`]).
pub fn in_process(tenant_id: i64) -> bool {
    registry()
        .read()
        .ok()
        .is_some_and(|r| r.contains_key(&tenant_id))
        || from_env().is_some()
}

/// The tenant's WeCom app, or an error saying what is missing (a job retries later): a client
/// registered in this process, else the tenant's enabled WeCom configuration (integration
/// module: encrypted secrets, shared token cache and limits), else the seeds' environment.
pub async fn client_for(state: &AppState, tenant_id: i64) -> anyhow::Result<TenantWeCom> {
    if let Some(found) = registry()
        .read()
        .ok()
        .and_then(|r| r.get(&tenant_id).cloned())
    {
        return Ok(found);
    }
    if let Some(config) = crate::integration::config::for_tenant(state, tenant_id).await?
        && config.enabled
    {
        let conn = crate::integration::client::connect(state, &config)?;
        let base = config
            .api_base
            .as_deref()
            .unwrap_or(scrm_wecom::client::DEFAULT_BASE_URL);
        let agent = crate::integration::client::shared(state, base)?
            .app(config.corp_id.clone(), config.corp_secret.clone());
        return Ok(TenantWeCom {
            app: conn.customers,
            agent,
            agent_id: config.agent_id,
        });
    }
    from_env().ok_or_else(|| {
        anyhow::anyhow!(
            "tenant {tenant_id} has no WeCom configuration (POST /api/wework/config, or WEWORK_CORP_ID/WEWORK_CORP_SECRET)"
        )
    })
}

/// The process-wide client from the seeds' environment variables.
fn from_env() -> Option<TenantWeCom> {
    static ENV: OnceLock<Option<TenantWeCom>> = OnceLock::new();
    ENV.get_or_init(|| {
        let corp = std::env::var("WEWORK_CORP_ID")
            .ok()
            .filter(|s| !s.is_empty())?;
        let secret = std::env::var("WEWORK_CORP_SECRET")
            .ok()
            .filter(|s| !s.is_empty())?;
        let agent_id = std::env::var("WEWORK_AGENT_ID")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let config = match std::env::var("WEWORK_API_BASE") {
            Ok(base) if !base.is_empty() => ClientConfig {
                base_url: base,
                ..ClientConfig::default()
            },
            _ => ClientConfig::default(),
        };
        let client = WeComClient::in_memory(config).ok()?;
        let app = client.app(corp, secret);
        Some(TenantWeCom {
            agent: app.clone(),
            app,
            agent_id,
        })
    })
    .clone()
}
