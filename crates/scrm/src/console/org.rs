//! Group chats (客户群) with their members and tags, and staff with departments.
//!
//! Lists are the API's own paged queries; a group chat's tags change through the API's handlers.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Chrome, Form, Notes, PageResult, arg, data, is_refusal, page_param, pages_of, query_param,
    reshow, see_other, value,
};
use crate::auth::permissions as perm;
use crate::customers::groups::{self, GroupRow};
use crate::customers::model::TagRef;
use crate::customers::staff::{self, DepartmentRow, StaffRow};
use crate::customers::tags::{self, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

#[derive(Template)]
#[template(path = "console/group_chats.html")]
struct GroupsPage {
    c: Chrome,
    rows: Vec<GroupRow>,
    total: i64,
    page: i64,
    pages: i64,
    keyword: String,
}

impl GroupsPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("keyword", &self.keyword)])
    }
}

/// `GET /console/group-chats?keyword&page`.
pub async fn group_chats(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let keyword = query_param(raw.as_deref(), "keyword").unwrap_or_default();
    let page = page_param(raw.as_deref());
    let p = value(
        groups::list(
            State(state),
            c.user.clone(),
            ApiQuery(arg(
                json!({"keyword": keyword, "page": page, "size": PAGE_SIZE}),
            )?),
        )
        .await,
    )?;
    super::page(&GroupsPage {
        c,
        pages: pages_of(p.total, PAGE_SIZE),
        rows: p.list,
        total: p.total,
        page,
        keyword,
    })
}

/// A member of a group chat.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub member_userid: String,
    pub member_type: i64,
    pub customer_id: Option<i64>,
    pub name: Option<String>,
    pub join_time: Option<i64>,
    pub status: i64,
}

#[derive(Deserialize)]
struct Members {
    list: Vec<Member>,
    total: i64,
}

#[derive(Deserialize)]
struct Detail {
    tags: Vec<TagRef>,
}

#[derive(Template)]
#[template(path = "console/group_chat.html")]
struct GroupPage {
    c: Chrome,
    g: GroupRow,
    tags: Vec<TagRef>,
    all_tags: Vec<TagRow>,
    members: Vec<Member>,
    total: i64,
    page: i64,
    pages: i64,
    notes: Notes,
}

impl GroupPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        String::new()
    }
}

async fn group_page(
    state: &AppState,
    c: Chrome,
    id: i64,
    page: i64,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let tenant = c.user.tenant_id;
    let g = groups::one(state, tenant, id).await?;
    let d: Detail = data(groups::get(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let m: Members = data(
        groups::members(
            State(state.clone()),
            c.user.clone(),
            ApiPath(id),
            ApiQuery(arg(json!({"page": page, "size": 50}))?),
        )
        .await,
    )?;
    let all_tags = if c.can(perm::GROUP_CHAT_MANAGE) {
        tags::list_tags(&state.db, tenant, None).await?
    } else {
        Vec::new()
    };
    reshow(
        status,
        &GroupPage {
            c,
            g,
            tags: d.tags,
            all_tags,
            pages: pages_of(m.total, 50),
            members: m.list,
            total: m.total,
            page,
            notes,
        },
    )
}

/// `GET /console/group-chats/{id}?page`: the chat, its tags and its current members.
pub async fn group_chat(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    let page = page_param(raw.as_deref());
    group_page(&state, c, id, page, notes, StatusCode::OK).await
}

/// `POST /console/group-chats/{id}/tags` (tagId, action add|remove).
pub async fn group_chat_tags(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let body = json!({"tagIds": form.ids("tagId")});
    let s = State(state.clone());
    let u = c.user.clone();
    let r: Result<Value, ApiError> = if form.get("action").as_deref() == Some("remove") {
        data(groups::remove_tags(s, u, ApiPath(id), ApiJson(arg(body)?)).await)
    } else {
        data(groups::add_tags(s, u, ApiPath(id), ApiJson(arg(body)?)).await)
    };
    match r {
        Ok(_) => see_other(&format!("/console/group-chats/{id}?done=saved")),
        Err(e) if is_refusal(&e) && !matches!(e, ApiError::NotFound("group chat")) => {
            let status = e.status();
            group_page(&state, c, id, 1, Notes::refused("tags", &e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/staff.html")]
struct StaffPage {
    c: Chrome,
    rows: Vec<StaffRow>,
    total: i64,
    page: i64,
    pages: i64,
    keyword: String,
    departments: Vec<DepartmentRow>,
}

impl StaffPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("keyword", &self.keyword)])
    }

    /// A staff member's departments by name.
    pub fn department_names(&self, s: &StaffRow) -> String {
        let ids: Vec<i64> = s
            .department_ids
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        ids.iter()
            .map(|id| {
                self.departments
                    .iter()
                    .find(|d| d.wecom_id == *id)
                    .map(|d| d.name.clone())
                    .unwrap_or_else(|| id.to_string())
            })
            .collect::<Vec<_>>()
            .join("、")
    }

    /// A department's parent by name.
    pub fn parent_name(&self, d: &DepartmentRow) -> String {
        self.departments
            .iter()
            .find(|p| p.wecom_id == d.parent_id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "—".into())
    }
}

/// `GET /console/staff?keyword&page`: staff and the department list.
pub async fn staff_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let keyword = query_param(raw.as_deref(), "keyword").unwrap_or_default();
    let page = page_param(raw.as_deref());
    let p = value(
        staff::list_staff(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(
                json!({"keyword": keyword, "page": page, "size": PAGE_SIZE}),
            )?),
        )
        .await,
    )?;
    let departments = value(staff::list_departments(State(state), c.user.clone()).await)?;
    super::page(&StaffPage {
        c,
        pages: pages_of(p.total, PAGE_SIZE),
        rows: p.list,
        total: p.total,
        page,
        keyword,
        departments,
    })
}
