//! SOP SQL: templates and steps, executions and their step log, and starting executions in
//! bulk — 500 targets per transaction, multi-row inserts, the step jobs enqueued alongside.

use scrm_db::{Db, DbResult, Tx, query};
use scrm_jobs::{Jobs, NewJob};
use serde::{Deserialize, Serialize};

use super::model::{Template, delay_ms};
use super::status;

/// A template row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: i64,
    pub tenant_id: i64,
    pub template_name: String,
    pub template_type: i64,
    pub trigger_type: i64,
    pub trigger_config: Option<String>,
    pub description: Option<String>,
    pub status: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A step row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRow {
    pub id: i64,
    pub template_id: i64,
    pub step_order: i64,
    pub step_name: String,
    pub step_type: i64,
    pub delay_time: i64,
    pub delay_unit: String,
    pub action_content: String,
}

const TEMPLATE_COLUMNS: &str = "id, tenant_id, template_name, template_type, trigger_type, trigger_config, \
    description, status, created_at, updated_at";

/// Insert a template's steps.
async fn insert_steps(
    tx: &mut Tx,
    tenant_id: i64,
    template_id: i64,
    t: &Template,
    now: i64,
) -> DbResult<()> {
    for (i, s) in t.steps.iter().enumerate() {
        tx.execute(
            query(
                "INSERT INTO sop_step (tenant_id, template_id, step_order, step_name, step_type, delay_time, \
                 delay_unit, action_content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(template_id)
            .bind(i + 1)
            .bind(&s.name)
            .bind(s.step_type)
            .bind(s.delay_time)
            .bind(&s.delay_unit)
            .bind(s.action_content.to_string())
            .bind(now),
        )
        .await?;
    }
    Ok(())
}

/// Store a template with its steps.
pub async fn insert_template(
    tx: &mut Tx,
    tenant_id: i64,
    user_id: i64,
    t: &Template,
    now: i64,
) -> DbResult<i64> {
    let id = tx
        .insert_id(
            query(
                "INSERT INTO sop_template (tenant_id, template_name, template_type, trigger_type, trigger_config, \
                 description, status, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(&t.name)
            .bind(t.template_type)
            .bind(t.trigger_type)
            .bind(t.trigger_config.to_string())
            .bind(t.description.clone())
            .bind(t.status)
            .bind(user_id)
            .bind(now)
            .bind(now),
        )
        .await?;
    insert_steps(tx, tenant_id, id, t, now).await?;
    Ok(id)
}

/// Replace a template and its steps (running executions keep the steps they started with).
pub async fn update_template(
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
    t: &Template,
    now: i64,
) -> DbResult<bool> {
    let n = tx
        .execute(
            query(
                "UPDATE sop_template SET template_name = ?, template_type = ?, trigger_type = ?, trigger_config = ?, \
                 description = ?, status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND deleted = 0",
            )
            .bind(&t.name)
            .bind(t.template_type)
            .bind(t.trigger_type)
            .bind(t.trigger_config.to_string())
            .bind(t.description.clone())
            .bind(t.status)
            .bind(now)
            .bind(tenant_id)
            .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Ok(false);
    }
    tx.execute(
        query("DELETE FROM sop_step WHERE tenant_id = ? AND template_id = ?")
            .bind(tenant_id)
            .bind(id),
    )
    .await?;
    insert_steps(tx, tenant_id, id, t, now).await?;
    Ok(true)
}

/// A live template.
pub async fn get_template(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<TemplateRow>> {
    db.fetch_optional(
        query(format!("SELECT {TEMPLATE_COLUMNS} FROM sop_template WHERE tenant_id = ? AND id = ? AND deleted = 0"))
            .bind(tenant_id)
            .bind(id),
    )
    .await
}

/// Live templates of a trigger type, enabled.
pub async fn templates_for_trigger(
    db: &Db,
    tenant_id: i64,
    trigger_type: i64,
) -> DbResult<Vec<TemplateRow>> {
    db.fetch_all(
        query(format!(
            "SELECT {TEMPLATE_COLUMNS} FROM sop_template WHERE tenant_id = ? AND trigger_type = ? AND deleted = 0 AND status = 1"
        ))
        .bind(tenant_id)
        .bind(trigger_type),
    )
    .await
}

/// A page of live templates.
pub async fn list_templates(
    db: &Db,
    tenant_id: i64,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<TemplateRow>, i64)> {
    let total = db
        .fetch_i64(
            query("SELECT COUNT(*) FROM sop_template WHERE tenant_id = ? AND deleted = 0")
                .bind(tenant_id),
        )
        .await?;
    let rows = db
        .fetch_all(
            query(format!(
                "SELECT {TEMPLATE_COLUMNS} FROM sop_template WHERE tenant_id = ? AND deleted = 0 ORDER BY id DESC LIMIT ? OFFSET ?"
            ))
            .bind(tenant_id)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    Ok((rows, total))
}

/// Steps of templates, in order.
pub async fn steps_of(db: &Db, tenant_id: i64, template_ids: &[i64]) -> DbResult<Vec<StepRow>> {
    if template_ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query(
        "SELECT id, template_id, step_order, step_name, step_type, delay_time, delay_unit, action_content \
         FROM sop_step WHERE tenant_id = ? AND template_id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(template_ids.iter().copied());
    q.push_sql(" ORDER BY template_id, step_order");
    db.fetch_all(q).await
}

/// The payload of a `sop.step` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPayload {
    pub execution_id: i64,
    pub step_order: i64,
}

/// The job kind of a step.
pub const STEP: &str = "sop.step";

/// The job group of an execution.
pub fn group(execution_id: i64) -> String {
    format!("sop:{execution_id}")
}

fn active_key(template_id: i64, target_type: i64, target_id: i64) -> String {
    format!("{template_id}:{target_type}:{target_id}")
}

/// What starting executions did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub execution_ids: Vec<i64>,
    /// Targets already running this template (not started twice).
    pub skipped_target_ids: Vec<i64>,
}

/// Start `template` for each target: an execution, its step log and one job per step, due at
/// `triggered_at + delay`. Targets already running the template are skipped.
#[allow(clippy::too_many_arguments)]
pub async fn start_executions(
    db: &Db,
    jobs: &Jobs,
    t: &TemplateRow,
    steps: &[StepRow],
    target_type: i64,
    target_ids: &[i64],
    trigger_type: i64,
    triggered_at: i64,
) -> DbResult<Started> {
    let mut out = Started::default();
    let mut seen = std::collections::HashSet::new();
    let targets: Vec<i64> = target_ids
        .iter()
        .copied()
        .filter(|i| seen.insert(*i))
        .collect();
    for chunk in targets.chunks(500) {
        match start_chunk(
            db,
            jobs,
            t,
            steps,
            target_type,
            chunk,
            trigger_type,
            triggered_at,
        )
        .await
        {
            Ok(s) => {
                out.execution_ids.extend(s.execution_ids);
                out.skipped_target_ids.extend(s.skipped_target_ids);
            }
            // A concurrent trigger started one of these meanwhile: go one by one.
            Err(e) if e.is_conflict() => {
                for one in chunk {
                    match start_chunk(
                        db,
                        jobs,
                        t,
                        steps,
                        target_type,
                        std::slice::from_ref(one),
                        trigger_type,
                        triggered_at,
                    )
                    .await
                    {
                        Ok(s) => {
                            out.execution_ids.extend(s.execution_ids);
                            out.skipped_target_ids.extend(s.skipped_target_ids);
                        }
                        Err(e) if e.is_conflict() => out.skipped_target_ids.push(*one),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn start_chunk(
    db: &Db,
    jobs: &Jobs,
    t: &TemplateRow,
    steps: &[StepRow],
    target_type: i64,
    targets: &[i64],
    trigger_type: i64,
    at: i64,
) -> DbResult<Started> {
    let mut tx = db.begin().await?;
    let keys: Vec<String> = targets
        .iter()
        .map(|id| active_key(t.id, target_type, *id))
        .collect();
    let mut q = query("SELECT target_id FROM sop_execution WHERE tenant_id = ? AND active_key IN ")
        .bind(t.tenant_id);
    q.push_in_list(keys.iter().cloned());
    let running: std::collections::HashSet<i64> = tx
        .fetch_all::<(i64,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    let fresh: Vec<i64> = targets
        .iter()
        .copied()
        .filter(|id| !running.contains(id))
        .collect();
    let mut started = Started {
        skipped_target_ids: running.into_iter().collect(),
        ..Default::default()
    };
    if fresh.is_empty() {
        tx.rollback().await?;
        return Ok(started);
    }
    let mut ins = query(
        "INSERT INTO sop_execution (tenant_id, template_id, target_type, target_id, trigger_type, status, active_key, \
         current_step, total_steps, triggered_at, created_at, updated_at) VALUES ",
    );
    for (i, id) in fresh.iter().enumerate() {
        ins.push_sql(if i == 0 { "(" } else { ", (" });
        for (j, v) in [
            t.tenant_id,
            t.id,
            target_type,
            *id,
            trigger_type,
            status::RUNNING,
        ]
        .iter()
        .enumerate()
        {
            if j > 0 {
                ins.push_sql(", ");
            }
            ins.push_sql("?").push_bind(*v);
        }
        ins.push_sql(", ?")
            .push_bind(active_key(t.id, target_type, *id));
        ins.push_sql(", 0, ?, ?, ?, ?)")
            .push_bind(steps.len())
            .push_bind(at)
            .push_bind(at)
            .push_bind(at);
    }
    tx.execute(ins).await?;
    let mut q =
        query("SELECT id, target_id FROM sop_execution WHERE tenant_id = ? AND active_key IN ")
            .bind(t.tenant_id);
    q.push_in_list(fresh.iter().map(|id| active_key(t.id, target_type, *id)));
    let execs: Vec<(i64, i64)> = tx.fetch_all(q).await?;
    let rows: Vec<(i64, &StepRow)> = execs
        .iter()
        .flat_map(|(e, _)| steps.iter().map(move |s| (*e, s)))
        .collect();
    for part in rows.chunks(1000) {
        let mut ins = query(
            "INSERT INTO sop_execution_step (tenant_id, execution_id, step_order, step_name, step_type, action_content, \
             due_at, status, created_at, updated_at) VALUES ",
        );
        for (i, (e, s)) in part.iter().enumerate() {
            ins.push_sql(if i == 0 {
                "(?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
            } else {
                ", (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
            });
            ins.push_bind(t.tenant_id)
                .push_bind(*e)
                .push_bind(s.step_order)
                .push_bind(s.step_name.clone())
                .push_bind(s.step_type)
                .push_bind(s.action_content.clone())
                .push_bind(at + delay_ms(s.delay_time, &s.delay_unit))
                .push_bind(at)
                .push_bind(at);
        }
        tx.execute(ins).await?;
    }
    let mut new_jobs = Vec::with_capacity(rows.len());
    for (e, s) in &rows {
        let job = NewJob::new(
            STEP,
            &StepPayload {
                execution_id: *e,
                step_order: s.step_order,
            },
        )
        .map_err(|e| scrm_db::DbError::Config(e.to_string()))?
        .tenant(t.tenant_id)
        .group(group(*e))
        .unique_key(format!("sop:{e}:{}", s.step_order))
        .run_at(at + delay_ms(s.delay_time, &s.delay_unit));
        new_jobs.push(job);
    }
    jobs.enqueue_many(&mut tx, new_jobs)
        .await
        .map_err(|e| match e {
            scrm_jobs::JobsError::Db(d) => d,
            other => scrm_db::DbError::Config(other.to_string()),
        })?;
    tx.commit().await?;
    started.execution_ids = execs.into_iter().map(|r| r.0).collect();
    Ok(started)
}

/// An execution row.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ExecutionRow {
    pub id: i64,
    pub tenant_id: i64,
    pub template_id: i64,
    pub target_type: i64,
    pub target_id: i64,
    pub trigger_type: i64,
    pub status: i64,
    pub current_step: i64,
    pub total_steps: i64,
    pub triggered_at: i64,
    pub paused_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The execution's columns.
pub const EXECUTION_COLUMNS: &str = "id, tenant_id, template_id, target_type, target_id, trigger_type, status, \
    current_step, total_steps, triggered_at, paused_at, finished_at, error, created_at, updated_at";

/// One execution by id.
pub async fn execution(db: &Db, id: i64) -> DbResult<Option<ExecutionRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {EXECUTION_COLUMNS} FROM sop_execution WHERE id = ?"
        ))
        .bind(id),
    )
    .await
}

/// A step log row.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecStepRow {
    pub id: i64,
    pub step_order: i64,
    pub step_name: String,
    pub step_type: i64,
    pub action_content: String,
    pub due_at: i64,
    pub status: i64,
    pub attempt_started_at: Option<i64>,
    pub msgid: Option<String>,
    pub result: Option<String>,
    pub executed_at: Option<i64>,
}

/// The step log of executions.
pub async fn exec_steps(
    db: &Db,
    tenant_id: i64,
    execution_ids: &[i64],
) -> DbResult<Vec<(i64, ExecStepRow)>> {
    match exec_steps_query(tenant_id, execution_ids) {
        None => Ok(vec![]),
        Some(q) => Ok(exec_steps_of(db.fetch_all(q).await?)),
    }
}

/// The steps of executions in one statement, to run in a transaction (a list read from one
/// snapshot); `None` for no executions. Its rows go through [`exec_steps_of`].
pub fn exec_steps_query(tenant_id: i64, execution_ids: &[i64]) -> Option<scrm_db::Query> {
    if execution_ids.is_empty() {
        return None;
    }
    let mut q = query(
        "SELECT execution_id, id, step_order, step_name, step_type, action_content, due_at, status, \
         attempt_started_at, msgid, result, executed_at FROM sop_execution_step WHERE tenant_id = ? AND execution_id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(execution_ids.iter().copied());
    q.push_sql(" ORDER BY execution_id, step_order");
    Some(q)
}

/// A row of [`exec_steps_query`]: the step and its execution.
#[derive(sqlx::FromRow)]
pub struct ExecStepOf {
    execution_id: i64,
    #[sqlx(flatten)]
    step: ExecStepRow,
}

/// (execution id, step) pairs from [`exec_steps_query`]'s rows.
pub fn exec_steps_of(rows: Vec<ExecStepOf>) -> Vec<(i64, ExecStepRow)> {
    rows.into_iter().map(|r| (r.execution_id, r.step)).collect()
}
