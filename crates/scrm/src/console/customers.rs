//! Customers: the list with filters (tags, staff, stage, keyword) and bulk actions (tag, untag,
//! blacklist), and one customer's page (profile, tags, groups, follow-ups, timeline).
//!
//! The list uses the same search functions as the API (`customers::search`: server-side paging
//! and counts shaped for 1,000,000 customers); bulk actions call the API's own handlers, so the
//! same validation, audit and timeline rows happen.

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
use crate::customers::search::{self, Filter, Keyword};
use crate::customers::tags::{self, TagRow};
use crate::customers::timeline::{self, Entry};
use crate::customers::{risk, store, tag_routes};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// The list's filters as the query string carries them.
#[derive(Default)]
pub struct ListFilters {
    pub keyword: String,
    pub tag_ids: Vec<i64>,
    pub staff_id: Option<i64>,
    pub stage: String,
    pub page: i64,
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
            staff_id: get("staff").parse().ok().filter(|v: &i64| *v > 0),
            stage: get("stage"),
            page: get("page")
                .parse()
                .ok()
                .filter(|p: &i64| *p > 0)
                .unwrap_or(1),
        };
        (f, pairs)
    }

    /// The query string of these filters on another page.
    pub fn query_for_page(&self, page: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.keyword.is_empty() {
            q.append_pair("keyword", &self.keyword);
        }
        for t in &self.tag_ids {
            q.append_pair("tagIds", &t.to_string());
        }
        if let Some(s) = self.staff_id {
            q.append_pair("staff", &s.to_string());
        }
        if !self.stage.is_empty() {
            q.append_pair("stage", &self.stage);
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    }

    pub fn has_tag(&self, id: &i64) -> bool {
        self.tag_ids.contains(id)
    }
}

#[derive(Template)]
#[template(path = "console/customers.html")]
struct ListPage {
    c: Chrome,
    f: ListFilters,
    rows: Vec<CustomerView>,
    total: i64,
    pages: i64,
    tags: Vec<TagRow>,
    /// The staff filter's picker (HTML): the chosen member and a search box, no staff list.
    staff_picker: String,
    stages: Vec<Stage>,
    notice: Option<String>,
    error: Option<String>,
    back: String,
}

/// `GET /console/customers?keyword&tagIds&staff&stage&page`.
pub async fn list(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let (f, pairs) = ListFilters::parse(raw.as_deref());
    let tenant = c.user.tenant_id;
    let filter = Filter {
        tag_ids: f.tag_ids.clone(),
        keyword: Keyword::parse(&f.keyword),
        follow_user_id: f.staff_id,
        stage: Some(f.stage.clone()).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    let offset = (f.page - 1) * PAGE_SIZE;
    let (rows, total) =
        search::page_with_total(&state.db, tenant, &filter, offset, PAGE_SIZE).await?;
    let rows = store::views(&state.db, tenant, rows).await?;
    let tags = tags::list_tags(&state.db, tenant, None).await?;
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
    let stages = followups::stages(&state.db, tenant).await?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let n = get("n").unwrap_or_default();
    let notice = get("done").map(|d| match d.as_str() {
        "tagged" => format!("{} {n}", c.l.t("已打标签，变更数", "Tagged; changes:")),
        "untagged" => format!("{} {n}", c.l.t("已移除标签，变更数", "Untagged; changes:")),
        "blacklisted" => format!("{} {n}", c.l.t("已拉黑客户数", "Blacklisted customers:")),
        _ => String::new(),
    });
    let error = get("error").map(|e| match e.as_str() {
        "customerIds" => c.l.t("请先勾选客户", "Select customers first").to_string(),
        "tagIds" => c.l.t("请选择标签", "Choose a tag").to_string(),
        other => other.to_string(),
    });
    let back = format!("/console/customers?{}", f.query_for_page(f.page));
    super::page(&ListPage {
        pages: (total + PAGE_SIZE - 1) / PAGE_SIZE,
        c,
        f,
        rows,
        total,
        tags,
        staff_picker,
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

fn with(back: &str, params: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}{}", q.finish())
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
    let form = Form::parse(&body);
    let back = back_of(&form);
    let add = form.get("action").as_deref() != Some("remove");
    let body = json!({
        "customerIds": form.ids("ids"),
        "tagIds": form.ids("tagId"),
        "action": if add { "add" } else { "remove" },
    });
    let r = tag_routes::batch_tags(State(state), user, ApiJson(arg(body)?)).await;
    match data::<_, Batch>(r) {
        Ok(b) => see_other(&with(
            &back,
            &[
                ("done", if add { "tagged" } else { "untagged" }.into()),
                ("n", b.changed.to_string()),
            ],
        )),
        Err(e) => refused(&back, e),
    }
}

/// `POST /console/customers/blacklist`: blacklist each ticked customer (the API's own path).
pub async fn bulk_blacklist(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let back = back_of(&form);
    let ids = form.ids("ids");
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
    see_other(&with(
        &back,
        &[("done", "blacklisted".into()), ("n", ids.len().to_string())],
    ))
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
