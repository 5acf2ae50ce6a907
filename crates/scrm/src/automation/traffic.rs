//! Traffic distribution (流量分发, seed 002): pools of sender accounts that new customers are
//! assigned across.
//!
//! A pool member is a sender account ([`crate::devices::provider`]): a WeCom member (its staff
//! userid) or a device account (its wxid). A pool picks by `round_robin` (the next member after
//! the last one given a customer), `weight` (the member furthest below its share of today's
//! customers, `weight` parts each) or `least_loaded` (the member with the fewest customers now:
//! a WeCom member's owned customers, a device account's assignments); only members that are
//! enabled, inside their working hours (days and HH:MM, Asia/Shanghai) and under their daily cap
//! (customers given today) take part.
//!
//! Customers reach a pool through a channel code bound to it (`channelCodeIds`: the customer who
//! added the code's member is handed on), a workflow's `assign_pool` step, or the API. Handing a
//! customer to a WeCom member who is not yet its friend is WeCom's transfer_customer (在职继承)
//! from the current owner, then the owner in scrm changes, as customers' transfers do; a device
//! account is recorded as the account serving the customer. The pick is written first, keyed by
//! its source (`wf:<run>:<step>`, `cc:<add>`), so a retried step or job hands the customer to the
//! same member and WeCom's duplicate answers (40129, 40100) count as done.
//!
//! Device work goes through pools too ([`give_work`]): a group push or auto group naming a pool
//! gives each chat room / group to one of the pool's device accounts able to do it (in the room;
//! friends of every member), recorded as an assignment without a customer; a new friend on a
//! device account counts for it ([`count_new_friend`]). A daily cap counts all of it.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use chrono::TimeZone;
use scrm_db::{Backend, Db, DbResult, Tx, query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{day_of, json_col, shanghai};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::devices::provider::{self, Provider};
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::FieldError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::wecom::client_for;
use crate::state::{AppState, iso, now_ms};

/// Pick strategies.
pub const STRATEGIES: &[&str] = &["round_robin", "weight", "least_loaded"];
/// At most this many members in a pool.
const MAX_MEMBERS: usize = 200;

const BASE: &str = "/api/v1/automation/traffic-pools";

/// The traffic-pool routes.
pub fn routes(state: &AppState) -> Routes {
    let view = Access::Permission(perm::TRAFFIC_POOL_VIEW);
    let manage = Access::Permission(perm::TRAFFIC_POOL_MANAGE);
    Routes::new(state, "automation")
        .route(Method::POST, BASE, manage, "Create a traffic pool: name, strategy (round_robin, weight, least_loaded), members (accountId, weight, dailyCap, workDays, workStart, workEnd), channelCodeIds", create_pool)
        .route(Method::GET, BASE, view, "List traffic pools (page, size)", list_pools)
        .route(Method::GET, "/api/v1/automation/traffic-pools/{id}", view, "A traffic pool with its members", get_pool)
        .route(Method::PUT, "/api/v1/automation/traffic-pools/{id}", manage, "Change a traffic pool (members are replaced; a kept accountId keeps its statistics)", update_pool)
        .route(Method::DELETE, "/api/v1/automation/traffic-pools/{id}", manage, "Delete a traffic pool (assignments made stay)", delete_pool)
        .route(Method::POST, "/api/v1/automation/traffic-pools/{id}/assign", manage, "Assign customers through the pool now: {customerIds}", assign_route)
        .route(Method::GET, "/api/v1/automation/traffic-pools/{id}/assignments", view, "Assignments of a pool (page, size, memberId)", list_assignments)
        .route(Method::GET, "/api/v1/automation/traffic-pools/{id}/statistics", view, "Per member: customers given per day (days 1-90, default 7), today, cap, load, available now", statistics)
}

// ---------------------------------------------------------------------------------------------
// Rows

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PoolRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub strategy: String,
    pub enabled: i64,
    pub channel_code_ids: String,
    pub last_member_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const POOL_COLUMNS: &str = "id, tenant_id, name, strategy, enabled, channel_code_ids, last_member_id, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: i64,
    pub pool_id: i64,
    pub account_id: String,
    pub account_type: String,
    pub staff_id: Option<i64>,
    pub weight: i64,
    pub daily_cap: i64,
    pub work_days: Option<String>,
    pub work_start: Option<String>,
    pub work_end: Option<String>,
    pub enabled: i64,
}

const MEMBER_COLUMNS: &str = "id, pool_id, account_id, account_type, staff_id, weight, daily_cap, work_days, \
    work_start, work_end, enabled";

impl MemberRow {
    fn days(&self) -> Vec<i64> {
        json_col(self.work_days.as_deref())
    }

    /// When the member next works at or after `at` (`at` itself when working then).
    fn works_from(&self, at: i64) -> i64 {
        super::WorkHours {
            days: self.days(),
            start: self.work_start.clone(),
            end: self.work_end.clone(),
        }
        .works_from(at)
    }
}

/// 00:00 Asia/Shanghai of the day after the day of `ms`.
fn next_day(ms: i64) -> i64 {
    let tz = shanghai();
    tz.timestamp_millis_opt(ms)
        .single()
        .and_then(|t| (t.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0))
        .and_then(|d| tz.from_local_datetime(&d).single())
        .map_or(ms + 86_400_000, |t| t.timestamp_millis())
}

