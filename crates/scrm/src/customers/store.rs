//! The customer's own SQL: insert, read, update, delete, the gram index kept beside the row,
//! and the version stamp that tells the detail cache a customer changed.
//!
//! Store functions take a `&mut Tx` for writes so a handler, an import and a sync job compose
//! them in one transaction with the audit row, the events and the counters.

use std::collections::HashMap;

use scrm_db::{Backend, Db, DbResult, Tx, query};

use super::model::{
    COLUMNS, CustomerDetail, CustomerFields, CustomerRow, CustomerView, FollowView, GroupRef,
    TagRef,
};
use super::search::grams_of;

/// Insert a customer; a second customer with the same `external_userid` in the tenant is a
/// [`DbError::Conflict`](scrm_db::DbError::Conflict).
pub async fn insert(
    tx: &mut Tx,
    tenant_id: i64,
    external_userid: &str,
    f: &CustomerFields,
    now: i64,
) -> DbResult<i64> {
    let flat = |v: &Option<Option<String>>| v.clone().flatten();
    let id = tx
        .insert_id(
            query(
                "INSERT INTO customer (tenant_id, external_userid, name, avatar, type, gender, unionid, \
                 province, city, mobile, remark, description, corp_name, follow_user_id, add_time, \
                 channel, stage, blacklisted, status, version, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 1, ?, ?)",
            )
            .bind(tenant_id)
            .bind(external_userid)
            .bind(flat(&f.name))
            .bind(flat(&f.avatar))
            .bind(f.kind.unwrap_or(1))
            .bind(f.gender.flatten())
            .bind(flat(&f.unionid))
            .bind(flat(&f.province))
            .bind(flat(&f.city))
            .bind(flat(&f.mobile))
            .bind(flat(&f.remark))
            .bind(flat(&f.description))
            .bind(flat(&f.corp_name))
            .bind(f.follow_user_id.flatten())
            .bind(f.add_time.flatten().unwrap_or(now))
            .bind(flat(&f.channel))
            .bind(f.stage.clone().unwrap_or_else(|| "new".into()))
            .bind(f.status.unwrap_or(1))
            .bind(now)
            .bind(now),
        )
        .await?;
    write_grams(
        tx,
        tenant_id,
        id,
        flat(&f.name).as_deref(),
        flat(&f.mobile).as_deref(),
    )
    .await?;
    Ok(id)
}

/// Apply the given fields; returns false when the customer is not the tenant's.
pub async fn update(
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
    f: &CustomerFields,
    now: i64,
) -> DbResult<bool> {
    let mut q = query("UPDATE customer SET version = version + 1, updated_at = ?").bind(now);
    macro_rules! set {
        ($col:literal, $v:expr) => {
            if let Some(v) = $v {
                q.push_sql(concat!(", ", $col, " = ?")).push_bind(v.clone());
            }
        };
    }
    set!("name", &f.name);
    set!("avatar", &f.avatar);
    set!("type", &f.kind);
    set!("gender", &f.gender);
    set!("unionid", &f.unionid);
    set!("province", &f.province);
    set!("city", &f.city);
    set!("mobile", &f.mobile);
    set!("remark", &f.remark);
    set!("description", &f.description);
    set!("corp_name", &f.corp_name);
    set!("follow_user_id", &f.follow_user_id);
    set!("add_time", &f.add_time);
    set!("channel", &f.channel);
    set!("stage", &f.stage);
    set!("status", &f.status);
    q.push_sql(" WHERE tenant_id = ? AND id = ?")
        .push_bind(tenant_id)
        .push_bind(id);
    let changed = tx.execute(q).await?.rows_affected > 0;
    if changed && (f.name.is_some() || f.mobile.is_some()) {
        let row = get_tx(tx, tenant_id, id).await?;
        if let Some(row) = row {
            tx.execute(
                query("DELETE FROM customer_gram WHERE tenant_id = ? AND customer_id = ?")
                    .bind(tenant_id)
                    .bind(id),
            )
            .await?;
            write_grams(
                tx,
                tenant_id,
                id,
                row.name.as_deref(),
                row.mobile.as_deref(),
            )
            .await?;
        }
    }
    Ok(changed)
}

