//! The web console under `/console`: server-rendered pages (askama templates in
//! `crates/scrm/templates/console/`) made lively with htmx, every asset embedded in the binary.
//!
//! - [`auth`]: the login page, the session cookie, the page guard and the language switch.
//! - [`home`]: the workbench (工作台) with today's figures and a 30-day growth chart in SVG.
//! - [`customers`]: the customer list with filters and bulk actions, and the customer page.
//! - [`group_send`]: seed 004's group-send assistant (群发助手): create, list, task progress.
//! - [`ops`]: jobs (seed 002's monitor, dead letters with replay) and the WeCom integration.
//! - [`more`]: tags, SOP templates and executions (pause / resume / cancel), users.
//!
//! Pages call the domain modules' Rust functions — store and query functions, or the API's
//! handler functions where the API owns the validation — never the HTTP API itself, so a page
//! shows exactly what the API would answer. Every page is registered in the same route table as
//! the API ([`Routes::pages`]) with one [`Access`](crate::http::routes::Access) each, checked by
//! the same [`crate::auth::check`]; buttons a role may not use are not shown, and refused if
//! posted anyway.
//!
//! Sessions: the login token lives in an `HttpOnly; SameSite=Strict` cookie, so scripts cannot
//! read it and no other site can make a browser send it (the console's answer to CSRF).

pub mod assets;
pub mod auth;
pub mod customers;
pub mod group_send;
pub mod home;
pub mod more;
pub mod ops;

use askama::Template;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::Reply;
use crate::http::error::{ApiError, ApiResult, Enveloped};
use crate::http::routes::{Access, Routes};
use crate::state::AppState;

pub use auth::Lang;

/// Every console route: public login and assets, then the pages.
pub fn routes(state: &AppState) -> Routes {
    use Access::Permission as P;
    use Method as M;
    Routes::pages(state, "console")
        .route(M::GET, "/", Access::Public, "The console", root)
        .route(
            M::GET,
            "/console/login",
            Access::Public,
            "Console login page",
            auth::login_page,
        )
        .route(
            M::POST,
            "/console/login",
            Access::Public,
            "Console login: sets the session cookie",
            auth::login,
        )
        .route(
            M::GET,
            "/console/lang",
            Access::Public,
            "Switch the console's language (cookie)",
            auth::switch_lang,
        )
        .route(
            M::GET,
            "/console/assets/{file}",
            Access::Public,
            "Console stylesheet and script",
            assets::serve,
        )
        .route(
            M::POST,
            "/console/logout",
            Access::Authenticated,
            "Console logout",
            auth::logout,
        )
        .route(
            M::GET,
            "/console",
            Access::Authenticated,
            "Workbench: today's figures and 30-day growth",
            home::page,
        )
        .route(
            M::GET,
            "/console/customers",
            P(perm::CUSTOMER_VIEW),
            "Customers with filters",
            customers::list,
        )
        .route(
            M::POST,
            "/console/customers/tags",
            P(perm::CUSTOMER_TAG),
            "Tag or untag the selected customers",
            customers::bulk_tags,
        )
        .route(
            M::POST,
            "/console/customers/blacklist",
            P(perm::CUSTOMER_BLACKLIST),
            "Blacklist the selected customers",
            customers::bulk_blacklist,
        )
        .route(
            M::GET,
            "/console/customers/{id}",
            P(perm::CUSTOMER_VIEW),
            "A customer: profile, tags, groups, follow-ups, timeline",
            customers::detail,
        )
        .route(
            M::GET,
            "/console/group-send",
            P(perm::GROUP_SEND_TASKS_VIEW),
            "Group-send tasks",
            group_send::list,
        )
        .route(
            M::GET,
            "/console/group-send/new",
            P(perm::GROUP_SEND_CREATE),
            "New group-send task form",
            group_send::new_form,
        )
        .route(
            M::GET,
            "/console/group-send/count",
            P(perm::WORKBENCH_CUSTOMER_VIEW),
            "Live count of a target's customers",
            group_send::count,
        )
        .route(
            M::POST,
            "/console/group-send",
            P(perm::GROUP_SEND_CREATE),
            "Create a group-send task",
            group_send::create,
        )
        .route(
            M::GET,
            "/console/group-send/{id}",
            P(perm::GROUP_SEND_TASK_VIEW),
            "A task's progress and per-customer results",
            group_send::detail,
        )
        .route(
            M::GET,
            "/console/jobs",
            P(perm::JOBS_VIEW),
            "Job monitor and dead letters",
            ops::jobs,
        )
        .route(
            M::POST,
            "/console/jobs/{id}/replay",
            P(perm::JOBS_MANAGE),
            "Replay a dead job",
            ops::replay,
        )
        .route(
            M::GET,
            "/console/integration",
            P(perm::WEWORK_SYNC_VIEW),
            "WeCom configuration and sync status",
            ops::integration,
        )
        .route(
            M::POST,
            "/console/integration/test",
            P(perm::WEWORK_CONFIG_TEST),
            "Test the WeCom connection",
            ops::test_connection,
        )
        .route(
            M::POST,
            "/console/integration/sync",
            P(perm::WEWORK_SYNC_RUN),
            "Start a sync",
            ops::start_sync,
        )
        .route(
            M::GET,
            "/console/tags",
            P(perm::TAG_VIEW),
            "Tag groups and tags with counts",
            more::tags,
        )
        .route(
            M::GET,
            "/console/sop",
            P(perm::SOP_TEMPLATE_VIEW),
            "SOP templates and executions",
            more::sop_page,
        )
        .route(
            M::POST,
            "/console/sop/control",
            P(perm::SOP_EXECUTION_CONTROL),
            "Pause, resume or cancel SOP executions",
            more::sop_control,
        )
        .route(
            M::GET,
            "/console/users",
            P(perm::USER_VIEW),
            "The tenant's users",
            more::users_page,
        )
}

