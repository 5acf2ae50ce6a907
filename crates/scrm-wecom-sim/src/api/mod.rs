//! The WeCom HTTP API: same paths, methods, JSON shapes and errcodes as
//! `https://qyapi.weixin.qq.com` (API-FACTS). Every call goes through [`gate`]: token checks
//! (41001/40014/42001), per-secret forced errors (48002/60020), permissions, the wrong HTTP
//! method (40058), rate limits (45009), concurrency (45033), injected errcodes and slow
//! processing — in that order.
//! Errors are HTTP 200 with `errcode` and, where WeCom does so, the endpoint's list fields empty.

// Handlers return early with their WeCom error reply as `Err(Response)`; it is built once per
// failed request, so boxing it would cost an allocation for nothing.
#![allow(clippy::result_large_err)]

pub mod contact_way;
pub mod contacts;
pub mod content;
pub mod external;
pub mod groupchat;
pub mod mass_confirm;
pub mod mass_send;
pub mod media;
pub mod messages;
pub mod tags;
pub mod token;
pub mod transfer;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::faults::{self, InflightGuard};
use crate::state::{SecretKind, Sim};

/// Which secret an API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// No token (gettoken).
    Nothing,
    /// Either secret's token.
    Any,
    /// The 客户联系 app's token; 48002 for the contact secret.
    App,
    /// The 通讯录同步 token only (user/list_id); 48002 otherwise.
    Contact,
}

macro_rules! apis {
    ($( $name:ident => $method:ident $path:literal $need:ident [$($field:literal),*] ),* $(,)?) => {
        /// Every simulated API; the discriminant indexes [`SPECS`] and the limiter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Api { $($name),* }

        /// Static facts about each API.
        pub(crate) const SPECS: &[Spec] = &[
            $(Spec { path: $path, method: Method::$method, need: Need::$need, list_fields: &[$($field),*] }),*
        ];
    };
}

/// Path, method, secret and the list fields WeCom leaves (empty) in error replies.
pub(crate) struct Spec {
    pub path: &'static str,
    pub method: Method,
    pub need: Need,
    pub list_fields: &'static [&'static str],
}

apis! {
    GetToken => GET "/cgi-bin/gettoken" Nothing [],
    DepartmentList => GET "/cgi-bin/department/list" Any [],
    DepartmentSimpleList => GET "/cgi-bin/department/simplelist" Any [],
    UserList => GET "/cgi-bin/user/list" Any [],
    UserSimpleList => GET "/cgi-bin/user/simplelist" Any [],
    UserListId => POST "/cgi-bin/user/list_id" Contact [],
    UserGet => GET "/cgi-bin/user/get" Any [],
    FollowUserList => GET "/cgi-bin/externalcontact/get_follow_user_list" App ["follow_user"],
    ExternalList => GET "/cgi-bin/externalcontact/list" App [],
    ExternalGet => GET "/cgi-bin/externalcontact/get" App [],
    BatchGetByUser => POST "/cgi-bin/externalcontact/batch/get_by_user" App ["external_contact_list"],
    Remark => POST "/cgi-bin/externalcontact/remark" App [],
    GetCorpTagList => POST "/cgi-bin/externalcontact/get_corp_tag_list" App [],
    AddCorpTag => POST "/cgi-bin/externalcontact/add_corp_tag" App [],
    EditCorpTag => POST "/cgi-bin/externalcontact/edit_corp_tag" App [],
    DelCorpTag => POST "/cgi-bin/externalcontact/del_corp_tag" App [],
    MarkTag => POST "/cgi-bin/externalcontact/mark_tag" App [],
    GroupChatList => POST "/cgi-bin/externalcontact/groupchat/list" App [],
    GroupChatGet => POST "/cgi-bin/externalcontact/groupchat/get" App [],
    GroupChatTransfer => POST "/cgi-bin/externalcontact/groupchat/transfer" App [],
    GroupChatOnjobTransfer => POST "/cgi-bin/externalcontact/groupchat/onjob_transfer" App [],
    AddMsgTemplate => POST "/cgi-bin/externalcontact/add_msg_template" App ["fail_list"],
    GetGroupMsgListV2 => POST "/cgi-bin/externalcontact/get_groupmsg_list_v2" App [],
    GetGroupMsgTask => POST "/cgi-bin/externalcontact/get_groupmsg_task" App [],
    GetGroupMsgSendResult => POST "/cgi-bin/externalcontact/get_groupmsg_send_result" App [],
    RemindGroupMsgSend => POST "/cgi-bin/externalcontact/remind_groupmsg_send" App [],
    CancelGroupMsgSend => POST "/cgi-bin/externalcontact/cancel_groupmsg_send" App [],
    SendWelcomeMsg => POST "/cgi-bin/externalcontact/send_welcome_msg" App [],
    MessageSend => POST "/cgi-bin/message/send" App [],
    MediaUpload => POST "/cgi-bin/media/upload" Any [],
    MediaUploadAttachment => POST "/cgi-bin/media/upload_attachment" App [],
    TransferCustomer => POST "/cgi-bin/externalcontact/transfer_customer" App [],
    TransferResult => POST "/cgi-bin/externalcontact/transfer_result" App [],
    ResignedTransferCustomer => POST "/cgi-bin/externalcontact/resigned/transfer_customer" App [],
    ResignedTransferResult => POST "/cgi-bin/externalcontact/resigned/transfer_result" App [],
    GetUnassignedList => POST "/cgi-bin/externalcontact/get_unassigned_list" App [],
    AddContactWay => POST "/cgi-bin/externalcontact/add_contact_way" App [],
    GetContactWay => POST "/cgi-bin/externalcontact/get_contact_way" App [],
    UpdateContactWay => POST "/cgi-bin/externalcontact/update_contact_way" App [],
    DelContactWay => POST "/cgi-bin/externalcontact/del_contact_way" App [],
}

