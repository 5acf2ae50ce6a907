//! The integration's route table (seed 003's paths, plus callbacks, events and repair).

use axum::http::Method;

use super::{callbacks, config, sync, test};
use crate::auth::permissions as perm;
use crate::http::routes::{Access, Routes};
use crate::state::AppState;

/// Every integration route.
pub fn routes(state: &AppState) -> Routes {
    use Access::Permission as P;
    use Method as M;
    Routes::new(state, "integration")
        .route(M::GET, "/api/wework/config", P(perm::WEWORK_CONFIG_VIEW), "The tenant's WeCom configuration, secrets masked", config::get)
        .route(M::POST, "/api/wework/config", P(perm::WEWORK_CONFIG_MANAGE), "Create the WeCom configuration (corpId, corpSecret, agentId, contactSecret, contactsSecret, token, encodingAesKey, apiBase, enabled)", config::create)
        .route(M::PUT, "/api/wework/config/{id}", P(perm::WEWORK_CONFIG_MANAGE), "Change the WeCom configuration", config::update)
        .route(M::DELETE, "/api/wework/config/{id}", P(perm::WEWORK_CONFIG_MANAGE), "Delete the WeCom configuration", config::delete)
        .route(M::POST, "/api/wework/config/test", P(perm::WEWORK_CONFIG_TEST), "Test the configuration against WeCom: per capability, errcode and advice", test::handler)
        .route(M::POST, "/api/wework/sync", P(perm::WEWORK_SYNC_RUN), "Start a sync (syncType department|user|tag|customer|groupchat|full, force)", sync::routes::sync)
        .route(M::POST, "/api/wework/sync/departments", P(perm::WEWORK_SYNC_RUN), "Sync departments", sync::routes::departments)
        .route(M::POST, "/api/wework/sync/users", P(perm::WEWORK_SYNC_RUN), "Sync members", sync::routes::users)
        .route(M::POST, "/api/wework/sync/customers", P(perm::WEWORK_SYNC_RUN), "Sync customers with their follows and tags", sync::routes::customers)
        .route(M::POST, "/api/wework/sync/repair", P(perm::WEWORK_SYNC_RUN), "Re-sync one customer, staff member, tag set or group chat by WeCom id", sync::routes::repair_one)
        .route(M::GET, "/api/wework/sync/logs", P(perm::WEWORK_SYNC_VIEW), "Sync logs (syncType, status, page, pageSize)", sync::routes::logs)
        .route(M::GET, "/api/wework/sync/status", P(perm::WEWORK_SYNC_VIEW), "Per type: last run, running, progress; WeCom call metrics", sync::routes::status)
        .route(M::GET, "/api/wework/callback/events", P(perm::WEWORK_CALLBACK_VIEW), "Received callbacks with their processing state", callbacks::events)
        .route(M::POST, "/api/wework/callback/events/{id}/replay", P(perm::WEWORK_CALLBACK_REPLAY), "Process a received callback again", callbacks::replay)
        // WeCom calls these; they carry their own signature (msg_signature over token, timestamp, nonce and the ciphertext).
        .route(M::GET, "/api/wework/callback/{configId}", Access::Public, "WeCom URL verification (answers the decrypted echostr)", callbacks::verify)
        .route(M::POST, "/api/wework/callback/{configId}", Access::Public, "WeCom event callback (signed, encrypted)", callbacks::receive)
}
