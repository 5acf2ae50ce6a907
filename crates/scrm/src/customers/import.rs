//! Import of customers from CSV or XLSX (the columns an export writes; `name` is required),
//! with a per-row error report: a bad row is reported and skipped, never aborting the rest.
//! Export is in [`super::export`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::Serialize;
use serde_json::json;

use super::model::{CustomerBody, external_userid};
use super::{followups, staff, stats, store, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, now_ms};

/// The most rows one import takes.
pub const IMPORT_LIMIT: usize = 10_000;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "customers").route(
        Method::POST,
        "/api/v1/customers/import",
        Access::Permission(perm::CUSTOMER_IMPORT),
        "Import customers from CSV (text/csv) or XLSX (the first sheet); per-row error report",
        import,
    )
}

/// The file's rows as text cells, each with its row number in the file (1-based, what a
/// spreadsheet shows): CSV (RFC 4180, a UTF-8 BOM allowed; blank lines skipped) or the first
/// sheet of an XLSX workbook (empty rows skipped).
fn read_table(content_type: &str, body: &[u8]) -> ApiResult<Vec<(usize, Vec<String>)>> {
    if content_type.starts_with(XLSX) {
        use calamine::Reader;
        let mut book = calamine::Xlsx::new(std::io::Cursor::new(body.to_vec()))
            .map_err(|e| ApiError::invalid(format!("not an XLSX workbook: {e}")))?;
        let sheet = book
            .worksheet_range_at(0)
            .ok_or_else(|| ApiError::invalid("the workbook has no sheet"))?
            .map_err(|e| ApiError::invalid(format!("the first sheet cannot be read: {e}")))?;
        let first = sheet.start().map(|(row, _)| row as usize).unwrap_or(0);
        return Ok(sheet
            .rows()
            .enumerate()
            .map(|(i, r)| (first + i + 1, r.iter().map(|c| c.to_string()).collect()))
            .filter(|(_, r): &(usize, Vec<String>)| r.iter().any(|c| !c.trim().is_empty()))
            .collect());
    }
    if !(content_type.starts_with("text/csv") || content_type.starts_with("text/plain")) {
        return Err(ApiError::domain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("send the file as text/csv or {XLSX}"),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("the file is not UTF-8 text"))?
        .trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| ApiError::invalid(format!("not valid CSV: {e}")))?;
        // The csv crate's line count skips blank lines: count lines from the byte offset.
        // (A record's position is where reading it began, blank lines before it included.)
        let at = rec
            .position()
            .map(|p| p.byte() as usize)
            .unwrap_or(0)
            .min(text.len());
        let blank = text[at..].len() - text[at..].trim_start_matches(['\r', '\n']).len();
        let line = text[..at + blank].matches('\n').count() + 1;
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}

/// One row's problem.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    /// 1-based line number of the data row (the header is row 1).
    pub row: usize,
    pub field: Option<String>,
    pub message: String,
}

/// The import report.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub total: usize,
    pub created: usize,
    pub updated: usize,
    pub failed: usize,
    pub errors: Vec<RowError>,
}

async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Reply<ImportReport>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut rows = read_table(ct, &body)?.into_iter();
    let header: Vec<String> = rows
        .next()
        .ok_or_else(|| ApiError::invalid("the file is empty"))?
        .1
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    if !header.iter().any(|h| h == "name") {
        return Err(ApiError::invalid(
            "the header row must have a `name` column",
        ));
    }
    let rows: Vec<(usize, Vec<String>)> = rows.collect();
    if rows.len() > IMPORT_LIMIT {
        return Err(ApiError::invalid(format!(
            "at most {IMPORT_LIMIT} rows per import"
        )));
    }
    let mut report = ImportReport {
        total: rows.len(),
        ..Default::default()
    };
    for (line, cells) in rows {
        match import_row(&state, &user, &header, &cells).await {
            Ok(true) => report.created += 1,
            Ok(false) => report.updated += 1,
            Err(e) => {
                report.failed += 1;
                let (field, message) = match &e {
                    ApiError::Validation { fields, message } => (
                        fields.first().map(|f| f.field.clone()),
                        fields
                            .first()
                            .map(|f| f.message.clone())
                            .unwrap_or_else(|| message.clone()),
                    ),
                    ApiError::Internal(err) => {
                        tracing::error!(error = ?err, row = line, "import row failed");
                        (None, "internal error".into())
                    }
                    other => (None, other.to_string()),
                };
                report.errors.push(RowError {
                    row: line,
                    field,
                    message,
                });
            }
        }
    }
    let mut tx = state.db.begin().await?;
    audit::record(&mut tx, &user, "customer.import", "customer", 0, json!({"total": report.total, "created": report.created, "updated": report.updated, "failed": report.failed})).await?;
    tx.commit().await?;
    Ok(ok(report))
}

