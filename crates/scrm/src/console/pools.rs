//! Traffic pools (流量池): the list, and a pool's members with their strategy weight, daily cap
//! and working hours, today's load and whether each is available now (the API's statistics),
//! and the assignment log; the create / edit form (name, strategy, channel codes, members with
//! weight, daily cap, working days and hours) and delete for managers. Saving is the API's own
//! handler, so its validation is the page's, shown next to each field and member row.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::staff_picker::{By, Columns, NoneChoice, Picks, Spec, StaffPicker, staff_with};
use super::{
    Answer, Chrome, FieldErrors, Form, Notes, PageResult, answer_found, arg, data, page_param,
    pages_of, see_other,
};
use crate::auth::permissions as perm;
use crate::automation::traffic as api;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// A pool member as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: i64,
    pub account_id: String,
    pub account_type: String,
    pub weight: i64,
    pub daily_cap: i64,
    pub work_days: Vec<i64>,
    pub work_start: Option<String>,
    pub work_end: Option<String>,
    pub enabled: bool,
}

impl Member {
    /// Working days and hours in one line (`every day` when unset).
    pub fn hours(&self, l: &super::Lang) -> String {
        let days = if self.work_days.is_empty() {
            l.t("每天", "every day").to_string()
        } else {
            let names = l.t("一二三四五六日", "MoTuWeThFrSaSu");
            let chars: Vec<char> = names.chars().collect();
            let per = chars.len() / 7;
            self.work_days
                .iter()
                .filter(|d| (1..=7).contains(*d))
                .map(|d| {
                    let i = (*d as usize - 1) * per;
                    chars[i..i + per].iter().collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match (&self.work_start, &self.work_end) {
            (Some(s), Some(e)) => format!("{days} {s}–{e}"),
            _ => days,
        }
    }
}

/// A pool as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub id: i64,
    pub name: String,
    pub strategy: String,
    pub enabled: bool,
    pub channel_code_ids: Vec<i64>,
    pub members: Vec<Member>,
    pub created_at: String,
}

/// A strategy in the page's language.
pub fn strategy_label(l: &super::Lang, s: &str) -> &'static str {
    match s {
        "round_robin" => l.t("轮流分配", "round robin"),
        "weight" => l.t("按权重", "by weight"),
        "least_loaded" => l.t("负载最少优先", "least loaded"),
        _ => l.t("未知", "unknown"),
    }
}

#[derive(Deserialize)]
struct Listed {
    list: Vec<Pool>,
    total: i64,
}

#[derive(Template)]
#[template(path = "console/traffic_pools.html")]
struct PoolsPage {
    c: Chrome,
    pools: Vec<Pool>,
    total: i64,
    page: i64,
    pages: i64,
    notes: Notes,
}

impl PoolsPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }
}

/// `GET /console/traffic-pools?page`.
pub async fn list(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let page = page_param(raw.as_deref());
    let l: Listed = data(
        api::list_pools(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": page, "size": PAGE_SIZE}))?),
        )
        .await,
    )?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&PoolsPage {
        c,
        pages: pages_of(l.total, PAGE_SIZE),
        pools: l.list,
        total: l.total,
        page,
        notes,
    })
}

/// A member's figures today.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStats {
    pub member_id: i64,
    pub assigned_today: i64,
    pub assigned_total: i64,
    pub failed_total: i64,
    pub load: i64,
    pub available_now: bool,
}

#[derive(Deserialize)]
struct Stats {
    members: Vec<MemberStats>,
}

/// One assignment of the log.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub id: i64,
    pub member_id: i64,
    /// None for device work (a chat room pushed to, a group created, a new friend).
    pub customer_id: Option<i64>,
    pub source: String,
    /// What the device work was (`gp:<push>:<room>`, `ag:<auto group>`).
    pub source_ref: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub created_at: String,
}

#[derive(Deserialize)]
struct Assignments {
    list: Vec<Assignment>,
    total: i64,
}

#[derive(Template)]
#[template(path = "console/traffic_pool.html")]
struct PoolPage {
    c: Chrome,
    p: Pool,
    stats: Vec<MemberStats>,
    log: Vec<Assignment>,
    total: i64,
    page: i64,
    pages: i64,
    notes: Notes,
}

impl PoolPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }

    /// A member's figures today.
    pub fn stats_of(&self, member: &i64) -> Option<&MemberStats> {
        self.stats.iter().find(|s| s.member_id == *member)
    }

    /// The account a member id stands for.
    pub fn account_of(&self, member: &i64) -> String {
        self.p
            .members
            .iter()
            .find(|m| m.id == *member)
            .map(|m| m.account_id.clone())
            .unwrap_or_else(|| format!("#{member}"))
    }
}

