//! Pushing tag changes made in scrm to WeCom, as jobs.
//!
//! Each change writes a `wecom_push` row and its job in the transaction of the change: tags
//! created or renamed (add_corp_tag / edit_corp_tag), groups renamed, tags and groups deleted
//! (del_corp_tag), customers' tags added or removed (mark_tag). Changes that came from WeCom
//! (sync, callbacks) are not pushed back. A tenant without a WeCom app pushes nothing.
//!
//! The jobs reconcile instead of replaying: a tag job creates the tag in WeCom when it has no
//! WeCom id yet and renames it otherwise, with the name the tag has when the job runs; a mark
//! job sends, for the tags that changed, whether the customer carries each one *now*. So jobs
//! that run late, twice or out of order still leave WeCom as scrm is. Jobs of one tenant's tags
//! run one at a time (a tag's create finishes before its rename starts), and a customer's mark
//! jobs one at a time (per-key limits).
//!
//! The row moves `pending` → `done`, or `failed` with WeCom's reason when WeCom refuses or the
//! attempts run out (then the job is in the dead letters too). `GET /api/v1/wecom-pushes` lists
//! them; `POST /api/v1/wecom-pushes/{id}/retry` runs a failed one again.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, DbError, DbResult, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, Jobs, KeyLimit, NewJob, Scope, Target};
use scrm_wecom::WeComError;
use scrm_wecom::client::{
    AddCorpTagRequest, DelCorpTagRequest, EditCorpTagRequest, MarkTagRequest, NewTag,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::operation::wecom::{TenantWeCom, client_for, in_process};
use crate::state::{AppState, iso, now_ms};

/// Job kind of every tag and mark push.
pub const PUSH: &str = "customers.wecom_push";

/// What a push is about.
pub mod target {
    pub const TAG: &str = "tag";
    pub const GROUP: &str = "tag_group";
    pub const CUSTOMER: &str = "customer";
}

/// Push statuses.
pub const STATUSES: &[&str] = &["pending", "done", "failed"];

/// Customers' mark jobs spread over this many keys per tenant (one customer, one key).
const MARK_LANES: i64 = 8;

/// A push as stored and listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PushRow {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub target: String,
    pub target_id: i64,
    pub action: String,
    #[serde(skip)]
    pub detail: String,
    pub status: String,
    pub error: Option<String>,
    pub job_id: Option<i64>,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, target, target_id, action, detail, status, error, job_id, \
                       attempts, created_at, updated_at";

/// Whether the tenant has a WeCom app: registered in this process, from the environment, or an
/// enabled stored configuration.
pub async fn wecom_enabled(tx: &mut Tx, tenant_id: i64) -> DbResult<bool> {
    if in_process(tenant_id) {
        return Ok(true);
    }
    Ok(tx
        .fetch_optional::<(i64,)>(
            query("SELECT id FROM wework_config WHERE tenant_id = ? AND enabled = 1")
                .bind(tenant_id),
        )
        .await?
        .is_some())
}

/// The WeCom id of a tag or tag group (read it before deleting the row).
pub async fn wecom_id(
    tx: &mut Tx,
    tenant_id: i64,
    what: &str,
    id: i64,
) -> DbResult<Option<String>> {
    let sql = if what == target::GROUP {
        "SELECT wecom_group_id FROM tag_group WHERE tenant_id = ? AND id = ?"
    } else {
        "SELECT wecom_tag_id FROM tag WHERE tenant_id = ? AND id = ?"
    };
    Ok(tx
        .fetch_optional::<(Option<String>,)>(query(sql).bind(tenant_id).bind(id))
        .await?
        .and_then(|r| r.0))
}

/// The pushes of one request: knows once whether the tenant pushes at all.
pub struct Pushes<'a> {
    jobs: &'a Jobs,
    tenant_id: i64,
    on: bool,
}

