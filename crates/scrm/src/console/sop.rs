//! SOP pages (seed 000): the template list, the template builder (template type, trigger with
//! its tags or group chats, steps with their delay and action per step type), running a
//! template for customers or group chats, the executions (filtered by template and status,
//! paused / resumed / cancelled many at once) and an execution's step log.
//!
//! Every write is the SOP API's own handler, so validation and audit are the API's; a refused
//! builder keeps its input and shows each of the API's field errors beside its field (a step's
//! errors beside that step).

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::staff_picker::{By, Columns, NoneChoice, Spec, StaffPicker};
use super::{
    Back, Chrome, FieldErrors, Form, MaterialOption, PageError, PageResult, arg, data, is_refusal,
    material_options, page_param, pages_of, query_param, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::customers::tags::{self, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::operation::sop::routes as sop;
use crate::operation::sop::store;
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// Step types (seed 000) with their labels.
pub const STEP_TYPES: [(i64, &str, &str); 5] = [
    (1, "发送消息", "Send message"),
    (2, "打标签", "Tag"),
    (3, "推送素材", "Push material"),
    (4, "分配员工", "Assign to staff"),
    (5, "提醒员工", "Remind staff"),
];

/// Trigger types (seed 000) with their labels.
pub const TRIGGER_TYPES: [(i64, &str, &str); 4] = [
    (1, "添加好友", "Customer added"),
    (2, "打上标签", "Tag added"),
    (3, "加入群聊", "Joined a group chat"),
    (4, "手动执行", "Run by hand"),
];

/// A label from one of the type tables, in the page's language.
fn label_of(table: &[(i64, &'static str, &'static str)], l: &super::Lang, v: i64) -> String {
    table
        .iter()
        .find(|(k, _, _)| *k == v)
        .map(|(_, zh, en)| l.t(zh, en).to_string())
        .unwrap_or_else(|| v.to_string())
}

// ---------------------------------------------------------------------------------------------
// The template list.

/// A template as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SopTemplate {
    pub template_id: i64,
    pub template_name: String,
    pub template_type: i64,
    pub trigger_type: i64,
    pub status: i64,
    pub steps: Vec<Value>,
    pub update_time: String,
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
    total: i64,
    page: i64,
    pages: i64,
    notice: Option<String>,
}

impl SopPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }

    pub fn trigger_label(&self, t: &i64) -> String {
        label_of(&TRIGGER_TYPES, &self.c.l, *t)
    }
}

/// `GET /console/sop?page=`: the templates, a page at a time.
pub async fn sop_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let page = page_param(raw.as_deref());
    let templates: Listed<SopTemplate> = data(
        sop::list_templates(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": page, "pageSize": PAGE_SIZE}))?),
        )
        .await,
    )?;
    let notice = query_param(raw.as_deref(), "done").map(|d| match d.as_str() {
        "deleted" => c.l.t("已删除", "Deleted").to_string(),
        _ => c.l.t("已保存", "Saved").to_string(),
    });
    super::page(&SopPage {
        pages: pages_of(templates.total, PAGE_SIZE),
        total: templates.total,
        templates: templates.list,
        page,
        c,
        notice,
    })
}

// ---------------------------------------------------------------------------------------------
// The builder.

/// One step as the builder shows it.
#[derive(Clone)]
pub struct StepDraft {
    pub name: String,
    pub step_type: i64,
    pub delay: String,
    pub unit: String,
    /// Message text (send message, remind staff).
    pub content: String,
    /// A library material (send message: the attachment; push material: the material).
    pub material_id: Option<i64>,
    pub tag_ids: Vec<i64>,
    pub staff_id: Option<i64>,
}

impl Default for StepDraft {
    fn default() -> Self {
        StepDraft {
            name: String::new(),
            step_type: 1,
            delay: "0".into(),
            unit: "minute".into(),
            content: String::new(),
            material_id: None,
            tag_ids: Vec::new(),
            staff_id: None,
        }
    }
}

impl StepDraft {
    pub fn has_tag(&self, id: &i64) -> bool {
        self.tag_ids.contains(id)
    }

    pub fn is_material(&self, id: &i64) -> bool {
        self.material_id == Some(*id)
    }

