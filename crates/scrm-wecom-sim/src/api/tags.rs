//! Corp tags (企业客户标签): get_corp_tag_list, add_corp_tag, edit_corp_tag, del_corp_tag and
//! mark_tag (API-FACTS §5). The tag operations are also used by the admin scenarios, which act
//! as the admin console (console-made tags send callbacks; API-made ones do not).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::{Deserialize, Serialize};

use super::{Api, ApiRequest, err_detail, gate, ok, ok_empty, tri, valid_userid};
use crate::company::{Company, Tag, TagGroup};
use crate::state::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(Api::GetCorpTagList.path(), any(get_corp_tag_list))
        .route(Api::AddCorpTag.path(), any(add_corp_tag))
        .route(Api::EditCorpTag.path(), any(edit_corp_tag))
        .route(Api::DelCorpTag.path(), any(del_corp_tag))
        .route(Api::MarkTag.path(), any(mark_tag))
}

/// errcode plus detail, for operations shared with scenarios.
pub(crate) type OpError = (i32, String);

/// Most corp tags a corp may have (API-FACTS §5; §14.4 notes a disputed 10,000).
const MAX_TAGS: usize = 3000;
/// Max characters of a tag or group name.
const MAX_NAME: usize = 30;

fn check_name(name: &str) -> Result<(), OpError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err((40058, format!("name must be 1..{MAX_NAME} characters")));
    }
    Ok(())
}

/// add_corp_tag semantics: into `group_id`, else into the group named `group_name` (created if
/// missing). Returns the group and the tags created (duplicates in one call create one tag).
pub(crate) fn add_tags(
    c: &mut Company,
    group_id: Option<&str>,
    group_name: Option<&str>,
    group_order: u32,
    tags: &[(String, u32)],
    by_api: bool,
    now: i64,
) -> Result<(u32, Vec<u32>), OpError> {
    if tags.is_empty() {
        return Err((40058, "tag list is empty".into()));
    }
    for (name, _) in tags {
        check_name(name)?;
    }
    let live = c.tags.iter().filter(|t| !t.deleted).count();
    let group = match group_id.filter(|g| !g.is_empty()) {
        Some(gid) => match c.group_index.get(gid) {
            Some(&g) if !c.tag_groups[g as usize].deleted => g,
            _ => return Err((40068, format!("unknown group_id {gid}"))),
        },
        None => {
            let name = group_name
                .filter(|n| !n.is_empty())
                .ok_or((40058, "group_id or group_name required".to_string()))?;
            check_name(name)?;
            match c
                .tag_groups
                .iter()
                .position(|g| !g.deleted && g.name == name)
            {
                Some(g) => g as u32,
                None => {
                    let id = c.new_tag_id(true);
                    let g = c.tag_groups.len() as u32;
                    c.group_index.insert(id.clone(), g);
                    c.tag_groups.push(TagGroup {
                        id,
                        name: name.to_string(),
                        create_time: now,
                        order: group_order,
                        deleted: false,
                        tags: Vec::new(),
                        by_api,
                    });
                    g
                }
            }
        }
    };
    let existing = |c: &Company, name: &str| {
        c.tag_groups[group as usize]
            .tags
            .iter()
            .any(|&t| !c.tags[t as usize].deleted && c.tags[t as usize].name == name)
    };
    if let Some((name, _)) = tags.iter().find(|(n, _)| existing(c, n)) {
        return Err((40071, name.clone()));
    }
    let mut created = Vec::new();
    for (name, order) in tags {
        if created
            .iter()
            .any(|&t: &u32| c.tags[t as usize].name == *name)
        {
            continue;
        }
        if live + created.len() >= MAX_TAGS {
            return Err((40058, format!("at most {MAX_TAGS} corp tags")));
        }
        let id = c.new_tag_id(false);
        let t = c.tags.len() as u32;
        c.tag_index.insert(id.clone(), t);
        c.tags.push(Tag {
            id,
            name: name.clone(),
            group,
            create_time: now,
            order: *order,
            deleted: false,
            by_api,
        });
        c.tag_groups[group as usize].tags.push(t);
        created.push(t);
    }
    Ok((group, created))
}

