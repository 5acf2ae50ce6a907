//! media/upload and media/upload_attachment (multipart, part `media`; API-FACTS §8). Uploaded
//! media_ids are valid 3 days and are checked by the message APIs (40007 otherwise).

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::Response;
use axum::routing::any;

use super::{Api, check_gate, err, err_detail, ok_msg, parse_query};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::MediaUpload.path(), any(upload))
        .route(Api::MediaUploadAttachment.path(), any(upload_attachment))
}

/// media_id lifetime.
const MEDIA_TTL_SECS: i64 = 3 * 86_400;
/// Every file must be larger than this (API-FACTS §8).
const MIN_BYTES: usize = 5;

/// The `media` part's bytes; 44001 when missing or empty.
async fn media_part(api: Api, req: Request) -> Result<Vec<u8>, Response> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|_| err_detail(api, 44001, "multipart body required"))?;
    while let Ok(Some(field)) = mp.next_field().await {
        if field.name() == Some("media") {
            let bytes = field.bytes().await.map_err(|_| err(api, 44001))?;
            return Ok(bytes.to_vec());
        }
    }
    Err(err_detail(api, 44001, "part `media` missing"))
}

fn max_bytes(kind: &str) -> Option<usize> {
    match kind {
        "image" | "video" => Some(10 << 20),
        "voice" => Some(2 << 20),
        "file" => Some(20 << 20),
        _ => None,
    }
}

/// Checks the file and records a new media_id.
fn store(sim: &Sim, api: Api, kind: &str, data: &[u8], now: i64) -> Result<String, Response> {
    let max = max_bytes(kind).ok_or_else(|| err(api, 40004))?;
    if data.len() <= MIN_BYTES {
        return Err(err_detail(api, 40006, "file must be larger than 5 bytes"));
    }
    if data.len() > max {
        return Err(err(api, 40006));
    }
    let id = format!("3{}", sim.new_id("SIM_"));
    sim.0.media.lock().insert(id.clone(), now + MEDIA_TTL_SECS);
    Ok(id)
}

async fn upload(State(sim): State<Sim>, req: Request) -> Response {
    let api = Api::MediaUpload;
    let query = parse_query(req.uri().query());
    let g = match check_gate(&sim, api, &req.method().clone(), &query).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let kind = query.get("type").cloned().unwrap_or_default();
    if max_bytes(&kind).is_none() {
        return err(api, 40004);
    }
    let data = match media_part(api, req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match store(&sim, api, &kind, &data, g.now) {
        // created_at is a string here (and an integer in upload_attachment) — as WeCom does.
        Ok(id) => ok_msg(
            "",
            serde_json::json!({"type": kind, "media_id": id, "created_at": g.now.to_string()}),
        ),
        Err(r) => r,
    }
}

async fn upload_attachment(State(sim): State<Sim>, req: Request) -> Response {
    let api = Api::MediaUploadAttachment;
    let query = parse_query(req.uri().query());
    let g = match check_gate(&sim, api, &req.method().clone(), &query).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let kind = query.get("media_type").cloned().unwrap_or_default();
    if !matches!(kind.as_str(), "image" | "video" | "file") {
        return err(api, 40004);
    }
    match query.get("attachment_type").map(String::as_str) {
        // 朋友圈 attachments: images and videos only.
        Some("1") if kind == "file" => return err(api, 41072),
        Some("1") | Some("2") => {}
        _ => return err_detail(api, 41072, "attachment_type must be 1 or 2"),
    }
    let data = match media_part(api, req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match store(&sim, api, &kind, &data, g.now) {
        Ok(id) => ok_msg(
            "",
            serde_json::json!({"type": kind, "media_id": id, "created_at": g.now}),
        ),
        Err(r) => r,
    }
}
