//! Configuration: defaults that run with nothing set, then `.env`, then the environment.
//!
//! Two naming schemes are accepted, because the seeds use their own: `DATABASE_URL` or the
//! seeds' `DB_HOST`/`DB_PORT`/`DB_USER`/`DB_PASSWORD`/`DB_DATABASE` (MySQL, as the seeds use it);
//! `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`/`REDIS_DB`. Everything is validated
//! once, at startup, and a bad value stops startup with a message naming the key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use scrm_db::Backend;

/// A value that must never be printed: its `Debug` and `Display` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Which parts of scrm this process runs (DESIGN.md: many API and worker processes scale out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API and background workers in one process (the default).
    All,
    /// HTTP API only.
    Api,
    /// Background workers only (still answers `/health` and `/metrics`).
    Worker,
}

impl Role {
    pub fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The effective configuration of one scrm process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the data lives (`sqlite:`, `mysql:`, `postgres:`); may embed a password.
    pub database_url: Secret,
    /// Upper bound of database connections in this process.
    pub database_max_connections: u32,
    /// Address the HTTP server binds.
    pub bind: IpAddr,
    /// Port the HTTP server binds (`PORT`, default 7000).
    pub port: u16,
    /// Redis for shared token cache, rate limits and wake-ups across processes; optional.
    pub redis_url: Option<Secret>,
    /// Which parts of scrm run in this process.
    pub role: Role,
    /// A request that takes longer is answered 408 and abandoned.
    pub request_timeout: Duration,
    /// Bodies larger than this are refused with 413.
    pub body_limit_bytes: usize,
    /// Lifetime of a login token.
    pub session_ttl: Duration,
    /// Password of the first `admin` user, created on the first start of an empty database.
    pub admin_password: Option<Secret>,
    /// Log format and filter.
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Failed logins allowed per user name and window before it is locked for the window.
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// Jobs one process runs at once (`SCRM_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// How long a worker's claim on a job lasts without a heartbeat (`SCRM_JOB_LEASE_SECS`): a
    /// worker that dies loses its jobs to the others after this. Heartbeats run at a third.
    pub job_lease: Duration,
    /// Calls per second to one WeCom API per corp, sustained (`SCRM_WECOM_CALLS_PER_SECOND`,
    /// default 40 = 144,000/h, under WeCom's 10,000/min and 150,000/h per corp per API), shared by
    /// every process through Redis when configured; a local simulator is not limited.
    pub wecom_calls_per_second: f64,
    /// Calls to one API that may go out back to back (`SCRM_WECOM_CALL_BURST`, default 200).
    pub wecom_call_burst: u32,
    /// Delays before the retries of a send job whose WeCom call failed (`SCRM_WECOM_RETRY_SECS`,
    /// comma-separated seconds, the last repeating; default 5,60,300,900).
    pub wecom_retry: Vec<Duration>,
    /// Where `config` values came from, for `scrm config`.
    pub sources: BTreeMap<&'static str, &'static str>,
    // --- integration (seed 003) ---
    /// WeCom settings: master key for secrets at rest, the seeds' `WEWORK_*`, sync schedules.
    pub integration: IntegrationConfig,
    /// Where job alerts are sent (`SCRM_ALERT_*`).
    pub alerts: AlertsConfig,
    /// `SCRM_DEVICE_SEND_GAP_MS` (`min-max`, default `3000-8000`): the random gap between two
    /// chat-room pushes of one device account (seed 002's `sleep(rand(3, 8))` against risk
    /// control); tests set `0-0`.
    pub device_send_gap_ms: (u64, u64),
    /// `SCRM_GATEWAY_LEASE_MS` (default 15000, 500 to 600000): how long a device gateway's
    /// session lease lasts unless its holder renews it (every 500 ms while it lives). Another
    /// scrm process takes the gateway over this long after the holder died without closing.
    pub gateway_lease_ms: i64,
    /// `SCRM_MOMENT_RETENTION_DAYS` (default 90, 1 to 3650): friends' moments posted longer ago
    /// than this are deleted by the daily `devices.moments.cleanup` and not collected again.
    pub moment_retention_days: i64,
    /// `SCRM_ALLOW_PRIVATE_URLS` (default `false`): let content sources and workflow webhooks
    /// fetch from loopback, private, link-local and metadata addresses. Off, such URLs are
    /// refused (SSRF guard); tests that serve from 127.0.0.1 turn it on.
    pub allow_private_urls: bool,
    /// The optional event relay to message brokers (`SCRM_EVENTS_*`); off unless a URL is set.
    pub events: EventsConfig,
}

