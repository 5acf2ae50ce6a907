//! Test support: a fresh, migrated database per test, on the backends `SCRM_TEST_DB` selects.
//!
//! `SCRM_TEST_DB` is a comma list of `sqlite`, `mysql`, `postgres`, or `all`; unset means
//! `sqlite`, so `cargo test` works on a machine with no database server. The servers are found
//! at `SCRM_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`) and
//! `SCRM_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); each test
//! creates its own database named `scrm_t_<unix seconds>_<random>` there, and databases of that
//! pattern older than a day are dropped by the next test that starts.
//!
//! Write a test as `async fn name(x: T)` and list it in [`db_tests!`](crate::db_tests) with a
//! setup function `async fn(Backend) -> T`: one `#[tokio::test]` per backend is generated,
//! named `name::sqlite`, `name::mysql`, `name::postgres`, so nextest can run them in parallel.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::{Backend, Db, DbResult, PoolSettings, query};

/// The backends this test run covers.
pub fn selected_backends() -> Vec<Backend> {
    let raw = std::env::var("SCRM_TEST_DB").unwrap_or_else(|_| "sqlite".into());
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "all" => return vec![Backend::Sqlite, Backend::MySql, Backend::Postgres],
            "sqlite" => out.push(Backend::Sqlite),
            "mysql" | "mariadb" => out.push(Backend::MySql),
            "postgres" | "postgresql" | "pg" => out.push(Backend::Postgres),
            other => panic!(
                "SCRM_TEST_DB: unknown backend {other:?} (use sqlite, mysql, postgres or all)"
            ),
        }
    }
    out
}

/// The server URL tests create their databases on.
pub fn server_url(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => "sqlite::memory:".into(),
        Backend::MySql => std::env::var("SCRM_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        Backend::Postgres => std::env::var("SCRM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    }
}

/// A database made for one test: its URL (to start a whole app on it) and a migrated pool.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub url: String,
    pub db: Db,
}

/// Create an empty database on `backend` and return its URL, without connecting a pool.
pub async fn fresh_url(backend: Backend) -> DbResult<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let suffix: u32 = rand::rng().random();
    let name = format!("scrm_t_{now}_{suffix:08x}");
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("scrm-tests");
            std::fs::create_dir_all(&dir)
                .map_err(|e| crate::DbError::Config(format!("temp dir: {e}")))?;
            Ok(format!(
                "sqlite://{}",
                dir.join(format!("{name}.db")).display()
            ))
        }
        Backend::MySql | Backend::Postgres => {
            let server = server_url(backend);
            let admin = Db::connect(
                &server,
                &PoolSettings {
                    max_connections: 2,
                    ..Default::default()
                },
            )
            .await?;
            drop_stale(&admin, now).await;
            let create = match backend {
                Backend::MySql => format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ),
                _ => format!("CREATE DATABASE \"{name}\""),
            };
            admin.execute(query(create)).await?;
            admin.close().await;
            let mut url = url::Url::parse(&server)
                .map_err(|e| crate::DbError::Config(format!("test server URL: {e}")))?;
            url.set_path(&format!("/{name}"));
            Ok(url.to_string())
        }
    }
}

/// Create, connect and migrate a database for one test.
pub async fn fresh(backend: Backend) -> DbResult<TestDb> {
    let url = fresh_url(backend).await?;
    let db = Db::connect(&url, &PoolSettings::default()).await?;
    db.migrate().await?;
    Ok(TestDb { url, db })
}

/// Drop test databases left by runs more than a day old (tests cannot drop their own: there is
/// no async drop, and a test that panics would leave it anyway).
async fn drop_stale(admin: &Db, now: u64) {
    let list = match admin.backend() {
        Backend::MySql => query(
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE 'scrm\\_t\\_%'",
        ),
        _ => query("SELECT datname FROM pg_database WHERE datname LIKE 'scrm\\_t\\_%'"),
    };
    let Ok(names) = admin.fetch_all::<(String,)>(list).await else {
        return;
    };
    for (name,) in names {
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(born) > 86_400 {
            let sql = match admin.backend() {
                Backend::MySql => format!("DROP DATABASE IF EXISTS `{name}`"),
                _ => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            };
            let _ = admin.execute(query(sql)).await;
        }
    }
}

/// Run one test body on one backend, if this run selected it.
pub async fn run<S, SF, T, F, TF>(backend: Backend, setup: S, test: F)
where
    S: FnOnce(Backend) -> SF,
    SF: Future<Output = T>,
    F: FnOnce(T) -> TF,
    TF: Future<Output = ()>,
{
    if !selected_backends().contains(&backend) {
        eprintln!("skipped: backend {backend} not selected by SCRM_TEST_DB");
        return;
    }
    let fixture = setup(backend).await;
    test(fixture).await;
}

/// Generate one test per backend for each listed `async fn name(fixture)`.
///
/// ```ignore
/// scrm_db::db_tests!(crate::helpers::spawn_app; creates_a_customer, lists_customers);
/// ```
/// The setup path must be absolute (`crate::…`), since the tests live in a module per name.
#[macro_export]
macro_rules! db_tests {
    ($setup:path; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::testing::run($crate::Backend::Sqlite, $setup, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                $crate::testing::run($crate::Backend::MySql, $setup, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::testing::run($crate::Backend::Postgres, $setup, super::$name).await
            }
        }
    )*};
}
