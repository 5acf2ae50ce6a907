//! Personal WeChat accounts through device gateways (seed 002's device side; seed 004's
//! "personal WeChat SDK" accounts beside WeCom members).
//!
//! - [`provider`]: sender accounts of both providers and what each can do; a task asking an
//!   account for something its provider cannot do is refused when it is created.
//! - [`gateway`]: gateways, their accounts (ACTIVE / OFFLINE / EXPIRED) and friends, and the
//!   WebSocket session a gateway keeps with scrm (`docs/gateway-protocol.md`).
//! - [`commands`]: commands to devices as durable jobs, sent again until acknowledged, run once.
//! - [`events`]: events from devices, recorded once, and what completed commands lead to.
//! - [`group_send`]: device accounts as senders of seed 004's group sends, beside WeCom members.
//! - [`health`]: the daily account health score of both kinds of sender account.
//! - [`tasks`]: group push, auto group create (`POST /v1/workbench/auto-group`), group welcome.
//! - [`moments`]: friends' moments the accounts saw (events and moments collection), listed.
//! - [`ai`]: AI auto-reply through an OpenAI-compatible endpoint.
//! - [`jobs`]: the job kinds and schedules (auto-like, moments collection).

pub mod ai;
pub mod commands;
pub mod events;
pub mod gateway;
pub mod group_send;
pub mod health;
pub mod jobs;
pub mod moments;
pub mod provider;
pub mod tasks;

pub use commands::Hub;

use crate::http::routes::Routes;
use crate::state::AppState;

/// Every device route.
pub fn routes(state: &AppState) -> Routes {
    gateway::routes(state)
        .merge(tasks::routes(state))
        .merge(ai::routes(state))
        .merge(health::routes(state))
        .merge(moments::routes(state))
}
