//! Applying customers: the customer row (through `customers::store`, which keeps the name and
//! mobile grams and the version), its follow relations, and its corp tags (through
//! `customers::tags`, which keeps the per-tag counters exact), with deletions recorded rather
//! than rows dropped.

use std::collections::{BTreeSet, HashSet};

use scrm_db::{Backend, DbResult, Tx, query};
use serde::Serialize;
use serde_json::json;

use super::apply::{Ctx, cut};
use super::fetch::StagedCustomer;
use super::hash::{self, kind};
use crate::customers::model::CustomerFields;
use crate::customers::{risk, staff, stats, store, tags, timeline};
use crate::events;

/// The deletion kind a sync records for a relation that vanished without a callback.
pub const MISSING_IN_WECOM: &str = "missing_in_wecom";

/// How far back the first sync counts adds in the daily statistics.
const BACKFILL_MS: i64 = 30 * 86_400_000;

/// A follow relation as hashed: userid, remark, description, createtime, add_way, state, tags.
type FollowShape<'a> = (&'a str, &'a str, &'a str, i64, i64, &'a str, Vec<&'a str>);

#[derive(Serialize)]
struct Shape<'a> {
    name: &'a str,
    avatar: &'a str,
    kind: i64,
    gender: i64,
    unionid: &'a str,
    corp_name: &'a str,
    follows: Vec<FollowShape<'a>>,
}

/// The content hash of a customer as WeCom shows it.
pub fn customer_hash(c: &StagedCustomer) -> String {
    let e = &c.contact;
    let follows = c
        .follows
        .iter()
        .map(|f| {
            let mut tags: Vec<&str> = f.tag_id.iter().map(String::as_str).collect();
            tags.sort_unstable();
            (
                f.userid.as_str(),
                f.remark.as_str(),
                f.description.as_str(),
                f.createtime,
                f.add_way,
                f.state.as_str(),
                tags,
            )
        })
        .collect();
    hash::of(&Shape {
        name: &e.name,
        avatar: &e.avatar,
        kind: e.kind,
        gender: e.gender,
        unionid: &e.unionid,
        corp_name: &e.corp_name,
        follows,
    })
}

fn text(s: &str, max: usize) -> Option<Option<String>> {
    Some((!s.is_empty()).then(|| cut(s, max)))
}

/// Why a customer from WeCom cannot be stored, if it cannot.
fn invalid(c: &StagedCustomer) -> Option<&'static str> {
    let id = &c.contact.external_userid;
    if id.is_empty() || id.len() > 100 || id.chars().any(|ch| ch.is_whitespace() || ch.is_control())
    {
        return Some("external_userid must be 1-100 characters without spaces");
    }
    if c.follows.is_empty() {
        return Some("no follow member");
    }
    if c.follows
        .iter()
        .any(|f| f.userid.is_empty() || f.userid.len() > 64)
    {
        return Some("a follow member's userid must be 1-64 characters");
    }
    None
}

/// Upsert one customer with its follows and tags. Returns true when it was created.
pub async fn customer(tx: &mut Tx, ctx: &mut Ctx, c: &StagedCustomer) -> DbResult<bool> {
    let t = ctx.tenant_id;
    let now = ctx.now;
    let e = &c.contact;
    let mut staff_ids = Vec::with_capacity(c.follows.len());
    for f in &c.follows {
        staff_ids.push(ctx.staff_id(tx, &f.userid).await?);
    }
    // The first member to add the customer is its owner (seed 001's followUserId).
    let first = &c.follows[0];
    let mut fields = CustomerFields {
        name: text(&e.name, 100),
        avatar: text(&e.avatar, 255),
        kind: Some(e.kind.max(1)),
        gender: Some(Some(e.gender)),
        unionid: text(&e.unionid, 100),
        corp_name: text(
            if e.corp_name.is_empty() {
                &first.remark_corp_name
            } else {
                &e.corp_name
            },
            100,
        ),
        remark: text(&first.remark, 255),
        description: text(&first.description, 2000),
        follow_user_id: Some(Some(staff_ids[0])),
        add_time: Some(Some(first.createtime * 1000)),
        status: Some(1),
        ..Default::default()
    };
    let existing = super::apply::customer_id(tx, t, &e.external_userid).await?;
    let (id, created) = match existing {
        Some(id) => {
            // An owner set in scrm (a channel code's, an assignment) stays; WeCom has no owner.
            let owner: Option<(Option<i64>,)> = tx
                .fetch_optional(
                    query("SELECT follow_user_id FROM customer WHERE tenant_id = ? AND id = ?")
                        .bind(t)
                        .bind(id),
                )
                .await?;
            if owner.is_some_and(|o| o.0.is_some()) {
                fields.follow_user_id = None;
            }
            store::update(tx, t, id, &fields, now).await?;
            (id, false)
        }
        None => {
            fields.channel = text(&first.state, 50);
            let id = store::insert(tx, t, &e.external_userid, &fields, now).await?;
            // The first sync counts the customers WeCom added in the last 30 days on the day
            // they were added (the workbench's growth chart starts with that history); later
            // syncs count a new customer today.
            let added_at = first.createtime * 1000;
            let counted_on = if !ctx.bootstrap {
                Some(now)
            } else {
                (now - added_at <= BACKFILL_MS && added_at <= now).then_some(added_at)
            };
            if let Some(day) = counted_on {
                let channel = fields.channel.clone().flatten();
                stats::record(
                    tx,
                    t,
                    day,
                    channel.as_deref(),
                    Some(staff_ids[0]),
                    stats::Change::Added,
                )
                .await?;
            }
            if !ctx.bootstrap {
                timeline::record(
                    tx,
                    t,
                    id,
                    timeline::kind::ADDED,
                    "added in WeCom",
                    json!({"by": first.userid, "addWay": first.add_way, "state": first.state}),
                )
                .await?;
                events::emit(tx, t, events::kind::CUSTOMER_CREATED, id, json!({"customerId": id, "externalUserid": e.external_userid, "name": e.name, "followUserid": first.userid, "state": first.state, "source": "wecom"})).await?;
            }
            (id, true)
        }
    };
    follows(tx, ctx, id, c, &staff_ids).await?;
    customer_tags(tx, ctx, id, c, created).await?;
    if !created && !ctx.bootstrap {
        events::emit(
            tx,
            t,
            events::kind::CUSTOMER_UPDATED,
            id,
            json!({"customerId": id, "source": "wecom"}),
        )
        .await?;
    }
    Ok(created)
}

