//! scrm, a social CRM for WeCom (企业微信).
//!
//! A tour of the crate:
//! - [`cli`]: the `scrm` subcommands; [`startup`]: building and serving the [`startup::Application`].
//! - [`config`]: defaults, `.env` and environment (the seeds' names too), validated at startup.
//! - [`http`]: the router, its layers, the response envelope and error model, health, metrics,
//!   the route table with one access rule per route, and the OpenAPI docs at `/docs`.
//! - [`auth`]: users, passwords, tokens, roles and permissions, the guard on every route.
//! - [`system`]: users, API tokens and the audit log over the API; [`audit`]: recording changes.
//! - [`jobs`]: the job engine's handlers, workers and the `/api/jobs` monitoring and control API.
//! - [`devices`]: personal WeChat accounts through device gateways, group pushes, AI replies.
//! - [`console`]: the web console (server-rendered pages with htmx) under `/console`.
//! - [`state`]: what handlers share, and the clock.
//!
//! The database layer is the `scrm-db` crate; the job engine `scrm-jobs`; the WeCom client
//! `scrm-wecom`; the WeCom simulator `scrm-wecom-sim`.

pub mod audit;
pub mod auth;
pub mod automation;
pub mod chaos;
pub mod cli;
pub mod config;
pub mod console;
pub mod customers;
pub mod devices;
pub mod events;
pub mod http;
pub mod integration;
pub mod jobs;
pub mod operation;
pub mod outbound;
pub mod startup;
pub mod state;
pub mod system;
pub mod telemetry;
