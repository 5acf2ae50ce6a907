//! Commands to devices as durable jobs. A command is recorded (`pending`) in the transaction of
//! the write that asks for it, together with a `devices.command.release` job; the job releases
//! it (`ready`) — per account with a random gap when asked (group pushes) — and the gateway's
//! session in whichever process holds the connection sends it (`sent`). It stays `sent` until
//! the gateway acknowledges it (`done` / `failed`, with the result); on every reconnect the
//! unacknowledged ones are sent again, and the device dedupes by the command id, so each command
//! runs once. What a completed command leads to (a welcome after a group is created, friends
//! stored after a sync …) happens in the transaction that records the acknowledgement, once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use scrm_db::{Backend, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, KeyLimit, NewJob};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::events;
use crate::state::{AppState, now_ms};

/// Job kind: release a recorded command to its gateway.
pub const RELEASE: &str = "devices.command.release";

/// In-process wake-ups for gateway sessions: a released command is sent at once by a session in
/// this process; sessions in other processes find it on their next poll.
#[derive(Clone, Default)]
pub struct Hub {
    notify: Arc<Notify>,
    sessions: Arc<Mutex<HashMap<i64, (u64, CancellationToken)>>>,
    next: Arc<AtomicU64>,
    /// Cancelled only by `halt` (feature `test-hooks`): sessions end as in a crash.
    halted: CancellationToken,
}

impl Hub {
    /// Wake every session of this process.
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Wait for a wake-up.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// A new session of a gateway: an older one in this process is ended (the gateway
    /// reconnected before the old socket was seen closing). Returns the session's number and
    /// the token that ends it.
    pub fn register(&self, gateway_id: i64) -> (u64, CancellationToken) {
        let token = CancellationToken::new();
        let sid = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self
            .sessions
            .lock()
            .insert(gateway_id, (sid, token.clone()))
        {
            old.cancel();
        }
        (sid, token)
    }

    /// End every gateway session of this process at once without releasing anything, as a
    /// crashed process would: their leases lapse by themselves and a session elsewhere takes
    /// over. Tests of the lease only: behind the `test-hooks` feature, which the api tests
    /// enable and a production build does not have.
    #[cfg(feature = "test-hooks")]
    pub fn halt(&self) {
        self.halted.cancel();
    }

    /// Cancelled once `Hub::halt` (feature `test-hooks`) was called; never in production.
    pub fn halted(&self) -> CancellationToken {
        self.halted.clone()
    }

    /// The session ended; `true` if it was still the gateway's current one here.
    pub fn unregister(&self, gateway_id: i64, sid: u64) -> bool {
        let mut s = self.sessions.lock();
        if s.get(&gateway_id).is_some_and(|(id, _)| *id == sid) {
            s.remove(&gateway_id);
            return true;
        }
        false
    }
}

/// A command to record.
pub struct NewCommand {
    pub account: String,
    pub command: &'static str,
    pub data: Value,
    /// What asked for it (`group_push`, `auto_group`, `welcome`, `ai_reply`, `auto_like`, `sync`, `message`).
    pub source: &'static str,
    pub source_id: i64,
    /// Release no earlier than this (a welcome's delay).
    pub run_at: Option<i64>,
    /// Space releases of this account by the configured random gap (seed 002's 3-8 s).
    pub spaced: bool,
}

impl NewCommand {
    pub fn new(
        account: &str,
        command: &'static str,
        data: Value,
        source: &'static str,
        source_id: i64,
    ) -> Self {
        NewCommand {
            account: account.to_string(),
            command,
            data,
            source,
            source_id,
            run_at: None,
            spaced: false,
        }
    }
}

