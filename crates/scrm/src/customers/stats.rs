//! Customer statistics: totals, daily growth (new, lost, net), activity, by channel and by staff.
//!
//! Growth is kept incrementally: every add and loss bumps a row of `customer_stats_daily` for
//! the day (China time: the seeds' users are there), for the tenant as a whole and per channel
//! and staff member, in the same transaction. A request sums at most a few hundred small rows
//! instead of scanning the customers.

use axum::extract::State;
use axum::http::Method;
use chrono::{FixedOffset, NaiveDate, TimeZone};
use scrm_db::{Backend, DbResult, Tx, query};
use serde::{Deserialize, Serialize};

use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "customers").route(
        Method::GET,
        "/api/v1/customers/statistics",
        Access::Permission(perm::CUSTOMER_STATISTICS_VIEW),
        "Totals, daily growth, by channel and by staff (startDate, endDate as YYYY-MM-DD)",
        statistics,
    )
}

/// What happened to a customer, for the counters.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Added,
    Lost,
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// The day (YYYY-MM-DD, China time) of an epoch-ms time.
pub fn day_of(ms: i64) -> String {
    china()
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Count an add or a loss for the tenant, its channel and its owner, on the day of `now`.
pub async fn record(
    tx: &mut Tx,
    tenant_id: i64,
    now: i64,
    channel: Option<&str>,
    staff_id: Option<i64>,
    change: Change,
) -> DbResult<()> {
    record_many(tx, tenant_id, &[(now, channel, staff_id, change)]).await
}

/// Count a customer as active on the day of `now` unless its previous interaction
/// (`last_active_at` before this one) was already on that day: `active` of a day is then the
/// number of distinct customers with an interaction that day, kept without a scan.
pub async fn record_active(
    tx: &mut Tx,
    tenant_id: i64,
    previous: Option<i64>,
    now: i64,
) -> DbResult<()> {
    let day = day_of(now);
    if previous.is_some_and(|p| day_of(p) == day) {
        return Ok(());
    }
    let sql = match tx.backend() {
        Backend::MySql => {
            "INSERT INTO customer_stats_daily (tenant_id, day, dim, dim_value, added, lost, active) VALUES (?, ?, '', '', 0, 0, 1) \
             ON DUPLICATE KEY UPDATE active = active + 1"
        }
        _ => {
            "INSERT INTO customer_stats_daily (tenant_id, day, dim, dim_value, added, lost, active) VALUES (?, ?, '', '', 0, 0, 1) \
             ON CONFLICT (tenant_id, day, dim, dim_value) DO UPDATE SET active = customer_stats_daily.active + 1"
        }
    };
    tx.execute(query(sql).bind(tenant_id).bind(day.as_str()))
        .await
        .map(|_| ())
}

/// Many adds at once (a sync's new customers): (when, channel, staff) each, counted as
/// [`record`] counts one, in one statement per 300 distinct (day, dimension, value).
pub async fn record_added_many(
    tx: &mut Tx,
    tenant_id: i64,
    adds: &[(i64, Option<&str>, Option<i64>)],
) -> DbResult<()> {
    let changes: Vec<_> = adds
        .iter()
        .map(|(at, channel, staff)| (*at, *channel, *staff, Change::Added))
        .collect();
    record_many(tx, tenant_id, &changes).await
}

/// Count customers added or lost (time, channel, owner staff, which): every (day, dimension,
/// value) they touch moves once, in one statement per 300 rows, in key order (concurrent
/// transactions take the shared rows — the tenant's total of the day — in one order).
async fn record_many(
    tx: &mut Tx,
    tenant_id: i64,
    changes: &[(i64, Option<&str>, Option<i64>, Change)],
) -> DbResult<()> {
    let mut counts: std::collections::BTreeMap<(String, &str, String), (i64, i64)> =
        std::collections::BTreeMap::new();
    for (at, channel, staff, change) in changes {
        let day = day_of(*at);
        let mut dims = vec![("", String::new())];
        if let Some(c) = channel {
            dims.push(("channel", c.chars().take(64).collect()));
        }
        if let Some(s) = staff {
            dims.push(("staff", s.to_string()));
        }
        for (dim, value) in dims {
            let n = counts.entry((day.clone(), dim, value)).or_default();
            match change {
                Change::Added => n.0 += 1,
                Change::Lost => n.1 += 1,
            }
        }
    }
    let rows: Vec<_> = counts.into_iter().collect();
    for chunk in rows.chunks(300) {
        let mut q = query(
            "INSERT INTO customer_stats_daily (tenant_id, day, dim, dim_value, added, lost, active) VALUES ",
        );
        for (i, ((day, dim, value), (added, lost))) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?, 0)")
                .push_bind(tenant_id)
                .push_bind(day.as_str())
                .push_bind(*dim)
                .push_bind(value.as_str())
                .push_bind(*added)
                .push_bind(*lost);
        }
        q.push_sql(match tx.backend() {
            Backend::MySql => {
                " ON DUPLICATE KEY UPDATE added = added + VALUES(added), lost = lost + VALUES(lost)"
            }
            _ => {
                " ON CONFLICT (tenant_id, day, dim, dim_value) DO UPDATE SET added = customer_stats_daily.added + excluded.added, lost = customer_stats_daily.lost + excluded.lost"
            }
        });
        tx.execute(q).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StatsQuery {
    start_date: Option<String>,
    end_date: Option<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Totals {
    total: i64,
    normal: i64,
    lost: i64,
    deleted: i64,
    blacklisted: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Day {
    date: String,
    added: i64,
    lost: i64,
    net: i64,
    /// Customers with an interaction (a follow-up) that day.
    active: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Slice {
    key: String,
    added: i64,
    lost: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statistics {
    totals: Totals,
    start_date: String,
    end_date: String,
    period: Day,
    daily: Vec<Day>,
    by_channel: Vec<Slice>,
    by_staff: Vec<Slice>,
}

fn date(field: &str, v: Option<String>, default: NaiveDate) -> ApiResult<NaiveDate> {
    match v {
        None => Ok(default),
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|_| ApiError::field(field, "must be YYYY-MM-DD")),
    }
}

#[derive(sqlx::FromRow)]
struct StatRow {
    day: String,
    dim: String,
    dim_value: String,
    added: i64,
    lost: i64,
    active: i64,
}

pub(crate) async fn statistics(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Reply<Statistics>> {
    let today =
        NaiveDate::parse_from_str(&day_of(now_ms()), "%Y-%m-%d").map_err(anyhow::Error::from)?;
    let end = date("endDate", q.end_date, today)?;
    let start = date("startDate", q.start_date, end - chrono::Days::new(29))?;
    if start > end {
        return Err(ApiError::field("startDate", "must not be after endDate"));
    }
    if (end - start).num_days() > 366 {
        return Err(ApiError::field(
            "startDate",
            "the period is at most 366 days",
        ));
    }
    let (s, e) = (
        start.format("%Y-%m-%d").to_string(),
        end.format("%Y-%m-%d").to_string(),
    );
    let rows: Vec<StatRow> = state
        .db
        .fetch_all(query("SELECT day, dim, dim_value, added, lost, active FROM customer_stats_daily WHERE tenant_id = ? AND day >= ? AND day <= ? ORDER BY day").bind(user.tenant_id).bind(s.as_str()).bind(e.as_str()))
        .await?;
    let mut daily = Vec::new();
    let mut by_channel: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let mut by_staff: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for r in rows {
        match r.dim.as_str() {
            "" => daily.push(Day {
                date: r.day,
                added: r.added,
                lost: r.lost,
                net: r.added - r.lost,
                active: r.active,
            }),
            "channel" => {
                let e = by_channel.entry(r.dim_value).or_default();
                e.0 += r.added;
                e.1 += r.lost;
            }
            _ => {
                let e = by_staff.entry(r.dim_value).or_default();
                e.0 += r.added;
                e.1 += r.lost;
            }
        }
    }
    let period = Day {
        date: format!("{s}..{e}"),
        added: daily.iter().map(|d| d.added).sum(),
        lost: daily.iter().map(|d| d.lost).sum(),
        net: daily.iter().map(|d| d.net).sum(),
        // Distinct per day; over a period, the sum of the days (customer-days).
        active: daily.iter().map(|d| d.active).sum(),
    };
    // Totals by status: index-only counts on (tenant_id, status, id).
    let by_status: Vec<(i64, i64)> = state
        .db
        .fetch_all(
            query("SELECT status, COUNT(*) FROM customer WHERE tenant_id = ? GROUP BY status")
                .bind(user.tenant_id),
        )
        .await?;
    let mut totals = Totals::default();
    for (status, n) in by_status {
        totals.total += n;
        match status {
            0 => totals.deleted = n,
            2 => totals.lost = n,
            _ => totals.normal += n,
        }
    }
    totals.blacklisted = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer_blacklist WHERE tenant_id = ?")
                .bind(user.tenant_id),
        )
        .await?;
    let slices = |m: std::collections::BTreeMap<String, (i64, i64)>| {
        m.into_iter()
            .map(|(key, (added, lost))| Slice { key, added, lost })
            .collect()
    };
    Ok(ok(Statistics {
        totals,
        start_date: s,
        end_date: e,
        period,
        daily,
        by_channel: slices(by_channel),
        by_staff: slices(by_staff),
    }))
}
