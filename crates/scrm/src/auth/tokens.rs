//! Bearer tokens: random, shown once, stored as SHA-256 hashes so a database leak leaks no
//! usable token. Login sessions expire; API tokens live until revoked or their optional expiry.

use base64::Engine;
use rand::RngCore;
use scrm_db::{Tx, query};
use sha2::{Digest, Sha256};

/// The console keeps its session token in this cookie.
pub const SESSION_COOKIE: &str = "scrm_session";

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Session,
    Api,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Api => "api",
        }
    }
}

/// A new token in plain text: `scrm_` and 32 random bytes, URL-safe.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "scrm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Store a new token for a user and return (id, plain token).
pub async fn issue(
    tx: &mut Tx,
    tenant_id: i64,
    user_id: i64,
    kind: Kind,
    name: &str,
    expires_at: Option<i64>,
    now: i64,
) -> scrm_db::DbResult<(i64, String)> {
    let token = generate();
    let id = tx
        .insert_id(
            query(
                "INSERT INTO auth_token (tenant_id, user_id, kind, name, token_hash, token_prefix, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(kind.as_str())
            .bind(name)
            .bind(hash(&token))
            .bind(&token[..12])
            .bind(now)
            .bind(expires_at),
        )
        .await?;
    Ok((id, token))
}
