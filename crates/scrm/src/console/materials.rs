//! The material library (素材库): materials by type and title, a form for every material type
//! (text, link, image by URL or upload, mini program with its cover, file, video) posted as
//! multipart with its file, edit (the same form; a new file replaces the stored one, none keeps
//! it), and delete. The form ends in the API's own upload
//! (`operation::materials::upload`), so the file checks (kind per type, WeCom's size limits)
//! are the API's and their refusals show next to the file input. The group-send form and channel
//! codes pick from this library.

use askama::Template;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Chrome, FieldErrors, Form, Notes, PageResult, answer, answer_found, arg, data, page_param,
    pages_of, query_param, redirect_or_again, reshow, see_other,
};
use crate::auth::permissions as perm;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::operation::materials as api;
use crate::operation::materials::upload as up;
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
    pub appid: String,
    pub page: String,
}

impl Draft {
    /// A stored material in the form.
    fn of(m: &Material) -> Draft {
        let s = |k: &str| m.content[k].as_str().unwrap_or("").to_string();
        Draft {
            material_type: m.material_type.clone(),
            title: m.title.clone(),
            text: s("text"),
            url: s("url"),
            desc: s("desc"),
            pic_url: s("picUrl"),
            appid: s("appid"),
            page: s("page"),
        }
    }

    /// The API's `content` for the draft's type.
    fn content(&self) -> Value {
        let mut content = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                content.insert(k.into(), json!(v));
            }
        };
        match self.material_type.as_str() {
            "text" => put("text", &self.text),
            "link" => {
                put("url", &self.url);
                put("desc", &self.desc);
            }
            "image" => put("picUrl", &self.pic_url),
            "miniprogram" => {
                put("appid", &self.appid);
                put("page", &self.page);
            }
            _ => {}
        }
        Value::Object(content)
    }
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
    /// The material the form edits (None: it creates one), with its stored file's name.
    editing: Option<Editing>,
    errors: FieldErrors,
    notes: Notes,
}

/// The material being edited.
pub struct Editing {
    pub id: i64,
    pub file_name: Option<String>,
}

impl MaterialsPage {
    /// Where the form posts.
    pub fn action(&self) -> String {
        match &self.editing {
            Some(e) => format!("/console/materials/{}/upload", e.id),
            None => "/console/materials/upload".into(),
        }
    }

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

#[allow(clippy::too_many_arguments)]
async fn render(
    state: &AppState,
    c: Chrome,
    f: Filters,
    d: Draft,
    editing: Option<Editing>,
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
            editing,
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
        None,
        FieldErrors::default(),
        notes,
        StatusCode::OK,
    )
    .await
}

fn first_page() -> Filters {
    Filters {
        material_type: String::new(),
        keyword: String::new(),
        page: 1,
    }
}

/// `GET /console/materials/{id}/edit`: the form with the material, above the list.
pub async fn edit(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
) -> PageResult {
    let m: Material =
        data(api::get_material(State(state.clone()), c.user.clone(), ApiPath(id)).await)?;
    let editing = Editing {
        id,
        file_name: m.has_file.then(|| m.file_name.clone()).flatten(),
    };
    render(
        &state,
        c,
        first_page(),
        Draft::of(&m),
        Some(editing),
        FieldErrors::default(),
        Notes::default(),
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
        appid: form.get("appid").unwrap_or_default(),
        page: form.get("page").unwrap_or_default(),
    };
    let body = json!({
        "materialType": Some(&d.material_type).filter(|t| !t.is_empty()),
        "title": d.title,
        "content": d.content(),
    });
    let r = data::<_, Value>(
        api::create_material(State(state.clone()), c.user.clone(), ApiJson(arg(body)?)).await,
    );
    after_save(&state, c, d, None, r).await
}

/// After a save: back to the list, or the form again with the API's problems by field.
async fn after_save(
    state: &AppState,
    c: Chrome,
    d: Draft,
    editing: Option<Editing>,
    r: Result<Value, ApiError>,
) -> PageResult {
    let done = if editing.is_some() {
        "saved"
    } else {
        "created"
    };
    // A post to a material that is gone is the error page, not the form.
    let answer = if editing.is_some() {
        answer_found(r)?
    } else {
        answer(r)?
    };
    redirect_or_again(
        answer,
        |_| format!("/console/materials?done={done}"),
        |errors, status| {
            render(
                state,
                c,
                first_page(),
                d,
                editing,
                errors,
                Notes::default(),
                status,
            )
        },
    )
    .await
}

/// The material form as posted (multipart): the draft, the file, and what broke the body (an
/// upload over the limit is cut off mid-form).
async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(Draft, Option<(String, Vec<u8>)>, Option<ApiError>), ApiError> {
    let mut multipart = multipart
        .map_err(|_| ApiError::invalid("the form must be posted as multipart/form-data"))?;
    let mut d = Draft::default();
    let mut file = None;
    let mut broken = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                broken = Some(up::multipart_error(e));
                break;
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let read = if name == "file" {
            up::file_of(field).await.map(|f| file = f)
        } else {
            up::text_of(field).await.map(|v| {
                let v = v.trim().to_string();
                match name.as_str() {
                    "materialType" => d.material_type = v,
                    "title" => d.title = v,
                    "text" => d.text = v,
                    "url" => d.url = v,
                    "desc" => d.desc = v,
                    "picUrl" => d.pic_url = v,
                    "appid" => d.appid = v,
                    "page" => d.page = v,
                    _ => {}
                }
            })
        };
        if let Err(e) = read {
            broken = Some(e);
            break;
        }
    }
    Ok((d, file, broken))
}

impl Draft {
    fn upload(&self, file: Option<(String, Vec<u8>)>) -> up::Upload {
        up::Upload {
            material_type: self.material_type.clone(),
            title: self.title.clone(),
            content: self.content(),
            file,
        }
    }
}

/// `POST /console/materials/upload` (multipart: the create form's fields and `file`): the
/// material with its file through the API's upload; a refused file stores nothing.
pub async fn upload(
    State(state): State<AppState>,
    c: Chrome,
    multipart: Result<Multipart, MultipartRejection>,
) -> PageResult {
    let (d, file, broken) = read_form(multipart).await?;
    let r = match broken {
        Some(e) => Err(e),
        None => data::<_, Value>(up::create_with_file(&state, &c.user, d.upload(file)).await),
    };
    after_save(&state, c, d, None, r).await
}

/// `POST /console/materials/{id}/upload` (multipart: the edit form's fields and `file`): the
/// change through the API's upload; no file keeps the stored one, a new one replaces it.
pub async fn update(
    State(state): State<AppState>,
    c: Chrome,
    ApiPath(id): ApiPath<i64>,
    multipart: Result<Multipart, MultipartRejection>,
) -> PageResult {
    let (d, file, broken) = read_form(multipart).await?;
    let r = match broken {
        Some(e) => Err(e),
        None => data::<_, Value>(up::update_with_file(&state, &c.user, id, d.upload(file)).await),
    };
    // The stored file's name, for the form shown again.
    let file_name = api::get(&state.db, c.user.tenant_id, id)
        .await?
        .filter(|m| m.file_data.is_some())
        .and_then(|m| m.file_name);
    after_save(&state, c, d, Some(Editing { id, file_name }), r).await
}