/// `GET /console/traffic-pools/{id}?page`: members, today's figures, the assignment log.
pub async fn detail(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let page = page_param(raw.as_deref());
    let p: Pool = data(api::get_pool(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let s: Stats = data(
        api::statistics(
            State(state.clone()),
            c.user.clone(),
            ApiPath(id),
            ApiQuery(arg(json!({"days": 1}))?),
        )
        .await,
    )?;
    let a: Assignments = data(
        api::list_assignments(
            State(state.clone()),
            c.user.clone(),
            ApiPath(id),
            ApiQuery(arg(json!({"page": page, "size": PAGE_SIZE}))?),
        )
        .await,
    )?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&PoolPage {
        notes,
        c,
        p,
        stats: s.members,
        pages: pages_of(a.total, PAGE_SIZE),
        log: a.list,
        total: a.total,
        page,
    })
}

/// `POST /console/traffic-pools/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    data::<_, Value>(api::delete_pool(State(state), c.user, ApiPath(id)).await)?;
    see_other("/console/traffic-pools?done=deleted")
}

/// Whether the user may manage pools (the template's buttons).
pub fn can_manage(c: &Chrome) -> bool {
    c.can(perm::TRAFFIC_POOL_MANAGE)
}

/// A member row of the pool form: a WeCom member picked with the staff picker, or a device
/// account (its wxid, from a select or typed).
#[derive(Clone)]
pub struct MemberDraft {
    /// The WeCom member's userid (`member.<i>.staff`).
    pub staff: String,
    /// A device account's wxid, or any account id typed (`member.<i>.accountId`).
    pub account_id: String,
    pub weight: String,
    pub daily_cap: String,
    pub work_days: Vec<i64>,
    pub work_start: String,
    pub work_end: String,
    pub enabled: bool,
}

impl Default for MemberDraft {
    fn default() -> Self {
        MemberDraft {
            staff: String::new(),
            account_id: String::new(),
            weight: "1".into(),
            daily_cap: "0".into(),
            work_days: Vec::new(),
            work_start: String::new(),
            work_end: String::new(),
            enabled: true,
        }
    }
}

impl MemberDraft {
    pub fn works_on(&self, day: &i64) -> bool {
        self.work_days.contains(day)
    }

    /// The member's account: the picked WeCom member, else the device account.
    fn account(&self) -> &str {
        let staff = self.staff.trim();
        if staff.is_empty() {
            self.account_id.trim()
        } else {
            staff
        }
    }

    /// Both a WeCom member and a device account chosen: the row is not one account.
    fn ambiguous(&self) -> bool {
        !self.staff.trim().is_empty() && !self.account_id.trim().is_empty()
    }

    /// The API's member; a number the form could not read is sent as given, so the API names it.
    fn body(&self) -> Value {
        let num = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_or_else(|_| json!(s.trim()), |n| json!(n))
        };
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        json!({
            "accountId": self.account(),
            "weight": num(&self.weight),
            "dailyCap": num(&self.daily_cap),
            "workDays": self.work_days,
            "workStart": opt(&self.work_start),
            "workEnd": opt(&self.work_end),
            "enabled": self.enabled,
        })
    }
}

/// What the pool form holds (shown again with the API's problems when refused).
pub struct PoolDraft {
    pub name: String,
    pub strategy: String,
    pub enabled: bool,
    pub channel_code_ids: String,
    pub members: Vec<MemberDraft>,
}

impl Default for PoolDraft {
    fn default() -> Self {
        PoolDraft {
            name: String::new(),
            strategy: "round_robin".into(),
            enabled: true,
            channel_code_ids: String::new(),
            members: vec![MemberDraft::default()],
        }
    }
}

/// The most member rows the form posts (the API's own limit is 200).
const MAX_ROWS: usize = 200;

impl PoolDraft {
    fn of(p: &Pool) -> PoolDraft {
        PoolDraft {
            name: p.name.clone(),
            strategy: p.strategy.clone(),
            enabled: p.enabled,
            channel_code_ids: p
                .channel_code_ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            members: p
                .members
                .iter()
                .map(|m| {
                    let wecom = m.account_type == "WEWORK";
                    MemberDraft {
                        staff: if wecom {
                            m.account_id.clone()
                        } else {
                            String::new()
                        },
                        account_id: if wecom {
                            String::new()
                        } else {
                            m.account_id.clone()
                        },
                        weight: m.weight.to_string(),
                        daily_cap: m.daily_cap.to_string(),
                        work_days: m.work_days.clone(),
                        work_start: m.work_start.clone().unwrap_or_default(),
                        work_end: m.work_end.clone().unwrap_or_default(),
                        enabled: m.enabled,
                    }
                })
                .collect(),
        }
    }

