//! Customers: the list with filters (tags, group chats, staff, channel, stage, keyword) and bulk
//! actions (tag, untag, assign, blacklist, export), and one customer's page (profile, tags,
//! groups, follow-ups, timeline).
//!
//! The list uses the same search functions as the API (`customers::search`: server-side paging
//! and counts shaped for 1,000,000 customers). Its "next" and "previous" links carry keyset
//! cursors (`before` / `after` a customer id), so a deep page reads only its own 20 rows; the
//! unfiltered total is the tenant's customer counter. Bulk actions call the API's own handlers,
//! so the same validation, audit and timeline rows happen.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::json;

use super::staff_picker::{By, Columns, NoneChoice, Spec, StaffPicker};
use super::{Chrome, Form, PageResult, arg, data, ids_of, see_other};
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::customers::followups::{self, FollowUpView, Stage};
use crate::customers::model::{CustomerDetail, CustomerView};
use crate::customers::search::{self, Cursor, Filter, Keyword};
use crate::customers::tags::{self, TagRow};
use crate::customers::timeline::{self, Entry};
use crate::customers::{risk, store, tag_routes, transfer};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;
/// Group chats the filter offers in its select (the newest; chosen ones are always there, and a
/// group chat's page links to its customers).
const GROUP_CHOICES: i64 = 50;

/// The list's filters as the query string carries them.
#[derive(Default)]
pub struct ListFilters {
    pub keyword: String,
    pub tag_ids: Vec<i64>,
    pub group_ids: Vec<i64>,
    pub staff_id: Option<i64>,
    pub channel: String,
    pub stage: String,
    /// The page's number as shown (the cursor, not this, says which rows).
    pub page: i64,
    /// `before=<id>` (next pages) or `after=<id>` (previous pages); none: `page` by offset.
    pub cursor: Option<Cursor>,
}

impl ListFilters {
    fn parse(raw: Option<&str>) -> (ListFilters, Vec<(String, String)>) {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let f = ListFilters {
            keyword: get("keyword"),
            tag_ids: ids_of(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "tagIds")
                    .map(|(_, v)| v.as_str()),
            ),
            group_ids: ids_of(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "groupIds")
                    .map(|(_, v)| v.as_str()),
            ),
            staff_id: get("staff").parse().ok().filter(|v: &i64| *v > 0),
            channel: get("channel"),
            stage: get("stage"),
            page: get("page")
                .parse()
                .ok()
                .filter(|p: &i64| *p > 0)
                .unwrap_or(1),
            cursor: match (get("before").parse::<i64>(), get("after").parse::<i64>()) {
                (Ok(b), _) if b > 0 => Some(Cursor::Before(b)),
                (_, Ok(a)) if a >= 0 => Some(Cursor::After(a)),
                _ => None,
            },
        };
        (f, pairs)
    }

    /// The query string of these filters (no page).
    fn filters_query(&self) -> url::form_urlencoded::Serializer<'static, String> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.keyword.is_empty() {
            q.append_pair("keyword", &self.keyword);
        }
        for t in &self.tag_ids {
            q.append_pair("tagIds", &t.to_string());
        }
        for g in &self.group_ids {
            q.append_pair("groupIds", &g.to_string());
        }
        if let Some(s) = self.staff_id {
            q.append_pair("staff", &s.to_string());
        }
        if !self.channel.is_empty() {
            q.append_pair("channel", &self.channel);
        }
        if !self.stage.is_empty() {
            q.append_pair("stage", &self.stage);
        }
        q
    }

    /// The query string of these filters on page `page`, from `cursor` (none: by offset).
    pub fn query_at(&self, page: i64, cursor: Option<Cursor>) -> String {
        let mut q = self.filters_query();
        match cursor {
            Some(Cursor::Before(id)) => {
                q.append_pair("before", &id.to_string());
            }
            Some(Cursor::After(id)) => {
                q.append_pair("after", &id.to_string());
            }
            Some(Cursor::Offset(_)) | None => {}
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    }

    /// This page's own address (where bulk actions come back to).
    pub fn query_here(&self) -> String {
        self.query_at(self.page, self.cursor)
    }

    pub fn has_tag(&self, id: &i64) -> bool {
        self.tag_ids.contains(id)
    }

    pub fn has_group(&self, id: &i64) -> bool {
        self.group_ids.contains(id)
    }

    fn search_filter(&self) -> Filter {
        Filter {
            tag_ids: self.tag_ids.clone(),
            group_ids: self.group_ids.clone(),
            keyword: Keyword::parse(&self.keyword),
            follow_user_id: self.staff_id,
            channel: Some(self.channel.clone()).filter(|s| !s.is_empty()),
            stage: Some(self.stage.clone()).filter(|s| !s.is_empty()),
            ..Default::default()
        }
    }
}

