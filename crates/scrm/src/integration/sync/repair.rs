//! Repair (seed 003: "data can be repaired by hand"): re-sync one customer, staff member, tag
//! set or group chat by its WeCom id, at once, in one transaction.

use scrm_wecom::WeComError;
use serde::Serialize;

use super::apply::{self, Ctx};
use super::{apply_customers, fetch, hash};
use crate::customers::staff;
use crate::integration::client::Conn;
use crate::state::{AppState, now_ms};

/// What a repair did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repaired {
    pub kind: String,
    pub wecom_id: String,
    /// `created`, `updated`, `deleted` (gone from WeCom) or `unchanged`.
    pub result: String,
}

/// An error of a repair: WeCom's (with its errcode) or ours.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    WeCom(#[from] WeComError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<scrm_db::DbError> for RepairError {
    fn from(e: scrm_db::DbError) -> Self {
        RepairError::Other(e.into())
    }
}

/// Re-sync one object. `kind`: customer (external_userid), staff (userid), tag (any id: tags
/// are re-synced whole), group (chat_id).
pub async fn repair(
    state: &AppState,
    conn: &Conn,
    tenant_id: i64,
    kind: &str,
    wecom_id: &str,
) -> Result<Repaired, RepairError> {
    let mut ctx = Ctx::new(tenant_id, now_ms(), true);
    let result = match kind {
        "customer" => match fetch::one_customer(conn, wecom_id).await? {
            Some(c) => {
                let mut tx = state.db.begin().await?;
                let created = apply_customers::one_customer(&mut tx, &mut ctx, &c).await?;
                tx.commit().await?;
                if created { "created" } else { "updated" }
            }
            None => {
                let mut tx = state.db.begin().await?;
                let gone = apply_customers::customer_gone(
                    &mut tx,
                    &mut ctx,
                    wecom_id,
                    apply_customers::MISSING_IN_WECOM,
                    None,
                )
                .await?;
                tx.commit().await?;
                if gone { "deleted" } else { "unchanged" }
            }
        },
        "staff" => match conn.directory.user_get(wecom_id).await {
            Ok(u) => {
                let mut tx = state.db.begin().await?;
                let status = if u.status == 0 { 1 } else { u.status };
                staff::upsert_staff(
                    &mut tx,
                    tenant_id,
                    &u.userid,
                    &apply::cut(&u.name, 100),
                    &u.department,
                    status,
                    ctx.now,
                )
                .await?;
                hash::put_many(
                    &mut tx,
                    tenant_id,
                    hash::kind::STAFF,
                    &[(
                        u.userid.clone(),
                        hash::of(&(&u.name, &u.department, u.status)),
                    )],
                    ctx.now,
                )
                .await?;
                tx.commit().await?;
                "updated"
            }
            Err(e) if e.errcode() == Some(60111) => {
                let mut tx = state.db.begin().await?;
                tx.execute(scrm_db::query("UPDATE staff SET status = 5, updated_at = ? WHERE tenant_id = ? AND userid = ?").bind(ctx.now).bind(tenant_id).bind(wecom_id)).await?;
                hash::remove(
                    &mut tx,
                    tenant_id,
                    hash::kind::STAFF,
                    &[wecom_id.to_string()],
                )
                .await?;
                tx.commit().await?;
                "deleted"
            }
            Err(e) => return Err(e.into()),
        },
        "tag" => {
            let groups = conn
                .customers
                .get_corp_tag_list(&Default::default())
                .await?;
            let mut tx = state.db.begin().await?;
            apply::corp_tags(&mut tx, &mut ctx, &groups).await?;
            tx.commit().await?;
            "updated"
        }
        "group" => match conn.customers.groupchat_get(wecom_id, true).await {
            Ok(chat) => {
                let mut tx = state.db.begin().await?;
                apply::group(&mut tx, &mut ctx, &chat, 0).await?;
                tx.commit().await?;
                "updated"
            }
            Err(e) if matches!(e.errcode(), Some(40050 | 90500..=90511)) => {
                let mut tx = state.db.begin().await?;
                apply::group_dismissed(&mut tx, &mut ctx, wecom_id).await?;
                tx.commit().await?;
                "deleted"
            }
            Err(e) => return Err(e.into()),
        },
        other => return Err(anyhow::anyhow!("unknown kind {other:?}").into()),
    };
    Ok(Repaired {
        kind: kind.into(),
        wecom_id: wecom_id.into(),
        result: result.into(),
    })
}
