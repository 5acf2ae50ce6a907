//! Export of a filtered customer list (seed 002's `POST /v1/export/friends`, and
//! `POST /api/v1/customers/export`) as CSV or XLSX.
//!
//! Up to [`INLINE_LIMIT`] rows the file is the answer. Larger lists (or `"async": true`) are
//! recorded as an export in the same transaction as the job that builds the file (`202` with
//! the export's id and links); the job writes the file to a temporary file, then stores it in the
//! database in chunks of at most 1 MiB — so whichever API process a download reaches can serve
//! it — and the export shows `done` with its row count. A download streams the chunks; after
//! [`KEEP_MS`] it is `410 EXPORT_EXPIRED`, and an hourly job deletes expired files.

use std::io::{Read, Write};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scrm_db::{Db, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::search::{self, Filter, Keyword};
use super::store;
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

/// The most rows an export answers inline; more become an export job.
pub const INLINE_LIMIT: i64 = 50_000;
/// The most rows one export job writes (XLSX's sheet holds 1,048,576 rows with the header).
pub const JOB_LIMIT: i64 = 1_048_575;
/// How long a finished export can be downloaded.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;
/// Size of one stored piece of an export file.
const CHUNK_BYTES: usize = 1 << 20;
/// Job kind that builds an export file.
pub const EXPORT_JOB: &str = "customers.export";
/// Job kind that deletes expired export files (hourly).
pub const CLEANUP_JOB: &str = "customers.export.cleanup";

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/v1/export/friends",
            Access::Permission(perm::EXPORT_FRIENDS),
            "Seed 002: export customers (friends) as CSV or XLSX; large lists as a job (202)",
            export,
        )
        .route(
            M::POST,
            "/api/v1/customers/export",
            Access::Permission(perm::CUSTOMER_EXPORT),
            "Export a filtered customer list as CSV or XLSX; large lists as a job (202)",
            export,
        )
        .route(
            M::GET,
            "/api/v1/customers/exports",
            Access::Permission(perm::CUSTOMER_EXPORT),
            "Export jobs, newest first (page, size)",
            list_exports,
        )
        .route(
            M::GET,
            "/api/v1/customers/exports/{id}",
            Access::Permission(perm::CUSTOMER_EXPORT),
            "One export job: status, rows, size, download link while it lasts",
            get_export,
        )
        .route(
            M::GET,
            "/api/v1/customers/exports/{id}/download",
            Access::Permission(perm::CUSTOMER_EXPORT),
            "Download a finished export (410 EXPORT_EXPIRED after 24 hours)",
            download,
        )
}

/// The export filter (the list's filters), format and mode.
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    /// Build the file as a job even when it is small.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    run_async: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyword: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag_ids: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_ids: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
}

impl ExportBody {
    fn filter(&self) -> Filter {
        Filter {
            tag_ids: self.tag_ids.clone().unwrap_or_default(),
            group_ids: self.group_ids.clone().unwrap_or_default(),
            keyword: self.keyword.as_deref().and_then(Keyword::parse),
            channel: self.channel.clone(),
            status: self.status,
            follow_user_id: self.follow_user_id,
            stage: self.stage.clone(),
            ..Default::default()
        }
    }

    fn format(&self) -> ApiResult<Format> {
        match self.format.as_deref() {
            None | Some("csv") => Ok(Format::Csv),
            Some("xlsx") => Ok(Format::Xlsx),
            Some(_) => Err(ApiError::field("format", "must be csv or xlsx")),
        }
    }
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// The columns of an export, which an import reads back.
pub const HEADER: &[&str] = &[
    "id",
    "externalUserid",
    "name",
    "mobile",
    "gender",
    "type",
    "corpName",
    "province",
    "city",
    "channel",
    "stage",
    "status",
    "followUserId",
    "remark",
    "description",
    "addTime",
    "tags",
];

/// A cell as written to a file: text starting with = + - @ is a formula to a spreadsheet, so
/// it gets a leading quote (CSV injection), unless it is a plain negative number.
fn safe_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) && !s.chars().skip(1).all(|c| c.is_ascii_digit()) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// Writes rows to a file of one format.
enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Xlsx {
        book: Box<rust_xlsxwriter::Workbook>,
        row: u32,
        out: W,
    },
}