async fn root() -> Redirect {
    Redirect::to("/console")
}

/// The page frame every page shares: language, the signed-in user, navigation.
pub struct Chrome {
    pub l: Lang,
    pub user: CurrentUser,
    /// Navigation entries the user's role may open.
    pub nav: Vec<NavItem>,
    /// This page's path and query, for the language switch to come back to.
    pub here: String,
}

/// One navigation entry.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

impl Chrome {
    /// The frame for a page at `path` (its navigation entry is highlighted).
    pub fn new(l: Lang, user: CurrentUser, path: &str, here: String) -> Self {
        let entries: [(&str, &str, &str, Option<&str>); 8] = [
            ("/console", "工作台", "Workbench", None),
            (
                "/console/customers",
                "客户",
                "Customers",
                Some(perm::CUSTOMER_VIEW),
            ),
            ("/console/tags", "标签", "Tags", Some(perm::TAG_VIEW)),
            (
                "/console/group-send",
                "群发助手",
                "Group send",
                Some(perm::GROUP_SEND_TASKS_VIEW),
            ),
            ("/console/sop", "SOP", "SOP", Some(perm::SOP_TEMPLATE_VIEW)),
            ("/console/jobs", "任务监控", "Jobs", Some(perm::JOBS_VIEW)),
            (
                "/console/integration",
                "企业微信",
                "WeCom",
                Some(perm::WEWORK_SYNC_VIEW),
            ),
            // Users are the admins' business: the page itself needs what the API's list needs.
            ("/console/users", "用户", "Users", Some(perm::USER_MANAGE)),
        ];
        let nav = entries
            .into_iter()
            .filter(|(_, _, _, p)| p.is_none_or(|p| user.can(p)))
            .map(|(href, zh, en, _)| NavItem {
                href,
                label: l.t(zh, en),
                active: path == href || (href != "/console" && path.starts_with(href)),
            })
            .collect();
        Chrome { l, user, nav, here }
    }

    /// Whether the user's role holds a permission (pages hide what it does not).
    pub fn can(&self, permission: &str) -> bool {
        self.user.can(permission)
    }

    /// The role's name in the page's language.
    pub fn role_label(&self) -> &'static str {
        match self.user.role {
            crate::auth::Role::Admin => self.l.t("管理员", "admin"),
            crate::auth::Role::Operator => self.l.t("运营", "operator"),
            crate::auth::Role::Viewer => self.l.t("只读", "viewer"),
        }
    }
}

/// A console handler's result: a page, or an error shown as a page.
pub type PageResult = Result<Response, PageError>;

/// An error on a console page: the API's error, shown as HTML in both languages.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError(ApiError::Internal(anyhow::Error::new(e)))
    }
}

impl From<scrm_db::DbError> for PageError {
    fn from(e: scrm_db::DbError) -> Self {
        PageError(e.into())
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    name: &'a str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = e.status();
        let message = match &e {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "console page failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            name: e.name(),
            message,
        };
        html(status, page.render().unwrap_or_default())
    }
}

/// An HTML answer, marked so the API's error-envelope layer leaves it alone.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    resp.extensions_mut().insert(Enveloped);
    resp
}

/// Render a template as a 200 page.
pub fn page(t: &impl Template) -> PageResult {
    Ok(html(StatusCode::OK, t.render()?))
}

/// 303 to another console page (after a form post).
pub fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}

/// The `data` of an API handler's reply, read as the console's own view type: the page shows
/// exactly the fields the API answers.
pub fn data<T: Serialize, V: DeserializeOwned>(r: ApiResult<Reply<T>>) -> ApiResult<V> {
    let Reply(_, v) = r?;
    let json = serde_json::to_value(v).map_err(anyhow::Error::from)?;
    serde_json::from_value(json).map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
}

/// An API handler's query or body built from JSON, as the API would parse it from a request.
pub fn arg<T: DeserializeOwned>(v: serde_json::Value) -> ApiResult<T> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid input: {e}")))
}

/// A posted form's fields in order, repeated names kept (checkbox lists).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field, trimmed; None when absent or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Every positive integer given for a field (checkboxes, multi-selects, comma lists).
    pub fn ids(&self, name: &str) -> Vec<i64> {
        ids_of(
            self.0
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
        )
    }
}

/// Positive integers from values that may each be a comma list.
pub fn ids_of<'a>(values: impl Iterator<Item = &'a str>) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for v in values {
        for part in v.split([',', ' ', '，']) {
            if let Ok(id) = part.trim().parse::<i64>()
                && id > 0
                && !out.contains(&id)
            {
                out.push(id);
            }
        }
    }
    out
}

/// An ISO 8601 time as the console shows it: `2026-11-22 23:29`.
pub fn when(iso: &str) -> String {
    let s = iso.replace('T', " ");
    s.get(..16).map(str::to_string).unwrap_or(s)
}

/// An optional ISO time, or a dash.
pub fn when_opt(iso: &Option<String>) -> String {
    iso.as_deref().map(when).unwrap_or_else(|| "—".into())
}
