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

/// Working hours of a member (traffic pools, channel codes): `days` 1 = Monday … 7 = Sunday
/// (empty: every day) from `start` to `end` (HH:MM, Asia/Shanghai; none: all day).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkHours {
    pub days: Vec<i64>,
    pub start: Option<String>,
    pub end: Option<String>,
}

impl WorkHours {
    /// Check `workDays`, `workStart` and `workEnd` of the member whose fields `f` names; the
    /// days sorted and deduplicated.
    pub(crate) fn check(
        days: &[i64],
        start: Option<&str>,
        end: Option<&str>,
        f: impl Fn(&str) -> String,
    ) -> Result<WorkHours, crate::http::ApiError> {
        use crate::http::ApiError;
        if let Some(d) = days.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(ApiError::field(
                f("workDays"),
                format!("{d}: days are 1 (Monday) to 7 (Sunday)"),
            ));
        }
        let (start, end) = match (start, end) {
            (None, None) => (None, None),
            (Some(s), Some(e)) => {
                let Some(sm) = hhmm(s).filter(|v| *v < 24 * 60) else {
                    return Err(ApiError::field(f("workStart"), "HH:MM"));
                };
                let Some(em) = hhmm(e) else {
                    return Err(ApiError::field(f("workEnd"), "HH:MM (24:00 for midnight)"));
                };
                if em <= sm {
                    return Err(ApiError::field(f("workEnd"), "after workStart"));
                }
                (Some(s.to_string()), Some(e.to_string()))
            }
            (None, Some(_)) => {
                return Err(ApiError::field(f("workStart"), "is required with workEnd"));
            }
            (Some(_), None) => {
                return Err(ApiError::field(f("workEnd"), "is required with workStart"));
            }
        };
        let mut days = days.to_vec();
        days.sort_unstable();
        days.dedup();
        Ok(WorkHours { days, start, end })
    }

    /// Whether any hours are set (none: always working).
    pub fn is_set(&self) -> bool {
        !self.days.is_empty() || self.start.is_some()
    }

    /// When the member next works at or after `at` (`at` itself when working then): the
    /// workflow window step's rule.
    pub fn works_from(&self, at: i64) -> i64 {
        if !self.is_set() {
            return at;
        }
        let Ok(base) =
            serde_json::from_value::<workflows::model::Step>(serde_json::json!({"type": "window"}))
        else {
            return at;
        };
        let step = workflows::model::Step {
            days: self.days.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
            ..base
        };
        workflows::model::window_opens_at(&step, at)
    }

    /// Whether the member works at `at`.
    pub fn works_at(&self, at: i64) -> bool {
        self.works_from(at) <= at
    }
}

/// `HH:MM` in minutes of the day (`24:00` is the end of the day).
fn hhmm(s: &str) -> Option<u32> {
    use chrono::Timelike;
    if s == "24:00" {
        return Some(24 * 60);
    }
    let t = chrono::NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}
