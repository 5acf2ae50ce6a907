//! The send engine's SQL: tasks, per-customer results, batches. Result tables reach 100,000 rows
//! per task, so targets are resolved with one `INSERT … SELECT` in the database and batches are
//! cut by id ranges — nothing here loads a whole task into memory.

use scrm_db::{Db, DbResult, Query, Tx, query};
use serde::{Deserialize, Serialize};

use super::{BATCH_SIZE, batch, status};

/// Who a task targets (seed 004's `target`): customers by id, by tag, by group chat; a customer
/// in several is targeted once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    pub tag_ids: Vec<i64>,
    #[serde(default)]
    pub group_ids: Vec<i64>,
    #[serde(default)]
    pub customer_ids: Vec<i64>,
}

impl Target {
    /// Nothing selected.
    pub fn is_empty(&self) -> bool {
        self.tag_ids.is_empty() && self.group_ids.is_empty() && self.customer_ids.is_empty()
    }

    /// Seed 004's target_type column.
    pub fn target_type(&self) -> &'static str {
        match (
            !self.tag_ids.is_empty(),
            !self.group_ids.is_empty(),
            !self.customer_ids.is_empty(),
        ) {
            (true, false, false) => "TAG",
            (false, true, false) => "GROUP",
            (false, false, true) => "CUSTOMER_IDS",
            _ => "MIXED",
        }
    }

    /// `(c.id IN … OR c.id IN (tagged) OR c.id IN (group members))` for customer alias `c`.
    fn condition(&self, tenant_id: i64) -> Query {
        let mut q = query(" AND (1 = 0");
        if !self.customer_ids.is_empty() {
            q.push_sql(" OR c.id IN ");
            q.push_in_list(self.customer_ids.iter().copied());
        }
        if !self.tag_ids.is_empty() {
            q.push_sql(
                " OR c.id IN (SELECT ct.customer_id FROM customer_tag ct WHERE ct.tenant_id = ?",
            )
            .push_bind(tenant_id)
            .push_sql(" AND ct.tag_id IN ");
            q.push_in_list(self.tag_ids.iter().copied());
            q.push_sql(")");
        }
        if !self.group_ids.is_empty() {
            q.push_sql(
                " OR c.id IN (SELECT m.customer_id FROM group_chat_member m WHERE m.tenant_id = ?",
            )
            .push_bind(tenant_id)
            .push_sql(" AND m.status = 1 AND m.customer_id IS NOT NULL AND m.group_id IN ");
            q.push_in_list(self.group_ids.iter().copied());
            q.push_sql(")");
        }
        q.push_sql(")");
        q
    }
}

/// Customers a target selects that can receive a message (not blacklisted, not deleted).
pub async fn count_sendable(db: &Db, tenant_id: i64, target: &Target) -> DbResult<i64> {
    if target.is_empty() {
        return Ok(0);
    }
    let mut q = query(
        "SELECT COUNT(*) FROM customer c WHERE c.tenant_id = ? AND c.blacklisted = 0 AND c.status <> 0",
    )
    .bind(tenant_id);
    q.append(&target.condition(tenant_id));
    db.fetch_i64(q).await
}

/// A task row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub tenant_id: i64,
    pub user_id: i64,
    pub source: String,
    pub task_type: i64,
    pub sender_account_id: Option<String>,
    pub task_name: Option<String>,
    pub target_type: String,
    pub target_ids: String,
    pub message_type: Option<i64>,
    pub message_content: Option<String>,
    pub action: Option<String>,
    pub target_count: i64,
    pub success_count: i64,
    pub failed_count: i64,
    pub status: String,
    pub scheduled_time: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub create_time: i64,
    pub update_time: i64,
    /// Every sender account (JSON array) of a task with several or with device accounts.
    pub sender_account_ids: Option<String>,
}

impl TaskRow {
    /// The stored target.
    pub fn target(&self) -> Target {
        serde_json::from_str(&self.target_ids).unwrap_or_default()
    }
}

/// The task's columns, for `SELECT`s.
pub const TASK_COLUMNS: &str = "id, tenant_id, user_id, source, task_type, sender_account_id, task_name, \
    target_type, target_ids, message_type, message_content, action, target_count, success_count, \
    failed_count, status, scheduled_time, started_at, finished_at, error, create_time, update_time, \
    sender_account_ids";

