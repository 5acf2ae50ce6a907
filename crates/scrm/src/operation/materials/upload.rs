//! Material files as uploads: `POST /api/material/upload` (multipart/form-data: `materialType`,
//! `title`, `content` as a JSON object, `file`) and the console's material form both end in
//! [`create_with_file`]; `PUT /api/material/{id}/upload` (the same fields) and the console's edit
//! form in [`update_with_file`], where no file keeps the stored one and a new file drops the
//! cached WeCom media id. The file is checked against its material type by its first bytes (what
//! the browser calls it is not trusted) and against WeCom's size limit for that type; a refused
//! upload stores nothing.

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::{
    Checked, MAX_FILE_BYTES, MaterialBody, MaterialView, check, content_str, get, insert,
    save_update,
};
use crate::auth::CurrentUser;
use crate::http::envelope::Reply;
use crate::http::error::FieldError;
use crate::http::extract::ApiPath;
use crate::http::{ApiError, ApiResult};
use crate::state::AppState;

/// The largest upload request: the largest file plus room for the form's other fields.
pub const UPLOAD_BODY_BYTES: usize = MAX_FILE_BYTES + 256 * 1024;

/// Stable error names of a refused file (the console translates them; clients match on them).
pub const FILE_TOO_LARGE: &str = "FILE_TOO_LARGE";
pub const FILE_TYPE_NOT_ALLOWED: &str = "FILE_TYPE_NOT_ALLOWED";

/// A material with its file, as a form gives it.
pub struct Upload {
    pub material_type: String,
    pub title: String,
    pub content: Value,
    /// The file's name and bytes; None when the form had no file.
    pub file: Option<(String, Vec<u8>)>,
}

/// A file kind, told by its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Png,
    Jpeg,
    Mp4,
    Other,
}

fn kind_of(b: &[u8]) -> Kind {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Kind::Png
    } else if b.starts_with(b"\xff\xd8\xff") {
        Kind::Jpeg
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" {
        Kind::Mp4
    } else {
        Kind::Other
    }
}

/// What a material type takes as its file: the kinds (None: any), the largest size in bytes
/// (WeCom's: images and videos 10 MB, files 20 MB) and how to say it. None: no file at all.
fn accepts(material_type: &str) -> Option<(Option<&'static [Kind]>, usize, &'static str)> {
    const IMAGE: &[Kind] = &[Kind::Png, Kind::Jpeg];
    match material_type {
        "image" => Some((Some(IMAGE), 10 << 20, "a JPG or PNG image of at most 10 MB")),
        "miniprogram" => Some((Some(IMAGE), 10 << 20, "a JPG or PNG cover of at most 10 MB")),
        "video" => Some((
            Some(&[Kind::Mp4]),
            10 << 20,
            "an MP4 video of at most 10 MB",
        )),
        "file" => Some((None, MAX_FILE_BYTES, "a file of at most 20 MB")),
        _ => None,
    }
}

/// A refusal of the `file` field with a stable name.
fn refuse_file(status: StatusCode, name: &'static str, message: &str) -> ApiError {
    ApiError::Refused {
        status,
        name,
        message: format!("file: {message}"),
        fields: vec![FieldError {
            field: "file".into(),
            message: message.into(),
        }],
    }
}

/// The request body over [`UPLOAD_BODY_BYTES`] is a 413 on `file`; any other broken multipart
/// body a 400.
pub fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        refuse_file(
            StatusCode::PAYLOAD_TOO_LARGE,
            FILE_TOO_LARGE,
            "the upload is over 20 MB",
        )
    } else {
        ApiError::invalid(format!("unreadable multipart body: {}", e.body_text()))
    }
}

/// A text field of a multipart form.
pub async fn text_of(field: Field<'_>) -> ApiResult<String> {
    field.text().await.map_err(multipart_error)
}

/// The file of a multipart form, or None for an empty file input (a form posted without one).
pub async fn file_of(field: Field<'_>) -> ApiResult<Option<(String, Vec<u8>)>> {
    let name = field
        .file_name()
        .map(str::to_string)
        .filter(|n| !n.is_empty());
    let bytes = field.bytes().await.map_err(multipart_error)?;
    Ok(match name {
        None if bytes.is_empty() => None,
        name => Some((name.unwrap_or_else(|| "file".into()), bytes.to_vec())),
    })
}

