//! Workflow pages: the list (publish / disable), a YAML editor per workflow (the API's import:
//! every problem it names is listed by step and field beside the editor), versions, starting
//! runs by hand, and the run history per workflow or per customer with pause / resume / cancel
//! (many at once) and a run's step log. Every write is the workflow API's own handler.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Back, Chrome, Form, PageResult, arg, data, is_refusal, page_param, pages_of, query_param,
    reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::automation::workflows::{routes as wf, templates};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

#[derive(Deserialize)]
struct Listed<T> {
    list: Vec<T>,
    total: i64,
}

/// A workflow as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub trigger_type: Option<String>,
    pub current_version: i64,
    pub published_version: Option<i64>,
    pub update_time: String,
    /// Run counts by status (the detail only).
    #[serde(default)]
    pub runs: Option<serde_json::Map<String, Value>>,
}

impl Workflow {
    pub fn status_label(&self, l: &super::Lang) -> &'static str {
        match self.status.as_str() {
            "draft" => l.t("草稿", "draft"),
            "published" => l.t("已发布", "published"),
            _ => l.t("已停用", "disabled"),
        }
    }

    pub fn trigger(&self) -> &str {
        self.trigger_type.as_deref().unwrap_or("—")
    }

    /// The run counts as (status, count), in the API's order.
    pub fn run_counts(&self) -> Vec<(String, i64)> {
        self.runs
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
            .collect()
    }
}

/// A run as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: i64,
    pub workflow_id: i64,
    pub version: i64,
    pub subject_type: String,
    pub subject_id: i64,
    pub trigger_type: String,
    pub status: i64,
    pub status_name: String,
    pub status_text: String,
    pub current_step: i64,
    pub next_step_at: Option<String>,
    pub error: Option<String>,
    pub create_time: String,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub steps: Vec<RunStep>,
}

impl Run {
    pub fn status_label(&self, l: &super::Lang) -> String {
        if l.code() == "en" {
            self.status_name.clone()
        } else {
            self.status_text.clone()
        }
    }

    pub fn subject_href(&self) -> String {
        if self.subject_type == "group" {
            format!("/console/group-chats/{}", self.subject_id)
        } else {
            format!("/console/customers/{}", self.subject_id)
        }
    }

    /// Pending, running or paused: it can still be cancelled.
    pub fn active(&self) -> bool {
        matches!(self.status, 0 | 1 | 5)
    }
}

/// A step of a run's log.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStep {
    pub index: i64,
    pub key: String,
    #[serde(rename = "type")]
    pub step_type: String,
    pub status: i64,
    pub status_name: String,
    pub due_at: String,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub finished_at: Option<String>,
}

impl RunStep {
    pub fn result_text(&self) -> String {
        self.result
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The list.

#[derive(Template)]
#[template(path = "console/workflows.html")]
struct ListPage {
    c: Chrome,
    workflows: Vec<Workflow>,
    keyword: String,
    status: String,
    total: i64,
    page: i64,
    pages: i64,
    notice: Option<String>,
    error: Option<String>,
}

impl ListPage {
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("keyword", &self.keyword), ("status", &self.status)])
    }
}

