//! The engine's loops: the dispatcher (claim into free slots, sleep until the next due job or a
//! wake-up), the completer (write results in batches), the heartbeat (leases, cancellations,
//! timeouts, the worker row) and maintenance (reap expired leases, fire cron, refresh gauges).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::Core;
use crate::error::JobError;
use crate::job::{JobOutcome, ms};

/// After a claim that found fewer due jobs than it could take, wait this long before the next
/// one: jobs due meanwhile are claimed together (costing at most this much lateness).
const GATHER: Duration = Duration::from_millis(3);
/// After a claim that took everything due, the next claims skip jobs due more than this
/// before that claim's moment (the claim floor, see [`ClaimRequest::floor`]).
const FLOOR_MARGIN_MS: i64 = 100;
/// A dispatcher claims without a floor at least this often (real time), and when a claim
/// with a floor found nothing (see [`FULL_CLAIM_IF_EMPTY`]): jobs that became claimable below the floor (an enqueue whose
/// transaction committed late with an earlier due time, another host's clock behind ours, a
/// key that reopened) wait at most this long.
const FULL_CLAIM_EVERY: Duration = Duration::from_millis(500);
/// A claim with a floor that found nothing is followed by one without, unless the last one
/// without was this recent.
const FULL_CLAIM_IF_EMPTY: Duration = Duration::from_millis(100);
use crate::store::{self, ClaimRequest, ClaimedJob, Finished, Outcome};
use crate::worker::JobContext;

/// A handler in flight.
pub(crate) struct Running {
    pub cancel: CancellationToken,
    pub abort: Option<AbortHandle>,
    pub kind: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub concurrency_key: Option<String>,
    pub started_at: i64,
    pub deadline: i64,
}

/// What the completer receives.
pub(crate) enum Msg {
    Finished(Box<Finished>),
    Stop,
}

/// Claim into free slots until shutdown.
pub(crate) async fn dispatcher(core: Arc<Core>, shutdown: CancellationToken) {
    let clock = core.jobs.clock().clone();
    let poll = ms(core.config.poll_interval);
    let mut floor: Option<i64> = None;
    let mut last_full: Option<tokio::time::Instant> = None;
    loop {
        let notified = core.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shutdown.is_cancelled() {
            return;
        }
        let want = reserve_slots(&core);
        let mut wake_at = clock.now_ms() + poll;
        if want > 0 {
            let now = clock.now_ms();
            let full = floor.is_none() || last_full.is_none_or(|t| t.elapsed() >= FULL_CLAIM_EVERY);
            if full {
                last_full = Some(tokio::time::Instant::now());
            }
            let req = ClaimRequest {
                worker_id: &core.worker_id,
                now,
                lease_until: now + ms(core.config.lease),
                limit: want,
                kinds: &core.kinds,
                floor: if full { None } else { floor },
            };
            let claimed = store::claim(core.jobs.db(), &req).await;
            let got = claimed.as_ref().map(Vec::len).unwrap_or(0);
            core.in_flight.fetch_sub(want - got, Ordering::AcqRel);
            core.busy.fetch_sub(want - got, Ordering::AcqRel);
            match claimed {
                Ok(jobs) => {
                    for job in jobs {
                        spawn_job(&core, job, now);
                    }
                    if got < want {
                        // Everything due up to `now` that we could take, we took.
                        floor = Some(now - FLOOR_MARGIN_MS);
                    }
                    if got == 0
                        && !full
                        && last_full.is_none_or(|t| t.elapsed() >= FULL_CLAIM_IF_EMPTY)
                    {
                        // Nothing above the floor: look below it before going idle. (Not
                        // every time: in a burst, a sibling dispatcher that took the due jobs
                        // first leaves this one empty-handed several times a second.)
                        floor = None;
                        continue;
                    }
                    if got == want {
                        // Probably more waiting: wake a sibling dispatcher too, so claims
                        // overlap with each other as well as with the finishing writes.
                        core.notify.notify_one();
                        continue;
                    }
                    if got > 0 {
                        // Jobs are arriving: gather for a moment so the next claim fetches a
                        // batch, instead of one claim per due job (and skip the next-due
                        // query: the next claim finds out).
                        // (Real time, not the engine's clock: a manual clock must not stall.)
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(GATHER) => {}
                        }
                        continue;
                    }
                    match store::next_wake(core.jobs.db(), now, &core.kinds).await {
                        Ok(Some(at)) => wake_at = wake_at.min(at),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "jobs: next due time"),
                    }
                }
                Err(e) => {
                    floor = None;
                    tracing::warn!(error = %e, "jobs: claim failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut notified => {}
            _ = clock.sleep_until(wake_at) => {}
        }
    }
}

/// Take up to one claim batch of free slots (atomically, as several dispatchers may run).
/// Slots are running handlers; results not yet written count against a larger budget
/// (`UNWRITTEN_FACTOR` × concurrency) so a stalled database stops the claims eventually.
fn reserve_slots(core: &Core) -> usize {
    let slots = core.config.concurrency;
    let budget = slots.saturating_mul(UNWRITTEN_FACTOR);
    let unwritten = core.in_flight.load(Ordering::Acquire);
    if unwritten >= budget {
        return 0;
    }
    let mut cur = core.busy.load(Ordering::Acquire);
    loop {
        let free = slots.saturating_sub(cur).min(budget - unwritten);
        if free == 0 {
            return 0;
        }
        let want = free.min(core.config.claim_batch.max(1));
        match core
            .busy
            .compare_exchange(cur, cur + want, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                core.in_flight.fetch_add(want, Ordering::AcqRel);
                return want;
            }
            Err(now) => cur = now,
        }
    }
}

