//! Tenants and users: the store functions the API, the CLI and startup share.

use scrm_db::{Db, DbResult, Tx, query};
use serde::Serialize;

use super::Role;
use crate::state::{iso, iso_opt, now_ms};

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    pub id: i64,
    pub tenant_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub status: i64,
    #[serde(skip)]
    pub last_login_at: Option<i64>,
    #[serde(skip)]
    pub created_at: i64,
}

/// A user for JSON, with ISO times.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: i64,
    pub tenant_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub status: i64,
    pub last_login_time: Option<String>,
    pub create_time: String,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            id: u.id,
            tenant_id: u.tenant_id,
            username: u.username,
            display_name: u.display_name,
            role: u.role,
            status: u.status,
            last_login_time: iso_opt(u.last_login_at),
            create_time: iso(u.created_at),
        }
    }
}

const USER_COLUMNS: &str =
    "id, tenant_id, username, display_name, role, status, last_login_at, created_at";

/// The id of the tenant with this name, created if missing.
pub async fn ensure_tenant(db: &Db, name: &str) -> DbResult<i64> {
    let find = || query("SELECT id FROM tenant WHERE name = ?").bind(name);
    if let Some((id,)) = db.fetch_optional::<(i64,)>(find()).await? {
        return Ok(id);
    }
    let now = now_ms();
    let created = db
        .insert_id(
            query("INSERT INTO tenant (name, status, created_at, updated_at) VALUES (?, 1, ?, ?)")
                .bind(name)
                .bind(now)
                .bind(now),
        )
        .await;
    match created {
        Ok(id) => Ok(id),
        // Created concurrently by another process: use theirs.
        Err(e) if e.is_conflict() => db.fetch_one::<(i64,)>(find()).await.map(|r| r.0),
        Err(e) => Err(e),
    }
}

/// Insert a user; a taken user name is a conflict.
pub async fn create(
    tx: &mut Tx,
    tenant_id: i64,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
) -> DbResult<i64> {
    let now = now_ms();
    tx.insert_id(
        query(
            "INSERT INTO app_user (tenant_id, username, display_name, password_hash, role, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        )
        .bind(tenant_id)
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .bind(now),
    )
    .await
}

/// A tenant's users, oldest first.
pub async fn list(
    db: &Db,
    tenant_id: i64,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<UserRow>, i64)> {
    let rows = db
        .fetch_all(
            query(format!("SELECT {USER_COLUMNS} FROM app_user WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?"))
                .bind(tenant_id)
                .bind(limit)
                .bind(offset),
        )
        .await?;
    let total = db
        .fetch_i64(query("SELECT COUNT(*) FROM app_user WHERE tenant_id = ?").bind(tenant_id))
        .await?;
    Ok((rows, total))
}

/// Every user of every tenant (for the CLI).
pub async fn list_all(db: &Db) -> DbResult<Vec<UserRow>> {
    db.fetch_all(query(format!(
        "SELECT {USER_COLUMNS} FROM app_user ORDER BY tenant_id, id"
    )))
    .await
}

/// One user of a tenant.
pub async fn get(db: &Db, tenant_id: i64, id: i64) -> DbResult<UserRow> {
    db.fetch_one(
        query(format!(
            "SELECT {USER_COLUMNS} FROM app_user WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// The user with a name (any tenant; names are unique), with the password hash.
pub async fn find_for_login(db: &Db, username: &str) -> DbResult<Option<(UserRow, String)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        password_hash: String,
    }
    let row: Option<Row> = db
        .fetch_optional(
            query(format!(
                "SELECT {USER_COLUMNS}, password_hash FROM app_user WHERE username = ?"
            ))
            .bind(username),
        )
        .await?;
    Ok(row.map(|r| (r.user, r.password_hash)))
}

/// Replace a user's password hash and revoke their sessions (a reset should sign them out).
pub async fn set_password(
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
    password_hash: &str,
) -> DbResult<bool> {
    let now = now_ms();
    let changed = tx
        .execute(
            query("UPDATE app_user SET password_hash = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
                .bind(password_hash)
                .bind(now)
                .bind(tenant_id)
                .bind(id),
        )
        .await?
        .rows_affected;
    tx.execute(
        query("UPDATE auth_token SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND kind = 'session' AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant_id)
            .bind(id),
    )
    .await?;
    Ok(changed > 0)
}

/// Whether any user exists at all (first start of an empty database).
pub async fn any_exist(db: &Db) -> DbResult<bool> {
    Ok(db.fetch_i64(query("SELECT COUNT(*) FROM app_user")).await? > 0)
}
