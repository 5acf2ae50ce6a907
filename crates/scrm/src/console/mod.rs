//! The web console under `/console`: server-rendered pages (askama templates in
//! `crates/scrm/templates/console/`) made lively with htmx, every asset embedded in the binary.
//!
//! - [`auth`]: the login page, the session cookie, the page guard and the language switch.
//! - [`home`]: the workbench (工作台) with today's figures and a 30-day growth chart in SVG.
//! - [`customers`]: the customer list with filters and bulk actions, and the customer page.
//! - [`group_send`]: seed 004's group-send assistant (群发助手): create, list, task progress.
//! - [`ops`]: jobs (seed 002's monitor, dead letters with replay) and the WeCom integration.
//! - [`workflows`]: workflows (list, publish / disable, a YAML editor with the API's errors per
//!   step and field, runs by hand) and their runs per workflow or customer (pause / resume /
//!   cancel, step log).
//! - [`sop`]: the SOP template list and builder, running a template, executions (pause / resume /
//!   cancel) and an execution's step log.
//! - [`staff_picker`]: the searchable staff picker every form that picks staff uses.
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
pub mod automation;
pub mod customers;
pub mod device_account;
pub mod device_picker;
pub mod devices;
pub mod exports;
pub mod group_send;
pub mod home;
pub mod materials;
pub mod ops;
pub mod org;
pub mod pools;
pub mod schedules;
pub mod sop;
pub mod sources;
pub mod staff_picker;
pub mod system;
pub mod tags;
pub mod wecom;
pub mod workflows;

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
            M::POST,
            "/console/customers/assign",
            P(perm::CUSTOMER_TRANSFER),
            "Assign the selected customers to a member",
            customers::bulk_assign,
        )
        .route(
            M::GET,
            "/console/customers/exports",
            P(perm::CUSTOMER_EXPORT),
            "Customer export jobs: status and download",
            exports::page,
        )
        .route(
            M::POST,
            "/console/customers/exports",
            P(perm::CUSTOMER_EXPORT),
            "Export the customers matching filters (a job)",
            exports::start,
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
            "/console/integration/callbacks",
            P(perm::WEWORK_CALLBACK_VIEW),
            "Received WeCom callbacks",
            wecom::callbacks_page,
        )
        .route(
            M::POST,
            "/console/integration/callbacks/{id}/replay",
            P(perm::WEWORK_CALLBACK_REPLAY),
            "Process a received callback again",
            wecom::replay_callback,
        )
        .route(
            M::GET,
            "/console/integration/sync-logs",
            P(perm::WEWORK_SYNC_VIEW),
            "Sync logs",
            wecom::sync_logs,
        )
        .route(
            M::GET,
            "/console/integration/config",
            P(perm::WEWORK_CONFIG_MANAGE),
            "WeCom configuration form (secrets write-only)",
            wecom::config_form,
        )
        .route(
            M::POST,
            "/console/integration/config",
            P(perm::WEWORK_CONFIG_MANAGE),
            "Save the WeCom configuration",
            wecom::save_config,
        )
        .route(
            M::GET,
            "/console/tags",
            P(perm::TAG_VIEW),
            "Tag groups and tags with counts; editing for tag managers",
            tags::page,
        )
        .route(
            M::POST,
            "/console/tag-groups",
            P(perm::TAG_MANAGE),
            "Create a tag group",
            tags::create_group,
        )
        .route(
            M::POST,
            "/console/tag-groups/{id}",
            P(perm::TAG_MANAGE),
            "Rename, move or delete a tag group",
            tags::group_action,
        )
        .route(
            M::POST,
            "/console/tags",
            P(perm::TAG_MANAGE),
            "Create a tag",
            tags::create_tag,
        )
        .route(
            M::POST,
            "/console/tags/{id}",
            P(perm::TAG_MANAGE),
            "Rename, move or delete a tag",
            tags::tag_action,
        )
        .route(
            M::GET,
            "/console/group-chats",
            P(perm::GROUP_CHAT_VIEW),
            "Customer group chats",
            org::group_chats,
        )
        .route(
            M::GET,
            "/console/group-chats/{id}",
            P(perm::GROUP_CHAT_VIEW),
            "A group chat: tags and members",
            org::group_chat,
        )
        .route(
            M::POST,
            "/console/group-chats/{id}/tags",
            P(perm::GROUP_CHAT_MANAGE),
            "Tag or untag a group chat",
            org::group_chat_tags,
        )
        .route(
            M::GET,
            "/console/staff",
            P(perm::STAFF_VIEW),
            "Staff and departments",
            org::staff_page,
        )
        .route(
            M::GET,
            "/console/materials",
            P(perm::MATERIAL_VIEW),
            "The material library",
            materials::page,
        )
        .route_with_body_limit(
            M::POST,
            "/console/materials/upload",
            P(perm::MATERIAL_MANAGE),
            "Create a material from the form, with its file (multipart)",
            crate::operation::materials::upload::UPLOAD_BODY_BYTES,
            materials::upload,
        )
        .route(
            M::GET,
            "/console/materials/{id}/edit",
            P(perm::MATERIAL_MANAGE),
            "Edit a material: the form with it",
            materials::edit,
        )
        .route_with_body_limit(
            M::POST,
            "/console/materials/{id}/upload",
            P(perm::MATERIAL_MANAGE),
            "Save a material from the edit form, with a new file or keeping its file (multipart)",
            crate::operation::materials::upload::UPLOAD_BODY_BYTES,
            materials::update,
        )
        .route(
            M::POST,
            "/console/materials",
            P(perm::MATERIAL_MANAGE),
            "Create or delete a material",
            materials::save,
        )
        .route(
            M::GET,
            "/console/channel-codes",
            P(perm::CHANNEL_CODE_VIEW),
            "Channel codes",
            automation::codes_page,
        )
        .route(
            M::GET,
            "/console/channel-codes/new",
            P(perm::CHANNEL_CODE_MANAGE),
            "New channel code form",
            automation::new_code,
        )
        .route(
            M::POST,
            "/console/channel-codes",
            P(perm::CHANNEL_CODE_MANAGE),
            "Create a channel code",
            automation::create_code,
        )
        .route(
            M::GET,
            "/console/staff-picker",
            P(perm::STAFF_VIEW),
            "Staff picker: the chosen staff and those matching a search (name or userid)",
            staff_picker::search_rows,
        )
        .route(
            M::GET,
            "/console/device-accounts",
            P(perm::DEVICE_VIEW),
            "Device-account suggestions: those whose wxid or nickname contains a text",
            device_picker::search,
        )
        .route(
            M::GET,
            "/console/channel-codes/{id}",
            P(perm::CHANNEL_CODE_VIEW),
            "A channel code: QR code and statistics",
            automation::code_page,
        )
        .route(
            M::GET,
            "/console/channel-codes/{id}/edit",
            P(perm::CHANNEL_CODE_MANAGE),
            "Edit a channel code",
            automation::edit_code,
        )
        .route(
            M::POST,
            "/console/channel-codes/{id}",
            P(perm::CHANNEL_CODE_MANAGE),
            "Change or delete a channel code",
            automation::update_code,
        )
        .route(
            M::GET,
            "/console/welcome",
            P(perm::WELCOME_VIEW),
            "Welcome messages and recent welcome sends",
            automation::welcome_page,
        )
        .route(
            M::POST,
            "/console/welcome",
            P(perm::WELCOME_MANAGE),
            "Create, change or delete a welcome message",
            automation::save_welcome,
        )
        .route(
            M::GET,
            "/console/sop",
            P(perm::SOP_TEMPLATE_VIEW),
            "SOP templates",
            sop::sop_page,
        )
        .route(
            M::GET,
            "/console/sop/new",
            P(perm::SOP_TEMPLATE_CREATE),
            "SOP template builder (new)",
            sop::new_template,
        )
        .route(
            M::POST,
            "/console/sop/templates",
            P(perm::SOP_TEMPLATE_CREATE),
            "Create an SOP template (or add / remove a step in the builder)",
            sop::create_template,
        )
        .route(
            M::GET,
            "/console/sop/templates/{id}",
            P(perm::SOP_TEMPLATE_VIEW),
            "An SOP template in the builder, with the form to run it",
            sop::template_page,
        )
        .route(
            M::POST,
            "/console/sop/templates/{id}",
            P(perm::SOP_TEMPLATE_UPDATE),
            "Save or delete an SOP template (or add / remove a step in the builder)",
            sop::update_template,
        )
        .route(
            M::POST,
            "/console/sop/templates/{id}/execute",
            P(perm::SOP_EXECUTE),
            "Run an SOP template for customers or group chats",
            sop::execute,
        )
        .route(
            M::GET,
            "/console/sop/executions",
            P(perm::SOP_EXECUTION_VIEW),
            "SOP executions by template and status",
            sop::executions_page,
        )
        .route(
            M::GET,
            "/console/sop/executions/{id}",
            P(perm::SOP_EXECUTION_VIEW),
            "An SOP execution and its step log",
            sop::execution_page,
        )
        .route(
            M::POST,
            "/console/sop/control",
            P(perm::SOP_EXECUTION_CONTROL),
            "Pause, resume or cancel SOP executions",
            sop::sop_control,
        )
        .route(
            M::GET,
            "/console/workflows",
            P(perm::WORKFLOW_VIEW),
            "Workflows",
            workflows::list,
        )
        .route(
            M::GET,
            "/console/workflows/new",
            P(perm::WORKFLOW_MANAGE),
            "New workflow: a YAML editor started from an example",
            workflows::new_form,
        )
        .route(
            M::POST,
            "/console/workflows",
            P(perm::WORKFLOW_MANAGE),
            "Create a workflow from YAML",
            workflows::create,
        )
        .route(
            M::GET,
            "/console/workflows/{id}",
            P(perm::WORKFLOW_VIEW),
            "A workflow: its YAML, versions, recent runs",
            workflows::detail,
        )
        .route(
            M::POST,
            "/console/workflows/{id}",
            P(perm::WORKFLOW_MANAGE),
            "Save, publish, disable or delete a workflow",
            workflows::update,
        )
        .route(
            M::POST,
            "/console/workflows/{id}/runs",
            P(perm::WORKFLOW_RUN),
            "Start a workflow for customers",
            workflows::start_runs,
        )
        .route(
            M::GET,
            "/console/workflow-runs",
            P(perm::WORKFLOW_VIEW),
            "Workflow runs by workflow, customer and status",
            workflows::runs,
        )
        .route(
            M::POST,
            "/console/workflow-runs/control",
            P(perm::WORKFLOW_RUN),
            "Pause, resume or cancel workflow runs",
            workflows::control,
        )
        .route(
            M::GET,
            "/console/workflow-runs/{id}",
            P(perm::WORKFLOW_VIEW),
            "A workflow run and its step log",
            workflows::run_page,
        )
        .route(
            M::GET,
            "/console/devices",
            P(perm::DEVICE_VIEW),
            "Device gateways and sender accounts (state, health score)",
            devices::page,
        )
        .route(
            M::POST,
            "/console/devices/gateways",
            P(perm::DEVICE_MANAGE),
            "Register a device gateway (its token shown once)",
            devices::create_gateway,
        )
        .route(
            M::GET,
            "/console/devices/accounts/{accountId}",
            P(perm::DEVICE_VIEW),
            "A sender account: health history and AI auto-reply settings",
            device_account::account_page,
        )
        .route(
            M::POST,
            "/console/devices/accounts/{accountId}/ai-reply",
            P(perm::DEVICE_MANAGE),
            "Save an account's AI auto-reply settings",
            device_account::save_ai,
        )
        .route(
            M::GET,
            "/console/group-pushes",
            P(perm::GROUP_PUSH_VIEW),
            "Group pushes of device accounts",
            devices::pushes,
        )
        .route(
            M::GET,
            "/console/group-pushes/new",
            P(perm::GROUP_PUSH_CREATE),
            "New group push form",
            devices::new_push,
        )
        .route(
            M::POST,
            "/console/group-pushes",
            P(perm::GROUP_PUSH_CREATE),
            "Push a message into chat rooms of a device account",
            devices::create_push,
        )
        .route(
            M::GET,
            "/console/group-pushes/{id}",
            P(perm::GROUP_PUSH_VIEW),
            "A group push and its result per chat room",
            devices::push_page,
        )
        .route(
            M::GET,
            "/console/traffic-pools",
            P(perm::TRAFFIC_POOL_VIEW),
            "Traffic pools",
            pools::list,
        )
        .route(
            M::GET,
            "/console/traffic-pools/{id}",
            P(perm::TRAFFIC_POOL_VIEW),
            "A traffic pool: members, caps, working hours, today's load and the assignment log",
            pools::detail,
        )
        .route(
            M::GET,
            "/console/traffic-pools/new",
            P(perm::TRAFFIC_POOL_MANAGE),
            "New traffic pool form",
            pools::new_pool,
        )
        .route(
            M::POST,
            "/console/traffic-pools",
            P(perm::TRAFFIC_POOL_MANAGE),
            "Create a traffic pool (or add / remove a member row of the form)",
            pools::create,
        )
        .route(
            M::GET,
            "/console/traffic-pools/{id}/edit",
            P(perm::TRAFFIC_POOL_MANAGE),
            "Edit a traffic pool: strategy, channel codes, members with weights, caps and hours",
            pools::edit_pool,
        )
        .route(
            M::POST,
            "/console/traffic-pools/{id}",
            P(perm::TRAFFIC_POOL_MANAGE),
            "Save a traffic pool (or add / remove a member row of the form)",
            pools::update,
        )
        .route(
            M::POST,
            "/console/traffic-pools/{id}/delete",
            P(perm::TRAFFIC_POOL_MANAGE),
            "Delete a traffic pool",
            pools::delete,
        )
        .route(
            M::GET,
            "/console/group-welcomes",
            P(perm::WELCOME_VIEW),
            "Group welcome messages",
            sources::group_welcomes,
        )
        .route(
            M::POST,
            "/console/group-welcomes",
            P(perm::WELCOME_MANAGE),
            "Create or delete a group welcome message",
            sources::save_group_welcome,
        )
        .route(
            M::GET,
            "/console/content-sources",
            P(perm::MATERIAL_VIEW),
            "Content sources (RSS/Atom feeds and pages)",
            sources::sources,
        )
        .route(
            M::POST,
            "/console/content-sources",
            P(perm::MATERIAL_MANAGE),
            "Add, fetch now or delete a content source",
            sources::save_source,
        )
        .route(
            M::GET,
            "/console/content-sources/{id}",
            P(perm::MATERIAL_VIEW),
            "A content source and the items it collected",
            sources::source,
        )
        .route(
            M::GET,
            "/console/schedules",
            P(perm::AUTOMATION_TASK_VIEW),
            "Cron tasks with their last run",
            schedules::page,
        )
        .route(
            M::POST,
            "/console/schedules",
            P(perm::AUTOMATION_TASK_MANAGE),
            "Switch a cron task on or off",
            schedules::switch,
        )
        .route(
            M::GET,
            "/console/users",
            P(perm::USER_VIEW),
            "The tenant's users, with the forms to change them",
            system::users_page,
        )
        .route(
            M::POST,
            "/console/users",
            P(perm::USER_MANAGE),
            "Create a user",
            system::create_user,
        )
        .route(
            M::POST,
            "/console/users/{id}",
            P(perm::USER_MANAGE),
            "Change a user's role, reset the password, disable or enable",
            system::user_action,
        )
        .route(
            M::GET,
            "/console/tokens",
            P(perm::TOKEN_MANAGE),
            "API tokens",
            system::tokens_page,
        )
        .route(
            M::POST,
            "/console/tokens",
            P(perm::TOKEN_MANAGE),
            "Create an API token (shown once)",
            system::create_token,
        )
        .route(
            M::POST,
            "/console/tokens/{id}/revoke",
            P(perm::TOKEN_MANAGE),
            "Revoke an API token",
            system::revoke_token,
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
        let entries: [(&str, &str, &str, Option<&str>); 20] = [
            ("/console", "工作台", "Workbench", None),
            (
                "/console/customers",
                "客户",
                "Customers",
                Some(perm::CUSTOMER_VIEW),
            ),
            ("/console/tags", "标签", "Tags", Some(perm::TAG_VIEW)),
            (
                "/console/group-chats",
                "客户群",
                "Group chats",
                Some(perm::GROUP_CHAT_VIEW),
            ),
            ("/console/staff", "员工", "Staff", Some(perm::STAFF_VIEW)),
            (
                "/console/group-send",
                "群发助手",
                "Group send",
                Some(perm::GROUP_SEND_TASKS_VIEW),
            ),
            ("/console/sop", "SOP", "SOP", Some(perm::SOP_TEMPLATE_VIEW)),
            (
                "/console/workflows",
                "工作流",
                "Workflows",
                Some(perm::WORKFLOW_VIEW),
            ),
            (
                "/console/materials",
                "素材",
                "Materials",
                Some(perm::MATERIAL_VIEW),
            ),
            (
                "/console/channel-codes",
                "渠道活码",
                "Channel codes",
                Some(perm::CHANNEL_CODE_VIEW),
            ),
            (
                "/console/welcome",
                "欢迎语",
                "Welcome",
                Some(perm::WELCOME_VIEW),
            ),
            (
                "/console/group-welcomes",
                "入群欢迎语",
                "Group welcome",
                Some(perm::WELCOME_VIEW),
            ),
            (
                "/console/traffic-pools",
                "流量池",
                "Traffic pools",
                Some(perm::TRAFFIC_POOL_VIEW),
            ),
            (
                "/console/content-sources",
                "内容源",
                "Content sources",
                Some(perm::MATERIAL_VIEW),
            ),
            (
                "/console/devices",
                "设备",
                "Devices",
                Some(perm::DEVICE_VIEW),
            ),
            (
                "/console/group-pushes",
                "群推送",
                "Group pushes",
                Some(perm::GROUP_PUSH_VIEW),
            ),
            (
                "/console/schedules",
                "定时任务",
                "Cron tasks",
                Some(perm::AUTOMATION_TASK_VIEW),
            ),
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

/// Where a list's bulk action (pause, resume, cancel the ticked rows) goes back to: the posted
/// `back` when it is a console path under `prefix`, else `fallback`; the list then says how
/// many changed (`done=`) and why others did not (`error=`).
pub struct Back(String);

impl Back {
    pub fn of(form: &Form, prefix: &str, fallback: &str) -> Back {
        Back(
            form.get("back")
                .filter(|b| b.starts_with(prefix) && !b.contains("//"))
                .unwrap_or_else(|| fallback.into()),
        )
    }

    fn sep(&self) -> char {
        if self.0.contains('?') { '&' } else { '?' }
    }

    /// Back with how many changed, and what was refused (if anything).
    pub fn done(&self, changed: i64, error: Option<&str>) -> PageResult {
        let mut to = format!("{}{}done={changed}", self.0, self.sep());
        if let Some(e) = error.filter(|e| !e.is_empty()) {
            let msg: String = url::form_urlencoded::byte_serialize(e.as_bytes()).collect();
            to.push_str(&format!("&error={msg}"));
        }
        see_other(&to)
    }

    /// Back with an error only (nothing was tried).
    pub fn error(&self, error: &str) -> PageResult {
        let msg: String = url::form_urlencoded::byte_serialize(error.as_bytes()).collect();
        see_other(&format!("{}{}error={msg}", self.0, self.sep()))
    }
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

/// What a page shows after a form was posted: a notice that it worked, or the API's refusal
/// shown next to the form it came from (each form on a page has a key such as `group-3`).
#[derive(Default)]
pub struct Notes {
    pub notice: Option<String>,
    /// (form key, what the API said).
    pub problems: Vec<(String, String)>,
}

impl Notes {
    /// The notice of a `?done=` after a successful post.
    pub fn from_query(l: &Lang, raw: Option<&str>) -> Notes {
        let done = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "done")
            .map(|(_, v)| v.into_owned());
        Notes {
            notice: done.map(|d| done_label(l, &d).to_string()),
            problems: Vec::new(),
        }
    }

    /// The API's refusal of the form `form`.
    pub fn refused(form: &str, e: &ApiError) -> Notes {
        Notes {
            notice: None,
            problems: vec![(form.to_string(), explain(e))],
        }
    }

    /// The problem with the form `<prefix>-<id>`, if there was one.
    pub fn err_id(&self, prefix: &str, id: &i64) -> Option<&str> {
        self.err(&format!("{prefix}-{id}"))
    }

    /// The problem with the form `form`, if there was one.
    pub fn err(&self, form: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|(f, _)| f == form)
            .map(|(_, m)| m.as_str())
    }
}

/// A `?done=` code in the page's language.
fn done_label(l: &Lang, code: &str) -> &'static str {
    match code {
        "created" => l.t("已创建", "Created"),
        "deleted" => l.t("已删除", "Deleted"),
        "replayed" => l.t("已重新处理", "Queued again"),
        "revoked" => l.t("已吊销", "Revoked"),
        _ => l.t("已保存", "Saved"),
    }
}

