//! # scrm-wecom-sim — a faithful WeCom (企业微信) simulator
//!
//! A real HTTP server that speaks the same paths, JSON shapes and errcodes as
//! `https://qyapi.weixin.qq.com` for everything scrm calls, seeded with a generated company,
//! so every test and benchmark of WeCom behaviour runs locally. The facts it implements are in
//! `shared/wecom/API-FACTS.md`; it deliberately has its own serde types (not the client's) so it
//! catches client mistakes instead of sharing them.
//!
//! ## Tour
//!
//! * [`config`] — [`SimConfig`]: seed, sizes, secrets, limits, faults, mass-send behaviour,
//!   callbacks; clap arguments (`--sim-…`), serde and `Default`.
//! * [`company`] — the generated company: departments, staff, customers (compact, names and
//!   ids derived from the seed, a million fit easily), follow relations, tags, group chats.
//! * `api` — the WeCom endpoints, one module per area (token, contacts, external, tags,
//!   groupchat, mass_send, messages, media, transfer, contact_way). Every call passes one gate:
//!   token (41001/40014/42001), per-secret forced errors (48002/60020), permission, method,
//!   rate limit (45009), concurrency (45033), injected faults.
//! * [`faults`] — the limiter and transport faults (latency, slow replies, HTTP 500, dropped
//!   connections).
//! * [`deliveries`] — the log of every message actually received, with duplicate detection.
//! * [`callbacks`] — event XML, sealed with `scrm_wecom::crypto`, POSTed with WeCom's retries.
//! * [`scenarios`] — user/console actions (customer adds a member, joins a group, admin edits
//!   tags…) that change the company and emit callbacks; Rust methods on [`Sim`].
//! * `admin` — the same, plus runtime knobs, as JSON routes under `/sim/admin/…`.
//!
//! ## Use
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use scrm_wecom_sim::{SimConfig, Simulator};
//! let mut config = SimConfig::default();
//! config.size.customers = 1000;
//! let sim = Simulator::start(config).await?;
//! let base = sim.base_url(); // point the WeCom client here instead of qyapi.weixin.qq.com
//! let added = sim.customer_adds_staff(scrm_wecom_sim::scenarios::AddContact {
//!     userid: sim.company().staff[0].userid.clone(),
//!     ..Default::default()
//! })?;
//! # let _ = (base, added);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
pub mod callbacks;
pub mod company;
pub mod config;
pub mod deliveries;
pub mod faults;
pub mod gateway;
pub mod scenarios;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::SimConfig;
pub use deliveries::{Delivery, DeliveryKind, DeliveryQuery};
pub use state::{SecretKind, Sim};

/// Largest request body (media/upload allows 20 MB files).
const BODY_LIMIT: usize = 25 << 20;

/// Entry points: [`Simulator::start`] for tests and `scrm demo`, [`Simulator::serve`] for a
/// binary that owns its listener and shutdown signal.
pub struct Simulator;

impl Simulator {
    /// Binds `config.listen` (port 0 allowed), generates the company and serves in a tokio task.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr().context("local address")?;
        let sim = Sim::new(config);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(sim.clone(), listener, cancel.clone()));
        Ok(SimHandle {
            sim,
            addr,
            cancel,
            task,
        })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        listener: TcpListener,
        config: SimConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sim = Sim::new(config);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            c2.cancel();
        });
        run(sim, listener, cancel).await
    }
}

/// The axum app: WeCom API plus admin routes, sharing one [`Sim`].
pub fn router(sim: Sim) -> Router {
    Router::new()
        .merge(api::router(sim.clone()))
        .merge(admin::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(sim)
}

async fn run(sim: Sim, listener: TcpListener, cancel: CancellationToken) -> anyhow::Result<()> {
    let worker = tokio::spawn(sim.clone().run_callbacks(cancel.clone()));
    let c2 = cancel.clone();
    let res = axum::serve(listener, router(sim))
        .with_graceful_shutdown(async move { c2.cancelled().await })
        .await;
    cancel.cancel();
    worker.await.ok();
    res.context("simulator server")
}

/// A running simulator. Derefs to [`Sim`] for state, deliveries and scenarios.
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` — the WeCom base URL to give the client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state handle (also reachable through `Deref`).
    pub fn state(&self) -> &Sim {
        &self.sim
    }

    /// Stops the server and the callback worker and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.task.await.ok();
    }
}

impl Deref for SimHandle {
    type Target = Sim;

    fn deref(&self) -> &Sim {
        &self.sim
    }
}