impl Api {
    /// Number of APIs.
    pub const COUNT: usize = SPECS.len();

    pub(crate) fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    /// The URL path.
    pub fn path(self) -> &'static str {
        self.spec().path
    }
}

/// The `/cgi-bin` router, with transport faults applied to every route.
pub(crate) fn router(sim: Sim) -> Router<Sim> {
    Router::new()
        .merge(token::routes())
        .merge(contacts::routes())
        .merge(external::routes())
        .merge(tags::routes())
        .merge(groupchat::routes())
        .merge(mass_send::routes())
        .merge(messages::routes())
        .merge(media::routes())
        .merge(transfer::routes())
        .merge(contact_way::routes())
        .layer(axum::middleware::from_fn_with_state(sim, faults::transport))
}

/// A request as the gate sees it: method, query parameters and the raw body.
pub(crate) struct ApiRequest {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub body: Bytes,
}

impl ApiRequest {
    /// A query parameter, empty strings treated as missing.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The JSON body; 40058 (WeCom's "invalid parameter", also used for bad JSON) on failure.
    pub fn json<T: DeserializeOwned>(&self, api: Api) -> Result<T, Response> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body)
            .map_err(|e| err_detail(api, 40058, &format!("invalid json: {e}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let query = parse_query(req.uri().query());
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            method,
            query,
            body,
        })
    }
}

pub(crate) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .unwrap_or_default()
            .into_iter()
            .collect()
    })
    .unwrap_or_default()
}

/// What a call that passed the gate knows.
pub(crate) struct Gate {
    #[allow(dead_code)] // kept for handlers that differ by secret in future
    pub secret: SecretKind,
    pub now: i64,
    _inflight: Option<InflightGuard>,
}

/// The checks every API call passes before its handler runs (see the module doc for order).
pub(crate) async fn check_gate(
    sim: &Sim,
    api: Api,
    method: &Method,
    query: &HashMap<String, String>,
) -> Result<Gate, Response> {
    let spec = api.spec();
    *sim.0.calls.lock().entry(spec.path).or_insert(0) += 1;
    let now = sim.now();
    let (faults, limits) = {
        let c = sim.0.config.read();
        (c.faults, c.limits)
    };
    let secret = if spec.need == Need::Nothing {
        SecretKind::App
    } else {
        let token = query.get("access_token").map(String::as_str).unwrap_or("");
        let kind = token::check(sim, api, token)?;
        let allowed = match spec.need {
            Need::App => kind == SecretKind::App,
            Need::Contact => kind == SecretKind::Contact,
            _ => true,
        };
        if !allowed {
            return Err(err(api, 48002));
        }
        kind
    };
    if method != spec.method {
        return Err(err_detail(api, 40058, "invalid http method"));
    }
    if !sim.0.limiter.allow(api as usize, now, &limits) {
        return Err(err(api, 45009));
    }
    let inflight = sim
        .0
        .limiter
        .enter(api as usize, limits.max_concurrent_per_api);
    if inflight.is_none() {
        return Err(err(api, 45033));
    }
    if faults::roll(faults.busy) {
        return Err(err(api, -1));
    }
    if faults::roll(faults.freq_limit) {
        return Err(err(api, 45009));
    }
    if faults::roll(faults.concurrent_limit) {
        return Err(err(api, 45033));
    }
    if spec.need != Need::Nothing && faults::roll(faults.token_expired) {
        return Err(err(api, 42001));
    }
    // A slow reply is slow processing: it holds its concurrency slot while it sleeps.
    if faults.slow_ms > 0 && faults::roll(faults.slow) {
        tokio::time::sleep(std::time::Duration::from_millis(faults.slow_ms)).await;
    }
    Ok(Gate {
        secret,
        now,
        _inflight: inflight,
    })
}

/// Runs the gate, returning its error reply from the calling handler.
macro_rules! gate {
    ($sim:expr, $api:expr, $req:expr) => {
        match $crate::api::check_gate(&$sim, $api, &$req.method, &$req.query).await {
            Ok(g) => g,
            Err(r) => return r,
        }
    };
}
pub(crate) use gate;

/// Unwraps a `Result<T, Response>` or returns the error reply.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}
pub(crate) use tri;

