//! Group welcome messages (入群欢迎语: text with `{nickname}` `{date}` `{staff}` and materials,
//! for chosen group chats or all) and content sources (RSS/Atom feeds and pages collected into
//! the material library: add, fetch now, delete, the items each collected). Every form posts to
//! the `automation` API's handlers.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Chrome, FieldErrors, Form, MaterialOption, Notes, PageResult, answer, arg, data, is_refusal,
    material_options, page_param, pages_of, redirect_or_again, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::automation::{content, group_welcome, stored};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// A group welcome as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupWelcome {
    pub id: i64,
    pub name: String,
    pub group_ids: Vec<i64>,
    pub text: Option<String>,
    pub material_ids: Vec<i64>,
    pub enabled: bool,
    pub created_at: String,
}

#[derive(Deserialize)]
struct Welcomes {
    list: Vec<GroupWelcome>,
    total: i64,
}

/// What the group welcome form held.
#[derive(Default)]
pub struct WelcomeDraft {
    pub name: String,
    pub groups: String,
    pub text: String,
    pub material_ids: Vec<i64>,
}

impl WelcomeDraft {
    pub fn has_material(&self, id: &i64) -> bool {
        self.material_ids.contains(id)
    }
}

#[derive(Template)]
#[template(path = "console/group_welcomes.html")]
struct WelcomesPage {
    c: Chrome,
    welcomes: Vec<GroupWelcome>,
    total: i64,
    page: i64,
    pages: i64,
    materials: Vec<MaterialOption>,
    d: WelcomeDraft,
    errors: FieldErrors,
    notes: Notes,
}

impl WelcomesPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }
}

async fn render_welcomes(
    state: &AppState,
    c: Chrome,
    page: i64,
    d: WelcomeDraft,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let l: Welcomes = data(
        stored::list::<group_welcome::Row>(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": page, "size": PAGE_SIZE}))?),
        )
        .await,
    )?;
    let materials = if c.can(perm::WELCOME_MANAGE) {
        material_options(state, &c.user).await?
    } else {
        Vec::new()
    };
    reshow(
        status,
        &WelcomesPage {
            c,
            pages: pages_of(l.total, PAGE_SIZE),
            welcomes: l.list,
            total: l.total,
            page,
            materials,
            d,
            errors,
            notes,
        },
    )
}

