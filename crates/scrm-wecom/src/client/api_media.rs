//! Temporary media (API-FACTS §8): multipart uploads, part name `media`; ids live 3 days.

use serde::{Deserialize, Serialize};

use super::wire::int_lenient;
use super::{Api, AppClient, Body, WeComError};

const MEDIA_UPLOAD: Api = Api::post_write("media/upload", "/cgi-bin/media/upload");
const MEDIA_UPLOAD_ATTACHMENT: Api = Api::post_write(
    "media/upload_attachment",
    "/cgi-bin/media/upload_attachment",
);

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Display name (WeCom shows it); must be set.
    pub filename: String,
    /// MIME type, e.g. `image/png`.
    pub content_type: String,
    /// The bytes (more than 5).
    pub bytes: Vec<u8>,
}

/// `media/upload` `type` / `upload_attachment` `media_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// ≤10 MB JPG/PNG.
    Image,
    /// ≤2 MB AMR, ≤60 s (media/upload only).
    Voice,
    /// ≤10 MB MP4.
    Video,
    /// ≤20 MB.
    File,
}

impl MediaType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::File => "file",
        }
    }
}

/// Upload response; `created_at` is a string from media/upload and an integer from
/// upload_attachment, so it is read leniently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaUploadResponse {
    /// The media type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id valid for 3 days across the corp's apps.
    pub media_id: String,
    /// Unix seconds.
    #[serde(deserialize_with = "int_lenient")]
    pub created_at: i64,
}

impl AppClient {
    /// `media/upload`.
    pub async fn upload_media(
        &self,
        kind: MediaType,
        file: MediaFile,
    ) -> Result<MediaUploadResponse, WeComError> {
        self.upload(
            &MEDIA_UPLOAD,
            vec![("type", kind.as_str().to_owned())],
            file,
        )
        .await
    }

    /// `media/upload_attachment`; `attachment_type` 1 = 朋友圈 (image/video only), 2 = 商品图册.
    pub async fn upload_attachment(
        &self,
        media_type: MediaType,
        attachment_type: u8,
        file: MediaFile,
    ) -> Result<MediaUploadResponse, WeComError> {
        if media_type == MediaType::Voice {
            return Err(WeComError::InvalidRequest(
                "upload_attachment takes image, video or file".into(),
            ));
        }
        let query = vec![
            ("media_type", media_type.as_str().to_owned()),
            ("attachment_type", attachment_type.to_string()),
        ];
        self.upload(&MEDIA_UPLOAD_ATTACHMENT, query, file).await
    }

    async fn upload(
        &self,
        api: &Api,
        query: Vec<(&'static str, String)>,
        file: MediaFile,
    ) -> Result<MediaUploadResponse, WeComError> {
        if file.bytes.len() <= 5 {
            return Err(WeComError::InvalidRequest(
                "media must be more than 5 bytes".into(),
            ));
        }
        if file.filename.is_empty() {
            return Err(WeComError::InvalidRequest("media needs a filename".into()));
        }
        let body = Body::Multipart {
            filename: file.filename,
            content_type: file.content_type,
            bytes: file.bytes,
        };
        self.execute(api, &query, &body, true).await
    }
}