/// A group chat the filter offers.
pub struct GroupChoice {
    pub id: i64,
    pub name: String,
}

/// The newest [`GROUP_CHOICES`] group chats and the chosen ones (by name), for the filter.
async fn group_choices(
    state: &AppState,
    c: &Chrome,
    chosen: &[i64],
) -> PageResultOf<Vec<GroupChoice>> {
    if !c.can(perm::GROUP_CHAT_VIEW) {
        return Ok(Vec::new());
    }
    let t = c.user.tenant_id;
    let mut rows: Vec<(i64, Option<String>)> = state
        .db
        .fetch_all(
            scrm_db::query(
                "SELECT id, name FROM group_chat WHERE tenant_id = ? ORDER BY id DESC LIMIT ?",
            )
            .bind(t)
            .bind(GROUP_CHOICES),
        )
        .await?;
    let missing: Vec<i64> = chosen
        .iter()
        .copied()
        .filter(|id| !rows.iter().any(|r| r.0 == *id))
        .collect();
    if !missing.is_empty() {
        let mut q =
            scrm_db::query("SELECT id, name FROM group_chat WHERE tenant_id = ? AND id IN ")
                .bind(t);
        q.push_in_list(missing.iter().copied());
        rows.extend(state.db.fetch_all::<(i64, Option<String>)>(q).await?);
    }
    Ok(rows
        .into_iter()
        .map(|(id, name)| GroupChoice {
            id,
            name: name.unwrap_or_else(|| format!("#{id}")),
        })
        .collect())
}

type PageResultOf<T> = Result<T, super::PageError>;

#[derive(Template)]
#[template(path = "console/customers.html")]
struct ListPage {
    c: Chrome,
    f: ListFilters,
    rows: Vec<CustomerView>,
    total: i64,
    pages: i64,
    /// The "previous" and "next" links' query strings (keyset cursors from this page's rows).
    prev: Option<String>,
    next: Option<String>,
    tags: Vec<TagRow>,
    groups: Vec<GroupChoice>,
    /// The staff filter's picker (HTML): the chosen member and a search box, no staff list.
    staff_picker: String,
    /// The bulk assignment's picker (HTML), for a role that may assign.
    assign_picker: String,
    stages: Vec<Stage>,
    notice: Option<String>,
    error: Option<String>,
    back: String,
}