pub async fn pool(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<PoolRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {POOL_COLUMNS} FROM traffic_pool WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

async fn members(db: &Db, tenant_id: i64, pool_id: i64) -> DbResult<Vec<MemberRow>> {
    db.fetch_all(
        query(format!(
            "SELECT {MEMBER_COLUMNS} FROM traffic_pool_member WHERE tenant_id = ? AND pool_id = ? ORDER BY id"
        ))
        .bind(tenant_id)
        .bind(pool_id),
    )
    .await
}

/// The enabled pool a channel code is bound to, if any.
pub async fn pool_of_code(db: &Db, tenant_id: i64, code_id: i64) -> DbResult<Option<i64>> {
    let rows: Vec<(i64, String)> = db
        .fetch_all(
            query("SELECT id, channel_code_ids FROM traffic_pool WHERE tenant_id = ? AND enabled = 1 ORDER BY id")
                .bind(tenant_id),
        )
        .await?;
    Ok(rows.into_iter().find_map(|(id, codes)| {
        json_col::<Vec<i64>>(Some(&codes))
            .contains(&code_id)
            .then_some(id)
    }))
}

// ---------------------------------------------------------------------------------------------
// Picking

/// Customers given to each member of a pool on a day (pending and done).
async fn given_on(
    tx: &mut Tx,
    tenant_id: i64,
    pool_id: i64,
    day: &str,
) -> DbResult<Vec<(i64, i64)>> {
    tx.fetch_all(
        query(
            "SELECT member_id, COUNT(*) FROM traffic_assignment WHERE tenant_id = ? AND pool_id = ? \
             AND assign_day = ? AND status <> 'failed' GROUP BY member_id",
        )
        .bind(tenant_id)
        .bind(pool_id)
        .bind(day),
    )
    .await
}

/// A member's load for least_loaded: a WeCom member's owned customers, a device account's
/// customers given to it.
async fn load(tx: &mut Tx, tenant_id: i64, m: &MemberRow) -> DbResult<i64> {
    match m.staff_id {
        Some(staff) => {
            tx.fetch_i64(
                query("SELECT COUNT(*) FROM customer WHERE tenant_id = ? AND follow_user_id = ? AND status = 1")
                    .bind(tenant_id)
                    .bind(staff),
            )
            .await
        }
        None => {
            tx.fetch_i64(
                query("SELECT COUNT(*) FROM traffic_assignment WHERE tenant_id = ? AND member_id = ? AND status = 'done'")
                    .bind(tenant_id)
                    .bind(m.id),
            )
            .await
        }
    }
}

/// Whether a member takes customers at `now`, given what it got today.
fn available(m: &MemberRow, given_today: i64, now: i64) -> bool {
    m.enabled == 1 && (m.daily_cap <= 0 || given_today < m.daily_cap) && m.works_from(now) <= now
}

/// The member the pool gives its next customer to at `now` among `members` (ordered by id),
/// or when one is next available.
pub fn choose(
    strategy: &str,
    last_member_id: i64,
    members: &[MemberRow],
    given_today: &[(i64, i64)],
    loads: &[(i64, i64)],
    now: i64,
) -> Result<usize, Option<i64>> {
    let given = |id: i64| given_today.iter().find(|g| g.0 == id).map_or(0, |g| g.1);
    let open: Vec<usize> = (0..members.len())
        .filter(|&i| available(&members[i], given(members[i].id), now))
        .collect();
    if open.is_empty() {
        // The earliest time a member can take one: its next working time, or tomorrow's when
        // its cap is reached.
        let next = members
            .iter()
            .filter(|m| m.enabled == 1)
            .map(|m| {
                if m.daily_cap > 0 && given(m.id) >= m.daily_cap {
                    m.works_from(next_day(now))
                } else {
                    m.works_from(now)
                }
            })
            .filter(|t| *t > now)
            .min();
        return Err(next);
    }
    let pick = match strategy {
        "weight" => *open
            .iter()
            .min_by(|&&a, &&b| {
                // given/weight, compared as fractions: a's share before b's.
                let (ga, wa) = (given(members[a].id), members[a].weight.max(1));
                let (gb, wb) = (given(members[b].id), members[b].weight.max(1));
                (ga * wb).cmp(&(gb * wa)).then(wb.cmp(&wa)).then(a.cmp(&b))
            })
            .expect("not empty"),
        "least_loaded" => {
            let l = |i: usize| {
                loads
                    .iter()
                    .find(|x| x.0 == members[i].id)
                    .map_or(0, |x| x.1)
            };
            *open
                .iter()
                .min_by_key(|&&i| (l(i), given(members[i].id), i))
                .expect("not empty")
        }
        _ => open
            .iter()
            .copied()
            .find(|&i| members[i].id > last_member_id)
            .unwrap_or(open[0]),
    };
    Ok(pick)
}

/// Why a customer was not handed on.
#[derive(Debug)]
pub enum AssignError {
    /// No member takes customers now; one will at this time (none: never, e.g. all disabled).
    Unavailable(Option<i64>),
    /// Not worth repeating (the pool or customer is gone, WeCom refused the transfer).
    Refused(String),
    /// Worth another attempt (network, WeCom busy, database).
    Transient(String),
}

impl std::fmt::Display for AssignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssignError::Unavailable(Some(at)) => write!(
                f,
                "no member of the pool takes customers now (next at {})",
                iso(*at)
            ),
            AssignError::Unavailable(None) => write!(f, "the pool has no enabled member"),
            AssignError::Refused(m) | AssignError::Transient(m) => f.write_str(m),
        }
    }
}

