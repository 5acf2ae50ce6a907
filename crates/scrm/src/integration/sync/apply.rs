//! The apply half of a sync: turn what was fetched into changes of scrm's WeCom-mirrored tables,
//! all inside the caller's one transaction, writing only what changed since the last sync (by
//! content hash) unless forced, and noticing what WeCom no longer has.
//!
//! Sync owns the WeCom-mirrored data; it writes through the customers module's store functions
//! (staff, departments, follows, tags, group members) so counters, grams, versions, timeline and
//! events stay exactly as that module keeps them. Customers are in [`super::apply_customers`].

use std::collections::{HashMap, HashSet};

use scrm_db::{DbResult, Tx, query};
use scrm_wecom::client::{Department, GroupChat, TagGroup, User};
use serde::Serialize;

use super::fetch::ItemError;
use super::hash::{self, kind};
use crate::customers::{groups, staff, tags};

/// A group chat scrm saw dismissed (WeCom's 0-3 are the owner-transfer states).
pub const GROUP_DISMISSED: i64 = 4;

/// What an apply did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub failed: i64,
}

/// Shared state of one apply: tenant, time, mode, and id caches.
pub struct Ctx {
    pub tenant_id: i64,
    pub now: i64,
    /// Rewrite everything, ignoring the hashes.
    pub force: bool,
    /// The first sync of this tenant's customers: an import of what already exists, so no
    /// `customer.created` events (which would fire "new friend" SOPs for old customers), no
    /// "added today" statistics and no timeline rows.
    pub bootstrap: bool,
    /// The customers being written may not have all their follow relations yet (a first sync
    /// applied while it is still fetched): only add relations and tags, end none, remove none,
    /// and leave the add statistics to the end ([`super::apply_customers::Streaming`]).
    pub partial: bool,
    pub counts: Counts,
    pub errors: Vec<ItemError>,
    staff_ids: HashMap<String, i64>,
    tag_ids: Option<HashMap<String, i64>>,
    /// Customer ids by external_userid, of the customers this apply wrote (the group chats'
    /// members are linked without looking them up again).
    pub customer_ids: HashMap<String, i64>,
    /// Group chat hashes to store at the end of the groups' apply (one statement per many).
    group_hashes: Vec<(String, String)>,
}

impl Ctx {
    pub fn new(tenant_id: i64, now: i64, force: bool) -> Self {
        Ctx {
            tenant_id,
            now,
            force,
            bootstrap: false,
            partial: false,
            counts: Counts::default(),
            errors: Vec::new(),
            staff_ids: HashMap::new(),
            tag_ids: None,
            customer_ids: HashMap::new(),
            group_hashes: Vec::new(),
        }
    }

    /// Skip one bad object and say why.
    pub fn skip(&mut self, item: String, reason: impl Into<String>) {
        self.counts.failed += 1;
        self.errors.push(ItemError {
            item,
            reason: reason.into(),
        });
    }

    /// The staff id of a userid; a member scrm has not synced yet gets a placeholder row (named
    /// by its userid) that the next user sync completes.
    pub async fn staff_id(&mut self, tx: &mut Tx, userid: &str) -> DbResult<i64> {
        if let Some(id) = self.staff_ids.get(userid) {
            return Ok(*id);
        }
        let found: Option<(i64,)> = tx
            .fetch_optional(
                query("SELECT id FROM staff WHERE tenant_id = ? AND userid = ?")
                    .bind(self.tenant_id)
                    .bind(userid),
            )
            .await?;
        let id = match found {
            Some((id,)) => id,
            None => {
                staff::upsert_staff(tx, self.tenant_id, userid, userid, &[], 1, self.now).await?
            }
        };
        self.staff_ids.insert(userid.to_string(), id);
        Ok(id)
    }

    /// Every staff id of the tenant into the cache (one query instead of one per member).
    pub async fn preload_staff(&mut self, tx: &mut Tx) -> DbResult<()> {
        let rows: Vec<(String, i64)> = tx
            .fetch_all(
                query("SELECT userid, id FROM staff WHERE tenant_id = ?").bind(self.tenant_id),
            )
            .await?;
        self.staff_ids.extend(rows);
        Ok(())
    }

    /// Local tag id per WeCom tag id.
    pub async fn tag_map(&mut self, tx: &mut Tx) -> DbResult<&HashMap<String, i64>> {
        if self.tag_ids.is_none() {
            let rows: Vec<(String, i64)> = tx
                .fetch_all(query("SELECT wecom_tag_id, id FROM tag WHERE tenant_id = ? AND wecom_tag_id IS NOT NULL").bind(self.tenant_id))
                .await?;
            self.tag_ids = Some(rows.into_iter().collect());
        }
        Ok(self.tag_ids.get_or_insert_with(HashMap::new))
    }
}