/// `GET /console/workflows?keyword=&status=&page=`.
pub async fn list(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let raw = raw.as_deref();
    let keyword = query_param(raw, "keyword").unwrap_or_default();
    let status = query_param(raw, "status").unwrap_or_default();
    let page = page_param(raw);
    let listed: Listed<Workflow> = data(
        wf::list_workflows(
            State(state),
            c.user.clone(),
            ApiQuery(arg(json!({
                "keyword": keyword, "status": status, "page": page, "size": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    let notice = query_param(raw, "done").map(|d| done_label(&c.l, &d));
    super::page(&ListPage {
        pages: pages_of(listed.total, PAGE_SIZE),
        total: listed.total,
        workflows: listed.list,
        keyword,
        status,
        page,
        notice,
        error: query_param(raw, "error"),
        c,
    })
}

fn done_label(l: &super::Lang, code: &str) -> String {
    match code {
        "created" => l.t("已创建", "Created"),
        "published" => l.t("已发布", "Published"),
        "disabled" => l.t("已停用", "Disabled"),
        "deleted" => l.t("已删除", "Deleted"),
        _ => l.t("已保存", "Saved"),
    }
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// The editor.

#[derive(Template)]
#[template(path = "console/workflow.html")]
struct EditorPage {
    c: Chrome,
    /// None for a new workflow.
    w: Option<Workflow>,
    yaml: String,
    /// The API's problems with the YAML: (field, message).
    problems: Vec<(String, String)>,
    /// Seed 002's examples, for a new workflow: (key, name).
    examples: Vec<(String, String)>,
    chosen: String,
    runs: Vec<Run>,
    run_customers: String,
    run_error: Option<String>,
    notice: Option<String>,
}

impl EditorPage {
    pub fn action(&self) -> String {
        match &self.w {
            Some(w) => format!("/console/workflows/{}", w.id),
            None => "/console/workflows".into(),
        }
    }
}

/// The API's refusal as (field, message) pairs.
fn problems_of(e: &ApiError) -> Vec<(String, String)> {
    match e {
        ApiError::Validation { fields, .. } if !fields.is_empty() => fields
            .iter()
            .map(|f| (f.field.clone(), f.message.clone()))
            .collect(),
        other => vec![(String::new(), super::explain(other))],
    }
}

/// An example workflow's definition as YAML.
fn example_yaml(key: &str) -> String {
    templates::get(key)
        .map(|t| t.definition(&templates::Params::default()))
        .and_then(|d| serde_norway::to_string(&d).ok())
        .unwrap_or_default()
}

fn examples() -> Vec<(String, String)> {
    templates::all()
        .iter()
        .map(|t| (t.key.to_string(), t.name.to_string()))
        .collect()
}

/// `GET /console/workflows/new?example=`: the YAML editor, started from one of seed 002's
/// examples.
pub async fn new_form(c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let examples = examples();
    let chosen = query_param(raw.as_deref(), "example")
        .or_else(|| examples.first().map(|e| e.0.clone()))
        .unwrap_or_default();
    super::page(&EditorPage {
        c,
        w: None,
        yaml: example_yaml(&chosen),
        problems: Vec::new(),
        examples,
        chosen,
        runs: Vec::new(),
        run_customers: String::new(),
        run_error: None,
        notice: None,
    })
}

#[derive(Deserialize)]
struct Created {
    id: i64,
}

/// `POST /console/workflows`: import the YAML as a new workflow (a draft).
pub async fn create(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let yaml = raw_field(&form, "yaml");
    let r = wf::import_yaml(
        State(state),
        c.user.clone(),
        ApiJson(arg(json!({"yaml": yaml}))?),
    )
    .await;
    match data::<_, Created>(r) {
        Ok(w) => see_other(&format!("/console/workflows/{}?done=created", w.id)),
        Err(e) if is_refusal(&e) => reshow(
            e.status(),
            &EditorPage {
                problems: problems_of(&e),
                c,
                w: None,
                yaml,
                examples: examples(),
                chosen: String::new(),
                runs: Vec::new(),
                run_customers: String::new(),
                run_error: None,
                notice: None,
            },
        ),
        Err(e) => Err(e.into()),
    }
}

/// A field as posted (not trimmed: YAML's indentation matters).
fn raw_field(form: &Form, name: &str) -> String {
    form.0
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default()
}

async fn workflow(state: &AppState, c: &Chrome, id: i64) -> Result<Workflow, ApiError> {
    data(wf::get_workflow(State(state.clone()), c.user.clone(), ApiPath(id)).await)
}

async fn recent_runs(state: &AppState, c: &Chrome, workflow_id: i64) -> Result<Vec<Run>, ApiError> {
    let l: Listed<Run> = data(
        wf::list_runs(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"workflowId": workflow_id, "size": 10}))?),
        )
        .await,
    )?;
    Ok(l.list)
}

#[allow(clippy::too_many_arguments)]
async fn editor(
    state: &AppState,
    c: Chrome,
    id: i64,
    yaml: Option<String>,
    problems: Vec<(String, String)>,
    status: StatusCode,
    run: (String, Option<String>),
    notice: Option<String>,
) -> PageResult {
    let w = workflow(state, &c, id).await?;
    let yaml = match yaml {
        Some(y) => y,
        None => {
            #[derive(Deserialize)]
            struct Exported {
                yaml: String,
            }
            let e: Exported = data(
                wf::export_yaml(
                    State(state.clone()),
                    c.user.clone(),
                    ApiPath(id),
                    ApiQuery(arg(json!({}))?),
                )
                .await,
            )?;
            e.yaml
        }
    };
    let runs = recent_runs(state, &c, id).await?;
    reshow(
        status,
        &EditorPage {
            c,
            w: Some(w),
            yaml,
            problems,
            examples: Vec::new(),
            chosen: String::new(),
            runs,
            run_customers: run.0,
            run_error: run.1,
            notice,
        },
    )
}

/// `GET /console/workflows/{id}`: the workflow, its YAML, runs and the buttons.
pub async fn detail(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notice = query_param(raw.as_deref(), "done").map(|d| done_label(&c.l, &d));
    let refused = query_param(raw.as_deref(), "error");
    let problems = refused
        .map(|e| vec![(String::new(), e)])
        .unwrap_or_default();
    editor(
        &state,
        c,
        id,
        None,
        problems,
        StatusCode::OK,
        (String::new(), None),
        notice,
    )
    .await
}

/// `POST /console/workflows/{id}` (action save | publish | disable | delete).
pub async fn update(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let action = form.get("action").unwrap_or_else(|| "save".into());
    let back = |code: &str| see_other(&format!("/console/workflows/{id}?done={code}"));
    let refused = |e: &ApiError| {
        let msg: String =
            url::form_urlencoded::byte_serialize(super::explain(e).as_bytes()).collect();
        see_other(&format!("/console/workflows/{id}?error={msg}"))
    };
    let user = c.user.clone();
    let r = match action.as_str() {
        "publish" => wf::publish_workflow(State(state.clone()), user, ApiPath(id)).await,
        "disable" => wf::disable_workflow(State(state.clone()), user, ApiPath(id)).await,
        "delete" => {
            data::<_, Value>(wf::delete_workflow(State(state), user, ApiPath(id)).await)?;
            return see_other("/console/workflows?done=deleted");
        }
        _ => {
            let yaml = raw_field(&form, "yaml");
            let r = wf::import_yaml(
                State(state.clone()),
                user,
                ApiJson(arg(json!({"yaml": yaml, "workflowId": id}))?),
            )
            .await;
            return match data::<_, Value>(r) {
                Ok(_) => back("saved"),
                Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => {
                    let status = e.status();
                    editor(
                        &state,
                        c,
                        id,
                        Some(yaml),
                        problems_of(&e),
                        status,
                        (String::new(), None),
                        None,
                    )
                    .await
                }
                Err(e) => Err(e.into()),
            };
        }
    };
    match data::<_, Value>(r) {
        Ok(_) => back(if action == "publish" {
            "published"
        } else {
            "disabled"
        }),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => refused(&e),
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/workflows/{id}/runs`: start the published version for customers.
pub async fn start_runs(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let typed = form.get("customerIds").unwrap_or_default();
    let r = wf::start_manual(
        State(state.clone()),
        c.user.clone(),
        ApiPath(id),
        ApiJson(arg(json!({"customerIds": form.ids("customerIds")}))?),
    )
    .await;
    match data::<_, Value>(r) {
        Ok(v) => {
            let n = v["runIds"].as_array().map(Vec::len).unwrap_or(0);
            see_other(&format!(
                "/console/workflow-runs?workflowId={id}&started={n}"
            ))
        }
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => {
            let status = e.status();
            let msg = super::explain(&e);
            editor(
                &state,
                c,
                id,
                None,
                Vec::new(),
                status,
                (typed, Some(msg)),
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs.

#[derive(Template)]
#[template(path = "console/workflow_runs.html")]
struct RunsPage {
    c: Chrome,
    runs: Vec<Run>,
    workflow_id: Option<i64>,
    customer_id: Option<i64>,
    status: Option<i64>,
    total: i64,
    page: i64,
    pages: i64,
    notice: Option<String>,
    error: Option<String>,
}

impl RunsPage {
    pub fn pager_query(&self) -> String {
        let s = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        super::query_prefix(&[
            ("workflowId", &s(self.workflow_id)),
            ("customerId", &s(self.customer_id)),
            ("status", &s(self.status)),
        ])
    }

    pub fn is_status(&self, s: &i64) -> bool {
        self.status == Some(*s)
    }

    pub fn statuses(&self) -> Vec<(i64, &'static str)> {
        let l = &self.c.l;
        vec![
            (0, l.t("待执行", "pending")),
            (1, l.t("执行中", "running")),
            (5, l.t("暂停中", "paused")),
            (2, l.t("已完成", "done")),
            (3, l.t("失败", "failed")),
            (4, l.t("已取消", "cancelled")),
        ]
    }

    pub fn workflow_value(&self) -> String {
        self.workflow_id.map(|v| v.to_string()).unwrap_or_default()
    }

    pub fn customer_value(&self) -> String {
        self.customer_id.map(|v| v.to_string()).unwrap_or_default()
    }
}

/// `GET /console/workflow-runs?workflowId=&customerId=&status=&page=`.
pub async fn runs(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let raw = raw.as_deref();
    let int = |name: &str| query_param(raw, name).and_then(|v| v.parse::<i64>().ok());
    let (workflow_id, customer_id, status) = (int("workflowId"), int("customerId"), int("status"));
    let page = page_param(raw);
    let listed: Listed<Run> = data(
        wf::list_runs(
            State(state),
            c.user.clone(),
            ApiQuery(arg(json!({
                "workflowId": workflow_id, "customerId": customer_id, "status": status,
                "page": page, "size": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    let notice = match (query_param(raw, "done"), query_param(raw, "started")) {
        (Some(n), _) => Some(format!("{} {n}", c.l.t("已处理", "Runs changed:"))),
        (_, Some(n)) => Some(format!("{} {n}", c.l.t("已开始运行", "Runs started:"))),
        _ => None,
    };
    super::page(&RunsPage {
        pages: pages_of(listed.total, PAGE_SIZE),
        total: listed.total,
        runs: listed.list,
        workflow_id,
        customer_id,
        status,
        page,
        notice,
        error: query_param(raw, "error"),
        c,
    })
}

#[derive(Template)]
#[template(path = "console/workflow_run.html")]
struct RunPage {
    c: Chrome,
    r: Run,
    live: bool,
}

/// `GET /console/workflow-runs/{id}`: a run and its step log.
pub async fn run_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let r: Run = data(wf::get_run(State(state), c.user.clone(), ApiPath(id)).await)?;
    let live = matches!(r.status, 0 | 1);
    super::page(&RunPage { c, r, live })
}

/// `POST /console/workflow-runs/control`: pause, resume or cancel the ticked runs, one by one
/// through the API; back to the list (`back`) with how many changed and why others did not.
pub async fn control(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let back = Back::of(&form, "/console/workflow-runs", "/console/workflow-runs");
    let ids = form.ids("ids");
    if ids.is_empty() || ids.len() > 100 {
        return back.error(c.l.t("请选择 1 到 100 个运行", "Choose 1 to 100 runs"));
    }
    let action = form.get("action").unwrap_or_default();
    let mut changed = 0;
    let mut refusals = Vec::new();
    for id in ids {
        let (s, u, p) = (State(state.clone()), c.user.clone(), ApiPath(id));
        let r = match action.as_str() {
            "pause" => wf::pause_run(s, u, p).await,
            "resume" => wf::resume_run(s, u, p).await,
            "cancel" => wf::cancel_run(s, u, p).await,
            _ => Err(ApiError::field("action", "must be pause, resume or cancel")),
        };
        match r {
            Ok(_) => changed += 1,
            Err(e @ ApiError::Internal(_)) => return Err(e.into()),
            Err(e) => refusals.push(format!("#{id}: {}", super::explain(&e))),
        }
    }
    back.done(changed, Some(&refusals.join("; ")))
}
