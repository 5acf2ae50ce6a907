//! `/api/jobs`: seed 002's monitoring (queue length, processing, completed and failed today,
//! average process time, workers), the job list with attempt history, and control: retry,
//! replay dead letters, cancel, pause, resume (one job, many, or a whole group). A tenant sees
//! only its own jobs; the queue figures are the system's.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use scrm_jobs::{JobFilter, JobState, Scope, Target};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::AppState;

pub fn routes(state: &AppState) -> Routes {
    let view = Access::Permission(perm::JOBS_VIEW);
    let manage = Access::Permission(perm::JOBS_MANAGE);
    Routes::new(state, "jobs")
        .route(
            Method::GET,
            "/api/jobs",
            view,
            "Jobs, filtered by state (0-5), kind and group; newest first",
            list,
        )
        .route(
            Method::GET,
            "/api/jobs/stats",
            view,
            "Queue length, processing, completed and failed today, average time, per kind",
            stats,
        )
        .route(
            Method::GET,
            "/api/jobs/workers",
            view,
            "Registered workers with heartbeat, status and memory",
            workers,
        )
        .route(
            Method::GET,
            "/api/jobs/alerts",
            view,
            "Alerts raised by the alert rules, with their state",
            alerts,
        )
        .route(
            Method::POST,
            "/api/jobs/alerts/evaluate",
            manage,
            "Evaluate the alert rules now (they also run every minute) and notify the sinks",
            evaluate_alerts,
        )
        .route(
            Method::GET,
            "/api/jobs/alert-rules",
            view,
            "Alert rules: failure rate, dead letters or queue age, per kind or for all",
            alert_rules,
        )
        .route(
            Method::PUT,
            "/api/jobs/alert-rules/{name}",
            manage,
            "Create or replace an alert rule",
            put_alert_rule,
        )
        .route(
            Method::DELETE,
            "/api/jobs/alert-rules/{name}",
            manage,
            "Delete an alert rule",
            delete_alert_rule,
        )
        .route(
            Method::GET,
            "/api/jobs/{id}",
            view,
            "One job with its payload and attempt history",
            detail,
        )
        .route(
            Method::POST,
            "/api/jobs/{id}/retry",
            manage,
            "Run a failed (dead) or pending job again now",
            retry_one,
        )
        .route(
            Method::POST,
            "/api/jobs/{id}/cancel",
            manage,
            "Cancel a job (a running one stops cooperatively)",
            cancel_one,
        )
        .route(
            Method::POST,
            "/api/jobs/{id}/pause",
            manage,
            "Pause a pending job",
            pause_one,
        )
        .route(
            Method::POST,
            "/api/jobs/{id}/resume",
            manage,
            "Resume a paused job",
            resume_one,
        )
        .route(
            Method::POST,
            "/api/jobs/control",
            manage,
            "retry / replay / cancel / pause / resume / purge many jobs: by ids, group or filter",
            control,
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    state: Option<i64>,
    kind: Option<String>,
    group: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

fn state_of(code: Option<i64>) -> ApiResult<Option<JobState>> {
    code.map(|c| JobState::from_code(c).ok_or_else(|| ApiError::field("state", "must be 0-5")))
        .transpose()
}

fn scope(user: &CurrentUser) -> Scope {
    Scope::Tenant(user.tenant_id)
}

fn jobs_error(e: scrm_jobs::JobsError) -> ApiError {
    match e {
        scrm_jobs::JobsError::NotFound(_) => ApiError::NotFound("job"),
        other => ApiError::Internal(anyhow::Error::new(other)),
    }
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<scrm_jobs::JobRow>>> {
    let paging = Paging::new(q.page, q.page_size, 20, 500)?;
    let filter = JobFilter {
        state: state_of(q.state)?,
        kind: q.kind,
        group_key: q.group,
        ..Default::default()
    };
    let page = state
        .jobs
        .list_jobs(scope(&user), &filter, paging.page, paging.size)
        .await
        .map_err(jobs_error)?;
    Ok(ok(ListPage {
        list: page.items,
        total: page.total,
        page: paging.page,
        size: paging.size,
    }))
}

/// Seed 002's monitoring structure at the top (`queue_length`, `processing`, `completed_today`,
/// `failed_today`, `avg_process_time`, `worker_status` with each worker's id, status and memory),
/// then the same figures per kind (`kinds`), all kinds together (`total`) and the workers in full.
async fn stats(State(state): State<AppState>) -> ApiResult<Reply<Value>> {
    let s = state.jobs.stats().await.map_err(jobs_error)?;
    scrm_jobs::stats::export(&s);
    let worker_status: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "status": w.status,
                "memory": format!("{}MB", w.rss_bytes / (1024 * 1024)),
            })
        })
        .collect();
    let mut v = json!({
        "queue_length": s.total.queued,
        "processing": s.total.processing,
        "completed_today": s.total.completed_today,
        "failed_today": s.total.failed_today,
        "avg_process_time": s.total.avg_process_time,
        "worker_status": worker_status,
    });
    let full = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
    if let (Some(out), Value::Object(rest)) = (v.as_object_mut(), full) {
        out.extend(rest);
    }
    // The broker relays (events/relay): published, lag and last error per configured sink.
    let relay = crate::events::relay::status(&state.db, &state.config.events).await?;
    v["eventRelay"] = serde_json::to_value(relay).map_err(anyhow::Error::from)?;
    Ok(ok(v))
}