impl From<scrm_db::DbError> for AssignError {
    fn from(e: scrm_db::DbError) -> Self {
        AssignError::Transient(e.to_string())
    }
}

/// Where an assignment comes from.
pub struct Source<'a> {
    /// channel_code, workflow or api.
    pub kind: &'a str,
    /// The dedupe key (`wf:<run>:<step>`, `cc:<add id>`); none: not deduplicated.
    pub key: Option<String>,
}

/// Hand a customer on through a pool: pick (or find the earlier pick of the same source), then
/// make it so in WeCom and scrm. Returns what was done, for step logs and the API.
pub async fn assign(
    state: &AppState,
    tenant_id: i64,
    pool_id: i64,
    customer_id: i64,
    source: &Source<'_>,
) -> Result<Value, AssignError> {
    let (assignment, member) = pick(state, tenant_id, pool_id, customer_id, source).await?;
    let result = deliver(state, tenant_id, customer_id, &member).await;
    let (status, error) = match &result {
        Ok(_) => ("done", None),
        Err(AssignError::Refused(m)) => ("failed", Some(m.clone())),
        Err(_) => ("pending", None),
    };
    state
        .db
        .execute(
            query("UPDATE traffic_assignment SET status = ?, error = ? WHERE id = ? AND status <> 'done'")
                .bind(status)
                .bind(error)
                .bind(assignment),
        )
        .await?;
    let mut out = result?;
    out["assignmentId"] = json!(assignment);
    out["poolId"] = json!(pool_id);
    out["memberId"] = json!(member.id);
    out["accountId"] = json!(member.account_id);
    out["accountType"] = json!(member.account_type);
    Ok(out)
}

/// The pool row, read first in a pick's transaction (a locking read: on MySQL the reads after
/// it see what the previous holder committed), so that concurrent picks of one pool see each
/// other.
async fn lock_pool(tx: &mut Tx, tenant_id: i64, pool_id: i64) -> DbResult<Option<PoolRow>> {
    let mut lock = query(format!(
        "SELECT {POOL_COLUMNS} FROM traffic_pool WHERE tenant_id = ? AND id = ?"
    ))
    .bind(tenant_id)
    .bind(pool_id);
    if tx.backend() != Backend::Sqlite {
        lock.push_sql(" FOR UPDATE");
    }
    tx.fetch_optional::<PoolRow>(lock).await
}

/// Choose the member (one transaction, the pool row locked so that concurrent picks see each
/// other) and record the assignment as pending; an earlier pick of the same source is reused.
async fn pick(
    state: &AppState,
    tenant_id: i64,
    pool_id: i64,
    customer_id: i64,
    source: &Source<'_>,
) -> Result<(i64, MemberRow), AssignError> {
    let mut tx = state.db.begin().await?;
    let pool_row = lock_pool(&mut tx, tenant_id, pool_id).await?;
    if let Some(key) = &source.key {
        let earlier: Option<(i64, i64)> = tx
            .fetch_optional(
                query("SELECT id, member_id FROM traffic_assignment WHERE tenant_id = ? AND source_ref = ?")
                    .bind(tenant_id)
                    .bind(key.as_str()),
            )
            .await?;
        if let Some((id, member_id)) = earlier {
            let m: Option<MemberRow> = tx
                .fetch_optional(
                    query(format!(
                        "SELECT {MEMBER_COLUMNS} FROM traffic_pool_member WHERE tenant_id = ? AND id = ?"
                    ))
                    .bind(tenant_id)
                    .bind(member_id),
                )
                .await?;
            tx.rollback().await?;
            return m.map(|m| (id, m)).ok_or_else(|| {
                AssignError::Refused("the member picked earlier left the pool".into())
            });
        }
    }
    let Some(p) = pool_row else {
        return Err(AssignError::Refused(format!(
            "traffic pool {pool_id} not found"
        )));
    };
    if p.enabled != 1 {
        return Err(AssignError::Refused(format!(
            "traffic pool {} is disabled",
            p.name
        )));
    }
    let exists = tx
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer WHERE tenant_id = ? AND id = ? AND status = 1")
                .bind(tenant_id)
                .bind(customer_id),
        )
        .await?;
    if exists == 0 {
        return Err(AssignError::Refused(format!(
            "customer {customer_id} not found (or deleted)"
        )));
    }
    let ms: Vec<MemberRow> = tx
        .fetch_all(
            query(format!(
                "SELECT {MEMBER_COLUMNS} FROM traffic_pool_member WHERE tenant_id = ? AND pool_id = ? ORDER BY id"
            ))
            .bind(tenant_id)
            .bind(pool_id),
        )
        .await?;
    let now = now_ms();
    let day = day_of(now);
    let given = given_on(&mut tx, tenant_id, pool_id, &day).await?;
    let mut loads = Vec::new();
    if p.strategy == "least_loaded" {
        for m in &ms {
            loads.push((m.id, load(&mut tx, tenant_id, m).await?));
        }
    }
    let i = choose(&p.strategy, p.last_member_id, &ms, &given, &loads, now)
        .map_err(AssignError::Unavailable)?;
    let m = ms[i].clone();
    let id = tx
        .insert_id(
            query("INSERT INTO traffic_assignment (tenant_id, pool_id, member_id, customer_id, assign_day, source, source_ref, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)")
                .bind(tenant_id)
                .bind(pool_id)
                .bind(m.id)
                .bind(customer_id)
                .bind(day.as_str())
                .bind(source.kind)
                .bind(source.key.clone())
                .bind(now),
        )
        .await?;
    tx.execute(
        query("UPDATE traffic_pool SET last_member_id = ?, updated_at = ? WHERE id = ?")
            .bind(m.id)
            .bind(now)
            .bind(pool_id),
    )
    .await?;
    tx.commit().await?;
    Ok((id, m))
}

