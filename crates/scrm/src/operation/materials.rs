//! The material library (seed 000's `materialId`): text, image, link, mini program, file and
//! video materials, CRUD over the API, and their WeCom form. Files are uploaded to WeCom when a
//! send first uses them and the media id is kept until it is close to WeCom's 3-day expiry, so
//! a library image sent daily is uploaded about once in three days, not once per send.

use axum::extract::State;
use axum::http::Method;
use base64::Engine;
use scrm_db::{Db, query};
use scrm_wecom::client::{
    Attachment, ImageAttachment, LinkAttachment, MediaAttachment, MediaFile, MediaType,
    MiniprogramAttachment,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Paging, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::wecom::TenantWeCom;
use crate::state::{AppState, iso, now_ms};

pub mod upload;

/// The kinds of material.
pub const TYPES: [&str; 6] = ["text", "image", "link", "miniprogram", "file", "video"];

/// WeCom keeps a media id 3 days; renew it when less than this is left, so a send that starts
/// now still finds it valid when staff confirm hours later.
const MEDIA_RENEW_MARGIN_MS: i64 = 24 * 3600 * 1000;
const MEDIA_TTL_MS: i64 = 3 * 24 * 3600 * 1000;
/// Largest file kept in the library (WeCom's file limit is 20 MB).
const MAX_FILE_BYTES: usize = 20 << 20;

/// The material routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "operation")
        .route(
            Method::POST,
            "/api/material",
            Access::Permission(perm::MATERIAL_MANAGE),
            "Add a material (text, image, link, miniprogram, file, video)",
            create_material,
        )
        .route_with_body_limit(
            Method::POST,
            "/api/material/upload",
            Access::Permission(perm::MATERIAL_MANAGE),
            "Add a material with its file as multipart/form-data (materialType, title, content, file)",
            upload::UPLOAD_BODY_BYTES,
            upload::upload_material,
        )
        .route_with_body_limit(
            Method::PUT,
            "/api/material/{id}/upload",
            Access::Permission(perm::MATERIAL_MANAGE),
            "Change a material, with a new file as multipart/form-data (materialType, title, content, file; no file keeps the stored one)",
            upload::UPLOAD_BODY_BYTES,
            upload::update_upload,
        )
        .route(
            Method::GET,
            "/api/materials",
            Access::Permission(perm::MATERIAL_VIEW),
            "List materials (page, pageSize, materialType, keyword)",
            list_materials,
        )
        .route(
            Method::GET,
            "/api/material/{id}",
            Access::Permission(perm::MATERIAL_VIEW),
            "One material",
            get_material,
        )
        .route(
            Method::PUT,
            "/api/material/{id}",
            Access::Permission(perm::MATERIAL_MANAGE),
            "Change a material",
            update_material,
        )
        .route(
            Method::DELETE,
            "/api/material/{id}",
            Access::Permission(perm::MATERIAL_MANAGE),
            "Delete a material",
            delete_material,
        )
}

/// A stored material.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MaterialRow {
    pub id: i64,
    pub material_type: String,
    pub title: String,
    pub content: String,
    pub file_name: Option<String>,
    pub file_data: Option<String>,
    pub media_id: Option<String>,
    pub media_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A material as the API shows it (the file itself is not echoed back).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterialView {
    pub material_id: i64,
    pub material_type: String,
    pub title: String,
    pub content: Value,
    pub file_name: Option<String>,
    pub has_file: bool,
    pub media_id: Option<String>,
    pub media_expires_at: Option<String>,
    pub create_time: String,
    pub update_time: String,
}

impl From<MaterialRow> for MaterialView {
    fn from(r: MaterialRow) -> Self {
        MaterialView {
            material_id: r.id,
            material_type: r.material_type,
            title: r.title,
            content: serde_json::from_str(&r.content).unwrap_or(Value::Null),
            file_name: r.file_name,
            has_file: r.file_data.is_some(),
            media_id: r.media_id,
            media_expires_at: r.media_expires_at.map(iso),
            create_time: iso(r.created_at),
            update_time: iso(r.updated_at),
        }
    }
}

/// The body of create and update.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaterialBody {
    material_type: Option<String>,
    title: Option<String>,
    #[serde(default)]
    content: Value,
    file_name: Option<String>,
    /// The file, base64.
    file_data: Option<String>,
}

pub(crate) struct Checked {
    material_type: String,
    title: String,
    content: Value,
    file_name: Option<String>,
    file_data: Option<String>,
}