async fn follows(
    tx: &mut Tx,
    ctx: &mut Ctx,
    customer_id: i64,
    c: &StagedCustomer,
    staff_ids: &[i64],
) -> DbResult<()> {
    let t = ctx.tenant_id;
    for (f, sid) in c.follows.iter().zip(staff_ids) {
        let remark = (!f.remark.is_empty()).then(|| cut(&f.remark, 255));
        let state = (!f.state.is_empty()).then(|| cut(&f.state, 64));
        staff::upsert_follow(
            tx,
            t,
            customer_id,
            *sid,
            remark.as_deref(),
            Some(f.createtime * 1000),
            f.add_way,
            state.as_deref(),
            ctx.now,
        )
        .await?;
    }
    // Relations WeCom no longer has ended without a callback reaching us: record them.
    let active: Vec<(i64, String)> = tx
        .fetch_all(query("SELECT f.staff_id, s.userid FROM customer_follow f JOIN staff s ON s.id = f.staff_id AND s.tenant_id = f.tenant_id WHERE f.tenant_id = ? AND f.customer_id = ? AND f.status = 1").bind(t).bind(customer_id))
        .await?;
    let keep: HashSet<i64> = staff_ids.iter().copied().collect();
    for (sid, userid) in active.into_iter().filter(|(s, _)| !keep.contains(s)) {
        end_follow(tx, t, customer_id, sid, ctx.now).await?;
        risk::record_deletion(
            tx,
            t,
            Some(customer_id),
            &c.contact.external_userid,
            Some(&c.contact.name),
            Some(&userid),
            MISSING_IN_WECOM,
            ctx.now,
        )
        .await?;
    }
    Ok(())
}

/// Mark one follow relation ended.
pub async fn end_follow(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    staff_id: i64,
    now: i64,
) -> DbResult<()> {
    tx.execute(
        query("UPDATE customer_follow SET status = 0, updated_at = ? WHERE tenant_id = ? AND customer_id = ? AND staff_id = ?")
            .bind(now)
            .bind(tenant_id)
            .bind(customer_id)
            .bind(staff_id),
    )
    .await
    .map(|_| ())
}

/// Make the customer's WeCom-known tags the union of its follow relations' corp tags. Tags made
/// only in scrm (no WeCom id) are left alone.
async fn customer_tags(
    tx: &mut Tx,
    ctx: &mut Ctx,
    customer_id: i64,
    c: &StagedCustomer,
    created: bool,
) -> DbResult<()> {
    let t = ctx.tenant_id;
    let map = ctx.tag_map(tx).await?.clone();
    let wanted: BTreeSet<i64> = c
        .follows
        .iter()
        .flat_map(|f| f.tag_id.iter())
        .filter_map(|w| map.get(w).copied())
        .collect();
    let current: BTreeSet<i64> = if created {
        BTreeSet::new()
    } else {
        tx.fetch_all::<(i64,)>(query("SELECT ct.tag_id FROM customer_tag ct JOIN tag g ON g.id = ct.tag_id AND g.tenant_id = ct.tenant_id WHERE ct.tenant_id = ? AND ct.customer_id = ? AND g.wecom_tag_id IS NOT NULL").bind(t).bind(customer_id))
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    };
    let add: Vec<i64> = wanted.difference(&current).copied().collect();
    let remove: Vec<i64> = current.difference(&wanted).copied().collect();
    if ctx.bootstrap {
        quiet_tag(tx, t, customer_id, &add, ctx.now).await?;
    } else if !add.is_empty() {
        tags::add_to_customer(tx, t, customer_id, &add, None, ctx.now).await?;
    }
    if !remove.is_empty() {
        tags::remove_from_customer(tx, t, customer_id, &remove, None, ctx.now).await?;
    }
    Ok(())
}