/// What an id names.
pub(crate) enum TagRef {
    Tag(u32),
    Group(u32),
}

pub(crate) fn lookup(c: &Company, id: &str) -> Option<TagRef> {
    if let Some(&t) = c.tag_index.get(id) {
        return (!c.tags[t as usize].deleted).then_some(TagRef::Tag(t));
    }
    let &g = c.group_index.get(id)?;
    (!c.tag_groups[g as usize].deleted).then_some(TagRef::Group(g))
}

/// Renames/reorders a tag or group. `by_api`: an app may only edit what it created.
pub(crate) fn edit(
    c: &mut Company,
    id: &str,
    name: Option<&str>,
    order: Option<u32>,
    by_api: bool,
) -> Result<TagRef, OpError> {
    let r = lookup(c, id).ok_or((40068, format!("unknown id {id}")))?;
    if let Some(n) = name {
        check_name(n)?;
    }
    match r {
        TagRef::Tag(t) => {
            let (group, owned) = (c.tags[t as usize].group, c.tags[t as usize].by_api);
            if by_api && !owned {
                return Err((40068, "an app may only edit tags it created".into()));
            }
            if let Some(n) = name
                && c.tag_groups[group as usize]
                    .tags
                    .iter()
                    .any(|&o| o != t && !c.tags[o as usize].deleted && c.tags[o as usize].name == n)
            {
                return Err((40071, n.to_string()));
            }
            let tag = &mut c.tags[t as usize];
            if let Some(n) = name {
                tag.name = n.to_string();
            }
            if let Some(o) = order {
                tag.order = o;
            }
        }
        TagRef::Group(g) => {
            if by_api && !c.tag_groups[g as usize].by_api {
                return Err((40068, "an app may only edit groups it created".into()));
            }
            if let Some(n) = name
                && c.tag_groups
                    .iter()
                    .enumerate()
                    .any(|(i, o)| i != g as usize && !o.deleted && o.name == n)
            {
                return Err((40071, n.to_string()));
            }
            let group = &mut c.tag_groups[g as usize];
            if let Some(n) = name {
                group.name = n.to_string();
            }
            if let Some(o) = order {
                group.order = o;
            }
        }
    }
    Ok(r)
}

