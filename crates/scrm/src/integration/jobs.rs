//! The integration's job kinds: sync runs, callback processing, scheduled reconciliation.

use std::time::Duration;

use scrm_jobs::KindOptions;
use scrm_jobs::engine::EngineBuilder;

use super::{callbacks, sync};
use crate::state::AppState;

/// The job kind of the reconciliation schedules.
pub const RECONCILE_KIND: &str = "wework.reconcile";

/// Register the integration's handlers.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    // A full sync of a large corp takes minutes (WeCom's rate limits); a retry starts over from
    // a clean slate, since nothing was written.
    let sync_opts = KindOptions::default()
        .timeout(Duration::from_secs(3 * 3600))
        .backoff(vec![
            Duration::from_secs(30),
            Duration::from_secs(120),
            Duration::from_secs(600),
        ])
        .max_attempts(3);
    // Callbacks are small and should land within a second; WeCom hiccups retry quickly.
    let callback_opts = KindOptions::default()
        .timeout(Duration::from_secs(120))
        .backoff(vec![
            Duration::from_secs(2),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(300),
        ])
        .max_attempts(5);
    builder
        .register(sync::JOB_KIND, sync_opts, move |ctx, p| {
            sync::handle(s1.clone(), ctx, p)
        })
        .register(callbacks::JOB_KIND, callback_opts, move |ctx, p| {
            callbacks::process::handle(s2.clone(), ctx, p)
        })
        .register(
            RECONCILE_KIND,
            KindOptions::default().max_attempts(2),
            move |_ctx, p| sync::reconcile(s3.clone(), p),
        )
}