/// Claimed jobs (running or with results still to write) allowed per slot.
const UNWRITTEN_FACTOR: usize = 4;

/// Start a claimed job (its slot is already counted in `busy` and `in_flight`).
fn spawn_job(core: &Arc<Core>, job: ClaimedJob, now: i64) {
    let Some(reg) = core.handlers.get(&job.kind) else {
        // Cannot happen (we claim only registered kinds); give it back rather than lose it.
        report(
            core,
            &job,
            now,
            Err(JobError::retryable("no handler")),
            "error",
        );
        return;
    };
    let cancel = CancellationToken::new();
    let running = Running {
        cancel: cancel.clone(),
        abort: None,
        kind: job.kind.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        concurrency_key: job.concurrency_key.clone(),
        started_at: now,
        deadline: now + ms(reg.opts.timeout),
    };
    if let Ok(mut r) = core.running.lock() {
        r.insert(job.id, running);
    }
    let ctx = JobContext {
        id: job.id,
        kind: job.kind.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        tenant_id: job.tenant_id,
        group_key: job.group_key.clone(),
        run_at: job.run_at,
        worker_id: core.worker_id.clone(),
        cancel,
        jobs: core.jobs.clone(),
    };
    let handler = reg.handler.clone();
    let task_core = core.clone();
    let id = job.id;
    let handle = tokio::spawn(async move {
        let result = match serde_json::from_str(&job.payload) {
            Ok(payload) => std::panic::AssertUnwindSafe(handler.call(ctx, payload))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(JobError::retryable("handler panicked"))),
            Err(e) => Err(JobError::permanent(format!("payload is not JSON: {e}"))),
        };
        if take(&task_core, id).is_some() {
            report(&task_core, &job, now, result, "error");
        }
    });
    if let Ok(mut r) = core.running.lock()
        && let Some(entry) = r.get_mut(&id)
    {
        entry.abort = Some(handle.abort_handle());
    }
}

fn take(core: &Core, id: i64) -> Option<Running> {
    core.running.lock().ok()?.remove(&id)
}

