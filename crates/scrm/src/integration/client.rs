//! WeCom clients per tenant: one shared [`WeComClient`] per API base (its HTTP pool, token cache
//! and rate limiter), and cheap [`AppClient`]s per secret. With Redis configured, tokens and rate
//! limits are shared by every scrm process (DESIGN.md); without it they live in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use scrm_wecom::client::{
    ClientConfig, MemoryRateLimiter, MemoryTokenCache, Rate, RedisRateLimiter, RedisTokenCache,
};
use scrm_wecom::{AppClient, WeComClient};

use super::config::WeworkConfig;
use crate::state::AppState;

/// The clients one configuration calls WeCom with.
#[derive(Clone, Debug)]
pub struct Conn {
    /// For 客户联系 APIs: customers, tags, group chats.
    pub customers: AppClient,
    /// For the directory: departments and members.
    pub directory: AppClient,
}

impl Conn {
    /// WeCom calls made through these handles so far (both secrets; retries and token fetches
    /// included).
    pub fn calls_made(&self) -> i64 {
        i64::try_from(self.customers.calls_made() + self.directory.calls_made()).unwrap_or(i64::MAX)
    }
}

fn clients() -> &'static Mutex<HashMap<String, WeComClient>> {
    static C: OnceLock<Mutex<HashMap<String, WeComClient>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Client settings for a base URL. A loopback base is the simulator (or a test double): fast
/// retries and no outbound limit, so tests and benchmarks measure scrm, not our own throttle.
/// Anything else gets WeCom's real policy, with `per_corp` as the default rate of every API
/// per corp (`SCRM_WECOM_CALLS_PER_SECOND`, `SCRM_WECOM_CALL_BURST`).
pub fn client_config(base: &str, per_corp: Rate) -> ClientConfig {
    let local = url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    if local {
        ClientConfig::for_simulator(base)
    } else {
        let mut c = ClientConfig {
            base_url: base.to_string(),
            ..ClientConfig::default()
        };
        c.rate_limits.default = per_corp;
        c
    }
}

/// The shared client for a base URL (built once per process).
pub fn shared(state: &AppState, base: &str) -> anyhow::Result<WeComClient> {
    let key = format!("{base}|{}", state.redis.is_some());
    if let Some(c) = clients().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let config = client_config(
        base,
        Rate::new(
            state.config.wecom_calls_per_second,
            state.config.wecom_call_burst,
        ),
    );
    let client = build(state, config)?;
    if let Ok(mut m) = clients().lock() {
        m.entry(key).or_insert_with(|| client.clone());
    }
    Ok(client)
}

/// Make this process call a loopback base (the simulator) at `rate` per API per corp, as it
/// calls WeCom, instead of unlimited: `scrm bench sync --calls-per-second` measures a sync at
/// WeCom's rate limits. Call before anything else uses the base.
pub fn limit_loopback(state: &AppState, base: &str, rate: Rate) -> anyhow::Result<()> {
    let mut config = ClientConfig::for_simulator(base);
    config.rate_limits.default = rate;
    let client = build(state, config)?;
    if let Ok(mut m) = clients().lock() {
        m.insert(format!("{base}|{}", state.redis.is_some()), client);
    }
    Ok(())
}

fn build(state: &AppState, config: ClientConfig) -> anyhow::Result<WeComClient> {
    Ok(match &state.redis {
        Some(conn) => {
            let tokens = RedisTokenCache::new(conn.clone(), "scrm:wecom");
            let limits =
                RedisRateLimiter::new(conn.clone(), "scrm:wecom", config.rate_limits.clone());
            WeComClient::new(config, Arc::new(tokens), Arc::new(limits))?
        }
        None => {
            let limits = MemoryRateLimiter::new(config.rate_limits.clone());
            WeComClient::new(config, Arc::new(MemoryTokenCache::new()), Arc::new(limits))?
        }
    })
}

/// The clients for a configuration.
pub fn connect(state: &AppState, c: &WeworkConfig) -> anyhow::Result<Conn> {
    let base = c
        .api_base
        .as_deref()
        .unwrap_or(scrm_wecom::client::DEFAULT_BASE_URL);
    let client = shared(state, base)?;
    Ok(Conn {
        customers: client.app(c.corp_id.clone(), c.customer_secret().clone()),
        directory: client.app(c.corp_id.clone(), c.directory_secret().clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wecom_gets_the_configured_per_corp_rate_and_the_simulator_none() {
        let c = client_config("https://qyapi.weixin.qq.com", Rate::new(5.0, 20));
        assert_eq!(
            c.rate_limits.rate_for("externalcontact/add_msg_template"),
            Rate::new(5.0, 20)
        );
        // gettoken keeps its own, stricter limit.
        assert_eq!(c.rate_limits.rate_for("gettoken"), Rate::new(2.0, 10));
        let sim = client_config("http://127.0.0.1:9000", Rate::new(5.0, 20));
        assert!(
            sim.rate_limits
                .rate_for("externalcontact/add_msg_template")
                .per_second
                > 1000.0
        );
    }
}