    /// The posted form: `member.<i>.<field>` for each of `memberCount` rows.
    fn parse(form: &Form) -> PoolDraft {
        let count = form
            .get("memberCount")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1)
            .min(MAX_ROWS);
        let members = (0..count)
            .map(|i| {
                let f = |n: &str| form.get(&format!("member.{i}.{n}")).unwrap_or_default();
                MemberDraft {
                    staff: f("staff"),
                    account_id: f("accountId"),
                    weight: f("weight"),
                    daily_cap: f("dailyCap"),
                    work_days: form.ids(&format!("member.{i}.workDays")),
                    work_start: f("workStart"),
                    work_end: f("workEnd"),
                    enabled: form.get(&format!("member.{i}.enabled")).is_some(),
                }
            })
            .collect();
        PoolDraft {
            name: form.get("name").unwrap_or_default(),
            strategy: form.get("strategy").unwrap_or_default(),
            enabled: form.get("enabled").is_some(),
            channel_code_ids: form.get("channelCodeIds").unwrap_or_default(),
            members,
        }
    }

    /// The API's body. Rows left entirely blank are not members.
    fn body(&self) -> Value {
        let codes: Vec<Value> = self
            .channel_code_ids
            .split([',', ' ', '，'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().map_or_else(|_| json!(s), |n| json!(n)))
            .collect();
        json!({
            "name": self.name,
            "strategy": Some(&self.strategy).filter(|s| !s.is_empty()),
            "enabled": self.enabled,
            "channelCodeIds": codes,
            "members": self.members.iter().filter(|m| !m.account().is_empty()).map(MemberDraft::body).collect::<Vec<_>>(),
        })
    }

    pub fn is_strategy(&self, s: &&str) -> bool {
        self.strategy == *s
    }

    /// Rows naming both a WeCom member and a device account, as problems on their rows.
    fn ambiguous(&self, l: &super::Lang) -> FieldErrors {
        FieldErrors(
            (0..self.members.len())
                .filter(|i| self.members[*i].ambiguous())
                .map(|i| {
                    (
                        format!("members[{i}].accountId"),
                        l.t(
                            "一行只能选一个账号：企业微信成员或设备账号",
                            "A row is one account: a WeCom member or a device account",
                        )
                        .to_string(),
                    )
                })
                .collect(),
        )
    }
}

#[derive(Template)]
#[template(path = "console/traffic_pool_form.html")]
struct PoolForm {
    c: Chrome,
    /// None for a new pool.
    id: Option<i64>,
    d: PoolDraft,
    /// Each row's WeCom member picker (HTML).
    pickers: Vec<String>,
    /// The device accounts offered in a select (none: the wxid is typed).
    /// The first device accounts suggested (the input searches for more).
    devices: Vec<(String, String)>,
    errors: FieldErrors,
}

impl PoolForm {
    pub fn action(&self) -> String {
        match self.id {
            Some(i) => format!("/console/traffic-pools/{i}"),
            None => "/console/traffic-pools".into(),
        }
    }

    pub fn strategies(&self) -> Vec<(&'static str, &'static str)> {
        api::STRATEGIES
            .iter()
            .map(|s| (*s, strategy_label(&self.c.l, s)))
            .collect()
    }

    /// Days of the week, 1 (Monday) to 7, with their short names.
    pub fn days(&self) -> Vec<(i64, &'static str)> {
        let zh = ["一", "二", "三", "四", "五", "六", "日"];
        let en = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
        (0..7)
            .map(|i| (i as i64 + 1, self.c.l.t(zh[i], en[i])))
            .collect()
    }

    /// Row `i`'s WeCom member picker.
    pub fn picker(&self, i: &usize) -> &str {
        self.pickers.get(*i).map_or("", String::as_str)
    }

    /// Whether row `i`'s typed account is one of the select's (else it keeps its own option).
    /// The API's problems with member row `i` (`members[i].weight: …`), in one line.
    pub fn member_err(&self, i: &usize) -> Option<String> {
        let prefix = format!("members[{i}]");
        let found: Vec<&str> = self
            .errors
            .0
            .iter()
            .filter(|(f, _)| f.starts_with(&prefix))
            .map(|(_, m)| m.as_str())
            .collect();
        (!found.is_empty()).then(|| found.join("; "))
    }
}

