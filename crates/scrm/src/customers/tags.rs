//! Tag groups, corp tags, and customers' tags with the per-tag counter.
//!
//! The counter (`tag_count`) changes in the same transaction as the tag rows, by exactly the
//! number of rows inserted or deleted (an insert that found the row already there counts 0), so
//! seed 004's tag list with customer counts is a primary-key read and is always exact. The pair
//! counter (`tag_pair_count`: customers carrying both of two tags) is kept the same way, so the
//! search's totals for two tags come from counters too.
//!
//! Changes made through the API are pushed to WeCom by [`super::push`]; these functions do not
//! push (WeCom sync writes through them too).

use std::collections::{BTreeMap, HashSet};

use scrm_db::{Backend, DbResult, Tx, query};
use serde::Serialize;
use serde_json::json;

use super::store;
use super::timeline;
use crate::events;

/// A tag with its group and count, for lists.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TagRow {
    pub id: i64,
    pub group_id: i64,
    pub name: String,
    pub sort_order: i64,
    pub wecom_tag_id: Option<String>,
    pub customer_count: i64,
}

/// A tag group as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub sort_order: i64,
    pub wecom_group_id: Option<String>,
}

/// Which of `tag_ids` are not the tenant's tags.
pub async fn unknown_tags(tx: &mut Tx, tenant_id: i64, tag_ids: &[i64]) -> DbResult<Vec<i64>> {
    if tag_ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query("SELECT id FROM tag WHERE tenant_id = ? AND id IN ").bind(tenant_id);
    q.push_in_list(tag_ids.iter().copied());
    let found: Vec<(i64,)> = tx.fetch_all(q).await?;
    Ok(tag_ids
        .iter()
        .copied()
        .filter(|t| !found.iter().any(|f| f.0 == *t))
        .collect())
}

