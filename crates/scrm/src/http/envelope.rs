//! The success envelope `{"code":0,"message":"ok","data":…}` and the paged shapes the seeds use.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::Enveloped;

/// A successful answer: `data` wrapped in the envelope, with a status (200 unless created).
#[derive(Debug)]
pub struct Reply<T>(pub StatusCode, pub T);

/// 200 with `data`.
pub fn ok<T: Serialize>(data: T) -> Reply<T> {
    Reply(StatusCode::OK, data)
}

/// 201 with `data`, for creations (seed 004: create → 201).
pub fn created<T: Serialize>(data: T) -> Reply<T> {
    Reply(StatusCode::CREATED, data)
}

#[derive(Serialize)]
struct Body<'a, T> {
    code: i32,
    message: &'a str,
    data: T,
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let mut resp = (
            self.0,
            Json(Body {
                code: 0,
                message: "ok",
                data: self.1,
            }),
        )
            .into_response();
        resp.extensions_mut().insert(Enveloped);
        resp
    }
}

/// Seed 001's page: `{list,total,page,size}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListPage<T> {
    pub list: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub size: i64,
}

/// Seed 004's page: `{records,total,size,current,pages}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordsPage<T> {
    pub records: Vec<T>,
    pub total: i64,
    pub size: i64,
    pub current: i64,
    pub pages: i64,
}

impl<T> RecordsPage<T> {
    pub fn new(records: Vec<T>, total: i64, current: i64, size: i64) -> Self {
        let pages = if size > 0 {
            (total + size - 1) / size
        } else {
            0
        };
        RecordsPage {
            records,
            total,
            size,
            current,
            pages,
        }
    }
}

/// Page and size from a query, clamped: page ≥ 1, 1 ≤ size ≤ max.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: i64,
    pub size: i64,
}

impl Paging {
    pub fn new(
        page: Option<i64>,
        size: Option<i64>,
        default_size: i64,
        max_size: i64,
    ) -> Result<Self, super::ApiError> {
        let page = page.unwrap_or(1);
        let size = size.unwrap_or(default_size);
        if page < 1 {
            return Err(super::ApiError::field("page", "must be at least 1"));
        }
        if !(1..=max_size).contains(&size) {
            return Err(super::ApiError::field(
                "size",
                format!("must be between 1 and {max_size}"),
            ));
        }
        Ok(Paging { page, size })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.size
    }

    /// One page of a filtered list and the filter's total: `count` and `select` are the
    /// statements up to their `FROM …`, `filter` the shared ` WHERE …` (with its binds), rows
    /// newest first by `order_by`.
    pub async fn fetch<T: scrm_db::Row>(
        &self,
        db: &scrm_db::Db,
        count: impl Into<std::borrow::Cow<'static, str>>,
        select: impl Into<std::borrow::Cow<'static, str>>,
        filter: &scrm_db::Query,
        order_by: &str,
    ) -> scrm_db::DbResult<(Vec<T>, i64)> {
        let mut c = scrm_db::query(count);
        c.append(filter);
        let total = db.fetch_i64(c).await?;
        let mut p = scrm_db::query(select);
        p.append(filter);
        p.push_sql(&format!(" ORDER BY {order_by} DESC LIMIT ? OFFSET ?"))
            .push_bind(self.size)
            .push_bind(self.offset());
        Ok((db.fetch_all(p).await?, total))
    }
}
