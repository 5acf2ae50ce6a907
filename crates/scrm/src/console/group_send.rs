//! The group-send assistant (群发助手, seed 004): the create form (sender account, targets by
//! tags or customers with a live count, a text message, an optional schedule), the task list,
//! and a task's page with live progress and per-customer results filterable by status.
//!
//! Creating a task goes through the API's own create handler, so the form shows the API's
//! validation next to the field it names.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, Form, Lang, PageResult, arg, data, html, ids_of, see_other};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::customers::tags::{self, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::operation::group_send as api;
use crate::operation::mass::store::{self, Target};
use crate::state::AppState;

/// A status in the page's language.
pub fn label(l: &Lang, status: &str) -> &'static str {
    match status {
        "PENDING" => l.t("待发送", "pending"),
        "PROCESSING" => l.t("发送中", "sending"),
        "COMPLETED" => l.t("已完成", "completed"),
        "PARTIAL_SUCCESS" => l.t("部分成功", "partly sent"),
        "FAILED" => l.t("失败", "failed"),
        "CANCELLED" => l.t("已取消", "cancelled"),
        "SUCCESS" => l.t("成功", "sent"),
        _ => l.t("其他", "other"),
    }
}

fn is_final(status: &str) -> bool {
    matches!(
        status,
        "COMPLETED" | "PARTIAL_SUCCESS" | "FAILED" | "CANCELLED"
    )
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub group_send_task_id: i64,
    pub task_name: Option<String>,
    pub sender_account_name: Option<String>,
    pub target_count: i64,
    pub success_count: i64,
    pub status: String,
    pub scheduled_time: Option<String>,
    pub create_time: String,
}

#[derive(Deserialize)]
struct TaskPage {
    records: Vec<TaskRecord>,
    total: i64,
    pages: i64,
    current: i64,
}

#[derive(Template)]
#[template(path = "console/group_sends.html")]
struct ListPage {
    c: Chrome,
    tasks: Vec<TaskRecord>,
    total: i64,
    page: i64,
    pages: i64,
    status: String,
    statuses: Vec<&'static str>,
}