/// An API refusal as one line a person can act on: each field with its problem.
pub fn explain(e: &ApiError) -> String {
    match e {
        ApiError::Validation { fields, .. } if !fields.is_empty() => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Whether an API error is a refusal of the input (shown on the form) rather than a failure or
/// a missing permission (shown as an error page).
pub fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Validation { .. }
            | ApiError::Domain { .. }
            | ApiError::Refused { .. }
            | ApiError::Conflict(_)
            | ApiError::NotFound(_)
    )
}

/// A form post's API answer, sorted for the page.
pub enum Answer<V> {
    /// Done: the page usually redirects.
    Saved(V),
    /// The input was refused: the form is shown again with the API's problems
    /// ([`field_problems`]) and this error's status.
    Refused(ApiError),
}

/// Sort a form post's API answer: saved, refused (any [`is_refusal`], a 404 included: an id the
/// form chose that does not exist), or — anything else — the error page.
pub fn answer<V>(r: ApiResult<V>) -> Result<Answer<V>, PageError> {
    match r {
        Ok(v) => Ok(Answer::Saved(v)),
        Err(e) if is_refusal(&e) => Ok(Answer::Refused(e)),
        Err(e) => Err(e.into()),
    }
}

/// [`answer`] for a post to one thing's address: a 404 means the thing is gone, shown as the
/// error page rather than on its form.
pub fn answer_found<V>(r: ApiResult<V>) -> Result<Answer<V>, PageError> {
    match r {
        Err(e @ ApiError::NotFound(_)) => Err(e.into()),
        r => answer(r),
    }
}