/// A task to store.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub source: &'static str,
    pub task_type: i64,
    pub sender: Option<String>,
    /// Several sender accounts, or device accounts among them (see `devices::group_send`);
    /// `None` for the one-WeCom-sender task.
    pub senders: Option<Vec<String>>,
    pub task_name: Option<String>,
    pub target: Target,
    pub message_type: Option<i64>,
    pub message_content: Option<serde_json::Value>,
    pub action: Option<serde_json::Value>,
    pub scheduled_time: Option<i64>,
}

/// Store a PENDING task; returns its id.
pub async fn insert_task(
    tx: &mut Tx,
    tenant_id: i64,
    user_id: i64,
    t: &NewTask,
    now: i64,
) -> DbResult<i64> {
    tx.insert_id(
        query(
            "INSERT INTO t_group_send_task (tenant_id, user_id, source, task_type, sender_account_id, \
             task_name, target_type, target_ids, message_type, message_content, action, status, \
             scheduled_time, create_time, update_time, sender_account_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(t.source)
        .bind(t.task_type)
        .bind(t.sender.clone())
        .bind(t.task_name.clone())
        .bind(t.target.target_type())
        .bind(serde_json::to_string(&t.target).unwrap_or_default())
        .bind(t.message_type)
        .bind(t.message_content.as_ref().map(|v| v.to_string()))
        .bind(t.action.as_ref().map(|v| v.to_string()))
        .bind(status::PENDING)
        .bind(t.scheduled_time)
        .bind(now)
        .bind(now)
        .bind(
            t.senders
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_default()),
        ),
    )
    .await
}

/// One of the tenant's tasks.
pub async fn get_task(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<TaskRow>> {
    db.fetch_optional(task_query(tenant_id, id)).await
}

/// The query of [`get_task`], to run in a transaction (a detail read from one snapshot).
pub fn task_query(tenant_id: i64, id: i64) -> scrm_db::Query {
    query(format!(
        "SELECT {TASK_COLUMNS} FROM t_group_send_task WHERE tenant_id = ? AND id = ?"
    ))
    .bind(tenant_id)
    .bind(id)
}

/// A task by id alone (jobs carry the tenant in their row; the id is enough).
pub async fn task_by_id(db: &Db, id: i64) -> DbResult<Option<TaskRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {TASK_COLUMNS} FROM t_group_send_task WHERE id = ?"
        ))
        .bind(id),
    )
    .await
}

/// Set a task's status (and error), unless it is already final.
pub async fn set_status(
    db: &Db,
    task_id: i64,
    new: &str,
    error: Option<&str>,
    now: i64,
) -> DbResult<bool> {
    let mut q = query("UPDATE t_group_send_task SET status = ?, update_time = ?")
        .bind(new)
        .bind(now);
    if let Some(e) = error {
        q.push_sql(", error = ?").push_bind(e);
    }
    if status::is_final(new) {
        q.push_sql(", finished_at = ?").push_bind(now);
    }
    q.push_sql(" WHERE id = ? AND status IN ('PENDING', 'PROCESSING')")
        .push_bind(task_id);
    Ok(db.execute(q).await?.rows_affected > 0)
}

