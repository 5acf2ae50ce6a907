//! 在职继承 / 离职继承 of customer group chats (WeCom's `groupchat/onjob_transfer` and
//! `groupchat/transfer`), with a record per chat like the customer transfers.
//!
//! `POST /api/v1/groups/transfer` records one transfer per chat, `waiting`, with a
//! `customers.group_chat_transfer` job in the same transaction (100 chats a call: WeCom's batch).
//! The job moves them to `in_progress`, calls WeCom, and settles each chat at once: WeCom answers
//! the whole batch synchronously with the chats it refused (905xx per chat: not resigned, owner
//! unchanged, transferred too often …) — those are `failed` with the code and its meaning; the
//! others are `done` and the chat's owner changes in scrm. A retried call that finds the new
//! owner already in place (90504 "owner not changed") counts as done. A WeCom outage retries the
//! job; a refusal of the whole call (e.g. the new owner cannot take chats) fails every chat.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::client::{GroupChatTransferRequest, errcode_meaning};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::push::wecom_for;
use super::{check_ids, store};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

/// Job kind: transfer chats in WeCom.
pub const JOB: &str = "customers.group_chat_transfer";
/// WeCom's batch.
const BATCH: usize = 100;

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/api/v1/groups/transfer",
            Access::Permission(perm::GROUP_CHAT_MANAGE),
            "在职继承 (on_job) or 离职继承 (resigned) of group chats to a staff member",
            start,
        )
        .route(
            M::GET,
            "/api/v1/groups/transfers",
            Access::Permission(perm::GROUP_CHAT_VIEW),
            "Group chat transfer records (groupId, status: waiting, in_progress, done, failed)",
            list,
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartBody {
    group_ids: Option<Vec<i64>>,
    to_staff_id: Option<i64>,
    kind: Option<String>,
}

/// A group chat transfer as shown.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GroupTransferRow {
    pub id: i64,
    pub group_id: i64,
    pub chat_id: String,
    pub kind: String,
    pub from_userid: Option<String>,
    pub to_staff_id: i64,
    pub to_userid: String,
    pub status: String,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
    #[serde(skip)]
    pub created_at: i64,
    #[serde(skip)]
    pub updated_at: i64,
}

impl GroupTransferRow {
    fn view(self) -> Value {
        let (c, u) = (self.created_at, self.updated_at);
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["createTime"] = json!(iso(c));
        v["updateTime"] = json!(iso(u));
        v
    }
}

const COLUMNS: &str = "id, group_id, chat_id, kind, from_userid, to_staff_id, to_userid, status, errcode, reason, created_at, updated_at";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    transfer_ids: Vec<i64>,
}