/// `GET /console/customers?keyword&tagIds&groupIds&staff&channel&stage&page[&before|&after]`.
pub async fn list(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let (mut f, pairs) = ListFilters::parse(raw.as_deref());
    let tenant = c.user.tenant_id;
    let filter = f.search_filter();
    let at = f.cursor.unwrap_or(Cursor::Offset((f.page - 1) * PAGE_SIZE));
    let (mut rows, mut total) =
        search::page_with_total_at(&state.db, tenant, &filter, at, PAGE_SIZE).await?;
    if matches!(at, Cursor::After(_)) && (rows.len() as i64) < PAGE_SIZE {
        // Walked back past the newest customers (some were deleted, or the link is old): the
        // first page.
        (f.page, f.cursor) = (1, None);
        (rows, total) = search::page_with_total(&state.db, tenant, &filter, 0, PAGE_SIZE).await?;
    }
    let pages = (total + PAGE_SIZE - 1) / PAGE_SIZE;
    let prev = match (f.page, rows.first()) {
        (1, _) => None,
        (2, _) | (_, None) => Some(f.query_at(f.page - 1, None)),
        (p, Some(first)) => Some(f.query_at(p - 1, Some(Cursor::After(first.id)))),
    };
    let next = match rows.last() {
        Some(last) if rows.len() as i64 == PAGE_SIZE && f.page < pages => {
            Some(f.query_at(f.page + 1, Some(Cursor::Before(last.id))))
        }
        _ => None,
    };
    let rows = store::views(&state.db, tenant, rows).await?;
    let tags = tags::list_tags(&state.db, tenant, None).await?;
    let groups = group_choices(&state, &c, &f.group_ids).await?;
    let staff_picker = if c.can(perm::STAFF_VIEW) {
        let spec = Spec {
            field: "staff".into(),
            dom: "staff-filter".into(),
            by: By::Id,
            multiple: false,
            none: Some(NoneChoice::All),
            suggest: false,
            columns: Columns::None,
        };
        let chosen: Vec<String> = f.staff_id.iter().map(i64::to_string).collect();
        StaffPicker::build(&state, &c, spec, &chosen, "")
            .await?
            .html()?
    } else {
        String::new()
    };
    let assign_picker = if c.can(perm::CUSTOMER_TRANSFER) && c.can(perm::STAFF_VIEW) {
        let spec = Spec {
            field: "toStaffId".into(),
            dom: "assign-to".into(),
            by: By::Id,
            multiple: false,
            none: Some(NoneChoice::Dash),
            suggest: false,
            columns: Columns::None,
        };
        StaffPicker::build(&state, &c, spec, &[], "")
            .await?
            .html()?
    } else {
        String::new()
    };
    let stages = followups::stages(&state.db, tenant).await?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let n = get("n").unwrap_or_default();
    let notice = get("done").map(|d| match d.as_str() {
        "tagged" => format!("{} {n}", c.l.t("已打标签，变更数", "Tagged; changes:")),
        "untagged" => format!("{} {n}", c.l.t("已移除标签，变更数", "Untagged; changes:")),
        "blacklisted" => format!("{} {n}", c.l.t("已拉黑客户数", "Blacklisted customers:")),
        "assigned" => format!("{} {n}", c.l.t("已分配客户数", "Assigned customers:")),
        _ => String::new(),
    });
    let error = get("error").map(|e| match e.as_str() {
        "customerIds" => c.l.t("请先勾选客户", "Select customers first").to_string(),
        "tagIds" => c.l.t("请选择标签", "Choose a tag").to_string(),
        "toStaffId" => {
            c.l.t("请选择要分配给的员工", "Choose the member to assign to")
                .to_string()
        }
        other => other.to_string(),
    });
    let back = format!("/console/customers?{}", f.query_here());
    super::page(&ListPage {
        pages,
        prev,
        next,
        c,
        f,
        rows,
        total,
        tags,
        groups,
        staff_picker,
        assign_picker,
        stages,
        notice,
        error,
        back,
    })
}

/// Where a bulk action goes back to: the list it came from.
fn back_of(form: &Form) -> String {
    form.get("back")
        .filter(|b| b.starts_with("/console/customers"))
        .unwrap_or_else(|| "/console/customers?".into())
}

/// A bulk action's post: the form, the list to go back to (its filters and page) and the
/// ticked customers — what every bulk action reads first.
struct Bulk {
    form: Form,
    back: String,
    ids: Vec<i64>,
}

impl Bulk {
    fn parse(body: &[u8]) -> Bulk {
        let form = Form::parse(body);
        let back = back_of(&form);
        let ids = form.ids("ids");
        Bulk { form, back, ids }
    }
}

fn with(back: &str, params: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}{}", q.finish())
}

