//! Workflow SQL: workflows and their versions, runs and the step log, and starting runs in bulk
//! (500 subjects per transaction, multi-row inserts, the first step's job enqueued alongside).

use std::collections::HashSet;

use scrm_db::{Db, DbResult, Query, Tx, query};
use scrm_jobs::{Jobs, NewJob};
use serde::{Deserialize, Serialize};

use super::model::{Definition, Subject, key_of};
use super::status;

/// A workflow row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkflowRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub status: i64,
    pub trigger_type: Option<String>,
    pub current_version: i64,
    pub published_version_id: Option<i64>,
    pub published_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const WORKFLOW_COLUMNS: &str = "id, tenant_id, name, description, status, trigger_type, current_version, \
    published_version_id, published_at, created_at, updated_at";

/// A version row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: i64,
    pub tenant_id: i64,
    pub workflow_id: i64,
    pub version: i64,
    pub definition: String,
    pub published_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl VersionRow {
    /// The stored definition (it was checked when saved).
    pub fn definition(&self) -> anyhow::Result<Definition> {
        Ok(serde_json::from_str(&self.definition)?)
    }
}

const VERSION_COLUMNS: &str =
    "id, tenant_id, workflow_id, version, definition, published_at, created_at, updated_at";

/// Store a new workflow (a draft, version 1).
pub async fn insert_workflow(
    tx: &mut Tx,
    tenant_id: i64,
    user_id: Option<i64>,
    d: &Definition,
    now: i64,
) -> DbResult<i64> {
    let id = tx
        .insert_id(
            query(
                "INSERT INTO workflow (tenant_id, name, description, status, current_version, deleted, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, 0, 1, 0, ?, ?, ?)",
            )
            .bind(tenant_id)
            .bind(d.name.trim())
            .bind(d.description.clone())
            .bind(user_id)
            .bind(now)
            .bind(now),
        )
        .await?;
    insert_version(tx, tenant_id, id, 1, d, user_id, now).await?;
    Ok(id)
}