/// The end of a form post that shows its form again when refused: saved → a redirect to
/// `to(what was saved)`; refused → `again(the API's problems by field, the refusal's status)`,
/// which renders the form with the input kept.
pub async fn redirect_or_again<V, Fut>(
    answer: Answer<V>,
    to: impl FnOnce(V) -> String,
    again: impl FnOnce(FieldErrors, StatusCode) -> Fut,
) -> PageResult
where
    Fut: std::future::Future<Output = PageResult>,
{
    match answer {
        Answer::Saved(v) => see_other(&to(v)),
        Answer::Refused(e) => again(field_problems(&e), e.status()).await,
    }
}

/// A page shown again with the status of the API's refusal.
pub fn reshow(status: StatusCode, t: &impl Template) -> PageResult {
    Ok(html(status, t.render()?))
}

/// A query parameter, trimmed; None when absent or empty.
pub fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The `page` query parameter (1 when absent or bad).
pub fn page_param(raw: Option<&str>) -> i64 {
    query_param(raw, "page")
        .and_then(|p| p.parse().ok())
        .filter(|p: &i64| *p > 0)
        .unwrap_or(1)
}

/// How many pages `total` rows fill at `size` a page (at least one).
pub fn pages_of(total: i64, size: i64) -> i64 {
    ((total + size - 1) / size.max(1)).max(1)
}

