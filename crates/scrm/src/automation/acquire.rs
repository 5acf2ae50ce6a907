//! A customer adds a member (add_external_contact / add_half_external_contact): called by the
//! callback processing right after the customer is stored.
//!
//! 1. The welcome, first — WeCom's WelcomeCode is valid 20 seconds: the channel code's welcome
//!    when the callback's `State` is a code's and the code has one, else the member's welcome
//!    message (one naming the member, else the default one).
//! 2. For a channel code: one `channel_code_add` row (statistics; idempotent), a timeline entry,
//!    the `channel_code.customer.added` event, and the `automation.channel_code.apply` job that
//!    gives the customer the code's tags (mark_tag in WeCom as the member, and in scrm) and its
//!    owner. A member who reached their daily limit makes the code's contact way move on
//!    (`automation.channel_code.push`).
//!
//! When the relation ends (del_external_contact / del_follow_user, not a transfer), [`lost`]
//! marks the add lost for the statistics.

use scrm_db::{Backend, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::WeComError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::channel_codes::{self, push_job};
use super::welcome::{self, Send, Vars, source};
use super::{day_of, json_col};
use crate::customers::model::CustomerFields;
use crate::customers::{store, timeline};
use crate::events;
use crate::operation::wecom::client_for;
use crate::state::{AppState, now_ms};

/// Job kind: give a customer the tags and owner of the code they came through.
pub const APPLY: &str = "automation.channel_code.apply";

/// Event: a customer came through a channel code.
pub const EVENT_CODE_ADDED: &str = "channel_code.customer.added";

/// The callback's facts.
pub struct Added<'a> {
    pub tenant_id: i64,
    pub userid: &'a str,
    pub external_userid: &'a str,
    pub state: Option<&'a str>,
    pub welcome_code: Option<&'a str>,
}

