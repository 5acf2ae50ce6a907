//! Content hashes of WeCom objects as last synced (`wework_sync_hash`): an incremental sync
//! writes an object only when its hash changed, and an object whose hash is stored but that
//! WeCom no longer lists was deleted there.

use std::collections::HashMap;

use scrm_db::{Backend, DbResult, Tx, query};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The kinds hashed.
pub mod kind {
    pub const DEPARTMENT: &str = "department";
    pub const STAFF: &str = "staff";
    pub const TAG_GROUP: &str = "tag_group";
    pub const TAG: &str = "tag";
    pub const CUSTOMER: &str = "customer";
    pub const GROUP: &str = "group";
}

/// SHA-256 of the value's JSON (field order is the struct's, so it is stable).
pub fn of(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Every stored hash of a kind.
pub async fn load(tx: &mut Tx, tenant_id: i64, kind: &str) -> DbResult<HashMap<String, String>> {
    let rows: Vec<(String, String)> = tx
        .fetch_all(
            query("SELECT wecom_id, hash FROM wework_sync_hash WHERE tenant_id = ? AND kind = ?")
                .bind(tenant_id)
                .bind(kind),
        )
        .await?;
    Ok(rows.into_iter().collect())
}

/// One stored hash.
pub async fn get(tx: &mut Tx, tenant_id: i64, kind: &str, id: &str) -> DbResult<Option<String>> {
    Ok(tx
        .fetch_optional::<(String,)>(
            query("SELECT hash FROM wework_sync_hash WHERE tenant_id = ? AND kind = ? AND wecom_id = ?")
                .bind(tenant_id)
                .bind(kind)
                .bind(id),
        )
        .await?
        .map(|r| r.0))
}

/// Store (insert or replace) hashes, many rows a statement.
pub async fn put_many(
    tx: &mut Tx,
    tenant_id: i64,
    kind: &str,
    items: &[(String, String)],
    now: i64,
) -> DbResult<()> {
    for chunk in items.chunks(1000) {
        let mut q = query(
            "INSERT INTO wework_sync_hash (tenant_id, kind, wecom_id, hash, synced_at) VALUES ",
        );
        for (i, (id, h)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(kind)
                .push_bind(id.as_str())
                .push_bind(h.as_str())
                .push_bind(now);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => " ON DUPLICATE KEY UPDATE hash = VALUES(hash), synced_at = VALUES(synced_at)",
            _ => " ON CONFLICT (tenant_id, kind, wecom_id) DO UPDATE SET hash = excluded.hash, synced_at = excluded.synced_at",
        });
        tx.execute(q).await?;
    }
    Ok(())
}

/// Forget hashes of objects deleted in WeCom.
pub async fn remove(tx: &mut Tx, tenant_id: i64, kind: &str, ids: &[String]) -> DbResult<()> {
    for chunk in ids.chunks(500) {
        let mut q =
            query("DELETE FROM wework_sync_hash WHERE tenant_id = ? AND kind = ? AND wecom_id IN ")
                .bind(tenant_id)
                .bind(kind);
        q.push_in_list(chunk.iter().map(String::as_str));
        tx.execute(q).await?;
    }
    Ok(())
}