/// Import one row in its own transaction: true when created, false when updated.
async fn import_row(
    state: &AppState,
    user: &CurrentUser,
    header: &[String],
    cells: &[String],
) -> ApiResult<bool> {
    let get = |col: &str| {
        header
            .iter()
            .position(|h| h == col)
            .and_then(|i| cells.get(i))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let int = |col: &str| -> ApiResult<Option<i64>> {
        get(col)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::field(col, "must be a number"))
            })
            .transpose()
    };
    let body = CustomerBody {
        external_userid: get("externalUserid"),
        name: get("name"),
        mobile: get("mobile"),
        gender: int("gender")?,
        kind: int("type")?,
        corp_name: get("corpName"),
        province: get("province"),
        city: get("city"),
        channel: get("channel"),
        stage: get("stage"),
        status: int("status")?,
        follow_user_id: int("followUserId")?,
        remark: get("remark"),
        description: get("description"),
        add_time: get("addTime").map(serde_json::Value::String),
        ..Default::default()
    };
    let ext_given = body.external_userid.clone();
    let ext = external_userid(body.external_userid.clone())?;
    let f = body.into_fields()?;
    if f.name.clone().flatten().is_none() {
        return Err(ApiError::field("name", "is required"));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    if let Some(Some(s)) = f.follow_user_id
        && !store::staff_exists(&mut tx, user.tenant_id, s).await?
    {
        return Err(ApiError::field("followUserId", "no such staff member"));
    }
    if let Some(s) = &f.stage {
        followups::check_stage(&mut tx, user.tenant_id, s).await?;
    }
    let existing: Option<(i64,)> = match &ext_given {
        Some(e) => {
            tx.fetch_optional(
                scrm_db::query(
                    "SELECT id FROM customer WHERE tenant_id = ? AND external_userid = ?",
                )
                .bind(user.tenant_id)
                .bind(e.as_str()),
            )
            .await?
        }
        None => None,
    };
    let created = if let Some((id,)) = existing {
        store::update(&mut tx, user.tenant_id, id, &f, now).await?;
        events::emit(
            &mut tx,
            user.tenant_id,
            events::kind::CUSTOMER_UPDATED,
            id,
            json!({"customerId": id, "source": "import"}),
        )
        .await?;
        false
    } else {
        let id = store::insert(&mut tx, user.tenant_id, &ext, &f, now).await?;
        if let Some(Some(s)) = f.follow_user_id {
            staff::ensure_follow(&mut tx, user.tenant_id, id, s, now).await?;
        }
        stats::record(
            &mut tx,
            user.tenant_id,
            now,
            f.channel.clone().flatten().as_deref(),
            f.follow_user_id.flatten(),
            stats::Change::Added,
        )
        .await?;
        timeline::record(
            &mut tx,
            user.tenant_id,
            id,
            timeline::kind::ADDED,
            "customer imported",
            json!({"by": user.username}),
        )
        .await?;
        events::emit(
            &mut tx,
            user.tenant_id,
            events::kind::CUSTOMER_CREATED,
            id,
            json!({"customerId": id, "source": "import"}),
        )
        .await?;
        true
    };
    if created {
        store::count_customers(&mut tx, user.tenant_id, 1).await?;
    }
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_xlsx_read_to_the_same_cells() {
        let csv = "\u{feff}name,mobile\n\"张三, 甲\",13800138000\n\n李四,\n";
        let a = read_table("text/csv", csv.as_bytes()).unwrap();
        let cells = |rows: &[(usize, Vec<String>)]| -> Vec<Vec<String>> {
            rows.iter().map(|r| r.1.clone()).collect()
        };
        assert_eq!(
            cells(&a),
            vec![
                vec!["name", "mobile"],
                vec!["张三, 甲", "13800138000"],
                vec!["李四", ""]
            ]
        );
        assert_eq!(
            a.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![1, 2, 4],
            "file line numbers"
        );
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in cells(&a).iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                sheet.write_string(r as u32, c as u16, v).unwrap();
            }
        }
        let bytes = book.save_to_buffer().unwrap();
        let b = read_table(XLSX, &bytes).unwrap();
        assert_eq!(cells(&a), cells(&b));
        assert_eq!(b.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            read_table("application/pdf", b"x").unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            read_table(XLSX, b"not a zip").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
