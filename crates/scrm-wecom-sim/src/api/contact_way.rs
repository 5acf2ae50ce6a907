//! 「联系我」 contact ways: add_contact_way, get_contact_way, update_contact_way,
//! del_contact_way. Not covered by API-FACTS; shapes follow the official doc (path/92228):
//! add answers `config_id` + `qr_code`, get answers `contact_way{...}` echoing the settings.
//! The `state` configured here is what add_external_contact scenarios carry.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::{Deserialize, Serialize};

use super::{Api, ApiRequest, err_detail, gate, ok, ok_empty, tri};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::AddContactWay.path(), any(add))
        .route(Api::GetContactWay.path(), any(get))
        .route(Api::UpdateContactWay.path(), any(update))
        .route(Api::DelContactWay.path(), any(del))
}

/// A contact way's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactWay {
    #[serde(rename = "type")]
    pub kind: u8,
    pub scene: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<u32>,
    pub remark: String,
    pub skip_verify: bool,
    pub state: String,
    pub user: Vec<String>,
    pub party: Vec<u32>,
    pub is_temp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_expires_in: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusions: Option<serde_json::Value>,
}

/// Contact ways by config_id, with their QR code URLs.
#[derive(Debug, Default)]
pub(crate) struct ContactWays {
    pub ways: HashMap<String, (ContactWay, String)>,
}

/// Checks type/scene/user rules and that the members exist.
fn validate(sim: &Sim, api: Api, w: &ContactWay) -> Result<(), Response> {
    if !matches!(w.kind, 1 | 2) || !matches!(w.scene, 1 | 2) {
        return Err(err_detail(api, 40058, "type and scene must be 1 or 2"));
    }
    if w.user.is_empty() && w.party.is_empty() {
        return Err(err_detail(api, 40058, "user or party required"));
    }
    if w.kind == 1 && w.user.len() + w.party.len() != 1 {
        return Err(err_detail(api, 40058, "type 1 takes exactly one member"));
    }
    if w.state.chars().count() > 30 {
        return Err(err_detail(api, 40058, "state exceeds 30 characters"));
    }
    let c = sim.company();
    if let Some(bad) = w.user.iter().find(|u| {
        c.staff_by_userid(u)
            .is_none_or(|s| !c.staff[s as usize].contact_enabled)
    }) {
        return Err(err_detail(api, 40003, bad));
    }
    Ok(())
}

async fn add(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::AddContactWay;
    let _gate = gate!(sim, api, req);
    let w: ContactWay = tri!(req.json(api));
    tri!(validate(&sim, api, &w));
    let config_id = sim.new_id("");
    // A QR code only exists for scene 2; scene 1 (mini program) gets none.
    let qr = if w.scene == 2 {
        format!("https://wework.qpic.cn/wwpic/sim/{config_id}/0")
    } else {
        String::new()
    };
    sim.0
        .contact_ways
        .lock()
        .ways
        .insert(config_id.clone(), (w, qr.clone()));
    let mut out = serde_json::json!({ "config_id": config_id });
    if let (Some(o), false) = (out.as_object_mut(), qr.is_empty()) {
        o.insert("qr_code".into(), qr.into());
    }
    ok(out)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IdReq {
    config_id: String,
}

async fn get(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetContactWay;
    let _gate = gate!(sim, api, req);
    let body: IdReq = tri!(req.json(api));
    let ways = sim.0.contact_ways.lock();
    let Some((w, qr)) = ways.ways.get(&body.config_id) else {
        return err_detail(api, 40058, "invalid config_id");
    };
    let mut v = serde_json::to_value(w).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("config_id".into(), body.config_id.clone().into());
        o.insert("qr_code".into(), qr.clone().into());
    }
    ok(serde_json::json!({ "contact_way": v }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateReq {
    config_id: String,
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
}

async fn update(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::UpdateContactWay;
    let _gate = gate!(sim, api, req);
    let body: UpdateReq = tri!(req.json(api));
    let Some((current, _)) = sim.0.contact_ways.lock().ways.get(&body.config_id).cloned() else {
        return err_detail(api, 40058, "invalid config_id");
    };
    let mut merged = serde_json::to_value(&current).unwrap_or_default();
    if let Some(o) = merged.as_object_mut() {
        o.extend(body.fields);
    }
    let Ok(w) = serde_json::from_value::<ContactWay>(merged) else {
        return err_detail(api, 40058, "invalid fields");
    };
    tri!(validate(&sim, api, &w));
    if let Some(entry) = sim.0.contact_ways.lock().ways.get_mut(&body.config_id) {
        entry.0 = w;
    }
    ok_empty()
}

async fn del(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::DelContactWay;
    let _gate = gate!(sim, api, req);
    let body: IdReq = tri!(req.json(api));
    match sim.0.contact_ways.lock().ways.remove(&body.config_id) {
        Some(_) => ok_empty(),
        None => err_detail(api, 40058, "invalid config_id"),
    }
}