/// The `data` of an API handler's reply as the handler's own type.
pub fn value<T>(r: ApiResult<Reply<T>>) -> ApiResult<T> {
    r.map(|Reply(_, v)| v)
}

/// A unix-milliseconds time as the console shows it (China time): `2026-11-22 23:29`.
pub fn when_ms(ms: &Option<i64>) -> String {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => (t + chrono::Duration::hours(8))
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        None => "—".into(),
    }
}

/// A unix-seconds time (WeCom's) as the console shows it.
pub fn when_secs(secs: &Option<i64>) -> String {
    when_ms(&secs.map(|s| s * 1000))
}

/// A form's problems by field (`""` for the form as a whole), shown next to each field.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    /// The problems with a field, if the API named any.
    pub fn get(&self, field: &str) -> Option<String> {
        let found: Vec<&str> = self
            .0
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect();
        (!found.is_empty()).then(|| found.join("; "))
    }

    /// The problems with the form `<prefix>-<id>` (one of a list's rows).
    pub fn get_id(&self, prefix: &str, id: &i64) -> Option<String> {
        self.get(&format!("{prefix}-{id}"))
    }
}

/// The API's refusal by form field: the root of each field the API named (`staff[1].userid` →
/// `staff`), or `""` for the form as a whole.
pub fn field_problems(e: &ApiError) -> FieldErrors {
    FieldErrors(field_list(e))
}

