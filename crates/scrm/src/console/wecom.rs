//! WeCom integration pages beyond the overview: received callbacks (with replay of a failed or
//! finished one), sync logs, and the configuration form. Secrets are write-only: the form shows
//! them masked as the API does and sends only the ones typed in.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{
    Chrome, FieldErrors, Form, Notes, PageResult, arg, data, field_problems, is_refusal,
    page_param, pages_of, query_param, reshow, see_other, value,
};
use crate::auth::permissions as perm;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::integration::callbacks::{self, EventView};
use crate::integration::config::{self, ConfigView};
use crate::integration::sync::log::LogView;
use crate::integration::sync::routes as sync;
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

#[derive(Template)]
#[template(path = "console/callbacks.html")]
struct CallbacksPage {
    c: Chrome,
    events: Vec<EventView>,
    total: i64,
    page: i64,
    pages: i64,
    status: String,
    states: &'static [&'static str],
    notes: Notes,
}

impl CallbacksPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("status", &self.status)])
    }
}

async fn callbacks_with(
    state: &AppState,
    c: Chrome,
    status: String,
    page: i64,
    notes: Notes,
    code: StatusCode,
) -> PageResult {
    let p = value(
        callbacks::events(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({
                "status": Some(&status).filter(|s| !s.is_empty()),
                "page": page,
                "pageSize": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    reshow(
        code,
        &CallbacksPage {
            c,
            pages: pages_of(p.total, PAGE_SIZE),
            events: p.list,
            total: p.total,
            page,
            status,
            states: callbacks::STATES,
            notes,
        },
    )
}

/// `GET /console/integration/callbacks?status&page`: received callbacks, newest first.
pub async fn callbacks_page(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let status = query_param(raw.as_deref(), "status").unwrap_or_default();
    let notes = Notes::from_query(&c.l, raw.as_deref());
    let page = page_param(raw.as_deref());
    callbacks_with(&state, c, status, page, notes, StatusCode::OK).await
}

/// `POST /console/integration/callbacks/{id}/replay`: process a callback again (the API's).
pub async fn replay_callback(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let r = data::<_, Value>(
        callbacks::replay(State(state.clone()), c.user.clone(), ApiPath(id)).await,
    );
    match r {
        Ok(_) => see_other("/console/integration/callbacks?done=replayed"),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            let notes = Notes::refused(&format!("event-{id}"), &e);
            callbacks_with(&state, c, String::new(), 1, notes, status).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/sync_logs.html")]
struct LogsPage {
    c: Chrome,
    logs: Vec<LogView>,
    total: i64,
    page: i64,
    pages: i64,
    sync_type: String,
    status: String,
}

impl LogsPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[("syncType", &self.sync_type), ("status", &self.status)])
    }
}

/// `GET /console/integration/sync-logs?syncType&status&page`.
pub async fn sync_logs(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let sync_type = query_param(raw.as_deref(), "syncType").unwrap_or_default();
    let status = query_param(raw.as_deref(), "status").unwrap_or_default();
    let page = page_param(raw.as_deref());
    let p = value(
        sync::logs(
            State(state),
            c.user.clone(),
            ApiQuery(arg(json!({
                "syncType": Some(&sync_type).filter(|s| !s.is_empty()),
                "status": Some(&status).filter(|s| !s.is_empty()),
                "page": page,
                "pageSize": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    super::page(&LogsPage {
        c,
        pages: pages_of(p.total, PAGE_SIZE),
        logs: p.list,
        total: p.total,
        page,
        sync_type,
        status,
    })
}

/// What the configuration form was filled with. Secrets typed in are never shown again.
#[derive(Default)]
pub struct ConfigDraft {
    pub corp_id: String,
    pub agent_id: String,
    pub api_base: String,
    pub enabled: bool,
}

#[derive(Template)]
#[template(path = "console/wecom_config.html")]
struct ConfigPage {
    c: Chrome,
    /// The stored configuration, secrets masked (None before the first save).
    current: Option<ConfigView>,
    d: ConfigDraft,
    errors: FieldErrors,
}

impl ConfigPage {
    /// A stored secret, masked, as the placeholder of its field.
    pub fn masked(&self, field: &str) -> String {
        let Some(cur) = &self.current else {
            return String::new();
        };
        let v = match field {
            "corpSecret" => Some(cur.corp_secret.clone()),
            "contactSecret" => cur.contact_secret.clone(),
            "contactsSecret" => cur.contacts_secret.clone(),
            "token" => cur.token.clone(),
            "encodingAesKey" => cur.encoding_aes_key.clone(),
            _ => None,
        };
        v.unwrap_or_default()
    }
}

async fn current_config(state: &AppState, c: &Chrome) -> Result<Option<ConfigView>, ApiError> {
    value(config::get(State(state.clone()), c.user.clone()).await)
}

/// `GET /console/integration/config`: the form, filled with the stored values (secrets masked).
pub async fn config_form(State(state): State<AppState>, c: Chrome) -> PageResult {
    let current = current_config(&state, &c).await?;
    let d = match &current {
        Some(v) => ConfigDraft {
            corp_id: v.corp_id.clone(),
            agent_id: v.agent_id.to_string(),
            api_base: v.api_base.clone().unwrap_or_default(),
            enabled: v.enabled,
        },
        None => ConfigDraft {
            enabled: true,
            ..Default::default()
        },
    };
    super::page(&ConfigPage {
        c,
        current,
        d,
        errors: FieldErrors::default(),
    })
}

const SECRETS: [&str; 5] = [
    "corpSecret",
    "contactSecret",
    "contactsSecret",
    "token",
    "encodingAesKey",
];

/// `POST /console/integration/config`: create or change the configuration through the API.
/// A secret left empty keeps its stored value; "clear" boxes clear the optional ones.
pub async fn save_config(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let d = ConfigDraft {
        corp_id: form.get("corpId").unwrap_or_default(),
        agent_id: form.get("agentId").unwrap_or_default(),
        api_base: form.get("apiBase").unwrap_or_default(),
        enabled: form.get("enabled").is_some(),
    };
    let current = current_config(&state, &c).await?;
    let mut b = Map::new();
    b.insert("corpId".into(), json!(d.corp_id));
    // An agent id the form cannot read goes to the API as text, so the API names the field.
    b.insert(
        "agentId".into(),
        match d.agent_id.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) if d.agent_id.is_empty() => Value::Null,
            Err(_) => json!(d.agent_id),
        },
    );
    b.insert("apiBase".into(), json!(d.api_base));
    b.insert("enabled".into(), json!(d.enabled));
    for s in SECRETS {
        if let Some(v) = form.get(s) {
            b.insert(s.into(), json!(v));
        } else if form.get(&format!("clear.{s}")).is_some() {
            b.insert(s.into(), json!(""));
        }
    }
    if current.is_none() && b.get("apiBase") == Some(&json!("")) {
        b.remove("apiBase");
    }
    let parsed = arg::<config::ConfigBody>(Value::Object(b));
    let r = match parsed {
        Err(e) => Err(e),
        Ok(body) => match &current {
            Some(cur) => value(
                config::update(
                    State(state.clone()),
                    c.user.clone(),
                    ApiPath(cur.id),
                    ApiJson(body),
                )
                .await,
            ),
            None => {
                value(config::create(State(state.clone()), c.user.clone(), ApiJson(body)).await)
            }
        },
    };
    match r {
        Ok(_) => see_other("/console/integration?done=saved"),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            let errors = match &e {
                ApiError::Validation { message, .. } if message.starts_with("invalid input") => {
                    FieldErrors(vec![("agentId".to_string(), message.clone())])
                }
                other => field_problems(other),
            };
            reshow(
                status,
                &ConfigPage {
                    c,
                    current,
                    d,
                    errors,
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}
