//! Customer inheritance (在职/离职继承): transfer_customer, transfer_result, the resigned/
//! variants and get_unassigned_list (API-FACTS §9). A started transfer waits
//! `limits.takeover_secs` (24 h) and is settled lazily when results are read or the clock moves.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::Deserialize;

use super::{
    Api, ApiRequest, cursor_decode, cursor_encode, err, err_detail, gate, ok, tri, valid_userid,
};
use crate::company::Follow;
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::TransferCustomer.path(), any(transfer_customer))
        .route(Api::TransferResult.path(), any(transfer_result))
        .route(
            Api::ResignedTransferCustomer.path(),
            any(resigned_transfer_customer),
        )
        .route(
            Api::ResignedTransferResult.path(),
            any(resigned_transfer_result),
        )
        .route(Api::GetUnassignedList.path(), any(get_unassigned_list))
}

/// One customer's transfer.
#[derive(Clone, Debug)]
pub(crate) struct TransferRec {
    pub handover: u32,
    pub takeover: u32,
    pub customer: u32,
    pub resigned: bool,
    pub takeover_at: i64,
    /// 1 done, 2 waiting, 3 customer refused, 4 takeover's customer limit reached.
    pub status: u8,
}

#[derive(Debug, Default)]
pub(crate) struct TransferStore {
    pub recs: Vec<TransferRec>,
}

impl Sim {
    /// Completes transfers whose takeover time has passed: the follow moves to the takeover
    /// member (remark and tags kept, add_way 202 分配), as WeCom does after 24 h.
    pub fn settle_transfers(&self) -> usize {
        let now = self.now();
        let mut c = self.company_mut();
        let mut t = self.0.transfers.lock();
        let mut done = 0;
        for r in t
            .recs
            .iter_mut()
            .filter(|r| r.status == 2 && r.takeover_at <= now)
        {
            r.status = 1;
            done += 1;
            let Some(fi) = c.follow_of(r.customer, r.handover) else {
                continue;
            };
            let old: Follow = c.follows[fi as usize].clone();
            c.remove_follow(fi);
            if c.follow_of(r.customer, r.takeover).is_none() {
                c.add_follow(Follow {
                    staff: r.takeover,
                    createtime: now as u32,
                    add_way: 202,
                    by_customer: false,
                    ..old
                });
            }
        }
        done
    }

