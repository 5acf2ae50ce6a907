//! Tags and tag groups (标签库): every group with its tags and customer counts, and — for a role
//! with `customer:tag-library:manage` — creating, renaming, reordering and deleting both. Every
//! change goes through the API's own handlers (validation, audit, the push to WeCom).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Chrome, Form, Notes, PageResult, arg, data, is_refusal, reshow, see_other};
use crate::auth::permissions as perm;
use crate::customers::tag_routes as api;
use crate::customers::tags::{self, GroupRow, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// A tag group with its tags.
pub struct TagGroup {
    pub group: GroupRow,
    pub tags: Vec<TagRow>,
}

#[derive(Template)]
#[template(path = "console/tags.html")]
struct TagsPage {
    c: Chrome,
    groups: Vec<TagGroup>,
    notes: Notes,
}

async fn render(state: &AppState, c: Chrome, notes: Notes, status: StatusCode) -> PageResult {
    let tenant = c.user.tenant_id;
    let (groups, all) = tokio::try_join!(
        tags::list_groups(&state.db, tenant),
        tags::list_tags(&state.db, tenant, None)
    )?;
    let groups = groups
        .into_iter()
        .map(|g| TagGroup {
            tags: all.iter().filter(|t| t.group_id == g.id).cloned().collect(),
            group: g,
        })
        .collect();
    reshow(status, &TagsPage { c, groups, notes })
}

/// `GET /console/tags`: every tag group and tag with its customer count.
pub async fn page(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render(&state, c, notes, StatusCode::OK).await
}

/// After an API call: back to the page, or the page again with the refusal next to `form`.
async fn after<T>(
    state: &AppState,
    c: Chrome,
    form: &str,
    done: &str,
    r: Result<T, ApiError>,
) -> PageResult {
    match r {
        Ok(_) => see_other(&format!("/console/tags?done={done}")),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            render(state, c, Notes::refused(form, &e), status).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The ids in their order with `id` moved one place up or down.
fn moved(mut ids: Vec<i64>, id: i64, up: bool) -> Vec<i64> {
    if let Some(i) = ids.iter().position(|x| *x == id) {
        let j = if up { i.checked_sub(1) } else { Some(i + 1) };
        if let Some(j) = j.filter(|j| *j < ids.len()) {
            ids.swap(i, j);
        }
    }
    ids
}

/// `POST /console/tag-groups` (name, tags as a comma list): a new group.
pub async fn create_group(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let tags: Vec<String> = form
        .get("tags")
        .unwrap_or_default()
        .split([',', '，'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let body = json!({"name": form.get("name").unwrap_or_default(), "tags": tags});
    let r = api::create_group(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await;
    after(&state, c, "group-new", "created", data::<_, Value>(r)).await
}

/// `POST /console/tag-groups/{id}` (action rename|up|down|delete).
pub async fn group_action(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let key = format!("group-{id}");
    let s = || State(state.clone());
    let u = c.user.clone();
    let r: Result<Value, ApiError> = match form.get("action").as_deref() {
        Some("delete") => data(api::delete_group(s(), u, ApiPath(id)).await),
        Some(dir @ ("up" | "down")) => {
            let order: Vec<i64> = tags::list_groups(&state.db, c.user.tenant_id)
                .await?
                .into_iter()
                .map(|g| g.id)
                .collect();
            let body = json!({"ids": moved(order, id, dir == "up")});
            data(api::reorder_groups(s(), u, ApiJson(arg(body)?)).await)
        }
        _ => {
            let body = json!({"name": form.get("name").unwrap_or_default()});
            data(api::update_group(s(), u, ApiPath(id), ApiJson(arg(body)?)).await)
        }
    };
    let done = if form.get("action").as_deref() == Some("delete") {
        "deleted"
    } else {
        "saved"
    };
    after(&state, c, &key, done, r).await
}

/// `POST /console/tags` (groupId, name): a new tag in a group.
pub async fn create_tag(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let group = form.ids("groupId").first().copied();
    let body = json!({"groupId": group, "name": form.get("name").unwrap_or_default()});
    let r = api::create_tag(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await;
    let key = format!("newtag-{}", group.unwrap_or(0));
    after(&state, c, &key, "created", data::<_, Value>(r)).await
}

/// `POST /console/tags/{id}` (action rename|up|down|delete).
pub async fn tag_action(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let key = format!("tag-{id}");
    let s = || State(state.clone());
    let u = c.user.clone();
    let r: Result<Value, ApiError> = match form.get("action").as_deref() {
        Some("delete") => data(api::delete_tag(s(), u, ApiPath(id)).await),
        Some(dir @ ("up" | "down")) => {
            let all = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
            let Some(group) = all.iter().find(|t| t.id == id).map(|t| t.group_id) else {
                return Err(ApiError::NotFound("tag").into());
            };
            let order: Vec<i64> = all
                .iter()
                .filter(|t| t.group_id == group)
                .map(|t| t.id)
                .collect();
            let body = json!({"groupId": group, "ids": moved(order, id, dir == "up")});
            data(api::reorder_tags(s(), u, ApiJson(arg(body)?)).await)
        }
        _ => {
            let body = json!({"name": form.get("name").unwrap_or_default()});
            data(api::update_tag(s(), u, ApiPath(id), ApiJson(arg(body)?)).await)
        }
    };
    let done = if form.get("action").as_deref() == Some("delete") {
        "deleted"
    } else {
        "saved"
    };
    after(&state, c, &key, done, r).await
}

#[cfg(test)]
mod tests {
    use super::moved;

    #[test]
    fn moving_swaps_with_the_neighbour_and_stops_at_the_ends() {
        assert_eq!(moved(vec![1, 2, 3], 2, true), vec![2, 1, 3]);
        assert_eq!(moved(vec![1, 2, 3], 2, false), vec![1, 3, 2]);
        assert_eq!(moved(vec![1, 2, 3], 1, true), vec![1, 2, 3]);
        assert_eq!(moved(vec![1, 2, 3], 3, false), vec![1, 2, 3]);
        assert_eq!(moved(vec![1, 2, 3], 9, false), vec![1, 2, 3]);
    }
}