/// Resolve a task's targets into result rows, once: PENDING for customers who can be sent to,
/// FAILED with the reason for blacklisted, deleted and ownerless ones. Returns the row count.
pub async fn resolve_targets(tx: &mut Tx, task: &TaskRow, now: i64) -> DbResult<i64> {
    let target = task.target();
    if target.is_empty() {
        return Ok(0);
    }
    let mut q = query(
        "INSERT INTO t_group_send_result (tenant_id, task_id, customer_id, external_userid, \
         sender_userid, status, error_message, create_time, update_time) \
         SELECT c.tenant_id, ?, c.id, c.external_userid, s.userid, \
         CASE WHEN c.blacklisted = 1 OR c.status = 0 THEN 'FAILED' ELSE 'PENDING' END, \
         CASE WHEN c.blacklisted = 1 THEN 'customer is blacklisted' \
              WHEN c.status = 0 THEN 'customer was deleted' ELSE NULL END, ?, ? \
         FROM customer c LEFT JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
         WHERE c.tenant_id = ?",
    )
    .bind(task.id)
    .bind(now)
    .bind(now)
    .bind(task.tenant_id);
    q.append(&target.condition(task.tenant_id));
    let n = tx.execute(q).await?.rows_affected;
    if task.sender_account_ids.is_some() {
        // Several senders, or device accounts: each customer gets the one that can reach it.
        let senders = crate::devices::group_send::senders_of(task);
        crate::devices::group_send::assign(tx, task, &senders).await?;
        return Ok(i64::try_from(n).unwrap_or(i64::MAX));
    }
    match &task.sender_account_id {
        // One sender for all: WeCom's fail_list tells who is not that member's customer.
        Some(sender) => {
            tx.execute(
                query("UPDATE t_group_send_result SET sender_userid = ? WHERE task_id = ?")
                    .bind(sender)
                    .bind(task.id),
            )
            .await?;
        }
        None => {
            tx.execute(
                query(
                    "UPDATE t_group_send_result SET status = 'FAILED', error_message = 'customer has no owner staff' \
                     WHERE task_id = ? AND status = 'PENDING' AND sender_userid IS NULL",
                )
                .bind(task.id),
            )
            .await?;
            if task.task_type == 1 {
                // Each customer's owner sends: an owner WeCom would refuse as sender (disabled,
                // not activated, left — seed 004's OFFLINE / EXPIRED) is named per customer
                // here instead of costing a call that fails with 40003.
                tx.execute(
                    query(
                        "UPDATE t_group_send_result SET status = 'FAILED', error_message = ? \
                         WHERE task_id = ? AND status = 'PENDING' AND sender_userid IN \
                         (SELECT s.userid FROM staff s WHERE s.tenant_id = ? AND s.status <> 1)",
                    )
                    .bind(OWNER_NOT_ACTIVE)
                    .bind(task.id)
                    .bind(task.tenant_id),
                )
                .await?;
            }
        }
    }
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The reason of a result not sent because its customer's owner cannot send in WeCom.
pub const OWNER_NOT_ACTIVE: &str = "the customer's owner is not an active WeCom member (OFFLINE or EXPIRED: disabled, not activated or left)";

/// The reason of a result not sent because the customer's monthly quota is used up.
pub fn quota_reason(quota: i64) -> String {
    format!("monthly mass-message quota reached ({quota} this month, 客户本月群发次数已达上限)")
}

/// Record FAILED, with the quota reason, the task's PENDING results whose customer already has
/// `quota` mass messages of this tenant this month (since `month_start`): sent (SUCCESS) or
/// waiting for the sender's confirmation (SUBMITTED) in a WeCom batch of another task, or sent
/// by an SOP or workflow step (`mass_message_log`). Returns how many were held back.
pub async fn apply_monthly_quota(
    tx: &mut Tx,
    task: &TaskRow,
    quota: i64,
    month_start: i64,
    now: i64,
) -> DbResult<u64> {
    // The inner SELECT is wrapped in a derived table: MySQL refuses a subquery on the table
    // being updated otherwise.
    Ok(tx
        .execute(
            query(
                "UPDATE t_group_send_result SET status = 'FAILED', error_message = ?, update_time = ? \
                 WHERE task_id = ? AND status = 'PENDING' AND customer_id IN (SELECT q.customer_id FROM \
                 (SELECT u.customer_id FROM (\
                 SELECT r.customer_id FROM t_group_send_result r WHERE r.tenant_id = ? AND r.task_id <> ? \
                 AND r.batch_id IS NOT NULL AND r.status IN ('SUCCESS', 'SUBMITTED') AND r.update_time >= ? \
                 UNION ALL SELECT m.customer_id FROM mass_message_log m WHERE m.tenant_id = ? AND m.sent_at >= ?\
                 ) u GROUP BY u.customer_id HAVING COUNT(*) >= ?) q)",
            )
            .bind(quota_reason(quota))
            .bind(now)
            .bind(task.id)
            .bind(task.tenant_id)
            .bind(task.id)
            .bind(month_start)
            .bind(task.tenant_id)
            .bind(month_start)
            .bind(quota),
        )
        .await?
        .rows_affected)
}

/// Mass messages `customer_id` has had from the tenant since `month_start`: group-send and
/// mass-task results sent or awaiting confirmation, and SOP / workflow sends.
pub async fn month_count(
    db: &Db,
    tenant_id: i64,
    customer_id: i64,
    month_start: i64,
) -> DbResult<i64> {
    let sent = db
        .fetch_i64(
            query(
                "SELECT COUNT(*) FROM t_group_send_result WHERE tenant_id = ? AND customer_id = ? \
                 AND update_time >= ? AND batch_id IS NOT NULL AND status IN ('SUCCESS', 'SUBMITTED')",
            )
            .bind(tenant_id)
            .bind(customer_id)
            .bind(month_start),
        )
        .await?;
    let stepped = db
        .fetch_i64(
            query(
                "SELECT COUNT(*) FROM mass_message_log WHERE tenant_id = ? AND customer_id = ? AND sent_at >= ?",
            )
            .bind(tenant_id)
            .bind(customer_id)
            .bind(month_start),
        )
        .await?;
    Ok(sent + stepped)
}

/// Record an SOP or workflow message to a customer (`source` `sop` / `workflow`, `ref_id` its
/// step log row) for the monthly quota, in the transaction that logs the step done.
pub async fn log_mass_message(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    source: &str,
    ref_id: i64,
    now: i64,
) -> DbResult<()> {
    tx.execute(
        query(
            "INSERT INTO mass_message_log (tenant_id, customer_id, source, ref_id, sent_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(customer_id)
        .bind(source)
        .bind(ref_id)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// A planned batch.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub id: i64,
}

/// Cut the task's PENDING results into batches of at most [`BATCH_SIZE`] per sender, by id
/// ranges over the `(task_id, sender_userid, id)` index. Returns the batches and their senders.
pub async fn plan_batches(
    tx: &mut Tx,
    task: &TaskRow,
    batch_size: i64,
    now: i64,
) -> DbResult<Vec<(i64, String)>> {
    let size = batch_size.clamp(1, BATCH_SIZE);
    let senders: Vec<(String,)> = tx
        .fetch_all(
            query(
                "SELECT DISTINCT sender_userid FROM t_group_send_result \
                 WHERE task_id = ? AND status = 'PENDING' AND batch_id IS NULL AND sender_userid IS NOT NULL \
                 ORDER BY sender_userid",
            )
            .bind(task.id),
        )
        .await?;
    let mut out = Vec::new();
    for (sender,) in senders {
        loop {
            let base = "FROM t_group_send_result WHERE task_id = ? AND sender_userid = ? \
                        AND status = 'PENDING' AND batch_id IS NULL";
            let first: Option<(i64,)> = tx
                .fetch_optional(
                    query(format!("SELECT id {base} ORDER BY id LIMIT 1"))
                        .bind(task.id)
                        .bind(&sender),
                )
                .await?;
            let Some((first,)) = first else { break };
            let last: Option<(i64,)> = tx
                .fetch_optional(
                    query(format!("SELECT id {base} ORDER BY id LIMIT 1 OFFSET ?"))
                        .bind(task.id)
                        .bind(&sender)
                        .bind(size - 1),
                )
                .await?;
            let last = match last {
                Some((id,)) => id,
                None => {
                    tx.fetch_i64(
                        query(format!("SELECT MAX(id) {base}"))
                            .bind(task.id)
                            .bind(&sender),
                    )
                    .await?
                }
            };
            let batch_id = tx
                .insert_id(
                    query(
                        "INSERT INTO group_send_batch (tenant_id, task_id, sender_userid, first_result_id, \
                         last_result_id, recipient_count, state, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    )
                    .bind(task.tenant_id)
                    .bind(task.id)
                    .bind(&sender)
                    .bind(first)
                    .bind(last)
                    .bind(batch::PLANNED)
                    .bind(now)
                    .bind(now),
                )
                .await?;
            let n = tx
                .execute(
                    query(format!(
                        "UPDATE t_group_send_result SET batch_id = ? {} AND id BETWEEN ? AND ?",
                        base.replacen("FROM t_group_send_result", "", 1)
                    ))
                    .bind(batch_id)
                    .bind(task.id)
                    .bind(&sender)
                    .bind(first)
                    .bind(last),
                )
                .await?
                .rows_affected;
            tx.execute(
                query("UPDATE group_send_batch SET recipient_count = ? WHERE id = ?")
                    .bind(n)
                    .bind(batch_id),
            )
            .await?;
            out.push((batch_id, sender.clone()));
        }
    }
    Ok(out)
}

/// A batch row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: i64,
    pub tenant_id: i64,
    pub task_id: i64,
    pub sender_userid: String,
    pub recipient_count: i64,
    pub state: i64,
    pub msgid: Option<String>,
    pub calls: i64,
    pub attempt_started_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub reminders: i64,
    pub last_reminded_at: Option<i64>,
}

/// One batch.
pub async fn get_batch(db: &Db, id: i64) -> DbResult<Option<BatchRow>> {
    db.fetch_optional(
        query(
            "SELECT id, tenant_id, task_id, sender_userid, recipient_count, state, msgid, calls, \
             attempt_started_at, submitted_at, reminders, last_reminded_at FROM group_send_batch WHERE id = ?",
        )
        .bind(id),
    )
    .await
}

/// The external ids of a batch's recipients still waiting to be submitted (≤ 10,000).
pub async fn batch_recipients(db: &Db, batch_id: i64) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = db
        .fetch_all(
            query(
                "SELECT external_userid FROM t_group_send_result WHERE batch_id = ? \
                 AND external_userid IS NOT NULL ORDER BY id",
            )
            .bind(batch_id),
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Set results of a batch to a status (with a reason) where they are in `from`; `only` limits
/// it to those external ids (chunked, 1,000 a statement).
pub async fn set_results(
    tx: &mut Tx,
    batch_id: i64,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
    only: Option<&[String]>,
    now: i64,
) -> DbResult<u64> {
    let run = |ids: Option<&[String]>| {
        let mut q = query(
            "UPDATE t_group_send_result SET status = ?, error_message = ?, update_time = ? WHERE batch_id = ? AND status IN ",
        )
        .bind(to)
        .bind(reason)
        .bind(now)
        .bind(batch_id);
        q.push_in_list(from.iter().map(|s| s.to_string()));
        if let Some(ids) = ids {
            q.push_sql(" AND external_userid IN ");
            q.push_in_list(ids.iter().cloned());
        }
        q
    };
    let mut n = 0;
    match only {
        None => n += tx.execute(run(None)).await?.rows_affected,
        Some(ids) => {
            for chunk in ids.chunks(1000) {
                n += tx.execute(run(Some(chunk))).await?.rows_affected;
            }
        }
    }
    Ok(n)
}

/// Update a task's counters from its results in one statement (two batches finishing at once
/// must not overwrite fresh counts with stale ones), and return (total, success, failed).
pub async fn refresh_counts(db: &Db, task_id: i64, now: i64) -> DbResult<(i64, i64, i64)> {
    let count = |cond: &str| {
        format!("(SELECT COUNT(*) FROM t_group_send_result r WHERE r.task_id = t.id{cond})")
    };
    db.execute(
        query(format!(
            "UPDATE t_group_send_task AS t SET target_count = {}, success_count = {}, failed_count = {}, update_time = ? WHERE t.id = ?",
            count(""),
            count(" AND r.status = 'SUCCESS'"),
            count(" AND r.status = 'FAILED'"),
        ))
        .bind(now)
        .bind(task_id),
    )
    .await?;
    db.fetch_optional::<(i64, i64, i64)>(
        query(
            "SELECT target_count, success_count, failed_count FROM t_group_send_task WHERE id = ?",
        )
        .bind(task_id),
    )
    .await
    .map(|r| r.unwrap_or_default())
}

/// When no batch is open any more and no result is waiting, set the task's final status from
/// its counts. The order matters: results only ever leave PENDING/SUBMITTED, so once none is
/// seen waiting, counts read *afterwards* are final. (Counting first let a result that turned
/// SUCCESS between the count and the check finish a fully successful task as FAILED.)
pub async fn finish_if_done(db: &Db, task_id: i64, now: i64) -> DbResult<()> {
    let open = db
        .fetch_i64(
            query("SELECT COUNT(*) FROM group_send_batch WHERE task_id = ? AND state IN (0, 1, 2)")
                .bind(task_id),
        )
        .await?;
    if open > 0 {
        refresh_counts(db, task_id, now).await?;
        return Ok(());
    }
    let pending = db
        .fetch_i64(
            query(
                "SELECT COUNT(*) FROM t_group_send_result WHERE task_id = ? AND status IN ('PENDING', 'SUBMITTED')",
            )
            .bind(task_id),
        )
        .await?;
    let (total, ok, _) = refresh_counts(db, task_id, now).await?;
    if pending > 0 {
        return Ok(());
    }
    let fin = if total > 0 && ok == total {
        status::COMPLETED
    } else if ok > 0 {
        status::PARTIAL_SUCCESS
    } else {
        status::FAILED
    };
    set_status(db, task_id, fin, None, now).await?;
    Ok(())
}