    /// Marks a waiting transfer as refused by the customer (status 3); returns the handover's
    /// userid for the transfer_fail callback.
    pub(crate) fn refuse_transfer(&self, customer: u32, takeover: u32) -> Option<u32> {
        let mut t = self.0.transfers.lock();
        let r = t
            .recs
            .iter_mut()
            .rev()
            .find(|r| r.status == 2 && r.customer == customer && r.takeover == takeover)?;
        r.status = 3;
        Some(r.handover)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TransferReq {
    handover_userid: String,
    takeover_userid: String,
    external_userid: Vec<String>,
    transfer_success_msg: Option<String>,
}

fn start(sim: &Sim, api: Api, req: &ApiRequest, resigned: bool, now: i64) -> Response {
    let body: TransferReq = tri!(req.json(api));
    if body.external_userid.is_empty() || body.external_userid.len() > 100 {
        return err_detail(api, 40058, "external_userid must hold 1..100 ids");
    }
    if body
        .transfer_success_msg
        .as_deref()
        .is_some_and(|m| m.chars().count() > 200)
    {
        return err_detail(api, 40058, "transfer_success_msg exceeds 200 characters");
    }
    if !valid_userid(&body.handover_userid) || !valid_userid(&body.takeover_userid) {
        return err(api, 40003);
    }
    let takeover_secs = sim.0.config.read().limits.takeover_secs as i64;
    let c = sim.company();
    let (Some(h), Some(t)) = (
        c.staff_by_userid(&body.handover_userid),
        c.staff_by_userid(&body.takeover_userid),
    ) else {
        return err(api, 40003);
    };
    if h == t {
        return err(api, 40130);
    }
    let hs = &c.staff[h as usize];
    if resigned && hs.status != 5 {
        return err(api, 40097);
    }
    if !resigned && hs.status == 5 {
        return err_detail(
            api,
            40058,
            "handover has resigned: use resigned/transfer_customer",
        );
    }
    let ts = &c.staff[t as usize];
    if ts.status != 1 || !ts.contact_enabled {
        return err_detail(
            api,
            40003,
            "takeover must be an active member with 客户联系",
        );
    }
    let mut store = sim.0.transfers.lock();
    let mut out = Vec::new();
    for id in &body.external_userid {
        let code = match c.customer_by_id(id) {
            None => 40096,
            Some(cu) if c.follow_of(cu, h).is_none() => 84061,
            Some(cu) if store.recs.iter().any(|r| r.customer == cu && r.status == 2) => 40129,
            Some(cu)
                if !resigned
                    && store
                        .recs
                        .iter()
                        .filter(|r| r.customer == cu && !r.resigned && r.status == 1)
                        .count()
                        >= 2 =>
            {
                40100
            }
            Some(cu) => {
                store.recs.push(TransferRec {
                    handover: h,
                    takeover: t,
                    customer: cu,
                    resigned,
                    takeover_at: now + takeover_secs,
                    status: 2,
                });
                0
            }
        };
        out.push(serde_json::json!({"external_userid": id, "errcode": code}));
    }
    ok(serde_json::json!({ "customer": out }))
}

async fn transfer_customer(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::TransferCustomer;
    let g = gate!(sim, api, req);
    start(&sim, api, &req, false, g.now)
}

async fn resigned_transfer_customer(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::ResignedTransferCustomer;
    let g = gate!(sim, api, req);
    start(&sim, api, &req, true, g.now)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultReq {
    handover_userid: String,
    takeover_userid: String,
    cursor: Option<String>,
}

const RESULT_PAGE: usize = 1000;

fn result(sim: &Sim, api: Api, req: &ApiRequest, resigned: bool) -> Response {
    let body: ResultReq = tri!(req.json(api));
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    sim.settle_transfers();
    let c = sim.company();
    let (Some(h), Some(t)) = (
        c.staff_by_userid(&body.handover_userid),
        c.staff_by_userid(&body.takeover_userid),
    ) else {
        return err(api, 40003);
    };
    let store = sim.0.transfers.lock();
    let recs: Vec<&TransferRec> = store
        .recs
        .iter()
        .filter(|r| r.handover == h && r.takeover == t && r.resigned == resigned)
        .collect();
    let start = (cur[0] as usize).min(recs.len());
    let end = (start + RESULT_PAGE).min(recs.len());
    let list: Vec<serde_json::Value> = recs[start..end]
        .iter()
        .map(|r| {
            let when = if matches!(r.status, 1 | 2) { r.takeover_at } else { 0 };
            serde_json::json!({"external_userid": c.external_userid(r.customer), "status": r.status, "takeover_time": when})
        })
        .collect();
    let next = if end < recs.len() {
        cursor_encode(&[end as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "customer": list, "next_cursor": next }))
}

async fn transfer_result(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::TransferResult;
    let _gate = gate!(sim, api, req);
    result(&sim, api, &req, false)
}

async fn resigned_transfer_result(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::ResignedTransferResult;
    let _gate = gate!(sim, api, req);
    result(&sim, api, &req, true)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UnassignedReq {
    cursor: Option<String>,
    page_size: Option<u32>,
}

/// Customers of members who left and are not being transferred; cursor = (member, offset).
async fn get_unassigned_list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetUnassignedList;
    let _gate = gate!(sim, api, req);
    let body: UnassignedReq = tri!(req.json(api));
    let size = match body.page_size {
        None | Some(0) => 1000,
        Some(s) => s.min(1000) as usize,
    };
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 2) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    sim.settle_transfers();
    let c = sim.company();
    let store = sim.0.transfers.lock();
    let (mut si, mut off) = (cur[0] as usize, cur[1] as usize);
    let mut info = Vec::new();
    while si < c.staff.len() && info.len() < size {
        let s = &c.staff[si];
        if s.status == 5 {
            while off < s.customers.len() && info.len() < size {
                let cu = s.customers[off];
                off += 1;
                if store
                    .recs
                    .iter()
                    .any(|r| r.customer == cu && r.handover == si as u32 && r.status == 2)
                {
                    continue;
                }
                info.push(serde_json::json!({"handover_userid": s.userid, "external_userid": c.external_userid(cu), "dimission_time": s.dimission_time}));
            }
            if off < s.customers.len() {
                break;
            }
        }
        si += 1;
        off = 0;
    }
    let is_last =
        !(si..c.staff.len()).any(|i| c.staff[i].status == 5 && !c.staff[i].customers.is_empty());
    let next = if is_last {
        String::new()
    } else {
        cursor_encode(&[si as u64, off as u64])
    };
    ok(serde_json::json!({ "info": info, "is_last": is_last, "next_cursor": next }))
}
