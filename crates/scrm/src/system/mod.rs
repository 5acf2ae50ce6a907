//! System administration over the API: users and roles, API tokens, the audit log, and the
//! permission catalogue. Everything here is scoped to the caller's tenant.

pub(crate) mod tokens;
pub(crate) mod users;

use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::Role;
use crate::auth::permissions::{self as perm, ALL};
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::http::routes::{Access, Routes};
use crate::state::AppState;

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "system")
        .merge(users::routes(state))
        .merge(tokens::routes(state))
        .route(
            Method::GET,
            "/api/v1/system/audit-logs",
            Access::Permission(perm::AUDIT_VIEW),
            "The audit log: who changed what, newest first",
            audit_logs,
        )
        .route(
            Method::GET,
            "/api/v1/system/permissions",
            Access::Authenticated,
            "Every permission and the roles that hold it",
            permissions,
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuditQuery {
    page: Option<i64>,
    size: Option<i64>,
    action: Option<String>,
    user_id: Option<i64>,
    target_type: Option<String>,
}

async fn audit_logs(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Reply<ListPage<audit::AuditEntry>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let filter = audit::Filter {
        action: q.action,
        user_id: q.user_id,
        target_type: q.target_type,
    };
    let (list, total) = audit::list(
        &state.db,
        user.tenant_id,
        &filter,
        paging.offset(),
        paging.size,
    )
    .await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PermissionView {
    permission: &'static str,
    roles: Vec<Role>,
}

async fn permissions() -> ApiResult<Reply<Vec<PermissionView>>> {
    let roles = [Role::Admin, Role::Operator, Role::Viewer];
    Ok(ok(ALL
        .iter()
        .map(|p| PermissionView {
            permission: p,
            roles: roles.iter().copied().filter(|r| r.allows(p)).collect(),
        })
        .collect()))
}
