//! Access-token caching: one token per (corp_id, secret), refreshed ahead of expiry, fetched by
//! one caller at a time (API-FACTS §2: "do not call gettoken frequently").
//!
//! Two levels of single-flight: inside a process a per-key `tokio::sync::Mutex` lets one task
//! refresh while the others wait for its result; across processes the [`TokenCache`] offers a
//! refresh lock (Redis `SET NX PX`), and processes that lose the race poll the shared value.
//! Times are wall-clock unix milliseconds because a Redis-cached token is shared between
//! machines and `Instant` means nothing outside one process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::error::WeComError;
use super::{AppClient, Body, GetTokenResponse, api_contacts};
use crate::secret::Secret;

/// Identifies one app's token without containing its secret: `corp_id:sha256(secret)[..16]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey(String);

impl TokenKey {
    /// The key for an app. The secret is hashed so caches, Redis keys and logs never hold it.
    pub fn new(corp_id: &str, secret: &Secret) -> Self {
        let digest = Sha256::digest(secret.expose().as_bytes());
        Self(format!("{corp_id}:{}", hex::encode(&digest[..8])))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token and when to stop using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The access_token.
    pub access_token: Secret,
    /// When WeCom stops accepting it (unix ms).
    pub expires_at_ms: u64,
    /// When to start fetching a new one (unix ms): 30 min early, or half the lifetime when
    /// the lifetime is short (a simulator's 10-second tokens).
    pub refresh_at_ms: u64,
}

impl CachedToken {
    /// A token fetched now that WeCom says lives `expires_in` seconds.
    pub fn fresh(access_token: impl Into<Secret>, expires_in: u64, margin: Duration) -> Self {
        let now = now_ms();
        let lifetime_ms = expires_in.saturating_mul(1000);
        let margin_ms = (margin.as_millis() as u64).min(lifetime_ms / 2);
        Self {
            access_token: access_token.into(),
            expires_at_ms: now + lifetime_ms,
            refresh_at_ms: now + lifetime_ms - margin_ms,
        }
    }

    /// True while it is not yet time to refresh.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.refresh_at_ms
    }

    /// True while WeCom should still accept it.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// Current wall-clock time in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where tokens live between calls (and, for Redis, between processes).
#[async_trait]
pub trait TokenCache: Send + Sync + 'static {
    /// The cached token, if any.
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, WeComError>;
    /// Stores a freshly fetched token.
    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), WeComError>;
    /// Drops the cached token only if it is still `access_token`, so a caller holding an old
    /// token cannot throw away the new one another caller just fetched.
    async fn invalidate(&self, key: &TokenKey, access_token: &str) -> Result<(), WeComError>;
    /// Tries to become the one refresher for `key` for up to `ttl`. Returns false when another
    /// process holds the lock; that caller should poll [`TokenCache::get`] instead of fetching.
    async fn try_lock_refresh(&self, key: &TokenKey, ttl: Duration) -> Result<bool, WeComError>;
    /// Releases the refresh lock.
    async fn unlock_refresh(&self, key: &TokenKey) -> Result<(), WeComError>;
}

/// In-process token cache: enough for one server.
#[derive(Debug, Default)]
pub struct MemoryTokenCache {
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl MemoryTokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenCache for MemoryTokenCache {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, WeComError> {
        Ok(self.tokens.lock().get(key).cloned())
    }

    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), WeComError> {
        self.tokens.lock().insert(key.clone(), token.clone());
        Ok(())
    }

    async fn invalidate(&self, key: &TokenKey, access_token: &str) -> Result<(), WeComError> {
        let mut tokens = self.tokens.lock();
        if tokens
            .get(key)
            .is_some_and(|t| t.access_token.expose() == access_token)
        {
            tokens.remove(key);
        }
        Ok(())
    }

    async fn try_lock_refresh(&self, _: &TokenKey, _: Duration) -> Result<bool, WeComError> {
        // One process: the in-process single-flight mutex is the whole story.
        Ok(true)
    }

    async fn unlock_refresh(&self, _: &TokenKey) -> Result<(), WeComError> {
        Ok(())
    }
}

/// Token cache shared by every process through Redis.
///
/// Layout: a hash `{prefix}:token:{key}` with fields `token`, `expires_at_ms`, `refresh_at_ms`,
/// expiring with the token; a lock `{prefix}:token-lock:{key}` set with `SET NX PX` holding a
/// random owner id, released only by its owner.
#[derive(Clone)]
pub struct RedisTokenCache {
    conn: ConnectionManager,
    prefix: String,
    owner: String,
}

impl std::fmt::Debug for RedisTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const INVALIDATE_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

impl RedisTokenCache {
    /// Uses an existing connection; keys start with `prefix` (e.g. `scrm:wecom`).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        let owner: u64 = rand::random();
        Self {
            conn,
            prefix: prefix.into(),
            owner: format!("{owner:016x}"),
        }
    }

    /// Connects to `redis_url` (e.g. `redis://127.0.0.1:6379`).
    pub async fn connect(redis_url: &str, prefix: impl Into<String>) -> Result<Self, WeComError> {
        let client = redis::Client::open(redis_url)?;
        Ok(Self::new(client.get_connection_manager().await?, prefix))
    }

    fn token_key(&self, key: &TokenKey) -> String {
        format!("{}:token:{}", self.prefix, key.as_str())
    }

    fn lock_key(&self, key: &TokenKey) -> String {
        format!("{}:token-lock:{}", self.prefix, key.as_str())
    }
}

