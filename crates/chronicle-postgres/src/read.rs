//! Reads in pages: every iterator holds at most one page (at most [`PAGE_EVENTS_MAX`]
//! events and, past the first event, [`PAGE_BYTES_MAX`] bytes of data and metadata) and
//! fetches the next when it is drained, each page one statement (one snapshot). Positions
//! are assigned in commit order (docs/postgres.md), so every snapshot sees a prefix of the
//! log and paging by position can neither skip nor repeat an event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chronicle::{Error, RecordedEvent, Result};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{bad_row, db, to_i64, to_u64};
use crate::store::{Pending, Runner, Shared};
use chronicle::Filter;

/// Most events one page holds.
pub const PAGE_EVENTS_MAX: usize = 2048;
/// Most bytes of data and metadata a page holds before its last event (a page is cut
/// after the event that crosses this, and its first event is always taken, so an event of
/// any size is read).
pub const PAGE_BYTES_MAX: usize = 8 << 20;

/// Where the next page starts.
#[derive(Debug, Clone)]
pub(crate) enum Cursor {
    Stream { stream: Vec<u8>, next: i64, backward: bool },
    All { next: i64, backward: bool },
    Filtered { next: i64, filter: Filter },
}

pub(crate) fn u128_from(bytes: &[u8], what: &str) -> Result<u128> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| bad_row(format!("{what} of {} bytes", bytes.len())))?;
    Ok(u128::from_be_bytes(array))
}

pub(crate) fn event_from_row(row: &Row) -> Result<RecordedEvent> {
    event_from_row_at(row, 0)
}

/// An event from the [`EVENT_COLUMNS`](crate::sql::EVENT_COLUMNS) of `row` starting at
/// column `at`.
pub(crate) fn event_from_row_at(row: &Row, at: usize) -> Result<RecordedEvent> {
    // Borrowed from the row where a copy is made anyway (texts) or none is needed (ids):
    // one allocation per text and one for the payload, none for the rest.
    let get = |e| db("read event row")(e);
    let position: i64 = row.try_get(at).map_err(get)?;
    let stream: &[u8] = row.try_get(at + 1).map_err(get)?;
    let version: i64 = row.try_get(at + 2).map_err(get)?;
    let event_type: &[u8] = row.try_get(at + 3).map_err(get)?;
    let data: &[u8] = row.try_get(at + 4).map_err(get)?;
    let metadata: &[u8] = row.try_get(at + 5).map_err(get)?;
    let id: &[u8] = row.try_get(at + 6).map_err(get)?;
    let correlation: Option<&[u8]> = row.try_get(at + 7).map_err(get)?;
    let causation: Option<&[u8]> = row.try_get(at + 8).map_err(get)?;
    let recorded_us: i64 = row.try_get(at + 9).map_err(get)?;
    let stream = std::str::from_utf8(stream).map_err(|_| bad_row("stream id is not UTF-8"))?.to_owned();
    let event_type = std::str::from_utf8(event_type).map_err(|_| bad_row("event type is not UTF-8"))?.to_owned();
    let metadata = if metadata.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(metadata) };
    let timestamp = SystemTime::UNIX_EPOCH + Duration::from_micros(to_u64(recorded_us, "timestamp")?);
    let mut event = RecordedEvent::new(
        stream,
        to_u64(version, "version")?,
        to_u64(position, "position")?,
        event_type,
        Bytes::copy_from_slice(data),
    )
    .with_metadata(metadata)
    .with_id(u128_from(id, "event id")?)
    .with_timestamp(timestamp);
    if let Some(c) = correlation {
        event = event.with_correlation_id(u128_from(c, "correlation id")?);
    }
    if let Some(c) = causation {
        event = event.with_causation_id(u128_from(c, "causation id")?);
    }
    Ok(event)
}

/// One page from `cursor`, and whether more may follow.
pub(crate) async fn fetch_page(shared: Arc<Shared>, cursor: Cursor) -> Result<(Vec<RecordedEvent>, bool)> {
    crate::error::retry(|| fetch_page_once(Arc::clone(&shared), cursor.clone())).await
}