/// Tag a customer during the first import: rows and counters exactly as
/// [`tags::add_to_customer`] keeps them (the counter moves by the rows actually inserted), but
/// no timeline entry or `customer.tag.added` event for tags the customer had long before scrm.
async fn quiet_tag(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    tag_ids: &[i64],
    now: i64,
) -> DbResult<()> {
    let insert = match tx.backend() {
        Backend::MySql => {
            "INSERT IGNORE INTO customer_tag (tenant_id, tag_id, customer_id, tagged_by, tagged_at) VALUES (?, ?, ?, NULL, ?)"
        }
        _ => {
            "INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_by, tagged_at) VALUES (?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING"
        }
    };
    let mut inserted = Vec::with_capacity(tag_ids.len());
    for tag in tag_ids {
        let n = tx
            .execute(
                query(insert)
                    .bind(tenant_id)
                    .bind(*tag)
                    .bind(customer_id)
                    .bind(now),
            )
            .await?
            .rows_affected;
        if n > 0 {
            inserted.push(*tag);
        }
    }
    crate::customers::tags::bump_counts(tx, tenant_id, &inserted, 1).await
}

/// A customer WeCom no longer lists for anyone: status 0 (deleted), its relations ended, a
/// deletion record written. The row and its history stay.
pub async fn customer_gone(
    tx: &mut Tx,
    ctx: &mut Ctx,
    external_userid: &str,
    kind: &str,
    staff_userid: Option<&str>,
) -> DbResult<bool> {
    let t = ctx.tenant_id;
    let Some(id) = super::apply::customer_id(tx, t, external_userid).await? else {
        return Ok(false);
    };
    let name = store::get_tx(tx, t, id).await?.and_then(|r| r.name);
    store::update(
        tx,
        t,
        id,
        &CustomerFields {
            status: Some(0),
            ..Default::default()
        },
        ctx.now,
    )
    .await?;
    tx.execute(query("UPDATE customer_follow SET status = 0, updated_at = ? WHERE tenant_id = ? AND customer_id = ? AND status = 1").bind(ctx.now).bind(t).bind(id)).await?;
    risk::record_deletion(
        tx,
        t,
        Some(id),
        external_userid,
        name.as_deref(),
        staff_userid,
        kind,
        ctx.now,
    )
    .await?;
    events::emit(
        tx,
        t,
        events::kind::CUSTOMER_DELETED,
        id,
        json!({"customerId": id, "externalUserid": external_userid, "source": "wecom"}),
    )
    .await?;
    hash::remove(tx, t, kind::CUSTOMER, &[external_userid.to_string()]).await?;
    Ok(true)
}

/// All customers: changed ones applied, invalid ones skipped and reported, vanished ones marked.
pub async fn all_customers(tx: &mut Tx, ctx: &mut Ctx, list: &[StagedCustomer]) -> DbResult<()> {
    let t = ctx.tenant_id;
    let old = hash::load(tx, t, kind::CUSTOMER).await?;
    ctx.bootstrap = old.is_empty();
    let mut new_hashes = Vec::new();
    for c in list {
        if let Some(why) = invalid(c) {
            ctx.skip(format!("customer {:?}", c.contact.external_userid), why);
            continue;
        }
        let h = customer_hash(c);
        if !ctx.force && old.get(&c.contact.external_userid) == Some(&h) {
            ctx.counts.unchanged += 1;
            continue;
        }
        if customer(tx, ctx, c).await? {
            ctx.counts.created += 1
        } else {
            ctx.counts.updated += 1
        }
        new_hashes.push((c.contact.external_userid.clone(), h));
        if new_hashes.len() >= 1000 {
            hash::put_many(tx, t, kind::CUSTOMER, &new_hashes, ctx.now).await?;
            new_hashes.clear();
        }
    }
    hash::put_many(tx, t, kind::CUSTOMER, &new_hashes, ctx.now).await?;
    ctx.bootstrap = false;
    let seen: HashSet<&str> = list
        .iter()
        .map(|c| c.contact.external_userid.as_str())
        .collect();
    for id in old.keys().filter(|k| !seen.contains(k.as_str())) {
        if customer_gone(tx, ctx, id, MISSING_IN_WECOM, None).await? {
            ctx.counts.deleted += 1;
        }
    }
    Ok(())
}

/// Store one customer's hash after a callback or repair applied it (so the next incremental sync
/// does not write it again).
pub async fn remember(tx: &mut Tx, ctx: &Ctx, c: &StagedCustomer) -> DbResult<()> {
    hash::put_many(
        tx,
        ctx.tenant_id,
        kind::CUSTOMER,
        &[(c.contact.external_userid.clone(), customer_hash(c))],
        ctx.now,
    )
    .await
}