/// Deletes tags and groups; a group whose last tag goes is deleted too (API-FACTS §5).
pub(crate) fn delete(
    c: &mut Company,
    tag_ids: &[String],
    group_ids: &[String],
    by_api: bool,
) -> Result<(), OpError> {
    if tag_ids.is_empty() && group_ids.is_empty() {
        return Err((40058, "tag_id and group_id both empty".into()));
    }
    let mut tags = Vec::new();
    for id in tag_ids {
        match lookup(c, id) {
            Some(TagRef::Tag(t)) if !by_api || c.tags[t as usize].by_api => tags.push(t),
            _ => return Err((40068, format!("invalid tag id {id}"))),
        }
    }
    let mut groups = Vec::new();
    for id in group_ids {
        match lookup(c, id) {
            Some(TagRef::Group(g)) if !by_api || c.tag_groups[g as usize].by_api => groups.push(g),
            _ => return Err((40068, format!("invalid group id {id}"))),
        }
    }
    for g in groups {
        c.tag_groups[g as usize].deleted = true;
        for t in c.tag_groups[g as usize].tags.clone() {
            c.tags[t as usize].deleted = true;
        }
    }
    for t in tags {
        c.tags[t as usize].deleted = true;
        let g = c.tags[t as usize].group as usize;
        if c.tag_groups[g]
            .tags
            .iter()
            .all(|&o| c.tags[o as usize].deleted)
        {
            c.tag_groups[g].deleted = true;
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListReq {
    tag_id: Vec<String>,
    group_id: Vec<String>,
}

#[derive(Serialize)]
struct TagOut<'a> {
    id: &'a str,
    name: &'a str,
    create_time: i64,
    order: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    group_id: &'a str,
    group_name: &'a str,
    create_time: i64,
    order: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    tag: Vec<TagOut<'a>>,
}

fn group_out<'a>(g: &'a TagGroup, deleted: Option<bool>, tags: Vec<TagOut<'a>>) -> GroupOut<'a> {
    GroupOut {
        group_id: &g.id,
        group_name: &g.name,
        create_time: g.create_time,
        order: g.order,
        deleted,
        tag: tags,
    }
}

fn tag_out(t: &Tag, with_deleted: bool) -> TagOut<'_> {
    TagOut {
        id: &t.id,
        name: &t.name,
        create_time: t.create_time,
        order: t.order,
        deleted: with_deleted.then_some(t.deleted),
    }
}

/// No filter: live groups and tags. group_id (wins over tag_id): those groups with all their
/// tags, `deleted` on tags. tag_id: those tags in their groups, `deleted` on both.
async fn get_corp_tag_list(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetCorpTagList;
    let _gate = gate!(sim, api, req);
    let body: ListReq = tri!(req.json(api));
    let c = sim.company();
    let mut out: Vec<GroupOut> = Vec::new();
    if !body.group_id.is_empty() {
        for id in &body.group_id {
            let Some(&g) = c.group_index.get(id) else {
                return err_detail(api, 40068, id);
            };
            let grp = &c.tag_groups[g as usize];
            out.push(group_out(
                grp,
                None,
                grp.tags
                    .iter()
                    .map(|&t| tag_out(&c.tags[t as usize], true))
                    .collect(),
            ));
        }
    } else if !body.tag_id.is_empty() {
        let mut by_group: Vec<(u32, Vec<u32>)> = Vec::new();
        for id in &body.tag_id {
            let Some(&t) = c.tag_index.get(id) else {
                return err_detail(api, 40068, id);
            };
            let g = c.tags[t as usize].group;
            match by_group.iter_mut().find(|(gg, _)| *gg == g) {
                Some((_, v)) => v.push(t),
                None => by_group.push((g, vec![t])),
            }
        }
        for (g, ts) in by_group {
            let grp = &c.tag_groups[g as usize];
            out.push(group_out(
                grp,
                Some(grp.deleted),
                ts.iter()
                    .map(|&t| tag_out(&c.tags[t as usize], true))
                    .collect(),
            ));
        }
    } else {
        for grp in c.tag_groups.iter().filter(|g| !g.deleted) {
            let tags = grp
                .tags
                .iter()
                .map(|&t| &c.tags[t as usize])
                .filter(|t| !t.deleted)
                .map(|t| tag_out(t, false))
                .collect();
            out.push(group_out(grp, None, tags));
        }
    }
    ok(serde_json::json!({ "tag_group": out }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddReq {
    group_id: Option<String>,
    group_name: Option<String>,
    order: u32,
    tag: Vec<NewTag>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewTag {
    name: String,
    order: u32,
}

async fn add_corp_tag(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::AddCorpTag;
    let g = gate!(sim, api, req);
    let body: AddReq = tri!(req.json(api));
    let tags: Vec<(String, u32)> = body.tag.into_iter().map(|t| (t.name, t.order)).collect();
    let mut c = sim.company_mut();
    let (group, created) = match add_tags(
        &mut c,
        body.group_id.as_deref(),
        body.group_name.as_deref(),
        body.order,
        &tags,
        true,
        g.now,
    ) {
        Ok(v) => v,
        Err((code, detail)) => return err_detail(api, code, &detail),
    };
    let grp = &c.tag_groups[group as usize];
    let out = GroupOut {
        group_id: &grp.id,
        group_name: &grp.name,
        create_time: grp.create_time,
        order: grp.order,
        deleted: None,
        tag: created
            .iter()
            .map(|&t| tag_out(&c.tags[t as usize], false))
            .collect(),
    };
    ok(serde_json::json!({ "tag_group": out }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EditReq {
    id: String,
    name: Option<String>,
    order: Option<u32>,
}

async fn edit_corp_tag(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::EditCorpTag;
    let _gate = gate!(sim, api, req);
    let body: EditReq = tri!(req.json(api));
    if body.id.is_empty() {
        return err_detail(api, 40058, "id required");
    }
    match edit(
        &mut sim.company_mut(),
        &body.id,
        body.name.as_deref(),
        body.order,
        true,
    ) {
        Ok(_) => ok_empty(),
        Err((code, detail)) => err_detail(api, code, &detail),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DelReq {
    tag_id: Vec<String>,
    group_id: Vec<String>,
}

async fn del_corp_tag(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::DelCorpTag;
    let _gate = gate!(sim, api, req);
    let body: DelReq = tri!(req.json(api));
    match delete(&mut sim.company_mut(), &body.tag_id, &body.group_id, true) {
        Ok(()) => ok_empty(),
        Err((code, detail)) => err_detail(api, code, &detail),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MarkReq {
    userid: String,
    external_userid: String,
    add_tag: Vec<String>,
    remove_tag: Vec<String>,
}

/// Changes a follow's tags. Through the API, so no edit_external_contact callback.
pub(crate) fn mark(
    c: &mut Company,
    userid: &str,
    ext: &str,
    add: &[String],
    remove: &[String],
) -> Result<(), OpError> {
    if add.is_empty() && remove.is_empty() {
        return Err((40058, "add_tag and remove_tag both empty".into()));
    }
    if !valid_userid(userid) {
        return Err((40003, userid.to_string()));
    }
    let s = c
        .staff_by_userid(userid)
        .ok_or((40003, userid.to_string()))?;
    let cu = c.customer_by_id(ext).ok_or((40096, ext.to_string()))?;
    let fi = c.follow_of(cu, s).ok_or((84061, String::new()))?;
    let resolve = |c: &Company, ids: &[String]| -> Result<Vec<u32>, OpError> {
        ids.iter()
            .map(|id| match lookup(c, id) {
                Some(TagRef::Tag(t)) => Ok(t),
                _ => Err((40068, id.clone())),
            })
            .collect()
    };
    let add = resolve(c, add)?;
    let remove = resolve(c, remove)?;
    let f = &mut c.follows[fi as usize];
    let mut tags: Vec<u32> = f
        .tags
        .iter()
        .copied()
        .filter(|t| !remove.contains(t))
        .collect();
    for t in add {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    f.tags = tags.into_boxed_slice();
    Ok(())
}

async fn mark_tag(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::MarkTag;
    let _gate = gate!(sim, api, req);
    let body: MarkReq = tri!(req.json(api));
    match mark(
        &mut sim.company_mut(),
        &body.userid,
        &body.external_userid,
        &body.add_tag,
        &body.remove_tag,
    ) {
        Ok(()) => ok_empty(),
        Err((code, detail)) => err_detail(api, code, &detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::generate;
    use crate::config::CompanySize;

    #[test]
    fn deleting_last_tag_deletes_group_and_apps_cannot_touch_console_tags() {
        let mut c = generate(1, &CompanySize::default());
        let (g, t) = add_tags(
            &mut c,
            None,
            Some("新组"),
            1,
            &[("a".into(), 1), ("a".into(), 2)],
            true,
            0,
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        let console_tag = c.tags[0].id.clone();
        assert_eq!(
            delete(&mut c, &[console_tag], &[], true).unwrap_err().0,
            40068
        );
        let id = c.tags[t[0] as usize].id.clone();
        delete(&mut c, &[id], &[], true).unwrap();
        assert!(c.tag_groups[g as usize].deleted);
    }
}
