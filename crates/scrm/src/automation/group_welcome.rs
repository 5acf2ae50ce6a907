//! Group welcome messages (入群欢迎语): a customer joining a customer group chat gets a welcome in
//! the chat, with `{nickname}` (the new member), `{date}` and `{staff}` (the chat's owner).
//!
//! The join arrives as `group.member.joined` on the events relay — the same stream SOPs and
//! workflows use. The subscriber records one send per event (its event id is unique, so a
//! relayed-again event welcomes once) and enqueues `automation.group_welcome.send` in the same
//! transaction; the job sends add_msg_template to the chat as its owner (WeCom's only way into a
//! customer group; the owner's client delivers it). Each send records its intent (`calling`)
//! before the call; an attempt that finds it there (the last one died around its call) first
//! looks for the welcome in WeCom's send records, as mass sends do, so a chat is welcomed once.

use std::future::Future;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, DbResult, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::client::MsgTemplate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_col;
use super::stored::{self, Stored, live, one};
use super::welcome::{self, Vars, WelcomeContent};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events::{self, Event, kind};
use crate::http::envelope::{Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::content::WeComMessage;
use crate::operation::mass::engine::{Audience, reconcile};
use crate::operation::wecom::client_for;
use crate::state::{AppState, iso, now_ms};

/// Job kind: send one group welcome.
pub const SEND: &str = "automation.group_welcome.send";

const BASE: &str = "/api/v1/automation/group-welcomes";

/// The group-welcome routes.
pub fn routes(state: &AppState) -> Routes {
    let view = Access::Permission(perm::WELCOME_VIEW);
    let manage = Access::Permission(perm::WELCOME_MANAGE);
    Routes::new(state, "automation")
        .route(Method::POST, BASE, manage, "Create a group welcome: name, groupIds (none: every customer group chat), text with {nickname} {date} {staff}, materialIds", create)
        .route(Method::GET, BASE, view, "List group welcomes (page, size)", stored::list::<Row>)
        .route(Method::GET, "/api/v1/automation/group-welcomes/{id}", view, "One group welcome with its recent sends", stored::get::<Row>)
        .route(Method::PUT, "/api/v1/automation/group-welcomes/{id}", manage, "Change a group welcome", update)
        .route(Method::DELETE, "/api/v1/automation/group-welcomes/{id}", manage, "Delete a group welcome", stored::delete::<Row>)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    id: i64,
    tenant_id: i64,
    name: String,
    group_ids: String,
    content: String,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, group_ids, content, enabled, created_at, updated_at";

impl Row {
    fn groups(&self) -> Vec<i64> {
        json_col(Some(&self.group_ids))
    }
    fn content(&self) -> WelcomeContent {
        json_col(Some(&self.content))
    }
}

// ---------------------------------------------------------------------------------------------
// The event and the job

/// Subscribe once per process.
pub fn subscribe(state: &AppState) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let s = state.clone();
    events::subscribe(
        kind::GROUP_MEMBER_JOINED,
        std::sync::Arc::new(move |e: Event| {
            let s = s.clone();
            Box::pin(async move { on_joined(&s, &e).await })
        }),
    );
}

/// A member joined a group chat: record the welcome and enqueue its send (once per event).
pub async fn on_joined(state: &AppState, e: &Event) -> anyhow::Result<()> {
    // Customers only: members of the company are not welcomed.
    if e.data.get("memberType").and_then(Value::as_i64) != Some(2) {
        return Ok(());
    }
    let (Some(group), Some(member)) = (
        e.data.get("groupId").and_then(Value::as_i64),
        e.data.get("memberUserid").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let rows: Vec<Row> = state
        .db
        .fetch_all(
            query(format!(
                "SELECT {COLUMNS} FROM group_welcome WHERE tenant_id = ? AND enabled = 1 ORDER BY id"
            ))
            .bind(e.tenant_id),
        )
        .await?;
    // The welcome naming the chat wins over one for every chat.
    let chosen = rows
        .iter()
        .find(|r| r.groups().contains(&group))
        .or_else(|| rows.iter().find(|r| r.groups().is_empty()));
    let Some(w) = chosen else {
        return Ok(());
    };
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let exists = tx
        .fetch_i64(
            query("SELECT COUNT(*) FROM group_welcome_send WHERE tenant_id = ? AND event_id = ?")
                .bind(e.tenant_id)
                .bind(e.event_id.as_str()),
        )
        .await?;
    if exists > 0 {
        tx.rollback().await?;
        return Ok(());
    }
    let id = tx
        .insert_id(
            query("INSERT INTO group_welcome_send (tenant_id, welcome_id, group_id, member_userid, event_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)")
                .bind(e.tenant_id)
                .bind(w.id)
                .bind(group)
                .bind(member)
                .bind(e.event_id.as_str())
                .bind(now)
                .bind(now),
        )
        .await?;
    let job = NewJob::new(SEND, &json!({"sendId": id}))?
        .tenant(e.tenant_id)
        .priority(1)
        .unique_key(format!("gw:{id}"));
    state.jobs.enqueue(&mut tx, job).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendPayload {
    send_id: i64,
}

/// `automation.group_welcome.send`.
pub async fn run_send(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: SendPayload = serde_json::from_value(p)?;
    #[allow(clippy::type_complexity)]
    let row: Option<(i64, i64, i64, String, String, i64)> = state
        .db
        .fetch_optional(
            query("SELECT tenant_id, welcome_id, group_id, member_userid, status, updated_at FROM group_welcome_send WHERE id = ?")
                .bind(p.send_id),
        )
        .await?;
    // `calling`: an earlier attempt recorded its intent and may have reached WeCom.
    let Some((t, welcome_id, group_id, member, status, called_at)) =
        row.filter(|r| r.4 == "pending" || r.4 == "calling")
    else {
        return Ok(JobOutcome::Done);
    };
    let fail = |error: String| {
        let db = state.db.clone();
        async move {
            db.execute(
                query("UPDATE group_welcome_send SET status = 'failed', error = ?, updated_at = ? WHERE id = ?")
                    .bind(error)
                    .bind(now_ms())
                    .bind(p.send_id),
            )
            .await
            .map(|_| JobOutcome::Done)
        }
    };
    let Some(w) = one::<Row>(&state.db, t, welcome_id).await? else {
        return Ok(fail("the group welcome was deleted".into()).await?);
    };
    let chat: Option<(String, Option<String>)> = state
        .db
        .fetch_optional(
            query("SELECT chat_id, owner_userid FROM group_chat WHERE tenant_id = ? AND id = ?")
                .bind(t)
                .bind(group_id),
        )
        .await?;
    let Some((chat_id, Some(owner))) = chat else {
        return Ok(fail("group chat not found or without owner".into()).await?);
    };
    let nickname: Option<(Option<String>, Option<String>)> = state
        .db
        .fetch_optional(
            query(
                "SELECT m.name, c.name FROM group_chat_member m \
                 LEFT JOIN customer c ON c.tenant_id = m.tenant_id AND c.id = m.customer_id \
                 WHERE m.tenant_id = ? AND m.group_id = ? AND m.member_userid = ?",
            )
            .bind(t)
            .bind(group_id)
            .bind(member.as_str()),
        )
        .await?;
    let staff: Option<(String,)> = state
        .db
        .fetch_optional(
            query("SELECT name FROM staff WHERE tenant_id = ? AND userid = ?")
                .bind(t)
                .bind(owner.as_str()),
        )
        .await?;
    let vars = Vars {
        nickname: nickname
            .and_then(|(m, c)| c.or(m))
            .filter(|n| !n.is_empty())
            .unwrap_or_default(),
        date: super::day_of(now_ms()),
        staff: staff.map_or_else(|| owner.clone(), |s| s.0),
    };
    let wecom = client_for(&state, t).await.map_err(JobError::retryable)?;
    let (text, attachments) = welcome::to_wecom(&state, t, &wecom, &w.content(), &vars)
        .await
        .map_err(JobError::retryable)?;
    let rendered = text.as_ref().map(|t| t.content.clone());
    let sent = |msgid: String| {
        let db = state.db.clone();
        let rendered = rendered.clone();
        async move {
            db.execute(
                query("UPDATE group_welcome_send SET status = 'sent', msgid = ?, text = ?, updated_at = ? WHERE id = ?")
                    .bind(msgid)
                    .bind(rendered)
                    .bind(now_ms())
                    .bind(p.send_id),
            )
            .await
            .map(|_| JobOutcome::Done)
        }
    };
    let msg = WeComMessage {
        text: text.clone(),
        attachments: attachments.clone(),
    };
    if status == "calling" {
        // The last attempt died around its call: a welcome WeCom already has is not sent again.
        let found = reconcile(
            &wecom,
            &owner,
            Some(called_at),
            &msg,
            Audience::one(&chat_id, true),
            &state.db,
            t,
        )
        .await
        .map_err(JobError::retryable)?;
        if let Some(msgid) = found {
            return Ok(sent(msgid).await?);
        }
    }
    // The intent, recorded before the call (its time bounds the reconciliation's search).
    state
        .db
        .execute(
            query("UPDATE group_welcome_send SET status = 'calling', updated_at = ? WHERE id = ?")
                .bind(now_ms())
                .bind(p.send_id),
        )
        .await?;
    let req = MsgTemplate {
        chat_type: "group".into(),
        sender: owner,
        chat_id_list: vec![chat_id],
        text,
        attachments,
        ..Default::default()
    };
    match wecom.app.add_msg_template(&req).await {
        Ok(r) => {
            crate::operation::mass::engine::chaos::maybe_hang().await;
            Ok(sent(r.msgid).await?)
        }
        Err(e) if (e.is_transient() || e.errcode().is_none()) && !ctx.is_last_attempt() => {
            Err(JobError::retryable(e.to_string()))
        }
        Err(e) => Ok(fail(e.to_string()).await?),
    }
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Body {
    name: Option<String>,
    #[serde(default)]
    group_ids: Vec<i64>,
    text: Option<String>,
    #[serde(default)]
    material_ids: Vec<i64>,
    enabled: Option<bool>,
}

struct Checked {
    name: String,
    groups: Vec<i64>,
    content: WelcomeContent,
    enabled: bool,
}

async fn check(db: &Db, tenant_id: i64, b: Body) -> ApiResult<Checked> {
    let name = b
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(ApiError::field("name", "is required"));
    }
    if name.chars().count() > 100 {
        return Err(ApiError::field("name", "at most 100 characters"));
    }
    let mut groups = b.group_ids;
    groups.sort_unstable();
    groups.dedup();
    for g in &groups {
        let n = db
            .fetch_i64(
                query("SELECT COUNT(*) FROM group_chat WHERE tenant_id = ? AND id = ?")
                    .bind(tenant_id)
                    .bind(*g),
            )
            .await?;
        if n == 0 {
            return Err(ApiError::field("groupIds", format!("no group chat {g}")));
        }
    }
    let content = WelcomeContent {
        text: b.text,
        material_ids: b.material_ids,
    };
    content.check(db, tenant_id, "").await?;
    Ok(Checked {
        name,
        groups,
        content,
        enabled: b.enabled.unwrap_or(true),
    })
}

async fn view(db: &Db, r: &Row, sends: bool) -> DbResult<Value> {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "groupIds": r.groups(),
        "text": r.content().text,
        "materialIds": r.content().material_ids,
        "enabled": r.enabled == 1,
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
    });
    if sends {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, i64, String, String, Option<String>, Option<String>, i64)> = db
            .fetch_all(
                query("SELECT id, group_id, member_userid, status, text, error, created_at FROM group_welcome_send WHERE tenant_id = ? AND welcome_id = ? ORDER BY id DESC LIMIT 50")
                    .bind(r.tenant_id)
                    .bind(r.id),
            )
            .await?;
        v["recentSends"] = rows
            .into_iter()
            .map(|(id, g, m, s, t, e, at)| json!({"id": id, "groupId": g, "memberUserid": m, "status": s, "text": t, "error": e, "createdAt": iso(at)}))
            .collect();
    }
    Ok(v)
}

