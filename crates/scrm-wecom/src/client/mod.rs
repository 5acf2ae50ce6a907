//! The WeCom server-API client: one [`WeComClient`] per process, one cheap [`AppClient`] per
//! (corp, app secret), typed calls in the `api_*` modules.
//!
//! Every call goes: rate limiter permit → cached access token → HTTP → `errcode` check, and
//! the retry policy in [`RetryConfig`] decides what happens on failure:
//!
//! | failure | action |
//! |---|---|
//! | 40001 / 40014 / 42001 | drop that token, fetch a new one, retry once |
//! | -1 system busy | exponential backoff with jitter, at most `busy_max_attempts` tries |
//! | 45009 frequency limit | block the (corp, API) bucket for `freq_limit_block` (60 s: the window of a per-minute limit, API-FACTS §2), then retry |
//! | 45033 concurrency limit | back off `concurrent_limit_delay`, doubling |
//! | HTTP error, timeout | retried only for reads; a write may have happened |
//! | anything else | returned as [`WeComError`] |

mod api_contact_way;
mod api_contacts;
mod api_customers;
mod api_groupchat;
mod api_media;
mod api_msg;
mod api_tags;
mod api_transfer;
pub mod error;
pub mod ratelimit;
pub mod token;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use api_contact_way::*;
pub use api_contacts::*;
pub use api_customers::*;
pub use api_groupchat::*;
pub use api_media::*;
pub use api_msg::*;
pub use api_tags::*;
pub use api_transfer::*;
pub use error::{WeComError, errcode_meaning};
pub use ratelimit::{
    MemoryRateLimiter, NoRateLimit, Rate, RateLimitConfig, RateLimiter, RedisRateLimiter,
};
pub use token::{CachedToken, MemoryTokenCache, RedisTokenCache, TokenCache, TokenKey};

use crate::secret::Secret;
use error::{CONCURRENT_OUT_OF_LIMIT, FREQ_OUT_OF_LIMIT, SYSTEM_BUSY};
use token::FlightLocks;

/// The real WeCom API.
pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com";

/// How hard to try before giving up. Durations are fields so tests can shrink them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Tries in all (first + retries) on errcode -1; WeCom advises at most 3.
    pub busy_max_attempts: u32,
    /// First backoff after -1; doubles each retry, with jitter.
    pub busy_base_delay: Duration,
    /// Longest backoff after -1 or 45033.
    pub max_delay: Duration,
    /// How long to hold an API after 45009 (the window of a per-minute limit is 60 s).
    pub freq_limit_block: Duration,
    /// Retries after 45009 before returning the error.
    pub freq_limit_max_retries: u32,
    /// First backoff after 45033; doubles each retry, with jitter.
    pub concurrent_limit_delay: Duration,
    /// Retries after 45033.
    pub concurrent_limit_max_retries: u32,
    /// Tries in all for reads that fail in transport (connection error, timeout, 5xx).
    pub transport_max_attempts: u32,
    /// First backoff after a transport failure; doubles, with jitter.
    pub transport_base_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            busy_max_attempts: 3,
            busy_base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            freq_limit_block: Duration::from_secs(60),
            freq_limit_max_retries: 1,
            concurrent_limit_delay: Duration::from_secs(1),
            concurrent_limit_max_retries: 3,
            transport_max_attempts: 3,
            transport_base_delay: Duration::from_millis(300),
        }
    }
}

impl RetryConfig {
    /// Same policy with every delay in milliseconds: for tests against a simulator.
    pub fn fast() -> Self {
        Self {
            busy_base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            freq_limit_block: Duration::from_millis(20),
            concurrent_limit_delay: Duration::from_millis(5),
            transport_base_delay: Duration::from_millis(5),
            ..Self::default()
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// `https://qyapi.weixin.qq.com`, or a simulator's `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Outbound limits, used by the limiters built with [`WeComClient::in_memory`] and by
    /// callers constructing a [`RedisRateLimiter`].
    pub rate_limits: RateLimitConfig,
    /// Refresh a token this long before it expires (capped at half its lifetime).
    pub token_refresh_margin: Duration,
    /// How long a process may hold the cross-process refresh lock.
    pub token_lock_ttl: Duration,
    /// How often a process waiting for another's refresh polls the shared cache.
    pub token_poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            retry: RetryConfig::default(),
            rate_limits: RateLimitConfig::default(),
            token_refresh_margin: Duration::from_secs(30 * 60),
            token_lock_ttl: Duration::from_secs(30),
            token_poll_interval: Duration::from_millis(50),
        }
    }
}

impl ClientConfig {
    /// Settings for a local simulator at `base_url`: fast retries, no practical rate limit.
    pub fn for_simulator(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            retry: RetryConfig::fast(),
            rate_limits: RateLimitConfig::unlimited(),
            ..Self::default()
        }
    }
}