/// Where the domain-events outbox is relayed besides the in-process subscribers (README "Event
/// relay"). Each sink is off unless its URL is set.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// `SCRM_EVENTS_AMQP_URL` (`amqp://user:pass@host:5672/%2f`): publish to RabbitMQ.
    pub amqp: Option<AmqpSinkConfig>,
    /// `SCRM_EVENTS_NATS_URL` (`nats://host:4222`): publish to NATS JetStream.
    pub nats: Option<NatsSinkConfig>,
    /// `SCRM_EVENTS_RELAY_BATCH` (default 500): events read and published per relay round.
    pub batch: i64,
}

/// The RabbitMQ sink.
#[derive(Debug, Clone)]
pub struct AmqpSinkConfig {
    pub url: Secret,
    /// `SCRM_EVENTS_AMQP_EXCHANGE` (default `scrm.events`): a durable topic exchange, declared
    /// if missing; the routing key is the event type.
    pub exchange: String,
}

/// The NATS JetStream sink.
#[derive(Debug, Clone)]
pub struct NatsSinkConfig {
    pub url: Secret,
    /// `SCRM_EVENTS_NATS_STREAM` (default `SCRM_EVENTS`): the stream, created if missing.
    pub stream: String,
    /// `SCRM_EVENTS_NATS_SUBJECT` (default `scrm.events`): events go to `<subject>.<type>`.
    pub subject: String,
    /// `SCRM_EVENTS_NATS_DUPLICATE_WINDOW_SECS` (default 3600): the stream's deduplication
    /// window when scrm creates it; a republish within it is dropped by the server.
    pub duplicate_window: Duration,
}

fn events_config(
    src: &dyn Source,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<EventsConfig, ConfigError> {
    let name_ok = |key: &str, v: &str, extra: &[char]| -> Result<(), ConfigError> {
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
        {
            return Err(bad(
                key,
                format!("{v:?}: letters, digits, _ - {extra:?} only"),
            ));
        }
        Ok(())
    };
    let amqp = match src.get("SCRM_EVENTS_AMQP_URL") {
        None => None,
        Some(url) => {
            sources.insert("SCRM_EVENTS_AMQP_URL", "environment");
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(bad("SCRM_EVENTS_AMQP_URL", "must start with amqp://"));
            }
            let exchange = src
                .get("SCRM_EVENTS_AMQP_EXCHANGE")
                .unwrap_or_else(|| "scrm.events".into());
            name_ok("SCRM_EVENTS_AMQP_EXCHANGE", &exchange, &['.', ':'])?;
            Some(AmqpSinkConfig {
                url: Secret::new(url),
                exchange,
            })
        }
    };
    let nats = match src.get("SCRM_EVENTS_NATS_URL") {
        None => None,
        Some(url) => {
            sources.insert("SCRM_EVENTS_NATS_URL", "environment");
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(bad("SCRM_EVENTS_NATS_URL", "must start with nats://"));
            }
            let stream = src
                .get("SCRM_EVENTS_NATS_STREAM")
                .unwrap_or_else(|| "SCRM_EVENTS".into());
            name_ok("SCRM_EVENTS_NATS_STREAM", &stream, &[])?;
            let subject = src
                .get("SCRM_EVENTS_NATS_SUBJECT")
                .unwrap_or_else(|| "scrm.events".into());
            name_ok("SCRM_EVENTS_NATS_SUBJECT", &subject, &['.'])?;
            let window = parse_or(
                src,
                "SCRM_EVENTS_NATS_DUPLICATE_WINDOW_SECS",
                3600u64,
                sources,
            )?;
            if window == 0 {
                return Err(bad(
                    "SCRM_EVENTS_NATS_DUPLICATE_WINDOW_SECS",
                    "must be at least 1",
                ));
            }
            Some(NatsSinkConfig {
                url: Secret::new(url),
                stream,
                subject,
                duplicate_window: Duration::from_secs(window),
            })
        }
    };
    let batch = parse_or(src, "SCRM_EVENTS_RELAY_BATCH", 500i64, sources)?;
    if !(1..=10_000).contains(&batch) {
        return Err(bad("SCRM_EVENTS_RELAY_BATCH", "must be 1..=10000"));
    }
    Ok(EventsConfig { amqp, nats, batch })
}

