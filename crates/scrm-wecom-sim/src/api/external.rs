//! Customers (客户管理): get_follow_user_list, list, get (follow_user pages of 500),
//! batch/get_by_user (cursor, limit ≤ 100) and remark (API-FACTS §4). These are the hot read
//! paths, so replies are typed structs serialised straight from the company, not JSON trees.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::{Deserialize, Serialize};

use super::{
    Api, ApiRequest, cursor_decode, cursor_encode, err, err_detail, gate, ok, ok_empty, tri,
    valid_userid,
};
use crate::company::{Company, Follow, FollowExtra, names};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::FollowUserList.path(), any(get_follow_user_list))
        .route(Api::ExternalList.path(), any(list))
        .route(Api::ExternalGet.path(), any(get))
        .route(Api::BatchGetByUser.path(), any(batch_get_by_user))
        .route(Api::Remark.path(), any(remark))
}

/// `external_contact` object.
#[derive(Serialize)]
pub(crate) struct ContactOut {
    external_userid: String,
    name: String,
    avatar: String,
    #[serde(rename = "type")]
    kind: u8,
    gender: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corp_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corp_full_name: Option<String>,
}

pub(crate) fn contact_out(c: &Company, idx: u32) -> ContactOut {
    let cu = &c.customers[idx as usize];
    let wecom = cu.kind == 2;
    let corp = names::company_name(c.seed, idx);
    ContactOut {
        external_userid: c.external_userid(idx),
        name: c.customer_name(idx),
        avatar: format!("http://wx.qlogo.cn/mmhead/sim{idx:x}/0"),
        kind: cu.kind,
        gender: cu.gender,
        unionid: (!wecom).then(|| c.unionid(idx)),
        position: wecom.then_some("经理"),
        corp_name: wecom.then_some(corp),
        corp_full_name: wecom.then(|| format!("{corp}科技有限公司")),
    }
}

#[derive(Serialize)]
struct TagOut<'a> {
    group_name: &'a str,
    tag_name: &'a str,
    tag_id: &'a str,
    #[serde(rename = "type")]
    kind: u8,
}

/// Fields shared by get's `follow_user[]` and batch's `follow_info`.
#[derive(Serialize)]
struct FollowCommon<'a> {
    userid: &'a str,
    remark: String,
    description: &'a str,
    createtime: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark_corp_name: Option<&'a str>,
    remark_mobiles: &'a [String],
    oper_userid: String,
    add_way: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

static NO_EXTRA: FollowExtra = FollowExtra {
    remark: String::new(),
    description: String::new(),
    remark_mobiles: Vec::new(),
    remark_corp_name: String::new(),
};

/// The remark of a follow nobody edited: a third carry one, as members annotate some.
pub(crate) fn generated_remark(c: &Company, f: &Follow) -> String {
    if names::mix(
        c.seed,
        u64::from(f.customer) ^ (u64::from(f.staff) << 32),
        77,
    )
    .is_multiple_of(3)
    {
        format!(
            "{}-{}",
            c.customer_name(f.customer),
            ["老客户", "意向", "回访"][(f.createtime % 3) as usize]
        )
    } else {
        String::new()
    }
}

fn follow_common<'a>(c: &'a Company, f: &'a Follow, ext_id: &str) -> FollowCommon<'a> {
    let extra = f.extra.as_deref().unwrap_or(&NO_EXTRA);
    let remark = if f.extra.is_some() {
        extra.remark.clone()
    } else {
        generated_remark(c, f)
    };
    let staff = &c.staff[f.staff as usize];
    FollowCommon {
        userid: &staff.userid,
        remark,
        description: &extra.description,
        createtime: f.createtime,
        remark_corp_name: (!extra.remark_corp_name.is_empty())
            .then_some(extra.remark_corp_name.as_str()),
        remark_mobiles: &extra.remark_mobiles,
        oper_userid: if f.by_customer {
            ext_id.to_string()
        } else {
            staff.userid.clone()
        },
        add_way: f.add_way,
        state: (f.state != 0).then(|| c.states[f.state as usize].as_str()),
    }
}

#[derive(Serialize)]
struct FollowUserOut<'a> {
    #[serde(flatten)]
    common: FollowCommon<'a>,
    tags: Vec<TagOut<'a>>,
}

async fn get_follow_user_list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::FollowUserList;
    let _gate = gate!(sim, api, req);
    let c = sim.company();
    let follow_user: Vec<&str> = c
        .staff
        .iter()
        .filter(|s| s.contact_enabled && s.status == 1)
        .map(|s| s.userid.as_str())
        .collect();
    ok(serde_json::json!({ "follow_user": follow_user }))
}

/// A member's customers; 84061 when there are none (as WeCom does, API-FACTS §4).
async fn list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::ExternalList;
    let _gate = gate!(sim, api, req);
    let Some(userid) = req.param("userid") else {
        return err(api, 41009);
    };
    if !valid_userid(userid) {
        return err(api, 40003);
    }
    let c = sim.company();
    let Some(s) = c.staff_by_userid(userid) else {
        return err(api, 40003);
    };
    let ids: Vec<String> = c.staff[s as usize]
        .customers
        .iter()
        .map(|&cu| c.external_userid(cu))
        .collect();
    if ids.is_empty() {
        return err(api, 84061);
    }
    ok(serde_json::json!({ "external_userid": ids }))
}

/// follow_user page size of externalcontact/get.
const FOLLOW_PAGE: usize = 500;

