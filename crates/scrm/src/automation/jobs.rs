//! The automation job kinds and their schedules.

use std::time::Duration;

use scrm_jobs::engine::EngineBuilder;
use scrm_jobs::{KindOptions, Schedule};

use super::{acquire, channel_codes, content, group_welcome};
use crate::state::AppState;

/// Job kind of the nightly channel-code reset.
pub const CHANNEL_CODE_DAILY: &str = "automation.channel_code.daily";
/// Job kind of the channel codes' working-hours check.
pub const CHANNEL_CODE_HOURS: &str = "automation.channel_code.hours";

/// Register every automation job kind.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    // WeCom calls: quick first retries, then the seed's schedule.
    let wecom = KindOptions::default()
        .timeout(Duration::from_secs(120))
        .backoff(vec![
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::from_secs(900),
        ])
        .max_attempts(6);
    let (s1, s2, s3, s4, s5, s6) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
    );
    let builder = super::workflows::register(builder, state);
    group_welcome::subscribe(state);
    builder
        .register(group_welcome::SEND, wecom.clone(), move |ctx, p| {
            group_welcome::run_send(s4.clone(), ctx, p)
        })
        .register(
            content::COLLECT,
            KindOptions::default().timeout(Duration::from_secs(600)),
            move |ctx, p| content::run_collect(s5.clone(), ctx, p),
        )
        .register(channel_codes::PUSH, wecom.clone(), move |ctx, p| {
            channel_codes::run_push(s1.clone(), ctx, p)
        })
        .register(acquire::APPLY, wecom, move |ctx, p| {
            acquire::run_apply(s2.clone(), ctx, p)
        })
        .register(CHANNEL_CODE_DAILY, KindOptions::default(), move |ctx, p| {
            channel_codes::run_daily(s3.clone(), ctx, p)
        })
        .register(CHANNEL_CODE_HOURS, KindOptions::default(), move |ctx, p| {
            channel_codes::run_hours(s6.clone(), ctx, p)
        })
}

/// Startup: the built-in schedules (created once; switching them off through the API sticks).
pub async fn on_startup(state: &AppState) -> anyhow::Result<()> {
    // Daily limits count per Asia/Shanghai day: at midnight every code returns to its staff.
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "automation.channel_codes.daily_reset",
            "0 0 * * *",
            CHANNEL_CODE_DAILY,
        ))
        .await?;
    // Members' working hours: every minute, a code follows the hours of its members.
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "automation.channel_codes.working_hours",
            "* * * * *",
            CHANNEL_CODE_HOURS,
        ))
        .await?;
    content::on_startup(state).await?;
    Ok(())
}