impl<'a> Pushes<'a> {
    /// The pushes of `tenant_id`'s changes in `tx`.
    pub async fn new(jobs: &'a Jobs, tx: &mut Tx, tenant_id: i64) -> DbResult<Pushes<'a>> {
        let on = wecom_enabled(tx, tenant_id).await?;
        Ok(Self {
            jobs,
            tenant_id,
            on,
        })
    }

    /// A tag was created or renamed in scrm.
    pub async fn tag_saved(&self, tx: &mut Tx, tag_id: i64, action: &str) -> ApiResult<()> {
        self.record(tx, target::TAG, tag_id, action, json!({}), self.tag_lane())
            .await
    }

    /// A group was renamed (a group WeCom does not know yet gets its name with its first tag).
    pub async fn group_renamed(&self, tx: &mut Tx, group_id: i64) -> ApiResult<()> {
        if wecom_id(tx, self.tenant_id, target::GROUP, group_id)
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.record(
            tx,
            target::GROUP,
            group_id,
            "rename",
            json!({}),
            self.tag_lane(),
        )
        .await
    }

    /// A tag or group was deleted; `wecom_id` is the one it had (none: WeCom never had it, and
    /// a create still under way deletes what it made when it finds the row gone).
    pub async fn deleted(
        &self,
        tx: &mut Tx,
        what: &'static str,
        id: i64,
        wecom_id: Option<String>,
    ) -> ApiResult<()> {
        let Some(wecom_id) = wecom_id else {
            return Ok(());
        };
        self.record(
            tx,
            what,
            id,
            "delete",
            json!({"wecomId": wecom_id}),
            self.tag_lane(),
        )
        .await
    }

    /// A customer's tags changed (added or removed: the job reads which).
    pub async fn customer_tags(
        &self,
        tx: &mut Tx,
        customer_id: i64,
        tag_ids: &[i64],
    ) -> ApiResult<()> {
        if tag_ids.is_empty() {
            return Ok(());
        }
        let lane = format!(
            "wecom-mark:{}:{}",
            self.tenant_id,
            customer_id.rem_euclid(MARK_LANES)
        );
        self.record(
            tx,
            target::CUSTOMER,
            customer_id,
            "mark",
            json!({"tagIds": tag_ids}),
            lane,
        )
        .await
    }

    fn tag_lane(&self) -> String {
        format!("wecom-tags:{}", self.tenant_id)
    }

    async fn record(
        &self,
        tx: &mut Tx,
        what: &str,
        id: i64,
        action: &str,
        detail: Value,
        lane: String,
    ) -> ApiResult<()> {
        if !self.on {
            return Ok(());
        }
        let now = now_ms();
        let push_id = tx
            .insert_id(
                query(
                    "INSERT INTO wecom_push (tenant_id, target, target_id, action, detail, status, attempts, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                )
                .bind(self.tenant_id)
                .bind(what)
                .bind(id)
                .bind(action)
                .bind(detail.to_string())
                .bind(now)
                .bind(now),
            )
            .await?;
        let job = NewJob::new(PUSH, &json!({"pushId": push_id}))
            .map_err(anyhow::Error::new)?
            .tenant(self.tenant_id)
            .limited_by(lane, KeyLimit::concurrency(1));
        let job_id = self
            .jobs
            .enqueue(tx, job)
            .await
            .map_err(anyhow::Error::new)?
            .id;
        tx.execute(
            query("UPDATE wecom_push SET job_id = ? WHERE id = ?")
                .bind(job_id)
                .bind(push_id),
        )
        .await?;
        Ok(())
    }
}

/// Why a push did not go through, and whether waiting could help.
#[derive(Debug)]
pub(crate) struct Fail {
    pub message: String,
    pub transient: bool,
}

impl Fail {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }
}

impl From<WeComError> for Fail {
    fn from(e: WeComError) -> Self {
        Self {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Self {
            transient: true,
            message: e.to_string(),
        }
    }
}

/// The tenant's WeCom app for a job. Without any WeCom configuration waiting cannot help.
pub(crate) async fn wecom_for(state: &AppState, tenant_id: i64) -> Result<TenantWeCom, Fail> {
    match client_for(state, tenant_id).await {
        Ok(w) => Ok(w),
        Err(e) => {
            let configured = match state.db.begin().await {
                Ok(mut tx) => wecom_enabled(&mut tx, tenant_id).await.unwrap_or(true),
                Err(_) => true,
            };
            Err(Fail {
                message: format!("{e:#}"),
                transient: configured,
            })
        }
    }
}

/// What a successful run did.
enum Step {
    Done,
    /// Not yet possible (a tag WeCom does not know yet): look again then.
    WaitUntil(i64),
}

/// `customers.wecom_push`: one push, reconciled with scrm as it is now.
pub async fn run(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let id = p
        .get("pushId")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload has no pushId"))?;
    let Some(push) = state
        .db
        .fetch_optional::<PushRow>(
            query(format!("SELECT {COLUMNS} FROM wecom_push WHERE id = ?")).bind(id),
        )
        .await?
    else {
        return Ok(JobOutcome::Done);
    };
    if push.status == "done" {
        return Ok(JobOutcome::Done);
    }
    let outcome = match wecom_for(&state, push.tenant_id).await {
        Ok(w) => perform(&state.db, &w, &push, ctx.now_ms()).await,
        Err(f) => Err(f),
    };
    let now = ctx.now_ms();
    let set = |status: &'static str, error: Option<String>| {
        query("UPDATE wecom_push SET status = ?, error = ?, attempts = ?, updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(error)
            .bind(ctx.attempt)
            .bind(now)
            .bind(push.id)
    };
    match outcome {
        Ok(Step::WaitUntil(at)) => Ok(JobOutcome::RetryAt(at)),
        Ok(Step::Done) => {
            state.db.execute(set("done", None)).await?;
            Ok(JobOutcome::Done)
        }
        Err(f) => {
            let give_up = !f.transient || ctx.is_last_attempt();
            let message: String = f.message.chars().take(500).collect();
            let status = if give_up { "failed" } else { "pending" };
            state.db.execute(set(status, Some(message.clone()))).await?;
            Err(if give_up {
                JobError::permanent(message)
            } else {
                JobError::retryable(message)
            })
        }
    }
}

async fn perform(db: &Db, w: &TenantWeCom, p: &PushRow, now: i64) -> Result<Step, Fail> {
    let detail: Value = serde_json::from_str(&p.detail).unwrap_or_default();
    match (p.target.as_str(), p.action.as_str()) {
        (what, "delete") => {
            let id = detail["wecomId"].as_str().unwrap_or_default().to_string();
            let req = if what == target::GROUP {
                DelCorpTagRequest {
                    group_id: vec![id],
                    ..Default::default()
                }
            } else {
                DelCorpTagRequest {
                    tag_id: vec![id],
                    ..Default::default()
                }
            };
            w.app.del_corp_tag(&req).await?;
            Ok(Step::Done)
        }
        (target::TAG, _) => push_tag(db, w, p.tenant_id, p.target_id).await,
        (target::GROUP, _) => rename_group(db, w, p.tenant_id, p.target_id).await,
        (target::CUSTOMER, _) => mark(db, w, p, &detail, now).await,
        (what, action) => Err(Fail::permanent(format!("unknown push {what}/{action}"))),
    }
}

#[derive(sqlx::FromRow)]
struct TagNow {
    name: String,
    wecom_tag_id: Option<String>,
    group_id: i64,
    group_name: String,
    wecom_group_id: Option<String>,
}

/// Create the tag in WeCom (it has no WeCom id yet) or rename it there.
async fn push_tag(db: &Db, w: &TenantWeCom, tenant_id: i64, tag_id: i64) -> Result<Step, Fail> {
    let Some(tag) = db
        .fetch_optional::<TagNow>(
            query(
                "SELECT t.name, t.wecom_tag_id, t.group_id, g.name AS group_name, g.wecom_group_id \
                 FROM tag t JOIN tag_group g ON g.tenant_id = t.tenant_id AND g.id = t.group_id \
                 WHERE t.tenant_id = ? AND t.id = ?",
            )
            .bind(tenant_id)
            .bind(tag_id),
        )
        .await?
    else {
        return Ok(Step::Done); // deleted before it reached WeCom
    };
    if let Some(id) = tag.wecom_tag_id {
        w.app
            .edit_corp_tag(&EditCorpTagRequest {
                id,
                name: Some(tag.name),
                ..Default::default()
            })
            .await?;
        return Ok(Step::Done);
    }
    let group_name = tag.wecom_group_id.is_none().then(|| tag.group_name.clone());
    let group = w
        .app
        .add_corp_tag(&AddCorpTagRequest {
            group_id: tag.wecom_group_id.clone(),
            group_name,
            tag: vec![NewTag {
                name: tag.name.clone(),
                order: None,
            }],
            ..Default::default()
        })
        .await?;
    let made = group
        .tag
        .iter()
        .find(|t| t.name == tag.name)
        .ok_or_else(|| Fail::permanent("add_corp_tag did not return the tag"))?;
    let mut tx = db.begin().await?;
    tx.execute(
        query("UPDATE tag_group SET wecom_group_id = ? WHERE tenant_id = ? AND id = ? AND wecom_group_id IS NULL")
            .bind(group.group_id.as_str())
            .bind(tenant_id)
            .bind(tag.group_id),
    )
    .await?;
    let kept = tx
        .execute(
            query("UPDATE tag SET wecom_tag_id = ? WHERE tenant_id = ? AND id = ? AND wecom_tag_id IS NULL")
                .bind(made.id.as_str())
                .bind(tenant_id)
                .bind(tag_id),
        )
        .await?
        .rows_affected;
    tx.commit().await?;
    if kept == 0 {
        // Deleted in scrm while WeCom was creating it: delete it there too.
        w.app
            .del_corp_tag(&DelCorpTagRequest {
                tag_id: vec![made.id.clone()],
                ..Default::default()
            })
            .await?;
    }
    Ok(Step::Done)
}

async fn rename_group(
    db: &Db,
    w: &TenantWeCom,
    tenant_id: i64,
    group_id: i64,
) -> Result<Step, Fail> {
    let row: Option<(String, Option<String>)> = db
        .fetch_optional(
            query("SELECT name, wecom_group_id FROM tag_group WHERE tenant_id = ? AND id = ?")
                .bind(tenant_id)
                .bind(group_id),
        )
        .await?;
    if let Some((name, Some(id))) = row {
        w.app
            .edit_corp_tag(&EditCorpTagRequest {
                id,
                name: Some(name),
                ..Default::default()
            })
            .await?;
    }
    Ok(Step::Done)
}

#[derive(sqlx::FromRow)]
struct MarkTarget {
    external_userid: String,
    owner: Option<String>,
}

/// Send, for the tags that changed, whether the customer carries each now.
async fn mark(
    db: &Db,
    w: &TenantWeCom,
    p: &PushRow,
    detail: &Value,
    now: i64,
) -> Result<Step, Fail> {
    let t = p.tenant_id;
    let tag_ids: Vec<i64> = detail["tagIds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let Some(who) = db
        .fetch_optional::<MarkTarget>(
            query(
                "SELECT c.external_userid, s.userid AS owner FROM customer c \
                 LEFT JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
                 WHERE c.tenant_id = ? AND c.id = ?",
            )
            .bind(t)
            .bind(p.target_id),
        )
        .await?
    else {
        return Ok(Step::Done); // the customer is gone
    };
    let owner = who
        .owner
        .ok_or_else(|| Fail::permanent("the customer has no owner staff member to tag as"))?;
    if tag_ids.is_empty() {
        return Ok(Step::Done);
    }
    let mut q = query("SELECT id, wecom_tag_id FROM tag WHERE tenant_id = ? AND id IN ").bind(t);
    q.push_in_list(tag_ids.iter().copied());
    let tags: Vec<(i64, Option<String>)> = db.fetch_all(q).await?;
    let mut q = query(
        "SELECT tag_id FROM customer_tag WHERE tenant_id = ? AND customer_id = ? AND tag_id IN ",
    )
    .bind(t)
    .bind(p.target_id);
    q.push_in_list(tag_ids.iter().copied());
    let carried: Vec<(i64,)> = db.fetch_all(q).await?;
    let unknown: Vec<i64> = tags
        .iter()
        .filter(|(_, w)| w.is_none())
        .map(|(id, _)| *id)
        .collect();
    if !unknown.is_empty() {
        let mut q = query(
            "SELECT COUNT(*) FROM wecom_push WHERE tenant_id = ? AND target = 'tag' AND status = 'pending' AND target_id IN ",
        )
        .bind(t);
        q.push_in_list(unknown.iter().copied());
        if db.fetch_i64(q).await? > 0 {
            // A tag made in scrm is still on its way to WeCom.
            return Ok(Step::WaitUntil(now + 1_000));
        }
    }
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for (id, wecom) in tags {
        let Some(wecom) = wecom else { continue };
        if carried.iter().any(|c| c.0 == id) {
            add.push(wecom);
        } else {
            remove.push(wecom);
        }
    }
    if add.is_empty() && remove.is_empty() {
        return Ok(Step::Done);
    }
    w.app
        .mark_tag(&MarkTagRequest {
            userid: owner,
            external_userid: who.external_userid,
            add_tag: add,
            remove_tag: remove,
        })
        .await?;
    Ok(Step::Done)
}

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "tags")
        .route(
            M::GET,
            "/api/v1/wecom-pushes",
            Access::Permission(perm::TAG_VIEW),
            "Pushes of tag changes to WeCom (status pending, done, failed with WeCom's reason)",
            list,
        )
        .route(
            M::POST,
            "/api/v1/wecom-pushes/{id}/retry",
            Access::Permission(perm::TAG_MANAGE),
            "Push a failed tag change to WeCom again",
            retry,
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<String>,
    target: Option<String>,
    target_id: Option<i64>,
}

/// A push in lists, with ISO times.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushView {
    #[serde(flatten)]
    row: PushRow,
    create_time: String,
    update_time: String,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<PushView>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::field("status", "one of pending, done, failed"));
        }
        w.push_sql(" AND status = ?").push_bind(s.as_str());
    }
    if let Some(t) = &q.target {
        if ![target::TAG, target::GROUP, target::CUSTOMER].contains(&t.as_str()) {
            return Err(ApiError::field("target", "one of tag, tag_group, customer"));
        }
        w.push_sql(" AND target = ?").push_bind(t.as_str());
    }
    if let Some(id) = q.target_id {
        w.push_sql(" AND target_id = ?").push_bind(id);
    }
    let (rows, total): (Vec<PushRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM wecom_push",
            format!("SELECT {COLUMNS} FROM wecom_push"),
            &w,
            "id",
        )
        .await?;
    let list = rows
        .into_iter()
        .map(|row| PushView {
            create_time: iso(row.created_at),
            update_time: iso(row.updated_at),
            row,
        })
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