impl<W: Write> Sink<W> {
    fn new(format: Format, mut out: W) -> anyhow::Result<Self> {
        let mut sink = match format {
            Format::Csv => {
                out.write_all("\u{feff}".as_bytes())?; // a BOM, so Excel reads UTF-8 names
                Sink::Csv(Box::new(csv::Writer::from_writer(out)))
            }
            Format::Xlsx => {
                let mut book = Box::new(rust_xlsxwriter::Workbook::new());
                book.add_worksheet_with_constant_memory()?
                    .set_name("customers")?;
                Sink::Xlsx { book, row: 0, out }
            }
        };
        sink.row(HEADER.iter().map(|h| h.to_string()).collect())?;
        Ok(sink)
    }

    fn row(&mut self, cells: Vec<String>) -> anyhow::Result<()> {
        match self {
            Sink::Csv(w) => w.write_record(cells.iter().map(|c| safe_cell(c)))?,
            Sink::Xlsx { book, row, .. } => {
                let sheet = book.worksheet_from_index(0)?;
                for (col, c) in cells.iter().enumerate() {
                    sheet.write_string(*row, col as u16, safe_cell(c))?;
                }
                *row += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<W> {
        match self {
            Sink::Csv(w) => Ok(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?),
            Sink::Xlsx {
                mut book, mut out, ..
            } => {
                out.write_all(&book.save_to_buffer()?)?;
                Ok(out)
            }
        }
    }
}

/// Write every customer the filter matches, newest first, 1,000 at a time; returns the row count.
async fn write_rows<W: Write>(
    db: &Db,
    tenant_id: i64,
    filter: &Filter,
    sink: &mut Sink<W>,
    limit: i64,
) -> anyhow::Result<i64> {
    let mut written = 0;
    // Keyset paging: each page starts below the last id written, so a million-row export reads
    // every row once instead of re-reading the prefix at each OFFSET.
    let mut before: Option<i64> = None;
    while written < limit {
        let rows =
            search::page_before(db, tenant_id, filter, before, 1000.min(limit - written)).await?;
        let Some(last) = rows.last() else {
            break;
        };
        before = Some(last.id);
        written += rows.len() as i64;
        for v in store::views(db, tenant_id, rows).await? {
            let tags: Vec<String> = v.tags.iter().map(|t| t.name.clone()).collect();
            sink.row(vec![
                v.id.to_string(),
                v.external_userid,
                v.name.unwrap_or_default(),
                v.mobile.unwrap_or_default(),
                v.gender.map(|g| g.to_string()).unwrap_or_default(),
                v.kind.to_string(),
                v.corp_name.unwrap_or_default(),
                v.province.unwrap_or_default(),
                v.city.unwrap_or_default(),
                v.channel.unwrap_or_default(),
                v.stage,
                v.status.to_string(),
                v.follow_user_id.map(|f| f.to_string()).unwrap_or_default(),
                v.remark.unwrap_or_default(),
                v.description.unwrap_or_default(),
                v.add_time.unwrap_or_default(),
                tags.join("|"),
            ])?;
        }
    }
    Ok(written)
}

fn file_name(format: Format) -> String {
    format!(
        "customers-{}.{}",
        iso(now_ms()).replace([':', '-'], ""),
        format.name()
    )
}

fn attachment(format: Format, name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn export(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ExportBody>,
) -> ApiResult<Response> {
    let format = b.format()?;
    let filter = b.filter();
    let total = search::count(&state.db, user.tenant_id, &filter).await?;
    if total > JOB_LIMIT {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXPORT_TOO_LARGE",
            format!("{total} customers: narrow the filter to at most {JOB_LIMIT}"),
        ));
    }
    if total > INLINE_LIMIT || b.run_async == Some(true) {
        return start_job(&state, &user, b, format, total).await;
    }
    let mut sink = Sink::new(format, Vec::new())?;
    let rows = write_rows(&state.db, user.tenant_id, &filter, &mut sink, INLINE_LIMIT).await?;
    let bytes = sink.finish()?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "customer.export",
        "customer",
        0,
        json!({"rows": rows, "format": format.name()}),
    )
    .await?;
    tx.commit().await?;
    Ok(attachment(format, &file_name(format), Body::from(bytes)))
}

/// Record the export and its job in one transaction; answer 202 with where to look.
async fn start_job(
    state: &AppState,
    user: &CurrentUser,
    b: ExportBody,
    format: Format,
    total: i64,
) -> ApiResult<Response> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO customer_export (tenant_id, format, filter, status, row_count, \
                 byte_count, file_name, created_by, created_at) VALUES (?, ?, ?, 'pending', 0, 0, ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(format.name())
            .bind(serde_json::to_string(&b).map_err(anyhow::Error::from)?)
            .bind(file_name(format))
            .bind(user.id)
            .bind(now),
        )
        .await?;
    let job = NewJob::new(EXPORT_JOB, &json!({"exportId": id}))
        .map_err(anyhow::Error::from)?
        .tenant(user.tenant_id)
        .unique_key(format!("customer-export:{id}"));
    state
        .jobs
        .enqueue(&mut tx, job)
        .await
        .map_err(anyhow::Error::from)?;
    audit::record(
        &mut tx,
        user,
        "customer.export",
        "customer_export",
        id,
        json!({"expected": total, "format": format.name(), "async": true}),
    )
    .await?;
    // The record as created (read before the commit: a worker may start it at once after).
    let view = tx
        .fetch_optional::<ExportRow>(
            query(format!(
                "SELECT {COLUMNS} FROM customer_export WHERE tenant_id = ? AND id = ?"
            ))
            .bind(user.tenant_id)
            .bind(id),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("export"))?
        .view(now);
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"code": 0, "message": "accepted", "data": view})),
    )
        .into_response())
}

