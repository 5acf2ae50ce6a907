//! Contacts (通讯录): department/list, department/simplelist, user/list, user/simplelist,
//! user/list_id and user/get (API-FACTS §3). Members who left (status 5) are invisible here.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::{Deserialize, Serialize};

use super::{
    Api, ApiRequest, cursor_decode, cursor_encode, err, err_detail, gate, ok, tri, valid_userid,
};
use crate::company::{Company, Staff};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::DepartmentList.path(), any(department_list))
        .route(Api::DepartmentSimpleList.path(), any(department_simplelist))
        .route(Api::UserList.path(), any(user_list))
        .route(Api::UserSimpleList.path(), any(user_simplelist))
        .route(Api::UserListId.path(), any(user_list_id))
        .route(Api::UserGet.path(), any(user_get))
}

/// Department ids of the subtree rooted at `root` (itself first).
fn subtree(c: &Company, root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(
            c.departments
                .iter()
                .filter(|d| d.parent == p && d.id != p)
                .map(|d| d.id),
        );
        i += 1;
    }
    out
}

/// The `id` / `department_id` parameter: `Ok(None)` when absent, 60123 when not a department.
fn dept_param(c: &Company, api: Api, v: Option<&str>) -> Result<Option<u32>, Response> {
    let Some(v) = v else { return Ok(None) };
    match v.parse::<u32>() {
        Ok(id) if id >= 1 && (id as usize) <= c.departments.len() => Ok(Some(id)),
        _ => Err(err(api, 60123)),
    }
}

#[derive(Serialize)]
struct DeptOut<'a> {
    id: u32,
    name: &'a str,
    name_en: &'a str,
    department_leader: Vec<&'a str>,
    parentid: u32,
    order: u32,
}

async fn department_list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::DepartmentList;
    let _gate = gate!(sim, api, req);
    let c = sim.company();
    let ids = match tri!(dept_param(&c, api, req.param("id"))) {
        Some(root) => subtree(&c, root),
        None => c.departments.iter().map(|d| d.id).collect(),
    };
    let department: Vec<DeptOut> = ids
        .iter()
        .map(|&id| {
            let d = &c.departments[id as usize - 1];
            DeptOut {
                id,
                name: &d.name,
                name_en: &d.name_en,
                department_leader: d
                    .leaders
                    .iter()
                    .map(|&s| c.staff[s as usize].userid.as_str())
                    .collect(),
                parentid: d.parent,
                order: d.order,
            }
        })
        .collect();
    ok(serde_json::json!({ "department": department }))
}

async fn department_simplelist(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::DepartmentSimpleList;
    let _gate = gate!(sim, api, req);
    let c = sim.company();
    let ids = match tri!(dept_param(&c, api, req.param("id"))) {
        Some(root) => subtree(&c, root),
        None => c.departments.iter().map(|d| d.id).collect(),
    };
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|&id| {
            let d = &c.departments[id as usize - 1];
            serde_json::json!({"id": id, "parentid": d.parent, "order": d.order})
        })
        .collect();
    ok(serde_json::json!({ "department_id": list }))
}

/// Full member record as user/get and user/list return it.
fn user_json(c: &Company, s: &Staff) -> serde_json::Value {
    let is_leader: Vec<u8> = s
        .departments
        .iter()
        .map(|&d| {
            u8::from(
                c.departments[d as usize - 1]
                    .leaders
                    .iter()
                    .any(|&l| c.staff[l as usize].userid == s.userid),
            )
        })
        .collect();
    serde_json::json!({
        "userid": s.userid,
        "name": s.name,
        "department": s.departments,
        "order": vec![0; s.departments.len()],
        "position": s.position,
        "mobile": s.mobile,
        "gender": s.gender.to_string(),
        "email": format!("{}@sim.example.com", s.userid),
        "is_leader_in_dept": is_leader,
        "avatar": format!("https://wework.qpic.cn/sim/{}/0", s.userid),
        "thumb_avatar": format!("https://wework.qpic.cn/sim/{}/100", s.userid),
        "telephone": "",
        "alias": "",
        "address": "",
        "open_userid": format!("wo{}", s.userid),
        "main_department": s.departments.first().copied().unwrap_or(1),
        "status": s.status,
        "qr_code": format!("https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=sim{}", s.userid),
        "external_position": s.position,
    })
}

/// Members of department `dept` (and its subtree with fetch_child=1).
fn members(c: &Company, api: Api, req: &ApiRequest) -> Result<Vec<u32>, Response> {
    let Some(dept) = dept_param(c, api, req.param("department_id"))? else {
        return Err(err(api, 60123));
    };
    let depts = if req.param("fetch_child") == Some("1") {
        subtree(c, dept)
    } else {
        vec![dept]
    };
    Ok((0..c.staff.len() as u32)
        .filter(|&i| {
            let s = &c.staff[i as usize];
            s.visible() && s.departments.iter().any(|d| depts.contains(d))
        })
        .collect())
}

async fn user_list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::UserList;
    let _gate = gate!(sim, api, req);
    let c = sim.company();
    let ids = tri!(members(&c, api, &req));
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|&i| user_json(&c, &c.staff[i as usize]))
        .collect();
    ok(serde_json::json!({ "userlist": list }))
}

async fn user_simplelist(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::UserSimpleList;
    let _gate = gate!(sim, api, req);
    let c = sim.company();
    let ids = tri!(members(&c, api, &req));
    let list: Vec<serde_json::Value> = ids
        .iter()
        .map(|&i| {
            let s = &c.staff[i as usize];
            serde_json::json!({"userid": s.userid, "name": s.name, "department": s.departments, "open_userid": format!("wo{}", s.userid)})
        })
        .collect();
    ok(serde_json::json!({ "userlist": list }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListIdReq {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// One row per (member, department), `limit` 1..10000 (API-FACTS §3).
async fn user_list_id(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::UserListId;
    let _gate = gate!(sim, api, req);
    let body: ListIdReq = tri!(req.json(api));
    let limit = match body.limit {
        None => 10_000,
        Some(l) if (1..=10_000).contains(&l) => l as usize,
        Some(_) => return err_detail(api, 40058, "limit must be 1..10000"),
    };
    let Some(cur) = cursor_decode(body.cursor.as_deref(), 1) else {
        return err_detail(api, 40058, "invalid cursor");
    };
    let c = sim.company();
    let rows: Vec<(&str, u32)> = c
        .staff
        .iter()
        .filter(|s| s.visible())
        .flat_map(|s| s.departments.iter().map(move |&d| (s.userid.as_str(), d)))
        .collect();
    let start = (cur[0] as usize).min(rows.len());
    let end = (start + limit).min(rows.len());
    let dept_user: Vec<serde_json::Value> = rows[start..end]
        .iter()
        .map(|(u, d)| serde_json::json!({"userid": u, "department": d}))
        .collect();
    let next = if end < rows.len() {
        cursor_encode(&[end as u64])
    } else {
        String::new()
    };
    ok(serde_json::json!({ "next_cursor": next, "dept_user": dept_user }))
}

async fn user_get(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::UserGet;
    let _gate = gate!(sim, api, req);
    let Some(userid) = req.param("userid") else {
        return err(api, 41009);
    };
    if !valid_userid(userid) {
        return err(api, 40003);
    }
    let c = sim.company();
    match c.staff_by_userid(userid).map(|i| &c.staff[i as usize]) {
        Some(s) if s.visible() => ok(user_json(&c, s)),
        _ => err(api, 60111),
    }
}