/// Text cut to a column's width in characters (WeCom allows longer names than some columns).
pub fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Departments: upsert changed, delete vanished.
pub async fn departments(tx: &mut Tx, ctx: &mut Ctx, list: &[Department]) -> DbResult<()> {
    let old = hash::load(tx, ctx.tenant_id, kind::DEPARTMENT).await?;
    let mut new_hashes = Vec::new();
    for d in list {
        let id = d.id.to_string();
        let h = hash::of(&(&d.name, d.parentid, d.order));
        if !ctx.force && old.get(&id) == Some(&h) {
            ctx.counts.unchanged += 1;
            continue;
        }
        let order = i64::try_from(d.order).unwrap_or(i64::MAX);
        staff::upsert_department(
            tx,
            ctx.tenant_id,
            d.id,
            &cut(&d.name, 100),
            d.parentid,
            order,
            ctx.now,
        )
        .await?;
        if old.contains_key(&id) {
            ctx.counts.updated += 1
        } else {
            ctx.counts.created += 1
        }
        new_hashes.push((id, h));
    }
    hash::put_many(tx, ctx.tenant_id, kind::DEPARTMENT, &new_hashes, ctx.now).await?;
    let seen: HashSet<String> = list.iter().map(|d| d.id.to_string()).collect();
    let gone: Vec<String> = old.into_keys().filter(|k| !seen.contains(k)).collect();
    for id in &gone {
        let wecom_id: i64 = id.parse().unwrap_or_default();
        tx.execute(
            query("DELETE FROM department WHERE tenant_id = ? AND wecom_id = ?")
                .bind(ctx.tenant_id)
                .bind(wecom_id),
        )
        .await?;
        ctx.counts.deleted += 1;
    }
    hash::remove(tx, ctx.tenant_id, kind::DEPARTMENT, &gone).await
}

/// Members: upsert changed; a member WeCom no longer lists is kept with status 5 (left the
/// company), since customers and history point at it.
pub async fn users(tx: &mut Tx, ctx: &mut Ctx, list: &[User]) -> DbResult<()> {
    let old = hash::load(tx, ctx.tenant_id, kind::STAFF).await?;
    let mut new_hashes = Vec::new();
    for u in list {
        if u.userid.is_empty() || u.userid.len() > 64 {
            ctx.skip(
                format!("user {:?}", u.userid),
                "userid must be 1-64 characters",
            );
            continue;
        }
        let h = hash::of(&(&u.name, &u.department, u.status));
        if !ctx.force && old.get(&u.userid) == Some(&h) {
            ctx.counts.unchanged += 1;
            continue;
        }
        let status = if u.status == 0 { 1 } else { u.status };
        let id = staff::upsert_staff(
            tx,
            ctx.tenant_id,
            &u.userid,
            &cut(&u.name, 100),
            &u.department,
            status,
            ctx.now,
        )
        .await?;
        ctx.staff_ids.insert(u.userid.clone(), id);
        if old.contains_key(&u.userid) {
            ctx.counts.updated += 1
        } else {
            ctx.counts.created += 1
        }
        new_hashes.push((u.userid.clone(), h));
    }
    hash::put_many(tx, ctx.tenant_id, kind::STAFF, &new_hashes, ctx.now).await?;
    let seen: HashSet<&str> = list.iter().map(|u| u.userid.as_str()).collect();
    let gone: Vec<String> = old
        .into_keys()
        .filter(|k| !seen.contains(k.as_str()))
        .collect();
    for userid in &gone {
        tx.execute(
            query("UPDATE staff SET status = 5, updated_at = ? WHERE tenant_id = ? AND userid = ?")
                .bind(ctx.now)
                .bind(ctx.tenant_id)
                .bind(userid.as_str()),
        )
        .await?;
        ctx.counts.deleted += 1;
    }
    hash::remove(tx, ctx.tenant_id, kind::STAFF, &gone).await
}