    /// The API's `actionContent` for this step's type.
    fn action(&self) -> Value {
        let content = self.content.trim();
        match self.step_type {
            1 => match self.material_id {
                Some(m) => {
                    let mut d = json!({"materialId": m});
                    if !content.is_empty() {
                        d["text"] = json!(content);
                    }
                    json!({"messageContent": {"type": "MATERIAL", "data": d}})
                }
                None => json!({"content": content}),
            },
            2 => json!({"tagIds": self.tag_ids}),
            3 => match self.material_id {
                Some(m) => json!({"materialId": m}),
                None => json!({}),
            },
            4 => match self.staff_id {
                Some(s) => json!({"staffId": s}),
                None => json!({}),
            },
            _ => json!({"content": content}),
        }
    }

    /// A stored step read back into the builder.
    fn of(v: &Value) -> StepDraft {
        let a = &v["actionContent"];
        let step_type = v["stepType"].as_i64().unwrap_or(1);
        let mc = &a["messageContent"];
        let content = a["content"]
            .as_str()
            .or_else(|| mc["data"]["text"].as_str())
            .unwrap_or_default()
            .to_string();
        let material_id = a["materialId"]
            .as_i64()
            .or_else(|| mc["data"]["materialId"].as_i64());
        StepDraft {
            name: v["stepName"].as_str().unwrap_or_default().to_string(),
            step_type,
            delay: v["delayTime"].as_i64().unwrap_or(0).to_string(),
            unit: v["delayUnit"].as_str().unwrap_or("minute").to_string(),
            content,
            material_id,
            tag_ids: a["tagIds"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            staff_id: a["staffId"].as_i64(),
        }
    }
}

/// The builder's whole form.
pub struct TemplateDraft {
    pub name: String,
    pub template_type: i64,
    pub trigger_type: i64,
    pub description: String,
    pub enabled: bool,
    pub trigger_tags: Vec<i64>,
    /// Group chat ids for trigger 3, as typed (a comma list).
    pub trigger_groups: String,
    pub steps: Vec<StepDraft>,
}

impl Default for TemplateDraft {
    fn default() -> Self {
        TemplateDraft {
            name: String::new(),
            template_type: 1,
            trigger_type: 4,
            description: String::new(),
            enabled: true,
            trigger_tags: Vec::new(),
            trigger_groups: String::new(),
            steps: vec![StepDraft::default()],
        }
    }
}

impl TemplateDraft {
    pub fn has_trigger_tag(&self, id: &i64) -> bool {
        self.trigger_tags.contains(id)
    }

    /// The posted builder: `step.<i>.<field>` for each of `stepCount` steps.
    fn parse(form: &Form) -> TemplateDraft {
        let count = form
            .get("stepCount")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1)
            .min(50);
        let steps = (0..count)
            .map(|i| {
                let f = |name: &str| form.get(&format!("step.{i}.{name}"));
                StepDraft {
                    name: f("name").unwrap_or_default(),
                    step_type: f("type").and_then(|t| t.parse().ok()).unwrap_or(1),
                    delay: f("delay").unwrap_or_else(|| "0".into()),
                    unit: f("unit").unwrap_or_else(|| "minute".into()),
                    content: f("content").unwrap_or_default(),
                    material_id: f("materialId").and_then(|m| m.parse().ok()),
                    tag_ids: form.ids(&format!("step.{i}.tagIds")),
                    staff_id: f("staffId").and_then(|s| s.parse().ok()),
                }
            })
            .collect();
        TemplateDraft {
            name: form.get("templateName").unwrap_or_default(),
            template_type: form
                .get("templateType")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1),
            trigger_type: form
                .get("triggerType")
                .and_then(|t| t.parse().ok())
                .unwrap_or(4),
            description: form.get("description").unwrap_or_default(),
            enabled: form.get("enabled").is_some(),
            trigger_tags: form.ids("triggerTagIds"),
            trigger_groups: form.get("triggerGroupIds").unwrap_or_default(),
            steps,
        }
    }

    /// A stored template read back into the builder.
    fn of(v: &Value) -> TemplateDraft {
        let cfg = &v["triggerConfig"];
        let ids = |key: &str| -> Vec<i64> {
            cfg[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default()
        };
        TemplateDraft {
            name: v["templateName"].as_str().unwrap_or_default().to_string(),
            template_type: v["templateType"].as_i64().unwrap_or(1),
            trigger_type: v["triggerType"].as_i64().unwrap_or(4),
            description: v["description"].as_str().unwrap_or_default().to_string(),
            enabled: v["status"].as_i64() == Some(1),
            trigger_tags: ids("tagIds"),
            trigger_groups: ids("groupIds")
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            steps: v["steps"]
                .as_array()
                .map(|s| s.iter().map(StepDraft::of).collect())
                .unwrap_or_default(),
        }
    }

    /// The API's body, or the steps whose delay is not a whole number (the one check the page
    /// makes itself: a number field the API could not even parse).
    fn body(&self) -> Result<Value, FieldErrors> {
        let mut bad = Vec::new();
        let steps: Vec<Value> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let delay = s.delay.trim().parse::<i64>().unwrap_or_else(|_| {
                    bad.push((
                        format!("steps[{i}].delayTime"),
                        format!("steps[{i}].delayTime: must be a whole number"),
                    ));
                    0
                });
                let mut step = json!({
                    "stepType": s.step_type,
                    "delayTime": delay,
                    "delayUnit": s.unit,
                    "actionContent": s.action(),
                });
                if !s.name.trim().is_empty() {
                    step["stepName"] = json!(s.name.trim());
                }
                step
            })
            .collect();
        if !bad.is_empty() {
            return Err(FieldErrors(bad));
        }
        let trigger_config = match self.trigger_type {
            2 if !self.trigger_tags.is_empty() => json!({"tagIds": self.trigger_tags}),
            3 => {
                let groups = super::ids_of(std::iter::once(self.trigger_groups.as_str()));
                if groups.is_empty() {
                    json!({})
                } else {
                    json!({"groupIds": groups})
                }
            }
            _ => json!({}),
        };
        Ok(json!({
            "templateName": self.name,
            "templateType": self.template_type,
            "triggerType": self.trigger_type,
            "description": (!self.description.is_empty()).then_some(&self.description),
            "triggerConfig": trigger_config,
            "status": if self.enabled { 1 } else { 0 },
            "steps": steps,
        }))
    }
}