/// Where the job engine's alerts go (seed 002: alert when the failure rate is too high).
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    /// `SCRM_ALERT_WEBHOOK_URL`: POST each firing/resolved alert here, signed.
    pub webhook_url: Option<String>,
    /// `SCRM_ALERT_WEBHOOK_SECRET`: the HMAC-SHA256 key (required with the URL, 16+ chars).
    pub webhook_secret: Option<Secret>,
    /// `SCRM_ALERT_WECOM_TO`: WeCom userids (`|` or `,` separated) told by app message.
    pub wecom_to: Vec<String>,
    /// `SCRM_ALERT_WECOM_TENANT`: whose WeCom app sends them (default 1).
    pub wecom_tenant: i64,
}

fn alerts_config(
    src: &dyn Source,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<AlertsConfig, ConfigError> {
    let webhook_url = src.get("SCRM_ALERT_WEBHOOK_URL");
    let webhook_secret = src.get("SCRM_ALERT_WEBHOOK_SECRET").map(Secret::new);
    if let Some(u) = &webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(bad(
                "SCRM_ALERT_WEBHOOK_URL",
                "must start with http:// or https://",
            ));
        }
        match &webhook_secret {
            None => {
                return Err(bad(
                    "SCRM_ALERT_WEBHOOK_SECRET",
                    "required with SCRM_ALERT_WEBHOOK_URL",
                ));
            }
            Some(s) if s.expose().chars().count() < 16 => {
                return Err(bad(
                    "SCRM_ALERT_WEBHOOK_SECRET",
                    "must be at least 16 characters",
                ));
            }
            Some(_) => {}
        }
    }
    let wecom_to: Vec<String> = src
        .get("SCRM_ALERT_WECOM_TO")
        .map(|v| {
            v.split(['|', ','])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let wecom_tenant = parse_or(src, "SCRM_ALERT_WECOM_TENANT", 1i64, sources)?;
    Ok(AlertsConfig {
        webhook_url,
        webhook_secret,
        wecom_to,
        wecom_tenant,
    })
}

// --- integration (seed 003) ---

/// The integration module's process settings.
#[derive(Debug, Clone)]
pub struct IntegrationConfig {
    /// `SCRM_MASTER_KEY`: 32 bytes as 64 hex characters or base64; encrypts WeCom secrets at rest.
    pub master_key: Option<Secret>,
    /// `SCRM_MASTER_KEY_FILE`: where the key is kept (created on first start) when
    /// `SCRM_MASTER_KEY` is not set. Default `data/master.key`, beside the default database.
    pub master_key_file: std::path::PathBuf,
    /// The seeds' `WEWORK_CORP_ID` / `WEWORK_CORP_SECRET` / `WEWORK_AGENT_ID` (+ optional
    /// `WEWORK_CONTACT_SECRET`, `WEWORK_CONTACTS_SECRET`, `WEWORK_TOKEN`,
    /// `WEWORK_ENCODING_AES_KEY`, `WEWORK_API_BASE`): the default tenant's config at start.
    pub wework: Option<WeworkEnv>,
    /// `WEWORK_SYNC_INCREMENTAL_CRON` (default hourly) and `WEWORK_SYNC_FULL_CRON` (default
    /// nightly at 03:30, Asia/Shanghai); `off` disables one. Reconciliation catches lost callbacks.
    pub incremental_cron: Option<String>,
    pub full_cron: Option<String>,
}

/// A WeCom configuration given in the environment.
#[derive(Debug, Clone)]
pub struct WeworkEnv {
    pub corp_id: String,
    pub corp_secret: Secret,
    pub agent_id: i64,
    pub contact_secret: Option<Secret>,
    pub contacts_secret: Option<Secret>,
    pub token: Option<Secret>,
    pub encoding_aes_key: Option<Secret>,
    pub api_base: Option<String>,
}

fn integration_config(
    src: &dyn Source,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<IntegrationConfig, ConfigError> {
    let master_key = src.get("SCRM_MASTER_KEY").map(Secret::new);
    let master_key_file = src
        .get("SCRM_MASTER_KEY_FILE")
        .unwrap_or_else(|| "data/master.key".into())
        .into();
    let wework = match (src.get("WEWORK_CORP_ID"), src.get("WEWORK_CORP_SECRET")) {
        (None, None) => None,
        (Some(_), None) => return Err(bad("WEWORK_CORP_SECRET", "required with WEWORK_CORP_ID")),
        (None, Some(_)) => return Err(bad("WEWORK_CORP_ID", "required with WEWORK_CORP_SECRET")),
        (Some(corp_id), Some(secret)) => {
            sources.insert("WEWORK_CORP_ID", "environment");
            let agent_id = src
                .get("WEWORK_AGENT_ID")
                .ok_or_else(|| bad("WEWORK_AGENT_ID", "required with WEWORK_CORP_ID"))?;
            let agent_id = agent_id
                .trim()
                .parse()
                .map_err(|e| bad("WEWORK_AGENT_ID", format!("{agent_id:?}: {e}")))?;
            let api_base = src.get("WEWORK_API_BASE");
            if let Some(b) = &api_base
                && !(b.starts_with("http://") || b.starts_with("https://"))
            {
                return Err(bad(
                    "WEWORK_API_BASE",
                    "must start with http:// or https://",
                ));
            }
            Some(WeworkEnv {
                corp_id,
                corp_secret: Secret::new(secret),
                agent_id,
                contact_secret: src.get("WEWORK_CONTACT_SECRET").map(Secret::new),
                contacts_secret: src.get("WEWORK_CONTACTS_SECRET").map(Secret::new),
                token: src.get("WEWORK_TOKEN").map(Secret::new),
                encoding_aes_key: src.get("WEWORK_ENCODING_AES_KEY").map(Secret::new),
                api_base,
            })
        }
    };
    let cron = |key: &'static str, default: &str| -> Result<Option<String>, ConfigError> {
        match src.get(key) {
            Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
            Some(v) => {
                scrm_jobs::cron::next_after(&v, "Asia/Shanghai", 0)
                    .map_err(|e| bad(key, e.to_string()))?;
                Ok(Some(v))
            }
            None => Ok(Some(default.to_string())),
        }
    };
    Ok(IntegrationConfig {
        master_key,
        master_key_file,
        wework,
        incremental_cron: cron("WEWORK_SYNC_INCREMENTAL_CRON", "0 * * * *")?,
        full_cron: cron("WEWORK_SYNC_FULL_CRON", "30 3 * * *")?,
    })
}

/// A configuration error: which key is bad and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A source of configuration values: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded into it).
pub struct Env;

impl Source for Env {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Source for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key)
            .cloned()
            .filter(|v| !v.trim().is_empty())
    }
}

