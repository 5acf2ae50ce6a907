//! The customers module's job kinds: WeCom pushes of tag changes and transfers.

use std::time::Duration;

use scrm_jobs::KindOptions;
use scrm_jobs::engine::EngineBuilder;

use super::{push, transfer_jobs};
use crate::state::AppState;

/// Register every customers job kind.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    // WeCom calls: quick first retries (a busy WeCom recovers in seconds), then the seed's.
    let wecom = KindOptions::default()
        .timeout(Duration::from_secs(120))
        .backoff(vec![
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::from_secs(900),
        ])
        .max_attempts(6);
    let s = state.clone();
    let builder = builder.register(push::PUSH, wecom.clone(), move |ctx, p| {
        push::run(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(transfer_jobs::TRANSFER, wecom.clone(), move |ctx, p| {
        transfer_jobs::run_transfer(s.clone(), ctx, p)
    });
    let s = state.clone();
    builder.register(transfer_jobs::POLL, wecom, move |ctx, p| {
        transfer_jobs::run_poll(s.clone(), ctx, p)
    })
}
