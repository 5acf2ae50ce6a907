//! The material library (素材库): materials by type and title, a form for text, link and image
//! (by URL) materials, and delete. Files (image uploads, video, file, mini program) are uploaded
//! over the API (`POST /api/material` with `fileData`); the group-send form and channel codes
//! pick from this library.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Chrome, FieldErrors, Form, Notes, PageResult, arg, data, field_problems, is_refusal,
    page_param, pages_of, query_param, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::operation::materials as api;
use crate::state::AppState;

const PAGE_SIZE: i64 = 20;

/// A material as the API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Material {
    pub material_id: i64,
    pub material_type: String,
    pub title: String,
    pub content: Value,
    pub file_name: Option<String>,
    pub has_file: bool,
    pub create_time: String,
}

impl Material {
    /// What the material holds, in one line.
    pub fn summary(&self) -> String {
        let s = |k: &str| self.content[k].as_str().unwrap_or("").to_string();
        match self.material_type.as_str() {
            "text" => s("text"),
            "link" => s("url"),
            "image" if !s("picUrl").is_empty() => s("picUrl"),
            _ => self.file_name.clone().unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct Listed {
    list: Vec<Material>,
    total: i64,
}

/// What the create form held.
#[derive(Default)]
pub struct Draft {
    pub material_type: String,
    pub title: String,
    pub text: String,
    pub url: String,
    pub desc: String,
    pub pic_url: String,
}

#[derive(Template)]
#[template(path = "console/materials.html")]
struct MaterialsPage {
    c: Chrome,
    materials: Vec<Material>,
    total: i64,
    page: i64,
    pages: i64,
    material_type: String,
    keyword: String,
    d: Draft,
    errors: FieldErrors,
    notes: Notes,
}

impl MaterialsPage {
    /// The list's filters for the pager's links.
    pub fn pager_query(&self) -> String {
        super::query_prefix(&[
            ("materialType", &self.material_type),
            ("keyword", &self.keyword),
        ])
    }
}

struct Filters {
    material_type: String,
    keyword: String,
    page: i64,
}

async fn render(
    state: &AppState,
    c: Chrome,
    f: Filters,
    d: Draft,
    errors: FieldErrors,
    notes: Notes,
    status: StatusCode,
) -> PageResult {
    let l: Listed = data(
        api::list_materials(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({
                "materialType": f.material_type,
                "keyword": f.keyword,
                "page": f.page,
                "pageSize": PAGE_SIZE,
            }))?),
        )
        .await,
    )?;
    reshow(
        status,
        &MaterialsPage {
            c,
            pages: pages_of(l.total, PAGE_SIZE),
            materials: l.list,
            total: l.total,
            page: f.page,
            material_type: f.material_type,
            keyword: f.keyword,
            d,
            errors,
            notes,
        },
    )
}

/// `GET /console/materials?materialType&keyword&page`.
pub async fn page(State(state): State<AppState>, c: Chrome, RawQuery(raw): RawQuery) -> PageResult {
    let f = Filters {
        material_type: query_param(raw.as_deref(), "materialType").unwrap_or_default(),
        keyword: query_param(raw.as_deref(), "keyword").unwrap_or_default(),
        page: page_param(raw.as_deref()),
    };
    let notes = Notes::from_query(&c.l, raw.as_deref());
    let d = Draft {
        material_type: "text".into(),
        ..Default::default()
    };
    render(
        &state,
        c,
        f,
        d,
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/materials` (materialType, title, text / url + desc / picUrl), or
/// (id, action=delete).
pub async fn save(State(state): State<AppState>, c: Chrome, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    if let (Some(id), Some("delete")) = (form.ids("id").first(), form.get("action").as_deref()) {
        data::<_, Value>(api::delete_material(State(state), c.user, ApiPath(*id)).await)?;
        return see_other("/console/materials?done=deleted");
    }
    let d = Draft {
        material_type: form.get("materialType").unwrap_or_default(),
        title: form.get("title").unwrap_or_default(),
        text: form.get("text").unwrap_or_default(),
        url: form.get("url").unwrap_or_default(),
        desc: form.get("desc").unwrap_or_default(),
        pic_url: form.get("picUrl").unwrap_or_default(),
    };
    let mut content = Map::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            content.insert(k.into(), json!(v));
        }
    };
    match d.material_type.as_str() {
        "text" => put("text", &d.text),
        "link" => {
            put("url", &d.url);
            put("desc", &d.desc);
        }
        "image" => put("picUrl", &d.pic_url),
        _ => {}
    }
    let body = json!({
        "materialType": Some(&d.material_type).filter(|t| !t.is_empty()),
        "title": d.title,
        "content": content,
    });
    let r = data::<_, Value>(
        api::create_material(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await,
    );
    match r {
        Ok(_) => see_other("/console/materials?done=created"),
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            let f = Filters {
                material_type: String::new(),
                keyword: String::new(),
                page: 1,
            };
            render(
                &state,
                c,
                f,
                d,
                field_problems(&e),
                Notes::default(),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
