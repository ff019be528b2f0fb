//! Mapping the client's errors to `chronicle::Error::Backend`.

use std::sync::Arc;

use chronicle::Error;

/// A `map_err` adapter: "`context`: the server's message (SQLSTATE)".
pub(crate) fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |error| from_db(context, error)
}

pub(crate) fn from_db(context: &str, error: tokio_postgres::Error) -> Error {
    let message = match error.as_db_error() {
        Some(db) => format!("{context}: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => format!("{context}: {error}"),
    };
    Error::backend(message, Some(Arc::new(error)))
}

pub(crate) fn pool(error: deadpool_postgres::PoolError) -> Error {
    let message = format!("get a connection from the pool: {error}");
    Error::backend(message, Some(Arc::new(error)))
}

/// A value read from the database that cannot be what chronicle wrote.
pub(crate) fn bad_row(what: impl Into<String>) -> Error {
    Error::backend(format!("unexpected value in the database: {}", what.into()), None)
}

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::InvalidInput { message: format!("{what} {value} is above {}", i64::MAX) })
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| bad_row(format!("negative {what} {value}")))
}