/// GET with query parameters, or POST with a JSON or multipart body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// One WeCom endpoint: its name for metrics and errors, its path, and whether it is safe to
/// repeat after a transport failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Api {
    pub name: &'static str,
    pub path: &'static str,
    pub method: Method,
    /// Reads (and idempotent writes such as deletes) are retried after transport failures;
    /// other writes are not: the first attempt may have happened, and repeating a mass send
    /// or a transfer is worse than reporting the failure.
    pub repeatable: bool,
}

impl Api {
    /// A GET read.
    pub(crate) const fn get(name: &'static str, path: &'static str) -> Self {
        Self {
            name,
            path,
            method: Method::Get,
            repeatable: true,
        }
    }
    /// A POST that only reads.
    pub(crate) const fn post_read(name: &'static str, path: &'static str) -> Self {
        Self {
            name,
            path,
            method: Method::Post,
            repeatable: true,
        }
    }
    /// A POST whose repetition has the same effect as one call (delete, set, cancel).
    pub(crate) const fn post_idempotent(name: &'static str, path: &'static str) -> Self {
        Self {
            name,
            path,
            method: Method::Post,
            repeatable: true,
        }
    }
    /// A POST that creates or sends something: never repeated after a transport failure.
    pub(crate) const fn post_write(name: &'static str, path: &'static str) -> Self {
        Self {
            name,
            path,
            method: Method::Post,
            repeatable: false,
        }
    }
}

/// A request body, kept as bytes so a retry can send it again.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Multipart {
        filename: String,
        content_type: String,
        bytes: Vec<u8>,
    },
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    base_url: String,
    tokens: Arc<dyn TokenCache>,
    limiter: Arc<dyn RateLimiter>,
    flights: FlightLocks,
}

/// The shared client: HTTP pool, token cache, rate limiter. Clone freely (one `Arc`).
#[derive(Clone)]
pub struct WeComClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WeComClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeComClient")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl WeComClient {
    /// A client with the given token cache and rate limiter.
    pub fn new(
        config: ClientConfig,
        tokens: Arc<dyn TokenCache>,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, WeComError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("scrm-wecom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WeComError::InvalidRequest(format!("HTTP client: {e}")))?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(WeComError::InvalidRequest(format!(
                "base_url must be http(s): {base_url}"
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                tokens,
                limiter,
                flights: FlightLocks::default(),
                config,
            }),
        })
    }

    /// A single-process client: [`MemoryTokenCache`] and a [`MemoryRateLimiter`] built from
    /// `config.rate_limits`.
    pub fn in_memory(config: ClientConfig) -> Result<Self, WeComError> {
        let limiter = Arc::new(MemoryRateLimiter::new(config.rate_limits.clone()));
        Self::new(config, Arc::new(MemoryTokenCache::new()), limiter)
    }

    /// The settings in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A handle for one app of one corp (its `corpsecret`). Cheap; make one per call site.
    pub fn app(&self, corp_id: impl Into<String>, secret: impl Into<Secret>) -> AppClient {
        let corp_id: Arc<str> = Arc::from(corp_id.into());
        let secret = secret.into();
        let key = TokenKey::new(&corp_id, &secret);
        AppClient {
            client: self.clone(),
            corp_id,
            secret,
            key,
            calls: Arc::default(),
        }
    }
}

