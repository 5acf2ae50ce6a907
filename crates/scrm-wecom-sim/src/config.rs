//! Simulator configuration: company size, credentials, limits, faults, mass-send behaviour and
//! callbacks. One struct, usable as clap arguments (`scrm sim --sim-customers 100000`), as serde
//! (JSON/TOML) and in code (`SimConfig::default()` plus field updates).
//!
//! Every long option is prefixed with `sim-` so the struct can be flattened into another
//! command (e.g. `scrm demo`) without clashing with that command's own options.

use serde::{Deserialize, Serialize};

/// Everything the simulator needs to start. Fields with runtime effect (faults, latency, limits,
/// mass-send behaviour) can be changed later through `/sim/admin/config` or [`crate::Sim::update_config`].
#[derive(Clone, Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port (tests).
    #[arg(long = "sim-listen", env = "SIM_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Seed of the generated company: the same seed and sizes give the same company.
    #[arg(long = "sim-seed", env = "SIM_SEED", default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub size: CompanySize,
    #[command(flatten)]
    pub creds: Credentials,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub faults: FaultConfig,
    #[command(flatten)]
    pub mass_send: MassSendConfig,
    #[command(flatten)]
    pub callback: CallbackConfig,
    /// When above 0, every follow's add time is moved into the last N days ending now (some of
    /// them today, China time), so a demo's workbench has recent adds. 0 keeps the generated
    /// times (fixed, before 2026-11-01).
    #[arg(
        long = "sim-recent-adds-days",
        env = "SIM_RECENT_ADDS_DAYS",
        default_value_t = 0
    )]
    pub recent_adds_days: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            seed: 42,
            size: CompanySize::default(),
            creds: Credentials::default(),
            limits: Limits::default(),
            faults: FaultConfig::default(),
            mass_send: MassSendConfig::default(),
            callback: CallbackConfig::default(),
            recent_adds_days: 0,
        }
    }
}

/// How big the generated company is. Generation is linear in these numbers; 1,000,000
/// customers take a few seconds in release mode.
#[derive(Clone, Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct CompanySize {
    /// Departments, including the root department (id 1).
    #[arg(long = "sim-departments", default_value_t = 8)]
    pub departments: u32,
    /// Staff members (成员).
    #[arg(long = "sim-staff", default_value_t = 30)]
    pub staff: u32,
    /// External contacts (客户).
    #[arg(long = "sim-customers", default_value_t = 500)]
    pub customers: u32,
    /// Corp tag groups.
    #[arg(long = "sim-tag-groups", default_value_t = 4)]
    pub tag_groups: u32,
    /// Corp tags in total, spread over the groups.
    #[arg(long = "sim-tags", default_value_t = 16)]
    pub tags: u32,
    /// Customer group chats (客户群).
    #[arg(long = "sim-group-chats", default_value_t = 10)]
    pub group_chats: u32,
    /// Average follow relations per customer (each customer has at least one).
    #[arg(long = "sim-avg-follows", default_value_t = 1.3)]
    pub avg_follows: f64,
    /// Average members per group chat (owner included).
    #[arg(long = "sim-members-per-group", default_value_t = 12)]
    pub members_per_group: u32,
}

impl Default for CompanySize {
    fn default() -> Self {
        Self {
            departments: 8,
            staff: 30,
            customers: 500,
            tag_groups: 4,
            tags: 16,
            group_chats: 10,
            avg_follows: 1.3,
            members_per_group: 12,
        }
    }
}