/// The API's refusal by its full field name (`members[2].weight`): a member's problem is shown
/// on its row. The API numbers the members it was sent; blank rows are not sent, so the
/// numbers are mapped back to the form's rows.
fn pool_problems(e: &ApiError, d: &PoolDraft) -> FieldErrors {
    let sent: Vec<usize> = (0..d.members.len())
        .filter(|i| !d.members[*i].account().is_empty())
        .collect();
    let fields = match e {
        ApiError::Validation { fields, .. } | ApiError::Refused { fields, .. }
            if !fields.is_empty() =>
        {
            fields
        }
        other => return super::field_problems(other),
    };
    FieldErrors(
        fields
            .iter()
            .map(|f| {
                let msg = format!("{}: {}", f.field, f.message);
                let key = f
                    .field
                    .strip_prefix("members[")
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(n, rest)| {
                        let row = sent.get(n.parse::<usize>().ok()?)?;
                        Some(format!("members[{row}]{rest}"))
                    })
                    .unwrap_or_else(|| f.field.clone());
                (key, msg)
            })
            .collect(),
    )
}

async fn pool_form(
    state: &AppState,
    c: Chrome,
    id: Option<i64>,
    d: PoolDraft,
    errors: FieldErrors,
    status: StatusCode,
) -> PageResult {
    // One lookup names every row's picked member; a picker shows its choice and searches.
    let userids: Vec<String> = d
        .members
        .iter()
        .map(|m| m.staff.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    let known = staff_with(state, c.user.tenant_id, By::Userid, &userids).await?;
    let pickers = (0..d.members.len())
        .map(|i| {
            let spec = Spec {
                field: format!("member.{i}.staff"),
                dom: format!("member-{i}-staff"),
                by: By::Userid,
                multiple: false,
                none: Some(NoneChoice::Dash),
                suggest: false,
                columns: Columns::None,
            };
            let picks = Picks::of(&[d.members[i].staff.clone()]);
            StaffPicker::with_known(&c, spec, &picks, &known).html()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let devices = super::device_picker::first(state, &c).await?;
    super::reshow(
        status,
        &PoolForm {
            c,
            id,
            d,
            pickers,
            devices,
            errors,
        },
    )
}

/// `GET /console/traffic-pools/new`.
pub async fn new_pool(State(state): State<AppState>, c: Chrome) -> PageResult {
    pool_form(
        &state,
        c,
        None,
        PoolDraft::default(),
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `GET /console/traffic-pools/{id}/edit`.
pub async fn edit_pool(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let p: Pool = data(api::get_pool(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let mut d = PoolDraft::of(&p);
    if d.members.is_empty() {
        d.members.push(MemberDraft::default());
    }
    pool_form(
        &state,
        c,
        Some(id),
        d,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// A pool form post: add or remove a member row (the form again, nothing stored), or save
/// through the API (refused input comes back with each problem next to its field or row).
async fn save_pool(state: AppState, c: Chrome, id: Option<i64>, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let mut d = PoolDraft::parse(&form);
    let action = form.get("action").unwrap_or_default();
    if action == "add-member" {
        if d.members.len() < MAX_ROWS {
            d.members.push(MemberDraft::default());
        }
        return pool_form(&state, c, id, d, FieldErrors::default(), StatusCode::OK).await;
    }
    if let Some(i) = action
        .strip_prefix("remove-")
        .and_then(|i| i.parse::<usize>().ok())
    {
        if i < d.members.len() && d.members.len() > 1 {
            d.members.remove(i);
        }
        return pool_form(&state, c, id, d, FieldErrors::default(), StatusCode::OK).await;
    }
    let ambiguous = d.ambiguous(&c.l);
    if !ambiguous.0.is_empty() {
        return pool_form(&state, c, id, d, ambiguous, StatusCode::BAD_REQUEST).await;
    }
    let s = State(state.clone());
    let u = c.user.clone();
    let b = ApiJson(arg(d.body())?);
    let r: Result<Value, ApiError> = match id {
        Some(id) => data(api::update_pool(s, u, ApiPath(id), b).await),
        None => data(api::create_pool(s, u, b).await),
    };
    match answer_found(r)? {
        Answer::Saved(v) => {
            let id = id.or_else(|| v["id"].as_i64()).unwrap_or_default();
            see_other(&format!("/console/traffic-pools/{id}?done=saved"))
        }
        Answer::Refused(e) => {
            let status = e.status();
            let errors = pool_problems(&e, &d);
            pool_form(&state, c, id, d, errors, status).await
        }
    }
}

/// `POST /console/traffic-pools`: create (or change the form's rows).
pub async fn create(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    save_pool(state, c, None, body).await
}

/// `POST /console/traffic-pools/{id}`: save the pool (or change the form's rows).
pub async fn update(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    save_pool(state, c, Some(id), body).await
}
