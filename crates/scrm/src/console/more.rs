//! The smaller pages: SOP templates and executions (pause,
//! resume, cancel).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Form, PageResult, arg, data, see_other};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::operation::sop::routes as sop;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SopTemplate {
    pub template_id: i64,
    pub template_name: String,
    pub trigger_type: i64,
    pub status: i64,
    pub steps: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SopExecution {
    pub execution_id: i64,
    pub template_id: i64,
    pub target_type: i64,
    pub target_id: i64,
    pub status: i64,
    pub current_step: i64,
    pub total_steps: i64,
    pub triggered_at: String,
}

impl SopExecution {
    /// Seed 000's execution status in the page's language.
    pub fn status_label(&self, l: &super::Lang) -> &'static str {
        match self.status {
            0 => l.t("执行中", "running"),
            1 => l.t("已完成", "done"),
            2 => l.t("已暂停", "paused"),
            3 => l.t("失败", "failed"),
            _ => l.t("已取消", "cancelled"),
        }
    }
}

#[derive(Deserialize)]
struct Listed<T> {
    list: Vec<T>,
    total: i64,
}

#[derive(Template)]
#[template(path = "console/sop.html")]
struct SopPage {
    c: Chrome,
    templates: Vec<SopTemplate>,
    template_total: i64,
    executions: Vec<SopExecution>,
    execution_total: i64,
    notice: Option<String>,
}

fn param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// `GET /console/sop?status=`: templates, and executions filtered by status.
pub async fn sop_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let status = param(raw.as_deref(), "status").and_then(|s| s.parse::<i64>().ok());
    let templates: Listed<SopTemplate> = data(
        sop::list_templates(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"pageSize": 100}))?),
        )
        .await,
    )?;
    let executions: Listed<SopExecution> = if c.can(perm::SOP_EXECUTION_VIEW) {
        data(
            sop::list_executions(
                State(state),
                c.user.clone(),
                ApiQuery(arg(json!({"status": status, "pageSize": 100}))?),
            )
            .await,
        )?
    } else {
        Listed {
            list: Vec::new(),
            total: 0,
        }
    };
    let notice = match (
        param(raw.as_deref(), "done"),
        param(raw.as_deref(), "error"),
    ) {
        (Some(n), _) => Some(format!(
            "{} {n}",
            c.l.t("已处理执行数", "Executions changed:")
        )),
        (_, Some(e)) => Some(e),
        _ => None,
    };
    super::page(&SopPage {
        c,
        template_total: templates.total,
        templates: templates.list,
        execution_total: executions.total,
        executions: executions.list,
        notice,
    })
}

#[derive(Deserialize)]
struct Affected {
    affected: i64,
}

/// `POST /console/sop/control`: pause, resume or cancel the ticked executions (the API's own).
pub async fn sop_control(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let body = json!({
        "executionIds": form.ids("ids"),
        "action": form.get("action"),
    });
    let r = sop::control_executions(State(state), user, ApiJson(arg(body)?)).await;
    match data::<_, Affected>(r) {
        Ok(a) => see_other(&format!("/console/sop?done={}", a.affected)),
        Err(e @ ApiError::Internal(_)) => Err(e.into()),
        Err(e) => {
            let msg: String =
                url::form_urlencoded::byte_serialize(e.to_string().as_bytes()).collect();
            see_other(&format!("/console/sop?error={msg}"))
        }
    }
}