/// The default SQLite database, a file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/scrm.db";

impl Config {
    /// Load `.env` (if present) into the environment, then read the configuration from it.
    pub fn from_env() -> Result<Config, ConfigError> {
        // A missing .env is normal; a malformed one is an error worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(bad(".env", e.to_string())),
        }
        Config::from_source(&Env)
    }

    /// Read the configuration from any source; the defaults run with nothing set.
    pub fn from_source(src: &dyn Source) -> Result<Config, ConfigError> {
        let mut sources = BTreeMap::new();
        let database_url = database_url(src, &mut sources)?;
        let redis_url = redis_url(src, &mut sources)?;

        let port = parse_or(src, "PORT", 7000u16, &mut sources)?;
        let bind = parse_or(src, "SCRM_BIND", IpAddr::from([127, 0, 0, 1]), &mut sources)?;
        let role = match src
            .get("SCRM_ROLE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("all") => Role::All,
            Some("api") => Role::Api,
            Some("worker") => Role::Worker,
            Some(other) => {
                return Err(bad(
                    "SCRM_ROLE",
                    format!("{other:?} is not all, api or worker"),
                ));
            }
        };
        let log_format = match src.get("SCRM_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "SCRM_LOG_FORMAT",
                    format!("{other:?} is not pretty or json"),
                ));
            }
        };
        let log_filter = src
            .get("RUST_LOG")
            .unwrap_or_else(|| "info,sqlx=warn".into());
        let request_timeout = Duration::from_secs(parse_or(
            src,
            "SCRM_REQUEST_TIMEOUT_SECS",
            30u64,
            &mut sources,
        )?);
        if request_timeout.is_zero() {
            return Err(bad("SCRM_REQUEST_TIMEOUT_SECS", "must be at least 1"));
        }
        let body_limit_bytes = parse_or(
            src,
            "SCRM_BODY_LIMIT_BYTES",
            2 * 1024 * 1024usize,
            &mut sources,
        )?;
        let session_ttl = Duration::from_secs(parse_or(
            src,
            "SCRM_SESSION_TTL_SECS",
            12 * 3600u64,
            &mut sources,
        )?);
        let database_max_connections =
            parse_or(src, "SCRM_DB_MAX_CONNECTIONS", 16u32, &mut sources)?;
        if database_max_connections == 0 {
            return Err(bad("SCRM_DB_MAX_CONNECTIONS", "must be at least 1"));
        }
        let login_max_failures = parse_or(src, "SCRM_LOGIN_MAX_FAILURES", 5u32, &mut sources)?;
        let login_window = Duration::from_secs(parse_or(
            src,
            "SCRM_LOGIN_WINDOW_SECS",
            300u64,
            &mut sources,
        )?);
        let worker_concurrency = parse_or(src, "SCRM_WORKER_CONCURRENCY", 32usize, &mut sources)?;
        if worker_concurrency == 0 {
            return Err(bad("SCRM_WORKER_CONCURRENCY", "must be at least 1"));
        }
        let job_lease_secs = parse_or(src, "SCRM_JOB_LEASE_SECS", 30u64, &mut sources)?;
        if !(3..=3600).contains(&job_lease_secs) {
            return Err(bad("SCRM_JOB_LEASE_SECS", "must be 3 to 3600 seconds"));
        }
        let wecom_calls_per_second =
            parse_or(src, "SCRM_WECOM_CALLS_PER_SECOND", 40f64, &mut sources)?;
        if !(0.1..=166.0).contains(&wecom_calls_per_second) {
            return Err(bad(
                "SCRM_WECOM_CALLS_PER_SECOND",
                "must be 0.1 to 166 (WeCom allows 10,000 calls a minute per corp per API)",
            ));
        }
        let wecom_call_burst = parse_or(src, "SCRM_WECOM_CALL_BURST", 200u32, &mut sources)?;
        if !(1..=10_000).contains(&wecom_call_burst) {
            return Err(bad("SCRM_WECOM_CALL_BURST", "must be 1 to 10000"));
        }
        let wecom_retry = match src.get("SCRM_WECOM_RETRY_SECS") {
            None => vec![5u64, 60, 300, 900],
            Some(raw) => {
                sources.insert("SCRM_WECOM_RETRY_SECS", "environment");
                let parsed: Result<Vec<u64>, _> =
                    raw.split(',').map(|p| p.trim().parse::<u64>()).collect();
                match parsed {
                    Ok(v) if !v.is_empty() && v.iter().all(|s| *s >= 1 && *s <= 86_400) => v,
                    _ => {
                        return Err(bad(
                            "SCRM_WECOM_RETRY_SECS",
                            format!("{raw:?}: comma-separated seconds, each 1 to 86400"),
                        ));
                    }
                }
            }
        }
        .into_iter()
        .map(Duration::from_secs)
        .collect();
        let integration = integration_config(src, &mut sources)?;
        let alerts = alerts_config(src, &mut sources)?;
        let gateway_lease_ms = parse_or(src, "SCRM_GATEWAY_LEASE_MS", 15_000i64, &mut sources)?;
        if !(500..=600_000).contains(&gateway_lease_ms) {
            return Err(bad("SCRM_GATEWAY_LEASE_MS", "must be 500 to 600000 ms"));
        }
        let moment_retention_days =
            parse_or(src, "SCRM_MOMENT_RETENTION_DAYS", 90i64, &mut sources)?;
        if !(1..=3650).contains(&moment_retention_days) {
            return Err(bad("SCRM_MOMENT_RETENTION_DAYS", "must be 1 to 3650 days"));
        }
        let allow_private_urls = match src.get("SCRM_ALLOW_PRIVATE_URLS").as_deref().map(str::trim)
        {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => {
                sources.insert("SCRM_ALLOW_PRIVATE_URLS", "environment");
                true
            }
            Some(other) => {
                return Err(bad(
                    "SCRM_ALLOW_PRIVATE_URLS",
                    format!("{other:?} is not true or false"),
                ));
            }
        };
        // The alert webhook goes through the private-address guard too (crate::outbound): a
        // literal private host is refused here, a name when an alert is posted.
        if let Some(u) = &alerts.webhook_url
            && !allow_private_urls
            && let Some(why) = url::Url::parse(u)
                .ok()
                .and_then(|u| crate::outbound::literal_refusal(&u))
        {
            return Err(bad(
                "SCRM_ALERT_WEBHOOK_URL",
                format!(
                    "{why}; set SCRM_ALLOW_PRIVATE_URLS=true to post alerts inside the network"
                ),
            ));
        }
        let events = events_config(src, &mut sources)?;
        let device_send_gap_ms = match src.get("SCRM_DEVICE_SEND_GAP_MS") {
            None => (3000, 8000),
            Some(v) => {
                sources.insert("SCRM_DEVICE_SEND_GAP_MS", "environment");
                let parsed = v
                    .split_once('-')
                    .and_then(|(a, b)| {
                        Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                    })
                    .filter(|(a, b)| a <= b);
                parsed.ok_or_else(|| {
                    bad(
                        "SCRM_DEVICE_SEND_GAP_MS",
                        "expected min-max milliseconds, min <= max (e.g. 3000-8000)",
                    )
                })?
            }
        };
        let admin_password = src.get("SCRM_ADMIN_PASSWORD").map(Secret::new);
        if let Some(p) = &admin_password
            && p.expose().chars().count() < 8
        {
            return Err(bad("SCRM_ADMIN_PASSWORD", "must be at least 8 characters"));
        }

        Ok(Config {
            database_url,
            database_max_connections,
            bind,
            port,
            redis_url,
            role,
            request_timeout,
            body_limit_bytes,
            session_ttl,
            admin_password,
            log_format,
            log_filter,
            login_max_failures,
            login_window,
            worker_concurrency,
            job_lease: Duration::from_secs(job_lease_secs),
            wecom_calls_per_second,
            wecom_call_burst,
            wecom_retry,
            sources,
            integration,
            alerts,
            device_send_gap_ms,
            gateway_lease_ms,
            moment_retention_days,
            allow_private_urls,
            events,
        })
    }

    /// The database backend the URL names.
    pub fn backend(&self) -> Backend {
        Backend::from_url(self.database_url.expose()).unwrap_or(Backend::Sqlite)
    }

    /// Every setting as `KEY = value` lines, secrets masked (for `scrm config`).
    pub fn describe(&self) -> Vec<(String, String)> {
        let src = |k: &str| self.sources.get(k).copied().unwrap_or("default");
        vec![
            (
                "DATABASE_URL".into(),
                format!(
                    "{}  ({})",
                    scrm_db::redact_url(self.database_url.expose()),
                    src("DATABASE_URL")
                ),
            ),
            ("database backend".into(), self.backend().to_string()),
            (
                "SCRM_DB_MAX_CONNECTIONS".into(),
                self.database_max_connections.to_string(),
            ),
            ("SCRM_BIND".into(), self.bind.to_string()),
            ("PORT".into(), format!("{}  ({})", self.port, src("PORT"))),
            (
                "REDIS_URL".into(),
                match &self.redis_url {
                    Some(u) => format!(
                        "{}  ({})",
                        scrm_db::redact_url(u.expose()),
                        src("REDIS_URL")
                    ),
                    None => "(not configured: in-process cache, limits and wake-ups)".into(),
                },
            ),
            (
                "SCRM_ROLE".into(),
                format!("{:?}", self.role).to_lowercase(),
            ),
            (
                "SCRM_REQUEST_TIMEOUT_SECS".into(),
                self.request_timeout.as_secs().to_string(),
            ),
            (
                "SCRM_BODY_LIMIT_BYTES".into(),
                self.body_limit_bytes.to_string(),
            ),
            (
                "SCRM_SESSION_TTL_SECS".into(),
                self.session_ttl.as_secs().to_string(),
            ),
            (
                "SCRM_LOGIN_MAX_FAILURES".into(),
                self.login_max_failures.to_string(),
            ),
            (
                "SCRM_LOGIN_WINDOW_SECS".into(),
                self.login_window.as_secs().to_string(),
            ),
            (
                "SCRM_WORKER_CONCURRENCY".into(),
                self.worker_concurrency.to_string(),
            ),
            (
                "SCRM_JOB_LEASE_SECS".into(),
                self.job_lease.as_secs().to_string(),
            ),
            (
                "SCRM_WECOM_CALLS_PER_SECOND".into(),
                self.wecom_calls_per_second.to_string(),
            ),
            (
                "SCRM_WECOM_CALL_BURST".into(),
                self.wecom_call_burst.to_string(),
            ),
            (
                "SCRM_WECOM_RETRY_SECS".into(),
                self.wecom_retry
                    .iter()
                    .map(|d| d.as_secs().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "SCRM_ADMIN_PASSWORD".into(),
                if self.admin_password.is_some() {
                    "***".into()
                } else {
                    "(not set)".into()
                },
            ),
            (
                "SCRM_LOG_FORMAT".into(),
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("RUST_LOG".into(), self.log_filter.clone()),
            (
                "WEWORK_CORP_ID".into(),
                self.integration
                    .wework
                    .as_ref()
                    .map(|w| format!("{} (secrets ***)", w.corp_id))
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            (
                "SCRM_EVENTS_AMQP_URL".into(),
                match &self.events.amqp {
                    Some(a) => format!(
                        "{} (exchange {})",
                        scrm_db::redact_url(a.url.expose()),
                        a.exchange
                    ),
                    None => "(not set: no RabbitMQ relay)".into(),
                },
            ),
            (
                "SCRM_EVENTS_NATS_URL".into(),
                match &self.events.nats {
                    Some(n) => format!(
                        "{} (stream {}, subjects {}.<type>)",
                        scrm_db::redact_url(n.url.expose()),
                        n.stream,
                        n.subject
                    ),
                    None => "(not set: no NATS relay)".into(),
                },
            ),
            (
                "SCRM_MASTER_KEY".into(),
                if self.integration.master_key.is_some() {
                    "***".into()
                } else {
                    format!("(key file {})", self.integration.master_key_file.display())
                },
            ),
            (
                "SCRM_GATEWAY_LEASE_MS".into(),
                self.gateway_lease_ms.to_string(),
            ),
            (
                "SCRM_MOMENT_RETENTION_DAYS".into(),
                self.moment_retention_days.to_string(),
            ),
            (
                "SCRM_ALLOW_PRIVATE_URLS".into(),
                self.allow_private_urls.to_string(),
            ),
        ]
    }
}

fn parse_or<T: std::str::FromStr>(
    src: &dyn Source,
    key: &'static str,
    default: T,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match src.get(key) {
        None => Ok(default),
        Some(raw) => {
            sources.insert(key, "environment");
            raw.trim()
                .parse()
                .map_err(|e| bad(key, format!("{raw:?}: {e}")))
        }
    }
}

fn database_url(
    src: &dyn Source,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<Secret, ConfigError> {
    if let Some(url) = src.get("DATABASE_URL") {
        sources.insert("DATABASE_URL", "DATABASE_URL");
        if Backend::from_url(&url).is_none() {
            return Err(bad(
                "DATABASE_URL",
                "must start with sqlite:, mysql: or postgres:",
            ));
        }
        if !url.starts_with("sqlite:") {
            url::Url::parse(&url).map_err(|e| bad("DATABASE_URL", e.to_string()))?;
        }
        return Ok(Secret::new(url));
    }
    let Some(host) = src.get("DB_HOST") else {
        return Ok(Secret::new(DEFAULT_DATABASE_URL));
    };
    // The seeds' names describe a MySQL server.
    sources.insert(
        "DATABASE_URL",
        "DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_DATABASE",
    );
    let port: u16 = match src.get("DB_PORT") {
        None => 3306,
        Some(p) => p
            .parse()
            .map_err(|e| bad("DB_PORT", format!("{p:?}: {e}")))?,
    };
    let user = src.get("DB_USER").unwrap_or_else(|| "root".into());
    let database = src
        .get("DB_DATABASE")
        .ok_or_else(|| bad("DB_DATABASE", "required when DB_HOST is set"))?;
    let mut url = url::Url::parse(&format!("mysql://{host}:{port}/"))
        .map_err(|e| bad("DB_HOST", e.to_string()))?;
    url.set_username(&user)
        .map_err(|_| bad("DB_USER", "not usable in a URL"))?;
    if let Some(pw) = src.get("DB_PASSWORD") {
        url.set_password(Some(&pw))
            .map_err(|_| bad("DB_PASSWORD", "not usable in a URL"))?;
    }
    url.set_path(&format!("/{database}"));
    Ok(Secret::new(url.to_string()))
}

fn redis_url(
    src: &dyn Source,
    sources: &mut BTreeMap<&'static str, &'static str>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(url) = src.get("REDIS_URL") {
        sources.insert("REDIS_URL", "REDIS_URL");
        let parsed = url::Url::parse(&url).map_err(|e| bad("REDIS_URL", e.to_string()))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(bad("REDIS_URL", "must start with redis:// or rediss://"));
        }
        return Ok(Some(Secret::new(url)));
    }
    let Some(host) = src.get("REDIS_HOST") else {
        return Ok(None);
    };
    sources.insert("REDIS_URL", "REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB");
    let port: u16 = match src.get("REDIS_PORT") {
        None => 6379,
        Some(p) => p
            .parse()
            .map_err(|e| bad("REDIS_PORT", format!("{p:?}: {e}")))?,
    };
    let db: u32 = match src.get("REDIS_DB") {
        None => 0,
        Some(d) => d
            .parse()
            .map_err(|e| bad("REDIS_DB", format!("{d:?}: {e}")))?,
    };
    let mut url = url::Url::parse(&format!("redis://{host}:{port}/{db}"))
        .map_err(|e| bad("REDIS_HOST", e.to_string()))?;
    if let Some(pw) = src.get("REDIS_PASSWORD") {
        url.set_password(Some(&pw))
            .map_err(|_| bad("REDIS_PASSWORD", "not usable in a URL"))?;
    }
    Ok(Some(Secret::new(url.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_source(&map)
    }

    #[test]
    fn nothing_set_runs_on_sqlite_port_7000_on_loopback() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.port, 7000);
        assert_eq!(c.bind.to_string(), "127.0.0.1");
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn the_seeds_names_build_a_mysql_url() {
        let c = cfg(&[
            ("DB_HOST", "db"),
            ("DB_USER", "scrm"),
            ("DB_PASSWORD", "p@ss"),
            ("DB_DATABASE", "crm"),
        ])
        .unwrap();
        assert_eq!(c.database_url.expose(), "mysql://scrm:p%40ss@db:3306/crm");
        let c = cfg(&[
            ("REDIS_HOST", "cache"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "x"),
        ])
        .unwrap();
        assert_eq!(c.redis_url.unwrap().expose(), "redis://:x@cache:6379/2");
    }

    #[test]
    fn the_wecom_call_rate_per_corp_is_configurable_within_wecoms_limit() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.wecom_calls_per_second, c.wecom_call_burst), (40.0, 200));
        let c = cfg(&[
            ("SCRM_WECOM_CALLS_PER_SECOND", "12.5"),
            ("SCRM_WECOM_CALL_BURST", "30"),
        ])
        .unwrap();
        assert_eq!((c.wecom_calls_per_second, c.wecom_call_burst), (12.5, 30));
        for (k, v) in [
            ("SCRM_WECOM_CALLS_PER_SECOND", "0"),
            ("SCRM_WECOM_CALLS_PER_SECOND", "500"),
            ("SCRM_WECOM_CALL_BURST", "0"),
        ] {
            assert_eq!(cfg(&[(k, v)]).unwrap_err().key, k);
        }
    }

    #[test]
    fn a_bad_value_names_its_key() {
        assert_eq!(cfg(&[("PORT", "seventy")]).unwrap_err().key, "PORT");
        assert_eq!(
            cfg(&[("DATABASE_URL", "oracle://x")]).unwrap_err().key,
            "DATABASE_URL"
        );
        assert_eq!(
            cfg(&[("REDIS_PORT", "-1"), ("REDIS_HOST", "h")])
                .unwrap_err()
                .key,
            "REDIS_PORT"
        );
        assert_eq!(cfg(&[("SCRM_ROLE", "boss")]).unwrap_err().key, "SCRM_ROLE");
        assert_eq!(cfg(&[("DB_HOST", "h")]).unwrap_err().key, "DB_DATABASE");
    }

    #[test]
    fn device_defaults_are_seed_002s_gap_and_a_90_day_moment_retention() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.device_send_gap_ms, (3000, 8000));
        assert_eq!(c.moment_retention_days, 90);
        let c = cfg(&[("SCRM_MOMENT_RETENTION_DAYS", "30")]).unwrap();
        assert_eq!(c.moment_retention_days, 30);
        for bad in ["0", "3651", "ninety"] {
            assert_eq!(
                cfg(&[("SCRM_MOMENT_RETENTION_DAYS", bad)]).unwrap_err().key,
                "SCRM_MOMENT_RETENTION_DAYS",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_private_alert_webhook_needs_private_urls_allowed() {
        let hook = |url: &'static str| {
            [
                ("SCRM_ALERT_WEBHOOK_URL", url),
                ("SCRM_ALERT_WEBHOOK_SECRET", "0123456789abcdef"),
            ]
        };
        for url in [
            "http://10.0.0.5/alerts",
            "http://169.254.169.254/",
            "http://localhost:9/",
        ] {
            let e = cfg(&hook(url)).unwrap_err();
            assert_eq!(e.key, "SCRM_ALERT_WEBHOOK_URL", "{url}");
            assert!(e.reason.contains("not a public"), "{}", e.reason);
        }
        assert!(cfg(&hook("https://alerts.example.com/hook")).is_ok());
        let mut allowed = hook("http://10.0.0.5/alerts").to_vec();
        allowed.push(("SCRM_ALLOW_PRIVATE_URLS", "true"));
        assert!(cfg(&allowed).is_ok());
    }

    #[test]
    fn secrets_are_masked_in_descriptions() {
        let c = cfg(&[
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("SCRM_ADMIN_PASSWORD", "correct horse"),
        ])
        .unwrap();
        let text = format!("{:?} {:?}", c.describe(), c);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("correct horse"), "{text}");
    }
}
