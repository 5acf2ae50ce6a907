//! Operations pages: the job monitor (seed 002's figures, dead letters with replay, workers) and
//! the WeCom integration (configuration, test connection, sync status with live progress,
//! starting a sync).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Form, Lang, PageResult, data, html, see_other};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::ApiError;
use crate::http::extract::ApiPath;
use crate::integration::config::ConfigView;
use crate::integration::test::Report;
use crate::state::AppState;

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

fn param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    c: Chrome,
    stats: scrm_jobs::Stats,
    dead: Vec<scrm_jobs::JobRow>,
    dead_total: i64,
    notice: Option<String>,
}

/// A time in epoch milliseconds as the console shows it.
pub fn ms(t: &i64) -> String {
    super::when(&crate::state::iso(*t))
}

/// `GET /console/jobs`: the monitor and this tenant's dead letters.
pub async fn jobs(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let stats = state.jobs.stats().await.map_err(internal)?;
    let filter = scrm_jobs::JobFilter {
        state: Some(scrm_jobs::JobState::Dead),
        ..Default::default()
    };
    let dead = state
        .jobs
        .list_jobs(scrm_jobs::Scope::Tenant(c.user.tenant_id), &filter, 1, 50)
        .await
        .map_err(internal)?;
    let notice = match (
        param(raw.as_deref(), "replayed"),
        param(raw.as_deref(), "error"),
    ) {
        (Some(id), _) => Some(format!("{} #{id}", c.l.t("已重新执行任务", "Replayed job"))),
        (_, Some(e)) => Some(e),
        _ => None,
    };
    super::page(&JobsPage {
        c,
        stats,
        dead: dead.items,
        dead_total: dead.total,
        notice,
    })
}

/// `POST /console/jobs/{id}/replay`: run a dead job again (the API's retry).
pub async fn replay(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    match crate::jobs::routes::retry_one(State(state), user, ApiPath(id)).await {
        Ok(_) => see_other(&format!("/console/jobs?replayed={id}")),
        Err(e @ ApiError::Domain { .. }) => {
            let msg: String =
                url::form_urlencoded::byte_serialize(e.to_string().as_bytes()).collect();
            see_other(&format!("/console/jobs?error={msg}"))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub configured: bool,
    pub types: Vec<TypeStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus {
    pub sync_type: String,
    pub running: bool,
    pub current: Option<Run>,
    pub last: Option<Run>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: i64,
    pub status: String,
    pub phase: Option<String>,
    pub fetched: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub failed: i64,
    pub progress: Progress,
    pub message: Option<String>,
    pub end_time: Option<String>,
}

#[derive(Deserialize)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

#[derive(Template)]
#[template(path = "console/integration.html")]
struct IntegrationPage {
    c: Chrome,
    config: Option<ConfigView>,
    sync: SyncStatus,
    live: bool,
    error: Option<String>,
}

/// `GET /console/integration`: configuration and sync status; while a sync runs, the status
/// part refreshes every two seconds.
pub async fn integration(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let config: Option<ConfigView> = if c.can(perm::WEWORK_CONFIG_VIEW) {
        crate::integration::config::get(State(state.clone()), c.user.clone())
            .await?
            .1
    } else {
        None
    };
    let sync: SyncStatus =
        data(crate::integration::sync::routes::status(State(state.clone()), c.user.clone()).await)?;
    let live = sync.types.iter().any(|t| t.running);
    let error = param(raw.as_deref(), "error");
    super::page(&IntegrationPage {
        c,
        config,
        sync,
        live,
        error,
    })
}

#[derive(Template)]
#[template(path = "console/integration_test.html")]
struct TestResult {
    l: Lang,
    report: Option<Report>,
    error: Option<String>,
}

/// `POST /console/integration/test` (htmx): the API's connection test, as a fragment.
pub async fn test_connection(
    State(state): State<AppState>,
    l: Lang,
    user: CurrentUser,
) -> PageResult {
    let r = crate::integration::test::handler(State(state), user).await;
    let page = match r {
        Ok(reply) => TestResult {
            l,
            report: Some(reply.1),
            error: None,
        },
        Err(e @ ApiError::Internal(_)) => return Err(e.into()),
        Err(e) => TestResult {
            l,
            report: None,
            error: Some(e.to_string()),
        },
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// `POST /console/integration/sync`: start a sync of the chosen type (the API's trigger).
pub async fn start_sync(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let sync_type = form.get("syncType").unwrap_or_else(|| "full".into());
    let body = json!({"syncType": sync_type, "force": form.get("force").is_some()});
    let r =
        crate::integration::sync::routes::sync(State(state), user, Bytes::from(body.to_string()))
            .await;
    match r {
        Ok(_) => see_other("/console/integration"),
        Err(e @ ApiError::Internal(_)) => Err(e.into()),
        Err(e) => {
            let msg: String =
                url::form_urlencoded::byte_serialize(e.to_string().as_bytes()).collect();
            see_other(&format!("/console/integration?error={msg}"))
        }
    }
}