/// Record a command and its release job in `tx`; returns the command id.
pub async fn record(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    c: NewCommand,
) -> anyhow::Result<String> {
    let command_id = uuid::Uuid::now_v7().simple().to_string();
    tx.execute(
        query(
            "INSERT INTO device_command (tenant_id, command_id, account_wxid, command, data, status, sends, source, source_id, created_at) \
             VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(&command_id)
        .bind(&c.account)
        .bind(c.command)
        .bind(c.data.to_string())
        .bind(c.source)
        .bind(c.source_id)
        .bind(now_ms()),
    )
    .await?;
    let mut job = NewJob::new(RELEASE, &json!({"commandId": command_id}))?
        .tenant(tenant_id)
        .unique_key(format!("devcmd:{command_id}"));
    if let Some(at) = c.run_at {
        job = job.run_at(at);
    }
    if c.spaced {
        let (min, max) = state.config.device_send_gap_ms;
        job = job.limited_by(
            format!("device:{tenant_id}:{}", c.account),
            KeyLimit::concurrency(1)
                .with_spacing(Duration::from_millis(min), Duration::from_millis(max)),
        );
    }
    state.jobs.enqueue(tx, job).await?;
    Ok(command_id)
}

/// How often a release job looks again while its account is OFFLINE.
const OFFLINE_RECHECK_MS: i64 = 5_000;
/// A command whose account stays OFFLINE this long after it was recorded is given up (FAILED,
/// with the reason): a device off for a day is not coming back for this send.
const OFFLINE_GIVE_UP_MS: i64 = 24 * 3600 * 1000;
/// A release out of attempts on a transient (database) error tries again after this long, for
/// as long as the command may wait ([`OFFLINE_GIVE_UP_MS`]): never dropped silently.
const LATE_RETRY_MS: i64 = 30_000;

/// The release job: a command goes to its gateway only while its account is ACTIVE. While the
/// account is OFFLINE the job waits (reschedules itself) instead of releasing, so commands of
/// an account that was offline still go out one per gap when it returns, never back to back;
/// an EXPIRED (logged out) or unknown account fails the command with the reason. A group-send
/// command of a cancelled task is not sent.
pub async fn run_release(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let id = p["commandId"].as_str().unwrap_or_default().to_string();
    match release(&state, &ctx, &id).await {
        Ok(outcome) => Ok(outcome),
        Err(e) if ctx.is_last_attempt() => {
            let created: Option<(i64,)> = state
                .db
                .fetch_optional(
                    query("SELECT created_at FROM device_command WHERE command_id = ?").bind(&id),
                )
                .await
                .unwrap_or(None);
            if created.is_none_or(|(at,)| ctx.now_ms() - at < OFFLINE_GIVE_UP_MS) {
                tracing::warn!(command = %id, error = %e, "device command release out of attempts on a transient error; trying again");
                return Ok(JobOutcome::RetryAt(ctx.now_ms() + LATE_RETRY_MS));
            }
            Err(JobError::retryable(e))
        }
        Err(e) => Err(JobError::retryable(e)),
    }
}

async fn release(state: &AppState, ctx: &JobContext, id: &str) -> anyhow::Result<JobOutcome> {
    type Row = (i64, String, String, i64, i64, Option<String>);
    let row: Option<Row> = state
        .db
        .fetch_optional(
            query(
                "SELECT c.tenant_id, c.status, c.source, c.source_id, c.created_at, a.status FROM device_command c \
                 LEFT JOIN device_account a ON a.tenant_id = c.tenant_id AND a.wxid = c.account_wxid WHERE c.command_id = ?",
            )
            .bind(id),
        )
        .await?;
    let Some((tenant_id, status, source, source_id, created_at, account)) = row else {
        return Ok(JobOutcome::Done);
    };
    if status != "pending" {
        return Ok(JobOutcome::Done);
    }
    if source == super::group_send::SOURCE
        && super::group_send::cancelled(&state.db, source_id).await?
    {
        give_up(state, tenant_id, id, "the group send was cancelled").await?;
        return Ok(JobOutcome::Done);
    }
    match account.as_deref() {
        Some("ACTIVE") => {}
        Some("OFFLINE") if ctx.now_ms() - created_at < OFFLINE_GIVE_UP_MS => {
            return Ok(JobOutcome::RetryAt(ctx.now_ms() + OFFLINE_RECHECK_MS));
        }
        Some("OFFLINE") => {
            give_up(
                state,
                tenant_id,
                id,
                "the account stayed OFFLINE for 24 hours",
            )
            .await?;
            return Ok(JobOutcome::Done);
        }
        Some(_) => {
            give_up(state, tenant_id, id, "the account is logged out (EXPIRED)").await?;
            return Ok(JobOutcome::Done);
        }
        None => {
            give_up(state, tenant_id, id, "the account is not on any gateway").await?;
            return Ok(JobOutcome::Done);
        }
    }
    // When this run of the release job was claimed: the time the per-account gap is kept
    // between (the engine spaces claims of one key).
    let started: Option<(Option<i64>,)> = state
        .db
        .fetch_optional(query("SELECT started_at FROM job WHERE id = ?").bind(ctx.id))
        .await?;
    let released_at = started.and_then(|s| s.0).unwrap_or_else(|| ctx.now_ms());
    state
        .db
        .execute(
            query("UPDATE device_command SET status = 'ready', released_at = ? WHERE command_id = ? AND status = 'pending'")
                .bind(released_at)
                .bind(id),
        )
        .await?;
    state.devices.wake();
    Ok(JobOutcome::Done)
}

/// Fail a command that was never sent, with the reason, and what follows from it (once).
pub async fn give_up(
    state: &AppState,
    tenant_id: i64,
    command_id: &str,
    reason: &str,
) -> anyhow::Result<()> {
    finish(
        state,
        tenant_id,
        command_id,
        false,
        &Value::Null,
        Some(reason),
        "('pending')",
    )
    .await
}

/// A command as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRow {
    pub id: i64,
    pub tenant_id: i64,
    pub command_id: String,
    pub account_wxid: String,
    pub command: String,
    pub data: String,
    pub status: String,
    pub source: String,
    pub source_id: i64,
}

