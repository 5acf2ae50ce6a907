//! The customer detail cache (seed 001: Redis, 10 minutes, dropped on change).
//!
//! Dropping on change alone can serve stale data: a reader that loaded the row just before a
//! commit stores it just after the drop. So every entry carries the customer's `version`, which
//! every change bumps in its own transaction, and a read checks it with one primary-key lookup
//! before trusting the entry: a change is never hidden, and the expensive part of the detail
//! (tags, follow users, groups) is still served from the cache. Entries live 10 minutes, in
//! Redis when configured (shared by every process), in this process otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::model::CustomerDetail;
use super::store;
use crate::state::AppState;

/// Seed 001's TTL.
pub const TTL: Duration = Duration::from_secs(600);

type Key = (String, i64, i64);

fn local() -> &'static Mutex<HashMap<Key, (Instant, CustomerDetail)>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, (Instant, CustomerDetail)>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Which database the entry belongs to: several apps (tests) can share one process, and one
/// Redis can serve several deployments.
fn db_key(state: &AppState) -> String {
    let digest = Sha256::digest(state.config.database_url.expose().as_bytes());
    hex::encode(&digest[..6])
}

fn redis_key(db: &str, tenant_id: i64, id: i64) -> String {
    format!("customer:profile:{db}:{tenant_id}:{id}")
}

/// Where a detail came from (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Database,
}

/// A customer's detail, from the cache when it is current, else from the database (and then
/// cached). `None` when the customer is not the tenant's.
pub async fn detail(
    state: &AppState,
    tenant_id: i64,
    id: i64,
) -> anyhow::Result<Option<(CustomerDetail, Source)>> {
    let Some(version) = store::version(&state.db, tenant_id, id).await? else {
        drop_entry(state, tenant_id, id).await;
        return Ok(None);
    };
    let db = db_key(state);
    if let Some(hit) = lookup(state, &db, tenant_id, id).await
        && hit.version == version
    {
        return Ok(Some((hit, Source::Cache)));
    }
    let Some(fresh) = store::detail(&state.db, tenant_id, id).await? else {
        return Ok(None);
    };
    put(state, &db, tenant_id, id, &fresh).await;
    Ok(Some((fresh, Source::Database)))
}

async fn lookup(state: &AppState, db: &str, tenant_id: i64, id: i64) -> Option<CustomerDetail> {
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let raw: Option<String> = redis::cmd("GET")
            .arg(redis_key(db, tenant_id, id))
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        return raw
            .and_then(|r| serde_json::from_str::<Cached>(&r).ok())
            .map(Cached::into_detail);
    }
    let map = local().lock().ok()?;
    let (at, d) = map.get(&(db.to_string(), tenant_id, id))?;
    (at.elapsed() < TTL).then(|| d.clone())
}

/// The detail with its version, as stored in Redis (the version is not part of the API view).
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    version: i64,
    detail: CustomerDetail,
}

impl Cached {
    fn into_detail(self) -> CustomerDetail {
        let mut d = self.detail;
        d.version = self.version;
        d
    }
}

async fn put(state: &AppState, db: &str, tenant_id: i64, id: i64, d: &CustomerDetail) {
    if let Some(redis) = &state.redis {
        let Ok(raw) = serde_json::to_string(&Cached {
            version: d.version,
            detail: d.clone(),
        }) else {
            return;
        };
        let mut conn = redis.clone();
        let r: Result<(), _> = redis::cmd("SET")
            .arg(redis_key(db, tenant_id, id))
            .arg(raw)
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "customer cache: Redis SET failed");
        }
        return;
    }
    if let Ok(mut map) = local().lock() {
        // Bound the map: expired entries go first, and past 100k entries everything goes.
        if map.len() > 100_000 {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
            if map.len() > 100_000 {
                map.clear();
            }
        }
        map.insert((db.to_string(), tenant_id, id), (Instant::now(), d.clone()));
    }
}

async fn drop_entry(state: &AppState, tenant_id: i64, id: i64) {
    let db = db_key(state);
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let r: Result<(), _> = redis::cmd("DEL")
            .arg(redis_key(&db, tenant_id, id))
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "customer cache: Redis DEL failed");
        }
    }
    if let Ok(mut map) = local().lock() {
        map.remove(&(db, tenant_id, id));
    }
}

/// Drop cached details after a change commits (the version check already keeps reads correct;
/// this frees the memory and spares the next reader a stale hit).
pub async fn invalidate(state: &AppState, tenant_id: i64, ids: &[i64]) {
    for id in ids {
        drop_entry(state, tenant_id, *id).await;
    }
}
