//! Welcome messages (send_welcome_msg, with WelcomeCodes valid 20 s and usable once) and app
//! messages to members (message/send) — API-FACTS §8. Both land in the delivery log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::Deserialize;

use super::content::validate_content;
use super::{Api, ApiRequest, err, err_detail, gate, ok, ok_empty, tri};
use crate::deliveries::DeliveryKind;
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::SendWelcomeMsg.path(), any(send_welcome_msg))
        .route(Api::MessageSend.path(), any(message_send))
}

/// A WelcomeCode handed out with an add_external_contact callback.
#[derive(Clone, Debug)]
pub(crate) struct WelcomeCode {
    pub staff: u32,
    pub customer: u32,
    pub expires_ms: i64,
    pub used: bool,
}

/// Issued WelcomeCodes by code.
#[derive(Debug, Default)]
pub(crate) struct WelcomeCodes {
    pub codes: HashMap<String, WelcomeCode>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WelcomeReq {
    welcome_code: String,
    text: Option<serde_json::Value>,
    attachments: Vec<serde_json::Value>,
}

/// Used or expired codes answer 41051 (what WeCom answers once the code is spent); unknown
/// codes 40058.
async fn send_welcome_msg(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::SendWelcomeMsg;
    let g = gate!(sim, api, req);
    let body: WelcomeReq = tri!(req.json(api));
    if body.welcome_code.is_empty() {
        return err_detail(api, 40058, "welcome_code required");
    }
    let content = tri!(validate_content(
        &sim,
        api,
        body.text.as_ref(),
        &body.attachments,
        g.now
    ));
    let now_ms = sim.now_ms();
    let c = sim.company();
    let (staff, customer) = {
        let mut w = sim.0.welcome.lock();
        let Some(code) = w.codes.get_mut(&body.welcome_code) else {
            return err_detail(api, 40058, "invalid welcome_code");
        };
        if code.used || code.expires_ms <= now_ms {
            return err(api, 41051);
        }
        code.used = true;
        (code.staff, code.customer)
    };
    sim.0.deliveries.lock().push(
        DeliveryKind::Welcome,
        &body.welcome_code,
        &c.staff[staff as usize].userid,
        c.external_userid(customer),
        &content,
        g.now,
    );
    ok_empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SendReq {
    touser: String,
    toparty: String,
    totag: String,
    msgtype: String,
    agentid: Option<i64>,
    text: Option<serde_json::Value>,
    textcard: Option<serde_json::Value>,
    markdown: Option<serde_json::Value>,
}

/// Sends to members; invalid ids are reported, over-budget messages dropped silently.
async fn message_send(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::MessageSend;
    let g = gate!(sim, api, req);
    let body: SendReq = tri!(req.json(api));
    let (agent, per_minute) = {
        let cfg = sim.0.config.read();
        (
            cfg.creds.agent_id,
            cfg.limits.app_msgs_per_member_per_minute,
        )
    };
    if body.agentid != Some(agent) {
        return err(api, 301002);
    }
    let content = match body.msgtype.as_str() {
        "text" => {
            let Some(text) = body
                .text
                .as_ref()
                .and_then(|t| t.get("content"))
                .and_then(|c| c.as_str())
                .filter(|s| !s.is_empty())
            else {
                return err(api, 44004);
            };
            // WeCom truncates text beyond 2048 bytes rather than failing.
            let mut end = text.len().min(2048);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            serde_json::json!({"msgtype": "text", "text": {"content": &text[..end]}})
        }
        "textcard" => match &body.textcard {
            Some(tc) if tc.get("title").is_some() && tc.get("url").is_some() => {
                serde_json::json!({"msgtype": "textcard", "textcard": tc})
            }
            _ => return err_detail(api, 40058, "textcard needs title and url"),
        },
        "markdown" => match &body.markdown {
            Some(md) => serde_json::json!({"msgtype": "markdown", "markdown": md}),
            None => return err(api, 44004),
        },
        _ => return err_detail(api, 40058, "unsupported msgtype"),
    };
    let content = Arc::new(content);
    let c = sim.company();
    let mut valid: Vec<u32> = Vec::new();
    let mut invalid: Vec<&str> = Vec::new();
    if body.touser == "@all" {
        valid.extend((0..c.staff.len() as u32).filter(|&s| c.staff[s as usize].status == 1));
    } else {
        for u in body.touser.split('|').filter(|u| !u.is_empty()) {
            match c.staff_by_userid(u) {
                Some(s) if c.staff[s as usize].status == 1 => {
                    if !valid.contains(&s) {
                        valid.push(s);
                    }
                }
                _ => invalid.push(u),
            }
        }
    }
    let invalid_party: Vec<&str> = body
        .toparty
        .split('|')
        .filter(|p| {
            !p.is_empty()
                && p.parse::<usize>()
                    .map_or(true, |id| id == 0 || id > c.departments.len())
        })
        .collect();
    for p in body
        .toparty
        .split('|')
        .filter_map(|p| p.parse::<u32>().ok())
    {
        for (i, s) in c.staff.iter().enumerate() {
            if s.status == 1 && s.departments.contains(&p) && !valid.contains(&(i as u32)) {
                valid.push(i as u32);
            }
        }
    }
    // No contact tags are simulated: every totag entry is invalid.
    let invalid_tag: Vec<&str> = body.totag.split('|').filter(|t| !t.is_empty()).collect();
    if valid.is_empty() {
        return err(api, 82001);
    }
    let msgid = sim.new_id("");
    let mut log = sim.0.deliveries.lock();
    for s in valid {
        if sim.0.limiter.app_msg_allowed(s, g.now, per_minute) {
            log.push(
                DeliveryKind::AppMessage,
                &msgid,
                &agent.to_string(),
                c.staff[s as usize].userid.clone(),
                &content,
                g.now,
            );
        }
    }
    ok(serde_json::json!({
        "invaliduser": invalid.join("|"),
        "invalidparty": invalid_party.join("|"),
        "invalidtag": invalid_tag.join("|"),
        "unlicenseduser": "",
        "msgid": msgid,
    }))
}