async fn insert_version(
    tx: &mut Tx,
    tenant_id: i64,
    workflow_id: i64,
    version: i64,
    d: &Definition,
    user_id: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    tx.insert_id(
        query(
            "INSERT INTO workflow_version (tenant_id, workflow_id, version, definition, created_by, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(workflow_id)
        .bind(version)
        .bind(serde_json::to_string(d).unwrap_or_default())
        .bind(user_id)
        .bind(now)
        .bind(now),
    )
    .await
}

/// Save an edit: the current version when it was never published, else a new version.
/// Returns the version number the definition now is.
pub async fn save_definition(
    tx: &mut Tx,
    w: &WorkflowRow,
    d: &Definition,
    user_id: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    let current = version_tx(tx, w.tenant_id, w.id, w.current_version)
        .await?
        .ok_or(scrm_db::DbError::NotFound)?;
    let version = if current.published_at.is_none() {
        tx.execute(
            query("UPDATE workflow_version SET definition = ?, updated_at = ? WHERE id = ?")
                .bind(serde_json::to_string(d).unwrap_or_default())
                .bind(now)
                .bind(current.id),
        )
        .await?;
        current.version
    } else {
        let v = current.version + 1;
        insert_version(tx, w.tenant_id, w.id, v, d, user_id, now).await?;
        v
    };
    tx.execute(
        query("UPDATE workflow SET name = ?, description = ?, current_version = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(d.name.trim())
            .bind(d.description.clone())
            .bind(version)
            .bind(now)
            .bind(w.tenant_id)
            .bind(w.id),
    )
    .await?;
    Ok(version)
}

/// Publish the current version: triggers start runs of it from now on.
pub async fn publish(tx: &mut Tx, w: &WorkflowRow, now: i64) -> DbResult<VersionRow> {
    let v = version_tx(tx, w.tenant_id, w.id, w.current_version)
        .await?
        .ok_or(scrm_db::DbError::NotFound)?;
    let d: Definition = serde_json::from_str(&v.definition)
        .map_err(|e| scrm_db::DbError::Config(format!("stored definition: {e}")))?;
    tx.execute(
        query("UPDATE workflow_version SET published_at = COALESCE(published_at, ?) WHERE id = ?")
            .bind(now)
            .bind(v.id),
    )
    .await?;
    if w.status != status::workflow::PUBLISHED {
        // Going live: a condition trigger looks at moments from now on (a new version of a live
        // workflow keeps the mark, so nothing between two checks is skipped).
        tx.execute(
            query("UPDATE workflow SET condition_checked_until = ? WHERE id = ?")
                .bind(now)
                .bind(w.id),
        )
        .await?;
    }
    tx.execute(
        query("UPDATE workflow SET status = ?, published_version_id = ?, published_at = ?, trigger_type = ?, updated_at = ? WHERE id = ?")
            .bind(status::workflow::PUBLISHED)
            .bind(v.id)
            .bind(now)
            .bind(d.trigger.kind.as_str())
            .bind(now)
            .bind(w.id),
    )
    .await?;
    Ok(VersionRow {
        published_at: Some(v.published_at.unwrap_or(now)),
        ..v
    })
}

/// A live workflow of a tenant.
pub async fn workflow(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<WorkflowRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE tenant_id = ? AND id = ? AND deleted = 0"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// A live workflow, locked for a change.
pub async fn workflow_tx(tx: &mut Tx, tenant_id: i64, id: i64) -> DbResult<Option<WorkflowRow>> {
    let lock = match tx.backend() {
        scrm_db::Backend::Sqlite => "",
        _ => " FOR UPDATE",
    };
    tx.fetch_optional(
        query(format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE tenant_id = ? AND id = ? AND deleted = 0{lock}"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// Published workflows of a trigger type with their published version.
pub async fn published_for(
    db: &Db,
    tenant_id: i64,
    trigger_type: &str,
) -> DbResult<Vec<(WorkflowRow, VersionRow)>> {
    let rows: Vec<WorkflowRow> = db
        .fetch_all(
            query(format!(
                "SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE tenant_id = ? AND status = ? AND trigger_type = ? AND deleted = 0"
            ))
            .bind(tenant_id)
            .bind(status::workflow::PUBLISHED)
            .bind(trigger_type),
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for w in rows {
        if let Some(vid) = w.published_version_id
            && let Some(v) = version_by_id(db, vid).await?
        {
            out.push((w, v));
        }
    }
    Ok(out)
}

/// One version by number.
pub async fn version(
    db: &Db,
    tenant_id: i64,
    workflow_id: i64,
    version: i64,
) -> DbResult<Option<VersionRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_version WHERE tenant_id = ? AND workflow_id = ? AND version = ?"
        ))
        .bind(tenant_id)
        .bind(workflow_id)
        .bind(version),
    )
    .await
}

async fn version_tx(
    tx: &mut Tx,
    tenant_id: i64,
    workflow_id: i64,
    version: i64,
) -> DbResult<Option<VersionRow>> {
    tx.fetch_optional(
        query(format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_version WHERE tenant_id = ? AND workflow_id = ? AND version = ?"
        ))
        .bind(tenant_id)
        .bind(workflow_id)
        .bind(version),
    )
    .await
}

/// One version by id.
pub async fn version_by_id(db: &Db, id: i64) -> DbResult<Option<VersionRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_version WHERE id = ?"
        ))
        .bind(id),
    )
    .await
}

/// Every version of a workflow, newest first.
pub async fn versions(db: &Db, tenant_id: i64, workflow_id: i64) -> DbResult<Vec<VersionRow>> {
    db.fetch_all(
        query(format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_version WHERE tenant_id = ? AND workflow_id = ? ORDER BY version DESC"
        ))
        .bind(tenant_id)
        .bind(workflow_id),
    )
    .await
}

/// The payload of a step job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPayload {
    pub run_id: i64,
    pub index: i64,
}

/// Job kind of a run's step.
pub const STEP: &str = "automation.workflow.step";

/// The job group of a run (pause, resume and cancel act on it).
pub fn group(run_id: i64) -> String {
    format!("wf:{run_id}")
}

/// The job of step `index` of a run, due at `at`.
pub fn step_job(tenant_id: i64, run_id: i64, index: i64, at: i64) -> scrm_db::DbResult<NewJob> {
    Ok(NewJob::new(STEP, &StepPayload { run_id, index })
        .map_err(|e| scrm_db::DbError::Config(e.to_string()))?
        .tenant(tenant_id)
        .group(group(run_id))
        .unique_key(format!("wf:{run_id}:{index}"))
        .run_at(at))
}