fn content_str<'a>(c: &'a Value, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn check(b: MaterialBody) -> ApiResult<Checked> {
    let material_type = b
        .material_type
        .ok_or_else(|| ApiError::field("materialType", "is required"))?;
    if !TYPES.contains(&material_type.as_str()) {
        return Err(ApiError::field(
            "materialType",
            "must be text, image, link, miniprogram, file or video",
        ));
    }
    let title = b
        .title
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::field("title", "is required"))?;
    if title.chars().count() > 200 {
        return Err(ApiError::field("title", "at most 200 characters"));
    }
    let content = if b.content.is_null() {
        json!({})
    } else {
        b.content
    };
    if !content.is_object() {
        return Err(ApiError::field("content", "must be an object"));
    }
    if let Some(data) = &b.file_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| ApiError::field("fileData", "must be base64"))?;
        if bytes.len() <= 5 || bytes.len() > MAX_FILE_BYTES {
            return Err(ApiError::field(
                "fileData",
                "must be more than 5 bytes and at most 20 MB",
            ));
        }
    }
    let needs_file = matches!(material_type.as_str(), "file" | "video" | "miniprogram")
        || (material_type == "image" && content_str(&content, "picUrl").is_none());
    if needs_file && b.file_data.is_none() {
        return Err(ApiError::field(
            "fileData",
            "is required for this material type",
        ));
    }
    let required: &[&str] = match material_type.as_str() {
        "text" => &["text"],
        "link" => &["url"],
        "miniprogram" => &["appid", "page"],
        _ => &[],
    };
    for k in required {
        if content_str(&content, k).is_none() {
            return Err(ApiError::field(format!("content.{k}"), "is required"));
        }
    }
    Ok(Checked {
        material_type,
        title,
        content,
        file_name: b.file_name.or_else(|| Some("file".into())),
        file_data: b.file_data,
    })
}

const COLUMNS: &str = "id, material_type, title, content, file_name, file_data, media_id, \
                       media_expires_at, created_at, updated_at";

/// One of the tenant's materials.
pub async fn get(db: &Db, tenant_id: i64, id: i64) -> scrm_db::DbResult<Option<MaterialRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM material WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

pub(crate) async fn create_material(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<MaterialBody>,
) -> ApiResult<Reply<MaterialView>> {
    insert(&state, &user, check(body)?).await
}

