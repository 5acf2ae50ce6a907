//! The customers module's job kinds: WeCom pushes of tag changes and transfers, export files,
//! churn scans and follow-up reminders (cron schedules, see [`super::schedules`]).

use std::time::Duration;

use scrm_jobs::engine::EngineBuilder;
use scrm_jobs::{KindOptions, Schedule};

use super::{export, group_transfer, push, schedules, transfer_jobs};
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
    let builder = builder.register(group_transfer::JOB, wecom.clone(), move |ctx, p| {
        group_transfer::run(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(transfer_jobs::POLL, wecom, move |ctx, p| {
        transfer_jobs::run_poll(s.clone(), ctx, p)
    });
    // A million-row export takes minutes on a busy database.
    let files = KindOptions::default()
        .timeout(Duration::from_secs(1800))
        .max_attempts(3);
    let s = state.clone();
    let builder = builder.register(export::EXPORT_JOB, files, move |ctx, p| {
        export::run_export(s.clone(), ctx, p)
    });
    let s = state.clone();
    let builder = builder.register(
        export::CLEANUP_JOB,
        KindOptions::default(),
        move |ctx, p| export::run_cleanup(s.clone(), ctx, p),
    );
    let s = state.clone();
    let builder = builder.register(
        schedules::CHURN_SCAN,
        KindOptions::default().timeout(Duration::from_secs(600)),
        move |ctx, p| schedules::run_churn_scan(s.clone(), ctx, p),
    );
    let s = state.clone();
    builder.register(
        schedules::FOLLOWUP_REMIND,
        KindOptions::default().timeout(Duration::from_secs(300)),
        move |ctx, p| schedules::run_followup_remind(s.clone(), ctx, p),
    )
}

/// Startup: the built-in schedules (created once; switching them off through the API sticks).
pub async fn on_startup(state: &AppState) -> anyhow::Result<()> {
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "customers.exports.cleanup",
            "17 * * * *",
            export::CLEANUP_JOB,
        ))
        .await?;
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "customers.churn.scan",
            "*/30 * * * *",
            schedules::CHURN_SCAN,
        ))
        .await?;
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "customers.followups.remind",
            "* * * * *",
            schedules::FOLLOWUP_REMIND,
        ))
        .await?;
    Ok(())
}
