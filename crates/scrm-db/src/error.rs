//! Storage errors that keep "not found" and "conflict" apart from everything else, so the HTTP
//! edge can answer 404 and 409 instead of 500.

/// The result of a storage call.
pub type DbResult<T> = Result<T, DbError>;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A query that must find a row found none.
    #[error("row not found")]
    NotFound,
    /// A unique key or primary key would be violated; carries the constraint name when the
    /// driver reports one.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// The database URL or options are unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// Migrations failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else the driver reported.
    #[error("database error: {0}")]
    Other(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                DbError::Conflict(db.constraint().unwrap_or("unique").to_string())
            }
            other => DbError::Other(other),
        }
    }
}

impl DbError {
    /// True for a unique-key violation.
    pub fn is_conflict(&self) -> bool {
        matches!(self, DbError::Conflict(_))
    }

    /// True when the row was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::NotFound)
    }
}
