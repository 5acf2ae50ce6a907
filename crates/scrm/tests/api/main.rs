//! scrm's API tests: one binary, a fresh database per test, on every backend SCRM_TEST_DB selects.

mod auth;
mod errors;
mod health;
mod helpers;
mod jobs;
mod permissions;
mod system;
mod tenants;