/// Corp tags and groups: match by WeCom id, else adopt a local group/tag of the same name (made
/// in scrm before it reached WeCom), else create; rename and reorder changed ones; delete those
/// WeCom deleted (which keeps every customer's tags and the counters exact, see
/// [`tags::delete_tag`]).
pub async fn corp_tags(tx: &mut Tx, ctx: &mut Ctx, list: &[TagGroup]) -> DbResult<()> {
    let t = ctx.tenant_id;
    let old_groups = hash::load(tx, t, kind::TAG_GROUP).await?;
    let old_tags = hash::load(tx, t, kind::TAG).await?;
    let (mut group_hashes, mut tag_hashes) = (Vec::new(), Vec::new());
    for g in list.iter().filter(|g| !g.deleted) {
        let gh = hash::of(&(&g.group_name, g.order));
        let order = i64::try_from(g.order).unwrap_or(0);
        let local: Option<(i64,)> = tx
            .fetch_optional(query("SELECT id FROM tag_group WHERE tenant_id = ? AND (wecom_group_id = ? OR (wecom_group_id IS NULL AND name = ?)) ORDER BY wecom_group_id IS NULL").bind(t).bind(g.group_id.as_str()).bind(g.group_name.as_str()))
            .await?;
        let gid = match local {
            Some((gid,)) => {
                if ctx.force || old_groups.get(&g.group_id) != Some(&gh) {
                    tx.execute(query("UPDATE tag_group SET wecom_group_id = ?, name = ?, sort_order = ?, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(g.group_id.as_str()).bind(cut(&g.group_name, 100)).bind(order).bind(ctx.now).bind(t).bind(gid)).await?;
                    ctx.counts.updated += 1;
                } else {
                    ctx.counts.unchanged += 1;
                }
                gid
            }
            None => {
                ctx.counts.created += 1;
                tags::create_group(
                    tx,
                    t,
                    &cut(&g.group_name, 100),
                    Some(order),
                    Some(&g.group_id),
                    ctx.now,
                )
                .await?
            }
        };
        group_hashes.push((g.group_id.clone(), gh));
        for tag in g.tag.iter().filter(|x| !x.deleted) {
            let th = hash::of(&(&g.group_id, &tag.name, tag.order));
            if !ctx.force && old_tags.get(&tag.id) == Some(&th) {
                ctx.counts.unchanged += 1;
                tag_hashes.push((tag.id.clone(), th));
                continue;
            }
            let order = i64::try_from(tag.order).unwrap_or(0);
            let local: Option<(i64,)> = tx
                .fetch_optional(query("SELECT id FROM tag WHERE tenant_id = ? AND (wecom_tag_id = ? OR (wecom_tag_id IS NULL AND group_id = ? AND name = ?)) ORDER BY wecom_tag_id IS NULL").bind(t).bind(tag.id.as_str()).bind(gid).bind(tag.name.as_str()))
                .await?;
            match local {
                Some((id,)) => {
                    tx.execute(query("UPDATE tag SET wecom_tag_id = ?, group_id = ?, name = ?, sort_order = ?, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(tag.id.as_str()).bind(gid).bind(cut(&tag.name, 100)).bind(order).bind(ctx.now).bind(t).bind(id)).await?;
                    ctx.counts.updated += 1;
                }
                None => {
                    tags::create_tag(
                        tx,
                        t,
                        gid,
                        &cut(&tag.name, 100),
                        Some(order),
                        Some(&tag.id),
                        ctx.now,
                    )
                    .await?;
                    ctx.counts.created += 1;
                }
            }
            tag_hashes.push((tag.id.clone(), th));
        }
    }
    hash::put_many(tx, t, kind::TAG_GROUP, &group_hashes, ctx.now).await?;
    hash::put_many(tx, t, kind::TAG, &tag_hashes, ctx.now).await?;
    // Whatever carries a WeCom id that WeCom no longer lists was deleted there.
    let live_tags: HashSet<&str> = tag_hashes.iter().map(|(id, _)| id.as_str()).collect();
    let local: Vec<(i64, String)> = tx
        .fetch_all(
            query(
                "SELECT id, wecom_tag_id FROM tag WHERE tenant_id = ? AND wecom_tag_id IS NOT NULL",
            )
            .bind(t),
        )
        .await?;
    for (id, wid) in local
        .into_iter()
        .filter(|(_, w)| !live_tags.contains(w.as_str()))
    {
        tags::delete_tag(tx, t, id, ctx.now).await?;
        hash::remove(tx, t, kind::TAG, &[wid]).await?;
        ctx.counts.deleted += 1;
    }
    let live_groups: HashSet<&str> = group_hashes.iter().map(|(id, _)| id.as_str()).collect();
    let local: Vec<(i64, String)> = tx
        .fetch_all(query("SELECT id, wecom_group_id FROM tag_group WHERE tenant_id = ? AND wecom_group_id IS NOT NULL").bind(t))
        .await?;
    for (id, wid) in local
        .into_iter()
        .filter(|(_, w)| !live_groups.contains(w.as_str()))
    {
        let left: Vec<(i64,)> = tx
            .fetch_all(
                query("SELECT id FROM tag WHERE tenant_id = ? AND group_id = ?")
                    .bind(t)
                    .bind(id),
            )
            .await?;
        for (tag_id,) in left {
            tags::delete_tag(tx, t, tag_id, ctx.now).await?;
        }
        tx.execute(
            query("DELETE FROM tag_group WHERE tenant_id = ? AND id = ?")
                .bind(t)
                .bind(id),
        )
        .await?;
        hash::remove(tx, t, kind::TAG_GROUP, &[wid]).await?;
        ctx.counts.deleted += 1;
    }
    ctx.tag_ids = None;
    Ok(())
}

#[derive(Serialize)]
struct GroupShape<'a> {
    name: &'a str,
    owner: &'a str,
    notice: &'a str,
    status: i64,
    members: Vec<(&'a str, i64, i64, i64)>,
}

fn group_hash(chat: &GroupChat, status: i64) -> String {
    let mut members: Vec<_> = chat
        .member_list
        .iter()
        .map(|m| (m.userid.as_str(), m.kind, m.join_time, m.join_scene))
        .collect();
    members.sort();
    hash::of(&GroupShape {
        name: &chat.name,
        owner: &chat.owner,
        notice: &chat.notice,
        status,
        members,
    })
}

/// One group chat: the chat row, then members joined and left (through the customers module,
/// which writes the timeline and the `group.member.joined`/`.left` events).
pub async fn group(tx: &mut Tx, ctx: &mut Ctx, chat: &GroupChat, status: i64) -> DbResult<()> {
    let t = ctx.tenant_id;
    let gid = group_row(tx, ctx, chat, status).await?;
    let current: HashSet<String> = tx
        .fetch_all::<(String,)>(query("SELECT member_userid FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND status = 1").bind(t).bind(gid))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    let wanted: HashSet<&str> = chat.member_list.iter().map(|m| m.userid.as_str()).collect();
    for m in chat
        .member_list
        .iter()
        .filter(|m| !current.contains(&m.userid))
    {
        let customer_id = if m.kind != 2 {
            None
        } else if let Some(id) = ctx.customer_ids.get(&m.userid) {
            Some(*id)
        } else {
            customer_id(tx, t, &m.userid).await?
        };
        let name = none_if_empty(&m.name).map(|n| cut(n, 100));
        groups::member_joined(
            tx,
            t,
            gid,
            &m.userid,
            m.kind,
            customer_id,
            name.as_deref(),
            m.join_time * 1000,
            m.join_scene,
        )
        .await?;
    }
    for gone in current.iter().filter(|u| !wanted.contains(u.as_str())) {
        groups::member_left(tx, t, gid, gone).await?;
    }
    remember_group(tx, ctx, chat, status).await
}

/// A chat of the first group sync: its members imported in bulk and quietly (no timeline, no
/// `group.member.joined`: they joined long before scrm, and "joined a group" SOPs must not
/// start for them).
async fn group_imported(tx: &mut Tx, ctx: &mut Ctx, chat: &GroupChat, status: i64) -> DbResult<()> {
    let t = ctx.tenant_id;
    let gid = group_row(tx, ctx, chat, status).await?;
    let externals: Vec<&str> = chat
        .member_list
        .iter()
        .filter(|m| m.kind == 2)
        .map(|m| m.userid.as_str())
        .collect();
    let mut customers: HashMap<String, i64> = HashMap::new();
    let mut missing: Vec<&str> = Vec::new();
    for e in externals {
        match ctx.customer_ids.get(e) {
            Some(id) => {
                customers.insert(e.to_string(), *id);
            }
            None => missing.push(e),
        }
    }
    for chunk in missing.chunks(500) {
        let mut q = query(
            "SELECT external_userid, id FROM customer WHERE tenant_id = ? AND external_userid IN ",
        )
        .bind(t);
        q.push_in_list(chunk.iter().copied());
        customers.extend(tx.fetch_all::<(String, i64)>(q).await?);
    }
    let members: Vec<groups::NewMember> = chat
        .member_list
        .iter()
        .map(|m| groups::NewMember {
            userid: m.userid.clone(),
            member_type: m.kind,
            customer_id: if m.kind == 2 {
                customers.get(&m.userid).copied()
            } else {
                None
            },
            name: none_if_empty(&m.name).map(|n| cut(n, 100)),
            join_time: m.join_time * 1000,
            join_scene: m.join_scene,
        })
        .collect();
    groups::members_joined_quietly(tx, t, gid, &members).await?;
    ctx.group_hashes
        .push((chat.chat_id.clone(), group_hash(chat, status)));
    Ok(())
}

async fn remember_group(tx: &mut Tx, ctx: &Ctx, chat: &GroupChat, status: i64) -> DbResult<()> {
    hash::put_many(
        tx,
        ctx.tenant_id,
        kind::GROUP,
        &[(chat.chat_id.clone(), group_hash(chat, status))],
        ctx.now,
    )
    .await
}

/// The chat's own row (name, owner, notice, status); its id.
async fn group_row(tx: &mut Tx, ctx: &Ctx, chat: &GroupChat, status: i64) -> DbResult<i64> {
    let t = ctx.tenant_id;
    let gid = groups::upsert_group(
        tx,
        t,
        &chat.chat_id,
        Some(&cut(&chat.name, 100)),
        none_if_empty(&chat.owner),
        none_if_empty(&chat.notice),
        Some(chat.create_time * 1000),
        ctx.now,
    )
    .await?;
    tx.execute(
        query("UPDATE group_chat SET status = ? WHERE tenant_id = ? AND id = ?")
            .bind(status)
            .bind(t)
            .bind(gid),
    )
    .await?;
    Ok(gid)
}

/// A chat dismissed (or gone from WeCom): everyone left, status [`GROUP_DISMISSED`].
pub async fn group_dismissed(tx: &mut Tx, ctx: &mut Ctx, chat_id: &str) -> DbResult<()> {
    let t = ctx.tenant_id;
    let row: Option<(i64,)> = tx
        .fetch_optional(
            query("SELECT id FROM group_chat WHERE tenant_id = ? AND chat_id = ?")
                .bind(t)
                .bind(chat_id),
        )
        .await?;
    if let Some((gid,)) = row {
        let members: Vec<(String,)> = tx
            .fetch_all(query("SELECT member_userid FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND status = 1").bind(t).bind(gid))
            .await?;
        for (m,) in members {
            groups::member_left(tx, t, gid, &m).await?;
        }
        tx.execute(
            query(
                "UPDATE group_chat SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
            )
            .bind(GROUP_DISMISSED)
            .bind(ctx.now)
            .bind(t)
            .bind(gid),
        )
        .await?;
    }
    hash::remove(tx, t, kind::GROUP, &[chat_id.to_string()]).await
}

/// All group chats: changed ones applied, vanished ones dismissed. `unreadable`: chats WeCom
/// listed but refused to show; they are neither applied nor dismissed (the run is `partial`).
pub async fn all_groups(
    tx: &mut Tx,
    ctx: &mut Ctx,
    list: &[(GroupChat, i64)],
    unreadable: &HashSet<String>,
) -> DbResult<()> {
    let old = hash::load(tx, ctx.tenant_id, kind::GROUP).await?;
    for (chat, status) in list {
        if !ctx.force && old.get(&chat.chat_id) == Some(&group_hash(chat, *status)) {
            ctx.counts.unchanged += 1;
            continue;
        }
        let existed = old.contains_key(&chat.chat_id);
        if old.is_empty() {
            group_imported(tx, ctx, chat, *status).await?;
        } else {
            group(tx, ctx, chat, *status).await?;
        }
        if ctx.group_hashes.len() >= 1000 {
            let hashes = std::mem::take(&mut ctx.group_hashes);
            hash::put_many(tx, ctx.tenant_id, kind::GROUP, &hashes, ctx.now).await?;
        }
        if existed {
            ctx.counts.updated += 1
        } else {
            ctx.counts.created += 1
        }
    }
    let hashes = std::mem::take(&mut ctx.group_hashes);
    hash::put_many(tx, ctx.tenant_id, kind::GROUP, &hashes, ctx.now).await?;
    let seen: HashSet<&str> = list.iter().map(|(c, _)| c.chat_id.as_str()).collect();
    for id in old
        .keys()
        .filter(|k| !seen.contains(k.as_str()) && !unreadable.contains(*k))
    {
        group_dismissed(tx, ctx, id).await?;
        ctx.counts.deleted += 1;
    }
    Ok(())
}

/// The local id of a customer by external_userid.
pub async fn customer_id(
    tx: &mut Tx,
    tenant_id: i64,
    external_userid: &str,
) -> DbResult<Option<i64>> {
    Ok(tx
        .fetch_optional::<(i64,)>(
            query("SELECT id FROM customer WHERE tenant_id = ? AND external_userid = ?")
                .bind(tenant_id)
                .bind(external_userid),
        )
        .await?
        .map(|r| r.0))
}