async fn fetch_page_once(shared: Arc<Shared>, cursor: Cursor) -> Result<(Vec<RecordedEvent>, bool)> {
    let client = shared.client().await?;
    let limit = PAGE_EVENTS_MAX as i64;
    let bytes = PAGE_BYTES_MAX as i64;
    let rows = match &cursor {
        Cursor::Stream { stream, next, backward } => {
            let sql = if *backward { &shared.sql.stream_backward } else { &shared.sql.stream_forward };
            let statement = client.prepare_cached(sql).await.map_err(db("prepare stream read"))?;
            client.query(&statement, &[stream, next, &limit, &bytes]).await.map_err(db("read stream"))?
        }
        Cursor::All { next, backward } => {
            let sql = if *backward { &shared.sql.all_backward } else { &shared.sql.all_forward };
            let statement = client.prepare_cached(sql).await.map_err(db("prepare read_all"))?;
            client.query(&statement, &[next, &limit, &bytes]).await.map_err(db("read all"))?
        }
        Cursor::Filtered { next, filter } => {
            let (condition, params) = crate::filter::sql(filter, &shared.sql.schema, 2);
            let where_clause = format!("position >= $1{condition}");
            let n = params.len() + 2;
            let sql = crate::sql::page(&shared.sql.schema, &where_clause, "position", false, n, n + 1);
            let statement = client.prepare_cached(&sql).await.map_err(db("prepare filtered read"))?;
            let mut all: Vec<&(dyn ToSql + Sync)> = vec![next];
            all.extend(crate::filter::borrow(&params));
            all.push(&limit);
            all.push(&bytes);
            client.query(&statement, &all).await.map_err(db("filtered read"))?
        }
    };
    // Full, or cut by bytes (the last row crossed the limit): more may follow.
    let cut = match rows.last() {
        Some(row) => row.try_get::<_, i64>(10).map_err(db("read page"))? > bytes,
        None => false,
    };
    let more = cut || rows.len() as i64 == limit;
    let events = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
    Ok((events, more))
}

impl Cursor {
    /// Moves past `last`; `false` when nothing can follow (backward past 0).
    fn advance(&mut self, last: &RecordedEvent) -> Result<bool> {
        let step = |value: u64, backward: bool| -> Result<Option<i64>> {
            let value = to_i64(value, "position")?;
            Ok(if backward { value.checked_sub(1).filter(|v| *v >= 0) } else { value.checked_add(1) })
        };
        let (next, moved) = match self {
            Cursor::Stream { next, backward, .. } => (next, step(last.version, *backward)?),
            Cursor::All { next, backward } => (next, step(last.position, *backward)?),
            Cursor::Filtered { next, .. } => (next, step(last.position, false)?),
        };
        match moved {
            Some(value) => {
                *next = value;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Events of one stream, or of the whole log, read lazily in pages.
///
/// Each page is read when the previous one is drained (blocking, on the store's runtime);
/// once a page is in, the next is read ahead while the caller works through this one, so
/// an iterator holds at most two pages. An error item ends the iteration.
#[derive(Debug)]
pub struct PgEvents {
    runner: Runner,
    shared: Arc<Shared>,
    cursor: Cursor,
    buffer: VecDeque<RecordedEvent>,
    more: bool,
    ahead: Option<Pending<(Vec<RecordedEvent>, bool)>>,
}

impl PgEvents {
    pub(crate) fn new(runner: Runner, shared: Arc<Shared>, cursor: Cursor) -> Self {
        PgEvents { runner, shared, cursor, buffer: VecDeque::new(), more: true, ahead: None }
    }

    /// Reads the first page now (so that the caller sees its errors at once); returns how
    /// many events it holds.
    pub(crate) fn first_page(&mut self) -> Result<usize> {
        let page = self.runner.block(fetch_page(Arc::clone(&self.shared), self.cursor.clone()))?;
        self.take_page(page)?;
        Ok(self.buffer.len())
    }

    /// Takes a fetched page: moves the cursor past it and reads the next one ahead.
    fn take_page(&mut self, (events, more): (Vec<RecordedEvent>, bool)) -> Result<()> {
        self.more = more;
        match events.last() {
            Some(last) => {
                if !self.cursor.advance(last)? {
                    self.more = false;
                }
            }
            None => self.more = false,
        }
        self.buffer = events.into();
        if self.more {
            self.ahead = Some(self.runner.start(fetch_page(Arc::clone(&self.shared), self.cursor.clone())));
        }
        Ok(())
    }
}

impl Iterator for PgEvents {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(event) = self.buffer.pop_front() {
            return Some(Ok(event));
        }
        if !self.more {
            return None;
        }
        let page = match self.ahead.take() {
            Some(ahead) => ahead.wait(),
            None => self.runner.block(fetch_page(Arc::clone(&self.shared), self.cursor.clone())),
        };
        if let Err(error) = page.and_then(|page| self.take_page(page)) {
            self.more = false;
            self.ahead = None;
            return Some(Err(error));
        }
        self.buffer.pop_front().map(Ok)
    }
}

/// An error for a stream that was deleted.
pub(crate) fn deleted(stream: &str) -> Error {
    Error::StreamDeleted { stream: stream.to_owned() }
}