impl Stored for Row {
    const TABLE: &'static str = "group_welcome";
    const COLUMNS: &'static str = COLUMNS;
    const NOUN: &'static str = "group welcome";
    const CHILDREN: &'static [(&'static str, &'static str)] = &[];

    fn name(&self) -> &str {
        &self.name
    }

    fn view(&self, db: &Db, sends: bool) -> impl Future<Output = DbResult<Value>> + Send {
        view(db, self, sends)
    }
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Reply<Value>> {
    let c = check(&state.db, user.tenant_id, b).await?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query("INSERT INTO group_welcome (tenant_id, name, group_ids, content, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(user.tenant_id)
                .bind(c.name.as_str())
                .bind(json!(c.groups).to_string())
                .bind(serde_json::to_string(&c.content).map_err(anyhow::Error::new)?)
                .bind(c.enabled as i64)
                .bind(now)
                .bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "group_welcome.create",
        "group_welcome",
        id,
        json!({"name": c.name}),
    )
    .await?;
    tx.commit().await?;
    let r = live::<Row>(&state.db, user.tenant_id, id).await?;
    Ok(created(view(&state.db, &r, false).await?))
}

async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<Body>,
) -> ApiResult<Reply<Value>> {
    live::<Row>(&state.db, user.tenant_id, id).await?;
    let c = check(&state.db, user.tenant_id, b).await?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        query("UPDATE group_welcome SET name = ?, group_ids = ?, content = ?, enabled = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(c.name.as_str())
            .bind(json!(c.groups).to_string())
            .bind(serde_json::to_string(&c.content).map_err(anyhow::Error::new)?)
            .bind(c.enabled as i64)
            .bind(now_ms())
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "group_welcome.update",
        "group_welcome",
        id,
        json!({"name": c.name}),
    )
    .await?;
    tx.commit().await?;
    let r = live::<Row>(&state.db, user.tenant_id, id).await?;
    Ok(ok(view(&state.db, &r, false).await?))
}