/// `GET /console/group-welcomes?page`.
pub async fn group_welcomes(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render_welcomes(
        &state,
        c,
        page_param(raw.as_deref()),
        WelcomeDraft::default(),
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/group-welcomes` (name, groupIds as a comma list, text, materialIds), or
/// (id, action=delete).
pub async fn save_group_welcome(
    State(state): State<AppState>,
    c: Chrome,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    if let (Some(id), Some("delete")) = (form.ids("id").first(), form.get("action").as_deref()) {
        data::<_, Value>(
            stored::delete::<group_welcome::Row>(State(state), c.user, ApiPath(*id)).await,
        )?;
        return see_other("/console/group-welcomes?done=deleted");
    }
    let d = WelcomeDraft {
        name: form.get("name").unwrap_or_default(),
        groups: form.get("groupIds").unwrap_or_default(),
        text: form.get("text").unwrap_or_default(),
        material_ids: form.ids("materialIds"),
    };
    let body = json!({
        "name": d.name,
        "groupIds": super::ids_of(std::iter::once(d.groups.as_str())),
        "text": Some(&d.text).filter(|t| !t.is_empty()),
        "materialIds": d.material_ids,
    });
    let r = data::<_, Value>(
        group_welcome::create(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await,
    );
    redirect_or_again(
        answer(r)?,
        |_| "/console/group-welcomes?done=created".into(),
        |errors, status| render_welcomes(&state, c, 1, d, errors, Notes::default(), status),
    )
    .await
}

/// A content source as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub kind: String,
    pub interval_minutes: i64,
    pub enabled: bool,
    pub next_fetch_at: String,
    pub last_fetched_at: Option<String>,
    pub last_error: Option<String>,
    pub item_count: i64,
    #[serde(default)]
    pub recent_items: Vec<Item>,
}

/// An item a source collected (a material).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub material_id: i64,
    pub title: String,
    pub collected_at: String,
}

#[derive(Deserialize)]
struct Sources {
    list: Vec<Source>,
    total: i64,
}

/// What the add form held.
pub struct SourceDraft {
    pub name: String,
    pub url: String,
    pub kind: String,
    pub interval: String,
}

impl Default for SourceDraft {
    fn default() -> Self {
        SourceDraft {
            name: String::new(),
            url: String::new(),
            kind: "feed".into(),
            interval: "60".into(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/content_sources.html")]
struct SourcesPage {
    c: Chrome,
    sources: Vec<Source>,
    total: i64,
    page: i64,
    pages: i64,
    d: SourceDraft,
    errors: FieldErrors,
    notes: Notes,
}

impl SourcesPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }
}

#[allow(clippy::too_many_arguments)]
async fn render_sources(
    state: &AppState,
    c: Chrome,
    page: i64,
    d: SourceDraft,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let l: Sources = data(
        stored::list::<content::Row>(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": page, "size": PAGE_SIZE}))?),
        )
        .await,
    )?;
    reshow(
        status,
        &SourcesPage {
            c,
            pages: pages_of(l.total, PAGE_SIZE),
            sources: l.list,
            total: l.total,
            page,
            d,
            errors,
            notes,
        },
    )
}

/// `GET /console/content-sources?page`.
pub async fn sources(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let notes = Notes::from_query(&c.l, raw.as_deref());
    render_sources(
        &state,
        c,
        page_param(raw.as_deref()),
        SourceDraft::default(),
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/content-sources` (name, url, kind, intervalMinutes), or (id, action=fetch |
/// delete).
pub async fn save_source(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    if let Some(id) = form.ids("id").first().copied() {
        let r = match form.get("action").as_deref() {
            Some("delete") => data::<_, Value>(
                stored::delete::<content::Row>(State(state.clone()), c.user.clone(), ApiPath(id))
                    .await,
            )
            .map(|_| "/console/content-sources?done=deleted".to_string()),
            _ => data::<_, Value>(
                content::fetch_now(State(state.clone()), c.user.clone(), ApiPath(id)).await,
            )
            .map(|_| format!("/console/content-sources/{id}?done=saved")),
        };
        return match r {
            Ok(to) => see_other(&to),
            Err(e) if is_refusal(&e) || e.status() == StatusCode::BAD_GATEWAY => {
                let status = e.status();
                render_sources(
                    &state,
                    c,
                    1,
                    SourceDraft::default(),
                    FieldErrors::default(),
                    Notes::refused(&format!("source-{id}"), &e),
                    status,
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
    }
    let d = SourceDraft {
        name: form.get("name").unwrap_or_default(),
        url: form.get("url").unwrap_or_default(),
        kind: form.get("kind").unwrap_or_else(|| "feed".into()),
        interval: form.get("intervalMinutes").unwrap_or_default(),
    };
    let interval = match d.interval.as_str() {
        "" => Value::Null,
        i => i
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(i)),
    };
    let body = json!({"name": d.name, "url": d.url, "kind": d.kind, "intervalMinutes": interval});
    let r = match arg(body) {
        Ok(b) => data::<_, Value>(
            content::create(State(state.clone()), c.user.clone(), ApiJson(b)).await,
        ),
        Err(e) => Err(e),
    };
    redirect_or_again(
        answer(r)?,
        |_| "/console/content-sources?done=created".into(),
        |errors, status| render_sources(&state, c, 1, d, errors, Notes::default(), status),
    )
    .await
}

#[derive(Template)]
#[template(path = "console/content_source.html")]
struct SourcePage {
    c: Chrome,
    s: Source,
    notes: Notes,
}

/// `GET /console/content-sources/{id}`: the source and the items it collected.
pub async fn source(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let s: Source =
        data(stored::get::<content::Row>(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let notes = Notes::from_query(&c.l, raw.as_deref());
    super::page(&SourcePage { c, s, notes })
}
