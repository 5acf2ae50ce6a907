//! Outbound rate limiting per (corp, API), so scrm stays under WeCom's limits instead of
//! discovering them through 45009 blocks that last a minute or an hour (API-FACTS §2).
//!
//! Both limiters implement GCRA (a token bucket expressed as one "theoretical arrival time")
//! with reservations: `acquire` books the next slot and sleeps until it, so waiting callers
//! are served in order and no one spins. The Redis limiter runs the same arithmetic in a Lua
//! script against Redis's clock, so every process draws from one bucket.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::error::WeComError;

/// A sustained rate and how many calls may go at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls that may be made back to back.
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained with `burst` at once.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    fn interval(&self) -> Duration {
        if self.per_second > 0.0 {
            Duration::from_secs_f64(1.0 / self.per_second)
        } else {
            Duration::ZERO
        }
    }

    fn burst(&self) -> u32 {
        self.burst.max(1)
    }
}

/// Limits per API name (e.g. `externalcontact/get`), with a default for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Used for any API without its own entry. WeCom allows 10,000/min and 150,000/hour per
    /// corp per API; 40/s sustained (144,000/h) with a burst of 200 stays under both.
    pub default: Rate,
    /// Per-API overrides.
    pub per_api: HashMap<String, Rate>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let mut per_api = HashMap::new();
        // gettoken is cached; many calls mean a bug, and failures at 2000/h block the IP.
        per_api.insert("gettoken".to_owned(), Rate::new(2.0, 10));
        Self {
            default: Rate::new(40.0, 200),
            per_api,
        }
    }
}

impl RateLimitConfig {
    /// No practical limit: for tests against a local simulator.
    pub fn unlimited() -> Self {
        Self {
            default: Rate::new(1_000_000.0, 1_000_000),
            per_api: HashMap::new(),
        }
    }

    /// The rate for `api`.
    pub fn rate_for(&self, api: &str) -> Rate {
        self.per_api.get(api).copied().unwrap_or(self.default)
    }
}

/// Something the client awaits before every call.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Waits until a call to `api` for `corp_id` may go out.
    async fn acquire(&self, corp_id: &str, api: &str) -> Result<(), WeComError>;
    /// WeCom answered 45009: hold every call to `api` for `corp_id` for `block`.
    async fn penalize(&self, corp_id: &str, api: &str, block: Duration) -> Result<(), WeComError>;
}

/// In-process limiter.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    config: RateLimitConfig,
    /// Theoretical arrival time per (corp, api).
    tats: Mutex<HashMap<(String, String), Instant>>,
}

impl MemoryRateLimiter {
    /// A limiter with these limits.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            tats: Mutex::new(HashMap::new()),
        }
    }

    /// Books the next slot and returns how long to wait for it.
    fn reserve(&self, corp_id: &str, api: &str) -> Duration {
        let rate = self.config.rate_for(api);
        let interval = rate.interval();
        let now = Instant::now();
        let mut tats = self.tats.lock();
        let tat = tats
            .entry((corp_id.to_owned(), api.to_owned()))
            .or_insert(now);
        let start = (*tat).max(now);
        let next = start + interval;
        *tat = next;
        let earliest = next.checked_sub(interval * rate.burst()).unwrap_or(now);
        earliest.saturating_duration_since(now)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, corp_id: &str, api: &str) -> Result<(), WeComError> {
        let wait = self.reserve(corp_id, api);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    async fn penalize(&self, corp_id: &str, api: &str, block: Duration) -> Result<(), WeComError> {
        let rate = self.config.rate_for(api);
        let blocked_until = Instant::now() + block + rate.interval() * (rate.burst() - 1);
        let mut tats = self.tats.lock();
        let tat = tats
            .entry((corp_id.to_owned(), api.to_owned()))
            .or_insert(blocked_until);
        *tat = (*tat).max(blocked_until);
        Ok(())
    }
}

/// A limiter that never waits (for tests, or when WeCom is a local simulator).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRateLimit;

#[async_trait]
impl RateLimiter for NoRateLimit {
    async fn acquire(&self, _: &str, _: &str) -> Result<(), WeComError> {
        Ok(())
    }

    async fn penalize(&self, _: &str, _: &str, _: Duration) -> Result<(), WeComError> {
        Ok(())
    }
}

/// GCRA reservation on Redis time. KEYS[1] = TAT key (µs since epoch, as an integer string);
/// ARGV = interval µs, burst, block µs (0 for a normal acquire). Returns µs to wait.
/// `%.0f` because Lua's default number formatting would round a 16-digit µs value.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local block = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if block > 0 then
  local blocked = now + block + interval * (burst - 1)
  if blocked > tat then tat = blocked end
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  return 0
end
if tat < now then tat = now end
local nxt = tat + interval
local wait = nxt - burst * interval - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
return wait";

/// Limiter shared by every process through Redis.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    config: RateLimitConfig,
    script: redis::Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Uses an existing connection; keys are `{prefix}:rl:{corp_id}:{api}`.
    pub fn new(
        conn: ConnectionManager,
        prefix: impl Into<String>,
        config: RateLimitConfig,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            config,
            script: redis::Script::new(GCRA_SCRIPT),
        }
    }

    /// Connects to `redis_url`.
    pub async fn connect(
        redis_url: &str,
        prefix: impl Into<String>,
        config: RateLimitConfig,
    ) -> Result<Self, WeComError> {
        let client = redis::Client::open(redis_url)?;
        Ok(Self::new(
            client.get_connection_manager().await?,
            prefix,
            config,
        ))
    }

    async fn run(&self, corp_id: &str, api: &str, block: Duration) -> Result<Duration, WeComError> {
        let rate = self.config.rate_for(api);
        let mut conn = self.conn.clone();
        let wait_us: i64 = self
            .script
            .key(format!("{}:rl:{corp_id}:{api}", self.prefix))
            .arg(rate.interval().as_micros().max(1) as u64)
            .arg(rate.burst())
            .arg(block.as_micros() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, corp_id: &str, api: &str) -> Result<(), WeComError> {
        let wait = self.run(corp_id, api, Duration::ZERO).await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    async fn penalize(&self, corp_id: &str, api: &str, block: Duration) -> Result<(), WeComError> {
        self.run(corp_id, api, block.max(Duration::from_micros(1)))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_limiter_allows_the_burst_then_paces() {
        let mut config = RateLimitConfig::unlimited();
        config.per_api.insert("x".into(), Rate::new(10.0, 5));
        let limiter = MemoryRateLimiter::new(config);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire("corp", "x").await.unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        for _ in 0..10 {
            limiter.acquire("corp", "x").await.unwrap();
        }
        // Ten more at 10/s take a second.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
        // Other corps and APIs have their own buckets.
        let t = Instant::now();
        limiter.acquire("other", "x").await.unwrap();
        limiter.acquire("corp", "y").await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn penalize_blocks_the_bucket() {
        let limiter = MemoryRateLimiter::new(RateLimitConfig::default());
        limiter
            .penalize("corp", "user/get", Duration::from_secs(60))
            .await
            .unwrap();
        let start = Instant::now();
        limiter.acquire("corp", "user/get").await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(60));
    }
}