/// The API's refusal by its exact field (`steps[0].actionContent`), `""` for the whole form.
fn sop_problems(e: &ApiError) -> FieldErrors {
    match e {
        ApiError::Validation { fields, .. } if !fields.is_empty() => FieldErrors(
            fields
                .iter()
                .map(|f| (f.field.clone(), f.message.clone()))
                .collect(),
        ),
        ApiError::Validation { message, .. } => FieldErrors(vec![(String::new(), message.clone())]),
        other => FieldErrors(vec![(String::new(), other.to_string())]),
    }
}

#[derive(Template)]
#[template(path = "console/sop_template.html")]
struct BuilderPage {
    c: Chrome,
    /// None for a new template.
    id: Option<i64>,
    d: TemplateDraft,
    tags: Vec<TagRow>,
    /// Each step's staff picker (HTML; empty for a step that assigns nobody).
    staff_pickers: Vec<String>,
    materials: Vec<MaterialOption>,
    errors: FieldErrors,
    /// What the run form was given, and the API's refusal of it.
    run_targets: String,
    run_error: Option<String>,
    notice: Option<String>,
}

impl BuilderPage {
    /// Whether this user may save the form (create, or change an existing template).
    pub fn editable(&self) -> bool {
        self.c.can(if self.id.is_some() {
            perm::SOP_TEMPLATE_UPDATE
        } else {
            perm::SOP_TEMPLATE_CREATE
        })
    }

    /// Where the builder posts to.
    pub fn action(&self) -> String {
        match self.id {
            Some(i) => format!("/console/sop/templates/{i}"),
            None => "/console/sop/templates".into(),
        }
    }

    /// The API's problems with one field of step `i` (`delayTime`, `actionContent`, …).
    pub fn step_err(&self, i: &usize, field: &str) -> Option<String> {
        self.errors.get(&format!("steps[{i}].{field}"))
    }

    /// Step `i`'s staff picker (HTML).
    pub fn staff_picker(&self, i: &usize) -> &str {
        self.staff_pickers.get(*i).map_or("", String::as_str)
    }

    pub fn step_types(&self) -> Vec<(i64, String)> {
        STEP_TYPES
            .iter()
            .map(|(k, zh, en)| (*k, self.c.l.t(zh, en).to_string()))
            .collect()
    }

    pub fn trigger_types(&self) -> Vec<(i64, String)> {
        TRIGGER_TYPES
            .iter()
            .map(|(k, zh, en)| (*k, self.c.l.t(zh, en).to_string()))
            .collect()
    }
}

