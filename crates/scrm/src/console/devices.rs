//! Personal WeChat accounts through device gateways (seed 002's device side): the gateways
//! (register one — its token is shown this once — and whether each is connected), the sender
//! accounts of both providers with their state (ACTIVE / OFFLINE / EXPIRED) and health score,
//! 50 a page, and group pushes (list, create, the result per chat room). An account's own page
//! is [`super::device_account`]. Every page calls the `devices` API.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Answer, Chrome, FieldErrors, Form, Notes, PageResult, answer, arg, data, field_problems,
    page_param, pages_of, query_param, redirect_or_again, reshow,
};
use crate::auth::permissions as perm;
use crate::devices::{gateway, tasks};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const ACCOUNTS_PAGE: i64 = 50;
const PUSHES_PAGE: i64 = 20;
/// The most device accounts the push form offers in a select.
const PUSH_ACCOUNTS: i64 = 200;

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
    /// The latest daily health score (none before the nightly job's first run).
    #[serde(default, rename = "healthScore")]
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

/// `size` sender accounts of a type (`WECHAT`, `WEWORK`, or both when empty) from `offset`
/// (or the one account `only`), each with its latest health score, and how many there are:
/// only the shown rows are read.
pub(super) async fn accounts(
    state: &AppState,
    c: &Chrome,
    account_type: &str,
    only: Option<&str>,
    offset: i64,
    size: i64,
) -> PageResultOf<(Vec<Account>, i64)> {
    let want = Some(account_type).filter(|t| !t.is_empty());
    let (rows, total) =
        gateway::accounts_page(&state.db, c.user.tenant_id, want, only, offset, Some(size)).await?;
    let list: Vec<Account> = serde_json::from_value(Value::Array(rows))
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?;
    Ok((list, total))
}

type PageResultOf<T> = Result<T, super::PageError>;

/// The device accounts a form offers in a select: all of them when there are at most
/// [`PUSH_ACCOUNTS`]; none (the form then takes a typed wxid) when there are more, or for a
/// role without `device:view`.
pub(super) async fn device_choices(state: &AppState, c: &Chrome) -> PageResultOf<Vec<Account>> {
    if !c.can(perm::DEVICE_VIEW) {
        return Ok(Vec::new());
    }
    let (list, total) = accounts(state, c, "WECHAT", None, 0, PUSH_ACCOUNTS).await?;
    Ok(if total > PUSH_ACCOUNTS {
        Vec::new()
    } else {
        list
    })
}

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
    let (shown, total) = accounts(
        state,
        &c,
        &f.account_type,
        None,
        (f.page - 1) * ACCOUNTS_PAGE,
        ACCOUNTS_PAGE,
    )
    .await?;
    reshow(
        status,
        &DevicesPage {
            c,
            gateways,
            accounts: shown,
            account_type: f.account_type,
            total,
            page: f.page,
            pages: pages_of(total, ACCOUNTS_PAGE),
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
    match answer(r)? {
        Answer::Saved(fresh) => {
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
        Answer::Refused(e) => {
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
    }
}

/// A group push as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub group_push_id: i64,
    pub task_name: Option<String>,
    /// None for a push spread across a traffic pool (`pool_id`).
    pub account_id: Option<String>,
    pub pool_id: Option<i64>,
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
    /// The traffic pool chosen instead of an account (its id), or empty.
    pub pool_id: String,
    pub task_name: String,
    pub rooms: String,
    pub text: String,
}

impl PushDraft {
    pub fn is_pool(&self, id: &i64) -> bool {
        self.pool_id == id.to_string()
    }
}

/// A traffic pool the push form offers (the API's pool, the fields the select shows).
#[derive(Deserialize)]
pub struct PoolChoice {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
}

#[derive(Deserialize)]
struct PoolList {
    list: Vec<PoolChoice>,
}

/// The most traffic pools the push form offers.
const PUSH_POOLS: i64 = 100;

/// The tenant's traffic pools for the push form (none for a role that may not see pools).
async fn pool_choices(state: &AppState, c: &Chrome) -> PageResultOf<Vec<PoolChoice>> {
    if !c.can(perm::TRAFFIC_POOL_VIEW) {
        return Ok(Vec::new());
    }
    let l: PoolList = data(
        crate::automation::traffic::list_pools(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": 1, "size": PUSH_POOLS}))?),
        )
        .await,
    )?;
    Ok(l.list)
}

#[derive(Template)]
#[template(path = "console/group_push_new.html")]
struct PushForm {
    c: Chrome,
    accounts: Vec<Account>,
    pools: Vec<PoolChoice>,
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
    // Only device accounts can push into chat rooms.
    let accounts = device_choices(state, &c).await?;
    let pools = pool_choices(state, &c).await?;
    reshow(
        status,
        &PushForm {
            c,
            accounts,
            pools,
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

/// `POST /console/group-pushes` (accountId or poolId, taskName, chatroomIds one a line, text).
pub async fn create_push(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let d = PushDraft {
        account_id: form.get("accountId").unwrap_or_default(),
        pool_id: form.get("poolId").unwrap_or_default(),
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
    // The select offers pool ids; the account goes only when one was chosen (or no pool was),
    // so a pool alone is not "both" and neither is "accountId is required".
    let pool = d.pool_id.trim().parse::<i64>().ok();
    let body = json!({
        "accountId": Some(&d.account_id).filter(|a| !a.is_empty() || pool.is_none()),
        "poolId": pool,
        "taskName": Some(&d.task_name).filter(|n| !n.is_empty()),
        "chatroomIds": rooms,
        "messageContent": {"type": "TEXT", "data": {"text": d.text}},
    });
    let r = data::<_, Value>(
        tasks::create_push(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await,
    );
    redirect_or_again(
        answer(r)?,
        |v| {
            format!(
                "/console/group-pushes/{}?done=created",
                v["groupPushId"].as_i64().unwrap_or_default()
            )
        },
        |errors, status| push_form(&state, c, d, errors, status),
    )
    .await
}

/// A push's result in one chat room.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomResult {
    pub chatroom_id: Value,
    /// The account that pushes this room (a pool push's pick).
    pub account_id: Option<String>,
    pub status: String,
    pub error_message: Option<String>,
    pub sends: i64,
}

/// Who pushes: the account, or the traffic pool a push was spread across.
fn pushed_by(account: &Option<String>, pool: Option<i64>) -> String {
    match (account, pool) {
        (Some(a), _) => a.clone(),
        (None, Some(p)) => format!("pool {p}"),
        (None, None) => String::new(),
    }
}

impl Push {
    pub fn by(&self) -> String {
        pushed_by(&self.account_id, self.pool_id)
    }
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
    /// None for a push spread across a traffic pool (`pool_id`).
    pub account_id: Option<String>,
    pub pool_id: Option<i64>,
    pub message_content: Value,
    pub status: String,
    pub target_count: i64,
    pub success_count: i64,
    pub failed_count: i64,
    pub create_time: String,
    pub results: Vec<RoomResult>,
}

impl PushDetail {
    pub fn by(&self) -> String {
        pushed_by(&self.account_id, self.pool_id)
    }

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
