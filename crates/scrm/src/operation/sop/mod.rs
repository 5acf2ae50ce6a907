//! SOPs (seed 000): templates of timed steps, run per customer (or group chat) from a trigger.
//!
//! - [`model`]: the template body and `actionContent` checked per step type.
//! - [`store`]: templates, steps, executions and the step log; starting executions in bulk
//!   (multi-row inserts, one job per step enqueued in the same transaction).
//! - [`routes`]: the seed's routes; [`runner`]: the `sop.step` job and the step actions;
//!   [`triggers`]: add friend / tag added / joined group from [`crate::events`].
//!
//! Step times are measured from the trigger (`due = trigger + delay`); each step is a job in
//! the execution's group, so pausing an execution pauses its remaining steps and resuming with
//! shift moves them later by the pause. A template runs at most once at a time per target.

pub mod model;
pub mod routes;
pub mod runner;
pub mod store;
pub mod triggers;

/// Execution statuses (seed 000 plus cancelled).
pub mod status {
    pub const RUNNING: i64 = 0;
    pub const DONE: i64 = 1;
    pub const PAUSED: i64 = 2;
    pub const FAILED: i64 = 3;
    pub const CANCELLED: i64 = 4;
}

/// Step log statuses.
pub mod step_status {
    pub const PENDING: i64 = 0;
    pub const CALLING: i64 = 1;
    pub const DONE: i64 = 2;
    pub const FAILED: i64 = 3;
    pub const CANCELLED: i64 = 4;
    pub const SKIPPED: i64 = 5;
}