/// The corp's identity and secrets. `Debug` redacts the secrets.
#[derive(Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Credentials {
    /// CorpID the client must send to gettoken (and the callbacks' receiveid).
    #[arg(
        long = "sim-corp-id",
        env = "SIM_CORP_ID",
        default_value = "wwsim00000000000001"
    )]
    pub corp_id: String,
    /// Secret of the self-built app that is allowed to call the 客户联系 APIs.
    #[arg(
        long = "sim-app-secret",
        env = "SIM_APP_SECRET",
        default_value = "sim-app-secret"
    )]
    pub app_secret: String,
    /// agentid of that app (message/send must name it, else 301002).
    #[arg(long = "sim-agent-id", default_value_t = 1000002)]
    pub agent_id: i64,
    /// 通讯录同步 secret: the only one allowed to call user/list_id; 48002 on 客户联系 APIs.
    #[arg(
        long = "sim-contact-secret",
        env = "SIM_CONTACT_SECRET",
        default_value = "sim-contact-secret"
    )]
    pub contact_secret: String,
    /// access_token lifetime in seconds (WeCom: 7200). Tests use a few seconds.
    #[arg(long = "sim-token-lifetime", default_value_t = 7200)]
    pub token_lifetime_secs: u64,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            corp_id: "wwsim00000000000001".into(),
            app_secret: "sim-app-secret".into(),
            agent_id: 1000002,
            contact_secret: "sim-contact-secret".into(),
            token_lifetime_secs: 7200,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("corp_id", &self.corp_id)
            .field("app_secret", &"***")
            .field("agent_id", &self.agent_id)
            .field("contact_secret", &"***")
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .finish()
    }
}

/// WeCom's rate limits (API-FACTS §2). 0 disables a limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Limits {
    /// Calls per corp per API per minute before 45009 (WeCom: 10,000).
    #[arg(long = "sim-rate-per-minute", default_value_t = 10_000)]
    pub per_api_per_minute: u32,
    /// Calls per corp per API per hour before 45009 (WeCom: 150,000).
    #[arg(long = "sim-rate-per-hour", default_value_t = 150_000)]
    pub per_api_per_hour: u32,
    /// Concurrent in-flight calls per API before 45033 (WeCom publishes no number; 0 = off).
    #[arg(long = "sim-max-concurrency", default_value_t = 0)]
    pub max_concurrent_per_api: u32,
    /// App messages per member per minute; the excess is silently dropped (WeCom: 30).
    #[arg(long = "sim-app-msgs-per-member-minute", default_value_t = 30)]
    pub app_msgs_per_member_per_minute: u32,
    /// Validity of a WelcomeCode in seconds (WeCom: 20).
    #[arg(long = "sim-welcome-code-ttl", default_value_t = 20)]
    pub welcome_code_ttl_secs: u64,
    /// Seconds from transfer_customer to the automatic takeover (WeCom: 24 h).
    #[arg(long = "sim-takeover-secs", default_value_t = 86_400)]
    pub takeover_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_api_per_minute: 10_000,
            per_api_per_hour: 150_000,
            max_concurrent_per_api: 0,
            app_msgs_per_member_per_minute: 30,
            welcome_code_ttl_secs: 20,
            takeover_secs: 86_400,
        }
    }
}

/// Fault injection: each rate is a probability in [0, 1] applied per API call (not to admin
/// routes). Latency applies to every API call.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct FaultConfig {
    /// errcode -1 "system busy".
    #[arg(long = "sim-fault-busy", default_value_t = 0.0)]
    pub busy: f64,
    /// errcode 45009 "api freq out of limit".
    #[arg(long = "sim-fault-freq", default_value_t = 0.0)]
    pub freq_limit: f64,
    /// errcode 45033 "api concurrent out of limit".
    #[arg(long = "sim-fault-concurrent", default_value_t = 0.0)]
    pub concurrent_limit: f64,
    /// errcode 42001 "access_token expired" although the token is valid (early invalidation).
    #[arg(long = "sim-fault-token-expired", default_value_t = 0.0)]
    pub token_expired: f64,
    /// HTTP 500 with an empty body.
    #[arg(long = "sim-fault-http500", default_value_t = 0.0)]
    pub http_500: f64,
    /// Process slowly: sleep `slow_ms` while holding the call's concurrency slot (trips client
    /// timeouts; with `max_concurrent_per_api` it produces 45033 for the calls behind it).
    #[arg(long = "sim-fault-slow", default_value_t = 0.0)]
    pub slow: f64,
    /// Delay of a slow reply in milliseconds.
    #[arg(long = "sim-fault-slow-ms", default_value_t = 0)]
    pub slow_ms: u64,
    /// Start a 200 reply and then abort the connection mid-body.
    #[arg(long = "sim-fault-drop", default_value_t = 0.0)]
    pub drop_connection: f64,
    /// Minimum added latency per API call, milliseconds.
    #[arg(long = "sim-latency-min-ms", default_value_t = 0)]
    pub latency_min_ms: u64,
    /// Maximum added latency (uniform between min and max; equal = fixed).
    #[arg(long = "sim-latency-max-ms", default_value_t = 0)]
    pub latency_max_ms: u64,
}

