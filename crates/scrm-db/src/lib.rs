//! One database handle over the three backends scrm supports.
//!
//! scrm runs on an embedded SQLite file for a newcomer, and on MySQL/MariaDB or PostgreSQL for a
//! company that scales out. Writing every query three times would triple the code, and sqlx's
//! `Any` driver has no date types and no placeholder translation, so this crate offers a small
//! layer instead:
//!
//! - [`Db`] is an enum over the three pools; [`Tx`] over their transactions. Store functions take
//!   a `&mut Tx` (or `&Db` for single statements) so a handler and a job can compose them.
//! - [`Query`] carries SQL written with `?` placeholders and typed [`Value`]s; on PostgreSQL the
//!   placeholders become `$1, $2, …`. Rows decode into any `sqlx::FromRow` type that all three
//!   drivers can decode ([`Row`]).
//! - Where the dialects really differ (upserts, `SKIP LOCKED`, `RETURNING`), callers branch on
//!   [`Db::backend`]; [`Tx::insert_id`] hides the `RETURNING` / `LAST_INSERT_ID()` difference.
//! - [`migrate`](Db::migrate) applies the embedded migrations of `migrations/<dialect>/`.
//!
//! Conventions that keep the three backends interchangeable: every integer column is a signed
//! 64-bit `BIGINT` (decoded as `i64`), times are epoch milliseconds in `BIGINT` columns, JSON is
//! stored as text and parsed by the application, and flags are `0`/`1` integers.

mod error;
mod query;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{DbError, DbResult};
pub use query::{ExecResult, Query, Row, Value, query};

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, MySql, Postgres, Sqlite, Transaction};

/// Which SQL dialect a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

impl Backend {
    /// The name used in configuration, logs and test selection.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
        }
    }

    /// The backend a `DATABASE_URL` names, from its scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "mysql" | "mariadb" => Some(Backend::MySql),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Pool sizing and timeouts. The defaults suit one `scrm serve` process.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Upper bound of open connections (SQLite: readers share this; writers serialize anyway).
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the request fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A pool of connections to one of the three backends. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// An open transaction on one of the three backends. Dropped without [`Tx::commit`], it rolls
/// back, so an early `?` return never leaves half a change behind.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    MySql(Transaction<'static, MySql>),
    Postgres(Transaction<'static, Postgres>),
}

/// Run the same generic code on whichever pool or transaction a value holds. Every branch is
/// type-checked against its own driver, so a type one driver cannot encode fails to compile.
#[macro_export]
macro_rules! dispatch {
    ($value:expr, $enum:ident, |$inner:ident| $body:expr) => {
        match $value {
            $crate::$enum::Sqlite($inner) => $body,
            $crate::$enum::MySql($inner) => $body,
            $crate::$enum::Postgres($inner) => $body,
        }
    };
}

impl Db {
    /// Connect to the database a URL names (`sqlite:`, `mysql:`, `postgres:`).
    ///
    /// SQLite files (and their folder) are created when missing, in WAL mode with a busy timeout,
    /// so readers never block the writer. MySQL sessions run in UTC with `utf8mb4` (customer names
    /// carry emoji) and READ COMMITTED, which avoids gap locks on the job tables.
    pub async fn connect(url: &str, settings: &PoolSettings) -> DbResult<Db> {
        let backend = Backend::from_url(url).ok_or_else(|| {
            DbError::Config(format!(
                "unsupported database URL scheme in {:?}: use sqlite:, mysql: or postgres:",
                redact_url(url)
            ))
        })?;
        let db = match backend {
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| DbError::Config(format!("bad sqlite URL: {e}")))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                if let Some(parent) = opts.get_filename().parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        DbError::Config(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections.max(2))
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(opts)
                    .await?;
                Db::Sqlite(pool)
            }
            Backend::MySql => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let opts = MySqlConnectOptions::from_str(&url)
                    .map_err(|e| DbError::Config(format!("bad mysql URL: {e}")))?
                    .charset("utf8mb4")
                    .timezone(Some(String::from("+00:00")));
                let pool = MySqlPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?;
                Db::MySql(pool)
            }
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| DbError::Config(format!("bad postgres URL: {e}")))?;
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(opts)
                    .await?;
                Db::Postgres(pool)
            }
        };
        Ok(db)
    }

    /// The dialect this pool speaks.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::MySql(_) => Backend::MySql,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Begin a transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock up front,
    /// because a deferred transaction that reads and then writes fails with "database is locked"
    /// when another writer got in between, and the busy timeout cannot help it.
    pub async fn begin(&self) -> DbResult<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::MySql(p) => Tx::MySql(p.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Begin a read-only transaction whose reads all see one snapshot, for a view assembled
    /// from several statements (a run and its steps) that must not mix two moments: REPEATABLE
    /// READ on PostgreSQL, a consistent snapshot on MySQL/MariaDB, a deferred transaction on
    /// SQLite (in WAL mode a reader keeps the snapshot of its first read and takes no lock).
    pub async fn begin_read(&self) -> DbResult<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN DEFERRED").await?),
            // The pool's sessions run READ COMMITTED (see `connect`), where a consistent
            // snapshot lasts one statement only: this one transaction is REPEATABLE READ
            // (`SET TRANSACTION` without SESSION applies to the next transaction alone).
            Db::MySql(p) => Tx::MySql(
                p.begin_with(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                     START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                )
                .await?,
            ),
            Db::Postgres(p) => Tx::Postgres(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// Check that the database answers (for `/health/ready`).
    pub async fn ping(&self) -> DbResult<()> {
        self.execute(query("SELECT 1")).await.map(|_| ())
    }

    /// Apply every embedded migration of this backend's dialect that has not run yet.
    pub async fn migrate(&self) -> DbResult<()> {
        match self {
            Db::Sqlite(p) => sqlx::migrate!("../../migrations/sqlite").run(p).await?,
            Db::MySql(p) => sqlx::migrate!("../../migrations/mysql").run(p).await?,
            Db::Postgres(p) => sqlx::migrate!("../../migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Close every connection (on shutdown, so SQLite checkpoints its WAL).
    pub async fn close(&self) {
        dispatch!(self, Db, |p| p.close().await)
    }

    /// Connections open and idle, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        dispatch!(self, Db, |p| (p.size(), p.num_idle()))
    }
}

impl Tx {
    /// The dialect this transaction speaks.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::MySql(_) => Backend::MySql,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    /// Make the transaction's writes durable and visible.
    pub async fn commit(self) -> DbResult<()> {
        dispatch!(self, Tx, |t| t.commit().await?);
        Ok(())
    }

    /// Undo the transaction's writes (dropping it does the same).
    pub async fn rollback(self) -> DbResult<()> {
        dispatch!(self, Tx, |t| t.rollback().await?);
        Ok(())
    }
}

/// A URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