/// Run a failed push again: its dead job is replayed (or a new one enqueued when it was
/// pruned); the row is `pending` until the job settles it.
async fn retry(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<PushRow>> {
    let mut tx = state.db.begin().await?;
    let push = tx
        .fetch_optional::<PushRow>(
            query(format!(
                "SELECT {COLUMNS} FROM wecom_push WHERE tenant_id = ? AND id = ?"
            ))
            .bind(user.tenant_id)
            .bind(id),
        )
        .await?
        .ok_or(ApiError::NotFound("push"))?;
    if push.status != "failed" {
        return Err(ApiError::Domain {
            status: axum::http::StatusCode::CONFLICT,
            name: "PUSH_NOT_FAILED",
            message: format!(
                "push {id} is {}, only a failed push is retried",
                push.status
            ),
        });
    }
    let now = now_ms();
    tx.execute(
        query("UPDATE wecom_push SET status = 'pending', updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "wecom_push.retry",
        "wecom_push",
        id,
        json!({"jobId": push.job_id}),
    )
    .await?;
    tx.commit().await?;
    let replayed = match push.job_id {
        Some(job) => state
            .jobs
            .replay(Scope::Tenant(user.tenant_id), &Target::Ids(vec![job]))
            .await
            .map_err(anyhow::Error::new)?,
        None => 0,
    };
    if replayed == 0 {
        let job = NewJob::new(PUSH, &json!({"pushId": id}))
            .map_err(anyhow::Error::new)?
            .tenant(user.tenant_id);
        let job_id = state
            .jobs
            .enqueue_now(job)
            .await
            .map_err(anyhow::Error::new)?
            .id;
        state
            .db
            .execute(
                query("UPDATE wecom_push SET job_id = ? WHERE id = ?")
                    .bind(job_id)
                    .bind(id),
            )
            .await?;
    }
    let row = state
        .db
        .fetch_one::<PushRow>(
            query(format!("SELECT {COLUMNS} FROM wecom_push WHERE id = ?")).bind(id),
        )
        .await?;
    Ok(ok(row))
}