/// Store a checked material (the JSON create and the upload).
async fn insert(
    state: &AppState,
    user: &CurrentUser,
    c: Checked,
) -> ApiResult<Reply<MaterialView>> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO material (tenant_id, material_type, title, content, file_name, file_data, \
                 created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(&c.material_type)
            .bind(&c.title)
            .bind(c.content.to_string())
            .bind(c.file_name.clone())
            .bind(c.file_data.clone())
            .bind(user.id)
            .bind(now)
            .bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        user,
        "material.create",
        "material",
        id,
        json!({"title": c.title}),
    )
    .await?;
    tx.commit().await?;
    let row = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("material"))?;
    Ok(created(row.into()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    material_type: Option<String>,
    keyword: Option<String>,
}

pub(crate) async fn list_materials(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<Value>> {
    let paging = Paging::new(q.page, q.page_size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(t) = q.material_type.filter(|t| !t.is_empty()) {
        cond.push_sql(" AND material_type = ?").push_bind(t);
    }
    if let Some(k) = q.keyword.filter(|k| !k.is_empty()) {
        cond.push_sql(" AND title LIKE ?")
            .push_bind(format!("%{k}%"));
    }
    let mut count = query("SELECT COUNT(*) FROM material");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(format!("SELECT {COLUMNS} FROM material"));
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<MaterialRow> = state.db.fetch_all(page).await?;
    let list: Vec<MaterialView> = rows.into_iter().map(Into::into).collect();
    Ok(ok(json!({
        "list": list, "total": total, "page": paging.page, "pageSize": paging.size
    })))
}

pub(crate) async fn get_material(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<MaterialView>> {
    let row = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("material"))?;
    Ok(ok(row.into()))
}

pub(crate) async fn update_material(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MaterialBody>,
) -> ApiResult<Reply<MaterialView>> {
    let existing = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("material"))?;
    // A file kept from before stays valid for the new version unless a new one is given.
    let keep_file = body.file_data.is_none();
    let mut body = body;
    if keep_file {
        body.file_data = existing.file_data.clone();
        if body.file_name.is_none() {
            body.file_name = existing.file_name.clone();
        }
    }
    save_update(&state, &user, id, check(body)?, !keep_file).await
}

/// Store a checked change of a material (the JSON update and the upload). A new file drops the
/// cached WeCom media id, so the next send uploads the new file.
async fn save_update(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
    c: Checked,
    new_file: bool,
) -> ApiResult<Reply<MaterialView>> {
    let mut tx = state.db.begin().await?;
    let mut q = query(
        "UPDATE material SET material_type = ?, title = ?, content = ?, file_name = ?, file_data = ?, updated_at = ?",
    )
    .bind(&c.material_type)
    .bind(&c.title)
    .bind(c.content.to_string())
    .bind(c.file_name.clone())
    .bind(c.file_data.clone())
    .bind(now_ms());
    if new_file {
        q.push_sql(", media_id = NULL, media_expires_at = NULL");
    }
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(user.tenant_id)
        .push_bind(id);
    tx.execute(q).await?;
    audit::record(
        &mut tx,
        user,
        "material.update",
        "material",
        id,
        json!({"title": c.title}),
    )
    .await?;
    tx.commit().await?;
    let row = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("material"))?;
    Ok(ok(row.into()))
}

pub(crate) async fn delete_material(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query("DELETE FROM material WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("material"));
    }
    audit::record(&mut tx, &user, "material.delete", "material", id, json!({})).await?;
    tx.commit().await?;
    Ok(ok(json!({"materialId": id, "deleted": true})))
}

/// The material's media id, uploading its file when there is none or it expires within a day.
pub(crate) async fn ensure_media(
    db: &Db,
    tenant_id: i64,
    wecom: &TenantWeCom,
    m: &MaterialRow,
    kind: MediaType,
) -> anyhow::Result<String> {
    let now = now_ms();
    if let (Some(id), Some(exp)) = (&m.media_id, m.media_expires_at)
        && exp - now > MEDIA_RENEW_MARGIN_MS
    {
        return Ok(id.clone());
    }
    let data = m
        .file_data
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("material {} has no file", m.id))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
    let content_type = match kind {
        MediaType::Image => "image/png",
        MediaType::Video => "video/mp4",
        _ => "application/octet-stream",
    };
    // add_msg_template attachments take media/upload ids (API-FACTS §7), which WeCom keeps for
    // the same 3 days as upload_attachment's.
    let resp = wecom
        .app
        .upload_media(
            kind,
            MediaFile {
                filename: m.file_name.clone().unwrap_or_else(|| "file".into()),
                content_type: content_type.into(),
                bytes,
            },
        )
        .await?;
    let created = if resp.created_at > 0 {
        resp.created_at * 1000
    } else {
        now
    };
    db.execute(
        query(
            "UPDATE material SET media_id = ?, media_expires_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(&resp.media_id)
        .bind(created + MEDIA_TTL_MS)
        .bind(tenant_id)
        .bind(m.id),
    )
    .await?;
    Ok(resp.media_id)
}

/// A material as add_msg_template parts: its text, and its attachment (uploaded if needed).
pub async fn wecom_parts(
    state: &AppState,
    tenant_id: i64,
    wecom: &TenantWeCom,
    material_id: i64,
) -> anyhow::Result<(Option<String>, Option<Attachment>)> {
    let m = get(&state.db, tenant_id, material_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("material {material_id} not found"))?;
    let c: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
    let field = |k: &str| content_str(&c, k).unwrap_or_default().to_string();
    let text = content_str(&c, "text").map(str::to_string);
    let attachment = match m.material_type.as_str() {
        "text" => None,
        "image" if m.file_data.is_none() => Some(Attachment::Image {
            image: ImageAttachment {
                media_id: String::new(),
                pic_url: field("picUrl"),
            },
        }),
        "image" => Some(Attachment::Image {
            image: ImageAttachment {
                media_id: ensure_media(&state.db, tenant_id, wecom, &m, MediaType::Image).await?,
                pic_url: String::new(),
            },
        }),
        "link" => Some(Attachment::Link {
            link: LinkAttachment {
                title: m.title.clone(),
                picurl: field("picUrl"),
                desc: field("desc"),
                url: field("url"),
            },
        }),
        "miniprogram" => Some(Attachment::Miniprogram {
            miniprogram: MiniprogramAttachment {
                title: m.title.clone(),
                pic_media_id: ensure_media(&state.db, tenant_id, wecom, &m, MediaType::Image)
                    .await?,
                appid: field("appid"),
                page: field("page"),
            },
        }),
        "video" => Some(Attachment::Video {
            video: MediaAttachment {
                media_id: ensure_media(&state.db, tenant_id, wecom, &m, MediaType::Video).await?,
            },
        }),
        _ => Some(Attachment::File {
            file: MediaAttachment {
                media_id: ensure_media(&state.db, tenant_id, wecom, &m, MediaType::File).await?,
            },
        }),
    };
    Ok((text, attachment))
}
