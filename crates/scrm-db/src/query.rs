//! Queries written once with `?` placeholders and typed values, run on any backend.

use std::borrow::Cow;

use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow};

use crate::{Db, DbResult, Tx, dispatch};

/// A value bound to a placeholder. Nulls carry their type, because PostgreSQL refuses a `text`
/// null in a `bigint` column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    I64(Option<i64>),
    F64(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

macro_rules! value_from {
    ($variant:ident: $($t:ty => $conv:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$variant(Some(($conv)(v))) }
        }
        impl From<Option<$t>> for Value {
            fn from(v: Option<$t>) -> Self { Value::$variant(v.map($conv)) }
        }
    )*};
}

value_from!(I64: i64 => |v| v, i32 => i64::from, u32 => i64::from, i16 => i64::from,
    u8 => i64::from, bool => i64::from);
value_from!(F64: f64 => |v| v);
value_from!(Text: String => |v| v, &str => str::to_string, &String => String::clone);
value_from!(Bytes: Vec<u8> => |v| v);

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::I64(Some(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::I64(Some(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}

/// A row type every driver can decode: derive `sqlx::FromRow` on a struct whose fields are
/// `i64`, `f64`, `String`, `Vec<u8>` or `Option`s of them, or use a tuple such as `(i64,)`.
pub trait Row:
    for<'r> FromRow<'r, SqliteRow>
    + for<'r> FromRow<'r, MySqlRow>
    + for<'r> FromRow<'r, PgRow>
    + Send
    + Unpin
{
}

impl<T> Row for T where
    T: for<'r> FromRow<'r, SqliteRow>
        + for<'r> FromRow<'r, MySqlRow>
        + for<'r> FromRow<'r, PgRow>
        + Send
        + Unpin
{
}

/// SQL with `?` placeholders and the values bound to them, in order.
#[derive(Debug, Clone)]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
    /// Whether the driver may cache the prepared statement (and PostgreSQL its plan).
    persistent: bool,
}

/// Start a query. Write placeholders as `?`; they are numbered for PostgreSQL.
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
        persistent: true,
    }
}

impl Query {
    /// Bind the next placeholder.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Bind the next placeholder in place (for queries built in loops).
    pub fn push_bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.args.push(value.into());
        self
    }

    /// Plan this statement for the values it is run with, every time: the statement is not kept
    /// prepared on the connection. PostgreSQL switches a kept statement to a generic plan after
    /// five runs, and a generic plan cannot tell a tag of 4,000 customers from one of 300,000 (it
    /// may hash the big one where a few hundred index probes were the answer). Costs a parse and
    /// a plan per call (well under a millisecond for a search).
    pub fn planned_per_call(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Append SQL text (for dynamic filters). Never append user input: bind it.
    pub fn push_sql(&mut self, sql: &str) -> &mut Self {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Append `(?, ?, …)` and bind each value: an `IN` list.
    pub fn push_in_list<V: Into<Value>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        let mut first = true;
        self.sql.to_mut().push('(');
        for v in values {
            if !first {
                self.sql.to_mut().push_str(", ");
            }
            first = false;
            self.sql.to_mut().push('?');
            self.args.push(v.into());
        }
        if first {
            // An empty IN list is a syntax error everywhere; NULL matches nothing.
            self.sql.to_mut().push_str("NULL");
        }
        self.sql.to_mut().push(')');
        self
    }

    /// Append another query's SQL and values (a shared `WHERE` clause for a page and its count).
    pub fn append(&mut self, other: &Query) -> &mut Self {
        self.sql.to_mut().push_str(&other.sql);
        self.args.extend(other.args.iter().cloned());
        self
    }

    /// The SQL as written, with `?` placeholders.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The bound values.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    fn sql_for_postgres(&self) -> String {
        numbered_placeholders(&self.sql)
    }
}

/// Turn `?` into `$1, $2, …`, leaving quoted strings and identifiers alone.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                _ => out.push(c),
            },
        }
    }
    out
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecResult {
    pub rows_affected: u64,
    /// The auto-increment id MySQL and SQLite report; PostgreSQL reports none (use `insert_id`).
    pub last_insert_id: Option<i64>,
}