/// Make the pick so: a WeCom member becomes the owner (transfer_customer first unless it is
/// already the customer's friend); a device account needs nothing more than the record.
async fn deliver(
    state: &AppState,
    tenant_id: i64,
    customer_id: i64,
    m: &MemberRow,
) -> Result<Value, AssignError> {
    let Some(staff_id) = m.staff_id else {
        return Ok(json!({"handedTo": m.account_id}));
    };
    #[allow(clippy::type_complexity)]
    let row: Option<(String, Option<i64>, Option<String>)> = state
        .db
        .fetch_optional(
            query(
                "SELECT c.external_userid, c.follow_user_id, s.userid FROM customer c \
                 LEFT JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
                 WHERE c.tenant_id = ? AND c.id = ?",
            )
            .bind(tenant_id)
            .bind(customer_id),
        )
        .await?;
    let Some((external_userid, owner_id, owner_userid)) = row else {
        return Err(AssignError::Refused(format!(
            "customer {customer_id} not found"
        )));
    };
    if owner_id == Some(staff_id) {
        return Ok(json!({"handedTo": m.account_id, "skipped": "already the owner"}));
    }
    let friends = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer_follow WHERE tenant_id = ? AND customer_id = ? AND staff_id = ? AND status = 1")
                .bind(tenant_id)
                .bind(customer_id)
                .bind(staff_id),
        )
        .await?;
    let mut answer = json!({"handedTo": m.account_id});
    let kind = match owner_userid {
        Some(owner) if friends == 0 => {
            let wecom = client_for(state, tenant_id)
                .await
                .map_err(|e| AssignError::Transient(format!("{e:#}")))?;
            let list = wecom
                .app
                .transfer_customer(&scrm_wecom::client::TransferCustomerRequest {
                    handover_userid: owner.clone(),
                    takeover_userid: m.account_id.clone(),
                    external_userid: vec![external_userid],
                    transfer_success_msg: None,
                })
                .await
                .map_err(|e| {
                    if e.is_transient() || e.errcode().is_none() {
                        AssignError::Transient(e.to_string())
                    } else {
                        AssignError::Refused(e.to_string())
                    }
                })?;
            match list.first().map(|c| c.errcode) {
                Some(0) | Some(40129) | Some(40100) | None => {}
                Some(code) => {
                    return Err(AssignError::Refused(format!(
                        "transfer_customer refused the customer: errcode {code}"
                    )));
                }
            }
            answer["handover"] = json!(owner);
            answer["takeover"] = json!(m.account_id);
            "on_job"
        }
        _ => "assign",
    };
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let transfer = crate::customers::transfer::assign_owner(
        &mut tx,
        tenant_id,
        customer_id,
        staff_id,
        kind,
        Some(&format!("traffic pool {}", m.pool_id)),
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    crate::customers::cache::invalidate(state, tenant_id, &[customer_id]).await;
    answer["transferId"] = json!(transfer);
    Ok(answer)
}

// ---------------------------------------------------------------------------------------------
// Device work through a pool

/// One piece of device work a pool gives out: a chat room of a group push, a group to create.
pub struct Work {
    /// The assignment's dedupe key (`gp:<push>:<room>`, `ag:<auto group>`).
    pub key: String,
    /// The device accounts that can do it (in the chat room; friends of every member).
    pub able: Vec<String>,
    /// The request field it came from, for a refusal (`chatroomIds[2]`, `memberWxids`).
    pub field: String,
}

fn work_refused(field: &str, name: &'static str, message: String) -> ApiError {
    ApiError::Refused {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        name,
        message: format!("{field}: {message}"),
        fields: vec![FieldError {
            field: field.to_string(),
            message,
        }],
    }
}

