//! Traffic pools (流量池): the list, and a pool's members with their strategy weight, daily cap
//! and working hours, today's load and whether each is available now (the API's statistics),
//! and the assignment log; delete for managers. Pools are created and changed over the API
//! (`/api/v1/automation/traffic-pools`).

use askama::Template;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, Notes, PageResult, arg, data, page_param, pages_of, see_other};
use crate::auth::permissions as perm;
use crate::automation::traffic as api;
use crate::http::extract::{ApiPath, ApiQuery};
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
    pub customer_id: i64,
    pub source: String,
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
    super::page(&PoolPage {
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