#[derive(Debug, sqlx::FromRow)]
struct ExportRow {
    id: i64,
    tenant_id: i64,
    format: String,
    filter: String,
    status: String,
    row_count: i64,
    byte_count: i64,
    file_name: String,
    error: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    expires_at: Option<i64>,
}

const COLUMNS: &str = "id, tenant_id, format, filter, status, row_count, byte_count, file_name, \
     error, created_at, finished_at, expires_at";

impl ExportRow {
    fn view(&self, now: i64) -> Value {
        let expired = self.expires_at.is_some_and(|e| e <= now);
        let status = if self.status == "done" && expired {
            "expired"
        } else {
            self.status.as_str()
        };
        json!({
            "id": self.id,
            "format": self.format,
            "status": status,
            "rows": self.row_count,
            "bytes": self.byte_count,
            "fileName": self.file_name,
            "error": self.error,
            "filter": serde_json::from_str::<Value>(&self.filter).unwrap_or(Value::Null),
            "createdAt": iso(self.created_at),
            "finishedAt": self.finished_at.map(iso),
            "expiresAt": self.expires_at.map(iso),
            "statusUrl": format!("/api/v1/customers/exports/{}", self.id),
            "downloadUrl": (status == "done")
                .then(|| format!("/api/v1/customers/exports/{}/download", self.id)),
        })
    }
}

async fn load(db: &Db, tenant_id: i64, id: i64) -> scrm_db::DbResult<Option<Value>> {
    Ok(load_row(db, tenant_id, id).await?.map(|r| r.view(now_ms())))
}

async fn load_row(db: &Db, tenant_id: i64, id: i64) -> scrm_db::DbResult<Option<ExportRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM customer_export WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
}

