//! The simulator's shared state, [`Sim`]: a cheap-to-clone handle over the company, tokens,
//! mass sends, deliveries, callbacks and runtime configuration. Each part has its own lock so
//! read-heavy APIs (externalcontact/get) do not queue behind writers of unrelated parts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use serde::{Deserialize, Serialize};

use crate::api::{self, contact_way, mass_send, messages, transfer};
use crate::callbacks::Dispatcher;
use crate::company::{self, Company, names};
use crate::config::SimConfig;
use crate::deliveries::{Delivery, DeliveryLog, DeliveryQuery, Duplicate};
use crate::faults::Limiter;

/// Which secret a token was issued for; the two have different permissions (API-FACTS §3-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// The self-built app with 客户联系 permission.
    App,
    /// The 通讯录同步 secret.
    Contact,
}

/// An issued access_token.
#[derive(Clone, Debug)]
pub(crate) struct TokenInfo {
    pub kind: SecretKind,
    pub expires_ms: i64,
    /// Secret generation at issue time; revoking a secret bumps it and kills old tokens.
    pub generation: u32,
}

/// Issued tokens and per-secret switches set by scenarios.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    pub by_token: HashMap<String, TokenInfo>,
    pub current: HashMap<SecretKind, String>,
    /// Secrets reset in the admin console: gettoken answers 40001.
    pub revoked: HashMap<SecretKind, bool>,
    /// errcode every API call with this secret's tokens answers (48002, 60020…).
    pub forced_errcode: HashMap<SecretKind, i32>,
    pub generation: HashMap<SecretKind, u32>,
}

pub(crate) struct Inner {
    pub config: RwLock<SimConfig>,
    pub company: RwLock<Company>,
    /// Added to the wall clock (admin "advance time"), milliseconds.
    pub clock_offset_ms: AtomicI64,
    pub tokens: Mutex<Tokens>,
    pub limiter: Arc<Limiter>,
    pub mass: Mutex<mass_send::MassStore>,
    pub deliveries: Mutex<DeliveryLog>,
    pub welcome: Mutex<messages::WelcomeCodes>,
    pub media: Mutex<HashMap<String, i64>>,
    pub transfers: Mutex<transfer::TransferStore>,
    pub contact_ways: Mutex<contact_way::ContactWays>,
    pub callbacks: Dispatcher,
    pub calls: Mutex<HashMap<&'static str, u64>>,
    /// Chats that groupchat/get refuses with an errcode although groupchat/list lists them.
    pub chat_errcodes: Mutex<HashMap<String, i32>>,
    pub seq: AtomicU64,
}

