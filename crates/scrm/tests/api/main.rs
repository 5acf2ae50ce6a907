//! scrm's API tests: one binary, a fresh database per test, on every backend SCRM_TEST_DB selects.

mod audit_log;
mod auth;
mod automation;
mod automation_traffic;
mod automation_workflows;
mod console;
mod console_browser;
mod customers;
mod customers_search;
mod customers_wecom;
mod devices_group_send;
mod errors;
mod events_relay;
mod fuzz;
mod gateway;
mod health;
mod helpers;
mod integration;
mod integration_sync;
mod jobs;
mod jobs_alerts;
mod operation;
mod outbound;
mod permissions;
mod system;
mod tenants;
