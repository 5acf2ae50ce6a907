//! Personal WeChat accounts through device gateways (seed 002's device side): the gateways
//! (register one — its token is shown this once — and whether each is connected), the sender
//! accounts of both providers with their state (ACTIVE / OFFLINE / EXPIRED) and health score, an
//! account's daily health history and AI auto-reply settings, and group pushes (list, create,
//! the result per chat room). Every page calls the `devices` API handlers.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Chrome, FieldErrors, Form, Notes, PageResult, arg, data, field_problems, is_refusal,
    page_param, pages_of, query_param, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::devices::{ai, gateway, health, tasks};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const ACCOUNTS_PAGE: usize = 50;
const PUSHES_PAGE: i64 = 20;

/// A gateway as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    pub gateway_id: i64,
    pub name: String,
    pub connected: bool,
    pub last_seen_time: Option<String>,
    pub create_time: String,
}

/// A sender account as the API lists it, with its latest health score.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub account_id: String,
    pub account_name: String,
    pub account_type: String,
    pub status: String,
    pub gateway_id: Option<i64>,
    #[serde(default)]
    pub score: Option<i64>,
}

/// A freshly registered gateway: its token, shown once.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fresh {
    pub gateway_id: i64,
    pub token: String,
    pub path: String,
}

#[derive(Template)]
#[template(path = "console/devices.html")]
struct DevicesPage {
    c: Chrome,
    gateways: Vec<Gateway>,
    accounts: Vec<Account>,
    account_type: String,
    total: i64,
    page: i64,
    pages: i64,
    fresh: Option<Fresh>,
    name: String,
    errors: FieldErrors,
    notes: Notes,
}

impl DevicesPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("accountType", &self.account_type)])
    }
}

/// The state of an account in the page's language.
pub fn status_label(l: &super::Lang, s: &str) -> &'static str {
    match s {
        "ACTIVE" => l.t("在线", "active"),
        "OFFLINE" => l.t("离线", "offline"),
        "EXPIRED" => l.t("已失效", "expired"),
        _ => l.t("未知", "unknown"),
    }
}

/// Sender accounts of a type (`WECHAT`, `WEWORK`, or both when empty).
async fn accounts(state: &AppState, c: &Chrome, account_type: &str) -> PageResultOf<Vec<Account>> {
    Ok(data(
        gateway::list_accounts(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"accountType": account_type}))?),
        )
        .await,
    )?)
}

type PageResultOf<T> = Result<T, super::PageError>;

struct Filters {
    account_type: String,
    page: i64,
}

#[allow(clippy::too_many_arguments)]
async fn render(
    state: &AppState,
    c: Chrome,
    f: Filters,
    fresh: Option<Fresh>,
    name: String,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let gateways: Vec<Gateway> =
        data(gateway::list_gateways(State(state.clone()), c.user.clone()).await)?;
    let all = accounts(state, &c, &f.account_type).await?;
    let total = all.len() as i64;
    let mut shown: Vec<Account> = all
        .into_iter()
        .skip((f.page as usize - 1) * ACCOUNTS_PAGE)
        .take(ACCOUNTS_PAGE)
        .collect();
    // The score of the shown accounts only: the latest day the daily job computed.
    for a in &mut shown {
        let h: Value = data(
            health::get_health(
                State(state.clone()),
                c.user.clone(),
                ApiPath(a.account_id.clone()),
                ApiQuery(arg(json!({"days": 1}))?),
            )
            .await,
        )?;
        a.score = h["score"].as_i64();
    }
    reshow(
        status,
        &DevicesPage {
            c,
            gateways,
            accounts: shown,
            account_type: f.account_type,
            total,
            page: f.page,
            pages: pages_of(total, ACCOUNTS_PAGE as i64),
            fresh,
            name,
            errors,
            notes,
        },
    )
}

