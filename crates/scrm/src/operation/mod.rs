//! Operations (seed 000 and seed 004): what operations staff use every day.
//!
//! - [`materials`]: the material library; files go to WeCom on first use, media ids renewed.
//! - [`content`]: message content (seed 004's `{type,data}`), checked and turned into WeCom parts.
//! - [`mass`]: the one send engine — targets, batches of ≤ 10,000 per sender, exactly-once sends
//!   with intent records and reconciliation, polling results, reminders, cancel; tag and assign
//!   tasks.
//! - [`group_send`]: seed 004's routes (and seed 002's immediate mass send); [`mass_task`]: seed
//!   000's; [`tasks`]: what they share.
//! - [`sop`]: SOP templates, executions, steps as delayed jobs, triggers from domain events.
//! - [`wecom`]: the tenant's WeCom client (one place to swap for the integration module's).
//! - [`jobs`]: the job kinds; [`bench`]: `scrm bench mass-send`.

pub mod bench;
pub mod content;
pub mod group_send;
pub mod jobs;
pub mod mass;
pub mod mass_task;
pub mod materials;
pub mod settings;
pub mod sop;
pub mod tasks;
pub mod wecom;

use crate::http::routes::Routes;
use crate::state::AppState;

/// Every operation route.
pub fn routes(state: &AppState) -> Routes {
    materials::routes(state)
        .merge(group_send::routes(state))
        .merge(mass_task::routes(state))
        .merge(sop::routes::routes(state))
        .merge(settings::routes(state))
}
