//! Mass sends (企业群发) as WeCom runs them (API-FACTS §7): add_msg_template creates a msgid and
//! one task per sender and answers fail_list for unknown/non-friend customers; nothing is
//! delivered until the sender "confirms" in the client (simulated after
//! `mass_send.confirm_delay_ms`, or through the admin API); at confirmation each recipient gets
//! status 1 (delivered, logged), 2 (no longer a friend) or 3 (monthly receive quota used up).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use chrono::{Datelike, FixedOffset, TimeZone};
use serde::Deserialize;

use super::content::validate_content;
use super::{
    Api, ApiRequest, cursor_decode, cursor_encode, err, err_detail, gate, ok, ok_empty, tri,
    valid_userid,
};
use crate::company::Company;
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::AddMsgTemplate.path(), any(add_msg_template))
        .route(Api::GetGroupMsgListV2.path(), any(get_groupmsg_list_v2))
        .route(Api::GetGroupMsgTask.path(), any(get_groupmsg_task))
        .route(
            Api::GetGroupMsgSendResult.path(),
            any(get_groupmsg_send_result),
        )
        .route(Api::RemindGroupMsgSend.path(), any(remind))
        .route(Api::CancelGroupMsgSend.path(), any(cancel))
}

/// A mass-send recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Customer(u32),
    Chat(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Recipient {
    pub target: Target,
    /// 0 unsent, 1 sent, 2 not a friend, 3 receive quota used up.
    pub status: u8,
    pub send_time: i64,
}

/// One sender's share of a mass send.
#[derive(Clone, Debug)]
pub(crate) struct SendTask {
    pub sender: u32,
    pub confirmed_at: Option<i64>,
    pub recipients: Vec<Recipient>,
}

#[derive(Clone, Debug)]
pub(crate) struct MassSend {
    pub msgid: String,
    pub group: bool,
    pub create_time: i64,
    pub created_ms: i64,
    pub content: Arc<serde_json::Value>,
    pub tasks: Vec<SendTask>,
    pub cancelled: bool,
    pub reminders: Vec<i64>,
}

/// All mass sends and what each recipient received (for the quota).
#[derive(Debug, Default)]
pub(crate) struct MassStore {
    pub sends: Vec<MassSend>,
    pub index: HashMap<String, usize>,
    pub received: HashMap<Target, Vec<i64>>,
}

/// Beijing time: quotas count natural months there.
fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"))
}

pub(crate) fn month_of(t: i64) -> (i32, u32) {
    let d = cst()
        .timestamp_opt(t, 0)
        .single()
        .map(|d| (d.year(), d.month()));
    d.unwrap_or((1970, 1))
}

