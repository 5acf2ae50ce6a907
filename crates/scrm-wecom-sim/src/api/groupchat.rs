//! Customer group chats (客户群): groupchat/list (cursor), groupchat/get, and the resigned /
//! on-job owner transfers (API-FACTS §6, §9).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::{Deserialize, Serialize};

use super::{Api, ApiRequest, cursor_decode, cursor_encode, err, err_detail, gate, ok, tri};
use crate::company::{MemberRef, NONE};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::GroupChatList.path(), any(list))
        .route(Api::GroupChatGet.path(), any(get))
        .route(Api::GroupChatTransfer.path(), any(transfer))
        .route(Api::GroupChatOnjobTransfer.path(), any(onjob_transfer))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OwnerFilter {
    userid_list: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListReq {
    status_filter: u8,
    owner_filter: Option<OwnerFilter>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Visible members beyond which groupchat/list needs an owner_filter (81017).
const UNFILTERED_MAX_STAFF: usize = 1000;

async fn list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GroupChatList;
    let _gate = gate!(sim, api, req);
    let body: ListReq = tri!(req.json(api));
    let limit = match body.limit {
        Some(l) if (1..=1000).contains(&l) => l as usize,
        _ => return err_detail(api, 40058, "limit must be 1..1000"),
    };
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let owners: Option<Vec<u32>> = match &body.owner_filter {
        Some(f) if !f.userid_list.is_empty() => {
            if f.userid_list.len() > 100 {
                return err_detail(
                    api,
                    40058,
                    "owner_filter.userid_list holds at most 100 userids",
                );
            }
            Some(
                f.userid_list
                    .iter()
                    .filter_map(|u| c.staff_by_userid(u))
                    .collect(),
            )
        }
        _ => {
            if c.staff.iter().filter(|s| s.visible()).count() > UNFILTERED_MAX_STAFF {
                return err(api, 81017);
            }
            None
        }
    };
    let matches = |i: usize| {
        let g = &c.chats[i];
        !g.dismissed
            && (body.status_filter == 0 || g.status == body.status_filter)
            && owners.as_ref().is_none_or(|o| o.contains(&g.owner))
            // Without a filter, chats of owners who left are not listed (API-FACTS §6).
            && (owners.is_some() || c.staff[g.owner as usize].visible())
    };
    let mut out = Vec::new();
    let mut i = cur[0] as usize;
    while i < c.chats.len() && out.len() < limit {
        if matches(i) {
            out.push(
                serde_json::json!({"chat_id": c.chat_id(i as u32), "status": c.chats[i].status}),
            );
        }
        i += 1;
    }
    let more = (i..c.chats.len()).any(matches);
    let next = if more {
        cursor_encode(&[i as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "group_chat_list": out, "next_cursor": next }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GetReq {
    chat_id: String,
    need_name: u8,
}

#[derive(Serialize)]
struct MemberOut {
    userid: String,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    join_time: i64,
    join_scene: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    invitor: Option<serde_json::Value>,
    group_nickname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

async fn get(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GroupChatGet;
    let _gate = gate!(sim, api, req);
    let body: GetReq = tri!(req.json(api));
    if let Some(code) = sim.0.chat_errcodes.lock().get(&body.chat_id).copied() {
        return err(api, code);
    }
    let c = sim.company();
    let Some(idx) = c
        .chat_by_id(&body.chat_id)
        .filter(|&i| !c.chats[i as usize].dismissed)
    else {
        return err(api, 40050);
    };
    let g = &c.chats[idx as usize];
    let members: Vec<MemberOut> = g
        .members
        .iter()
        .map(|m| {
            let (userid, kind, unionid, name) = match m.who {
                MemberRef::Staff(s) => (
                    c.staff[s as usize].userid.clone(),
                    1,
                    None,
                    c.staff[s as usize].name.clone(),
                ),
                MemberRef::Customer(cu) => {
                    let wechat = c.customers[cu as usize].kind == 1;
                    (
                        c.external_userid(cu),
                        2,
                        wechat.then(|| c.unionid(cu)),
                        c.customer_name(cu),
                    )
                }
            };
            MemberOut {
                userid,
                kind,
                unionid,
                join_time: m.join_time,
                join_scene: m.join_scene,
                invitor: (m.invitor != NONE)
                    .then(|| serde_json::json!({"userid": c.staff[m.invitor as usize].userid})),
                group_nickname: String::new(),
                name: (body.need_name == 1).then_some(name),
            }
        })
        .collect();
    let admins: Vec<serde_json::Value> = g
        .admins
        .iter()
        .map(|&a| serde_json::json!({"userid": c.staff[a as usize].userid}))
        .collect();
    ok(serde_json::json!({ "group_chat": {
        "chat_id": body.chat_id,
        "name": g.name,
        "owner": c.staff[g.owner as usize].userid,
        "create_time": g.create_time,
        "notice": g.notice,
        "member_list": members,
        "admin_list": admins,
        "member_version": c.member_version(idx, g.version),
    }}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TransferReq {
    chat_id_list: Vec<String>,
    new_owner: String,
}

/// Shared by both transfers; `resigned` selects the rule set (API-FACTS §9).
fn do_transfer(sim: &Sim, api: Api, req: &ApiRequest, resigned: bool) -> Response {
    let body: TransferReq = tri!(req.json(api));
    if body.chat_id_list.is_empty() || body.chat_id_list.len() > 100 {
        return err_detail(api, 40058, "chat_id_list must hold 1..100 chat ids");
    }
    let mut c = sim.company_mut();
    let Some(new_owner) = c
        .staff_by_userid(&body.new_owner)
        .filter(|&s| c.staff[s as usize].status == 1)
    else {
        return err(api, 40003);
    };
    let mut failed = Vec::new();
    for id in &body.chat_id_list {
        let fail = |code: i32, msg: &str| serde_json::json!({"chat_id": id, "errcode": code, "errmsg": msg});
        let Some(i) = c.chat_by_id(id).filter(|&i| !c.chats[i as usize].dismissed) else {
            failed.push(fail(90501, "not external group chat"));
            continue;
        };
        let owner = c.chats[i as usize].owner;
        let owner_left = c.staff[owner as usize].status == 5;
        if owner == new_owner {
            failed.push(fail(90504, "the owner of this chat is not changed"));
        } else if resigned && !owner_left {
            failed.push(fail(90500, "the owner of this chat is not resigned"));
        } else if !resigned && owner_left {
            failed.push(fail(90502, "the owner of this chat has resigned"));
        } else if !resigned && c.chats[i as usize].transfers >= 2 {
            failed.push(fail(90507, "chat transferred too many times"));
        } else {
            let chat = &mut c.chats[i as usize];
            chat.owner = new_owner;
            chat.transfers += 1;
            chat.status = if resigned { 3 } else { 0 };
            if !chat
                .members
                .iter()
                .any(|m| m.who == MemberRef::Staff(new_owner))
            {
                chat.members.push(crate::company::ChatMember {
                    who: MemberRef::Staff(new_owner),
                    join_time: sim.now(),
                    join_scene: 1,
                    invitor: NONE,
                });
                chat.version += 1;
            }
        }
    }
    ok(serde_json::json!({ "failed_chat_list": failed }))
}

async fn transfer(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GroupChatTransfer;
    let _gate = gate!(sim, api, req);
    do_transfer(&sim, api, &req, true)
}

async fn onjob_transfer(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GroupChatOnjobTransfer;
    let _gate = gate!(sim, api, req);
    do_transfer(&sim, api, &req, false)
}
