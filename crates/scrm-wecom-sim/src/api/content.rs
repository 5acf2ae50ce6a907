//! Message content checks shared by add_msg_template and send_welcome_msg (API-FACTS §7-8):
//! text ≤ 4000 bytes, ≤ 9 attachments of the five known types with their required fields,
//! and media_ids that were uploaded and have not expired.
#![allow(clippy::result_large_err)] // see api/mod.rs

use std::sync::Arc;

use axum::response::Response;

use super::{Api, err, err_detail};
use crate::state::Sim;

/// Checks text and attachments (API-FACTS §7/§8) and returns the content to log.
pub(crate) fn validate_content(
    sim: &Sim,
    api: Api,
    text: Option<&serde_json::Value>,
    attachments: &[serde_json::Value],
    now: i64,
) -> Result<Arc<serde_json::Value>, Response> {
    let content = text
        .and_then(|t| t.get("content"))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    if content.len() > 4000 {
        return Err(err_detail(api, 45002, "text.content exceeds 4000 bytes"));
    }
    if content.is_empty() && attachments.is_empty() {
        return Err(err(api, 44004));
    }
    if attachments.len() > 9 {
        return Err(err(api, 41064));
    }
    let media = sim.0.media.lock();
    let media_ok = |id: &str| media.get(id).is_some_and(|&exp| exp > now);
    for a in attachments {
        let kind = a.get("msgtype").and_then(|m| m.as_str()).unwrap_or("");
        let Some(obj) = a.get(kind).filter(|o| o.is_object()) else {
            return Err(err(api, 41065));
        };
        let field = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        match kind {
            "image" => match (field("media_id"), field("pic_url")) {
                (Some(id), _) if !media_ok(id) => return Err(err_detail(api, 40007, id)),
                (None, None) => return Err(err(api, 41006)),
                _ => {}
            },
            "video" | "file" => match field("media_id") {
                None => return Err(err(api, 41006)),
                Some(id) if !media_ok(id) => return Err(err_detail(api, 40007, id)),
                _ => {}
            },
            "link" => {
                let (Some(title), Some(url)) = (field("title"), field("url")) else {
                    return Err(err_detail(api, 40058, "link needs title and url"));
                };
                if title.len() > 128 || url.len() > 2048 {
                    return Err(err_detail(api, 40058, "link title/url too long"));
                }
            }
            "miniprogram" => {
                if ["title", "pic_media_id", "appid", "page"]
                    .iter()
                    .any(|k| field(k).is_none())
                {
                    return Err(err_detail(
                        api,
                        40058,
                        "miniprogram needs title, pic_media_id, appid and page",
                    ));
                }
            }
            _ => return Err(err(api, 41065)),
        }
    }
    let mut v = serde_json::Map::new();
    if !content.is_empty() {
        v.insert("text".into(), serde_json::json!({ "content": content }));
    }
    if !attachments.is_empty() {
        v.insert(
            "attachments".into(),
            serde_json::Value::Array(attachments.to_vec()),
        );
    }
    Ok(Arc::new(serde_json::Value::Object(v)))
}