/// errcode 0 reply: `{"errcode":0,"errmsg":"ok", ...body}`.
pub(crate) fn ok<T: Serialize>(body: T) -> Response {
    ok_msg("ok", body)
}

/// errcode 0 reply with a chosen errmsg (media uploads answer `"errmsg":""`, API-FACTS §8).
pub(crate) fn ok_msg<T: Serialize>(errmsg: &'static str, body: T) -> Response {
    #[derive(Serialize)]
    struct Ok<T> {
        errcode: i32,
        errmsg: &'static str,
        #[serde(flatten)]
        body: T,
    }
    json_response(&Ok {
        errcode: 0,
        errmsg,
        body,
    })
}

/// `{"errcode":0,"errmsg":"ok"}`.
pub(crate) fn ok_empty() -> Response {
    ok(serde_json::Map::new())
}

/// An error reply with the standard message for `code`.
pub(crate) fn err(api: Api, code: i32) -> Response {
    err_detail(api, code, "")
}

/// An error reply; `detail` is appended to the standard message (clients must match on
/// errcode, never on errmsg — the real errmsg carries hint/ip suffixes, reproduced here).
pub(crate) fn err_detail(api: Api, code: i32, detail: &str) -> Response {
    let mut text = errmsg(code).to_string();
    if !detail.is_empty() {
        text.push_str(": ");
        text.push_str(detail);
    }
    let hint = format!(
        "{text}, hint: [{}_{}_sim], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rand::random::<u16>()
    );
    let mut m = serde_json::Map::new();
    m.insert("errcode".into(), code.into());
    m.insert("errmsg".into(), hint.into());
    for f in api.spec().list_fields {
        m.insert((*f).into(), serde_json::Value::Array(Vec::new()));
    }
    json_response(&m)
}

fn json_response<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            body,
        )
            .into_response(),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// WeCom's errmsg stems (API-FACTS §1, §13).
pub(crate) fn errmsg(code: i32) -> &'static str {
    match code {
        -1 => "system busy",
        0 => "ok",
        40001 => "invalid credential",
        40003 => "invalid userid",
        40004 => "invalid media type",
        40005 => "invalid file type",
        40006 => "invalid file size",
        40007 => "invalid media_id",
        40013 => "invalid corpid",
        40014 => "invalid access_token",
        40050 => "chatid not found",
        40058 => "invalid parameter",
        40068 => "invalid tagid",
        40071 => "tag name already exists",
        40096 => "invalid external userid",
        40097 => "user has not resigned",
        40129 => "customer is being transferred",
        40130 => "handover and takeover are the same",
        41001 => "access_token missing",
        41002 => "corpid missing",
        41004 => "corpsecret missing",
        41006 => "media_id missing",
        41009 => "userid missing",
        41035 => "external userid missing",
        41048 => "no customer to send",
        41051 => "externaluser has started chatting",
        41063 => "msg is being dispatched, try again later",
        41064 => "attachment count exceeds limit",
        41065 => "invalid attachment type",
        41072 => "invalid attachment scene",
        41093 => "msg template has been cancelled",
        41094 => "remind freq out of limit",
        42001 => "access_token expired",
        44001 => "empty media data",
        44004 => "empty content",
        45002 => "content size out of limit",
        45009 => "api freq out of limit",
        45033 => "api concurrent out of limit",
        48002 => "api forbidden",
        60011 => "no privilege to access/modify contact/party/agent",
        60020 => "not allow to access from your ip",
        60111 => "userid not found",
        60123 => "invalid party id",
        81017 => "request count exceeds limit",
        82001 => "All touser & toparty & totag invalid",
        84061 => "not external contact",
        301002 => "not allow operate another agent with this accesstoken",
        _ => "error",
    }
}

/// WeCom userids: 1..64 of letters, digits and `-_.@` (API-FACTS §3, 40003).
pub(crate) fn valid_userid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// Opaque cursors: WeCom's are random-looking strings; ours encode an offset.
pub(crate) fn cursor_encode(parts: &[u64]) -> String {
    let joined: Vec<String> = parts.iter().map(|p| format!("{p:x}")).collect();
    format!("SIM{}", joined.join("G"))
}

/// Parses a cursor made by [`cursor_encode`]; empty → zeros; garbage → `None` (40058).
pub(crate) fn cursor_decode(s: Option<&str>, n: usize) -> Option<Vec<u64>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Some(vec![0; n]);
    };
    let rest = s.strip_prefix("SIM")?;
    let v: Vec<u64> = rest
        .split('G')
        .map(|p| u64::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    (v.len() == n).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique() {
        let mut paths: Vec<_> = SPECS.iter().map(|s| s.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Api::COUNT);
        assert_eq!(Api::DelContactWay as usize, Api::COUNT - 1);
    }

    #[test]
    fn cursors_round_trip() {
        let c = cursor_encode(&[3, 500]);
        assert_eq!(cursor_decode(Some(&c), 2), Some(vec![3, 500]));
        assert_eq!(cursor_decode(None, 2), Some(vec![0, 0]));
        assert_eq!(cursor_decode(Some("junk"), 2), None);
    }
}