fn field_list(e: &ApiError) -> Vec<(String, String)> {
    match e {
        ApiError::Validation { fields, message } if fields.is_empty() => {
            vec![(String::new(), message.clone())]
        }
        ApiError::Validation { fields, .. } | ApiError::Refused { fields, .. }
            if !fields.is_empty() =>
        {
            fields
                .iter()
                .map(|f| {
                    let root = f.field.split(['[', '.']).next().unwrap_or("").to_string();
                    (root, format!("{}: {}", f.field, f.message))
                })
                .collect()
        }
        other => vec![(String::new(), other.to_string())],
    }
}

/// A material offered in a picker.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterialOption {
    pub material_id: i64,
    pub material_type: String,
    pub title: String,
}

/// The newest materials (up to 100) for a picker; none for a role that may not see materials.
pub async fn material_options(
    state: &AppState,
    user: &CurrentUser,
) -> ApiResult<Vec<MaterialOption>> {
    #[derive(serde::Deserialize)]
    struct Listed {
        list: Vec<MaterialOption>,
    }
    if !user.can(perm::MATERIAL_VIEW) {
        return Ok(Vec::new());
    }
    let l: Listed = data(
        crate::operation::materials::list_materials(
            axum::extract::State(state.clone()),
            user.clone(),
            crate::http::extract::ApiQuery(arg(serde_json::json!({"pageSize": 100}))?),
        )
        .await,
    )?;
    Ok(l.list)
}