#[derive(Serialize)]
struct GetOut<'a> {
    external_contact: ContactOut,
    follow_user: Vec<FollowUserOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn get(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::ExternalGet;
    let _gate = gate!(sim, api, req);
    let Some(ext) = req.param("external_userid") else {
        return err(api, 41035);
    };
    let Some(cur) = cursor_decode(req.param("cursor"), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let Some(idx) = c.customer_by_id(ext) else {
        return err(api, 40096);
    };
    let all: Vec<&Follow> = c.follows_of(idx).map(|(_, f)| f).collect();
    if all.is_empty() {
        return err(api, 84061);
    }
    let start = (cur[0] as usize).min(all.len());
    let end = (start + FOLLOW_PAGE).min(all.len());
    let follow_user = all[start..end]
        .iter()
        .map(|f| FollowUserOut {
            common: follow_common(&c, f, ext),
            tags: f
                .tags
                .iter()
                .filter_map(|&t| c.tags.get(t as usize))
                .filter(|t| !t.deleted)
                .map(|t| TagOut {
                    group_name: &c.tag_groups[t.group as usize].name,
                    tag_name: &t.name,
                    tag_id: &t.id,
                    kind: 1,
                })
                .collect(),
        })
        .collect();
    let next_cursor = (end < all.len()).then(|| cursor_encode(&[end as u64]));
    ok(GetOut {
        external_contact: contact_out(&c, idx),
        follow_user,
        next_cursor,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchReq {
    userid_list: Vec<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct FollowInfoOut<'a> {
    #[serde(flatten)]
    common: FollowCommon<'a>,
    tag_id: Vec<&'a str>,
}

#[derive(Serialize)]
struct BatchItem<'a> {
    external_contact: ContactOut,
    follow_info: FollowInfoOut<'a>,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    external_contact_list: Vec<BatchItem<'a>>,
    next_cursor: String,
}

/// One element per (customer, follow user) pair, walking the members in request order; the
/// cursor holds (member position, offset in that member's customers).
async fn batch_get_by_user(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::BatchGetByUser;
    let _gate = gate!(sim, api, req);
    let body: BatchReq = tri!(req.json(api));
    if body.userid_list.is_empty() || body.userid_list.len() > 100 {
        return err_detail(api, 40058, "userid_list must hold 1..100 userids");
    }
    if let Some(bad) = body.userid_list.iter().find(|u| !valid_userid(u)) {
        return err_detail(api, 40003, bad);
    }
    // Default 50, values above the max are clamped to it (API-FACTS §4).
    let limit = match body.limit {
        None | Some(0) => 50,
        Some(l) => l.min(100) as usize,
    };
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 2) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let staff: Vec<Option<u32>> = body
        .userid_list
        .iter()
        .map(|u| c.staff_by_userid(u))
        .collect();
    if staff.iter().all(Option::is_none) {
        return err(api, 40003);
    }
    let (mut ui, mut off) = (cur[0] as usize, cur[1] as usize);
    let mut out = Vec::with_capacity(limit);
    while ui < staff.len() && out.len() < limit {
        let Some(s) = staff[ui] else {
            ui += 1;
            off = 0;
            continue;
        };
        let custs = &c.staff[s as usize].customers;
        while off < custs.len() && out.len() < limit {
            let cu = custs[off];
            off += 1;
            let Some(fi) = c.follow_of(cu, s) else {
                continue;
            };
            let f = &c.follows[fi as usize];
            let contact = contact_out(&c, cu);
            let tag_id = f
                .tags
                .iter()
                .filter_map(|&t| c.tags.get(t as usize))
                .filter(|t| !t.deleted)
                .map(|t| t.id.as_str())
                .collect();
            let common = follow_common(&c, f, &contact.external_userid);
            out.push(BatchItem {
                external_contact: contact,
                follow_info: FollowInfoOut { common, tag_id },
            });
        }
        if off >= custs.len() {
            ui += 1;
            off = 0;
        }
    }
    let next_cursor = if ui < staff.len() {
        cursor_encode(&[ui as u64, off as u64])
    } else {
        String::new()
    };
    ok(BatchOut {
        external_contact_list: out,
        next_cursor,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RemarkReq {
    userid: String,
    external_userid: String,
    remark: Option<String>,
    description: Option<String>,
    remark_company: Option<String>,
    remark_mobiles: Option<Vec<String>>,
    remark_pic_mediaid: Option<String>,
}

/// Edits a follow's remark fields. Made through the API, so no callback (API-FACTS §11).
async fn remark(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::Remark;
    let _gate = gate!(sim, api, req);
    let body: RemarkReq = tri!(req.json(api));
    if body.remark.is_none()
        && body.description.is_none()
        && body.remark_company.is_none()
        && body.remark_mobiles.is_none()
        && body.remark_pic_mediaid.is_none()
    {
        return err_detail(api, 40058, "nothing to change");
    }
    if !valid_userid(&body.userid) {
        return err(api, 40003);
    }
    let mut c = sim.company_mut();
    let Some(s) = c.staff_by_userid(&body.userid) else {
        return err(api, 40003);
    };
    let Some(cu) = c.customer_by_id(&body.external_userid) else {
        return err(api, 40096);
    };
    let Some(fi) = c.follow_of(cu, s) else {
        return err(api, 84061);
    };
    let initial = generated_remark(&c, &c.follows[fi as usize]);
    let f = &mut c.follows[fi as usize];
    let extra = f.extra.get_or_insert_with(|| {
        Box::new(FollowExtra {
            remark: initial,
            ..FollowExtra::default()
        })
    });
    if let Some(r) = body.remark {
        extra.remark = r;
    }
    if let Some(d) = body.description {
        extra.description = d;
    }
    if let Some(r) = body.remark_company {
        extra.remark_corp_name = r;
    }
    if let Some(m) = body.remark_mobiles {
        extra.remark_mobiles = m.into_iter().filter(|m| !m.is_empty()).collect();
    }
    ok_empty()
}
