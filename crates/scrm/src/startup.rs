//! Building and running the application: connect, migrate, bootstrap the first admin, bind, serve
//! until a shutdown signal, then finish in-flight requests. Tests build the same `Application` on
//! port 0 (STYLE.md: the server takes a bound listener and a shutdown future).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use scrm_db::{Db, PoolSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Role, password, users};
use crate::config::Config;
use crate::http::routes::RouteInfo;
use crate::state::AppState;

/// A built, bound, not yet serving scrm.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    routes: Vec<RouteInfo>,
}

/// Connect to the configured database and apply migrations.
pub async fn connect_and_migrate(config: &Config) -> anyhow::Result<Db> {
    let settings = PoolSettings {
        max_connections: config.database_max_connections,
        ..Default::default()
    };
    let db = Db::connect(config.database_url.expose(), &settings)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                scrm_db::redact_url(config.database_url.expose())
            )
        })?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// Connect to Redis when configured.
pub async fn connect_redis(
    config: &Config,
) -> anyhow::Result<Option<redis::aio::ConnectionManager>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let client = redis::Client::open(url.expose()).context("REDIS_URL")?;
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .with_context(|| {
            format!(
                "connecting to Redis at {}",
                scrm_db::redact_url(url.expose())
            )
        })?;
    Ok(Some(conn))
}

/// The name of the tenant an empty database starts with.
pub const DEFAULT_TENANT: &str = "default";

/// On the first start of an empty database with `SCRM_ADMIN_PASSWORD` set, create `admin`.
pub async fn bootstrap_admin(db: &Db, config: &Config) -> anyhow::Result<bool> {
    let Some(pw) = &config.admin_password else {
        return Ok(false);
    };
    if users::any_exist(db).await? {
        return Ok(false);
    }
    let tenant = users::ensure_tenant(db, DEFAULT_TENANT).await?;
    let pw = pw.expose().to_string();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
    let mut tx = db.begin().await?;
    match users::create(
        &mut tx,
        tenant,
        "admin",
        "Administrator",
        &hash,
        Role::Admin,
    )
    .await
    {
        Ok(id) => {
            crate::audit::record_raw(
                &mut tx,
                tenant,
                None,
                "user.bootstrap",
                "user",
                &id.to_string(),
                serde_json::json!({"username": "admin"}),
                None,
            )
            .await?;
            tx.commit().await?;
            tracing::info!("created the first admin user `admin` from SCRM_ADMIN_PASSWORD");
            Ok(true)
        }
        // Another process bootstrapped at the same moment.
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Application {
    /// Connect, migrate, bootstrap and bind the configured address.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let addr = std::net::SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (PORT)"))?;
        Application::build_with_listener(config, listener).await
    }

    /// Connect, migrate and bootstrap, serving on a listener the caller bound (tests: port 0).
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let db = connect_and_migrate(&config).await?;
        let redis = connect_redis(&config).await?;
        bootstrap_admin(&db, &config).await?;
        let jobs = crate::jobs::client(&db, config.redis_url.as_ref().map(|u| u.expose()));
        let state = AppState {
            db,
            config: Arc::new(config),
            redis,
            metrics: crate::http::observe::recorder(),
            jobs,
            devices: Default::default(),
        };
        // integration (seed 003): WEWORK_* default config, sync schedules.
        crate::integration::on_startup(&state).await?;
        // automation (seed 002): built-in schedules.
        crate::automation::jobs::on_startup(&state).await?;
        // customers: hourly clean-up of expired export files.
        crate::customers::jobs::on_startup(&state).await?;
        // devices (seed 002): auto-like and moments collection schedules.
        crate::devices::jobs::on_startup(&state).await?;
        let (router, routes) = crate::http::router(state.clone());
        Ok(Application {
            listener,
            router,
            state,
            routes,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (tests reach the database through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every registered route with its access rule.
    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
    }

    /// Serve until `shutdown` resolves, then stop accepting, finish in-flight requests, let the
    /// workers finish the jobs they hold, and close the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        let role = self.state.config.role;
        tracing::info!(%addr, backend = %self.state.db.backend(), ?role, "scrm listening");
        let stop_workers = CancellationToken::new();
        let workers = if role.runs_workers() {
            Some(crate::jobs::start_workers(&self.state, stop_workers.clone()).await?)
        } else {
            None
        };
        let db = self.state.db.clone();
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
        tracing::info!("in-flight requests finished");
        stop_workers.cancel();
        if let Some(w) = workers {
            w.wait().await;
            tracing::info!("workers drained");
        }
        db.close().await;
        served
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
