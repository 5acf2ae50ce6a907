//! Customers: seed 001's customer service and the customer side of seed 004.
//!
//! - [`model`]: the stored row, API views, and request bodies checked at the edge.
//! - [`store`]: the customer's SQL, its gram index and version stamp; [`search`]: list and search
//!   shaped for 1,000,000 customers (perf/SEARCH.md); [`cache`]: the detail cache.
//! - [`tags`] (+ `tag_routes`): tag groups, tags, customer tags with exact per-tag counts.
//! - [`groups`]: customer group chats and members ([`group_transfer`]: their 在职/离职继承); [`staff`]: staff and departments (filled by
//!   sync); [`followups`]: follow-up records and stages; [`transfer`]: assignment, transfer and
//!   inheritance records; [`risk`]: blacklist, deletion records, churn rules and warnings;
//!   [`stats`]: daily statistics kept incrementally; [`timeline`]: the portrait's history;
//!   [`export`], [`import`]: CSV/XLSX export (large lists as a job) and import.
//! - [`push`]: tag changes pushed to WeCom as jobs; [`transfer_jobs`]: 在职/离职继承 through WeCom
//!   with transfer_result polling; [`schedules`]: churn scans and follow-up reminders as cron
//!   schedules; [`jobs`] registers their kinds.
//!
//! Every query is scoped by the caller's tenant; every write records an audit row, its domain
//! events ([`crate::events`]) and its timeline entry in the same transaction.

pub mod bench;
pub mod cache;
pub mod export;
pub mod followups;
pub mod group_transfer;
pub mod groups;
pub mod import;
pub mod jobs;
pub mod model;
pub mod push;
pub mod risk;
pub mod routes;
pub mod schedules;
pub mod search;
pub mod staff;
pub mod stats;
pub mod store;
pub(crate) mod tag_routes;
pub mod tags;
pub mod timeline;
pub mod transfer;
pub mod transfer_jobs;

use crate::http::ApiError;
use crate::http::routes::Routes;
use crate::state::AppState;

/// Every customer route.
pub fn routes(state: &AppState) -> Routes {
    routes::routes(state)
        .merge(tag_routes::routes(state))
        .merge(groups::routes(state))
        .merge(group_transfer::routes(state))
        .merge(staff::routes(state))
        .merge(followups::routes(state))
        .merge(transfer::routes(state))
        .merge(risk::routes(state))
        .merge(stats::routes(state))
        .merge(export::routes(state))
        .merge(import::routes(state))
        .merge(push::routes(state))
}

/// The 404 for a customer that is not there or not the caller's tenant's.
pub(crate) fn customer_not_found() -> ApiError {
    ApiError::NotFound("customer")
}

/// A required, non-empty list of positive ids, at most `max`, deduplicated in order.
pub(crate) fn check_ids(
    field: &str,
    ids: Option<Vec<i64>>,
    max: usize,
) -> Result<Vec<i64>, ApiError> {
    let ids = ids.ok_or_else(|| ApiError::field(field, "is required"))?;
    if ids.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if ids.len() > max {
        return Err(ApiError::field(field, format!("at most {max} ids")));
    }
    if ids.iter().any(|i| *i <= 0) {
        return Err(ApiError::field(field, "ids are positive integers"));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(ids.into_iter().filter(|i| seen.insert(*i)).collect())
}