/// Customers as WeCom shows them, inserted or updated many rows a statement (the bulk path of
/// a sync). The columns WeCom owns are overwritten: name, avatar, type, gender, unionid,
/// corp_name, remark, description, add_time, status. An existing non-null `follow_user_id`
/// (the owner set in scrm: a channel code's, an assignment) is kept; `channel` is written only
/// on insert. Version, `updated_at` and the gram index move as [`update`] moves them. Rows must
/// have distinct `external_userid`s. Returns, by `external_userid`, every row's id and whether
/// it existed before.
///
/// Per chunk: one look-up of the rows already there (their ids and scrm's own mobile, for the
/// grams), the upsert (`RETURNING` the ids on PostgreSQL and SQLite; MySQL, which has none,
/// reads back only the new rows' ids), the old grams deleted for rows that existed, and the
/// grams inserted: the grams are made from the name just written and the kept mobile, so the
/// rows are not read back.
pub async fn upsert_many(
    tx: &mut Tx,
    tenant_id: i64,
    rows: &[(String, CustomerFields)],
    now: i64,
) -> DbResult<HashMap<String, (i64, bool)>> {
    let mut ids = HashMap::with_capacity(rows.len());
    let flat = |v: &Option<Option<String>>| v.clone().flatten();
    let mysql = tx.backend() == Backend::MySql;
    for chunk in rows.chunks(500) {
        let mut q = query(
            "SELECT id, external_userid, mobile FROM customer WHERE tenant_id = ? AND external_userid IN ",
        )
        .bind(tenant_id);
        q.push_in_list(chunk.iter().map(|(ext, _)| ext.as_str()));
        let before: Vec<(i64, String, Option<String>)> = tx.fetch_all(q).await?;
        let mut existed: HashMap<&str, (i64, Option<&str>)> = before
            .iter()
            .map(|(id, ext, mobile)| (ext.as_str(), (*id, mobile.as_deref())))
            .collect();
        let mut q = query(
            "INSERT INTO customer (tenant_id, external_userid, name, avatar, type, gender, unionid, \
             remark, description, corp_name, follow_user_id, add_time, channel, stage, blacklisted, \
             status, version, created_at, updated_at) VALUES ",
        );
        for (i, (ext, f)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', 0, ?, 1, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(ext.as_str())
                .push_bind(flat(&f.name))
                .push_bind(flat(&f.avatar))
                .push_bind(f.kind.unwrap_or(1))
                .push_bind(f.gender.flatten())
                .push_bind(flat(&f.unionid))
                .push_bind(flat(&f.remark))
                .push_bind(flat(&f.description))
                .push_bind(flat(&f.corp_name))
                .push_bind(f.follow_user_id.flatten())
                .push_bind(f.add_time.flatten().unwrap_or(now))
                .push_bind(flat(&f.channel))
                .push_bind(f.status.unwrap_or(1))
                .push_bind(now)
                .push_bind(now);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE name = VALUES(name), avatar = VALUES(avatar), type = VALUES(type), \
                 gender = VALUES(gender), unionid = VALUES(unionid), remark = VALUES(remark), \
                 description = VALUES(description), corp_name = VALUES(corp_name), \
                 follow_user_id = COALESCE(follow_user_id, VALUES(follow_user_id)), add_time = VALUES(add_time), \
                 status = VALUES(status), version = version + 1, updated_at = VALUES(updated_at)"
            }
            _ => {
                " ON CONFLICT (tenant_id, external_userid) DO UPDATE SET name = excluded.name, \
                 avatar = excluded.avatar, type = excluded.type, gender = excluded.gender, \
                 unionid = excluded.unionid, remark = excluded.remark, description = excluded.description, \
                 corp_name = excluded.corp_name, \
                 follow_user_id = COALESCE(customer.follow_user_id, excluded.follow_user_id), \
                 add_time = excluded.add_time, status = excluded.status, version = customer.version + 1, \
                 updated_at = excluded.updated_at \
                 RETURNING id, external_userid"
            }
        });
        let written: Vec<(i64, String)> = if mysql {
            tx.execute(q).await?;
            let new: Vec<&str> = chunk
                .iter()
                .map(|(ext, _)| ext.as_str())
                .filter(|ext| !existed.contains_key(ext))
                .collect();
            if new.is_empty() {
                Vec::new()
            } else {
                let mut q = query(
                    "SELECT id, external_userid FROM customer WHERE tenant_id = ? AND external_userid IN ",
                )
                .bind(tenant_id);
                q.push_in_list(new);
                tx.fetch_all(q).await?
            }
        } else {
            tx.fetch_all(q).await?
        };
        let new_ids: HashMap<String, i64> = written.into_iter().map(|(id, e)| (e, id)).collect();
        if !before.is_empty() {
            let mut q = query("DELETE FROM customer_gram WHERE tenant_id = ? AND customer_id IN ")
                .bind(tenant_id);
            q.push_in_list(before.iter().map(|r| r.0));
            tx.execute(q).await?;
        }
        let mut grams: Vec<(i64, String)> = Vec::new();
        for (ext, f) in chunk {
            let (id, mobile, was) = match existed.remove(ext.as_str()) {
                Some((id, mobile)) => (id, mobile, true),
                None => match new_ids.get(ext) {
                    Some(id) => (*id, None, false),
                    None => continue,
                },
            };
            grams.extend(
                grams_of(flat(&f.name).as_deref(), mobile)
                    .into_iter()
                    .map(|g| (id, g)),
            );
            ids.insert(ext.clone(), (id, was));
        }
        insert_grams(tx, tenant_id, &grams).await?;
    }
    Ok(ids)
}

