//! Automation (seed 002): what runs without anyone clicking.
//!
//! - [`channel_codes`]: channel codes (渠道活码) — WeCom 「联系我」 contact ways with a `state`,
//!   their staff, backup staff and daily add limits, tags, owner and welcome message, kept in
//!   WeCom by the `automation.channel_code.push` job; statistics per code.
//! - [`welcome`]: welcome messages (欢迎语) for members and codes, with variables and materials,
//!   sent with send_welcome_msg inside WeCom's 20-second WelcomeCode window.
//! - [`group_welcome`]: group welcome messages (入群欢迎语) — a customer joining a group chat is
//!   welcomed in it, through the events relay.
//! - [`acquire`]: what happens when a customer adds a member (the add_external_contact callback):
//!   the welcome, and for a channel code its tags, owner and statistics.
//! - [`traffic`]: traffic distribution (流量分发) — pools of sender accounts new customers are
//!   assigned across (round robin, weight, least-loaded; daily caps, working hours).
//! - [`workflows`]: automated workflows — a trigger and ordered steps (delays, conditions, time
//!   windows, actions), versioned, run per customer on the job engine.
//! - [`content`]: content collection (内容采集) — RSS/Atom feeds and pages into the material
//!   library on a schedule.
//! - [`tasks`]: seed 002's cron tasks (the job engine's schedules), listed and switched.
//! - [`jobs`]: the job kinds and schedules.

pub mod acquire;
pub mod channel_codes;
pub mod content;
pub mod group_welcome;
pub mod jobs;
pub mod stored;
pub mod tasks;
pub mod traffic;
pub mod welcome;
pub mod workflows;

use chrono::{FixedOffset, TimeZone};

use crate::http::routes::Routes;
use crate::state::AppState;

/// Every automation route.
pub fn routes(state: &AppState) -> Routes {
    channel_codes::routes(state)
        .merge(welcome::routes(state))
        .merge(workflows::routes::routes(state))
        .merge(traffic::routes(state))
        .merge(tasks::routes(state))
        .merge(group_welcome::routes(state))
        .merge(content::routes(state))
}

/// Asia/Shanghai (UTC+8 all year, no daylight saving): the seeds' time zone for days.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The Asia/Shanghai day (`YYYY-MM-DD`) of an epoch-millisecond time.
pub fn day_of(ms: i64) -> String {
    shanghai()
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Parse a JSON text column, falling back to the type's default.
pub(crate) fn json_col<T: serde::de::DeserializeOwned + Default>(s: Option<&str>) -> T {
    s.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}