async fn start(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<StartBody>,
) -> ApiResult<Reply<Value>> {
    let ids = check_ids("groupIds", b.group_ids, 1000)?;
    let kind = b
        .kind
        .ok_or_else(|| ApiError::field("kind", "is required: on_job or resigned"))?;
    if kind != "on_job" && kind != "resigned" {
        return Err(ApiError::field("kind", "on_job or resigned"));
    }
    let to = b
        .to_staff_id
        .ok_or_else(|| ApiError::field("toStaffId", "is required"))?;
    let mut tx = state.db.begin().await?;
    if !store::staff_exists(&mut tx, user.tenant_id, to).await? {
        return Err(ApiError::field("toStaffId", "no such staff member"));
    }
    let to_userid: String = tx
        .fetch_one::<(String,)>(
            query("SELECT userid FROM staff WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(to),
        )
        .await?
        .0;
    let mut q =
        query("SELECT id, chat_id, owner_userid FROM group_chat WHERE tenant_id = ? AND id IN ")
            .bind(user.tenant_id);
    q.push_in_list(ids.iter().copied());
    let groups: Vec<(i64, String, Option<String>)> = tx.fetch_all(q).await?;
    let unknown: Vec<String> = ids
        .iter()
        .filter(|i| !groups.iter().any(|g| g.0 == **i))
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::field(
            "groupIds",
            format!("no such group chat: {}", unknown.join(", ")),
        ));
    }
    // One open transfer per chat at a time.
    let mut q = query("SELECT DISTINCT group_id FROM group_chat_transfer WHERE tenant_id = ? AND status IN ('waiting', 'in_progress') AND group_id IN ")
        .bind(user.tenant_id);
    q.push_in_list(ids.iter().copied());
    let open: Vec<(i64,)> = tx.fetch_all(q).await?;
    if !open.is_empty() {
        let open: Vec<String> = open.iter().map(|o| o.0.to_string()).collect();
        return Err(ApiError::field(
            "groupIds",
            format!("a transfer is already under way for: {}", open.join(", ")),
        ));
    }
    let now = now_ms();
    let mut created_ids = Vec::new();
    for (gid, chat_id, owner) in &groups {
        created_ids.push(
            tx.insert_id(
                query("INSERT INTO group_chat_transfer (tenant_id, group_id, chat_id, kind, from_userid, to_staff_id, to_userid, status, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?, ?, ?)")
                    .bind(user.tenant_id)
                    .bind(*gid)
                    .bind(chat_id.as_str())
                    .bind(kind.as_str())
                    .bind(owner.clone())
                    .bind(to)
                    .bind(to_userid.as_str())
                    .bind(user.id)
                    .bind(now)
                    .bind(now),
            )
            .await?,
        );
    }
    for chunk in created_ids.chunks(BATCH) {
        let job = NewJob::new(
            JOB,
            &Payload {
                transfer_ids: chunk.to_vec(),
            },
        )
        .map_err(anyhow::Error::new)?
        .tenant(user.tenant_id);
        state
            .jobs
            .enqueue(&mut tx, job)
            .await
            .map_err(anyhow::Error::new)?;
    }
    audit::record(
        &mut tx,
        &user,
        "group_chat.transfer",
        "group_chat",
        0,
        json!({"groupIds": ids, "toStaffId": to, "kind": kind, "transferIds": created_ids}),
    )
    .await?;
    let rows = load(&mut tx, user.tenant_id, &created_ids).await?;
    tx.commit().await?;
    Ok(created(json!({
        "list": rows.into_iter().map(GroupTransferRow::view).collect::<Vec<_>>()
    })))
}

