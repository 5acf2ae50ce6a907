//! Applying customers: the customer row (through `customers::store`, which keeps the name and
//! mobile grams and the version), its follow relations, and its corp tags (through
//! `customers::tags`, which keeps the per-tag counters exact), with deletions recorded rather
//! than rows dropped.

use std::collections::{BTreeSet, HashMap, HashSet};

use scrm_db::{DbResult, Tx, query};
use serde::Serialize;
use serde_json::json;

use super::apply::{Ctx, cut};
use super::fetch::StagedCustomer;
use super::hash::{self, kind};
use crate::customers::model::CustomerFields;
use crate::customers::{risk, staff, stats, store, tags, timeline};
use crate::events;
use scrm_wecom::client::FollowInfo;

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

/// How many customers one batch of an apply writes: every statement of a batch carries many
/// rows (customers, grams, follows, tags, events), so a sync's statements grow with
/// customers / BATCH, not with customers.
pub const BATCH: usize = 400;

/// Upsert one customer with its follows and tags (a callback, a repair). Returns true when it
/// was created; a customer that cannot be stored is skipped and reported in `ctx`.
pub async fn customer(tx: &mut Tx, ctx: &mut Ctx, c: &StagedCustomer) -> DbResult<bool> {
    if let Some(why) = invalid(c) {
        ctx.skip(format!("customer {:?}", c.contact.external_userid), why);
        return Ok(false);
    }
    Ok(batch(tx, ctx, &[c])
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

/// One customer as WeCom shows it now (a callback, a repair), in the caller's transaction: the
/// customer ([`customer`]), its hash ([`remember`]) and, when it is new, the tenant's customer
/// counter, last. Returns whether it was created.
pub async fn one_customer(tx: &mut Tx, ctx: &mut Ctx, c: &StagedCustomer) -> DbResult<bool> {
    let created = customer(tx, ctx, c).await?;
    remember(tx, ctx, c).await?;
    if created {
        store::count_customers(tx, ctx.tenant_id, 1).await?;
    }
    Ok(created)
}

/// The customer row's fields as WeCom shows them. The first member to add the customer is its
/// owner (seed 001's followUserId) unless scrm already has one (kept by the upsert).
fn fields_of(c: &StagedCustomer, owner: i64) -> CustomerFields {
    let e = &c.contact;
    let first = &c.follows[0];
    CustomerFields {
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
        follow_user_id: Some(Some(owner)),
        add_time: Some(Some(first.createtime * 1000)),
        channel: text(&first.state, 50),
        status: Some(1),
        ..Default::default()
    }
}

/// Apply valid customers together: the rows, their follows, their tags and their events, each
/// many rows a statement. Returns, per customer, whether it was created.
async fn batch(tx: &mut Tx, ctx: &mut Ctx, list: &[&StagedCustomer]) -> DbResult<Vec<bool>> {
    let t = ctx.tenant_id;
    let now = ctx.now;
    let mut staff_ids: Vec<Vec<i64>> = Vec::with_capacity(list.len());
    for c in list {
        let mut ids = Vec::with_capacity(c.follows.len());
        for f in &c.follows {
            ids.push(ctx.staff_id(tx, &f.userid).await?);
        }
        staff_ids.push(ids);
    }
    let rows: Vec<(String, CustomerFields)> = list
        .iter()
        .zip(&staff_ids)
        .map(|(c, s)| (c.contact.external_userid.clone(), fields_of(c, s[0])))
        .collect();
    let ids = store::upsert_many(tx, t, &rows, now).await?;
    let id_of = |c: &StagedCustomer| {
        ids.get(&c.contact.external_userid)
            .map(|r| r.0)
            .unwrap_or_default()
    };
    let created: Vec<bool> = list
        .iter()
        .map(|c| ids.get(&c.contact.external_userid).is_some_and(|r| !r.1))
        .collect();
    ctx.customer_ids
        .extend(ids.iter().map(|(ext, (id, _))| (ext.clone(), *id)));
    // The customers that existed before, by id.
    let existing: Vec<i64> = ids.values().filter(|r| r.1).map(|r| r.0).collect();

    // Follow relations: WeCom's upserted, the ones it no longer has ended and recorded.
    let mut wanted: HashSet<(i64, i64)> = HashSet::new();
    let mut follow_rows = Vec::new();
    for (c, sids) in list.iter().zip(&staff_ids) {
        let cid = id_of(c);
        for (f, sid) in c.follows.iter().zip(sids) {
            if wanted.insert((cid, *sid)) {
                follow_rows.push(follow_row(cid, *sid, f));
            }
        }
    }
    staff::upsert_follows(tx, t, &follow_rows, now).await?;
    if !existing.is_empty() && !ctx.partial {
        let mut q = query("SELECT f.customer_id, f.staff_id, s.userid FROM customer_follow f JOIN staff s ON s.id = f.staff_id AND s.tenant_id = f.tenant_id WHERE f.tenant_id = ? AND f.status = 1 AND f.customer_id IN ").bind(t);
        q.push_in_list(existing.iter().copied());
        let active: Vec<(i64, i64, String)> = tx.fetch_all(q).await?;
        let by_id: HashMap<i64, &StagedCustomer> = list.iter().map(|c| (id_of(c), *c)).collect();
        for (cid, sid, userid) in active {
            if wanted.contains(&(cid, sid)) {
                continue;
            }
            // A relation that ended without a callback reaching us.
            end_follow(tx, t, cid, sid, now).await?;
            let c = by_id.get(&cid);
            risk::record_deletion(
                tx,
                t,
                Some(cid),
                c.map_or("", |c| c.contact.external_userid.as_str()),
                c.map(|c| c.contact.name.as_str()),
                Some(&userid),
                MISSING_IN_WECOM,
                now,
            )
            .await?;
        }
    }

    // New customers: statistics, timeline and `customer.created` (not for the first import, of
    // customers that exist long before scrm: no "new friend" SOPs for them). The first import
    // does count the customers WeCom added in the last 30 days, on the day they were added, so
    // the workbench's growth chart starts with that history.
    let mut out: Vec<(&str, String, serde_json::Value)> = Vec::new();
    let mut adds: Vec<(i64, Option<String>, Option<i64>)> = Vec::new();
    for ((c, sids), _) in list
        .iter()
        .zip(&staff_ids)
        .zip(&created)
        .filter(|(_, n)| **n)
    {
        let id = id_of(c);
        let first = &c.follows[0];
        if let Some(day) = counted_on(ctx, c).filter(|_| !ctx.partial) {
            adds.push((day, text(&first.state, 50).flatten(), Some(sids[0])));
        }
        if ctx.bootstrap {
            continue;
        }
        timeline::record(
            tx,
            t,
            id,
            timeline::kind::ADDED,
            "added in WeCom",
            json!({"by": first.userid, "addWay": first.add_way, "state": first.state}),
        )
        .await?;
        out.push((
            events::kind::CUSTOMER_CREATED,
            id.to_string(),
            json!({"customerId": id, "externalUserid": c.contact.external_userid, "name": c.contact.name, "followUserid": first.userid, "state": first.state, "source": "wecom"}),
        ));
    }
    let adds: Vec<(i64, Option<&str>, Option<i64>)> = adds
        .iter()
        .map(|(day, channel, staff)| (*day, channel.as_deref(), *staff))
        .collect();
    stats::record_added_many(tx, t, &adds).await?;
    events::emit_many(tx, t, &out).await?;
    out.clear();

    // Tags: the WeCom-known tags of each customer become the union of its relations' tags.
    // Tags made only in scrm (no WeCom id) are left alone.
    let map = ctx.tag_map(tx).await?.clone();
    let mut current: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    if !existing.is_empty() {
        let mut q = query("SELECT ct.customer_id, ct.tag_id FROM customer_tag ct JOIN tag g ON g.id = ct.tag_id AND g.tenant_id = ct.tenant_id WHERE ct.tenant_id = ? AND g.wecom_tag_id IS NOT NULL AND ct.customer_id IN ").bind(t);
        q.push_in_list(existing.iter().copied());
        for (cid, tag) in tx.fetch_all::<(i64, i64)>(q).await? {
            current.entry(cid).or_default().insert(tag);
        }
    }
    let mut quiet: Vec<(i64, i64)> = Vec::new();
    let none = BTreeSet::new();
    for c in list {
        let cid = id_of(c);
        let wanted: BTreeSet<i64> = c
            .follows
            .iter()
            .flat_map(|f| f.tag_id.iter())
            .filter_map(|w| map.get(w).copied())
            .collect();
        let had = current.get(&cid).unwrap_or(&none);
        let add: Vec<i64> = wanted.difference(had).copied().collect();
        let remove: Vec<i64> = had.difference(&wanted).copied().collect();
        if ctx.bootstrap {
            // The first import: rows and exact counters, no timeline or `customer.tag.added`
            // for tags customers had long before scrm.
            quiet.extend(add.iter().map(|tag| (cid, *tag)));
        } else if !add.is_empty() {
            tags::add_to_customer(tx, t, cid, &add, None, now).await?;
        }
        if !remove.is_empty() && !ctx.partial {
            tags::remove_from_customer(tx, t, cid, &remove, None, now).await?;
        }
    }
    tags::tag_quietly(tx, t, &quiet, now).await?;

    if !ctx.bootstrap {
        for (c, _) in list.iter().zip(&created).filter(|(_, n)| !**n) {
            let id = id_of(c);
            out.push((
                events::kind::CUSTOMER_UPDATED,
                id.to_string(),
                json!({"customerId": id, "source": "wecom"}),
            ));
        }
        events::emit_many(tx, t, &out).await?;
    }
    Ok(created)
}

/// A follow relation as stored.
fn follow_row(customer_id: i64, staff_id: i64, f: &FollowInfo) -> staff::FollowRow {
    staff::FollowRow {
        customer_id,
        staff_id,
        remark: (!f.remark.is_empty()).then(|| cut(&f.remark, 255)),
        add_time: Some(f.createtime * 1000),
        add_way: f.add_way,
        state: (!f.state.is_empty()).then(|| cut(&f.state, 64)),
    }
}

/// The day a new customer counts as added in the statistics: today, or on a first sync the
/// day WeCom says it was added when that was within the last 30 days (else not at all).
fn counted_on(ctx: &Ctx, c: &StagedCustomer) -> Option<i64> {
    let added_at = c.follows[0].createtime * 1000;
    if !ctx.bootstrap {
        Some(ctx.now)
    } else {
        (ctx.now - added_at <= BACKFILL_MS && added_at <= ctx.now).then_some(added_at)
    }
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

/// All customers: changed ones applied [`BATCH`] at a time, invalid ones skipped and reported,
/// vanished ones marked.
pub async fn all_customers(tx: &mut Tx, ctx: &mut Ctx, list: &[StagedCustomer]) -> DbResult<()> {
    let t = ctx.tenant_id;
    let old = hash::load(tx, t, kind::CUSTOMER).await?;
    ctx.bootstrap = old.is_empty();
    ctx.preload_staff(tx).await?;
    let mut changed: Vec<(&StagedCustomer, String)> = Vec::new();
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
        changed.push((c, h));
    }
    let mut applied = 0;
    let mut analyze_at = ANALYZE_FIRST_AT;
    let created_before = ctx.counts.created;
    for chunk in changed.chunks(BATCH) {
        if applied >= analyze_at {
            refresh_statistics(tx).await?;
            analyze_at *= 2;
        }
        applied += chunk.len();
        let customers: Vec<&StagedCustomer> = chunk.iter().map(|(c, _)| *c).collect();
        for created in batch(tx, ctx, &customers).await? {
            if created {
                ctx.counts.created += 1
            } else {
                ctx.counts.updated += 1
            }
        }
        let hashes: Vec<(String, String)> = chunk
            .iter()
            .map(|(c, h)| (c.contact.external_userid.clone(), h.clone()))
            .collect();
        hash::put_many(tx, t, kind::CUSTOMER, &hashes, ctx.now).await?;
    }
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
    // Vanished customers keep their rows (status 0): only the new ones move the counter. Its
    // row is shared by the tenant's writers, so it is taken after every other lock of the apply.
    let created = ctx.counts.created - created_before;
    store::count_customers(tx, t, created).await
}

/// Customers applied before the first statistics refresh; it runs again at each doubling.
const ANALYZE_FIRST_AT: usize = 2_000;

/// PostgreSQL plans each batch's look-ups (`SELECT … FROM customer WHERE tenant_id = ? AND
/// external_userid IN (…)`) from the tables' statistics, which know nothing of a tenant whose
/// customers this very transaction is writing: it guessed ~100 rows for the tenant and took a
/// bitmap scan of every customer of the tenant so far per batch (28 ms a batch at 96,000, the
/// apply quadratic: 30,000 customers in 4.1 s, 96,000 in 18 s). ANALYZE inside the transaction
/// counts the rows it inserted (and its statistics roll back with it), so a few refreshes as the
/// tenant grows — at 2,000 customers and each doubling — keep the plans on the unique keys.
/// Tables the database user does not own are skipped with a warning, not an error.
async fn refresh_statistics(tx: &mut Tx) -> DbResult<()> {
    if tx.backend() == scrm_db::Backend::Postgres {
        tx.execute(query(
            "ANALYZE customer, customer_follow, customer_tag, customer_gram, tag_pair_count, wework_sync_hash",
        ))
        .await?;
    }
    Ok(())
}

/// Store one customer's hash after a callback or repair applied it (so the next incremental sync
/// does not write it again).
pub async fn remember(tx: &mut Tx, ctx: &Ctx, c: &StagedCustomer) -> DbResult<()> {
    remember_many(tx, ctx, &[c]).await
}

/// Store these customers' hashes as they are now.
async fn remember_many(tx: &mut Tx, ctx: &Ctx, list: &[&StagedCustomer]) -> DbResult<()> {
    let hashes: Vec<(String, String)> = list
        .iter()
        .map(|c| (c.contact.external_userid.clone(), customer_hash(c)))
        .collect();
    hash::put_many(tx, ctx.tenant_id, kind::CUSTOMER, &hashes, ctx.now).await
}

/// A first sync's customers written while they are still being fetched, in the one
/// transaction of the run, so the database works while WeCom answers and little is left to do
/// after the last call (a first sync has nothing to compare with, so nothing waits for the
/// whole list; later syncs compare hashes and apply after the fetch, [`all_customers`]).
///
/// WeCom lists one row per (customer, member following it), and the members are fetched in
/// chunks at the same time, so a customer may get another follow relation after it was
/// written ([`Ctx::partial`]): the late relations are added on their own (their rows and tags),
/// and the customer's row is rewritten only when a late relation is its earliest (owner, add
/// time, remark and channel come from that one). Customers that existed before the sync (a
/// callback or an import came first) are written at the end with all their relations, so
/// relations and tags WeCom no longer has are ended and removed as in [`all_customers`]. The
/// add statistics are counted at the end, from each customer's earliest relation.
#[derive(Default)]
pub struct Streaming {
    /// Every customer fetched so far, with the relations fetched so far.
    seen: HashMap<String, StagedCustomer>,
    /// Fetched, not written yet.
    pending: Vec<String>,
    /// Written, then given another relation.
    dirty: HashSet<String>,
    written: HashSet<String>,
    /// What was written of each customer this sync created.
    shapes: HashMap<String, Written>,
    /// Created by this sync (counted, and added to the statistics at the end).
    created: Vec<String>,
    /// Existed before this sync: written at the end with every relation.
    existed: Vec<String>,
    analyze_at: usize,
}

/// What a streaming sync wrote of a customer it created: the members whose relations are in,
/// the earliest relation (createtime, userid) and the tags.
struct Written {
    members: HashSet<String>,
    first: (i64, String),
    tags: BTreeSet<i64>,
}

impl Streaming {
    /// Take in one page of WeCom's (customer, follow relation) rows; write whatever makes a
    /// full batch.
    pub async fn page(
        &mut self,
        tx: &mut Tx,
        ctx: &mut Ctx,
        pairs: Vec<scrm_wecom::client::CustomerWithFollowInfo>,
    ) -> DbResult<()> {
        for pair in pairs {
            let id = &pair.external_contact.external_userid;
            if let Some(c) = self.seen.get_mut(id) {
                if self.written.contains(id) {
                    self.dirty.insert(id.clone());
                }
                c.follows.push(pair.follow_info);
            } else {
                self.pending.push(id.clone());
                self.seen.insert(
                    id.clone(),
                    StagedCustomer {
                        contact: pair.external_contact,
                        follows: vec![pair.follow_info],
                    },
                );
            }
        }
        while self.pending.len() >= BATCH {
            let ids: Vec<String> = self.pending.drain(..BATCH).collect();
            self.write(tx, ctx, ids).await?;
        }
        if self.dirty.len() >= BATCH {
            let ids: Vec<String> = self.dirty.drain().collect();
            self.late(tx, ctx, ids).await?;
        }
        Ok(())
    }

    /// Write these customers, fetched for the first time, as they are known now (the valid
    /// ones), with their hashes.
    async fn write(&mut self, tx: &mut Tx, ctx: &mut Ctx, mut ids: Vec<String>) -> DbResult<()> {
        ids.sort_unstable();
        for id in &ids {
            if let Some(c) = self.seen.get_mut(id) {
                c.order_follows();
            }
        }
        // Customers scrm had before this sync wait for the end and all their relations (a
        // partial write would set their owner from whichever relation came first).
        let mut known: HashSet<String> = HashSet::new();
        for chunk in ids.chunks(500) {
            let mut q = query(
                "SELECT external_userid FROM customer WHERE tenant_id = ? AND external_userid IN ",
            )
            .bind(ctx.tenant_id);
            q.push_in_list(chunk.iter().map(String::as_str));
            known.extend(tx.fetch_all::<(String,)>(q).await?.into_iter().map(|r| r.0));
        }
        let mut list: Vec<&StagedCustomer> = Vec::with_capacity(ids.len());
        for id in &ids {
            if known.contains(id) {
                self.existed.push(id.clone());
            } else if let Some(c) = self.seen.get(id).filter(|c| invalid(c).is_none()) {
                list.push(c);
            }
        }
        if list.is_empty() {
            return Ok(());
        }
        if self.analyze_at == 0 {
            self.analyze_at = ANALYZE_FIRST_AT;
        }
        if self.written.len() >= self.analyze_at {
            refresh_statistics(tx).await?;
            self.analyze_at *= 2;
        }
        let created = batch(tx, ctx, &list).await?;
        remember_many(tx, ctx, &list).await?;
        let map = ctx.tag_map(tx).await?.clone();
        for (c, created) in list.iter().zip(created) {
            let id = &c.contact.external_userid;
            self.written.insert(id.clone());
            if created {
                ctx.counts.created += 1;
                self.created.push(id.clone());
                let first = &c.follows[0];
                self.shapes.insert(
                    id.clone(),
                    Written {
                        members: c.follows.iter().map(|f| f.userid.clone()).collect(),
                        first: (first.createtime, first.userid.clone()),
                        tags: c
                            .follows
                            .iter()
                            .flat_map(|f| f.tag_id.iter())
                            .filter_map(|w| map.get(w).copied())
                            .collect(),
                    },
                );
            } else {
                // Written a moment ago by someone else (a callback): all of it again at the
                // end (and counted there).
                self.existed.push(id.clone());
            }
        }
        Ok(())
    }

    /// Relations that arrived after their customer (created by this sync) was written: their
    /// rows and new tags; the customer's row again only where a late relation is the earliest.
    async fn late(&mut self, tx: &mut Tx, ctx: &mut Ctx, mut ids: Vec<String>) -> DbResult<()> {
        ids.sort_unstable();
        let t = ctx.tenant_id;
        let map = ctx.tag_map(tx).await?.clone();
        let mut follows = Vec::new();
        let mut tagged: Vec<(i64, i64)> = Vec::new();
        let mut earliest: Vec<String> = Vec::new();
        let mut hashes: Vec<(String, String)> = Vec::new();
        for id in &ids {
            let (Some(shape), Some(c), Some(cid)) = (
                self.shapes.get_mut(id),
                self.seen.get_mut(id),
                ctx.customer_ids.get(id).copied(),
            ) else {
                continue;
            };
            c.order_follows();
            if invalid(c).is_some() {
                // Reported (and its hash forgotten) at the end.
                continue;
            }
            for f in &c.follows {
                if shape.members.insert(f.userid.clone()) {
                    let sid = ctx.staff_id(tx, &f.userid).await?;
                    follows.push(follow_row(cid, sid, f));
                    for tag in f.tag_id.iter().filter_map(|w| map.get(w).copied()) {
                        if shape.tags.insert(tag) {
                            tagged.push((cid, tag));
                        }
                    }
                }
            }
            let first = &c.follows[0];
            if (first.createtime, first.userid.as_str()) != (shape.first.0, shape.first.1.as_str())
            {
                shape.first = (first.createtime, first.userid.clone());
                earliest.push(id.clone());
            }
            hashes.push((id.clone(), customer_hash(c)));
        }
        staff::upsert_follows(tx, t, &follows, ctx.now).await?;
        tags::tag_quietly(tx, t, &tagged, ctx.now).await?;
        // The upsert keeps an owner once set (scrm may have assigned one); these customers are
        // this sync's own, so their owner follows their earliest relation.
        let mut rows = Vec::with_capacity(earliest.len());
        let mut owners = Vec::with_capacity(earliest.len());
        for id in &earliest {
            if let (Some(c), Some(cid)) = (self.seen.get(id), ctx.customer_ids.get(id).copied()) {
                let owner = ctx.staff_id(tx, &c.follows[0].userid).await?;
                rows.push((id.clone(), fields_of(c, owner)));
                owners.push((cid, owner));
            }
        }
        store::upsert_many(tx, t, &rows, ctx.now).await?;
        set_owners(tx, t, &owners, ctx.now).await?;
        hash::put_many(tx, t, kind::CUSTOMER, &hashes, ctx.now).await
    }

    /// The fetch is complete: write what is left, the customers that existed before with all
    /// their relations, the statistics and the counter; report the customers that cannot be
    /// stored. Returns every customer fetched (in external_userid order).
    pub async fn finish(mut self, tx: &mut Tx, ctx: &mut Ctx) -> DbResult<Vec<StagedCustomer>> {
        let pending = std::mem::take(&mut self.pending);
        for ids in pending.chunks(BATCH) {
            self.write(tx, ctx, ids.to_vec()).await?;
        }
        let dirty: Vec<String> = self.dirty.drain().collect();
        for ids in dirty.chunks(BATCH) {
            self.late(tx, ctx, ids.to_vec()).await?;
        }
        ctx.partial = false;
        let existed = std::mem::take(&mut self.existed);
        for ids in existed.chunks(BATCH) {
            for id in ids {
                if let Some(c) = self.seen.get_mut(id) {
                    c.order_follows();
                }
            }
            let list: Vec<&StagedCustomer> = ids
                .iter()
                .filter_map(|id| self.seen.get(id))
                .filter(|c| invalid(c).is_none())
                .collect();
            batch(tx, ctx, &list).await?;
            remember_many(tx, ctx, &list).await?;
            for c in &list {
                ctx.counts.updated += 1;
                self.written.insert(c.contact.external_userid.clone());
            }
        }
        let mut adds: Vec<(i64, Option<String>, Option<i64>)> = Vec::new();
        for id in &self.created {
            let Some(c) = self.seen.get(id) else { continue };
            if let Some(day) = counted_on(ctx, c) {
                let first = &c.follows[0];
                let staff = ctx.staff_id(tx, &first.userid).await?;
                adds.push((day, text(&first.state, 50).flatten(), Some(staff)));
            }
        }
        let adds: Vec<(i64, Option<&str>, Option<i64>)> = adds
            .iter()
            .map(|(day, channel, staff)| (*day, channel.as_deref(), *staff))
            .collect();
        for chunk in adds.chunks(1000) {
            stats::record_added_many(tx, ctx.tenant_id, chunk).await?;
        }
        let mut out: Vec<StagedCustomer> = self.seen.into_values().collect();
        out.sort_by(|a, b| a.contact.external_userid.cmp(&b.contact.external_userid));
        // A customer that cannot be stored is left out (and one written before a bad relation
        // of it arrived keeps what it had, its hash forgotten so the next sync looks again).
        let mut forget = Vec::new();
        for c in &mut out {
            c.order_follows();
            if let Some(why) = invalid(c) {
                ctx.skip(format!("customer {:?}", c.contact.external_userid), why);
                if self.written.contains(&c.contact.external_userid) {
                    forget.push(c.contact.external_userid.clone());
                }
            }
        }
        hash::remove(tx, ctx.tenant_id, kind::CUSTOMER, &forget).await?;
        ctx.bootstrap = false;
        store::count_customers(tx, ctx.tenant_id, self.created.len() as i64).await?;
        Ok(out)
    }
}

/// Set the owner (`follow_user_id`) of these customers, many a statement.
async fn set_owners(tx: &mut Tx, tenant_id: i64, owners: &[(i64, i64)], now: i64) -> DbResult<()> {
    for chunk in owners.chunks(500) {
        let mut q = query("UPDATE customer SET follow_user_id = CASE id");
        for (customer, staff) in chunk {
            q.push_sql(" WHEN ? THEN ?")
                .push_bind(*customer)
                .push_bind(*staff);
        }
        q.push_sql(" END, updated_at = ? WHERE tenant_id = ? AND id IN ")
            .push_bind(now)
            .push_bind(tenant_id);
        q.push_in_list(chunk.iter().map(|(customer, _)| *customer));
        tx.execute(q).await?;
    }
    Ok(())
}

/// Whether a tenant's customers were synced before (their hashes are kept): the first sync
/// writes customers as they are fetched ([`Streaming`]).
pub async fn synced_before(db: &scrm_db::Db, tenant_id: i64) -> DbResult<bool> {
    let found: Option<(i64,)> = db
        .fetch_optional(
            query(
                "SELECT tenant_id FROM wework_sync_hash WHERE tenant_id = ? AND kind = ? LIMIT 1",
            )
            .bind(tenant_id)
            .bind(kind::CUSTOMER),
        )
        .await?;
    Ok(found.is_some())
}