/// Each assign step's staff picker: the chosen member, a few suggestions and a search box (a
/// company's staff are never all loaded). Other steps get none.
async fn staff_pickers(
    state: &AppState,
    c: &Chrome,
    d: &TemplateDraft,
) -> Result<Vec<String>, PageError> {
    let mut out = Vec::with_capacity(d.steps.len());
    for (i, s) in d.steps.iter().enumerate() {
        if s.step_type != 4 {
            out.push(String::new());
            continue;
        }
        let spec = Spec {
            field: format!("step.{i}.staffId"),
            dom: format!("step-{i}-staff"),
            by: By::Id,
            multiple: false,
            none: Some(NoneChoice::Dash),
            suggest: true,
            columns: Columns::None,
        };
        let chosen: Vec<String> = s.staff_id.iter().map(i64::to_string).collect();
        out.push(
            StaffPicker::build(state, c, spec, &chosen, "")
                .await?
                .html()?,
        );
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn builder(
    state: &AppState,
    c: Chrome,
    id: Option<i64>,
    d: TemplateDraft,
    errors: FieldErrors,
    status: StatusCode,
    run: (String, Option<String>),
    notice: Option<String>,
) -> PageResult {
    let tags = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
    let staff_pickers = staff_pickers(state, &c, &d).await?;
    let materials = material_options(state, &c.user).await?;
    reshow(
        status,
        &BuilderPage {
            c,
            id,
            d,
            tags,
            staff_pickers,
            materials,
            errors,
            run_targets: run.0,
            run_error: run.1,
            notice,
        },
    )
}

/// `GET /console/sop/new`: an empty builder with one step.
pub async fn new_template(State(state): State<AppState>, c: Chrome) -> PageResult {
    builder(
        &state,
        c,
        None,
        TemplateDraft::default(),
        FieldErrors::default(),
        StatusCode::OK,
        (String::new(), None),
        None,
    )
    .await
}

async fn stored(state: &AppState, c: &Chrome, id: i64) -> Result<TemplateDraft, ApiError> {
    let v = sop::view_of(state, c.user.tenant_id, id).await?;
    Ok(TemplateDraft::of(&v))
}

/// `GET /console/sop/templates/{id}`: the builder with the stored template, and the run form.
pub async fn template_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let d = stored(&state, &c, id).await?;
    let notice = query_param(raw.as_deref(), "done").map(|d| match d.as_str() {
        "created" => c.l.t("已创建", "Created").to_string(),
        _ => c.l.t("已保存", "Saved").to_string(),
    });
    builder(
        &state,
        c,
        Some(id),
        d,
        FieldErrors::default(),
        StatusCode::OK,
        (String::new(), None),
        notice,
    )
    .await
}

/// What a builder post asks for: save it, or change the form (add / remove a step, another
/// step type) and show it again.
enum Edit {
    Save,
    Delete,
    Refresh,
    AddStep,
    RemoveStep(usize),
}

fn edit_of(form: &Form) -> Edit {
    match form.get("action").as_deref() {
        Some("delete") => Edit::Delete,
        Some("refresh") => Edit::Refresh,
        Some("add-step") => Edit::AddStep,
        Some(a) => match a.strip_prefix("remove-") {
            Some(i) => i.parse().map(Edit::RemoveStep).unwrap_or(Edit::Refresh),
            None => Edit::Save,
        },
        None => Edit::Save,
    }
}

/// A builder post that only changes the form: the form shown again, nothing stored.
async fn rework(
    state: &AppState,
    c: Chrome,
    id: Option<i64>,
    mut d: TemplateDraft,
    edit: Edit,
) -> PageResult {
    match edit {
        Edit::AddStep if d.steps.len() < 50 => d.steps.push(StepDraft {
            delay: "1".into(),
            unit: "day".into(),
            ..StepDraft::default()
        }),
        Edit::RemoveStep(i) if i < d.steps.len() && d.steps.len() > 1 => {
            d.steps.remove(i);
        }
        _ => {}
    }
    builder(
        state,
        c,
        id,
        d,
        FieldErrors::default(),
        StatusCode::OK,
        (String::new(), None),
        None,
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    template_id: i64,
}

/// `POST /console/sop/templates`: create (or rework the form).
pub async fn create_template(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let d = TemplateDraft::parse(&form);
    match edit_of(&form) {
        Edit::Save | Edit::Delete => {}
        edit => return rework(&state, c, None, d, edit).await,
    }
    if !c.can(perm::SOP_TEMPLATE_CREATE) {
        return Err(ApiError::Forbidden(perm::SOP_TEMPLATE_CREATE.into()).into());
    }
    let body = match d.body() {
        Ok(b) => b,
        Err(errors) => {
            return builder(
                &state,
                c,
                None,
                d,
                errors,
                StatusCode::BAD_REQUEST,
                (String::new(), None),
                None,
            )
            .await;
        }
    };
    let r = sop::create_template(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await;
    match data::<_, Saved>(r) {
        Ok(s) => see_other(&format!(
            "/console/sop/templates/{}?done=created",
            s.template_id
        )),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            builder(
                &state,
                c,
                None,
                d,
                sop_problems(&e),
                status,
                (String::new(), None),
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /console/sop/templates/{id}`: save, delete (or rework the form).
pub async fn update_template(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let d = TemplateDraft::parse(&form);
    match edit_of(&form) {
        Edit::Save => {}
        Edit::Delete => {
            if !c.can(perm::SOP_TEMPLATE_DELETE) {
                return Err(ApiError::Forbidden(perm::SOP_TEMPLATE_DELETE.into()).into());
            }
            data::<_, Value>(sop::delete_template(State(state), c.user, ApiPath(id)).await)?;
            return see_other("/console/sop?done=deleted");
        }
        edit => return rework(&state, c, Some(id), d, edit).await,
    }
    if !c.can(perm::SOP_TEMPLATE_UPDATE) {
        return Err(ApiError::Forbidden(perm::SOP_TEMPLATE_UPDATE.into()).into());
    }
    let body = match d.body() {
        Ok(b) => b,
        Err(errors) => {
            return builder(
                &state,
                c,
                Some(id),
                d,
                errors,
                StatusCode::BAD_REQUEST,
                (String::new(), None),
                None,
            )
            .await;
        }
    };
    let r = sop::update_template(
        State(state.clone()),
        c.user.clone(),
        ApiPath(id),
        ApiJson(arg(body)?),
    )
    .await;
    match data::<_, Value>(r) {
        Ok(_) => see_other(&format!("/console/sop/templates/{id}?done=saved")),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound(_)) => {
            let status = e.status();
            builder(
                &state,
                c,
                Some(id),
                d,
                sop_problems(&e),
                status,
                (String::new(), None),
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    execution_ids: Vec<i64>,
}

/// `POST /console/sop/templates/{id}/execute`: run the template for the given targets.
pub async fn execute(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let typed = form.get("targetIds").unwrap_or_default();
    let ids = form.ids("targetIds");
    let r = sop::execute(
        State(state.clone()),
        c.user.clone(),
        ApiJson(arg(json!({"templateId": id, "targetIds": ids}))?),
    )
    .await;
    match data::<_, Started>(r) {
        Ok(s) if s.execution_ids.len() == 1 => {
            see_other(&format!("/console/sop/executions/{}", s.execution_ids[0]))
        }
        Ok(s) => see_other(&format!(
            "/console/sop/executions?templateId={id}&started={}",
            s.execution_ids.len()
        )),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound("SOP template")) => {
            let status = e.status();
            let d = stored(&state, &c, id).await?;
            builder(
                &state,
                c,
                Some(id),
                d,
                FieldErrors::default(),
                status,
                (typed, Some(super::explain(&e))),
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Executions.

/// A step of an execution's log, as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepLog {
    pub step_order: i64,
    pub step_name: String,
    pub step_type: i64,
    pub due_at: String,
    pub status: i64,
    pub msgid: Option<String>,
    pub result: Option<Value>,
    pub executed_at: Option<String>,
}

impl StepLog {
    pub fn status_label(&self, l: &super::Lang) -> &'static str {
        match self.status {
            0 => l.t("等待", "pending"),
            1 => l.t("执行中", "running"),
            2 => l.t("已完成", "done"),
            3 => l.t("失败", "failed"),
            4 => l.t("已取消", "cancelled"),
            _ => l.t("已跳过", "skipped"),
        }
    }

    pub fn result_text(&self) -> String {
        self.result
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
    }
}

/// An execution as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SopExecution {
    pub execution_id: i64,
    pub template_id: i64,
    pub target_type: i64,
    pub target_id: i64,
    pub trigger_type: i64,
    pub status: i64,
    pub current_step: i64,
    pub total_steps: i64,
    pub triggered_at: String,
    pub paused_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepLog>,
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

    /// The target's console page.
    pub fn target_href(&self) -> String {
        if self.target_type == 2 {
            format!("/console/group-chats/{}", self.target_id)
        } else {
            format!("/console/customers/{}", self.target_id)
        }
    }
}

/// Template names by id, for the templates of the executions shown.
async fn template_names(
    state: &AppState,
    tenant_id: i64,
    ids: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, String>, ApiError> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Some(t) = store::get_template(&state.db, tenant_id, id).await? {
            out.insert(id, t.template_name);
        }
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "console/sop_executions.html")]
struct ExecutionsPage {
    c: Chrome,
    executions: Vec<SopExecution>,
    names: HashMap<i64, String>,
    /// Templates for the filter (the newest 100; a template id in the query works for any).
    templates: Vec<SopTemplate>,
    template_id: Option<i64>,
    status: Option<i64>,
    total: i64,
    page: i64,
    pages: i64,
    notice: Option<String>,
    error: Option<String>,
}

impl ExecutionsPage {
    pub fn pager_query(&self) -> String {
        let t = self.template_id.map(|t| t.to_string()).unwrap_or_default();
        let s = self.status.map(|s| s.to_string()).unwrap_or_default();
        super::query_prefix(&[("templateId", &t), ("status", &s)])
    }

    pub fn name_of(&self, id: &i64) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub fn is_status(&self, s: &i64) -> bool {
        self.status == Some(*s)
    }

    /// The filter's template when it is not among the templates offered.
    pub fn unlisted_template(&self) -> Option<i64> {
        self.template_id
            .filter(|t| !self.templates.iter().any(|x| x.template_id == *t))
    }

    pub fn is_template(&self, t: &i64) -> bool {
        self.template_id == Some(*t)
    }

    pub fn statuses(&self) -> Vec<(i64, &'static str)> {
        let l = &self.c.l;
        vec![
            (0, l.t("执行中", "running")),
            (2, l.t("已暂停", "paused")),
            (1, l.t("已完成", "done")),
            (3, l.t("失败", "failed")),
            (4, l.t("已取消", "cancelled")),
        ]
    }
}

/// `GET /console/sop/executions?templateId=&status=&page=`.
pub async fn executions_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let raw = raw.as_deref();
    let template_id = query_param(raw, "templateId").and_then(|t| t.parse::<i64>().ok());
    let status = query_param(raw, "status").and_then(|s| s.parse::<i64>().ok());
    let page = page_param(raw);
    let listed: Listed<SopExecution> = data(
        sop::list_executions(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({
                "templateId": template_id, "status": status, "page": page, "pageSize": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    let templates: Listed<SopTemplate> = data(
        sop::list_templates(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"pageSize": 100}))?),
        )
        .await,
    )?;
    let names = template_names(
        &state,
        c.user.tenant_id,
        listed.list.iter().map(|e| e.template_id),
    )
    .await?;
    let notice = if let Some(n) = query_param(raw, "done") {
        Some(format!(
            "{} {n}",
            c.l.t("已处理执行数", "Executions changed:")
        ))
    } else {
        query_param(raw, "started")
            .map(|n| format!("{} {n}", c.l.t("已开始执行", "Executions started:")))
    };
    super::page(&ExecutionsPage {
        pages: pages_of(listed.total, PAGE_SIZE),
        total: listed.total,
        executions: listed.list,
        names,
        templates: templates.list,
        template_id,
        status,
        page,
        notice,
        error: query_param(raw, "error"),
        c,
    })
}

#[derive(Template)]
#[template(path = "console/sop_execution.html")]
struct ExecutionPage {
    c: Chrome,
    e: SopExecution,
    template_name: String,
    live: bool,
}

impl ExecutionPage {
    pub fn step_type_label(&self, t: &i64) -> String {
        label_of(&STEP_TYPES, &self.c.l, *t)
    }

    pub fn trigger_label(&self) -> String {
        label_of(&TRIGGER_TYPES, &self.c.l, self.e.trigger_type)
    }
}

/// `GET /console/sop/executions/{id}`: an execution and its step log (refreshing itself while
/// it runs).
pub async fn execution_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let row = store::execution(&state.db, id)
        .await?
        .filter(|e| e.tenant_id == c.user.tenant_id)
        .ok_or(ApiError::NotFound("SOP execution"))?;
    // The API's own list, narrowed to this execution's template and its page: the view is
    // exactly the API's (steps included).
    let found = find_execution(&state, &c, row.template_id, id).await?;
    let e = found.ok_or(ApiError::NotFound("SOP execution"))?;
    let template_name = template_names(&state, c.user.tenant_id, std::iter::once(e.template_id))
        .await?
        .remove(&e.template_id)
        .unwrap_or_else(|| format!("#{}", e.template_id));
    let live = matches!(e.status, 0) || e.steps.iter().any(|s| s.status == 1);
    super::page(&ExecutionPage {
        c,
        e,
        template_name,
        live,
    })
}

/// One execution as the API's list shows it. The list is newest first by id, so the
/// execution's position among its template's executions with a larger id gives its page.
async fn find_execution(
    state: &AppState,
    c: &Chrome,
    template_id: i64,
    id: i64,
) -> Result<Option<SopExecution>, ApiError> {
    let newer = state
        .db
        .fetch_i64(
            scrm_db::query(
                "SELECT COUNT(*) FROM sop_execution WHERE tenant_id = ? AND template_id = ? AND id > ?",
            )
            .bind(c.user.tenant_id)
            .bind(template_id)
            .bind(id),
        )
        .await?;
    let size = 100;
    let listed: Listed<SopExecution> = data(
        sop::list_executions(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(
                json!({"templateId": template_id, "page": newer / size + 1, "pageSize": size}),
            )?),
        )
        .await,
    )?;
    Ok(listed.list.into_iter().find(|e| e.execution_id == id))
}

#[derive(Deserialize)]
struct Affected {
    affected: i64,
}

/// `POST /console/sop/control`: pause, resume or cancel the ticked executions (the API's own);
/// back to the list it came from (`back`, a console path).
pub async fn sop_control(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let back = Back::of(&form, "/console/sop/", "/console/sop/executions");
    let body = json!({
        "executionIds": form.ids("ids"),
        "action": form.get("action"),
    });
    let r = sop::control_executions(State(state), c.user, ApiJson(arg(body)?)).await;
    match data::<_, Affected>(r) {
        Ok(a) => back.done(a.affected, None),
        Err(e @ ApiError::Internal(_)) => Err(e.into()),
        Err(e) => back.error(&super::explain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_form_becomes_the_apis_body_and_back() {
        let form = Form(
            [
                ("templateName", "回访"),
                ("templateType", "1"),
                ("triggerType", "2"),
                ("triggerTagIds", "7"),
                ("enabled", "1"),
                ("stepCount", "3"),
                ("step.0.type", "1"),
                ("step.0.delay", "0"),
                ("step.0.unit", "minute"),
                ("step.0.content", "您好"),
                ("step.0.materialId", "9"),
                ("step.1.type", "2"),
                ("step.1.delay", "2"),
                ("step.1.unit", "day"),
                ("step.1.tagIds", "3"),
                ("step.1.tagIds", "4"),
                ("step.2.type", "5"),
                ("step.2.delay", "x"),
                ("step.2.unit", "hour"),
                ("step.2.content", "跟进"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let mut d = TemplateDraft::parse(&form);
        let bad = d.body().unwrap_err();
        assert!(bad.get("steps[2].delayTime").is_some());
        d.steps[2].delay = "3".into();
        let b = d.body().unwrap();
        assert_eq!(b["triggerConfig"], json!({"tagIds": [7]}));
        assert_eq!(b["status"], 1);
        assert_eq!(
            b["steps"][0]["actionContent"],
            json!({"messageContent": {"type": "MATERIAL", "data": {"materialId": 9, "text": "您好"}}})
        );
        assert_eq!(b["steps"][1]["actionContent"], json!({"tagIds": [3, 4]}));
        assert_eq!(b["steps"][2]["delayUnit"], "hour");
        // What the API stores comes back into the same form.
        let stored = json!({"templateName": "回访", "templateType": 1, "triggerType": 2,
            "triggerConfig": {"tagIds": [7]}, "status": 1, "steps": b["steps"]});
        let again = TemplateDraft::of(&stored);
        assert_eq!(again.body().unwrap()["steps"], b["steps"]);
        assert!(again.has_trigger_tag(&7));
    }
}