/// Give each piece of work to one device account of pool `pool_id` — by the pool's strategy,
/// among its enabled device members able to do it, inside their working hours and under their
/// daily caps (a cap counts everything the pool gave the account that day: customers, chat
/// rooms, groups, new friends) — recorded as the pool's assignments with no customer (`source`,
/// status done) in `tx`, the pool row locked so that concurrent picks see each other. Returns
/// the chosen account per piece. All or nothing: a piece no member can take is a refusal
/// naming its field (`422 NO_POOL_ACCOUNT` when no device account of the pool can do it,
/// `422 TRAFFIC_POOL_FULL` when those that can are at their caps or outside their hours, with
/// the time one is next free); the caller rolls back.
pub async fn give_work(
    tx: &mut Tx,
    tenant_id: i64,
    pool_id: i64,
    source: &str,
    work: &[Work],
) -> ApiResult<Vec<String>> {
    let p = lock_pool(tx, tenant_id, pool_id)
        .await?
        .ok_or(ApiError::NotFound("traffic pool"))?;
    if p.enabled != 1 {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "TRAFFIC_POOL_DISABLED",
            format!("traffic pool {} is disabled", p.name),
        ));
    }
    let ms: Vec<MemberRow> = tx
        .fetch_all(
            query(format!(
                "SELECT {MEMBER_COLUMNS} FROM traffic_pool_member WHERE tenant_id = ? AND pool_id = ? \
                 AND account_type = 'WECHAT' ORDER BY id"
            ))
            .bind(tenant_id)
            .bind(pool_id),
        )
        .await?;
    let now = now_ms();
    let day = day_of(now);
    let mut given = given_on(tx, tenant_id, pool_id, &day).await?;
    let mut loads = Vec::new();
    if p.strategy == "least_loaded" {
        for m in &ms {
            loads.push((m.id, load(tx, tenant_id, m).await?));
        }
    }
    let mut last = p.last_member_id;
    let mut out = Vec::with_capacity(work.len());
    for w in work {
        let able: Vec<MemberRow> = ms
            .iter()
            .filter(|m| m.enabled == 1 && w.able.contains(&m.account_id))
            .cloned()
            .collect();
        if able.is_empty() {
            return Err(work_refused(
                &w.field,
                "NO_POOL_ACCOUNT",
                format!(
                    "no enabled device account of traffic pool {} can do this",
                    p.name
                ),
            ));
        }
        let i = choose(&p.strategy, last, &able, &given, &loads, now).map_err(|next| {
            let when = next.map_or_else(|| "none is free later today".into(), |t| format!("one is next free at {}", iso(t)));
            work_refused(
                &w.field,
                "TRAFFIC_POOL_FULL",
                format!(
                    "every device account of traffic pool {} able to do this is at its daily cap or outside its working hours ({when})",
                    p.name
                ),
            )
        })?;
        let m = &able[i];
        tx.execute(
            query("INSERT INTO traffic_assignment (tenant_id, pool_id, member_id, customer_id, assign_day, source, source_ref, status, created_at) VALUES (?, ?, ?, NULL, ?, ?, ?, 'done', ?)")
                .bind(tenant_id)
                .bind(pool_id)
                .bind(m.id)
                .bind(day.as_str())
                .bind(source.to_string())
                .bind(w.key.as_str())
                .bind(now),
        )
        .await?;
        bump(&mut given, m.id);
        bump(&mut loads, m.id);
        last = m.id;
        out.push(m.account_id.clone());
    }
    tx.execute(
        query("UPDATE traffic_pool SET last_member_id = ?, updated_at = ? WHERE id = ?")
            .bind(last)
            .bind(now)
            .bind(pool_id),
    )
    .await?;
    Ok(out)
}

fn bump(counts: &mut Vec<(i64, i64)>, id: i64) {
    match counts.iter_mut().find(|c| c.0 == id) {
        Some(c) => c.1 += 1,
        None => counts.push((id, 1)),
    }
}