/// Turn a handler's result into a stored outcome and hand it to the completer.
fn report(
    core: &Core,
    job: &ClaimedJob,
    started_at: i64,
    result: Result<JobOutcome, JobError>,
    failure: &'static str,
) {
    let now = core.jobs.now_ms();
    let outcome = match result {
        Ok(JobOutcome::Done) => Outcome::Done,
        Ok(JobOutcome::RetryAt(at)) => Outcome::Reschedule { at, payload: None },
        Ok(JobOutcome::Reschedule { at, payload }) => Outcome::Reschedule {
            at,
            payload: Some(payload.to_string()),
        },
        Err(e) => failed(core, &job.kind, job.attempts, job.max_attempts, e, now),
    };
    send(
        core,
        Finished {
            id: job.id,
            kind: job.kind.clone(),
            attempt: job.attempts,
            worker_id: Some(core.worker_id.to_string()),
            concurrency_key: job.concurrency_key.clone(),
            started_at,
            finished_at: now,
            outcome,
            failure,
        },
    );
}

/// Retry after the kind's backoff, or dead when out of attempts or permanent.
pub(crate) fn failed(
    core: &Core,
    kind: &str,
    attempt: i64,
    max_attempts: i64,
    e: JobError,
    now: i64,
) -> Outcome {
    match e {
        JobError::Retryable(error) if attempt < max_attempts => {
            let opts = core
                .handlers
                .get(kind)
                .map(|r| r.opts.clone())
                .unwrap_or_else(|| core.jobs.kind_options(kind));
            Outcome::Retry {
                at: now + opts.retry_delay_ms(attempt),
                error,
            }
        }
        JobError::Retryable(error) | JobError::Permanent(error) => Outcome::Dead { error },
    }
}

