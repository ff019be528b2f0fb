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

/// A failure whose outcome the client cannot know (the connection broke during COMMIT):
/// wrapped so that [`is_retryable`] never retries it.
#[derive(Debug)]
pub(crate) struct OutcomeUnknown(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "outcome unknown: {}", self.0)
    }
}

impl std::error::Error for OutcomeUnknown {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `error` is a broken or terminated connection before anything could commit:
/// then running the whole operation again on another connection is safe.
pub(crate) fn is_retryable(error: &Error) -> bool {
    let Error::Backend { source: Some(source), .. } = error else { return false };
    let Some(error) = source.downcast_ref::<tokio_postgres::Error>() else { return false };
    if error.is_closed() {
        return true;
    }
    error.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code.starts_with("08") || code.starts_with("57P")
    })
}

/// Runs `attempt` again (up to 3 times in all) while it fails with a retryable error.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < 3 && is_retryable(&error) => {
                tracing::debug!(%error, "chronicle-postgres: connection lost before commit; retrying on another");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}