/// `GET /console/group-send?status&page`.
pub async fn list(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let q = query_pairs(raw.as_deref());
    let status = param(&q, "status").unwrap_or_default();
    let page: i64 = param(&q, "page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let p: TaskPage = data(
        api::list_tasks(
            State(state),
            c.user.clone(),
            ApiQuery(arg(json!({"status": status, "page": page, "size": 20}))?),
        )
        .await,
    )?;
    super::page(&ListPage {
        c,
        tasks: p.records,
        total: p.total,
        page: p.current,
        pages: p.pages,
        status,
        statuses: vec![
            "PENDING",
            "PROCESSING",
            "COMPLETED",
            "PARTIAL_SUCCESS",
            "FAILED",
            "CANCELLED",
        ],
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub account_id: String,
    pub account_name: String,
    pub status: String,
}

/// What the form was filled with, shown again when the API refuses it.
#[derive(Default)]
pub struct Draft {
    pub task_name: String,
    pub sender: String,
    pub tag_ids: Vec<i64>,
    pub customer_ids: String,
    pub text: String,
    pub scheduled: String,
    /// TEXT, MATERIAL, IMAGE or LINK: what goes with the text.
    pub msg_type: String,
    pub material_id: Option<i64>,
    pub pic_url: String,
    pub link_title: String,
    pub link_url: String,
    pub link_desc: String,
}

impl Draft {
    pub fn is_type(&self, t: &str) -> bool {
        self.msg_type == t || (self.msg_type.is_empty() && t == "TEXT")
    }

    pub fn is_material(&self, id: &i64) -> bool {
        self.material_id == Some(*id)
    }

    /// The API's `messageContent`: the text plus the picked material, image or link.
    fn content(&self) -> Value {
        let text = Some(&self.text).filter(|t| !t.is_empty());
        match self.msg_type.as_str() {
            "MATERIAL" => {
                json!({"type": "MATERIAL", "data": {"materialId": self.material_id, "text": text}})
            }
            "IMAGE" => json!({"type": "IMAGE", "data": {"pic_url": self.pic_url, "text": text}}),
            "LINK" => json!({"type": "LINK", "data": {
                "title": self.link_title, "url": self.link_url,
                "desc": Some(&self.link_desc).filter(|d| !d.is_empty()), "text": text}}),
            _ => json!({"type": "TEXT", "data": {"text": self.text}}),
        }
    }

    pub fn has_tag(&self, id: &i64) -> bool {
        self.tag_ids.contains(id)
    }
}

#[derive(Template)]
#[template(path = "console/group_send_new.html")]
struct NewPage {
    c: Chrome,
    accounts: Vec<Account>,
    tags: Vec<TagRow>,
    materials: Vec<super::MaterialOption>,
    draft: Draft,
    /// The API's problems, by form field (`""` for the form as a whole).
    errors: Vec<(String, String)>,
}

impl NewPage {
    /// The problem with a form field, if the API named one.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

async fn new_page(
    state: &AppState,
    c: Chrome,
    draft: Draft,
    errors: Vec<(String, String)>,
) -> Result<NewPage, ApiError> {
    let accounts: Vec<Account> = if c.can(perm::GROUP_SEND_ACCOUNTS_VIEW) {
        data(api::accounts(State(state.clone()), c.user.clone()).await)?
    } else {
        Vec::new()
    };
    let tags = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
    let materials = super::material_options(state, &c.user).await?;
    Ok(NewPage {
        materials,
        c,
        accounts: accounts
            .into_iter()
            .filter(|a| a.status == "ACTIVE")
            .collect(),
        tags,
        draft,
        errors,
    })
}

/// `GET /console/group-send/new`.
pub async fn new_form(State(state): State<AppState>, c: Chrome) -> PageResult {
    super::page(&new_page(&state, c, Draft::default(), Vec::new()).await?)
}

/// `GET /console/group-send/count?tagIds&customerIds`: how many customers the target reaches
/// (not blacklisted, not deleted) — the form's live count.
pub async fn count(
    State(state): State<AppState>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = query_pairs(raw.as_deref());
    let pick = |name: &str| ids_of(q.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()));
    let target = Target {
        tag_ids: pick("tagIds"),
        customer_ids: pick("customerIds"),
        ..Default::default()
    };
    let n = store::count_sendable(&state.db, user.tenant_id, &target).await?;
    Ok(html(
        axum::http::StatusCode::OK,
        format!(r#"<span class="count" id="target-count-value">{n}</span>"#),
    ))
}

/// Which form field an API error is about.
fn field_of(e: &ApiError) -> Vec<(String, String)> {
    let general = |m: String| vec![(String::new(), m)];
    match e {
        ApiError::Validation { fields, message } if fields.is_empty() => {
            if message.contains("messageContent") || message.contains("data.text") {
                vec![("text".into(), message.clone())]
            } else {
                general(message.clone())
            }
        }
        // A sender that does not exist or cannot send now (OFFLINE / EXPIRED) is a refusal
        // naming the sender field, shown beside the sender select.
        ApiError::Validation { fields, .. } | ApiError::Refused { fields, .. }
            if !fields.is_empty() =>
        {
            fields
                .iter()
                .map(|f| {
                    let field = match f.field.as_str() {
                        s if s.starts_with("senderAccountId") => "sender",
                        "messageContent" => "text",
                        "scheduledTime" => "scheduled",
                        "taskName" => "taskName",
                        t if t.starts_with("target") => "target",
                        _ => "",
                    };
                    (field.to_string(), f.message.clone())
                })
                .collect()
        }
        ApiError::Domain { name, message, .. } => {
            let field = match *name {
                "SENDER_ACCOUNT_NOT_FOUND" => "sender",
                "TARGET_CUSTOMERS_EMPTY" => "target",
                "MESSAGE_CONTENT_INVALID" => "text",
                _ => "",
            };
            vec![(field.to_string(), message.clone())]
        }
        other => general(other.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    group_send_task_id: i64,
}

/// `POST /console/group-send`: the API's create; refused input comes back with the problems
/// next to their fields.
pub async fn create(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let draft = Draft {
        task_name: form.get("taskName").unwrap_or_default(),
        sender: form.get("senderAccountId").unwrap_or_default(),
        tag_ids: form.ids("tagIds"),
        customer_ids: form.get("customerIds").unwrap_or_default(),
        text: form
            .0
            .iter()
            .find(|(k, _)| k == "text")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        scheduled: form.get("scheduledTime").unwrap_or_default(),
        msg_type: form.get("msgType").unwrap_or_default(),
        material_id: form.ids("materialId").first().copied(),
        pic_url: form.get("picUrl").unwrap_or_default(),
        link_title: form.get("linkTitle").unwrap_or_default(),
        link_url: form.get("linkUrl").unwrap_or_default(),
        link_desc: form.get("linkDesc").unwrap_or_default(),
    };
    // A datetime-local field has minutes and no zone: the API reads a zoneless time as China time.
    let scheduled = match draft.scheduled.len() {
        0 => Value::Null,
        16 => json!(format!("{}:00", draft.scheduled)),
        _ => json!(draft.scheduled),
    };
    let body = json!({
        "taskName": Some(draft.task_name.clone()).filter(|n| !n.is_empty()),
        "senderAccountId": draft.sender,
        "target": {"tagIds": draft.tag_ids, "customerIds": ids_of(std::iter::once(draft.customer_ids.as_str()))},
        "messageContent": draft.content(),
        "scheduledTime": scheduled,
    });
    let r = api::create_task(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await;
    match data::<_, Created>(r) {
        Ok(t) => see_other(&format!("/console/group-send/{}", t.group_send_task_id)),
        Err(e @ ApiError::Internal(_)) => Err(e.into()),
        Err(e) => {
            let status = e.status();
            let mut errors = field_of(&e);
            if !draft.is_type("TEXT") {
                for (f, _) in errors.iter_mut().filter(|(f, _)| f == "text") {
                    *f = "message".into();
                }
            }
            let page = new_page(&state, c, draft, errors).await?;
            Ok(html(status, page.render()?))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    pub account_id: String,
    pub account_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultRow {
    pub customer_id: i64,
    pub customer_name: Option<String>,
    pub status: String,
    pub error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub group_send_task_id: i64,
    pub task_name: Option<String>,
    pub sender_account: Option<Sender>,
    pub message_content: Value,
    pub target_count: i64,
    pub success_count: i64,
    pub failed_count: i64,
    pub status: String,
    pub scheduled_time: Option<String>,
    pub create_time: String,
    pub results: Vec<ResultRow>,
    pub result_total: i64,
    pub result_page: i64,
    pub result_size: i64,
}

impl TaskDetail {
    /// The message's text, when it has one.
    pub fn text(&self) -> &str {
        self.message_content["data"]["text"].as_str().unwrap_or("")
    }

    /// What goes with the text: the material, image or link (None for text only).
    pub fn attachment(&self, l: &Lang) -> Option<String> {
        let d = &self.message_content["data"];
        let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
        match self.message_content["type"].as_str()? {
            "MATERIAL" => Some(format!("{} #{}", l.t("素材", "material"), d["materialId"])),
            "IMAGE" => Some(format!("{} {}", l.t("图片", "image"), s("pic_url"))),
            "LINK" => Some(format!(
                "{} {} {}",
                l.t("链接", "link"),
                s("title"),
                s("url")
            )),
            "MINIPROGRAM" => Some(format!("{} {}", l.t("小程序", "mini program"), s("title"))),
            "TEXT" => None,
            other => Some(other.to_string()),
        }
    }

    /// Done (sent or failed) out of the target, in percent.
    pub fn percent(&self) -> i64 {
        if self.target_count == 0 {
            return if is_final(&self.status) { 100 } else { 0 };
        }
        ((self.success_count + self.failed_count) * 100 / self.target_count).min(100)
    }

    pub fn result_pages(&self) -> i64 {
        (self.result_total + self.result_size - 1) / self.result_size.max(1)
    }
}

#[derive(Template)]
#[template(path = "console/group_send.html")]
struct DetailPage {
    c: Chrome,
    t: TaskDetail,
    filter: String,
    live: bool,
}

/// `GET /console/group-send/{id}?status&page`: progress and results; while the task runs, the
/// page refreshes its progress part every two seconds (htmx).
pub async fn detail(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = query_pairs(raw.as_deref());
    let filter = param(&q, "status").unwrap_or_default();
    let page: i64 = param(&q, "page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let t: TaskDetail = data(
        api::task_detail(
            State(state),
            c.user.clone(),
            ApiPath(id),
            ApiQuery(arg(
                json!({"resultStatus": filter, "resultPage": page, "resultSize": 50}),
            )?),
        )
        .await,
    )?;
    let live = !is_final(&t.status);
    super::page(&DetailPage { c, t, filter, live })
}