/// Check the upload (type, file kind and size) and the material as the JSON routes do. `kept`
/// is the stored file (its name and base64) that an update keeps when no file is sent.
fn check_upload(u: Upload, kept: Option<(Option<String>, String)>) -> ApiResult<Checked> {
    if u.material_type.is_empty() {
        return Err(ApiError::field("materialType", "is required"));
    }
    let mut file_name = u.file.as_ref().map(|(n, _)| n.clone());
    let file_data = match (&u.file, accepts(&u.material_type)) {
        (None, _) if kept.is_some() => {
            let (name, data) = kept.unwrap_or_default();
            file_name = name;
            Some(data)
        }
        (None, _) => {
            let needs = matches!(u.material_type.as_str(), "file" | "video" | "miniprogram")
                || (u.material_type == "image" && content_str(&u.content, "picUrl").is_none());
            if needs {
                return Err(ApiError::field(
                    "file",
                    "is required for this material type",
                ));
            }
            None
        }
        (Some(_), None) if !super::TYPES.contains(&u.material_type.as_str()) => None, // check() names it
        (Some(_), None) => {
            return Err(refuse_file(
                StatusCode::UNPROCESSABLE_ENTITY,
                FILE_TYPE_NOT_ALLOWED,
                "text and link materials take no file",
            ));
        }
        (Some((_, bytes)), Some((kinds, max, what))) => {
            if bytes.len() > max {
                return Err(refuse_file(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    FILE_TOO_LARGE,
                    &format!("must be {what}"),
                ));
            }
            if bytes.len() <= 5 {
                return Err(ApiError::field("file", "is empty"));
            }
            if kinds.is_some_and(|k| !k.contains(&kind_of(bytes))) {
                return Err(refuse_file(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    FILE_TYPE_NOT_ALLOWED,
                    &format!("must be {what}"),
                ));
            }
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    };
    let body = MaterialBody {
        material_type: Some(u.material_type),
        title: Some(u.title),
        content: u.content,
        file_name,
        file_data,
    };
    check(body)
}

/// Check the upload, then create it as `POST /api/material` would.
pub async fn create_with_file(
    state: &AppState,
    user: &CurrentUser,
    u: Upload,
) -> ApiResult<Reply<MaterialView>> {
    insert(state, user, check_upload(u, None)?).await
}

/// Check the upload, then change material `id` as `PUT /api/material/{id}` would: no file keeps
/// the stored one, a new file replaces it and drops the cached media id.
pub async fn update_with_file(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
    u: Upload,
) -> ApiResult<Reply<MaterialView>> {
    let existing = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("material"))?;
    let new_file = u.file.is_some();
    let kept = existing.file_data.map(|d| (existing.file_name, d));
    save_update(state, user, id, check_upload(u, kept)?, new_file).await
}

/// An upload's fields from a multipart body (an unknown field is refused by name).
async fn read_upload(multipart: Result<Multipart, MultipartRejection>) -> ApiResult<Upload> {
    let mut multipart =
        multipart.map_err(|_| ApiError::invalid("the body must be multipart/form-data"))?;
    let mut u = Upload {
        material_type: String::new(),
        title: String::new(),
        content: json!({}),
        file: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "materialType" => u.material_type = text_of(field).await?.trim().to_string(),
            "title" => u.title = text_of(field).await?,
            "content" => {
                let t = text_of(field).await?;
                if !t.trim().is_empty() {
                    u.content = serde_json::from_str(&t)
                        .map_err(|_| ApiError::field("content", "must be a JSON object"))?;
                }
            }
            "file" => u.file = file_of(field).await?,
            other => {
                return Err(ApiError::field(
                    other.to_string(),
                    "is not a field of an upload",
                ));
            }
        }
    }
    Ok(u)
}

/// `POST /api/material/upload` (multipart/form-data): `materialType`, `title`, optional
/// `content` (a JSON object: `picUrl`, `appid` and `page`, …) and `file`.
pub(crate) async fn upload_material(
    State(state): State<AppState>,
    user: CurrentUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Reply<MaterialView>> {
    let u = read_upload(multipart).await?;
    create_with_file(&state, &user, u).await
}

/// `PUT /api/material/{id}/upload` (multipart/form-data): the upload's fields; without `file`
/// the stored file is kept.
pub(crate) async fn update_upload(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Reply<MaterialView>> {
    let u = read_upload(multipart).await?;
    update_with_file(&state, &user, id, u).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_by_their_first_bytes() {
        assert_eq!(kind_of(b"\x89PNG\r\n\x1a\n0000"), Kind::Png);
        assert_eq!(kind_of(b"\xff\xd8\xff\xe0JFIF"), Kind::Jpeg);
        assert_eq!(kind_of(b"\0\0\0\x18ftypmp42...."), Kind::Mp4);
        assert_eq!(kind_of(b"GIF89a......"), Kind::Other);
        assert!(accepts("text").is_none());
        assert!(accepts("file").unwrap().0.is_none());
    }
}