/// Welcome, and apply the channel code of `State`. Errors are database errors (the callback is
/// retried; every step is idempotent); WeCom's answers are recorded, not returned.
pub async fn on_added(state: &AppState, a: &Added<'_>) -> anyhow::Result<()> {
    let t = a.tenant_id;
    let customer: Option<(i64, Option<String>)> = state
        .db
        .fetch_optional(
            query("SELECT id, name FROM customer WHERE tenant_id = ? AND external_userid = ?")
                .bind(t)
                .bind(a.external_userid),
        )
        .await?;
    let Some((customer_id, nickname)) = customer else {
        return Ok(());
    };
    let code = match a.state.filter(|s| !s.is_empty()) {
        Some(s) => channel_codes::by_state(&state.db, t, s).await?,
        None => None,
    };
    let chosen = match code.as_ref().and_then(|c| c.welcome().map(|w| (c.id, w))) {
        Some((id, w)) => Some((source::CHANNEL_CODE, id, w)),
        None => welcome::for_staff(&state.db, t, a.userid)
            .await?
            .map(|(id, w)| (source::STAFF, id, w)),
    };
    if let Some((src, source_id, content)) = chosen {
        let staff_name: Option<(String,)> = state
            .db
            .fetch_optional(
                query("SELECT name FROM staff WHERE tenant_id = ? AND userid = ?")
                    .bind(t)
                    .bind(a.userid),
            )
            .await?;
        let vars = Vars {
            nickname: nickname.unwrap_or_default(),
            date: day_of(now_ms()),
            staff: staff_name.map_or_else(|| a.userid.to_string(), |n| n.0),
        };
        match client_for(state, t).await {
            Ok(wecom) => {
                welcome::send(
                    state,
                    &wecom,
                    Send {
                        tenant_id: t,
                        welcome_code: a.welcome_code,
                        customer_id: Some(customer_id),
                        external_userid: a.external_userid,
                        staff_userid: a.userid,
                        source: src,
                        source_id,
                        content: &content,
                        vars,
                    },
                )
                .await?;
            }
            Err(e) => tracing::warn!(tenant = t, error = %e, "no WeCom client for a welcome"),
        }
    }
    let Some(code) = code else {
        return Ok(());
    };
    let now = now_ms();
    let day = day_of(now);
    let mut tx = state.db.begin().await?;
    let insert = match tx.backend() {
        Backend::MySql => {
            "INSERT IGNORE INTO channel_code_add (tenant_id, code_id, customer_id, external_userid, staff_userid, add_day, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        }
        _ => {
            "INSERT INTO channel_code_add (tenant_id, code_id, customer_id, external_userid, staff_userid, add_day, added_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    let inserted = tx
        .execute(
            query(insert)
                .bind(t)
                .bind(code.id)
                .bind(customer_id)
                .bind(a.external_userid)
                .bind(a.userid)
                .bind(&day)
                .bind(now),
        )
        .await?
        .rows_affected
        > 0;
    if !inserted {
        return Ok(());
    }
    let add_id = tx
        .fetch_i64(
            query("SELECT id FROM channel_code_add WHERE tenant_id = ? AND code_id = ? AND external_userid = ? AND staff_userid = ?")
                .bind(t)
                .bind(code.id)
                .bind(a.external_userid)
                .bind(a.userid),
        )
        .await?;
    timeline::record(
        &mut tx,
        t,
        customer_id,
        "channel_code",
        &format!("added {} through channel code {}", a.userid, code.name),
        json!({"codeId": code.id, "state": code.state, "by": a.userid}),
    )
    .await?;
    events::emit(
        &mut tx,
        t,
        EVENT_CODE_ADDED,
        customer_id,
        json!({"customerId": customer_id, "codeId": code.id, "staffUserid": a.userid, "state": code.state}),
    )
    .await?;
    let apply = NewJob::new(APPLY, &json!({"tenantId": t, "addId": add_id}))?
        .tenant(t)
        .priority(1)
        .unique_key(format!("cc:apply:{add_id}"));
    state.jobs.enqueue(&mut tx, apply).await?;
    // The member's limit reached: route the code elsewhere.
    if let Some(limit) = code
        .staff()
        .iter()
        .find(|s| s.userid == a.userid)
        .map(|s| s.daily_limit)
        .filter(|l| *l > 0)
    {
        let n = tx
            .fetch_i64(
                query("SELECT COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ? AND staff_userid = ? AND add_day = ?")
                    .bind(t)
                    .bind(code.id)
                    .bind(a.userid)
                    .bind(&day),
            )
            .await?;
        if n >= limit {
            let job = push_job(t, code.id, &format!("full:{}:{day}", a.userid))?;
            state.jobs.enqueue(&mut tx, job).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The relation of `userid` and `external_userid` ended: adds through codes count as lost.
pub async fn lost(
    tx: &mut Tx,
    tenant_id: i64,
    external_userid: &str,
    userid: &str,
    now: i64,
) -> scrm_db::DbResult<()> {
    tx.execute(
        query(
            "UPDATE channel_code_add SET lost_at = ?, lost_day = ? WHERE tenant_id = ? \
             AND external_userid = ? AND staff_userid = ? AND lost_at IS NULL",
        )
        .bind(now)
        .bind(day_of(now))
        .bind(tenant_id)
        .bind(external_userid)
        .bind(userid),
    )
    .await
    .map(|_| ())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyPayload {
    tenant_id: i64,
    add_id: i64,
}

#[derive(sqlx::FromRow)]
struct AddRow {
    code_id: i64,
    customer_id: i64,
    external_userid: String,
    staff_userid: String,
    applied: i64,
    tag_ids: String,
    owner_staff_id: Option<i64>,
    name: String,
}

/// `automation.channel_code.apply`.
pub async fn run_apply(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: ApplyPayload = serde_json::from_value(p)?;
    let row: Option<AddRow> = state
        .db
        .fetch_optional(
            query(
                "SELECT a.code_id, a.customer_id, a.external_userid, a.staff_userid, a.applied, c.tag_ids, c.owner_staff_id, c.name \
                 FROM channel_code_add a JOIN channel_code c ON c.tenant_id = a.tenant_id AND c.id = a.code_id \
                 WHERE a.tenant_id = ? AND a.id = ?",
            )
            .bind(p.tenant_id)
            .bind(p.add_id),
        )
        .await?;
    let Some(row) = row.filter(|r| r.applied == 0) else {
        return Ok(JobOutcome::Done);
    };
    let t = p.tenant_id;
    let tag_ids: Vec<i64> = json_col(Some(&row.tag_ids));
    if !tag_ids.is_empty() {
        let wecom = client_for(&state, t).await.map_err(JobError::retryable)?;
        if let Err(e) = crate::operation::mass::actions::tag_customer(
            &state,
            &wecom,
            t,
            row.customer_id,
            &row.staff_userid,
            &row.external_userid,
            &tag_ids,
        )
        .await
        {
            let transient = e
                .downcast_ref::<WeComError>()
                .is_none_or(WeComError::is_transient);
            if transient && !ctx.is_last_attempt() {
                return Err(JobError::retryable(format!("{e:#}")));
            }
            tracing::warn!(tenant = t, add = p.add_id, error = %format!("{e:#}"), "channel code tags not applied");
        }
    }
    // A code bound to a traffic pool hands its customers on through the pool (which then
    // decides the owner, not the code).
    let pool = super::traffic::pool_of_code(&state.db, t, row.code_id).await?;
    if let Some(pool_id) = pool {
        use super::traffic::{AssignError, Source, assign};
        let source = Source {
            kind: "channel_code",
            key: Some(format!("cc:{}", p.add_id)),
        };
        match assign(&state, t, pool_id, row.customer_id, &source).await {
            Ok(_) => {}
            // Nobody takes customers now (night, caps): again when someone does.
            Err(AssignError::Unavailable(Some(at))) => return Ok(JobOutcome::RetryAt(at)),
            Err(AssignError::Transient(m)) if !ctx.is_last_attempt() => {
                return Err(JobError::retryable(m));
            }
            Err(e) => {
                tracing::warn!(tenant = t, add = p.add_id, pool = pool_id, error = %e, "channel code customer not handed to the traffic pool");
            }
        }
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    if let Some(owner) = row.owner_staff_id.filter(|_| pool.is_none()) {
        let current = store::get_tx(&mut tx, t, row.customer_id).await?;
        if current.is_some_and(|c| c.follow_user_id != Some(owner)) {
            store::update(
                &mut tx,
                t,
                row.customer_id,
                &CustomerFields {
                    follow_user_id: Some(Some(owner)),
                    ..Default::default()
                },
                now,
            )
            .await?;
            timeline::record(
                &mut tx,
                t,
                row.customer_id,
                timeline::kind::TRANSFER,
                &format!("owner set by channel code {}", row.name),
                json!({"ownerStaffId": owner}),
            )
            .await?;
        }
    }
    tx.execute(
        query("UPDATE channel_code_add SET applied = 1 WHERE tenant_id = ? AND id = ?")
            .bind(t)
            .bind(p.add_id),
    )
    .await?;
    tx.commit().await?;
    Ok(JobOutcome::Done)
}