#[async_trait]
impl TokenCache for RedisTokenCache {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, WeComError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.token_key(key))
            .query_async(&mut conn)
            .await?;
        let parse = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(
            match (
                fields.get("token"),
                parse("expires_at_ms"),
                parse("refresh_at_ms"),
            ) {
                (Some(token), Some(expires_at_ms), Some(refresh_at_ms)) => Some(CachedToken {
                    access_token: Secret::new(token.clone()),
                    expires_at_ms,
                    refresh_at_ms,
                }),
                _ => None,
            },
        )
    }

    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), WeComError> {
        let mut conn = self.conn.clone();
        let redis_key = self.token_key(key);
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&redis_key)
            .arg("token")
            .arg(token.access_token.expose())
            .arg("expires_at_ms")
            .arg(token.expires_at_ms)
            .arg("refresh_at_ms")
            .arg(token.refresh_at_ms)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&redis_key)
            .arg(token.expires_at_ms)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn invalidate(&self, key: &TokenKey, access_token: &str) -> Result<(), WeComError> {
        let mut conn = self.conn.clone();
        redis::Script::new(INVALIDATE_SCRIPT)
            .key(self.token_key(key))
            .arg(access_token)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn try_lock_refresh(&self, key: &TokenKey, ttl: Duration) -> Result<bool, WeComError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(key))
            .arg(&self.owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn unlock_refresh(&self, key: &TokenKey) -> Result<(), WeComError> {
        let mut conn = self.conn.clone();
        redis::Script::new(UNLOCK_SCRIPT)
            .key(self.lock_key(key))
            .arg(&self.owner)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Per-key in-process single-flight locks.
#[derive(Default)]
pub(crate) struct FlightLocks {
    locks: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl FlightLocks {
    pub(crate) fn get(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(key.clone()).or_default().clone()
    }
}

/// Shared cache handle type used by the client.
pub type SharedTokenCache = Arc<dyn TokenCache>;

impl AppClient {
    /// A valid access token, from the cache or freshly fetched (one fetch at a time).
    pub async fn access_token(&self) -> Result<Secret, WeComError> {
        let inner = &self.client.inner;
        let cache = &inner.tokens;
        if let Some(t) = cache.get(&self.key).await?
            && t.is_fresh(now_ms())
        {
            return Ok(t.access_token);
        }
        let flight = inner.flights.get(&self.key);
        let _in_process = flight.lock().await;
        // Whoever held the lock before us may have refreshed already.
        let current = cache.get(&self.key).await?;
        if let Some(t) = &current
            && t.is_fresh(now_ms())
        {
            return Ok(t.access_token.clone());
        }
        if cache
            .try_lock_refresh(&self.key, inner.config.token_lock_ttl)
            .await?
        {
            return self.refresh_holding_lock().await;
        }
        // Another process is refreshing. A token that still works is fine meanwhile.
        if let Some(t) = current.filter(|t| t.is_usable(now_ms())) {
            return Ok(t.access_token);
        }
        let deadline = Instant::now() + inner.config.token_lock_ttl * 2;
        loop {
            tokio::time::sleep(inner.config.token_poll_interval).await;
            if let Some(t) = cache.get(&self.key).await?
                && t.is_fresh(now_ms())
            {
                return Ok(t.access_token);
            }
            // The refresher may have died; its lock expires after the TTL.
            if cache
                .try_lock_refresh(&self.key, inner.config.token_lock_ttl)
                .await?
            {
                return self.refresh_holding_lock().await;
            }
            if Instant::now() >= deadline {
                return Err(WeComError::Store(
                    "timed out waiting for another process to refresh the access token".into(),
                ));
            }
        }
    }

    async fn refresh_holding_lock(&self) -> Result<Secret, WeComError> {
        let inner = &self.client.inner;
        // Store before unlocking: a process polling for our result that finds the lock free
        // and the cache still empty would fetch a second token.
        let stored = match self.fetch_token().await {
            Ok(token) => inner.tokens.put(&self.key, &token).await.map(|()| token),
            Err(e) => Err(e),
        };
        if let Err(e) = inner.tokens.unlock_refresh(&self.key).await {
            tracing::warn!(corp_id = %self.corp_id, error = %e, "could not release the token refresh lock; it will expire");
        }
        Ok(stored?.access_token)
    }

    async fn fetch_token(&self) -> Result<CachedToken, WeComError> {
        let query = [
            ("corpid", self.corp_id.to_string()),
            ("corpsecret", self.secret.expose().to_owned()),
        ];
        // Boxed because execute → access_token → fetch_token → execute is (statically) a
        // cycle, although at run time gettoken never asks for a token.
        let response: GetTokenResponse =
            Box::pin(self.execute(&api_contacts::GETTOKEN, &query, &Body::Empty, false)).await?;
        if response.access_token.is_empty() {
            return Err(WeComError::Decode {
                api: "gettoken",
                message: "empty access_token".into(),
            });
        }
        tracing::info!(corp_id = %self.corp_id, expires_in = response.expires_in, "fetched WeCom access token");
        Ok(CachedToken::fresh(
            response.access_token,
            response.expires_in,
            self.client.inner.config.token_refresh_margin,
        ))
    }
}