/// The query string before `page=` in a pager's links: the list's filters, each `name=value&`
/// (empty ones left out).
pub fn query_prefix(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() { q } else { q + "&" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_queries_keep_the_filters_and_drop_empty_ones() {
        assert_eq!(query_prefix(&[("keyword", ""), ("status", "")]), "");
        assert_eq!(
            query_prefix(&[("keyword", "展 会"), ("status", ""), ("syncType", "full")]),
            "keyword=%E5%B1%95+%E4%BC%9A&syncType=full&"
        );
    }

    #[test]
    fn field_errors_are_found_by_the_root_of_the_field() {
        let e = ApiError::Validation {
            message: "bad".into(),
            fields: vec![
                crate::http::error::FieldError {
                    field: "staff[1].userid".into(),
                    message: "is required".into(),
                },
                crate::http::error::FieldError {
                    field: "name".into(),
                    message: "is required".into(),
                },
            ],
        };
        let f = field_problems(&e);
        assert_eq!(
            f.get("staff").as_deref(),
            Some("staff[1].userid: is required")
        );
        assert_eq!(f.get("name").as_deref(), Some("name: is required"));
        assert_eq!(f.get("remark"), None);
        let general = field_problems(&ApiError::invalid(
            "token and encodingAesKey are set together",
        ));
        assert!(general.get("").is_some());
    }
}