async fn workers(
    State(state): State<AppState>,
) -> ApiResult<Reply<Vec<scrm_jobs::worker::WorkerInfo>>> {
    Ok(ok(state.jobs.workers().await.map_err(jobs_error)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    state: Option<String>,
}

async fn alerts(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> ApiResult<Reply<Vec<scrm_jobs::Alert>>> {
    if let Some(s) = &q.state
        && !matches!(s.as_str(), "firing" | "resolved")
    {
        return Err(ApiError::field("state", "must be firing or resolved"));
    }
    Ok(ok(state
        .jobs
        .alerts(q.state.as_deref(), 200)
        .await
        .map_err(jobs_error)?))
}

async fn evaluate_alerts(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Value>> {
    let sinks = super::alerts::sinks(&state);
    let notified = state
        .jobs
        .evaluate_alerts(&sinks)
        .await
        .map_err(jobs_error)?;
    let firing = state
        .jobs
        .alerts(Some("firing"), 1000)
        .await
        .map_err(jobs_error)?
        .len();
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "job.alerts.evaluate",
        "job_alert_rule",
        "all".to_string(),
        json!({ "notified": notified, "firing": firing }),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({ "notified": notified, "firing": firing })))
}

/// An alert rule as the API shows and takes it. `threshold` is a fraction for `failure_rate`
/// (0.2 = 20 % of runs failed), a count for `dead_letters`, seconds for `oldest_queued`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertRuleView {
    name: String,
    kind: Option<String>,
    rule_type: scrm_jobs::RuleType,
    threshold: f64,
    window_minutes: i64,
    min_samples: i64,
    cooldown_minutes: i64,
    enabled: bool,
}

impl From<scrm_jobs::AlertRule> for AlertRuleView {
    fn from(r: scrm_jobs::AlertRule) -> Self {
        let threshold = if r.rule_type == scrm_jobs::RuleType::OldestQueued {
            r.threshold / 1000.0
        } else {
            r.threshold
        };
        AlertRuleView {
            name: r.name,
            kind: r.kind,
            rule_type: r.rule_type,
            threshold,
            window_minutes: r.window_ms / 60_000,
            min_samples: r.min_samples,
            cooldown_minutes: r.cooldown_ms / 60_000,
            enabled: r.enabled,
        }
    }
}

async fn alert_rules(State(state): State<AppState>) -> ApiResult<Reply<Vec<AlertRuleView>>> {
    let rules = state.jobs.alert_rules().await.map_err(jobs_error)?;
    Ok(ok(rules.into_iter().map(AlertRuleView::from).collect()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlertRuleBody {
    kind: Option<String>,
    rule_type: String,
    threshold: f64,
    window_minutes: Option<i64>,
    min_samples: Option<i64>,
    cooldown_minutes: Option<i64>,
    enabled: Option<bool>,
}

fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn put_alert_rule(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<AlertRuleBody>,
) -> ApiResult<Reply<AlertRuleView>> {
    use scrm_jobs::RuleType;
    if !valid_rule_name(&name) {
        return Err(ApiError::field(
            "name",
            "1-100 characters: letters, digits, '-', '_' or '.'",
        ));
    }
    let rule_type = match b.rule_type.as_str() {
        "failure_rate" => RuleType::FailureRate,
        "dead_letters" => RuleType::DeadLetters,
        "oldest_queued" => RuleType::OldestQueued,
        _ => {
            return Err(ApiError::field(
                "ruleType",
                "must be failure_rate, dead_letters or oldest_queued",
            ));
        }
    };
    let threshold_ok = b.threshold.is_finite()
        && match rule_type {
            RuleType::FailureRate => b.threshold > 0.0 && b.threshold < 1.0,
            RuleType::DeadLetters | RuleType::OldestQueued => b.threshold >= 0.0,
        };
    if !threshold_ok {
        return Err(ApiError::field(
            "threshold",
            match rule_type {
                RuleType::FailureRate => "a fraction between 0 and 1 (0.2 = 20 %)",
                RuleType::DeadLetters => "a count of dead jobs, 0 or more",
                RuleType::OldestQueued => "seconds a due job may wait, 0 or more",
            },
        ));
    }
    let window = b.window_minutes.unwrap_or(10);
    if !(1..=24 * 60).contains(&window) {
        return Err(ApiError::field("windowMinutes", "1 to 1440"));
    }
    let cooldown = b.cooldown_minutes.unwrap_or(30);
    if !(0..=7 * 24 * 60).contains(&cooldown) {
        return Err(ApiError::field("cooldownMinutes", "0 to 10080"));
    }
    let min_samples = b.min_samples.unwrap_or(10);
    if min_samples < 0 {
        return Err(ApiError::field("minSamples", "0 or more"));
    }
    if let Some(k) = &b.kind
        && (k.is_empty() || k.len() > 100)
    {
        return Err(ApiError::field("kind", "a job kind, 1-100 characters"));
    }
    let rule = scrm_jobs::AlertRule {
        name: name.clone(),
        kind: b.kind,
        rule_type,
        threshold: if rule_type == RuleType::OldestQueued {
            b.threshold * 1000.0
        } else {
            b.threshold
        },
        window_ms: window * 60_000,
        min_samples,
        cooldown_ms: cooldown * 60_000,
        enabled: b.enabled.unwrap_or(true),
    };
    state
        .jobs
        .upsert_alert_rule(&rule)
        .await
        .map_err(jobs_error)?;
    let view = AlertRuleView::from(rule);
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "job.alert_rule.put",
        "job_alert_rule",
        name,
        serde_json::to_value(&view).map_err(anyhow::Error::from)?,
    )
    .await?;
    tx.commit().await?;
    Ok(ok(view))
}

async fn delete_alert_rule(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Reply<Value>> {
    if !state
        .jobs
        .delete_alert_rule(&name)
        .await
        .map_err(jobs_error)?
    {
        return Err(ApiError::NotFound("alert rule"));
    }
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "job.alert_rule.delete",
        "job_alert_rule",
        name.clone(),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({ "deleted": name })))
}

async fn detail(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<scrm_jobs::JobDetail>> {
    Ok(ok(state
        .jobs
        .get_job(scope(&user), id)
        .await
        .map_err(jobs_error)?))
}

/// One control action on a target, audited.
async fn act(
    state: &AppState,
    user: &CurrentUser,
    action: &str,
    target: Target,
) -> ApiResult<Value> {
    let s = scope(user);
    let j = &state.jobs;
    let result = match action {
        "retry" => json!({ "affected": j.retry(s, &target).await.map_err(jobs_error)? }),
        "replay" => json!({ "affected": j.replay(s, &target).await.map_err(jobs_error)? }),
        "cancel" => serde_json::to_value(j.cancel(s, &target).await.map_err(jobs_error)?)
            .map_err(anyhow::Error::from)?,
        "pause" => json!({ "affected": j.pause(s, &target).await.map_err(jobs_error)? }),
        "resume" => json!({ "affected": j.resume(s, &target, false).await.map_err(jobs_error)? }),
        "purge" => json!({ "affected": j.purge_dead(s, &target).await.map_err(jobs_error)? }),
        other => {
            return Err(ApiError::field(
                "action",
                format!("{other:?} is not retry, replay, cancel, pause, resume or purge"),
            ));
        }
    };
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        user,
        &format!("job.{action}"),
        "job",
        target_label(&target),
        json!({ "target": target, "result": result }),
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

fn target_label(t: &Target) -> String {
    match t {
        Target::Ids(ids) if ids.len() == 1 => ids[0].to_string(),
        Target::Ids(ids) => format!("{} jobs", ids.len()),
        Target::Group(g) => format!("group {g}"),
        Target::Filter(_) => "filter".into(),
    }
}

async fn one(state: AppState, user: CurrentUser, id: i64, action: &str) -> ApiResult<Reply<Value>> {
    // 404 for another tenant's job or none at all, before acting.
    state
        .jobs
        .get_job(scope(&user), id)
        .await
        .map_err(jobs_error)?;
    let result = act(&state, &user, action, Target::Ids(vec![id])).await?;
    let affected = result.get("affected").and_then(Value::as_u64).unwrap_or(1)
        + result.get("cancelled").and_then(Value::as_u64).unwrap_or(0)
        + result
            .get("cancelling")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    if affected == 0 {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "JOB_STATE_CONFLICT",
            format!("the job is not in a state that allows {action}"),
        ));
    }
    Ok(ok(result))
}

pub(crate) async fn retry_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    one(state, user, id, "retry").await
}
async fn cancel_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    one(state, user, id, "cancel").await
}
async fn pause_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    one(state, user, id, "pause").await
}
async fn resume_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    one(state, user, id, "resume").await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ControlBody {
    action: String,
    ids: Option<Vec<i64>>,
    group: Option<String>,
    state: Option<i64>,
    kind: Option<String>,
}

async fn control(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ControlBody>,
) -> ApiResult<Reply<Value>> {
    let target = match (body.ids, body.group) {
        (Some(ids), None) if !ids.is_empty() && ids.len() <= 10_000 => Target::Ids(ids),
        (Some(_), None) => return Err(ApiError::field("ids", "give 1 to 10,000 ids")),
        (None, Some(g)) if !g.is_empty() => Target::Group(g),
        (None, None) if body.state.is_some() || body.kind.is_some() => Target::Filter(JobFilter {
            state: state_of(body.state)?,
            kind: body.kind,
            ..Default::default()
        }),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of ids, group, or a state/kind filter",
            ));
        }
    };
    Ok(ok(act(&state, &user, &body.action, target).await?))
}
