//! Export of a filtered customer list (seed 002's `POST /v1/export/friends`, and
//! `/api/v1/customers/export`) as CSV, and import from CSV with a per-row error report: a bad
//! row is reported and skipped, never aborting the rest.
//!
//! Exports run inline up to [`INLINE_LIMIT`] rows.
//! TODO(jobs): larger exports as a job writing a file with a download link; XLSX.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::{CustomerBody, external_userid};
use super::search::{Filter, Keyword};
use super::{followups, search, staff, stats, store, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{Reply, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

/// The most rows an export answers inline.
pub const INLINE_LIMIT: i64 = 50_000;
/// The most rows one import takes.
pub const IMPORT_LIMIT: usize = 10_000;

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/v1/export/friends",
            Access::Permission(perm::EXPORT_FRIENDS),
            "Seed 002: export customers (friends) as CSV",
            export,
        )
        .route(
            M::POST,
            "/api/v1/customers/export",
            Access::Permission(perm::CUSTOMER_EXPORT),
            "Export a filtered customer list as CSV",
            export,
        )
        .route(
            M::POST,
            "/api/v1/customers/import",
            Access::Permission(perm::CUSTOMER_IMPORT),
            "Import customers from CSV (text/csv body); per-row error report",
            import,
        )
}

/// The export filter (the list's filters) and format.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExportBody {
    format: Option<String>,
    keyword: Option<String>,
    tag_ids: Option<Vec<i64>>,
    group_ids: Option<Vec<i64>>,
    channel: Option<String>,
    status: Option<i64>,
    follow_user_id: Option<i64>,
}

/// The columns of an export, which an import reads back.
const HEADER: &[&str] = &[
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

fn csv_field(s: &str) -> String {
    // Cells starting with = + - @ are formulas to a spreadsheet: prefix them (CSV injection).
    let s = if s.starts_with(['=', '+', '-', '@']) && !s.chars().skip(1).all(|c| c.is_ascii_digit())
    {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ExportBody>,
) -> ApiResult<Response> {
    match b.format.as_deref() {
        None | Some("csv") => {}
        Some(_) => return Err(ApiError::field("format", "csv")),
    }
    let filter = Filter {
        tag_ids: b.tag_ids.unwrap_or_default(),
        group_ids: b.group_ids.unwrap_or_default(),
        keyword: b.keyword.as_deref().and_then(Keyword::parse),
        channel: b.channel,
        status: b.status,
        follow_user_id: b.follow_user_id,
        ..Default::default()
    };
    let total = search::count(&state.db, user.tenant_id, &filter).await?;
    if total > INLINE_LIMIT {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXPORT_TOO_LARGE",
            format!("{total} customers: narrow the filter to at most {INLINE_LIMIT}"),
        ));
    }
    let mut out = String::from("\u{feff}"); // a BOM, so Excel reads UTF-8 Chinese names
    out.push_str(&HEADER.join(","));
    out.push('\n');
    let mut offset = 0;
    loop {
        let rows = search::page(&state.db, user.tenant_id, &filter, offset, 1000).await?;
        if rows.is_empty() {
            break;
        }
        offset += rows.len() as i64;
        for v in store::views(&state.db, user.tenant_id, rows).await? {
            let tags: Vec<String> = v.tags.iter().map(|t| t.name.clone()).collect();
            let cells = [
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
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
    }
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "customer.export",
        "customer",
        0,
        json!({"rows": total}),
    )
    .await?;
    tx.commit().await?;
    let name = format!("customers-{}.csv", iso(now_ms()).replace([':', '-'], ""));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

/// Split CSV text into records (RFC 4180: quoted fields with doubled quotes and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    rows
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
    if !(ct.starts_with("text/csv") || ct.starts_with("text/plain")) {
        return Err(ApiError::domain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the file as text/csv",
        ));
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the file is not UTF-8 text"))?;
    let mut rows = parse_csv(text).into_iter();
    let header: Vec<String> = rows
        .next()
        .ok_or_else(|| ApiError::invalid("the file is empty"))?
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    if !header.iter().any(|h| h == "name") {
        return Err(ApiError::invalid(
            "the header row must have a `name` column",
        ));
    }
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.len() > IMPORT_LIMIT {
        return Err(ApiError::invalid(format!(
            "at most {IMPORT_LIMIT} rows per import"
        )));
    }
    let mut report = ImportReport {
        total: rows.len(),
        ..Default::default()
    };
    for (i, cells) in rows.into_iter().enumerate() {
        let line = i + 2;
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
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_quotes_commas_and_newlines() {
        let line = ["a,b", "say \"hi\"", "x\ny", "=cmd"]
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",");
        let parsed = parse_csv(&format!("h1,h2,h3,h4\n{line}\n"));
        assert_eq!(parsed[1], vec!["a,b", "say \"hi\"", "x\ny", "'=cmd"]);
    }
}