/// `GET /console/devices?accountType&page`: gateways and accounts (device accounts first shown).
pub async fn page(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let account_type = match query_param(raw.as_deref(), "accountType").as_deref() {
        Some("ALL") => String::new(),
        Some("WEWORK") => "WEWORK".into(),
        _ => "WECHAT".into(),
    };
    let f = Filters {
        account_type,
        page: page_param(raw.as_deref()),
    };
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render(
        &state,
        c,
        f,
        None,
        String::new(),
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/devices/gateways` (name): register a gateway; the page shows its token once.
pub async fn create_gateway(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let name = form.get("name").unwrap_or_default();
    let r = data::<_, Fresh>(
        gateway::create_gateway(
            State(state.clone()),
            c.user.clone(),
            ApiJson(arg(json!({"name": name}))?),
        )
        .await,
    );
    let f = Filters {
        account_type: "WECHAT".into(),
        page: 1,
    };
    match r {
        Ok(fresh) => {
            let notes = Notes::from_query(&c.l, Some("done=created"));
            render(
                &state,
                c,
                f,
                Some(fresh),
                String::new(),
                FieldErrors::default(),
                notes,
                StatusCode::OK,
            )
            .await
        }
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            render(
                &state,
                c,
                f,
                None,
                name,
                field_problems(&e),
                Notes::default(),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// One day of an account's health.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDay {
    pub day: String,
    pub score: i64,
    pub relations: i64,
    pub adds: i64,
    pub losses: i64,
    pub deletions: i64,
    pub sends: i64,
    pub send_failures: i64,
}

/// An account's health as the API answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub account_id: String,
    pub account_name: String,
    pub account_type: String,
    pub score: Option<i64>,
    pub history: Vec<HealthDay>,
}

/// An account's AI auto-reply settings as the API answers them (the key never).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiConfig {
    pub enabled: bool,
    pub endpoint: String,
    pub api_key_set: bool,
    pub model: String,
    pub system_prompt: String,
    pub history_size: i64,
    pub max_replies_per_hour: i64,
    pub work_start: String,
    pub work_end: String,
    pub handover_keyword: String,
}

#[derive(Template)]
#[template(path = "console/device_account.html")]
struct AccountPage {
    c: Chrome,
    status: String,
    h: Health,
    ai: Option<AiConfig>,
}

/// `GET /console/devices/accounts/{accountId}`: health history and AI auto-reply settings.
pub async fn account_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(account): ApiPath<String>,
) -> PageResult {
    let h: Health = data(
        health::get_health(
            State(state.clone()),
            c.user.clone(),
            ApiPath(account.clone()),
            ApiQuery(arg(json!({"days": 30}))?),
        )
        .await,
    )?;
    let status = accounts(&state, &c, &h.account_type)
        .await?
        .into_iter()
        .find(|a| a.account_id == account)
        .map(|a| a.status)
        .unwrap_or_default();
    let ai = match data::<_, AiConfig>(
        ai::get_config(State(state.clone()), c.user.clone(), ApiPath(account)).await,
    ) {
        Ok(cfg) => Some(cfg),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    super::page(&AccountPage { c, status, h, ai })
}

/// A group push as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub group_push_id: i64,
    pub task_name: Option<String>,
    pub account_id: String,
    pub status: String,
    pub target_count: i64,
    pub success_count: i64,
    pub failed_count: i64,
    pub create_time: String,
}

#[derive(Deserialize)]
struct PushPage {
    records: Vec<Push>,
    total: i64,
}

/// A push's status in the page's language.
pub fn push_status(l: &super::Lang, s: &str) -> &'static str {
    match s {
        "PENDING" => l.t("待发送", "pending"),
        "PROCESSING" => l.t("发送中", "processing"),
        "COMPLETED" => l.t("已完成", "completed"),
        "PARTIAL_SUCCESS" => l.t("部分成功", "partly sent"),
        "FAILED" => l.t("失败", "failed"),
        "SUCCESS" => l.t("成功", "sent"),
        "SENT" => l.t("已下发", "sent to device"),
        _ => l.t("未知", "unknown"),
    }
}

#[derive(Template)]
#[template(path = "console/group_pushes.html")]
struct PushesPage {
    c: Chrome,
    pushes: Vec<Push>,
    total: i64,
    page: i64,
    pages: i64,
    status: String,
    notes: Notes,
}

impl PushesPage {
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("status", &self.status)])
    }
}

/// `GET /console/group-pushes?status&page`.
pub async fn pushes(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let status = query_param(raw.as_deref(), "status").unwrap_or_default();
    let page = page_param(raw.as_deref());
    let p: PushPage = data(
        tasks::list_pushes(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(
                json!({"status": status, "page": page, "size": PUSHES_PAGE}),
            )?),
        )
        .await,
    )?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&PushesPage {
        c,
        pages: pages_of(p.total, PUSHES_PAGE),
        pushes: p.records,
        total: p.total,
        page,
        status,
        notes,
    })
}

/// What the push form held.
#[derive(Default)]
pub struct PushDraft {
    pub account_id: String,
    pub task_name: String,
    pub rooms: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "console/group_push_new.html")]
struct PushForm {
    c: Chrome,
    accounts: Vec<Account>,
    d: PushDraft,
    errors: FieldErrors,
}

async fn push_form(
    state: &AppState,
    c: Chrome,
    d: PushDraft,
    errors: FieldErrors,
    status: StatusCode,
) -> PageResult {
    // Only device accounts can push into chat rooms; a role without device:view sees none and
    // types the account's wxid.
    let accounts = if c.can(perm::DEVICE_VIEW) {
        accounts(state, &c, "WECHAT").await?
    } else {
        Vec::new()
    };
    reshow(
        status,
        &PushForm {
            c,
            accounts,
            d,
            errors,
        },
    )
}

/// `GET /console/group-pushes/new`.
pub async fn new_push(State(state): State<AppState>, c: Chrome) -> PageResult {
    push_form(
        &state,
        c,
        PushDraft::default(),
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /console/group-pushes` (accountId, taskName, chatroomIds one a line, text).
pub async fn create_push(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let d = PushDraft {
        account_id: form.get("accountId").unwrap_or_default(),
        task_name: form.get("taskName").unwrap_or_default(),
        rooms: form.get("chatroomIds").unwrap_or_default(),
        text: form.get("text").unwrap_or_default(),
    };
    let rooms: Vec<&str> = d
        .rooms
        .split(['\n', ',', '，'])
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let body = json!({
        "accountId": d.account_id,
        "taskName": Some(&d.task_name).filter(|n| !n.is_empty()),
        "chatroomIds": rooms,
        "messageContent": {"type": "TEXT", "data": {"text": d.text}},
    });
    let r = data::<_, Value>(
        tasks::create_push(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await,
    );
    match r {
        Ok(v) => see_other(&format!(
            "/console/group-pushes/{}?done=created",
            v["groupPushId"].as_i64().unwrap_or_default()
        )),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            push_form(&state, c, d, field_problems(&e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A push's result in one chat room.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomResult {
    pub chatroom_id: Value,
    pub status: String,
    pub error_message: Option<String>,
    pub sends: i64,
}

impl RoomResult {
    pub fn room(&self) -> String {
        self.chatroom_id.as_str().unwrap_or("").to_string()
    }
}

/// A push with its result per chat room.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushDetail {
    pub group_push_id: i64,
    pub task_name: Option<String>,
    pub account_id: String,
    pub message_content: Value,
    pub status: String,
    pub target_count: i64,
    pub success_count: i64,
    pub failed_count: i64,
    pub create_time: String,
    pub results: Vec<RoomResult>,
}

impl PushDetail {
    /// The message in one line.
    pub fn message(&self) -> String {
        let d = &self.message_content["data"];
        d["text"]
            .as_str()
            .or(d["title"].as_str())
            .or(d["url"].as_str())
            .unwrap_or("")
            .to_string()
    }
}

#[derive(Template)]
#[template(path = "console/group_push.html")]
struct PushPageT {
    c: Chrome,
    p: PushDetail,
    notes: Notes,
}

/// `GET /console/group-pushes/{id}`.
pub async fn push_page(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let p: PushDetail =
        data(tasks::get_push(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&PushPageT { c, p, notes })
}