/// Insert gram rows (customer id, gram), many a statement.
async fn insert_grams(tx: &mut Tx, tenant_id: i64, grams: &[(i64, String)]) -> DbResult<()> {
    for chunk in grams.chunks(2000) {
        let mut q = query("INSERT INTO customer_gram (tenant_id, gram, customer_id) VALUES ");
        for (i, (id, g)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(g.as_str())
                .push_bind(*id);
        }
        tx.execute(q).await?;
    }
    Ok(())
}

/// Write a customer's name 2-grams and mobile 4-grams.
async fn write_grams(
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
    name: Option<&str>,
    mobile: Option<&str>,
) -> DbResult<()> {
    let grams: Vec<(i64, String)> = grams_of(name, mobile)
        .into_iter()
        .map(|g| (id, g))
        .collect();
    insert_grams(tx, tenant_id, &grams).await
}

/// Move the tenant's customer counter (`customer_count`) by `delta`: every transaction that
/// inserts or deletes customer rows calls this once, as its last write before the commit (the
/// counter row is shared by all of the tenant's writers; taken last, it is held only for the
/// commit and never before another lock, so it cannot close a deadlock cycle).
pub async fn count_customers(tx: &mut Tx, tenant_id: i64, delta: i64) -> DbResult<()> {
    if delta == 0 {
        return Ok(());
    }
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO customer_count (tenant_id, customer_count) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE customer_count = customer_count + VALUES(customer_count)"
        }
        _ => {
            "INSERT INTO customer_count (tenant_id, customer_count) VALUES (?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET customer_count = customer_count.customer_count + excluded.customer_count"
        }
    };
    tx.execute(query(sql).bind(tenant_id).bind(delta))
        .await
        .map(|_| ())
}

/// Set the tenant's customer counter to the real number of its customer rows (after a bulk
/// load that wrote the rows directly: the benchmarks' generators).
pub async fn recount_customers(db: &Db, tenant_id: i64) -> DbResult<i64> {
    let n = db
        .fetch_i64(query("SELECT COUNT(*) FROM customer WHERE tenant_id = ?").bind(tenant_id))
        .await?;
    db.execute(query("DELETE FROM customer_count WHERE tenant_id = ?").bind(tenant_id))
        .await?;
    db.execute(
        query("INSERT INTO customer_count (tenant_id, customer_count) VALUES (?, ?)")
            .bind(tenant_id)
            .bind(n),
    )
    .await?;
    Ok(n)
}

