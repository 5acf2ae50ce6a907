//! Customer export jobs: start an export of a filtered customer list (always as a job, so the
//! page never waits for a file), the list of exports with their status (refreshing itself while
//! one is being built) and the download link the API serves.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, Form, PageResult, arg, data, page_param, pages_of, query_param, see_other};
use crate::customers::export;
use crate::customers::tags::{self, TagRow};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// An export as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    pub id: i64,
    pub format: String,
    pub status: String,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub file_name: String,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub expires_at: Option<String>,
    pub download_url: Option<String>,
}

impl Export {
    pub fn status_label(&self, l: &super::Lang) -> &'static str {
        match self.status.as_str() {
            "pending" => l.t("排队中", "queued"),
            "running" => l.t("生成中", "building"),
            "done" => l.t("可下载", "ready"),
            "expired" => l.t("已过期", "expired"),
            _ => l.t("失败", "failed"),
        }
    }

    /// The file's size, readable.
    pub fn size(&self) -> String {
        match self.bytes {
            Some(b) if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
            Some(b) if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
            Some(b) => format!("{b} B"),
            None => "—".into(),
        }
    }
}

#[derive(Deserialize)]
struct Listed {
    list: Vec<Export>,
    total: i64,
}

#[derive(Template)]
#[template(path = "console/exports.html")]
struct ExportsPage {
    c: Chrome,
    exports: Vec<Export>,
    tags: Vec<TagRow>,
    total: i64,
    page: i64,
    pages: i64,
    live: bool,
    notice: Option<String>,
    error: Option<String>,
}

impl ExportsPage {
    pub fn pager_query(&self) -> String {
        String::new()
    }
}

/// `GET /console/customers/exports?page=`.
pub async fn page(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let raw = raw.as_deref();
    let page = page_param(raw);
    let listed: Listed = data(
        export::list_exports(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"page": page, "size": PAGE_SIZE}))?),
        )
        .await,
    )?;
    let tags = tags::list_tags(&state.db, c.user.tenant_id, None).await?;
    let live = listed
        .list
        .iter()
        .any(|e| e.status == "pending" || e.status == "running");
    let notice = query_param(raw, "started")
        .map(|id| format!("{} #{id}", c.l.t("已开始导出", "Export started:")));
    super::page(&ExportsPage {
        pages: pages_of(listed.total, PAGE_SIZE),
        total: listed.total,
        exports: listed.list,
        tags,
        page,
        live,
        notice,
        error: query_param(raw, "error"),
        c,
    })
}

/// `POST /console/customers/exports`: export the customers matching the form's filters (a job):
/// this page's form (keyword, tags) or the customer list's ("export this list": its keyword,
/// tags, group chats, staff, channel and stage).
pub async fn start(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let mut b = json!({
        "format": form.get("format").unwrap_or_else(|| "csv".into()),
        "async": true,
    });
    for field in ["keyword", "channel", "stage"] {
        if let Some(v) = form.get(field) {
            b[field] = json!(v);
        }
    }
    for field in ["tagIds", "groupIds"] {
        let ids = form.ids(field);
        if !ids.is_empty() {
            b[field] = json!(ids);
        }
    }
    if let Some(s) = form.ids("staff").first() {
        b["followUserId"] = json!(s);
    }
    let r = export::export(State(state), c.user, ApiJson(arg(b)?)).await;
    let refused = |e: &ApiError| {
        let msg: String =
            url::form_urlencoded::byte_serialize(super::explain(e).as_bytes()).collect();
        see_other(&format!("/console/customers/exports?error={msg}"))
    };
    match r {
        Ok(resp) => {
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("reading the export reply: {e}"))
                })?;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let id = v["data"]["id"]
                .as_i64()
                .or_else(|| v["id"].as_i64())
                .unwrap_or(0);
            see_other(&format!("/console/customers/exports?started={id}"))
        }
        Err(e @ ApiError::Internal(_)) => Err(e.into()),
        Err(e) => refused(&e),
    }
}