/// Enqueue jobs in `tx`.
pub async fn enqueue(jobs: &Jobs, tx: &mut Tx, new: Vec<NewJob>) -> DbResult<()> {
    jobs.enqueue_many(tx, new)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            scrm_jobs::JobsError::Db(d) => d,
            other => scrm_db::DbError::Config(other.to_string()),
        })
}

/// What starting runs did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub run_ids: Vec<i64>,
    /// Subjects that already had a run for this version (and occasion): not started twice.
    pub skipped_ids: Vec<i64>,
}

/// Where runs come from.
pub struct Start<'a> {
    pub version: &'a VersionRow,
    pub definition: &'a Definition,
    pub trigger_type: &'a str,
    /// The event id, schedule tick or user that started them.
    pub trigger_ref: Option<String>,
    /// A schedule's tick: part of the run key, so each tick runs once per subject.
    pub occasion: Option<i64>,
    pub at: i64,
}

/// The run key: one run per subject per version (and per schedule tick).
pub fn run_key(
    version_id: i64,
    subject: Subject,
    subject_id: i64,
    occasion: Option<i64>,
) -> String {
    match occasion {
        Some(t) => format!("v{version_id}:{}:{subject_id}:{t}", subject.code()),
        None => format!("v{version_id}:{}:{subject_id}", subject.code()),
    }
}

