//! Processing one stored callback (job `wework.callback`): what each WeCom event means for
//! scrm's data, fetched back from WeCom where the event carries only ids (API-FACTS §12).
//!
//! | event | effect |
//! |---|---|
//! | add / add_half / edit external contact | customer, follows and tags upserted from `externalcontact/get` (`customer.created` fires the add-friend triggers) |
//! | add / add_half (after storing) | welcome message, channel code tags/owner/statistics (`automation::acquire`) |
//! | del_external_contact / del_follow_user | relation ended, deletion record (+ churn warning for del_follow_user), channel-code add marked lost |
//! | transfer_fail | the open transfer of that customer fails with WeCom's reason |
//! | change_external_chat create / update | the chat and its members from `groupchat/get` (joins fire `group.member.joined`) |
//! | change_external_chat dismiss | everyone left, the chat marked dismissed |
//! | change_external_tag | corp tags re-synced |

use scrm_db::query;
use scrm_jobs::{JobContext, JobError, JobOutcome};
use scrm_wecom::events::{ChatChange, ExternalContactChange, ExternalContactEvent};
use scrm_wecom::{CallbackEvent, Event, WeComError};

use super::set_status;
use crate::customers::{risk, transfer};
use crate::integration::client::{self, Conn};
use crate::integration::config;
use crate::integration::sync::apply::{self, Ctx};
use crate::integration::sync::{apply_customers, fetch, hash};
use crate::state::{AppState, now_ms};