pub const COLUMNS: &str =
    "id, tenant_id, command_id, account_wxid, command, data, status, source, source_id";

/// Record a gateway's acknowledgement of a command, once, and what follows from it. A second
/// acknowledgement of the same command (after a resend) changes nothing.
pub async fn complete(
    state: &AppState,
    tenant_id: i64,
    command_id: &str,
    ok: bool,
    result: &Value,
    error: Option<&str>,
) -> anyhow::Result<()> {
    finish(
        state,
        tenant_id,
        command_id,
        ok,
        result,
        error,
        "('ready', 'sent')",
    )
    .await
}

async fn finish(
    state: &AppState,
    tenant_id: i64,
    command_id: &str,
    ok: bool,
    result: &Value,
    error: Option<&str>,
    from: &str,
) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let row: Option<CommandRow> = tx
        .fetch_optional(
            query(format!(
                "SELECT {COLUMNS} FROM device_command WHERE tenant_id = ? AND command_id = ?"
            ))
            .bind(tenant_id)
            .bind(command_id),
        )
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let error = error.map(|e| e.chars().take(500).collect::<String>());
    let changed = tx
        .execute(
            query(format!(
                "UPDATE device_command SET status = ?, result = ?, error = ?, acked_at = ? \
                 WHERE id = ? AND status IN {from}"
            ))
            .bind(if ok { "done" } else { "failed" })
            .bind((!result.is_null()).then(|| result.to_string()))
            .bind(error.clone())
            .bind(now_ms())
            .bind(row.id),
        )
        .await?
        .rows_affected;
    if changed == 1 {
        events::after_command(state, &mut tx, &row, ok, result, error.as_deref()).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `INSERT … ` that does nothing when a unique key already holds the row.
pub fn insert_ignore(backend: Backend, rest: &str) -> String {
    match backend {
        Backend::MySql => format!("INSERT IGNORE INTO {rest}"),
        _ => format!("INSERT INTO {rest} ON CONFLICT DO NOTHING"),
    }
}
