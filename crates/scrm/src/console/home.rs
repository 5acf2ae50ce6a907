//! The workbench (工作台): today's new and lost customers, sends in progress, failed jobs and
//! sync health, and 30 days of customer growth drawn as server-side SVG. Each figure shows only
//! when the role may see what it comes from.

use std::fmt::Write;

use askama::Template;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, PageResult, arg, data};
use crate::auth::permissions as perm;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    end_date: String,
    start_date: String,
    daily: Vec<Day>,
    totals: Totals,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Day {
    date: String,
    added: i64,
    lost: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    normal: i64,
}

#[derive(Deserialize)]
struct Paged {
    total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncStatus {
    configured: bool,
    types: Vec<SyncType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncType {
    running: bool,
    last: Option<SyncRun>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncRun {
    status: String,
    end_time: Option<String>,
}

/// Today's customer figures.
pub struct CustomerFigures {
    pub added: i64,
    pub lost: i64,
    pub total: i64,
    /// The 30-day chart, SVG markup built from numbers only.
    pub chart: String,
}

/// Today's job failures and the dead letters waiting.
pub struct JobFigures {
    pub failed_today: i64,
    pub dead: i64,
}

/// Sync health in one line.
pub struct SyncHealth {
    pub configured: bool,
    pub running: usize,
    pub failed: usize,
    pub last: Option<String>,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    c: Chrome,
    customers: Option<CustomerFigures>,
    sends: Option<i64>,
    jobs: Option<JobFigures>,
    sync: Option<SyncHealth>,
}

/// `GET /console`.
pub async fn page(State(state): State<AppState>, c: Chrome) -> PageResult {
    let user = c.user.clone();
    let customers = if c.can(perm::CUSTOMER_STATISTICS_VIEW) {
        let s: Stats = data(
            crate::customers::stats::statistics(
                State(state.clone()),
                user.clone(),
                ApiQuery(arg(json!({}))?),
            )
            .await,
        )?;
        let today = s.daily.iter().find(|d| d.date == s.end_date);
        Some(CustomerFigures {
            added: today.map_or(0, |d| d.added),
            lost: today.map_or(0, |d| d.lost),
            total: s.totals.normal,
            chart: growth_chart(&s, c.l),
        })
    } else {
        None
    };
    let sends = if c.can(perm::GROUP_SEND_TASKS_VIEW) {
        let mut n = 0;
        for status in ["PENDING", "PROCESSING"] {
            let p: Paged = data(
                crate::operation::group_send::list_tasks(
                    State(state.clone()),
                    user.clone(),
                    ApiQuery(arg(json!({"status": status, "size": 1}))?),
                )
                .await,
            )?;
            n += p.total;
        }
        Some(n)
    } else {
        None
    };
    let jobs = if c.can(perm::JOBS_VIEW) {
        let s = state
            .jobs
            .stats()
            .await
            .map_err(|e| crate::http::ApiError::Internal(e.into()))?;
        Some(JobFigures {
            failed_today: s.total.failed_today,
            dead: s.total.dead,
        })
    } else {
        None
    };
    let sync = if c.can(perm::WEWORK_SYNC_VIEW) {
        let s: SyncStatus = data(
            crate::integration::sync::routes::status(State(state.clone()), user.clone()).await,
        )?;
        Some(SyncHealth {
            configured: s.configured,
            running: s.types.iter().filter(|t| t.running).count(),
            failed: s
                .types
                .iter()
                .filter(|t| t.last.as_ref().is_some_and(|l| l.status == "failed"))
                .count(),
            last: s
                .types
                .iter()
                .filter_map(|t| t.last.as_ref().and_then(|l| l.end_time.clone()))
                .max()
                .map(|t| super::when(&t)),
        })
    } else {
        None
    };
    super::page(&HomePage {
        c,
        customers,
        sends,
        jobs,
        sync,
    })
}

/// Thirty days of added (green) and lost (red) customers as bars, one pair per day, with the
/// scale and the first, middle and last dates; days without figures are zero.
fn growth_chart(s: &Stats, l: super::Lang) -> String {
    let days = every_day(&s.start_date, &s.end_date, &s.daily);
    let (w, h, left, bottom, top) = (720.0_f64, 200.0_f64, 36.0, 24.0, 10.0);
    let max = days
        .iter()
        .map(|d| d.added.max(d.lost))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = h - bottom - top;
    let slot = (w - left) / days.len().max(1) as f64;
    let bar = (slot * 0.38).max(1.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg id="growth-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><line x1="{left}" y1="{y0}" x2="{w}" y2="{y0}" stroke="#cfd6de"/><text x="{tx}" y="{ty}" font-size="10" text-anchor="end" fill="#6b7785">{max}</text><text x="{tx}" y="{y0}" font-size="10" text-anchor="end" fill="#6b7785">0</text>"##,
        l.t("近30天客户增长", "Customer growth, last 30 days"),
        y0 = h - bottom,
        tx = left - 4.0,
        ty = top + 8.0,
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * slot + slot * 0.1;
        for (j, (v, color)) in [(d.added, "#1a9e5a"), (d.lost, "#d64545")]
            .into_iter()
            .enumerate()
        {
            let bh = plot_h * v as f64 / max as f64;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{color}"><title>{} {}</title></rect>"#,
                x + j as f64 * bar,
                h - bottom - bh,
                d.date,
                v
            );
        }
        if i == 0 || i == days.len() / 2 || i + 1 == days.len() {
            // The last date ends at the right edge instead of running off it.
            let (lx, anchor) = if i + 1 == days.len() {
                (w, "end")
            } else {
                (x, "start")
            };
            let _ = write!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" font-size="10" text-anchor="{anchor}" fill="#6b7785">{}</text>"##,
                h - 8.0,
                d.date.get(5..).unwrap_or(&d.date)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Every date from `start` to `end` with its figures (zero when none were recorded).
fn every_day(start: &str, end: &str, daily: &[Day]) -> Vec<Day> {
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let (Some(mut d), Some(end)) = (parse(start), parse(end)) else {
        return daily.to_vec();
    };
    let mut out = Vec::new();
    while d <= end && out.len() < 400 {
        let date = d.format("%Y-%m-%d").to_string();
        out.push(
            daily
                .iter()
                .find(|x| x.date == date)
                .cloned()
                .unwrap_or(Day {
                    date,
                    added: 0,
                    lost: 0,
                }),
        );
        match d.succ_opt() {
            Some(next) => d = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_pair_for_every_day_of_the_period() {
        let s = Stats {
            start_date: "2026-11-01".into(),
            end_date: "2026-11-30".into(),
            daily: vec![Day {
                date: "2026-11-15".into(),
                added: 7,
                lost: 2,
            }],
            totals: Totals { normal: 9 },
        };
        let svg = growth_chart(&s, super::super::Lang::En);
        assert_eq!(svg.matches("<rect").count(), 60);
        assert!(svg.contains("<title>2026-11-15 7</title>"));
        assert!(svg.contains("<title>2026-11-15 2</title>"));
        assert!(svg.contains(">7</text>"), "the scale is the largest figure");
    }
}