/// A failure while processing: WeCom's transient ones are retried.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    WeCom(#[from] WeComError),
    #[error(transparent)]
    Db(#[from] scrm_db::DbError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The job handler.
pub async fn handle(
    state: AppState,
    ctx: JobContext,
    payload: serde_json::Value,
) -> Result<JobOutcome, JobError> {
    let id = payload["eventId"]
        .as_i64()
        .ok_or_else(|| JobError::permanent("payload without eventId"))?;
    let row: Option<(i64, String, String)> = state
        .db
        .fetch_optional(
            query("SELECT tenant_id, raw_xml, status FROM wework_callback_event WHERE id = ?")
                .bind(id),
        )
        .await?;
    let Some((tenant_id, xml, status)) = row else {
        return Ok(JobOutcome::Done);
    };
    if matches!(status.as_str(), "done" | "ignored") {
        return Ok(JobOutcome::Done);
    }
    state
        .db
        .execute(query("UPDATE wework_callback_event SET status = 'processing', attempts = attempts + 1 WHERE id = ?").bind(id))
        .await?;
    match process(&state, id, tenant_id, &xml).await {
        Ok(true) => set_status(&state.db, id, "done", None).await?,
        Ok(false) => set_status(&state.db, id, "ignored", None).await?,
        Err(e) => {
            let retry = match &e {
                Failure::WeCom(w) => w.is_transient() && !w.is_token_invalid(),
                Failure::Db(_) => true,
                Failure::Other(_) => false,
            };
            let msg = format!("{e:#}");
            if retry && !ctx.is_last_attempt() {
                set_status(&state.db, id, "pending", Some(format!("retrying: {msg}"))).await?;
                return Err(JobError::retryable(msg));
            }
            tracing::warn!(event_id = id, error = %msg, "callback processing failed");
            set_status(&state.db, id, "failed", Some(msg)).await?;
        }
    }
    Ok(JobOutcome::Done)
}

/// Mark event `id` done inside the transaction that wrote its effects: a worker killed between
/// that commit and a separate status update would leave the event `processing`, and the job's
/// next attempt would write the records again (a second deletion record, a second churn
/// warning). With the mark in the same transaction the next attempt finds it done.
async fn done_in(tx: &mut scrm_db::Tx, id: i64) -> scrm_db::DbResult<()> {
    tx.execute(
        query("UPDATE wework_callback_event SET status = 'done', error = NULL, processed_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id),
    )
    .await
    .map(|_| ())
}

/// Apply one event (stored as `id`); false when it is not one scrm acts on.
async fn process(state: &AppState, id: i64, tenant_id: i64, xml: &str) -> Result<bool, Failure> {
    let event = CallbackEvent::from_xml(xml)
        .map_err(|e| anyhow::anyhow!("stored event unreadable: {e}"))?;
    let c = config::for_tenant(state, tenant_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the WeCom configuration was deleted"))?;
    let conn = client::connect(state, &c)?;
    let mut ctx = Ctx::new(tenant_id, now_ms(), false);
    match event.event {
        Event::ExternalContact(e) => contact(state, &conn, &mut ctx, id, &e).await?,
        Event::ExternalChat(e) => match e.change {
            ChatChange::Dismiss => {
                let mut tx = state.db.begin().await?;
                apply::group_dismissed(&mut tx, &mut ctx, &e.chat_id).await?;
                tx.commit().await?;
            }
            ChatChange::Create | ChatChange::Update(_) => {
                let chat = conn.customers.groupchat_get(&e.chat_id, true).await?;
                let mut tx = state.db.begin().await?;
                apply::group(&mut tx, &mut ctx, &chat, 0).await?;
                tx.commit().await?;
            }
        },
        Event::ExternalTag(_) => {
            // Deleting a group deletes its tags without callbacks, and shuffles reorder many:
            // re-reading the whole list is one call and always right.
            let groups = conn
                .customers
                .get_corp_tag_list(&Default::default())
                .await?;
            let mut tx = state.db.begin().await?;
            apply::corp_tags(&mut tx, &mut ctx, &groups).await?;
            tx.commit().await?;
        }
        Event::Unknown { .. } => return Ok(false),
    }
    Ok(true)
}

async fn contact(
    state: &AppState,
    conn: &Conn,
    ctx: &mut Ctx,
    id: i64,
    e: &ExternalContactEvent,
) -> Result<(), Failure> {
    let t = ctx.tenant_id;
    match e.change {
        ExternalContactChange::Add
        | ExternalContactChange::AddHalf
        | ExternalContactChange::Edit => {
            let Some(c) = fetch::one_customer(conn, &e.external_user_id).await? else {
                // Half-added and not yet confirmed, or already deleted again: nothing to mirror.
                return Ok(());
            };
            let mut tx = state.db.begin().await?;
            apply_customers::one_customer(&mut tx, ctx, &c).await?;
            tx.commit().await?;
            if e.change != ExternalContactChange::Edit {
                // Welcome (20-second WelcomeCode) and channel code: right away, not in a job.
                crate::automation::acquire::on_added(
                    state,
                    &crate::automation::acquire::Added {
                        tenant_id: t,
                        userid: &e.user_id,
                        external_userid: &e.external_user_id,
                        state: e.state.as_deref(),
                        welcome_code: e.welcome_code.as_deref(),
                    },
                )
                .await?;
            }
        }
        ExternalContactChange::Del | ExternalContactChange::DelFollowUser => {
            let by_transfer = e.source.as_deref() == Some("DELETE_BY_TRANSFER");
            let kind = if e.change == ExternalContactChange::Del {
                risk::STAFF_DELETED_CUSTOMER
            } else {
                risk::CUSTOMER_DELETED_STAFF
            };
            let mut tx = state.db.begin().await?;
            let customer = apply::customer_id(&mut tx, t, &e.external_user_id).await?;
            if let Some(cid) = customer {
                let staff = ctx.staff_id(&mut tx, &e.user_id).await?;
                apply_customers::end_follow(&mut tx, t, cid, staff, ctx.now).await?;
            }
            // 在职继承 removes the old relation by itself: a move, not a loss.
            if !by_transfer {
                crate::automation::acquire::lost(
                    &mut tx,
                    t,
                    &e.external_user_id,
                    &e.user_id,
                    ctx.now,
                )
                .await?;
                let name = match customer {
                    Some(cid) => crate::customers::store::get_tx(&mut tx, t, cid)
                        .await?
                        .and_then(|r| r.name),
                    None => None,
                };
                risk::record_deletion(
                    &mut tx,
                    t,
                    customer,
                    &e.external_user_id,
                    name.as_deref(),
                    Some(&e.user_id),
                    kind,
                    ctx.now,
                )
                .await?;
                // Workflows triggered by a deletion (seed 002's "customer deleted" task).
                if let Some(cid) = customer {
                    let by = if kind == risk::CUSTOMER_DELETED_STAFF {
                        "customer"
                    } else {
                        "staff"
                    };
                    crate::events::emit(
                        &mut tx,
                        t,
                        crate::events::kind::CUSTOMER_DELETED,
                        cid,
                        serde_json::json!({"customerId": cid, "externalUserid": e.external_user_id, "staffUserid": e.user_id, "deletedBy": by, "kind": kind, "source": "callback"}),
                    )
                    .await?;
                }
            }
            if let Some(cid) = customer {
                let active = tx
                    .fetch_i64(query("SELECT COUNT(*) FROM customer_follow WHERE tenant_id = ? AND customer_id = ? AND status = 1").bind(t).bind(cid))
                    .await?;
                if active == 0 {
                    crate::customers::store::update(
                        &mut tx,
                        t,
                        cid,
                        &crate::customers::model::CustomerFields {
                            status: Some(0),
                            ..Default::default()
                        },
                        ctx.now,
                    )
                    .await?;
                }
            }
            // The stored hash no longer matches WeCom; let the next sync look again.
            hash::remove(
                &mut tx,
                t,
                hash::kind::CUSTOMER,
                std::slice::from_ref(&e.external_user_id),
            )
            .await?;
            done_in(&mut tx, id).await?;
            tx.commit().await?;
        }
        ExternalContactChange::TransferFail => {
            let mut tx = state.db.begin().await?;
            if let Some(cid) = apply::customer_id(&mut tx, t, &e.external_user_id).await? {
                let open: Option<(i64,)> = tx
                    .fetch_optional(query("SELECT id FROM customer_transfer WHERE tenant_id = ? AND customer_id = ? AND status IN ('waiting', 'in_progress') ORDER BY id DESC LIMIT 1").bind(t).bind(cid))
                    .await?;
                if let Some((tid,)) = open {
                    let reason = e
                        .fail_reason
                        .clone()
                        .unwrap_or_else(|| "transfer failed".into());
                    transfer::set_status(&mut tx, t, tid, "failed", Some(&reason), ctx.now).await?;
                }
            }
            done_in(&mut tx, id).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}