fn send(core: &Core, f: Finished) {
    // The handler is done: its slot is free (the result is still in flight until written).
    let was = core.busy.fetch_sub(1, Ordering::AcqRel);
    if was >= core.config.concurrency {
        // A dispatcher may be waiting for a slot.
        core.notify.notify_one();
    }
    if core.done_tx.send(Msg::Finished(Box::new(f))).is_err() {
        // The completer is gone (engine aborted): the lease will expire and another engine
        // retries the job; keep the slot count honest anyway.
        core.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Give back every job still running (drain timeout): abort it, requeue without an attempt.
pub(crate) fn release_all(core: &Arc<Core>) {
    let drained: Vec<(i64, Running)> = match core.running.lock() {
        Ok(mut r) => r.drain().collect(),
        Err(_) => return,
    };
    let now = core.jobs.now_ms();
    for (id, r) in drained {
        if let Some(a) = &r.abort {
            a.abort();
        }
        send(
            core,
            Finished {
                id,
                kind: r.kind,
                attempt: r.attempt,
                worker_id: Some(core.worker_id.to_string()),
                concurrency_key: r.concurrency_key,
                started_at: r.started_at,
                finished_at: now,
                outcome: Outcome::Release,
                failure: "released",
            },
        );
    }
}

/// Write results in batches: take one, then whatever else is already waiting.
pub(crate) async fn completer(core: Arc<Core>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let parallel = core.config.finish_writers.max(1);
    let writers = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut stop = false;
    while !stop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = Vec::new();
        match first {
            Msg::Finished(f) => batch.push(*f),
            Msg::Stop => stop = true,
        }
        // Linger up to 2 ms for more results while other claimed jobs are still running:
        // handlers finish one by one, and writing each trickle as its own transaction (a commit
        // and an fsync each) would cap the drain at a few thousand jobs a second.
        let max = core.config.finish_batch.max(1);
        let linger_until = tokio::time::Instant::now() + Duration::from_millis(2);
        while batch.len() < max && !stop {
            match rx.try_recv() {
                Ok(Msg::Finished(f)) => batch.push(*f),
                Ok(Msg::Stop) => stop = true,
                Err(_) => {
                    // No handler running: no more results are coming soon.
                    let running = core.busy.load(Ordering::Acquire);
                    if running == 0 || tokio::time::Instant::now() >= linger_until {
                        break;
                    }
                    match tokio::time::timeout_at(linger_until, rx.recv()).await {
                        Ok(Some(Msg::Finished(f))) => batch.push(*f),
                        Ok(Some(Msg::Stop)) | Ok(None) => stop = true,
                        Err(_) => break,
                    }
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Several batches may be written at once (separate transactions on separate
        // connections): one writer at a time caps the drain at one commit round trip.
        let Ok(permit) = writers.clone().acquire_owned().await else {
            return;
        };
        let core = core.clone();
        tokio::spawn(async move {
            write_batch(&core, &batch).await;
            core.in_flight.fetch_sub(batch.len(), Ordering::AcqRel);
            core.notify.notify_one();
            drop(permit);
        });
    }
    // Stop: wait for the writes still running.
    let _ = writers.acquire_many(parallel as u32).await;
}

async fn write_batch(core: &Core, batch: &[Finished]) {
    for attempt in 0..20 {
        let now = core.jobs.now_ms();
        match store::finish(
            core.jobs.db(),
            Some(&core.worker_id),
            batch,
            now,
            core.config.record_every_attempt,
        )
        .await
        {
            Ok(summary) => {
                crate::stats::record(&summary);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "jobs: writing results failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * (attempt + 1).min(8))).await;
            }
        }
    }
    // Gave up: the leases expire and other engines rerun these jobs (at-least-once).
    tracing::error!(
        n = batch.len(),
        "jobs: results lost; leases will expire and retry"
    );
}

/// Extend leases, pick up cancellations, enforce timeouts, update the worker row.
pub(crate) async fn heartbeat(core: Arc<Core>) {
    let clock = core.jobs.clock().clone();
    let every = ms(core.config.heartbeat).max(1);
    // Beats on a fixed grid from the start: a beat that falls due while the previous one was
    // still writing runs at once instead of sliding (a test moving a manual clock relies on
    // every interval it crosses producing a beat).
    let mut at = clock.now_ms() + every;
    loop {
        tokio::select! {
            _ = core.stop_bg.cancelled() => return,
            _ = clock.sleep_until(at) => {}
        }
        let now = clock.now_ms();
        at += every;
        if at < now - 10 * every {
            at = now + every; // fell far behind (a long pause): do not burst
        }
        enforce_timeouts(&core, now);
        let db = core.jobs.db();
        match store::heartbeat_leases(db, &core.worker_id, now + ms(core.config.lease), now).await {
            Ok(rows) => {
                let flags: std::collections::HashMap<i64, i64> = rows.into_iter().collect();
                if let Ok(r) = core.running.lock() {
                    for (id, job) in r.iter() {
                        match flags.get(id) {
                            Some(0) => {}
                            // Cancel requested, or no longer ours: stop cooperatively.
                            _ => job.cancel.cancel(),
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "jobs: heartbeat failed"),
        }
        let n = core.running.lock().map(|r| r.len()).unwrap_or(0);
        if let Err(e) = crate::worker::beat(db, &core.worker_id, "running", n, now).await {
            tracing::warn!(error = %e, "jobs: worker heartbeat failed");
        }
    }
}

fn enforce_timeouts(core: &Arc<Core>, now: i64) {
    let late: Vec<(i64, Running)> = match core.running.lock() {
        Ok(mut r) => {
            let ids: Vec<i64> = r
                .iter()
                .filter(|(_, j)| now >= j.deadline)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| r.remove(&id).map(|j| (id, j)))
                .collect()
        }
        Err(_) => return,
    };
    for (id, r) in late {
        r.cancel.cancel();
        if let Some(a) = &r.abort {
            a.abort();
        }
        let secs = (r.deadline - r.started_at) / 1000;
        let e = JobError::retryable(format!("timed out after {secs} s"));
        let outcome = failed(core, &r.kind, r.attempt, r.max_attempts, e, now);
        send(
            core,
            Finished {
                id,
                kind: r.kind,
                attempt: r.attempt,
                worker_id: Some(core.worker_id.to_string()),
                concurrency_key: r.concurrency_key,
                started_at: r.started_at,
                finished_at: now,
                outcome,
                failure: "timeout",
            },
        );
    }
}

/// Reap expired leases, fire due cron schedules, refresh the gauges.
pub(crate) async fn maintenance(core: Arc<Core>) {
    let clock = core.jobs.clock().clone();
    let mut next_gauges = 0;
    loop {
        let now = clock.now_ms();
        let mut failed = false;
        if let Err(e) = reap(&core, now).await {
            tracing::warn!(error = %e, "jobs: reaping expired leases failed");
            failed = true;
        }
        if let Err(e) = crate::cron::fire_due(&core.jobs, now).await {
            tracing::warn!(error = %e, "jobs: firing cron schedules failed");
            failed = true;
        }
        if now >= next_gauges {
            next_gauges = now + 15_000;
            if let Ok(s) = crate::stats::stats(&core.jobs).await {
                crate::stats::export(&s);
            }
        }
        // From the `now` this pass started with: a clock that moved meanwhile makes the next
        // pass start at once rather than one interval after the move.
        let mut at = now + ms(core.config.maintenance_interval);
        if let Ok(Some(fire)) = crate::cron::next_fire_at(core.jobs.db()).await {
            at = at.min(fire);
        }
        // A failed pass (a deadlock, a dropped connection) is tried again after a second of
        // real time, whatever the clock says: with a test clock that only moves when told, one
        // failure would otherwise leave the leases unreaped until the next move.
        tokio::select! {
            _ = core.stop_bg.cancelled() => return,
            _ = clock.sleep_until(at) => {}
            _ = tokio::time::sleep(FAILED_PASS_RETRY), if failed => {}
        }
    }
}

/// PostgreSQL: keep the job table's statistics fresh for the claim's plan
/// ([`store::refresh_statistics`]), looking once a second (real time: a catalog read).
pub(crate) async fn statistics(core: Arc<Core>) {
    loop {
        match store::refresh_statistics(core.jobs.db()).await {
            Ok(true) => tracing::debug!("jobs: job table statistics refreshed"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "jobs: refreshing the job table's statistics failed")
            }
        }
        tokio::select! {
            _ = core.stop_bg.cancelled() => return,
            _ = tokio::time::sleep(STATISTICS_EVERY) => {}
        }
    }
}

/// How often [`statistics`] looks.
const STATISTICS_EVERY: Duration = Duration::from_secs(1);

/// Real time before a maintenance pass that failed is tried again.
const FAILED_PASS_RETRY: Duration = Duration::from_secs(1);

async fn reap(core: &Core, now: i64) -> scrm_db::DbResult<()> {
    let expired = store::expired_leases(core.jobs.db(), now, 500).await?;
    if expired.is_empty() {
        return Ok(());
    }
    let batch: Vec<Finished> = expired
        .into_iter()
        .map(|x| {
            let e = JobError::retryable("lease expired");
            Finished {
                outcome: failed(core, &x.kind, x.attempts, x.max_attempts, e, now),
                id: x.id,
                kind: x.kind,
                attempt: x.attempts,
                worker_id: x.worker_id,
                concurrency_key: x.concurrency_key,
                started_at: x.started_at.unwrap_or(now),
                finished_at: now,
                failure: "lease_expired",
            }
        })
        .collect();
    let s = store::finish(core.jobs.db(), None, &batch, now, false).await?;
    if s.applied > 0 {
        tracing::warn!(n = s.applied, "jobs: took back jobs whose lease expired");
        crate::stats::record(&s);
        core.jobs.wake().await;
    }
    Ok(())
}
