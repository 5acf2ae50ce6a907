//! Message content (seed 004 §3.3): `{"type":"TEXT","data":{"text":"…"}}`, `IMAGE`, `LINK`,
//! `MINIPROGRAM`, `VIDEO`, `FILE`, and `MATERIAL` (a library material by id), checked at the edge
//! against WeCom's limits (API-FACTS §7) and turned into add_msg_template's text + attachments
//! when a send starts (materials are uploaded then, so their media ids are fresh).

use axum::http::StatusCode;
use scrm_wecom::client::{
    Attachment, ImageAttachment, LinkAttachment, MediaAttachment, MiniprogramAttachment, Text,
};
use serde_json::Value;

use crate::http::ApiError;
use crate::operation::materials;
use crate::operation::wecom::TenantWeCom;
use crate::state::AppState;

/// The seed's error name for bad content.
pub const MESSAGE_CONTENT_INVALID: &str = "MESSAGE_CONTENT_INVALID";

fn bad(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError::domain(status, MESSAGE_CONTENT_INVALID, msg)
}

/// Content that passed [`parse`]; kept as the JSON the client sent, so the task shows it back.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContent(Value);

impl MessageContent {
    /// The JSON as stored and shown.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// Plain text content (seed 000's `messageContent` string with messageType 1).
    pub fn text(text: &str) -> Result<Self, ApiError> {
        parse(&serde_json::json!({"type": "TEXT", "data": {"text": text}}))
    }

    /// The stored JSON, already checked when it was stored.
    pub fn from_stored(v: Value) -> Self {
        MessageContent(v)
    }
}

fn str_field<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn need<'a>(data: &'a Value, key: &str, ty: &str) -> Result<&'a str, ApiError> {
    str_field(data, key).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("{ty} content needs data.{key}"),
        )
    })
}

fn max_bytes(s: &str, max: usize, what: &str) -> Result<(), ApiError> {
    if s.len() > max {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// Check content: a known type, the fields that type needs, WeCom's length limits. Malformed
/// shapes are 400, content WeCom would refuse (too long) is 422; both `MESSAGE_CONTENT_INVALID`.
pub fn parse(v: &Value) -> Result<MessageContent, ApiError> {
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(StatusCode::BAD_REQUEST, "messageContent.type is required"))?;
    let data = v.get("data").filter(|d| d.is_object()).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            "messageContent.data must be an object",
        )
    })?;
    if let Some(t) = data.get("text") {
        let t = t
            .as_str()
            .ok_or_else(|| bad(StatusCode::BAD_REQUEST, "data.text must be a string"))?;
        max_bytes(t, 4000, "data.text")?;
    }
    match ty {
        "TEXT" => {
            need(data, "text", ty)?;
        }
        "IMAGE" => {
            if str_field(data, "media_id").is_none()
                && str_field(data, "pic_url").is_none()
                && data.get("materialId").and_then(Value::as_i64).is_none()
            {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    "IMAGE content needs data.media_id, data.pic_url or data.materialId",
                ));
            }
        }
        "LINK" => {
            max_bytes(need(data, "title", ty)?, 128, "data.title")?;
            let url = need(data, "url", ty)?;
            max_bytes(url, 2048, "data.url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "data.url must be an http(s) URL",
                ));
            }
            if let Some(d) = str_field(data, "desc") {
                max_bytes(d, 512, "data.desc")?;
            }
        }
        "MINIPROGRAM" => {
            max_bytes(need(data, "title", ty)?, 64, "data.title")?;
            for k in ["pic_media_id", "appid", "page"] {
                need(data, k, ty)?;
            }
        }
        "VIDEO" | "FILE" => {
            if str_field(data, "media_id").is_none()
                && data.get("materialId").and_then(Value::as_i64).is_none()
            {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("{ty} content needs data.media_id or data.materialId"),
                ));
            }
        }
        "MATERIAL" => {
            if data.get("materialId").and_then(Value::as_i64).is_none() {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    "MATERIAL content needs data.materialId",
                ));
            }
        }
        other => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown messageContent.type {other:?} (TEXT, IMAGE, LINK, MINIPROGRAM, VIDEO, FILE, MATERIAL)"
                ),
            ));
        }
    }
    Ok(MessageContent(v.clone()))
}

/// add_msg_template's message parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeComMessage {
    /// `text.content`, if any.
    pub text: Option<Text>,
    /// At most one attachment here.
    pub attachments: Vec<Attachment>,
}

impl WeComMessage {
    /// A fingerprint that survives media renewal: the text and each attachment's type and
    /// stable fields. Reconciling after a crash compares it with get_groupmsg_list_v2's entries.
    pub fn fingerprint(text: Option<&Text>, attachments: &[Attachment]) -> String {
        let mut out = text.map(|t| t.content.clone()).unwrap_or_default();
        for a in attachments {
            out.push('|');
            match a {
                Attachment::Image { .. } => out.push_str("image"),
                Attachment::Video { .. } => out.push_str("video"),
                Attachment::File { .. } => out.push_str("file"),
                Attachment::Link { link } => {
                    out.push_str("link:");
                    out.push_str(&link.url);
                }
                Attachment::Miniprogram { miniprogram } => {
                    out.push_str("mp:");
                    out.push_str(&miniprogram.appid);
                    out.push_str(&miniprogram.page);
                }
            }
        }
        out
    }

    /// This message's fingerprint.
    pub fn fingerprint_of(&self) -> String {
        Self::fingerprint(self.text.as_ref(), &self.attachments)
    }
}

fn s(data: &Value, key: &str) -> String {
    str_field(data, key).unwrap_or_default().to_string()
}

/// Turn stored content into WeCom parts, uploading materials that need a media id.
pub async fn to_wecom(
    state: &AppState,
    tenant_id: i64,
    wecom: &TenantWeCom,
    content: &MessageContent,
) -> anyhow::Result<WeComMessage> {
    let v = content.json();
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
    let data = v.get("data").cloned().unwrap_or(Value::Null);
    let mut msg = WeComMessage {
        text: str_field(&data, "text").map(|t| Text {
            content: t.to_string(),
        }),
        attachments: vec![],
    };
    if let Some(material_id) = data.get("materialId").and_then(Value::as_i64) {
        let (text, attachment) =
            materials::wecom_parts(state, tenant_id, wecom, material_id).await?;
        if msg.text.is_none() {
            msg.text = text.map(|content| Text { content });
        }
        msg.attachments.extend(attachment);
        return Ok(msg);
    }
    let attachment = match ty {
        "IMAGE" => Some(Attachment::Image {
            image: ImageAttachment {
                media_id: s(&data, "media_id"),
                pic_url: s(&data, "pic_url"),
            },
        }),
        "LINK" => Some(Attachment::Link {
            link: LinkAttachment {
                title: s(&data, "title"),
                picurl: s(&data, "pic_url"),
                desc: s(&data, "desc"),
                url: s(&data, "url"),
            },
        }),
        "MINIPROGRAM" => Some(Attachment::Miniprogram {
            miniprogram: MiniprogramAttachment {
                title: s(&data, "title"),
                pic_media_id: s(&data, "pic_media_id"),
                appid: s(&data, "appid"),
                page: s(&data, "page"),
            },
        }),
        "VIDEO" => Some(Attachment::Video {
            video: MediaAttachment {
                media_id: s(&data, "media_id"),
            },
        }),
        "FILE" => Some(Attachment::File {
            file: MediaAttachment {
                media_id: s(&data, "media_id"),
            },
        }),
        _ => None,
    };
    msg.attachments.extend(attachment);
    Ok(msg)
}