/// The client bound to one app's credentials; every API method lives here.
#[derive(Clone)]
pub struct AppClient {
    client: WeComClient,
    corp_id: Arc<str>,
    secret: Secret,
    key: TokenKey,
    /// HTTP exchanges made through this handle and its clones (retries and token fetches
    /// included), so a caller can count its own calls while others share the client.
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppClient")
            .field("corp_id", &self.corp_id)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct ErrHeader {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl AppClient {
    /// The corp this handle calls for.
    pub fn corp_id(&self) -> &str {
        &self.corp_id
    }

    /// The underlying shared client.
    pub fn client(&self) -> &WeComClient {
        &self.client
    }

    /// HTTP exchanges with WeCom made through this handle and its clones so far, every retry
    /// and token fetch included, failed ones too. A fresh handle from [`WeComClient::app`]
    /// starts at 0, so one piece of work (a sync run) counts its own calls only.
    pub fn calls_made(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) async fn get<R: DeserializeOwned>(
        &self,
        api: &Api,
        query: &[(&'static str, String)],
    ) -> Result<R, WeComError> {
        self.execute(api, query, &Body::Empty, true).await
    }

    pub(crate) async fn post<B: serde::Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        api: &Api,
        body: &B,
    ) -> Result<R, WeComError> {
        let json =
            serde_json::to_vec(body).map_err(|e| WeComError::InvalidRequest(e.to_string()))?;
        self.execute(api, &[], &Body::Json(json), true).await
    }

    /// The retry loop around [`Self::send_once`] (policy in the module doc).
    pub(crate) async fn execute<R: DeserializeOwned>(
        &self,
        api: &Api,
        query: &[(&'static str, String)],
        body: &Body,
        with_token: bool,
    ) -> Result<R, WeComError> {
        let inner = &self.client.inner;
        let retry = &inner.config.retry;
        let (mut token_refreshed, mut busy, mut freq, mut conc, mut transport) =
            (false, 1, 0, 0, 1);
        loop {
            inner.limiter.acquire(&self.corp_id, api.name).await?;
            let token = if with_token {
                Some(self.access_token().await?)
            } else {
                None
            };
            let err = match self.send_once(api, query, body, token.as_ref()).await {
                Ok(response) => return Ok(response),
                Err(err) => err,
            };
            let delay = match err.errcode() {
                Some(_) if with_token && err.is_token_invalid() && !token_refreshed => {
                    token_refreshed = true;
                    if let Some(token) = &token {
                        inner.tokens.invalidate(&self.key, token.expose()).await?;
                    }
                    Duration::ZERO
                }
                Some(SYSTEM_BUSY) if busy < retry.busy_max_attempts => {
                    busy += 1;
                    backoff(retry.busy_base_delay, busy - 1, retry.max_delay)
                }
                Some(FREQ_OUT_OF_LIMIT) if freq < retry.freq_limit_max_retries => {
                    freq += 1;
                    // Hold everyone calling this API for this corp, not just this task.
                    inner
                        .limiter
                        .penalize(&self.corp_id, api.name, retry.freq_limit_block)
                        .await?;
                    retry.freq_limit_block
                }
                Some(CONCURRENT_OUT_OF_LIMIT) if conc < retry.concurrent_limit_max_retries => {
                    conc += 1;
                    backoff(retry.concurrent_limit_delay, conc, retry.max_delay)
                }
                None if api.repeatable
                    && err.is_transient()
                    && transport < retry.transport_max_attempts =>
                {
                    transport += 1;
                    backoff(retry.transport_base_delay, transport - 1, retry.max_delay)
                }
                _ => return Err(err),
            };
            tracing::warn!(api = api.name, corp_id = %self.corp_id, error = %err, delay_ms = delay.as_millis() as u64, "retrying WeCom call");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One HTTP exchange, with metrics. `access_token` goes in the query, never the body.
    async fn send_once<R: DeserializeOwned>(
        &self,
        api: &Api,
        query: &[(&'static str, String)],
        body: &Body,
        token: Option<&Secret>,
    ) -> Result<R, WeComError> {
        let started = Instant::now();
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.send_unmetered(api, query, body, token).await;
        let label = match &result {
            Ok(_) => "0".to_owned(),
            Err(e) => e.metric_label(),
        };
        metrics::counter!("wecom_api_calls_total", "api" => api.name, "errcode" => label)
            .increment(1);
        metrics::histogram!("wecom_api_latency_seconds", "api" => api.name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn send_unmetered<R: DeserializeOwned>(
        &self,
        api: &Api,
        query: &[(&'static str, String)],
        body: &Body,
        token: Option<&Secret>,
    ) -> Result<R, WeComError> {
        let inner = &self.client.inner;
        let url = format!("{}{}", inner.base_url, api.path);
        let mut request = match api.method {
            Method::Get => inner.http.get(url),
            Method::Post => inner.http.post(url),
        };
        let mut params: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(token) = token {
            params.push(("access_token", token.expose()));
        }
        request = request.query(&params);
        request = match body {
            Body::Empty => request,
            Body::Json(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Multipart {
                filename,
                content_type,
                bytes,
            } => {
                let part = reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name(filename.clone())
                    .mime_str(content_type)
                    .map_err(|e| WeComError::InvalidRequest(format!("content type: {e}")))?;
                request.multipart(reqwest::multipart::Form::new().part("media", part))
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| WeComError::from_reqwest(api.name, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(WeComError::Http {
                api: api.name,
                status: Some(status.as_u16()),
                message: status.canonical_reason().unwrap_or("HTTP error").to_owned(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| WeComError::from_reqwest(api.name, e))?;
        let decode = |e: serde_json::Error| WeComError::Decode {
            api: api.name,
            message: e.to_string(),
        };
        let header: ErrHeader = serde_json::from_slice(&bytes).map_err(decode)?;
        if header.errcode != 0 {
            return Err(WeComError::api(api.name, header.errcode, header.errmsg));
        }
        serde_json::from_slice(&bytes).map_err(decode)
    }
}

/// `base * 2^(n-1)`, capped, with "equal jitter" (half fixed, half random) so a crowd of
/// retrying tasks spreads out instead of hitting WeCom in step.
fn backoff(base: Duration, n: u32, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(cap);
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for n in 1..10 {
            let d = backoff(base, n, cap);
            let full = (base * (1 << (n - 1))).min(cap);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let client = WeComClient::in_memory(ClientConfig::default()).unwrap();
        let app = client.app("ww1", "top-secret-value");
        assert!(!format!("{app:?}").contains("top-secret"));
        assert!(!app.key.as_str().contains("top-secret"));
    }
}