/// Build a sqlx query from our SQL and values; the driver is inferred from the executor.
macro_rules! build {
    (query, $sql:expr, $args:expr, $persistent:expr) => {{
        let mut q = sqlx::query(AssertSqlSafe($sql)).persistent($persistent);
        for a in $args {
            q = match a {
                Value::I64(v) => q.bind(v),
                Value::F64(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
    (query_as $t:ty, $sql:expr, $args:expr, $persistent:expr) => {{
        let mut q = sqlx::query_as::<_, $t>(AssertSqlSafe($sql)).persistent($persistent);
        for a in $args {
            q = match a {
                Value::I64(v) => q.bind(v),
                Value::F64(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// The methods shared by [`Db`] (each call on its own pooled connection) and [`Tx`].
macro_rules! exec_methods {
    ($ty:ident, $recv:ty, |$this:ident, $conn:ident| $exec:expr) => {
        impl $ty {
            /// Run a statement and report what it changed.
            pub async fn execute(self: $recv, q: Query) -> DbResult<ExecResult> {
                let $this = self;
                Ok(match $this {
                    $ty::Sqlite($conn) => {
                        let r = build!(query, q.sql.into_owned(), q.args, q.persistent).execute($exec).await?;
                        ExecResult {
                            rows_affected: r.rows_affected(),
                            last_insert_id: Some(r.last_insert_rowid()),
                        }
                    }
                    $ty::MySql($conn) => {
                        let r = build!(query, q.sql.into_owned(), q.args, q.persistent).execute($exec).await?;
                        ExecResult {
                            rows_affected: r.rows_affected(),
                            last_insert_id: i64::try_from(r.last_insert_id()).ok(),
                        }
                    }
                    $ty::Postgres($conn) => {
                        let sql = q.sql_for_postgres();
                        let r = build!(query, sql, q.args, q.persistent).execute($exec).await?;
                        ExecResult {
                            rows_affected: r.rows_affected(),
                            last_insert_id: None,
                        }
                    }
                })
            }

            /// Every row the query returns.
            pub async fn fetch_all<T: Row>(self: $recv, q: Query) -> DbResult<Vec<T>> {
                let $this = self;
                Ok(match $this {
                    $ty::Sqlite($conn) => {
                        build!(query_as T, q.sql.into_owned(), q.args, q.persistent).fetch_all($exec).await?
                    }
                    $ty::MySql($conn) => {
                        build!(query_as T, q.sql.into_owned(), q.args, q.persistent).fetch_all($exec).await?
                    }
                    $ty::Postgres($conn) => {
                        let sql = q.sql_for_postgres();
                        build!(query_as T, sql, q.args, q.persistent).fetch_all($exec).await?
                    }
                })
            }

            /// The first row, if any.
            pub async fn fetch_optional<T: Row>(self: $recv, q: Query) -> DbResult<Option<T>> {
                let $this = self;
                Ok(match $this {
                    $ty::Sqlite($conn) => {
                        build!(query_as T, q.sql.into_owned(), q.args, q.persistent)
                            .fetch_optional($exec)
                            .await?
                    }
                    $ty::MySql($conn) => {
                        build!(query_as T, q.sql.into_owned(), q.args, q.persistent)
                            .fetch_optional($exec)
                            .await?
                    }
                    $ty::Postgres($conn) => {
                        let sql = q.sql_for_postgres();
                        build!(query_as T, sql, q.args, q.persistent).fetch_optional($exec).await?
                    }
                })
            }

            /// Exactly one row; [`DbError::NotFound`](crate::DbError::NotFound) when there is none.
            pub async fn fetch_one<T: Row>(self: $recv, q: Query) -> DbResult<T> {
                self.fetch_optional(q).await?.ok_or(crate::DbError::NotFound)
            }

            /// The first column of the first row as an integer (counts, ids); 0 when no row.
            pub async fn fetch_i64(self: $recv, q: Query) -> DbResult<i64> {
                Ok(self.fetch_optional::<(i64,)>(q).await?.map(|r| r.0).unwrap_or(0))
            }

            /// Run an `INSERT` into a table whose primary key is an auto-increment `id` and return
            /// the new id: `RETURNING id` on PostgreSQL and SQLite, `LAST_INSERT_ID()` on MySQL.
            pub async fn insert_id(self: $recv, mut q: Query) -> DbResult<i64> {
                if matches!(self, $ty::MySql(_)) {
                    let r = self.execute(q).await?;
                    return r.last_insert_id.ok_or(crate::DbError::NotFound);
                }
                q.push_sql(" RETURNING id");
                self.fetch_i64(q).await
            }
        }
    };
}

exec_methods!(Db, &Self, |this, pool| pool);
exec_methods!(Tx, &mut Self, |this, tx| &mut **tx);

// `dispatch!` is used by callers that need driver-specific code; keep it referenced here so the
// macro's paths are checked when this crate builds.
#[allow(dead_code)]
fn _dispatch_compiles(db: &Db) -> crate::Backend {
    dispatch!(db, Db, |_p| db.backend())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT '?' , a FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT '?' , a FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
    }

    #[test]
    fn an_empty_in_list_matches_nothing() {
        let mut q = query("SELECT 1 WHERE x IN ");
        q.push_in_list(Vec::<i64>::new());
        assert_eq!(q.sql(), "SELECT 1 WHERE x IN (NULL)");
    }
}