/// Effective monthly quota: configured, or the days of the current month (current WeCom rule).
pub(crate) fn quota(configured: u32, now: i64) -> u32 {
    if configured > 0 {
        return configured;
    }
    let (y, m) = month_of(now);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
    let next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 30,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagFilter {
    group_list: Vec<TagList>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagList {
    tag_list: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddReq {
    chat_type: Option<String>,
    external_userid: Vec<String>,
    chat_id_list: Vec<String>,
    tag_filter: Option<TagFilter>,
    sender: Option<String>,
    text: Option<serde_json::Value>,
    attachments: Vec<serde_json::Value>,
}

/// Recipients per sender, plus fail_list.
type Plan = (Vec<(u32, Vec<Target>)>, Vec<String>);

fn plan_single(
    c: &Company,
    body: &AddReq,
    sender: Option<u32>,
) -> Result<Plan, (i32, &'static str)> {
    // OR within a tag group, AND across groups; unknown tag ids match nothing.
    let filter: Vec<Vec<u32>> = body
        .tag_filter
        .as_ref()
        .map(|f| {
            f.group_list
                .iter()
                .map(|g| {
                    g.tag_list
                        .iter()
                        .filter_map(|t| c.tag_index.get(t).copied())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let passes = |fi: u32| {
        filter
            .iter()
            .all(|g| c.follows[fi as usize].tags.iter().any(|t| g.contains(t)))
    };
    let mut fail = Vec::new();
    let mut pairs: Vec<(u32, u32)> = Vec::new(); // (sender, customer)
    if body.external_userid.is_empty() {
        let Some(s) = sender else {
            return Err((40058, "external_userid and sender both empty"));
        };
        for &cu in &c.staff[s as usize].customers {
            if let Some(fi) = c.follow_of(cu, s)
                && passes(fi)
            {
                pairs.push((s, cu));
            }
        }
    } else {
        let mut known = 0;
        for id in &body.external_userid {
            let Some(cu) = c.customer_by_id(id) else {
                fail.push(id.clone());
                continue;
            };
            known += 1;
            // Without a sender, WeCom pushes to the member who last interacted with the
            // customer; the latest follow stands in for that.
            let follow = match sender {
                Some(s) => c.follow_of(cu, s),
                None => c
                    .follows_of(cu)
                    .max_by_key(|(_, f)| f.createtime)
                    .map(|(i, _)| i),
            };
            match follow {
                Some(fi) if passes(fi) => pairs.push((c.follows[fi as usize].staff, cu)),
                Some(_) => {}
                None => fail.push(id.clone()),
            }
        }
        if known == 0 {
            return Err((40096, "no valid external_userid"));
        }
    }
    let mut per: Vec<(u32, Vec<Target>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (s, cu) in pairs {
        if !seen.insert(cu) {
            continue;
        }
        match per.iter_mut().find(|(ss, _)| *ss == s) {
            Some((_, v)) => v.push(Target::Customer(cu)),
            None => per.push((s, vec![Target::Customer(cu)])),
        }
    }
    Ok((per, fail))
}

fn plan_group(
    c: &Company,
    body: &AddReq,
    sender: Option<u32>,
) -> Result<Plan, (i32, &'static str)> {
    let Some(s) = sender else {
        return Err((40058, "sender is required for chat_type group"));
    };
    let live_owned = |i: u32| !c.chats[i as usize].dismissed && c.chats[i as usize].owner == s;
    let mut fail = Vec::new();
    let mut chats = Vec::new();
    if body.chat_id_list.is_empty() {
        chats.extend(
            (0..c.chats.len() as u32)
                .filter(|&i| live_owned(i))
                .map(Target::Chat),
        );
    } else {
        for id in &body.chat_id_list {
            match c.chat_by_id(id).filter(|&i| live_owned(i)) {
                Some(i) if !chats.contains(&Target::Chat(i)) => chats.push(Target::Chat(i)),
                Some(_) => {}
                None => fail.push(id.clone()),
            }
        }
    }
    Ok((
        if chats.is_empty() {
            Vec::new()
        } else {
            vec![(s, chats)]
        },
        fail,
    ))
}

async fn add_msg_template(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::AddMsgTemplate;
    let g = gate!(sim, api, req);
    let body: AddReq = tri!(req.json(api));
    let group = match body.chat_type.as_deref() {
        None | Some("") | Some("single") => false,
        Some("group") => true,
        Some(_) => return err_detail(api, 40058, "chat_type must be single or group"),
    };
    if body.external_userid.len() > 10_000 || body.chat_id_list.len() > 2000 {
        return err_detail(api, 40058, "too many recipients");
    }
    let content = tri!(validate_content(
        &sim,
        api,
        body.text.as_ref(),
        &body.attachments,
        g.now
    ));
    let (plan, fail_list) = {
        let c = sim.company();
        let sender = match body.sender.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(u) if !valid_userid(u) => return err(api, 40003),
            Some(u) => match c.staff_by_userid(u) {
                Some(s) if c.staff[s as usize].status == 1 => Some(s),
                _ => return err(api, 40003),
            },
        };
        let planned = if group {
            plan_group(&c, &body, sender)
        } else {
            plan_single(&c, &body, sender)
        };
        match planned {
            Ok(p) => p,
            Err((code, detail)) => return err_detail(api, code, detail),
        }
    };
    if plan.is_empty() {
        return err(api, 41048);
    }
    let msgid = sim.new_id("msg");
    let send = MassSend {
        msgid: msgid.clone(),
        group,
        create_time: g.now,
        created_ms: sim.now_ms(),
        content,
        tasks: plan
            .into_iter()
            .map(|(sender, targets)| SendTask {
                sender,
                confirmed_at: None,
                recipients: targets
                    .into_iter()
                    .map(|target| Recipient {
                        target,
                        status: 0,
                        send_time: 0,
                    })
                    .collect(),
            })
            .collect(),
        cancelled: false,
        reminders: Vec::new(),
    };
    {
        let mut m = sim.0.mass.lock();
        let at = m.sends.len();
        m.index.insert(msgid.clone(), at);
        m.sends.push(send);
    }
    let delay = sim.0.config.read().mass_send.confirm_delay_ms;
    if delay == 0 {
        sim.confirm_mass_send(&msgid, None).ok();
    } else if delay > 0 {
        let (sim2, id) = (sim.clone(), msgid.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            sim2.confirm_mass_send(&id, None).ok();
        });
    }
    ok(serde_json::json!({ "fail_list": fail_list, "msgid": msgid }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListV2Req {
    chat_type: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    creator: Option<String>,
    filter_type: Option<u8>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Lists by time range (≤ 1 month) so a sender that crashed after add_msg_template can find
/// its msgid. API-created sends are 企业发表 (create_type 0) and carry no `creator`; the
/// `creator` filter matches their senders.
async fn get_groupmsg_list_v2(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetGroupMsgListV2;
    let _gate = gate!(sim, api, req);
    let body: ListV2Req = tri!(req.json(api));
    let (Some(start), Some(end)) = (body.start_time, body.end_time) else {
        return err_detail(api, 40058, "start_time and end_time are required");
    };
    if end < start || end - start > 31 * 86_400 {
        return err_detail(api, 40058, "time range must be within one month");
    }
    let group = body.chat_type.as_deref() == Some("group");
    // Over the max falls back to the default (API-FACTS §7).
    let limit = match body.limit {
        Some(l) if (1..=100).contains(&l) => l as usize,
        _ => 50,
    };
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let creator = body
        .creator
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|u| c.staff_by_userid(u));
    let m = sim.0.mass.lock();
    let matches = |s: &MassSend| {
        s.group == group
            && s.create_time >= start
            && s.create_time <= end
            && body.filter_type.unwrap_or(2) != 1
            && creator.is_none_or(|cr| cr.is_some_and(|cr| s.tasks.iter().any(|t| t.sender == cr)))
    };
    let mut out = Vec::new();
    let mut i = cur[0] as usize;
    while i < m.sends.len() && out.len() < limit {
        let s = &m.sends[i];
        i += 1;
        if !matches(s) {
            continue;
        }
        let mut item = serde_json::json!({"msgid": s.msgid, "create_time": s.create_time.to_string(), "create_type": 0});
        if let (Some(o), Some(content)) = (item.as_object_mut(), s.content.as_object()) {
            o.extend(content.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out.push(item);
    }
    let more = m.sends[i.min(m.sends.len())..].iter().any(matches);
    let next = if more {
        cursor_encode(&[i as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "next_cursor": next, "group_msg_list": out }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TaskReq {
    msgid: String,
    userid: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Finds a send for the result APIs: 40058 unknown, 41063 still being dispatched.
fn find<'a>(sim: &Sim, m: &'a MassStore, api: Api, msgid: &str) -> Result<&'a MassSend, Response> {
    let s = m
        .index
        .get(msgid)
        .map(|&i| &m.sends[i])
        .ok_or_else(|| err_detail(api, 40058, "invalid msgid"))?;
    let dispatch = sim.0.config.read().mass_send.dispatch_ms as i64;
    if sim.now_ms() < s.created_ms + dispatch {
        return Err(err(api, 41063));
    }
    Ok(s)
}

fn page_limit(l: Option<u32>) -> usize {
    match l {
        None | Some(0) => 500,
        Some(l) => l.min(1000) as usize,
    }
}

async fn get_groupmsg_task(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetGroupMsgTask;
    let _gate = gate!(sim, api, req);
    let body: TaskReq = tri!(req.json(api));
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let m = sim.0.mass.lock();
    let s = tri!(find(&sim, &m, api, &body.msgid));
    let start = (cur[0] as usize).min(s.tasks.len());
    let end = (start + page_limit(body.limit)).min(s.tasks.len());
    let list: Vec<serde_json::Value> = s.tasks[start..end]
        .iter()
        .map(|t| {
            let mut v = serde_json::json!({"userid": c.staff[t.sender as usize].userid, "status": if t.confirmed_at.is_some() {2} else {0}});
            if let (Some(o), Some(at)) = (v.as_object_mut(), t.confirmed_at) {
                o.insert("send_time".into(), at.into());
            }
            v
        })
        .collect();
    let next = if end < s.tasks.len() {
        cursor_encode(&[end as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "next_cursor": next, "task_list": list }))
}

async fn get_groupmsg_send_result(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetGroupMsgSendResult;
    let _gate = gate!(sim, api, req);
    let body: TaskReq = tri!(req.json(api));
    let Some(userid) = body.userid.as_deref().filter(|u| !u.is_empty()) else {
        return err(api, 41009);
    };
    if !valid_userid(userid) {
        return err(api, 40003);
    }
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let m = sim.0.mass.lock();
    let s = tri!(find(&sim, &m, api, &body.msgid));
    let staff = c.staff_by_userid(userid);
    let empty = Vec::new();
    let recips = s
        .tasks
        .iter()
        .find(|t| Some(t.sender) == staff)
        .map_or(&empty, |t| &t.recipients);
    let start = (cur[0] as usize).min(recips.len());
    let end = (start + page_limit(body.limit)).min(recips.len());
    let list: Vec<serde_json::Value> = recips[start..end]
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({"userid": userid, "status": r.status});
            if let Some(o) = v.as_object_mut() {
                match r.target {
                    Target::Customer(cu) => {
                        o.insert("external_userid".into(), c.external_userid(cu).into())
                    }
                    Target::Chat(ch) => o.insert("chat_id".into(), c.chat_id(ch).into()),
                };
                if r.status == 1 {
                    o.insert("send_time".into(), r.send_time.into());
                }
            }
            v
        })
        .collect();
    let next = if end < recips.len() {
        cursor_encode(&[end as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "next_cursor": next, "send_list": list }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MsgIdReq {
    msgid: String,
}

async fn remind(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::RemindGroupMsgSend;
    let g = gate!(sim, api, req);
    let body: MsgIdReq = tri!(req.json(api));
    let max = sim.0.config.read().mass_send.max_reminders as usize;
    let mut m = sim.0.mass.lock();
    let Some(&i) = m.index.get(&body.msgid) else {
        return err_detail(api, 40058, "invalid msgid");
    };
    let s = &mut m.sends[i];
    if s.cancelled {
        return err(api, 41093);
    }
    if s.reminders.iter().filter(|&&t| t > g.now - 86_400).count() >= max {
        return err(api, 41094);
    }
    s.reminders.push(g.now);
    ok_empty()
}

async fn cancel(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::CancelGroupMsgSend;
    let _gate = gate!(sim, api, req);
    let body: MsgIdReq = tri!(req.json(api));
    let mut m = sim.0.mass.lock();
    let Some(&i) = m.index.get(&body.msgid) else {
        return err_detail(api, 40058, "invalid msgid");
    };
    m.sends[i].cancelled = true;
    ok_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_defaults_to_days_of_month() {
        // 2026-02-10 12:00 +08:00
        assert_eq!(quota(0, 1_770_696_000), 28);
        assert_eq!(quota(4, 1_770_696_000), 4);
    }
}
