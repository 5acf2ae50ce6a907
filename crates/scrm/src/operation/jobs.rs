//! The operation module's job kinds, registered with the engine in one place.

use std::time::Duration;

use scrm_jobs::KindOptions;
use scrm_jobs::engine::EngineBuilder;

use crate::operation::mass::{actions, engine, poll};
use crate::state::AppState;

/// Register every operation job kind.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    // WeCom calls: quick first retries (a busy WeCom recovers in seconds), then the seed's
    // (SCRM_WECOM_RETRY_SECS, default 5, 60, 300, 900 s).
    let wecom = KindOptions::default()
        .timeout(Duration::from_secs(300))
        .backoff(state.config.wecom_retry.clone())
        .max_attempts(8);
    let s = state.clone();
    let builder = builder.register(engine::START, KindOptions::default(), move |ctx, p| {
        engine::run_start(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(engine::BATCH, wecom.clone(), move |ctx, p| {
        engine::run_batch(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(poll::POLL, wecom.clone(), move |ctx, p| {
        poll::run_poll(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(poll::CANCEL, wecom.clone(), move |ctx, p| {
        poll::run_cancel(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(actions::ACTION, wecom.clone(), move |ctx, p| {
        actions::run_action(s.clone(), ctx, p)
    });
    crate::operation::sop::runner::register(builder, state, wecom)
}