async fn tag_names(tx: &mut Tx, tenant_id: i64, tag_ids: &[i64]) -> DbResult<Vec<String>> {
    if tag_ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query("SELECT name FROM tag WHERE tenant_id = ? AND id IN ").bind(tenant_id);
    q.push_in_list(tag_ids.iter().copied());
    q.push_sql(" ORDER BY id");
    Ok(tx
        .fetch_all::<(String,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

/// Add tags to a customer; returns the tags that were new. Tags must be the tenant's (check with
/// [`unknown_tags`]). Counters, version, timeline and `customer.tag.added` go in the same `tx`.
pub async fn add_to_customer(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    tag_ids: &[i64],
    tagged_by: Option<i64>,
    now: i64,
) -> DbResult<Vec<i64>> {
    change_customer(tx, tenant_id, customer_id, tag_ids, tagged_by, now, true).await
}

/// Remove tags from a customer; returns the tags that were there.
pub async fn remove_from_customer(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    tag_ids: &[i64],
    removed_by: Option<i64>,
    now: i64,
) -> DbResult<Vec<i64>> {
    change_customer(tx, tenant_id, customer_id, tag_ids, removed_by, now, false).await
}

/// Add (`add`) or remove tags one row at a time, keeping what actually changed; then the
/// counters, the version, the timeline and the event, once for all of them.
async fn change_customer(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    tag_ids: &[i64],
    by: Option<i64>,
    now: i64,
    add: bool,
) -> DbResult<Vec<i64>> {
    let sql = match (add, tx.backend()) {
        (false, _) => {
            "DELETE FROM customer_tag WHERE tenant_id = ? AND tag_id = ? AND customer_id = ?"
        }
        (true, Backend::MySql) => {
            "INSERT IGNORE INTO customer_tag (tenant_id, tag_id, customer_id, tagged_by, tagged_at) VALUES (?, ?, ?, ?, ?)"
        }
        (true, _) => {
            "INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_by, tagged_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    let mut changed = Vec::new();
    for t in dedup(tag_ids) {
        let mut q = query(sql).bind(tenant_id).bind(t).bind(customer_id);
        if add {
            q = q.bind(by).bind(now);
        }
        if tx.execute(q).await?.rows_affected > 0 {
            changed.push(t);
        }
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    let delta = if add { 1 } else { -1 };
    // The pairs: the tags carried with the change included (after an add, before a removal).
    let mut carried = tags_of(tx, tenant_id, customer_id).await?;
    if !add {
        carried.extend(&changed);
    }
    let mut pairs = BTreeMap::new();
    pair_deltas(&mut pairs, &carried, &changed, delta);
    store::touch(tx, tenant_id, customer_id, now).await?;
    let names = tag_names(tx, tenant_id, &changed).await?.join(", ");
    let (kind, summary, event) = if add {
        (
            timeline::kind::TAGGED,
            format!("tagged {names}"),
            events::kind::CUSTOMER_TAG_ADDED,
        )
    } else {
        (
            timeline::kind::UNTAGGED,
            format!("untagged {names}"),
            events::kind::CUSTOMER_TAG_REMOVED,
        )
    };
    timeline::record(
        tx,
        tenant_id,
        customer_id,
        kind,
        &summary,
        json!({"tagIds": changed, "by": by}),
    )
    .await?;
    events::emit(
        tx,
        tenant_id,
        event,
        customer_id,
        json!({"customerId": customer_id, "tagIds": changed}),
    )
    .await?;
    // The shared counters last: every tagging of one tag (an SOP or mass task tagging thousands
    // of customers at once) updates the same counter rows, and each transaction holds their
    // row locks until it commits — taken last, they are held for two statements and the commit
    // rather than for the whole change (measured: 25 connections queued on them otherwise).
    bump_counts(tx, tenant_id, &changed, delta).await?;
    bump_pairs(tx, tenant_id, &pairs).await?;
    Ok(changed)
}

fn dedup(ids: &[i64]) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Add `delta` to the per-tag customer counters of `tag_ids`. Every writer of `customer_tag`
/// (the API here, WeCom sync) calls this or [`bump_counts_by`], so the counters have one keeper.
pub async fn bump_counts(tx: &mut Tx, tenant_id: i64, tag_ids: &[i64], delta: i64) -> DbResult<()> {
    let deltas: BTreeMap<i64, i64> = dedup(tag_ids).into_iter().map(|t| (t, delta)).collect();
    bump_counts_by(tx, tenant_id, &deltas).await
}

/// Add a delta per tag to the counters, many tags a statement.
pub async fn bump_counts_by(
    tx: &mut Tx,
    tenant_id: i64,
    deltas: &BTreeMap<i64, i64>,
) -> DbResult<()> {
    // Sorted ids (a BTreeMap): concurrent transactions lock counter rows in one order, so they
    // cannot deadlock on each other.
    let deltas: Vec<(i64, i64)> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(t, d)| (*t, *d))
        .collect();
    for chunk in deltas.chunks(200) {
        let mut q = query("UPDATE tag_count SET customer_count = customer_count + CASE tag_id");
        for (t, d) in chunk {
            q.push_sql(" WHEN ? THEN ?").push_bind(*t).push_bind(*d);
        }
        q.push_sql(" ELSE 0 END WHERE tenant_id = ? AND tag_id IN ")
            .push_bind(tenant_id);
        q.push_in_list(chunk.iter().map(|(t, _)| *t));
        tx.execute(q).await?;
    }
    Ok(())
}

/// Every tag a customer carries.
async fn tags_of(tx: &mut Tx, tenant_id: i64, customer_id: i64) -> DbResult<Vec<i64>> {
    let rows: Vec<(i64,)> = tx
        .fetch_all(
            query("SELECT tag_id FROM customer_tag WHERE tenant_id = ? AND customer_id = ?")
                .bind(tenant_id)
                .bind(customer_id),
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The pair-counter moves for one customer whose tags changed: `carried` is every tag the
/// customer has with the change included (after an add, before a removal), `changed` the tags
/// added or removed; each pair holding at least one changed tag moves by `delta`.
pub fn pair_deltas(
    out: &mut BTreeMap<(i64, i64), i64>,
    carried: &[i64],
    changed: &[i64],
    delta: i64,
) {
    let carried = dedup(carried);
    for (i, a) in carried.iter().enumerate() {
        for b in &carried[i + 1..] {
            if changed.contains(a) || changed.contains(b) {
                *out.entry((*a, *b)).or_default() += delta;
            }
        }
    }
}

/// Add deltas to the pair counters (`tag_pair_count`, `tag_a < tag_b`), creating rows as
/// needed. Sorted keys, so concurrent transactions take the rows in one order.
pub async fn bump_pairs(
    tx: &mut Tx,
    tenant_id: i64,
    deltas: &BTreeMap<(i64, i64), i64>,
) -> DbResult<()> {
    let deltas: Vec<(&(i64, i64), &i64)> = deltas.iter().filter(|(_, d)| **d != 0).collect();
    for chunk in deltas.chunks(300) {
        let mut q =
            query("INSERT INTO tag_pair_count (tenant_id, tag_a, tag_b, customer_count) VALUES ");
        for (i, ((a, b), d)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(*a)
                .push_bind(*b)
                .push_bind(**d);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE customer_count = customer_count + VALUES(customer_count)"
            }
            _ => {
                " ON CONFLICT (tenant_id, tag_a, tag_b) DO UPDATE SET customer_count = tag_pair_count.customer_count + excluded.customer_count"
            }
        });
        tx.execute(q).await?;
    }
    Ok(())
}

/// Tag many customers quietly: (customer, tag) rows inserted where missing, the counters moved
/// by exactly the rows inserted, and nothing else (no timeline, no events, no version): for a
/// sync's import of tags customers had in WeCom long before scrm. Returns the rows inserted.
pub async fn tag_quietly(
    tx: &mut Tx,
    tenant_id: i64,
    pairs: &[(i64, i64)],
    now: i64,
) -> DbResult<usize> {
    let mut inserted: BTreeMap<i64, i64> = BTreeMap::new();
    let mut new_tags: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut total = 0;
    for chunk in pairs.chunks(1000) {
        let mut chunk: Vec<(i64, i64)> = chunk.to_vec();
        let mysql = tx.backend() == Backend::MySql;
        if mysql {
            // MySQL has no RETURNING: read (and lock, so no one adds them meanwhile) the rows
            // already there, then insert only the others, so each insert is one row added.
            let mut q = query(
                "SELECT customer_id, tag_id FROM customer_tag WHERE tenant_id = ? AND customer_id IN ",
            )
            .bind(tenant_id);
            q.push_in_list(chunk.iter().map(|p| p.0));
            q.push_sql(" FOR UPDATE");
            let there: HashSet<(i64, i64)> = tx.fetch_all(q).await?.into_iter().collect();
            chunk.retain(|p| !there.contains(p));
            chunk.sort_unstable();
            chunk.dedup();
            if chunk.is_empty() {
                continue;
            }
        }
        let mut q = query(
            "INSERT INTO customer_tag (tenant_id, tag_id, customer_id, tagged_by, tagged_at) VALUES ",
        );
        for (i, (customer, tag)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, NULL, ?)")
                .push_bind(tenant_id)
                .push_bind(*tag)
                .push_bind(*customer)
                .push_bind(now);
        }
        if mysql {
            tx.execute(q).await?;
            for (customer, tag) in &chunk {
                *inserted.entry(*tag).or_default() += 1;
                new_tags.entry(*customer).or_default().push(*tag);
            }
            total += chunk.len();
        } else {
            q.push_sql(" ON CONFLICT DO NOTHING RETURNING customer_id, tag_id");
            let rows: Vec<(i64, i64)> = tx.fetch_all(q).await?;
            total += rows.len();
            for (customer, tag) in rows {
                *inserted.entry(tag).or_default() += 1;
                new_tags.entry(customer).or_default().push(tag);
            }
        }
    }
    bump_counts_by(tx, tenant_id, &inserted).await?;
    // The pairs: every tag the touched customers now carry, against the ones just added.
    let customers: Vec<i64> = new_tags.keys().copied().collect();
    let mut carried: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for chunk in customers.chunks(1000) {
        let mut q = query(
            "SELECT customer_id, tag_id FROM customer_tag WHERE tenant_id = ? AND customer_id IN ",
        )
        .bind(tenant_id);
        q.push_in_list(chunk.iter().copied());
        for (customer, tag) in tx.fetch_all::<(i64, i64)>(q).await? {
            carried.entry(customer).or_default().push(tag);
        }
    }
    let mut pairs = BTreeMap::new();
    for (customer, added) in &new_tags {
        if let Some(all) = carried.get(customer) {
            pair_deltas(&mut pairs, all, added, 1);
        }
    }
    bump_pairs(tx, tenant_id, &pairs).await?;
    Ok(total)
}

/// Create a tag group; a second group with the same name is a conflict.
pub async fn create_group(
    tx: &mut Tx,
    tenant_id: i64,
    name: &str,
    sort_order: Option<i64>,
    wecom_group_id: Option<&str>,
    now: i64,
) -> DbResult<i64> {
    let order = match sort_order {
        Some(o) => o,
        None => {
            tx.fetch_i64(
                query("SELECT COALESCE(MAX(sort_order), 0) + 1 FROM tag_group WHERE tenant_id = ?")
                    .bind(tenant_id),
            )
            .await?
        }
    };
    tx.insert_id(
        query(
            "INSERT INTO tag_group (tenant_id, wecom_group_id, name, sort_order, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(wecom_group_id)
        .bind(name)
        .bind(order)
        .bind(now)
        .bind(now),
    )
    .await
}

/// Create a tag in a group (with its counter at 0).
pub async fn create_tag(
    tx: &mut Tx,
    tenant_id: i64,
    group_id: i64,
    name: &str,
    sort_order: Option<i64>,
    wecom_tag_id: Option<&str>,
    now: i64,
) -> DbResult<i64> {
    let order = match sort_order {
        Some(o) => o,
        None => {
            tx.fetch_i64(
                query(
                    "SELECT COALESCE(MAX(sort_order), 0) + 1 FROM tag WHERE tenant_id = ? AND group_id = ?",
                )
                .bind(tenant_id)
                .bind(group_id),
            )
            .await?
        }
    };
    let id = tx
        .insert_id(
            query(
                "INSERT INTO tag (tenant_id, group_id, wecom_tag_id, name, sort_order, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(group_id)
            .bind(wecom_tag_id)
            .bind(name)
            .bind(order)
            .bind(now)
            .bind(now),
        )
        .await?;
    tx.execute(
        query("INSERT INTO tag_count (tenant_id, tag_id, customer_count) VALUES (?, ?, 0)")
            .bind(tenant_id)
            .bind(id),
    )
    .await?;
    Ok(id)
}

/// Delete a tag: its customer rows, its counter, its group-chat rows; customers that carried it
/// get a new version (their cached detail showed it). Returns how many customers carried it.
pub async fn delete_tag(tx: &mut Tx, tenant_id: i64, tag_id: i64, now: i64) -> DbResult<i64> {
    let carried = tx
        .execute(
            query(
                "UPDATE customer SET version = version + 1, updated_at = ? WHERE tenant_id = ? AND id IN \
                 (SELECT customer_id FROM customer_tag WHERE tenant_id = ? AND tag_id = ?)",
            )
            .bind(now)
            .bind(tenant_id)
            .bind(tenant_id)
            .bind(tag_id),
        )
        .await?
        .rows_affected;
    for sql in [
        "DELETE FROM customer_tag WHERE tenant_id = ? AND tag_id = ?",
        "DELETE FROM tag_count WHERE tenant_id = ? AND tag_id = ?",
        "DELETE FROM tag_pair_count WHERE tenant_id = ? AND tag_a = ?",
        "DELETE FROM tag_pair_count WHERE tenant_id = ? AND tag_b = ?",
        "DELETE FROM group_chat_tag WHERE tenant_id = ? AND tag_id = ?",
        "DELETE FROM tag WHERE tenant_id = ? AND id = ?",
    ] {
        tx.execute(query(sql).bind(tenant_id).bind(tag_id)).await?;
    }
    events::emit(
        tx,
        tenant_id,
        events::kind::TAG_DELETED,
        tag_id,
        json!({"tagId": tag_id, "customerCount": carried}),
    )
    .await?;
    Ok(i64::try_from(carried).unwrap_or(i64::MAX))
}

/// Every tag of the tenant (optionally of one group) with its count, in display order.
pub async fn list_tags(
    db: &scrm_db::Db,
    tenant_id: i64,
    group_id: Option<i64>,
) -> DbResult<Vec<TagRow>> {
    let mut q = query(
        "SELECT t.id, t.group_id, t.name, t.sort_order, t.wecom_tag_id, COALESCE(n.customer_count, 0) AS customer_count \
         FROM tag t LEFT JOIN tag_count n ON n.tenant_id = t.tenant_id AND n.tag_id = t.id \
         WHERE t.tenant_id = ?",
    )
    .bind(tenant_id);
    if let Some(g) = group_id {
        q.push_sql(" AND t.group_id = ?").push_bind(g);
    }
    q.push_sql(" ORDER BY t.group_id, t.sort_order, t.id");
    db.fetch_all(q).await
}

/// Every tag group of the tenant, in display order.
pub async fn list_groups(db: &scrm_db::Db, tenant_id: i64) -> DbResult<Vec<GroupRow>> {
    db.fetch_all(
        query(
            "SELECT id, name, sort_order, wecom_group_id FROM tag_group WHERE tenant_id = ? ORDER BY sort_order, id",
        )
        .bind(tenant_id),
    )
    .await
}