pub(crate) async fn list_exports(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let filter = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    let (rows, total): (Vec<ExportRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM customer_export",
            format!("SELECT {COLUMNS} FROM customer_export"),
            &filter,
            "id",
        )
        .await?;
    let now = now_ms();
    Ok(ok(ListPage {
        list: rows.iter().map(|r| r.view(now)).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

async fn get_export(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    load(&state.db, user.tenant_id, id)
        .await?
        .map(ok)
        .ok_or_else(|| ApiError::NotFound("export"))
}

async fn download(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let row = load_row(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("export"))?;
    if row.status != "done" {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "EXPORT_NOT_READY",
            format!("the export is {}", row.status),
        ));
    }
    if row.expires_at.is_some_and(|e| e <= now_ms()) {
        return Err(ApiError::domain(
            StatusCode::GONE,
            "EXPORT_EXPIRED",
            "the export's file was kept 24 hours; export again",
        ));
    }
    let format = if row.format == "xlsx" {
        Format::Xlsx
    } else {
        Format::Csv
    };
    // Stream the chunks one query at a time, so a large file never sits in memory whole.
    let db = state.db.clone();
    let stream = futures::stream::unfold(0i64, move |seq| {
        let db = db.clone();
        async move {
            let chunk = db
                .fetch_optional::<(Vec<u8>,)>(
                    query("SELECT data FROM customer_export_chunk WHERE export_id = ? AND seq = ?")
                        .bind(id)
                        .bind(seq),
                )
                .await;
            match chunk {
                Ok(Some((data,))) => Some((Ok::<_, std::io::Error>(data), seq + 1)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), i64::MAX)),
            }
        }
    });
    Ok(attachment(
        format,
        &row.file_name,
        Body::from_stream(stream),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobPayload {
    export_id: i64,
}

/// `customers.export`: build the file into a temporary file, then store it in chunks and mark
/// the export done in one transaction (a retry after a crash starts over; nothing half-stored
/// is ever served).
pub async fn run_export(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let p: JobPayload = serde_json::from_value(p)?;
    let Some(tenant) = ctx.tenant_id else {
        return Err(JobError::permanent("export job without a tenant"));
    };
    let Some(row) = load_row(&state.db, tenant, p.export_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if row.status == "done" || row.tenant_id != tenant {
        return Ok(JobOutcome::Done);
    }
    state
        .db
        .execute(query("UPDATE customer_export SET status = 'running' WHERE id = ?").bind(row.id))
        .await?;
    let result = build_and_store(&state, &row).await;
    if let Err(e) = &result {
        if ctx.attempt >= ctx.max_attempts {
            state
                .db
                .execute(
                    query(
                        "UPDATE customer_export SET status = 'failed', error = ?, finished_at = ? \
                         WHERE id = ?",
                    )
                    .bind(format!("{e:#}"))
                    .bind(now_ms())
                    .bind(row.id),
                )
                .await?;
        }
        return Err(JobError::retryable(format!("{e:#}")));
    }
    Ok(JobOutcome::Done)
}

async fn build_and_store(state: &AppState, row: &ExportRow) -> anyhow::Result<()> {
    let body: ExportBody = serde_json::from_str(&row.filter)?;
    let format = body.format().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sink = Sink::new(format, tempfile::tempfile()?)?;
    let rows = write_rows(
        &state.db,
        row.tenant_id,
        &body.filter(),
        &mut sink,
        JOB_LIMIT,
    )
    .await?;
    let mut file = sink.finish()?;
    file.flush()?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    tx.execute(query("DELETE FROM customer_export_chunk WHERE export_id = ?").bind(row.id))
        .await?;
    let (mut seq, mut bytes) = (0i64, 0i64);
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        tx.execute(
            query("INSERT INTO customer_export_chunk (export_id, seq, data) VALUES (?, ?, ?)")
                .bind(row.id)
                .bind(seq)
                .bind(buf[..filled].to_vec()),
        )
        .await?;
        seq += 1;
        bytes += filled as i64;
    }
    tx.execute(
        query(
            "UPDATE customer_export SET status = 'done', row_count = ?, byte_count = ?, \
             error = NULL, finished_at = ?, expires_at = ? WHERE id = ?",
        )
        .bind(rows)
        .bind(bytes)
        .bind(now)
        .bind(now + KEEP_MS)
        .bind(row.id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `customers.export.cleanup`: delete the files of expired exports (the export rows stay, shown
/// as expired).
pub async fn run_cleanup(
    state: AppState,
    ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let expired: Vec<(i64,)> = state
        .db
        .fetch_all(
            query(
                "SELECT id FROM customer_export WHERE expires_at IS NOT NULL AND expires_at <= ? \
                 AND byte_count > 0",
            )
            .bind(ctx.now_ms()),
        )
        .await?;
    for (id,) in expired {
        let mut tx = state.db.begin().await?;
        tx.execute(query("DELETE FROM customer_export_chunk WHERE export_id = ?").bind(id))
            .await?;
        tx.execute(query("UPDATE customer_export SET byte_count = 0 WHERE id = ?").bind(id))
            .await?;
        tx.commit().await?;
    }
    Ok(JobOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_quoted() {
        assert_eq!(safe_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("-42"), "-42");
        assert_eq!(safe_cell("张三"), "张三");
    }

    #[test]
    fn csv_round_trips_quotes_commas_and_newlines() {
        let mut sink = Sink::new(Format::Csv, Vec::new()).unwrap();
        let mut cells: Vec<String> = vec![
            "a,b".into(),
            "say \"hi\"".into(),
            "x\ny".into(),
            "=cmd".into(),
        ];
        cells.resize(HEADER.len(), String::new());
        sink.row(cells).unwrap();
        let bytes = sink.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        let cells: Vec<&str> = rec.iter().take(4).collect();
        assert_eq!(cells, vec!["a,b", "say \"hi\"", "x\ny", "'=cmd"]);
    }
}