async fn load(
    tx: &mut scrm_db::Tx,
    tenant_id: i64,
    ids: &[i64],
) -> scrm_db::DbResult<Vec<GroupTransferRow>> {
    let mut q = query(format!(
        "SELECT {COLUMNS} FROM group_chat_transfer WHERE tenant_id = ? AND id IN "
    ))
    .bind(tenant_id);
    q.push_in_list(ids.iter().copied());
    q.push_sql(" ORDER BY id");
    tx.fetch_all(q).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    group_id: Option<i64>,
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(g) = q.group_id {
        w.push_sql(" AND group_id = ?").push_bind(g);
    }
    if let Some(s) = q.status {
        if !super::transfer::STATUSES.contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                "one of waiting, in_progress, done, failed",
            ));
        }
        w.push_sql(" AND status = ?").push_bind(s);
    }
    let (rows, total): (Vec<GroupTransferRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM group_chat_transfer",
            format!("SELECT {COLUMNS} FROM group_chat_transfer"),
            &w,
            "id",
        )
        .await?;
    Ok(ok(ListPage {
        list: rows.into_iter().map(GroupTransferRow::view).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// Settle one transfer; a done one changes the chat's owner and announces it.
async fn settle(
    db: &Db,
    tenant_id: i64,
    row: &GroupTransferRow,
    failure: Option<(i64, String)>,
    now: i64,
) -> scrm_db::DbResult<()> {
    let mut tx = db.begin().await?;
    let (status, errcode, reason) = match &failure {
        None => ("done", None, None),
        Some((code, why)) => (
            "failed",
            Some(*code),
            Some(why.chars().take(255).collect::<String>()),
        ),
    };
    tx.execute(
        query("UPDATE group_chat_transfer SET status = ?, errcode = ?, reason = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(status)
            .bind(errcode)
            .bind(reason)
            .bind(now)
            .bind(tenant_id)
            .bind(row.id),
    )
    .await?;
    if failure.is_none() {
        tx.execute(
            query("UPDATE group_chat SET owner_userid = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
                .bind(row.to_userid.as_str())
                .bind(now)
                .bind(tenant_id)
                .bind(row.group_id),
        )
        .await?;
        events::emit(
            &mut tx,
            tenant_id,
            events::kind::GROUP_CHAT_TRANSFERRED,
            row.group_id,
            json!({"groupId": row.group_id, "chatId": row.chat_id, "kind": row.kind,
                   "fromUserid": row.from_userid, "toUserid": row.to_userid}),
        )
        .await?;
    }
    tx.commit().await
}

/// `customers.group_chat_transfer`: hand the payload's chats over in WeCom.
pub async fn run(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: Payload = serde_json::from_value(p)?;
    let tenant_id = ctx
        .tenant_id
        .ok_or_else(|| JobError::permanent("a group chat transfer job needs a tenant"))?;
    if p.transfer_ids.is_empty() {
        return Ok(JobOutcome::Done);
    }
    // Waiting ones, and in_progress ones a previous attempt left (its call may have happened).
    let mut q = query(format!(
        "SELECT {COLUMNS} FROM group_chat_transfer WHERE tenant_id = ? AND status IN ('waiting', 'in_progress') AND id IN "
    ))
    .bind(tenant_id);
    q.push_in_list(p.transfer_ids.iter().copied());
    q.push_sql(" ORDER BY id");
    let rows: Vec<GroupTransferRow> = state.db.fetch_all(q).await?;
    let Some(first) = rows.first() else {
        return Ok(JobOutcome::Done);
    };
    let retry = rows.iter().any(|r| r.status == "in_progress");
    let mut q = query("UPDATE group_chat_transfer SET status = 'in_progress', updated_at = ? WHERE tenant_id = ? AND status = 'waiting' AND id IN ")
        .bind(ctx.now_ms())
        .bind(tenant_id);
    q.push_in_list(rows.iter().map(|r| r.id));
    state.db.execute(q).await?;
    let fail_all = |code: i64, why: String| {
        let (db, rows) = (state.db.clone(), &rows);
        async move {
            for r in rows {
                settle(&db, tenant_id, r, Some((code, why.clone())), now_ms()).await?;
            }
            Ok::<_, JobError>(())
        }
    };
    let wecom = match wecom_for(&state, tenant_id).await {
        Ok(w) => w,
        Err(f) if f.transient && !ctx.is_last_attempt() => {
            return Err(JobError::retryable(f.message));
        }
        Err(f) => {
            fail_all(0, f.message.clone()).await?;
            return Err(JobError::permanent(f.message));
        }
    };
    let req = GroupChatTransferRequest {
        chat_id_list: rows.iter().map(|r| r.chat_id.clone()).collect(),
        new_owner: first.to_userid.clone(),
    };
    let answer = if first.kind == "resigned" {
        wecom.app.groupchat_transfer(&req).await
    } else {
        wecom.app.groupchat_onjob_transfer(&req).await
    };
    let failed = match answer {
        Ok(f) => f,
        Err(e) if e.is_transient() && !ctx.is_last_attempt() => {
            return Err(JobError::retryable(e.to_string()));
        }
        Err(e) => {
            let code = e.errcode().unwrap_or(0);
            fail_all(code, e.to_string()).await?;
            return Ok(JobOutcome::Done);
        }
    };
    let now = ctx.now_ms();
    for r in &rows {
        let refused = failed.iter().find(|f| f.chat_id == r.chat_id);
        let failure = match refused {
            // A repeated call after one that went through: the owner is already the new one.
            Some(f) if f.errcode == 90504 && retry => None,
            Some(f) => {
                let meaning = errcode_meaning(f.errcode).unwrap_or(f.errmsg.as_str());
                Some((f.errcode, format!("{} {meaning}", f.errcode)))
            }
            None => None,
        };
        settle(&state.db, tenant_id, r, failure, now).await?;
    }
    Ok(JobOutcome::Done)
}