/// Handle on the simulator's state. Clone freely; all clones see the same simulator.
#[derive(Clone)]
pub struct Sim(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

impl Sim {
    /// Generates the company and builds the state (no server, no callback worker).
    pub fn new(config: SimConfig) -> Self {
        let mut company = company::generate(config.seed, &config.size);
        company.spread_recent_adds(chrono_now_secs(), config.recent_adds_days);
        Sim(Arc::new(Inner {
            company: RwLock::new(company),
            config: RwLock::new(config),
            clock_offset_ms: AtomicI64::new(0),
            tokens: Mutex::new(Tokens::default()),
            limiter: Limiter::new(api::Api::COUNT),
            mass: Mutex::new(mass_send::MassStore::default()),
            deliveries: Mutex::new(DeliveryLog::default()),
            welcome: Mutex::new(messages::WelcomeCodes::default()),
            media: Mutex::new(HashMap::new()),
            transfers: Mutex::new(transfer::TransferStore::default()),
            contact_ways: Mutex::new(contact_way::ContactWays::default()),
            callbacks: Dispatcher::default(),
            calls: Mutex::new(HashMap::new()),
            chat_errcodes: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
        }))
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> SimConfig {
        self.0.config.read().clone()
    }

    /// Changes the runtime configuration (faults, latency, limits, quota, callbacks…).
    /// Company sizes and the seed only take effect on [`Sim::reset`].
    pub fn update_config(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut self.0.config.write());
    }

    /// Read access to the company (for assertions and tools).
    pub fn company(&self) -> RwLockReadGuard<'_, Company> {
        self.0.company.read()
    }

    pub(crate) fn company_mut(&self) -> RwLockWriteGuard<'_, Company> {
        self.0.company.write()
    }

    /// Simulator time in milliseconds since the epoch (wall clock + admin offset).
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        wall + self.0.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Simulator time in unix seconds.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the simulator clock forward (token expiry, welcome codes, transfers, quotas).
    pub fn advance_clock(&self, secs: i64) {
        self.0
            .clock_offset_ms
            .fetch_add(secs * 1000, Ordering::Relaxed);
    }

    /// A unique id with WeCom's look: `prefix` + 30 base62 characters.
    pub(crate) fn new_id(&self, prefix: &str) -> String {
        let n = self.0.seq.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(32);
        s.push_str(prefix);
        names::push_base62(&mut s, names::mix(rand::random(), n, 99), 30);
        s
    }

    /// Everything delivered so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.0.deliveries.lock().query(&DeliveryQuery::default())
    }

    /// Deliveries matching a query.
    pub fn query_deliveries(&self, q: &DeliveryQuery) -> Vec<Delivery> {
        self.0.deliveries.lock().query(q)
    }

    /// Number of deliveries.
    pub fn delivery_count(&self) -> usize {
        self.0.deliveries.lock().len()
    }

    /// Messages received per recipient (external_userid, chat_id or userid).
    pub fn deliveries_per_recipient(&self) -> HashMap<String, usize> {
        self.0.deliveries.lock().count_per_recipient()
    }

    /// Recipients that received the same content more than once.
    pub fn duplicate_deliveries(&self) -> Vec<Duplicate> {
        self.0.deliveries.lock().duplicates()
    }

    /// API calls served so far, per path.
    pub fn call_counts(&self) -> HashMap<&'static str, u64> {
        self.0.calls.lock().clone()
    }

    /// Regenerates the company from the (possibly changed) configuration and forgets tokens,
    /// mass sends, deliveries, callbacks, media, transfers and contact ways.
    pub fn reset(&self) {
        let cfg = self.config();
        let mut company = company::generate(cfg.seed, &cfg.size);
        company.spread_recent_adds(self.now(), cfg.recent_adds_days);
        *self.0.company.write() = company;
        *self.0.tokens.lock() = Tokens::default();
        *self.0.mass.lock() = mass_send::MassStore::default();
        self.0.deliveries.lock().clear();
        *self.0.welcome.lock() = messages::WelcomeCodes::default();
        self.0.media.lock().clear();
        *self.0.transfers.lock() = transfer::TransferStore::default();
        *self.0.contact_ways.lock() = contact_way::ContactWays::default();
        self.0.callbacks.clear();
        self.0.calls.lock().clear();
        self.0.limiter.reset();
        self.0.clock_offset_ms.store(0, Ordering::Relaxed);
    }

    /// Every access_token issued so far (tests check that none reaches a log).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.0.tokens.lock().by_token.keys().cloned().collect()
    }

    /// Marks every issued token expired (the next call answers 42001).
    pub fn expire_tokens(&self) {
        let now = self.now_ms();
        let mut t = self.0.tokens.lock();
        for info in t.by_token.values_mut() {
            info.expires_ms = info.expires_ms.min(now - 1);
        }
    }

    /// Resets (`revoked = true`) or restores a secret. A reset secret makes gettoken answer
    /// 40001 and its existing tokens answer 40014.
    pub fn set_secret_revoked(&self, kind: SecretKind, revoked: bool) {
        let mut t = self.0.tokens.lock();
        if revoked {
            *t.generation.entry(kind).or_insert(0) += 1;
            t.current.remove(&kind);
        }
        t.revoked.insert(kind, revoked);
    }

    /// Makes groupchat/get answer `errcode` for one chat (e.g. 60011 no privilege) while
    /// groupchat/list still lists it. 0 clears it.
    pub fn set_chat_errcode(&self, chat_id: &str, errcode: i32) {
        let mut m = self.0.chat_errcodes.lock();
        if errcode == 0 {
            m.remove(chat_id);
        } else {
            m.insert(chat_id.to_string(), errcode);
        }
    }

    /// Makes every API call made with this secret's tokens answer `errcode` (e.g. 48002 no
    /// permission, 60020 IP not trusted) — for configuration-test scenarios. 0 clears it.
    pub fn set_secret_errcode(&self, kind: SecretKind, errcode: i32) {
        let mut t = self.0.tokens.lock();
        if errcode == 0 {
            t.forced_errcode.remove(&kind);
        } else {
            t.forced_errcode.insert(kind, errcode);
        }
    }
}

/// The wall clock in seconds (the simulator's clock before any offset).
fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