/// A new friend arrived on device account `account`: each enabled pool holding the account
/// counts it as given to the account today (a WeChat friend stays on the phone it added, so
/// there is nothing to hand on): its daily cap, least-loaded load and statistics include it.
pub async fn count_new_friend(tx: &mut Tx, tenant_id: i64, account: &str) -> DbResult<()> {
    let members: Vec<(i64, i64)> = tx
        .fetch_all(
            query(
                "SELECT m.pool_id, m.id FROM traffic_pool_member m JOIN traffic_pool p ON p.id = m.pool_id \
                 WHERE m.tenant_id = ? AND m.account_type = 'WECHAT' AND m.account_id = ? AND p.enabled = 1",
            )
            .bind(tenant_id)
            .bind(account),
        )
        .await?;
    let now = now_ms();
    let day = day_of(now);
    for (pool_id, member_id) in members {
        tx.execute(
            query("INSERT INTO traffic_assignment (tenant_id, pool_id, member_id, customer_id, assign_day, source, source_ref, status, created_at) VALUES (?, ?, ?, NULL, ?, 'device_friend', NULL, 'done', ?)")
                .bind(tenant_id)
                .bind(pool_id)
                .bind(member_id)
                .bind(day.as_str())
                .bind(now),
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolBody {
    name: Option<String>,
    strategy: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    channel_code_ids: Vec<i64>,
    #[serde(default)]
    members: Vec<MemberBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberBody {
    account_id: Option<String>,
    weight: Option<i64>,
    daily_cap: Option<i64>,
    #[serde(default)]
    work_days: Vec<i64>,
    work_start: Option<String>,
    work_end: Option<String>,
    enabled: Option<bool>,
}

struct CheckedMember {
    account_id: String,
    account_type: &'static str,
    staff_id: Option<i64>,
    weight: i64,
    daily_cap: i64,
    work_days: Option<String>,
    work_start: Option<String>,
    work_end: Option<String>,
    enabled: bool,
}

struct Checked {
    name: String,
    strategy: String,
    enabled: bool,
    codes: Vec<i64>,
    members: Vec<CheckedMember>,
}

async fn check(
    state: &AppState,
    tenant_id: i64,
    pool_id: Option<i64>,
    b: PoolBody,
) -> ApiResult<Checked> {
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
    let strategy = b.strategy.unwrap_or_else(|| "round_robin".into());
    if !STRATEGIES.contains(&strategy.as_str()) {
        return Err(ApiError::field(
            "strategy",
            "one of round_robin, weight, least_loaded",
        ));
    }
    if b.members.is_empty() {
        return Err(ApiError::field("members", "at least one member"));
    }
    if b.members.len() > MAX_MEMBERS {
        return Err(ApiError::field(
            "members",
            format!("at most {MAX_MEMBERS} members"),
        ));
    }
    let mut members = Vec::new();
    for (i, m) in b.members.into_iter().enumerate() {
        let f = |n: &str| format!("members[{i}].{n}");
        let id = m
            .account_id
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        if id.is_empty() {
            return Err(ApiError::field(f("accountId"), "is required"));
        }
        if members.iter().any(|x: &CheckedMember| x.account_id == id) {
            return Err(ApiError::field(
                f("accountId"),
                format!("{id} is already a member"),
            ));
        }
        // A sender account (a WeCom member or a device account) that can take customers.
        let acc = provider::resolve_for(
            &state.db,
            tenant_id,
            &id,
            provider::Capability::SendToCustomer,
            &f("accountId"),
        )
        .await?;
        let staff_id = match acc.provider {
            Provider::WeCom => Some(
                state
                    .db
                    .fetch_i64(
                        query("SELECT id FROM staff WHERE tenant_id = ? AND userid = ?")
                            .bind(tenant_id)
                            .bind(id.as_str()),
                    )
                    .await?,
            ),
            Provider::Device => None,
        };
        let weight = m.weight.unwrap_or(1);
        if !(1..=100).contains(&weight) {
            return Err(ApiError::field(f("weight"), "between 1 and 100"));
        }
        let daily_cap = m.daily_cap.unwrap_or(0);
        if !(0..=10_000).contains(&daily_cap) {
            return Err(ApiError::field(
                f("dailyCap"),
                "between 0 (no cap) and 10000",
            ));
        }
        let hours = super::WorkHours::check(
            &m.work_days,
            m.work_start.as_deref(),
            m.work_end.as_deref(),
            f,
        )?;
        members.push(CheckedMember {
            account_id: id,
            account_type: acc.provider.as_str(),
            staff_id,
            weight,
            daily_cap,
            work_days: (!hours.days.is_empty()).then(|| json!(hours.days).to_string()),
            work_start: hours.start,
            work_end: hours.end,
            enabled: m.enabled.unwrap_or(true),
        });
    }
    let mut codes = b.channel_code_ids;
    codes.sort_unstable();
    codes.dedup();
    for c in &codes {
        if super::channel_codes::get(&state.db, tenant_id, *c)
            .await?
            .is_none_or(|r| r.deleted == 1)
        {
            return Err(ApiError::field(
                "channelCodeIds",
                format!("no channel code {c}"),
            ));
        }
        if let Some(other) = pool_of_code(&state.db, tenant_id, *c).await?
            && Some(other) != pool_id
        {
            return Err(ApiError::field(
                "channelCodeIds",
                format!("channel code {c} already hands its customers to pool {other}"),
            ));
        }
    }
    Ok(Checked {
        name,
        strategy,
        enabled: b.enabled.unwrap_or(true),
        codes,
        members,
    })
}

/// Replace a pool's members: kept accounts keep their row (and statistics).
async fn write_members(
    tx: &mut Tx,
    tenant_id: i64,
    pool_id: i64,
    ms: &[CheckedMember],
    now: i64,
) -> DbResult<()> {
    let existing: Vec<(i64, String)> = tx
        .fetch_all(
            query("SELECT id, account_id FROM traffic_pool_member WHERE tenant_id = ? AND pool_id = ?")
                .bind(tenant_id)
                .bind(pool_id),
        )
        .await?;
    for (id, account) in &existing {
        if !ms.iter().any(|m| &m.account_id == account) {
            tx.execute(query("DELETE FROM traffic_pool_member WHERE id = ?").bind(*id))
                .await?;
        }
    }
    for m in ms {
        match existing.iter().find(|(_, a)| *a == m.account_id) {
            Some((id, _)) => {
                tx.execute(
                    query("UPDATE traffic_pool_member SET account_type = ?, staff_id = ?, weight = ?, daily_cap = ?, work_days = ?, work_start = ?, work_end = ?, enabled = ?, updated_at = ? WHERE id = ?")
                        .bind(m.account_type)
                        .bind(m.staff_id)
                        .bind(m.weight)
                        .bind(m.daily_cap)
                        .bind(m.work_days.clone())
                        .bind(m.work_start.clone())
                        .bind(m.work_end.clone())
                        .bind(m.enabled as i64)
                        .bind(now)
                        .bind(*id),
                )
                .await?;
            }
            None => {
                tx.execute(
                    query("INSERT INTO traffic_pool_member (tenant_id, pool_id, account_id, account_type, staff_id, weight, daily_cap, work_days, work_start, work_end, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                        .bind(tenant_id)
                        .bind(pool_id)
                        .bind(m.account_id.as_str())
                        .bind(m.account_type)
                        .bind(m.staff_id)
                        .bind(m.weight)
                        .bind(m.daily_cap)
                        .bind(m.work_days.clone())
                        .bind(m.work_start.clone())
                        .bind(m.work_end.clone())
                        .bind(m.enabled as i64)
                        .bind(now)
                        .bind(now),
                )
                .await?;
            }
        }
    }
    Ok(())
}

fn member_view(m: &MemberRow) -> Value {
    json!({
        "id": m.id,
        "accountId": m.account_id,
        "accountType": m.account_type,
        "staffId": m.staff_id,
        "weight": m.weight,
        "dailyCap": m.daily_cap,
        "workDays": m.days(),
        "workStart": m.work_start,
        "workEnd": m.work_end,
        "enabled": m.enabled == 1,
    })
}

async fn pool_view(db: &Db, p: &PoolRow) -> DbResult<Value> {
    let ms = members(db, p.tenant_id, p.id).await?;
    Ok(json!({
        "id": p.id,
        "name": p.name,
        "strategy": p.strategy,
        "enabled": p.enabled == 1,
        "channelCodeIds": json_col::<Vec<i64>>(Some(&p.channel_code_ids)),
        "members": ms.iter().map(member_view).collect::<Vec<_>>(),
        "createdAt": iso(p.created_at),
        "updatedAt": iso(p.updated_at),
    }))
}

async fn live(db: &Db, tenant_id: i64, id: i64) -> ApiResult<PoolRow> {
    pool(db, tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("traffic pool"))
}

pub async fn create_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<PoolBody>,
) -> ApiResult<Reply<Value>> {
    let c = check(&state, user.tenant_id, None, b).await?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query("INSERT INTO traffic_pool (tenant_id, name, strategy, enabled, channel_code_ids, last_member_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)")
                .bind(user.tenant_id)
                .bind(c.name.as_str())
                .bind(c.strategy.as_str())
                .bind(c.enabled as i64)
                .bind(json!(c.codes).to_string())
                .bind(now)
                .bind(now),
        )
        .await?;
    write_members(&mut tx, user.tenant_id, id, &c.members, now).await?;
    audit::record(
        &mut tx,
        &user,
        "traffic_pool.create",
        "traffic_pool",
        id,
        json!({"name": c.name, "strategy": c.strategy, "members": c.members.len()}),
    )
    .await?;
    tx.commit().await?;
    let p = live(&state.db, user.tenant_id, id).await?;
    Ok(created(pool_view(&state.db, &p).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
    member_id: Option<i64>,
    days: Option<i64>,
}

pub async fn list_pools(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let (rows, total): (Vec<PoolRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM traffic_pool",
            format!("SELECT {POOL_COLUMNS} FROM traffic_pool"),
            &query(" WHERE tenant_id = ?").bind(user.tenant_id),
            "id",
        )
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in &rows {
        list.push(pool_view(&state.db, r).await?);
    }
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub async fn get_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let p = live(&state.db, user.tenant_id, id).await?;
    Ok(ok(pool_view(&state.db, &p).await?))
}

pub async fn update_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PoolBody>,
) -> ApiResult<Reply<Value>> {
    live(&state.db, user.tenant_id, id).await?;
    let c = check(&state, user.tenant_id, Some(id), b).await?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    tx.execute(
        query("UPDATE traffic_pool SET name = ?, strategy = ?, enabled = ?, channel_code_ids = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(c.name.as_str())
            .bind(c.strategy.as_str())
            .bind(c.enabled as i64)
            .bind(json!(c.codes).to_string())
            .bind(now)
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    write_members(&mut tx, user.tenant_id, id, &c.members, now).await?;
    audit::record(
        &mut tx,
        &user,
        "traffic_pool.update",
        "traffic_pool",
        id,
        json!({"name": c.name, "strategy": c.strategy, "members": c.members.len()}),
    )
    .await?;
    tx.commit().await?;
    let p = live(&state.db, user.tenant_id, id).await?;
    Ok(ok(pool_view(&state.db, &p).await?))
}

pub async fn delete_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let p = live(&state.db, user.tenant_id, id).await?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        query("DELETE FROM traffic_pool_member WHERE tenant_id = ? AND pool_id = ?")
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    tx.execute(
        query("DELETE FROM traffic_pool WHERE tenant_id = ? AND id = ?")
            .bind(user.tenant_id)
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "traffic_pool.delete",
        "traffic_pool",
        id,
        json!({"name": p.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deleted": true})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignBody {
    customer_ids: Option<Vec<i64>>,
}

async fn assign_route(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<AssignBody>,
) -> ApiResult<Reply<Value>> {
    let p = live(&state.db, user.tenant_id, id).await?;
    if p.enabled != 1 {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "TRAFFIC_POOL_DISABLED",
            format!("traffic pool {} is disabled", p.name),
        ));
    }
    let ids = b.customer_ids.unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::field("customerIds", "1 to 100 customer ids"));
    }
    let mut missing = Vec::new();
    for c in &ids {
        let n = state
            .db
            .fetch_i64(
                query(
                    "SELECT COUNT(*) FROM customer WHERE tenant_id = ? AND id = ? AND status = 1",
                )
                .bind(user.tenant_id)
                .bind(*c),
            )
            .await?;
        if n == 0 {
            missing.push(*c);
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Refused {
            status: StatusCode::NOT_FOUND,
            name: "CUSTOMER_NOT_FOUND",
            message: format!("customerIds: no customers {missing:?}"),
            fields: vec![FieldError {
                field: "customerIds".into(),
                message: format!("no customers {missing:?}"),
            }],
        });
    }
    let mut results = Vec::new();
    for c in ids {
        let r = assign(
            &state,
            user.tenant_id,
            id,
            c,
            &Source {
                kind: "api",
                key: None,
            },
        )
        .await;
        results.push(match r {
            Ok(v) => json!({"customerId": c, "ok": true, "result": v}),
            Err(e) => json!({"customerId": c, "ok": false, "error": e.to_string()}),
        });
    }
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "traffic_pool.assign",
        "traffic_pool",
        id,
        json!({"results": results}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"poolId": id, "results": results})))
}

pub async fn list_assignments(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    live(&state.db, user.tenant_id, id).await?;
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut cond = query(" WHERE tenant_id = ? AND pool_id = ?")
        .bind(user.tenant_id)
        .bind(id);
    if let Some(m) = q.member_id {
        cond.push_sql(" AND member_id = ?").push_bind(m);
    }
    let mut count = query("SELECT COUNT(*) FROM traffic_assignment");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(
        "SELECT id, member_id, customer_id, assign_day, source, source_ref, status, error, created_at FROM traffic_assignment",
    );
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        i64,
        i64,
        Option<i64>,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        i64,
    )> = state.db.fetch_all(page).await?;
    let list = rows
        .into_iter()
        .map(|(id, member, customer, day, source, source_ref, status, error, at)| {
            json!({"id": id, "memberId": member, "customerId": customer, "day": day, "source": source,
                   "sourceRef": source_ref, "status": status, "error": error, "createdAt": iso(at)})
        })
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub async fn statistics(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<Value>> {
    let p = live(&state.db, user.tenant_id, id).await?;
    let days = q.days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(ApiError::field("days", "between 1 and 90"));
    }
    let now = now_ms();
    let today = day_of(now);
    let first = day_of(now - (days - 1) * 86_400_000);
    let ms = members(&state.db, user.tenant_id, id).await?;
    let per_day: Vec<(i64, String, i64)> = state
        .db
        .fetch_all(
            query("SELECT member_id, assign_day, COUNT(*) FROM traffic_assignment WHERE tenant_id = ? AND pool_id = ? AND assign_day >= ? AND status <> 'failed' GROUP BY member_id, assign_day")
                .bind(user.tenant_id)
                .bind(id)
                .bind(first.as_str()),
        )
        .await?;
    let totals: Vec<(i64, String, i64)> = state
        .db
        .fetch_all(
            query("SELECT member_id, status, COUNT(*) FROM traffic_assignment WHERE tenant_id = ? AND pool_id = ? GROUP BY member_id, status")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?;
    let mut tx = state.db.begin().await?;
    let mut out = Vec::new();
    for m in &ms {
        let given_today = per_day
            .iter()
            .filter(|r| r.0 == m.id && r.1 == today)
            .map(|r| r.2)
            .sum::<i64>();
        let by_day: Vec<Value> = per_day
            .iter()
            .filter(|r| r.0 == m.id)
            .map(|r| json!({"day": r.1, "assigned": r.2}))
            .collect();
        let count = |s: &str| {
            totals
                .iter()
                .filter(|r| r.0 == m.id && r.1 == s)
                .map(|r| r.2)
                .sum::<i64>()
        };
        out.push(json!({
            "memberId": m.id,
            "accountId": m.account_id,
            "accountType": m.account_type,
            "weight": m.weight,
            "dailyCap": m.daily_cap,
            "assignedToday": given_today,
            "assignedTotal": count("done") + count("pending"),
            "failedTotal": count("failed"),
            "load": load(&mut tx, user.tenant_id, m).await?,
            "availableNow": available(m, given_today, now),
            "perDay": by_day,
        }));
    }
    tx.rollback().await?;
    Ok(ok(
        json!({"poolId": p.id, "strategy": p.strategy, "from": first, "to": today, "members": out}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, weight: i64, cap: i64) -> MemberRow {
        MemberRow {
            id,
            pool_id: 1,
            account_id: format!("u{id}"),
            account_type: "WEWORK".into(),
            staff_id: Some(id),
            weight,
            daily_cap: cap,
            work_days: None,
            work_start: None,
            work_end: None,
            enabled: 1,
        }
    }

    /// 2026-11-23 (a Monday) 10:00 Asia/Shanghai.
    const MONDAY_10: i64 = 1_795_399_200_000;

    #[test]
    fn round_robin_goes_around_and_skips_full_members() {
        let ms = vec![m(1, 1, 0), m(2, 1, 1), m(3, 1, 0)];
        let mut last = 0;
        let mut given: Vec<(i64, i64)> = vec![];
        let mut order = vec![];
        for _ in 0..5 {
            let i = choose("round_robin", last, &ms, &given, &[], MONDAY_10).unwrap();
            let id = ms[i].id;
            order.push(id);
            last = id;
            match given.iter_mut().find(|g| g.0 == id) {
                Some(g) => g.1 += 1,
                None => given.push((id, 1)),
            }
        }
        // Member 2 takes one a day.
        assert_eq!(order, vec![1, 2, 3, 1, 3]);
    }

    #[test]
    fn weight_shares_follow_the_weights() {
        let ms = vec![m(1, 3, 0), m(2, 1, 0)];
        let mut given: Vec<(i64, i64)> = vec![];
        for _ in 0..8 {
            let i = choose("weight", 0, &ms, &given, &[], MONDAY_10).unwrap();
            let id = ms[i].id;
            match given.iter_mut().find(|g| g.0 == id) {
                Some(g) => g.1 += 1,
                None => given.push((id, 1)),
            }
        }
        given.sort();
        assert_eq!(given, vec![(1, 6), (2, 2)]);
    }

    #[test]
    fn least_loaded_takes_the_emptiest() {
        let ms = vec![m(1, 1, 0), m(2, 1, 0), m(3, 1, 0)];
        let i = choose(
            "least_loaded",
            0,
            &ms,
            &[],
            &[(1, 5), (2, 2), (3, 9)],
            MONDAY_10,
        )
        .unwrap();
        assert_eq!(ms[i].id, 2);
    }

    #[test]
    fn outside_working_hours_or_full_says_when_next() {
        let mut a = m(1, 1, 0);
        a.work_start = Some("14:00".into());
        a.work_end = Some("18:00".into());
        let b = m(2, 1, 1);
        // a starts at 14:00; b is full until tomorrow: 14:00 today comes first.
        let next = choose("round_robin", 0, &[a, b], &[(2, 1)], &[], MONDAY_10).unwrap_err();
        assert_eq!(next, Some(MONDAY_10 + 4 * 3_600_000));
    }
}