/// The tenant's number of customers, from its counter (no counter row: none were ever written
/// through the store, so the rows are counted).
pub async fn customer_total(db: &Db, tenant_id: i64) -> DbResult<i64> {
    let n: Option<(i64,)> = db
        .fetch_optional(
            query("SELECT customer_count FROM customer_count WHERE tenant_id = ?").bind(tenant_id),
        )
        .await?;
    match n {
        Some((n,)) => Ok(n),
        None => {
            db.fetch_i64(query("SELECT COUNT(*) FROM customer WHERE tenant_id = ?").bind(tenant_id))
                .await
        }
    }
}

/// Mark a customer changed (its tags, groups or follows changed), for the detail cache.
pub async fn touch(tx: &mut Tx, tenant_id: i64, id: i64, now: i64) -> DbResult<()> {
    tx.execute(
        query(
            "UPDATE customer SET version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(now)
        .bind(tenant_id)
        .bind(id),
    )
    .await
    .map(|_| ())
}

/// Remove a customer and everything that points at it, keeping the tag counters exact (the
/// search counts read tag rows without joining customers, so none may outlive its customer).
pub async fn delete(tx: &mut Tx, tenant_id: i64, id: i64) -> DbResult<Vec<i64>> {
    let tags: Vec<(i64,)> = tx
        .fetch_all(
            query("SELECT tag_id FROM customer_tag WHERE tenant_id = ? AND customer_id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let tag_ids: Vec<i64> = tags.into_iter().map(|t| t.0).collect();
    if !tag_ids.is_empty() {
        let mut q = query(
            "UPDATE tag_count SET customer_count = customer_count - 1 WHERE tenant_id = ? AND tag_id IN ",
        )
        .bind(tenant_id);
        q.push_in_list(tag_ids.iter().copied());
        tx.execute(q).await?;
        let mut pairs = std::collections::BTreeMap::new();
        super::tags::pair_deltas(&mut pairs, &tag_ids, &tag_ids, -1);
        super::tags::bump_pairs(tx, tenant_id, &pairs).await?;
    }
    for table in [
        "customer_tag",
        "customer_gram",
        "customer_follow",
        "follow_up",
        "customer_blacklist",
        "churn_warning",
        "customer_timeline",
    ] {
        tx.execute(
            query(format!(
                "DELETE FROM {table} WHERE tenant_id = ? AND customer_id = ?"
            ))
            .bind(tenant_id)
            .bind(id),
        )
        .await?;
    }
    // Group membership stays (the person is still in the chat); it just no longer links here.
    tx.execute(
        query("UPDATE group_chat_member SET customer_id = NULL WHERE tenant_id = ? AND customer_id = ?")
            .bind(tenant_id)
            .bind(id),
    )
    .await?;
    tx.execute(
        query("DELETE FROM customer WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id)
            .bind(id),
    )
    .await?;
    Ok(tag_ids)
}

fn select_one(tenant_id: i64, id: i64) -> scrm_db::Query {
    query(format!(
        "SELECT {COLUMNS} FROM customer c WHERE c.tenant_id = ? AND c.id = ?"
    ))
    .bind(tenant_id)
    .bind(id)
}

/// One of the tenant's customers.
pub async fn get(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<CustomerRow>> {
    db.fetch_optional(select_one(tenant_id, id)).await
}

/// One of the tenant's customers, read inside a transaction.
pub async fn get_tx(tx: &mut Tx, tenant_id: i64, id: i64) -> DbResult<Option<CustomerRow>> {
    tx.fetch_optional(select_one(tenant_id, id)).await
}

/// Lock a customer row for the rest of the transaction (SQLite's `BEGIN IMMEDIATE` already
/// serialises writers), so two changes of one customer apply one after the other.
pub async fn lock(tx: &mut Tx, tenant_id: i64, id: i64) -> DbResult<Option<CustomerRow>> {
    let mut q = select_one(tenant_id, id);
    if tx.backend() != Backend::Sqlite {
        q.push_sql(" FOR UPDATE");
    }
    tx.fetch_optional(q).await
}

/// The customer's version (the detail cache's freshness check: one primary-key lookup).
pub async fn version(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<i64>> {
    Ok(db
        .fetch_optional::<(i64,)>(
            query("SELECT version FROM customer WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?
        .map(|r| r.0))
}

/// The tags of each of these customers.
pub async fn tags_of(db: &Db, tenant_id: i64, ids: &[i64]) -> DbResult<HashMap<i64, Vec<TagRef>>> {
    let mut out: HashMap<i64, Vec<TagRef>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    #[derive(sqlx::FromRow)]
    struct TagJoin {
        customer_id: i64,
        id: i64,
        name: String,
        group_id: i64,
    }
    let mut q = query(
        "SELECT ct.customer_id, t.id, t.name, t.group_id FROM customer_tag ct \
         JOIN tag t ON t.id = ct.tag_id AND t.tenant_id = ct.tenant_id \
         WHERE ct.tenant_id = ? AND ct.customer_id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(ids.iter().copied());
    q.push_sql(" ORDER BY t.group_id, t.sort_order, t.id");
    for r in db.fetch_all::<TagJoin>(q).await? {
        out.entry(r.customer_id).or_default().push(TagRef {
            id: r.id,
            name: r.name,
            group_id: r.group_id,
        });
    }
    Ok(out)
}

/// Customers with their tags, in the order given.
pub async fn views(db: &Db, tenant_id: i64, rows: Vec<CustomerRow>) -> DbResult<Vec<CustomerView>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut tags = tags_of(db, tenant_id, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            CustomerView::new(r, t)
        })
        .collect())
}

/// Everything the detail shows, straight from the database.
pub async fn detail(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<CustomerDetail>> {
    let Some(row) = get(db, tenant_id, id).await? else {
        return Ok(None);
    };
    let version = row.version;
    let view = views(db, tenant_id, vec![row])
        .await?
        .pop()
        .ok_or(scrm_db::DbError::NotFound)?;
    let follow_users: Vec<FollowView> = db
        .fetch_all(
            query(
                "SELECT f.staff_id, s.userid, s.name AS staff_name, f.remark, f.add_time, f.add_way, \
                 f.state, f.status FROM customer_follow f \
                 JOIN staff s ON s.id = f.staff_id AND s.tenant_id = f.tenant_id \
                 WHERE f.tenant_id = ? AND f.customer_id = ? ORDER BY f.id",
            )
            .bind(tenant_id)
            .bind(id),
        )
        .await?;
    let groups: Vec<GroupRef> = db
        .fetch_all(
            query(
                "SELECT g.id AS group_id, g.chat_id, g.name, m.join_time FROM group_chat_member m \
                 JOIN group_chat g ON g.id = m.group_id AND g.tenant_id = m.tenant_id \
                 WHERE m.tenant_id = ? AND m.customer_id = ? AND m.status = 1 ORDER BY g.id",
            )
            .bind(tenant_id)
            .bind(id),
        )
        .await?;
    Ok(Some(CustomerDetail {
        customer: view,
        follow_users,
        groups,
        version,
    }))
}

/// Whether a staff id is the tenant's.
pub async fn staff_exists(tx: &mut Tx, tenant_id: i64, staff_id: i64) -> DbResult<bool> {
    Ok(tx
        .fetch_optional::<(i64,)>(
            query("SELECT id FROM staff WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(staff_id),
        )
        .await?
        .is_some())
}

/// Which of these ids are the tenant's customers (for batch operations).
pub async fn existing_ids(tx: &mut Tx, tenant_id: i64, ids: &[i64]) -> DbResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query("SELECT id FROM customer WHERE tenant_id = ? AND id IN ").bind(tenant_id);
    q.push_in_list(ids.iter().copied());
    Ok(tx
        .fetch_all::<(i64,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

/// Which of these customers are blacklisted: every send, SOP and workflow drops them.
pub async fn blacklisted_among(db: &Db, tenant_id: i64, ids: &[i64]) -> DbResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query("SELECT id FROM customer WHERE tenant_id = ? AND blacklisted = 1 AND id IN ")
        .bind(tenant_id);
    q.push_in_list(ids.iter().copied());
    Ok(db
        .fetch_all::<(i64,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

/// 404 unless the customer is the tenant's (checked first, so another tenant's id is a 404
/// before any field of the body is judged).
pub async fn version_tx_check(
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
) -> Result<(), crate::http::ApiError> {
    let found = tx
        .fetch_optional::<(i64,)>(
            query("SELECT id FROM customer WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    found.map(|_| ()).ok_or_else(super::customer_not_found)
}