/// Back to the list with what a bulk action did and to how many.
fn done(back: &str, what: &str, n: impl ToString) -> PageResult {
    see_other(&with(back, &[("done", what.into()), ("n", n.to_string())]))
}

/// A refused bulk action goes back to the list naming the field; anything else is an error page.
fn refused(back: &str, e: ApiError) -> PageResult {
    match e {
        ApiError::Validation { fields, message } => {
            let field = fields.first().map(|f| f.field.clone()).unwrap_or(message);
            see_other(&with(back, &[("error", field)]))
        }
        other => Err(other.into()),
    }
}

#[derive(Deserialize)]
struct Batch {
    changed: i64,
}

/// `POST /console/customers/tags`: the API's batch tagging for the ticked customers.
pub async fn bulk_tags(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let Bulk { form, back, ids } = Bulk::parse(&body);
    let add = form.get("action").as_deref() != Some("remove");
    let body = json!({
        "customerIds": ids,
        "tagIds": form.ids("tagId"),
        "action": if add { "add" } else { "remove" },
    });
    let r = tag_routes::batch_tags(State(state), user, ApiJson(arg(body)?)).await;
    match data::<_, Batch>(r) {
        Ok(b) => done(&back, if add { "tagged" } else { "untagged" }, b.changed),
        Err(e) => refused(&back, e),
    }
}

/// `POST /console/customers/blacklist`: blacklist each ticked customer (the API's own path).
pub async fn bulk_blacklist(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let Bulk { form, back, ids } = Bulk::parse(&body);
    if ids.is_empty() {
        return see_other(&with(&back, &[("error", "customerIds".into())]));
    }
    if ids.len() > 1000 {
        return refused(&back, ApiError::field("customerIds", "at most 1000 ids"));
    }
    for id in &ids {
        if let Err(e) = risk::set_blacklist(&state, &user, *id, true, form.get("reason")).await {
            return refused(&back, e);
        }
    }
    done(&back, "blacklisted", ids.len())
}

#[derive(Deserialize)]
struct Assigned {
    #[serde(rename = "transferIds")]
    transfer_ids: Vec<i64>,
}

/// `POST /console/customers/assign`: the API's batch assignment of the ticked customers to the
/// picked member (owner changed at once, recorded as transfers).
pub async fn bulk_assign(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let Bulk { form, back, ids } = Bulk::parse(&body);
    // No customer ticked is the API's refusal of `customerIds`.
    let body = json!({
        "customerIds": ids,
        "toStaffId": form.ids("toStaffId").first(),
        "kind": "assign",
    });
    let r = transfer::transfer_many(State(state), user, ApiJson(arg(body)?)).await;
    match data::<_, Assigned>(r) {
        Ok(a) => done(&back, "assigned", a.transfer_ids.len()),
        Err(e) => refused(&back, e),
    }
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct DetailPage {
    c: Chrome,
    d: CustomerDetail,
    stage: String,
    follow_ups: Vec<FollowUpView>,
    follow_up_total: i64,
    timeline: Vec<Entry>,
    timeline_total: i64,
    page: i64,
    pages: i64,
}

/// `GET /console/customers/{id}?page=`: the timeline is paged.
pub async fn detail(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let tenant = c.user.tenant_id;
    let d = crate::customers::routes::detail_of(&state, tenant, id).await?;
    let page = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let stage = followups::stages(&state.db, tenant)
        .await?
        .into_iter()
        .find(|s| s.code == d.customer.stage)
        .map(|s| s.name)
        .unwrap_or_else(|| d.customer.stage.clone());
    let (follow_ups, follow_up_total) = followups::list(&state.db, tenant, id, 0, 20).await?;
    let (timeline, timeline_total) =
        timeline::list(&state.db, tenant, id, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    super::page(&DetailPage {
        c,
        d,
        stage,
        follow_ups,
        follow_up_total,
        timeline,
        timeline_total,
        page,
        pages: (timeline_total + PAGE_SIZE - 1) / PAGE_SIZE,
    })
}