/// How mass sends (企业群发) behave.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct MassSendConfig {
    /// Milliseconds until each sender "confirms" in the client; 0 = at once; negative = never
    /// (tests then confirm through the admin API or cancel).
    #[arg(
        long = "sim-confirm-delay-ms",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub confirm_delay_ms: i64,
    /// Mass messages a customer (or group) may receive per natural month, counting all senders.
    /// 0 = the current WeCom rule, the number of days of the month (API-FACTS §7, §14.2);
    /// the older rule was 4.
    #[arg(long = "sim-receive-quota", default_value_t = 0)]
    pub receive_quota_per_month: u32,
    /// Milliseconds after add_msg_template during which result APIs answer 41063 (群发消息正在被派发中).
    #[arg(long = "sim-dispatch-ms", default_value_t = 0)]
    pub dispatch_ms: u64,
    /// Reminders allowed per mass send within 24 h (WeCom: 3), then 41094.
    #[arg(long = "sim-max-reminders", default_value_t = 3)]
    pub max_reminders: u32,
}

impl Default for MassSendConfig {
    fn default() -> Self {
        Self {
            confirm_delay_ms: 0,
            receive_quota_per_month: 0,
            dispatch_ms: 0,
            max_reminders: 3,
        }
    }
}

/// Where and how scenario events are delivered (API-FACTS §11).
#[derive(Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct CallbackConfig {
    /// Callback URL; no callbacks are sent when empty (events are still recorded).
    #[arg(long = "sim-callback-url", env = "SIM_CALLBACK_URL")]
    pub url: Option<String>,
    /// Token used to sign callbacks.
    #[arg(
        long = "sim-callback-token",
        env = "SIM_CALLBACK_TOKEN",
        default_value = "simtoken"
    )]
    pub token: String,
    /// 43-character EncodingAESKey used to encrypt callbacks.
    #[arg(
        long = "sim-callback-aes-key",
        env = "SIM_CALLBACK_AES_KEY",
        default_value = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
    )]
    pub encoding_aes_key: String,
    /// Per-attempt timeout (WeCom: 5 s).
    #[arg(long = "sim-callback-timeout-ms", default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Retries after the first failed attempt (WeCom: 3).
    #[arg(long = "sim-callback-retries", default_value_t = 3)]
    pub retries: u32,
    /// Pause between attempts (WeCom does not publish it; tests use a few ms).
    #[arg(long = "sim-callback-retry-delay-ms", default_value_t = 1_000)]
    pub retry_delay_ms: u64,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: "simtoken".into(),
            encoding_aes_key: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".into(),
            timeout_ms: 5_000,
            retries: 3,
            retry_delay_ms: 1_000,
        }
    }
}

impl std::fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("url", &self.url)
            .field("token", &"***")
            .field("encoding_aes_key", &"***")
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("retry_delay_ms", &self.retry_delay_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn clap_defaults_match_serde_defaults() {
        let cli = Cli::parse_from(["x"]);
        let a = serde_json::to_value(&cli.sim).unwrap();
        let b = serde_json::to_value(SimConfig::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn negative_confirm_delay_parses() {
        let cli = Cli::parse_from(["x", "--sim-confirm-delay-ms", "-1", "--sim-customers", "7"]);
        assert_eq!(cli.sim.mass_send.confirm_delay_ms, -1);
        assert_eq!(cli.sim.size.customers, 7);
    }
}