/// Start runs for `subject_ids`: a run, its first step's log row and job, due at `at`.
/// Subjects that already have a run for this version (and occasion) are skipped.
pub async fn start_runs(
    db: &Db,
    jobs: &Jobs,
    s: &Start<'_>,
    subject_ids: &[i64],
) -> DbResult<Started> {
    let mut out = Started::default();
    let mut seen = HashSet::new();
    let ids: Vec<i64> = subject_ids
        .iter()
        .copied()
        .filter(|i| seen.insert(*i))
        .collect();
    for chunk in ids.chunks(500) {
        match start_chunk(db, jobs, s, chunk).await {
            Ok(r) => {
                out.run_ids.extend(r.run_ids);
                out.skipped_ids.extend(r.skipped_ids);
            }
            // A concurrent trigger started one of these meanwhile: one by one.
            Err(e) if e.is_conflict() => {
                for one in chunk {
                    match start_chunk(db, jobs, s, std::slice::from_ref(one)).await {
                        Ok(r) => {
                            out.run_ids.extend(r.run_ids);
                            out.skipped_ids.extend(r.skipped_ids);
                        }
                        Err(e) if e.is_conflict() => out.skipped_ids.push(*one),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn start_chunk(db: &Db, jobs: &Jobs, s: &Start<'_>, ids: &[i64]) -> DbResult<Started> {
    let v = s.version;
    let subject = s.definition.trigger.subject();
    let Some(first) = s.definition.steps.first() else {
        return Ok(Started::default());
    };
    let mut tx = db.begin().await?;
    let keys: Vec<String> = ids
        .iter()
        .map(|id| run_key(v.id, subject, *id, s.occasion))
        .collect();
    let mut q = query("SELECT subject_id FROM workflow_run WHERE tenant_id = ? AND run_key IN ")
        .bind(v.tenant_id);
    q.push_in_list(keys.iter().cloned());
    let existing: HashSet<i64> = tx
        .fetch_all::<(i64,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    let fresh: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !existing.contains(id))
        .collect();
    let mut started = Started {
        skipped_ids: existing.into_iter().collect(),
        ..Default::default()
    };
    if fresh.is_empty() {
        tx.rollback().await?;
        return Ok(started);
    }
    let mut ins = query(
        "INSERT INTO workflow_run (tenant_id, workflow_id, version_id, version, subject_type, subject_id, run_key, \
         trigger_type, trigger_ref, status, current_step, next_step_at, created_at, updated_at) VALUES ",
    );
    for (i, id) in fresh.iter().enumerate() {
        ins.push_sql(if i == 0 {
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
        });
        ins.push_bind(v.tenant_id)
            .push_bind(v.workflow_id)
            .push_bind(v.id)
            .push_bind(v.version)
            .push_bind(subject.code())
            .push_bind(*id)
            .push_bind(run_key(v.id, subject, *id, s.occasion))
            .push_bind(s.trigger_type.to_string())
            .push_bind(s.trigger_ref.clone())
            .push_bind(status::PENDING)
            .push_bind(s.at)
            .push_bind(s.at)
            .push_bind(s.at);
    }
    tx.execute(ins).await?;
    let mut q =
        query("SELECT id FROM workflow_run WHERE tenant_id = ? AND run_key IN ").bind(v.tenant_id);
    q.push_in_list(
        fresh
            .iter()
            .map(|id| run_key(v.id, subject, *id, s.occasion)),
    );
    let runs: Vec<i64> = tx
        .fetch_all::<(i64,)>(q)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    let key = key_of(first, 0);
    let mut ins = query(
        "INSERT INTO workflow_run_step (tenant_id, run_id, step_index, step_key, step_type, status, due_at, created_at, updated_at) VALUES ",
    );
    for (i, r) in runs.iter().enumerate() {
        ins.push_sql(if i == 0 {
            "(?, ?, 0, ?, ?, 0, ?, ?, ?)"
        } else {
            ", (?, ?, 0, ?, ?, 0, ?, ?, ?)"
        });
        ins.push_bind(v.tenant_id)
            .push_bind(*r)
            .push_bind(key.clone())
            .push_bind(first.kind.as_str())
            .push_bind(s.at)
            .push_bind(s.at)
            .push_bind(s.at);
    }
    tx.execute(ins).await?;
    let new_jobs = runs
        .iter()
        .map(|r| step_job(v.tenant_id, *r, 0, s.at))
        .collect::<DbResult<Vec<_>>>()?;
    enqueue(jobs, &mut tx, new_jobs).await?;
    tx.commit().await?;
    started.run_ids = runs;
    Ok(started)
}

/// A run row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub tenant_id: i64,
    pub workflow_id: i64,
    pub version_id: i64,
    pub version: i64,
    pub subject_type: i64,
    pub subject_id: i64,
    pub trigger_type: String,
    pub trigger_ref: Option<String>,
    pub status: i64,
    pub current_step: i64,
    pub next_step_at: Option<i64>,
    pub paused_at: Option<i64>,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The run columns.
pub const RUN_COLUMNS: &str = "id, tenant_id, workflow_id, version_id, version, subject_type, subject_id, \
    trigger_type, trigger_ref, status, current_step, next_step_at, paused_at, error, started_at, finished_at, \
    created_at, updated_at";

/// A run by id (any tenant: jobs).
pub async fn run(db: &Db, id: i64) -> DbResult<Option<RunRow>> {
    db.fetch_optional(run_query(id)).await
}

/// The statement behind [`run`], for a caller reading inside a transaction.
pub fn run_query(id: i64) -> Query {
    query(format!(
        "SELECT {RUN_COLUMNS} FROM workflow_run WHERE id = ?"
    ))
    .bind(id)
}

/// A step log row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunStepRow {
    pub id: i64,
    pub run_id: i64,
    pub step_index: i64,
    pub step_key: String,
    pub step_type: String,
    pub status: i64,
    pub due_at: i64,
    pub attempt_started_at: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
}

const RUN_STEP_COLUMNS: &str = "id, run_id, step_index, step_key, step_type, status, due_at, attempt_started_at, \
    result, error, finished_at, created_at";

/// One step log row.
pub async fn run_step(db: &Db, run_id: i64, index: i64) -> DbResult<Option<RunStepRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {RUN_STEP_COLUMNS} FROM workflow_run_step WHERE run_id = ? AND step_index = ?"
        ))
        .bind(run_id)
        .bind(index),
    )
    .await
}

/// The step log of runs, in order.
pub async fn run_steps(db: &Db, tenant_id: i64, run_ids: &[i64]) -> DbResult<Vec<RunStepRow>> {
    if run_ids.is_empty() {
        return Ok(vec![]);
    }
    db.fetch_all(run_steps_query(tenant_id, run_ids)).await
}

/// The statement behind [`run_steps`] (`run_ids` not empty).
pub fn run_steps_query(tenant_id: i64, run_ids: &[i64]) -> Query {
    let mut q = query(format!(
        "SELECT {RUN_STEP_COLUMNS} FROM workflow_run_step WHERE tenant_id = ? AND run_id IN "
    ))
    .bind(tenant_id);
    q.push_in_list(run_ids.iter().copied());
    q.push_sql(" ORDER BY run_id, step_index");
    q
}
