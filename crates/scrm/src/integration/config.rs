//! A tenant's WeCom configuration (seed 003's `wework-config`): its storage with secrets
//! encrypted at rest, the views that mask them, and the CRUD handlers.
//!
//! One configuration per tenant (the seed's `GET /api/wework/config` returns "the" config). Its
//! secrets: `corpSecret` (the self-built app's, also used for 客户联系 unless `contactSecret` is
//! set), `contactSecret` (客户联系), `contactsSecret` (通讯录同步), and the callback `token` and
//! `encodingAesKey`. `apiBase` points at a simulator or an egress proxy instead of
//! `qyapi.weixin.qq.com`.

use axum::extract::State;
use scrm_db::{Db, DbResult, Tx, query};
use scrm_wecom::Secret;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::secrets::{MasterKey, mask};
use crate::audit;
use crate::auth::CurrentUser;
use crate::http::envelope::{Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath};
use crate::state::{AppState, iso, iso_opt, now_ms};

/// A configuration with its secrets decrypted: only ever held in memory, never logged (the
/// secrets' `Debug` prints `***`).
#[derive(Debug, Clone)]
pub struct WeworkConfig {
    pub id: i64,
    pub tenant_id: i64,
    pub corp_id: String,
    pub agent_id: i64,
    pub corp_secret: Secret,
    pub contact_secret: Option<Secret>,
    pub contacts_secret: Option<Secret>,
    pub token: Option<Secret>,
    pub aes_key: Option<Secret>,
    pub api_base: Option<String>,
    pub enabled: bool,
    pub callback_verified_at: Option<i64>,
    pub last_callback_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WeworkConfig {
    /// The secret for 客户联系 APIs (customers, tags, group chats).
    pub fn customer_secret(&self) -> &Secret {
        self.contact_secret.as_ref().unwrap_or(&self.corp_secret)
    }
    /// The secret for the contacts directory (departments, members).
    pub fn directory_secret(&self) -> &Secret {
        self.contacts_secret.as_ref().unwrap_or(&self.corp_secret)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    tenant_id: i64,
    corp_id: String,
    agent_id: i64,
    corp_secret_enc: String,
    contact_secret_enc: Option<String>,
    contacts_secret_enc: Option<String>,
    token_enc: Option<String>,
    aes_key_enc: Option<String>,
    api_base: Option<String>,
    enabled: i64,
    callback_verified_at: Option<i64>,
    last_callback_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, corp_id, agent_id, corp_secret_enc, contact_secret_enc, \
    contacts_secret_enc, token_enc, aes_key_enc, api_base, enabled, callback_verified_at, \
    last_callback_at, created_at, updated_at";

fn decrypt(key: &MasterKey, r: Row) -> anyhow::Result<WeworkConfig> {
    let opt = |v: Option<String>| -> anyhow::Result<Option<Secret>> {
        v.map(|c| key.decrypt(&c).map(Secret::new)).transpose()
    };
    Ok(WeworkConfig {
        id: r.id,
        tenant_id: r.tenant_id,
        corp_id: r.corp_id,
        agent_id: r.agent_id,
        corp_secret: Secret::new(key.decrypt(&r.corp_secret_enc)?),
        contact_secret: opt(r.contact_secret_enc)?,
        contacts_secret: opt(r.contacts_secret_enc)?,
        token: opt(r.token_enc)?,
        aes_key: opt(r.aes_key_enc)?,
        api_base: r.api_base,
        enabled: r.enabled != 0,
        callback_verified_at: r.callback_verified_at,
        last_callback_at: r.last_callback_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The tenant's configuration, decrypted.
pub async fn for_tenant(state: &AppState, tenant_id: i64) -> anyhow::Result<Option<WeworkConfig>> {
    let q = query(format!(
        "SELECT {COLUMNS} FROM wework_config WHERE tenant_id = ?"
    ))
    .bind(tenant_id);
    load(state, q).await
}

/// A configuration by id, whatever its tenant (the public callback route knows only the id).
pub async fn by_id(state: &AppState, id: i64) -> anyhow::Result<Option<WeworkConfig>> {
    let q = query(format!("SELECT {COLUMNS} FROM wework_config WHERE id = ?")).bind(id);
    load(state, q).await
}

async fn load(state: &AppState, q: scrm_db::Query) -> anyhow::Result<Option<WeworkConfig>> {
    let Some(row) = state.db.fetch_optional::<Row>(q).await? else {
        return Ok(None);
    };
    let key = MasterKey::load(&state.config)?;
    decrypt(&key, row).map(Some)
}

/// Tenants with an enabled configuration (for scheduled reconciliation).
pub async fn enabled_tenants(db: &Db) -> DbResult<Vec<i64>> {
    Ok(db
        .fetch_all::<(i64,)>(query(
            "SELECT tenant_id FROM wework_config WHERE enabled = 1 ORDER BY id",
        ))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

/// Note that WeCom verified the callback URL (config/test reports it).
pub async fn mark_callback(db: &Db, id: i64, verified: bool) -> DbResult<()> {
    let col = if verified {
        "callback_verified_at"
    } else {
        "last_callback_at"
    };
    db.execute(
        query(format!("UPDATE wework_config SET {col} = ? WHERE id = ?"))
            .bind(now_ms())
            .bind(id),
    )
    .await
    .map(|_| ())
}

/// A configuration as every response shows it: secrets masked, never whole.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    pub id: i64,
    pub corp_id: String,
    pub agent_id: i64,
    pub corp_secret: String,
    pub contact_secret: Option<String>,
    pub contacts_secret: Option<String>,
    pub token: Option<String>,
    pub encoding_aes_key: Option<String>,
    pub api_base: Option<String>,
    pub enabled: bool,
    /// The path to enter as the callback URL in WeCom's admin console (prefix your host).
    pub callback_path: String,
    pub callback_verified: bool,
    pub callback_verified_at: Option<String>,
    pub last_callback_at: Option<String>,
    pub create_time: String,
    pub update_time: String,
}

impl From<&WeworkConfig> for ConfigView {
    fn from(c: &WeworkConfig) -> Self {
        let m = |s: &Option<Secret>| s.as_ref().map(|s| mask(s.expose()));
        ConfigView {
            id: c.id,
            corp_id: c.corp_id.clone(),
            agent_id: c.agent_id,
            corp_secret: mask(c.corp_secret.expose()),
            contact_secret: m(&c.contact_secret),
            contacts_secret: m(&c.contacts_secret),
            token: m(&c.token),
            encoding_aes_key: m(&c.aes_key),
            api_base: c.api_base.clone(),
            enabled: c.enabled,
            callback_path: format!("/api/wework/callback/{}", c.id),
            callback_verified: c.callback_verified_at.is_some(),
            callback_verified_at: iso_opt(c.callback_verified_at),
            last_callback_at: iso_opt(c.last_callback_at),
            create_time: iso(c.created_at),
            update_time: iso(c.updated_at),
        }
    }
}

/// The body of create and update (seed 003's fields plus the secrets WeCom splits by use).
/// On update an absent field keeps its value; an empty string clears an optional one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigBody {
    pub corp_id: Option<String>,
    pub corp_secret: Option<String>,
    pub agent_id: Option<i64>,
    pub contact_secret: Option<String>,
    pub contacts_secret: Option<String>,
    pub token: Option<String>,
    pub encoding_aes_key: Option<String>,
    pub api_base: Option<String>,
    pub enabled: Option<bool>,
}

/// Checked values of a body: `Some(None)` clears an optional field.
#[derive(Debug, Default)]
pub struct Checked {
    pub corp_id: Option<String>,
    pub corp_secret: Option<String>,
    pub agent_id: Option<i64>,
    pub contact_secret: Option<Option<String>>,
    pub contacts_secret: Option<Option<String>>,
    pub token: Option<Option<String>>,
    pub aes_key: Option<Option<String>>,
    pub api_base: Option<Option<String>>,
    pub enabled: Option<bool>,
}

fn secret_field(field: &str, v: &str) -> ApiResult<String> {
    let v = v.trim();
    if v.len() > 256 || v.chars().any(char::is_whitespace) {
        return Err(ApiError::field(
            field,
            "must be at most 256 characters without spaces",
        ));
    }
    Ok(v.to_string())
}

fn optional(field: &str, v: Option<String>) -> ApiResult<Option<Option<String>>> {
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(Some(None)),
        Some(s) => Ok(Some(Some(secret_field(field, &s)?))),
    }
}

impl ConfigBody {
    /// Check every field that is present (a wrong one is named in the 400).
    pub fn check(self) -> ApiResult<Checked> {
        let corp_id = match self.corp_id.map(|s| s.trim().to_string()) {
            Some(c)
                if c.is_empty()
                    || c.len() > 64
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                return Err(ApiError::field(
                    "corpId",
                    "must be 1-64 letters, digits, _ or -",
                ));
            }
            c => c,
        };
        let corp_secret = match self.corp_secret {
            Some(s) if s.trim().is_empty() => {
                return Err(ApiError::field("corpSecret", "must not be empty"));
            }
            Some(s) => Some(secret_field("corpSecret", &s)?),
            None => None,
        };
        if self.agent_id.is_some_and(|a| a <= 0) {
            return Err(ApiError::field("agentId", "must be a positive integer"));
        }
        let token = optional("token", self.token)?;
        if let Some(Some(t)) = &token
            && (t.len() > 32 || !t.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(ApiError::field(
                "token",
                "must be at most 32 letters or digits (WeCom's rule)",
            ));
        }
        let aes_key = optional("encodingAesKey", self.encoding_aes_key)?;
        if let Some(Some(k)) = &aes_key
            && scrm_wecom::crypto::decode_encoding_aes_key(k).is_err()
        {
            return Err(ApiError::field(
                "encodingAesKey",
                "must be the 43-character EncodingAESKey WeCom generated",
            ));
        }
        let api_base = match self
            .api_base
            .map(|s| s.trim().trim_end_matches('/').to_string())
        {
            None => None,
            Some(b) if b.is_empty() => Some(None),
            Some(b) => {
                let ok = url::Url::parse(&b)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if !ok {
                    return Err(ApiError::field("apiBase", "must be an http(s) URL"));
                }
                Some(Some(b))
            }
        };
        Ok(Checked {
            corp_id,
            corp_secret,
            agent_id: self.agent_id,
            contact_secret: optional("contactSecret", self.contact_secret)?,
            contacts_secret: optional("contactsSecret", self.contacts_secret)?,
            token,
            aes_key,
            api_base,
            enabled: self.enabled,
        })
    }

    /// Names of the fields present, for the audit log (never their values).
    fn fields(&self) -> Vec<&'static str> {
        let mut f = vec![];
        macro_rules! has {
            ($($field:ident => $name:literal),*) => {$(if self.$field.is_some() { f.push($name); })*};
        }
        has!(corp_id => "corpId", corp_secret => "corpSecret", agent_id => "agentId",
            contact_secret => "contactSecret", contacts_secret => "contactsSecret", token => "token",
            encoding_aes_key => "encodingAesKey", api_base => "apiBase", enabled => "enabled");
        f
    }
}

fn enc(key: &MasterKey, v: &Option<String>) -> anyhow::Result<Option<String>> {
    v.as_deref().map(|s| key.encrypt(s)).transpose()
}

/// Insert a tenant's configuration (create requires corpId, corpSecret and agentId).
pub async fn insert(tx: &mut Tx, key: &MasterKey, tenant_id: i64, c: &Checked) -> ApiResult<i64> {
    let corp_id = c
        .corp_id
        .clone()
        .ok_or_else(|| ApiError::field("corpId", "is required"))?;
    let secret = c
        .corp_secret
        .clone()
        .ok_or_else(|| ApiError::field("corpSecret", "is required"))?;
    let agent_id = c
        .agent_id
        .ok_or_else(|| ApiError::field("agentId", "is required"))?;
    let token = c.token.clone().flatten();
    let aes = c.aes_key.clone().flatten();
    if token.is_some() != aes.is_some() {
        return Err(ApiError::invalid(
            "token and encodingAesKey are set together",
        ));
    }
    let now = now_ms();
    let id = tx
        .insert_id(
            query(
                "INSERT INTO wework_config (tenant_id, corp_id, agent_id, corp_secret_enc, contact_secret_enc, \
                 contacts_secret_enc, token_enc, aes_key_enc, api_base, enabled, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(corp_id)
            .bind(agent_id)
            .bind(key.encrypt(&secret)?)
            .bind(enc(key, &c.contact_secret.clone().flatten())?)
            .bind(enc(key, &c.contacts_secret.clone().flatten())?)
            .bind(enc(key, &token)?)
            .bind(enc(key, &aes)?)
            .bind(c.api_base.clone().flatten())
            .bind(i64::from(c.enabled.unwrap_or(true)))
            .bind(now)
            .bind(now),
        )
        .await
        .map_err(|e| {
            if e.is_conflict() {
                ApiError::Conflict("this tenant already has a WeCom configuration; update it".into())
            } else {
                e.into()
            }
        })?;
    Ok(id)
}

/// `GET /api/wework/config`: the tenant's configuration (null when there is none).
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Option<ConfigView>>> {
    let c = for_tenant(&state, user.tenant_id).await?;
    Ok(ok(c.as_ref().map(ConfigView::from)))
}

/// `POST /api/wework/config`.
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ConfigBody>,
) -> ApiResult<Reply<ConfigView>> {
    let fields = body.fields();
    let checked = body.check()?;
    let key = MasterKey::load(&state.config)?;
    let mut tx = state.db.begin().await?;
    let id = insert(&mut tx, &key, user.tenant_id, &checked).await?;
    audit::record(
        &mut tx,
        &user,
        "wework.config.create",
        "wework_config",
        id,
        json!({"fields": fields}),
    )
    .await?;
    tx.commit().await?;
    let c = for_tenant(&state, user.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("WeCom configuration"))?;
    Ok(created(ConfigView::from(&c)))
}

/// `PUT /api/wework/config/{id}`: change the given fields.
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ConfigBody>,
) -> ApiResult<Reply<ConfigView>> {
    let current = for_tenant(&state, user.tenant_id)
        .await?
        .filter(|c| c.id == id)
        .ok_or(ApiError::NotFound("WeCom configuration"))?;
    let fields = body.fields();
    let c = body.check()?;
    let token = c
        .token
        .clone()
        .unwrap_or(current.token.as_ref().map(|s| s.expose().to_string()));
    let aes = c
        .aes_key
        .clone()
        .unwrap_or(current.aes_key.as_ref().map(|s| s.expose().to_string()));
    if token.is_some() != aes.is_some() {
        return Err(ApiError::invalid(
            "token and encodingAesKey are set together",
        ));
    }
    let key = MasterKey::load(&state.config)?;
    let mut q = query("UPDATE wework_config SET updated_at = ?").bind(now_ms());
    if let Some(v) = &c.corp_id {
        q.push_sql(", corp_id = ?").push_bind(v.as_str());
    }
    if let Some(v) = &c.corp_secret {
        q.push_sql(", corp_secret_enc = ?")
            .push_bind(key.encrypt(v)?);
    }
    if let Some(v) = c.agent_id {
        q.push_sql(", agent_id = ?").push_bind(v);
    }
    for (col, v) in [
        ("contact_secret_enc", &c.contact_secret),
        ("contacts_secret_enc", &c.contacts_secret),
        ("token_enc", &c.token),
        ("aes_key_enc", &c.aes_key),
    ] {
        if let Some(v) = v {
            q.push_sql(&format!(", {col} = ?")).push_bind(enc(&key, v)?);
        }
    }
    if c.token.is_some() || c.aes_key.is_some() || c.corp_id.is_some() {
        // New callback credentials must be verified by WeCom again.
        q.push_sql(", callback_verified_at = NULL");
    }
    if let Some(v) = &c.api_base {
        q.push_sql(", api_base = ?").push_bind(v.clone());
    }
    if let Some(v) = c.enabled {
        q.push_sql(", enabled = ?").push_bind(i64::from(v));
    }
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(user.tenant_id)
        .push_bind(id);
    let mut tx = state.db.begin().await?;
    tx.execute(q).await?;
    audit::record(
        &mut tx,
        &user,
        "wework.config.update",
        "wework_config",
        id,
        json!({"fields": fields}),
    )
    .await?;
    tx.commit().await?;
    let c = for_tenant(&state, user.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("WeCom configuration"))?;
    Ok(ok(ConfigView::from(&c)))
}

/// `DELETE /api/wework/config/{id}`: the configuration and the sync hashes (the next config's
/// first sync compares against nothing). Synced customers stay.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<serde_json::Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query("DELETE FROM wework_config WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("WeCom configuration"));
    }
    tx.execute(query("DELETE FROM wework_sync_hash WHERE tenant_id = ?").bind(user.tenant_id))
        .await?;
    audit::record(
        &mut tx,
        &user,
        "wework.config.delete",
        "wework_config",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deleted": true})))
}
