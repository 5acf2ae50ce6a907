//! Cron tasks (seed 002's 定时任务): the built-in schedules and the tenant's own with their next
//! and last run, switched on and off through the API's handlers (a built-in one also needs
//! `system:jobs:manage`; a workflow's schedule follows its workflow).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, Form, Notes, PageResult, arg, data, is_refusal, reshow, see_other};
use crate::auth::permissions as perm;
use crate::automation::tasks as api;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// A schedule's last job.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastJob {
    pub id: i64,
    pub state: Option<String>,
    pub last_error: Option<String>,
}

/// A cron task as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub name: String,
    pub scope: String,
    pub kind: String,
    pub description: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub workflow_id: Option<i64>,
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    pub last_job: Option<LastJob>,
}

impl Schedule {
    /// Whether this user may switch it (a built-in one needs the job engine's permission; a
    /// workflow's follows its workflow).
    pub fn switchable(&self, c: &Chrome) -> bool {
        c.can(perm::AUTOMATION_TASK_MANAGE)
            && self.workflow_id.is_none()
            && (self.scope == "tenant" || c.can(perm::JOBS_MANAGE))
    }
}

#[derive(Deserialize)]
struct Listed {
    list: Vec<Schedule>,
}

#[derive(Template)]
#[template(path = "console/schedules.html")]
struct SchedulesPage {
    c: Chrome,
    schedules: Vec<Schedule>,
    enabled: String,
    notes: Notes,
}

async fn render(
    state: &AppState,
    c: Chrome,
    enabled: String,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let filter = match enabled.as_str() {
        "true" => json!(true),
        "false" => json!(false),
        _ => Value::Null,
    };
    let l: Listed = data(
        api::list(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({ "enabled": filter }))?),
        )
        .await,
    )?;
    reshow(
        status,
        &SchedulesPage {
            c,
            schedules: l.list,
            enabled,
            notes,
        },
    )
}

/// `GET /console/schedules?enabled=true|false`.
pub async fn page(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let enabled = super::query_param(raw.as_deref(), "enabled").unwrap_or_default();
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render(&state, c, enabled, notes, StatusCode::OK).await
}

/// `POST /console/schedules` (name, action=enable|disable).
pub async fn switch(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let name = form.get("name").unwrap_or_default();
    let r = match form.get("action").as_deref() {
        Some("enable") => {
            api::enable(State(state.clone()), c.user.clone(), ApiPath(name.clone())).await
        }
        _ => api::disable(State(state.clone()), c.user.clone(), ApiPath(name.clone())).await,
    };
    match data::<_, Value>(r) {
        Ok(_) => see_other("/console/schedules?done=saved"),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            render(
                &state,
                c,
                String::new(),
                Notes::refused(&format!("schedule-{name}"), &e),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
